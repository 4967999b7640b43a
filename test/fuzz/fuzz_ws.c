/* libFuzzer target for the WebSocket layer. Input byte 0 picks the mode, byte 1 the size of
 * the chunks the rest is fed in (1..256), so incremental parsing is exercised too:
 *   mode 0: raw bytes to a server (handshake, then frames if it completes)
 *   mode 1: frames to a server after a valid upgrade request
 *   mode 2: raw bytes to a client as the server's answer (then frames)
 *   mode 3: frames to a client after a valid 101 answer
 * Never a crash, a leak or an overflow, and the documented invariants hold. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/ws.h"

static const char REQ[] = "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n";

static void check_output(bt_ws *ws)
{
    size_t n;
    const uint8_t *o = bt_ws_output(ws, &n);
    if (n > BT_WS_OUT_MAX || (n && !o))
        abort();
    /* Consume in two steps, like a partial write. */
    bt_ws_output_consume(ws, n / 2);
    bt_ws_output(ws, &n);
    bt_ws_output_consume(ws, n);
}

/* Feeds data as the caller would: handshake first, then frames decoded in place. */
static void feed(bt_ws *ws, uint8_t *data, size_t size, size_t chunk)
{
    char err[256];
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        uint8_t *p = data + off;
        off += n;
        if (bt_ws_get_state(ws) == BT_WS_HANDSHAKE) {
            size_t used;
            int r = bt_ws_handshake(ws, p, n, &used, err, sizeof(err));
            if (used > n)
                abort();
            check_output(ws);
            if (r < 0) {
                if (bt_ws_get_state(ws) != BT_WS_FAILED)
                    abort();
                return;
            }
            if (r == 0) {
                if (used != n)
                    abort();
                continue;
            }
            p += used;
            n -= used;
        }
        size_t got;
        int r = bt_ws_recv(ws, p, n, p, &got, err, sizeof(err));
        if (got > n)
            abort();
        check_output(ws);
        if (r < 0 && bt_ws_get_state(ws) != BT_WS_FAILED)
            abort();
        if (r == 1 && bt_ws_get_state(ws) != BT_WS_CLOSED)
            abort();
        if (r != 0)
            return;
        /* Now and then send something back, as a connection would. */
        uint8_t frame[64];
        if (n & 1) {
            ssize_t w =
                bt_ws_wrap_copy(ws, p, got < 32 ? got : 32, frame, sizeof(frame), err, sizeof(err));
            if (w > (ssize_t)sizeof(frame))
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    if (size < 2)
        return 0;
    int mode = in[0] & 3;
    size_t chunk = (size_t)in[1] + 1;
    size_t n = size - 2;
    uint8_t *data = malloc(n ? n : 1); /* decoding happens in place: own the bytes */
    if (!data)
        abort();
    memcpy(data, in + 2, n);

    bt_ws ws;
    char err[256];
    size_t used;
    if (mode <= 1) {
        bt_ws_init(&ws, BT_WS_SERVER, in[0] & 4 ? 1000 : 0);
        if (mode == 1 && bt_ws_handshake(&ws, (const uint8_t *)REQ, sizeof(REQ) - 1, &used, err,
                                         sizeof(err)) != 1)
            abort();
    } else {
        bt_ws_init(&ws, BT_WS_CLIENT, in[0] & 4 ? 1000 : 0);
        if (bt_ws_client_start(&ws, "h:1", "/mqtt", err, sizeof(err)) < 0)
            abort();
        if (mode == 3) {
            /* A server answers with the accept value of our random key. */
            char ans[256];
            int l = snprintf(ans, sizeof(ans),
                             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                             "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
                             ws.accept);
            if (bt_ws_handshake(&ws, (const uint8_t *)ans, (size_t)l, &used, err, sizeof(err)) != 1)
                abort();
        }
    }
    check_output(&ws);
    feed(&ws, data, n, chunk);
    if (in[0] & 8)
        bt_ws_close(&ws, 1000, "fuzz", err, sizeof(err));
    check_output(&ws);
    free(data);
    return 0;
}
