/* Files: mkdir -p, rm -rf, whole-file read, atomic write (util.h). */
#include "baetyl/util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "baetyl/error.h"

int bt_mkdir_p(const char *path, mode_t mode, char *err, size_t errlen)
{
    size_t n = strlen(path);
    if (n == 0)
        return bt_errf(err, errlen, "mkdir: empty path");
    char *p = strdup(path);
    if (!p)
        return bt_errf(err, errlen, "mkdir %s: out of memory", path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, mode) != 0 && errno != EEXIST) {
                int e = errno;
                free(p);
                return bt_errf(err, errlen, "mkdir %s: %s", path, strerror(e));
            }
            *s = c;
            if (c == '\0')
                break;
        }
    }
    free(p);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return bt_errf(err, errlen, "mkdir %s: %s", path, strerror(ENOTDIR));
    return 0;
}

int bt_mkdir_parents(const char *file, char *err, size_t errlen)
{
    const char *slash = strrchr(file, '/');
    if (!slash || slash == file)
        return 0;
    char *dir = strndup(file, (size_t)(slash - file));
    if (!dir)
        return bt_errf(err, errlen, "mkdir: out of memory");
    int r = bt_mkdir_p(dir, 0755, err, errlen);
    free(dir);
    return r;
}

static int rm_one(const char *fpath, const struct stat *sb, int typeflag, struct FTW *ftwbuf)
{
    (void)sb;
    (void)ftwbuf;
    int r = (typeflag == FTW_DP || typeflag == FTW_D) ? rmdir(fpath) : unlink(fpath);
    if (r != 0 && errno != ENOENT)
        return errno;
    return 0;
}

int bt_rm_rf(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : bt_errf(err, errlen, "remove %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) != 0 && errno != ENOENT)
            return bt_errf(err, errlen, "remove %s: %s", path, strerror(errno));
        return 0;
    }
    /* FTW_PHYS: a symlink (a mounted volume) is removed itself, its target is untouched. */
    int r = nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    if (r != 0)
        return bt_errf(err, errlen, "remove %s: %s", path, strerror(r > 0 ? r : errno));
    return 0;
}

int bt_read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
    /* O_NONBLOCK: opening a FIFO must not hang; regular files ignore it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return bt_errf(err, errlen, "open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return bt_errf(err, errlen, "open %s: not a regular file", path);
    }
    if ((size_t)st.st_size > max) {
        close(fd);
        return bt_errf(err, errlen, "read %s: file too large (%lld bytes, max %zu)", path,
                       (long long)st.st_size, max);
    }
    /* The size may change while reading: grow up to max+1 to notice a file that did. */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return bt_errf(err, errlen, "read %s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > max + 1)
                break;
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                close(fd);
                return bt_errf(err, errlen, "read %s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            close(fd);
            return bt_errf(err, errlen, "read %s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (n > max) {
        free(buf);
        return bt_errf(err, errlen, "read %s: file too large (max %zu)", path, max);
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

int bt_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int bt_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, char *err,
                         size_t errlen)
{
    char *tmp = bt_strdup_printf("%s.tmp", path);
    if (!tmp)
        return bt_errf(err, errlen, "write %s: out of memory", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        bt_errf(err, errlen, "open %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    /* An existing .tmp keeps its old mode through O_CREAT: set the one asked for. */
    if (fchmod(fd, mode) != 0 || bt_write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        bt_errf(err, errlen, "write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        bt_errf(err, errlen, "rename %s: %s", tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

int bt_copy_file(const char *src, const char *dst, size_t max, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t n = 0;
    if (bt_read_file(src, max, &buf, &n, err, errlen) != 0)
        return -1;
    int r = bt_write_file_atomic(dst, buf, n, 0644, err, errlen);
    free(buf);
    return r;
}

int bt_path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int bt_is_regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
