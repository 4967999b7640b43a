/* Listeners from the `listen` addresses: tcp://, ssl://, ws:// and wss:// (SPEC §11). */
#ifndef HUB_LISTENER_H
#define HUB_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { LISTEN_TCP = 0, LISTEN_SSL, LISTEN_WS, LISTEN_WSS };

struct ssl_ctx_st;
struct transport;

typedef struct {
    int kind; /* first field: epoll tag (LOOP_LISTENER) */
    int fd;
    int scheme; /* LISTEN_* */
    char *address;
    struct ssl_ctx_st *tls; /* ssl and wss: the hub's server context (not owned) */
    uint64_t ws_max;        /* ws and wss: bound of one WebSocket message */
} listener;

/* True when the address needs the TLS server context (ssl:// and wss://). */
bool listener_is_tls(const char *address);
/* Opens a listening socket for "scheme://host:port[/path]" (host empty = all interfaces;
 * the ws path is not enforced). tls is required for ssl and wss; ws_max bounds one
 * WebSocket message. 0 or -1 + err. */
int listener_open(listener *l, const char *address, struct ssl_ctx_st *tls, uint64_t ws_max,
                  char *err, size_t errlen);
/* Closes it. */
void listener_close(listener *l);
/* Accepts one connection: a non-blocking fd, -1 when none is waiting (or on error). */
int listener_accept(listener *l);
/* The transport stack of this listener on an accepted fd (takes it): tcp, tls, ws over
 * tcp or ws over tls. NULL when out of memory (the fd is closed). */
struct transport *listener_transport(listener *l, int fd);

#endif
