/* Unit tests of the master API client's reply parser (sdk/src/http_reply.c): framing by
 * Content-Length, chunked and the end of the connection, interim replies, bytes arriving one
 * at a time, and the refusals (bad grammar, conflicting lengths, sizes over the bounds). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../sdk/src/http_reply.h"

static bt_http_reply r;

/* Parses text in pieces of step bytes (0 = whole), then the end of the connection when the
 * reply is not complete yet. Returns what the parser said last. */
static int parse_max(const char *text, size_t len, size_t step, size_t max)
{
    bt_http_reply_free(&r);
    bt_http_reply_init(&r, max);
    int rc = 0;
    if (!step)
        step = len ? len : 1;
    for (size_t off = 0; off < len && rc == 0; off += step)
        rc = bt_http_reply_feed(&r, text + off, len - off < step ? len - off : step);
    return rc == 0 ? bt_http_reply_eof(&r) : rc;
}

static int parse(const char *text, size_t step)
{
    return parse_max(text, strlen(text), step, 1024);
}

static const char *body(void)
{
    return r.body.p ? (const char *)r.body.p + r.body.off : "(none)";
}

static void test_framings(void **state)
{
    (void)state;
    static const char *const len_reply = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
    static const char *const chunked =
        "HTTP/1.1 201 Created\r\ntransfer-encoding:  chunked \r\n\r\n"
        "5;ext=1\r\nhello\r\nA\r\n, 12345678\r\n0\r\nX-Trailer: t\r\n\r\n";
    for (size_t step = 0; step <= 3; step++) {
        assert_int_equal(parse(len_reply, step), 1);
        assert_int_equal(r.status, 200);
        assert_string_equal(body(), "hello");
        assert_int_equal(parse(chunked, step), 1);
        assert_int_equal(r.status, 201);
        assert_string_equal(body(), "hello, 12345678");
        /* no length: the body ends with the connection; LF-only lines are read too */
        assert_int_equal(
            parse("HTTP/1.0 401 Unauthorized\nServer: x\n\naccount unauthorized\n", step), 1);
        assert_int_equal(r.status, 401);
        assert_string_equal(body(), "account unauthorized\n");
        /* interim 100, then 204 without a body */
        assert_int_equal(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No\r\n\r\n", step), 1);
        assert_int_equal(r.status, 204);
        assert_string_equal(body(), "");
    }
    /* Transfer-Encoding wins over Content-Length */
    assert_int_equal(
        parse("HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
              "1\r\nx\r\n0\r\n\r\n",
              0),
        1);
    assert_string_equal(body(), "x");
}

static void expect_refused(const char *text, const char *why)
{
    assert_int_equal(parse(text, 0), -1);
    if (!strstr(r.err, why))
        fail_msg("%s: got \"%s\", want \"%s\"", text, r.err, why);
    assert_int_equal(parse(text, 1), -1);
    if (!strstr(r.err, why))
        fail_msg("%s (byte by byte): got \"%s\", want \"%s\"", text, r.err, why);
}

static void test_refusals(void **state)
{
    (void)state;
    expect_refused("SSH-2.0-OpenSSH\r\n\r\n", "bad status line");
    expect_refused("HTTP/1.1 20 OK\r\n\r\n", "bad status line");
    expect_refused("HTTP/2 200 OK\r\n\r\n", "bad status line");
    expect_refused("HTTP/1.1 101 Switching\r\n\r\n", "101");
    expect_refused("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "bad header line");
    expect_refused("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "bad header line");
    expect_refused("HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", "folded");
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "bad Content-Length");
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length");
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
                   "conflicting Content-Length");
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding");
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size");
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n",
                   "chunk not followed by CRLF");
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "ffffffffffffffffff\r\n",
                   "too large");
    expect_refused("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "stray CR");
    expect_refused("HTTP/1.1 200 OK\r\nX: a\001\r\n\r\n", "control character");
    /* cut short */
    expect_refused("", "without a reply");
    expect_refused("HTTP/1.1 200 OK\r\nContent-Le", "in the reply's head");
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", "before the end of the body");
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                   "before the end of the body");
}

static void test_bounds(void **state)
{
    (void)state;
    /* body over the bound, by each framing */
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 1025\r\n\r\n", "larger than 1024");
    assert_true(r.too_big);
    static char big[4096];
    snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\n\r\n%01100d", 0);
    expect_refused(big, "larger than 1024");
    snprintf(big, sizeof big,
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             "200\r\n%0512d\r\n200\r\n%0512d\r\n1\r\n",
             0, 0);
    expect_refused(big, "larger than 1024");
    /* exactly at the bound is fine */
    snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n%01024d", 0);
    assert_int_equal(parse(big, 7), 1);
    assert_int_equal(strlen(body()), 1024);

    /* one line over BT_HTTP_MAX_LINE, a head over BT_HTTP_MAX_HEAD */
    size_t n = BT_HTTP_MAX_HEAD + 64;
    char *huge = malloc(n + 1);
    assert_non_null(huge);
    int k = snprintf(huge, n, "HTTP/1.1 200 OK\r\nX: ");
    memset(huge + k, 'a', n - (size_t)k);
    huge[n] = '\0';
    assert_int_equal(parse_max(huge, n, 4096, 1024), -1);
    assert_non_null(strstr(r.err, "line longer than"));
    size_t o = (size_t)snprintf(huge, n, "HTTP/1.1 200 OK\r\n");
    while (o + 102 < n) {
        memcpy(huge + o, "X: ", 3);
        memset(huge + o + 3, 'b', 96);
        memcpy(huge + o + 99, "\r\n", 2);
        o += 101;
    }
    assert_int_equal(parse_max(huge, o, 0, 1024), -1);
    assert_non_null(strstr(r.err, "head larger than"));
    free(huge);
}

/* The streamed body (a docker log or pull): pieces go to on_body, nothing is kept, and a
 * reader that has enough stops the reply. */
static char got[64];
static size_t got_len, stop_after;

static int collect(const char *p, size_t n, void *arg)
{
    (void)arg;
    memcpy(got + got_len, p, n < sizeof got - got_len ? n : sizeof got - got_len);
    got_len += n;
    return stop_after && got_len >= stop_after;
}

static void test_streamed(void **state)
{
    (void)state;
    const char *t = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
    for (size_t step = 0; step < 4; step++) {
        bt_http_reply_free(&r);
        bt_http_reply_init(&r, 1024);
        r.on_body = collect;
        got_len = stop_after = 0;
        int rc = 0;
        size_t len = strlen(t), k = step ? step : len;
        for (size_t off = 0; off < len && rc == 0; off += k)
            rc = bt_http_reply_feed(&r, t + off, len - off < k ? len - off : k);
        assert_int_equal(rc, 1);
        assert_int_equal(got_len, 7);
        assert_memory_equal(got, "abcdefg", 7);
        assert_int_equal(bt_buf_size(&r.body), 0);
    }
    bt_http_reply_free(&r);
    bt_http_reply_init(&r, 1024);
    r.on_body = collect;
    got_len = 0;
    stop_after = 2;
    assert_int_equal(bt_http_reply_feed(&r, t, strlen(t)), -1);
    assert_true(r.stopped);
    /* the bound still holds for a stream */
    bt_http_reply_free(&r);
    bt_http_reply_init(&r, 5);
    r.on_body = collect;
    got_len = stop_after = 0;
    assert_int_equal(bt_http_reply_feed(&r, t, strlen(t)), -1);
    assert_true(r.too_big && !r.stopped);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framings),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_streamed),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bt_http_reply_free(&r);
    return rc;
}
