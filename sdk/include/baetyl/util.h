/* Small helpers every module needs — clock and deadlines, files and paths, text — written
 * once here so no module keeps its own copy (issue #11). Functions that can fail follow the
 * project's convention: return 0 or -1 and fill the caller's err (see error.h). */
#ifndef BAETYL_UTIL_H
#define BAETYL_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* ---- clock and deadlines (util_time.c) ------------------------------------------------ */

/* CLOCK_MONOTONIC in milliseconds / nanoseconds: for intervals and deadlines, never dates. */
int64_t bt_now_ms(void);
int64_t bt_now_ns(void);
/* The absolute CLOCK_MONOTONIC time ms from now (ms < 0 counts as 0), for
 * pthread_cond_timedwait on a condition whose attribute uses CLOCK_MONOTONIC
 * (bt_cond_init_monotonic) and for sem/clock_nanosleep TIMER_ABSTIME. */
struct timespec bt_deadline_in(int64_t ms);
/* A poll() timeout that ends at deadline_ms (bt_now_ms scale): 0 when it has passed,
 * at most max_ms (a bounded wait keeps a long sleep responsive), rounded up. */
int bt_poll_timeout(int64_t deadline_ms, int64_t now_ms, int max_ms);
/* Initialises a condition variable that waits on CLOCK_MONOTONIC (immune to date changes).
 * Returns 0 or the pthread error. */
int bt_cond_init_monotonic(pthread_cond_t *cv);
/* Starts a thread of the SDK's (a network or I/O loop) that takes no signals: SIGTERM goes
 * to the module's own threads, and a SIGPIPE from a TLS write to a dead socket stays
 * pending instead of killing the process. stack 0 = the default size. Returns 0 or the
 * pthread error. */
int bt_thread_start_quiet(pthread_t *th, void *(*fn)(void *), void *arg, size_t stack);

/* Go-style duration text: "500ms", "2s", "1m30s", "1h0m0s", "1.5s". */
void bt_fmt_duration(int64_t ms, char *buf, size_t len);
/* RFC 3339 with nanoseconds in UTC, trailing zeros of the fraction dropped (Go's
 * time.RFC3339Nano): "2019-04-18T16:04:45.920152Z". */
void bt_fmt_time_utc(const struct timespec *ts, char *buf, size_t len);

/* ---- files (util_fs.c) ------------------------------------------------------------------ */

/* Creates a directory and its parents (mkdir -p). An existing directory is fine; an existing
 * non-directory is an error. Returns 0 or -1 with err ("mkdir <path>: <reason>"). */
int bt_mkdir_p(const char *path, mode_t mode, char *err, size_t errlen);
/* bt_mkdir_p of the directory part of a file path ("a/b/c.log" -> "a/b", mode 0755). */
int bt_mkdir_parents(const char *file, char *err, size_t errlen);
/* Removes a file or a directory tree without following symlinks (a symlink is unlinked,
 * never its target). A missing path is not an error. */
int bt_rm_rf(const char *path, char *err, size_t errlen);
/* Reads a whole regular file of at most max bytes into a NUL-terminated malloc'd buffer
 * (*len may be NULL). A FIFO or device is refused without blocking. */
int bt_read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen);
/* Writes data to path atomically and durably: path.tmp with mode, fsync, rename. */
int bt_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, char *err,
                         size_t errlen);
/* Copies a regular file of at most max bytes to dst atomically (mode 0644). */
int bt_copy_file(const char *src, const char *dst, size_t max, char *err, size_t errlen);
/* Writes all of len bytes to fd, retrying short writes and EINTR. 0 or -1 (errno set). */
int bt_write_all(int fd, const void *data, size_t len);
/* 1 when path exists (lstat), 0 otherwise. */
int bt_path_exists(const char *path);
/* 1 when path is a regular file (stat, following symlinks). */
int bt_is_regular_file(const char *path);

/* ---- paths (util_path.c) ---------------------------------------------------------------- */

/* Cleans a relative path lexically ("a//b/./c/" -> "a/b/c", "a/../b" -> "b"); a leading '/'
 * is dropped so the result is always relative. Returns 0, or -1 when the path is empty, is
 * ".", or climbs above its root with "..". out must hold strlen(in)+1 bytes. */
int bt_path_clean_rel(const char *in, char *out, size_t outlen);
/* Strict form for names that must already be relative and stay inside their root: absolute
 * paths and any ".." segment are refused (-1) rather than resolved. Result malloc'd. */
char *bt_path_clean_inside(const char *in);
/* malloc'd "a/b" (b absolute: b alone); NULL when out of memory. */
char *bt_path_join(const char *a, const char *b);

/* ---- text (util_text.c) ----------------------------------------------------------------- */

/* Decodes one UTF-8 character of s[0..n) (n >= 1) as RFC 3629 defines it: no overlong
 * forms, no surrogates, nothing above U+10FFFF. Returns its length in bytes and sets *cp,
 * or 0 when the bytes at s are not a well-formed character (*cp = U+FFFD). */
size_t bt_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Length of the longest well-formed UTF-8 prefix of s. */
size_t bt_utf8_valid_prefix(const void *s, size_t n);
/* True when all of s is well-formed UTF-8 (U+0000 allowed: MQTT adds its own rule). */
bool bt_utf8_valid(const void *s, size_t n);

/* A random (version 4) UUID, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" and a NUL. */
void bt_uuid4(char out[37]);
/* Fills out with 2*nbytes hex digits from the kernel's random source, NUL-terminated
 * (out holds 2*nbytes+1; nbytes <= 64). Returns 0 or -1. */
int bt_random_hex(char *out, size_t nbytes);
/* Constant-time string equality (length leaks, content does not): for tokens. */
bool bt_secure_streq(const char *a, const char *b);
/* malloc'd printf; NULL when out of memory. */
char *bt_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Trims ASCII whitespace at both ends, in place; returns s. */
char *bt_str_trim(char *s);

/* ---- memory (util_mem.c) --------------------------------------------------------------- */

/* When an idle loop trims the heap: BT_HEAP_TRIM_FIRST_MS after start (the startup's parsing
 * is done), then every BT_HEAP_TRIM_MS. */
#define BT_HEAP_TRIM_FIRST_MS 5000
#define BT_HEAP_TRIM_MS 30000
/* Gives the heap's free pages back to the system (glibc's malloc_trim): freed memory of the
 * startup and of bursts otherwise stays resident, private dirty, for the process's life. */
void bt_heap_trim(void);

#endif
