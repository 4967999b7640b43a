/* Listeners: one listening socket per `listen` address. ssl, ws and wss differ from tcp
 * only in the transport stack an accepted fd gets; sessions are the same. */
#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hub.h"
#include "loop.h"

static const struct {
    const char *prefix;
    int scheme;
} SCHEMES[] = {
    {"tcp://", LISTEN_TCP}, {"ssl://", LISTEN_SSL}, {"ws://", LISTEN_WS}, {"wss://", LISTEN_WSS}};

bool listener_is_tls(const char *address)
{
    return strncmp(address, "ssl://", 6) == 0 || strncmp(address, "wss://", 6) == 0;
}

int listener_open(listener *l, const char *address, struct ssl_ctx_st *tls, uint64_t ws_max,
                  char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    l->kind = LOOP_LISTENER;
    l->fd = -1;
    const char *hp = NULL;
    for (size_t i = 0; i < sizeof SCHEMES / sizeof SCHEMES[0]; i++)
        if (strncmp(address, SCHEMES[i].prefix, strlen(SCHEMES[i].prefix)) == 0) {
            hp = address + strlen(SCHEMES[i].prefix);
            l->scheme = SCHEMES[i].scheme;
        }
    if (!hp) {
        snprintf(err, errlen, "listen (%s): unsupported scheme (tcp, ssl, ws or wss)", address);
        return -1;
    }
    if ((l->scheme == LISTEN_SSL || l->scheme == LISTEN_WSS) && !tls) {
        snprintf(err, errlen, "listen (%s): no certificate for TLS", address);
        return -1;
    }
    l->tls = tls;
    l->ws_max = ws_max;
    /* host:port ends at the path (ws://:8080/mqtt) */
    char hostport[300];
    size_t hpl = strcspn(hp, "/");
    if (hpl >= sizeof hostport) {
        snprintf(err, errlen, "listen (%s): host too long", address);
        return -1;
    }
    memcpy(hostport, hp, hpl);
    hostport[hpl] = 0;
    hp = hostport;
    const char *colon = strrchr(hp, ':');
    if (!colon || !colon[1]) {
        snprintf(err, errlen, "listen (%s): port missing", address);
        return -1;
    }
    char host[256];
    size_t hl = (size_t)(colon - hp);
    if (hl >= sizeof host) {
        snprintf(err, errlen, "listen (%s): host too long", address);
        return -1;
    }
    memcpy(host, hp, hl);
    host[hl] = 0;
    /* [::1]:1883 */
    char *h = host;
    if (h[0] == '[' && hl > 1 && h[hl - 1] == ']') {
        h[hl - 1] = 0;
        h++;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "listen (%s): %s", address, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "listen (%s): socket: %s", address, strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        snprintf(err, errlen, "listen (%s): %s", address, strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    l->fd = fd;
    l->address = strdup(address);
    return 0;
}

void listener_close(listener *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    free(l->address);
    l->address = NULL;
}

int listener_accept(listener *l)
{
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

struct transport *listener_transport(listener *l, int fd)
{
    switch (l->scheme) {
    case LISTEN_SSL: return transport_tls_new(fd, l->tls);
    case LISTEN_WS: {
        transport *t = transport_tcp_new(fd);
        if (!t)
            close(fd);
        return transport_ws_new(t, l->ws_max);
    }
    case LISTEN_WSS: return transport_ws_new(transport_tls_new(fd, l->tls), l->ws_max);
    default: {
        transport *t = transport_tcp_new(fd);
        if (!t)
            close(fd);
        return t;
    }
    }
}
