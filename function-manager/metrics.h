/* The function-manager's metrics, reported to the master every status.report.interval
 * (SPEC §19): per function the invocations by result, retries, an invocation latency
 * histogram and the live instances. Counters are atomics: no lock on the call path. */
#ifndef FM_METRICS_H
#define FM_METRICS_H

#include <stdint.h>

#include "baetyl/context.h"
#include "fm.h"

/* Registers the pools whose invocations are counted (before any rule starts). */
int fm_metrics_init(fm_pool *const *pools, size_t n);
/* A monotonic clock in microseconds: the start of an invocation. */
int64_t fm_metrics_clock(void);
/* Counts one invocation of p's function that began at t0 and took `attempts` calls; rc is
 * fm_invoke's result (0 ok, -1 failed; -2, the pool closing, is not counted). */
void fm_metrics_invoked(const fm_pool *p, int64_t t0, int rc, long attempts);
/* Starts the reporter thread through api (borrowed) when under a master; 0 or -1. */
int fm_metrics_report_start(bt_ctx *ctx, bt_api_client *api, int64_t interval_ms);
/* Stops the reporter (the context must be stopping) and frees the counters. */
void fm_metrics_stop(void);

#endif
