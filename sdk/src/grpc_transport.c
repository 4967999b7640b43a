/* Addresses, sockets, TLS and the socket <-> nghttp2 pump of the function client and server
 * (grpc_transport.h). */
#include "grpc_transport.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "baetyl/util.h"
#include "tls_client.h"

/* Bytes gathered from nghttp2 before a write: a reply's HEADERS, DATA and trailers go out
 * in one write. */
#define SEND_GATHER (32 * 1024)
#define READ_CHUNK (16 * 1024)

int bt_grpc_addr_parse(const char *address, bt_grpc_addr *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    if (strncmp(address, "unix:", 5) == 0) {
        const char *p = address + 5;
        if (strncmp(p, "//", 2) == 0)
            p += 2; /* unix:///abs/path */
        if (!*p || strlen(p) >= sizeof a->path) {
            snprintf(err, errlen, "invalid unix socket address %.200s", address);
            return -1;
        }
        a->is_unix = true;
        snprintf(a->path, sizeof a->path, "%s", p);
        return 0;
    }
    const char *p = address;
    if (strncmp(p, "dns:///", 7) == 0)
        p += 7;
    else if (strncmp(p, "ipv4:", 5) == 0 || strncmp(p, "ipv6:", 5) == 0)
        p += 5;
    const char *colon;
    size_t hl;
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (!end || end[1] != ':') {
            snprintf(err, errlen, "invalid address %.200s (want [v6]:port)", address);
            return -1;
        }
        p++;
        hl = (size_t)(end - p);
        colon = end + 1;
    } else {
        colon = strrchr(p, ':');
        if (!colon || memchr(p, ':', (size_t)(colon - p))) {
            snprintf(err, errlen, "invalid address %.200s (want host:port)", address);
            return -1;
        }
        hl = (size_t)(colon - p);
    }
    const char *port = colon + 1;
    size_t pl = strlen(port);
    bool digits = pl > 0 && pl < 6 && strspn(port, "0123456789") == pl;
    if (!digits || atoi(port) > 65535 || hl >= sizeof a->host || memchr(p, ' ', hl) != NULL) {
        snprintf(err, errlen, "invalid address %.200s (want host:port)", address);
        return -1;
    }
    memcpy(a->host, p, hl);
    a->host[hl] = '\0';
    memcpy(a->port, port, pl + 1);
    return 0;
}

static int listen_unix(const bt_grpc_addr *a, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", a->path);
    struct stat st;
    /* a socket left by an earlier run is replaced, as gRPC does; any other file is not */
    if (lstat(a->path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(a->path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 128) < 0) {
        snprintf(err, errlen, "cannot listen on unix:%s: %s", a->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int bt_grpc_listen(const bt_grpc_addr *a, int *port, char *err, size_t errlen)
{
    *port = 0;
    if (a->is_unix)
        return listen_unix(a, err, errlen);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(a->host[0] ? a->host : NULL, a->port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot listen on %s:%s: %s", a->host, a->port, gai_strerror(gai));
        return -1;
    }
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int one = 1; /* SO_REUSEADDR, never SO_REUSEPORT: a port in use is refused */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
            e = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%s: %s", a->host, a->port, strerror(e));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* Waits for a non-blocking connect until deadline: 0, or -1 with errno set. */
static int connect_wait(int fd, const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    if (connect(fd, sa, len) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    for (;;) {
        int64_t left = deadline - bt_now_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        int r = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
        if (r < 0 && errno != EINTR)
            return -1;
        if (r > 0)
            break;
    }
    int e = 0;
    socklen_t el = sizeof e;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
    if (e) {
        errno = e;
        return -1;
    }
    return 0;
}

int bt_grpc_dial(const bt_grpc_addr *a, int64_t deadline_ms, char *err, size_t errlen)
{
    if (a->is_unix) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", a->path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || connect_wait(fd, (struct sockaddr *)&sa, sizeof sa, deadline_ms) < 0) {
            snprintf(err, errlen, "connect unix:%s: %s", a->path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        return fd;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(a->host, a->port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "resolve %s: %s", a->host, gai_strerror(gai));
        return -1;
    }
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        if (connect_wait(fd, ai->ai_addr, ai->ai_addrlen, deadline_ms) < 0) {
            e = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "connect %s:%s: %s", a->host, a->port, strerror(e));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static const unsigned char alpn_h2[] = {2, 'h', '2'};

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *o;
    if (SSL_select_next_proto(&o, outlen, alpn_h2, sizeof alpn_h2, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* gRPC speaks h2 only */
    *out = o;
    return SSL_TLSEXT_ERR_OK;
}

/* Loads OpenSSL for a TLS setting. 0, or -1 with err. */
static int load_ossl(char *err, size_t errlen)
{
    char why[200];
    if (bt_ossl_load(why, sizeof why) == 0)
        return 0;
    snprintf(err, errlen, "tls: TLS needs %s", why);
    return -1;
}

SSL_CTX *bt_grpc_server_tls(const char *cert, const char *key, const char *ca, char *err,
                            size_t errlen)
{
    char why[200];
    if (load_ossl(err, errlen) < 0)
        return NULL;
    SSL_CTX *ctx = bt_tls_ctx_new(true, err, errlen);
    if (!ctx)
        return NULL;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        bt_tls_errors(why, sizeof why);
        snprintf(err, errlen, "cert: cannot load %.200s: %s", cert, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        bt_tls_errors(why, sizeof why);
        snprintf(err, errlen, "key: cannot load %.200s for cert %.200s: %s", key, cert, why);
        goto fail;
    }
    if (ca && *ca) {
        STACK_OF(X509_NAME) *names = NULL;
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ||
            !(names = SSL_load_client_CA_file(ca))) {
            bt_tls_errors(why, sizeof why);
            snprintf(err, errlen, "ca: cannot load %.200s: %s", ca, why);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *bt_grpc_client_tls(const char *ca, const char *cert, const char *key, char *err,
                            size_t errlen)
{
    if (load_ossl(err, errlen) < 0)
        return NULL;
    SSL_CTX *ctx = bt_tls_client_ctx(ca, cert, key, err, errlen);
    if (ctx && SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof alpn_h2) != 0) {
        snprintf(err, errlen, "tls: cannot offer ALPN h2");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int bt_grpc_conn_init(bt_grpc_conn *c, int fd, SSL_CTX *ctx, bool server, const char *host,
                      char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    if (!ctx)
        return 0;
    if (server) {
        ERR_clear_error();
        c->ssl = SSL_new(ctx);
        if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
            char why[200];
            bt_tls_errors(why, sizeof why);
            snprintf(err, errlen, "tls: %s", why);
            goto fail;
        }
        SSL_set_accept_state(c->ssl);
    } else {
        if (!(c->ssl = bt_tls_client_ssl(ctx, fd, host ? host : "", !host, err, errlen)))
            goto fail;
        SSL_set_connect_state(c->ssl);
    }
    c->handshaking = true;
    c->hs_events = POLLIN | POLLOUT;
    return 0;
fail:
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    close(fd);
    c->fd = -1;
    return -1;
}

int bt_grpc_conn_handshake(bt_grpc_conn *c)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        const unsigned char *p = NULL;
        unsigned int n = 0;
        SSL_get0_alpn_selected(c->ssl, &p, &n);
        if (n != 2 || memcmp(p, "h2", 2) != 0) {
            snprintf(c->why, sizeof c->why, "tls: the peer did not agree on ALPN h2");
            return -1;
        }
        c->handshaking = false;
        return 1;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->hs_events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return 0;
    }
    char why[200];
    bt_tls_fail_reason(c->ssl, rc, true, "connection closed during the handshake", why, sizeof why);
    snprintf(c->why, sizeof c->why, "tls handshake: %s", why);
    return -1;
}

int bt_grpc_conn_recv(bt_grpc_conn *c)
{
    uint8_t buf[READ_CHUNK];
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            errno = 0;
            int r = SSL_read(c->ssl, buf, sizeof buf);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    return 0;
                char why[200];
                bt_tls_fail_reason(c->ssl, r, false, "connection closed by the peer", why,
                                   sizeof why);
                snprintf(c->why, sizeof c->why, "%s", why);
                return -1;
            }
            n = r;
        } else {
            n = read(c->fd, buf, sizeof buf);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
            if (n <= 0) {
                snprintf(c->why, sizeof c->why, "%s",
                         n == 0 ? "connection closed by the peer" : strerror(errno));
                return -1;
            }
        }
        ssize_t used = nghttp2_session_mem_recv(c->ng, buf, (size_t)n);
        if (used < 0) {
            snprintf(c->why, sizeof c->why, "http2: %s", nghttp2_strerror((int)used));
            return -1;
        }
        if ((size_t)n < sizeof buf && !(c->ssl && SSL_pending(c->ssl) > 0))
            return 0; /* the socket is drained (a short read); poll tells of more */
    }
}

static ssize_t raw_write(bt_grpc_conn *c, const uint8_t *p, size_t n)
{
    if (!c->ssl) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        if (w < 0)
            snprintf(c->why, sizeof c->why, "%s", strerror(errno));
        return w;
    }
    ERR_clear_error();
    errno = 0;
    int w = SSL_write(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
    if (w > 0)
        return w;
    int e = SSL_get_error(c->ssl, w);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
        return 0;
    char why[200];
    bt_tls_fail_reason(c->ssl, w, false, "connection closed by the peer", why, sizeof why);
    snprintf(c->why, sizeof c->why, "%s", why);
    return -1;
}

int bt_grpc_conn_send(bt_grpc_conn *c)
{
    for (;;) {
        if (c->outoff < c->outlen) {
            ssize_t w = raw_write(c, c->out + c->outoff, c->outlen - c->outoff);
            if (w < 0)
                return -1;
            if (w == 0) {
                c->write_blocked = true;
                return 0;
            }
            c->outoff += (size_t)w;
            continue;
        }
        c->outoff = c->outlen = 0;
        while (c->outlen < SEND_GATHER) {
            const uint8_t *d;
            ssize_t n = nghttp2_session_mem_send(c->ng, &d);
            if (n < 0) {
                snprintf(c->why, sizeof c->why, "http2: %s", nghttp2_strerror((int)n));
                return -1;
            }
            if (n == 0)
                break;
            if (c->outlen + (size_t)n > c->outcap) {
                size_t cap = c->outcap ? c->outcap : SEND_GATHER;
                while (cap < c->outlen + (size_t)n)
                    cap *= 2;
                uint8_t *b = realloc(c->out, cap);
                if (!b) {
                    snprintf(c->why, sizeof c->why, "out of memory");
                    return -1;
                }
                c->out = b;
                c->outcap = cap;
            }
            memcpy(c->out + c->outlen, d, (size_t)n);
            c->outlen += (size_t)n;
        }
        if (c->outlen == 0) {
            c->write_blocked = false;
            return 0;
        }
    }
}

short bt_grpc_conn_events(const bt_grpc_conn *c)
{
    if (c->handshaking)
        return c->hs_events;
    short ev = POLLIN;
    if (c->write_blocked)
        ev |= POLLOUT;
    return ev;
}

void bt_grpc_conn_close(bt_grpc_conn *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    if (c->ng)
        nghttp2_session_del(c->ng);
    free(c->out);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

nghttp2_nv bt_grpc_nv(const char *name, const char *value)
{
    nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                     NGHTTP2_NV_FLAG_NONE};
    return nv;
}
