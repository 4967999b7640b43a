/* Unit tests of the HTTP server's request parser (sdk/src/http_request.c): heads and bodies
 * by Content-Length and chunked, bytes arriving one at a time, pipelined requests,
 * keep-alive rules, the path's decoding, and every refusal with the status it answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../sdk/src/http_request.h"

static bt_http_request q;
static bt_buf body;
static size_t rest; /* bytes after the request (the next one's) */

static int keep(const char *p, size_t n, void *arg)
{
    return bt_buf_append_nul(&body, p, n);
}

/* Parses text in pieces of step bytes (0 = whole), head then body: what the parser said last
 * (BT_HTTPD_DONE, BT_HTTPD_MORE or -1). */
static int parse(const char *text, size_t step)
{
    bt_http_request_free(&q);
    bt_buf_free(&body);
    q.on_body = keep;
    bt_http_request_init(&q);
    size_t len = strlen(text), off = 0;
    if (!step)
        step = len ? len : 1;
    int rc = BT_HTTPD_MORE;
    while (rc != BT_HTTPD_DONE && rc >= 0) {
        size_t n = len - off < step ? len - off : step, used;
        rc = bt_http_request_feed(&q, text + off, n, &used);
        off += used;
        if (rc == BT_HTTPD_MORE && off == len)
            break;
    }
    rest = len - off;
    return rc;
}

static const char *got_body(void)
{
    return body.p ? (const char *)body.p + body.off : "";
}

static const char *header(const char *name)
{
    bt_http_req rq = {.headers = q.headers, .nheaders = q.nheaders};
    return bt_http_req_header(&rq, name);
}

static void test_heads_and_bodies(void **state)
{
    (void)state;
    for (size_t step = 0; step <= 3; step++) {
        assert_int_equal(parse("GET /v1/system/inspect?a=1&b HTTP/1.1\r\nHost: x\r\n"
                               "X-Openedge-Username:  svc \r\n\r\n",
                               step),
                         BT_HTTPD_DONE);
        assert_string_equal(q.method, "GET");
        assert_string_equal(q.path, "/v1/system/inspect");
        assert_string_equal(q.query, "a=1&b");
        assert_int_equal(q.minor, 1);
        assert_true(q.keep_alive);
        assert_string_equal(header("x-openedge-username"), "svc");
        assert_null(header("Content-Length"));
        assert_int_equal(rest, 0);

        assert_int_equal(parse("PUT /r HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET", step),
                         BT_HTTPD_DONE);
        assert_string_equal(got_body(), "hello");
        assert_int_equal(rest, 3); /* the next request's bytes are left */

        assert_int_equal(parse("PUT /r HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
                               "5;ext=1\r\nhello\r\nA\r\n, 12345678\r\n0\r\nX-T: t\r\n\r\n",
                               step),
                         BT_HTTPD_DONE);
        assert_string_equal(got_body(), "hello, 12345678");
        assert_int_equal(q.seen, 15);

        /* LF-only lines, empty lines before the request, HTTP/1.0 */
        assert_int_equal(parse("\r\n\nGET / HTTP/1.0\nA: b\n\n", step), BT_HTTPD_DONE);
        assert_int_equal(q.minor, 0);
        assert_false(q.keep_alive);
    }
    /* the head alone first, then the body */
    bt_http_request_free(&q);
    bt_buf_free(&body);
    bt_http_request_init(&q);
    size_t used;
    const char *t = "PUT /x HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok";
    assert_int_equal(bt_http_request_feed(&q, t, strlen(t), &used), BT_HTTPD_HEAD);
    assert_true(q.expect_continue);
    assert_int_equal(strlen(t) - used, 2);
    assert_int_equal(bt_http_request_feed(&q, t + used, 2, &used), BT_HTTPD_DONE);
    assert_string_equal(got_body(), "ok");
}

static void test_keep_alive_and_paths(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0), BT_HTTPD_DONE);
    assert_false(q.keep_alive);
    assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0), BT_HTTPD_DONE);
    assert_true(q.keep_alive);
    assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0),
                     BT_HTTPD_DONE);
    assert_false(q.keep_alive);
    /* a later minor version is served as 1.1 */
    assert_int_equal(parse("GET / HTTP/1.9\r\n\r\n", 0), BT_HTTPD_DONE);
    assert_int_equal(q.minor, 1);
    /* percent-encoded segments, as the SDK's client sends them */
    assert_int_equal(parse("PUT /v1/services/a%2Fb/instances/i%2e1/stop?x=%41 HTTP/1.1\r\n\r\n", 0),
                     BT_HTTPD_DONE);
    assert_string_equal(q.path, "/v1/services/a/b/instances/i.1/stop");
    assert_string_equal(q.query, "x=%41");
    /* the absolute form */
    assert_int_equal(parse("GET http://localhost/metrics HTTP/1.1\r\n\r\n", 0), BT_HTTPD_DONE);
    assert_string_equal(q.path, "/metrics");
    assert_int_equal(parse("GET http://localhost HTTP/1.1\r\n\r\n", 0), BT_HTTPD_DONE);
    assert_string_equal(q.path, "/");
}

static void test_query(void **state)
{
    (void)state;
    char v[8];
    bt_http_req rq = {.query = "a=1&lines=1%30&sp=a+b&bare&bad=%zz&long=123456789"};
    assert_int_equal(bt_http_req_query(&rq, "lines", v, sizeof v), 1);
    assert_string_equal(v, "10");
    assert_int_equal(bt_http_req_query(&rq, "sp", v, sizeof v), 1);
    assert_string_equal(v, "a b");
    assert_int_equal(bt_http_req_query(&rq, "bare", v, sizeof v), 0);
    assert_int_equal(bt_http_req_query(&rq, "none", v, sizeof v), 0);
    assert_int_equal(bt_http_req_query(&rq, "bad", v, sizeof v), -1);
    assert_int_equal(bt_http_req_query(&rq, "long", v, sizeof v), -1);
    rq.query = "";
    assert_int_equal(bt_http_req_query(&rq, "a", v, sizeof v), 0);
    assert_string_equal(bt_http_status_text(413), "Content Too Large");
}

static void expect_refused(const char *text, int status, const char *why)
{
    for (size_t step = 0; step <= 1; step++) {
        assert_int_equal(parse(text, step), -1);
        if (q.status != status || !strstr(q.err, why))
            fail_msg("%s (step %zu): got %d \"%s\", want %d \"%s\"", text, step, q.status, q.err,
                     status, why);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    expect_refused("SSH-2.0-OpenSSH_9.2\r\n\r\n", 400, "bad request line");
    expect_refused("GET /\r\n\r\n", 400, "version missing");
    expect_refused("GET  / HTTP/1.1\r\n\r\n", 400, "target");
    expect_refused("GET / HTTP/1.1 \r\n\r\n", 400, "version");
    expect_refused("GET / http/1.1\r\n\r\n", 400, "version");
    expect_refused("GET / HTTP/2.0\r\n\r\n", 505, "not supported");
    expect_refused("GET x HTTP/1.1\r\n\r\n", 400, "absolute path");
    expect_refused("GET /\x80 HTTP/1.1\r\n\r\n", 400, "character 0x80");
    expect_refused("GET /a%00 HTTP/1.1\r\n\r\n", 400, "percent-encoding");
    expect_refused("GET /a%4 HTTP/1.1\r\n\r\n", 400, "percent-encoding");
    expect_refused("GET / HTTP/1.1\r\nno colon\r\n\r\n", 400, "bad header line");
    expect_refused("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, "bad header line");
    expect_refused("GET / HTTP/1.1\r\nA : x\r\n\r\n", 400, "bad header line");
    expect_refused("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400, "folded");
    expect_refused("GET / HTTP/1.1\r\nX: a\001\r\n\r\n", 400, "control character in header X");
    expect_refused("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400, "stray CR");
    expect_refused("PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "bad Content-Length");
    expect_refused("PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400,
                   "bad Content-Length");
    expect_refused("PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400,
                   "conflicting");
    expect_refused("PUT / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                   "both");
    expect_refused("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
                   "Transfer-Encoding");
    expect_refused("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n",
                   501, "Transfer-Encoding");
    expect_refused("PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "HTTP/1.0");
    expect_refused("PUT / HTTP/1.1\r\nExpect: magic\r\n\r\n", 417, "Expect");
    expect_refused("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "chunk size");
    expect_refused("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "ffffffffffffffffff\r\n",
                   400, "too large");
    expect_refused("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n", 400,
                   "not followed by CRLF");
    expect_refused("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad\r\n\r\n", 400,
                   "trailer");
}

static void test_bounds(void **state)
{
    (void)state;
    size_t n = BT_HTTPD_MAX_HEAD + 64;
    char *t = malloc(n + 1);
    assert_non_null(t);
    /* a request line over BT_HTTPD_MAX_LINE */
    int k = snprintf(t, n, "GET /");
    memset(t + k, 'a', n - (size_t)k);
    t[n] = '\0';
    expect_refused(t, 414, "request line longer than");
    /* a head over BT_HTTPD_MAX_HEAD, in header lines of fine length */
    k = snprintf(t, n, "GET / HTTP/1.1\r\n");
    for (size_t i = (size_t)k; i < n; i++)
        t[i] = (i - (size_t)k) % 100 == 99 ? '\n' : (i - (size_t)k) % 100 == 0 ? 'X' : 'a';
    for (size_t i = (size_t)k; i + 100 < n; i += 100)
        t[i + 1] = ':';
    expect_refused(t, 431, "head larger than");
    /* too many header fields */
    k = snprintf(t, n, "GET / HTTP/1.1\r\n");
    for (unsigned i = 0; i <= BT_HTTPD_MAX_HEADERS; i++)
        k += snprintf(t + k, n - (size_t)k, "H%u: v\r\n", i);
    snprintf(t + k, n - (size_t)k, "\r\n");
    expect_refused(t, 431, "header fields");
    /* exactly BT_HTTPD_MAX_HEADERS is fine */
    k = snprintf(t, n, "GET / HTTP/1.1\r\n");
    for (unsigned i = 0; i < BT_HTTPD_MAX_HEADERS; i++)
        k += snprintf(t + k, n - (size_t)k, "H%u: v\r\n", i);
    snprintf(t + k, n - (size_t)k, "\r\n");
    assert_int_equal(parse(t, 7), BT_HTTPD_DONE);
    assert_int_equal(q.nheaders, BT_HTTPD_MAX_HEADERS);
    /* a chunk line over its bound */
    k = snprintf(t, n, "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    memset(t + k, 'e', 2000);
    t[k + 2000] = '\0';
    expect_refused(t, 400, "chunk line longer");
    free(t);
    /* a request cut short wants more, whatever its state */
    assert_int_equal(parse("GET / HTTP/1.1\r\nA: b", 0), BT_HTTPD_MORE);
    assert_true(bt_http_request_started(&q));
    assert_int_equal(parse("\r\n\r\n", 0), BT_HTTPD_MORE);
    assert_false(bt_http_request_started(&q));
    assert_int_equal(parse("PUT / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc", 1), BT_HTTPD_MORE);
    bt_http_request_free(&q);
    bt_buf_free(&body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heads_and_bodies),
        cmocka_unit_test(test_keep_alive_and_paths),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
