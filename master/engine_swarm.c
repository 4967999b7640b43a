/* The swarm engine (mode swarm): the master runs on a Docker swarm manager and each
 * instance is a one-replica swarm service named after it (engine_swarm_spec.c) on the
 * overlay network `baetyl`, so it may run on any node the placement allows and reaches the
 * others by name. The swarm restarts and moves tasks itself (a dead node's tasks go to
 * another); the master watches the tasks of each service: which node runs it, how often it
 * was restarted, and whether it has ended for good (then the supervisor decides, as in the
 * other engines). A service left by a killed master with the same spec is adopted as is;
 * one whose spec changed is updated in place. */
#include "docker_api.h"
#include "docker_config.h"
#include "engine.h"
#include "engine_swarm.h"
#include "instance_log.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/json.h>
#include <baetyl/log.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_MS 1000     /* how often the tasks of a service are looked at */
#define MAX_SEEN 4096    /* task ids remembered per instance (restarts counted up to this) */
#define MAX_WATCH 4096   /* instances watched */
#define MONITOR_MS 20000 /* a new service's first task must not be rejected within this */
#define UPDATE_MS 90000  /* an update in place must complete within this, or it failed */
#define LOG_TAIL 100     /* lines of an ended service's output kept and logged */
#define LOG_MAX_BYTES (256u << 10)
#define LAST_OUT_MAX 64 /* instances whose last output a service keeps */

typedef struct {
    char *name;
    json_t *spec; /* swarm_service_spec() */
    const app_restart *restart;
    app_restart restart_copy;
    pthread_mutex_t mu; /* last_out */
    json_t *last_out;   /* swarm service name -> the output lines of its ended service */
} swarm_svc;

/* What the master knows of one instance's service, for inspect. */
typedef struct watch {
    char id[80];
    char node[128];
    char node_id[80];
    char state[32];
    char err[256];
    long restarts;
    bool seeded;  /* the tasks there at the first look are no restarts (an update's, an
                   * adopted service's earlier ones) */
    json_t *seen; /* task id -> true */
    struct watch *next;
} watch;

typedef struct {
    docker_client *c;
    char master_id[DOCKER_MASTER_ID_LEN + 1];
    pthread_mutex_t mu; /* watches and nodes */
    watch *watches;
    size_t nwatches;
    json_t *nodes;  /* node id -> hostname */
    json_t *next;   /* names of the services retarget() said start next (replica > 0) */
    json_t *parked; /* swarm service name -> id: stopped, kept running for an update */
} swarm_priv;

static swarm_priv *priv_of(bt_engine *e)
{
    return e->priv;
}

/* One call with a JSON answer in *out (may be NULL). Returns the HTTP status or -1. */
static int call(swarm_priv *p, const char *method, const char *path, const json_t *body,
                json_t **out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    docker_req r = {
        .method = method, .path = path, .body = body, .timeout_ms = 60000, .cancel_fd = -1};
    char *text = NULL;
    size_t len = 0;
    int st = docker_call(p->c, &r, &text, &len, err, errlen);
    if (st < 0) {
        free(text);
        return -1;
    }
    if (st >= 300) {
        docker_answer_error(st, text, method, err, errlen);
    } else if (out && text && len) {
        *out = json_loadb(text, len, 0, NULL);
        if (!*out) {
            free(text);
            return bt_errf(err, errlen, "%s %s: the engine's answer is not JSON", method, path);
        }
    }
    free(text);
    return st;
}

/* ---- the network ------------------------------------------------------------------------- */

static int swarm_prepare(bt_engine *e, const app_config *app, char *err, size_t errlen)
{
    swarm_priv *p = priv_of(e);
    char why[1024];
    int st = call(p, "GET", "/networks/" DOCKER_NETWORK, NULL, NULL, why, sizeof why);
    if (st == 404) {
        json_t *body = json_pack("{s:s,s:s,s:b,s:b,s:{s:s,s:s}}", "Name", DOCKER_NETWORK, "Driver",
                                 "overlay", "Attachable", 1, "CheckDuplicate", 1, "Labels",
                                 "baetyl", "baetyl", DOCKER_MASTER_LABEL, p->master_id);
        st = body ? call(p, "POST", "/networks/create", body, NULL, why, sizeof why) : -1;
        json_decref(body);
        if (st == 201 || st == 200)
            bt_logkv(BT_LOG_INFO, "network (" DOCKER_NETWORK ") created", "engine", "swarm",
                     "driver", "overlay", NULL);
    }
    if (st < 200 || st >= 300)
        return bt_errf(err, errlen, "failed to create network (%s): %s", DOCKER_NETWORK, why);
    for (size_t i = 0; i < app->services.n; i++) {
        const char *image = APP_SERVICE(app, i)->image;
        if (docker_image_present(p->c, image, why, sizeof why) == 0)
            bt_logkv(BT_LOG_WARN,
                     "image not on this node: every node that may run the service needs it "
                     "(docker load, or a registry)",
                     "engine", "swarm", "image", image, NULL);
    }
    return 0;
}

/* ---- services ---------------------------------------------------------------------------- */

static void swarm_svc_free(swarm_svc *s)
{
    if (!s)
        return;
    free(s->name);
    json_decref(s->spec);
    json_decref(s->last_out);
    pthread_mutex_destroy(&s->mu);
    free(s->restart_copy.policy);
    free(s);
}

static int swarm_start_service(bt_engine *e, const app_config *app, const app_service *svc,
                               void **state, char *err, size_t errlen)
{
    swarm_priv *p = priv_of(e);
    *state = NULL;
    swarm_ctx ctx = {.pwd = e->opts.pwd,
                     .network = DOCKER_NETWORK,
                     .master_id = p->master_id,
                     .grace_ms = e->opts.grace_ms};
    json_t *spec = swarm_service_spec(&ctx, app, svc, err, errlen);
    if (!spec)
        return -1;
    /* Binds need their directory on every node (shared storage, or the agent's download
     * on each): made here for this node, as the docker engine does. */
    if (engine_bind_dirs(e->opts.pwd, app, svc, err, errlen) != 0) {
        json_decref(spec);
        return -1;
    }
    swarm_svc *s = calloc(1, sizeof *s);
    if (s)
        pthread_mutex_init(&s->mu, NULL);
    if (!s || !(s->name = strdup(svc->name)) ||
        !(s->restart_copy.policy = strdup(svc->restart.policy))) {
        swarm_svc_free(s);
        json_decref(spec);
        return bt_errf(err, errlen, "out of memory");
    }
    s->restart_copy.retry_max = svc->restart.retry_max;
    s->restart = &s->restart_copy;
    s->spec = spec;
    *state = s;
    return 0;
}

static void swarm_stop_service(bt_engine *e, void *state)
{
    (void)e;
    swarm_svc_free(state);
}

/* ---- watches ----------------------------------------------------------------------------- */

static watch *watch_find(swarm_priv *p, const char *id)
{
    for (watch *w = p->watches; w; w = w->next)
        if (strcmp(w->id, id) == 0)
            return w;
    return NULL;
}

static void watch_add(swarm_priv *p, const char *id)
{
    pthread_mutex_lock(&p->mu);
    watch *w = watch_find(p, id);
    if (!w && p->nwatches < MAX_WATCH && (w = calloc(1, sizeof *w))) {
        snprintf(w->id, sizeof w->id, "%s", id);
        w->seen = json_object();
        w->next = p->watches;
        p->watches = w;
        p->nwatches++;
    }
    pthread_mutex_unlock(&p->mu);
}

static void watch_forget(swarm_priv *p, const char *id)
{
    pthread_mutex_lock(&p->mu);
    for (watch **pp = &p->watches; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->id, id) == 0) {
            watch *w = *pp;
            *pp = w->next;
            json_decref(w->seen);
            free(w);
            p->nwatches--;
            break;
        }
    pthread_mutex_unlock(&p->mu);
}

/* ---- instances --------------------------------------------------------------------------- */

/* Waits for the first task of a new service to run: 0 once one runs (or after MONITOR_MS
 * while the swarm still places it), -1 with err when the swarm rejects it (a missing image on
 * the node, a bind source missing there, ...): the start fails, so an OTA rolls back. */
static int monitor(swarm_priv *p, const char *id, char *err, size_t errlen)
{
    char path[256], why[512];
    snprintf(path, sizeof path, "/tasks?filters=%%7B%%22service%%22%%3A%%5B%%22%s%%22%%5D%%7D", id);
    for (int64_t end = bt_now_ms() + MONITOR_MS; bt_now_ms() < end; poll(NULL, 0, 500)) {
        json_t *tasks = NULL;
        if (call(p, "GET", path, NULL, &tasks, why, sizeof why) != 200 || !json_is_array(tasks)) {
            json_decref(tasks);
            continue;
        }
        size_t i;
        json_t *t;
        const char *rejected = NULL;
        bool running = false;
        json_array_foreach(tasks, i, t)
        {
            const char *st = bt_json_get_str(t, "Status.State");
            running |= st && strcmp(st, "running") == 0;
            if (st && strcmp(st, "rejected") == 0 && !rejected)
                rejected = bt_json_get_str(t, "Status.Err");
        }
        int rc = running || !rejected
                     ? 0
                     : bt_errf(err, errlen, "the swarm rejected its task: %s", rejected);
        json_decref(tasks);
        if (running || rc != 0)
            return rc;
    }
    return 0;
}

/* The error of the newest task the swarm rejected or that failed, for a message. */
static void task_error(swarm_priv *p, const char *id, char *out, size_t len)
{
    char path[256], why[256];
    json_t *tasks = NULL;
    snprintf(path, sizeof path, "/tasks?filters=%%7B%%22service%%22%%3A%%5B%%22%s%%22%%5D%%7D", id);
    out[0] = '\0';
    long long best = -1;
    size_t i;
    json_t *t;
    if (call(p, "GET", path, NULL, &tasks, why, sizeof why) == 200)
        json_array_foreach(tasks, i, t)
        {
            const char *st = bt_json_get_str(t, "Status.State"),
                       *er = bt_json_get_str(t, "Status.Err");
            long long idx = bt_json_get_int(t, "Version.Index", 0);
            if (st && er && *er && (strcmp(st, "rejected") == 0 || strcmp(st, "failed") == 0) &&
                idx > best) {
                best = idx;
                snprintf(out, len, "%s", er);
            }
        }
    json_decref(tasks);
}

/* Follows an update in place (UpdateConfig: FailureAction rollback after Monitor): 0 once
 * the swarm reports it completed, -1 with err once the swarm has rolled the service back
 * (or paused the update), or when it has not completed within UPDATE_MS (a task that never
 * runs: an image the node keeps failing to pull, say): the application rolls back then,
 * which updates the service to its old spec in place. before: the
 * UpdateStatus.StartedAt of an earlier update (its end is no news), or "". */
static int monitor_update(swarm_priv *p, const char *id, const char *before, char *err,
                          size_t errlen)
{
    char path[160], why[512];
    snprintf(path, sizeof path, "/services/%s", id);
    for (int64_t end = bt_now_ms() + UPDATE_MS; bt_now_ms() < end; poll(NULL, 0, 500)) {
        json_t *svc = NULL;
        if (call(p, "GET", path, NULL, &svc, why, sizeof why) != 200) {
            json_decref(svc);
            continue;
        }
        const char *state = bt_json_get_str(svc, "UpdateStatus.State");
        const char *at = bt_json_get_str(svc, "UpdateStatus.StartedAt");
        const char *msg = bt_json_get_str(svc, "UpdateStatus.Message");
        int rc = 1; /* 1: not decided yet */
        if (state && at && strcmp(at, before) != 0) {
            if (strcmp(state, "completed") == 0) {
                rc = 0;
            } else if (strcmp(state, "rollback_completed") == 0 ||
                       strcmp(state, "rollback_paused") == 0 || strcmp(state, "paused") == 0) {
                char task[256];
                task_error(p, id, task, sizeof task);
                rc = task[0]
                         ? bt_errf(err, errlen, "the swarm rejected its task: %s (update %s: %s)",
                                   task, state, msg ? msg : "")
                         : bt_errf(err, errlen, "the swarm's update failed (%s: %s)", state,
                                   msg ? msg : "");
            }
        }
        json_decref(svc);
        if (rc != 1)
            return rc;
    }
    char task[256];
    task_error(p, id, task, sizeof task);
    return task[0] ? bt_errf(err, errlen,
                             "the swarm rejected its task: %s (update not completed within %d s)",
                             task, UPDATE_MS / 1000)
                   : bt_errf(err, errlen, "the swarm's update did not complete within %d s",
                             UPDATE_MS / 1000);
}

static int swarm_start_instance(bt_engine *e, void *state, const char *instance, char *const env[],
                                eng_instance *out, char *err, size_t errlen)
{
    swarm_priv *p = priv_of(e);
    swarm_svc *s = state;
    memset(out, 0, sizeof *out);
    out->wait_fd = -1;
    char name[SWARM_NAME_MAX + 1], hash[40], why[1024], path[160];
    if (swarm_name(instance, name, sizeof name) != 0)
        return bt_errf(err, errlen, "instance (%s): no swarm service name for it", instance);
    json_t *spec = json_deep_copy(s->spec);
    if (!spec || swarm_instance_spec(spec, name, instance, env) != 0 ||
        swarm_spec_hash(spec, hash, sizeof hash) != 0 ||
        json_object_set_new(json_object_get(spec, "Labels"), SWARM_SPEC_LABEL, json_string(hash)) !=
            0 ||
        /* on the task too: any change of the spec replaces the task in an update */
        json_object_set_new(bt_json_get(spec, "TaskTemplate.ContainerSpec.Labels"),
                            SWARM_SPEC_LABEL, json_string(hash)) != 0) {
        json_decref(spec);
        return bt_errf(err, errlen, "out of memory");
    }
    pthread_mutex_lock(&p->mu);
    json_object_del(p->parked, name); /* kept for this start: taken */
    pthread_mutex_unlock(&p->mu);
    json_t *old = NULL, *ans = NULL;
    char before[64] = "";
    bool updated = false;
    snprintf(path, sizeof path, "/services/%s", name);
    int st = call(p, "GET", path, NULL, &old, why, sizeof why);
    const char *verb = "created";
    char id[80] = "";
    if (st == 200) {
        const char *owner = bt_json_get_str(old, "Spec.Labels." DOCKER_MASTER_LABEL);
        const char *was = bt_json_get_str(old, "Spec.Labels." SWARM_SPEC_LABEL);
        snprintf(id, sizeof id, "%s", bt_json_get_str(old, "ID") ? bt_json_get_str(old, "ID") : "");
        if (!owner || strcmp(owner, p->master_id) != 0) {
            st = bt_errf(why, sizeof why,
                         "swarm service name (%s) is taken by a service not managed by this "
                         "master (" DOCKER_MASTER_LABEL "=%s; this master is %s)",
                         name, owner ? owner : "none", p->master_id);
        } else if (was && strcmp(was, hash) == 0) {
            verb = "adopted"; /* left running by a killed master: nothing to change */
        } else {
            /* In place (same service id, its tasks replaced as UpdateConfig says); the swarm
             * rolls it back itself when the new task fails. */
            long long version = bt_json_get_int(old, "Version.Index", -1);
            const char *at = bt_json_get_str(old, "UpdateStatus.StartedAt");
            snprintf(before, sizeof before, "%s", at ? at : "");
            snprintf(path, sizeof path, "/services/%s/update?version=%lld", id, version);
            st = call(p, "POST", path, spec, NULL, why, sizeof why);
            st = st == 200 ? 200 : -1;
            verb = "updated";
            updated = st == 200;
        }
    } else if (st == 404) {
        st = call(p, "POST", "/services/create", spec, &ans, why, sizeof why);
        const char *nid = bt_json_get_str(ans, "ID");
        snprintf(id, sizeof id, "%s", nid ? nid : "");
        st = st == 201 || st == 200 ? 200 : -1;
    } else {
        st = -1;
    }
    json_decref(old);
    json_decref(ans);
    json_decref(spec);
    if (st == 200 && updated && monitor_update(p, id, before, why, sizeof why) != 0) {
        /* Rolled back to its previous spec by the swarm: kept for the application's roll
         * back to take again (settle() removes it if none does). */
        pthread_mutex_lock(&p->mu);
        json_object_set_new(p->parked, name, json_string(id));
        pthread_mutex_unlock(&p->mu);
        st = -1;
    } else if (st == 200 && id[0] && !updated && strcmp(verb, "adopted") != 0 &&
               monitor(p, id, why, sizeof why) != 0) {
        char ignored[256];
        snprintf(path, sizeof path, "/services/%s", id);
        call(p, "DELETE", path, NULL, NULL, ignored, sizeof ignored);
        st = -1;
    }
    if (st != 200 || !id[0])
        return bt_errf(err, errlen, "failed to start instance (%s): %s", instance,
                       id[0] || st != 200 ? why : "the engine gave no service id");
    snprintf(out->id, sizeof out->id, "%s", id);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->owner = s;
    out->started_ms = bt_now_ms();
    watch_add(p, id);
    char msg[200];
    snprintf(msg, sizeof msg, "swarm service (%s) %s", name, verb);
    bt_logkv(BT_LOG_INFO, msg, "engine", "swarm", "instance", instance, "service_id", id, NULL);
    return 0;
}

static const char *node_name(swarm_priv *p, const char *node_id, char *buf, size_t len)
{
    pthread_mutex_lock(&p->mu);
    const char *known = json_string_value(json_object_get(p->nodes, node_id));
    if (known)
        snprintf(buf, len, "%s", known);
    pthread_mutex_unlock(&p->mu);
    if (known)
        return buf;
    char path[160], why[256];
    json_t *j = NULL;
    snprintf(path, sizeof path, "/nodes/%s", node_id);
    const char *host = NULL;
    if (call(p, "GET", path, NULL, &j, why, sizeof why) == 200)
        host = bt_json_get_str(j, "Description.Hostname");
    snprintf(buf, len, "%s", host ? host : node_id);
    if (host) {
        pthread_mutex_lock(&p->mu);
        json_object_set_new(p->nodes, node_id, json_string(host));
        pthread_mutex_unlock(&p->mu);
    }
    json_decref(j);
    return buf;
}

static bool terminal(const char *state)
{
    static const char *const t[] = {"complete", "failed", "rejected", "shutdown",
                                    "orphaned", "remove", NULL};
    for (int i = 0; state && t[i]; i++)
        if (strcmp(state, t[i]) == 0)
            return true;
    return false;
}

/* Looks at the tasks of the instance's service once. Returns 1 when it has ended for good
 * (*code: the exit code of its last task), 0 while it runs (or will be restarted by the
 * swarm), -1 when the service is gone. */
static int look(swarm_priv *p, eng_instance *inst, int *code)
{
    char path[256], why[512];
    json_t *tasks = NULL;
    snprintf(path, sizeof path, "/tasks?filters=%%7B%%22service%%22%%3A%%5B%%22%s%%22%%5D%%7D",
             inst->id);
    int st = call(p, "GET", path, NULL, &tasks, why, sizeof why);
    if (st != 200 || !json_is_array(tasks)) {
        json_decref(tasks);
        snprintf(path, sizeof path, "/services/%s", inst->id);
        return call(p, "GET", path, NULL, NULL, why, sizeof why) == 404 ? -1 : 0;
    }
    const json_t *newest = NULL;
    long long newest_idx = -1;
    bool live = false;
    size_t i;
    json_t *t;
    json_array_foreach(tasks, i, t)
    {
        long long idx = bt_json_get_int(t, "Version.Index", 0);
        if (idx > newest_idx) {
            newest_idx = idx;
            newest = t;
        }
        if (!terminal(bt_json_get_str(t, "Status.State")))
            live = true;
    }
    char node[128] = "";
    const char *nid = newest ? bt_json_get_str(newest, "NodeID") : NULL;
    if (nid && *nid)
        node_name(p, nid, node, sizeof node);
    pthread_mutex_lock(&p->mu);
    watch *w = watch_find(p, inst->id);
    if (w) {
        json_array_foreach(tasks, i, t)
        {
            const char *tid = bt_json_get_str(t, "ID");
            if (tid && !json_object_get(w->seen, tid) && json_object_size(w->seen) < MAX_SEEN) {
                json_object_set_new(w->seen, tid, json_true());
                if (w->seeded && json_object_size(w->seen) > 1)
                    w->restarts++;
            }
        }
        w->seeded = true;
        const char *s = newest ? bt_json_get_str(newest, "Status.State") : NULL;
        const char *er = newest ? bt_json_get_str(newest, "Status.Err") : NULL;
        snprintf(w->state, sizeof w->state, "%s", s ? s : "");
        snprintf(w->err, sizeof w->err, "%s", er ? er : "");
        snprintf(w->node, sizeof w->node, "%s", node);
        snprintf(w->node_id, sizeof w->node_id, "%s", nid ? nid : "");
    }
    long restarts = w ? w->restarts : 0;
    pthread_mutex_unlock(&p->mu);
    int rc = 0;
    if (newest && !live) {
        *code = (int)bt_json_get_int(newest, "Status.ContainerStatus.ExitCode", -1);
        const swarm_svc *s = inst->owner;
        const char *pol = s ? s->restart->policy : "always";
        long max = s ? s->restart->retry_max : 0;
        /* The swarm restarts unless its policy says no more. */
        if (strcmp(pol, "no") == 0 || (strcmp(pol, "on-failure") == 0 && *code == 0) ||
            (max > 0 && restarts >= max))
            rc = 1;
    }
    json_decref(tasks);
    return rc;
}

/* ---- output ------------------------------------------------------------------------------ */

/* Output of the running service: the manager gathers it from the nodes of its tasks. */
static int swarm_instance_logs(bt_engine *e, void *state, const char *instance,
                               const eng_instance *inst, int n, json_t *arr)
{
    swarm_priv *p = priv_of(e);
    swarm_svc *s = state;
    char why[512];
    if (inst && inst->id[0] &&
        docker_logs_json(p->c, true, inst->id, n, LOG_MAX_BYTES, arr, why, sizeof why) == 0)
        return 0;                  /* else removed meanwhile: its kept output, below */
    char name[SWARM_NAME_MAX + 1]; /* kept by service name (finish_service) */
    if (swarm_name(instance, name, sizeof name) != 0)
        return 1;
    pthread_mutex_lock(&s->mu);
    int r = ilog_kept_tail(s->last_out, name, n, arr);
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* A service that ended for good: its last lines go to the master log (at warn when it
 * failed: an import error in a function, say) and are kept for the logs API; then the
 * service is removed, as the docker engine removes an exited container. */
static void finish_service(swarm_priv *p, eng_instance *inst, int code)
{
    char why[512], path[160];
    json_t *lines = json_array();
    if (lines && docker_logs_json(p->c, true, inst->id, LOG_TAIL, LOG_MAX_BYTES, lines, why,
                                  sizeof why) != 0)
        bt_logkv(BT_LOG_WARN, "failed to read the swarm service's output", "service", inst->name,
                 "error", why, NULL);
    bt_log_level level = code != 0 ? BT_LOG_WARN : BT_LOG_INFO;
    size_t i;
    json_t *ln;
    json_array_foreach(lines, i, ln)
        bt_logkv(level, json_string_value(ln), "instance", inst->name, NULL);
    swarm_svc *s = inst->owner;
    if (s && lines) {
        pthread_mutex_lock(&s->mu);
        ilog_keep(&s->last_out, inst->name, lines, LAST_OUT_MAX);
        pthread_mutex_unlock(&s->mu);
    } else {
        json_decref(lines);
    }
    snprintf(path, sizeof path, "/services/%s", inst->id);
    int st = call(p, "DELETE", path, NULL, NULL, why, sizeof why);
    if (st != 200 && st != 404)
        bt_logkv(BT_LOG_WARN, "failed to remove swarm service", "service", inst->name, "error", why,
                 NULL);
}

static int swarm_wait_instance(bt_engine *e, eng_instance *inst, int timeout_ms, int wake_fd,
                               int *exit_code)
{
    swarm_priv *p = priv_of(e);
    if (!inst->id[0]) {
        *exit_code = -1;
        return 1;
    }
    int64_t deadline = timeout_ms < 0 ? -1 : bt_now_ms() + timeout_ms;
    for (;;) {
        /* Parked by signal_instance (at any time of this wait): stopped for the master,
         * running on for the update that follows. */
        pthread_mutex_lock(&p->mu);
        const char *kept = json_string_value(json_object_get(p->parked, inst->name));
        bool parked = inst->stop_requested && kept && strcmp(kept, inst->id) == 0;
        pthread_mutex_unlock(&p->mu);
        if (parked) {
            char msg[200];
            snprintf(msg, sizeof msg, "swarm service (%s) kept for an update in place", inst->name);
            bt_logkv(BT_LOG_INFO, msg, "engine", "swarm", NULL);
            watch_forget(p, inst->id);
            inst->id[0] = '\0';
            *exit_code = 0;
            return 1;
        }
        int code = -1;
        int r = look(p, inst, &code);
        if (r != 0) {
            if (r < 0) /* removed: by our stop, or by hand */
                code = inst->stop_requested ? 0 : -1;
            char msg[200];
            snprintf(msg, sizeof msg, "swarm service (%s) %s", inst->name,
                     r < 0 ? "removed" : "ended");
            bt_logkv(inst->stop_requested || code == 0 ? BT_LOG_INFO : BT_LOG_WARN, msg, "engine",
                     "swarm", NULL);
            if (r > 0)
                finish_service(p, inst, code);
            watch_forget(p, inst->id);
            inst->id[0] = '\0';
            *exit_code = code;
            return 1;
        }
        int wait = POLL_MS;
        if (deadline >= 0) {
            int64_t left = deadline - bt_now_ms();
            if (left <= 0)
                return 0;
            if (left < wait)
                wait = (int)left;
        }
        struct pollfd pfd = {.fd = wake_fd, .events = POLLIN};
        int n = poll(&pfd, wake_fd >= 0 ? 1 : 0, wait);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

static int swarm_signal_instance(bt_engine *e, eng_instance *inst, bool force)
{
    (void)force; /* the swarm sends SIGTERM, then SIGKILL after StopGracePeriod */
    swarm_priv *p = priv_of(e);
    if (!inst->id[0])
        return 0;
    inst->stop_requested = true;
    const swarm_svc *s = inst->owner;
    pthread_mutex_lock(&p->mu);
    bool keep = p->next && s && json_object_get(p->next, s->name);
    if (keep) /* its service starts again next: updated in place then, not removed now */
        json_object_set_new(p->parked, inst->name, json_string(inst->id));
    pthread_mutex_unlock(&p->mu);
    if (keep)
        return 0;
    char path[160], why[512];
    snprintf(path, sizeof path, "/services/%s", inst->id);
    int st = call(p, "DELETE", path, NULL, NULL, why, sizeof why);
    if (st == 200 || st == 404)
        return 0;
    bt_logkv(BT_LOG_WARN, "failed to remove swarm service", "service", inst->name, "error", why,
             NULL);
    return -1;
}

static void swarm_instance_stats(bt_engine *e, eng_instance *inst, json_t *obj)
{
    swarm_priv *p = priv_of(e);
    if (!inst->id[0])
        return;
    pthread_mutex_lock(&p->mu);
    watch *w = watch_find(p, inst->id);
    json_t *j = json_pack("{s:s,s:s}", "service", inst->name, "service_id", inst->id);
    if (j && w) {
        json_object_set_new(j, "node", json_string(w->node));
        json_object_set_new(j, "node_id", json_string(w->node_id));
        json_object_set_new(j, "task_state", json_string(w->state));
        json_object_set_new(j, "restarts", json_integer(w->restarts));
        if (w->err[0])
            json_object_set_new(j, "task_error", json_string(w->err));
    }
    pthread_mutex_unlock(&p->mu);
    if (j)
        json_object_set_new(obj, "swarm", j);
}

static void swarm_retarget(bt_engine *e, const app_config *next)
{
    swarm_priv *p = priv_of(e);
    json_t *names = next ? json_object() : NULL;
    for (size_t i = 0; names && i < next->services.n; i++)
        if (APP_SERVICE(next, i)->replica > 0)
            json_object_set_new(names, APP_SERVICE(next, i)->name, json_true());
    pthread_mutex_lock(&p->mu);
    json_decref(p->next);
    p->next = names;
    pthread_mutex_unlock(&p->mu);
}

static void swarm_settle(bt_engine *e)
{
    swarm_priv *p = priv_of(e);
    pthread_mutex_lock(&p->mu);
    json_t *left = p->parked;
    p->parked = json_object();
    json_decref(p->next);
    p->next = NULL;
    pthread_mutex_unlock(&p->mu);
    const char *name;
    json_t *id;
    json_object_foreach(left, name, id)
    {
        char path[160], why[512], msg[200];
        snprintf(path, sizeof path, "/services/%s", json_string_value(id));
        int st = call(p, "DELETE", path, NULL, NULL, why, sizeof why);
        snprintf(msg, sizeof msg, "swarm service (%s) removed: no instance of it started again",
                 name);
        if (st == 200 || st == 404)
            bt_logkv(BT_LOG_INFO, msg, "engine", "swarm", NULL);
        else
            bt_logkv(BT_LOG_WARN, "failed to remove swarm service", "service", name, "error", why,
                     NULL);
    }
    json_decref(left);
}

/* The value of name in a service's environment ("NAME=value" strings), or NULL. */
static const char *spec_env(json_t *svc, const char *name)
{
    json_t *env = bt_json_get(svc, "Spec.TaskTemplate.ContainerSpec.Env"), *v;
    size_t i, n = strlen(name);
    json_array_foreach(env, i, v)
    {
        const char *kv = json_string_value(v);
        if (kv && strncmp(kv, name, n) == 0 && kv[n] == '=')
            return kv + n + 1;
    }
    return NULL;
}

/* A service's token as its running tasks hold it, offered to the master (adopt_token) when
 * its own records do not have one: a master started again on another manager node, or
 * without its run directory, then gives the service the same token, so the spec is the
 * same and the service is adopted rather than updated (its tasks restarted) once. */
static void offer_token(bt_engine *e, json_t *svc)
{
    const char *sname = bt_json_get_str(svc, "Spec.Labels.service"),
               *iname = bt_json_get_str(svc, "Spec.Labels." SWARM_INSTANCE_LABEL),
               *token = spec_env(svc, "BAETYL_SERVICE_TOKEN"), *id = bt_json_get_str(svc, "ID");
    if (!sname || !iname || !token || !*token || !id)
        return;
    pthread_mutex_lock(&engine_adopt_mu);
    if (!e->adopt)
        e->adopt = json_object();
    json_t *recs = e->adopt ? json_object_get(e->adopt, sname) : NULL;
    if (e->adopt && !recs)
        json_object_set_new(e->adopt, sname, recs = json_object());
    if (recs && !json_object_get(recs, iname))
        json_object_set_new(
            recs, iname, json_pack("{s:s,s:s,s:b}", "token", token, "container", id, "dynamic", 0));
    pthread_mutex_unlock(&engine_adopt_mu);
}

/* Nothing is removed: services a killed master left keep running and are adopted when the
 * application starts them again (same spec) or updated (spec changed). */
static void swarm_recover(bt_engine *e, json_t *stats)
{
    (void)stats;
    swarm_priv *p = priv_of(e);
    char why[512], path[256];
    json_t *list = NULL, *svc;
    size_t i;
    snprintf(path, sizeof path,
             "/services?filters=%%7B%%22label%%22%%3A%%5B%%22" DOCKER_MASTER_LABEL "%%3D%s%%22%%5D"
             "%%7D",
             p->master_id);
    if (call(p, "GET", path, NULL, &list, why, sizeof why) == 200 && json_array_size(list) > 0) {
        char n[32];
        snprintf(n, sizeof n, "%zu", json_array_size(list));
        bt_logkv(BT_LOG_INFO, "swarm services of this master are running: adopted as they start",
                 "engine", "swarm", "services", n, NULL);
        json_array_foreach(list, i, svc) offer_token(e, svc);
    }
    json_decref(list);
}

static void swarm_destroy(bt_engine *e)
{
    swarm_priv *p = priv_of(e);
    if (p) {
        while (p->watches) {
            watch *w = p->watches;
            p->watches = w->next;
            json_decref(w->seen);
            free(w);
        }
        json_decref(p->nodes);
        json_decref(p->next);
        json_decref(p->parked);
        pthread_mutex_destroy(&p->mu);
        docker_client_free(p->c);
        free(p);
    }
    free(e->api_env);
    free(e);
}

static const engine_ops swarm_ops = {
    .name = "swarm",
    .prepare = swarm_prepare,
    .start_service = swarm_start_service,
    .stop_service = swarm_stop_service,
    .start_instance = swarm_start_instance,
    .wait_instance = swarm_wait_instance,
    .signal_instance = swarm_signal_instance,
    .instance_stats = swarm_instance_stats,
    .instance_logs = swarm_instance_logs,
    .retarget = swarm_retarget,
    .settle = swarm_settle,
    .recover = swarm_recover,
    .destroy = swarm_destroy,
};

int engine_swarm_new(const engine_opts *opts, bt_engine **out, char *err, size_t errlen)
{
    *out = NULL;
    const bt_api_addr *a = opts->api;
    if (a->is_unix || strcmp(a->host, "0.0.0.0") == 0 || strcmp(a->host, "::") == 0)
        return bt_errf(err, errlen,
                       "mode swarm: server.address must be tcp://<this manager's address>:<port> "
                       "(instances on other nodes call the master there), not %s%s",
                       a->is_unix ? "unix://" : "tcp://", a->is_unix ? a->path : a->host);
    bt_engine *e = calloc(1, sizeof *e);
    swarm_priv *p = calloc(1, sizeof *p);
    if (!e || !p) {
        free(e);
        free(p);
        return bt_errf(err, errlen, "out of memory");
    }
    e->ops = &swarm_ops;
    e->opts = *opts;
    e->priv = p;
    e->isolated_env = true;
    pthread_mutex_init(&p->mu, NULL);
    const char *version = opts->api_version && *opts->api_version ? opts->api_version : "1.38";
    char why[1024];
    json_t *info = NULL;
    if (docker_client_new(NULL, version, &p->c, err, errlen) != 0 ||
        docker_master_id(opts->pwd, p->master_id, err, errlen) != 0) {
        swarm_destroy(e);
        return -1;
    }
    if (docker_check_version(p->c, why, sizeof why) != 0) {
        bt_errf(err, errlen, "docker engine (%s): %s", docker_client_socket(p->c), why);
        swarm_destroy(e);
        return -1;
    }
    if (call(p, "GET", "/info", NULL, &info, why, sizeof why) != 200 ||
        !bt_json_get_bool(info, "Swarm.ControlAvailable", false)) {
        bt_errf(err, errlen,
                "mode swarm: the docker engine (%s) is not a swarm manager (docker swarm init, "
                "or run the master on a manager)",
                docker_client_socket(p->c));
        json_decref(info);
        swarm_destroy(e);
        return -1;
    }
    json_decref(info);
    bool v6 = strchr(a->host, ':') != NULL;
    e->api_env =
        bt_strdup_printf("tcp://%s%s%s:%s", v6 ? "[" : "", a->host, v6 ? "]" : "", a->port);
    p->nodes = json_object();
    p->parked = json_object();
    if (!e->api_env || !p->nodes || !p->parked) {
        swarm_destroy(e);
        return bt_errf(err, errlen, "out of memory");
    }
    bt_logkv(BT_LOG_INFO, "swarm engine ready", "engine", "swarm", "socket",
             docker_client_socket(p->c), "api_version", version, DOCKER_MASTER_LABEL, p->master_id,
             NULL);
    *out = e;
    return 0;
}
