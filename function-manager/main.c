/* baetyl-function-manager (SPEC §12): runs users' functions on MQTT messages. Each rule
 * subscribes to a topic of the hub on its own connection, calls its function in a runtime
 * instance (python3, node, sql… started on demand through the master) over gRPC and
 * publishes the result; an optional gRPC server lets other modules call the functions. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/context.h"
#include "fm.h"
#include "metrics.h"

typedef struct {
    bt_ctx *ctx;
    atomic_bool failed; /* a rule stopped for good: exit 1, the master restarts us */
    fm_config cfg;
    bool cfg_loaded;
    bt_api_client *api;
    fm_backend *backend;
    fm_pool **pools;
    size_t npools;
    fm_rule **rules;
    size_t nrules;
    fm_server *server;
} manager;

/* Stops in the order that lets each part finish: no new messages, waiters woken, server
 * calls returned, workers joined, then the instances stopped. */
static void manager_stop(manager *m)
{
    for (size_t i = 0; i < m->nrules; i++)
        fm_rule_stop(m->rules[i]);
    for (size_t i = 0; i < m->npools; i++)
        fm_pool_close(m->pools[i]);
    fm_server_stop(m->server);
    for (size_t i = 0; i < m->nrules; i++)
        fm_rule_free(m->rules[i]);
    for (size_t i = 0; i < m->npools; i++) {
        /* the most instances ever busy or idle at once: what instance.max had to allow */
        char n[24], peak[24];
        snprintf(n, sizeof n, "%zu", fm_pool_size(m->pools[i]));
        snprintf(peak, sizeof peak, "%zu", fm_pool_peak(m->pools[i]));
        bt_logkv(BT_LOG_INFO, "function totals", "function", fm_pool_function(m->pools[i])->name,
                 "instances", n, "peak", peak, NULL);
        fm_pool_free(m->pools[i]);
    }
    free(m->rules);
    free(m->pools);
    fm_master_backend_free(m->backend);
    bt_api_free(m->api);
    if (m->cfg_loaded)
        bt_cfg_free(&fm_config_schema, &m->cfg);
}

static fm_pool *pool_of(const manager *m, const char *function)
{
    for (size_t i = 0; i < m->npools; i++)
        if (strcmp(fm_pool_function(m->pools[i])->name, function) == 0)
            return m->pools[i];
    return NULL;
}

static void on_fatal(void *arg, const char *why)
{
    manager *m = arg;
    atomic_store(&m->failed, true);
    bt_ctx_stop(m->ctx);
}

static int manager_start(manager *m, bt_ctx *ctx, char *err, size_t errlen)
{
    fm_config *c = &m->cfg;
    char why[512];
    m->api = bt_api_new_from_env(0, why, sizeof why);
    if (!m->api) {
        snprintf(err, errlen, "the master API is needed to start function instances: %s", why);
        return -1;
    }
    m->backend = fm_master_backend_new(m->api, bt_ctx_is_native(ctx));
    m->pools = calloc(c->functions.n + 1, sizeof *m->pools);
    m->rules = calloc(c->rules.n + 1, sizeof *m->rules);
    if (!m->backend || !m->pools || !m->rules) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < c->functions.n; i++) {
        const fm_function_cfg *f = &BT_CFG_AT(c->functions, fm_function_cfg, i);
        /* instances of a run that crashed would otherwise run forever */
        if (fm_stop_leftovers(m->api, f->service, f->name, why, sizeof why) < 0)
            bt_logkv(BT_LOG_WARN, "cannot look for leftover instances", "function", f->name,
                     "error", why, NULL);
        fm_pool *p = fm_pool_new(f, m->backend, err, errlen);
        if (!p)
            return -1;
        m->pools[m->npools++] = p;
        if (fm_pool_start(p, err, errlen) < 0)
            return -1;
    }
    if (fm_metrics_init(m->pools, m->npools) < 0 ||
        fm_metrics_report_start(ctx, m->api, c->report_interval_ms) < 0) {
        snprintf(err, errlen, "cannot start the metrics reporter");
        return -1;
    }
    for (size_t i = 0; i < c->rules.n; i++) {
        const fm_rule_cfg *rc = &BT_CFG_AT(c->rules, fm_rule_cfg, i);
        fm_rule *r =
            fm_rule_new(&c->hub, rc, i, pool_of(m, rc->function), on_fatal, m, err, errlen);
        if (!r)
            return -1;
        m->rules[m->nrules++] = r;
        if (fm_rule_start(r, err, errlen) < 0)
            return -1;
    }
    if (c->server.address && *c->server.address) {
        m->server = fm_server_start(&c->server, m->pools, m->npools, err, errlen);
        if (!m->server)
            return -1;
    }
    return 0;
}

static int run(bt_ctx *ctx)
{
    manager m;
    memset(&m, 0, sizeof m);
    m.ctx = ctx;
    atomic_init(&m.failed, false);
    char err[1024];
    if (bt_ctx_load_config(ctx, &fm_config_schema, &m.cfg, err, sizeof err) < 0)
        return 1;
    m.cfg_loaded = true;
    int rc = 0;
    if (manager_start(&m, ctx, err, sizeof err) < 0) {
        bt_logkv(BT_LOG_ERROR, "failed to start", "error", err, NULL);
        if (bt_log_is_file())
            fprintf(stderr, "%s: %s\n", ctx->program, err);
        rc = 1;
    } else {
        bt_ctx_wait(ctx);
        if (atomic_load(&m.failed))
            rc = 1;
    }
    bt_ctx_stop(ctx); /* ends the metrics reporter, which reads the pools */
    fm_metrics_stop();
    manager_stop(&m);
    return rc;
}

int main(int argc, char **argv)
{
    static const bt_module_info info = {
        .description = "runs functions on MQTT messages through runtime instances over gRPC",
        .usage = NULL,
    };
    return bt_run_module(&info, argc, argv, run);
}
