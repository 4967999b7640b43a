/* The client's byte pipe: a non-blocking TCP socket, optionally TLS (OpenSSL) and optionally
 * WebSocket framing (ws.h) on top, so the session above only sees MQTT bytes. Each connect
 * step moves the state on by itself: TCP -> TLS -> WS upgrade -> CONNECT sent. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mqtt_client_internal.h"
#include "tls_client.h"

void mc_reason(bt_mqtt_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof c->reason, fmt, ap);
    va_end(ap);
}

/* A bigger idle buffer is dropped, so one large message does not pin memory for the
 * client's life. */
#define BUF_KEEP_MAX (1u << 20)

/* ---- TLS (tls_client.h) ----------------------------------------------------------- */

int mc_tls_ctx(bt_mqtt_client *c, char *err, size_t errlen)
{
    char why[200];
    if (bt_ossl_load(why, sizeof why) < 0) {
        snprintf(err, errlen, "address (%s://): TLS needs %s", c->addr.ws ? "wss" : "ssl", why);
        return -1;
    }
    c->ssl_ctx = bt_tls_client_ctx(c->cfg.ca, c->cfg.cert, c->cfg.key, err, errlen);
    return c->ssl_ctx ? 0 : -1;
}

static int tls_begin(bt_mqtt_client *c)
{
    char why[256];
    c->ssl = bt_tls_client_ssl(c->ssl_ctx, c->fd, c->addr.host, c->cfg.insecure, why, sizeof why);
    if (!c->ssl) {
        mc_reason(c, "%s", why);
        return -1;
    }
    c->state = MC_TLS;
    return 0;
}

/* Why an SSL call failed, for c->reason. */
static void tls_fail(bt_mqtt_client *c, int rc, const char *what)
{
    char why[200];
    bt_tls_fail_reason(c->ssl, rc, c->state == MC_TLS, "connection closed by broker", why,
                       sizeof why);
    mc_reason(c, "tls %s: %s", what, why);
}

/* ---- connect steps ---------------------------------------------------------------- */

/* TCP is up: TLS, then the WebSocket upgrade, then CONNECT. */
static int next_step(bt_mqtt_client *c)
{
    if (c->state == MC_TCP && c->addr.tls) {
        if (tls_begin(c) < 0)
            return -1;
        return mc_tr_tls_step(c) < 0 ? -1 : 0;
    }
    if ((c->state == MC_TCP || c->state == MC_TLS) && c->addr.ws)
        return mc_tr_ws_start(c);
    if (mc_send_connect(c) < 0)
        return -1;
    c->state = MC_MQTT;
    return 0;
}

/* Starts a non-blocking connect to the next address that takes one. */
static int try_addresses(bt_mqtt_client *c)
{
    int last = 0;
    while (c->ai_next) {
        struct addrinfo *ai = c->ai_next;
        c->ai_next = ai->ai_next;
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
            c->fd = fd;
            c->state = MC_TCP;
            return 0;
        }
        last = errno;
        close(fd);
    }
    mc_reason(c, "connect %s: %s", c->addr.hostport, last ? strerror(last) : "no address");
    return -1;
}

int mc_tr_connect(bt_mqtt_client *c)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (c->ai) {
        freeaddrinfo(c->ai);
        c->ai = c->ai_next = NULL;
    }
    /* getaddrinfo blocks; hub addresses are names of the local network or literals */
    int rc = getaddrinfo(c->addr.host, c->addr.port, &hints, &c->ai);
    if (rc != 0) {
        c->ai = NULL;
        mc_reason(c, "resolve %s: %s", c->addr.host, gai_strerror(rc));
        return -1;
    }
    c->ai_next = c->ai;
    return try_addresses(c);
}

int mc_tr_connected(bt_mqtt_client *c)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    if (soerr) {
        close(c->fd);
        c->fd = -1;
        c->state = MC_IDLE;
        if (c->ai_next && try_addresses(c) == 0)
            return 0;
        mc_reason(c, "connect %s: %s", c->addr.hostport, strerror(soerr));
        return -1;
    }
    if (c->ai) {
        freeaddrinfo(c->ai);
        c->ai = c->ai_next = NULL;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return next_step(c);
}

int mc_tr_tls_step(bt_mqtt_client *c)
{
    ERR_clear_error();
    c->tls_want_write = false;
    errno = 0;
    int rc = SSL_connect(c->ssl);
    if (rc == 1)
        return next_step(c) < 0 ? -1 : 1;
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_WANT_WRITE) {
        c->tls_want_write = true;
        return 0;
    }
    tls_fail(c, rc, "handshake");
    return -1;
}

int mc_tr_ws_start(bt_mqtt_client *c)
{
    char why[200];
    bt_ws_init(&c->ws, BT_WS_CLIENT, c->opt.max_packet ? c->opt.max_packet : BT_MQTT_MAX_PACKET);
    if (bt_ws_client_start(&c->ws, c->addr.hostport, c->addr.path, why, sizeof why) < 0) {
        mc_reason(c, "websocket: %s", why);
        return -1;
    }
    size_t n;
    const uint8_t *o = bt_ws_output(&c->ws, &n);
    if (o && bt_buf_append(&c->out, o, n) < 0) {
        mc_reason(c, "out of memory");
        return -1;
    }
    bt_ws_output_consume(&c->ws, n);
    c->state = MC_WS;
    return 0;
}

/* ---- raw I/O ---------------------------------------------------------------------- */

/* >0 bytes read, 0 nothing now, -1 the link ended (reason set). */
static ssize_t raw_read(bt_mqtt_client *c, uint8_t *dst, size_t n)
{
    if (c->ssl) {
        ERR_clear_error();
        c->tls_want_write = false;
        errno = 0;
        int rc = SSL_read(c->ssl, dst, (int)n);
        if (rc > 0)
            return rc;
        int e = SSL_get_error(c->ssl, rc);
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        if (e == SSL_ERROR_WANT_WRITE) {
            c->tls_want_write = true;
            return 0;
        }
        tls_fail(c, rc, "read");
        return -1;
    }
    for (;;) {
        ssize_t r = recv(c->fd, dst, n, 0);
        if (r > 0)
            return r;
        if (r == 0) {
            mc_reason(c, "connection closed by broker");
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        mc_reason(c, "read: %s", strerror(errno));
        return -1;
    }
}

/* >0 bytes written, 0 would block, -1 the link failed (reason set). */
static ssize_t raw_write(bt_mqtt_client *c, const uint8_t *src, size_t n)
{
    if (c->ssl) {
        ERR_clear_error();
        c->tls_want_write = false;
        errno = 0;
        int rc = SSL_write(c->ssl, src, n > INT32_MAX ? INT32_MAX : (int)n);
        if (rc > 0)
            return rc;
        int e = SSL_get_error(c->ssl, rc);
        if (e == SSL_ERROR_WANT_WRITE) {
            c->tls_want_write = true;
            return 0;
        }
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        tls_fail(c, rc, "write");
        return -1;
    }
    for (;;) {
        ssize_t w = send(c->fd, src, n, MSG_NOSIGNAL);
        if (w >= 0)
            return w;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        mc_reason(c, "write: %s", strerror(errno));
        return -1;
    }
}

/* Sends what the WebSocket layer wants to send back (pongs, close). */
static int ws_output(bt_mqtt_client *c)
{
    size_t n;
    const uint8_t *o = bt_ws_output(&c->ws, &n);
    if (o && n) {
        if (bt_buf_append(&c->out, o, n) < 0) {
            mc_reason(c, "out of memory");
            return -1;
        }
        bt_ws_output_consume(&c->ws, n);
    }
    return 0;
}

/* Unframes n raw bytes at dst (= in.p + in.len) in place. */
static int ws_input(bt_mqtt_client *c, uint8_t *dst, size_t n)
{
    char why[200];
    if (c->state == MC_WS) {
        size_t used = 0;
        int rc = bt_ws_handshake(&c->ws, dst, n, &used, why, sizeof why);
        if (rc < 0) {
            mc_reason(c, "websocket handshake: %s", why);
            return -1;
        }
        if (ws_output(c) < 0)
            return -1;
        if (rc == 0)
            return 0;
        if (mc_send_connect(c) < 0)
            return -1;
        c->state = MC_MQTT;
        n -= used;
        memmove(dst, dst + used, n);
        if (n == 0)
            return 0;
    }
    size_t outlen = 0;
    int rc = bt_ws_recv(&c->ws, dst, n, dst, &outlen, why, sizeof why);
    c->in.len += outlen;
    if (ws_output(c) < 0)
        return -1;
    if (rc < 0) {
        mc_reason(c, "websocket: %s", why);
        return -1;
    }
    if (rc == 1) {
        mc_reason(c, "websocket closed by broker (code %u)", bt_ws_close_code(&c->ws));
        return -1;
    }
    return 0;
}

int mc_tr_read(bt_mqtt_client *c)
{
    size_t total = 0;
    while (total < MC_READ_TURN) {
        uint8_t *dst = bt_buf_reserve(&c->in, MC_READ_CHUNK);
        if (!dst) {
            mc_reason(c, "out of memory");
            return -1;
        }
        ssize_t n = raw_read(c, dst, MC_READ_CHUNK);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        total += (size_t)n;
        if (c->addr.ws) {
            if (ws_input(c, dst, (size_t)n) < 0)
                return -1;
        } else {
            c->in.len += (size_t)n;
        }
        if ((size_t)n < MC_READ_CHUNK && !mc_tr_pending(c))
            break; /* drained: save the EAGAIN round trip */
    }
    return total ? 1 : 0;
}

bool mc_tr_has_output(const bt_mqtt_client *c)
{
    return c->out.len > c->out.off || c->wsout.len > c->wsout.off;
}

bool mc_tr_direct_ok(const bt_mqtt_client *c)
{
    return c->state == MC_UP && !c->addr.tls && !c->addr.ws && !mc_tr_has_output(c);
}

bool mc_tr_send_direct(bt_mqtt_client *c, const uint8_t *data, size_t n)
{
    /* room first: once part of a packet is on the wire, its rest must follow */
    if (!bt_buf_reserve(&c->out, n))
        return false;
    ssize_t w;
    do
        w = send(c->fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    if (w <= 0)
        return false; /* full, or the link failed: the thread finds out when it reads */
    c->last_send = bt_now_ms();
    if ((size_t)w < n) {
        bt_buf_append(&c->out, data + w, n - (size_t)w); /* reserved: cannot fail */
        c->direct = false;
        mc_wake_locked(c);
    }
    return true;
}

bt_buf *mc_tr_mqtt_out(bt_mqtt_client *c)
{
    return c->addr.ws ? &c->wsout : &c->out;
}

bool mc_tr_pending(const bt_mqtt_client *c)
{
    return c->ssl && SSL_pending(c->ssl) > 0;
}

int mc_tr_flush(bt_mqtt_client *c)
{
    if (c->addr.ws && c->wsout.len > c->wsout.off && bt_ws_get_state(&c->ws) == BT_WS_OPEN) {
        /* all MQTT bytes of this turn in one binary frame */
        size_t n = c->wsout.len - c->wsout.off;
        uint8_t *dst = bt_buf_reserve(&c->out, n + BT_WS_HEADER_MAX);
        char why[200];
        if (!dst) {
            mc_reason(c, "out of memory");
            return -1;
        }
        ssize_t w = bt_ws_wrap_copy(&c->ws, c->wsout.p + c->wsout.off, n, dst, n + BT_WS_HEADER_MAX,
                                    why, sizeof why);
        if (w < 0) {
            mc_reason(c, "websocket: %s", why);
            return -1;
        }
        c->out.len += (size_t)w;
        c->wsout.off = c->wsout.len = 0;
        bt_buf_trim(&c->wsout, BUF_KEEP_MAX);
    }
    while (c->out.len > c->out.off) {
        ssize_t w = raw_write(c, c->out.p + c->out.off, c->out.len - c->out.off);
        if (w < 0)
            return -1;
        if (w == 0)
            break;
        bt_buf_consume(&c->out, (size_t)w);
        c->last_send = bt_now_ms();
    }
    bt_buf_trim(&c->out, BUF_KEEP_MAX);
    return 0;
}

void mc_tr_close(bt_mqtt_client *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    if (c->ai) {
        freeaddrinfo(c->ai);
        c->ai = c->ai_next = NULL;
    }
    c->tls_want_write = false;
    c->in.off = c->in.len = 0;
    c->out.off = c->out.len = 0;
    c->wsout.off = c->wsout.len = 0;
    bt_buf_trim(&c->in, BUF_KEEP_MAX);
    bt_buf_trim(&c->out, BUF_KEEP_MAX);
    bt_buf_trim(&c->wsout, BUF_KEEP_MAX);
    c->state = MC_IDLE;
}
