/* Plain tcp transport; also the memory transports used to drive sessions without sockets. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hub.h"

static ssize_t tcp_read(transport *t, void *b, size_t n)
{
    ssize_t r;
    do
        r = read(t->fd, b, n);
    while (r < 0 && errno == EINTR);
    /* A short read means the socket is empty: no need to try again before epoll says so. */
    t->drained = r < 0 || (size_t)r < n;
    return r;
}

static ssize_t tcp_writev(transport *t, const struct iovec *iov, int n)
{
    struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    ssize_t r;
    do
        r = sendmsg(t->fd, &mh, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r;
}

static void tcp_close(transport *t)
{
    if (t->fd >= 0)
        close(t->fd);
    free(t);
}

static const transport_ops tcp_ops = {tcp_read, tcp_writev, NULL, tcp_close};

transport *transport_tcp_new(int fd)
{
    transport *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ops = &tcp_ops;
    t->fd = fd;
    t->gather = true;
    return t;
}

/* ---- memory ------------------------------------------------------------------------- */
typedef struct {
    transport t;
    const uint8_t *d;
    size_t n, off, chunk;
} mem_transport;

static ssize_t mem_read(transport *t, void *b, size_t n)
{
    mem_transport *m = (mem_transport *)t;
    t->drained = true; /* one chunk per readiness, like a socket that gets data slowly */
    if (!m->d) {
        errno = EAGAIN;
        return -1;
    }
    size_t k = m->n - m->off;
    if (k == 0)
        return 0;
    if (k > m->chunk)
        k = m->chunk;
    if (k > n)
        k = n;
    memcpy(b, m->d + m->off, k);
    m->off += k;
    return (ssize_t)k;
}

static ssize_t mem_writev(transport *t, const struct iovec *iov, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    return (ssize_t)total;
}

static void mem_close(transport *t)
{
    free(t);
}

static const transport_ops mem_ops = {mem_read, mem_writev, NULL, mem_close};

transport *transport_mem_new(void)
{
    return transport_mem_reader_new(NULL, 0, 1);
}

transport *transport_mem_reader_new(const uint8_t *d, size_t n, size_t chunk)
{
    mem_transport *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->t.ops = &mem_ops;
    m->t.fd = -1;
    m->t.gather = true;
    m->d = d;
    m->n = n;
    m->chunk = chunk ? chunk : 1;
    return &m->t;
}
