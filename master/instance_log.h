/* Native instances' output files (issue 15): each instance writes its stdout and stderr
 * itself, straight into <work dir>/var/log/baetyl/<service>/<instance>.log, so no pipe ties
 * it to the master (an instance that outlives a master crash never meets a dead reader).
 * The master caps the file: past ILOG_MAX_BYTES its last ILOG_MAX_BYTES/2 go to
 * <instance>.log.1 and the file is truncated (the writer's O_APPEND then continues at 0). */
#ifndef BAETYL_MASTER_INSTANCE_LOG_H
#define BAETYL_MASTER_INSTANCE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define ILOG_DIR "var/log/baetyl"
#define ILOG_MAX_BYTES (1 << 20)
#define ILOG_LINE_MAX 2000 /* bytes of one line the logs API returns (longer: cut) */
#define ILOG_LINES_MAX 1000

/* malloc'd <pwd>/var/log/baetyl/<service>/<instance>.log, or NULL. */
char *ilog_path(const char *pwd, const char *service, const char *instance);
/* For a new run: creates the directory, moves the previous run's file to .log.1 and opens
 * a fresh file for appending (O_CLOEXEC). Returns the fd or -1 with err. */
int ilog_open_new(const char *path, char *err, size_t errlen);
/* Opens the existing file again for appending (an adopted instance): fd or -1. */
int ilog_reopen(const char *path);
/* Rotates when the file behind fd has grown past max bytes. */
void ilog_check(int fd, const char *path, int64_t max);
/* Appends to arr (JSON strings) the last n lines of path (reaching into path.1 when path
 * has fewer). Bytes that are not UTF-8 become U+FFFD. Returns 0, or -1 when neither file
 * exists. */
int ilog_tail(const char *path, int n, json_t *arr);
/* Appends one line of n bytes to arr, cut to ILOG_LINE_MAX bytes, ill-formed UTF-8 and NUL
 * as U+FFFD, a trailing CR dropped. */
void ilog_add_line(json_t *arr, const char *s, size_t n);
/* Splits text[0..len) into lines, appends the last n of them to arr; a partial last line
 * counts as a line. Used for container output too. */
void ilog_lines_tail(const char *text, size_t len, int n, json_t *arr);

/* Kept output of instances that are gone (docker and swarm engines, for the logs API):
 * keeps lines (a reference taken over) under key in *kept (made when NULL), the oldest key
 * dropped past max keys. */
void ilog_keep(json_t **kept, const char *key, json_t *lines, size_t max);
/* Appends to arr the last n lines kept under key. Returns 0, or 1 when none are kept. */
int ilog_kept_tail(const json_t *kept, const char *key, int n, json_t *arr);

#endif
