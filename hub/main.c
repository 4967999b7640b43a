/* baetyl-hub: the MQTT broker service (SPEC §11), started through bt_run like every module:
 * `baetyl-hub -c conf.yml` standalone; under the master it reads etc/baetyl/service.yml and
 * reports its counters. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "baetyl/api.h"
#include "baetyl/context.h"
#include "baetyl/log.h"
#include "config.h"
#include "hub.h"
#include "listener.h"
#include "loop.h"

/* Counters handed from the loop to the reporter thread. */
typedef struct {
    pthread_mutex_t mu;
    stats_snapshot snap;
    bool want_detail; /* the next snapshot walks connections and sessions */
    const hub_config *cfg;
    int64_t interval_ms;
    bt_api_client *api;
    bt_ctx *ctx;
} reporter;

static void snapshot(hub *h, void *arg)
{
    reporter *r = arg;
    pthread_mutex_lock(&r->mu);
    stats_take(h, &r->snap, r->want_detail);
    r->want_detail = false;
    pthread_mutex_unlock(&r->mu);
}

static void *report_main(void *arg)
{
    reporter *r = arg;
    const char *svc = r->ctx->env.service_name;
    const char *inst = r->ctx->env.instance_name ? r->ctx->env.instance_name : svc;
    while (!bt_ctx_sleep(r->ctx, r->interval_ms)) {
        /* A copy, so the loop thread never waits while the report is built. */
        stats_snapshot snap;
        pthread_mutex_lock(&r->mu);
        stats_snapshot_copy(&snap, &r->snap);
        r->want_detail = true;
        pthread_mutex_unlock(&r->mu);
        const hub_counters *ctr = &snap.ctr;
        json_t *s = json_pack(
            "{sI sI sI sI sI sI sI sI sI sI sI sI sI sI}", "connections", (json_int_t)snap.conns,
            "connections_total", (json_int_t)ctr->conns_total, "messages_in",
            (json_int_t)ctr->msgs_in, "messages_out", (json_int_t)ctr->msgs_out, "bytes_in",
            (json_int_t)ctr->bytes_in, "bytes_out", (json_int_t)ctr->bytes_out, "qos1_committed",
            (json_int_t)ctr->committed, "qos0_dropped", (json_int_t)ctr->qos0_dropped,
            "subscriptions", (json_int_t)snap.subs, "slow_closed", (json_int_t)ctr->slow_closed,
            "accept_failed", (json_int_t)ctr->accept_failed, "dropped_full",
            (json_int_t)ctr->dropped_full, "dropped_count", (json_int_t)ctr->dropped_count,
            "dropped_age", (json_int_t)ctr->dropped_age);
        json_t *metrics = stats_metrics_json(&snap, r->cfg);
        stats_snapshot_free(&snap);
        stats_files_json(metrics, r->cfg);
        json_t *stats = json_object();
        if (stats && metrics)
            json_object_set_new(stats, "metrics", metrics);
        else
            json_decref(metrics);
        if (stats && s && json_object_set_new(stats, "hub", s) == 0) {
            s = NULL;
            char err[256];
            if (svc && bt_api_report_instance(r->api, svc, inst, stats, err, sizeof err) < 0)
                bt_logkv(BT_LOG_WARN, "report to the master failed", "error", err, NULL);
        }
        json_decref(s);
        json_decref(stats);
    }
    return NULL;
}

/* A hub holds one descriptor per client: take every descriptor the hard limit allows. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            bt_logkv(BT_LOG_WARN, "cannot raise the descriptor limit", "error", strerror(errno),
                     NULL);
    }
}

static int run(bt_ctx *ctx)
{
    char err[512];
    hub_config cfg;
    if (bt_ctx_load_config(ctx, &hub_config_schema, &cfg, err, sizeof err) < 0)
        return 1;
    if (cfg.listen.n == 0) {
        bt_logkv(BT_LOG_ERROR, "failed to load config", "file", ctx->config_path, "error",
                 "listen: required", NULL);
        fprintf(stderr, "%s: config %s: listen: required\n", ctx->program, ctx->config_path);
        bt_cfg_free(&hub_config_schema, &cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    int rc = 1;
    store *st = NULL;
    listener *ls = calloc(cfg.listen.n, sizeof *ls);
    size_t nls = 0;
    hub h;
    bool hub_ok = false;
    reporter rep = {.mu = PTHREAD_MUTEX_INITIALIZER, .ctx = ctx, .cfg = &cfg, .want_detail = true};
    pthread_t rep_thread;
    bool rep_started = false;
    struct ssl_ctx_st *tls = NULL;

    /* The map starts at 1 GiB at most and grows up to storage.size.max. */
    size_t smax = (size_t)cfg.storage_max;
    store_options so = {.dir = cfg.storage_dir,
                        .sync = cfg.storage_sync,
                        .map_size = smax < ((size_t)1 << 30) ? smax : ((size_t)1 << 30),
                        .map_max = smax,
                        .count_max = (uint64_t)cfg.storage_count_max};
    if (!ls) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    if (store_open(&so, &st, err, sizeof err) < 0)
        goto out;
    for (size_t i = 0; i < cfg.listen.n && !tls; i++)
        if (listener_is_tls(BT_CFG_AT(cfg.listen, char *, i)) &&
            !(tls = transport_tls_ctx_new(&cfg, err, sizeof err)))
            goto out;
    /* A WebSocket message may carry several packets; the codec bounds each one, and frames
     * are decoded as a stream, so this bound only refuses absurd frame lengths. */
    uint64_t ws_max = (uint64_t)cfg.length_max + BT_MQTT_MAX_HEADER + 64 * 1024;
    for (; nls < cfg.listen.n; nls++)
        if (listener_open(&ls[nls], BT_CFG_AT(cfg.listen, char *, nls), tls, ws_max, err,
                          sizeof err) < 0)
            goto out;
    if (hub_init(&h, &cfg, st, err, sizeof err) < 0)
        goto out;
    hub_ok = true;

    if (ctx->env.api_address) {
        char aerr[256];
        rep.api = bt_api_new_from_env(5000, aerr, sizeof aerr);
        rep.interval_ms = cfg.report_interval_ms;
        if (!rep.api)
            bt_logkv(BT_LOG_WARN, "no master API client, counters are not reported", "error", aerr,
                     NULL);
        else {
            pthread_attr_t attr; /* the reporter builds one JSON and one request: small stack */
            pthread_attr_init(&attr);
            pthread_attr_setstacksize(&attr, 256 * 1024);
            rep_started = pthread_create(&rep_thread, &attr, report_main, &rep) == 0;
            pthread_attr_destroy(&attr);
        }
    }
    for (size_t i = 0; i < nls; i++)
        bt_logkv(BT_LOG_INFO, "listening", "address", ls[i].address, NULL);
    bt_logkv(BT_LOG_INFO, "hub started", "storage", cfg.storage_dir, NULL);
    rc = loop_run(&h, ls, nls, bt_ctx_stop_fd(ctx), rep.api ? snapshot : NULL, &rep, err,
                  sizeof err) < 0
             ? 1
             : 0;

out:
    if (rc)
        bt_logkv(BT_LOG_ERROR, "hub failed", "error", err, NULL);
    if (rc && !hub_ok)
        fprintf(stderr, "%s: %s\n", ctx->program, err);
    if (rep_started) {
        bt_ctx_stop(ctx); /* ends the reporter when the loop failed on its own */
        pthread_join(rep_thread, NULL);
    }
    bt_api_free(rep.api);
    stats_snapshot_free(&rep.snap);
    if (hub_ok) {
        hub_shutdown(&h);
        if (h.epfd >= 0)
            close(h.epfd);
    }
    for (size_t i = 0; i < nls; i++)
        listener_close(&ls[i]);
    free(ls);
    transport_tls_ctx_free(tls);
    if (st)
        store_close(st);
    bt_logkv(BT_LOG_INFO, "hub stopped", NULL);
    bt_cfg_free(&hub_config_schema, &cfg);
    return rc;
}

int main(int argc, char **argv)
{
    static const bt_module_info info = {
        "MQTT 3.1/3.1.1 broker of Baetyl: tcp, ssl, ws and wss listeners, durable QoS 1, routes.",
        NULL};
    return bt_run_module(&info, argc, argv, run);
}
