/* application.stats (SPEC §1): service -> instance -> last known stats, as YAML, so that a
 * master started after a crash finds the processes its predecessor left. The generic
 * YAML <-> JSON conversion lives here (libyaml both ways). */
#ifndef BAETYL_MASTER_STATS_FILE_H
#define BAETYL_MASTER_STATS_FILE_H

#include <stddef.h>

#include <jansson.h>

/* Reads a YAML document as JSON: mappings become objects (scalar keys only), sequences
 * arrays, plain scalars integers/reals/booleans/null when they read as such, everything
 * else strings. Returns a new reference, or NULL with err. */
json_t *yaml_file_to_json(const char *path, char *err, size_t errlen);
/* The same from text. */
json_t *yaml_text_to_json(const char *text, size_t len, char *err, size_t errlen);
/* Writes JSON as a YAML document to path, atomically. Returns 0 or -1 with err. */
int json_to_yaml_file(const json_t *j, const char *path, char *err, size_t errlen);

#endif
