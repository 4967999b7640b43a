/* remote-mqtt's reports to the master (report.h). */
#include "report.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "baetyl/api.h"
#include "baetyl/log.h"
#include "baetyl/metrics.h"
#include "baetyl/util.h"

struct rm_reporter {
    bt_ctx *ctx;
    const rm_config *cfg;
    rm_bridge **bridges;
    size_t n;
    bt_api_client *api;
    int64_t *backlog_since; /* per rule: when its backlog became non-empty, 0 when empty */
    pthread_t thread;
};

static json_t *metrics(rm_reporter *r)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_t *state = bt_metrics_family(o, "baetyl_remote_link_up", "gauge",
                                      "1 when the rule's client to its remote is connected.");
    json_t *conn = bt_metrics_family(o, "baetyl_remote_connects_total", "counter",
                                     "Connections made to the remote (reconnects included).");
    json_t *backlog =
        bt_metrics_family(o, "baetyl_remote_backlog_messages", "gauge",
                          "Messages from the hub waiting for the remote (queued or unacked).");
    json_t *age = bt_metrics_family(
        o, "baetyl_remote_oldest_backlog_age_seconds", "gauge",
        "How long the backlog to the remote has not been empty (bounds its oldest message).");
    json_t *fwd = bt_metrics_family(o, "baetyl_remote_forwarded_messages_total", "counter",
                                    "Messages forwarded, by rule and direction.");
    json_t *drop = bt_metrics_family(o, "baetyl_remote_dropped_messages_total", "counter",
                                     "Messages not forwarded, by rule and direction.");
    int64_t now = bt_now_ms();
    for (size_t i = 0; i < r->n; i++) {
        const rm_rule *rule = &BT_CFG_AT(r->cfg->rules, rm_rule, i);
        char rn[32];
        snprintf(rn, sizeof rn, "%zu", i);
        rm_dir_stats up, down;
        rm_bridge_stats(r->bridges[i], 0, &up);
        rm_bridge_stats(r->bridges[i], 1, &down);
        json_t *l = json_pack("{s:s,s:s}", "remote", rule->remote.name, "rule", rn);
        size_t waiting = up.queued + up.pending;
        if (!waiting)
            r->backlog_since[i] = 0;
        else if (!r->backlog_since[i])
            r->backlog_since[i] = now;
        double a = waiting ? (double)(now - r->backlog_since[i]) / 1000.0 : 0;
        json_t *s[] = {state, conn, backlog, age};
        double v[] = {up.up, (double)up.connects, (double)waiting, a};
        for (int k = 0; k < 4 && l; k++)
            json_array_append_new(s[k], json_pack("[s,O,f]", "", l, v[k]));
        static const char *const dirs[] = {"hub_to_remote", "remote_to_hub"};
        const rm_dir_stats *d[] = {&up, &down};
        for (int k = 0; k < 2 && l; k++) {
            json_t *ld = json_pack("{s:s,s:s,s:s}", "remote", rule->remote.name, "rule", rn,
                                   "direction", dirs[k]);
            json_array_append_new(fwd, json_pack("[s,O,f]", "", ld, (double)d[k]->forwarded));
            json_array_append_new(drop, json_pack("[s,O,f]", "", ld, (double)d[k]->dropped));
            json_decref(ld);
        }
        json_decref(l);
    }
    for (size_t i = 0; i < r->cfg->remotes.n; i++) {
        const rm_remote *rm = &BT_CFG_AT(r->cfg->remotes, rm_remote, i);
        if (rm->mqtt.cert)
            bt_metrics_cert(o, rm->mqtt.cert, rm->name);
    }
    if (r->cfg->hub.cert)
        bt_metrics_cert(o, r->cfg->hub.cert, "hub");
    return o;
}

static void *report_main(void *arg)
{
    rm_reporter *r = arg;
    const char *svc = r->ctx->env.service_name;
    const char *inst = r->ctx->env.instance_name ? r->ctx->env.instance_name : svc;
    do {
        json_t *m = metrics(r);
        json_t *stats = m ? json_pack("{s:o}", "metrics", m) : NULL;
        char err[256];
        if (stats && bt_api_report_instance(r->api, svc, inst, stats, err, sizeof err) < 0)
            bt_logkv(BT_LOG_WARN, "report to the master failed", "error", err, NULL);
        json_decref(stats);
    } while (!bt_ctx_sleep(r->ctx, r->cfg->report_interval_ms));
    return NULL;
}

rm_reporter *rm_report_start(bt_ctx *ctx, const rm_config *cfg, rm_bridge **bridges, size_t n)
{
    if (!ctx->env.api_address || !ctx->env.service_name)
        return NULL;
    rm_reporter *r = calloc(1, sizeof *r);
    char err[256];
    if (!r)
        return NULL;
    *r = (rm_reporter){.ctx = ctx, .cfg = cfg, .bridges = bridges, .n = n};
    r->backlog_since = calloc(n ? n : 1, sizeof *r->backlog_since);
    r->api = bt_api_new_from_env(5000, err, sizeof err);
    if (!r->api)
        bt_logkv(BT_LOG_WARN, "no master API client, metrics are not reported", "error", err, NULL);
    pthread_attr_t attr; /* the reporter builds one JSON and one request: small stack */
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int started =
        r->backlog_since && r->api && pthread_create(&r->thread, &attr, report_main, r) == 0;
    pthread_attr_destroy(&attr);
    if (!started) {
        bt_api_free(r->api);
        free(r->backlog_since);
        free(r);
        return NULL;
    }
    return r;
}

void rm_report_stop(rm_reporter *r)
{
    if (!r)
        return;
    pthread_join(r->thread, NULL);
    bt_api_free(r->api);
    free(r->backlog_since);
    free(r);
}
