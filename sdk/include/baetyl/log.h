/* Logging for every module (SPEC §18): logrus-compatible text lines or JSON lines,
 * levels, key=value fields, and file output rotated by size, age and backup count. */
#ifndef BAETYL_LOG_H
#define BAETYL_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum { BT_LOG_DEBUG = 0, BT_LOG_INFO, BT_LOG_WARN, BT_LOG_ERROR } bt_log_level;

/* The `logger:` section of every config (SPEC §18). Filled by the config schema
 * bt_logger_schema (config.h) or by bt_logger_defaults(). */
typedef struct {
    char *path;     /* empty or NULL = stderr */
    char *level;    /* debug|info|warn|error (info) */
    char *format;   /* text|json (text) */
    long age_max;   /* days (15) */
    long size_max;  /* MB (50) */
    long backup_max;/* files (15) */
} bt_logger_config;

/* Sets the defaults of SPEC §18 (does not allocate: strings point at literals). */
void bt_logger_defaults(bt_logger_config *c);

/* Opens the process-wide logger from a config: relative paths are taken from the cwd, the
 * directory is created. Until called, lines go to stderr as text at info level.
 * Returns 0, or -1 with a message in err. May be called again to reconfigure. */
int bt_log_init(const bt_logger_config *c, char *err, size_t errlen);

/* Fields added to every line (e.g. "baetyl"="master", "service"="localhub"); NULL value
 * removes the key. Copies both strings. */
void bt_log_set_field(const char *key, const char *value);

/* Parses "debug"/"info"/"warn"/"warning"/"error"; returns -1 when unknown. */
int bt_log_parse_level(const char *s);
void bt_log_set_level(bt_log_level l);
int bt_log_enabled(bt_log_level l);

/* Writes one line: msg, then kv pairs given as alternating const char* key, const char*
 * value, ending with NULL. Thread-safe; each line is written whole with one write(). */
void bt_logkv(bt_log_level l, const char *msg, ...);
/* printf-style message, no extra fields. */
void bt_logf(bt_log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define bt_debug(...) bt_logf(BT_LOG_DEBUG, __VA_ARGS__)
#define bt_info(...)  bt_logf(BT_LOG_INFO, __VA_ARGS__)
#define bt_warn(...)  bt_logf(BT_LOG_WARN, __VA_ARGS__)
#define bt_error(...) bt_logf(BT_LOG_ERROR, __VA_ARGS__)

/* Flushes and closes the log file (back to stderr). */
void bt_log_close(void);

#endif
