/* The master API (SPEC §7) on the SDK's HTTP server (baetyl/http_server.h). Route, then
 * account, then body: an unknown route is 404, a bad account 401, a body over API_MAX_BODY
 * 413, a handler error 400 with its text. The listening socket is made here. */
#include "api_server.h"
#include "inspect.h"
#include "metrics.h"
#include "metrics_server.h"
#include "instance_log.h"
#include "baetyl/error.h"
#include "baetyl/util.h"
#include "names.h"

#include <baetyl/api.h>
#include <baetyl/http_server.h>
#include <baetyl/log.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <libgen.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_REPORT_DEPTH 32

/* Connection policy (issue 12.7): a connection that has not yet sent an authorised request
 * is closed after API_IDLE_TIMEOUT_S of silence (server.timeout applies once it has); a
 * local peer (SO_PEERCRED pid) holds at most API_PEER_CONNECTIONS; the total is far above
 * what an application's services use, so idle connections cannot lock them out. */
#define API_IDLE_TIMEOUT_S 5
#define API_PEER_CONNECTIONS 32
#define API_MAX_CONNECTIONS 1024
/* A connection's thread: a handler parses JSON bodies (jansson nests up to 2048 levels) and
 * calls the Docker API; pages never touched cost nothing. */
#define API_STACK ((size_t)512 << 10)

typedef struct peer {
    pid_t pid;
    unsigned n;
    struct peer *next;
} peer;

struct api_server {
    master *m;
    ota *o;
    bt_http_server *d;
    char *sock_path;         /* unix socket to remove at stop */
    unsigned auth_timeout_s; /* server.timeout, once a request was authorised */
    pthread_mutex_t peers_mu;
    peer *peers;      /* unix peers with open connections */
    uint64_t refused; /* connections refused over the per-peer limit */
    int64_t refused_logged_ms;
    bt_http_server *metrics; /* metrics.address listener, or NULL */
};

typedef enum {
    R_NONE,
    R_INSPECT,
    R_UPDATE,
    R_PORTS,
    R_START,
    R_STOP,
    R_REPORT,
    R_METRICS,
    R_LOGS
} route_t;

/* metrics_count_request's names of the routes above. */
static const char *const route_names[] = {"other", "inspect", "update",  "ports", "start",
                                          "stop",  "report",  "metrics", "logs"};

/* A refused request: on_head's decision, kept in the request's tag (the body is dropped). */
enum { REFUSED_NOT_FOUND = 404, REFUSED_UNAUTHORIZED = 401, REFUSED_FORBIDDEN = 403 };

/* ---- responses --------------------------------------------------------------------------- */

/* Sets the answer; 0, for `return reply(…)`. */
static int reply(bt_http_resp *resp, unsigned status, char *body, size_t len, const char *type)
{
    resp->status = (int)status;
    resp->body = body;
    resp->len = len;
    resp->free_body = body != NULL;
    resp->type = type;
    return 0;
}

/* Errors are plain text ending with a newline, like Go's http.Error. */
static int reply_text(bt_http_resp *resp, unsigned status, const char *text)
{
    char *b = bt_strdup_printf("%s\n", text);
    if (!b)
        return reply(resp, 500, NULL, 0, NULL);
    return reply(resp, status, b, strlen(b), "text/plain; charset=utf-8");
}

static int reply_json(bt_http_resp *resp, json_t *j)
{
    char *b = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!b)
        return reply_text(resp, 500, "out of memory");
    return reply(resp, 200, b, strlen(b), "application/json");
}

/* ---- routing ----------------------------------------------------------------------------- */

/* Splits "/v1/services/{s}/instances/{i}/{verb}"; the segments must be non-empty. */
static route_t route(const char *method, const char *url, char **svc, char **inst)
{
    bool get = strcmp(method, "GET") == 0, put = strcmp(method, "PUT") == 0;
    if (!strcmp(url, "/v1/system/inspect"))
        return get ? R_INSPECT : R_NONE;
    if (!strcmp(url, "/v1/system/update"))
        return put ? R_UPDATE : R_NONE;
    if (!strcmp(url, "/v1/ports/available"))
        return get ? R_PORTS : R_NONE;
    if (!strcmp(url, "/metrics"))
        return get ? R_METRICS : R_NONE;
    const char *pre = "/v1/services/";
    if (!(put || get) || strncmp(url, pre, strlen(pre)) != 0)
        return R_NONE;
    const char *s = url + strlen(pre);
    const char *e1 = strchr(s, '/');
    if (!e1 || e1 == s || strncmp(e1, "/instances/", 11) != 0)
        return R_NONE;
    const char *i = e1 + 11;
    const char *e2 = strchr(i, '/');
    if (!e2 || e2 == i)
        return R_NONE;
    const char *verb = e2 + 1;
    route_t r = get                       ? (!strcmp(verb, "logs") ? R_LOGS : R_NONE)
                : !strcmp(verb, "start")  ? R_START
                : !strcmp(verb, "stop")   ? R_STOP
                : !strcmp(verb, "report") ? R_REPORT
                                          : R_NONE;
    if (r == R_NONE)
        return R_NONE;
    *svc = strndup(s, (size_t)(e1 - s));
    *inst = strndup(i, (size_t)(e2 - i));
    if (!*svc || !*inst) {
        free(*svc);
        free(*inst);
        *svc = *inst = NULL;
        return R_NONE;
    }
    return r;
}

/* ---- handlers ---------------------------------------------------------------------------- */

/* Parses the body as a JSON object; an empty body is NULL with no error when allow_empty. */
static int parse_object(const bt_http_req *r, bool allow_empty, json_t **out, char *err,
                        size_t errlen)
{
    *out = NULL;
    if (r->body_len == 0) {
        if (allow_empty)
            return 0;
        return bt_errf(err, errlen, "request body invalid: empty");
    }
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &je);
    if (!j)
        return bt_errf(err, errlen, "request body invalid: %s (line %d, column %d)", je.text,
                       je.line, je.column);
    if (!json_is_object(j)) {
        json_decref(j);
        return bt_errf(err, errlen, "request body invalid: a JSON object is expected");
    }
    *out = j;
    return 0;
}

static int depth_of(const json_t *j, int limit)
{
    if (limit < 0)
        return 1;
    int d = 0;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            int x = depth_of(v, limit - 1);
            if (x > d)
                d = x;
        }
        return d + 1;
    }
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            int x = depth_of(v, limit - 1);
            if (x > d)
                d = x;
        }
        return d + 1;
    }
    return 0;
}

static int do_update(api_server *s, const bt_http_req *r, char *err, size_t errlen)
{
    json_t *j;
    if (parse_object(r, false, &j, err, errlen) != 0)
        return -1;
    int rc = 0;
    json_t *jt = json_object_get(j, "type"), *jp = json_object_get(j, "path"),
           *jr = json_object_get(j, "trace");
    if (!jp)
        jp = json_object_get(j, "file"); /* agents before 0.1.4 */
    const char *type = json_is_string(jt) ? json_string_value(jt) : "APP";
    if (jt && !json_is_string(jt))
        rc = bt_errf(err, errlen, "type: must be a string");
    else if (strcmp(type, "APP") != 0 && strcmp(type, "MST") != 0)
        rc = bt_errf(err, errlen, "type (%.64s) not supported: want APP or MST", type);
    else if (!json_is_string(jp) || json_string_length(jp) == 0 ||
             strlen(json_string_value(jp)) != json_string_length(jp))
        rc = bt_errf(err, errlen,
                     "path: required (a directory holding application.yml, or the file)");
    else if (jr && (!json_is_string(jr) || strlen(json_string_value(jr)) != json_string_length(jr)))
        rc = bt_errf(err, errlen, "trace: must be a string");
    else
        rc = ota_queue(s->o, !strcmp(type, "MST"), json_string_value(jp),
                       jr ? json_string_value(jr) : NULL, err, errlen);
    json_decref(j);
    return rc;
}

static int do_start(api_server *s, const char *svc, const char *inst, const bt_http_req *r,
                    char *err, size_t errlen)
{
    if (!valid_instance_name(inst))
        return bt_errf(err, errlen, "instance name (%.128s) invalid: want 1-128 of [A-Za-z0-9._-]",
                       inst);
    json_t *env;
    if (parse_object(r, true, &env, err, errlen) != 0)
        return -1;
    const char *k;
    json_t *v;
    int rc = 0;
    json_object_foreach(env, k, v)
    {
        if (!json_is_string(v)) {
            rc = bt_errf(err, errlen, "env (%.64s): value must be a string", k);
            break;
        }
        if (!*k || strchr(k, '=') || strlen(json_string_value(v)) != json_string_length(v)) {
            rc = bt_errf(err, errlen, "env (%.64s): invalid name or value", k);
            break;
        }
    }
    if (rc == 0)
        rc = master_instance_start(s->m, svc, inst, env, err, errlen);
    json_decref(env);
    return rc;
}

static int do_report(api_server *s, const char *svc, const char *inst, const bt_http_req *r,
                     char *err, size_t errlen)
{
    json_t *j;
    if (parse_object(r, false, &j, err, errlen) != 0)
        return -1;
    int rc;
    if (depth_of(j, MAX_REPORT_DEPTH) > MAX_REPORT_DEPTH)
        rc = bt_errf(err, errlen, "report too deeply nested (max %d levels)", MAX_REPORT_DEPTH);
    else
        rc = master_instance_report(s->m, svc, inst, j, err, errlen);
    json_decref(j);
    return rc;
}

static json_t *free_port(char *err, size_t errlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        bt_errf(err, errlen, "socket: %s", strerror(errno));
        return NULL;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        bt_errf(err, errlen, "bind: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    close(fd);
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)ntohs(a.sin_port));
    return json_pack("{s:s}", "port", port);
}

/* GET …/instances/{i}/logs?lines=N (default 50, at most ILOG_LINES_MAX): 200 with
 * {"state","exit_code","lines"}, 404 with {"error"} for an unknown service or instance. */
static int do_logs(api_server *s, const bt_http_req *rq, const char *svc, const char *inst,
                   bt_http_resp *resp)
{
    char q[32], err[512];
    int qr = bt_http_req_query(rq, "lines", q, sizeof q);
    long n = 50;
    if (qr != 0) {
        char *end;
        errno = 0;
        n = qr > 0 ? strtol(q, &end, 10) : -1;
        if (qr < 0 || !*q || *end || errno || n < 0) {
            snprintf(err, sizeof err, "lines (%.32s) must be a number from 0 to %d",
                     qr > 0 ? q : "?", ILOG_LINES_MAX);
            return reply_text(resp, 400, err);
        }
        if (n > ILOG_LINES_MAX)
            n = ILOG_LINES_MAX;
    }
    bool not_found;
    json_t *out = master_instance_logs(s->m, svc, inst, (int)n, &not_found, err, sizeof err);
    if (out)
        return reply_json(resp, out);
    if (!not_found)
        return reply_text(resp, 500, err);
    json_t *e = json_pack("{s:s}", "error", err);
    char *b = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    if (!b)
        return reply_text(resp, 500, "out of memory");
    return reply(resp, 404, b, strlen(b), "application/json");
}

/* The head: route and account are known now, so a refused request's body is read and
 * dropped, never kept. */
static void on_head(bt_http_req *rq, void *arg)
{
    api_server *s = arg;
    /* Every call, as Baetyl 1.0 logs it; debug, since the hub's and agent's periodic
     * reports would flood info. */
    bt_logf(BT_LOG_DEBUG, "[%s] %s", rq->method, rq->path);
    char *svc = NULL, *inst = NULL;
    route_t rt = route(rq->method, rq->path, &svc, &inst);
    const char *user = bt_http_req_header(rq, BT_API_HEADER_USERNAME);
    if (rt == R_NONE)
        rq->tag = REFUSED_NOT_FOUND;
    else if (!master_auth(s->m, user, bt_http_req_header(rq, BT_API_HEADER_PASSWORD)))
        rq->tag = REFUSED_UNAUTHORIZED;
    else if (svc && !master_may_act(s->m, user, svc))
        rq->tag = REFUSED_FORBIDDEN;
    else
        rq->idle_timeout_ms = (int)s->auth_timeout_s * 1000;
    rq->keep_body = rq->tag == 0;
    free(svc);
    free(inst);
}

static int serve(api_server *s, bt_http_req *rq, route_t rt, const char *svc, const char *inst,
                 bt_http_resp *resp)
{
    char err[1024];
    /* an unwanted body is read and dropped so the client gets the answer, but not forever */
    if (rq->body_cut)
        return reply_text(resp, 413, "request body too large");
    if (rq->tag == REFUSED_NOT_FOUND)
        return reply_text(resp, 404, "404 page not found");
    if (rq->tag == REFUSED_FORBIDDEN) {
        snprintf(err, sizeof err,
                 "account forbidden: service (%.128s) may not act on the "
                 "instances of service (%.128s)",
                 bt_http_req_header(rq, BT_API_HEADER_USERNAME), svc);
        return reply_text(resp, 403, err);
    }
    if (rq->tag)
        return reply_text(resp, 401, "account unauthorized");
    if (rq->body_too_big) {
        snprintf(err, sizeof err, "request body too large (max %u bytes)", API_MAX_BODY);
        return reply_text(resp, 413, err);
    }
    if (rt == R_LOGS)
        return do_logs(s, rq, svc, inst, resp);
    int hr = 0;
    json_t *out = NULL;
    switch (rt) {
    case R_INSPECT:
        out = inspect_build(s->m);
        if (!out)
            hr = bt_errf(err, sizeof err, "out of memory");
        break;
    case R_PORTS:
        out = free_port(err, sizeof err);
        if (!out)
            hr = -1;
        break;
    case R_UPDATE: hr = do_update(s, rq, err, sizeof err); break;
    case R_START: hr = do_start(s, svc, inst, rq, err, sizeof err); break;
    case R_STOP: hr = master_instance_stop(s->m, svc, inst, err, sizeof err); break;
    case R_REPORT: hr = do_report(s, svc, inst, rq, err, sizeof err); break;
    case R_METRICS: {
        size_t n;
        char *text = metrics_render(s->m, &n);
        if (!text)
            return reply_text(resp, 500, "out of memory");
        return reply(resp, 200, text, n, METRICS_CONTENT_TYPE);
    }
    default: break;
    }
    if (hr != 0) {
        json_decref(out);
        bt_logkv(BT_LOG_DEBUG, "api request failed", "method", rq->method, "url", rq->path, "error",
                 err, NULL);
        return reply_text(resp, 400, err);
    }
    if (out)
        return reply_json(resp, out);
    return reply(resp, 200, NULL, 0, NULL);
}

/* serve, and its answer counted for /metrics. */
static void on_request(bt_http_req *rq, bt_http_resp *resp, void *arg)
{
    char *svc = NULL, *inst = NULL;
    route_t rt = route(rq->method, rq->path, &svc, &inst);
    serve(arg, rq, rt, svc, inst, resp);
    metrics_count_request(route_names[rt], (unsigned)resp->status);
    free(svc);
    free(inst);
}

/* ---- connection policy ------------------------------------------------------------------ */

/* Counts a connection of pid; false when pid is at its limit. */
static bool peer_add(api_server *s, pid_t pid)
{
    pthread_mutex_lock(&s->peers_mu);
    peer *p = s->peers;
    while (p && p->pid != pid)
        p = p->next;
    bool ok = true;
    if (!p && (p = calloc(1, sizeof *p)) != NULL) {
        p->pid = pid;
        p->next = s->peers;
        s->peers = p;
    }
    if (!p || p->n >= API_PEER_CONNECTIONS) {
        ok = false;
        s->refused++;
        int64_t now = bt_now_ms();
        if (now - s->refused_logged_ms >= 10000) { /* once per 10 s, with the count */
            s->refused_logged_ms = now;
            char ps[24], n[24];
            snprintf(ps, sizeof ps, "%d", (int)pid);
            snprintf(n, sizeof n, "%llu", (unsigned long long)s->refused);
            bt_logkv(BT_LOG_WARN, "api connection refused: too many from one process", "pid", ps,
                     "refused", n, NULL);
        }
    } else {
        p->n++;
    }
    pthread_mutex_unlock(&s->peers_mu);
    return ok;
}

static void peer_del(api_server *s, pid_t pid)
{
    pthread_mutex_lock(&s->peers_mu);
    for (peer **pp = &s->peers; *pp; pp = &(*pp)->next) {
        peer *p = *pp;
        if (p->pid == pid) {
            if (--p->n == 0) {
                *pp = p->next;
                free(p);
            }
            break;
        }
    }
    pthread_mutex_unlock(&s->peers_mu);
}

/* The per-process limit on the unix socket: the peer is the process at the other end. A
 * connection over the limit is closed at once. */
static bool on_accept(int fd, void **conn, void *arg)
{
    api_server *s = arg;
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (!s->sock_path || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0 || uc.pid <= 0)
        return true;
    if (!peer_add(s, uc.pid))
        return false;
    *conn = (void *)(intptr_t)uc.pid;
    return true;
}

static void on_close(void *conn, void *arg)
{
    if (conn)
        peer_del(arg, (pid_t)(intptr_t)conn);
}

/* ---- listening ---------------------------------------------------------------------------- */

static int listen_unix(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path)
        return bt_errf(err, errlen, "unix socket path (%s) too long", path);
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return bt_errf(err, errlen, "listen %s: the path exists and is not a socket", path);
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof a) == 0) {
            close(probe);
            return bt_errf(err, errlen, "listen %s: address in use (is another master running?)",
                           path);
        }
        if (probe >= 0)
            close(probe);
        unlink(path); /* left by a master that was killed */
    }
    char *dir = strdup(path);
    if (!dir)
        return bt_errf(err, errlen, "out of memory");
    int r = bt_mkdir_p(dirname(dir), 0755, err, errlen);
    free(dir);
    if (r != 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bt_errf(err, errlen, "socket: %s", strerror(errno));
    /* 0660 (decided here): the umask narrows the socket from its creation on. */
    mode_t old = umask(0117);
    r = bind(fd, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    umask(old);
    if (r != 0 || chmod(path, 0660) != 0 || listen(fd, 128) != 0) {
        e = r != 0 ? e : errno;
        close(fd);
        return bt_errf(err, errlen, "listen %s: %s", path, strerror(e));
    }
    return fd;
}

int api_listen_tcp(const char *host, const char *port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *res;
    int gr = getaddrinfo(*host ? host : NULL, port, &hints, &res);
    if (gr != 0)
        return bt_errf(err, errlen, "listen tcp://%s:%s: %s", host, port, gai_strerror(gr));
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0)
            break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return bt_errf(err, errlen, "listen tcp://%s:%s: %s", host, port, strerror(e));
    return fd;
}

/* API_MAX_CONNECTIONS, or fewer when the descriptor limit is low: each connection is a
 * descriptor, and the services' pipes and the log need some too. */
static unsigned connection_limit(void)
{
    struct rlimit rl;
    unsigned n = API_MAX_CONNECTIONS;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 2 < n)
        n = rl.rlim_cur / 2 > 64 ? (unsigned)(rl.rlim_cur / 2) : 64;
    return n;
}

int api_server_start(master *m, ota *o, api_server **out, char *err, size_t errlen)
{
    api_server *s = calloc(1, sizeof *s);
    if (!s)
        return bt_errf(err, errlen, "out of memory");
    s->m = m;
    s->o = o;
    int fd = m->api.is_unix ? listen_unix(m->api.path, err, errlen)
                            : api_listen_tcp(m->api.host, m->api.port, err, errlen);
    if (fd < 0) {
        free(s);
        return -1;
    }
    if (m->api.is_unix && !(s->sock_path = strdup(m->api.path))) {
        close(fd);
        free(s);
        return bt_errf(err, errlen, "out of memory");
    }
    int64_t to = m->conf.server.timeout / 1000;
    s->auth_timeout_s = (unsigned)(to > 0 ? to : 1);
    unsigned idle = s->auth_timeout_s < API_IDLE_TIMEOUT_S ? s->auth_timeout_s : API_IDLE_TIMEOUT_S;
    pthread_mutex_init(&s->peers_mu, NULL);
    bt_http_server_opts so = {.name = "api",
                              .max_connections = connection_limit(),
                              .idle_timeout_ms = (int)idle * 1000,
                              .max_body = API_MAX_BODY,
                              .max_drop = 4 * (size_t)API_MAX_BODY,
                              .stack_size = API_STACK,
                              .on_accept = on_accept,
                              .on_close = on_close,
                              .on_head = on_head,
                              .on_request = on_request,
                              .arg = s};
    if (bt_http_server_start(fd, &so, &s->d, err, errlen) != 0) {
        pthread_mutex_destroy(&s->peers_mu);
        if (s->sock_path)
            unlink(s->sock_path);
        free(s->sock_path);
        free(s);
        return bt_errf(err, errlen, "failed to start the API server");
    }
    if (*m->conf.metrics.address &&
        !(s->metrics = metrics_server_start(m, m->conf.metrics.address, err, errlen))) {
        api_server_stop(s);
        return -1;
    }
    *out = s;
    return 0;
}

void api_server_stop(api_server *s)
{
    if (!s)
        return;
    metrics_server_stop(s->metrics);
    bt_http_server_stop(s->d); /* closes the listening socket too */
    if (s->sock_path) {
        unlink(s->sock_path);
        free(s->sock_path);
    }
    for (peer *p = s->peers, *nx; p; p = nx) {
        nx = p->next;
        free(p);
    }
    pthread_mutex_destroy(&s->peers_mu);
    free(s);
}
