/* WebSocket framing (RFC 6455 §5): received frames are decoded as a byte stream (in place
 * if the caller wants), control frames are answered through the small output buffer of
 * bt_ws, and outgoing binary frames get their header here. Nothing is allocated. */
#include "baetyl/ws.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OP_CONT = 0x0,
    OP_TEXT = 0x1,
    OP_BINARY = 0x2,
    OP_CLOSE = 0x8,
    OP_PING = 0x9,
    OP_PONG = 0xA
};

void bt_ws_mask(const uint8_t key[4], uint64_t off, const uint8_t *src, uint8_t *dst, size_t n)
{
    uint8_t k[8];
    for (int i = 0; i < 8; i++)
        k[i] = key[(off + (uint64_t)i) & 3];
    uint64_t k64;
    memcpy(&k64, k, 8);
    size_t i = 0;
    /* Eight bytes at a time; dst <= src when decoding in place, and each word is loaded
     * before it is stored, so the overlap is safe. */
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k[i & 7];
}

/* Header of a frame with the given opcode into h; returns its length. A client adds a fresh
 * mask key: arc4random (glibc) cannot fail and is cheap enough for every frame. */
static int put_header(const bt_ws *ws, uint8_t opcode, uint64_t len, uint8_t *h)
{
    int n = 2;
    h[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
    } else if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (ws->role == BT_WS_CLIENT) {
        h[1] |= 0x80;
        arc4random_buf(h + n, 4);
        n += 4;
    }
    return n;
}

/* Drops the bytes already sent so new control frames fit after what is still pending. */
static void compact_out(bt_ws *ws)
{
    if (!ws->out_sent)
        return;
    size_t left = (size_t)(ws->out_len - ws->out_sent);
    memmove(ws->out, ws->out + ws->out_sent, left);
    /* A pong already partly sent must go out whole: it can no longer be replaced. */
    ws->pong_at = ws->pong_at >= (int)ws->out_sent ? (int16_t)(ws->pong_at - ws->out_sent) : -1;
    ws->out_len = (uint16_t)left;
    ws->out_sent = 0;
}

/* Appends one control frame to the output; returns -1 when it does not fit. */
static int queue_control(bt_ws *ws, uint8_t opcode, const uint8_t *p, size_t n)
{
    compact_out(ws);
    if (opcode == OP_PONG && ws->pong_at >= 0) /* answer only the latest ping (§5.5.3) */
        ws->out_len = (uint16_t)ws->pong_at;
    if ((size_t)ws->out_len + BT_WS_HEADER_MAX + n > sizeof(ws->out))
        return -1;
    uint8_t *h = ws->out + ws->out_len;
    int hl = put_header(ws, opcode, n, h);
    if (ws->role == BT_WS_CLIENT)
        bt_ws_mask(h + hl - 4, 0, p, h + hl, n);
    else if (n)
        memcpy(h + hl, p, n);
    ws->pong_at = opcode == OP_PONG ? (int16_t)ws->out_len : -1;
    ws->out_len = (uint16_t)(ws->out_len + (size_t)hl + n);
    return 0;
}

/* Queues our close frame: code (0 = none) and a reason cut to fit the 125-byte body. */
static void queue_close(bt_ws *ws, uint16_t code, const char *reason)
{
    if (ws->close_sent)
        return;
    uint8_t body[BT_WS_CONTROL_MAX];
    size_t n = 0;
    if (code) {
        body[0] = (uint8_t)(code >> 8);
        body[1] = (uint8_t)code;
        n = 2;
        size_t rl = reason ? strlen(reason) : 0;
        if (rl > sizeof(body) - 2)
            rl = sizeof(body) - 2; /* our reasons are ASCII, so the cut stays UTF-8 */
        if (rl)
            memcpy(body + 2, reason, rl);
        n += rl;
    }
    if (queue_control(ws, OP_CLOSE, body, n) < 0 && ws->pong_at >= 0) {
        /* The close matters more than a pong not yet started (cannot happen with the sizes
         * of bt_ws, kept as a guard). */
        ws->out_len = (uint16_t)ws->pong_at;
        ws->pong_at = -1;
        queue_control(ws, OP_CLOSE, body, n);
    }
    ws->close_sent = 1;
}

/* Protocol error: queue the close frame with its code and give the reason to the caller. */
static int fail(bt_ws *ws, uint16_t code, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(bt_ws *ws, uint16_t code, char *err, size_t errlen, const char *fmt, ...)
{
    char reason[112];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    queue_close(ws, code, reason);
    ws->close_code = code;
    ws->state = BT_WS_FAILED;
    return bt_errf(err, errlen, "websocket: %s (close %u)", reason, code);
}

/* Codes a peer may put in a close frame (RFC 6455 §7.4, IANA registry). */
static int close_code_valid(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

/* First two header bytes: everything that can be refused before the length is known. */
static int check_start(bt_ws *ws, char *err, size_t errlen)
{
    uint8_t b0 = ws->hdr[0], b1 = ws->hdr[1];
    uint8_t op = b0 & 0x0F, len7 = b1 & 0x7F;
    ws->fin = b0 >> 7;
    ws->opcode = op;
    ws->masked = b1 >> 7;
    if (b0 & 0x70)
        return fail(ws, BT_WS_CLOSE_PROTOCOL, err, errlen,
                    "reserved bits set (no extension agreed)");
    switch (op) {
    case OP_CONT:
        if (!ws->in_message)
            return fail(ws, BT_WS_CLOSE_PROTOCOL, err, errlen,
                        "continuation frame outside a message");
        break;
    case OP_BINARY:
        if (ws->in_message)
            return fail(ws, BT_WS_CLOSE_PROTOCOL, err, errlen,
                        "new message inside a fragmented one");
        break;
    case OP_TEXT:
        return fail(ws, BT_WS_CLOSE_UNSUPPORTED, err, errlen,
                    "text frames are not accepted (MQTT needs binary)");
    case OP_CLOSE:
    case OP_PING:
    case OP_PONG:
        if (!ws->fin)
            return fail(ws, BT_WS_CLOSE_PROTOCOL, err, errlen, "fragmented control frame");
        if (len7 > BT_WS_CONTROL_MAX)
            return fail(ws, BT_WS_CLOSE_PROTOCOL, err, errlen,
                        "control frame longer than 125 bytes");
        break;
    default: return fail(ws, BT_WS_CLOSE_PROTOCOL, err, errlen, "unknown opcode 0x%x", op);
    }
    if (ws->role == BT_WS_SERVER && !ws->masked)
        return fail(ws, BT_WS_CLOSE_PROTOCOL, err, errlen, "unmasked frame from a client");
    if (ws->role == BT_WS_CLIENT && ws->masked)
        return fail(ws, BT_WS_CLOSE_PROTOCOL, err, errlen, "masked frame from a server");
    ws->hdr_need = (uint8_t)(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (ws->masked ? 4 : 0));
    return 0;
}

/* Whole header read: length, limits, mask key. */
static int check_header(bt_ws *ws, char *err, size_t errlen)
{
    uint8_t len7 = ws->hdr[1] & 0x7F;
    uint64_t len = len7;
    if (len7 == 126) {
        len = ((uint64_t)ws->hdr[2] << 8) | ws->hdr[3];
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | ws->hdr[2 + i];
        if (len >> 63)
            return fail(ws, BT_WS_CLOSE_PROTOCOL, err, errlen, "frame length has its top bit set");
    }
    if (!(ws->opcode & 0x8)) {
        uint64_t max = ws->max_message;
        if (ws->opcode == OP_BINARY)
            ws->msg_len = 0;
        if (max && (len > max || len > max - ws->msg_len)) /* msg_len <= max here */
            return fail(ws, BT_WS_CLOSE_TOO_BIG, err, errlen, "message larger than %llu bytes",
                        (unsigned long long)max);
        ws->msg_len += len;
        ws->in_message = !ws->fin;
    }
    if (ws->masked)
        memcpy(ws->mask, ws->hdr + ws->hdr_need - 4, 4);
    ws->remaining = len;
    ws->mask_pos = 0;
    ws->ctl_len = 0;
    return 0;
}

/* A control frame's payload is complete. Returns 1 when it was a close. */
static int control_done(bt_ws *ws, char *err, size_t errlen)
{
    if (ws->opcode == OP_PING) {
        if (!ws->close_sent)
            queue_control(ws, OP_PONG, ws->ctl, ws->ctl_len); /* no room: the peer floods */
        return 0;
    }
    if (ws->opcode == OP_PONG)
        return 0;
    /* close */
    uint16_t code = 1005; /* "no status received" */
    if (ws->ctl_len == 1)
        return fail(ws, BT_WS_CLOSE_PROTOCOL, err, errlen, "close frame with a 1-byte body");
    if (ws->ctl_len >= 2) {
        code = (uint16_t)((ws->ctl[0] << 8) | ws->ctl[1]);
        if (!close_code_valid(code))
            return fail(ws, BT_WS_CLOSE_PROTOCOL, err, errlen, "invalid close code %u", code);
        if (!bt_utf8_valid(ws->ctl + 2, ws->ctl_len - 2u))
            return fail(ws, BT_WS_CLOSE_BAD_DATA, err, errlen, "close reason is not UTF-8");
    }
    ws->close_code = code;
    queue_close(ws, code == 1005 ? 0 : code, NULL); /* echo the code, once */
    ws->state = BT_WS_CLOSED;
    return 1;
}

int bt_ws_recv(bt_ws *ws, const uint8_t *in, size_t len, uint8_t *out, size_t *outlen, char *err,
               size_t errlen)
{
    *outlen = 0;
    switch (ws->state) {
    case BT_WS_HANDSHAKE: return bt_errf(err, errlen, "websocket: handshake not finished");
    case BT_WS_FAILED:
        return bt_errf(err, errlen, "websocket: connection failed (close %u)", ws->close_code);
    case BT_WS_CLOSED: return 1; /* nothing may follow a close frame */
    default: break;
    }
    size_t i = 0, o = 0;
    while (i < len) {
        if (ws->hdr_len < ws->hdr_need) {
            size_t take = ws->hdr_need - ws->hdr_len;
            if (take > len - i)
                take = len - i;
            memcpy(ws->hdr + ws->hdr_len, in + i, take);
            ws->hdr_len = (uint8_t)(ws->hdr_len + take);
            i += take;
            if (ws->hdr_len == 2 && ws->hdr_need == 2 && check_start(ws, err, errlen) < 0)
                goto failed;
            if (ws->hdr_len < ws->hdr_need)
                continue;
            if (check_header(ws, err, errlen) < 0)
                goto failed;
        } else {
            size_t n = len - i;
            if (n > ws->remaining)
                n = (size_t)ws->remaining;
            if (ws->opcode & 0x8) {
                bt_ws_mask(ws->mask, ws->mask_pos, in + i, ws->ctl + ws->ctl_len, n);
                ws->ctl_len = (uint8_t)(ws->ctl_len + n);
            } else if (ws->masked) {
                bt_ws_mask(ws->mask, ws->mask_pos, in + i, out + o, n);
                o += n;
            } else {
                memmove(out + o, in + i, n);
                o += n;
            }
            ws->mask_pos = (uint8_t)((ws->mask_pos + n) & 3);
            ws->remaining -= n;
            i += n;
        }
        if (ws->remaining)
            continue;
        /* Frame complete (possibly with an empty payload). */
        ws->hdr_len = 0;
        ws->hdr_need = 2;
        if (ws->opcode & 0x8) {
            int r = control_done(ws, err, errlen);
            if (r < 0)
                goto failed;
            if (r == 1) {
                *outlen = o;
                return 1;
            }
        }
    }
    *outlen = o;
    return 0;
failed:
    *outlen = o; /* decoded before the error; the caller may still use or drop them */
    return -1;
}

int bt_ws_wrap(bt_ws *ws, uint64_t len, uint8_t hdr[BT_WS_HEADER_MAX], char *err, size_t errlen)
{
    if (ws->state != BT_WS_OPEN || ws->close_sent)
        return bt_errf(err, errlen, "websocket: connection not open");
    if (len >> 63)
        return bt_errf(err, errlen, "websocket: frame too long");
    return put_header(ws, OP_BINARY, len, hdr);
}

ssize_t bt_ws_wrap_copy(bt_ws *ws, const void *data, size_t len, uint8_t *out, size_t cap,
                        char *err, size_t errlen)
{
    uint8_t h[BT_WS_HEADER_MAX];
    int hl = bt_ws_wrap(ws, len, h, err, errlen);
    if (hl < 0)
        return -1;
    if (cap < (size_t)hl || cap - (size_t)hl < len)
        return bt_errf(err, errlen, "websocket: output buffer too small for a %zu-byte frame", len);
    memcpy(out, h, (size_t)hl);
    if (ws->role == BT_WS_CLIENT)
        bt_ws_mask(h + hl - 4, 0, data, out + hl, len);
    else if (len)
        memcpy(out + hl, data, len);
    return (ssize_t)((size_t)hl + len);
}

int bt_ws_close(bt_ws *ws, uint16_t code, const char *reason, char *err, size_t errlen)
{
    if (ws->state == BT_WS_HANDSHAKE)
        return bt_errf(err, errlen, "websocket: handshake not finished");
    if (!close_code_valid(code))
        return bt_errf(err, errlen, "websocket: close code %u may not be sent", code);
    if (reason && !bt_utf8_valid((const uint8_t *)reason, strlen(reason)))
        return bt_errf(err, errlen, "websocket: close reason is not UTF-8");
    if (ws->close_sent || ws->state == BT_WS_FAILED || ws->state == BT_WS_CLOSED)
        return 0; /* already said, or the link is going down without a close frame */
    /* Cut a long reason on a character boundary. */
    char buf[BT_WS_CONTROL_MAX - 1];
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > sizeof(buf) - 1) {
        rl = sizeof(buf) - 1;
        while (rl && ((uint8_t)reason[rl] & 0xC0) == 0x80)
            rl--;
    }
    if (rl)
        memcpy(buf, reason, rl);
    buf[rl] = '\0';
    queue_close(ws, code, buf);
    if (ws->state == BT_WS_OPEN)
        ws->state = BT_WS_CLOSING;
    return 0;
}

const uint8_t *bt_ws_output(const bt_ws *ws, size_t *len)
{
    *len = (size_t)(ws->out_len - ws->out_sent);
    return *len ? ws->out + ws->out_sent : NULL;
}

void bt_ws_output_consume(bt_ws *ws, size_t n)
{
    size_t left = (size_t)(ws->out_len - ws->out_sent);
    if (n >= left) {
        ws->out_len = ws->out_sent = 0;
        ws->pong_at = -1;
        return;
    }
    ws->out_sent = (uint16_t)(ws->out_sent + n);
}

uint16_t bt_ws_close_code(const bt_ws *ws)
{
    return ws->close_code;
}
