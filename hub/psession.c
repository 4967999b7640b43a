/* Persistent sessions (clean session 0): subscriptions and the acknowledged log offset of
 * each, kept in memory and in the store. The offsets of connected sessions are written
 * with the group commit of the turn in which they were acknowledged (or on their own at the
 * end of a turn without commit); a crash replays at most what was acknowledged in the
 * last turn (duplicates, never losses). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/log.h"
#include "baetyl/util.h"
#include "hub.h"

/* The away session's subscriptions: in h->offline (which log messages it needs) and, for
 * shared ones, as an away member of their group. */
static void offline_subs(hub *h, psess *ps, bool add)
{
    for (size_t i = 0; i < ps->nsubs; i++) {
        const char *f = ps->subs[i].filter;
        if (add)
            trie_add(&h->offline, f, ps, ps->subs[i].qos);
        else
            trie_remove(&h->offline, f, ps);
        if (shared_filter(f, strlen(f)))
            shared_away(h, f, ps, add);
    }
}

void psession_set_online(hub *h, psess *ps, conn *c)
{
    if (!ps->online && c)
        offline_subs(h, ps, false);
    else if (ps->online && !c)
        offline_subs(h, ps, true);
    ps->online = c;
}

static void psess_free(psess *ps)
{
    free(ps->owner);
    for (size_t i = 0; i < ps->nsubs; i++)
        free(ps->subs[i].filter);
    free(ps->subs);
    psession_release_held(ps);
    pid_set_free(&ps->rx2);
    pid_set_free(&ps->rel);
    free(ps->done);
    free(ps);
}

void psession_release_held(psess *ps)
{
    for (size_t i = 0; i < ps->nheld; i++)
        msg_unref(ps->held[i]);
    free(ps->held);
    free(ps->held_qos);
    ps->held = NULL;
    ps->held_qos = NULL;
    ps->nheld = 0;
}

/* Whether e is held, within the bytes left of half the output bound: the resends must not
 * push the next connection over message.egress.buffer.max. */
static bool hold_fits(const outq_entry *e, size_t *budget)
{
    if (e->acked || e->seq || !e->m)
        return false;
    size_t sz = (size_t)e->m->topic_len + e->m->payload_len + BT_MQTT_MAX_HEADER;
    if (sz > *budget)
        return false;
    *budget -= sz;
    return true;
}

void psession_hold_unacked(psess *ps, const conn *c)
{
    size_t n = 0, budget = c->h->out_max / 2;
    for (size_t i = 0; i < ps->nheld; i++) {
        size_t sz = (size_t)ps->held[i]->topic_len + ps->held[i]->payload_len + BT_MQTT_MAX_HEADER;
        budget = sz < budget ? budget - sz : 0;
    }
    size_t b = budget;
    for (size_t i = 0; i < c->qlen; i++)
        n += hold_fits(&c->q[(c->qhead + i) % c->qcap], &b);
    if (!n)
        return;
    msg **held = realloc(ps->held, (ps->nheld + n) * sizeof *held);
    if (held)
        ps->held = held;
    uint8_t *hq = held ? realloc(ps->held_qos, ps->nheld + n) : NULL;
    if (!hq)
        return; /* out of memory: the copies are lost, the retained messages are not */
    ps->held_qos = hq;
    for (size_t i = 0; i < c->qlen; i++) {
        const outq_entry *e = &c->q[(c->qhead + i) % c->qcap];
        if (hold_fits(e, &budget)) {
            ps->held_qos[ps->nheld] = e->qos;
            ps->held[ps->nheld++] = msg_ref(e->m);
        }
    }
}

void psession_keep_qos2(psess *ps, conn *c)
{
    for (size_t i = 0; i < c->rx2.n; i++)
        pid_set_add(&ps->rx2, c->rx2.v[i]);
    for (size_t i = 0; i < c->qlen; i++) {
        const outq_entry *e = &c->q[(c->qhead + i) % c->qcap];
        if (!e->acked && e->released)
            pid_set_add(&ps->rel, e->pid);
    }
}

void psession_take_qos2(psess *ps, conn *c)
{
    pid_set_free(&c->rx2);
    c->rx2 = ps->rx2;
    memset(&ps->rx2, 0, sizeof ps->rx2);
    for (size_t i = 0; i < ps->rel.n; i++)
        session_resume_release(c, ps->rel.v[i]);
    pid_set_free(&ps->rel);
}

/* ---- stored QoS 2 packet ids ------------------------------------------------------------ */

/* Queues a record for the next offsets write; false when out of memory. */
static bool queue_rec(hub *h, const char *client_id, char kind, uint16_t pid, uint64_t seq, bool on)
{
    if (h->nq2 == h->capq2) {
        size_t cap = h->capq2 ? h->capq2 * 2 : 16;
        qos2_rec *v = realloc(h->q2, cap * sizeof *v);
        if (!v)
            return false;
        h->q2 = v;
        h->capq2 = cap;
    }
    char *id = strdup(client_id);
    if (!id)
        return false;
    h->q2[h->nq2++] = (qos2_rec){id, pid, kind, on, seq};
    h->offsets_acked = true; /* written with the next offsets */
    return true;
}

bool psession_qos2_record(conn *c, char kind, uint16_t pid, bool on)
{
    if (c->clean || !c->client_id || !c->h->st)
        return false;
    return queue_rec(c->h, c->client_id, kind, pid, 0, on);
}

static char *qos2_key(const qos2_rec *r)
{
    if (r->kind == 'd')
        return bt_strdup_printf("q:%s/d%llu", r->client_id, (unsigned long long)r->seq);
    return bt_strdup_printf("q:%s/%c%u", r->client_id, r->kind, (unsigned)r->pid);
}

/* ---- completed seqs above the offset ------------------------------------------------------ */

/* Completed seqs kept per session at most: a client that leaves one delivery pending for
 * ever while it completes later ones cannot grow the set without bound (beyond it, those
 * later ones may come again after a reconnect, as duplicates). */
#define DONE_MAX 65536

bool psession_seq_is_done(const psess *ps, uint64_t seq)
{
    if (!ps)
        return false;
    for (size_t i = 0; i < ps->ndone; i++)
        if (ps->done[i] == seq)
            return true;
    return false;
}

static int done_add(psess *ps, uint64_t seq)
{
    if (psession_seq_is_done(ps, seq))
        return 0;
    if (ps->ndone == ps->capdone) {
        if (ps->ndone >= DONE_MAX)
            return -1;
        size_t cap = ps->capdone ? ps->capdone * 2 : 8;
        uint64_t *v = realloc(ps->done, cap * sizeof *v);
        if (!v)
            return -1;
        ps->done = v;
        ps->capdone = cap;
    }
    ps->done[ps->ndone++] = seq;
    return 0;
}

/* Whether an earlier log delivery of c is still pending, i.e. seq is above the session's
 * offset (session_offset) once seq is done. The window holds log deliveries in seq order,
 * so an in-order completion looks at the first entries only. */
static bool completed_early(const conn *c, uint64_t seq)
{
    for (size_t i = 0; i < c->qlen; i++) {
        const outq_entry *e = &c->q[(c->qhead + i) % c->qcap];
        if (!e->acked && e->seq)
            return e->seq < seq;
    }
    return false;
}

void psession_seq_done(conn *c, uint64_t seq)
{
    hub *h = c->h;
    if (c->clean || !c->client_id || !h->st || !seq || !completed_early(c, seq))
        return;
    psess *ps = psession_get(h, c->client_id, NULL);
    if (!ps || ps->online != c || psession_seq_is_done(ps, seq))
        return;
    if (done_add(ps, seq) == 0 && !queue_rec(h, c->client_id, 'd', 0, seq, true))
        ps->ndone--; /* not stored: not skipped either */
}

/* Forgets the done seqs the offset passed (their records are cleared). */
static void done_prune(hub *h, const char *client_id, psess *ps)
{
    size_t k = 0;
    for (size_t i = 0; i < ps->ndone; i++) {
        if (ps->done[i] > ps->offset || !queue_rec(h, client_id, 'd', 0, ps->done[i], false))
            ps->done[k++] = ps->done[i];
    }
    ps->ndone = k;
}

/* What a written record lets go out: the PUBREL of a released delivery, the PUBCOMP of a
 * cleared received id. */
static void qos2_written(hub *h, const qos2_rec *r)
{
    conn *c = map_get(&h->clients, r->client_id);
    if (!c || c->state != CONN_ACTIVE)
        return;
    if (r->kind == 'o' && r->on) {
        outq_entry *e = session_find(c, r->pid);
        if (e && e->released && e->rel_wait) {
            e->rel_wait = false;
            e->sent_ms = h->now_ms;
            send_ack(c, BT_MQTT_PUBREL, r->pid);
        }
    } else if (r->kind == 'i' && !r->on && !pid_set_has(&c->rx2, r->pid)) {
        send_ack(c, BT_MQTT_PUBCOMP, r->pid);
    }
}

typedef struct {
    const char *prefix;
    char **names;
    size_t n, cap;
} key_list;

static int collect_key(const char *consumer, uint64_t offset, void *arg)
{
    (void)offset;
    key_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->names, cap * sizeof *v);
        if (!v)
            return -1;
        l->names = v;
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(consumer)))
        return -1;
    l->n++;
    return 0;
}

static void key_list_free(key_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static void del_keys(hub *h, key_list *l)
{
    char err[160];
    if (l->n && store_del_offsets(h->st, (const char *const *)l->names, l->n, err, sizeof err) < 0)
        bt_logkv(BT_LOG_ERROR, "deleting QoS 2 packet ids failed", "error", err, NULL);
}

/* "q:<client id>/<kind><pid or seq>" into its parts; false for a name of another form. */
static bool qos2_parse(const char *name, char *id, size_t idcap, char *kind, uint64_t *num)
{
    const char *slash = strrchr(name, '/');
    if (strncmp(name, "q:", 2) || !slash || (size_t)(slash - name - 2) >= idcap ||
        (slash[1] != 'i' && slash[1] != 'o' && slash[1] != 'd') || slash[2] < '1' || slash[2] > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(slash + 2, &end, 10);
    if (*end || errno || (slash[1] != 'd' && v > 65535))
        return false;
    memcpy(id, name + 2, (size_t)(slash - name - 2));
    id[slash - name - 2] = 0;
    *kind = slash[1];
    *num = v;
    return true;
}

typedef struct {
    hub *h;
    key_list stale;
} q2_load_ctx;

static int load_qos2(const char *consumer, uint64_t on, void *arg)
{
    q2_load_ctx *x = arg;
    char id[200], kind;
    uint64_t num;
    psess *ps = NULL;
    if (on && qos2_parse(consumer, id, sizeof id, &kind, &num))
        ps = psession_get(x->h, id, NULL);
    /* cleared, its session gone, or a done seq the offset passed */
    if (!ps || (kind == 'd' && num <= ps->offset))
        return collect_key(consumer, 0, &x->stale);
    if (kind == 'd')
        return done_add(ps, num) < 0 ? collect_key(consumer, 0, &x->stale) : 0;
    return pid_set_add(kind == 'i' ? &ps->rx2 : &ps->rel, (uint16_t)num);
}

int psession_qos2_load(hub *h, char *err, size_t errlen)
{
    if (!h->st)
        return 0;
    q2_load_ctx x = {h, {0}};
    int rc = store_load_offsets(h->st, "q:", load_qos2, &x, err, errlen);
    if (rc == 0)
        del_keys(h, &x.stale);
    key_list_free(&x.stale);
    return rc;
}

/* Forgets the stored QoS 2 ids of a dropped session, and those waiting to be written. */
static void qos2_drop(hub *h, const char *client_id)
{
    size_t k = 0;
    for (size_t i = 0; i < h->nq2; i++) {
        if (!strcmp(h->q2[i].client_id, client_id))
            free(h->q2[i].client_id);
        else
            h->q2[k++] = h->q2[i];
    }
    h->nq2 = k;
    char *prefix = bt_strdup_printf("q:%s/", client_id);
    if (!prefix)
        return;
    key_list l = {0};
    char err[160];
    if (store_load_offsets(h->st, prefix, collect_key, &l, err, sizeof err) < 0)
        bt_logkv(BT_LOG_ERROR, "reading QoS 2 packet ids failed", "error", err, NULL);
    else
        del_keys(h, &l);
    key_list_free(&l);
    free(prefix);
}

psess *psession_get(hub *h, const char *client_id, const char *owner)
{
    psess *ps = map_get(&h->psessions, client_id);
    if (ps || !owner)
        return ps;
    ps = calloc(1, sizeof *ps);
    if (!ps || !(ps->owner = strdup(owner))) {
        free(ps);
        return NULL;
    }
    /* A new session starts at the end of the log: older messages were not for it. */
    ps->offset = h->last_seq;
    ps->offset_dirty = true;
    if (map_put(&h->psessions, client_id, ps, NULL) < 0) {
        psess_free(ps);
        return NULL;
    }
    return ps;
}

void psession_drop(hub *h, const char *client_id)
{
    psess *ps = map_del(&h->psessions, client_id);
    if (!ps)
        return;
    if (!ps->online)
        offline_subs(h, ps, false);
    psess_free(ps);
    char err[160];
    if (h->st) {
        qos2_drop(h, client_id);
        char *x = bt_strdup_printf("x:%s", client_id);
        if (x && store_del_offset(h->st, x, err, sizeof err) < 0)
            bt_logkv(BT_LOG_ERROR, "deleting session expiry failed", "client", client_id, "error",
                     err, NULL);
        free(x);
        char consumer[160];
        snprintf(consumer, sizeof consumer, "s:%s", client_id);
        if (store_del_session(h->st, client_id, err, sizeof err) < 0 ||
            store_del_offset(h->st, consumer, err, sizeof err) < 0)
            bt_logkv(BT_LOG_ERROR, "deleting session failed", "client", client_id, "error", err,
                     NULL);
    }
}

typedef struct {
    hub *h;
    int rc;
} load_ctx;

static int load_session(const char *client_id, const char *owner, const store_sub *subs, size_t n,
                        void *arg)
{
    load_ctx *x = arg;
    psess *ps = calloc(1, sizeof *ps);
    if (!ps)
        return -1;
    if (owner && !(ps->owner = strdup(owner))) {
        free(ps);
        return -1;
    }
    ps->subs = n ? calloc(n, sizeof *ps->subs) : NULL;
    if (n && !ps->subs) {
        psess_free(ps);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        ps->subs[i].filter = strdup(subs[i].filter);
        ps->subs[i].qos = subs[i].qos > 2 ? 2 : subs[i].qos;
        ps->subs[i].opts = subs[i].opts;
        ps->subs[i].id = subs[i].id;
        if (!ps->subs[i].filter) {
            ps->nsubs = i;
            psess_free(ps);
            return -1;
        }
    }
    ps->nsubs = n;
    if (map_put(&x->h->psessions, client_id, ps, NULL) < 0) {
        psess_free(ps);
        return -1;
    }
    offline_subs(x->h, ps, true);
    return 0;
}

typedef struct {
    hub *h;
    int rc;
    char *err;
    size_t errlen;
} off_ctx;

static void load_offset(const char *key, void *value, void *arg)
{
    off_ctx *x = arg;
    psess *ps = value;
    char consumer[160];
    snprintf(consumer, sizeof consumer, "s:%s", key);
    if (x->rc == 0 && store_get_offset(x->h->st, consumer, &ps->offset, x->err, x->errlen) < 0)
        x->rc = -1;
}

/* A stored session expiry time ("x:<id>"): the session ends then, even across restarts. */
static int load_expiry(const char *consumer, uint64_t at, void *arg)
{
    psess *ps = psession_get(arg, consumer + 2, NULL);
    if (ps)
        ps->expire_at = (int64_t)at;
    return 0;
}

int psession_load(hub *h, char *err, size_t errlen)
{
    if (!h->st)
        return 0;
    load_ctx lx = {h, 0};
    if (store_load_sessions(h->st, load_session, &lx, err, errlen) < 0)
        return -1;
    off_ctx ox = {h, 0, err, errlen};
    map_each(&h->psessions, load_offset, &ox);
    if (ox.rc < 0)
        return -1;
    return store_load_offsets(h->st, "x:", load_expiry, h, err, errlen);
}

static void offsets_add(psession_offsets *o, const char *client_id, psess *ps)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        store_offset *v = realloc(o->v, cap * sizeof *v);
        if (!v)
            return; /* stays dirty: written at the next flush */
        o->v = v;
        o->cap = cap;
    }
    char *name = bt_strdup_printf("s:%s", client_id);
    if (!name)
        return;
    o->v[o->n++] = (store_offset){name, ps->offset};
    ps->offset_dirty = false;
}

/* Brings the offset of c's persistent session up to date; the session when c has one. */
static psess *online_offset(hub *h, conn *c)
{
    if (c->state != CONN_ACTIVE || c->clean || !c->client_id)
        return NULL;
    psess *ps = psession_get(h, c->client_id, NULL);
    if (!ps || ps->online != c)
        return NULL;
    uint64_t off = session_offset(c);
    if (off != ps->offset) {
        ps->offset = off;
        ps->offset_dirty = true;
        if (ps->ndone)
            done_prune(h, c->client_id, ps);
    }
    return ps;
}

static void take_away(const char *key, void *value, void *arg)
{
    psess *ps = value;
    if (!ps->online && ps->offset_dirty)
        offsets_add(arg, key, ps);
}

void psession_offsets_take(hub *h, bool away_too, psession_offsets *o)
{
    memset(o, 0, sizeof *o);
    for (conn *c = h->conns; c; c = c->next) {
        psess *ps = online_offset(h, c);
        if (ps && ps->offset_dirty)
            offsets_add(o, c->client_id, ps);
    }
    if (away_too)
        map_each(&h->psessions, take_away, o);
    /* QoS 2 packet ids ride along; the records move to o->q2 until done. */
    for (size_t i = 0; i < h->nq2; i++) {
        const qos2_rec *r = &h->q2[i];
        if (o->n == o->cap) {
            size_t cap = o->cap ? o->cap * 2 : 16;
            store_offset *v = realloc(o->v, cap * sizeof *v);
            if (!v)
                break;
            o->v = v;
            o->cap = cap;
        }
        char *name = qos2_key(r);
        if (!name)
            break;
        o->v[o->n++] = (store_offset){name, r->on ? 1 : 0};
        o->nq2++;
    }
    o->q2 = h->q2;
    o->q2_taken = o->nq2;
    o->q2_all = h->nq2;
    h->q2 = NULL;
    h->nq2 = h->capq2 = 0;
    h->offsets_acked = false;
}

/* The QoS 2 records of o after its write: what they let go out, and the cleared ones
 * deleted; records not written (or not taken) wait for the next write. */
static void qos2_done(hub *h, psession_offsets *o, bool written)
{
    key_list cleared = {0};
    size_t keep = 0;
    for (size_t i = 0; i < o->q2_all; i++) {
        qos2_rec *r = &o->q2[i];
        if (!written || i >= o->q2_taken) {
            o->q2[keep++] = *r;
            continue;
        }
        qos2_written(h, r);
        if (!r->on) {
            char *name = qos2_key(r);
            if (name && collect_key(name, 0, &cleared) < 0)
                bt_logkv(BT_LOG_WARN, "out of memory: a cleared QoS 2 id stays stored", NULL);
            free(name);
        }
        free(r->client_id);
    }
    if (h->st)
        del_keys(h, &cleared);
    key_list_free(&cleared);
    if (!keep) {
        free(o->q2);
        return;
    }
    /* Kept records go before those queued meanwhile, in order. */
    qos2_rec *v = realloc(o->q2, (keep + h->nq2) * sizeof *v);
    if (!v) {
        for (size_t i = 0; i < keep; i++)
            free(o->q2[i].client_id);
        free(o->q2);
        bt_logkv(BT_LOG_ERROR, "out of memory: QoS 2 packet ids not stored", NULL);
        return;
    }
    if (h->nq2)
        memcpy(v + keep, h->q2, h->nq2 * sizeof *v);
    free(h->q2);
    h->q2 = v;
    h->nq2 = h->capq2 = keep + h->nq2;
    h->offsets_acked = true;
}

void psession_offsets_done(hub *h, psession_offsets *o, bool written)
{
    for (size_t i = 0; i < o->n - o->nq2; i++) {
        psess *ps = written ? NULL : psession_get(h, o->v[i].consumer + 2, NULL);
        if (ps)
            ps->offset_dirty = true; /* written at the next flush */
    }
    for (size_t i = 0; i < o->n; i++)
        free((char *)o->v[i].consumer);
    qos2_done(h, o, written);
    free(o->v);
    memset(o, 0, sizeof *o);
}

void psession_set_expiry(hub *h, psess *ps, const char *client_id, int64_t at)
{
    if (ps->expire_at == at)
        return;
    ps->expire_at = at;
    if (!h->st)
        return;
    char *name = bt_strdup_printf("x:%s", client_id);
    char err[160];
    store_offset o = {name, (uint64_t)at};
    if (name && (at ? store_set_offsets(h->st, &o, 1, err, sizeof err)
                    : store_del_offset(h->st, name, err, sizeof err)) < 0)
        bt_logkv(BT_LOG_ERROR, "storing session expiry failed", "client", client_id, "error", err,
                 NULL);
    free(name);
}

typedef struct {
    int64_t now;
    key_list ids;
} expire_ctx;

static void expired_each(const char *key, void *value, void *arg)
{
    expire_ctx *x = arg;
    const psess *ps = value;
    if (!ps->online && ps->expire_at && x->now >= ps->expire_at)
        collect_key(key, 0, &x->ids);
}

/* Drops the away sessions whose 5.0 expiry interval has passed. */
static void expire_sessions(hub *h)
{
    expire_ctx x = {hub_wall_ms(), {0}};
    map_each(&h->psessions, expired_each, &x);
    for (size_t i = 0; i < x.ids.n; i++) {
        bt_logkv(BT_LOG_INFO, "session expired", "client", x.ids.names[i], NULL);
        psession_drop(h, x.ids.names[i]);
    }
    key_list_free(&x.ids);
}

void psession_flush_offsets(hub *h, bool away_too)
{
    if (away_too && h->psessions.n)
        expire_sessions(h);
    if (!h->st || !h->psessions.n)
        return;
    psession_offsets o;
    psession_offsets_take(h, away_too, &o);
    size_t batch = (size_t)h->cfg->offset_batch;
    bool ok = true;
    for (size_t i = 0; i < o.n && ok; i += batch) {
        size_t k = o.n - i < batch ? o.n - i : batch;
        char err[160];
        if (store_set_offsets(h->st, o.v + i, k, err, sizeof err) < 0) {
            bt_logkv(BT_LOG_ERROR, "writing offsets failed", "error", err, NULL);
            ok = false;
        }
    }
    psession_offsets_done(h, &o, ok);
}

void psession_save_subs(conn *c)
{
    hub *h = c->h;
    if (c->clean || !c->client_id)
        return;
    psess *ps = psession_get(h, c->client_id, c->principal->username);
    if (!ps)
        return;
    conn_sub *copy = c->nsubs ? calloc(c->nsubs, sizeof *copy) : NULL;
    store_sub *ss = c->nsubs ? calloc(c->nsubs, sizeof *ss) : NULL;
    if (c->nsubs && (!copy || !ss)) {
        free(copy);
        free(ss);
        return;
    }
    for (size_t i = 0; i < c->nsubs; i++) {
        copy[i].filter = strdup(c->subs[i].filter);
        copy[i].qos = c->subs[i].qos;
        copy[i].opts = c->subs[i].opts;
        copy[i].id = c->subs[i].id;
        ss[i].filter = c->subs[i].filter;
        ss[i].qos = c->subs[i].qos;
        ss[i].opts = c->subs[i].opts;
        ss[i].id = c->subs[i].id;
        if (!copy[i].filter) {
            for (size_t k = 0; k < i; k++)
                free(copy[k].filter);
            free(copy);
            free(ss);
            return;
        }
    }
    for (size_t i = 0; i < ps->nsubs; i++)
        free(ps->subs[i].filter);
    free(ps->subs);
    ps->subs = copy;
    ps->nsubs = c->nsubs;
    if (h->st) {
        char err[160];
        if (store_put_session(h->st, c->client_id, ps->owner, ss, c->nsubs, err, sizeof err) < 0)
            bt_logkv(BT_LOG_ERROR, "storing session failed", "client", c->client_id, "error", err,
                     NULL);
    }
    free(ss);
}

static void min_offset(const char *key, void *value, void *arg)
{
    (void)key;
    const psess *ps = value;
    uint64_t *min = arg;
    if (!ps->online && ps->offset < *min)
        *min = ps->offset;
}

void psession_min_offset(hub *h, uint64_t *min)
{
    map_each(&h->psessions, min_offset, min);
}

static void free_each(const char *key, void *value, void *arg)
{
    psess_free(value);
}

void psession_free_all(hub *h)
{
    for (size_t i = 0; i < h->nq2; i++)
        free(h->q2[i].client_id);
    free(h->q2);
    h->q2 = NULL;
    h->nq2 = h->capq2 = 0;
    map_each(&h->psessions, free_each, NULL);
    map_free(&h->psessions);
    trie_free(&h->offline);
}
