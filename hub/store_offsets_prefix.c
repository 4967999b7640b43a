/* Offsets by name prefix: the hub keeps small per-session records among the offsets (the
 * QoS 2 packet ids of persistent sessions, "q:<client id>/..."), which it loads at start
 * and deletes in batches. */
#include <stdlib.h>
#include <string.h>

#include "baetyl/error.h"
#include "store_internal.h"

typedef struct {
    const char *prefix;
    size_t plen;
    store_offset_cb cb;
    void *arg;
} prefix_ctx;

static int prefix_one(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen, void *arg,
                      char *err, size_t errlen)
{
    prefix_ctx *x = arg;
    if (klen < x->plen || memcmp(k, x->prefix, x->plen) != 0)
        return 1; /* past the prefix: keys are in order */
    if (vlen != 8 || memchr(k, 0, klen))
        return bt_errf(err, errlen, "store: corrupt offset record %.*s", (int)klen, k);
    int r = x->cb((const char *)k, store_be64_get(v), x->arg);
    if (r < 0)
        return bt_errf(err, errlen, "store: loading offset %s failed", (const char *)k);
    return r > 0 ? 1 : 0;
}

int store_load_offsets(store *s, const char *prefix, store_offset_cb cb, void *arg, char *err,
                       size_t errlen)
{
    if (!s || !prefix || !*prefix || !cb)
        return bt_errf(err, errlen, "store: invalid arguments to load_offsets");
    prefix_ctx x = {prefix, strlen(prefix), cb, arg};
    return store_walk(s, s->offsets, prefix, x.plen, 0, prefix_one, &x, err, errlen) < 0 ? -1 : 0;
}

typedef struct {
    const char *const *names;
    size_t n;
} del_ctx;

static int del_txn(store *s, MDB_txn *t, void *arg, char *err, size_t errlen)
{
    del_ctx *x = arg;
    for (size_t i = 0; i < x->n; i++) {
        MDB_val k = {strlen(x->names[i]), (void *)x->names[i]};
        int rc = mdb_del(t, s->offsets, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

int store_del_offsets(store *s, const char *const *names, size_t n, char *err, size_t errlen)
{
    if (!s || (n && !names))
        return bt_errf(err, errlen, "store: invalid arguments to del_offsets");
    for (size_t i = 0; i < n; i++)
        if (store_check_key(s, "consumer", names[i], names[i] ? strlen(names[i]) : 0, err, errlen))
            return -1;
    if (!n)
        return 0;
    del_ctx x = {names, n};
    return store_write(s, STORE_TXN_FREES, "delete offsets", del_txn, &x, err, errlen) < 0 ? -1 : 0;
}
