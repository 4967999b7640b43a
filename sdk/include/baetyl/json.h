/* Thin helpers over jansson (the project's one JSON library) for the few things every
 * module repeats: parse with a readable error, dump to a compact string, look a value up
 * by a dotted path. Everything else: use jansson directly. */
#ifndef BAETYL_JSON_H
#define BAETYL_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Parses any JSON value from buf[0..len) (NUL bytes inside strings allowed). Returns a new
 * reference, or NULL with err like "line 1 column 7: unexpected token". */
json_t *bt_json_parse(const char *buf, size_t len, char *err, size_t errlen);
/* bt_json_parse that also requires an object ("not a JSON object" otherwise). */
json_t *bt_json_parse_object(const char *buf, size_t len, char *err, size_t errlen);
/* Compact text of v (object keys in insertion order), malloc'd; NULL when v is NULL or
 * out of memory. */
char *bt_json_dump(const json_t *v);

/* The value at a dotted path: "a.b.c" walks objects, a decimal segment indexes an array
 * ("services.0.name"). An empty path is v itself. Keys containing '.' are reached with
 * json_object_get. Returns a borrowed reference or NULL. */
json_t *bt_json_get(const json_t *v, const char *path);
/* The string at path, or NULL when missing or not a string (borrowed). */
const char *bt_json_get_str(const json_t *v, const char *path);
/* The integer at path, or def when missing or not an integer. */
long long bt_json_get_int(const json_t *v, const char *path, long long def);
/* The boolean at path, or def when missing or not a boolean. */
bool bt_json_get_bool(const json_t *v, const char *path, bool def);

#endif
