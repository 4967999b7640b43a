/* baetyl-hub: the MQTT broker service (SPEC §11). Standalone: `baetyl-hub -c conf.yml`;
 * under the master it reads etc/baetyl/service.yml and reports its counters. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "baetyl/api.h"
#include "baetyl/log.h"
#include "config.h"
#include "hub.h"
#include "listener.h"
#include "loop.h"

/* Counters handed from the loop to the reporter thread. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    hub_counters ctr;
    size_t conns, subs;
    uint64_t last_seq;
    bool stop;
    int64_t interval_ms;
    bt_api_client *api;
} reporter;

static void snapshot(hub *h, void *arg)
{
    reporter *r = arg;
    pthread_mutex_lock(&r->mu);
    r->ctr = h->ctr;
    r->conns = h->nconns;
    r->subs = h->subs.count;
    r->last_seq = h->last_seq;
    pthread_mutex_unlock(&r->mu);
}

static void *report_main(void *arg)
{
    reporter *r = arg;
    const char *svc = getenv("BAETYL_SERVICE_NAME");
    const char *inst = getenv("BAETYL_SERVICE_INSTANCE_NAME");
    if (!svc)
        svc = getenv("OPENEDGE_SERVICE_NAME");
    if (!inst)
        inst = svc;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += r->interval_ms / 1000;
        ts.tv_nsec += (r->interval_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &ts) != ETIMEDOUT) {
        }
        if (r->stop)
            break;
        json_t *stats = json_object();
        json_t *s = json_pack("{sI sI sI sI sI sI sI sI sI}", "connections", (json_int_t)r->conns, "connections_total",
                              (json_int_t)r->ctr.conns_total, "messages_in", (json_int_t)r->ctr.msgs_in,
                              "messages_out", (json_int_t)r->ctr.msgs_out, "bytes_in", (json_int_t)r->ctr.bytes_in,
                              "bytes_out", (json_int_t)r->ctr.bytes_out, "qos1_committed",
                              (json_int_t)r->ctr.committed, "qos0_dropped", (json_int_t)r->ctr.qos0_dropped,
                              "subscriptions", (json_int_t)r->subs);
        pthread_mutex_unlock(&r->mu);
        if (stats && s) {
            json_object_set_new(stats, "hub", s);
            s = NULL;
            char err[256];
            if (svc && bt_api_report_instance(r->api, svc, inst, stats, err, sizeof err) < 0)
                bt_logkv(BT_LOG_WARN, "report to the master failed", "error", err, NULL);
        }
        json_decref(s);
        json_decref(stats);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: baetyl-hub [-c etc/baetyl/service.yml]\n"
               "MQTT 3.1/3.1.1 broker of Baetyl: tcp, ssl, ws and wss listeners, durable QoS 1, routes.\n");
}

int main(int argc, char **argv)
{
    const char *path = "etc/baetyl/service.yml";
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    char err[512];
    hub_config cfg;
    bt_log_set_field("service", getenv("BAETYL_SERVICE_NAME") ? getenv("BAETYL_SERVICE_NAME") : "hub");
    if (hub_config_load(&cfg, path, err, sizeof err) < 0) {
        bt_logkv(BT_LOG_ERROR, "failed to load config", "error", err, NULL);
        fprintf(stderr, "baetyl-hub: config %s: %s\n", path, err);
        return 1;
    }
    if (bt_log_init(&cfg.logger, err, sizeof err) < 0) {
        fprintf(stderr, "baetyl-hub: logger: %s\n", err);
        hub_config_free(&cfg);
        return 1;
    }
    if (cfg.listen.n == 0) {
        bt_logkv(BT_LOG_ERROR, "failed to load config", "error", "listen: required", NULL);
        fprintf(stderr, "baetyl-hub: config %s: listen: required\n", path);
        hub_config_free(&cfg);
        return 1;
    }
    int rc = 1;
    store *st = NULL;
    listener *ls = calloc(cfg.listen.n, sizeof *ls);
    size_t nls = 0;
    hub h;
    bool hub_ok = false;
    reporter rep = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_t rep_thread;
    bool rep_started = false;
    int sigfd = -1;
    struct ssl_ctx_st *tls = NULL;

    store_options so = {.dir = cfg.storage_dir, .sync = cfg.storage_sync, .map_size = 0};
    if (!ls) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    if (store_open(&so, &st, err, sizeof err) < 0)
        goto out;
    for (size_t i = 0; i < cfg.listen.n && !tls; i++)
        if (listener_is_tls(BT_CFG_AT(cfg.listen, char *, i)) && !(tls = tls_server_ctx_new(&cfg, err, sizeof err)))
            goto out;
    /* A WebSocket message may carry several packets; the codec bounds each one, and frames
     * are decoded as a stream, so this bound only refuses absurd frame lengths. */
    uint64_t ws_max = (uint64_t)cfg.length_max + BT_MQTT_MAX_HEADER + 64 * 1024;
    for (; nls < cfg.listen.n; nls++)
        if (listener_open(&ls[nls], BT_CFG_AT(cfg.listen, char *, nls), tls, ws_max, err, sizeof err) < 0)
            goto out;
    if (hub_init(&h, &cfg, st, err, sizeof err) < 0)
        goto out;
    hub_ok = true;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread: they inherit the mask */
    signal(SIGPIPE, SIG_IGN);
    sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);

    if (getenv("BAETYL_MASTER_API_ADDRESS") || getenv("OPENEDGE_MASTER_API_ADDRESS")) {
        char aerr[256];
        rep.api = bt_api_new_from_env(5000, aerr, sizeof aerr);
        rep.interval_ms = cfg.report_interval_ms;
        if (!rep.api)
            bt_logkv(BT_LOG_WARN, "no master API client, counters are not reported", "error", aerr, NULL);
        else if (pthread_create(&rep_thread, NULL, report_main, &rep) == 0)
            rep_started = true;
    }
    for (size_t i = 0; i < nls; i++)
        bt_logkv(BT_LOG_INFO, "listening", "address", ls[i].address, NULL);
    bt_logkv(BT_LOG_INFO, "hub started", "storage", cfg.storage_dir, NULL);
    rc = hub_loop_run(&h, ls, nls, sigfd, rep.api ? snapshot : NULL, &rep, err, sizeof err) < 0 ? 1 : 0;

out:
    if (rc)
        bt_logkv(BT_LOG_ERROR, "hub failed", "error", err, NULL);
    if (rc && !hub_ok)
        fprintf(stderr, "baetyl-hub: %s\n", err);
    if (rep_started) {
        pthread_mutex_lock(&rep.mu);
        rep.stop = true;
        pthread_cond_signal(&rep.cv);
        pthread_mutex_unlock(&rep.mu);
        pthread_join(rep_thread, NULL);
    }
    bt_api_free(rep.api);
    if (hub_ok) {
        hub_shutdown(&h);
        if (h.epfd >= 0)
            close(h.epfd);
    }
    for (size_t i = 0; i < nls; i++)
        listener_close(&ls[i]);
    free(ls);
    tls_server_ctx_free(tls);
    if (sigfd >= 0)
        close(sigfd);
    if (st)
        store_close(st);
    bt_logkv(BT_LOG_INFO, "hub stopped", NULL);
    bt_log_close();
    hub_config_free(&cfg);
    return rc;
}
