/* Small helpers of the master: paths, files, time formats, random tokens. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

int mkdir_p(const char *path, mode_t mode, char *err, size_t errlen)
{
    size_t n = strlen(path);
    if (n == 0)
        return bt_errf(err, errlen, "mkdir: empty path");
    char *p = strdup(path);
    if (!p)
        return bt_errf(err, errlen, "mkdir %s: out of memory", path);
    for (char *s = p + 1; ; s++) {
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
        return bt_errf(err, errlen, "mkdir %s: not a directory", path);
    return 0;
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

int rm_rf(const char *path, char *err, size_t errlen)
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

int read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
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
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return bt_errf(err, errlen, "read %s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > max + 1) {
                free(buf);
                close(fd);
                return bt_errf(err, errlen, "read %s: file too large (max %zu)", path, max);
            }
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

static int write_all(int fd, const void *data, size_t len)
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

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, char *err,
                      size_t errlen)
{
    char *tmp = str_printf("%s.tmp", path);
    if (!tmp)
        return bt_errf(err, errlen, "write %s: out of memory", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        bt_errf(err, errlen, "open %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
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

int copy_file(const char *src, const char *dst, size_t max, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t n = 0;
    if (read_file(src, max, &buf, &n, err, errlen) != 0)
        return -1;
    int r = write_file_atomic(dst, buf, n, 0644, err, errlen);
    free(buf);
    return r;
}

int path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int is_regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int clean_rel_path(const char *in, char *out, size_t outlen)
{
    size_t n = strlen(in);
    if (outlen < n + 1)
        return -1;
    size_t o = 0;
    const char *p = in;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t sl = e ? (size_t)(e - p) : strlen(p);
        if (sl == 1 && p[0] == '.') {
            /* skip */
        } else if (sl == 2 && p[0] == '.' && p[1] == '.') {
            if (o == 0)
                return -1; /* climbs above the root */
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; /* the separator */
        } else {
            if (o > 0)
                out[o++] = '/';
            memcpy(out + o, p, sl);
            o += sl;
        }
        p += sl;
    }
    out[o] = '\0';
    return o == 0 ? -1 : 0;
}

char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : s;
}

char *path_join(const char *a, const char *b)
{
    if (b[0] == '/')
        return strdup(b);
    size_t la = strlen(a);
    return str_printf("%s%s%s", a, (la && a[la - 1] == '/') ? "" : "/", b);
}

char *str_trim(char *s)
{
    char *b = s;
    while (*b == ' ' || *b == '\t' || *b == '\n' || *b == '\r' || *b == '\v' || *b == '\f')
        b++;
    size_t n = strlen(b);
    while (n && (b[n - 1] == ' ' || b[n - 1] == '\t' || b[n - 1] == '\n' || b[n - 1] == '\r' ||
                 b[n - 1] == '\v' || b[n - 1] == '\f'))
        n--;
    memmove(s, b, n);
    s[n] = '\0';
    return s;
}

void fmt_duration(int64_t ms, char *buf, size_t len)
{
    if (ms == 0) {
        snprintf(buf, len, "0s");
        return;
    }
    const char *sign = ms < 0 ? "-" : "";
    uint64_t u = ms < 0 ? (uint64_t)(-ms) : (uint64_t)ms;
    if (u < 1000) {
        snprintf(buf, len, "%s%llums", sign, (unsigned long long)u);
        return;
    }
    uint64_t h = u / 3600000, m = (u / 60000) % 60, s = (u / 1000) % 60, f = u % 1000;
    char sec[32];
    if (f == 0)
        snprintf(sec, sizeof sec, "%llus", (unsigned long long)s);
    else {
        char fr[8];
        snprintf(fr, sizeof fr, "%03llu", (unsigned long long)f);
        for (int i = 2; i > 0 && fr[i] == '0'; i--)
            fr[i] = '\0';
        snprintf(sec, sizeof sec, "%llu.%ss", (unsigned long long)s, fr);
    }
    if (h)
        snprintf(buf, len, "%s%lluh%llum%s", sign, (unsigned long long)h, (unsigned long long)m, sec);
    else if (m)
        snprintf(buf, len, "%s%llum%s", sign, (unsigned long long)m, sec);
    else
        snprintf(buf, len, "%s%s", sign, sec);
}

void fmt_time_utc(const struct timespec *ts, char *buf, size_t len)
{
    struct tm tm;
    time_t t = ts->tv_sec;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    if (ts->tv_nsec == 0) {
        snprintf(buf, len, "%sZ", base);
        return;
    }
    char frac[16];
    snprintf(frac, sizeof frac, "%09ld", ts->tv_nsec);
    for (int i = 8; i > 0 && frac[i] == '0'; i--)
        frac[i] = '\0';
    snprintf(buf, len, "%s.%sZ", base, frac);
}

int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int random_hex(char *out, size_t nbytes)
{
    unsigned char raw[64];
    if (nbytes > sizeof raw)
        return -1;
    size_t got = 0;
    while (got < nbytes) {
        ssize_t r = getrandom(raw + got, nbytes - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)r;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return 0;
}

bool secure_streq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return false;
    unsigned char d = 0;
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)a[i] ^ (unsigned char)b[i];
    return d == 0;
}

bool valid_instance_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}
