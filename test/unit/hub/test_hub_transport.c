/* The hub's WebSocket transport driven from memory under a real session: an inner transport
 * that serves given bytes and records what is written, so the upgrade answer, MQTT in
 * binary frames, pongs, partial writes and close frames can be checked byte for byte.
 * Also the config rules of TLS listeners and the empty-password rule of logins. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../hub/auth.h"
#include "../../../hub/hub.h"

/* ---- a recording inner transport -------------------------------------------------------- */
typedef struct {
    transport t;
    const uint8_t *in;
    size_t in_len, in_off;
    uint8_t out[8192];
    size_t out_len;
    size_t write_room; /* bytes the "socket" takes per writev before EAGAIN; 0 = unlimited */
    int *closed;
} rec_transport;

static int load_conf(hub_config *c, const char *yaml, char *err, size_t errlen)
{
    return bt_cfg_load_string(&hub_config_schema, c, yaml, strlen(yaml), err, errlen);
}
static ssize_t rec_read(transport *t, void *b, size_t n)
{
    rec_transport *r = (rec_transport *)t;
    t->drained = true;
    if (r->in_off == r->in_len) {
        errno = EAGAIN;
        return -1;
    }
    size_t k = r->in_len - r->in_off < n ? r->in_len - r->in_off : n;
    memcpy(b, r->in + r->in_off, k);
    r->in_off += k;
    return (ssize_t)k;
}

static ssize_t rec_writev(transport *t, const struct iovec *iov, int n)
{
    rec_transport *r = (rec_transport *)t;
    size_t room = r->write_room ? r->write_room : sizeof r->out - r->out_len;
    size_t total = 0;
    for (int i = 0; i < n && room; i++) {
        size_t k = iov[i].iov_len < room ? iov[i].iov_len : room;
        memcpy(r->out + r->out_len, iov[i].iov_base, k);
        r->out_len += k;
        total += k;
        room -= k;
    }
    if (!total) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)total;
}

static void rec_close(transport *t)
{
    rec_transport *r = (rec_transport *)t;
    (*r->closed)++;
    /* the test keeps the recorder: nothing to free */
}

static const transport_ops rec_ops = {rec_read, rec_writev, NULL, rec_close};

static void rec_init(rec_transport *r, int *closed)
{
    memset(r, 0, sizeof *r);
    r->t.ops = &rec_ops;
    r->t.fd = -1;
    r->t.gather = true;
    r->closed = closed;
}

static void rec_feed(rec_transport *r, const uint8_t *d, size_t n)
{
    r->in = d;
    r->in_len = n;
    r->in_off = 0;
}

/* ---- helpers ------------------------------------------------------------------------------ */
static const char CONF[] = "listen: ['ws://127.0.0.1:1/mqtt']\n"
                           "principals:\n"
                           "  - username: u\n    password: p\n"
                           "    permissions:\n"
                           "      - {action: pub, permit: ['#']}\n"
                           "      - {action: sub, permit: ['#']}\n";

static const char UPGRADE[] =
    "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n";
static const uint8_t CONNECT[] = {0x10, 0x13, 0, 4,   'M', 'Q', 'T', 'T', 4, 0xC2, 0,
                                  60,   0,    1, 'f', 0,   1,   'u', 0,   1, 'p'};

/* Appends a masked client frame to b at *n. */
static void frame(uint8_t *b, size_t *n, uint8_t first, const uint8_t *p, size_t len)
{
    static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
    b[(*n)++] = first;
    assert_true(len < 126);
    b[(*n)++] = (uint8_t)(0x80 | len);
    memcpy(b + *n, key, 4);
    *n += 4;
    for (size_t i = 0; i < len; i++)
        b[(*n)++] = p[i] ^ key[i & 3];
}

typedef struct {
    hub_config cfg;
    hub h;
    rec_transport rec;
    int closed;
    conn *c;
} fixture;

static void setup(fixture *f)
{
    char err[256];
    assert_int_equal(load_conf(&f->cfg, CONF, err, sizeof err), 0);
    assert_int_equal(hub_init(&f->h, &f->cfg, NULL, err, sizeof err), 0);
    f->closed = 0;
    rec_init(&f->rec, &f->closed);
    transport *t = transport_ws_new(&f->rec.t, 70000);
    assert_non_null(t);
    assert_true(t->handshaking);
    f->c = conn_new(&f->h, t);
}

static void teardown(fixture *f)
{
    hub_shutdown(&f->h);
    bt_cfg_free(&hub_config_schema, &f->cfg);
}

/* ---- tests -------------------------------------------------------------------------------- */
static void test_upgrade_connect_ping_close(void **state)
{
    fixture f;
    setup(&f);
    /* the upgrade and a CONNECT frame arrive in one read */
    uint8_t in[512];
    size_t n = strlen(UPGRADE);
    memcpy(in, UPGRADE, n);
    frame(in, &n, 0x82, CONNECT, sizeof CONNECT);
    rec_feed(&f.rec, in, n);
    conn_on_readable(f.c);
    assert_int_equal(f.c->state, CONN_ACTIVE);
    assert_false(f.c->tr->handshaking);
    hub_turn_end(&f.h);
    const char *ans = (const char *)f.rec.out;
    assert_memory_equal(ans, "HTTP/1.1 101 Switching Protocols\r\n", 34);
    assert_non_null(memmem(ans, f.rec.out_len, "Sec-WebSocket-Protocol: mqtt\r\n", 30));
    assert_non_null(memmem(ans, f.rec.out_len, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28));
    const uint8_t *end = memmem(ans, f.rec.out_len, "\r\n\r\n", 4);
    assert_non_null(end);
    end += 4;
    /* CONNACK in one unmasked binary frame */
    static const uint8_t connack[] = {0x82, 4, 0x20, 2, 0, 0};
    assert_int_equal(f.rec.out + f.rec.out_len - end, sizeof connack);
    assert_memory_equal(end, connack, sizeof connack);

    /* a ping inside a fragmented PINGREQ: the pong goes out, then PINGRESP */
    f.rec.out_len = 0;
    static const uint8_t pingreq[] = {0xC0, 0};
    n = 0;
    frame(in, &n, 0x02, pingreq, 1);
    frame(in, &n, 0x89, (const uint8_t *)"hi", 2);
    frame(in, &n, 0x80, pingreq + 1, 1);
    rec_feed(&f.rec, in, n);
    conn_on_readable(f.c);
    hub_turn_end(&f.h);
    static const uint8_t want[] = {0x8A, 2, 'h', 'i', 0x82, 2, 0xD0, 0};
    assert_int_equal(f.rec.out_len, sizeof want);
    assert_memory_equal(f.rec.out, want, sizeof want);

    /* the peer's close is echoed and ends the connection at once */
    f.rec.out_len = 0;
    static const uint8_t bye[] = {0x03, 0xE8};
    n = 0;
    frame(in, &n, 0x88, bye, 2);
    rec_feed(&f.rec, in, n);
    conn_on_readable(f.c);
    assert_int_equal(f.c->state, CONN_CLOSED);
    hub_turn_end(&f.h);
    static const uint8_t echo[] = {0x88, 2, 0x03, 0xE8};
    assert_int_equal(f.rec.out_len, sizeof echo);
    assert_memory_equal(f.rec.out, echo, sizeof echo);
    assert_int_equal(f.closed, 1);
    teardown(&f);
}

static void test_partial_writes_keep_frames_whole(void **state)
{
    fixture f;
    setup(&f);
    uint8_t in[512];
    size_t n = strlen(UPGRADE);
    memcpy(in, UPGRADE, n);
    frame(in, &n, 0x82, CONNECT, sizeof CONNECT);
    rec_feed(&f.rec, in, n);
    conn_on_readable(f.c);
    hub_turn_end(&f.h);
    size_t before = f.rec.out_len;
    /* a socket that takes 3 bytes per call: three sends, then the rest from our buffer */
    f.rec.write_room = 3;
    static const uint8_t a[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_int_equal(conn_send(f.c, a, sizeof a), 0);
    hub_turn_end(&f.h);
    assert_true(f.c->tr->out_pending || f.rec.out_len == before + 12);
    for (int i = 0; i < 10 && f.c->tr->out_pending; i++)
        conn_flush(f.c);
    assert_false(f.c->tr->out_pending);
    static const uint8_t want[] = {0x82, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_int_equal(f.rec.out_len - before, sizeof want);
    assert_memory_equal(f.rec.out + before, want, sizeof want);
    teardown(&f);
}

static void test_bad_frame_closes_with_1002(void **state)
{
    fixture f;
    setup(&f);
    uint8_t in[512];
    size_t n = strlen(UPGRADE);
    memcpy(in, UPGRADE, n);
    frame(in, &n, 0x82, CONNECT, sizeof CONNECT);
    in[n++] = 0x82; /* unmasked */
    in[n++] = 2;
    in[n++] = 0xC0;
    in[n++] = 0;
    rec_feed(&f.rec, in, n);
    conn_on_readable(f.c);
    assert_int_equal(f.c->state, CONN_CLOSED);
    hub_turn_end(&f.h);
    /* ... 101 answer, then the close frame with 1002 and its reason */
    const uint8_t *cl = memmem(f.rec.out, f.rec.out_len, "\x88", 1);
    assert_non_null(cl);
    assert_int_equal(cl[2], 0x03);
    assert_int_equal(cl[3], 0xEA);
    assert_int_equal(f.closed, 1);
    teardown(&f);
}

static void test_bad_upgrade_gets_400(void **state)
{
    fixture f;
    setup(&f);
    static const char bad[] = "GET /mqtt HTTP/1.1\r\nHost: h\r\n\r\n";
    rec_feed(&f.rec, (const uint8_t *)bad, strlen(bad));
    conn_on_readable(f.c);
    assert_int_equal(f.c->state, CONN_CLOSED);
    hub_turn_end(&f.h);
    assert_true(f.rec.out_len > 12);
    assert_memory_equal(f.rec.out, "HTTP/1.1 400", 12);
    teardown(&f);
}

static void test_tls_listener_config(void **state)
{
    hub_config cfg;
    char err[256];
    assert_int_equal(load_conf(&cfg, "listen: ['ssl://:8883']\n", err, sizeof err), -1);
    assert_string_equal(err, "certificate.cert: required by the listener ssl://:8883");
    assert_int_equal(
        load_conf(&cfg, "listen: ['wss://:1/m']\ncertificate: {cert: c}\n", err, sizeof err), -1);
    assert_string_equal(err, "certificate.key: required by the listener wss://:1/m");
    assert_int_equal(load_conf(&cfg, "listen: ['ws://:1/m', 'tcp://:2']\n", err, sizeof err), 0);
    assert_int_equal(cfg.handshake_timeout_ms, 10000);
    bt_cfg_free(&hub_config_schema, &cfg);
    assert_int_equal(load_conf(&cfg, "listen: ['quic://:1']\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "unsupported scheme"));
    /* the TLS context names the field of a missing file */
    assert_int_equal(
        load_conf(&cfg, "certificate: {cert: /nonexistent.pem, key: k}\n", err, sizeof err), 0);
    assert_null(transport_tls_ctx_new(&cfg, err, sizeof err));
    assert_string_equal(err, "certificate.cert (/nonexistent.pem): No such file or directory");
    bt_cfg_free(&hub_config_schema, &cfg);
}

static void test_login_rules(void **state)
{
    hub_config cfg;
    char err[256];
    assert_int_equal(load_conf(&cfg,
                               "principals:\n"
                               "  - {username: cert}\n"
                               "  - {username: empty, password: ''}\n"
                               "  - {username: pw, password: secret}\n",
                               err, sizeof err),
                     0);
    const bt_cfg_list *p = &cfg.principals;
    /* password-less principals: only with a verified certificate, no or an empty password */
    assert_null(auth_login(p, "cert", NULL, 0, false, false));
    assert_non_null(auth_login(p, "cert", NULL, 0, false, true));
    assert_non_null(auth_login(p, "cert", "", 0, true, true));
    assert_null(auth_login(p, "cert", "x", 1, true, true));
    /* an empty configured password is no password: not a plain-tcp login */
    assert_null(auth_login(p, "empty", "", 0, true, false));
    assert_non_null(auth_login(p, "empty", "", 0, true, true));
    /* a certificate does not replace a password */
    assert_null(auth_login(p, "pw", NULL, 0, false, true));
    assert_null(auth_login(p, "pw", "", 0, true, true));
    assert_non_null(auth_login(p, "pw", "secret", 6, true, false));
    bt_cfg_free(&hub_config_schema, &cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_connect_ping_close),
        cmocka_unit_test(test_partial_writes_keep_frames_whole),
        cmocka_unit_test(test_bad_frame_closes_with_1002),
        cmocka_unit_test(test_bad_upgrade_gets_400),
        cmocka_unit_test(test_tls_listener_config),
        cmocka_unit_test(test_login_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
