/* The keyed tables: consumers' offsets (8-byte big-endian), sessions' subscriptions,
 * retained messages by topic and wills by client id (message records). */
#include <stdlib.h>
#include <string.h>

#include "baetyl/error.h"
#include "store_internal.h"

/* ---- generic put / delete ------------------------------------------------------------ */

typedef struct {
    MDB_dbi dbi;
    const char *key;
    size_t klen;
    size_t vlen;
    void (*encode)(const void *src, uint8_t *out);
    const void *src;
} put_ctx;

static int put_txn(store *s, MDB_txn *t, void *arg, char *err, size_t errlen)
{
    put_ctx *c = arg;
    MDB_val k = {c->klen, (void *)c->key}, v = {c->vlen, NULL};
    int rc = mdb_put(t, c->dbi, &k, &v, MDB_RESERVE);
    if (rc == 0)
        c->encode(c->src, v.mv_data);
    return rc;
}

static int del_txn(store *s, MDB_txn *t, void *arg, char *err, size_t errlen)
{
    put_ctx *c = arg;
    MDB_val k = {c->klen, (void *)c->key};
    int rc = mdb_del(t, c->dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Deleting a missing key is not an error. */
static int del_key(store *s, MDB_dbi dbi, const char *what, const char *key, char *err,
                   size_t errlen)
{
    if (!s)
        return bt_errf(err, errlen, "store: no store");
    size_t klen = key ? strlen(key) : 0;
    if (store_check_key(s, what, key, klen, err, errlen))
        return -1;
    put_ctx c = {dbi, key, klen, 0, NULL, NULL};
    return store_write(s, STORE_TXN_FREES, what, del_txn, &c, err, errlen) < 0 ? -1 : 0;
}

static void encode_msg(const void *src, uint8_t *out)
{
    store_msg_encode(src, out);
}

/* Keys are handed to callbacks as C strings: one with a NUL inside is corrupt. */
static int key_string(const uint8_t *k, size_t klen, const char *what, char *err, size_t errlen)
{
    if (!klen || memchr(k, 0, klen))
        return bt_errf(err, errlen, "store: corrupt %s key", what);
    return 0;
}

/* ---- offsets ------------------------------------------------------------------------- */

typedef struct {
    const store_offset *offs;
    size_t n;
} offsets_ctx;

int store_put_offsets(store *s, MDB_txn *t, const store_offset *offs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t b[8];
        store_be64_put(b, offs[i].offset);
        MDB_val k = {strlen(offs[i].consumer), (void *)offs[i].consumer}, v = {8, b};
        int rc = mdb_put(t, s->offsets, &k, &v, 0);
        if (rc)
            return rc;
    }
    return 0;
}

static int offsets_txn(store *s, MDB_txn *t, void *arg, char *err, size_t errlen)
{
    offsets_ctx *c = arg;
    return store_put_offsets(s, t, c->offs, c->n);
}

int store_check_offsets(store *s, const store_offset *offs, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const char *c = offs[i].consumer;
        if (store_check_key(s, "consumer", c, c ? strlen(c) : 0, err, errlen))
            return -1;
    }
    return 0;
}

int store_set_offsets(store *s, const store_offset *offs, size_t n, char *err, size_t errlen)
{
    if (!s || (n && !offs))
        return bt_errf(err, errlen, "store: invalid arguments to set_offsets");
    if (store_check_offsets(s, offs, n, err, errlen))
        return -1;
    if (!n)
        return 0;
    offsets_ctx c = {offs, n};
    int rc = store_write(s, STORE_TXN_GROWS, "set offsets", offsets_txn, &c, err, errlen);
    return rc < 0 ? -1 : 0;
}

int store_get_offset(store *s, const char *consumer, uint64_t *offset, char *err, size_t errlen)
{
    if (!s || !offset)
        return bt_errf(err, errlen, "store: invalid arguments to get_offset");
    *offset = 0;
    size_t klen = consumer ? strlen(consumer) : 0;
    if (store_check_key(s, "consumer", consumer, klen, err, errlen))
        return -1;
    MDB_txn *t;
    if (store_read_begin(s, &t, err, errlen))
        return -1;
    MDB_val k = {klen, (void *)consumer}, v;
    int rc = mdb_get(t, s->offsets, &k, &v), ret = 0;
    if (rc == 0 && v.mv_size == 8) {
        *offset = store_be64_get(v.mv_data);
    } else if (rc == 0) {
        bt_errf(err, errlen, "store: corrupt offset of %s (%zu bytes)", consumer, v.mv_size);
        ret = -1;
    } else if (rc != MDB_NOTFOUND) {
        bt_errf(err, errlen, "store: get offset: %s", mdb_strerror(rc));
        ret = -1;
    }
    store_read_end(s, t);
    return ret;
}

int store_del_offset(store *s, const char *consumer, char *err, size_t errlen)
{
    return del_key(s, s ? s->offsets : 0, "consumer", consumer, err, errlen);
}

/* ---- sessions ------------------------------------------------------------------------ */

typedef struct {
    const store_sub *subs;
    size_t n;
    const char *owner;
} subs_src;

static void encode_subs(const void *src, uint8_t *out)
{
    const subs_src *ss = src;
    store_subs_encode(ss->subs, ss->n, ss->owner, out);
}

int store_put_session(store *s, const char *client_id, const char *owner, const store_sub *subs,
                      size_t n, char *err, size_t errlen)
{
    if (!s)
        return bt_errf(err, errlen, "store: no store");
    size_t klen = client_id ? strlen(client_id) : 0;
    if (store_check_key(s, "client id", client_id, klen, err, errlen))
        return -1;
    size_t vlen = store_subs_size(subs, n, owner, err, errlen);
    if (!vlen)
        return -1;
    subs_src ss = {subs, n, owner};
    put_ctx c = {s->sessions, client_id, klen, vlen, encode_subs, &ss};
    return store_write(s, STORE_TXN_GROWS, "put session", put_txn, &c, err, errlen) < 0 ? -1 : 0;
}

int store_del_session(store *s, const char *client_id, char *err, size_t errlen)
{
    return del_key(s, s ? s->sessions : 0, "client id", client_id, err, errlen);
}

typedef struct {
    store_session_cb cb;
    void *arg;
} session_walk;

static int session_one(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen, void *arg,
                       char *err, size_t errlen)
{
    session_walk *w = arg;
    if (key_string(k, klen, "session", err, errlen))
        return STORE_EFN;
    store_sub *subs;
    size_t n;
    char *owner;
    char why[160];
    if (store_subs_decode(v, vlen, &subs, &n, &owner, why, sizeof(why))) {
        bt_errf(err, errlen, "store: corrupt session %s: %s", (const char *)k, why);
        return STORE_EFN;
    }
    int r = w->cb((const char *)k, owner, subs, n, w->arg);
    free(subs);
    free(owner);
    if (r < 0) {
        bt_errf(err, errlen, "store: loading session %s failed in the callback", (const char *)k);
        return STORE_EFN;
    }
    return r ? 1 : 0;
}

int store_load_sessions(store *s, store_session_cb cb, void *arg, char *err, size_t errlen)
{
    if (!s || !cb)
        return bt_errf(err, errlen, "store: invalid arguments to load_sessions");
    session_walk w = {cb, arg};
    return store_walk(s, s->sessions, NULL, 0, 0, session_one, &w, err, errlen) < 0 ? -1 : 0;
}

/* ---- retained messages and wills ----------------------------------------------------- */

int store_put_retained(store *s, const store_msg *m, char *err, size_t errlen)
{
    if (!s)
        return bt_errf(err, errlen, "store: no store");
    if (store_msg_check(m, 1, err, errlen) ||
        store_check_key(s, "retained topic", m->topic, m->topic_len, err, errlen))
        return -1;
    if (memchr(m->topic, 0, m->topic_len))
        return bt_errf(err, errlen, "store: retained topic contains a NUL byte");
    put_ctx c = {s->retained, m->topic, m->topic_len, store_msg_size(m), encode_msg, m};
    return store_write(s, STORE_TXN_GROWS, "put retained", put_txn, &c, err, errlen) < 0 ? -1 : 0;
}

int store_del_retained(store *s, const char *topic, char *err, size_t errlen)
{
    return del_key(s, s ? s->retained : 0, "retained topic", topic, err, errlen);
}

int store_put_will(store *s, const char *client_id, const store_msg *m, char *err, size_t errlen)
{
    if (!s)
        return bt_errf(err, errlen, "store: no store");
    size_t klen = client_id ? strlen(client_id) : 0;
    if (store_check_key(s, "client id", client_id, klen, err, errlen) ||
        store_msg_check(m, 0, err, errlen))
        return -1;
    put_ctx c = {s->wills, client_id, klen, store_msg_size(m), encode_msg, m};
    return store_write(s, STORE_TXN_GROWS, "put will", put_txn, &c, err, errlen) < 0 ? -1 : 0;
}

int store_del_will(store *s, const char *client_id, char *err, size_t errlen)
{
    return del_key(s, s ? s->wills : 0, "client id", client_id, err, errlen);
}

typedef struct {
    store_msg_cb retained_cb;
    store_will_cb will_cb;
    void *arg;
    char *topic;
    size_t topic_cap;
} msg_walk;

static int msg_one(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen, void *arg,
                   char *err, size_t errlen)
{
    msg_walk *w = arg;
    const char *what = w->will_cb ? "will" : "retained message";
    if (key_string(k, klen, what, err, errlen))
        return STORE_EFN;
    store_msg m;
    char why[160];
    if (store_msg_decode(v, vlen, &m, why, sizeof(why))) {
        bt_errf(err, errlen, "store: corrupt %s %s: %s", what, (const char *)k, why);
        return STORE_EFN;
    }
    /* A retained message is stored under its own topic. */
    if (w->retained_cb && (m.topic_len != klen || memcmp(m.topic, k, klen))) {
        bt_errf(err, errlen, "store: corrupt retained message %s: its record names another topic",
                (const char *)k);
        return STORE_EFN;
    }
    if (store_msg_topic_cstr(&m, &w->topic, &w->topic_cap, err, errlen))
        return STORE_EFN;
    int r = w->will_cb ? w->will_cb((const char *)k, &m, w->arg) : w->retained_cb(&m, w->arg);
    if (r < 0) {
        bt_errf(err, errlen, "store: loading %s %s failed in the callback", what, (const char *)k);
        return STORE_EFN;
    }
    return r ? 1 : 0;
}

int store_load_retained(store *s, store_msg_cb cb, void *arg, char *err, size_t errlen)
{
    if (!s || !cb)
        return bt_errf(err, errlen, "store: invalid arguments to load_retained");
    msg_walk w = {cb, NULL, arg, NULL, 0};
    long n = store_walk(s, s->retained, NULL, 0, 0, msg_one, &w, err, errlen);
    free(w.topic);
    return n < 0 ? -1 : 0;
}

int store_load_wills(store *s, store_will_cb cb, void *arg, char *err, size_t errlen)
{
    if (!s || !cb)
        return bt_errf(err, errlen, "store: invalid arguments to load_wills");
    msg_walk w = {NULL, cb, arg, NULL, 0};
    long n = store_walk(s, s->wills, NULL, 0, 0, msg_one, &w, err, errlen);
    free(w.topic);
    return n < 0 ? -1 : 0;
}
