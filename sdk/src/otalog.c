/* ota.log lines, written by the master and the agent alike (baetyl/otalog.h). */
#include "baetyl/otalog.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "baetyl/error.h"
#include "baetyl/log.h"
#include "log_rotate.h"

int bt_otalog_write(const char *path, const char *trace, const char *type, const char *step,
                    const char *msg, const char *error, char *err, size_t errlen)
{
    char ts[64];
    bt_log_time(time(NULL), ts, sizeof ts);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "level", error ? "error" : "info", "msg",
                          msg, "step", step, "time", ts, "trace", trace ? trace : "", "type",
                          type ? type : "APP");
    if (o && error)
        json_object_set_new(o, "error", json_string(error));
    char *line = o ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    json_decref(o);
    if (!line)
        return bt_errf(err, errlen, "out of memory");
    /* A directory that cannot be made shows as the open error below. */
    char why[256];
    bt_mkdir_parents(path, why, sizeof why);
    int rc = -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        bt_errf(err, errlen, "open %s: %s", path, strerror(errno));
    } else {
        size_t n = strlen(line);
        line[n] = '\n'; /* replaces the NUL: one write() per line */
        if (write(fd, line, n + 1) == (ssize_t)(n + 1))
            rc = 0;
        else
            bt_errf(err, errlen, "write %s: %s", path, strerror(errno));
        close(fd);
    }
    free(line);
    return rc;
}

char *bt_otalog_tail(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto out;
    off_t start = st.st_size > BT_OTALOG_TAIL_MAX ? st.st_size - BT_OTALOG_TAIL_MAX : 0;
    size_t want = (size_t)(st.st_size - start);
    if (!(buf = malloc(want + 1)))
        goto out;
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, buf + got, want - got, start + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    if (start > 0) { /* drop the partial first line */
        char *nl = memchr(buf, '\n', got);
        size_t skip = nl ? (size_t)(nl + 1 - buf) : got;
        memmove(buf, buf + skip, got - skip + 1);
        got -= skip;
    }
    *len = got;
out:
    close(fd);
    return buf;
}

char *bt_otalog_last_trace(const char *path)
{
    size_t len = 0;
    char *text = bt_otalog_tail(path, &len);
    if (!text)
        return NULL;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        text[--len] = '\0';
    char *line = strrchr(text, '\n');
    line = line ? line + 1 : text;
    json_t *o = json_loads(line, 0, NULL);
    const char *t = json_string_value(json_object_get(o, "trace"));
    char *r = t && *t ? strdup(t) : NULL;
    json_decref(o);
    free(text);
    return r;
}
