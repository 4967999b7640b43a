/* ota.log (SPEC §9, §15): the master and the agent append JSON lines to the same file (the
 * agent sees it through its volumes mount); the agent follows the lines of its trace. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

/* Only the tail of a long history is read: an OTA's lines are the latest ones. */
#define TAIL_MAX (1024 * 1024)

/* RFC 3339 local time with its offset, like the master's lines. */
static void now_local(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    long off = tm.tm_gmtoff;
    if (off == 0) {
        snprintf(buf, len, "%sZ", base);
        return;
    }
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    snprintf(buf, len, "%s%c%02ld:%02ld", base, sign, off / 3600, (off / 60) % 60);
}

static void mkdirs(const char *dir)
{
    char *p = strdup(dir);
    if (!p)
        return;
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
    }
    mkdir(p, 0755);
    free(p);
}

int otalog_write(const char *path, const char *trace, const char *type, const char *step,
                 const char *msg, const char *error, char *err, size_t errlen)
{
    char ts[64];
    now_local(ts, sizeof ts);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "level", error ? "error" : "info", "msg", msg,
                          "step", step, "time", ts, "trace", trace ? trace : "", "type", type ? type : "APP");
    if (o && error)
        json_object_set_new(o, "error", json_string(error));
    char *line = o ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    json_decref(o);
    if (!line) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char *d = strdup(path);
    if (d) {
        mkdirs(dirname(d));
        free(d);
    }
    int rc = -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "open %s: %s", path, strerror(errno));
    } else {
        size_t n = strlen(line);
        line[n] = '\n'; /* one write() per line, so lines of two writers never mix */
        if (write(fd, line, n + 1) == (ssize_t)(n + 1))
            rc = 0;
        else
            snprintf(err, errlen, "write %s: %s", path, strerror(errno));
        close(fd);
    }
    free(line);
    return rc;
}

/* The last TAIL_MAX bytes of path, starting at a line; NULL when missing or unreadable. */
static char *read_tail(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto out;
    off_t start = st.st_size > TAIL_MAX ? st.st_size - TAIL_MAX : 0;
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

json_t *otalog_records(const char *path, const char *trace)
{
    json_t *out = json_array();
    size_t len = 0;
    char *text = out ? read_tail(path, &len) : NULL;
    if (!text)
        return out;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(line, 0, NULL);
        const char *t = json_string_value(json_object_get(o, "trace"));
        const char *step = json_string_value(json_object_get(o, "step"));
        if (t && step && trace && !strcmp(t, trace)) {
            /* A trace sent again starts over at its latest RECEIVED. */
            if (!strcmp(step, OTA_RECEIVED))
                json_array_clear(out);
            json_t *r = json_pack("{s:s,s:s,s:s}", "time", json_string_value(json_object_get(o, "time")) ?: "",
                                  "step", step, "trace", t);
            const char *e = json_string_value(json_object_get(o, "error"));
            if (r && e && *e)
                json_object_set_new(r, "error", json_string(e));
            if (r)
                json_array_append_new(out, r);
        }
        json_decref(o);
    }
    free(text);
    return out;
}

char *otalog_last_trace(const char *path)
{
    size_t len = 0;
    char *text = read_tail(path, &len);
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

bool otalog_finished(const json_t *records, const char **step)
{
    size_t n = json_array_size(records);
    const char *s = n ? json_string_value(json_object_get(json_array_get(records, n - 1), "step")) : NULL;
    if (step)
        *step = s;
    return s && (!strcmp(s, OTA_UPDATED) || !strcmp(s, OTA_ROLLEDBACK) || !strcmp(s, OTA_FAILURE) ||
                 !strcmp(s, OTA_TIMEOUT));
}
