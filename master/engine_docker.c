/* The docker engine (SPEC §5): each instance is a container named after it on the `baetyl`
 * bridge network, created from its service's image with the service's mounts as binds.
 * Docker never restarts a container (policy `no`): the supervisor waits for it through the
 * wait API (one call per supervisor thread, given up when the supervisor is woken), then
 * the container's output goes to the master log and the container is removed.
 * Stats come from the stats API, which takes a second or two per sample, so a small thread
 * keeps a cache: inspect never waits for the engine. */
#include "docker_api.h"
#include "docker_config.h"
#include "engine.h"
#include "instance_log.h"
#include "path_beneath.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/json.h>
#include <baetyl/log.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define STATS_REFRESH_MS 5000 /* a cached sample is refreshed after this */
#define STATS_FORGET_MS 60000 /* a container nobody asked about for this long leaves the cache */
#define STATS_MAX 4096
#define LOG_TAIL 1000 /* lines of a container's output kept in the master log */
#define LOG_MAX_BYTES (256u << 10)
#define LOG_WARN_TAIL 20      /* of those, the last lines of a failed container, at warn */
#define FAIL_FAST_MS 10000    /* a container failing sooner than this failed at its start */
#define BACKOFF_FIRST_MS 1000 /* after two such failures in a row, starts wait this long, */
#define BACKOFF_MAX_MS 60000  /* doubling up to this */

typedef struct {
    char *name;
    json_t *tmpl; /* container create body, without Env */
    /* Instances that fail at their start (an import error in a function, say) would make a
     * container per message or per restart: after two in a row, starts are refused until
     * retry_at, a delay that doubles with each failure. */
    pthread_mutex_t mu;
    int fails, last_code;
    int64_t retry_at;
    /* instance -> the output lines of its last container, for the logs API once the
     * container is removed (at most LAST_OUT_MAX instances, LOG_TAIL lines each). */
    json_t *last_out;
} docker_svc;

#define LAST_OUT_MAX 64

typedef struct stat_entry {
    char id[80];
    json_t *cpu, *mem;
    int64_t wanted_at, fetched_at;
    struct stat_entry *next;
} stat_entry;

typedef struct {
    docker_client *c;
    char master_id[DOCKER_MASTER_ID_LEN + 1]; /* docker_master_id(): our containers' label */
    char master_label[sizeof DOCKER_MASTER_LABEL + DOCKER_MASTER_ID_LEN + 1]; /* key=value */
    json_t *pull_errors; /* image -> why its last pull failed (prepare and start_service only) */
    pthread_mutex_t mu;  /* the stats cache */
    pthread_cond_t cv;
    stat_entry *stats;
    size_t nstats;
    bool quit;
    int quit_fd; /* eventfd: cancels a stats call in flight at destroy */
    pthread_t thread;
    bool thread_started;
} docker_priv;

static docker_priv *priv_of(bt_engine *e)
{
    return e->priv;
}

/* ---- images and network ------------------------------------------------------------------- */

static int docker_prepare(bt_engine *e, const app_config *app, char *err, size_t errlen)
{
    docker_priv *p = priv_of(e);
    char why[1024];
    int r = docker_network_ensure(p->c, DOCKER_NETWORK, p->master_id, why, sizeof why);
    if (r < 0)
        return bt_errf(err, errlen, "failed to create network (%s): %s", DOCKER_NETWORK, why);
    bt_logkv(r == 1 ? BT_LOG_INFO : BT_LOG_DEBUG,
             r == 1 ? "network (" DOCKER_NETWORK ") created"
                    : "network (" DOCKER_NETWORK ") exists",
             "engine", "docker", NULL);
    json_object_clear(p->pull_errors);
    json_t *seen = json_object();
    for (size_t i = 0; seen && i < app->services.n; i++) {
        const char *image = APP_SERVICE(app, i)->image;
        if (json_object_get(seen, image))
            continue;
        json_object_set_new(seen, image, json_true());
        int present = docker_image_present(p->c, image, why, sizeof why);
        if (present == 1) {
            bt_logkv(BT_LOG_DEBUG, "image present", "engine", "docker", "image", image, NULL);
            continue;
        }
        if (present == 0) {
            bt_logkv(BT_LOG_INFO, "pulling image", "engine", "docker", "image", image, NULL);
            if (docker_image_pull(p->c, image, why, sizeof why) == 0) {
                bt_logkv(BT_LOG_INFO, "image pulled", "engine", "docker", "image", image, NULL);
                continue;
            }
        }
        /* Logged only: the start of a service whose image is missing fails with this. */
        bt_logkv(BT_LOG_WARN, "failed to pull image", "engine", "docker", "image", image, "error",
                 why, NULL);
        json_object_set_new(p->pull_errors, image, json_string(why));
    }
    json_decref(seen);
    return 0;
}

/* ---- services ---------------------------------------------------------------------------- */

static void docker_svc_free(docker_svc *s)
{
    if (!s)
        return;
    free(s->name);
    json_decref(s->tmpl);
    json_decref(s->last_out);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int docker_start_service(bt_engine *e, const app_config *app, const app_service *svc,
                                void **state, char *err, size_t errlen)
{
    docker_priv *p = priv_of(e);
    *state = NULL;
    char why[1024];
    int present = docker_image_present(p->c, svc->image, why, sizeof why);
    if (present < 0)
        return bt_errf(err, errlen, "image (%s): %s", svc->image, why);
    if (present == 0) {
        /* No registry is needed for this project's images: say how to build them. */
        const char *pe = json_string_value(json_object_get(p->pull_errors, svc->image));
        return bt_errf(err, errlen,
                       "image (%s) not found%s%.300s%s; build the images with "
                       "`make image` (it also tags them with the hub.baidubce.com/baetyl/... "
                       "names of Baetyl 1.0)",
                       svc->image, pe ? " (pull: " : "", pe ? pe : "", pe ? ")" : "");
    }
    docker_ctx ctx = {.pwd = e->opts.pwd,
                      .api_socket = e->opts.api->is_unix ? e->opts.api->path : NULL,
                      .network = DOCKER_NETWORK,
                      .master_id = p->master_id,
                      .host_gateway = docker_engine_speaks(p->c, 1, 41)};
    json_t *tmpl = docker_service_config(&ctx, app, svc, err, errlen);
    if (!tmpl)
        return -1;
    /* Like the native engine, a volume's directory is made when missing (the engine would
     * make it too, owned by root, and only for binds); docker follows symlinks in a bind
     * source, so none may lead out of the work dir. */
    if (engine_bind_dirs(e->opts.pwd, app, svc, err, errlen) != 0) {
        json_decref(tmpl);
        return -1;
    }
    docker_svc *s = calloc(1, sizeof *s);
    if (!s || !(s->name = strdup(svc->name))) {
        free(s);
        json_decref(tmpl);
        return bt_errf(err, errlen, "out of memory");
    }
    s->tmpl = tmpl;
    pthread_mutex_init(&s->mu, NULL);
    *state = s;
    return 0;
}

static void docker_stop_service(bt_engine *e, void *state)
{
    docker_svc_free(state); /* its containers went with its instances */
}

/* ---- instances --------------------------------------------------------------------------- */

/* Makes room for a container name: a container of that name left over by this master (a
 * crash between create and remove) goes; anyone else's, another master's included, is not
 * touched. */
static int clear_name(docker_priv *p, const char *name, char *err, size_t errlen)
{
    json_t *j = NULL;
    int r = docker_container_inspect(p->c, name, &j, err, errlen);
    if (r != 0)
        return r < 0 ? -1 : 0; /* 1: gone meanwhile */
    const char *label = bt_json_get_str(j, "Config.Labels.baetyl");
    const char *owner = bt_json_get_str(j, "Config.Labels." DOCKER_MASTER_LABEL);
    char id[80], other[DOCKER_MASTER_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", bt_json_get_str(j, "Id") ? bt_json_get_str(j, "Id") : name);
    snprintf(other, sizeof other, "%s", owner ? owner : "");
    bool baetyl = label && strcmp(label, "baetyl") == 0;
    json_decref(j);
    if (!baetyl)
        return bt_errf(err, errlen,
                       "container name (%s) is taken by a container not managed by baetyl", name);
    if (strcmp(other, p->master_id) != 0)
        return bt_errf(err, errlen,
                       "container name (%s) is taken by a container of another baetyl master "
                       "(" DOCKER_MASTER_LABEL "=%s; this master is %s): service names must differ "
                       "between masters sharing a Docker engine",
                       name, other[0] ? other : "none", p->master_id);
    bt_logkv(BT_LOG_WARN, "removing an old container of the same name", "engine", "docker",
             "container", name, NULL);
    return docker_container_remove(p->c, id, true, err, errlen);
}

static int take_over(bt_engine *e, docker_svc *s, const char *instance, char *const env[],
                     eng_instance *out);

static int docker_start_instance(bt_engine *e, void *state, const char *instance, char *const env[],
                                 eng_instance *out, char *err, size_t errlen)
{
    docker_priv *p = priv_of(e);
    docker_svc *s = state;
    memset(out, 0, sizeof *out);
    out->wait_fd = -1;
    out->log_fd = -1;
    if (take_over(e, s, instance, env, out) == 0)
        return 0;
    pthread_mutex_lock(&s->mu);
    int fails = s->fails, code = s->last_code;
    int64_t wait_ms = s->fails >= 2 ? s->retry_at - bt_now_ms() : 0;
    pthread_mutex_unlock(&s->mu);
    if (wait_ms > 0)
        return bt_errf(err, errlen,
                       "service (%s): its last %d instances failed at their start (last exit code "
                       "%d, their output is in the master log): next start in %lld ms",
                       s->name, fails, code, (long long)wait_ms);
    json_t *body = json_deep_copy(s->tmpl), *jenv = json_array();
    int bad = !body || !jenv;
    for (char *const *v = env; !bad && *v; v++)
        bad |= json_array_append_new(jenv, json_string(*v));
    if (bad || json_object_set(body, "Env", jenv) != 0) {
        json_decref(body);
        json_decref(jenv);
        return bt_errf(err, errlen, "out of memory");
    }
    json_decref(jenv);
    char id[80], why[1024];
    int r = docker_container_create(p->c, instance, body, id, sizeof id, why, sizeof why);
    if (r == 1 && clear_name(p, instance, why, sizeof why) == 0)
        r = docker_container_create(p->c, instance, body, id, sizeof id, why, sizeof why);
    json_decref(body);
    if (r != 0)
        return bt_errf(err, errlen, "failed to start instance (%s): %s", instance, why);
    if (docker_container_start(p->c, id, why, sizeof why) != 0) {
        char ignored[256];
        docker_container_remove(p->c, id, true, ignored, sizeof ignored);
        return bt_errf(err, errlen, "failed to start instance (%s): %s", instance, why);
    }
    snprintf(out->id, sizeof out->id, "%s", id);
    snprintf(out->name, sizeof out->name, "%s", instance);
    out->owner = s;
    out->started_ms = bt_now_ms();
    char msg[160];
    snprintf(msg, sizeof msg, "container (%.12s:%s) started", id, instance);
    bt_logkv(BT_LOG_DEBUG, msg, "engine", "docker", NULL);
    return 0;
}

static void stats_forget(docker_priv *p, const char *id);

/* The output lines of a stopped container: the last LOG_WARN_TAIL wait in a ring, so they
 * can go out at the level of the exit (warn for a failure) and the rest at info. */
typedef struct {
    const char *instance;
    char *ring[LOG_WARN_TAIL];
    int stream[LOG_WARN_TAIL];
    size_t head, n;
    json_t *lines; /* every line too, kept for the logs API */
} log_ctx;

static void log_line(bt_log_level level, const log_ctx *c, int stream, const char *line)
{
    bt_logkv(level, line, "instance", c->instance, "stream", stream == 2 ? "stderr" : "stdout",
             NULL);
}

static void log_output_line(int stream, const char *text, size_t len, void *arg)
{
    log_ctx *c = arg;
    if (c->lines)
        ilog_add_line(c->lines, text, len);
    char *line = strndup(text, len);
    if (!line)
        return;
    size_t slot = (c->head + c->n) % LOG_WARN_TAIL;
    if (c->n == LOG_WARN_TAIL) { /* full: the oldest goes out at info */
        log_line(BT_LOG_INFO, c, c->stream[c->head], c->ring[c->head]);
        free(c->ring[c->head]);
        slot = c->head;
        c->head = (c->head + 1) % LOG_WARN_TAIL;
        c->n--;
    }
    c->ring[slot] = line;
    c->stream[slot] = stream;
    c->n++;
}

static void log_flush(log_ctx *c, bt_log_level level)
{
    for (; c->n; c->n--, c->head = (c->head + 1) % LOG_WARN_TAIL) {
        log_line(level, c, c->stream[c->head], c->ring[c->head]);
        free(c->ring[c->head]);
    }
}

/* Counts a failure at start (or resets the count) for the start backoff of the service. */
static void note_exit(eng_instance *inst, int code)
{
    docker_svc *s = inst->owner;
    if (!s)
        return;
    int64_t now = bt_now_ms();
    pthread_mutex_lock(&s->mu);
    if (code != 0 && !inst->stop_requested && now - inst->started_ms < FAIL_FAST_MS) {
        s->fails++;
        s->last_code = code;
        int64_t delay = BACKOFF_FIRST_MS;
        for (int i = 2; i < s->fails && delay < BACKOFF_MAX_MS; i++)
            delay *= 2;
        s->retry_at = now + (delay < BACKOFF_MAX_MS ? delay : BACKOFF_MAX_MS);
    } else {
        s->fails = 0;
    }
    pthread_mutex_unlock(&s->mu);
}

/* Keeps a removed container's output lines (a reference is taken over) for the logs API. */
static void keep_output(docker_svc *s, const char *instance, json_t *lines)
{
    if (!s || !lines) {
        json_decref(lines);
        return;
    }
    pthread_mutex_lock(&s->mu);
    ilog_keep(&s->last_out, instance, lines, LAST_OUT_MAX);
    pthread_mutex_unlock(&s->mu);
}

static int docker_instance_logs(bt_engine *e, void *state, const char *instance,
                                const eng_instance *inst, int n, json_t *arr)
{
    docker_priv *p = priv_of(e);
    docker_svc *s = state;
    char why[512];
    if (inst && inst->id[0] &&
        docker_logs_json(p->c, false, inst->id, n, LOG_MAX_BYTES, arr, why, sizeof why) == 0)
        return 0; /* else removed meanwhile: its kept output, below */
    pthread_mutex_lock(&s->mu);
    int r = ilog_kept_tail(s->last_out, instance, n, arr);
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* The container has stopped: its output goes to the master log, then it is removed. An
 * exit the master did not ask for with a non-zero code is a failure the user must see (an
 * import error in a function, say): its code and last lines are logged at warn. */
static void finish_container(docker_priv *p, eng_instance *inst, int code)
{
    char why[1024], msg[256];
    bt_log_level level = code != 0 && !inst->stop_requested ? BT_LOG_WARN : BT_LOG_INFO;
    snprintf(msg, sizeof msg, "container (%.12s:%s) exited (code %d), its output follows", inst->id,
             inst->name, code);
    bt_logkv(level, msg, "engine", "docker", NULL);
    log_ctx lc = {.instance = inst->name, .lines = json_array()};
    if (docker_container_logs(p->c, inst->id, LOG_TAIL, LOG_MAX_BYTES, log_output_line, &lc, why,
                              sizeof why) != 0)
        bt_logkv(BT_LOG_WARN, "failed to read the container's output", "container", inst->name,
                 "error", why, NULL);
    log_flush(&lc, level);
    keep_output(inst->owner, inst->name, lc.lines);
    note_exit(inst, code);
    if (docker_container_remove(p->c, inst->id, true, why, sizeof why) != 0)
        bt_logkv(BT_LOG_WARN, "failed to remove container", "container", inst->name, "error", why,
                 NULL);
    stats_forget(p, inst->id);
    inst->id[0] = '\0';
}

static int docker_wait_instance(bt_engine *e, eng_instance *inst, int timeout_ms, int wake_fd,
                                int *exit_code)
{
    docker_priv *p = priv_of(e);
    if (!inst->id[0]) {
        *exit_code = -1;
        return 1;
    }
    char why[1024];
    int code = -1;
    int r = docker_container_wait(p->c, inst->id, timeout_ms, wake_fd, &code, why, sizeof why);
    if (r == 0)
        return 0;
    if (r < 0) {
        bt_logkv(BT_LOG_WARN, "failed to wait for container", "container", inst->name, "error", why,
                 NULL);
        errno = EIO;
        return -1;
    }
    finish_container(p, inst, code);
    *exit_code = code;
    return 1;
}

static int docker_signal_instance(bt_engine *e, eng_instance *inst, bool force)
{
    docker_priv *p = priv_of(e);
    if (!inst->id[0])
        return 0;
    inst->stop_requested = true;
    char why[1024];
    int r;
    if (force) {
        r = docker_container_kill(p->c, inst->id, why, sizeof why);
    } else {
        /* docker stop: SIGTERM, then the engine's own SIGKILL after grace (whole seconds). */
        int64_t g = (e->opts.grace_ms + 999) / 1000;
        r = docker_container_stop(p->c, inst->id, g > 86400 ? 86400 : (int)g, why, sizeof why);
    }
    if (r != 0)
        bt_logkv(BT_LOG_WARN, force ? "failed to kill container" : "failed to stop container",
                 "container", inst->name, "error", why, NULL);
    return r;
}

/* ---- stats ------------------------------------------------------------------------------- */

static stat_entry *stats_find(docker_priv *p, const char *id)
{
    for (stat_entry *s = p->stats; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static void stat_entry_free(stat_entry *s)
{
    json_decref(s->cpu);
    json_decref(s->mem);
    free(s);
}

static void stats_forget(docker_priv *p, const char *id)
{
    pthread_mutex_lock(&p->mu);
    for (stat_entry **pp = &p->stats; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->id, id) == 0) {
            stat_entry *s = *pp;
            *pp = s->next;
            stat_entry_free(s);
            p->nstats--;
            break;
        }
    pthread_mutex_unlock(&p->mu);
}

static void docker_instance_stats(bt_engine *e, eng_instance *inst, json_t *obj)
{
    docker_priv *p = priv_of(e);
    if (!inst->id[0])
        return;
    json_object_set_new(obj, "container",
                        json_pack("{s:s,s:s}", "id", inst->id, "name", inst->name));
    pthread_mutex_lock(&p->mu);
    stat_entry *s = stats_find(p, inst->id);
    if (!s && p->nstats < STATS_MAX && (s = calloc(1, sizeof *s))) {
        snprintf(s->id, sizeof s->id, "%s", inst->id);
        s->next = p->stats;
        p->stats = s;
        p->nstats++;
    }
    if (s) {
        s->wanted_at = bt_now_ms();
        if (s->cpu)
            json_object_set_new(obj, "cpu_stats", json_deep_copy(s->cpu));
        if (s->mem)
            json_object_set_new(obj, "mem_stats", json_deep_copy(s->mem));
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

/* The container whose sample is the oldest among those due, or NULL; drops the ones
 * nobody asked about lately. Caller holds mu. */
static stat_entry *stats_due(docker_priv *p, int64_t now)
{
    stat_entry *due = NULL;
    for (stat_entry **pp = &p->stats; *pp;) {
        stat_entry *s = *pp;
        if (now - s->wanted_at > STATS_FORGET_MS) {
            *pp = s->next;
            stat_entry_free(s);
            p->nstats--;
            continue;
        }
        if ((s->fetched_at == 0 || now - s->fetched_at >= STATS_REFRESH_MS) &&
            (!due || s->fetched_at < due->fetched_at))
            due = s;
        pp = &s->next;
    }
    return due;
}

static void *stats_main(void *arg)
{
    docker_priv *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->quit) {
        stat_entry *s = stats_due(p, bt_now_ms());
        if (!s) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
            continue;
        }
        char id[80], why[512];
        snprintf(id, sizeof id, "%s", s->id);
        s->fetched_at = bt_now_ms(); /* also when it fails: no busy retries */
        pthread_mutex_unlock(&p->mu);

        json_t *j = NULL, *cpu = NULL, *mem = NULL;
        double pct;
        uint64_t usage, limit;
        if (docker_container_stats(p->c, id, p->quit_fd, &j, why, sizeof why) == 0 &&
            docker_stats_compute(j, &pct, &usage, &limit) == 0) {
            cpu = json_pack("{s:f}", "used_percent", pct);
            mem = json_pack("{s:I,s:I,s:f}", "usage",
                            (json_int_t)(usage > INT64_MAX ? INT64_MAX : usage), "limit",
                            (json_int_t)(limit > INT64_MAX ? INT64_MAX : limit), "used_percent",
                            limit ? (double)usage * 100.0 / (double)limit : 0.0);
        }
        json_decref(j);

        pthread_mutex_lock(&p->mu);
        s = stats_find(p, id);
        if (s && cpu && mem) {
            json_decref(s->cpu);
            json_decref(s->mem);
            s->cpu = cpu;
            s->mem = mem;
            cpu = mem = NULL;
        }
        json_decref(cpu);
        json_decref(mem);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- recovery and lifetime --------------------------------------------------------------- */

static void docker_drop_adopted(bt_engine *e, const char *service, const char *instance,
                                json_t *rec)
{
    const char *id = json_string_value(json_object_get(rec, "container"));
    char why[512];
    if (id && docker_container_remove(priv_of(e)->c, id, true, why, sizeof why) == 0)
        bt_logkv(BT_LOG_INFO, "old container removed", "engine", "docker", "container", instance,
                 NULL);
}

/* Takes the recorded container of that instance over when it still runs, carries this
 * master's label and would be started with the same environment; one that may not be
 * taken over is removed. Returns 0 when taken over, -1 to start a new container. */
static int take_over(bt_engine *e, docker_svc *s, const char *instance, char *const env[],
                     eng_instance *out)
{
    docker_priv *p = priv_of(e);
    json_t *rec = engine_adopt_take(e, s->name, instance);
    const char *id = json_string_value(json_object_get(rec, "container"));
    if (!id) {
        json_decref(rec);
        return -1;
    }
    char hash[24], why[512];
    snprintf(hash, sizeof hash, "%016" PRIx64, engine_env_hash(env));
    const char *rh = json_string_value(json_object_get(rec, "env_hash"));
    json_t *j = NULL;
    bool ok = rh && !strcmp(rh, hash) &&
              docker_container_inspect(p->c, id, &j, why, sizeof why) == 0 &&
              json_is_true(bt_json_get(j, "State.Running"));
    const char *owner = bt_json_get_str(j, "Config.Labels." DOCKER_MASTER_LABEL);
    ok = ok && owner && !strcmp(owner, p->master_id);
    if (ok) {
        snprintf(out->id, sizeof out->id, "%s", bt_json_get_str(j, "Id") ?: id);
        snprintf(out->name, sizeof out->name, "%s", instance);
        out->owner = s;
        out->started_ms = bt_now_ms() - FAIL_FAST_MS; /* ran long enough: no fail-fast */
        bt_logkv(BT_LOG_INFO, "instance taken over", "service", s->name, "instance", instance,
                 "container", out->id, NULL);
    } else if (j) {
        docker_container_remove(p->c, id, true, why, sizeof why);
        bt_logkv(BT_LOG_INFO, "old container removed", "engine", "docker", "container", instance,
                 "reason", "its environment changed", NULL);
    }
    json_decref(j);
    json_decref(rec);
    return ok ? 0 : -1;
}

static void docker_recover(bt_engine *e, json_t *stats)
{
    docker_priv *p = priv_of(e);
    char why[1024];
    json_t *list = NULL;
    /* Whatever carries this master's label is stale now: it was left when this master was
     * killed. Other masters' containers (another work dir) are not looked at. */
    if (docker_container_list(p->c, p->master_label, &list, why, sizeof why) != 0) {
        bt_logkv(BT_LOG_WARN, "failed to list old containers", "engine", "docker", "error", why,
                 NULL);
        return;
    }
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *id = bt_json_get_str(c, "Id");
        const char *name = bt_json_get_str(c, "Names.0");
        if (!id)
            continue;
        if (name && name[0] == '/')
            name++;
        if (engine_adopt_has(e, "container", json_string(id)))
            continue; /* taken over at its start (adopt.h) */
        if (docker_container_remove(p->c, id, true, why, sizeof why) == 0)
            bt_logkv(BT_LOG_INFO, "old container removed", "engine", "docker", "container",
                     name ? name : id, NULL);
        else
            bt_logkv(BT_LOG_WARN, "failed to remove old container", "engine", "docker", "container",
                     name ? name : id, "error", why, NULL);
    }
    json_decref(list);
}

static void docker_destroy(bt_engine *e)
{
    docker_priv *p = priv_of(e);
    if (p) {
        if (p->thread_started) {
            pthread_mutex_lock(&p->mu);
            p->quit = true;
            pthread_cond_signal(&p->cv);
            pthread_mutex_unlock(&p->mu);
            uint64_t one = 1;
            ssize_t w = write(p->quit_fd, &one, sizeof one);
            (void)w;
            pthread_join(p->thread, NULL);
        }
        while (p->stats) {
            stat_entry *s = p->stats;
            p->stats = s->next;
            stat_entry_free(s);
        }
        if (p->quit_fd >= 0)
            close(p->quit_fd);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        json_decref(p->pull_errors);
        docker_client_free(p->c);
        free(p);
    }
    free(e->api_env);
    free(e);
}

int docker_check_images(const app_config *app, const char *api_version, char *err, size_t errlen)
{
    docker_client *c = NULL;
    char why[1024];
    const char *version = api_version && *api_version ? api_version : "1.38";
    if (docker_client_new(NULL, version, &c, err, errlen) != 0)
        return -1;
    if (docker_check_version(c, why, sizeof why) != 0) {
        docker_client_free(c);
        return bt_errf(err, errlen, "%s", why);
    }
    char missing[1024] = "";
    size_t used = 0;
    int rc = 0, n = 0;
    for (size_t i = 0; rc == 0 && i < app->services.n; i++) {
        const app_service *svc = APP_SERVICE(app, i);
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(APP_SERVICE(app, k)->image, svc->image) == 0;
        if (seen)
            continue;
        int present = docker_image_present(c, svc->image, why, sizeof why);
        if (present < 0)
            rc = bt_errf(err, errlen, "services[%zu] (%s): image (%s): %s", i, svc->name,
                         svc->image, why);
        else if (present == 0) {
            n++;
            if (used < sizeof missing) /* a long list is cut, never overrun */
                used += (size_t)snprintf(missing + used, sizeof missing - used, "%s%s (service %s)",
                                         n > 1 ? ", " : "", svc->image, svc->name);
        }
    }
    if (rc == 0 && n > 0)
        rc = bt_errf(err, errlen,
                     "%s not found on the docker engine (unix://%s): %s; build them "
                     "with `make image`",
                     n == 1 ? "image" : "images", docker_client_socket(c), missing);
    docker_client_free(c);
    return rc;
}

static const engine_ops docker_ops = {
    .name = "docker",
    .prepare = docker_prepare,
    .start_service = docker_start_service,
    .stop_service = docker_stop_service,
    .start_instance = docker_start_instance,
    .wait_instance = docker_wait_instance,
    .signal_instance = docker_signal_instance,
    .instance_stats = docker_instance_stats,
    .instance_logs = docker_instance_logs,
    .drop_adopted = docker_drop_adopted,
    .recover = docker_recover,
    .destroy = docker_destroy,
};

int engine_docker_new(const engine_opts *opts, bt_engine **out, char *err, size_t errlen)
{
    *out = NULL;
    bt_engine *e = calloc(1, sizeof *e);
    docker_priv *p = calloc(1, sizeof *p);
    if (!e || !p) {
        free(e);
        free(p);
        return bt_errf(err, errlen, "out of memory");
    }
    e->ops = &docker_ops;
    e->opts = *opts;
    e->priv = p;
    e->isolated_env = true;
    e->api_socket_env = DOCKER_API_SOCKET;
    p->quit_fd = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    const char *version = opts->api_version && *opts->api_version ? opts->api_version : "1.38";
    if (docker_client_new(NULL, version, &p->c, err, errlen) != 0) {
        docker_destroy(e);
        return -1;
    }
    char why[1024];
    if (docker_master_id(opts->pwd, p->master_id, err, errlen) != 0) {
        docker_destroy(e);
        return -1;
    }
    snprintf(p->master_label, sizeof p->master_label, DOCKER_MASTER_LABEL "=%s", p->master_id);
    if (docker_check_version(p->c, why, sizeof why) != 0) {
        const char *sock = docker_client_socket(p->c);
        if (strstr(why, sock)) /* said once: the unreachable error names it already */
            bt_errf(err, errlen, "%s", why);
        else
            bt_errf(err, errlen, "docker engine (%s): %s", sock, why);
        docker_destroy(e);
        return -1;
    }
    if (opts->api->is_unix)
        e->api_env = strdup("unix://" DOCKER_API_SOCKET);
    else
        e->api_env = bt_strdup_printf("tcp://" DOCKER_HOST_GATEWAY ":%s", opts->api->port);
    p->pull_errors = json_object();
    p->quit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!e->api_env || !p->pull_errors || p->quit_fd < 0) {
        docker_destroy(e);
        return bt_errf(err, errlen, "out of memory");
    }
    int rc = pthread_create(&p->thread, NULL, stats_main, p);
    if (rc != 0) {
        docker_destroy(e);
        return bt_errf(err, errlen, "failed to start the stats thread: %s", strerror(rc));
    }
    p->thread_started = true;
    bt_logkv(BT_LOG_INFO, "docker engine ready", "engine", "docker", "socket",
             docker_client_socket(p->c), "api_version", version, DOCKER_MASTER_LABEL, p->master_id,
             NULL);
    *out = e;
    return 0;
}
