/* baetyl-function-sql: the SQL function runtime (SPEC §12 "Runtimes"). Each configured
 * function's handler is one SQL statement (function-sql/sql.h), compiled at startup — a
 * statement that does not parse refuses the start with its position — and run on every
 * Call for that FunctionName over gRPC (sdk function server). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/config.h"
#include "baetyl/context.h"
#include "baetyl/function.h"
#include "baetyl/function_config.h"
#include "baetyl/log.h"
#include "sql.h"

typedef struct {
    char *name;
    char *handler; /* the SQL statement */
    char *codedir; /* accepted like the other runtimes; unused */
} fn_config;

typedef struct {
    bt_fn_server_config server;
    bt_cfg_list functions; /* of fn_config */
    bt_logger_config logger;
} sql_config;

static const bt_cfg_field fn_fields[] = {
    BT_FIELD(fn_config, name, "name", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(fn_config, handler, "handler", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(fn_config, codedir, "codedir", BT_CFG_STRING),
    {0}};
static const bt_cfg_schema fn_schema = {sizeof(fn_config), fn_fields, NULL};

static int config_check(void *obj, char *err, size_t errlen)
{
    const sql_config *c = obj;
    for (size_t i = 0; i < c->functions.n; i++)
        for (size_t j = 0; j < i; j++) {
            const char *a = BT_CFG_AT(c->functions, fn_config, i).name;
            if (strcmp(a, BT_CFG_AT(c->functions, fn_config, j).name) == 0) {
                snprintf(err, errlen, "functions[%zu].name: function (%s) is declared twice", i, a);
                return -1;
            }
        }
    return 0;
}

static const bt_cfg_field config_fields[] = {
    BT_FIELD(sql_config, server, "server", BT_CFG_STRUCT, .sub = &bt_fn_server_schema),
    BT_FIELD(sql_config, functions, "functions", BT_CFG_LIST, .sub = &fn_schema),
    BT_FIELD(sql_config, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    {0}};
static const bt_cfg_schema config_schema = {sizeof(sql_config), config_fields, config_check};

typedef struct {
    const char *name;
    sql_stmt *stmt;
} sql_function;

typedef struct {
    sql_function *fns;
    size_t n;
} sql_runtime;

static const sql_function *find_function(const sql_runtime *rt, const char *name)
{
    for (size_t i = 0; i < rt->n; i++)
        if (name && strcmp(rt->fns[i].name, name) == 0)
            return &rt->fns[i];
    return NULL;
}

/* One Call: the statement of in->function_name on the message; no result = empty payload. */
static int handle(const bt_fn_msg *in, bt_fn_msg *out, char *err, size_t errlen, void *arg)
{
    const sql_runtime *rt = arg;
    const sql_function *f = find_function(rt, in->function_name);
    if (!f) {
        bt_logkv(BT_LOG_WARN, "function not found", "function", in->function_name, NULL);
        snprintf(err, errlen, "function not found: (%s)", in->function_name);
        return -1;
    }
    sql_msg m = {
        .qos = (int)in->qos,
        .topic = in->topic,
        .timestamp = in->timestamp,
        .invokeid = in->function_invoke_id,
    };
    char *res = NULL, why[256];
    size_t len = 0;
    int rc = sql_run(f->stmt, in->payload, in->payload_len, &m, &res, &len, why, sizeof why);
    if (rc < 0) {
        bt_logkv(BT_LOG_ERROR, "function failed", "function", f->name, "invokeid",
                 in->function_invoke_id, "error", why, NULL);
        snprintf(err, errlen, "function (%s): %s", f->name, why);
        return -1;
    }
    if (rc == 0) {
        if (bt_log_enabled(BT_LOG_DEBUG))
            bt_logkv(BT_LOG_DEBUG, "no result", "function", f->name, "invokeid",
                     in->function_invoke_id, "reason", why[0] ? why : "WHERE is not true", NULL);
        return 0;
    }
    rc = bt_fn_msg_set_payload(out, res, len);
    free(res);
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}

static void runtime_free(sql_runtime *rt)
{
    for (size_t i = 0; i < rt->n; i++)
        sql_free(rt->fns[i].stmt);
    free(rt->fns);
    rt->fns = NULL;
    rt->n = 0;
}

/* Compiles every function's statement; the first that does not parse is the error. */
static int runtime_load(sql_runtime *rt, const sql_config *c, char *err, size_t errlen)
{
    rt->n = 0;
    rt->fns = calloc(c->functions.n ? c->functions.n : 1, sizeof *rt->fns);
    if (!rt->fns) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < c->functions.n; i++) {
        const fn_config *fc = &BT_CFG_AT(c->functions, fn_config, i);
        char why[256];
        sql_stmt *st = sql_compile(fc->handler, why, sizeof why);
        if (!st) {
            snprintf(err, errlen, "function (%s): %s", fc->name, why);
            runtime_free(rt);
            return -1;
        }
        rt->fns[rt->n].name = fc->name;
        rt->fns[rt->n++].stmt = st;
        bt_logkv(BT_LOG_INFO, "function loaded", "function", fc->name, "handler", fc->handler,
                 NULL);
    }
    return 0;
}

/* Logs a startup failure, and prints it too when the log goes to a file. */
static int fail(const bt_ctx *ctx, const char *err)
{
    bt_logkv(BT_LOG_ERROR, "failed to start", "error", err, NULL);
    if (bt_log_is_file())
        fprintf(stderr, "%s: %s\n", ctx->program, err);
    return 1;
}

static int run(bt_ctx *ctx)
{
    sql_config cfg;
    char err[512];
    if (bt_ctx_load_config(ctx, &config_schema, &cfg, err, sizeof err) < 0)
        return 1;
    sql_runtime rt = {0};
    bt_fn_server *srv = NULL;
    int rc = 1;
    if (runtime_load(&rt, &cfg, err, sizeof err) < 0) {
        rc = fail(ctx, err);
        goto out;
    }
    /* A dynamic instance listens where the function-manager told the master. */
    const char *address = ctx->env.instance_address && ctx->env.instance_address[0]
                              ? ctx->env.instance_address
                              : cfg.server.address;
    if (!address || !address[0]) {
        rc = fail(ctx, "server.address: required (or set BAETYL_SERVICE_INSTANCE_ADDRESS)");
        goto out;
    }
    address = bt_fn_listen_address(address);
    bt_fn_server_options o = bt_fn_server_config_options(&cfg.server);
    /* A statement is evaluated in microseconds and never blocks: on the server's I/O thread,
     * a call crosses no thread (workers.max does not apply). */
    o.inline_calls = true;
    srv = bt_fn_server_start(address, &o, handle, &rt, err, sizeof err);
    if (!srv) {
        rc = fail(ctx, err);
        goto out;
    }
    if (rt.n == 0)
        bt_logkv(BT_LOG_WARN, "no functions configured", NULL);
    char nfn[24], port[16];
    snprintf(nfn, sizeof nfn, "%zu", rt.n);
    snprintf(port, sizeof port, "%d", bt_fn_server_port(srv));
    bt_logkv(BT_LOG_INFO, "server started", "address", address, "port", port, "functions", nfn,
             NULL);
    bt_ctx_wait(ctx);
    bt_fn_server_stop(srv);
    bt_logkv(BT_LOG_INFO, "service closed", NULL);
    rc = 0;
out:
    runtime_free(&rt);
    bt_cfg_free(&config_schema, &cfg);
    return rc;
}

int main(int argc, char **argv)
{
    static const bt_module_info info = {
        .description = "Baetyl SQL function runtime: serves baetyl.Function/Call (and CallBatch) "
                       "with the SQL statements of its config.",
        .usage = NULL,
    };
    return bt_run_module(&info, argc, argv, run);
}
