/* Master API client against a tiny HTTP server run in a thread (unix socket in a temp dir,
 * or 127.0.0.1): it reads one request per connection, records it and sends a canned reply. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "baetyl/api.h"

/* ---- the canned server ------------------------------------------------------------------ */

typedef struct {
    int lfd;
    pthread_t th;
    char reply[8192]; /* raw HTTP reply */
    int conns;        /* connections to serve before the thread ends */
    int served;
    bool hang;       /* read the request, then wait for the client to go away */
    char req[65536]; /* the last request, raw */
    size_t reqlen;
    char dir[64], sock[128], addr[160];
} server;

static void srv_reply(server *s, int status, const char *body)
{
    snprintf(s->reply, sizeof s->reply,
             "HTTP/1.1 %d X\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s",
             status, strlen(body), body);
}

/* Reads one request (headers, then Content-Length bytes) with a 5 s bound. */
static size_t read_request(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 5000) <= 0)
            break;
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        size_t want = 0;
        for (char *h = buf; h && h < end; h = strstr(h, "\r\n"), h = h ? h + 2 : NULL)
            if (strncasecmp(h, "content-length:", 15) == 0)
                want = strtoul(h + 15, NULL, 10);
        if (len >= (size_t)(end + 4 - buf) + want)
            break;
    }
    buf[len] = '\0';
    return len;
}

static void *srv_main(void *arg)
{
    server *s = arg;
    while (s->served < s->conns) {
        struct pollfd p = {s->lfd, POLLIN, 0};
        if (poll(&p, 1, 5000) <= 0)
            break;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            break;
        char buf[sizeof s->req];
        size_t n = read_request(fd, buf, sizeof buf);
        memcpy(s->req, buf, n + 1);
        s->reqlen = n;
        if (s->hang) {
            char c;
            struct pollfd q = {fd, POLLIN, 0};
            if (poll(&q, 1, 5000) > 0)
                (void)!read(fd, &c, 1);
        } else {
            (void)!write(fd, s->reply, strlen(s->reply));
        }
        close(fd);
        s->served++;
    }
    return NULL;
}

/* Serves n more connections in a thread. */
static void srv_start(server *s, int n)
{
    s->conns = s->served + n;
    assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_wait(server *s)
{
    pthread_join(s->th, NULL);
}

static server *unix_server(void)
{
    server *s = calloc(1, sizeof *s);
    strcpy(s->dir, "/tmp/bt-api-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->sock, sizeof s->sock, "%s/api.sock", s->dir);
    snprintf(s->addr, sizeof s->addr, "unix://%s", s->sock);
    s->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, s->sock);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    srv_reply(s, 200, "");
    return s;
}

static server *tcp_server(void)
{
    server *s = calloc(1, sizeof *s);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    snprintf(s->addr, sizeof s->addr, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    srv_reply(s, 200, "");
    return s;
}

static void srv_free(server *s)
{
    close(s->lfd);
    if (s->sock[0])
        unlink(s->sock);
    if (s->dir[0])
        rmdir(s->dir);
    free(s);
}

/* ---- reading the recorded request -------------------------------------------------------- */

static void req_line(server *s, char *method, char *path)
{
    assert_int_equal(sscanf(s->req, "%15s %511s HTTP/1.1", method, path), 2);
}

/* The value of header `name`, or NULL when absent (static buffer). */
static const char *req_header(server *s, const char *name)
{
    static char val[1024];
    const char *end = strstr(s->req, "\r\n\r\n");
    size_t nl = strlen(name);
    for (const char *h = strstr(s->req, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n")) {
        const char *l = h + 2;
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ')
                v++;
            size_t n = strcspn(v, "\r");
            snprintf(val, sizeof val, "%.*s", (int)n, v);
            return val;
        }
    }
    return NULL;
}

static const char *req_body(server *s)
{
    const char *end = strstr(s->req, "\r\n\r\n");
    assert_non_null(end);
    return end + 4;
}

static void check_request(server *s, const char *method, const char *path)
{
    char m[16], p[512];
    req_line(s, m, p);
    assert_string_equal(m, method);
    assert_string_equal(p, path);
    assert_string_equal(req_header(s, "x-openedge-username"), "svc");
    assert_string_equal(req_header(s, "x-openedge-password"), "tok-123");
}

static bt_api_client *client_for(server *s, long timeout_ms)
{
    char err[256] = "";
    bt_api_options o = {s->addr, "svc", "tok-123", timeout_ms};
    bt_api_client *c = bt_api_new(&o, err, sizeof err);
    if (!c)
        fail_msg("bt_api_new(%s): %s", s->addr, err);
    return c;
}

/* ---- the calls ---------------------------------------------------------------------------- */

static void test_inspect_ok(void **state)
{
    (void)state;
    server *s = unix_server();
    srv_reply(s, 200, "{\"software\":{\"mode\":\"native\"},\"services\":[]}\n");
    srv_start(s, 1);
    bt_api_client *c = client_for(s, 0);
    char err[256] = "";
    json_t *j = NULL;
    char *raw = NULL;
    assert_int_equal(bt_api_inspect(c, &j, &raw, err, sizeof err), 0);
    srv_wait(s);
    check_request(s, "GET", "/v1/system/inspect");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "software"), "mode")),
                        "native");
    assert_string_equal(raw, "{\"software\":{\"mode\":\"native\"},\"services\":[]}\n");
    json_decref(j);
    free(raw);
    bt_api_free(c);
    srv_free(s);
}

static void test_inspect_unauthorized(void **state)
{
    (void)state;
    server *s = unix_server();
    srv_reply(s, 401, "account unauthorized\n");
    srv_start(s, 1);
    bt_api_client *c = client_for(s, 0);
    char err[256] = "";
    json_t *j = (json_t *)1;
    assert_int_equal(bt_api_inspect(c, &j, NULL, err, sizeof err), -1);
    srv_wait(s);
    assert_null(j);
    assert_string_equal(err, "401: account unauthorized");
    bt_api_free(c);
    srv_free(s);
}

static void test_inspect_bad_json(void **state)
{
    (void)state;
    server *s = unix_server();
    srv_reply(s, 200, "{\"software\": ");
    srv_start(s, 2);
    bt_api_client *c = client_for(s, 0);
    char err[256] = "";
    json_t *j = NULL;
    char *raw = NULL;
    assert_int_equal(bt_api_inspect(c, &j, &raw, err, sizeof err), -1);
    assert_null(j);
    assert_null(raw);
    assert_non_null(strstr(err, "invalid inspect reply"));
    /* Raw text alone is not parsed, so it is returned as is. */
    assert_int_equal(bt_api_inspect(c, NULL, &raw, err, sizeof err), 0);
    assert_string_equal(raw, "{\"software\": ");
    free(raw);
    srv_wait(s);
    bt_api_free(c);
    srv_free(s);
}

static void test_update_system(void **state)
{
    (void)state;
    server *s = unix_server();
    srv_start(s, 1);
    bt_api_client *c = client_for(s, 0);
    char err[256] = "";
    assert_int_equal(bt_api_update_system(c, NULL, "var/db/baetyl/app-v2", "t-1", err, sizeof err),
                     0);
    srv_wait(s);
    check_request(s, "PUT", "/v1/system/update");
    assert_string_equal(req_header(s, "content-type"), "application/json");
    json_t *b = json_loads(req_body(s), 0, NULL);
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(b, "type")), "APP");
    assert_string_equal(json_string_value(json_object_get(b, "path")), "var/db/baetyl/app-v2");
    assert_string_equal(json_string_value(json_object_get(b, "trace")), "t-1");
    assert_int_equal(json_object_size(b), 3);
    json_decref(b);

    /* A handler error: 400 with its text. Without a trace, the key is left out. */
    srv_reply(s, 400, "failed to update system: open x: no such file\n");
    srv_start(s, 1);
    assert_int_equal(bt_api_update_system(c, "MST", "x", NULL, err, sizeof err), -1);
    srv_wait(s);
    assert_string_equal(err, "400: failed to update system: open x: no such file");
    b = json_loads(req_body(s), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(b, "type")), "MST");
    assert_null(json_object_get(b, "trace"));
    json_decref(b);

    /* No path: refused before any request. */
    assert_int_equal(bt_api_update_system(c, NULL, "", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "path"));
    assert_int_equal(s->served, 2);
    bt_api_free(c);
    srv_free(s);
}

static int port_reply(server *s, bt_api_client *c, int status, const char *body, char *err,
                      size_t errlen)
{
    srv_reply(s, status, body);
    srv_start(s, 1);
    int port = bt_api_get_available_port(c, err, errlen);
    srv_wait(s);
    return port;
}

static void test_available_port(void **state)
{
    (void)state;
    server *s = unix_server();
    bt_api_client *c = client_for(s, 0);
    char err[256] = "";
    assert_int_equal(port_reply(s, c, 200, "{\"port\":\"43117\"}", err, sizeof err), 43117);
    check_request(s, "GET", "/v1/ports/available");
    assert_int_equal(port_reply(s, c, 200, "{\"port\":5000}", err, sizeof err), 5000);
    const char *bad[] = {"{\"port\":\"abc\"}",
                         "{\"port\":\"70000\"}",
                         "{\"port\":\"0\"}",
                         "{\"port\":\"-1\"}",
                         "{\"port\":\"12 \"}",
                         "{}",
                         "[1]",
                         "\"43117\"",
                         "{\"port\":null}",
                         "{\"port\":-5}",
                         "not json",
                         "",
                         NULL};
    for (int i = 0; bad[i]; i++) {
        err[0] = '\0';
        if (port_reply(s, c, 200, bad[i], err, sizeof err) != -1)
            fail_msg("reply %s accepted", bad[i]);
        assert_non_null(strstr(err, "invalid port reply"));
    }
    assert_int_equal(port_reply(s, c, 404, "404 page not found\n", err, sizeof err), -1);
    assert_string_equal(err, "404: 404 page not found");
    bt_api_free(c);
    srv_free(s);
}

static void test_start_instance(void **state)
{
    (void)state;
    server *s = unix_server();
    srv_start(s, 1);
    bt_api_client *c = client_for(s, 0);
    char err[256] = "";
    json_t *env = json_pack("{s:s, s:s}", "BAETYL_SERVICE_INSTANCE_ADDRESS", "127.0.0.1:50051", "X",
                            "é \"q\"");
    assert_int_equal(bt_api_start_instance(c, "fn py", "a/b?c%", env, err, sizeof err), 0);
    srv_wait(s);
    check_request(s, "PUT", "/v1/services/fn%20py/instances/a%2Fb%3Fc%25/start");
    assert_string_equal(req_header(s, "content-type"), "application/json");
    json_t *b = json_loads(req_body(s), 0, NULL);
    assert_true(json_equal(b, env));
    json_decref(b);

    /* No env: an empty object. */
    srv_start(s, 1);
    assert_int_equal(bt_api_start_instance(c, "f", "i", NULL, err, sizeof err), 0);
    srv_wait(s);
    assert_string_equal(req_body(s), "{}");

    srv_reply(s, 404, "service (nope) not found");
    srv_start(s, 1);
    assert_int_equal(bt_api_start_instance(c, "nope", "i", env, err, sizeof err), -1);
    srv_wait(s);
    assert_string_equal(err, "404: service (nope) not found");

    /* Refused before any request: non-string env, non-object env, missing names. */
    json_object_set_new(env, "N", json_integer(1));
    assert_int_equal(bt_api_start_instance(c, "f", "i", env, err, sizeof err), -1);
    assert_non_null(strstr(err, "N is not a string"));
    json_t *arr = json_array();
    assert_int_equal(bt_api_start_instance(c, "f", "i", arr, err, sizeof err), -1);
    assert_int_equal(bt_api_start_instance(c, "", "i", NULL, err, sizeof err), -1);
    assert_int_equal(bt_api_start_instance(c, "f", NULL, NULL, err, sizeof err), -1);
    assert_int_equal(s->served, 3);
    json_decref(arr);
    json_decref(env);
    bt_api_free(c);
    srv_free(s);
}

static void test_stop_instance(void **state)
{
    (void)state;
    server *s = unix_server();
    srv_start(s, 1);
    bt_api_client *c = client_for(s, 0);
    char err[256] = "";
    assert_int_equal(bt_api_stop_instance(c, "svc-a", "inst_1.x~", err, sizeof err), 0);
    srv_wait(s);
    check_request(s, "PUT", "/v1/services/svc-a/instances/inst_1.x~/stop");
    assert_string_equal(req_header(s, "content-length"), "0");
    assert_string_equal(req_body(s), "");
    bt_api_free(c);
    srv_free(s);
}

static void test_report_instance(void **state)
{
    (void)state;
    server *s = unix_server();
    srv_start(s, 1);
    bt_api_client *c = client_for(s, 0);
    char err[256] = "";
    json_t *st = json_pack("{s:{s:i, s:i}}", "stats", "msg_in", 12, "conns", 3);
    assert_int_equal(bt_api_report_instance(c, "localhub", "localhub", st, err, sizeof err), 0);
    srv_wait(s);
    check_request(s, "PUT", "/v1/services/localhub/instances/localhub/report");
    json_t *b = json_loads(req_body(s), 0, NULL);
    assert_true(json_equal(b, st));
    json_decref(b);
    json_t *num = json_integer(3);
    assert_int_equal(bt_api_report_instance(c, "a", "b", num, err, sizeof err), -1);
    assert_int_equal(bt_api_report_instance(c, "a", "b", NULL, err, sizeof err), -1);
    assert_int_equal(s->served, 1);
    json_decref(num);
    json_decref(st);
    bt_api_free(c);
    srv_free(s);
}

/* ---- errors ------------------------------------------------------------------------------ */

static void test_error_body_sanitised(void **state)
{
    (void)state;
    server *s = unix_server();
    srv_reply(s, 400, "  bad\r\nlevel=error msg=forged\t\n");
    srv_start(s, 1);
    bt_api_client *c = client_for(s, 0);
    char err[256] = "";
    assert_int_equal(bt_api_stop_instance(c, "a", "b", err, sizeof err), -1);
    srv_wait(s);
    assert_string_equal(err, "400: bad  level=error msg=forged");
    /* A long body is cut at the caller's buffer. */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    srv_reply(s, 500, big);
    srv_start(s, 1);
    char small[32];
    assert_int_equal(bt_api_stop_instance(c, "a", "b", small, sizeof small), -1);
    srv_wait(s);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, "500: xxxx", 9);
    bt_api_free(c);
    srv_free(s);
}

static void test_connection_refused(void **state)
{
    (void)state;
    char err[256] = "";
    bt_api_options o = {"unix:///tmp/bt-api-no-such-dir/none.sock", "svc", "tok", 0};
    bt_api_client *c = bt_api_new(&o, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(bt_api_get_available_port(c, err, sizeof err), -1);
    assert_non_null(strcasestr(err, "connect"));
    assert_non_null(strstr(err, "/tmp/bt-api-no-such-dir/none.sock"));
    bt_api_free(c);

    /* A tcp port nobody listens on: take a free one and close it. */
    server *s = tcp_server();
    char addr[160];
    strcpy(addr, s->addr);
    srv_free(s);
    o.address = addr;
    c = bt_api_new(&o, err, sizeof err);
    assert_non_null(c);
    err[0] = '\0';
    assert_int_equal(bt_api_stop_instance(c, "a", "b", err, sizeof err), -1);
    assert_non_null(strcasestr(err, "connect"));
    bt_api_free(c);
}

static void test_timeout(void **state)
{
    (void)state;
    server *s = unix_server();
    s->hang = true;
    srv_start(s, 1);
    bt_api_client *c = client_for(s, 300);
    char err[256] = "";
    assert_int_equal(bt_api_get_available_port(c, err, sizeof err), -1);
    assert_non_null(strcasestr(err, "timed out"));
    srv_wait(s);
    bt_api_free(c);
    srv_free(s);
}

static void test_garbage_reply(void **state)
{
    (void)state;
    server *s = unix_server();
    strcpy(s->reply, "SSH-2.0-OpenSSH\r\n\r\n");
    srv_start(s, 1);
    bt_api_client *c = client_for(s, 2000);
    char err[256] = "";
    assert_int_equal(bt_api_inspect(c, NULL, NULL, err, sizeof err), -1);
    assert_true(err[0] != '\0');
    srv_wait(s);
    bt_api_free(c);
    srv_free(s);
}

static void test_tcp(void **state)
{
    (void)state;
    server *s = tcp_server();
    srv_reply(s, 200, "{\"port\":\"50051\"}");
    srv_start(s, 1);
    bt_api_client *c = client_for(s, 0);
    char err[256] = "";
    assert_int_equal(bt_api_get_available_port(c, err, sizeof err), 50051);
    srv_wait(s);
    check_request(s, "GET", "/v1/ports/available");
    bt_api_free(c);
    srv_free(s);
}

/* Replies framed otherwise than by Content-Length, as any HTTP/1.1 server may send them:
 * chunked (in pieces, with an extension and a trailer) and delimited by the end of the
 * connection; and a Host header naming the address. */
static void test_reply_framings(void **state)
{
    (void)state;
    server *s = unix_server();
    strcpy(s->reply, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3;x=y\r\n{\"p\r\nd\r\nort\":\"4321\"}\r\n0\r\nX-T: 1\r\n\r\n");
    srv_start(s, 1);
    bt_api_client *c = client_for(s, 2000);
    char err[256] = "";
    assert_int_equal(bt_api_get_available_port(c, err, sizeof err), 4321);
    srv_wait(s);
    assert_string_equal(req_header(s, "host"), "localhost");

    strcpy(s->reply, "HTTP/1.0 200 OK\r\n\r\n{\"port\":\"1234\"}");
    srv_start(s, 1);
    assert_int_equal(bt_api_get_available_port(c, err, sizeof err), 1234);
    srv_wait(s);

    /* a cut chunked body is an error naming it, not a short reply */
    strcpy(s->reply, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{}");
    srv_start(s, 1);
    assert_int_equal(bt_api_inspect(c, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "before the end of the body"));
    srv_wait(s);
    bt_api_free(c);
    srv_free(s);
}

/* ---- addresses and the environment ----------------------------------------------------- */

static void test_bad_addresses(void **state)
{
    (void)state;
    struct {
        const char *addr, *want;
    } cases[] = {
        {"http://127.0.0.1:80", "(http)"},
        {"udp://x:1", "(udp)"},
        {"127.0.0.1:50050", "no scheme"},
        {"", "required"},
        {"unix://", "empty socket path"},
        {"tcp://", "tcp://host:port"},
        {"tcp://host", "tcp://host:port"},
        {"tcp://:80", "tcp://host:port"},
        {"tcp://host:0", "bad port"},
        {"tcp://host:65536", "bad port"},
        {"tcp://host:12ab", "bad port"},
        {"tcp://host:80/path", "bad port"},
        {"tcp://user@host:80", "bad character"},
        {"tcp://a/b:80", "bad character"},
        {"tcp://[::1:80", "bad IPv6"},
        {"tcp://[]:80", "bad IPv6"},
        {"tcp://[::1]", "tcp://host:port"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        bt_api_options o = {cases[i].addr, "svc", "tok", 0};
        bt_api_client *c = bt_api_new(&o, err, sizeof err);
        if (c || !strstr(err, cases[i].want))
            fail_msg("address '%s': got %p, err '%s', want '%s'", cases[i].addr, (void *)c, err,
                     cases[i].want);
    }
    char err[256] = "";
    assert_null(bt_api_new(NULL, err, sizeof err));

    char longp[200] = "unix:///";
    memset(longp + 8, 'a', 150);
    longp[158] = '\0';
    bt_api_options o = {longp, "svc", "tok", 0};
    assert_null(bt_api_new(&o, err, sizeof err));
    assert_non_null(strstr(err, "longer than"));

    /* Header injection through the credentials is refused. */
    bt_api_options inj = {"tcp://127.0.0.1:1", "svc", "tok\r\nx-evil: 1", 0};
    assert_null(bt_api_new(&inj, err, sizeof err));
    assert_non_null(strstr(err, "x-openedge-password"));

    bt_api_options v6 = {"tcp://[::1]:50050", "svc", "tok", 0};
    bt_api_client *c = bt_api_new(&v6, err, sizeof err);
    assert_non_null(c);
    bt_api_free(c);
}

static void test_relative_unix(void **state)
{
    (void)state;
    server *s = unix_server();
    srv_reply(s, 200, "{\"port\":\"1234\"}");
    srv_start(s, 1);
    char old[PATH_MAX];
    assert_non_null(getcwd(old, sizeof old));
    assert_int_equal(chdir(s->dir), 0);
    char err[256] = "";
    bt_api_options o = {"unix://api.sock", "svc", "tok-123", 0};
    bt_api_client *c = bt_api_new(&o, err, sizeof err);
    /* Resolved at creation: a later chdir does not matter. */
    assert_int_equal(chdir("/"), 0);
    assert_non_null(c);
    assert_int_equal(bt_api_get_available_port(c, err, sizeof err), 1234);
    srv_wait(s);
    assert_int_equal(chdir(old), 0);
    bt_api_free(c);
    srv_free(s);
}

static void clear_env(void)
{
    const char *names[] = {"BAETYL_MASTER_API_ADDRESS",
                           "BAETYL_SERVICE_NAME",
                           "BAETYL_SERVICE_TOKEN",
                           "OPENEDGE_MASTER_API_ADDRESS",
                           "OPENEDGE_SERVICE_NAME",
                           "OPENEDGE_SERVICE_TOKEN",
                           NULL};
    for (int i = 0; names[i]; i++)
        unsetenv(names[i]);
}

static void test_from_env(void **state)
{
    (void)state;
    char err[256] = "";
    clear_env();
    assert_null(bt_api_new_from_env(0, err, sizeof err));
    assert_non_null(strstr(err, "BAETYL_MASTER_API_ADDRESS"));

    server *s = unix_server();
    srv_reply(s, 200, "{\"port\":\"7\"}");

    /* Old OPENEDGE_* names alone. */
    setenv("OPENEDGE_MASTER_API_ADDRESS", s->addr, 1);
    setenv("OPENEDGE_SERVICE_NAME", "svc", 1);
    setenv("OPENEDGE_SERVICE_TOKEN", "tok-123", 1);
    bt_api_client *c = bt_api_new_from_env(0, err, sizeof err);
    assert_non_null(c);
    srv_start(s, 1);
    assert_int_equal(bt_api_get_available_port(c, err, sizeof err), 7);
    srv_wait(s);
    bt_api_free(c);
    check_request(s, "GET", "/v1/ports/available");

    /* BAETYL_* wins over OPENEDGE_*. */
    setenv("BAETYL_MASTER_API_ADDRESS", s->addr, 1);
    setenv("BAETYL_SERVICE_NAME", "new-svc", 1);
    setenv("BAETYL_SERVICE_TOKEN", "new-tok", 1);
    setenv("OPENEDGE_MASTER_API_ADDRESS", "http://wrong", 1);
    c = bt_api_new_from_env(0, err, sizeof err);
    assert_non_null(c);
    srv_start(s, 1);
    assert_int_equal(bt_api_get_available_port(c, err, sizeof err), 7);
    srv_wait(s);
    bt_api_free(c);
    assert_string_equal(req_header(s, "x-openedge-username"), "new-svc");
    assert_string_equal(req_header(s, "x-openedge-password"), "new-tok");

    /* No token (a dynamic instance): the header is still sent, empty. */
    unsetenv("BAETYL_SERVICE_TOKEN");
    unsetenv("OPENEDGE_SERVICE_TOKEN");
    c = bt_api_new_from_env(0, err, sizeof err);
    assert_non_null(c);
    srv_start(s, 1);
    assert_int_equal(bt_api_get_available_port(c, err, sizeof err), 7);
    srv_wait(s);
    bt_api_free(c);
    assert_string_equal(req_header(s, "x-openedge-password"), "");
    clear_env();
    srv_free(s);
}

/* ---- threads ------------------------------------------------------------------------------ */

#define THREADS 4
#define CALLS 5

static void *caller(void *arg)
{
    bt_api_client *c = arg;
    intptr_t ok = 0;
    for (int i = 0; i < CALLS; i++) {
        char err[256];
        if (bt_api_get_available_port(c, err, sizeof err) == 4242)
            ok++;
    }
    return (void *)ok;
}

static void test_threads(void **state)
{
    (void)state;
    server *s = unix_server();
    srv_reply(s, 200, "{\"port\":\"4242\"}");
    srv_start(s, THREADS * CALLS);
    bt_api_client *c = client_for(s, 0);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, caller, c), 0);
    intptr_t total = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(th[i], &r);
        total += (intptr_t)r;
    }
    srv_wait(s);
    assert_int_equal(total, THREADS * CALLS);
    assert_int_equal(s->served, THREADS * CALLS);
    bt_api_free(c);
    srv_free(s);
}

static void test_escape(void **state)
{
    (void)state;
    char *e = bt_api_escape("Az09-._~ /?#%é");
    assert_string_equal(e, "Az09-._~%20%2F%3F%23%25%C3%A9");
    free(e);
    e = bt_api_escape(NULL);
    assert_string_equal(e, "");
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inspect_ok),
        cmocka_unit_test(test_inspect_unauthorized),
        cmocka_unit_test(test_inspect_bad_json),
        cmocka_unit_test(test_update_system),
        cmocka_unit_test(test_available_port),
        cmocka_unit_test(test_start_instance),
        cmocka_unit_test(test_stop_instance),
        cmocka_unit_test(test_report_instance),
        cmocka_unit_test(test_error_body_sanitised),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_garbage_reply),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_reply_framings),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_relative_unix),
        cmocka_unit_test(test_from_env),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
