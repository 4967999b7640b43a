/* Counters a module reports to the master for its /metrics (SPEC §19): a JSON object of
 * families under the key "metrics" of the instance report,
 *   {"<name>": {"type": "counter|gauge|histogram", "help": "...",
 *               "samples": [["<suffix>", {"<label>": "<value>"}, <number>], ...]}}
 * where suffix is "" or, for a histogram, "_bucket" (label le), "_sum" or "_count". The
 * master adds the labels service and instance_name ("instance" is Prometheus' own). */
#ifndef BAETYL_METRICS_H
#define BAETYL_METRICS_H

#include <jansson.h>

/* The family's samples array, created in out (an existing family of that name is kept).
 * Never NULL unless out of memory. */
json_t *bt_metrics_family(json_t *out, const char *name, const char *type, const char *help);
/* Appends a sample with one label (k NULL: none). */
void bt_metrics_sample(json_t *samples, const char *suffix, const char *k, const char *v,
                       double value);
/* A family of one unlabelled sample. */
void bt_metrics_one(json_t *out, const char *name, const char *type, const char *help,
                    double value);
/* Adds the notAfter time of the PEM certificate at path to the gauge
 * baetyl_tls_cert_not_after_timestamp_seconds{cert=path, use=use}; the master derives
 * baetyl_tls_cert_expires_in_seconds from it. Returns 0, or -1 when the file is no
 * certificate (nothing is added). */
int bt_metrics_cert(json_t *out, const char *path, const char *use);

#endif
