/* Counters of the hub, logged when status.logging is on and reported to the master. */
#include <dirent.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baetyl/log.h"
#include "baetyl/metrics.h"
#include "baetyl/util.h"
#include "hub.h"
#include <baetyl/util.h>

void stats_log(hub *h)
{
    const hub_counters *k = &h->ctr;
    char v[19][32];
    snprintf(v[0], sizeof v[0], "%zu", h->nconns);
    snprintf(v[1], sizeof v[1], "%" PRIu64, k->conns_total);
    snprintf(v[2], sizeof v[2], "%" PRIu64, k->msgs_in);
    snprintf(v[3], sizeof v[3], "%" PRIu64, k->msgs_out);
    snprintf(v[4], sizeof v[4], "%" PRIu64, k->bytes_in);
    snprintf(v[5], sizeof v[5], "%" PRIu64, k->bytes_out);
    snprintf(v[6], sizeof v[6], "%" PRIu64, k->committed);
    snprintf(v[7], sizeof v[7], "%" PRIu64, k->qos0_dropped);
    snprintf(v[8], sizeof v[8], "%" PRIu64, k->retried);
    snprintf(v[9], sizeof v[9], "%zu", h->subs.count);
    snprintf(v[10], sizeof v[10], "%" PRIu64, h->last_seq);
    snprintf(v[11], sizeof v[11], "%" PRIu64, k->bad_packets);
    snprintf(v[12], sizeof v[12], "%" PRIu64, k->slow_closed);
    snprintf(v[13], sizeof v[13], "%" PRIu64, k->accept_failed);
    snprintf(v[14], sizeof v[14], "%" PRIu64, k->dropped_full);
    snprintf(v[15], sizeof v[15], "%" PRIu64, k->dropped_count);
    snprintf(v[16], sizeof v[16], "%" PRIu64, k->dropped_age);
    snprintf(v[17], sizeof v[17], "%" PRIu64, k->full_waits);
    snprintf(v[18], sizeof v[18], "%zu", h->store_full ? h->npend : (size_t)0);
    bt_logkv(BT_LOG_INFO, "hub status", "connections", v[0], "connections_total", v[1],
             "messages_in", v[2], "messages_out", v[3], "bytes_in", v[4], "bytes_out", v[5],
             "qos1_committed", v[6], "qos0_dropped", v[7], "qos1_resent", v[8], "subscriptions",
             v[9], "last_seq", v[10], "bad_packets", v[11], "slow_closed", v[12], "accept_failed",
             v[13], "dropped_full", v[14], "dropped_count", v[15], "dropped_age", v[16],
             "store_full_waits", v[17], "qos1_waiting", v[18], NULL);
}

/* ---- metrics ------------------------------------------------------------------------------ */

/* Commit latency bounds in seconds: fsync on flash ranges from 0.1 ms to seconds. */
static const double commit_bounds[STATS_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                    0.01,   0.025,   0.05,   0.1,   0.5,    2.5};

int64_t stats_clock_us(void)
{
    return bt_now_ns() / 1000;
}

void stats_commit_done(hub *h, int64_t t0)
{
    double d = (double)(stats_clock_us() - t0) / 1e6;
    stats_hist *k = &h->ctr.commit;
    size_t i = 0;
    while (i < STATS_BUCKETS && d > commit_bounds[i])
        i++;
    k->n[i]++;
    k->count++;
    k->sum += d;
}

typedef struct {
    hub *h;
    stats_snapshot *s;
    uint64_t min; /* lowest offset of an away session */
} walk_t;

/* Keeps the STATS_TOP longest queues, longest first. */
static void top_add(stats_snapshot *s, const char *id, uint64_t queued)
{
    size_t at = s->ntop;
    while (at > 0 && s->top[at - 1].queued < queued)
        at--;
    if (at >= STATS_TOP)
        return;
    char *dup = strdup(id);
    if (!dup)
        return;
    if (s->ntop == STATS_TOP)
        free(s->top[--s->ntop].client_id);
    memmove(&s->top[at + 1], &s->top[at], (s->ntop - at) * sizeof s->top[0]);
    s->top[at] = (stats_session){dup, queued};
    s->ntop++;
}

/* A persistent session's queue: log messages after its acknowledged offset (for an away
 * session; an upper bound, as the log also holds other consumers' messages) and held
 * deliveries; for a connected one its deliveries in flight. */
static void session_each(const char *key, void *value, void *arg)
{
    walk_t *w = arg;
    psess *ps = value;
    uint64_t q = ps->nheld;
    if (ps->online)
        q += ps->online->qlen;
    else {
        q += w->h->last_seq > ps->offset ? w->h->last_seq - ps->offset : 0;
        if (ps->offset < w->min)
            w->min = ps->offset;
    }
    if (q)
        top_add(w->s, key, q);
}

static int oldest_cb(uint64_t seq, const store_msg *m, void *arg)
{
    *(int64_t *)arg = m->ts_ms;
    return 1; /* one is enough */
}

void stats_take(hub *h, stats_snapshot *s, bool detail)
{
    s->ctr = h->ctr;
    s->conns = h->nconns;
    s->subs = h->subs.count;
    if (!detail)
        return;
    s->retained = h->retained.n;
    s->sessions = h->psessions.n;
    memset(s->by_listener, 0, sizeof s->by_listener);
    for (conn *c = h->conns; c; c = c->next)
        s->by_listener[c->lix]++;
    for (size_t i = 0; i < s->ntop; i++)
        free(s->top[i].client_id);
    s->ntop = 0;
    walk_t w = {h, s, UINT64_MAX};
    map_each(&h->psessions, session_each, &w);
    s->queued = w.min < h->last_seq ? h->last_seq - w.min : 0;
    s->oldest_ms = 0;
    char err[128];
    if (s->queued && h->st)
        store_scan(h->st, w.min + 1, 1, oldest_cb, &s->oldest_ms, err, sizeof err);
}

void stats_snapshot_copy(stats_snapshot *dst, const stats_snapshot *src)
{
    *dst = *src;
    dst->ntop = 0;
    for (size_t i = 0; i < src->ntop; i++) {
        char *id = strdup(src->top[i].client_id);
        if (id)
            dst->top[dst->ntop++] = (stats_session){id, src->top[i].queued};
    }
}

void stats_snapshot_free(stats_snapshot *s)
{
    for (size_t i = 0; i < s->ntop; i++)
        free(s->top[i].client_id);
    s->ntop = 0;
}

static void by_qos(json_t *out, const char *name, const char *help, const uint64_t *n)
{
    json_t *f = bt_metrics_family(out, name, "counter", help);
    static const char *const q[] = {"0", "1", "2"};
    for (int i = 0; i < 3; i++)
        bt_metrics_sample(f, "", "qos", q[i], (double)n[i]);
}

json_t *stats_metrics_json(const stats_snapshot *s, const hub_config *cfg)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    const hub_counters *k = &s->ctr;
    json_t *f = bt_metrics_family(o, "baetyl_hub_connections", "gauge", "Open client connections.");
    for (size_t i = 0; i < cfg->listen.n && i < STATS_LISTENERS; i++)
        bt_metrics_sample(f, "", "listener", BT_CFG_AT(cfg->listen, char *, i),
                          (double)s->by_listener[i]);
    bt_metrics_one(o, "baetyl_hub_connections_accepted_total", "counter", "Connections accepted.",
                   (double)k->conns_total);
    by_qos(o, "baetyl_hub_messages_received_total", "PUBLISH messages received from clients.",
           k->in_qos);
    by_qos(o, "baetyl_hub_messages_sent_total", "PUBLISH messages sent to clients.", k->out_qos);
    bt_metrics_one(o, "baetyl_hub_received_bytes_total", "counter", "Bytes received from clients.",
                   (double)k->bytes_in);
    bt_metrics_one(o, "baetyl_hub_sent_bytes_total", "counter", "Bytes sent to clients.",
                   (double)k->bytes_out);
    bt_metrics_one(o, "baetyl_hub_retained_messages", "gauge", "Retained messages.",
                   (double)s->retained);
    bt_metrics_one(o, "baetyl_hub_persistent_sessions", "gauge",
                   "Persistent sessions (clean session 0).", (double)s->sessions);
    bt_metrics_one(o, "baetyl_hub_subscriptions", "gauge", "Subscriptions of connected clients.",
                   (double)s->subs);
    f = bt_metrics_family(
        o, "baetyl_hub_session_queued_messages", "gauge",
        "Messages waiting for a persistent session (the longest queues; for an away "
        "session the log messages after its acknowledged position).");
    for (size_t i = 0; i < s->ntop; i++)
        bt_metrics_sample(f, "", "client_id", s->top[i].client_id, (double)s->top[i].queued);
    bt_metrics_one(o, "baetyl_hub_queued_messages", "gauge",
                   "Log messages some away persistent session has not acknowledged.",
                   (double)s->queued);
    if (s->oldest_ms > 0) {
        double age = (double)(hub_wall_ms() - s->oldest_ms) / 1000.0;
        bt_metrics_one(o, "baetyl_hub_oldest_unacked_age_seconds", "gauge",
                       "Age of the oldest message an away persistent session has not acknowledged.",
                       age > 0 ? age : 0);
    }
    bt_metrics_one(o, "baetyl_hub_committed_messages_total", "counter",
                   "QoS 1 messages written to the log.", (double)k->committed);
    f = bt_metrics_family(o, "baetyl_hub_store_commit_duration_seconds", "histogram",
                          "Duration of store commits, fsync included.");
    uint64_t cum = 0;
    for (size_t i = 0; i <= STATS_BUCKETS; i++) {
        char le[32];
        cum += k->commit.n[i];
        if (i < STATS_BUCKETS)
            snprintf(le, sizeof le, "%g", commit_bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        bt_metrics_sample(f, "_bucket", "le", le, (double)cum);
    }
    bt_metrics_sample(f, "_sum", NULL, NULL, k->commit.sum);
    bt_metrics_sample(f, "_count", NULL, NULL, (double)k->commit.count);
    f = bt_metrics_family(o, "baetyl_hub_dropped_messages_total", "counter",
                          "Messages dropped, by reason.");
    bt_metrics_sample(f, "", "reason", "qos0_slow_consumer", (double)k->qos0_dropped);
    bt_metrics_sample(f, "", "reason", "store_full", (double)k->dropped_full);
    bt_metrics_sample(f, "", "reason", "store_count", (double)k->dropped_count);
    bt_metrics_sample(f, "", "reason", "retention", (double)k->dropped_age);
    bt_metrics_sample(f, "", "reason", "shared_group_full", (double)k->shared_dropped);
    bt_metrics_one(o, "baetyl_hub_slow_consumers_closed_total", "counter",
                   "Connections closed for output over message.egress.buffer.max.",
                   (double)k->slow_closed);
    bt_metrics_one(o, "baetyl_hub_accept_failures_total", "counter",
                   "Connections not accepted (descriptor limit).", (double)k->accept_failed);
    bt_metrics_one(o, "baetyl_hub_auth_failures_total", "counter",
                   "CONNECTs refused for bad credentials.", (double)k->auth_failed);
    bt_metrics_one(o, "baetyl_hub_malformed_packets_total", "counter",
                   "Connections closed for a malformed packet.", (double)k->bad_packets);
    bt_metrics_one(o, "baetyl_hub_qos1_resent_total", "counter", "QoS 1 deliveries sent again.",
                   (double)k->retried);
    return o;
}

/* Bytes the files under dir take on disk (two levels: the store keeps a flat directory). */
static uint64_t dir_bytes(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[4096];
        struct stat st;
        if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= sizeof p ||
            lstat(p, &st) != 0)
            continue;
        if (S_ISREG(st.st_mode))
            n += (uint64_t)st.st_blocks * 512;
        else if (S_ISDIR(st.st_mode) && depth > 0)
            n += dir_bytes(p, depth - 1);
    }
    closedir(d);
    return n;
}

void stats_files_json(json_t *out, const hub_config *cfg)
{
    if (!out)
        return;
    bt_metrics_one(out, "baetyl_hub_store_size_bytes", "gauge",
                   "Disk space the message store takes.", (double)dir_bytes(cfg->storage_dir, 1));
    if (cfg->cert)
        bt_metrics_cert(out, cfg->cert, "hub");
}
