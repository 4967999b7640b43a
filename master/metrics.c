/* The master's /metrics: one pass over the model under m->mu, then the modules' reports. */
#include "metrics.h"
#include "metrics_text.h"
#include "baetyl/version.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- API requests and OTA steps: fixed tables of atomic counters -------------------------- */

static const char *const routes[] = {"inspect", "update",  "ports", "start", "stop",
                                     "report",  "metrics", "page",  "other"};
#define NROUTES (sizeof routes / sizeof *routes)
static const unsigned codes[] = {200, 400, 401, 403, 404, 405, 413, 500};
#define CERT_NOT_AFTER "baetyl_tls_cert_not_after_timestamp_seconds"
#define NCODES (sizeof codes / sizeof *codes)
static atomic_uint_least64_t requests[NROUTES][NCODES];

/* Baetyl 1.0's steps (SPEC §9 and §19), APP and MST. */
static const char *const steps[] = {"OK!",         "UPDATING",   "RESTARTING", "UPDATED",
                                    "ROLLINGBACK", "ROLLEDBACK", "FAILURE"};
#define NSTEPS (sizeof steps / sizeof *steps)
static atomic_uint_least64_t ota_steps[2][NSTEPS + 1]; /* last: another step */
static _Atomic int64_t ota_step_ms[2][NSTEPS + 1];     /* when each step was last written */

static size_t index_of(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], s))
            return i;
    return n;
}

void metrics_count_request(const char *route, unsigned status)
{
    size_t r = index_of(routes, NROUTES, route);
    if (r == NROUTES)
        r = NROUTES - 1;
    for (size_t c = 0; c < NCODES; c++)
        if (codes[c] == status) {
            atomic_fetch_add_explicit(&requests[r][c], 1, memory_order_relaxed);
            return;
        }
    atomic_fetch_add_explicit(&requests[r][NCODES - 1], 1, memory_order_relaxed);
}

void metrics_count_ota(const char *type, const char *step)
{
    int t = type && !strcmp(type, "MST") ? 1 : 0;
    size_t i = index_of(steps, NSTEPS, step ? step : "");
    atomic_fetch_add_explicit(&ota_steps[t][i], 1, memory_order_relaxed);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    atomic_store_explicit(&ota_step_ms[t][i], (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
                          memory_order_relaxed);
}

static void add_requests(mt_set *s)
{
    static const char name[] = "baetyl_api_requests_total";
    static const char help[] = "Requests to the master API by route and HTTP status code.";
    for (size_t r = 0; r < NROUTES; r++)
        for (size_t c = 0; c < NCODES; c++) {
            uint64_t n = atomic_load_explicit(&requests[r][c], memory_order_relaxed);
            if (!n)
                continue;
            char code[8];
            snprintf(code, sizeof code, "%u", codes[c]);
            const char *l[] = {"route", routes[r], "code", code, NULL};
            mt_add(s, name, "counter", help, "", l, (double)n);
        }
    static const char *const types[] = {"APP", "MST"};
    for (size_t t = 0; t < 2; t++)
        for (size_t i = 0; i <= NSTEPS; i++) {
            const char *l[] = {"type", types[t], "step", i < NSTEPS ? steps[i] : "other", NULL};
            mt_add(s, "baetyl_ota_steps_total", "counter",
                   "OTA steps written to ota.log, by update type and step.", "", l,
                   (double)atomic_load_explicit(&ota_steps[t][i], memory_order_relaxed));
            int64_t ms = atomic_load_explicit(&ota_step_ms[t][i], memory_order_relaxed);
            if (ms)
                mt_add(s, "baetyl_ota_step_timestamp_seconds", "gauge",
                       "Unix time each OTA step was last written.", "", l, (double)ms / 1000.0);
        }
}

/* ---- instances ------------------------------------------------------------------------------ */

static double num(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : -1;
}

static void gauge(mt_set *s, const char *name, const char *help, const char *const *l, double v)
{
    mt_add(s, name, "gauge", help, "", l, v);
}

/* Resource figures the engine gives (memory, cgroup) and, for a process, its CPU time. */
static void add_usage(mt_set *s, master *m, m_instance *in, const char *const *l)
{
    json_t *o = json_object();
    if (!o)
        return;
    m->engine->ops->instance_stats(m->engine, &in->view, o);
    json_t *ms = json_object_get(o, "mem_stats"), *cg = json_object_get(o, "cgroup");
    double rss = num(ms, json_object_get(ms, "rss") ? "rss" : "usage");
    if (rss >= 0)
        gauge(s, "baetyl_instance_memory_bytes", "Resident memory of the instance.", l, rss);
    if (num(cg, "memory_peak") >= 0)
        gauge(s, "baetyl_instance_cgroup_memory_peak_bytes",
              "Peak memory of the service's cgroup (native services with limits).", l,
              num(cg, "memory_peak"));
    if (num(cg, "oom_kills") >= 0)
        mt_add(s, "baetyl_instance_cgroup_oom_kills_total", "counter",
               "OOM kills in the service's cgroup (native services with limits).", "", l,
               num(cg, "oom_kills"));
    /* swarm: the node of the task, and the restarts the swarm made (not the supervisor's) */
    json_t *sw = json_object_get(o, "swarm");
    const char *node = json_string_value(json_object_get(sw, "node"));
    if (node && *node) {
        const char *ln[] = {l[0], l[1], l[2], l[3], "node", node, NULL};
        gauge(s, "baetyl_instance_node", "1 on the swarm node that runs the instance's task.", ln,
              1);
    }
    if (num(sw, "restarts") >= 0)
        mt_add(s, "baetyl_instance_swarm_restarts_total", "counter",
               "Tasks of the instance's swarm service that the swarm restarted.", "", l,
               num(sw, "restarts"));
    json_decref(o);
    uint64_t ticks, mem, start;
    char comm[64];
    long hz = sysconf(_SC_CLK_TCK);
    if (in->view.pid > 0 &&
        proc_sample(in->view.pid, &ticks, &mem, &start, comm, sizeof comm) == 0 && hz > 0)
        mt_add(s, "baetyl_instance_cpu_seconds_total", "counter",
               "CPU time (user and system) of the instance's process.", "", l,
               (double)ticks / (double)hz);
}

/* Seconds until each reported certificate expires, as of this scrape. */
static void add_expiry(mt_set *s, json_t *rep, const char *svc, const char *inst,
                       const struct timespec *now)
{
    json_t *na = json_object_get(json_object_get(rep, CERT_NOT_AFTER), "samples");
    json_t *samples = json_array();
    size_t i;
    json_t *smp;
    json_array_foreach(na, i, smp)
    {
        json_t *v = json_array_get(smp, 2);
        if (i >= 64 || !json_is_number(v))
            break;
        json_array_append_new(samples,
                              json_pack("[O,O,f]", json_array_get(smp, 0), json_array_get(smp, 1),
                                        json_number_value(v) - (double)now->tv_sec));
    }
    json_t *fam = json_pack("{s:{s:s,s:s,s:o}}", "baetyl_tls_cert_expires_in_seconds", "type",
                            "gauge", "help", "Seconds until a configured TLS certificate expires.",
                            "samples", samples);
    if (fam)
        mt_add_reported(s, fam, svc, inst, 64);
    json_decref(fam);
}

static void add_instance(mt_set *s, master *m, m_service *sv, m_instance *in,
                         const struct timespec *now)
{
    const char *l[] = {"service", sv->name, "instance_name", in->name, NULL};
    static const char *const st[] = {"running", "restarting", "exited"};
    for (int i = 0; i < 3; i++) {
        const char *ls[] = {"service", sv->name, "instance_name", in->name, "status", st[i], NULL};
        gauge(s, "baetyl_instance_status",
              "1 for the instance's current status (running, restarting, exited).", ls,
              (int)in->status == i);
    }
    mt_add(s, "baetyl_instance_restarts_total", "counter",
           "Restarts of the instance by the supervisor after it exited.", "", l,
           (double)atomic_load(&in->sup.restarts));
    if (atomic_load(&in->sup.exited))
        gauge(s, "baetyl_instance_last_exit_code",
              "Exit code of the instance's last exit (128 + signal when killed, -1 unknown).", l,
              (double)atomic_load(&in->sup.last_exit));
    if (in->alive) {
        double up = (double)(now->tv_sec - in->start_time.tv_sec) +
                    (double)(now->tv_nsec - in->start_time.tv_nsec) / 1e9;
        gauge(s, "baetyl_instance_uptime_seconds", "Seconds since the instance last started.", l,
              up > 0 ? up : 0);
        add_usage(s, m, in, l);
    }
    json_t *rep = json_object_get(in->reported, "metrics");
    if (json_is_object(rep)) {
        mt_add_reported(s, rep, sv->name, in->name, METRICS_REPORTED_MAX);
        add_expiry(s, rep, sv->name, in->name, now);
    }
}

static const struct timespec *master_started(void)
{
    static struct timespec t;
    static atomic_bool set;
    if (!atomic_exchange(&set, true))
        clock_gettime(CLOCK_REALTIME, &t);
    return &t;
}

/* Called once at load, so the start time is the master's, not the first scrape's. */
__attribute__((constructor)) static void metrics_init(void)
{
    master_started();
}

char *metrics_render(master *m, size_t *len)
{
    mt_set *s = mt_new();
    if (!s)
        return NULL;
    const char *bl[] = {"version", bt_version,           "revision", bt_revision,
                        "mode",    m->engine->ops->name, NULL};
    gauge(s, "baetyl_build_info", "Version of the running master (always 1).", bl, 1);
    const struct timespec *t0 = master_started();
    gauge(s, "baetyl_master_start_time_seconds", "Unix time the master started.", NULL,
          (double)t0->tv_sec + (double)t0->tv_nsec / 1e9);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pthread_mutex_lock(&m->mu);
    for (m_service *sv = m->services; sv; sv = sv->next) {
        if (sv->stopping)
            continue;
        size_t n = 0;
        for (m_instance *in = sv->instances; in; in = in->next) {
            if (in->finished)
                continue;
            n++;
            add_instance(s, m, sv, in, &now);
        }
        const char *l[] = {"service", sv->name, NULL};
        gauge(s, "baetyl_service_instances", "Instances of the service.", l, (double)n);
    }
    pthread_mutex_unlock(&m->mu);
    add_requests(s);
    char *out = mt_render(s, len);
    mt_free(s);
    return out;
}
