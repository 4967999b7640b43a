/* Client of the master API (SPEC §7) on libcurl. The client is immutable once built and
 * every request gets its own easy handle, which is what makes sharing it across threads
 * safe without a lock. */
#include "baetyl/api.h"
#include "baetyl/buf.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>

/* A reply bigger than this is hostile or broken: inspect results are a few KiB. */
#define API_MAX_REPLY (64u << 20)

struct bt_api_client {
    char *base;     /* "http://localhost" (unix) or "http://host:port" (tcp) */
    char *sock;     /* unix socket path, NULL for tcp */
    char *hdr_user; /* ready-made header lines */
    char *hdr_pass;
    long timeout_ms;
};

/* ---- curl global state: initialised once per process ------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_ALL);
}

static int ensure_curl(char *err, size_t errlen)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return bt_errf(err, errlen, "curl_global_init: %s", curl_easy_strerror(curl_init_rc));
    return 0;
}

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

/* One header line; curl drops "name:" with nothing after it, "name;" sends it empty. */
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
    int rc = *value ? asprintf(&h, "%s: %s", name, value) : asprintf(&h, "%s;", name);
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
    c->base = strdup("http://localhost");
    return c->base ? 0 : bt_errf(err, errlen, "out of memory");
}

bt_api_client *bt_api_new(const bt_api_options *o, char *err, size_t errlen)
{
    bt_api_addr a;
    if (bt_api_addr_parse(o ? o->address : NULL, NULL, &a, err, errlen) != 0)
        return NULL;
    if (ensure_curl(err, errlen) < 0) {
        bt_api_addr_free(&a);
        return NULL;
    }
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
        if (asprintf(&c->base, v6 ? "http://[%s]:%s" : "http://%s:%s", a.host, a.port) < 0)
            c->base = NULL;
        rc = c->base ? 0 : bt_errf(err, errlen, "out of memory");
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
    free(c->base);
    free(c->sock);
    free(c->hdr_user);
    free(c->hdr_pass);
    free(c);
}

/* ---- one request --------------------------------------------------------------------- */

typedef struct {
    bt_buf body; /* NUL-terminated */
    bool too_big;
} reply_buf;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    reply_buf *b = ud;
    size_t add = size * n;
    if (add > API_MAX_REPLY - b->body.len) {
        b->too_big = true;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    return bt_buf_append_nul(&b->body, p, add) == 0 ? add : 0;
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

static bool method_ok(const char *m)
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
    if (!c || !method_ok(method) || !path || path[0] != '/')
        return bt_errf(err, errlen, "invalid request");
    for (const char *p = path; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return bt_errf(err, errlen, "invalid request path (unencoded character)");
    }
    char *url = NULL;
    if (asprintf(&url, "%s%s", c->base, path) < 0)
        return bt_errf(err, errlen, "out of memory");
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL, *tmp;
    const char *lines[] = {c->hdr_user, c->hdr_pass,
                           "Expect:", body ? "Content-Type: application/json" : NULL};
    int rc = -1;
    if (!h) {
        bt_errf(err, errlen, "curl_easy_init failed");
        goto out;
    }
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        if (!lines[i])
            continue;
        if (!(tmp = curl_slist_append(hdrs, lines[i]))) {
            bt_errf(err, errlen, "out of memory");
            goto out;
        }
        hdrs = tmp;
    }

    char cerr[CURL_ERROR_SIZE] = "";
    reply_buf reply = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (c->sock)
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->sock);
    curl_easy_setopt(h, CURLOPT_PROXY, "");    /* never through an http_proxy of the env */
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
    if (!body && strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        /* POSTFIELDS sends the body (or an explicit Content-Length: 0) with any method. */
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }

    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        if (reply.too_big)
            bt_errf(err, errlen, "%s %s: reply larger than %u bytes", method, path, API_MAX_REPLY);
        else if (c->sock && cc == CURLE_COULDNT_CONNECT) /* curl would say "localhost port 80" */
            bt_errf(err, errlen, "%s (unix socket %s)", curl_easy_strerror(cc), c->sock);
        else
            bt_errf(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(cc));
        bt_buf_free(&reply.body);
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
        status_error(status, reply.body.p ? (char *)reply.body.p : "", reply.body.len, err, errlen);
        bt_buf_free(&reply.body);
        goto out;
    }
    if (resp) {
        /* the reply's memory goes to the caller */
        *resp = reply.body.p ? (char *)reply.body.p : strdup("");
        if (!*resp) {
            bt_errf(err, errlen, "out of memory");
            goto out;
        }
        if (resp_len)
            *resp_len = reply.body.len;
    } else {
        bt_buf_free(&reply.body);
    }
    rc = 0;
out:
    curl_slist_free_all(hdrs);
    if (h)
        curl_easy_cleanup(h);
    free(url);
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
