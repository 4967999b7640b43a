/* Shared subscriptions `$share/<group>/<filter>` (MQTT 5.0 §4.8.2, taken by 3.1.1 clients
 * too, as mosquitto does): each message matching the filter goes to one connected member of
 * the group, round robin, preferring members with room in their QoS 1/2 window. A shared
 * delivery is held in memory (not read back from the log), so when a member leaves with it
 * unacknowledged it goes to another member. When every member's window is full, QoS 1/2
 * messages wait in the group (bounded) and go out at the end of a turn. A persistent session
 * whose client is away stays a member (`away`): while no member is connected, QoS 1/2
 * messages wait in the group, in memory, for the first one to come back (MQTT 5.0 §4.8.2
 * leaves the choice). Groups without members are freed by hub_tick, never in the middle of
 * a dispatch. */
#include <stdlib.h>
#include <string.h>

#include "baetyl/topic.h"
#include "hub.h"

typedef struct {
    conn *c;
    uint8_t qos;
} member;

/* QoS 1/2 messages a group keeps while every connected member's window is full; beyond,
 * new ones are dropped and counted (like mosquitto's max_queued_messages). */
#define SHARED_QUEUE_MAX 1000

struct shgroup {
    char *name;         /* "$share/<group>/<filter>" */
    const char *filter; /* inside name */
    member *m;
    size_t n, cap, rr;
    psess **away; /* member sessions whose client is away */
    size_t naway, capaway;
    msg_vec q; /* waiting for room in a member's window, oldest first */
};

const char *shared_filter(const char *f, size_t len)
{
    if (len < 8 || len > BT_TOPIC_MAX_LEN || memcmp(f, "$share/", 7) != 0)
        return NULL;
    const char *g = f + 7, *slash = memchr(g, '/', len - 7);
    if (!slash || slash == g || memchr(g, '+', (size_t)(slash - g)) ||
        memchr(g, '#', (size_t)(slash - g)))
        return NULL;
    const char *inner = slash + 1;
    size_t ilen = len - (size_t)(inner - f);
    return ilen && bt_topic_valid_filter(inner, ilen) ? inner : NULL;
}

bool shared_match(const char *filter, const char *topic)
{
    const char *inner = shared_filter(filter, strlen(filter));
    return bt_topic_match(inner ? inner : filter, topic);
}

/* The group of name, created when missing; NULL when out of memory or not a valid name. */
static shgroup *group_get(hub *h, const char *name)
{
    shgroup *g = map_get(&h->shared, name);
    if (g)
        return g;
    g = calloc(1, sizeof *g);
    if (!g || !(g->name = strdup(name))) {
        free(g);
        return NULL;
    }
    g->filter = shared_filter(g->name, strlen(g->name));
    if (!g->filter || map_put(&h->shared, name, g, NULL) < 0) {
        free(g->name);
        free(g);
        return NULL;
    }
    if (trie_add(&h->shared_subs, g->filter, g, 2) < 0) {
        map_del(&h->shared, name);
        free(g->name);
        free(g);
        return NULL;
    }
    return g;
}

static bool group_empty(const shgroup *g)
{
    return !g->n && !g->naway;
}

int shared_away(hub *h, const char *name, psess *ps, bool away)
{
    shgroup *g = away ? group_get(h, name) : map_get(&h->shared, name);
    if (!g)
        return away ? -1 : 0;
    for (size_t i = 0; i < g->naway; i++)
        if (g->away[i] == ps) {
            if (!away) {
                g->away[i] = g->away[--g->naway];
                h->shared_empty = h->shared_empty || group_empty(g);
            }
            return 0;
        }
    if (!away)
        return 0;
    if (g->naway == g->capaway) {
        size_t cap = g->capaway ? g->capaway * 2 : 4;
        psess **v = realloc(g->away, cap * sizeof *v);
        if (!v) {
            h->shared_empty = h->shared_empty || group_empty(g);
            return -1;
        }
        g->away = v;
        g->capaway = cap;
    }
    g->away[g->naway++] = ps;
    return 0;
}

int shared_join(conn *c, const char *name, uint8_t qos)
{
    hub *h = c->h;
    shgroup *g = group_get(h, name);
    if (!g)
        return -1;
    for (size_t i = 0; i < g->n; i++)
        if (g->m[i].c == c) {
            g->m[i].qos = qos;
            return 0;
        }
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 4;
        member *m = realloc(g->m, cap * sizeof *m);
        if (!m) {
            h->shared_empty = h->shared_empty || group_empty(g);
            return -1;
        }
        g->m = m;
        g->cap = cap;
    }
    g->m[g->n++] = (member){c, qos};
    return 0;
}

void shared_leave(conn *c, const char *name)
{
    shgroup *g = map_get(&c->h->shared, name);
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++)
        if (g->m[i].c == c) {
            memmove(&g->m[i], &g->m[i + 1], (g->n - i - 1) * sizeof *g->m);
            g->n--;
            break;
        }
    if (group_empty(g))
        c->h->shared_empty = true;
}

/* The member to take the next message of g: round robin among the connected ones but
 * skip, the first with room in its window; *none tells that no member is connected. NULL
 * when none has room. */
static member *pick(shgroup *g, const conn *skip, bool *none)
{
    *none = true;
    for (size_t k = 0; k < g->n; k++) {
        member *m = &g->m[(g->rr + k) % g->n];
        if (m->c == skip || m->c->state != CONN_ACTIVE)
            continue;
        *none = false;
        if (session_has_room(m->c)) {
            g->rr = (size_t)(m - g->m) + 1;
            return m;
        }
    }
    return NULL;
}

/* Gives m (at most QoS q) to one member of g but skip. When every member's window is full a
 * QoS 0 message goes to the next member in turn (its QoS 0 drop rule applies), a QoS 1/2
 * one waits in the group (up to SHARED_QUEUE_MAX, or beyond with force); so it does when
 * no member is connected but some is away. False when it went nowhere: no member
 * connected (and for QoS 0, or with none away), or the queue full. */
static bool offer(hub *h, shgroup *g, msg *m, uint8_t q, const conn *skip, bool force)
{
    bool none;
    member *mb = pick(g, skip, &none);
    if (mb) {
        session_deliver_shared(mb->c, m, mb->qos < q ? mb->qos : q);
        return true;
    }
    if (none && (!g->naway || q == 0))
        return false;
    if (q == 0) {
        for (size_t k = 0; k < g->n; k++) {
            member *x = &g->m[(g->rr + k) % g->n];
            if (x->c != skip && x->c->state == CONN_ACTIVE) {
                g->rr = (size_t)(x - g->m) + 1;
                session_deliver_shared(x->c, m, 0);
                return true;
            }
        }
        return false;
    }
    if ((g->q.n >= SHARED_QUEUE_MAX && !force) || msg_vec_push(&g->q, msg_ref(m)) < 0) {
        if (g->q.n < SHARED_QUEUE_MAX || force)
            msg_unref(m); /* the push failed: drop the reference taken for it */
        h->ctr.shared_dropped++;
        return false;
    }
    h->shared_queued++;
    return true;
}

static void collect_cb(void *owner, uint8_t qos, void *arg)
{
    (void)qos;
    hub *h = arg;
    if (h->nshmatch == h->capshmatch) {
        size_t cap = h->capshmatch ? h->capshmatch * 2 : 16;
        shgroup **v = realloc(h->shmatch, cap * sizeof *v);
        if (!v)
            return;
        h->shmatch = v;
        h->capshmatch = cap;
    }
    h->shmatch[h->nshmatch++] = owner;
}

void shared_dispatch(hub *h, msg *m)
{
    h->nshmatch = 0;
    trie_match(&h->shared_subs, m->topic, collect_cb, h);
    /* groups are only freed by hub_tick: a member closed by a delivery leaves them valid */
    for (size_t i = 0; i < h->nshmatch; i++)
        offer(h, h->shmatch[i], m, m->qos, NULL, false);
}

void shared_redeliver(conn *c)
{
    hub *h = c->h;
    for (size_t i = 0; i < c->qlen; i++) {
        outq_entry *e = &c->q[(c->qhead + i) % c->qcap];
        if (!e->shared || e->acked || e->released || !e->m)
            continue;
        for (size_t k = 0; k < c->nsubs; k++) {
            shgroup *g = shared_filter(c->subs[k].filter, strlen(c->subs[k].filter))
                             ? map_get(&h->shared, c->subs[k].filter)
                             : NULL;
            /* at the QoS it was sent at, within the new member's subscription; the other
             * member has it then: not held for c's session */
            if (g && bt_topic_match(g->filter, e->m->topic) && offer(h, g, e->m, e->qos, c, true)) {
                session_entry_acked(c, e);
                break;
            }
        }
    }
}

/* Fills h->shmatch with (at most capshmatch of) the groups that hold messages (queued) or
 * have no member left (!queued). 0, or -1 when out of memory (tried again later). */
typedef struct {
    hub *h;
    bool queued;
} collect_ctx;

static void collect_each(const char *key, void *value, void *arg)
{
    (void)key;
    shgroup *g = value;
    collect_ctx *x = arg;
    hub *h = x->h;
    if ((x->queued ? g->q.n != 0 : group_empty(g)) && h->nshmatch < h->capshmatch)
        h->shmatch[h->nshmatch++] = g;
}

static int collect(hub *h, bool queued)
{
    if (!h->capshmatch) {
        if (!(h->shmatch = malloc(16 * sizeof *h->shmatch)))
            return -1;
        h->capshmatch = 16;
    }
    h->nshmatch = 0;
    collect_ctx x = {h, queued};
    map_each(&h->shared, collect_each, &x);
    return 0;
}

void shared_drain(hub *h)
{
    if (!h->shared_queued || collect(h, true) < 0)
        return;
    for (size_t i = 0; i < h->nshmatch; i++) {
        shgroup *g = h->shmatch[i];
        size_t done = 0;
        bool none = false;
        member *mb;
        while (done < g->q.n && (mb = pick(g, NULL, &none)) != NULL) {
            msg *m = g->q.v[done++];
            session_deliver_shared(mb->c, m, mb->qos < m->qos ? mb->qos : m->qos);
        }
        if (none && !g->naway) { /* nobody left to take them */
            h->ctr.shared_dropped += g->q.n - done;
            done = g->q.n;
        }
        for (size_t k = 0; k < done; k++)
            msg_unref(g->q.v[k]);
        memmove(g->q.v, g->q.v + done, (g->q.n - done) * sizeof *g->q.v);
        g->q.n -= done;
        h->shared_queued -= done;
    }
}

static void drop_queue(hub *h, shgroup *g)
{
    for (size_t i = 0; i < g->q.n; i++)
        msg_unref(g->q.v[i]);
    h->shared_queued -= g->q.n;
    free(g->q.v);
    g->q = (msg_vec){0};
}

void shared_gc(hub *h)
{
    if (!h->shared_empty)
        return;
    h->shared_empty = false;
    for (;;) {
        if (collect(h, false) < 0) {
            h->shared_empty = true; /* tried again at the next tick */
            return;
        }
        if (!h->nshmatch)
            break;
        for (size_t i = 0; i < h->nshmatch; i++) {
            shgroup *g = h->shmatch[i];
            trie_remove(&h->shared_subs, g->filter, g);
            map_del(&h->shared, g->name);
            drop_queue(h, g);
            free(g->m);
            free(g->away);
            free(g->name);
            free(g);
        }
        if (h->nshmatch < h->capshmatch)
            break;
    }
}

static void free_each(const char *key, void *value, void *arg)
{
    (void)key;
    shgroup *g = value;
    drop_queue(arg, g);
    free(g->m);
    free(g->away);
    free(g->name);
    free(g);
}

void shared_free_all(hub *h)
{
    map_each(&h->shared, free_each, h);
    map_free(&h->shared);
    trie_free(&h->shared_subs);
    free(h->shmatch);
    h->shmatch = NULL;
    h->nshmatch = h->capshmatch = 0;
}
