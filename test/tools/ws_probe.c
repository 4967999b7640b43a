/* MQTT-over-WebSocket probe for the interop tests: speaks the SDK's WebSocket client layer
 * (bt_ws) over a plain blocking socket to a real broker (mosquitto's websockets listener, or
 * ws_bridge), with hand-written MQTT 3.1.1 packets: CONNECT/CONNACK, SUBSCRIBE/SUBACK, a
 * PUBLISH to itself that must come back intact, then the WebSocket close handshake.
 *
 *   ws_probe HOST PORT PATH [PAYLOAD_BYTES]
 *
 * Prints one line per step; exits 0 only when every step passed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "baetyl/ws.h"

static int sock = -1;
static bt_ws ws;
static uint8_t app[1 << 20]; /* MQTT bytes received, not yet consumed */
static size_t app_len;
static int peer_closed;

static int die(const char *what)
{
    fprintf(stderr, "ws_probe: %s\n", what);
    return 1;
}

static int send_all(const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(sock, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int flush_output(void)
{
    size_t n;
    const uint8_t *o = bt_ws_output(&ws, &n);
    if (o && send_all(o, n) < 0)
        return -1;
    bt_ws_output_consume(&ws, n);
    return 0;
}

/* Reads once from the socket and decodes the frames into app[]. */
static int read_some(char *err, size_t errlen)
{
    uint8_t buf[65536];
    if (peer_closed) {
        snprintf(err, errlen, "connection closed by the broker");
        return -1;
    }
    ssize_t r = recv(sock, buf, sizeof(buf), 0);
    if (r <= 0) {
        snprintf(err, errlen, "recv: %s", r == 0 ? "connection closed" : strerror(errno));
        return -1;
    }
    if ((size_t)r > sizeof(app) - app_len) {
        snprintf(err, errlen, "too much unread data");
        return -1;
    }
    size_t got;
    int rc = bt_ws_recv(&ws, buf, (size_t)r, app + app_len, &got, err, errlen);
    app_len += got;
    if (flush_output() < 0) {
        snprintf(err, errlen, "send failed");
        return -1;
    }
    if (rc < 0)
        return -1;
    if (rc == 1)
        peer_closed = 1;
    return 0;
}

/* Waits for one whole MQTT packet; returns its total length (fixed header included). */
static long next_packet(char *err, size_t errlen)
{
    for (;;) {
        if (app_len >= 2) {
            size_t len = 0, i = 1;
            int shift = 0, done = 0;
            while (i < app_len && i < 5) {
                len |= (size_t)(app[i] & 0x7f) << shift;
                shift += 7;
                if (!(app[i++] & 0x80)) {
                    done = 1;
                    break;
                }
            }
            if (done && app_len >= i + len)
                return (long)(i + len);
        }
        if (read_some(err, errlen) < 0)
            return -1;
    }
}

static void drop_packet(size_t n)
{
    memmove(app, app + n, app_len - n);
    app_len -= n;
}

/* Sends one MQTT packet in one binary frame, masking it in pieces to exercise bt_ws_mask. */
static int send_packet(const uint8_t *p, size_t n, char *err, size_t errlen)
{
    uint8_t h[BT_WS_HEADER_MAX], piece[4096];
    int hl = bt_ws_wrap(&ws, n, h, err, errlen);
    if (hl < 0 || send_all(h, (size_t)hl) < 0)
        return -1;
    for (size_t off = 0; off < n;) {
        size_t k = n - off < sizeof(piece) ? n - off : sizeof(piece);
        bt_ws_mask(h + hl - 4, off, p + off, piece, k);
        if (send_all(piece, k) < 0)
            return -1;
        off += k;
    }
    return 0;
}

static size_t put_remaining_length(uint8_t *p, size_t len)
{
    size_t i = 0;
    do {
        uint8_t b = len % 128;
        len /= 128;
        p[i++] = (uint8_t)(b | (len ? 0x80 : 0));
    } while (len);
    return i;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return die("usage: ws_probe HOST PORT PATH [PAYLOAD_BYTES]");
    const char *host = argv[1], *port = argv[2], *path = argv[3];
    size_t payload_len = argc > 4 ? strtoul(argv[4], NULL, 10) : 100000;
    if (payload_len > sizeof(app) / 2)
        return die("payload too large");
    char err[256];

    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return die("getaddrinfo failed");
    sock = socket(ai->ai_family, ai->ai_socktype, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int c = connect(sock, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (c < 0)
        return die("connect failed");

    /* 1. WebSocket handshake. */
    char hostport[300];
    snprintf(hostport, sizeof(hostport), "%s:%s", host, port);
    bt_ws_init(&ws, BT_WS_CLIENT, 1 << 20);
    if (bt_ws_client_start(&ws, hostport, path, err, sizeof(err)) < 0 || flush_output() < 0)
        return die(err);
    int hs = 0;
    while (hs == 0) {
        uint8_t buf[4096];
        ssize_t r = recv(sock, buf, sizeof(buf), 0);
        if (r <= 0)
            return die("connection lost during the handshake");
        size_t used;
        hs = bt_ws_handshake(&ws, buf, (size_t)r, &used, err, sizeof(err));
        if (hs < 0)
            return die(err);
        if (hs == 1 && used < (size_t)r) { /* frames right behind the answer */
            size_t got;
            if (bt_ws_recv(&ws, buf + used, (size_t)r - used, app, &got, err, sizeof(err)) < 0)
                return die(err);
            app_len = got;
        }
    }
    printf("handshake ok protocol=%s\n", bt_ws_protocol(&ws));

    /* 2. CONNECT (3.1.1, clean session, keepalive 60, client id "ws-probe") -> CONNACK 0. */
    static const uint8_t connect_pkt[] = {0x10, 20, 0, 4,   'M', 'Q', 'T', 'T', 4,   0x02, 0,
                                          60,   0,  8, 'w', 's', '-', 'p', 'r', 'o', 'b',  'e'};
    if (send_packet(connect_pkt, sizeof(connect_pkt), err, sizeof(err)) < 0)
        return die("send CONNECT failed");
    long n = next_packet(err, sizeof(err));
    if (n < 0)
        return die(err);
    if (n != 4 || memcmp(app, "\x20\x02\x00\x00", 4) != 0)
        return die("bad CONNACK");
    drop_packet((size_t)n);
    printf("connack ok\n");

    /* 3. SUBSCRIBE ws/probe QoS 0 -> SUBACK. */
    static const uint8_t sub_pkt[] = {0x82, 13,  0,   1,   0,   8,   'w', 's',
                                      '/',  'p', 'r', 'o', 'b', 'e', 0};
    if (send_packet(sub_pkt, sizeof(sub_pkt), err, sizeof(err)) < 0)
        return die("send SUBSCRIBE failed");
    n = next_packet(err, sizeof(err));
    if (n < 0)
        return die(err);
    if (n != 5 || memcmp(app, "\x90\x03\x00\x01\x00", 5) != 0)
        return die("bad SUBACK");
    drop_packet((size_t)n);
    printf("suback ok\n");

    /* 4. PUBLISH to ourselves, payload_len bytes, and get it back. */
    size_t body = 2 + 8 + payload_len;
    uint8_t *pub = malloc(1 + 4 + body);
    if (!pub)
        return die("out of memory");
    size_t k = 0;
    pub[k++] = 0x30;
    k += put_remaining_length(pub + k, body);
    memcpy(pub + k, "\x00\x08ws/probe", 10);
    k += 10;
    for (size_t i = 0; i < payload_len; i++)
        pub[k + i] = (uint8_t)(i * 7 + 3);
    k += payload_len;
    if (send_packet(pub, k, err, sizeof(err)) < 0)
        return die("send PUBLISH failed");
    n = next_packet(err, sizeof(err));
    if (n < 0)
        return die(err);
    if ((size_t)n != k || memcmp(app, pub, k) != 0) {
        fprintf(stderr, "ws_probe: got %ld bytes, want %zu\n", n, k);
        return die("PUBLISH did not come back intact");
    }
    free(pub);
    drop_packet((size_t)n);
    printf("publish ok %zu bytes\n", payload_len);

    /* 5. Close handshake: our close 1000, the broker's close back. */
    if (bt_ws_close(&ws, BT_WS_CLOSE_NORMAL, "bye", err, sizeof(err)) < 0 || flush_output() < 0)
        return die("close failed");
    while (!peer_closed)
        if (read_some(err, sizeof(err)) < 0)
            return die(err);
    printf("close ok code=%u\n", bt_ws_close_code(&ws));
    close(sock);
    return 0;
}
