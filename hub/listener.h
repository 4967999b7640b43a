/* Listeners from the `listen` addresses. */
#ifndef HUB_LISTENER_H
#define HUB_LISTENER_H

#include <stddef.h>

typedef struct {
    int kind; /* first field: epoll tag (LOOP_LISTENER) */
    int fd;
    char *address;
} listener;

/* Opens a listening socket for "tcp://host:port" (host empty = all interfaces). ssl, ws and
 * wss are refused for now with a clear error. 0 or -1 + err. */
int listener_open(listener *l, const char *address, char *err, size_t errlen);
/* Closes it. */
void listener_close(listener *l);
/* Accepts one connection: a non-blocking fd, -1 when none is waiting (or on error). */
int listener_accept(listener *l);

#endif
