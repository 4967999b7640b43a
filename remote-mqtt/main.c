/* baetyl-remote-mqtt: bridges the hub and remote MQTT brokers (SPEC §13). Each rule pairs a
 * client to the hub with a client to one remote and forwards both ways (bridge.h); the
 * config and the client id rules are in config.h. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "baetyl/context.h"
#include "baetyl/log.h"
#include "bridge.h"
#include "config.h"
#include "report.h"

typedef struct {
    bt_ctx *ctx;
    atomic_bool failed;
} app;

/* A client gave up (validatesubs and a refused subscription): stop the module with an
 * error, so that whoever supervises it sees the failure. */
static void on_fatal(const char *rule, const char *reason, void *arg)
{
    app *a = arg;
    bt_logkv(BT_LOG_ERROR, "rule stopped", "rule", rule, "reason", reason, NULL);
    atomic_store(&a->failed, true);
    bt_ctx_stop(a->ctx);
}

/* Settings of rule i's two clients; they borrow the strings of cfg. */
static void rule_settings(const rm_config *cfg, size_t i, bt_mqtt_client_config *hub,
                          bt_mqtt_client_config *remote)
{
    const rm_rule *rule = &BT_CFG_AT(cfg->rules, rm_rule, i);
    *hub = cfg->hub;
    hub->clientid = (char *)rm_config_hub_clientid(cfg, i);
    hub->subscriptions = rule->hub.subscriptions;
    *remote = rm_config_remote(cfg, rule->remote.name)->mqtt;
    remote->clientid = (char *)rm_config_remote_clientid(cfg, i);
    remote->subscriptions = rule->remote.subscriptions;
}

static void warn_ignored(const rm_config *cfg)
{
    if (cfg->hub.subscriptions.n)
        bt_logf(BT_LOG_WARN, "hub.subscriptions is ignored: each rule subscribes to "
                             "rules[].hub.subscriptions");
    if (cfg->hub.clientid && *cfg->hub.clientid)
        bt_logf(BT_LOG_WARN, "hub.clientid is ignored: each rule connects with "
                             "rules[].hub.clientid, else its remote client id");
    for (size_t i = 0; i < cfg->remotes.n; i++)
        if (BT_CFG_AT(cfg->remotes, rm_remote, i).mqtt.subscriptions.n)
            bt_logf(BT_LOG_WARN,
                    "remotes[%zu].subscriptions is ignored: each rule subscribes "
                    "to rules[].remote.subscriptions",
                    i);
    if (cfg->rules.n == 0)
        bt_logf(BT_LOG_WARN, "no rules: nothing to forward");
}

/* One line per rule and direction with what it carried, for whoever reads the log. */
static void log_stats(rm_bridge *b, size_t i)
{
    static const char *const what[2] = {"hub -> remote", "remote -> hub"};
    for (int dir = 0; dir < 2; dir++) {
        rm_dir_stats st;
        rm_bridge_stats(b, dir, &st);
        char rule[32], rec[24], fwd[24], dup[24], drop[24];
        snprintf(rule, sizeof rule, "rules[%zu]", i);
        snprintf(rec, sizeof rec, "%llu", (unsigned long long)st.received);
        snprintf(fwd, sizeof fwd, "%llu", (unsigned long long)st.forwarded);
        snprintf(dup, sizeof dup, "%llu", (unsigned long long)st.duplicates);
        snprintf(drop, sizeof drop, "%llu", (unsigned long long)st.dropped);
        bt_logkv(BT_LOG_INFO, "rule totals", "rule", rule, "direction", what[dir], "received", rec,
                 "forwarded", fwd, "duplicates", dup, "dropped", drop, NULL);
    }
}

static void destroy_all(rm_bridge **bridges, size_t n)
{
    for (size_t i = 0; i < n; i++) /* all stop at once, then each is joined */
        rm_bridge_stop(bridges[i]);
    for (size_t i = 0; i < n; i++) {
        if (bridges[i])
            log_stats(bridges[i], i);
        rm_bridge_destroy(bridges[i]);
    }
    free(bridges);
}

static int run(bt_ctx *ctx)
{
    rm_config cfg;
    char err[512];
    if (bt_ctx_load_config(ctx, &rm_config_schema, &cfg, err, sizeof err) < 0)
        return 1;
    warn_ignored(&cfg);
    app a = {.ctx = ctx};
    size_t n = cfg.rules.n;
    rm_bridge **bridges = calloc(n ? n : 1, sizeof *bridges);
    if (!bridges) {
        bt_error("out of memory");
        bt_cfg_free(&rm_config_schema, &cfg);
        return 1;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const rm_rule *rule = &BT_CFG_AT(cfg.rules, rm_rule, i);
        bt_mqtt_client_config hub, remote;
        rule_settings(&cfg, i, &hub, &remote);
        char name[160];
        snprintf(name, sizeof name, "rules[%zu] (%.100s)", i, rule->remote.name);
        bridges[i] = rm_bridge_create(name, &hub, &remote, on_fatal, &a, err, sizeof err);
        if (!bridges[i] || rm_bridge_start(bridges[i], err, sizeof err) < 0) {
            bt_logkv(BT_LOG_ERROR, "cannot start rule", "rule", name, "error", err, NULL);
            rc = 1;
            continue;
        }
        bt_logkv(BT_LOG_INFO, "rule started", "rule", name, "hub_clientid", hub.clientid, "remote",
                 remote.address, "remote_clientid", remote.clientid, NULL);
    }
    if (rc == 0) {
        rm_reporter *rep = rm_report_start(ctx, &cfg, bridges, n);
        bt_ctx_wait(ctx);
        bt_ctx_stop(ctx); /* ends the reporter's sleep */
        rm_report_stop(rep);
        if (atomic_load(&a.failed))
            rc = 1;
    }
    destroy_all(bridges, n);
    bt_cfg_free(&rm_config_schema, &cfg);
    return rc;
}

int main(int argc, char **argv)
{
    static const bt_module_info info = {
        "bridges the hub and remote MQTT brokers: each rule forwards messages both ways, "
        "QoS 1 acknowledged end to end",
        NULL};
    return bt_run_module(&info, argc, argv, run);
}
