/* Private helpers shared by the config_*.c files (not part of the SDK's public API). */
#ifndef BAETYL_CONFIG_INTERNAL_H
#define BAETYL_CONFIG_INTERNAL_H

#include "baetyl/config.h"

#include <yaml.h>

#define BT_CFG_MAX_NODES 1000000  /* values loaded from one document, aliases counted */
#define BT_CFG_MAX_SCANS 10000000 /* mapping keys compared while looking keys up */
#define BT_CFG_PATH_LEN 512       /* longest YAML path shown in an error */

/* State of one load: the document, the error buffer and the budgets. */
typedef struct {
    yaml_document_t *doc;
    char *err;
    size_t errlen;
    size_t nodes, scans;
    int depth;
    bool validate;   /* false for bt_cfg_defaults: no required/choices/range/check */
    bool in_default; /* loading a default's text: report default_line, not its own lines */
    int default_line;
    const bt_cfg_opts *opts; /* never NULL while loading a document */
    const char *file;        /* for warnings logged without a callback; may be NULL */
    int warnings;
} bt_cfg_ctx;

/* One key of a MAP value, with the node of its value. */
typedef struct {
    yaml_node_t *key, *val;
    size_t rank;
    bool own; /* written in the mapping itself, not merged in with "<<" */
} bt_cfg_entry;

/* ---- config_yaml.c ---- */

/* Writes "path: reason (line n)" (no "path: " when path is empty, no line when 0); -1. */
int bt_cfg_fail(bt_cfg_ctx *c, const char *path, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The "document too large" error of an exhausted budget; -1. */
int bt_cfg_too_large(bt_cfg_ctx *c);
/* A value for an error message: quoted, escaped, cut after 64 bytes. */
void bt_cfg_quote(char *out, size_t n, const char *s, size_t len);
/* out (BT_CFG_PATH_LEN) = base "." name, control characters shown as '?'. */
void bt_cfg_path_join(char *out, const char *base, const char *name, size_t namelen);
/* out (BT_CFG_PATH_LEN) = base "[i]". */
void bt_cfg_path_index(char *out, const char *base, size_t i);
/* 1-based line of a node (or of the field whose default is being loaded). */
int bt_cfg_line(const bt_cfg_ctx *c, const yaml_node_t *n);
/* YAML null: no node, an empty or ~/null plain scalar, or !!null. */
bool bt_cfg_is_null(const yaml_node_t *n);
/* Looks key up in a mapping (own keys, last wins; then "<<" merges); *out NULL if absent.
 * depth is 0 for callers. Returns 0 or -1 (budget exhausted). */
int bt_cfg_map_get(bt_cfg_ctx *c, yaml_node_t *map, const char *key, size_t klen, int depth,
                   yaml_node_t **out);
/* The entries of a mapping used as a MAP: own keys in file order, then merged ones not
 * already present; a key written twice is an error. *out is malloc'd. Returns 0 or -1. */
int bt_cfg_map_entries(bt_cfg_ctx *c, yaml_node_t *map, const char *path, bt_cfg_entry **out,
                       size_t *n);
/* Parses the first document of text into doc (too deep nesting refused first); on a
 * syntax error err holds "yaml: <problem> (line n, column m)". Returns 0 or -1. */
int bt_cfg_parse(const char *text, size_t len, yaml_document_t *doc, char *err, size_t errlen);

/* ---- config_scalar.c ---- */

/* Whole-text readers: 0 on success, -1 when the syntax is wrong, -2 when out of range. */
int bt_cfg_parse_bool(const char *s, bool *out);
int bt_cfg_parse_long(const char *s, long *out);
int bt_cfg_parse_double(const char *s, double *out);

/* ---- config_keys.c ---- */

/* Warns about (or, at the top level with strict_top, fails on) each key of map that no
 * field of s names. path is the struct's YAML path. Returns 0 or -1. */
int bt_cfg_check_keys(bt_cfg_ctx *c, const bt_cfg_schema *s, yaml_node_t *map, const char *path);
/* Edit distance (adjacent swaps count one), case-insensitive; stops counting past limit. */
size_t bt_cfg_distance(const char *a, size_t la, const char *b, size_t lb, size_t limit);

/* ---- config.c ---- */

/* Bytes one value of a scalar type takes in a struct/list/map; 0 for non-scalars. */
size_t bt_cfg_scalar_size(bt_cfg_type t);
/* Bytes of one element of a LIST/MAP field (its struct, or its scalar); 0 if invalid. */
size_t bt_cfg_elem_size(const bt_cfg_field *f);

#endif
