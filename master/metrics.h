/* The master's /metrics (SPEC §19): its own figures (instances, restarts, CPU, memory,
 * cgroups, API requests, OTA steps) and the counters modules report under the "metrics"
 * key of their instance report, in the Prometheus text format 0.0.4. */
#ifndef BAETYL_MASTER_METRICS_H
#define BAETYL_MASTER_METRICS_H

#include <stddef.h>

#include "master.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* Samples taken from one instance's report: a module cannot blow up the page. */
#define METRICS_REPORTED_MAX 4096

/* Counts one API request of route (inspect, update, ports, start, stop, report, metrics,
 * page, other) answered with status. Lock-free. */
void metrics_count_request(const char *route, unsigned status);
/* Counts one OTA step written to ota.log. */
void metrics_count_ota(const char *type, const char *step);
/* The page (free it); NULL when out of memory. */
char *metrics_render(master *m, size_t *len);

#endif
