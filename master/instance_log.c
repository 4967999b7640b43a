/* Native instances' output files: open, cap, and read back (instance_log.h). */
#include "instance_log.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *ilog_path(const char *pwd, const char *service, const char *instance)
{
    return bt_strdup_printf("%s/" ILOG_DIR "/%s/%s.log", pwd, service, instance);
}

static char *old_path(const char *path)
{
    return bt_strdup_printf("%s.1", path);
}

int ilog_open_new(const char *path, char *err, size_t errlen)
{
    if (bt_mkdir_parents(path, err, errlen) != 0)
        return -1;
    char *old = old_path(path);
    if (!old)
        return bt_errf(err, errlen, "out of memory");
    /* The previous run's output stays readable (why did it end?) until the next start. */
    if (rename(path, old) != 0 && errno != ENOENT)
        unlink(path);
    free(old);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return bt_errf(err, errlen, "output file %s: %s", path, strerror(errno));
    return fd;
}

int ilog_reopen(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

/* The last want bytes of the file at fd (fewer when it is smaller), malloc'd in *out. */
static int read_last(int fd, size_t want, char **out, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    size_t size = (size_t)st.st_size, n = size < want ? size : want;
    char *buf = malloc(n + 1);
    if (!buf)
        return -1;
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)(size - n + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    *out = buf;
    *len = got;
    return 0;
}

void ilog_check(int fd, const char *path, int64_t max)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= max)
        return;
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf = NULL, *old = old_path(path);
    size_t len = 0;
    if (rfd >= 0 && old && read_last(rfd, (size_t)max / 2, &buf, &len) == 0) {
        /* From a line start: the first, cut line is dropped. */
        char *nl = len < (size_t)st.st_size ? memchr(buf, '\n', len) : NULL;
        size_t skip = nl ? (size_t)(nl - buf) + 1 : 0;
        bt_write_file_atomic(old, buf + skip, len - skip, 0640, NULL, 0);
    }
    /* The writer's O_APPEND goes on at the new end; what it wrote between the copy and the
     * truncation is lost, which a bounded log accepts. */
    if (ftruncate(fd, 0) != 0) {
        /* nothing to do: the file stays as it is until the next check */
    }
    if (rfd >= 0)
        close(rfd);
    free(buf);
    free(old);
}

/* Appends one line, cut to ILOG_LINE_MAX bytes, ill-formed UTF-8 and NUL as U+FFFD. */
void ilog_add_line(json_t *arr, const char *s, size_t n)
{
    if (n && s[n - 1] == '\r')
        n--;
    if (n > ILOG_LINE_MAX)
        n = ILOG_LINE_MAX;
    char *o = malloc(n * 3 + 1);
    if (!o)
        return;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = bt_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (l == 0 || cp == 0) {
            memcpy(o + k, "\xef\xbf\xbd", 3);
            k += 3;
            i += l ? l : 1;
        } else {
            memcpy(o + k, s + i, l);
            k += l;
            i += l;
        }
    }
    json_array_append_new(arr, json_stringn(o, k));
    free(o);
}

void ilog_lines_tail(const char *text, size_t len, int n, json_t *arr)
{
    if (n <= 0 || len == 0)
        return;
    size_t end = text[len - 1] == '\n' ? len - 1 : len; /* the last line ends here */
    /* Walk back over n lines: each is [s, e), e being its newline. */
    size_t s = end, e = end;
    for (int lines = 1;; lines++) {
        s = e;
        while (s > 0 && text[s - 1] != '\n')
            s--;
        if (lines == n || s == 0)
            break;
        e = s - 1;
    }
    while (s <= end) {
        const char *nl = memchr(text + s, '\n', end - s);
        size_t stop = nl ? (size_t)(nl - text) : end;
        ilog_add_line(arr, text + s, stop - s);
        s = stop + 1;
    }
}

static size_t count_lines(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += s[i] == '\n';
    return c;
}

int ilog_tail(const char *path, int n, json_t *arr)
{
    char *cur = NULL, *prev = NULL, *old = old_path(path);
    size_t clen = 0, plen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    bool have = fd >= 0 && read_last(fd, ILOG_MAX_BYTES, &cur, &clen) == 0;
    if (fd >= 0)
        close(fd);
    if ((!have || count_lines(cur, clen) < (size_t)n) && old) {
        int ofd = open(old, O_RDONLY | O_CLOEXEC);
        if (ofd >= 0 && read_last(ofd, ILOG_MAX_BYTES, &prev, &plen) == 0)
            have = true;
        if (ofd >= 0)
            close(ofd);
    }
    free(old);
    if (!have) {
        free(cur);
        return -1;
    }
    char *all = malloc(plen + clen + 2);
    if (all) {
        size_t k = 0;
        if (plen) {
            memcpy(all, prev, plen);
            k = plen;
            if (prev[plen - 1] != '\n')
                all[k++] = '\n';
        }
        if (clen)
            memcpy(all + k, cur, clen);
        ilog_lines_tail(all, k + clen, n, arr);
        free(all);
    }
    free(cur);
    free(prev);
    return 0;
}

void ilog_keep(json_t **kept, const char *key, json_t *lines, size_t max)
{
    if (!*kept)
        *kept = json_object();
    if (*kept && !json_object_get(*kept, key) && json_object_size(*kept) >= max) {
        void *it = json_object_iter(*kept);
        if (it)
            json_object_del(*kept, json_object_iter_key(it));
    }
    if (*kept)
        json_object_set(*kept, key, lines);
    json_decref(lines);
}

int ilog_kept_tail(const json_t *kept, const char *key, int n, json_t *arr)
{
    json_t *lines = kept ? json_object_get(kept, key) : NULL;
    if (!lines)
        return 1;
    size_t total = json_array_size(lines), from = total > (size_t)n ? total - (size_t)n : 0;
    for (size_t i = from; i < total; i++)
        json_array_append(arr, json_array_get(lines, i));
    return 0;
}
