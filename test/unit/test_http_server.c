/* Unit tests of the HTTP server (sdk/src/http_server*.c) over a unix socket: handlers see the
 * request and its body's fate (kept, too big, cut), connections are kept alive, limited in
 * number and cut off when idle or too slow, every accepted connection is closed exactly
 * once, and stop returns with clients still connected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <poll.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "baetyl/http_server.h"
#include "baetyl/util.h"

static char dir[64], path[100];
static atomic_int accepted, closed;

static bool on_accept(int fd, void **conn, void *arg)
{
    atomic_fetch_add(&accepted, 1);
    *conn = &accepted;
    return true;
}

static void on_close(void *conn, void *arg)
{
    assert_ptr_equal(conn, &accepted);
    atomic_fetch_add(&closed, 1);
}

/* Answers "<method> <path> <query> <body_len>/<seen> <too_big><cut>|<body>". */
static void on_request(bt_http_req *rq, bt_http_resp *resp, void *arg)
{
    resp->status = 200;
    resp->type = "text/plain";
    char *b = bt_strdup_printf("%s %s %s %zu/%llu %d%d|%s", rq->method, rq->path, rq->query,
                               rq->body_len, (unsigned long long)rq->body_seen, rq->body_too_big,
                               rq->body_cut, rq->body);
    resp->body = b;
    resp->len = b ? strlen(b) : 0;
    resp->free_body = true;
}

static bt_http_server *start(unsigned max_conns, int idle_ms)
{
    snprintf(dir, sizeof dir, "/tmp/bt-httpd-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/s.sock", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    bt_http_server_opts o = {.name = "test",
                             .max_connections = max_conns,
                             .idle_timeout_ms = idle_ms,
                             .max_body = 16,
                             .max_drop = 64,
                             .on_accept = on_accept,
                             .on_close = on_close,
                             .on_request = on_request};
    bt_http_server *s;
    char err[256];
    atomic_store(&accepted, 0);
    atomic_store(&closed, 0);
    assert_int_equal(bt_http_server_start(fd, &o, &s, err, sizeof err), 0);
    return s;
}

static void stop(bt_http_server *s)
{
    bt_http_server_stop(s);
    assert_int_equal(atomic_load(&accepted), atomic_load(&closed));
    unlink(path);
    rmdir(dir);
}

static int client(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void say(int fd, const char *text)
{
    assert_int_equal(send(fd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
}

/* Reads until the answer's body has its Content-Length (until the end when to_end): what
 * came. */
static char *hear_to(int fd, char *buf, size_t len, bool to_end)
{
    size_t got = 0;
    buf[0] = '\0';
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0)
            fail_msg("no answer: %s", buf);
        ssize_t n = recv(fd, buf + got, len - 1 - got, 0);
        if (n <= 0)
            return buf;
        got += (size_t)n;
        buf[got] = '\0';
        const char *cl = strstr(buf, "Content-Length: "), *b = strstr(buf, "\r\n\r\n");
        if (!to_end && cl && b && strlen(b + 4) >= strtoul(cl + 16, NULL, 10))
            return buf;
    }
}

static char *hear(int fd, char *buf, size_t len)
{
    return hear_to(fd, buf, len, false);
}

/* True when the server closed fd within ms. */
static bool closed_within(int fd, int ms)
{
    char c;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1 && recv(fd, &c, 1, 0) <= 0;
}

static void test_requests_and_bodies(void **state)
{
    (void)state;
    bt_http_server *s = start(4, 5000);
    char buf[4096];
    int fd = client();
    say(fd, "GET /a%20b?x=1 HTTP/1.1\r\n\r\n");
    assert_non_null(strstr(hear(fd, buf, sizeof buf), "\r\n\r\nGET /a b x=1 0/0 00|"));
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
    assert_null(strstr(buf, "Connection:"));
    /* kept alive: a body within max_body, then one over it, then one over max_drop */
    say(fd, "PUT /k HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_non_null(strstr(hear(fd, buf, sizeof buf), "PUT /k  5/5 00|hello"));
    say(fd, "PUT /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n01234567890123456789\r\n"
            "0\r\n\r\n");
    assert_non_null(strstr(hear(fd, buf, sizeof buf), "PUT /k  0/20 10|"));
    say(fd, "PUT /k HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    assert_non_null(strstr(hear(fd, buf, sizeof buf), "PUT /k  0/0 01|"));
    assert_non_null(strstr(buf, "Connection: close\r\n"));
    assert_true(closed_within(fd, 5000));
    close(fd);
    /* HEAD: no body; a refused request: its status and a close */
    fd = client();
    say(fd, "HEAD /h HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nX-Bad\r\n\r\n");
    hear_to(fd, buf, sizeof buf, true);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
    assert_null(strstr(buf, "|"));
    assert_non_null(strstr(buf, "\r\n\r\nHTTP/1.1 400 Bad Request\r\n"));
    assert_non_null(strstr(buf, "bad header line"));
    close(fd);
    stop(s);
}

static void test_limits_and_stop(void **state)
{
    (void)state;
    bt_http_server *s = start(2, 300);
    int a = client(), b = client();
    /* both held: a third is closed at once, without an answer */
    int64_t t0 = bt_now_ms();
    while (atomic_load(&accepted) < 2 && bt_now_ms() - t0 < 5000)
        usleep(1000);
    int c = client();
    assert_true(closed_within(c, 5000));
    close(c);
    /* a client dribbling its head is cut off by the idle timeout, like a silent one */
    say(a, "GET / HTTP/1.1\r\n");
    bool cut = false;
    for (int i = 0; i < 100 && !cut; i++) {
        if (send(a, "X", 1, MSG_NOSIGNAL) != 1)
            break;
        cut = closed_within(a, 50);
    }
    assert_true(cut || closed_within(a, 1000));
    assert_true(closed_within(b, 5000));
    close(a);
    close(b);
    /* stop with a connection open and idle */
    while (atomic_load(&closed) < 2)
        usleep(1000);
    int d = client();
    say(d, "GET / HTTP/1.1\r\n\r\n");
    char buf[1024];
    assert_non_null(strstr(hear(d, buf, sizeof buf), "200 OK"));
    stop(s);
    assert_true(closed_within(d, 1000));
    close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_and_bodies),
        cmocka_unit_test(test_limits_and_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
