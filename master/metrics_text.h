/* Prometheus text exposition (format 0.0.4) built family by family: every sample of one
 * family is printed together under its # HELP and # TYPE, whichever order they were added
 * in. Names and labels are checked, label values escaped, so a module's report cannot
 * break the output. */
#ifndef BAETYL_MASTER_METRICS_TEXT_H
#define BAETYL_MASTER_METRICS_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

typedef struct mt_set mt_set;

/* An empty set; NULL when out of memory. */
mt_set *mt_new(void);
/* Frees the set (NULL is fine). */
void mt_free(mt_set *s);

/* True for a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*, at most 200 characters). */
bool mt_valid_name(const char *name);
/* True for a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"). */
bool mt_valid_label(const char *name);

/* Adds one sample to family `name` (created on first use with type counter|gauge|histogram
 * and help). suffix ("", "_bucket", "_sum", "_count") is appended to the name of the
 * sample; labels are key, value pairs ending with NULL. A sample whose family exists with
 * another type, or a bad name, is dropped: returns -1. */
int mt_add(mt_set *s, const char *name, const char *type, const char *help, const char *suffix,
           const char *const *labels, double v);

/* Adds the families a module reported as {"name": {"type", "help", "samples": [[suffix,
 * {label: value}, value], ...]}} with service and instance_name labels first (a reported
 * label of those names or "instance", Prometheus' target label, is dropped). At most
 * max_samples samples are taken; bad entries are skipped. Returns the samples taken. */
size_t mt_add_reported(mt_set *s, json_t *families, const char *service, const char *instance,
                       size_t max_samples);

/* The whole text, NUL-terminated (free it); NULL when out of memory. */
char *mt_render(mt_set *s, size_t *len);

#endif
