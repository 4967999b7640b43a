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

#define FULL_RETRY_MS 10  /* a full store is retried at most this often after acks */
#define DROP_LOG_MS 10000 /* dropped messages are logged at most this often */
/* While the store is full, a publisher that also holds unacknowledged log deliveries is
 * still read until this many of its publishes wait: its PUBACKs may be what frees the log. */
#define HELD_READ_MAX 100
/* With storage.sync a commit costs a disk flush whatever its size, so the group commit
 * adapts to the load: it takes every QoS 1 publish read since the last one (what came
 * during that flush), up to GROUP_MAX. Without sync, commits are cheap: one every
 * message.ingress.qos1.batch.max publishes, as before. */
#define GROUP_MAX 2048
/* Publishes that may wait while a commit is on the disk: beyond, their publishers are not
 * read until it is done (a slow disk slows them down instead of filling memory). */
#define PEND_MAX (4 * GROUP_MAX)

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
    if (h->shared.n)
        shared_dispatch(h, m);
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

/* storage.policy drop-oldest: deletes the oldest log messages, read by every consumer or
 * not, until the batch fits; each one is counted under the bound that forced it. rc is the
 * STORE_FULL of the first attempt; returns the last attempt's answer. */
static int drop_for_room(hub *h, const store_msg *sm, size_t n, uint64_t *seqs,
                         const psession_offsets *o, char *err, size_t errlen)
{
    int rc = STORE_FULL;
    uint64_t step = n > 64 ? n : 64;
    for (int round = 0; rc == STORE_FULL && round < 16; round++, step *= 2) {
        uint64_t excess = 0;
        int kind = store_full_kind(h->st, &excess);
        char derr[160];
        uint64_t k = kind == STORE_FULL_COUNT ? excess : step;
        long d = store_drop_oldest(h->st, k, hub_wall_ms(), derr, sizeof derr);
        if (d < 0)
            bt_logkv(BT_LOG_ERROR, "dropping old messages failed", "error", derr, NULL);
        if (d <= 0)
            break; /* the log is empty: this batch alone does not fit */
        if (kind == STORE_FULL_COUNT)
            h->ctr.dropped_count += (uint64_t)d;
        else
            h->ctr.dropped_full += (uint64_t)d;
        rc = store_append(h->st, sm, n, seqs, o->v, o->n, err, errlen);
    }
    return rc;
}

/* The messages of one commit slice: those a consumer needs go to the log (the others keep
 * seq 0, delivered live only), with their store records and the seqs they get. */
typedef struct {
    store_msg *sm;
    msg **kept;
    uint64_t *seqs;
    size_t n;
} log_pick;

/* Picks the messages of log that a consumer needs; 0 or -1 (no memory). */
static int pick_log(hub *h, msg_vec *log, log_pick *p)
{
    memset(p, 0, sizeof *p);
    if (!log->n)
        return 0;
    p->sm = calloc(log->n, sizeof *p->sm);
    p->kept = calloc(log->n, sizeof *p->kept);
    p->seqs = calloc(log->n, sizeof *p->seqs);
    if (!p->sm || !p->kept || !p->seqs)
        return -1;
    for (size_t i = 0; i < log->n; i++) {
        msg *m = log->v[i];
        if (!log_needed(h, m))
            continue;
        p->kept[p->n] = m;
        p->sm[p->n++] = msg_store_view(m);
    }
    return 0;
}

static void pick_free(log_pick *p)
{
    free(p->sm);
    free(p->kept);
    free(p->seqs);
    memset(p, 0, sizeof *p);
}

/* After an append that found the store full: a store trimmed of what every consumer has
 * is tried again; then, with drop-oldest, the oldest messages make room. */
static int append_full(hub *h, log_pick *p, psession_offsets *o, int rc, char *err, size_t errlen)
{
    if (rc == STORE_FULL && trim_log(h) > 0)
        rc = store_append(h->st, p->sm, p->n, p->seqs, o->v, o->n, err, errlen);
    if (rc == STORE_FULL && h->drop_oldest)
        rc = drop_for_room(h, p->sm, p->n, p->seqs, o, err, errlen);
    return rc;
}

/* A successful append: the messages take their seqs. */
static void pick_done(hub *h, log_pick *p)
{
    for (size_t i = 0; i < p->n; i++)
        p->kept[i]->seq = p->seqs[i];
    h->ctr.committed += p->n;
}

/* Appends the messages of log that a consumer needs in one commit. Returns 0, STORE_FULL
 * (nothing written: the caller holds the batch) or -1. */
static int log_append(hub *h, msg_vec *log, char *err, size_t errlen)
{
    log_pick p;
    int rc = pick_log(h, log, &p);
    if (rc == 0 && p.n) {
        if (!h->st) {
            for (size_t i = 0; i < p.n; i++)
                p.seqs[i] = h->last_seq + 1 + i;
        } else {
            /* Acknowledgements of this turn ride along: fewer resends after a crash. */
            psession_offsets o = {0};
            if (h->offsets_acked)
                psession_offsets_take(h, false, &o);
            int64_t t0 = stats_clock_us();
            rc = store_append(h->st, p.sm, p.n, p.seqs, o.v, o.n, err, errlen);
            stats_commit_done(h, t0);
            rc = append_full(h, &p, &o, rc, err, errlen);
            psession_offsets_done(h, &o, rc == 0);
        }
    }
    if (rc == 0)
        pick_done(h, &p);
    pick_free(&p);
    return rc;
}

/* While the store is full: stops reading a publisher (its next publishes stay in the
 * socket), unless it consumes from the log too and few of its publishes wait. */
static void conn_hold(conn *c)
{
    conn_pause(c, !c->qlog || c->npend >= HELD_READ_MAX);
}

/* Publishes per commit (see GROUP_MAX). */
static size_t group_size(const hub *h)
{
    size_t batch = (size_t)h->cfg->in_qos1_batch;
    return h->st && h->cfg->storage_sync && batch < GROUP_MAX ? GROUP_MAX : batch;
}

int hub_publish(hub *h, msg *m, conn *pub_conn, uint16_t pid)
{
    h->ctr.msgs_in++;
    h->ctr.in_qos[m->qos & 3]++;
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
    if (pub_conn)
        pub_conn->npend++;
    if (h->store_full) {
        if (pub_conn)
            conn_hold(pub_conn);
    } else if (h->job && h->npend >= PEND_MAX) {
        if (pub_conn)
            conn_pause(pub_conn, true);
        h->pend_paused = true;
    } else if (h->npend >= group_size(h)) {
        hub_commit(h);
    }
    return 0;
}

/* reject-new (or nothing left to drop): the batch goes back, unacknowledged, before any
 * publish that came meanwhile, and its publishers are no longer read; consumers still
 * are, since their acknowledgements are what frees the log. */
static void hold_batch(hub *h, pending_pub *pend, size_t npend, size_t cap, const char *err)
{
    if (h->npend) {
        size_t total = npend + h->npend;
        if (total > cap) {
            pending_pub *p = realloc(pend, total * sizeof *p);
            if (!p) {
                /* Cannot keep the batch: unacknowledged, the publishers resend later. */
                for (size_t i = 0; i < npend; i++) {
                    if (pend[i].c)
                        conn_close(pend[i].c, "out of memory");
                    msg_unref(pend[i].m);
                }
                free(pend);
                return;
            }
            pend = p;
            cap = total;
        }
        memcpy(pend + npend, h->pend, h->npend * sizeof *pend);
        free(h->pend);
        npend = total;
    }
    h->pend = pend;
    h->npend = npend;
    h->cappend = cap;
    for (size_t i = 0; i < npend; i++) {
        conn *c = pend[i].c;
        if (c && c->state == CONN_CLOSED)
            pend[i].c = NULL; /* closed while this commit dispatched: freed at turn end */
        else if (c)
            conn_hold(c);
    }
    h->store_full = true;
    h->ctr.full_waits++;
    if (!h->full_logged) {
        h->full_logged = true;
        bt_logkv(BT_LOG_WARN,
                 "message store full: QoS 1 publishes wait, unacknowledged, and their "
                 "publishers are not read until there is room",
                 "error", err, "policy", h->cfg->storage_policy, NULL);
    }
}

/* After a commit: the publishers of the slice are read again (at the end of the turn). */
static void resume_slice(hub *h, const pending_pub *pend, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        conn *c = pend[i].c;
        if (c && c->paused) {
            conn_pause(c, false);
            c->resume_read = true;
            h->resume_any = true;
        }
    }
}

/* The messages one slice of publishes logs (with route copies) and the route copies
 * delivered at QoS 0; -1 when out of memory. */
static int slice_build(hub *h, pending_pub *pend, size_t n, msg_vec *log, msg_vec *zero)
{
    for (size_t i = 0; i < n; i++) {
        if (msg_vec_push(log, msg_ref(pend[i].m)) < 0) {
            msg_unref(pend[i].m);
            return -1;
        }
        if (h->cfg->subscriptions.n) {
            size_t budget = ROUTE_COPIES_MAX;
            route_copies(h->cfg, pend[i].m, log, zero, &budget);
        }
    }
    return 0;
}

/* After the slice's append answered rc: dispatches it and sends its PUBACKs (0), closes
 * its publishers (an error), or leaves the slice untouched for hold_batch (STORE_FULL). */
static void slice_finish(hub *h, pending_pub *pend, size_t n, pending_pub *rest, size_t nrest,
                         msg_vec *log, msg_vec *zero, int rc, const char *err)
{
    if (rc < 0 && rc != STORE_FULL) {
        bt_logkv(BT_LOG_ERROR, "committing QoS 1 messages failed", "error", err, NULL);
        /* No PUBACK: the publishers resend after reconnecting. */
        for (size_t i = 0; i < n; i++) {
            conn *c = pend[i].c;
            if (!c)
                continue;
            conn_close(c, "message store failed");
            for (size_t j = 0; j < nrest; j++)
                if (rest[j].c == c)
                    rest[j].c = NULL;
        }
    } else if (rc == 0) {
        uint64_t last = h->last_seq;
        for (size_t i = 0; i < log->n; i++) {
            hub_dispatch(h, log->v[i]);
            last = log->v[i]->seq > last ? log->v[i]->seq : last;
        }
        h->last_seq = last;
        for (size_t i = 0; i < zero->n; i++)
            hub_dispatch(h, zero->v[i]);
        for (size_t i = 0; i < n; i++) {
            conn *c = pend[i].c;
            if (c && c->state == CONN_ACTIVE)
                send_ack(c, pend[i].m->qos == 2 ? BT_MQTT_PUBREC : BT_MQTT_PUBACK, pend[i].pid);
        }
        if (h->full_logged)
            resume_slice(h, pend, n);
    }
    for (size_t i = 0; i < log->n; i++)
        msg_unref(log->v[i]);
    for (size_t i = 0; i < zero->n; i++)
        msg_unref(zero->v[i]);
    if (rc != STORE_FULL)
        for (size_t i = 0; i < n; i++) {
            if (pend[i].c)
                pend[i].c->npend--;
            msg_unref(pend[i].m);
        }
    free(log->v);
    free(zero->v);
    memset(log, 0, sizeof *log);
    memset(zero, 0, sizeof *zero);
}

/* Commits one slice of the pending publishes (one store_append), dispatches it and sends
 * its PUBACKs; STORE_FULL leaves the slice untouched for hold_batch. */
static int commit_slice(hub *h, pending_pub *pend, size_t n, pending_pub *rest, size_t nrest,
                        char *err, size_t errlen)
{
    msg_vec log = {0}, zero = {0};
    snprintf(err, errlen, "out of memory");
    int rc = slice_build(h, pend, n, &log, &zero) < 0 ? -1 : log_append(h, &log, err, errlen);
    slice_finish(h, pend, n, rest, nrest, &log, &zero, rc, err);
    return rc;
}

/* A group commit run by the store's writer thread (storage.sync): the loop goes on reading
 * while it is flushed, and what it reads meanwhile makes the next group. */
struct commit_job {
    store_job sj;
    pending_pub *pend; /* the slice: PUBACKs once the commit is on disk */
    size_t n, cap;
    msg_vec log, zero;
    log_pick pick;
    psession_offsets o;
    int64_t t0; /* submitted (commit latency metric) */
};

/* j->o is always done (psession_offsets_done) before the job is freed. */
static void job_free(commit_job *j)
{
    pick_free(&j->pick);
    free(j->pend);
    free(j);
}

/* A job that did not start: its publishes are still pending (h->pend owns them). */
static void job_undo(commit_job *j)
{
    for (size_t i = 0; i < j->log.n; i++)
        msg_unref(j->log.v[i]);
    for (size_t i = 0; i < j->zero.n; i++)
        msg_unref(j->zero.v[i]);
    free(j->log.v);
    free(j->zero.v);
    job_free(j);
}

/* Starts the commit of every pending publish (up to a group) on the writer thread; false
 * when it cannot (no writer, no memory, nothing for the log): hub_commit does it here. */
static bool commit_start(hub *h)
{
    size_t n = h->npend < group_size(h) ? h->npend : group_size(h);
    commit_job *j = calloc(1, sizeof *j);
    if (!j || !(j->pend = malloc(n * sizeof *j->pend))) {
        free(j);
        return false;
    }
    memcpy(j->pend, h->pend, n * sizeof *j->pend);
    j->n = j->cap = n;
    if (slice_build(h, j->pend, n, &j->log, &j->zero) < 0 || pick_log(h, &j->log, &j->pick) < 0 ||
        !j->pick.n) {
        /* Undone: the publishes stay pending for the synchronous path. */
        job_undo(j);
        return false;
    }
    if (h->offsets_acked)
        psession_offsets_take(h, false, &j->o);
    j->sj = (store_job){j->pick.sm, j->pick.n, j->pick.seqs, j->o.v, j->o.n, 0, ""};
    j->t0 = stats_clock_us();
    if (store_submit(h->st, &j->sj) < 0) {
        psession_offsets_done(h, &j->o, false);
        job_undo(j);
        return false;
    }
    memmove(h->pend, h->pend + n, (h->npend - n) * sizeof *h->pend);
    h->npend -= n;
    h->job = j;
    return true;
}

void hub_commit_done(hub *h, bool wait)
{
    if (!h->job || !store_reap(h->st, wait))
        return;
    commit_job *j = h->job;
    h->job = NULL;
    int rc = j->sj.rc;
    char *err = j->sj.err;
    stats_commit_done(h, j->t0);
    rc = append_full(h, &j->pick, &j->o, rc, err, sizeof j->sj.err);
    psession_offsets_done(h, &j->o, rc == 0);
    if (rc == 0) {
        pick_done(h, &j->pick);
        /* What came during the flush is the next group: its flush starts before this one is
         * delivered and acknowledged, so the disk is not idle while the loop sends. Only as
         * a job of the writer: a group committed here would be delivered before this one. */
        if (h->npend && !h->store_full && !h->stopping)
            commit_start(h);
    }
    slice_finish(h, j->pend, j->n, h->pend, h->npend, &j->log, &j->zero, rc, err);
    if (rc == STORE_FULL) {
        if (!h->npend) { /* hold_batch takes the slice as the pending array */
            free(h->pend);
            h->pend = NULL;
            h->cappend = 0;
        }
        hold_batch(h, j->pend, j->n, j->cap, err);
        j->pend = NULL;
    }
    job_free(j);
    if (h->pend_paused && !h->store_full) {
        h->pend_paused = false;
        for (conn *c = h->conns; c; c = c->next)
            if (c->paused) {
                conn_pause(c, false);
                c->resume_read = true;
                h->resume_any = true;
            }
    }
    /* What came during the flush is the next group. */
    hub_commit(h);
}

void hub_pend_forget(hub *h, conn *c)
{
    for (size_t i = 0; i < h->npend; i++)
        if (h->pend[i].c == c)
            h->pend[i].c = NULL;
    for (size_t i = 0; h->job && i < h->job->n; i++)
        if (h->job->pend[i].c == c)
            h->job->pend[i].c = NULL;
}

/* Normally one slice: a commit is due at message.ingress.qos1.batch.max publishes. What
 * piles up while the store is full goes in slices of that size (at most
 * storage.count.max), so a pile larger than the store still drains slice by slice. */
void hub_commit(hub *h)
{
    if (!h->npend || h->store_full || h->job)
        return;
    /* Outside the loop (start-up, shutdown) commits are done when the call returns. */
    if (!h->stopping && h->epfd >= 0 && store_done_fd(h->st) >= 0 && !store_busy(h->st) &&
        commit_start(h))
        return;
    size_t npend = h->npend, cap = h->cappend;
    pending_pub *pend = h->pend;
    /* Take the batch: publishing below (wills of failed connections) may add new ones. */
    h->pend = NULL;
    h->npend = h->cappend = 0;
    size_t slice = group_size(h);
    if (h->cfg->storage_count_max > 0 && (uint64_t)h->cfg->storage_count_max < slice)
        slice = (size_t)h->cfg->storage_count_max;
    char err[200];
    size_t done = 0;
    while (done < npend) {
        size_t n = npend - done < slice ? npend - done : slice;
        pending_pub *rest = pend + done + n;
        if (commit_slice(h, pend + done, n, rest, npend - done - n, err, sizeof err) == STORE_FULL)
            break;
        done += n;
    }
    if (done < npend) {
        memmove(pend, pend + done, (npend - done) * sizeof *pend);
        hold_batch(h, pend, npend - done, cap, err);
        return;
    }
    if (h->full_logged) {
        h->full_logged = false;
        bt_logkv(BT_LOG_INFO, "message store takes messages again", NULL);
    }
    free(pend);
}

/* Tries a held batch again (the end of a turn in which log messages were acknowledged,
 * at most every FULL_RETRY_MS, and every tick): no busy loop while nothing changes. */
static void retry_full(hub *h)
{
    h->store_full = false;
    h->full_retry_ms = h->now_ms + FULL_RETRY_MS;
    hub_commit(h);
    if (!h->store_full)
        return;
    /* A paused publisher that got log deliveries since: read its PUBACKs. */
    for (conn *c = h->conns; c; c = c->next)
        if (c->paused && c->qlog && c->npend < HELD_READ_MAX) {
            conn_pause(c, false);
            c->resume_read = true;
            h->resume_any = true;
        }
}

/* Publishers resumed by a commit read what waits in their sockets now, not at their next
 * epoll event (a TLS or WebSocket transport may hold bytes epoll does not see). */
static void read_resumed(hub *h)
{
    h->resume_any = false;
    for (conn *c = h->conns, *next; c; c = next) {
        next = c->next; /* reading may close c */
        if (c->resume_read) {
            c->resume_read = false;
            if (!c->paused)
                conn_on_readable(c);
        }
    }
    hub_commit(h);
}

void hub_turn_end(hub *h)
{
    will_publish_queued(h);
    if (h->store_full && h->log_acked && h->now_ms >= h->full_retry_ms)
        retry_full(h);
    h->log_acked = false;
    hub_commit(h);
    if (h->resume_any)
        read_resumed(h);
    /* While a commit is on the disk, acknowledgements ride along the next one (or the tick). */
    if (h->offsets_acked && !h->job)
        psession_flush_offsets(h, false);
    if (h->shared_queued)
        shared_drain(h);
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

/* Dropped messages are logged with their counts, at most once per DROP_LOG_MS. */
static void drops_log(hub *h, bool force)
{
    uint64_t now[3] = {h->ctr.dropped_full, h->ctr.dropped_count, h->ctr.dropped_age};
    if (!memcmp(now, h->drops_logged, sizeof now) || (!force && h->now_ms < h->next_drop_log_ms))
        return;
    char v[3][24];
    for (int i = 0; i < 3; i++)
        snprintf(v[i], sizeof v[i], "%llu", (unsigned long long)(now[i] - h->drops_logged[i]));
    bt_logkv(BT_LOG_WARN, "QoS 1 messages dropped from the store before every consumer read them",
             "full", v[0], "count", v[1], "age", v[2], "policy", h->cfg->storage_policy, NULL);
    memcpy(h->drops_logged, now, sizeof now);
    h->next_drop_log_ms = h->now_ms + DROP_LOG_MS;
}

void hub_tick(hub *h)
{
    int64_t now = h->now_ms;
    int64_t ka_deadline_connect = 30000; /* decided here: CONNECT must come within 30 s */
    for (conn *c = h->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_NEW && c->tr->handshaking &&
            now - c->created_ms > h->cfg->handshake_timeout_ms) {
            conn_close(c, "handshake timeout");
            continue;
        }
        if (c->state == CONN_NEW && now - c->created_ms > ka_deadline_connect) {
            conn_close(c, "no CONNECT in time");
            continue;
        }
        /* A paused publisher's PINGREQs wait in its socket: the pause is not its fault. */
        if (c->paused)
            c->last_rx_ms = now;
        if (c->state == CONN_ACTIVE && c->keepalive &&
            now - c->last_rx_ms > (int64_t)c->keepalive * 1500) {
            conn_close(c, "keepalive timeout");
            continue;
        }
        if (c->qlen)
            session_retry(c);
    }
    shared_gc(h);
    if (now >= h->next_offsets_ms) {
        psession_flush_offsets(h, true);
        h->next_offsets_ms = now + 200;
    }
    if (h->st && now >= h->next_cleanup_ms) {
        char err[160];
        /* Trimmed first: what retention deletes after it, some consumer had not read. */
        trim_log(h);
        long n = store_cleanup(h->st, hub_wall_ms(), h->cfg->retention_ms, err, sizeof err);
        if (n < 0)
            bt_logkv(BT_LOG_ERROR, "cleaning up old messages failed", "error", err, NULL);
        else
            h->ctr.dropped_age += (uint64_t)n;
        h->next_cleanup_ms = now + h->cfg->cleanup_interval_ms;
    }
    if (h->store_full)
        retry_full(h);
    drops_log(h, false);
}

int hub_init(hub *h, hub_config *cfg, store *st, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    h->cfg = cfg;
    h->st = st;
    h->epfd = -1;
    h->drop_oldest = cfg->storage_policy && !strcmp(cfg->storage_policy, "drop-oldest");
    h->now_ms = bt_now_ms();
    h->wall_ms = hub_wall_ms();
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
    if (retain_load(h, err, errlen) < 0 || psession_load(h, err, errlen) < 0 ||
        psession_qos2_load(h, err, errlen) < 0) {
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
    hub_commit_done(h, true);
    h->store_full = false; /* one last try */
    hub_commit(h);
    psession_flush_offsets(h, true);
    hub_turn_end(h);
    drops_log(h, true);
    /* Still full: these were never acknowledged, their publishers send them again. */
    for (size_t i = 0; i < h->npend; i++)
        msg_unref(h->pend[i].m);
    h->npend = 0;
    map_each(&h->retained, unref_each, NULL);
    map_free(&h->retained);
    map_free(&h->clients);
    psession_free_all(h);
    shared_free_all(h);
    trie_free(&h->subs);
    free(h->pend);
    free(h->wills.v);
    will_free_delayed(h);
    free(h->match);
    free(h->rbuf);
    h->pend = NULL;
    h->match = NULL;
    h->rbuf = NULL;
}
