/* Configuration: YAML (libyaml) into C structs through a declarative schema per struct.
 *
 * A module describes each struct once, next to it:
 *
 *   typedef struct { char *address; int64_t timeout; bt_cfg_list subs; } my_cfg;
 *   static const bt_cfg_field my_fields[] = {
 *       BT_FIELD(my_cfg, address, "address", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
 *       BT_FIELD(my_cfg, timeout, "timeout", BT_CFG_DURATION, .def = "30s"),
 *       BT_FIELD(my_cfg, subs, "subscriptions", BT_CFG_LIST, .sub = &sub_schema),
 *       {0}};
 *   static const bt_cfg_schema my_schema = {sizeof(my_cfg), my_fields, NULL};
 *
 * and loads it with bt_cfg_load_file(&my_schema, &cfg, path, err, sizeof err).
 * An unknown key is a warning naming its YAML path and the closest known key
 * ("services[0]: unknown key imgae (did you mean image?) (line 4)"); keys of a MAP or of a
 * JSON value are free. Every error names the YAML path and line:
 * "hub.address: required (line 3)", "services[1].replica: not an integer (line 9)".
 * Before parsing, "{{.ENV_NAME}}" is replaced by the environment variable ENV_NAME (an
 * unset name leaves the text unchanged and logs a warning). */
#ifndef BAETYL_CONFIG_H
#define BAETYL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    BT_CFG_STRING = 1, /* char * (malloc'd, NULL when absent and no default) */
    BT_CFG_BOOL,       /* bool */
    BT_CFG_INT,        /* long */
    BT_CFG_FLOAT,      /* double */
    BT_CFG_DURATION,   /* int64_t ms; "10s", "1m30s", "500ms", "48h"; a bare number = seconds */
    BT_CFG_SIZE,       /* int64_t bytes; "32k", "4m", "1g" (binary units), a bare number = bytes */
    BT_CFG_LIST,       /* bt_cfg_list of `elem` (or of structs when `sub` is set) */
    BT_CFG_MAP,        /* bt_cfg_map: string keys to `elem` (or structs when `sub` is set) */
    BT_CFG_STRUCT,     /* nested struct described by `sub`, stored in place */
    BT_CFG_JSON,       /* json_t * (jansson): any YAML value with its types kept — quoted
                        * scalars are strings, plain ones null/bool/int/float when they read
                        * so, sequences arrays, mappings objects (keys as text); NULL when
                        * absent. For free-form data such as the timer's payload. */
} bt_cfg_type;

/* Field flags. */
#define BT_CFG_REQUIRED 0x1u /* must be present (strings: and non-empty) */
#define BT_CFG_RANGE \
    0x2u /* numeric value (int, float, duration, size) or list/map length within [min, max] */
#define BT_CFG_INLINE 0x4u /* BT_CFG_STRUCT whose keys sit at this level (name ignored) */

typedef struct bt_cfg_schema bt_cfg_schema;

typedef struct {
    const char *name; /* YAML key; "a.b.c" walks nested mappings */
    bt_cfg_type type;
    size_t offset;   /* offsetof(struct, member) */
    const char *def; /* default, as YAML scalar text ("10s", "32k", "true"); NULL = zero/NULL */
    unsigned flags;  /* BT_CFG_* */
    const bt_cfg_schema *sub; /* STRUCT; element schema of LIST/MAP of structs */
    bt_cfg_type elem;         /* element type of LIST/MAP when sub is NULL (scalars only) */
    double min, max;          /* with BT_CFG_RANGE */
    const char *choices;      /* "a|b|c": the allowed values of a string */
    const char *pattern;      /* POSIX extended regex a string must match, anchored by the caller */
    /* Extra validation of the stored value; returns 0, or -1 and writes a reason (without
     * the path: the loader adds "path: ... (line n)"). */
    int (*check)(const void *value, char *err, size_t errlen);
    /* BT_SEEN(struct, bool member): that bool is set when the key is written with a
     * non-null value (to tell "services: []" from no services at all). 0 = none. */
    size_t seen;
} bt_cfg_field;

struct bt_cfg_schema {
    size_t size;                /* sizeof the struct (element size of lists/maps of it) */
    const bt_cfg_field *fields; /* ends with a zeroed entry */
    /* Whole-struct validation after all fields are loaded (e.g. unique names); same
     * contract as bt_cfg_field.check. May be NULL. */
    int (*check)(void *obj, char *err, size_t errlen);
};

typedef struct {
    size_t n;
    /* array of n elements: char * for strings, long, bool, double, int64_t, or structs */
    void *items;
} bt_cfg_list;

typedef struct {
    size_t n;
    char **keys;  /* n keys, in file order */
    void *values; /* array of n elements, typed like bt_cfg_list.items */
} bt_cfg_map;

#define BT_FIELD(st, member, key, typ, ...)                                       \
    {                                                                             \
        .name = (key), .type = (typ), .offset = offsetof(st, member), __VA_ARGS__ \
    }

/* The .seen of a field: offset + 1 of a bool member (0 means none). */
#define BT_SEEN(st, member) (offsetof(st, member) + 1)

/* Typed access to list/map elements. */
#define BT_CFG_AT(list, type, i) (((type *)(list).items)[i])

/* Default size cap of a config, checked before parsing; the environment variable
 * BAETYL_CONFIG_MAX_SIZE ("16m", "8388608") changes it for a process, bt_cfg_opts.max_size
 * for one call. */
#define BT_CFG_DEFAULT_MAX_SIZE ((int64_t)4 << 20)
#define BT_CFG_MAX_SIZE_ENV "BAETYL_CONFIG_MAX_SIZE"

/* Options of one load; a NULL pointer means all defaults. */
typedef struct {
    int64_t max_size; /* bytes; 0 = BAETYL_CONFIG_MAX_SIZE, else BT_CFG_DEFAULT_MAX_SIZE */
    bool strict_top;  /* an unknown top-level key is an error rather than a warning */
    /* Receives each warning text; NULL = logged (level warn, with the file name). */
    void (*warn)(void *arg, const char *msg);
    void *warn_arg;
} bt_cfg_opts;

/* Loads a YAML file into obj (zeroed first, defaults applied, then validated). On error
 * obj is freed and zeroed again and err holds "path: reason (line n)".
 * Returns 0 or -1. A missing file is an error: "open <path>: No such file or directory". */
int bt_cfg_load_file(const bt_cfg_schema *s, void *obj, const char *path, char *err, size_t errlen);
/* The same from a text in memory (templating included). */
int bt_cfg_load_string(const bt_cfg_schema *s, void *obj, const char *yaml, size_t len, char *err,
                       size_t errlen);
/* The same two with options (opts may be NULL). A file or text over the size cap is refused
 * before it is parsed: "<path>: file too large (62914560 bytes, limit 4194304; see
 * BAETYL_CONFIG_MAX_SIZE)". */
int bt_cfg_load_file_opts(const bt_cfg_schema *s, void *obj, const char *path,
                          const bt_cfg_opts *opts, char *err, size_t errlen);
int bt_cfg_load_string_opts(const bt_cfg_schema *s, void *obj, const char *yaml, size_t len,
                            const bt_cfg_opts *opts, char *err, size_t errlen);
/* The size cap a load with these options applies (see BT_CFG_DEFAULT_MAX_SIZE). */
int64_t bt_cfg_max_size(const bt_cfg_opts *opts);
/* Fills obj with the defaults alone, as if loading an empty document (required fields are
 * not checked). */
int bt_cfg_defaults(const bt_cfg_schema *s, void *obj, char *err, size_t errlen);
/* Frees everything the loader allocated in obj and zeroes it. */
void bt_cfg_free(const bt_cfg_schema *s, void *obj);
/* Deep equality of two loaded structs of the same schema. */
bool bt_cfg_equal(const bt_cfg_schema *s, const void *a, const void *b);
/* Deep copy (dst is overwritten; free it with bt_cfg_free). Returns 0 or -1 (no memory). */
int bt_cfg_copy(const bt_cfg_schema *s, void *dst, const void *src);

/* Replaces "{{.NAME}}" by getenv("NAME") (spaces inside the braces allowed); an unset
 * name stays as written and is logged as a warning. Returns a malloc'd string. */
char *bt_cfg_template(const char *text, size_t len, size_t *outlen);

/* Parses "1h2m3.5s", "500ms", "10s", "48h", "100us"/"100ns" (rounded to ms), or a bare
 * number of seconds. Returns 0 or -1. */
int bt_parse_duration(const char *s, int64_t *ms);
/* Parses "32k", "4m", "1g", "10kb", "512b" or a bare number of bytes (binary units). */
int bt_parse_size(const char *s, int64_t *bytes);

/* The `logger:` section (SPEC §18) as a schema, for embedding with BT_CFG_STRUCT:
 *   BT_FIELD(my_cfg, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema) */
extern const bt_cfg_schema bt_logger_schema;

/* ---- Added with the implementation (config*.c): the rules in detail ------------------
 *
 * - A null value ("key:", "~", "null") counts as absent: the default applies. A quoted ''
 *   is a value (and fails BT_CFG_REQUIRED on a string). A default satisfies REQUIRED.
 * - LIST/MAP defaults are YAML flow text: .def = "['tcp://0.0.0.0:1883']", "{k: v}".
 * - BT_CFG_RANGE compares durations in milliseconds and sizes in bytes; on a LIST/MAP it
 *   bounds the number of entries. choices and pattern apply to each string of a LIST/MAP
 *   of strings.
 * - RANGE and check() run on the stored value whether it came from the file, from the
 *   default or is the zero value of an absent field; only an absent string (NULL) skips
 *   them. A struct's check() runs after its fields, also for an absent struct.
 * - A missing key is reported at the line of the mapping that lacks it; at the top level
 *   there is no line: "address: required".
 * - Merge keys ("<<: *anchor") work. A key written twice is an error in a MAP, and the
 *   last one wins in a struct. Null list elements are "" in a list of strings and all
 *   defaults in a list of structs.
 * - Only the first YAML document is read. Limits against hostile input: 256 nested
 *   collections in the text, 64 nested structs, 1e6 values loaded (aliases counted each
 *   time they are used), 1e7 key lookups, the size cap above (4 MB by default).
 * - Unknown keys: a key is known when a field names it, also in another case (a key
 *   written "clientId" is taken for the field "clientid" when no exact one is there);
 *   dotted names make their intermediate keys known; keys merged in with "<<" are checked
 *   too. At most 20 warnings per load, then one that says so. */

#endif
