/* Session delivery: QoS 0 straight into the output buffer (dropped when the egress buffer
 * is full), QoS 1 and 2 through a window of `egress.qos1.buffer.size` unacknowledged
 * messages.
 * When the window is full the session switches to catch-up: it stops taking live QoS 1
 * messages and later pulls them from the durable log from its position, so a slow or
 * returning subscriber loses nothing and memory stays bounded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/log.h"
#include "baetyl/topic.h"
#include "hub.h"

/* Output bytes beyond which QoS 0 messages are dropped for a slow reader. */
#define OUT_QOS0_BYTES_MAX (8u << 20)
/* Log messages examined per catch-up pass, so one session cannot stall the loop. */
#define PUMP_SCAN_MAX 2000

/* Packet ids in use: a scan of the window while it is short, then a bitmap (8 KiB, made
 * once the window held PIDMAP_AT entries): next_pid runs for every QoS 1 delivery, and a
 * scan of a window of hundreds was a tenth of the hub's work per message. */
#define PIDMAP_AT 32

static bool pid_used(const conn *c, uint16_t p)
{
    if (c->pidmap)
        return c->pidmap[p >> 6] >> (p & 63) & 1;
    for (size_t i = 0; i < c->qlen; i++) {
        const outq_entry *e = &c->q[(c->qhead + i) % c->qcap];
        if (!e->acked && e->pid == p)
            return true;
    }
    return false;
}

/* A QoS 2 delivery from the log takes a packet id derived from its seq when that one is
 * free: sent again by a restarted hub (that had not seen its PUBREC), it carries the same
 * id, and a receiver that keeps the ids of unreleased messages takes it once. */
static uint16_t next_pid(conn *c, uint8_t q, uint64_t seq)
{
    if (q == 2 && seq) {
        uint16_t p = (uint16_t)(seq % 65535 + 1);
        if (!pid_used(c, p))
            return p;
    }
    for (;;) {
        uint16_t p = c->next_pid++;
        if (c->next_pid == 0)
            c->next_pid = 1;
        if (p != 0 && !pid_used(c, p))
            return p;
    }
}

static void pid_mark(conn *c, uint16_t p, bool used)
{
    if (!c->pidmap)
        return;
    if (used)
        c->pidmap[p >> 6] |= (uint64_t)1 << (p & 63);
    else
        c->pidmap[p >> 6] &= ~((uint64_t)1 << (p & 63));
}

/* The entry at the end of q took its packet id: marked, or the map made once q is long
 * (without memory, the scan goes on). */
static void pid_taken(conn *c, uint16_t p)
{
    if (c->pidmap) {
        pid_mark(c, p, true);
        return;
    }
    if (c->qlen < PIDMAP_AT || !(c->pidmap = calloc(65536 / 64, sizeof *c->pidmap)))
        return;
    for (size_t i = 0; i < c->qlen; i++) {
        const outq_entry *e = &c->q[(c->qhead + i) % c->qcap];
        if (!e->acked)
            pid_mark(c, e->pid, true);
    }
}

void session_entry_acked(conn *c, outq_entry *e)
{
    e->acked = true;
    pid_mark(c, e->pid, false);
}

static outq_entry *q_push(conn *c)
{
    if (c->qlen == c->qcap) {
        size_t cap = c->qcap ? c->qcap * 2 : 8;
        outq_entry *q = malloc(cap * sizeof *q);
        if (!q)
            return NULL;
        for (size_t i = 0; i < c->qlen; i++)
            q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qcap = cap;
        c->qhead = 0;
    }
    outq_entry *e = &c->q[(c->qhead + c->qlen) % c->qcap];
    c->qlen++;
    memset(e, 0, sizeof *e);
    return e;
}

void session_pump_later(conn *c)
{
    if (!c->in_pump) {
        c->in_pump = true;
        c->pump_next = c->h->pump;
        c->h->pump = c;
    }
}

/* A QoS 1 or 2 delivery: into the window, then out (shared: held in memory, seq 0). */
static void deliver_acked_ex(conn *c, msg *m, uint8_t q, bool retain, bool dup, bool shared)
{
    outq_entry *e = q_push(c);
    if (!e) {
        conn_close(c, "out of memory");
        return;
    }
    e->m = msg_ref(m);
    e->seq = shared ? 0 : m->seq;
    e->qos = q;
    e->shared = shared;
    e->pid = next_pid(c, q, e->seq);
    pid_taken(c, e->pid);
    e->sent_ms = c->h->now_ms;
    if (e->seq)
        c->qlog++;
    send_publish(c, m->topic, m->topic_len, m->payload, m->payload_len, q, retain, dup, e->pid, m);
}

static void deliver_acked(conn *c, msg *m, uint8_t q, bool retain, bool dup)
{
    deliver_acked_ex(c, m, q, retain, dup, false);
}

void session_resend(conn *c, msg *m, uint8_t q)
{
    if (c->state == CONN_ACTIVE)
        deliver_acked(c, m, q, false, true);
}

void session_resume_release(conn *c, uint16_t pid)
{
    if (c->state != CONN_ACTIVE || pid_used(c, pid))
        return;
    outq_entry *e = q_push(c);
    if (!e) {
        conn_close(c, "out of memory");
        return;
    }
    e->pid = pid;
    pid_taken(c, pid);
    e->qos = 2;
    e->released = true;
    e->sent_ms = c->h->now_ms;
    send_ack(c, BT_MQTT_PUBREL, pid);
}

outq_entry *session_find(conn *c, uint16_t pid)
{
    for (size_t i = 0; i < c->qlen; i++) {
        outq_entry *e = &c->q[(c->qhead + i) % c->qcap];
        if (!e->acked && e->pid == pid)
            return e;
    }
    return NULL;
}

void session_acked(conn *c)
{
    while (c->qlen && c->q[c->qhead].acked) {
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
    }
    if (c->catchup)
        session_pump_later(c);
}

/* The QoS 1/2 window: egress.qos1.buffer.size, or a 5.0 client's smaller receive maximum
 * (log messages in flight; the others are few: retained copies). */
static size_t window(const conn *c)
{
    size_t w = (size_t)c->h->cfg->out_qos1_size;
    return c->recv_max && c->recv_max < w ? c->recv_max : w;
}

/* 5.0 subscription options of a live delivery: the subscriptions that match, but no-local
 * ones for the publisher's own messages, give the QoS; retain-as-published keeps the
 * RETAIN flag. False when no subscription is left. */
static bool apply_sub_opts(const conn *c, const msg *m, uint8_t *q, bool *retain)
{
    int best = -1;
    bool rap = false;
    for (size_t i = 0; i < c->nsubs; i++) {
        const conn_sub *s = &c->subs[i];
        if ((s->opts & BT_MQTT_SUBOPT_NO_LOCAL) && m->from == c->id)
            continue;
        if (!bt_topic_match(s->filter, m->topic))
            continue;
        best = s->qos > best ? s->qos : best;
        rap = rap || (s->opts & BT_MQTT_SUBOPT_RETAIN_AS_PUBLISHED);
    }
    if (best < 0)
        return false;
    *q = m->qos < best ? m->qos : (uint8_t)best;
    *retain = rap && m->retain;
    return true;
}

/* Whether m may go to c: not expired (5.0 message expiry, for every client), not over a
 * 5.0 client's maximum packet size (a bound on the encoded size). */
static bool deliverable(const conn *c, const msg *m)
{
    if (m->expiry_s && hub_wall_ms() - m->ts_ms >= (int64_t)m->expiry_s * 1000)
        return false;
    if (c->max_packet) {
        uint64_t size = 5 + 2 + (uint64_t)m->topic_len + 2 + 4 + 5 + m->props_len + m->payload_len;
        if (size > c->max_packet)
            return false;
    }
    return true;
}

void session_deliver(conn *c, msg *m, uint8_t q, bool retain)
{
    if (c->state != CONN_ACTIVE)
        return;
    if ((m->expiry_s || c->max_packet) && !deliverable(c, m))
        return;
    if (c->sub_opts && !retain && !apply_sub_opts(c, m, &q, &retain))
        return;
    if (q == 0) {
        /* Dropped only for a reader whose socket is full (EPOLLOUT armed). */
        if (c->want_write && (c->out_qos0 >= (size_t)c->h->cfg->out_qos0_size ||
                              bt_buf_size(&c->out) > OUT_QOS0_BYTES_MAX)) {
            c->h->ctr.qos0_dropped++;
            return;
        }
        c->out_qos0++;
        send_publish(c, m->topic, m->topic_len, m->payload, m->payload_len, 0, retain, false, 0, m);
        return;
    }
    if (m->seq) {
        if (c->catchup || m->seq < c->next_seq)
            return; /* the log pump brings it, or brought it already */
        if (c->qlog >= window(c)) {
            c->catchup = true;
            c->next_seq = m->seq;
            return;
        }
    }
    deliver_acked(c, m, q, retain, false);
}

bool session_has_room(const conn *c)
{
    return c->qlen < window(c);
}

void session_deliver_shared(conn *c, msg *m, uint8_t q)
{
    if (c->state != CONN_ACTIVE || ((m->expiry_s || c->max_packet) && !deliverable(c, m)))
        return;
    if (q == 0) {
        c->out_qos0++;
        send_publish(c, m->topic, m->topic_len, m->payload, m->payload_len, 0, false, false, 0, m);
        return;
    }
    deliver_acked_ex(c, m, q, false, false, true);
}

/* Highest QoS among c's subscriptions matching topic, or -1. */
static int sub_qos(const conn *c, const char *topic)
{
    int best = -1;
    for (size_t i = 0; i < c->nsubs; i++)
        if (c->subs[i].qos > best && bt_topic_match(c->subs[i].filter, topic))
            best = c->subs[i].qos;
    return best;
}

typedef struct {
    conn *c;
    const psess *ps; /* its persistent session: seqs it completed are skipped */
    bool stopped;
} pump_ctx;

static int pump_cb(uint64_t seq, const store_msg *sm, void *arg)
{
    pump_ctx *px = arg;
    conn *c = px->c;
    if (c->qlog >= window(c) || c->state != CONN_ACTIVE) {
        px->stopped = true;
        return 1;
    }
    c->next_seq = seq + 1;
    if (sm->topic_len > BT_TOPIC_MAX_LEN || (px->ps && psession_seq_is_done(px->ps, seq)))
        return 0;
    char topic[BT_TOPIC_MAX_LEN + 1];
    memcpy(topic, sm->topic, sm->topic_len);
    topic[sm->topic_len] = 0;
    int sq = sub_qos(c, topic);
    if (sq < 0)
        return 0;
    uint8_t q = sm->qos < sq ? sm->qos : (uint8_t)sq;
    /* With its 5.0 properties and expiry as stored; the RETAIN flag it was published with
     * goes only to retain-as-published subscriptions. */
    msg *m = msg_new_props(topic, sm->topic_len, sm->payload, sm->payload_len, sm->props,
                           sm->props_len, sm->qos, sm->retain);
    if (!m) {
        px->stopped = true;
        return 1;
    }
    m->seq = seq;
    m->ts_ms = sm->ts_ms;
    m->expiry_s = sm->expiry_s;
    /* its own message, for no-local */
    if (sm->origin_len && c->client_id && strlen(c->client_id) == sm->origin_len &&
        !memcmp(c->client_id, sm->origin, sm->origin_len))
        m->from = c->id;
    bool retain = false;
    if (((m->expiry_s || c->max_packet) && !deliverable(c, m)) ||
        (c->sub_opts && !apply_sub_opts(c, m, &q, &retain))) {
        msg_unref(m);
        return 0;
    }
    if (q == 0)
        send_publish(c, topic, sm->topic_len, sm->payload, sm->payload_len, 0, retain, false, 0, m);
    else
        deliver_acked(c, m, q, retain, false);
    msg_unref(m);
    return 0;
}

void session_pump(conn *c)
{
    hub *h = c->h;
    if (!c->catchup || c->state != CONN_ACTIVE)
        return;
    if (!h->st || c->next_seq > h->last_seq) {
        c->catchup = false;
        return;
    }
    if (c->qlog >= window(c))
        return; /* PUBACKs will call us again */
    const psess *ps = c->clean || !c->client_id ? NULL : map_get(&h->psessions, c->client_id);
    pump_ctx px = {c, ps && ps->ndone ? ps : NULL, false};
    char err[160];
    long n = store_scan(h->st, c->next_seq, PUMP_SCAN_MAX, pump_cb, &px, err, sizeof err);
    if (n < 0) {
        bt_logkv(BT_LOG_ERROR, "log scan failed", "client", c->client_id, "error", err, NULL);
        return;
    }
    if (c->state != CONN_ACTIVE)
        return;
    if (px.stopped)
        return;
    if (n < PUMP_SCAN_MAX) {
        /* Read to the end of the log: back to live delivery. The end may be past
         * h->last_seq: a group the writer committed is in the log before the loop takes it
         * back and dispatches it, and what the pump sent of it is not sent again. */
        if (c->next_seq < h->last_seq + 1)
            c->next_seq = h->last_seq + 1;
        c->catchup = false;
        return;
    }
    session_pump_later(c); /* more to read: continue next turn */
}

void session_retry(conn *c)
{
    if (c->state != CONN_ACTIVE)
        return;
    int64_t ri = c->h->cfg->retry_interval_ms;
    for (size_t i = 0; i < c->qlen; i++) {
        outq_entry *e = &c->q[(c->qhead + i) % c->qcap];
        if (e->acked || c->h->now_ms - e->sent_ms < ri)
            continue;
        if (e->rel_wait)
            continue; /* its PUBREL waits for the store */
        e->sent_ms = c->h->now_ms;
        c->h->ctr.retried++;
        int rc = e->released ? send_ack(c, BT_MQTT_PUBREL, e->pid)
                             : send_publish(c, e->m->topic, e->m->topic_len, e->m->payload,
                                            e->m->payload_len, e->qos, false, true, e->pid, e->m);
        if (rc < 0)
            return;
    }
}

uint64_t session_offset(const conn *c)
{
    uint64_t lo = c->catchup ? c->next_seq - 1 : c->h->last_seq;
    for (size_t i = 0; i < c->qlen; i++) {
        const outq_entry *e = &c->q[(c->qhead + i) % c->qcap];
        if (!e->acked && e->seq && e->seq - 1 < lo)
            lo = e->seq - 1;
    }
    return lo;
}

int session_subscribe(conn *c, const char *filter, uint8_t qos, uint8_t opts, uint32_t id)
{
    opts &= BT_MQTT_SUBOPT_NO_LOCAL | BT_MQTT_SUBOPT_RETAIN_AS_PUBLISHED;
    if (opts)
        c->sub_opts = true;
    if (id)
        c->sub_ids = true;
    for (size_t i = 0; i < c->nsubs; i++)
        if (!strcmp(c->subs[i].filter, filter)) {
            c->subs[i].qos = qos;
            c->subs[i].opts = opts;
            c->subs[i].id = id;
            if (shared_filter(filter, strlen(filter)))
                return shared_join(c, filter, qos) < 0 ? -1 : 1;
            return trie_add(&c->h->subs, filter, c, qos) < 0 ? -1 : 1;
        }
    if (c->nsubs == c->capsubs) {
        size_t cap = c->capsubs ? c->capsubs * 2 : 2;
        conn_sub *s = realloc(c->subs, cap * sizeof *s);
        if (!s)
            return -1;
        c->subs = s;
        c->capsubs = cap;
    }
    char *f = strdup(filter);
    if (!f)
        return -1;
    bool shared = shared_filter(filter, strlen(filter)) != NULL;
    if ((shared ? shared_join(c, filter, qos) : trie_add(&c->h->subs, filter, c, qos)) < 0) {
        free(f);
        return -1;
    }
    c->subs[c->nsubs++] = (conn_sub){f, qos, opts, id};
    return 0;
}

int session_unsubscribe(conn *c, const char *filter)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (!strcmp(c->subs[i].filter, filter)) {
            if (shared_filter(filter, strlen(filter)))
                shared_leave(c, filter);
            else
                trie_remove(&c->h->subs, filter, c);
            free(c->subs[i].filter);
            c->subs[i] = c->subs[--c->nsubs];
            return 1;
        }
    return 0;
}

void session_clear_subs(conn *c)
{
    for (size_t i = 0; i < c->nsubs; i++) {
        const char *f = c->subs[i].filter;
        if (shared_filter(f, strlen(f)))
            shared_leave(c, f);
        else
            trie_remove(&c->h->subs, f, c);
        free(c->subs[i].filter);
    }
    free(c->subs);
    c->subs = NULL;
    c->nsubs = c->capsubs = 0;
}
