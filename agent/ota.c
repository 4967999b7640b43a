/* The OTA worker (SPEC §15): one event at a time, RECEIVED in ota.log, the volumes
 * downloaded and unzipped, the master asked to update, then ota.log followed (a report at
 * each change) until the master ends the OTA or ota.timeout passes; after UPDATED, unused
 * volume directories are removed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "baetyl/json.h"
#include "baetyl/util.h"

#define FOLLOW_POLL_MS 300

void agent_queue_event(agent *a, agent_ota_event *ev)
{
    pthread_mutex_lock(&a->mu);
    if (a->pending) {
        bt_logkv(BT_LOG_WARN, "discard old event", "trace", a->pending->trace, NULL);
        agent_event_free(a->pending);
        free(a->pending);
    }
    a->pending = ev;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* The OTA being followed, seen by the reporter. records is taken. */
static void set_progress(agent *a, const char *trace, json_t *records)
{
    pthread_mutex_lock(&a->mu);
    if (trace && (!a->ota_trace || strcmp(a->ota_trace, trace) != 0)) {
        free(a->ota_trace);
        a->ota_trace = strdup(trace);
    } else if (!trace) {
        free(a->ota_trace);
        a->ota_trace = NULL;
    }
    json_decref(a->ota_records);
    a->ota_records = records;
    pthread_mutex_unlock(&a->mu);
}

static void report_progress(agent *a, const char *trace, const json_t *records)
{
    json_t *ota = json_object();
    char err[512];
    if (ota)
        json_object_set_new(ota, trace, json_deep_copy(records));
    if (agent_report(a, ota, err, sizeof err) < 0)
        bt_logkv(BT_LOG_WARN, "failed to report ota progress", "trace", trace, "error", err, NULL);
    json_decref(ota);
}

static void write_step(agent *a, const char *trace, const char *type, const char *step,
                       const char *msg, const char *error)
{
    char err[512];
    if (bt_otalog_write(a->cfg.ota_log_path, trace, type, step, msg, error, err, sizeof err) < 0)
        bt_logkv(BT_LOG_ERROR, "failed to write ota log", "error", err, NULL);
}

/* After UPDATED: the running app's volumes (from inspect) are kept, other directories go.
 * version: the app the OTA installed (NULL = unknown); another one running means another
 * update came in between, and its volumes are not ours to judge. */
static void cleanup(agent *a, const char *version)
{
    char err[512];
    json_t *ins = NULL;
    if (bt_api_inspect(a->api, &ins, NULL, err, sizeof err) < 0) {
        bt_logkv(BT_LOG_WARN, "cleanup skipped: failed to inspect", "error", err, NULL);
        return;
    }
    const char *running = bt_json_get_str(ins, "software.conf_version");
    json_t *vols = json_object_get(ins, "volumes");
    if (version && (!running || strcmp(running, version) != 0)) {
        bt_logkv(BT_LOG_INFO, "cleanup skipped: another app version runs", "version",
                 running ? running : "", NULL);
    } else if (!json_is_array(vols)) {
        bt_logkv(BT_LOG_WARN, "cleanup skipped: the master lists no volumes", NULL);
    } else {
        int n = agent_cleanup(AGENT_HOST_DB, AGENT_VOLUMES_DIR, vols, err, sizeof err);
        if (n < 0)
            bt_logkv(BT_LOG_WARN, "cleanup failed", "error", err, NULL);
        else {
            char num[32];
            snprintf(num, sizeof num, "%d", n);
            bt_logkv(BT_LOG_INFO, "old volumes cleaned", "removed", num, NULL);
        }
    }
    json_decref(ins);
}

/* Follows ota.log for trace: a report at each change, TIMEOUT after ota.timeout, cleanup
 * after UPDATED. Returns when the OTA ended or the agent stops. */
static void follow(agent *a, const char *trace, const char *type, const char *version)
{
    bt_logkv(BT_LOG_INFO, "waiting ota to finish", "trace", trace, NULL);
    int64_t deadline = bt_now_ms() + a->cfg.ota_timeout;
    size_t seen = (size_t)-1;
    for (;;) {
        json_t *rec = otalog_records(a->cfg.ota_log_path, trace);
        if (!rec) {
            if (bt_ctx_sleep(a->ctx, FOLLOW_POLL_MS))
                break;
            continue;
        }
        const char *step = NULL;
        bool done = otalog_finished(rec, &step);
        bool changed = json_array_size(rec) != seen;
        seen = json_array_size(rec);
        set_progress(a, trace, json_incref(rec));
        if (changed)
            report_progress(a, trace, rec);
        if (done) {
            bt_logkv(BT_LOG_INFO, "ota is finished", "trace", trace, "step", step, NULL);
            if (!strcmp(step, OTA_UPDATED))
                cleanup(a, version);
            json_decref(rec);
            break;
        }
        json_decref(rec);
        if (bt_now_ms() >= deadline) {
            bt_logkv(BT_LOG_WARN, "ota is timed out", "trace", trace, NULL);
            write_step(a, trace, type, OTA_TIMEOUT, "ota is timed out", NULL);
            rec = otalog_records(a->cfg.ota_log_path, trace);
            if (rec) {
                set_progress(a, trace, json_incref(rec));
                report_progress(a, trace, rec);
                json_decref(rec);
            }
            break;
        }
        if (bt_ctx_sleep(a->ctx, FOLLOW_POLL_MS))
            break;
    }
    set_progress(a, NULL, NULL);
}

/* Downloads what the OTA needs and asks the master to update. *version = the new app's
 * version. Returns 0 or -1 with err. */
static int apply(agent *a, const agent_ota_event *ev, char **version, char *err, size_t errlen)
{
    char why[1024];
    char *cdir = NULL, *hdir = NULL, *file = NULL, *target = NULL;
    agent_app app = {0};
    bool loaded = false;
    int rc = -1;
    *version = NULL;
    bool mst = !strcmp(ev->type, "MST");
    if (strcmp(ev->type, "APP") != 0 && !mst) {
        snprintf(err, errlen, "ota type (%.64s) not supported", ev->type);
        return -1;
    }
    if (agent_volume_prepare(a->ctx, &a->cfg.http, &ev->volume, &cdir, &hdir, why, sizeof why) <
        0) {
        snprintf(err, errlen, "failed to download volume: %s", why);
        goto out;
    }
    if (mst) { /* the volume holds bin/baetyl: the master checks it and takes it */
        bt_logkv(BT_LOG_INFO, "updating master", "path", hdir, "trace", ev->trace, NULL);
        if (bt_api_update_system(a->api, "MST", hdir, ev->trace, why, sizeof why) < 0)
            snprintf(err, errlen, "failed to update master: %s", why);
        else
            rc = 0;
        goto out;
    }
    if (asprintf(&file, "%s/application.yml", cdir) < 0 ||
        asprintf(&target, "%s/application.yml", hdir) < 0) {
        file = target = NULL;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (agent_app_load(file, &app, err, errlen) < 0)
        goto out;
    loaded = true;
    for (size_t i = 0; i < app.volumes.n; i++) {
        const agent_volume *v = &BT_CFG_AT(app.volumes, agent_volume, i);
        if (!v->url || !*v->url)
            continue;
        if (bt_ctx_stopped(a->ctx)) {
            snprintf(err, errlen, "agent stopped");
            goto out;
        }
        if (agent_volume_prepare(a->ctx, &a->cfg.http, v, NULL, NULL, why, sizeof why) < 0) {
            snprintf(err, errlen, "failed to download app volumes: %s", why);
            goto out;
        }
    }
    if (app.version && !(*version = strdup(app.version))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    bt_logkv(BT_LOG_INFO, "updating system", "path", target, "trace", ev->trace, NULL);
    if (bt_api_update_system(a->api, "APP", target, ev->trace, why, sizeof why) < 0) {
        snprintf(err, errlen, "failed to update system: %s", why);
        free(*version);
        *version = NULL;
        goto out;
    }
    rc = 0;
out:
    if (loaded)
        agent_app_free(&app);
    free(cdir);
    free(hdir);
    free(file);
    free(target);
    return rc;
}

static void process(agent *a, const agent_ota_event *ev)
{
    bt_logkv(BT_LOG_INFO, "process ota", "type", ev->type, "trace", ev->trace, NULL);
    write_step(a, ev->trace, ev->type, OTA_RECEIVED, "ota event is received", NULL);
    json_t *rec = otalog_records(a->cfg.ota_log_path, ev->trace);
    if (rec) {
        set_progress(a, ev->trace, json_incref(rec));
        report_progress(a, ev->trace, rec);
        json_decref(rec);
    }
    char err[2048], *version = NULL;
    if (ev->error) {
        write_step(a, ev->trace, ev->type, OTA_FAILURE, "failed to process ota event", ev->error);
    } else if (apply(a, ev, &version, err, sizeof err) < 0) {
        bt_logkv(BT_LOG_WARN, "failed to process ota event", "trace", ev->trace, "error", err,
                 NULL);
        write_step(a, ev->trace, ev->type, OTA_FAILURE, "failed to process ota event", err);
    }
    follow(a, ev->trace, ev->type, version);
    free(version);
}

void *agent_worker_main(void *arg)
{
    agent *a = arg;
    /* An OTA left unfinished (the agent itself may have been restarted by it): follow it. */
    char *trace = bt_otalog_last_trace(a->cfg.ota_log_path);
    if (trace) {
        json_t *rec = otalog_records(a->cfg.ota_log_path, trace);
        if (rec && json_array_size(rec) > 0 && !otalog_finished(rec, NULL))
            follow(a, trace, "APP", NULL);
        json_decref(rec);
        free(trace);
    }
    for (;;) {
        pthread_mutex_lock(&a->mu);
        while (!a->stop && !a->pending)
            pthread_cond_wait(&a->cv, &a->mu);
        agent_ota_event *ev = a->stop ? NULL : a->pending;
        a->pending = NULL;
        pthread_mutex_unlock(&a->mu);
        if (!ev)
            break;
        process(a, ev);
        agent_event_free(ev);
        free(ev);
    }
    return NULL;
}
