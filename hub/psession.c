/* Persistent sessions (clean session 0): subscriptions and the acknowledged log offset of
 * each, kept in memory and in the store. The offsets of connected sessions are written
 * with the group commit of the turn in which they were acknowledged (or on their own at the
 * end of a turn without commit); a crash replays at most what was acknowledged in the
 * last turn (duplicates, never losses). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/log.h"
#include "baetyl/util.h"
#include "hub.h"

static void offline_subs(hub *h, psess *ps, bool add)
{
    for (size_t i = 0; i < ps->nsubs; i++) {
        if (add)
            trie_add(&h->offline, ps->subs[i].filter, ps, ps->subs[i].qos);
        else
            trie_remove(&h->offline, ps->subs[i].filter, ps);
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
    free(ps);
}

void psession_release_held(psess *ps)
{
    for (size_t i = 0; i < ps->nheld; i++)
        msg_unref(ps->held[i]);
    free(ps->held);
    ps->held = NULL;
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
    if (!held)
        return; /* out of memory: the copies are lost, the retained messages are not */
    ps->held = held;
    for (size_t i = 0; i < c->qlen; i++) {
        const outq_entry *e = &c->q[(c->qhead + i) % c->qcap];
        if (hold_fits(e, &budget))
            ps->held[ps->nheld++] = msg_ref(e->m);
    }
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
        ps->subs[i].qos = subs[i].qos > 1 ? 1 : subs[i].qos;
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

int psession_load(hub *h, char *err, size_t errlen)
{
    if (!h->st)
        return 0;
    load_ctx lx = {h, 0};
    if (store_load_sessions(h->st, load_session, &lx, err, errlen) < 0)
        return -1;
    off_ctx ox = {h, 0, err, errlen};
    map_each(&h->psessions, load_offset, &ox);
    return ox.rc;
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
    h->offsets_acked = false;
}

void psession_offsets_done(hub *h, psession_offsets *o, bool written)
{
    for (size_t i = 0; i < o->n; i++) {
        psess *ps = written ? NULL : psession_get(h, o->v[i].consumer + 2, NULL);
        if (ps)
            ps->offset_dirty = true; /* written at the next flush */
        free((char *)o->v[i].consumer);
    }
    free(o->v);
    memset(o, 0, sizeof *o);
}

void psession_flush_offsets(hub *h, bool away_too)
{
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
        ss[i].filter = c->subs[i].filter;
        ss[i].qos = c->subs[i].qos;
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
    map_each(&h->psessions, free_each, NULL);
    map_free(&h->psessions);
    trie_free(&h->offline);
}
