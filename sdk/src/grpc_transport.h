/* gRPC's transport for the function client and server: addresses ("host:port",
 * "[v6]:port", "unix:/path"), listening and dialling, TLS with ALPN "h2" through the lazy
 * OpenSSL (baetyl/ossl.h), and one non-blocking HTTP/2 connection pumped between its socket
 * and its nghttp2 session. Not a public API. */
#ifndef BT_GRPC_TRANSPORT_H
#define BT_GRPC_TRANSPORT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "baetyl/ossl.h"

typedef struct {
    bool is_unix;
    char host[256]; /* without brackets */
    char port[16];
    char path[108]; /* unix socket */
} bt_grpc_addr;

/* Parses address (a "dns:///" or "ipv4:"/"ipv6:" prefix is taken off, as gRPC does). 0, or
 * -1 with err. */
int bt_grpc_addr_parse(const char *address, bt_grpc_addr *a, char *err, size_t errlen);
/* A listening non-blocking socket on a; *port gets the port bound (0 for unix). -1 with
 * err ("cannot listen on …: Address already in use"). */
int bt_grpc_listen(const bt_grpc_addr *a, int *port, char *err, size_t errlen);
/* A connected non-blocking socket to a, tried until deadline_ms (bt_now_ms scale). -1 with
 * err (the last address's failure). */
int bt_grpc_dial(const bt_grpc_addr *a, int64_t deadline_ms, char *err, size_t errlen);

/* TLS contexts (OpenSSL loaded here). Server: cert+key, and ca requiring client
 * certificates; it selects "h2" by ALPN. Client: ca (NULL: the system store) and
 * optionally cert+key; it offers "h2". NULL with err. */
SSL_CTX *bt_grpc_server_tls(const char *cert, const char *key, const char *ca, char *err,
                            size_t errlen);
SSL_CTX *bt_grpc_client_tls(const char *ca, const char *cert, const char *key, char *err,
                            size_t errlen);

/* One HTTP/2 connection. */
typedef struct {
    int fd;
    SSL *ssl; /* NULL: plaintext (h2c with prior knowledge) */
    bool handshaking;
    short hs_events; /* what the handshake waits for */
    bool write_blocked;
    nghttp2_session *ng;
    uint8_t *out; /* bytes taken from nghttp2 and not yet written */
    size_t outlen, outoff, outcap;
    char why[256]; /* why the connection failed */
} bt_grpc_conn;

/* Sets c up on a connected socket fd (taken over): TLS from ctx when ctx is set (server:
 * accepting, client: connecting with host checked unless NULL). 0, or -1 with err (fd
 * closed). The nghttp2 session is the caller's to create. */
int bt_grpc_conn_init(bt_grpc_conn *c, int fd, SSL_CTX *ctx, bool server, const char *host,
                      char *err, size_t errlen);
/* One step of the TLS handshake: 1 done, 0 wait for c->hs_events, -1 failed (c->why). */
int bt_grpc_conn_handshake(bt_grpc_conn *c);
/* Reads what the socket holds into the session. 0, or -1 closed or failed (c->why). */
int bt_grpc_conn_recv(bt_grpc_conn *c);
/* Writes what the session has to send until the socket would block. 0, or -1 (c->why). */
int bt_grpc_conn_send(bt_grpc_conn *c);
/* The poll events c waits for. */
short bt_grpc_conn_events(const bt_grpc_conn *c);
/* Closes the socket and frees the TLS state, the session and the buffer. */
void bt_grpc_conn_close(bt_grpc_conn *c);

/* Builds an nghttp2 header. */
nghttp2_nv bt_grpc_nv(const char *name, const char *value);

#endif
