/* The function-manager's metrics (metrics.h). */
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "baetyl/api.h"
#include "baetyl/log.h"
#include "baetyl/metrics.h"
#include "baetyl/util.h"

#define NB 12
/* Invocation latency bounds in seconds: from a SQL filter to a slow Python call. */
static const double bounds[NB] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1,   0.25,   0.5,   1,    2.5,   10};

typedef struct {
    fm_pool *p;
    atomic_uint_least64_t ok, failed, retries, sum_us;
    atomic_uint_least64_t n[NB + 1];
} fn_ctr;

static fn_ctr *tab;
static size_t ntab;
static struct {
    bt_ctx *ctx;
    bt_api_client *api;
    int64_t interval_ms;
    pthread_t thread;
    bool started;
} rep;

int fm_metrics_init(fm_pool *const *pools, size_t n)
{
    tab = calloc(n ? n : 1, sizeof *tab);
    if (!tab)
        return -1;
    for (size_t i = 0; i < n; i++)
        tab[i].p = pools[i];
    ntab = n;
    return 0;
}

int64_t fm_metrics_clock(void)
{
    return bt_now_ns() / 1000;
}

void fm_metrics_invoked(const fm_pool *p, int64_t t0, int rc, long attempts)
{
    fn_ctr *c = NULL;
    for (size_t i = 0; i < ntab && !c; i++)
        if (tab[i].p == p)
            c = &tab[i];
    if (!c || rc == -2)
        return;
    int64_t us = fm_metrics_clock() - t0;
    atomic_fetch_add(rc == 0 ? &c->ok : &c->failed, 1);
    if (attempts > 1)
        atomic_fetch_add(&c->retries, (uint64_t)(attempts - 1));
    atomic_fetch_add(&c->sum_us, (uint64_t)(us > 0 ? us : 0));
    size_t b = 0;
    while (b < NB && (double)us / 1e6 > bounds[b])
        b++;
    atomic_fetch_add(&c->n[b], 1);
}

static json_t *metrics(void)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_t *calls = bt_metrics_family(o, "baetyl_function_invocations_total", "counter",
                                      "Invocations of a function by result (retries included in "
                                      "one invocation).");
    json_t *retries = bt_metrics_family(o, "baetyl_function_retries_total", "counter",
                                        "Calls of a function repeated after a failed attempt.");
    json_t *lat = bt_metrics_family(o, "baetyl_function_invocation_duration_seconds", "histogram",
                                    "Duration of invocations, all attempts included.");
    json_t *live = bt_metrics_family(o, "baetyl_function_instances", "gauge",
                                     "Live instances of a function's runtime.");
    json_t *starting = bt_metrics_family(o, "baetyl_function_instances_starting", "gauge",
                                         "Instances of a function's runtime being started.");
    for (size_t i = 0; i < ntab; i++) {
        fn_ctr *c = &tab[i];
        const char *fn = fm_pool_function(c->p)->name;
        json_t *l = json_pack("{s:s,s:s}", "function", fn, "result", "ok");
        json_array_append_new(calls, json_pack("[s,o,f]", "", l, (double)atomic_load(&c->ok)));
        l = json_pack("{s:s,s:s}", "function", fn, "result", "error");
        json_array_append_new(calls, json_pack("[s,o,f]", "", l, (double)atomic_load(&c->failed)));
        bt_metrics_sample(retries, "", "function", fn, (double)atomic_load(&c->retries));
        size_t nstart = fm_pool_starting(c->p), nall = fm_pool_size(c->p);
        bt_metrics_sample(live, "", "function", fn,
                          (double)(nall - (nstart < nall ? nstart : nall)));
        bt_metrics_sample(starting, "", "function", fn, (double)nstart);
        uint64_t cum = 0;
        for (size_t b = 0; b <= NB; b++) {
            char le[32];
            cum += atomic_load(&c->n[b]);
            if (b < NB)
                snprintf(le, sizeof le, "%g", bounds[b]);
            else
                snprintf(le, sizeof le, "+Inf");
            l = json_pack("{s:s,s:s}", "function", fn, "le", le);
            json_array_append_new(lat, json_pack("[s,o,f]", "_bucket", l, (double)cum));
        }
        bt_metrics_sample(lat, "_sum", "function", fn, (double)atomic_load(&c->sum_us) / 1e6);
        bt_metrics_sample(lat, "_count", "function", fn, (double)cum);
    }
    return o;
}

static void *report_main(void *arg)
{
    const char *svc = rep.ctx->env.service_name;
    const char *inst = rep.ctx->env.instance_name ? rep.ctx->env.instance_name : svc;
    do {
        json_t *m = metrics();
        json_t *stats = m ? json_pack("{s:o}", "metrics", m) : NULL;
        char err[256];
        if (stats && bt_api_report_instance(rep.api, svc, inst, stats, err, sizeof err) < 0)
            bt_logkv(BT_LOG_WARN, "report to the master failed", "error", err, NULL);
        json_decref(stats);
    } while (!bt_ctx_sleep(rep.ctx, rep.interval_ms));
    return NULL;
}

int fm_metrics_report_start(bt_ctx *ctx, bt_api_client *api, int64_t interval_ms)
{
    if (!ctx->env.service_name || !api)
        return 0;
    rep.ctx = ctx;
    rep.api = api;
    rep.interval_ms = interval_ms;
    if (pthread_create(&rep.thread, NULL, report_main, NULL) != 0)
        return -1;
    rep.started = true;
    return 0;
}

void fm_metrics_stop(void)
{
    if (rep.started)
        pthread_join(rep.thread, NULL);
    rep.started = false;
    free(tab);
    tab = NULL;
    ntab = 0;
}
