/* Unit tests of the SDK's one-request HTTP client over a unix socket (baetyl/http.h), against
 * a canned server thread: kept and streamed bodies, an error answer of a streaming call kept
 * for its message, a reader that stops, the timeout, the cancel fd, and refused requests. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "baetyl/http.h"

static char dir[64], sock[100];
static int lfd = -1;
static const char *answer; /* NULL: read the request and never answer */
static char request[4096];

/* One connection: reads the request head (and a body of its Content-Length), answers. */
static void *serve(void *arg)
{
    (void)arg;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    size_t n = 0;
    char *end = NULL;
    while (n < sizeof request - 1 && !end) {
        ssize_t r = read(fd, request + n, sizeof request - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        request[n] = '\0';
        end = strstr(request, "\r\n\r\n");
    }
    const char *cl = strstr(request, "Content-Length: ");
    size_t want = end ? (size_t)(end + 4 - request) + (cl ? strtoul(cl + 16, NULL, 10) : 0) : 0;
    while (n < want && n < sizeof request - 1) {
        ssize_t r = read(fd, request + n, sizeof request - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        request[n] = '\0';
    }
    if (answer) {
        if (write(fd, answer, strlen(answer)) < 0)
            perror("write");
    } else {
        char b;
        while (read(fd, &b, 1) > 0) /* until the client gives up */
            ;
    }
    close(fd);
    return NULL;
}

/* One request to the server thread, which answers `answer`. */
static int call(const bt_http_req *q0, char **body, size_t *len, char *err, size_t errlen)
{
    pthread_t th;
    memset(request, 0, sizeof request);
    assert_int_equal(pthread_create(&th, NULL, serve, NULL), 0);
    bt_http_req q = *q0;
    q.socket = sock;
    int rc = bt_http_request(&q, body, len, err, errlen);
    pthread_join(th, NULL);
    return rc;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/bthttpXXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(sock, sizeof sock, "%.60s/s", dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 4), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close(lfd);
    unlink(sock);
    rmdir(dir);
    return 0;
}

static void test_kept(void **state)
{
    (void)state;
    answer = "HTTP/1.1 201 Created\r\nContent-Length: 11\r\n\r\n{\"Id\":\"ab\"}";
    bt_http_req q = {.method = "POST",
                     .target = "/v1.38/containers/create?name=x",
                     .body = "{}",
                     .body_len = 2,
                     .cancel_fd = -1};
    char *body = NULL, err[256] = "";
    size_t len = 0;
    assert_int_equal(call(&q, &body, &len, err, sizeof err), 201);
    assert_string_equal(body, "{\"Id\":\"ab\"}");
    assert_int_equal(len, 11);
    free(body);
    assert_non_null(strstr(request, "POST /v1.38/containers/create?name=x HTTP/1.1\r\n"));
    assert_non_null(strstr(request, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(request, "Content-Length: 2\r\n"));
    assert_non_null(strstr(request, "\r\n\r\n{}"));
    /* bigger than max_body: refused, naming the bound */
    q.max_body = 4;
    assert_int_equal(call(&q, &body, NULL, err, sizeof err), BT_HTTP_ERR);
    assert_null(body);
    assert_non_null(strstr(err, "larger than 4 bytes"));
}

static char got[256];
static size_t got_len, stop_at;

static int on_data(const char *p, size_t n, void *arg)
{
    (void)arg;
    size_t k = n < sizeof got - 1 - got_len ? n : sizeof got - 1 - got_len;
    memcpy(got + got_len, p, k);
    got_len += k;
    got[got_len] = '\0';
    return stop_at && got_len >= stop_at;
}

static void test_streamed(void **state)
{
    (void)state;
    answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nline1\r\n6\r\n\nline2\r\n0\r\n\r\n";
    bt_http_req q = {.method = "GET", .target = "/logs", .cancel_fd = -1, .on_data = on_data};
    char *body = NULL, err[256] = "";
    got_len = stop_at = 0;
    assert_int_equal(call(&q, &body, NULL, err, sizeof err), 200);
    assert_string_equal(got, "line1\nline2");
    assert_string_equal(body, ""); /* nothing kept */
    free(body);
    /* a reader that has enough stops the transfer: still the status */
    got_len = 0;
    stop_at = 3;
    assert_int_equal(call(&q, NULL, NULL, err, sizeof err), 200);
    assert_string_equal(got, "line1");
    /* an error answer of a streaming call is kept, for its message */
    answer = "HTTP/1.1 404 Not Found\r\nContent-Length: 23\r\n\r\n{\"message\":\"no such x\"}";
    got_len = stop_at = 0;
    assert_int_equal(call(&q, &body, NULL, err, sizeof err), 404);
    assert_string_equal(body, "{\"message\":\"no such x\"}");
    assert_int_equal(got_len, 0);
    free(body);
}

static void test_timeout_and_cancel(void **state)
{
    (void)state;
    answer = NULL;
    bt_http_req q = {.method = "GET", .target = "/wait", .timeout_ms = 200, .cancel_fd = -1};
    char err[256] = "";
    assert_int_equal(call(&q, NULL, NULL, err, sizeof err), BT_HTTP_TIMEOUT);
    assert_non_null(strstr(err, "timed out"));
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    q.timeout_ms = 0;
    q.cancel_fd = p[0];
    assert_int_equal(call(&q, NULL, NULL, err, sizeof err), BT_HTTP_CANCELLED);
    close(p[0]);
    close(p[1]);
}

static void test_refused(void **state)
{
    (void)state;
    char err[256] = "";
    /* refused before connecting */
    bt_http_req q = {.socket = sock, .method = "GET", .target = "/a b", .cancel_fd = -1};
    assert_int_equal(bt_http_request(&q, NULL, NULL, err, sizeof err), BT_HTTP_ERR);
    assert_non_null(strstr(err, "invalid request target"));
    q.target = "/a";
    q.method = "GET /x HTTP/1.1\r\n";
    assert_int_equal(bt_http_request(&q, NULL, NULL, err, sizeof err), BT_HTTP_ERR);
    assert_non_null(strstr(err, "invalid request"));
    /* a reply outside the grammar */
    answer = "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n";
    q.method = "GET";
    assert_int_equal(call(&q, NULL, NULL, err, sizeof err), BT_HTTP_ERR);
    assert_non_null(strstr(err, "bad Content-Length"));
    /* nothing listens */
    bt_http_req none = {
        .socket = "/nonexistent/x.sock", .method = "GET", .target = "/", .cancel_fd = -1};
    assert_int_equal(bt_http_request(&none, NULL, NULL, err, sizeof err), BT_HTTP_ERR);
    assert_non_null(strstr(err, "cannot connect to /nonexistent/x.sock"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept),
        cmocka_unit_test(test_streamed),
        cmocka_unit_test(test_timeout_and_cancel),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
