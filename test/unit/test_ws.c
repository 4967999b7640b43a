/* WebSocket layer (RFC 6455) under MQTT over ws/wss: handshakes both ways, framing rules,
 * fragmentation, control frames, every refusal with its reason and close code, and feeding
 * one byte at a time. Frames sent to the code under test are built by hand here, so the
 * decoder is not only checked against its own encoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "baetyl/ws.h"

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* One frame as a peer would send it: any flags, any opcode, masked with KEY or not. */
static size_t frame(uint8_t *b, int fin, int rsv, int op, int masked, const void *payload, size_t n)
{
    const uint8_t *p = payload;
    size_t k = 0;
    uint8_t mbit = masked ? 0x80 : 0;
    b[k++] = (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | op);
    if (n < 126) {
        b[k++] = (uint8_t)(mbit | n);
    } else if (n <= 0xffff) {
        b[k++] = mbit | 126;
        b[k++] = (uint8_t)(n >> 8);
        b[k++] = (uint8_t)n;
    } else {
        b[k++] = mbit | 127;
        for (int i = 0; i < 8; i++)
            b[k++] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    if (masked) {
        memcpy(b + k, KEY, 4);
        k += 4;
        for (size_t i = 0; i < n; i++)
            b[k + i] = p[i] ^ KEY[i & 3];
    } else if (n) {
        memcpy(b + k, p, n);
    }
    return k + n;
}

static const char GOOD_REQ[] = "GET /mqtt HTTP/1.1\r\n"
                               "Host: localhost:8080\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "Sec-WebSocket-Protocol: mqtt\r\n"
                               "Sec-WebSocket-Version: 13\r\n"
                               "\r\n";

static int hs_feed(bt_ws *ws, const char *s, size_t n, size_t *used, char *err)
{
    return bt_ws_handshake(ws, (const uint8_t *)s, n, used, err, 256);
}

static void server_open(bt_ws *s, uint64_t max)
{
    char err[256];
    size_t used;
    bt_ws_init(s, BT_WS_SERVER, max);
    assert_int_equal(hs_feed(s, GOOD_REQ, strlen(GOOD_REQ), &used, err), 1);
    assert_int_equal(used, strlen(GOOD_REQ));
    bt_ws_output_consume(s, SIZE_MAX);
}

/* A client state opened against a real server state. */
static void client_open(bt_ws *c, uint64_t max)
{
    char err[256];
    bt_ws s;
    size_t n, used;
    bt_ws_init(c, BT_WS_CLIENT, max);
    bt_ws_init(&s, BT_WS_SERVER, 0);
    assert_int_equal(bt_ws_client_start(c, "127.0.0.1:1884", "/mqtt", err, sizeof(err)), 0);
    const uint8_t *req = bt_ws_output(c, &n);
    assert_int_equal(bt_ws_handshake(&s, req, n, &used, err, sizeof(err)), 1);
    bt_ws_output_consume(c, n);
    const uint8_t *ans = bt_ws_output(&s, &n);
    assert_int_equal(bt_ws_handshake(c, ans, n, &used, err, sizeof(err)), 1);
    assert_int_equal(used, n);
}

/* Feeds in[0..len) to ws whole, or one byte at a time; app bytes are appended to app. */
static int recv_all(bt_ws *ws, const uint8_t *in, size_t len, uint8_t *app, size_t *applen,
                    int bytewise, char *err)
{
    *applen = 0;
    size_t step = bytewise ? 1 : len, off = 0;
    do {
        size_t n = len - off < step ? len - off : step, got = 0;
        uint8_t tmp[n ? n : 1];
        memcpy(tmp, in + off, n);
        int r = bt_ws_recv(ws, tmp, n, tmp, &got, err, 256); /* in place */
        assert_true(got <= n);
        memcpy(app + *applen, tmp, got);
        *applen += got;
        off += n;
        if (r != 0)
            return r;
    } while (off < len);
    return 0;
}

/* The close frame a server queued: opcode, unmasked, its code. */
static void assert_server_close(bt_ws *s, uint16_t code)
{
    size_t n;
    const uint8_t *o = bt_ws_output(s, &n);
    assert_non_null(o);
    assert_true(n >= 4);
    assert_int_equal(o[0], 0x88);
    assert_int_equal(o[1] & 0x80, 0);
    assert_int_equal((size_t)(o[1] & 0x7f) + 2, n);
    assert_int_equal((o[2] << 8) | o[3], code);
    assert_int_equal(bt_ws_close_code(s), code);
}

/* ---- handshake ------------------------------------------------------------------------ */

static void test_accept_key_rfc(void **state)
{
    (void)state;
    char out[29];
    assert_int_equal(bt_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(bt_ws_accept_key(NULL, out), -1);
}

static void test_server_answer_rfc(void **state)
{
    (void)state;
    bt_ws s;
    char err[256];
    size_t used, n;
    bt_ws_init(&s, BT_WS_SERVER, 0);
    assert_int_equal(hs_feed(&s, GOOD_REQ, strlen(GOOD_REQ), &used, err), 1);
    assert_int_equal(bt_ws_get_state(&s), BT_WS_OPEN);
    assert_string_equal(bt_ws_path(&s), "/mqtt");
    assert_string_equal(bt_ws_protocol(&s), "mqtt");
    const char *o = (const char *)bt_ws_output(&s, &n);
    assert_string_equal(strndupa(o, n), "HTTP/1.1 101 Switching Protocols\r\n"
                                        "Upgrade: websocket\r\n"
                                        "Connection: Upgrade\r\n"
                                        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                        "Sec-WebSocket-Protocol: mqtt\r\n"
                                        "\r\n");
    /* Partial sends: the rest stays available. */
    bt_ws_output_consume(&s, 10);
    const char *o2 = (const char *)bt_ws_output(&s, &n);
    assert_ptr_equal(o2, o + 10);
    bt_ws_output_consume(&s, n);
    assert_null(bt_ws_output(&s, &n));
    assert_int_equal(n, 0);
}

static void test_client_server_handshake(void **state)
{
    (void)state;
    bt_ws c, s;
    char err[256];
    size_t n, used;
    bt_ws_init(&c, BT_WS_CLIENT, 0);
    bt_ws_init(&s, BT_WS_SERVER, 0);
    assert_int_equal(bt_ws_client_start(&c, "example.com:8080", "/mqtt?x=1", err, sizeof(err)), 0);
    const char *req = (const char *)bt_ws_output(&c, &n);
    char *r = strndupa(req, n);
    assert_non_null(strstr(r, "GET /mqtt?x=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(r, "\r\nHost: example.com:8080\r\n"));
    assert_non_null(strstr(r, "\r\nSec-WebSocket-Protocol: mqtt\r\n"));
    assert_non_null(strstr(r, "\r\nSec-WebSocket-Version: 13\r\n"));
    /* The key is fresh for every connection. */
    bt_ws c2;
    bt_ws_init(&c2, BT_WS_CLIENT, 0);
    assert_int_equal(bt_ws_client_start(&c2, "h", NULL, err, sizeof(err)), 0);
    assert_string_not_equal(c.key, c2.key);
    assert_int_equal(strlen(c.key), 24);

    assert_int_equal(bt_ws_handshake(&s, (const uint8_t *)req, n, &used, err, sizeof(err)), 1);
    assert_string_equal(bt_ws_path(&s), "/mqtt?x=1");
    assert_string_equal(bt_ws_protocol(&s), "mqtt");
    bt_ws_output_consume(&c, n);

    /* The server's answer plus a first frame in the same read. */
    uint8_t buf[512];
    const uint8_t *ans = bt_ws_output(&s, &n);
    memcpy(buf, ans, n);
    size_t extra = frame(buf + n, 1, 0, 2, 0, "\x20\x02\x00\x00", 4);
    assert_int_equal(bt_ws_handshake(&c, buf, n + extra, &used, err, sizeof(err)), 1);
    assert_int_equal(used, n);
    assert_int_equal(bt_ws_get_state(&c), BT_WS_OPEN);
    assert_string_equal(bt_ws_protocol(&c), "mqtt");
    size_t got;
    uint8_t app[16];
    assert_int_equal(bt_ws_recv(&c, buf + used, extra, app, &got, err, sizeof(err)), 0);
    assert_int_equal(got, 4);
    assert_memory_equal(app, "\x20\x02\x00\x00", 4);
    /* Done is done. */
    assert_int_equal(bt_ws_handshake(&c, buf, 1, &used, err, sizeof(err)), 1);
}

static void test_handshake_byte_at_a_time(void **state)
{
    (void)state;
    bt_ws c, s;
    char err[256];
    size_t n, used;
    bt_ws_init(&c, BT_WS_CLIENT, 0);
    bt_ws_init(&s, BT_WS_SERVER, 0);
    assert_int_equal(bt_ws_client_start(&c, "h:1", "/", err, sizeof(err)), 0);
    const uint8_t *req = bt_ws_output(&c, &n);
    for (size_t i = 0; i < n; i++) {
        int r = bt_ws_handshake(&s, req + i, 1, &used, err, sizeof(err));
        assert_int_equal(used, 1);
        assert_int_equal(r, i + 1 == n ? 1 : 0);
    }
    const uint8_t *ans = bt_ws_output(&s, &n);
    for (size_t i = 0; i < n; i++) {
        int r = bt_ws_handshake(&c, ans + i, 1, &used, err, sizeof(err));
        assert_int_equal(r, i + 1 == n ? 1 : 0);
    }
    assert_int_equal(bt_ws_get_state(&c), BT_WS_OPEN);
}

static void accept_req(const char *req, const char *path, const char *proto)
{
    bt_ws s;
    char err[256];
    size_t used, n;
    bt_ws_init(&s, BT_WS_SERVER, 0);
    int r = hs_feed(&s, req, strlen(req), &used, err);
    if (r != 1)
        fail_msg("refused (%s): %s", err, req);
    assert_string_equal(bt_ws_path(&s), path);
    assert_string_equal(bt_ws_protocol(&s), proto);
    char *o = strndupa((const char *)bt_ws_output(&s, &n), n);
    assert_non_null(strstr(o, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_true((strstr(o, "Sec-WebSocket-Protocol") != NULL) == (proto[0] != '\0'));
}

#define KEYH "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VERH "Sec-WebSocket-Version: 13\r\n"

static void test_handshake_variants(void **state)
{
    (void)state;
    accept_req("GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" KEYH VERH
               "Sec-WebSocket-Protocol: mqttv3.1\r\n\r\n",
               "/mqtt", "mqttv3.1");
    accept_req(
        "GET / HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\n" KEYH VERH
        "Sec-WebSocket-Protocol: chat, mqttv3.1\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
        "/", "mqttv3.1");
    /* The client's first choice among those we speak wins. */
    accept_req("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" KEYH VERH
               "Sec-WebSocket-Protocol: MQTT, mqtt, mqttv3.1\r\n\r\n",
               "/", "mqtt");
    /* No subprotocol offered, or none we speak: accepted, none answered. */
    accept_req("GET /x HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\n" KEYH VERH "\r\n",
               "/x", "");
    accept_req("GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" KEYH VERH
               "Sec-WebSocket-Protocol: chat\r\n\r\n",
               "/x", "");
    /* Absolute-form target, bare LF line ends, a leading blank line, spaces around values. */
    accept_req("\r\nGET ws://host:1/a/b HTTP/1.1\nUpgrade:websocket   \nConnection:\t Upgrade\n"
               "Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  \n" VERH "\n",
               "/a/b", "");
    accept_req("GET http://host HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" KEYH VERH
               "\r\n",
               "/", "");
    /* A header longer than our line buffer that we do not need is skipped. */
    char big[4096];
    int n = snprintf(big, sizeof(big),
                     "GET /m HTTP/1.1\r\nCookie: %0*d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\n" KEYH VERH "\r\n",
                     3000, 7);
    assert_true(n > 3000 && (size_t)n < sizeof(big));
    accept_req(big, "/m", "");
}

static void refuse_req(const char *req, size_t len, const char *reason)
{
    bt_ws s;
    char err[256] = "";
    size_t used, n;
    bt_ws_init(&s, BT_WS_SERVER, 0);
    int r = bt_ws_handshake(&s, (const uint8_t *)req, len, &used, err, sizeof(err));
    if (r != -1 || !strstr(err, reason))
        fail_msg("r=%d err='%s' want '%s' for: %.200s", r, err, reason, req);
    assert_true(used <= len);
    assert_int_equal(bt_ws_get_state(&s), BT_WS_FAILED);
    char *o = strndupa((const char *)bt_ws_output(&s, &n), n);
    assert_true(strncmp(o, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    assert_non_null(strstr(o, "\r\nSec-WebSocket-Version: 13\r\n"));
    const char *body = strstr(o, "\r\n\r\n");
    assert_non_null(body);
    assert_non_null(strstr(body, reason));
    /* Stays refused, and no close frame can follow a 400. */
    assert_int_equal(bt_ws_handshake(&s, (const uint8_t *)"x", 1, &used, err, sizeof(err)), -1);
    assert_int_equal(bt_ws_close(&s, 1000, NULL, err, sizeof(err)), 0);
    size_t n2;
    bt_ws_output(&s, &n2);
    assert_int_equal(n2, n);
    uint8_t b[4] = {0x82, 0x80, 0, 0};
    assert_int_equal(bt_ws_recv(&s, b, 4, b, &n2, err, sizeof(err)), -1);
}

#define REFUSE(req, reason) refuse_req(req, strlen(req), reason)

static void test_handshake_bad_requests(void **state)
{
    (void)state;
    REFUSE("POST /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" KEYH VERH "\r\n",
           "method must be GET");
    REFUSE("get /mqtt HTTP/1.1\r\n\r\n", "method must be GET");
    REFUSE("GET /mqtt HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" KEYH VERH "\r\n",
           "HTTP/1.1 required");
    REFUSE("GET /mqtt\r\n\r\n", "malformed request line");
    REFUSE("GET\r\n\r\n", "malformed request line");
    REFUSE("GET mqtt HTTP/1.1\r\n\r\n", "malformed request target");
    REFUSE("GET /mqtt HTTP/1.1\r\nConnection: Upgrade\r\n" KEYH VERH "\r\n",
           "missing 'Upgrade: websocket'");
    REFUSE("GET /mqtt HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" KEYH VERH "\r\n",
           "missing 'Upgrade: websocket'");
    REFUSE("GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\n" KEYH VERH "\r\n",
           "missing 'Connection: Upgrade'");
    REFUSE(
        "GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, upgrades\r\n" KEYH VERH
        "\r\n",
        "missing 'Connection: Upgrade'");
    REFUSE("GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" KEYH
           "Sec-WebSocket-Version: 8\r\n\r\n",
           "unsupported Sec-WebSocket-Version");
    REFUSE("GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" KEYH "\r\n",
           "missing Sec-WebSocket-Version");
    REFUSE("GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" VERH "\r\n",
           "missing Sec-WebSocket-Key");
    REFUSE("GET /mqtt HTTP/1.1\r\nSec-WebSocket-Key: abc\r\n\r\n", "invalid Sec-WebSocket-Key");
    REFUSE("GET /mqtt HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n\r\n",
           "invalid Sec-WebSocket-Key");
    REFUSE("GET /mqtt HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ*==\r\n\r\n",
           "invalid Sec-WebSocket-Key");
    REFUSE("GET /mqtt HTTP/1.1\r\n" KEYH KEYH "\r\n", "duplicate Sec-WebSocket-Key");
    REFUSE("GET /mqtt HTTP/1.1\r\nUpgrade websocket\r\n\r\n", "header line without ':'");
    REFUSE("GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\n  , more\r\n\r\n", "folded header lines");
    REFUSE("GET /mqtt HTTP/1.1\r\n: x\r\n\r\n", "empty header name");
    REFUSE("GET /mqtt HTTP/1.1\r\nSec-WebSocket-Key : x\r\n\r\n", "invalid header name");
    REFUSE("GET /mqtt HTTP/1.1\r\nX-A: a\x01\r\n\r\n", "control character in header");
    refuse_req("GET /mqtt HTTP/1.1\r\nX-A: a\0b\r\n\r\n", 32, "control character in header");

    char big[10000];
    /* Path too long for the report. */
    snprintf(big, sizeof(big), "GET /%0300d HTTP/1.1\r\n\r\n", 1);
    REFUSE(big, "request path too long");
    /* Request line longer than the line buffer. */
    snprintf(big, sizeof(big), "GET /%0600d HTTP/1.1\r\n\r\n", 1);
    REFUSE(big, "request line too long");
    /* A header we need, longer than the line buffer. */
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nUpgrade: websocket,%0600d\r\n\r\n", 1);
    REFUSE(big, "header value too long");
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX%0600d: 1\r\n\r\n", 1);
    REFUSE(big, "header name too long");
    /* The whole header is bounded even when every line is ignorable. */
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nCookie: %09000d\r\n\r\n", 1);
    REFUSE(big, "request header too large");
    /* ... and the bound holds with no line end at all. */
    memset(big, 'A', sizeof(big));
    refuse_req(big, sizeof(big), "request header too large");
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    refuse_req(big, sizeof(big), "request header too large");
}

static void test_handshake_size_bound_exact(void **state)
{
    (void)state;
    /* A request of exactly BT_WS_HANDSHAKE_MAX bytes passes; one more byte fails. */
    static const char head[] =
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" KEYH VERH "X: ";
    char req[BT_WS_HANDSHAKE_MAX + 2];
    size_t pad = BT_WS_HANDSHAKE_MAX - (sizeof(head) - 1) - 4;
    memcpy(req, head, sizeof(head) - 1);
    memset(req + sizeof(head) - 1, 'a', pad);
    memcpy(req + sizeof(head) - 1 + pad, "\r\n\r\n", 4);
    bt_ws s;
    char err[256];
    size_t used;
    bt_ws_init(&s, BT_WS_SERVER, 0);
    assert_int_equal(bt_ws_handshake(&s, (uint8_t *)req, BT_WS_HANDSHAKE_MAX, &used, err, 256), 1);
    memmove(req + sizeof(head), req + sizeof(head) - 1, pad + 4);
    bt_ws_init(&s, BT_WS_SERVER, 0);
    assert_int_equal(bt_ws_handshake(&s, (uint8_t *)req, BT_WS_HANDSHAKE_MAX + 1, &used, err, 256),
                     -1);
    assert_non_null(strstr(err, "request header too large"));
}

static void refuse_answer(const char *answer_fmt, const char *reason)
{
    bt_ws c;
    char err[256] = "", ans[1024];
    size_t used, n;
    bt_ws_init(&c, BT_WS_CLIENT, 0);
    assert_int_equal(bt_ws_client_start(&c, "h", "/mqtt", err, sizeof(err)), 0);
    bt_ws_output_consume(&c, SIZE_MAX);
    /* "%s" in the template stands for the right accept value. */
    const char *at = strstr(answer_fmt, "%s");
    assert_non_null(at);
    snprintf(ans, sizeof(ans), "%.*s%s%s", (int)(at - answer_fmt), answer_fmt, c.accept, at + 2);
    int r = bt_ws_handshake(&c, (const uint8_t *)ans, strlen(ans), &used, err, sizeof(err));
    if (r != -1 || !strstr(err, reason))
        fail_msg("r=%d err='%s' want '%s' for: %s", r, err, reason, ans);
    assert_int_equal(bt_ws_get_state(&c), BT_WS_FAILED);
    assert_null(bt_ws_output(&c, &n)); /* a client just hangs up */
}

static void test_client_bad_answers(void **state)
{
    (void)state;
    /* Sanity: the same template with everything right passes. */
    bt_ws c;
    char err[256], ans[512];
    size_t used;
    bt_ws_init(&c, BT_WS_CLIENT, 0);
    assert_int_equal(bt_ws_client_start(&c, "h", "/", err, sizeof(err)), 0);
    snprintf(ans, sizeof(ans),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
             c.accept);
    assert_int_equal(bt_ws_handshake(&c, (uint8_t *)ans, strlen(ans), &used, err, 256), 1);
    assert_string_equal(bt_ws_protocol(&c), "");

    refuse_answer("HTTP/1.1 404 Not Found\r\nX: %s\r\n\r\n",
                  "server refused the upgrade (HTTP/1.1 404 Not Found)");
    refuse_answer("HTTP/1.1 1010 Odd\r\nX: %s\r\n\r\n", "server refused the upgrade");
    refuse_answer("SSH-2.0-OpenSSH %s\r\n\r\n", "server refused the upgrade");
    refuse_answer("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX: %s\r\n\r\n",
                  "wrong Sec-WebSocket-Accept");
    refuse_answer("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX: %s\r\n\r\n",
                  "missing Sec-WebSocket-Accept");
    refuse_answer("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                  "missing 'Upgrade: websocket'");
    refuse_answer("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                  "missing 'Connection: Upgrade'");
    refuse_answer("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: "
                  "Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                  "Sec-WebSocket-Protocol: chat\r\n\r\n",
                  "subprotocol we did not offer");
    refuse_answer("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: "
                  "Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                  "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                  "extension we did not offer");

    /* Unbounded answers are cut off. */
    bt_ws_init(&c, BT_WS_CLIENT, 0);
    assert_int_equal(bt_ws_client_start(&c, "h", "/", err, sizeof(err)), 0);
    static char junk[BT_WS_HANDSHAKE_MAX + 10];
    memset(junk, 'x', sizeof(junk));
    memcpy(junk, "HTTP/1.1 101 OK\r\nX: ", 20);
    assert_int_equal(bt_ws_handshake(&c, (uint8_t *)junk, sizeof(junk), &used, err, 256), -1);
    assert_non_null(strstr(err, "answer header too large"));
}

static void test_client_start_args(void **state)
{
    (void)state;
    bt_ws c;
    char err[256];
    size_t used;
    bt_ws_init(&c, BT_WS_CLIENT, 0);
    assert_int_equal(bt_ws_client_start(&c, "h\r\nX-Evil: 1", "/", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "invalid host"));
    assert_int_equal(bt_ws_client_start(&c, "", "/", err, sizeof(err)), -1);
    assert_int_equal(bt_ws_client_start(&c, NULL, "/", err, sizeof(err)), -1);
    assert_int_equal(bt_ws_client_start(&c, "h", "mqtt", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "invalid path"));
    assert_int_equal(bt_ws_client_start(&c, "h", "/a b", err, sizeof(err)), -1);
    char longp[400];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(bt_ws_client_start(&c, "h", longp, err, sizeof(err)), -1);
    /* Answers cannot be read before the request exists. */
    assert_int_equal(bt_ws_handshake(&c, (uint8_t *)"HTTP/1.1", 8, &used, err, sizeof(err)), -1);
    assert_int_equal(bt_ws_client_start(&c, "h", "/", err, sizeof(err)), 0);
    assert_int_equal(bt_ws_client_start(&c, "h", "/", err, sizeof(err)), -1); /* twice */
    bt_ws s;
    bt_ws_init(&s, BT_WS_SERVER, 0);
    assert_int_equal(bt_ws_client_start(&s, "h", "/", err, sizeof(err)), -1); /* wrong role */
}

/* ---- frames --------------------------------------------------------------------------- */

static void test_server_masked_binary(void **state)
{
    (void)state;
    bt_ws s;
    char err[256];
    uint8_t buf[256], app[256];
    size_t got;
    server_open(&s, 0);
    size_t n = frame(buf, 1, 0, 2, 1, "\x10\x0a\x00\x04MQTT\x04\x02\x00\x3c", 12);
    n += frame(buf + n, 1, 0, 2, 1, "", 0); /* empty frames are fine */
    n += frame(buf + n, 1, 0, 2, 1, "\xc0\x00", 2);
    assert_int_equal(recv_all(&s, buf, n, app, &got, 0, err), 0);
    assert_int_equal(got, 14);
    assert_memory_equal(app, "\x10\x0a\x00\x04MQTT\x04\x02\x00\x3c\xc0\x00", 14);
    assert_null(bt_ws_output(&s, &got));
}

static void test_recv_before_handshake(void **state)
{
    (void)state;
    bt_ws s;
    char err[256];
    uint8_t b[8];
    size_t got;
    bt_ws_init(&s, BT_WS_SERVER, 0);
    size_t n = frame(b, 1, 0, 2, 1, "a", 1);
    assert_int_equal(bt_ws_recv(&s, b, n, b, &got, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "handshake not finished"));
    assert_null(bt_ws_output(&s, &got));
}

/* One malformed input to an open server: -1, the reason, and the close frame's code. */
static void refuse_frames(const uint8_t *in, size_t n, uint64_t max, const char *reason,
                          uint16_t code)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        bt_ws s;
        char err[256] = "";
        uint8_t app[1024];
        size_t got;
        server_open(&s, max);
        int r = recv_all(&s, in, n, app, &got, bytewise, err);
        if (r != -1 || !strstr(err, reason))
            fail_msg("r=%d err='%s' want '%s'", r, err, reason);
        assert_int_equal(bt_ws_get_state(&s), BT_WS_FAILED);
        assert_server_close(&s, code);
        /* The reason travels in the close frame too. */
        size_t on;
        const uint8_t *o = bt_ws_output(&s, &on);
        assert_non_null(memmem(o + 4, on - 4, reason, strlen(reason)));
        /* Nothing more is read, nothing more can be sent. */
        assert_int_equal(bt_ws_recv(&s, in, 1, app, &got, err, sizeof(err)), -1);
        assert_int_equal(got, 0);
        uint8_t h[BT_WS_HEADER_MAX];
        assert_int_equal(bt_ws_wrap(&s, 1, h, err, sizeof(err)), -1);
    }
}

static void test_malformed_frames(void **state)
{
    (void)state;
    uint8_t b[300];
    size_t n;
    n = frame(b, 1, 0, 2, 0, "ab", 2);
    refuse_frames(b, n, 0, "unmasked frame from a client", 1002);
    n = frame(b, 1, 4, 2, 1, "ab", 2);
    refuse_frames(b, n, 0, "reserved bits set", 1002);
    n = frame(b, 1, 1, 2, 1, "ab", 2);
    refuse_frames(b, n, 0, "reserved bits set", 1002);
    n = frame(b, 1, 0, 3, 1, "ab", 2);
    refuse_frames(b, n, 0, "unknown opcode 0x3", 1002);
    n = frame(b, 1, 0, 0xB, 1, "", 0);
    refuse_frames(b, n, 0, "unknown opcode 0xb", 1002);
    n = frame(b, 1, 0, 1, 1, "hi", 2);
    refuse_frames(b, n, 0, "text frames are not accepted", 1003);
    n = frame(b, 0, 0, 9, 1, "p", 1);
    refuse_frames(b, n, 0, "fragmented control frame", 1002);
    uint8_t p[200] = {0};
    n = frame(b, 1, 0, 9, 1, p, 126);
    refuse_frames(b, n, 0, "control frame longer than 125 bytes", 1002);
    n = frame(b, 1, 0, 0, 1, "ab", 2);
    refuse_frames(b, n, 0, "continuation frame outside a message", 1002);
    n = frame(b, 0, 0, 2, 1, "ab", 2);
    n += frame(b + n, 1, 0, 2, 1, "cd", 2);
    refuse_frames(b, n, 0, "new message inside a fragmented one", 1002);
    /* 64-bit length with the top bit set. */
    uint8_t big[14] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    refuse_frames(big, sizeof(big), 0, "frame length has its top bit set", 1002);
    /* Limits: one frame over the maximum, and a fragmented message over it. */
    n = frame(b, 1, 0, 2, 1, p, 101);
    refuse_frames(b, n, 100, "message larger than 100 bytes", 1009);
    n = frame(b, 0, 0, 2, 1, p, 60);
    n += frame(b + n, 0, 0, 0, 1, p, 40);
    n += frame(b + n, 1, 0, 0, 1, p, 1);
    refuse_frames(b, n, 100, "message larger than 100 bytes", 1009);
    /* Close frames that are themselves wrong. */
    n = frame(b, 1, 0, 8, 1, "\x03", 1);
    refuse_frames(b, n, 0, "close frame with a 1-byte body", 1002);
    n = frame(b, 1, 0, 8, 1, "\x03\xe7", 2); /* 999 */
    refuse_frames(b, n, 0, "invalid close code 999", 1002);
    n = frame(b, 1, 0, 8, 1, "\x03\xed", 2); /* 1005 is never sent */
    refuse_frames(b, n, 0, "invalid close code 1005", 1002);
    n = frame(b, 1, 0, 8, 1, "\x13\x88", 2); /* 5000 */
    refuse_frames(b, n, 0, "invalid close code 5000", 1002);
    n = frame(b, 1, 0, 8, 1, "\x03\xe8\xc0\xaf", 4); /* overlong '/' */
    refuse_frames(b, n, 0, "close reason is not UTF-8", 1007);
    n = frame(b, 1, 0, 8, 1, "\x03\xe8\xed\xa0\x80", 5); /* surrogate */
    refuse_frames(b, n, 0, "close reason is not UTF-8", 1007);
}

static void test_limits_exact(void **state)
{
    (void)state;
    bt_ws s;
    char err[256];
    uint8_t b[512], app[512], p[100];
    size_t got;
    memset(p, 'x', sizeof(p));
    server_open(&s, 100);
    size_t n = frame(b, 1, 0, 2, 1, p, 100);
    n += frame(b + n, 0, 0, 2, 1, p, 50); /* the count restarts with each message */
    n += frame(b + n, 1, 0, 0, 1, p, 50);
    assert_int_equal(recv_all(&s, b, n, app, &got, 0, err), 0);
    assert_int_equal(got, 200);
    /* Control frames do not count against the limit: 125 bytes, max 100. */
    uint8_t c[125];
    memset(c, 'c', sizeof(c));
    n = frame(b, 1, 0, 9, 1, c, 125);
    assert_int_equal(recv_all(&s, b, n, app, &got, 0, err), 0);
    size_t on;
    const uint8_t *o = bt_ws_output(&s, &on);
    assert_int_equal(on, 127);
    assert_int_equal(o[0], 0x8A);
    assert_int_equal(o[1], 125);
    assert_memory_equal(o + 2, c, 125);
}

static void test_client_side_masking(void **state)
{
    (void)state;
    bt_ws c;
    char err[256];
    uint8_t b[64], app[64];
    size_t got, n;
    client_open(&c, 0);
    n = frame(b, 1, 0, 2, 0, "\x20\x02\x00\x00", 4);
    assert_int_equal(recv_all(&c, b, n, app, &got, 0, err), 0);
    assert_int_equal(got, 4);
    assert_memory_equal(app, "\x20\x02\x00\x00", 4);
    /* A masked frame from a server is refused; the client's close frame is masked. */
    n = frame(b, 1, 0, 2, 1, "\x20\x02\x00\x00", 4);
    assert_int_equal(recv_all(&c, b, n, app, &got, 0, err), -1);
    assert_non_null(strstr(err, "masked frame from a server"));
    assert_int_equal(bt_ws_close_code(&c), 1002);
    const uint8_t *o = bt_ws_output(&c, &n);
    assert_int_equal(o[0], 0x88);
    assert_true(o[1] & 0x80);
    size_t pl = o[1] & 0x7f;
    assert_int_equal(n, 6 + pl);
    uint8_t body[125];
    bt_ws_mask(o + 2, 0, o + 6, body, pl);
    assert_int_equal((body[0] << 8) | body[1], 1002);
    assert_memory_equal(body + 2, "masked frame from a server", 26);
}

static void test_fragmentation(void **state)
{
    (void)state;
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        bt_ws s;
        char err[256];
        uint8_t b[256], app[256];
        size_t got, n;
        server_open(&s, 0);
        n = frame(b, 0, 0, 2, 1, "abc", 3);
        n += frame(b + n, 0, 0, 0, 1, "", 0);
        n += frame(b + n, 0, 0, 0, 1, "def", 3);
        n += frame(b + n, 1, 0, 0, 1, "gh", 2);
        n += frame(b + n, 1, 0, 2, 1, "ij", 2); /* a new message after the last fragment */
        assert_int_equal(recv_all(&s, b, n, app, &got, bytewise, err), 0);
        assert_int_equal(got, 10);
        assert_memory_equal(app, "abcdefghij", 10);
    }
}

static void test_ping_inside_fragmented_message(void **state)
{
    (void)state;
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        bt_ws s;
        char err[256];
        uint8_t b[256], app[256];
        size_t got, n;
        server_open(&s, 0);
        n = frame(b, 0, 0, 2, 1, "hello ", 6);
        n += frame(b + n, 1, 0, 9, 1, "p1", 2);
        n += frame(b + n, 1, 0, 10, 1, "unsolicited", 11); /* pongs are ignored */
        n += frame(b + n, 1, 0, 0, 1, "world", 5);
        assert_int_equal(recv_all(&s, b, n, app, &got, bytewise, err), 0);
        assert_int_equal(got, 11);
        assert_memory_equal(app, "hello world", 11);
        size_t on;
        const uint8_t *o = bt_ws_output(&s, &on);
        assert_int_equal(on, 4);
        assert_memory_equal(o, "\x8a\x02p1", 4);
    }
    /* A client answers with a masked pong carrying the same payload. */
    bt_ws c;
    char err[256];
    uint8_t b[64], app[64];
    size_t got, n;
    client_open(&c, 0);
    bt_ws_output_consume(&c, SIZE_MAX);
    n = frame(b, 1, 0, 9, 0, "ping!", 5);
    assert_int_equal(recv_all(&c, b, n, app, &got, 0, err), 0);
    assert_int_equal(got, 0);
    const uint8_t *o = bt_ws_output(&c, &n);
    assert_int_equal(n, 2 + 4 + 5);
    assert_int_equal(o[0], 0x8A);
    assert_int_equal(o[1], 0x80 | 5);
    uint8_t pl[5];
    bt_ws_mask(o + 2, 0, o + 6, pl, 5);
    assert_memory_equal(pl, "ping!", 5);
}

static void test_only_latest_ping_answered(void **state)
{
    (void)state;
    bt_ws s;
    char err[256];
    uint8_t b[256], app[16];
    size_t got, n, on;
    server_open(&s, 0);
    n = frame(b, 1, 0, 9, 1, "one", 3);
    n += frame(b + n, 1, 0, 9, 1, "two", 3);
    assert_int_equal(recv_all(&s, b, n, app, &got, 0, err), 0);
    const uint8_t *o = bt_ws_output(&s, &on);
    assert_int_equal(on, 5);
    assert_memory_equal(o, "\x8a\x03two", 5);
    /* Part of that pong went out: it must finish whole before the next one. */
    bt_ws_output_consume(&s, 2);
    n = frame(b, 1, 0, 9, 1, "three", 5);
    n += frame(b + n, 1, 0, 9, 1, "four", 4);
    assert_int_equal(recv_all(&s, b, n, app, &got, 0, err), 0);
    o = bt_ws_output(&s, &on);
    assert_int_equal(on, 3 + 6);
    assert_memory_equal(o,
                        "two\x8a\x04"
                        "four",
                        9);
    /* A flood of pings never overflows the output. */
    uint8_t big[125];
    memset(big, 'z', sizeof(big));
    for (int i = 0; i < 1000; i++) {
        n = frame(b, 1, 0, 9, 1, big, 125);
        assert_int_equal(recv_all(&s, b, n, app, &got, 0, err), 0);
    }
    o = bt_ws_output(&s, &on);
    assert_int_equal(on, 3 + 127); /* the unsent "four" pong was replaced */
    assert_memory_equal(o, "two\x8a\x7d", 5);
}

static void test_close_from_peer(void **state)
{
    (void)state;
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        bt_ws s;
        char err[256];
        uint8_t b[256], app[256];
        size_t got, n, on;
        server_open(&s, 0);
        n = frame(b, 1, 0, 2, 1, "last", 4);
        n += frame(b + n, 1, 0, 8, 1,
                   "\x03\xe8"
                   "bye \xc3\xa9",
                   8);
        n += frame(b + n, 1, 0, 2, 1, "after", 5); /* nothing counts after a close */
        assert_int_equal(recv_all(&s, b, n, app, &got, bytewise, err), 1);
        assert_int_equal(got, 4);
        assert_memory_equal(app, "last", 4);
        assert_int_equal(bt_ws_get_state(&s), BT_WS_CLOSED);
        assert_int_equal(bt_ws_close_code(&s), 1000);
        const uint8_t *o = bt_ws_output(&s, &on);
        assert_int_equal(on, 4);
        assert_memory_equal(o, "\x88\x02\x03\xe8", 4); /* the code echoed, once */
        assert_int_equal(bt_ws_recv(&s, b, n, app, &got, err, sizeof(err)), 1);
        assert_int_equal(got, 0);
        assert_int_equal(bt_ws_close(&s, 1000, "again", err, sizeof(err)), 0);
        bt_ws_output(&s, &on);
        assert_int_equal(on, 4);
        uint8_t h[BT_WS_HEADER_MAX];
        assert_int_equal(bt_ws_wrap(&s, 1, h, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "not open"));
    }
    /* A close without a body: code 1005 reported, an empty close answered. */
    bt_ws s;
    char err[256];
    uint8_t b[16], app[16];
    size_t got, n, on;
    server_open(&s, 0);
    n = frame(b, 1, 0, 8, 1, "", 0);
    assert_int_equal(recv_all(&s, b, n, app, &got, 0, err), 1);
    assert_int_equal(bt_ws_close_code(&s), 1005);
    const uint8_t *o = bt_ws_output(&s, &on);
    assert_int_equal(on, 2);
    assert_memory_equal(o, "\x88\x00", 2);
}

static void test_close_initiated(void **state)
{
    (void)state;
    bt_ws s;
    char err[256];
    uint8_t b[256], app[256];
    size_t got, n, on;
    server_open(&s, 0);
    assert_int_equal(bt_ws_close(&s, 999, NULL, err, sizeof(err)), -1);
    assert_int_equal(bt_ws_close(&s, 1000, "\xff", err, sizeof(err)), -1);
    assert_int_equal(bt_ws_close(&s, 1001, "going away", err, sizeof(err)), 0);
    assert_int_equal(bt_ws_get_state(&s), BT_WS_CLOSING);
    const uint8_t *o = bt_ws_output(&s, &on);
    assert_int_equal(on, 14);
    assert_memory_equal(o, "\x88\x0c\x03\xe9going away", 14);
    bt_ws_output_consume(&s, on);
    uint8_t h[BT_WS_HEADER_MAX];
    assert_int_equal(bt_ws_wrap(&s, 1, h, err, sizeof(err)), -1);
    /* Data still in flight from the peer is delivered; its pings are not answered. */
    n = frame(b, 1, 0, 2, 1, "late", 4);
    n += frame(b + n, 1, 0, 9, 1, "p", 1);
    n += frame(b + n, 1, 0, 8, 1, "\x03\xe9", 2);
    assert_int_equal(recv_all(&s, b, n, app, &got, 0, err), 1);
    assert_int_equal(got, 4);
    assert_int_equal(bt_ws_get_state(&s), BT_WS_CLOSED);
    assert_int_equal(bt_ws_close_code(&s), 1001);
    assert_null(bt_ws_output(&s, &on)); /* no second close */

    /* A long reason is cut on a character boundary to fit 123 bytes. */
    server_open(&s, 0);
    char reason[200];
    for (int i = 0; i < 66; i++)
        memcpy(reason + 2 * i, "\xc3\xa9", 2);
    reason[132] = '\0';
    assert_int_equal(bt_ws_close(&s, 1000, reason, err, sizeof(err)), 0);
    o = bt_ws_output(&s, &on);
    assert_int_equal(o[1], 2 + 122);
    /* Not before the handshake. */
    bt_ws fresh;
    bt_ws_init(&fresh, BT_WS_SERVER, 0);
    assert_int_equal(bt_ws_close(&fresh, 1000, NULL, err, sizeof(err)), -1);
}

static void test_wrap_server_headers(void **state)
{
    (void)state;
    bt_ws s;
    char err[256];
    uint8_t h[BT_WS_HEADER_MAX];
    server_open(&s, 0);
    assert_int_equal(bt_ws_wrap(&s, 0, h, err, sizeof(err)), 2);
    assert_memory_equal(h, "\x82\x00", 2);
    assert_int_equal(bt_ws_wrap(&s, 125, h, err, sizeof(err)), 2);
    assert_memory_equal(h, "\x82\x7d", 2);
    assert_int_equal(bt_ws_wrap(&s, 126, h, err, sizeof(err)), 4);
    assert_memory_equal(h, "\x82\x7e\x00\x7e", 4);
    assert_int_equal(bt_ws_wrap(&s, 65535, h, err, sizeof(err)), 4);
    assert_memory_equal(h, "\x82\x7e\xff\xff", 4);
    assert_int_equal(bt_ws_wrap(&s, 65536, h, err, sizeof(err)), 10);
    assert_memory_equal(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    assert_int_equal(bt_ws_wrap(&s, UINT64_C(1) << 63, h, err, sizeof(err)), -1);
    uint8_t out[8];
    assert_int_equal(bt_ws_wrap_copy(&s, "abc", 3, out, sizeof(out), err, sizeof(err)), 5);
    assert_memory_equal(out,
                        "\x82\x03"
                        "abc",
                        5);
    assert_int_equal(bt_ws_wrap_copy(&s, "abcdefg", 7, out, sizeof(out), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too small"));
}

/* A client's frames (several sizes, masked) decode on a server to the same bytes, fed whole
 * or one byte at a time; piecewise masking gives the same frame as bt_ws_wrap_copy. */
static void test_client_to_server_roundtrip(void **state)
{
    (void)state;
    static uint8_t data[70000], wire[300000], app[300000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 131 + 7);
    bt_ws c, s;
    char err[256];
    client_open(&c, 0);
    server_open(&s, 0);
    size_t sizes[] = {0, 1, 5, 125, 126, 127, 1000, 65535, 65536, 70000};
    size_t w = 0, total = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        ssize_t n =
            bt_ws_wrap_copy(&c, data, sizes[i], wire + w, sizeof(wire) - w, err, sizeof(err));
        assert_true(n > 0);
        assert_true(wire[w + 1] & 0x80); /* masked */
        w += (size_t)n;
        total += sizes[i];
    }
    assert_true(w < sizeof(wire));
    /* The payload on the wire is masked, not plain. */
    assert_memory_not_equal(wire + w - 70000, data, 70000);
    size_t got;
    assert_int_equal(recv_all(&s, wire, w, app, &got, 0, err), 0);
    assert_int_equal(got, total);
    size_t off = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        assert_memory_equal(app + off, data, sizes[i]);
        off += sizes[i];
    }
    /* Header + piecewise masking, odd piece sizes. */
    uint8_t h[BT_WS_HEADER_MAX];
    int hl = bt_ws_wrap(&c, 1000, h, err, sizeof(err));
    assert_int_equal(hl, 8);
    memcpy(wire, h, (size_t)hl);
    for (size_t o = 0; o < 1000;) {
        size_t piece = 1 + (o % 13);
        if (piece > 1000 - o)
            piece = 1000 - o;
        bt_ws_mask(h + hl - 4, o, data + o, wire + hl + o, piece);
        o += piece;
    }
    assert_int_equal(recv_all(&s, wire, (size_t)hl + 1000, app, &got, 1, err), 0);
    assert_int_equal(got, 1000);
    assert_memory_equal(app, data, 1000);
}

/* The whole mixed stream, one byte at a time, against the whole stream at once. */
static void test_byte_at_a_time_stream(void **state)
{
    (void)state;
    uint8_t b[4096], app1[4096], app2[4096], p[300];
    for (size_t i = 0; i < sizeof(p); i++)
        p[i] = (uint8_t)i;
    size_t n = 0;
    n += frame(b + n, 1, 0, 2, 1, p, 300);
    n += frame(b + n, 0, 0, 2, 1, p, 7);
    n += frame(b + n, 1, 0, 9, 1, "x", 1);
    n += frame(b + n, 0, 0, 0, 1, p + 7, 126);
    n += frame(b + n, 1, 0, 10, 1, "", 0);
    n += frame(b + n, 1, 0, 0, 1, p + 133, 3);
    n += frame(b + n, 1, 0, 2, 1, p, 2);
    bt_ws s1, s2;
    char err[256];
    size_t g1, g2, o1, o2;
    server_open(&s1, 0);
    server_open(&s2, 0);
    assert_int_equal(recv_all(&s1, b, n, app1, &g1, 0, err), 0);
    assert_int_equal(recv_all(&s2, b, n, app2, &g2, 1, err), 0);
    assert_int_equal(g1, 300 + 136 + 2);
    assert_int_equal(g1, g2);
    assert_memory_equal(app1, app2, g1);
    assert_memory_equal(app1, p, 300);
    assert_memory_equal(app1 + 300, p, 136);
    const uint8_t *x1 = bt_ws_output(&s1, &o1), *x2 = bt_ws_output(&s2, &o2);
    assert_int_equal(o1, 3);
    assert_int_equal(o2, 3);
    assert_memory_equal(x1, x2, 3);
}

/* Decoding into a separate buffer works as well as in place. */
static void test_recv_separate_buffer(void **state)
{
    (void)state;
    bt_ws s;
    char err[256];
    uint8_t b[64], out[64];
    size_t got;
    server_open(&s, 0);
    size_t n = frame(b, 1, 0, 2, 1, "separate", 8);
    uint8_t copy[64];
    memcpy(copy, b, n);
    assert_int_equal(bt_ws_recv(&s, b, n, out, &got, err, sizeof(err)), 0);
    assert_int_equal(got, 8);
    assert_memory_equal(out, "separate", 8);
    assert_memory_equal(b, copy, n); /* input untouched */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key_rfc),
        cmocka_unit_test(test_server_answer_rfc),
        cmocka_unit_test(test_client_server_handshake),
        cmocka_unit_test(test_handshake_byte_at_a_time),
        cmocka_unit_test(test_handshake_variants),
        cmocka_unit_test(test_handshake_bad_requests),
        cmocka_unit_test(test_handshake_size_bound_exact),
        cmocka_unit_test(test_client_bad_answers),
        cmocka_unit_test(test_client_start_args),
        cmocka_unit_test(test_server_masked_binary),
        cmocka_unit_test(test_recv_before_handshake),
        cmocka_unit_test(test_malformed_frames),
        cmocka_unit_test(test_limits_exact),
        cmocka_unit_test(test_client_side_masking),
        cmocka_unit_test(test_fragmentation),
        cmocka_unit_test(test_ping_inside_fragmented_message),
        cmocka_unit_test(test_only_latest_ping_answered),
        cmocka_unit_test(test_close_from_peer),
        cmocka_unit_test(test_close_initiated),
        cmocka_unit_test(test_wrap_server_headers),
        cmocka_unit_test(test_client_to_server_roundtrip),
        cmocka_unit_test(test_byte_at_a_time_stream),
        cmocka_unit_test(test_recv_separate_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
