/* Application OTA (SPEC §9). */
#include "adopt.h"
#include "mst.h"
#include "ota.h"
#include "metrics.h"
#include "path_beneath.h"
#include "stats_file.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/log.h>
#include <baetyl/otalog.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PENDING 16

typedef struct job {
    bool mst; /* a master binary update (mst.h) */
    char *path;
    char *trace;
    struct job *next;
} job;

struct ota {
    master *m;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    job *head, *tail;
    size_t pending;
    bool quit;
};

/* ---- ota.log ------------------------------------------------------------------------- */

/* One line of ota.log; a failure to write it is logged, the update goes on. */
static void ota_log(master *m, const char *trace, const char *step, const char *msg,
                    const char *error)
{
    char why[512];
    metrics_count_ota("APP", step);
    if (bt_otalog_write(m->conf.otalog.path, trace, "APP", step, msg, error, why, sizeof why) < 0)
        bt_logkv(BT_LOG_WARN, "failed to write ota log", "path", m->conf.otalog.path, "error", why,
                 NULL);
}

/* ---- the update ------------------------------------------------------------------------ */

/* application.yml.old back to application.yml. */
static int restore_backup(char *err, size_t errlen)
{
    if (!bt_path_exists(APP_BACKUP_FILE))
        return 0;
    if (rename(APP_BACKUP_FILE, APP_FILE) != 0)
        return bt_errf(err, errlen, "rename %s: %s", APP_BACKUP_FILE, strerror(errno));
    return 0;
}

/* Where an update may come from (SPEC §19): the path, symlinks followed, resolves inside
 * the work dir and is either a regular file the master's user owns or a directory holding
 * application.yml (a regular file, inside too). Returns the resolved file (malloc'd), or
 * NULL with err; *missing is set when the only fault is that it does not exist. */
static char *target_resolve(master *m, const char *path, bool *missing, char *err, size_t errlen)
{
    *missing = false;
    char *root = realpath(m->pwd, NULL), *real = NULL, *file = NULL, *out = NULL;
    struct stat st;
    if (!root) {
        bt_errf(err, errlen, "work dir %s: %s", m->pwd, strerror(errno));
        return NULL;
    }
    if (!(real = realpath(path, NULL))) {
        *missing = errno == ENOENT;
        bt_errf(err, errlen, "open %s: %s", path, strerror(errno));
    } else if (!path_inside(root, real)) {
        bt_errf(err, errlen, "path (%s) refused: it resolves outside the work dir", path);
    } else if (stat(real, &st) != 0) {
        bt_errf(err, errlen, "stat %s: %s", path, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        file = bt_path_join(path, "application.yml");
        char *rf = file ? realpath(file, NULL) : NULL;
        if (!file) {
            bt_errf(err, errlen, "out of memory");
        } else if (!rf) {
            *missing = errno == ENOENT;
            bt_errf(err, errlen, "open %s: %s", file, strerror(errno));
        } else if (!path_inside(root, rf)) {
            bt_errf(err, errlen, "path (%s) refused: it resolves outside the work dir", file);
        } else if (stat(rf, &st) != 0 || !S_ISREG(st.st_mode)) {
            bt_errf(err, errlen, "path (%s) refused: not a regular file", file);
        } else {
            out = rf;
            rf = NULL;
        }
        free(rf);
    } else if (!S_ISREG(st.st_mode)) {
        bt_errf(err, errlen, "path (%s) refused: want a regular file or a directory", path);
    } else if (st.st_uid != geteuid()) {
        bt_errf(err, errlen,
                "path (%s) refused: the file is not owned by the master's user "
                "(uid %u)",
                path, (unsigned)geteuid());
    } else {
        out = real;
        real = NULL;
    }
    free(root);
    free(real);
    free(file);
    return out;
}

/* Step (1): the target is checked and read, then application.yml -> .old (an empty .old
 * when there was none) and the target in, 0600 and atomically (services may hold secrets).
 * A refused target leaves application.yml as it was. */
static int install_target(master *m, const char *target, char *err, size_t errlen)
{
    bool missing;
    char *src = target_resolve(m, target, &missing, err, errlen), *data = NULL;
    size_t len = 0;
    if (!src)
        return -1;
    int r = bt_read_file(src, APP_MAX_FILE, &data, &len, err, errlen);
    free(src);
    if (r != 0)
        return -1;
    bt_mkdir_p("var/db/baetyl", 0755, NULL, 0);
    if (bt_path_exists(APP_FILE)) {
        if (rename(APP_FILE, APP_BACKUP_FILE) != 0)
            r = bt_errf(err, errlen, "rename %s: %s", APP_FILE, strerror(errno));
    } else {
        r = bt_write_file_atomic(APP_BACKUP_FILE, "", 0, 0600, err, errlen);
    }
    if (r == 0)
        r = bt_write_file_atomic(APP_FILE, data, len, 0600, err, errlen);
    free(data);
    return r;
}

static int load_or_empty(const char *path, app_config *app, char *err, size_t errlen)
{
    if (!bt_path_exists(path))
        return app_load_string("", 0, app, err, errlen);
    return app_load(path, app, err, errlen);
}

/* Makes app the running one: inspect's version and volumes, .old removed. */
static void commit(master *m, app_config *app)
{
    app_free(&m->app);
    m->app = *app;
    memset(app, 0, sizeof *app);
    master_set_version(m, m->app.version);
    master_set_volumes(m, &m->app);
    if (unlink(APP_BACKUP_FILE) != 0 && errno != ENOENT)
        bt_logkv(BT_LOG_ERROR, "failed to remove backup file", "error", strerror(errno), NULL);
    adopt_save_running_app();
    char msg[256];
    snprintf(msg, sizeof msg, "app version (%s) committed", m->app.version ? m->app.version : "");
    bt_logkv(BT_LOG_INFO, msg, NULL);
}

/* The engine's hooks around a change of application (engine.h: retarget, settle). */
static void retarget(bt_engine *e, const app_config *next)
{
    if (e->ops->retarget)
        e->ops->retarget(e, next);
}

static void settle(bt_engine *e)
{
    if (e->ops->settle)
        e->ops->settle(e);
}

/* The last ota.log step of a failed update. Inspect's error is set first: a user (or a
 * test) who sees FAILURE or ROLLEDBACK in ota.log then finds the reason in inspect. */
static int ota_end(master *m, const char *trace, const char *step, const char *msg,
                   const char *detail, const char *err)
{
    char *full = bt_strdup_printf("failed to update system: %s", err);
    master_set_error(m, full ? full : err);
    free(full);
    ota_log(m, trace, step, msg, detail);
    return -1;
}

/* Runs steps (2)-(5) once the files are in place. Caller holds ops. is_ota: an update
 * (from the API, or interrupted and found at boot) that writes ota.log and rolls back to
 * application.yml.old; otherwise a plain boot, where a failure simply stops what started.
 * install_err: step (1) failed with that text. */
static int apply(master *m, const char *trace, bool is_ota, const char *install_err, char *err,
                 size_t errlen)
{
    app_config cur = {0}, old = {0};
    bool have_cur = false, have_old = false;
    char why[1024] = "", rb[1024] = "";

    if (install_err) {
        snprintf(why, sizeof why, "%s", install_err);
    } else if (!bt_path_exists(APP_FILE) && bt_path_exists(APP_BACKUP_FILE)) {
        snprintf(why, sizeof why, "open %s: %s", APP_FILE, strerror(ENOENT));
    } else if (load_or_empty(APP_FILE, &cur, why, sizeof why) == 0) {
        have_cur = true;
        if (is_ota && !cur.has_services) { /* SPEC §19: an empty app only when it says so */
            snprintf(why, sizeof why, "%s", BT_APP_NO_SERVICES);
            app_free(&cur);
            have_cur = false;
        } else if (load_or_empty(APP_BACKUP_FILE, &old, why, sizeof why) == 0) {
            have_old = true;
        }
    }
    if (!have_cur || !have_old) {
        if (have_cur)
            app_free(&cur);
        if (!is_ota)
            return bt_errf(err, errlen, "failed to reload config: %s", why);
        ota_log(m, trace, "ROLLINGBACK", "failed to reload config", why);
        /* The old app still runs after a failed load, except at boot: start what is not
         * running (nothing, during an update). */
        app_config back = {0};
        bool loaded = false;
        if (restore_backup(rb, sizeof rb) != 0 ||
            !(loaded = load_or_empty(APP_FILE, &back, rb, sizeof rb) == 0) ||
            master_start_app(m, &back, rb, sizeof rb) != 0) {
            if (loaded)
                commit(m, &back);
            bt_errf(err, errlen, "failed to reload config: %s; failed to roll back: %s", why, rb);
            return ota_end(m, trace, "FAILURE", "failed to roll back", rb, err);
        }
        commit(m, &back);
        bt_errf(err, errlen, "failed to reload config: %s", why);
        return ota_end(m, trace, "ROLLEDBACK", "app is rolled back", NULL, err);
    }

    /* (3) what differs from the running app stops; the new app starts in order; identical
     * services keep running untouched. */
    bt_engine *e = m->engine;
    engine_placement_warn(e, &cur);
    int rc = e->ops->prepare(e, &cur, why, sizeof why);
    if (rc == 0) {
        retarget(e, &cur);
        master_stop_changed(m, &cur, &m->app);
        rc = master_start_app(m, &cur, why, sizeof why);
    }
    if (rc == 0) {
        settle(e);
        commit(m, &cur);
        app_free(&old);
        if (is_ota)
            ota_log(m, trace, "UPDATED", "app is updated", NULL);
        return 0;
    }
    if (!is_ota) {
        retarget(e, NULL);
        master_stop_changed(m, NULL, NULL);
        settle(e);
        app_free(&cur);
        app_free(&old);
        return bt_errf(err, errlen, "failed to start app: %s", why);
    }

    /* (4) roll back: stop what the new app started, start the old one again. */
    ota_log(m, trace, "ROLLINGBACK", "failed to start app", why);
    if (restore_backup(rb, sizeof rb) != 0) {
        retarget(e, NULL);
        settle(e);
        app_free(&cur);
        app_free(&old);
        bt_errf(err, errlen, "failed to start app: %s; failed to roll back: %s", why, rb);
        return ota_end(m, trace, "FAILURE", "failed to roll back", rb, err);
    }
    retarget(e, &old);
    master_stop_changed(m, &cur, &m->app);
    app_free(&cur);
    int back = master_start_app(m, &old, rb, sizeof rb);
    settle(e);
    if (back != 0) {
        commit(m, &old);
        bt_errf(err, errlen, "failed to restart old app: %s; failed to roll back: %s", why, rb);
        return ota_end(m, trace, "FAILURE", "failed to roll back", rb, err);
    }
    commit(m, &old);
    bt_errf(err, errlen, "failed to start app: %s", why);
    return ota_end(m, trace, "ROLLEDBACK", "app is rolled back", NULL, err);
}

/* An update from the API: install the target, apply, record the error for inspect. */
static void update_from(master *m, const char *path, const char *trace)
{
    char why[1024], err[2048];
    pthread_mutex_lock(&m->ops);
    bt_logkv(BT_LOG_INFO, "system is updating", "path", path, "trace", trace ? trace : "", NULL);
    ota_log(m, trace, "UPDATING", "app is updating", NULL);
    int ir = install_target(m, path, why, sizeof why);
    int rc = apply(m, trace, true, ir == 0 ? NULL : why, err, sizeof err);
    if (rc != 0) {
        char *full = bt_strdup_printf("failed to update system: %s", err);
        bt_logkv(BT_LOG_ERROR, full ? full : err, NULL);
        master_set_error(m, full ? full : err);
        free(full);
    } else {
        master_set_error(m, "");
    }
    pthread_mutex_unlock(&m->ops);
}

int ota_boot(master *m, char *err, size_t errlen)
{
    pthread_mutex_lock(&m->ops);
    char why[512];
    json_t *stats =
        bt_path_exists(APP_STATS_FILE) ? yaml_file_to_json(APP_STATS_FILE, why, sizeof why) : NULL;
    if (!stats && bt_path_exists(APP_STATS_FILE))
        bt_logkv(BT_LOG_WARN, "failed to read application stats", "error", why, NULL);
    adopt_prepare(m); /* what a killed master left running and may keep running */
    m->engine->ops->recover(m->engine, stats);
    json_decref(stats);

    bool interrupted = bt_path_exists(APP_BACKUP_FILE);
    char *trace = NULL;
    if (interrupted) {
        trace = bt_otalog_last_trace(m->conf.otalog.path);
        bt_logkv(BT_LOG_WARN, "an interrupted update was found, finishing it", NULL);
        ota_log(m, trace, "UPDATING", "app is updating", NULL);
    } else if (!bt_path_exists(APP_FILE)) {
        bt_logkv(BT_LOG_INFO, "no application (" APP_FILE " not found): no service to start", NULL);
    }
    char e2[2048];
    int rc = apply(m, trace, interrupted, NULL, e2, sizeof e2);
    adopt_finish(m);
    free(trace);
    if (rc != 0) {
        char *full = bt_strdup_printf("failed to update system: %s", e2);
        master_set_error(m, full ? full : e2);
        bt_logkv(BT_LOG_ERROR, full ? full : e2, NULL);
        free(full);
        if (!interrupted) {
            /* Nothing to go back to (Baetyl 1.0: a start failure stops the master). */
            pthread_mutex_unlock(&m->ops);
            return bt_errf(err, errlen, "%s", e2);
        }
    }
    pthread_mutex_unlock(&m->ops);
    return 0;
}

/* ---- the worker ------------------------------------------------------------------------ */

static void *worker(void *arg)
{
    ota *o = arg;
    pthread_mutex_lock(&o->mu);
    for (;;) {
        while (!o->head && !o->quit)
            pthread_cond_wait(&o->cond, &o->mu);
        if (o->quit)
            break;
        job *j = o->head;
        o->head = j->next;
        if (!o->head)
            o->tail = NULL;
        o->pending--;
        pthread_mutex_unlock(&o->mu);
        if (j->mst) {
            char err[2048];
            pthread_mutex_lock(&o->m->ops);
            if (mst_update(o->m, j->path, j->trace, err, sizeof err) != 0)
                master_set_error(o->m, err);
            pthread_mutex_unlock(&o->m->ops);
        } else {
            update_from(o->m, j->path, j->trace);
        }
        free(j->path);
        free(j->trace);
        free(j);
        pthread_mutex_lock(&o->mu);
    }
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

int ota_start(master *m, ota **out, char *err, size_t errlen)
{
    ota *o = calloc(1, sizeof *o);
    if (!o)
        return bt_errf(err, errlen, "out of memory");
    o->m = m;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cond, NULL);
    int rc = pthread_create(&o->thread, NULL, worker, o);
    if (rc != 0) {
        pthread_cond_destroy(&o->cond);
        pthread_mutex_destroy(&o->mu);
        free(o);
        return bt_errf(err, errlen, "failed to start the update worker: %s", strerror(rc));
    }
    *out = o;
    return 0;
}

int ota_queue(ota *o, bool mst, const char *path, const char *trace, char *err, size_t errlen)
{
    /* A refused path fails the request; a missing one fails the update (ota.log), as a
     * target may still be on its way. The worker checks again before it reads. */
    bool missing;
    char *ok = mst ? NULL : target_resolve(o->m, path, &missing, err, errlen);
    free(ok);
    if (!mst && !ok && !missing)
        return -1;
    job *j = calloc(1, sizeof *j);
    if (!j)
        return bt_errf(err, errlen, "out of memory");
    j->mst = mst;
    j->path = strdup(path);
    j->trace = trace ? strdup(trace) : NULL;
    if (!j->path || (trace && !j->trace)) {
        free(j->path);
        free(j->trace);
        free(j);
        return bt_errf(err, errlen, "out of memory");
    }
    pthread_mutex_lock(&o->mu);
    int rc = 0;
    if (o->quit)
        rc = bt_errf(err, errlen, "master is stopping");
    else if (o->pending >= MAX_PENDING)
        rc = bt_errf(err, errlen, "too many pending updates (max %d)", MAX_PENDING);
    if (rc == 0) {
        if (o->tail)
            o->tail->next = j;
        else
            o->head = j;
        o->tail = j;
        o->pending++;
        pthread_cond_signal(&o->cond);
    }
    pthread_mutex_unlock(&o->mu);
    if (rc != 0) {
        free(j->path);
        free(j->trace);
        free(j);
    }
    return rc;
}

void ota_stop(ota *o)
{
    if (!o)
        return;
    pthread_mutex_lock(&o->mu);
    o->quit = true;
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->mu);
    pthread_join(o->thread, NULL);
    for (job *j = o->head, *nx; j; j = nx) {
        nx = j->next;
        bt_logkv(BT_LOG_WARN, "pending update dropped: master is stopping", "path", j->path, NULL);
        free(j->path);
        free(j->trace);
        free(j);
    }
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->mu);
    free(o);
}
