/* One HTTP/1.1 request over a unix socket or HTTPS (baetyl/http.h), on the master API
 * client's transport and reply parser, with TLS from tls_client.h. */
#include "baetyl/http.h"
#include "baetyl/error.h"
#include "baetyl/ossl.h"
#include "baetyl/util.h"
#include "http_reply.h"
#include "tls_client.h"

#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

/* Streams a 2xx body to the caller; keeps any other (its error message), bounded. */
typedef struct {
    const bt_http_req *q;
    bt_http_reply *r;
    bt_buf kept;
    size_t max;
} stream;

static int on_body(const char *p, size_t n, void *arg)
{
    stream *s = arg;
    if (s->r->status >= 200 && s->r->status < 300)
        return s->q->on_data(p, n, s->q->arg);
    size_t room = s->max - bt_buf_size(&s->kept); /* past it, the message is cut */
    return bt_buf_append_nul(&s->kept, p, n < room ? n : room) < 0 ? -1 : 0;
}

/* Where one exchange goes: a unix socket, or host:port over TLS. */
typedef struct {
    const char *sock;
    const bt_http_url *url;
    SSL_CTX *tls;
    const char *target;
} peer;

static int head_of(const bt_http_req *q, const peer *w, char **head)
{
    char len[48] = "", type[160] = "", host[300] = "localhost";
    if (q->body || (strcmp(q->method, "GET") && strcmp(q->method, "DELETE")))
        snprintf(len, sizeof len, "Content-Length: %zu\r\n", q->body ? q->body_len : 0);
    if (q->body)
        snprintf(type, sizeof type, "Content-Type: %s\r\n",
                 q->content_type ? q->content_type : "application/json");
    if (w->url) {
        bool v6 = strchr(w->url->host, ':') != NULL, dflt = !strcmp(w->url->port, "443");
        snprintf(host, sizeof host, "%s%s%s%s%s", v6 ? "[" : "", w->url->host, v6 ? "]" : "",
                 dflt ? "" : ":", dflt ? "" : w->url->port);
    }
    bt_buf extra = {0};
    for (const char *const *h = q->headers; h && *h; h++)
        if (bt_buf_append(&extra, *h, strlen(*h)) < 0 || bt_buf_append(&extra, "\r\n", 2) < 0) {
            bt_buf_free(&extra);
            return -1;
        }
    int rc = asprintf(head, "%s %s HTTP/1.1\r\nHost: %s\r\n%.*s%s%sConnection: close\r\n\r\n",
                      q->method, w->target, host, (int)bt_buf_size(&extra),
                      extra.p ? (const char *)extra.p + extra.off : "", type, len);
    bt_buf_free(&extra);
    return rc;
}

/* errno of a failed wait as an outcome. */
static int outcome(int e)
{
    return e == ETIMEDOUT ? BT_HTTP_TIMEOUT : e == ECANCELED ? BT_HTTP_CANCELLED : BT_HTTP_ERR;
}

/* Connects io->fd (and io->ssl) to w within the connect deadline cdl. 0, or an outcome
 * with err. */
static int open_peer(const peer *w, bt_http_io *io, int64_t cdl, char *err, size_t errlen)
{
    if (w->sock) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path, w->sock, strlen(w->sock));
        io->fd = bt_http_connect((struct sockaddr *)&sa, sizeof sa, cdl);
        if (io->fd < 0) {
            int e = errno;
            bt_errf(err, errlen, "cannot connect to %s: %s", w->sock,
                    e == ETIMEDOUT ? "timed out" : strerror(e));
            return outcome(e);
        }
        return 0;
    }
    const bt_http_url *u = w->url;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    int g = getaddrinfo(u->host, u->port, &hints, &res);
    if (g != 0)
        return bt_errf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(g));
    int e = 0;
    for (struct addrinfo *ai = res; ai && io->fd < 0; ai = ai->ai_next) {
        io->fd = bt_http_connect(ai->ai_addr, ai->ai_addrlen, cdl);
        e = errno;
    }
    freeaddrinfo(res);
    if (io->fd < 0) {
        bt_errf(err, errlen, "cannot connect to %s port %s: %s", u->host, u->port,
                e == ETIMEDOUT ? "timed out" : strerror(e));
        return outcome(e);
    }
    char why[256];
    if (!(io->ssl = bt_tls_client_ssl(w->tls, io->fd, u->host, false, why, sizeof why)))
        return bt_errf(err, errlen, "%s port %s: %s", u->host, u->port, why);
    bt_http_io hs = *io;
    hs.deadline = cdl;
    if (bt_http_tls_handshake(&hs, why, sizeof why) < 0) {
        e = errno;
        bt_errf(err, errlen, "%s port %s: TLS handshake: %s", u->host, u->port, why);
        return outcome(e);
    }
    return 0;
}

/* One request and its reply into r: the status, or an outcome with err. */
static int exchange(const bt_http_req *q, const peer *w, bt_http_reply *r, bt_http_io *io,
                    int64_t cdl, char *err, size_t errlen)
{
    char what[128], *head = NULL;
    snprintf(what, sizeof what, "%s %.100s", q->method, w->target);
    int rc = open_peer(w, io, cdl, err, errlen);
    if (rc < 0)
        return rc;
    if (head_of(q, w, &head) < 0)
        return bt_errf(err, errlen, "out of memory");
    if (bt_http_send_all(io, head, strlen(head)) < 0 ||
        (q->body && bt_http_send_all(io, q->body, q->body_len) < 0)) {
        int e = errno;
        bt_errf(err, errlen, "%s: send: %s", what, e == ETIMEDOUT ? "timed out" : strerror(e));
        free(head);
        return outcome(e);
    }
    free(head);
    if (bt_http_read_reply(io, r, what, err, errlen) < 0)
        return outcome(errno);
    return r->status;
}

static void close_io(bt_http_io *io)
{
    if (io->ssl)
        SSL_free(io->ssl);
    if (io->fd >= 0)
        close(io->fd);
    io->ssl = NULL;
    io->fd = -1;
}

static bool redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Where a redirect from u goes: an https URL as is, or a path on the same host and port
 * (malloc'd). NULL with err for anything else. */
static char *next_url(const bt_http_url *u, const char *loc, char *err, size_t errlen)
{
    char *n = NULL;
    if (strncasecmp(loc, "https://", 8) == 0)
        n = strdup(loc);
    else if (loc[0] == '/' && loc[1] != '/')
        n = bt_strdup_printf("https://%s%s%s:%s%s", strchr(u->host, ':') ? "[" : "", u->host,
                             strchr(u->host, ':') ? "]" : "", u->port, loc);
    else
        bt_errf(err, errlen, "redirect to %.200s refused: not https://", loc);
    return n;
}

static int check(const bt_http_req *q, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    if (!q->url && (!q->socket || strlen(q->socket) >= sizeof sa.sun_path))
        return bt_errf(err, errlen, "invalid unix socket path");
    if (!bt_http_method_ok(q->method) || (!q->url && (!q->target || q->target[0] != '/')))
        return bt_errf(err, errlen, "invalid request");
    for (const char *p = q->target; p && *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return bt_errf(err, errlen, "invalid request target (unencoded character)");
    if (q->content_type && strpbrk(q->content_type, "\r\n"))
        return bt_errf(err, errlen, "invalid content type");
    for (const char *const *h = q->headers; h && *h; h++)
        if (strpbrk(*h, "\r\n") || !strchr(*h, ':') || **h == ':')
            return bt_errf(err, errlen, "invalid header line (%.60s)", *h);
    if (q->max_redirects < 0 || q->max_redirects > BT_HTTP_MAX_REDIRECTS)
        return bt_errf(err, errlen, "max_redirects out of 0..%d", BT_HTTP_MAX_REDIRECTS);
    return 0;
}

int bt_http_request(const bt_http_req *q, char **body, size_t *len, char *err, size_t errlen)
{
    if (body)
        *body = NULL;
    if (len)
        *len = 0;
    if (check(q, err, errlen) < 0)
        return BT_HTTP_ERR;
    char why[200];
    peer w = {.sock = q->url ? NULL : q->socket, .target = q->target};
    if (q->url && bt_ossl_load(why, sizeof why) < 0)
        return bt_errf(err, errlen, "https: TLS needs %s", why);
    if (q->url && !(w.tls = bt_tls_client_ctx(q->ca, q->cert, q->key, err, errlen)))
        return BT_HTTP_ERR;
    bt_http_reply *r = malloc(sizeof *r); /* 8 KiB of line buffer: not on a small stack */
    char *cur = q->url ? strdup(q->url) : NULL;
    bt_http_url u = {.target = NULL};
    if (!r || (q->url && !cur)) {
        free(r);
        free(cur);
        if (w.tls)
            SSL_CTX_free(w.tls);
        return bt_errf(err, errlen, "out of memory");
    }
    size_t max = q->max_body ? q->max_body : BT_HTTP_DEFAULT_MAX_BODY;
    stream s = {.q = q, .r = r, .max = max};
    int64_t now = bt_now_ms();
    int64_t deadline = q->timeout_ms > 0 ? now + q->timeout_ms : INT64_MAX;
    bt_http_io io = {.fd = -1, .idle_ms = q->idle_timeout_ms, .cancel_fd = q->cancel_fd};
    int rc = BT_HTTP_ERR;
    bt_http_reply_init(r, max);
    for (int hops = 0;; hops++) {
        if (cur) {
            bt_http_url_free(&u);
            if (bt_http_url_parse(cur, &u, err, errlen) < 0) {
                rc = BT_HTTP_ERR;
                break;
            }
            w.url = &u;
            w.target = u.target;
        }
        /* a stream is as long as its reader wants */
        bt_http_reply_free(r);
        bt_http_reply_init(r, !q->on_data ? max : q->max_stream ? q->max_stream : SIZE_MAX);
        bt_buf_free(&s.kept);
        if (q->on_data) {
            r->on_body = on_body;
            r->on_body_arg = &s;
        }
        io.deadline = deadline;
        int64_t cdl = q->connect_timeout_ms > 0 ? bt_now_ms() + q->connect_timeout_ms : deadline;
        rc = exchange(q, &w, r, &io, cdl < deadline ? cdl : deadline, err, errlen);
        close_io(&io);
        if (rc == BT_HTTP_ERR && q->on_data && r->too_big)
            rc = BT_HTTP_TOO_LARGE;
        bool get = !strcmp(q->method, "GET") || !strcmp(q->method, "HEAD");
        if (!cur || rc < 0 || !redirect(rc) || !r->location || !get || !q->max_redirects)
            break;
        if (hops == q->max_redirects) {
            rc = bt_errf(err, errlen, "more than %d redirects (the last to %.200s)",
                         q->max_redirects, r->location);
            break;
        }
        char *next = next_url(&u, r->location, err, errlen);
        if (!next) {
            rc = BT_HTTP_ERR;
            break;
        }
        free(cur);
        cur = next;
    }
    bt_buf *b = q->on_data ? &s.kept : &r->body;
    if (rc >= 0 && body) {
        /* the answer's memory goes to the caller */
        size_t n = bt_buf_size(b);
        *body = malloc(n + 1);
        if (!*body) {
            rc = bt_errf(err, errlen, "out of memory");
        } else {
            if (n)
                memcpy(*body, (const char *)b->p + b->off, n);
            (*body)[n] = '\0';
            if (len)
                *len = n;
        }
    }
    bt_buf_free(&s.kept);
    bt_http_reply_free(r);
    free(r);
    bt_http_url_free(&u);
    free(cur);
    if (w.tls)
        SSL_CTX_free(w.tls);
    return rc;
}
