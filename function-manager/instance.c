/* Runtime instances through the master API (SPEC §7, §12): a free port and
 * BAETYL_SERVICE_INSTANCE_ADDRESS in native mode, the fixed port 50051 on the docker network
 * in docker mode; `PUT …/instances/<name>/start|stop`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/json.h"
#include "fm.h"

#define DOCKER_PORT 50051

typedef struct {
    fm_backend b; /* first: the pointer handed out */
    bt_api_client *api;
    bool native;
} master_backend;

static int master_start(void *arg, const char *service, const char *name, char *dial,
                        size_t dial_len, char *err, size_t errlen)
{
    const master_backend *mb = arg;
    char listen[64];
    if (mb->native) {
        int port = bt_api_get_available_port(mb->api, err, errlen);
        if (port < 0)
            return -1;
        snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
        snprintf(dial, dial_len, "%s", listen);
    } else {
        snprintf(listen, sizeof listen, "0.0.0.0:%d", DOCKER_PORT);
        snprintf(dial, dial_len, "%s:%d", name, DOCKER_PORT);
    }
    json_t *env = json_pack("{ss}", "BAETYL_SERVICE_INSTANCE_ADDRESS", listen);
    if (!env) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = bt_api_start_instance(mb->api, service, name, env, err, errlen);
    json_decref(env);
    return rc;
}

static int master_stop(void *arg, const char *service, const char *name, char *err, size_t errlen)
{
    const master_backend *mb = arg;
    return bt_api_stop_instance(mb->api, service, name, err, errlen);
}

/* GET /v1/services/<service>/instances/<name>/logs?lines=N →
 * {"state":"running"|"exited"|"unknown","exit_code":<int or null>,"lines":[...]}. */
static int master_status(void *arg, const char *service, const char *name, int lines,
                         fm_instance_status *st, char *err, size_t errlen)
{
    const master_backend *mb = arg;
    char *s = bt_api_escape(service), *n = bt_api_escape(name), *resp = NULL;
    if (!s || !n) {
        free(s);
        free(n);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char path[512];
    snprintf(path, sizeof path, "/v1/services/%s/instances/%s/logs?lines=%d", s, n, lines);
    free(s);
    free(n);
    if (bt_api_request(mb->api, "GET", path, NULL, 0, &resp, NULL, err, errlen) < 0)
        return -1;
    json_error_t je;
    json_t *doc = json_loads(resp, 0, &je);
    free(resp);
    if (!json_is_object(doc)) {
        json_decref(doc);
        snprintf(err, errlen, "instance logs: not a JSON object");
        return -1;
    }
    memset(st, 0, sizeof *st);
    const char *state = bt_json_get_str(doc, "state");
    snprintf(st->state, sizeof st->state, "%s", state ? state : "unknown");
    json_t *code = json_object_get(doc, "exit_code");
    st->exit_code = json_is_integer(code) ? (int)json_integer_value(code) : -1;
    /* joined, then the tail kept: the last lines say why a process ended */
    json_t *ls = json_object_get(doc, "lines"), *l;
    size_t i, total = 0;
    json_array_foreach(ls, i, l) total += json_string_length(l) + 1;
    char *all = malloc(total + 1);
    if (all) {
        size_t used = 0;
        json_array_foreach(ls, i, l)
        {
            if (!json_is_string(l))
                continue;
            if (used)
                all[used++] = '\n';
            memcpy(all + used, json_string_value(l), json_string_length(l));
            used += json_string_length(l);
        }
        all[used] = 0;
        size_t keep = used < sizeof st->output ? used : sizeof st->output - 1;
        memcpy(st->output, all + used - keep, keep + 1);
        free(all);
    }
    json_decref(doc);
    return 0;
}

fm_backend *fm_master_backend_new(bt_api_client *api, bool native)
{
    master_backend *mb = calloc(1, sizeof *mb);
    if (!mb)
        return NULL;
    mb->api = api;
    mb->native = native;
    mb->b = (fm_backend){
        .start = master_start, .stop = master_stop, .status = master_status, .arg = mb};
    return &mb->b;
}

void fm_master_backend_free(fm_backend *b)
{
    free(b); /* b is the first member of its master_backend */
}

/* True when name is "<prefix><digits>". */
static bool is_numbered(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0 || !name[n])
        return false;
    for (const char *p = name + n; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

int fm_stop_leftovers(bt_api_client *api, const char *service, const char *function, char *err,
                      size_t errlen)
{
    json_t *doc = NULL;
    if (bt_api_inspect(api, &doc, NULL, err, errlen) < 0)
        return -1;
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s.%s.", service, function);
    int stopped = 0;
    json_t *services = json_object_get(doc, "services"), *s;
    size_t i;
    json_array_foreach(services, i, s)
    {
        const char *sname = bt_json_get_str(s, "name");
        if (!sname || strcmp(sname, service) != 0)
            continue;
        json_t *insts = json_object_get(s, "instances"), *in;
        size_t j;
        json_array_foreach(insts, j, in)
        {
            const char *iname = bt_json_get_str(in, "name");
            if (!iname || !is_numbered(iname, prefix))
                continue;
            char why[256];
            if (bt_api_stop_instance(api, service, iname, why, sizeof why) < 0) {
                bt_logkv(BT_LOG_WARN, "failed to stop a leftover instance", "instance", iname,
                         "error", why, NULL);
                continue;
            }
            bt_logkv(BT_LOG_INFO, "leftover instance stopped", "instance", iname, NULL);
            stopped++;
        }
    }
    json_decref(doc);
    return stopped;
}
