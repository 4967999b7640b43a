/* Adoption of the instances a killed master left running (adopt.h). */
#include "adopt.h"
#include "app.h"
#include "host_stats.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/log.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RECORD_MAX (256u << 10)

static char *record_path(const char *svc, const char *inst)
{
    return bt_strdup_printf(ADOPT_DIR "/%s/%s.json", svc, inst);
}

void adopt_record(master *m, const m_instance *in, const eng_instance *run)
{
    uint64_t ticks, rss, start = 0;
    char comm[64], hash[24], err[256];
    pid_t pid = run->pid;
    if (pid > 0 && proc_sample(pid, &ticks, &rss, &start, comm, sizeof comm) != 0)
        return;
    if (pid <= 0 && !run->id[0])
        return;
    snprintf(hash, sizeof hash, "%016" PRIx64, engine_env_hash(in->env));
    json_t *j = json_pack("{s:s,s:b,s:O?,s:s}", "token", in->svc->token, "dynamic", in->dynamic,
                          "env", in->dyn_env, "env_hash", hash);
    if (j && pid > 0) {
        json_object_set_new(j, "pid", json_integer(pid));
        json_object_set_new(j, "start", json_integer((json_int_t)start));
    } else if (j) {
        json_object_set_new(j, "container", json_string(run->id));
    }
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL,
         *path = record_path(in->svc->name, in->name);
    if (!text || !path || bt_mkdir_parents(path, err, sizeof err) != 0 ||
        bt_write_file_atomic(path, text, strlen(text), 0600, err, sizeof err) != 0)
        bt_logkv(BT_LOG_WARN, "failed to record instance (a master crash would restart it)",
                 "service", in->svc->name, "instance", in->name, "error",
                 text && path ? err : "out of memory", NULL);
    json_decref(j);
    free(text);
    free(path);
}

void adopt_forget(master *m, const char *svc, const char *inst)
{
    char *path = record_path(svc, inst);
    if (path)
        unlink(path);
    free(path);
}

void adopt_save_running_app(void)
{
    char *text = NULL, err[256];
    size_t len = 0;
    if (bt_path_exists(APP_FILE) &&
        bt_read_file(APP_FILE, APP_MAX_FILE, &text, &len, err, sizeof err) != 0) {
        unlink(ADOPT_RUNNING_APP); /* unknown: nothing will be taken over */
        return;
    }
    if (bt_mkdir_parents(ADOPT_RUNNING_APP, err, sizeof err) != 0 ||
        bt_write_file_atomic(ADOPT_RUNNING_APP, text ? text : "", len, 0600, err, sizeof err) != 0)
        unlink(ADOPT_RUNNING_APP);
    free(text);
}

/* True when pid runs and started at start (ticks since boot): the recorded process. */
static bool same_process(json_int_t pid, json_int_t start)
{
    uint64_t ticks, rss, st;
    char comm[64];
    return pid > 1 && pid <= 0x3fffffff && pid != getpid() &&
           proc_sample((pid_t)pid, &ticks, &rss, &st, comm, sizeof comm) == 0 &&
           (json_int_t)st == start;
}

static void stop_recorded(const char *svc, const char *inst, json_int_t pid, const char *why)
{
    pid_t p = (pid_t)pid;
    int r = getpgid(p) == p ? killpg(p, SIGKILL) : kill(p, SIGKILL);
    char pids[24];
    snprintf(pids, sizeof pids, "%d", (int)p);
    bt_logkv(r == 0 ? BT_LOG_INFO : BT_LOG_WARN, "old instance stopped", "service", svc, "instance",
             inst, "pid", pids, "reason", why, NULL);
}

void adopt_prepare(master *m)
{
    app_config cur = {0}, old = {0};
    char why[512];
    bool have = !bt_path_exists(APP_BACKUP_FILE) && bt_path_exists(ADOPT_RUNNING_APP) &&
                bt_path_exists(APP_FILE);
    bool cur_ok = have && app_load(APP_FILE, &cur, why, sizeof why) == 0;
    bool old_ok = cur_ok && app_load(ADOPT_RUNNING_APP, &old, why, sizeof why) == 0;
    json_t *adopt = json_object();
    DIR *d = opendir(ADOPT_DIR);
    struct dirent *se;
    while (d && adopt && (se = readdir(d)) != NULL) {
        if (se->d_name[0] == '.' || !strcmp(se->d_name, "running.yml"))
            continue;
        char *sdir = bt_path_join(ADOPT_DIR, se->d_name);
        DIR *sd = sdir ? opendir(sdir) : NULL;
        struct dirent *ie;
        while (sd && (ie = readdir(sd)) != NULL) {
            size_t n = strlen(ie->d_name);
            if (n <= 5 || strcmp(ie->d_name + n - 5, ".json") != 0)
                continue;
            char inst[256];
            snprintf(inst, sizeof inst, "%.*s", (int)(n - 5), ie->d_name);
            char *path = bt_path_join(sdir, ie->d_name), *text = NULL;
            json_t *rec = NULL;
            if (path && bt_read_file(path, RECORD_MAX, &text, NULL, why, sizeof why) == 0)
                rec = json_loads(text, 0, NULL);
            json_int_t pid = json_integer_value(json_object_get(rec, "pid"));
            json_int_t start = json_integer_value(json_object_get(rec, "start"));
            bool container = json_is_string(json_object_get(rec, "container"));
            if (rec && (container || same_process(pid, start))) {
                if (old_ok && app_service_unchanged(&cur, &old, se->d_name)) {
                    json_t *svc = json_object_get(adopt, se->d_name);
                    if (!svc)
                        json_object_set_new(adopt, se->d_name, svc = json_object());
                    json_object_set(svc, inst, rec);
                } else {
                    if (!container) /* a container not taken over is removed by recover */
                        stop_recorded(se->d_name, inst, pid, "its service changed");
                    if (path)
                        unlink(path);
                }
            } else if (path) {
                unlink(path); /* ended while no master ran */
            }
            json_decref(rec);
            free(text);
            free(path);
        }
        if (sd)
            closedir(sd);
        free(sdir);
    }
    if (d)
        closedir(d);
    if (cur_ok)
        app_free(&cur);
    if (old_ok)
        app_free(&old);
    pthread_mutex_lock(&engine_adopt_mu);
    m->engine->adopt = json_object_size(adopt) ? adopt : NULL;
    pthread_mutex_unlock(&engine_adopt_mu);
    if (!m->engine->adopt)
        json_decref(adopt);
}

const char *adopt_token(master *m, const char *svc)
{
    const char *tok = NULL, *k;
    json_t *v;
    pthread_mutex_lock(&engine_adopt_mu);
    json_t *s = m->engine->adopt ? json_object_get(m->engine->adopt, svc) : NULL;
    json_object_foreach(s, k, v)
    {
        tok = json_string_value(json_object_get(v, "token"));
        if (tok)
            break;
    }
    pthread_mutex_unlock(&engine_adopt_mu);
    return tok; /* lives until adopt_finish, which runs under the same ops lock */
}

void adopt_finish(master *m)
{
    bt_engine *e = m->engine;
    pthread_mutex_lock(&engine_adopt_mu);
    json_t *all = json_deep_copy(e->adopt);
    pthread_mutex_unlock(&engine_adopt_mu);
    const char *sname, *iname;
    json_t *svc, *rec;
    char err[1024];
    /* Dynamic instances (started through the API) start again with their recorded env,
     * which takes the running process over. */
    json_object_foreach(all, sname, svc)
    {
        json_object_foreach(svc, iname, rec)
        {
            if (!json_is_true(json_object_get(rec, "dynamic")))
                continue;
            json_t *env = json_object_get(rec, "env");
            if (master_instance_start(m, sname, iname, json_is_object(env) ? env : NULL, err,
                                      sizeof err) != 0)
                bt_logkv(BT_LOG_WARN, "failed to take an instance over", "service", sname,
                         "instance", iname, "error", err, NULL);
        }
    }
    json_decref(all);
    pthread_mutex_lock(&engine_adopt_mu);
    all = e->adopt;
    e->adopt = NULL;
    pthread_mutex_unlock(&engine_adopt_mu);
    json_object_foreach(all, sname, svc)
    {
        json_object_foreach(svc, iname, rec)
        {
            if (e->ops->drop_adopted) /* swarm: services are found again by name and label */
                e->ops->drop_adopted(e, sname, iname, rec);
            adopt_forget(m, sname, iname);
        }
    }
    json_decref(all);
}
