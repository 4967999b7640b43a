/* The broker: publishing (retain, routes, QoS 0 dispatch, QoS 1 group commit then
 * dispatch then PUBACK), the end-of-turn work and the periodic work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "baetyl/log.h"
#include "baetyl/topic.h"
#include "hub.h"
#include "route.h"

int64_t hub_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void match_cb(void *owner, uint8_t qos, void *arg)
{
    hub *h = arg;
    conn *c = owner;
    if (c->mark == h->dispatch_mark) {
        if (qos > c->mark_qos)
            c->mark_qos = qos;
        return;
    }
    if (h->nmatch == h->capmatch) {
        size_t cap = h->capmatch ? h->capmatch * 2 : 64;
        void *p = realloc(h->match, cap * sizeof *h->match);
        if (!p)
            return;
        h->match = p;
        h->capmatch = cap;
    }
    c->mark = h->dispatch_mark;
    c->mark_qos = qos;
    h->match[h->nmatch].c = c;
    h->nmatch++;
}

void hub_dispatch(hub *h, msg *m)
{
    h->dispatch_mark++;
    h->nmatch = 0;
    trie_match(&h->subs, m->topic, match_cb, h);
    for (size_t i = 0; i < h->nmatch; i++) {
        conn *c = h->match[i].c;
        uint8_t q = c->mark_qos < m->qos ? c->mark_qos : m->qos;
        session_deliver(c, m, q, false);
    }
}

static void live_qos1_cb(void *owner, uint8_t qos, void *arg)
{
    (void)owner;
    if (qos)
        *(bool *)arg = true;
}

static void any_cb(void *owner, uint8_t qos, void *arg)
{
    (void)owner;
    (void)qos;
    *(bool *)arg = true;
}

/* Whether a consumer may read m from the log: a connected client's QoS 1 subscription (its
 * window or catch-up reads the log) or any subscription of an away persistent session. */
static bool log_needed(hub *h, const msg *m)
{
    bool need = false;
    trie_match(&h->subs, m->topic, live_qos1_cb, &need);
    if (!need)
        trie_match(&h->offline, m->topic, any_cb, &need);
    return need;
}

uint64_t hub_log_done(hub *h)
{
    uint64_t done = h->last_seq;
    for (conn *c = h->conns; c; c = c->next)
        if (c->state == CONN_ACTIVE) {
            uint64_t off = session_offset(c);
            done = off < done ? off : done;
        }
    psession_min_offset(h, &done);
    return done;
}

/* Deletes the log every consumer is done with; how many, or -1. */
static long trim_log(hub *h)
{
    char err[160];
    long n = store_trim(h->st, hub_log_done(h), hub_wall_ms(), err, sizeof err);
    if (n < 0)
        bt_logkv(BT_LOG_ERROR, "trimming the message log failed", "error", err, NULL);
    else if (n > 0)
        bt_logf(BT_LOG_DEBUG, "deleted %ld messages every consumer had", n);
    return n;
}

/* Appends the messages of log that a consumer needs in one commit; the others keep seq 0
 * (delivered live only). A full store is trimmed of what every consumer has, then tried
 * again once. */
static int log_append(hub *h, msg_vec *log, char *err, size_t errlen)
{
    store_msg *sm = log->n ? calloc(log->n, sizeof *sm) : NULL;
    msg **kept = log->n ? calloc(log->n, sizeof *kept) : NULL;
    uint64_t *seqs = log->n ? calloc(log->n, sizeof *seqs) : NULL;
    int rc = log->n && (!sm || !kept || !seqs) ? -1 : 0;
    size_t n = 0;
    for (size_t i = 0; rc == 0 && i < log->n; i++) {
        msg *m = log->v[i];
        if (!log_needed(h, m))
            continue;
        kept[n] = m;
        sm[n++] = (store_msg){m->topic, m->topic_len, m->payload, m->payload_len, 1, m->retain,
                              m->ts_ms};
    }
    if (rc == 0 && n) {
        if (!h->st) {
            for (size_t i = 0; i < n; i++)
                seqs[i] = h->last_seq + 1 + i;
        } else {
            /* Acknowledgements of this turn ride along: fewer resends after a crash. */
            psession_offsets o = {0};
            if (h->offsets_acked)
                psession_offsets_take(h, false, &o);
            rc = store_append(h->st, sm, n, seqs, o.v, o.n, err, errlen);
            if (rc < 0 && trim_log(h) > 0)
                rc = store_append(h->st, sm, n, seqs, o.v, o.n, err, errlen);
            psession_offsets_done(h, &o, rc == 0);
        }
    }
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            kept[i]->seq = seqs[i];
        h->ctr.committed += n;
    }
    free(sm);
    free(kept);
    free(seqs);
    return rc;
}

int hub_publish(hub *h, msg *m, conn *pub_conn, uint16_t pid)
{
    h->ctr.msgs_in++;
    if (m->retain)
        retain_set(h, m);
    if (m->qos == 0) {
        hub_dispatch(h, m);
        if (h->cfg->subscriptions.n) {
            msg_vec log = {0}, zero = {0};
            size_t budget = ROUTE_COPIES_MAX;
            route_copies(h->cfg, m, &log, &zero, &budget);
            for (size_t i = 0; i < zero.n; i++) {
                hub_dispatch(h, zero.v[i]);
                msg_unref(zero.v[i]);
            }
            for (size_t i = 0; i < log.n; i++)
                msg_unref(log.v[i]); /* cannot happen: a QoS 0 message routes at QoS 0 */
            free(zero.v);
            free(log.v);
        }
        return 0;
    }
    h->ctr.qos1_in++;
    if (h->npend == h->cappend) {
        size_t cap = h->cappend ? h->cappend * 2 : 64;
        pending_pub *p = realloc(h->pend, cap * sizeof *p);
        if (!p) {
            if (pub_conn)
                conn_close(pub_conn, "out of memory");
            return -1;
        }
        h->pend = p;
        h->cappend = cap;
    }
    h->pend[h->npend++] = (pending_pub){pub_conn, pid, msg_ref(m)};
    if (h->npend >= (size_t)h->cfg->in_qos1_batch)
        hub_commit(h);
    return 0;
}

void hub_commit(hub *h)
{
    if (!h->npend)
        return;
    size_t npend = h->npend;
    pending_pub *pend = h->pend;
    /* Take the batch: publishing below (wills of failed connections) may add new ones. */
    h->pend = NULL;
    h->npend = h->cappend = 0;

    msg_vec log = {0}, zero = {0};
    bool oom = false;
    for (size_t i = 0; i < npend && !oom; i++) {
        if (msg_vec_push(&log, msg_ref(pend[i].m)) < 0) {
            msg_unref(pend[i].m);
            oom = true;
            break;
        }
        if (h->cfg->subscriptions.n) {
            size_t budget = ROUTE_COPIES_MAX;
            route_copies(h->cfg, pend[i].m, &log, &zero, &budget);
        }
    }
    char err[200] = "out of memory";
    int rc = oom ? -1 : log_append(h, &log, err, sizeof err);
    if (rc < 0) {
        bt_logkv(BT_LOG_ERROR, "committing QoS 1 messages failed", "error", err, NULL);
        /* No PUBACK: the publishers resend after reconnecting. */
        for (size_t i = 0; i < npend; i++)
            if (pend[i].c)
                conn_close(pend[i].c, "message store failed");
    } else {
        uint64_t last = h->last_seq;
        for (size_t i = 0; i < log.n; i++) {
            hub_dispatch(h, log.v[i]);
            last = log.v[i]->seq > last ? log.v[i]->seq : last;
        }
        h->last_seq = last;
        for (size_t i = 0; i < zero.n; i++)
            hub_dispatch(h, zero.v[i]);
        for (size_t i = 0; i < npend; i++) {
            conn *c = pend[i].c;
            if (c && c->state == CONN_ACTIVE)
                send_puback(c, pend[i].pid);
        }
    }
    for (size_t i = 0; i < log.n; i++)
        msg_unref(log.v[i]);
    for (size_t i = 0; i < zero.n; i++)
        msg_unref(zero.v[i]);
    for (size_t i = 0; i < npend; i++)
        msg_unref(pend[i].m);
    free(log.v);
    free(zero.v);
    free(pend);
}

void hub_turn_end(hub *h)
{
    will_publish_queued(h);
    hub_commit(h);
    if (h->offsets_acked)
        psession_flush_offsets(h, false);
    while (h->pump) {
        conn *c = h->pump;
        h->pump = c->pump_next;
        c->in_pump = false;
        c->pump_next = NULL;
        session_pump(c);
    }
    while (h->dirty) {
        conn *c = h->dirty;
        h->dirty = c->dirty_next;
        c->in_dirty = false;
        c->dirty_next = NULL;
        if (c->state != CONN_CLOSED)
            conn_flush(c);
    }
    while (h->closed) {
        conn *c = h->closed;
        h->closed = c->next;
        conn_free(c);
    }
}

void hub_tick(hub *h)
{
    int64_t now = h->now_ms;
    int64_t ka_deadline_connect = 30000; /* decided here: CONNECT must come within 30 s */
    for (conn *c = h->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_NEW && c->tr->handshaking && now - c->created_ms > h->cfg->handshake_timeout_ms) {
            conn_close(c, "handshake timeout");
            continue;
        }
        if (c->state == CONN_NEW && now - c->created_ms > ka_deadline_connect) {
            conn_close(c, "no CONNECT in time");
            continue;
        }
        if (c->state == CONN_ACTIVE && c->keepalive && now - c->last_rx_ms > (int64_t)c->keepalive * 1500) {
            conn_close(c, "keepalive timeout");
            continue;
        }
        if (c->qlen)
            session_retry(c);
    }
    if (now >= h->next_offsets_ms) {
        psession_flush_offsets(h, true);
        h->next_offsets_ms = now + 200;
    }
    if (h->st && now >= h->next_cleanup_ms) {
        char err[160];
        long n = store_cleanup(h->st, hub_wall_ms(), h->cfg->retention_ms, err, sizeof err);
        if (n < 0)
            bt_logkv(BT_LOG_ERROR, "cleaning up old messages failed", "error", err, NULL);
        else if (n > 0)
            bt_logf(BT_LOG_DEBUG, "deleted %ld messages older than the retention", n);
        trim_log(h);
        h->next_cleanup_ms = now + h->cfg->cleanup_interval_ms;
    }
}

int hub_init(hub *h, hub_config *cfg, store *st, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    h->cfg = cfg;
    h->st = st;
    h->epfd = -1;
    h->now_ms = bt_now_ms();
    h->next_offsets_ms = h->now_ms + 200;
    h->next_cleanup_ms = h->now_ms; /* clean once at start */
    h->random_ids = (uint64_t)hub_wall_ms() ^ ((uint64_t)getpid() << 32);
    /* Two messages of the largest size always fit: a reading client is never cut off. */
    size_t two = 2 * ((size_t)cfg->length_max + BT_MQTT_MAX_HEADER);
    h->out_max = (size_t)cfg->egress_max > two ? (size_t)cfg->egress_max : two;
    h->rbuf_cap = 64 * 1024;
    h->rbuf = malloc(h->rbuf_cap);
    if (!h->rbuf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (st)
        h->last_seq = store_last_seq(st);
    if (retain_load(h, err, errlen) < 0 || psession_load(h, err, errlen) < 0) {
        hub_shutdown(h);
        return -1;
    }
    /* What every persistent session has goes at once: a store left full by the last run
     * takes new messages again. */
    if (st)
        trim_log(h);
    if (will_recover(h, err, errlen) < 0) {
        hub_shutdown(h);
        return -1;
    }
    return 0;
}

static void unref_each(const char *key, void *value, void *arg)
{
    msg_unref(value);
}

void hub_shutdown(hub *h)
{
    h->stopping = true;
    /* Wills fire at shutdown too (SPEC §11). */
    while (h->conns)
        conn_close(h->conns, "hub shutting down");
    will_publish_queued(h);
    hub_commit(h);
    psession_flush_offsets(h, true);
    hub_turn_end(h);
    map_each(&h->retained, unref_each, NULL);
    map_free(&h->retained);
    map_free(&h->clients);
    psession_free_all(h);
    trie_free(&h->subs);
    free(h->pend);
    free(h->wills.v);
    free(h->match);
    free(h->rbuf);
    h->pend = NULL;
    h->match = NULL;
    h->rbuf = NULL;
}
