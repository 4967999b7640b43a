/* WebSocket transport for ws:// and wss:// listeners: the SDK's RFC 6455 layer (bt_ws)
 * between an inner transport (tcp, or tls for wss) and the MQTT codec.
 *
 * Reads decode frames in place in the caller's buffer (unmasking, dropping headers and
 * control frames), so the session parses MQTT exactly as on tcp. Each write becomes one
 * binary frame of everything the connection had buffered. Bytes of our own (the 101 or
 * 400 answer, pongs, close frames, and the rest of a frame the socket did not take) wait
 * in `out`, which only ever holds whole frames' tails, so frames never interleave; the
 * connection flushes them (out_pending). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/ws.h"
#include "hub.h"

typedef struct {
    transport t;
    transport *in;
    bt_ws ws;
    bt_buf out; /* our bytes not yet taken by the inner transport */
    int8_t end; /* 0 open, 1 the peer closed, -1 failed: what read() reports from now on */
    char why[200];
} ws_transport;

/* The inner transport's view of the socket is ours. */
static void sync_flags(ws_transport *w)
{
    w->t.drained = w->in->drained;
    w->t.read_wants_write = w->in->read_wants_write;
    w->t.write_wants_read = w->in->write_wants_read;
    w->t.cert_verified = w->in->cert_verified;
    w->t.handshaking = w->in->handshaking || bt_ws_get_state(&w->ws) == BT_WS_HANDSHAKE;
}

/* Moves what bt_ws wants to send (answers, pongs, close) to our output. */
static int take_output(ws_transport *w)
{
    size_t n;
    const uint8_t *o = bt_ws_output(&w->ws, &n);
    if (!n)
        return 0;
    if (bt_buf_append(&w->out, o, n) < 0)
        return -1;
    bt_ws_output_consume(&w->ws, n);
    w->t.out_pending = true;
    return 0;
}

static ssize_t fail(ws_transport *w, const char *why)
{
    snprintf(w->why, sizeof w->why, "%s", why);
    w->end = -1;
    w->t.err = w->why;
    errno = EPROTO;
    return -1;
}

static int ws_flush(transport *t)
{
    ws_transport *w = (ws_transport *)t;
    while (bt_buf_size(&w->out)) {
        struct iovec v = {w->out.p + w->out.off, bt_buf_size(&w->out)};
        ssize_t r = w->in->ops->writev(w->in, &v, 1);
        t->write_wants_read = w->in->write_wants_read;
        if (r < 0) {
            t->err = w->in->err;
            return -1;
        }
        bt_buf_consume(&w->out, (size_t)r);
        bt_buf_trim(&w->out, 0);
    }
    t->out_pending = false;
    return 0;
}

static ssize_t ws_read(transport *t, void *b, size_t n)
{
    ws_transport *w = (ws_transport *)t;
    char err[160];
    for (;;) {
        if (w->end > 0)
            return 0;
        if (w->end < 0) {
            t->err = w->why;
            errno = EPROTO;
            return -1;
        }
        ssize_t r = w->in->ops->read(w->in, b, n);
        sync_flags(w);
        if (r <= 0) {
            if (r < 0)
                t->err = w->in->err;
            return r;
        }
        uint8_t *p = b;
        size_t len = (size_t)r, outlen = 0;
        if (bt_ws_get_state(&w->ws) == BT_WS_HANDSHAKE) {
            size_t used = 0;
            int h = bt_ws_handshake(&w->ws, p, len, &used, err, sizeof err);
            if (take_output(w) < 0)
                return fail(w, "out of memory");
            if (h < 0)
                return fail(w, err); /* the 400 answer goes out when the connection closes */
            if (h == 0) {
                if (t->drained) {
                    errno = EAGAIN;
                    return -1;
                }
                continue;
            }
            t->handshaking = w->in->handshaking;
            p += used;
            len -= used;
        }
        /* In place: the MQTT bytes land at the start of b, before what is still to decode. */
        int rc = bt_ws_recv(&w->ws, p, len, b, &outlen, err, sizeof err);
        if (take_output(w) < 0)
            return fail(w, "out of memory");
        if (rc < 0)
            return fail(w, err); /* bytes before the bad frame are dropped with the connection */
        if (rc == 1) {
            /* Our close answer is queued and goes out at close; read again at once so the
             * connection sees the end now rather than when the peer closes the socket. */
            w->end = 1;
            t->drained = false;
            return (ssize_t)outlen;
        }
        if (outlen)
            return (ssize_t)outlen;
        if (t->drained) {
            errno = EAGAIN;
            return -1;
        }
    }
}

static ssize_t ws_writev(transport *t, const struct iovec *iov, int n)
{
    ws_transport *w = (ws_transport *)t;
    t->write_wants_read = false;
    if (w->end < 0) {
        t->err = w->why;
        errno = EPIPE;
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    /* After the peer's close frame nothing may be sent: drop it, the next read ends it. */
    if (total == 0 || w->end > 0)
        return (ssize_t)total;
    /* Our own bytes first: a new frame may only start after the last one ended. */
    if (bt_buf_size(&w->out) && ws_flush(t) < 0)
        return -1;
    uint8_t hdr[BT_WS_HEADER_MAX];
    char err[120];
    int hl = bt_ws_wrap(&w->ws, total, hdr, err, sizeof err);
    if (hl < 0) {
        /* the peer's close arrived, or ours was sent: nothing more may go out */
        t->err = "websocket closed";
        errno = EPIPE;
        return -1;
    }
    struct iovec v[9];
    if (w->in->gather && n < 9) {
        /* Header and payload in one system call; only what the socket leaves is copied. */
        v[0] = (struct iovec){hdr, (size_t)hl};
        memcpy(v + 1, iov, (size_t)n * sizeof *iov);
        ssize_t r = w->in->ops->writev(w->in, v, n + 1);
        t->write_wants_read = w->in->write_wants_read;
        if (r < 0) {
            t->err = w->in->err;
            return -1; /* nothing taken (EAGAIN) or a dead socket */
        }
        size_t skip = (size_t)r;
        for (int i = 0; i < n + 1; i++) {
            if (skip >= v[i].iov_len) {
                skip -= v[i].iov_len;
                continue;
            }
            if (bt_buf_append(&w->out, (uint8_t *)v[i].iov_base + skip, v[i].iov_len - skip) < 0) {
                fail(w, "out of memory");
                errno = ENOMEM;
                return -1;
            }
            skip = 0;
            t->out_pending = true;
        }
        return (ssize_t)total;
    }
    /* TLS below: one contiguous buffer makes full records (and is what OpenSSL copies
     * from anyway). */
    if (bt_buf_append(&w->out, hdr, (size_t)hl) < 0) {
        fail(w, "out of memory");
        errno = ENOMEM;
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (bt_buf_append(&w->out, iov[i].iov_base, iov[i].iov_len) < 0) {
            fail(w, "out of memory");
            errno = ENOMEM;
            return -1;
        }
    t->out_pending = true;
    if (ws_flush(t) < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        return -1;
    return (ssize_t)total; /* taken: the rest goes out with the next flush */
}

static void ws_close(transport *t)
{
    ws_transport *w = (ws_transport *)t;
    if (w->end == 0 && bt_ws_get_state(&w->ws) == BT_WS_OPEN) {
        bt_ws_close(&w->ws, BT_WS_CLOSE_NORMAL, NULL, NULL, 0);
        take_output(w);
    }
    ws_flush(t); /* best effort: the 400 answer, our close frame */
    w->in->ops->close(w->in);
    bt_buf_free(&w->out);
    free(w);
}

static const transport_ops ws_ops = {ws_read, ws_writev, ws_flush, ws_close};

transport *transport_ws_new(transport *inner, uint64_t max_message)
{
    if (!inner)
        return NULL;
    ws_transport *w = calloc(1, sizeof *w);
    if (!w) {
        inner->ops->close(inner);
        return NULL;
    }
    w->t.ops = &ws_ops;
    w->t.fd = inner->fd;
    w->t.handshaking = true;
    w->in = inner;
    bt_ws_init(&w->ws, BT_WS_SERVER, max_message);
    return &w->t;
}
