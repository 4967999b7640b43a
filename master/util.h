/* Small helpers of the master: paths, files, time formats, random tokens. */
#ifndef BAETYL_MASTER_UTIL_H
#define BAETYL_MASTER_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "baetyl/error.h" /* bt_errf: the one-line error paths of every master file */

/* Creates a directory and its parents (like mkdir -p). Returns 0 or -1 with err. */
int mkdir_p(const char *path, mode_t mode, char *err, size_t errlen);
/* Removes a file or a directory tree without following symlinks (a symlink is unlinked,
 * never its target). A missing path is not an error. Returns 0 or -1 with err. */
int rm_rf(const char *path, char *err, size_t errlen);
/* Copies a regular file of at most max bytes to dst (written to dst.tmp, then renamed).
 * Returns 0 or -1 with err ("open <src>: No such file or directory"). */
int copy_file(const char *src, const char *dst, size_t max, char *err, size_t errlen);
/* Reads a whole regular file of at most max bytes into a NUL-terminated malloc'd buffer. */
int read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen);
/* Writes data to path atomically (path.tmp then rename) with the given mode. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, char *err,
                      size_t errlen);
/* 1 when path exists (lstat), 0 otherwise. */
int path_exists(const char *path);
/* 1 when path is a regular file (stat, following symlinks). */
int is_regular_file(const char *path);

/* Cleans a relative path lexically ("a//b/./c" -> "a/b/c"); a leading '/' is dropped so the
 * result is always relative. Returns 0, or -1 when the path is empty, is ".", or climbs
 * above its root with "..". out must hold strlen(in)+1 bytes. */
int clean_rel_path(const char *in, char *out, size_t outlen);
/* malloc'd "a/b" (b absolute: b alone). */
char *path_join(const char *a, const char *b);
/* malloc'd printf. Aborts never: returns NULL when out of memory. */
char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Trims ASCII whitespace at both ends, in place; returns s. */
char *str_trim(char *s);

/* Go-style duration text: "500ms", "2s", "1m30s", "1h0m0s", "1.5s". */
void fmt_duration(int64_t ms, char *buf, size_t len);
/* RFC 3339 with nanoseconds in UTC, trailing zeros of the fraction dropped (Go's
 * time.RFC3339Nano): "2019-04-18T16:04:45.920152Z". */
void fmt_time_utc(const struct timespec *ts, char *buf, size_t len);
/* Monotonic clock in milliseconds. */
int64_t mono_ms(void);

/* Fills out with 2*nbytes hex digits from the kernel's random source, NUL-terminated
 * (out holds 2*nbytes+1). Returns 0 or -1. */
int random_hex(char *out, size_t nbytes);
/* Constant-time string equality (length leaks, content does not). */
bool secure_streq(const char *a, const char *b);

/* Checks an instance or service name used in paths and process names: 1..128 bytes of
 * [A-Za-z0-9._-], not starting with '.' or '-'. */
bool valid_instance_name(const char *s);

#endif
