/* The byte transport under the HTTP clients (http_reply.h): a non-blocking socket, plain or
 * TLS, every wait bounded by a deadline, an idle bound and a cancel fd. */
#include "baetyl/error.h"
#include "baetyl/ossl.h"
#include "baetyl/util.h"
#include "http_reply.h"
#include "tls_client.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int bt_http_wait_fd(int fd, short events, int64_t deadline, int cancel_fd)
{
    for (;;) {
        int64_t now = bt_now_ms();
        if (now >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = cancel_fd, .events = POLLIN}};
        int n = poll(p, cancel_fd >= 0 ? 2 : 1, bt_poll_timeout(deadline, now, INT_MAX));
        if (n > 0 && cancel_fd >= 0 && p[1].revents) {
            errno = ECANCELED;
            return -1;
        }
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* The wait of one step of io: its deadline, or sooner its idle bound. */
static int io_wait(const bt_http_io *io, short events)
{
    int64_t d = io->deadline;
    if (io->idle_ms > 0 && bt_now_ms() + io->idle_ms < d)
        d = bt_now_ms() + io->idle_ms;
    return bt_http_wait_fd(io->fd, events, d, io->cancel_fd);
}

int bt_http_connect(const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, sa, len) == 0)
        return fd;
    if (errno != EINPROGRESS && errno != EAGAIN) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (bt_http_wait_fd(fd, POLLOUT, deadline, -1) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
        int e = soerr ? soerr : errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* After an SSL call returned rc: waits for what it wants (0), or -1 with errno (EPROTO with
 * why when TLS failed). */
static int tls_wait(const bt_http_io *io, int rc, bool handshake, char *why, size_t len)
{
    int e = SSL_get_error(io->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return io_wait(io, POLLIN);
    if (e == SSL_ERROR_WANT_WRITE)
        return io_wait(io, POLLOUT);
    bt_tls_fail_reason(io->ssl, rc, handshake, "connection closed by the server", why, len);
    errno = EPROTO;
    return -1;
}

int bt_http_tls_handshake(const bt_http_io *io, char *why, size_t len)
{
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int rc = SSL_connect(io->ssl);
        if (rc == 1)
            return 0;
        if (tls_wait(io, rc, true, why, len) < 0) {
            if (errno != EPROTO)
                snprintf(why, len, "%s", errno == ETIMEDOUT ? "timed out" : strerror(errno));
            return -1;
        }
    }
}

int bt_http_send_all(const bt_http_io *io, const char *p, size_t n)
{
    char why[200];
    while (n > 0) {
        if (io->ssl) {
            ERR_clear_error();
            errno = 0;
            int w = SSL_write(io->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
            if (w > 0) {
                p += w;
                n -= (size_t)w;
            } else if (tls_wait(io, w, false, why, sizeof why) < 0) {
                return -1;
            }
            continue;
        }
        ssize_t w = send(io->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            return -1;
        } else if (io_wait(io, POLLOUT) < 0) {
            return -1;
        }
    }
    return 0;
}

/* One read: > 0 bytes, 0 at the end of the stream, -1 with errno EAGAIN after a wait (call
 * again), or another errno (EPROTO with why). */
static ssize_t read_some(const bt_http_io *io, char *buf, size_t len, char *why, size_t wl)
{
    if (!io->ssl) {
        ssize_t n = recv(io->fd, buf, len, 0);
        if (n >= 0 || (errno != EAGAIN && errno != EINTR))
            return n;
        if (io_wait(io, POLLIN) < 0)
            return -1;
        errno = EAGAIN;
        return -1;
    }
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(io->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(io->ssl, n);
    /* a close without close_notify ends a body framed by its length or chunks as well; one
     * framed by the end of the connection could be cut short, but the parser cannot tell */
    if (e == SSL_ERROR_ZERO_RETURN ||
        (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0))
        return 0;
    if (tls_wait(io, n, false, why, wl) < 0)
        return -1;
    errno = EAGAIN;
    return -1;
}

int bt_http_read_reply(const bt_http_io *io, bt_http_reply *r, const char *what, char *err,
                       size_t errlen)
{
    char buf[16384], why[200] = "";
    for (;;) {
        ssize_t n = read_some(io, buf, sizeof buf, why, sizeof why);
        int done;
        if (n > 0) {
            done = bt_http_reply_feed(r, buf, (size_t)n);
        } else if (n == 0) {
            done = bt_http_reply_eof(r);
        } else if (errno == EAGAIN) {
            continue;
        } else {
            int e = errno;
            bt_errf(err, errlen, "%s: %s", what,
                    e == ETIMEDOUT   ? "timed out"
                    : e == ECANCELED ? "cancelled"
                    : e == EPROTO    ? why
                                     : "receive error");
            if (e != ETIMEDOUT && e != ECANCELED && e != EPROTO)
                bt_errf(err, errlen, "%s: receive: %s", what, strerror(e));
            errno = e;
            return -1;
        }
        if (done < 0 && r->stopped)
            return 0; /* the reader had what it wanted */
        if (done < 0) {
            bt_errf(err, errlen, "%s: %s", what, r->err);
            errno = EPROTO;
            return -1;
        }
        if (done > 0)
            return 0;
    }
}
