/* The Docker Engine API client (see docker_api.h), on the SDK's HTTP/1.1 client: a long
 * call (a container's wait, a pull) is given up as soon as its cancel fd becomes readable. */
#include "docker_api.h"
#include "instance_log.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/buf.h>
#include <baetyl/http.h>
#include <baetyl/json.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_MAX_BODY (1u << 20)
#define CALL_TIMEOUT_MS 60000L
#define SERVICE_LOGS_TIMEOUT_MS 10000L

struct docker_client {
    char *socket;
    char *version;
    unsigned major, minor;
    unsigned engine_api; /* the engine's newest API version, major * 1000 + minor (0: unknown) */
};

static int parse_version(const char *s, unsigned *major, unsigned *minor)
{
    char extra;
    return s && sscanf(s, "%3u.%3u%c", major, minor, &extra) == 2 ? 0 : -1;
}

int docker_client_new(const char *socket, const char *version, docker_client **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    unsigned ma, mi;
    if (parse_version(version, &ma, &mi) != 0)
        return bt_errf(err, errlen, "docker.api_version (%s) is not a version like 1.38",
                       version ? version : "");
    if (!socket) {
        const char *h = getenv("DOCKER_HOST");
        socket = h && strncmp(h, "unix://", 7) == 0 && h[7] ? h + 7 : DOCKER_DEFAULT_SOCKET;
    }
    docker_client *c = calloc(1, sizeof *c);
    if (c) {
        c->socket = strdup(socket);
        c->version = strdup(version);
    }
    if (!c || !c->socket || !c->version) {
        docker_client_free(c);
        return bt_errf(err, errlen, "out of memory");
    }
    c->major = ma;
    c->minor = mi;
    *out = c;
    return 0;
}

void docker_client_free(docker_client *c)
{
    if (!c)
        return;
    free(c->socket);
    free(c->version);
    free(c);
}

const char *docker_client_socket(const docker_client *c)
{
    return c->socket;
}

/* Percent-encodes s; in a path, '/', ':' and '@' (image references) stay as they are. */
static char *url_escape(const char *s, bool in_path)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char ch = *p;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~' ||
            (in_path && (ch == '/' || ch == ':' || ch == '@'))) {
            *o++ = (char)ch;
        } else {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        }
    }
    *o = '\0';
    return out;
}

/* ---- one request ----------------------------------------------------------------------- */

int docker_call(docker_client *c, const docker_req *r, char **body, size_t *len, char *err,
                size_t errlen)
{
    if (body)
        *body = NULL;
    if (len)
        *len = 0;
    char *target =
        r->unversioned ? strdup(r->path) : bt_strdup_printf("/v%s%s", c->version, r->path);
    char *payload = r->body ? bt_json_dump(r->body) : NULL;
    if (!target || (r->body && !payload)) {
        free(target);
        free(payload);
        return bt_errf(err, errlen, "out of memory");
    }
    bt_http_req q = {
        .socket = c->socket,
        .method = r->method,
        .target = target,
        .body = payload,
        .body_len = payload ? strlen(payload) : 0,
        .timeout_ms = r->timeout_ms,
        .cancel_fd = r->cancel_fd,
        .max_body = r->max_body ? r->max_body : DEFAULT_MAX_BODY,
        .on_data = r->on_data,
        .arg = r->arg,
    };
    char why[512];
    int rc = bt_http_request(&q, body, len, why, sizeof why);
    if (rc == BT_HTTP_CANCELLED) {
        rc = DOCKER_CANCELLED;
        bt_errf(err, errlen, "cancelled");
    } else if (rc == BT_HTTP_TIMEOUT) {
        rc = DOCKER_TIMEOUT;
        bt_errf(err, errlen, "%s %s: timed out after %ld ms", r->method, r->path, r->timeout_ms);
    } else if (rc < 0) {
        rc = bt_errf(err, errlen, "docker engine (%s): %s", c->socket, why);
    }
    free(target);
    free(payload);
    return rc;
}

int docker_answer_error(int status, const char *body, const char *what, char *err, size_t errlen)
{
    const char *msg = NULL;
    json_t *j = body && *body ? bt_json_parse(body, strlen(body), NULL, 0) : NULL;
    if (json_is_object(j))
        msg = bt_json_get_str(j, "message");
    if (msg && *msg)
        bt_errf(err, errlen, "%s: %s", what, msg);
    else if (body && *body)
        bt_errf(err, errlen, "%s: HTTP %d: %.300s", what, status, body);
    else
        bt_errf(err, errlen, "%s: HTTP %d", what, status);
    json_decref(j);
    return -1;
}

/* A simple call: GET/POST/DELETE, answer kept. Returns the status or -1 with err. */
static int simple(docker_client *c, const char *method, const char *path, const json_t *in,
                  long timeout_ms, char **body, char *err, size_t errlen)
{
    docker_req r = {
        .method = method, .path = path, .body = in, .timeout_ms = timeout_ms, .cancel_fd = -1};
    int st = docker_call(c, &r, body, NULL, err, errlen);
    return st < 0 ? -1 : st;
}

/* Parses a JSON answer of the expected type into *out. */
static int parse_answer(const char *body, int want_type, json_t **out, const char *what, char *err,
                        size_t errlen)
{
    char why[256];
    json_t *j = bt_json_parse(body, strlen(body), why, sizeof why);
    if (!j)
        return bt_errf(err, errlen, "%s: the engine's answer is not JSON: %s", what, why);
    if ((int)json_typeof(j) != want_type) {
        json_decref(j);
        return bt_errf(err, errlen, "%s: unexpected answer from the engine", what);
    }
    *out = j;
    return 0;
}

/* ---- engine and images ------------------------------------------------------------------ */

bool docker_engine_speaks(const docker_client *c, unsigned major, unsigned minor)
{
    return c->engine_api >= major * 1000 + minor;
}

int docker_check_version(docker_client *c, char *err, size_t errlen)
{
    char *body = NULL, why[512];
    docker_req r = {.method = "GET",
                    .path = "/version",
                    .unversioned = true,
                    .timeout_ms = 15000,
                    .cancel_fd = -1};
    int st = docker_call(c, &r, &body, NULL, why, sizeof why);
    if (st == DOCKER_ERR) {
        /* say what is wrong with the socket, and how to start an engine */
        struct stat sb;
        const char *cause = stat(c->socket, &sb) != 0 ? strerror(errno)
                            : S_ISSOCK(sb.st_mode)    ? "nothing accepts on the socket"
                                                      : "not a socket";
        return bt_errf(err, errlen,
                       "docker engine not reachable at unix://%s (%s): start it (`systemctl "
                       "start docker`, or `dockerd -H unix://%s`), or set DOCKER_HOST=unix://<its "
                       "socket>",
                       c->socket, cause, c->socket);
    }
    if (st < 0)
        return bt_errf(err, errlen, "docker engine (%s) not reachable: %s", c->socket, why);
    json_t *j = NULL;
    int rc = 0;
    if (st != 200)
        rc = docker_answer_error(st, body, "docker engine version", err, errlen);
    else if (parse_answer(body, JSON_OBJECT, &j, "docker engine version", err, errlen) != 0)
        rc = -1;
    free(body);
    if (rc != 0)
        return -1;
    const char *maxv = bt_json_get_str(j, "ApiVersion"),
               *minv = bt_json_get_str(j, "MinAPIVersion");
    unsigned amax, imax, amin = 0, imin = 0;
    if (parse_version(maxv, &amax, &imax) != 0) {
        json_decref(j);
        return bt_errf(err, errlen, "docker engine version: no ApiVersion in the engine's answer");
    }
    if (minv && parse_version(minv, &amin, &imin) != 0)
        amin = imin = 0;
    unsigned want = c->major * 1000 + c->minor;
    c->engine_api = amax * 1000 + imax;
    if (want > amax * 1000 + imax)
        rc = bt_errf(err, errlen,
                     "docker.api_version (%s) is newer than the engine supports (%s): set "
                     "docker.api_version in conf.yml",
                     c->version, maxv);
    else if (minv && want < amin * 1000 + imin)
        rc = bt_errf(err, errlen,
                     "docker.api_version (%s) is older than the engine supports (%s to %s): set "
                     "docker.api_version in conf.yml",
                     c->version, minv, maxv);
    json_decref(j);
    return rc;
}

int docker_image_present(docker_client *c, const char *image, char *err, size_t errlen)
{
    char *e = url_escape(image, true), *path = e ? bt_strdup_printf("/images/%s/json", e) : NULL,
         *body = NULL;
    free(e);
    if (!path)
        return bt_errf(err, errlen, "out of memory");
    int st = simple(c, "GET", path, NULL, CALL_TIMEOUT_MS, &body, err, errlen);
    free(path);
    int rc = st == 200 ? 1 : st == 404 ? 0 : -1;
    if (st > 0 && rc < 0)
        docker_answer_error(st, body, "inspect image", err, errlen);
    free(body);
    return rc;
}

int docker_image_split(const char *image, char *repo, size_t repolen, char *tag, size_t taglen)
{
    size_t n = strlen(image);
    if (n == 0 || n >= repolen || taglen < 8)
        return -1;
    const char *slash = strrchr(image, '/');
    const char *colon = strrchr(slash ? slash : image, ':');
    if (strchr(image, '@')) { /* repo@sha256:… is pulled by digest, whole */
        memcpy(repo, image, n + 1);
        tag[0] = '\0';
    } else if (colon) {
        size_t rl = (size_t)(colon - image), tl = n - rl - 1;
        if (rl == 0 || tl == 0 || tl >= taglen)
            return -1;
        memcpy(repo, image, rl);
        repo[rl] = '\0';
        memcpy(tag, colon + 1, tl + 1);
    } else {
        memcpy(repo, image, n + 1);
        strcpy(tag, "latest");
    }
    return 0;
}

/* The pull answer is a stream of JSON lines; an {"error": …} line is the failure. */
typedef struct {
    char line[8192];
    size_t n;
    bool skipping; /* inside a line longer than the buffer */
    char error[512];
} pull_state;

static void pull_line(pull_state *p)
{
    json_t *j = bt_json_parse(p->line, p->n, NULL, 0);
    const char *e = json_is_object(j) ? bt_json_get_str(j, "error") : NULL;
    if (e && !p->error[0])
        snprintf(p->error, sizeof p->error, "%s", e);
    json_decref(j);
}

static int pull_data(const char *buf, size_t len, void *arg)
{
    pull_state *p = arg;
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        if (ch == '\n') {
            if (!p->skipping && p->n)
                pull_line(p);
            p->n = 0;
            p->skipping = false;
        } else if (!p->skipping) {
            if (p->n + 1 >= sizeof p->line)
                p->skipping = true;
            else
                p->line[p->n++] = ch;
        }
    }
    return 0;
}

int docker_image_pull(docker_client *c, const char *image, char *err, size_t errlen)
{
    char repo[1024], tag[256];
    if (docker_image_split(image, repo, sizeof repo, tag, sizeof tag) != 0)
        return bt_errf(err, errlen, "image (%s) is not a valid reference", image);
    char *er = url_escape(repo, false), *et = url_escape(tag, false);
    char *path = er && et ? (tag[0] ? bt_strdup_printf("/images/create?fromImage=%s&tag=%s", er, et)
                                    : bt_strdup_printf("/images/create?fromImage=%s", er))
                          : NULL;
    free(er);
    free(et);
    if (!path)
        return bt_errf(err, errlen, "out of memory");
    pull_state *p = calloc(1, sizeof *p);
    if (!p) {
        free(path);
        return bt_errf(err, errlen, "out of memory");
    }
    char *body = NULL;
    docker_req r = {.method = "POST",
                    .path = path,
                    .timeout_ms = 3600 * 1000L,
                    .cancel_fd = -1,
                    .on_data = pull_data,
                    .arg = p};
    int st = docker_call(c, &r, &body, NULL, err, errlen);
    free(path);
    int rc = 0;
    if (st < 0) {
        rc = -1;
    } else if (st != 200) {
        rc = docker_answer_error(st, body, "pull", err, errlen);
    } else {
        if (p->n && !p->skipping)
            pull_line(p);
        if (p->error[0])
            rc = bt_errf(err, errlen, "pull: %s", p->error);
    }
    free(body);
    free(p);
    return rc;
}

int docker_network_ensure(docker_client *c, const char *name, const char *master_id, char *err,
                          size_t errlen)
{
    char *e = url_escape(name, false), *path = e ? bt_strdup_printf("/networks/%s", e) : NULL,
         *body = NULL;
    free(e);
    if (!path)
        return bt_errf(err, errlen, "out of memory");
    int st = simple(c, "GET", path, NULL, CALL_TIMEOUT_MS, &body, err, errlen);
    free(path);
    if (st == 200) {
        free(body);
        return 0;
    }
    if (st != 404) {
        if (st > 0)
            docker_answer_error(st, body, "inspect network", err, errlen);
        free(body);
        return -1;
    }
    free(body);
    body = NULL;
    json_t *req =
        json_pack("{s:s,s:s,s:b,s:{s:s,s:s}}", "Name", name, "Driver", "bridge", "CheckDuplicate",
                  1, "Labels", "baetyl", "baetyl", "baetyl-master", master_id);
    if (!req)
        return bt_errf(err, errlen, "out of memory");
    st = simple(c, "POST", "/networks/create", req, CALL_TIMEOUT_MS, &body, err, errlen);
    json_decref(req);
    int rc = st == 201 ? 1 : st == 409 ? 0 : -1; /* 409: made meanwhile by someone else */
    if (st > 0 && rc < 0)
        docker_answer_error(st, body, "create network", err, errlen);
    free(body);
    return rc;
}

/* ---- containers ------------------------------------------------------------------------- */

static bool valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* "/containers/<id or name><suffix>" with the id escaped. */
static char *container_path(const char *id, const char *suffix)
{
    char *e = url_escape(id, false);
    char *p = e ? bt_strdup_printf("/containers/%s%s", e, suffix) : NULL;
    free(e);
    return p;
}

int docker_container_create(docker_client *c, const char *name, const json_t *config, char *id,
                            size_t idlen, char *err, size_t errlen)
{
    char *e = url_escape(name, false),
         *path = e ? bt_strdup_printf("/containers/create?name=%s", e) : NULL;
    char *body = NULL;
    free(e);
    if (!path)
        return bt_errf(err, errlen, "out of memory");
    int st = simple(c, "POST", path, config, CALL_TIMEOUT_MS, &body, err, errlen);
    free(path);
    int rc = -1;
    if (st == 201) {
        json_t *j = NULL;
        if (parse_answer(body, JSON_OBJECT, &j, "create container", err, errlen) == 0) {
            const char *cid = bt_json_get_str(j, "Id");
            if (!cid || !valid_id(cid) || strlen(cid) >= idlen)
                bt_errf(err, errlen, "create container: the engine gave no valid container id");
            else {
                snprintf(id, idlen, "%s", cid);
                rc = 0;
            }
            json_decref(j);
        }
    } else if (st == 409) {
        rc = 1;
        docker_answer_error(st, body, "create container", err, errlen);
    } else if (st > 0) {
        docker_answer_error(st, body, "create container", err, errlen);
    }
    free(body);
    return rc;
}

/* POST/DELETE on a container; statuses in ok[] (0-terminated) count as success. */
static int container_op(docker_client *c, const char *method, const char *id, const char *suffix,
                        long timeout_ms, const int *ok, const char *what, char *err, size_t errlen)
{
    char *path = container_path(id, suffix), *body = NULL;
    if (!path)
        return bt_errf(err, errlen, "out of memory");
    int st = simple(c, method, path, NULL, timeout_ms, &body, err, errlen);
    free(path);
    int rc = -1;
    for (const int *o = ok; st > 0 && *o; o++)
        if (st == *o)
            rc = 0;
    if (st > 0 && rc < 0)
        docker_answer_error(st, body, what, err, errlen);
    free(body);
    return rc;
}

int docker_container_start(docker_client *c, const char *id, char *err, size_t errlen)
{
    static const int ok[] = {204, 304, 0};
    return container_op(c, "POST", id, "/start", CALL_TIMEOUT_MS, ok, "start container", err,
                        errlen);
}

int docker_container_stop(docker_client *c, const char *id, int timeout_s, char *err, size_t errlen)
{
    static const int ok[] = {204, 304, 404, 0};
    char suffix[48];
    if (timeout_s < 0)
        timeout_s = 0;
    snprintf(suffix, sizeof suffix, "/stop?t=%d", timeout_s);
    /* The engine answers once the container has stopped: up to t, then its SIGKILL. */
    return container_op(c, "POST", id, suffix, (long)timeout_s * 1000 + CALL_TIMEOUT_MS, ok,
                        "stop container", err, errlen);
}

int docker_container_kill(docker_client *c, const char *id, char *err, size_t errlen)
{
    static const int ok[] = {204, 404, 409, 0};
    return container_op(c, "POST", id, "/kill?signal=SIGKILL", CALL_TIMEOUT_MS, ok,
                        "kill container", err, errlen);
}

int docker_container_remove(docker_client *c, const char *id, bool force, char *err, size_t errlen)
{
    static const int ok[] = {204, 404, 0};
    return container_op(c, "DELETE", id, force ? "?force=1" : "", CALL_TIMEOUT_MS, ok,
                        "remove container", err, errlen);
}

int docker_container_wait(docker_client *c, const char *id, int timeout_ms, int cancel_fd,
                          int *code, char *err, size_t errlen)
{
    *code = -1;
    char *path = container_path(id, "/wait?condition=not-running"), *body = NULL;
    if (!path)
        return bt_errf(err, errlen, "out of memory");
    docker_req r = {.method = "POST",
                    .path = path,
                    .cancel_fd = cancel_fd,
                    .timeout_ms = timeout_ms < 0    ? 0
                                  : timeout_ms == 0 ? 1
                                                    : timeout_ms};
    int st = docker_call(c, &r, &body, NULL, err, errlen);
    free(path);
    int rc;
    if (st == DOCKER_TIMEOUT || st == DOCKER_CANCELLED) {
        rc = 0;
    } else if (st < 0) {
        rc = -1;
    } else if (st == 404) {
        rc = 1; /* gone: nothing left to wait for */
    } else if (st != 200) {
        rc = docker_answer_error(st, body, "wait for container", err, errlen);
    } else {
        json_t *j = NULL;
        rc = parse_answer(body, JSON_OBJECT, &j, "wait for container", err, errlen);
        if (rc == 0) {
            long long sc = bt_json_get_int(j, "StatusCode", -1);
            *code = sc < -1 || sc > 255 ? -1 : (int)sc;
            rc = 1;
        }
        json_decref(j);
    }
    free(body);
    return rc;
}

int docker_container_inspect(docker_client *c, const char *id, json_t **out, char *err,
                             size_t errlen)
{
    *out = NULL;
    char *path = container_path(id, "/json"), *body = NULL;
    if (!path)
        return bt_errf(err, errlen, "out of memory");
    int st = simple(c, "GET", path, NULL, CALL_TIMEOUT_MS, &body, err, errlen);
    free(path);
    int rc = -1;
    if (st == 404)
        rc = 1;
    else if (st == 200)
        rc = parse_answer(body, JSON_OBJECT, out, "inspect container", err, errlen);
    else if (st > 0)
        docker_answer_error(st, body, "inspect container", err, errlen);
    free(body);
    return rc;
}

int docker_container_list(docker_client *c, const char *label, json_t **out, char *err,
                          size_t errlen)
{
    *out = NULL;
    json_t *f = json_pack("{s:[s]}", "label", label);
    char *fs = f ? bt_json_dump(f) : NULL, *e = fs ? url_escape(fs, false) : NULL;
    char *path = e ? bt_strdup_printf("/containers/json?all=1&filters=%s", e) : NULL, *body = NULL;
    json_decref(f);
    free(fs);
    free(e);
    if (!path)
        return bt_errf(err, errlen, "out of memory");
    docker_req r = {.method = "GET",
                    .path = path,
                    .timeout_ms = CALL_TIMEOUT_MS,
                    .cancel_fd = -1,
                    .max_body = 16u << 20};
    int st = docker_call(c, &r, &body, NULL, err, errlen);
    free(path);
    int rc = -1;
    if (st == 200)
        rc = parse_answer(body, JSON_ARRAY, out, "list containers", err, errlen);
    else if (st > 0)
        docker_answer_error(st, body, "list containers", err, errlen);
    free(body);
    return rc;
}

int docker_container_stats(docker_client *c, const char *id, int cancel_fd, json_t **out, char *err,
                           size_t errlen)
{
    *out = NULL;
    char *path = container_path(id, "/stats?stream=false"), *body = NULL;
    if (!path)
        return bt_errf(err, errlen, "out of memory");
    docker_req r = {.method = "GET", .path = path, .timeout_ms = 20000, .cancel_fd = cancel_fd};
    int st = docker_call(c, &r, &body, NULL, err, errlen);
    free(path);
    int rc = -1;
    if (st == 200)
        rc = parse_answer(body, JSON_OBJECT, out, "container stats", err, errlen);
    else if (st > 0)
        docker_answer_error(st, body, "container stats", err, errlen);
    free(body);
    return rc;
}

/* ---- logs ------------------------------------------------------------------------------- */

void docker_demux_init(docker_demux *d, void (*emit)(int, const char *, size_t, void *), void *arg)
{
    memset(d, 0, sizeof *d);
    d->emit = emit;
    d->arg = arg;
}

static void emit_line(docker_demux *d)
{
    size_t n = d->llen;
    if (n && d->line[n - 1] == '\r')
        n--;
    d->emit(d->lstream, d->line, n, d->arg);
    d->llen = 0;
}

static void put_text(docker_demux *d, int stream, const char *p, size_t n)
{
    if (d->llen && stream != d->lstream)
        emit_line(d);
    d->lstream = stream;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            emit_line(d);
            continue;
        }
        if (d->llen == sizeof d->line)
            emit_line(d); /* cut an overlong line */
        d->line[d->llen++] = p[i];
    }
}

void docker_demux_feed(docker_demux *d, const char *buf, size_t len)
{
    while (len > 0) {
        if (d->raw) {
            put_text(d, 1, buf, len);
            return;
        }
        if (d->left == 0) {
            size_t take = 8 - d->hlen < len ? 8 - d->hlen : len;
            memcpy(d->hdr + d->hlen, buf, take);
            d->hlen += take;
            buf += take;
            len -= take;
            if (d->hlen < 8)
                return;
            d->hlen = 0;
            if (d->hdr[0] > 2 || d->hdr[1] || d->hdr[2] || d->hdr[3]) {
                /* Not a frame header: a TTY stream, or garbage. Keep it readable as text. */
                d->raw = true;
                put_text(d, 1, (const char *)d->hdr, 8);
                continue;
            }
            d->started = true;
            d->stream = d->hdr[0] == 2 ? 2 : 1;
            d->left = (uint32_t)d->hdr[4] << 24 | (uint32_t)d->hdr[5] << 16 |
                      (uint32_t)d->hdr[6] << 8 | (uint32_t)d->hdr[7];
            continue;
        }
        size_t take = d->left < len ? d->left : len;
        put_text(d, d->stream, buf, take);
        d->left -= (uint32_t)take;
        buf += take;
        len -= take;
    }
}

void docker_demux_flush(docker_demux *d)
{
    if (d->llen)
        emit_line(d);
}

typedef struct {
    docker_demux d;
    size_t budget;
} logs_state;

static int logs_data(const char *buf, size_t len, void *arg)
{
    logs_state *s = arg;
    bool last = len >= s->budget;
    if (last)
        len = s->budget;
    docker_demux_feed(&s->d, buf, len);
    s->budget -= len;
    return last ? 1 : 0;
}

/* GET <kind>/<id>/logs: containers and swarm services answer in the same stream format. */
static int logs_of(docker_client *c, const char *kind, const char *id, int tail, size_t max_bytes,
                   long timeout_ms,
                   void (*line)(int stream, const char *text, size_t len, void *arg), void *arg,
                   char *err, size_t errlen)
{
    char *e = url_escape(id, false), *body = NULL;
    char *path = e ? bt_strdup_printf("/%ss/%s/logs?stdout=1&stderr=1&tail=%d", kind, e,
                                      tail > 0 ? tail : 100)
                   : NULL;
    free(e);
    logs_state *s = malloc(sizeof *s);
    if (!path || !s) {
        free(path);
        free(s);
        return bt_errf(err, errlen, "out of memory");
    }
    docker_demux_init(&s->d, line, arg);
    s->budget = max_bytes ? max_bytes : 1;
    docker_req r = {.method = "GET",
                    .path = path,
                    .timeout_ms = timeout_ms,
                    .cancel_fd = -1,
                    .on_data = logs_data,
                    .arg = s};
    int st = docker_call(c, &r, &body, NULL, err, errlen);
    free(path);
    int rc = -1;
    if (st == 200) {
        docker_demux_flush(&s->d);
        rc = 0;
    } else if (st > 0) {
        char what[32];
        snprintf(what, sizeof what, "%s logs", kind);
        docker_answer_error(st, body, what, err, errlen);
    }
    free(body);
    free(s);
    return rc;
}

int docker_container_logs(docker_client *c, const char *id, int tail, size_t max_bytes,
                          void (*line)(int stream, const char *text, size_t len, void *arg),
                          void *arg, char *err, size_t errlen)
{
    return logs_of(c, "container", id, tail, max_bytes, CALL_TIMEOUT_MS, line, arg, err, errlen);
}

int docker_service_logs(docker_client *c, const char *id, int tail, size_t max_bytes,
                        void (*line)(int stream, const char *text, size_t len, void *arg),
                        void *arg, char *err, size_t errlen)
{
    /* A node that is down holds the answer back: the call gives up sooner than others. */
    return logs_of(c, "service", id, tail, max_bytes, SERVICE_LOGS_TIMEOUT_MS, line, arg, err,
                   errlen);
}

static void json_line(int stream, const char *text, size_t len, void *arg)
{
    (void)stream;
    ilog_add_line(arg, text, len);
}

int docker_logs_json(docker_client *c, bool service, const char *id, int n, size_t max_bytes,
                     json_t *arr, char *err, size_t errlen)
{
    json_t *got = json_array();
    if (!got)
        return bt_errf(err, errlen, "out of memory");
    int rc = (service ? docker_service_logs : docker_container_logs)(
        c, id, n > 0 ? n : 1, max_bytes, json_line, got, err, errlen);
    if (rc == 0 && n > 0)
        json_array_extend(arr, got);
    json_decref(got);
    return rc;
}

/* ---- stats ------------------------------------------------------------------------------ */

/* A non-negative number at path (integer or real), or -1 when missing. */
static double num(const json_t *j, const char *path)
{
    const json_t *v = bt_json_get((json_t *)j, path);
    if (json_is_integer(v))
        return json_integer_value(v) < 0 ? -1 : (double)json_integer_value(v);
    if (json_is_real(v))
        return json_real_value(v) < 0 ? -1 : json_real_value(v);
    return -1;
}

int docker_stats_compute(const json_t *s, double *cpu_pct, uint64_t *mem_usage, uint64_t *mem_limit)
{
    double usage = num(s, "memory_stats.usage"), limit = num(s, "memory_stats.limit");
    double total = num(s, "cpu_stats.cpu_usage.total_usage");
    if (!json_is_object(s) || usage < 0 || total < 0)
        return -1;
    /* Page cache is not the program's memory: cgroup v1 names it total_inactive_file, v2
     * inactive_file (what `docker stats` subtracts). */
    double cache = num(s, "memory_stats.stats.total_inactive_file");
    if (cache < 0)
        cache = num(s, "memory_stats.stats.inactive_file");
    if (cache > 0 && cache < usage)
        usage -= cache;
    double pre = num(s, "precpu_stats.cpu_usage.total_usage");
    double sys = num(s, "cpu_stats.system_cpu_usage"),
           presys = num(s, "precpu_stats.system_cpu_usage");
    double online = num(s, "cpu_stats.online_cpus");
    if (online <= 0) {
        const json_t *per = bt_json_get((json_t *)s, "cpu_stats.cpu_usage.percpu_usage");
        online = json_is_array(per) && json_array_size(per) ? (double)json_array_size(per) : 1;
    }
    double pct = 0;
    if (pre >= 0 && presys >= 0 && sys > presys && total > pre)
        pct = (total - pre) / (sys - presys) * online * 100.0;
    if (!(pct >= 0) || pct > online * 100.0)
        pct = pct > 0 ? online * 100.0 : 0;
    *cpu_pct = pct;
    *mem_usage = usage > 1.8e19 ? UINT64_MAX : (uint64_t)usage;
    *mem_limit = limit < 0 ? 0 : limit > 1.8e19 ? UINT64_MAX : (uint64_t)limit;
    return 0;
}
