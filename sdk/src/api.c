/* Client of the master API (SPEC §7): HTTP/1.1 over a unix socket or tcp, one connection
 * per request (Connection: close), parsed by http_reply.c. The client is immutable once
 * built, which is what makes sharing it across threads safe without a lock. No libcurl:
 * the master API is plain HTTP to a local peer, so every module but the agent (HTTPS to the
 * cloud) runs without it (issue #18's footprint). */
#include "baetyl/api.h"
#include "baetyl/buf.h"
#include "baetyl/error.h"
#include "baetyl/util.h"
#include "http_reply.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A reply bigger than this is hostile or broken: inspect results are a few KiB. */
#define API_MAX_REPLY (64u << 20)

struct bt_api_client {
    char *host;     /* Host header: "localhost" (unix), "host:port" or "[v6]:port" (tcp) */
    char *sock;     /* unix socket path, NULL for tcp */
    char *tcp_host; /* tcp: host and port to connect to */
    char *tcp_port;
    char *hdr_user; /* ready-made header lines, CRLF included */
    char *hdr_pass;
    long timeout_ms;
};

/* ---- building a client ----------------------------------------------------------------- */

char *bt_api_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!s)
        s = "";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) && *p < 0x80) {
            *o++ = (char)*p;
        } else if (*p == '-' || *p == '.' || *p == '_' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* One header line with its CRLF (an empty value is still sent: "name:"). */
static char *make_header(const char *name, const char *value, char *err, size_t errlen)
{
    if (!value)
        value = "";
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            bt_errf(err, errlen, "%s contains a control character", name);
            return NULL;
        }
    }
    char *h = NULL;
    int rc = *value ? asprintf(&h, "%s: %s\r\n", name, value) : asprintf(&h, "%s:\r\n", name);
    if (rc < 0) {
        bt_errf(err, errlen, "out of memory");
        return NULL;
    }
    return h;
}

#define ADDR_ERR(...) (bt_errf(err, errlen, __VA_ARGS__), bt_api_addr_free(a), -1)

static bool host_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '.' || ch == '-' || ch == '_';
}

static int addr_unix(const char *address, const char *p, const char *pwd, bt_api_addr *a, char *err,
                     size_t errlen)
{
    const size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    if (!*p)
        return ADDR_ERR("invalid master API address (%s): empty socket path", address);
    a->is_unix = true;
    a->path = pwd ? bt_path_join(pwd, p) : strdup(p);
    if (!a->path)
        return ADDR_ERR("out of memory");
    if (strlen(a->path) > max)
        return ADDR_ERR("invalid master API address (%s): socket path too long (longer than "
                        "%zu bytes)",
                        address, max);
    return 0;
}

static int addr_tcp(const char *address, const char *hp, bt_api_addr *a, char *err, size_t errlen)
{
    const char *colon, *h = hp, *he;
    if (hp[0] == '[') { /* IPv6 literal */
        const char *close = strchr(hp, ']');
        if (!close || close == hp + 1)
            return ADDR_ERR("invalid master API address (%s): bad IPv6 host", address);
        for (const char *p = hp + 1; p < close; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return ADDR_ERR("invalid master API address (%s): bad IPv6 host", address);
        colon = close[1] == ':' ? close + 1 : NULL;
        h = hp + 1;
        he = close;
    } else {
        colon = strchr(hp, ':');
        he = colon ? colon : hp + strlen(hp);
        for (const char *p = hp; p < he; p++)
            if (!host_char(*p))
                return ADDR_ERR("invalid master API address (%s): bad character in host", address);
    }
    if (!colon || colon == hp)
        return ADDR_ERR("invalid master API address (%s): want tcp://host:port", address);
    const char *port = colon + 1;
    size_t np = strspn(port, "0123456789");
    long pn = np > 0 && np <= 5 ? strtol(port, NULL, 10) : 0;
    if (np == 0 || port[np] != '\0' || pn < 1 || pn > 65535)
        return ADDR_ERR("invalid master API address (%s): bad port (want 1-65535)", address);
    a->host = strndup(h, (size_t)(he - h));
    a->port = strdup(port);
    if (!a->host || !a->port)
        return ADDR_ERR("out of memory");
    return 0;
}

int bt_api_addr_parse(const char *address, const char *pwd, bt_api_addr *a, char *err,
                      size_t errlen)
{
    memset(a, 0, sizeof *a);
    const char *sep = address ? strstr(address, "://") : NULL;
    if (!address || !*address)
        return bt_errf(err, errlen, "master API address required");
    if (!sep)
        return bt_errf(err, errlen,
                       "invalid master API address (%s): no scheme, want unix:// "
                       "or tcp://",
                       address);
    if (sep - address == 4 && strncmp(address, "unix", 4) == 0)
        return addr_unix(address, sep + 3, pwd, a, err, errlen);
    if (sep - address == 3 && strncmp(address, "tcp", 3) == 0)
        return addr_tcp(address, sep + 3, a, err, errlen);
    return bt_errf(err, errlen,
                   "unsupported scheme (%.*s) in master API address, want unix:// "
                   "or tcp://",
                   (int)(sep - address > 32 ? 32 : sep - address), address);
}

void bt_api_addr_free(bt_api_addr *a)
{
    free(a->path);
    free(a->host);
    free(a->port);
    memset(a, 0, sizeof *a);
}

/* The socket path taken from the cwd of now, so that a later chdir does not move it. */
static int client_socket(bt_api_client *c, const char *path, char *err, size_t errlen)
{
    const size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    if (path[0] == '/') {
        c->sock = strdup(path);
    } else {
        char *cwd = getcwd(NULL, 0);
        if (!cwd)
            return bt_errf(err, errlen, "getcwd: %s", strerror(errno));
        c->sock = bt_path_join(cwd, path);
        free(cwd);
        /* An absolute path longer than sun_path can still be reached relatively. */
        if (c->sock && strlen(c->sock) > max) {
            free(c->sock);
            c->sock = strdup(path);
        }
    }
    if (!c->sock)
        return bt_errf(err, errlen, "out of memory");
    c->host = strdup("localhost");
    return c->host ? 0 : bt_errf(err, errlen, "out of memory");
}

bt_api_client *bt_api_new(const bt_api_options *o, char *err, size_t errlen)
{
    bt_api_addr a;
    if (bt_api_addr_parse(o ? o->address : NULL, NULL, &a, err, errlen) != 0)
        return NULL;
    bt_api_client *c = calloc(1, sizeof *c);
    if (!c) {
        bt_api_addr_free(&a);
        bt_errf(err, errlen, "out of memory");
        return NULL;
    }
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : BT_API_DEFAULT_TIMEOUT_MS;
    int rc;
    if (a.is_unix) {
        rc = client_socket(c, a.path, err, errlen);
    } else {
        bool v6 = strchr(a.host, ':') != NULL;
        if (asprintf(&c->host, v6 ? "[%s]:%s" : "%s:%s", a.host, a.port) < 0)
            c->host = NULL;
        c->tcp_host = strdup(a.host);
        c->tcp_port = strdup(a.port);
        rc = c->host && c->tcp_host && c->tcp_port ? 0 : bt_errf(err, errlen, "out of memory");
    }
    bt_api_addr_free(&a);
    if (rc == 0) {
        c->hdr_user = make_header(BT_API_HEADER_USERNAME, o->username, err, errlen);
        c->hdr_pass =
            c->hdr_user ? make_header(BT_API_HEADER_PASSWORD, o->password, err, errlen) : NULL;
        if (!c->hdr_pass)
            rc = -1;
    }
    if (rc < 0) {
        bt_api_free(c);
        return NULL;
    }
    return c;
}

/* The first of two variables that is set and not empty. */
static const char *env2(const char *a, const char *b)
{
    const char *v = getenv(a);
    if (v && *v)
        return v;
    v = getenv(b);
    return v && *v ? v : NULL;
}

bt_api_client *bt_api_new_from_env(long timeout_ms, char *err, size_t errlen)
{
    bt_api_options o = {
        .address = env2("BAETYL_MASTER_API_ADDRESS", "OPENEDGE_MASTER_API_ADDRESS"),
        .username = env2("BAETYL_SERVICE_NAME", "OPENEDGE_SERVICE_NAME"),
        .password = env2("BAETYL_SERVICE_TOKEN", "OPENEDGE_SERVICE_TOKEN"),
        .timeout_ms = timeout_ms,
    };
    if (!o.address) {
        bt_errf(err, errlen, "BAETYL_MASTER_API_ADDRESS (or OPENEDGE_MASTER_API_ADDRESS) not set");
        return NULL;
    }
    return bt_api_new(&o, err, errlen);
}

void bt_api_free(bt_api_client *c)
{
    if (!c)
        return;
    free(c->host);
    free(c->sock);
    free(c->tcp_host);
    free(c->tcp_port);
    free(c->hdr_user);
    free(c->hdr_pass);
    free(c);
}

/* ---- one request --------------------------------------------------------------------- */

static int open_conn(bt_api_client *c, int64_t deadline, char *err, size_t errlen)
{
    if (c->sock) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", c->sock);
        int fd = bt_http_connect((struct sockaddr *)&sa, sizeof sa, deadline);
        if (fd < 0)
            bt_errf(err, errlen, "cannot connect to the master API (unix socket %s): %s", c->sock,
                    errno == ETIMEDOUT ? "timed out" : strerror(errno));
        return fd;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    int g = getaddrinfo(c->tcp_host, c->tcp_port, &hints, &res);
    if (g != 0)
        return bt_errf(err, errlen, "cannot connect to the master API (%s): %s", c->host,
                       gai_strerror(g));
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = bt_http_connect(ai->ai_addr, ai->ai_addrlen, deadline);
        e = errno;
    }
    freeaddrinfo(res);
    if (fd < 0)
        bt_errf(err, errlen, "cannot connect to the master API (%s): %s", c->host,
                e == ETIMEDOUT ? "timed out" : strerror(e));
    return fd;
}

/* The request's head. GET without a body sends no Content-Length; any other method sends
 * one, 0 included (the master reads a PUT's body by it). */
static char *request_head(bt_api_client *c, const char *method, const char *path, const char *body,
                          size_t body_len)
{
    char len[48] = "";
    if (body || strcmp(method, "GET") != 0)
        snprintf(len, sizeof len, "Content-Length: %zu\r\n", body ? body_len : 0);
    char *head = NULL;
    if (asprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%sConnection: close\r\n\r\n", method,
                 path, c->host, c->hdr_user, c->hdr_pass,
                 body ? "Content-Type: application/json\r\n" : "", len) < 0)
        return NULL;
    return head;
}

/* "<status>: <body>" with the body trimmed and its control characters blanked, so a
 * hostile reply cannot forge log lines. */
static void status_error(long status, const char *body, size_t len, char *err, size_t errlen)
{
    while (len > 0 && isspace((unsigned char)*body)) {
        body++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)body[len - 1]))
        len--;
    if (!err || errlen == 0)
        return;
    int n = snprintf(err, errlen, len ? "%ld: " : "%ld", status);
    if (n < 0 || (size_t)n >= errlen)
        return;
    size_t o = (size_t)n;
    for (size_t i = 0; i < len && o + 1 < errlen; i++) {
        unsigned char ch = (unsigned char)body[i];
        err[o++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    err[o] = '\0';
}

bool bt_http_method_ok(const char *m)
{
    if (!m || !*m)
        return false;
    for (; *m; m++)
        if (*m < 'A' || *m > 'Z')
            return false;
    return true;
}

int bt_api_request(bt_api_client *c, const char *method, const char *path, const char *body,
                   size_t body_len, char **resp, size_t *resp_len, char *err, size_t errlen)
{
    if (resp)
        *resp = NULL;
    if (resp_len)
        *resp_len = 0;
    if (!c || !bt_http_method_ok(method) || !path || path[0] != '/')
        return bt_errf(err, errlen, "invalid request");
    for (const char *p = path; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return bt_errf(err, errlen, "invalid request path (unencoded character)");
    }
    char what[96];
    snprintf(what, sizeof what, "%s %.80s", method, path);
    char *head = request_head(c, method, path, body, body_len);
    bt_http_reply *r = malloc(sizeof *r); /* 8 KiB of line buffer: not on a small stack */
    if (!head || !r) {
        free(head);
        free(r);
        return bt_errf(err, errlen, "out of memory");
    }
    bt_http_reply_init(r, API_MAX_REPLY);
    int64_t deadline = bt_now_ms() + c->timeout_ms;
    int rc = -1, fd = open_conn(c, deadline, err, errlen);
    if (fd < 0)
        goto out;
    bt_http_io io = {.fd = fd, .deadline = deadline, .cancel_fd = -1};
    if (bt_http_send_all(&io, head, strlen(head)) < 0 ||
        (body && bt_http_send_all(&io, body, body_len) < 0)) {
        bt_errf(err, errlen, "%s: send: %s", what,
                errno == ETIMEDOUT ? "timed out" : strerror(errno));
        goto out;
    }
    if (bt_http_read_reply(&io, r, what, err, errlen) < 0)
        goto out;
    const char *text = r->body.p ? (const char *)r->body.p + r->body.off : "";
    size_t len = bt_buf_size(&r->body);
    if (r->status < 200 || r->status > 299) {
        status_error(r->status, text, len, err, errlen);
        goto out;
    }
    if (resp) {
        /* the reply's memory goes to the caller */
        if (r->body.p && r->body.off == 0) {
            *resp = (char *)r->body.p; /* NUL-terminated by bt_buf_append_nul */
            memset(&r->body, 0, sizeof r->body);
        } else if ((*resp = malloc(len + 1))) {
            memcpy(*resp, text, len);
            (*resp)[len] = '\0';
        } else {
            bt_errf(err, errlen, "out of memory");
            goto out;
        }
        if (resp_len)
            *resp_len = len;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    bt_http_reply_free(r);
    free(r);
    free(head);
    return rc;
}

/* ---- the six calls ---------------------------------------------------------------------- */

/* Sends obj as a compact JSON body. */
static int request_json(bt_api_client *c, const char *method, const char *path, const json_t *obj,
                        char **resp, size_t *resp_len, char *err, size_t errlen)
{
    char *body = json_dumps(obj, JSON_COMPACT);
    if (!body)
        return bt_errf(err, errlen, "cannot encode request body");
    int rc = bt_api_request(c, method, path, body, strlen(body), resp, resp_len, err, errlen);
    free(body);
    return rc;
}

/* Parses a reply that must be a JSON object. */
static json_t *parse_object(const char *what, const char *text, size_t len, char *err,
                            size_t errlen)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    if (!j) {
        bt_errf(err, errlen, "invalid %s reply: %s (line %d)", what, je.text, je.line);
        return NULL;
    }
    if (!json_is_object(j)) {
        bt_errf(err, errlen, "invalid %s reply: not a JSON object", what);
        json_decref(j);
        return NULL;
    }
    return j;
}

int bt_api_inspect(bt_api_client *c, json_t **json, char **raw, char *err, size_t errlen)
{
    if (json)
        *json = NULL;
    if (raw)
        *raw = NULL;
    char *text = NULL;
    size_t len = 0;
    if (bt_api_request(c, "GET", "/v1/system/inspect", NULL, 0, &text, &len, err, errlen) < 0)
        return -1;
    if (json && !(*json = parse_object("inspect", text, len, err, errlen))) {
        free(text);
        return -1;
    }
    if (raw)
        *raw = text;
    else
        free(text);
    return 0;
}

int bt_api_update_system(bt_api_client *c, const char *type, const char *path, const char *trace,
                         char *err, size_t errlen)
{
    if (!path || !*path)
        return bt_errf(err, errlen, "update: path required");
    json_t *o = json_pack("{s:s, s:s}", "type", type && *type ? type : "APP", "path", path);
    if (o && trace && json_object_set_new(o, "trace", json_string(trace)) < 0) {
        json_decref(o);
        o = NULL;
    }
    if (!o)
        return bt_errf(err, errlen, "update: cannot encode request (strings must be UTF-8)");
    int rc = request_json(c, "PUT", "/v1/system/update", o, NULL, NULL, err, errlen);
    json_decref(o);
    return rc;
}

int bt_api_get_available_port(bt_api_client *c, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    if (bt_api_request(c, "GET", "/v1/ports/available", NULL, 0, &text, &len, err, errlen) < 0)
        return -1;
    json_t *j = parse_object("port", text, len, err, errlen);
    free(text);
    if (!j)
        return -1;
    /* The master sends the port as a string ({"port":"43117"}); a number is accepted too. */
    json_t *p = json_object_get(j, "port");
    long port = -1;
    if (json_is_string(p)) {
        const char *s = json_string_value(p);
        size_t n = strspn(s, "0123456789");
        if (n > 0 && n <= 5 && s[n] == '\0')
            port = strtol(s, NULL, 10);
    } else if (json_is_integer(p)) {
        json_int_t v = json_integer_value(p);
        port = v >= 0 && v <= 65535 ? (long)v : -1;
    }
    json_decref(j);
    if (port < 1 || port > 65535)
        return bt_errf(err, errlen, "invalid port reply: want {\"port\":\"<1..65535>\"}");
    return (int)port;
}

/* "/v1/services/<s>/instances/<i>/<action>" with both names percent-encoded. */
static char *instance_path(const char *service, const char *instance, const char *action, char *err,
                           size_t errlen)
{
    if (!service || !*service || !instance || !*instance) {
        bt_errf(err, errlen, "%s: service and instance names required", action);
        return NULL;
    }
    char *s = bt_api_escape(service), *i = bt_api_escape(instance), *path = NULL;
    if (!s || !i || asprintf(&path, "/v1/services/%s/instances/%s/%s", s, i, action) < 0) {
        path = NULL;
        bt_errf(err, errlen, "out of memory");
    }
    free(s);
    free(i);
    return path;
}

int bt_api_start_instance(bt_api_client *c, const char *service, const char *instance,
                          const json_t *env, char *err, size_t errlen)
{
    if (env && !json_is_object(env))
        return bt_errf(err, errlen, "start: env must be a JSON object");
    if (env) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)env, k, v)
        {
            if (!json_is_string(v))
                return bt_errf(err, errlen, "start: env %s is not a string", k);
        }
    }
    char *path = instance_path(service, instance, "start", err, errlen);
    if (!path)
        return -1;
    json_t *empty = env ? NULL : json_object();
    int rc = request_json(c, "PUT", path, env ? env : empty, NULL, NULL, err, errlen);
    json_decref(empty);
    free(path);
    return rc;
}

int bt_api_stop_instance(bt_api_client *c, const char *service, const char *instance, char *err,
                         size_t errlen)
{
    char *path = instance_path(service, instance, "stop", err, errlen);
    if (!path)
        return -1;
    int rc = bt_api_request(c, "PUT", path, NULL, 0, NULL, NULL, err, errlen);
    free(path);
    return rc;
}

int bt_api_report_instance(bt_api_client *c, const char *service, const char *instance,
                           const json_t *stats, char *err, size_t errlen)
{
    if (!json_is_object(stats))
        return bt_errf(err, errlen, "report: stats must be a JSON object");
    char *path = instance_path(service, instance, "report", err, errlen);
    if (!path)
        return -1;
    int rc = request_json(c, "PUT", path, stats, NULL, NULL, err, errlen);
    free(path);
    return rc;
}
