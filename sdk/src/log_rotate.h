/* Internal to the logger: a log file rotated by size, backup count and age (see log.h for
 * the naming: <path>.1 is the newest backup). Not thread-safe: log.c holds its lock. */
#ifndef BAETYL_LOG_ROTATE_H
#define BAETYL_LOG_ROTATE_H

#include <stddef.h>

#include "baetyl/util.h" /* bt_mkdir_parents, bt_write_all */

typedef struct {
    int fd;              /* -1 when closed */
    char *path;          /* absolute */
    long long size;      /* bytes in the current file */
    long long max_bytes; /* rotate before exceeding this; <= 0 = never */
    long backups;        /* backups kept; <= 0 = no limit */
    long age_days;       /* backups older than this are deleted; <= 0 = no limit */
    int regular;         /* a regular file (not /dev/null, a tty, a pipe): rotation allowed */
} bt_logfile;

/* Creates the directory, opens path for appending and deletes stale backups. f is
 * overwritten. Returns 0, or -1 with err. */
int bt_logfile_open(bt_logfile *f, const char *path, long long max_bytes, long backups,
                    long age_days, char *err, size_t errlen);
/* Rotates first when len more bytes would pass max_bytes (a non-empty file only), then
 * writes buf with one write(). Returns 0, or -1 with err (the line is lost). */
int bt_logfile_write(bt_logfile *f, const char *buf, size_t len, char *err, size_t errlen);
/* Closes and frees; f can be opened again. */
void bt_logfile_close(bt_logfile *f);
/* Deletes backups beyond the count limit and older than the age limit. */
void bt_logfile_cleanup(const bt_logfile *f);

#endif
