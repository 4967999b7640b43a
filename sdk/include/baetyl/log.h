/* Logging for every module (SPEC §18): logrus-compatible text lines or JSON lines,
 * levels, key=value fields, and file output rotated by size, age and backup count. */
#ifndef BAETYL_LOG_H
#define BAETYL_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <time.h>

typedef enum { BT_LOG_DEBUG = 0, BT_LOG_INFO, BT_LOG_WARN, BT_LOG_ERROR } bt_log_level;

/* The `logger:` section of every config (SPEC §18). Filled by the config schema
 * bt_logger_schema (config.h) or by bt_logger_defaults(). */
typedef struct {
    char *path;      /* empty or NULL = stderr */
    char *level;     /* debug|info|warn|error (info) */
    char *format;    /* text|json (text) */
    long age_max;    /* days (15) */
    long size_max;   /* MB (50) */
    long backup_max; /* files (15) */
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
 * value, ending with NULL (the compiler checks that it is there). Thread-safe; each line is
 * written whole with one write(). */
void bt_logkv(bt_log_level l, const char *msg, ...) __attribute__((sentinel));
/* printf-style message, no extra fields. */
void bt_logf(bt_log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define bt_debug(...) bt_logf(BT_LOG_DEBUG, __VA_ARGS__)
#define bt_info(...) bt_logf(BT_LOG_INFO, __VA_ARGS__)
#define bt_warn(...) bt_logf(BT_LOG_WARN, __VA_ARGS__)
#define bt_error(...) bt_logf(BT_LOG_ERROR, __VA_ARGS__)

/* Flushes and closes the log file (back to stderr). */
void bt_log_close(void);

/* ---- Added with the implementation (log.c, log_rotate.c) ---------------------------- */

/* A message, a key or a value longer than this is cut (on a UTF-8 boundary) and ends with
 * "...(truncated)", so that no input can make a line unbounded. */
#define BT_LOG_MAX_TEXT 65536

/* Text lines follow logrus's TextFormatter: time, level, msg (left out when empty), then
 * the fields sorted by key; a value is written bare when it is empty or made only of
 * [A-Za-z0-9-._/@^+], otherwise quoted like Go's %q. Keys are quoted by the same rule.
 * Levels print as debug, info, warning, error (logrus names). Fields named time, level or
 * msg are renamed fields.time, fields.level, fields.msg (logrus). A trailing newline of a
 * message is dropped. JSON lines hold level, msg, time and the fields, keys sorted;
 * invalid UTF-8 becomes U+FFFD there.
 *
 * File output: when the file would grow past size.max, it is renamed <path>.1 (the older
 * <path>.1 becomes <path>.2, and so on); at most backup.max backups are kept (0 = no
 * limit), and backups whose mtime is older than age.max days are deleted (0 = no limit),
 * at bt_log_init and at each rotation. size.max 0 = no rotation. */

/* Overrides size.max with a limit in bytes (e.g. 300 for tests) for the current and later
 * loggers; 0 goes back to the config. The environment variable BAETYL_LOG_SIZE_MAX_BYTES
 * does the same, read at each bt_log_init, when this function was not used. */
void bt_log_set_size_max_bytes(long long bytes);

/* 1 when lines currently go to a file, 0 when they go to stderr. */
int bt_log_is_file(void);

/* bt_logf with a va_list, for wrappers. */
void bt_vlogf(bt_log_level l, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* The time of log lines (and of ota.log): RFC 3339 local time with its offset, second
 * precision: "2019-09-23T17:55:42+08:00", "…Z" in UTC. */
void bt_log_time(time_t t, char *buf, size_t len);

#endif
