/* WebSocket (RFC 6455) as a pure byte-stream layer under the MQTT codec, for MQTT over ws/wss
 * in the hub and in the SDK client. It does no I/O and no allocation: the caller owns a
 * bt_ws, feeds it the bytes it received and gets back application bytes, plus bytes to send
 * back (handshake answer, pongs, close frames) through bt_ws_output().
 *
 * Server:  bt_ws_init(&ws, BT_WS_SERVER, max);
 *          bt_ws_handshake(&ws, in, n, &used, …)  until it returns 1 (send bt_ws_output()),
 *          then bt_ws_recv() on the rest of the bytes and on every later read.
 * Client:  bt_ws_init(&ws, BT_WS_CLIENT, max); bt_ws_client_start(&ws, "host:port", "/mqtt", …);
 *          send bt_ws_output(); bt_ws_handshake() on the answer until 1; then bt_ws_recv().
 * Sending: bt_ws_wrap() gives the header of one binary frame (servers send the payload as it
 *          is after it; clients mask it with bt_ws_mask()), or bt_ws_wrap_copy() does both.
 * After every bt_ws_handshake()/bt_ws_recv() call the caller sends (or copies into its own
 * write buffer) what bt_ws_output() holds, then calls bt_ws_output_consume().
 *
 * Decided here: MQTT over WebSocket carries MQTT in binary frames only (MQTT 3.1.1 §6,
 * [MQTT-6.0.0-1]), so a text frame is a protocol error answered with close 1003. Frames and
 * fragmented messages longer than the configured maximum are refused with close 1009.
 * The request path is reported, not checked; a Host header is not required. */
#ifndef BAETYL_WS_H
#define BAETYL_WS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BT_WS_HANDSHAKE_MAX 8192 /* whole HTTP header, request or answer */
#define BT_WS_LINE_MAX 512    /* one header line we must read (longer unknown ones are skipped) */
#define BT_WS_PATH_MAX 256    /* request path, NUL included */
#define BT_WS_HOST_MAX 256    /* client's Host value, NUL included */
#define BT_WS_HEADER_MAX 14   /* longest frame header: 2 + 8 length + 4 mask */
#define BT_WS_CONTROL_MAX 125 /* payload of ping/pong/close */
#define BT_WS_OUT_MAX 768     /* pending bytes to send back (fits request, answers, pong+close) */

/* Close codes (RFC 6455 §7.4.1) this layer sends. */
#define BT_WS_CLOSE_NORMAL 1000
#define BT_WS_CLOSE_GOING_AWAY 1001
#define BT_WS_CLOSE_PROTOCOL 1002
#define BT_WS_CLOSE_UNSUPPORTED 1003
#define BT_WS_CLOSE_BAD_DATA 1007
#define BT_WS_CLOSE_TOO_BIG 1009

typedef enum { BT_WS_SERVER = 0, BT_WS_CLIENT = 1 } bt_ws_role;

typedef enum {
    BT_WS_HANDSHAKE = 0, /* upgrade not finished */
    BT_WS_OPEN,          /* frames flow both ways */
    BT_WS_CLOSING,       /* we sent a close frame, waiting for the peer's */
    BT_WS_CLOSED,        /* close frames exchanged (or received and answered) */
    BT_WS_FAILED         /* handshake or protocol error: send the output, then drop the link */
} bt_ws_state;

/* Connection state. The caller owns it (embed it in its connection struct); fields are
 * private to ws_*.c and read through the functions below. */
typedef struct bt_ws {
    uint8_t role;         /* bt_ws_role */
    uint8_t state;        /* bt_ws_state */
    uint64_t max_message; /* 0 = no limit */

    /* handshake: a line-at-a-time parser, bounded by BT_WS_HANDSHAKE_MAX */
    uint32_t hs_total; /* header bytes seen */
    uint16_t line_len; /* bytes kept in line[] */
    uint8_t line_long; /* current line longer than line[] */
    uint8_t hs_first;  /* next line is the request/status line */
    uint16_t hs_seen;  /* HS_* flags of ws_handshake.c */
    char line[BT_WS_LINE_MAX];
    char key[32];    /* Sec-WebSocket-Key: the client's (server) or ours (client) */
    char accept[32]; /* client: the Sec-WebSocket-Accept we expect */
    char path[BT_WS_PATH_MAX];
    char protocol[16]; /* subprotocol agreed ("mqtt", "mqttv3.1" or "") */

    /* receiving frames */
    uint8_t hdr[BT_WS_HEADER_MAX];
    uint8_t hdr_len, hdr_need;
    uint8_t opcode; /* of the frame being read */
    uint8_t fin;
    uint8_t masked;
    uint8_t mask[4];
    uint8_t mask_pos;   /* payload offset mod 4 */
    uint8_t in_message; /* a fragmented binary message is open */
    uint64_t remaining; /* payload bytes of the current frame still to come */
    uint64_t msg_len;   /* bytes of the current message so far */
    uint8_t ctl[BT_WS_CONTROL_MAX];
    uint8_t ctl_len;
    uint16_t close_code; /* received from the peer, or sent on error */

    /* bytes to send back */
    uint8_t out[BT_WS_OUT_MAX];
    uint16_t out_len, out_sent;
    int16_t pong_at;    /* offset of a queued pong in out[], -1 when none */
    uint8_t close_sent; /* a close frame is queued or sent: no more frames after it */
} bt_ws;

/* Resets ws for one connection in the given role; max_message bounds one frame and one
 * fragmented message (0 = no limit). */
void bt_ws_init(bt_ws *ws, bt_ws_role role, uint64_t max_message);

/* Computes Sec-WebSocket-Accept = base64(SHA1(key + RFC GUID)) into out (29 bytes with NUL).
 * Returns 0, or -1 when key is NULL or too long. */
int bt_ws_accept_key(const char *key, char out[29]);

/* Client: queues the upgrade request (random 16-byte key, Host, path, subprotocol mqtt) in
 * the output. host is "name[:port]", path starts with '/' (NULL or "" = "/"). Returns 0, or
 * -1 with err (bad host/path, wrong role or state, no randomness). */
int bt_ws_client_start(bt_ws *ws, const char *host, const char *path, char *err, size_t errlen);

/* Both roles: feeds handshake bytes in[0..len). Sets *used to the bytes taken (the rest,
 * after a 1, are frame bytes for bt_ws_recv). Returns 0 = need more (all taken), 1 = done:
 * server queued its 101 answer; -1 = refused, err says why: a server queued a 400 answer
 * to send before closing, a client just closes. */
int bt_ws_handshake(bt_ws *ws, const uint8_t *in, size_t len, size_t *used, char *err,
                    size_t errlen);

/* Decodes frames from in[0..len) (all taken), writing the application bytes to out, which
 * has room for len bytes and may be in itself (decoding in place). *outlen = bytes written.
 * Pings queue a pong, pongs are ignored. Returns 0 = ok; 1 = the peer closed (our close
 * answer, if due, is queued; bytes before the close are still in out); -1 = protocol
 * error: err has the reason, a close frame with bt_ws_close_code() is queued. */
int bt_ws_recv(bt_ws *ws, const uint8_t *in, size_t len, uint8_t *out, size_t *outlen, char *err,
               size_t errlen);

/* Writes the header of one binary frame of len payload bytes into hdr; returns its length
 * (2..14), or -1 with err unless the connection is open. A client's header ends with a fresh
 * random mask key, which bt_ws_mask() must apply to the payload. */
int bt_ws_wrap(bt_ws *ws, uint64_t len, uint8_t hdr[BT_WS_HEADER_MAX], char *err, size_t errlen);

/* Writes one whole binary frame (header, then data masked when a client sends) into out;
 * returns its length, or -1 with err (not open, or cap too small: len + BT_WS_HEADER_MAX
 * is always enough). */
ssize_t bt_ws_wrap_copy(bt_ws *ws, const void *data, size_t len, uint8_t *out, size_t cap,
                        char *err, size_t errlen);

/* XORs n payload bytes from src into dst (may be equal) with the 4-byte key found at the end
 * of a masked header; off is the offset of src in the payload, so pieces can be masked one
 * after another. */
void bt_ws_mask(const uint8_t key[4], uint64_t off, const uint8_t *src, uint8_t *dst, size_t n);

/* Queues a close frame (code, reason cut to fit 123 bytes) unless one was already sent;
 * the state becomes CLOSING. Returns 0, or -1 with err before the handshake is done. */
int bt_ws_close(bt_ws *ws, uint16_t code, const char *reason, char *err, size_t errlen);

/* Bytes waiting to be sent back (*len of them; NULL when none). */
const uint8_t *bt_ws_output(const bt_ws *ws, size_t *len);
/* Marks the first n bytes of bt_ws_output() as sent. */
void bt_ws_output_consume(bt_ws *ws, size_t n);

/* Current bt_ws_state. */
bt_ws_state bt_ws_get_state(const bt_ws *ws);
/* Request path the client asked for (server, after the handshake), else "". */
const char *bt_ws_path(const bt_ws *ws);
/* Subprotocol agreed in the handshake ("mqtt", "mqttv3.1" or ""). */
const char *bt_ws_protocol(const bt_ws *ws);
/* Close code the peer sent (1005 when its close had none), or the one we sent on error;
 * 0 while neither happened. */
uint16_t bt_ws_close_code(const bt_ws *ws);

#endif
