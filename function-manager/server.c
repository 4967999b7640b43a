/* The function-manager's optional gRPC server (SPEC §12 `server`): other modules (e.g.
 * video-infer) call baetyl.Function/Call here and the call goes to the pool of the function
 * named by FunctionName — one attempt, like Baetyl 1.0; the caller decides about retries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm.h"

struct fm_server {
    bt_fn_server *srv;
    fm_pool **pools;
    size_t n;
};

static int handle(const bt_fn_msg *in, bt_fn_msg *out, char *err, size_t errlen, void *arg)
{
    const fm_server *s = arg;
    fm_pool *p = NULL;
    for (size_t i = 0; i < s->n && !p; i++)
        if (in->function_name &&
            strcmp(fm_pool_function(s->pools[i])->name, in->function_name) == 0)
            p = s->pools[i];
    if (!p) {
        snprintf(err, errlen, "function (%s) not found",
                 in->function_name ? in->function_name : "");
        return -1;
    }
    bt_fn_msg req = *in; /* borrowed fields; only read */
    char id[37];
    if (!req.function_invoke_id || !*req.function_invoke_id) {
        bt_uuid4(id);
        req.function_invoke_id = id;
    }
    bt_fn_msg res;
    int rc = fm_invoke(p, &req, 1, &res, err, errlen);
    if (rc < 0) {
        if (rc == -2)
            snprintf(err, errlen, "function (%s) is stopping", in->function_name);
        return -1;
    }
    /* The runtime's reply as it is (ID, QOS, Topic… echoed by the runtime), our invoke id. */
    bt_fn_msg_clear(out);
    *out = res;
    if (bt_fn_msg_set_str(&out->function_invoke_id, req.function_invoke_id) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

fm_server *fm_server_start(const bt_fn_server_config *cfg, fm_pool **pools, size_t n, char *err,
                           size_t errlen)
{
    fm_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->pools = pools;
    s->n = n;
    bt_fn_server_options o = bt_fn_server_config_options(cfg);
    const char *addr = bt_fn_listen_address(cfg->address);
    char why[512];
    s->srv = bt_fn_server_start(addr, &o, handle, s, why, sizeof why);
    if (!s->srv) {
        snprintf(err, errlen, "server: %s", why);
        free(s);
        return NULL;
    }
    bt_logkv(BT_LOG_INFO, "server started", "address", cfg->address, NULL);
    return s;
}

void fm_server_stop(fm_server *s)
{
    if (!s)
        return;
    bt_fn_server_stop(s->srv);
    free(s);
}
