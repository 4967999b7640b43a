/* Health figures of `baetyl status` and the rules of `baetyl status --check`, read from the
 * master's /metrics text: a service restarting, a hub or remote backlog older than max_age,
 * a TLS certificate expiring within 7 days. */
#ifndef BAETYL_MASTER_STATUS_HEALTH_H
#define BAETYL_MASTER_STATUS_HEALTH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define HEALTH_CERT_DAYS 7
#define HEALTH_DEFAULT_MAX_AGE_MS (10 * 60 * 1000) /* decided here: 10 minutes */

/* Prints the figures to out when figures is true and one line per problem to problems
 * (either may be NULL). Returns the number of problems. */
int status_health(const char *metrics, int64_t max_age_ms, bool figures, FILE *out, FILE *problems);

#endif
