/* The master's model: services, instances, tokens; the operations of boot, OTA and the API. */
#include "master.h"
#include "adopt.h"
#include "grants.h"
#include "stats_file.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/log.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int master_init(master *m, const char *pwd, master_conf *conf, bt_api_addr *api, bt_engine *engine,
                char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->conf = *conf;
    memset(conf, 0, sizeof *conf);
    m->api = *api;
    memset(api, 0, sizeof *api);
    m->engine = engine;
    pthread_mutex_init(&m->ops, NULL);
    pthread_mutex_init(&m->stats_mu, NULL);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->refs_cond, NULL);
    m->pwd = strdup(pwd);
    m->conf_version = strdup("");
    m->error = strdup("");
    m->sampler = host_sampler_new();
    if (!m->pwd || !m->conf_version || !m->error || !m->sampler) {
        master_destroy(m);
        return bt_errf(err, errlen, "out of memory");
    }
    if (bt_random_hex(m->cli_token, 32) != 0) {
        master_destroy(m);
        return bt_errf(err, errlen, "no random source: %s", strerror(errno));
    }
    host_id(m->host_id, sizeof m->host_id);
    if (m->conf.snfile && *m->conf.snfile) {
        char *sn = NULL, why[256];
        if (bt_read_file(m->conf.snfile, 4096, &sn, NULL, why, sizeof why) == 0) {
            m->host_sn = strdup(bt_str_trim(sn));
            free(sn);
        } else {
            bt_logkv(BT_LOG_WARN, "failed to read snfile", "error", why, NULL);
        }
    }
    return 0;
}

void master_destroy(master *m)
{
    app_free(&m->app);
    engine_free(m->engine);
    host_sampler_free(m->sampler);
    conf_free(&m->conf);
    bt_api_addr_free(&m->api);
    pthread_mutex_destroy(&m->ops);
    pthread_mutex_destroy(&m->stats_mu);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->refs_cond);
    free(m->pwd);
    free(m->conf_path);
    free(m->conf_version);
    free(m->error);
    free(m->host_sn);
    json_decref(m->volumes);
    memset(m, 0, sizeof *m);
}

static void instance_free(m_instance *in)
{
    if (!in)
        return;
    free(in->name);
    env_free(in->env);
    json_decref(in->dyn_env);
    json_decref(in->reported);
    if (in->sup.wake_fd >= 0)
        close(in->sup.wake_fd);
    free(in);
}

static void service_free(m_service *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->inst_mu);
    free(s->name);
    free(s->token);
    grants_free(s->grants);
    app_service_free(&s->cfg);
    free(s);
}

/* Looks a running service up; caller holds mu. */
static m_service *find_service(master *m, const char *name)
{
    for (m_service *s = m->services; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

static m_instance *find_in(m_instance *list, const char *name)
{
    for (m_instance *i = list; i; i = i->next)
        if (strcmp(i->name, name) == 0)
            return i;
    return NULL;
}

static m_instance *find_instance(m_service *s, const char *name)
{
    return find_in(s->instances, name);
}

/* The supervisor's state changes, published to inspect and application.stats. */
static void instance_state(sup_proc *p, sup_state st)
{
    m_instance *in = p->owner;
    master *m = in->m;
    pthread_mutex_lock(&m->mu);
    if (st == SUP_RUNNING) {
        in->view = p->run;
        in->view.wait_fd = -1;
        in->view.log_fd = -1;
        in->view.log_path = NULL;
        in->alive = true;
        in->status = INST_RUNNING;
        in->has_exit = false;
        clock_gettime(CLOCK_REALTIME, &in->start_time);
    } else {
        in->alive = false;
        in->view.pid = 0;
        in->status = st == SUP_RESTARTING ? INST_RESTARTING : INST_EXITED;
        if (st != SUP_FINISHED) {
            in->exit_code = p->last_code;
            in->has_exit = true;
        }
        in->finished |= st == SUP_FINISHED;
    }
    pthread_mutex_unlock(&m->mu);
    /* The record a later master takes the instance over by (adopt.h). */
    if (st == SUP_RUNNING)
        adopt_record(m, in, &p->run);
    else if (st == SUP_EXITED || st == SUP_FINISHED)
        adopt_forget(m, in->svc->name, in->name);
    /* SUP_EXITED is always followed by SUP_FINISHED or a new start, saved then. */
    if (st != SUP_EXITED)
        master_save_stats(m);
}

static m_instance *instance_new(master *m, m_service *s, const char *name, bool dynamic,
                                json_t *dyn, char *err, size_t errlen)
{
    m_instance *in = calloc(1, sizeof *in);
    if (!in) {
        bt_errf(err, errlen, "out of memory");
        return NULL;
    }
    in->m = m;
    in->svc = s;
    in->sup.wake_fd = -1;
    in->dynamic = dynamic;
    in->name = strdup(name);
    in->reported = json_object();
    in->dyn_env = json_incref(dyn);
    in->env = env_build(m, s, name, dynamic, dyn, err, errlen);
    if (!in->env) { /* err set by env_build */
        instance_free(in);
        return NULL;
    }
    if (!in->name || !in->reported) {
        bt_errf(err, errlen, "out of memory");
        instance_free(in);
        return NULL;
    }
    in->sup = (sup_proc){.engine = m->engine,
                         .eng_state = s->eng_state,
                         .service = s->name,
                         .name = in->name,
                         .env = in->env,
                         .restart = &s->cfg.restart,
                         .grace = m->conf.grace,
                         .on_state = instance_state,
                         .owner = in,
                         .wake_fd = -1};
    return in;
}

/* Starts the instance's supervisor and lists the instance in its service. */
static int instance_launch(master *m, m_instance *in, char *err, size_t errlen)
{
    m_service *s = in->svc;
    pthread_mutex_lock(&m->mu);
    in->next = s->launching;
    s->launching = in;
    pthread_mutex_unlock(&m->mu);
    int rc = sup_launch(&in->sup, err, errlen);
    pthread_mutex_lock(&m->mu);
    for (m_instance **pp = &s->launching; *pp; pp = &(*pp)->next)
        if (*pp == in) {
            *pp = in->next;
            break;
        }
    in->next = NULL;
    if (rc == 0) {
        m_instance **tail = &s->instances;
        while (*tail)
            tail = &(*tail)->next;
        *tail = in;
    }
    pthread_mutex_unlock(&m->mu);
    if (rc == 0)
        master_save_stats(m);
    return rc;
}

/* Stops instances (all their supervisors get the request first, then are joined) and
 * frees them. The instances are already out of any list. */
static void stop_instances(m_instance **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sup_request_stop(&list[i]->sup);
    for (size_t i = 0; i < n; i++) {
        sup_join(&list[i]->sup);
        instance_free(list[i]);
    }
}

/* Stops and unlinks the services for which keep() is false. Caller holds ops. */
static void stop_services_where(master *m, bool (*keep)(const m_service *, const void *),
                                const void *arg)
{
    /* Mark them under mu (they stay listed, so their tokens keep working while their
     * instances shut down), stop them without mu, then unlink them. */
    pthread_mutex_lock(&m->mu);
    size_t nsvc = 0, ninst = 0;
    for (m_service *s = m->services; s; s = s->next)
        if (!s->stopping && !(keep && keep(s, arg))) {
            s->stopping = true;
            nsvc++;
        }
    if (nsvc == 0) {
        pthread_mutex_unlock(&m->mu);
        return;
    }
    /* API calls in progress on these services finish first; no new one starts. */
    for (bool busy = true; busy;) {
        busy = false;
        for (m_service *s = m->services; s; s = s->next)
            busy |= s->stopping && s->refs > 0;
        if (busy)
            pthread_cond_wait(&m->refs_cond, &m->mu);
    }
    for (m_service *s = m->services; s; s = s->next)
        if (s->stopping)
            for (m_instance *i = s->instances; i; i = i->next)
                ninst++;
    m_instance **all = calloc(ninst + 1, sizeof *all);
    size_t k = 0;
    for (m_service *s = m->services; s; s = s->next)
        if (s->stopping && all) {
            for (m_instance *i = s->instances; i; i = i->next)
                all[k++] = i;
            s->instances = NULL;
        }
    pthread_mutex_unlock(&m->mu);
    if (all) {
        stop_instances(all, k);
        free(all);
    } else {
        /* Out of memory: one by one (slower, but nothing is left behind). */
        for (;;) {
            pthread_mutex_lock(&m->mu);
            m_instance *in = NULL;
            for (m_service *s = m->services; s && !in; s = s->next)
                if (s->stopping && s->instances) {
                    in = s->instances;
                    s->instances = in->next;
                    in->next = NULL;
                }
            pthread_mutex_unlock(&m->mu);
            if (!in)
                break;
            stop_instances(&in, 1);
        }
    }
    pthread_mutex_lock(&m->mu);
    m_service *stopped = NULL;
    for (m_service **pp = &m->services; *pp;) {
        m_service *s = *pp;
        if (!s->stopping) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        s->next = stopped;
        stopped = s;
    }
    pthread_mutex_unlock(&m->mu);
    for (m_service *s = stopped, *nx; s; s = nx) {
        nx = s->next;
        m->engine->ops->stop_service(m->engine, s->eng_state);
        char msg[160];
        snprintf(msg, sizeof msg, "service (%s) stopped", s->name);
        bt_logkv(BT_LOG_INFO, msg, NULL);
        service_free(s);
    }
    master_save_stats(m);
}

typedef struct {
    const app_config *cur, *old;
} diff_arg;

static bool keep_unchanged(const m_service *s, const void *arg)
{
    const diff_arg *d = arg;
    return d->cur && d->old && app_service_unchanged(d->cur, d->old, s->name);
}

void master_stop_changed(master *m, const app_config *cur, const app_config *old)
{
    diff_arg d = {cur, old};
    stop_services_where(m, keep_unchanged, &d);
}

static bool keep_other(const m_service *s, const void *arg)
{
    return s != arg;
}

static char *instance_name(const char *svc, long i)
{
    return i == 0 ? strdup(svc) : bt_strdup_printf("%s.i%ld", svc, i);
}

static int start_service(master *m, const app_config *app, const app_service *cfg, char *err,
                         size_t errlen)
{
    bt_engine *e = m->engine;
    char why[1024];
    m_service *s = calloc(1, sizeof *s);
    char tok[65];
    if (!s || bt_random_hex(tok, 32) != 0) {
        free(s);
        return bt_errf(err, errlen, "failed to start service (%s): no memory or random source",
                       cfg->name);
    }
    pthread_mutex_init(&s->inst_mu, NULL);
    s->name = strdup(cfg->name);
    const char *kept = adopt_token(m, cfg->name); /* its running instances hold that one */
    s->token = strdup(kept ? kept : tok);
    s->grants = grants_of(m->pwd, app, cfg);
    if (!s->name || !s->token || !s->grants || app_service_copy(&s->cfg, cfg) != 0) {
        service_free(s);
        return bt_errf(err, errlen, "failed to start service (%s): out of memory", cfg->name);
    }
    if (e->ops->start_service(e, app, cfg, &s->eng_state, why, sizeof why) != 0) {
        service_free(s);
        char msg[160];
        snprintf(msg, sizeof msg, "failed to start service (%s)", cfg->name);
        bt_logkv(BT_LOG_ERROR, msg, "error", why, NULL);
        return bt_errf(err, errlen, "failed to start service (%s): %s", cfg->name, why);
    }
    /* Listed (and its token valid) before its instances start, so they can call the API. */
    pthread_mutex_lock(&m->mu);
    m_service **tail = &m->services;
    while (*tail)
        tail = &(*tail)->next;
    *tail = s;
    pthread_mutex_unlock(&m->mu);
    for (long i = 0; i < cfg->replica; i++) {
        char *name = instance_name(cfg->name, i);
        m_instance *in = name ? instance_new(m, s, name, false, NULL, why, sizeof why) : NULL;
        if (!name)
            snprintf(why, sizeof why, "out of memory");
        free(name);
        if (!in || instance_launch(m, in, why, sizeof why) != 0) {
            instance_free(in);
            stop_services_where(m, keep_other, s);
            char msg[160];
            snprintf(msg, sizeof msg, "failed to start service (%s)", cfg->name);
            bt_logkv(BT_LOG_ERROR, msg, "error", why, NULL);
            return bt_errf(err, errlen, "failed to start service (%s): %s", cfg->name, why);
        }
    }
    char msg[160];
    snprintf(msg, sizeof msg, "service (%s) started", cfg->name);
    bt_logkv(BT_LOG_INFO, msg, NULL);
    return 0;
}

int master_start_app(master *m, const app_config *app, char *err, size_t errlen)
{
    for (size_t i = 0; i < app->services.n; i++) {
        const app_service *cfg = APP_SERVICE(app, i);
        pthread_mutex_lock(&m->mu);
        bool running = find_service(m, cfg->name) != NULL;
        pthread_mutex_unlock(&m->mu);
        if (running)
            continue;
        if (start_service(m, app, cfg, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* Takes a finished or named instance out of its service; caller holds mu. */
static m_instance *take_instance(m_service *s, m_instance *in)
{
    for (m_instance **pp = &s->instances; *pp; pp = &(*pp)->next)
        if (*pp == in) {
            *pp = in->next;
            in->next = NULL;
            return in;
        }
    return NULL;
}

/* Finds a listed service and takes a reference on it, or NULL. */
static m_service *service_ref(master *m, const char *name)
{
    pthread_mutex_lock(&m->mu);
    m_service *s = find_service(m, name);
    if (s && s->stopping)
        s = NULL;
    if (s)
        s->refs++;
    pthread_mutex_unlock(&m->mu);
    return s;
}

static void service_unref(master *m, m_service *s)
{
    pthread_mutex_lock(&m->mu);
    if (--s->refs == 0)
        pthread_cond_broadcast(&m->refs_cond);
    pthread_mutex_unlock(&m->mu);
}

int master_instance_start(master *m, const char *svc, const char *inst, json_t *env, char *err,
                          size_t errlen)
{
    m_service *s = service_ref(m, svc);
    if (!s)
        return bt_errf(err, errlen, "service (%s) not found", svc);
    pthread_mutex_lock(&s->inst_mu);
    /* The instance of that name (replaced) and any whose supervision ended (freed). */
    m_instance *old[64];
    size_t nold = 0;
    pthread_mutex_lock(&m->mu);
    m_instance *named = find_instance(s, inst);
    if (named)
        old[nold++] = take_instance(s, named);
    for (m_instance *i = s->instances, *nx; i && nold < 64; i = nx) {
        nx = i->next;
        if (i->finished)
            old[nold++] = take_instance(s, i);
    }
    pthread_mutex_unlock(&m->mu);
    stop_instances(old, nold);

    char why[1024];
    m_instance *in = instance_new(m, s, inst, true, env, why, sizeof why);
    int rc = 0;
    if (!in || instance_launch(m, in, why, sizeof why) != 0) {
        instance_free(in);
        rc = bt_errf(err, errlen, "%s", why);
    }
    pthread_mutex_unlock(&s->inst_mu);
    service_unref(m, s);
    return rc;
}

int master_instance_stop(master *m, const char *svc, const char *inst, char *err, size_t errlen)
{
    m_service *s = service_ref(m, svc);
    if (!s) {
        pthread_mutex_lock(&m->mu);
        bool stopping = find_service(m, svc) != NULL; /* listed, so stopping: done soon */
        pthread_mutex_unlock(&m->mu);
        return stopping ? 0 : bt_errf(err, errlen, "service (%s) not found", svc);
    }
    pthread_mutex_lock(&s->inst_mu);
    pthread_mutex_lock(&m->mu);
    m_instance *in = find_instance(s, inst);
    if (in)
        take_instance(s, in);
    pthread_mutex_unlock(&m->mu);
    if (in) {
        stop_instances(&in, 1);
        master_save_stats(m);
    }
    pthread_mutex_unlock(&s->inst_mu);
    service_unref(m, s);
    return 0;
}

int master_instance_report(master *m, const char *svc, const char *inst, json_t *obj, char *err,
                           size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    m_service *s = find_service(m, svc);
    m_instance *in = s ? find_instance(s, inst) : NULL;
    if (s && !in)
        in = find_in(s->launching, inst);
    if (!s || s->stopping)
        rc = bt_errf(err, errlen, "service (%s) not found", svc);
    else if (!in || in->finished)
        rc = bt_errf(err, errlen, "instance (%s) of service (%s) not found", inst, svc);
    else if (json_object_size(in->reported) + json_object_size(obj) > 4096)
        rc = bt_errf(err, errlen, "too many reported keys (max 4096)");
    else if (json_object_update(in->reported, obj) != 0)
        rc = bt_errf(err, errlen, "out of memory");
    pthread_mutex_unlock(&m->mu);
    return rc;
}

json_t *master_instance_logs(master *m, const char *svc, const char *inst, int n, bool *not_found,
                             char *err, size_t errlen)
{
    *not_found = false;
    m_service *s = service_ref(m, svc);
    if (!s) {
        *not_found = true;
        bt_errf(err, errlen, "service (%s) not found", svc);
        return NULL;
    }
    pthread_mutex_lock(&m->mu);
    m_instance *in = find_instance(s, inst);
    bool known = in != NULL, alive = in && in->alive, has_exit = in && in->has_exit;
    int code = in ? in->exit_code : 0;
    const char *state = !in ? "unknown" : in->status == INST_RUNNING ? "running" : "exited";
    eng_instance view = in ? in->view : (eng_instance){.wait_fd = -1, .log_fd = -1};
    pthread_mutex_unlock(&m->mu);
    json_t *lines = json_array(), *out = NULL;
    /* An engine without output access shows none. */
    int r = lines ? 1 : -1;
    if (lines && m->engine->ops->instance_logs)
        r = m->engine->ops->instance_logs(m->engine, s->eng_state, inst, alive ? &view : NULL, n,
                                          lines);
    if (!lines)
        bt_errf(err, errlen, "out of memory");
    else if (r == 1 && !known) {
        *not_found = true;
        bt_errf(err, errlen, "instance (%s) of service (%s) not found", inst, svc);
    } else {
        out = json_pack("{s:s,s:o,s:O}", "state", state, "exit_code",
                        has_exit ? json_integer(code) : json_null(), "lines", lines);
        if (!out)
            bt_errf(err, errlen, "out of memory");
    }
    json_decref(lines);
    service_unref(m, s);
    return out;
}

bool master_auth(master *m, const char *user, const char *password)
{
    if (!user || !password)
        return false;
    if (strcmp(user, CLI_USER) == 0)
        return bt_secure_streq(password, m->cli_token);
    bool ok = false;
    pthread_mutex_lock(&m->mu);
    m_service *s = find_service(m, user);
    if (s)
        ok = bt_secure_streq(password, s->token);
    pthread_mutex_unlock(&m->mu);
    return ok;
}

bool master_may_act(master *m, const char *user, const char *svc)
{
    if (!strcmp(user, CLI_USER) || !strcmp(user, svc))
        return true;
    pthread_mutex_lock(&m->mu);
    m_service *s = find_service(m, user);
    bool ok = s && grants_allow(s->grants, svc);
    pthread_mutex_unlock(&m->mu);
    return ok;
}

static const char *status_name(inst_status st)
{
    switch (st) {
    case INST_RUNNING: return "running";
    case INST_RESTARTING: return "restarting";
    default: return "exited";
    }
}

json_t *master_services_json(master *m)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&m->mu);
    for (m_service *s = m->services; s; s = s->next) {
        if (s->stopping)
            continue;
        json_t *insts = json_array();
        for (m_instance *i = s->instances; i; i = i->next) {
            if (i->finished)
                continue;
            /* Reported keys first, so the master's own keys win on a clash. */
            json_t *o = json_deep_copy(i->reported);
            if (!o)
                o = json_object();
            char ts[64];
            bt_fmt_time_utc(&i->start_time, ts, sizeof ts);
            json_object_set_new(o, "name", json_string(i->name));
            json_object_set_new(o, "status", json_string(status_name(i->status)));
            json_object_set_new(o, "start_time", json_string(ts));
            json_object_del(o, "process");
            json_object_del(o, "container");
            json_object_del(o, "cpu_stats");
            json_object_del(o, "mem_stats");
            if (i->alive || m->engine->ops->stats_between_runs)
                m->engine->ops->instance_stats(m->engine, &i->view, o);
            json_array_append_new(insts, o);
        }
        json_array_append_new(arr, json_pack("{s:s,s:o}", "name", s->name, "instances", insts));
    }
    pthread_mutex_unlock(&m->mu);
    return arr;
}

static void set_str(master *m, char **dst, const char *v)
{
    char *c = strdup(v ? v : "");
    if (!c)
        return;
    pthread_mutex_lock(&m->mu);
    free(*dst);
    *dst = c;
    pthread_mutex_unlock(&m->mu);
}

static char *get_str(master *m, char *const *src)
{
    pthread_mutex_lock(&m->mu);
    char *c = strdup(*src ? *src : "");
    pthread_mutex_unlock(&m->mu);
    return c;
}

void master_set_version(master *m, const char *v)
{
    set_str(m, &m->conf_version, v);
}

void master_set_volumes(master *m, const app_config *app)
{
    json_t *v = json_array();
    for (size_t i = 0; v && i < app->volumes.n; i++)
        json_array_append_new(v, json_pack("{s:s,s:s}", "name", APP_VOLUME(app, i)->name, "path",
                                           APP_VOLUME(app, i)->path));
    pthread_mutex_lock(&m->mu);
    json_decref(m->volumes);
    m->volumes = v;
    pthread_mutex_unlock(&m->mu);
}

json_t *master_volumes_json(master *m)
{
    pthread_mutex_lock(&m->mu);
    json_t *v = m->volumes ? json_deep_copy(m->volumes) : json_array();
    pthread_mutex_unlock(&m->mu);
    return v;
}

void master_set_error(master *m, const char *e)
{
    set_str(m, &m->error, e);
}

char *master_get_version(master *m)
{
    return get_str(m, &m->conf_version);
}

char *master_get_error(master *m)
{
    return get_str(m, &m->error);
}

void master_save_stats(master *m)
{
    pthread_mutex_lock(&m->stats_mu);
    json_t *root = json_object();
    pthread_mutex_lock(&m->mu);
    for (m_service *s = m->services; s && root; s = s->next) {
        if (s->stopping)
            continue;
        json_t *so = json_object();
        for (m_instance *i = s->instances; i; i = i->next) {
            if (i->finished)
                continue;
            char ts[64];
            bt_fmt_time_utc(&i->start_time, ts, sizeof ts);
            json_t *o = json_pack("{s:s,s:s,s:s}", "name", i->name, "status",
                                  status_name(i->status), "start_time", ts);
            /* What a later master needs to find what this one leaves behind. */
            if (o && i->alive && i->view.pid > 0)
                json_object_set_new(
                    o, "process",
                    json_pack("{s:i,s:s}", "id", (json_int_t)i->view.pid, "name", i->view.name));
            else if (o && i->alive && i->view.id[0])
                json_object_set_new(o, "container",
                                    json_pack("{s:s,s:s}", "id", i->view.id, "name", i->view.name));
            json_object_set_new(so, i->name, o);
        }
        json_object_set_new(root, s->name, so);
    }
    pthread_mutex_unlock(&m->mu);
    char why[512];
    if (root && json_to_yaml_file(root, APP_STATS_FILE, why, sizeof why) != 0)
        bt_logkv(BT_LOG_WARN, "failed to save application stats", "error", why, NULL);
    json_decref(root);
    pthread_mutex_unlock(&m->stats_mu);
}
