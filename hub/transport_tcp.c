/* Plain tcp transport; also the memory transport used to drive sessions without sockets. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hub.h"

static ssize_t tcp_read(transport *t, void *b, size_t n)
{
    ssize_t r;
    do
        r = read(t->fd, b, n);
    while (r < 0 && errno == EINTR);
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

static const transport_ops tcp_ops = {tcp_read, tcp_writev, tcp_close};

transport *transport_tcp_new(int fd)
{
    transport *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ops = &tcp_ops;
    t->fd = fd;
    return t;
}

static ssize_t mem_read(transport *t, void *b, size_t n)
{
    errno = EAGAIN;
    return -1;
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

static const transport_ops mem_ops = {mem_read, mem_writev, mem_close};

transport *transport_mem_new(void)
{
    transport *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ops = &mem_ops;
    t->fd = -1;
    return t;
}
