/* tcp listeners. TLS and WebSocket listeners (issue 6) wrap the accepted fd in their own
 * transport; sessions are unchanged. */
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

#include "loop.h"

int listener_open(listener *l, const char *address, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    l->kind = LOOP_LISTENER;
    l->fd = -1;
    if (strncmp(address, "tcp://", 6) != 0) {
        snprintf(err, errlen, "listen (%s): only tcp:// listeners are supported in this version", address);
        return -1;
    }
    const char *hp = address + 6;
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
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
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
