/* Log file output with rotation: <path>.1 … <path>.N by size, backup count and age
 * (SPEC §18). Numbered names (logrotate style) rather than lumberjack's timestamps: the
 * newest backup is always <path>.1, easy to find by hand and in tests. */
#include "log_rotate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int open_file(bt_logfile *f, char *err, size_t errlen)
{
    /* O_NONBLOCK only for open(): a FIFO without a reader must not hang the process. */
    int fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "open %s: %s", f->path, strerror(errno));
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "stat %s: %s", f->path, strerror(errno));
        close(fd);
        return -1;
    }
    /* /dev/null, a tty, a pipe: nothing to rotate, nothing to clean. */
    f->regular = S_ISREG(st.st_mode);
    f->fd = fd;
    f->size = st.st_size;
    return 0;
}

/* Splits f->path into a malloc'd directory and a pointer to the base name inside path. */
static char *split_dir(const char *path, const char **base)
{
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Backup number of a directory entry: "<base>.<n>", n canonical decimal >= 1; else 0. */
static long backup_number(const char *name, const char *base)
{
    size_t bl = strlen(base);
    if (strncmp(name, base, bl) != 0 || name[bl] != '.')
        return 0;
    const char *d = name + bl + 1;
    if (*d < '1' || *d > '9')
        return 0;
    long n = 0;
    for (; *d; d++) {
        if (*d < '0' || *d > '9' || n > (LONG_MAX - 9) / 10)
            return 0;
        n = n * 10 + (*d - '0');
    }
    return n;
}

static int cmp_desc(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

/* The backup numbers present, sorted newest (1) last. Returns a malloc'd array or NULL. */
static long *list_backups(const char *path, size_t *count)
{
    *count = 0;
    const char *base;
    char *dir = split_dir(path, &base);
    if (!dir)
        return NULL;
    DIR *d = opendir(dir);
    free(dir);
    if (!d)
        return NULL;
    long *nums = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long k = backup_number(e->d_name, base);
        if (k <= 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            long *p = realloc(nums, nc * sizeof *p);
            if (!p)
                break;
            nums = p;
            cap = nc;
        }
        nums[n++] = k;
    }
    closedir(d);
    if (nums)
        qsort(nums, n, sizeof *nums, cmp_desc);
    *count = n;
    return nums;
}

static char *backup_name(const char *path, long n)
{
    char *s = NULL;
    if (asprintf(&s, "%s.%ld", path, n) < 0)
        return NULL;
    return s;
}

void bt_logfile_cleanup(const bt_logfile *f)
{
    if (!f->path || !f->regular || (f->backups <= 0 && f->age_days <= 0))
        return;
    size_t n;
    long *nums = list_backups(f->path, &n);
    time_t cutoff = time(NULL) - (time_t)f->age_days * 86400;
    for (size_t i = 0; i < n; i++) {
        char *name = backup_name(f->path, nums[i]);
        if (!name)
            continue;
        struct stat st;
        int drop = f->backups > 0 && nums[i] > f->backups;
        if (!drop && f->age_days > 0 && lstat(name, &st) == 0 && st.st_mtime < cutoff)
            drop = 1;
        if (drop)
            (void)unlink(name);
        free(name);
    }
    free(nums);
}

/* Shifts <path>.n to <path>.n+1 (dropping those past the limit), <path> to <path>.1. */
static void shift_backups(const bt_logfile *f)
{
    size_t n;
    long *nums = list_backups(f->path, &n);
    for (size_t i = 0; i < n; i++) { /* descending: n+1 is already out of the way */
        char *from = backup_name(f->path, nums[i]);
        char *to = nums[i] < LONG_MAX ? backup_name(f->path, nums[i] + 1) : NULL;
        if (from && (!to || (f->backups > 0 && nums[i] >= f->backups)))
            (void)unlink(from);
        else if (from && to)
            (void)rename(from, to);
        free(from);
        free(to);
    }
    free(nums);
    char *first = backup_name(f->path, 1);
    if (first)
        (void)rename(f->path, first);
    free(first);
}

static int rotate(bt_logfile *f, char *err, size_t errlen)
{
    close(f->fd);
    f->fd = -1;
    shift_backups(f);
    if (open_file(f, err, errlen) < 0)
        return -1;
    bt_logfile_cleanup(f);
    return 0;
}

int bt_logfile_open(bt_logfile *f, const char *path, long long max_bytes, long backups,
                    long age_days, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (!path || !*path) {
        snprintf(err, errlen, "empty log path");
        return -1;
    }
    /* Absolute, so that a later chdir() does not move the log. */
    if (path[0] == '/') {
        f->path = strdup(path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) {
            snprintf(err, errlen, "getcwd: %s", strerror(errno));
            return -1;
        }
        if (asprintf(&f->path, "%s/%s", cwd, path) < 0)
            f->path = NULL;
    }
    if (!f->path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->max_bytes = max_bytes;
    f->backups = backups;
    f->age_days = age_days;
    if (bt_mkdir_parents(f->path, err, errlen) < 0 || open_file(f, err, errlen) < 0) {
        free(f->path);
        f->path = NULL;
        return -1;
    }
    bt_logfile_cleanup(f);
    return 0;
}

int bt_logfile_write(bt_logfile *f, const char *buf, size_t len, char *err, size_t errlen)
{
    if (f->fd < 0) {
        snprintf(err, errlen, "log file %s is not open", f->path ? f->path : "");
        return -1;
    }
    if (f->regular && f->max_bytes > 0 && f->size > 0 && f->size + (long long)len > f->max_bytes &&
        rotate(f, err, errlen) < 0)
        return -1;
    if (bt_write_all(f->fd, buf, len) < 0) {
        snprintf(err, errlen, "write %s: %s", f->path, strerror(errno));
        return -1;
    }
    f->size += (long long)len;
    return 0;
}

void bt_logfile_close(bt_logfile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    f->path = NULL;
    f->fd = -1;
    f->size = 0;
}
