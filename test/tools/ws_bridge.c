/* WebSocket-to-TCP bridge for the interop tests: the server side of the SDK's WebSocket layer
 * (bt_ws) in front of a plain MQTT broker, so real WebSocket clients (paho, ws_probe) can be
 * checked against it. One connection at a time, until killed.
 *
 *   ws_bridge LISTEN_PORT BROKER_PORT        (both on 127.0.0.1)
 *
 * For every connection it prints "path=<path> protocol=<subprotocol>" after the handshake,
 * "refused: <reason>" for a bad handshake, and "closed code=<n>" or "error: <reason>" at the
 * end, one line each, flushed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "baetyl/ws.h"

static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int flush_ws(int fd, bt_ws *ws)
{
    size_t n;
    const uint8_t *o = bt_ws_output(ws, &n);
    if (o && send_all(fd, o, n) < 0)
        return -1;
    bt_ws_output_consume(ws, n);
    return 0;
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* One client: handshake, then shuttle bytes both ways until either side ends. */
static void serve(int cfd, int broker_port)
{
    static uint8_t buf[1 << 16];
    bt_ws ws;
    char err[256];
    bt_ws_init(&ws, BT_WS_SERVER, 1 << 20);
    size_t used = 0;
    ssize_t r = 0;
    int hs = 0;
    while (hs == 0) {
        r = recv(cfd, buf, sizeof(buf), 0);
        if (r <= 0) {
            printf("error: connection lost during the handshake\n");
            return;
        }
        hs = bt_ws_handshake(&ws, buf, (size_t)r, &used, err, sizeof(err));
    }
    flush_ws(cfd, &ws);
    if (hs < 0) {
        printf("refused: %s\n", err);
        return;
    }
    printf("path=%s protocol=%s\n", bt_ws_path(&ws), bt_ws_protocol(&ws));
    fflush(stdout);
    int bfd = tcp_connect(broker_port);
    if (bfd < 0) {
        printf("error: broker unreachable\n");
        bt_ws_close(&ws, BT_WS_CLOSE_GOING_AWAY, "broker unreachable", err, sizeof(err));
        flush_ws(cfd, &ws);
        return;
    }
    /* Bytes that came with the request are frames already. */
    size_t pending = (size_t)r - used;
    memmove(buf, buf + used, pending);
    for (;;) {
        if (pending) {
            size_t got;
            int rc = bt_ws_recv(&ws, buf, pending, buf, &got, err, sizeof(err)); /* in place */
            pending = 0;
            if (got && send_all(bfd, buf, got) < 0) {
                printf("error: broker write failed\n");
                break;
            }
            if (flush_ws(cfd, &ws) < 0 || rc < 0) {
                printf("error: %s\n", rc < 0 ? err : "client write failed");
                break;
            }
            if (rc == 1) {
                printf("closed code=%u\n", bt_ws_close_code(&ws));
                break;
            }
        }
        struct pollfd p[2] = {{.fd = cfd, .events = POLLIN}, {.fd = bfd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents) {
            r = recv(cfd, buf, sizeof(buf), 0);
            if (r <= 0) {
                printf("error: client went away without a close frame\n");
                break;
            }
            pending = (size_t)r;
            continue;
        }
        if (p[1].revents) {
            r = recv(bfd, buf, sizeof(buf), 0);
            if (r <= 0) { /* the broker dropped the client: say so with a close frame */
                bt_ws_close(&ws, BT_WS_CLOSE_NORMAL, "broker closed", err, sizeof(err));
                flush_ws(cfd, &ws);
                printf("error: broker closed the connection\n");
                break;
            }
            /* Header, then the payload as it is: a server never copies what it sends. */
            uint8_t h[BT_WS_HEADER_MAX];
            int hl = bt_ws_wrap(&ws, (uint64_t)r, h, err, sizeof(err));
            if (hl < 0 || send_all(cfd, h, (size_t)hl) < 0 || send_all(cfd, buf, (size_t)r) < 0) {
                printf("error: client write failed\n");
                break;
            }
        }
    }
    close(bfd);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ws_bridge LISTEN_PORT BROKER_PORT\n");
        return 2;
    }
    int lport = atoi(argv[1]), bport = atoi(argv[2]);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)lport)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 8) < 0) {
        perror("ws_bridge: listen");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (;;) {
        int cfd = accept(lfd, NULL, NULL);
        if (cfd < 0) {
            if (errno == EINTR)
                continue;
            perror("ws_bridge: accept");
            return 1;
        }
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        serve(cfd, bport);
        close(cfd);
    }
}
