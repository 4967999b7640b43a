/* TLS transport (OpenSSL) for ssl:// listeners and, under the WebSocket transport, wss://.
 *
 * The socket stays non-blocking and the handshake runs inside read(): each EPOLLIN (or
 * EPOLLOUT when OpenSSL wanted to write) takes it one step further, so a slow or stalled
 * client never holds up the loop; the connection's handshake.timeout drops it. A client
 * certificate is requested when certificate.ca is set and, when one is presented, it must
 * verify against ca or the handshake fails (SSL_VERIFY_PEER without FAIL_IF_NO_PEER_CERT:
 * clients without one may still log in with a password). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "baetyl/ossl.h"
#include "hub.h"

/* Largest plaintext of one TLS record. */
#define TLS_RECORD_MAX 16384

typedef struct {
    transport t;
    SSL *ssl;
    bool ready; /* handshake done */
    bool fatal; /* OpenSSL failed: no close_notify, no more calls but SSL_free */
    int8_t end; /* 0 open, 1 the peer closed, -1 failed: what read() reports from now on */
    char why[200];
} tls_transport;

/* Fills s->why with what failed and OpenSSL's (or the system's) reason. */
static void describe(tls_transport *s, const char *what, int e, int sys_errno)
{
    unsigned long code = ERR_peek_last_error();
    const char *reason = code ? ERR_reason_error_string(code) : NULL;
    long vr = SSL_get_verify_result(s->ssl);
    if (vr != X509_V_OK) {
        snprintf(s->why, sizeof s->why, "tls %s: client certificate: %s", what,
                 X509_verify_cert_error_string(vr));
    } else if (reason) {
        snprintf(s->why, sizeof s->why, "tls %s: %s", what, reason);
    } else if (e == SSL_ERROR_SYSCALL && sys_errno) {
        snprintf(s->why, sizeof s->why, "tls %s: %s", what, strerror(sys_errno));
    } else {
        snprintf(s->why, sizeof s->why, "tls %s: connection closed", what);
    }
    ERR_clear_error();
    s->t.err = s->why;
}

/* One handshake step: 1 = done, 0 = later (errno EAGAIN), -1 = failed. */
static int handshake(tls_transport *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->ready = true;
        s->t.handshaking = false;
        X509 *peer = SSL_get1_peer_certificate(s->ssl);
        s->t.cert_verified = peer && SSL_get_verify_result(s->ssl) == X509_V_OK;
        X509_free(peer);
        return 1;
    }
    int saved = errno;
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        s->t.read_wants_write = e == SSL_ERROR_WANT_WRITE;
        s->t.drained = true;
        errno = EAGAIN;
        return 0;
    }
    describe(s, "handshake failed", e, saved);
    s->fatal = true;
    s->end = -1;
    return -1;
}

static ssize_t failed(tls_transport *s)
{
    s->t.err = s->why;
    errno = EPROTO;
    return -1;
}

static ssize_t tls_read(transport *t, void *b, size_t n)
{
    tls_transport *s = (tls_transport *)t;
    t->read_wants_write = false;
    t->drained = false;
    if (s->end > 0)
        return 0;
    if (s->end < 0)
        return failed(s);
    if (!s->ready) {
        int r = handshake(s);
        if (r == 0)
            return -1;
        if (r < 0)
            return failed(s);
        /* done: the client's first bytes may have come with its last handshake message */
    }
    size_t got = 0;
    while (got < n) {
        size_t room = n - got;
        /* A record that does not fit would leave decrypted bytes inside OpenSSL, where
         * epoll cannot see them: leave it in the socket for the next read. */
        if (got && room < TLS_RECORD_MAX)
            break;
        ERR_clear_error();
        int r = SSL_read(s->ssl, (uint8_t *)b + got, room > INT_MAX ? INT_MAX : (int)room);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        int saved = errno;
        int e = SSL_get_error(s->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            t->read_wants_write = e == SSL_ERROR_WANT_WRITE;
            t->drained = true;
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            s->end = 1; /* close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
            break;
        }
        describe(s, "read failed", e, saved);
        s->fatal = true;
        s->end = -1;
        break;
    }
    if (got)
        return (ssize_t)got; /* an end is reported by the next call */
    if (s->end > 0)
        return 0;
    if (s->end < 0)
        return failed(s);
    errno = EAGAIN;
    return -1;
}

static ssize_t tls_writev(transport *t, const struct iovec *iov, int n)
{
    tls_transport *s = (tls_transport *)t;
    t->write_wants_read = false;
    if (s->end < 0) {
        t->err = s->why;
        errno = EPIPE;
        return -1;
    }
    if (!s->ready) {
        /* Nothing is sent before the handshake is done; reads will finish it. */
        t->write_wants_read = true;
        errno = EAGAIN;
        return -1;
    }
    /* Partial writes are on: SSL_write returns after each record. After a WANT_*, the
     * caller retries from the first byte not reported, as OpenSSL requires (the buffer
     * may move: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). */
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t len = iov[i].iov_len, off = 0;
        while (off < len) {
            size_t k = len - off;
            ERR_clear_error();
            int r = SSL_write(s->ssl, p + off, k > INT_MAX ? INT_MAX : (int)k);
            if (r > 0) {
                off += (size_t)r;
                total += (size_t)r;
                continue;
            }
            int saved = errno;
            int e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                t->write_wants_read = e == SSL_ERROR_WANT_READ;
                goto out;
            }
            describe(s, "write failed", e, saved);
            s->fatal = true;
            s->end = -1;
            if (total)
                return (ssize_t)total;
            t->err = s->why;
            errno = EPIPE;
            return -1;
        }
    }
out:
    if (total)
        return (ssize_t)total;
    errno = EAGAIN;
    return -1;
}

static void tls_close(transport *t)
{
    tls_transport *s = (tls_transport *)t;
    if (s->ready && !s->fatal) {
        /* One non-blocking try at close_notify; no waiting for the peer's. */
        ERR_clear_error();
        SSL_shutdown(s->ssl);
        ERR_clear_error();
    }
    SSL_free(s->ssl);
    if (t->fd >= 0)
        close(t->fd);
    free(s);
}

static const transport_ops tls_ops = {tls_read, tls_writev, NULL, tls_close};

transport *transport_tls_new(int fd, struct ssl_ctx_st *ctx)
{
    tls_transport *s = calloc(1, sizeof *s);
    SSL *ssl = s ? SSL_new(ctx) : NULL;
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        free(s);
        close(fd);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    s->ssl = ssl;
    s->t.ops = &tls_ops;
    s->t.fd = fd;
    s->t.handshaking = true;
    return &s->t;
}

/* ---- the server context ------------------------------------------------------------- */

/* err = "<field> (<path>): <reason>" for a file OpenSSL could not use. */
static void file_error(char *err, size_t errlen, const char *field, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s (%s): %s", field, path, strerror(errno));
    } else {
        fclose(f);
        unsigned long code = ERR_peek_last_error();
        const char *reason = code ? ERR_reason_error_string(code) : NULL;
        snprintf(err, errlen, "%s (%s): %s", field, path, reason ? reason : "not usable");
    }
    ERR_clear_error();
}

struct ssl_ctx_st *transport_tls_ctx_new(const hub_config *cfg, char *err, size_t errlen)
{
    if (!cfg->cert || !cfg->cert[0] || !cfg->key || !cfg->key[0]) {
        snprintf(err, errlen, "certificate.cert and certificate.key are required for TLS");
        return NULL;
    }
    char why[200];
    if (bt_ossl_load(why, sizeof why) < 0) {
        snprintf(err, errlen, "certificate: TLS needs %s", why);
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "tls: cannot create a context");
        ERR_clear_error();
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Partial writes and a movable buffer fit the connection's output buffer; idle
     * connections give their record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* MQTT frames its own packets, so a close without close_notify is an ordinary EOF. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    /* Needed for session resumption when client certificates are verified. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"baetyl-hub", 10);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
        file_error(err, errlen, "certificate.cert", cfg->cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1) {
        file_error(err, errlen, "certificate.key", cfg->key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "certificate.key (%s) does not match certificate.cert (%s)", cfg->key,
                 cfg->cert);
        ERR_clear_error();
        goto fail;
    }
    if (cfg->ca && cfg->ca[0]) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1) {
            file_error(err, errlen, "certificate.ca", cfg->ca);
            goto fail;
        }
        /* Tell clients which CA we accept, so they pick the right certificate. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        ERR_clear_error();
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void transport_tls_ctx_free(struct ssl_ctx_st *ctx)
{
    if (ctx) /* without TLS, OpenSSL was never loaded */
        SSL_CTX_free(ctx);
}
