/* One HTTP/1.1 request over a unix socket (baetyl/http.h), on the master API client's
 * transport and reply parser. */
#include "baetyl/http.h"
#include "baetyl/error.h"
#include "baetyl/util.h"
#include "http_reply.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int head_of(const bt_http_req *q, char **head)
{
    char len[48] = "", type[160] = "";
    if (q->body || (strcmp(q->method, "GET") && strcmp(q->method, "DELETE")))
        snprintf(len, sizeof len, "Content-Length: %zu\r\n", q->body ? q->body_len : 0);
    if (q->body)
        snprintf(type, sizeof type, "Content-Type: %s\r\n",
                 q->content_type ? q->content_type : "application/json");
    return asprintf(head, "%s %s HTTP/1.1\r\nHost: localhost\r\n%s%sConnection: close\r\n\r\n",
                    q->method, q->target, type, len);
}

int bt_http_request(const bt_http_req *q, char **body, size_t *len, char *err, size_t errlen)
{
    if (body)
        *body = NULL;
    if (len)
        *len = 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!q->socket || strlen(q->socket) >= sizeof sa.sun_path)
        return bt_errf(err, errlen, "invalid unix socket path");
    if (!bt_http_method_ok(q->method) || !q->target || q->target[0] != '/')
        return bt_errf(err, errlen, "invalid request");
    for (const char *p = q->target; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return bt_errf(err, errlen, "invalid request target (unencoded character)");
    if (q->content_type && strpbrk(q->content_type, "\r\n"))
        return bt_errf(err, errlen, "invalid content type");
    memcpy(sa.sun_path, q->socket, strlen(q->socket));
    char what[96], *head = NULL;
    snprintf(what, sizeof what, "%s %.80s", q->method, q->target);
    bt_http_reply *r = malloc(sizeof *r); /* 8 KiB of line buffer: not on a small stack */
    if (!r || head_of(q, &head) < 0) {
        free(r);
        return bt_errf(err, errlen, "out of memory");
    }
    size_t max = q->max_body ? q->max_body : BT_HTTP_DEFAULT_MAX_BODY;
    /* a stream is as long as its reader wants */
    bt_http_reply_init(r, q->on_data ? SIZE_MAX : max);
    stream s = {.q = q, .r = r, .max = max};
    if (q->on_data) {
        r->on_body = on_body;
        r->on_body_arg = &s;
    }
    int64_t deadline = q->timeout_ms > 0 ? bt_now_ms() + q->timeout_ms : INT64_MAX;
    int rc = BT_HTTP_ERR, fd = bt_http_connect((struct sockaddr *)&sa, sizeof sa, deadline);
    if (fd < 0) {
        bt_errf(err, errlen, "cannot connect to %s: %s", q->socket,
                errno == ETIMEDOUT ? "timed out" : strerror(errno));
        if (errno == ETIMEDOUT)
            rc = BT_HTTP_TIMEOUT;
        goto out;
    }
    if (bt_http_send_all(fd, head, strlen(head), deadline) < 0 ||
        (q->body && bt_http_send_all(fd, q->body, q->body_len, deadline) < 0)) {
        rc = errno == ETIMEDOUT ? BT_HTTP_TIMEOUT : BT_HTTP_ERR;
        bt_errf(err, errlen, "%s: send: %s", what,
                errno == ETIMEDOUT ? "timed out" : strerror(errno));
        goto out;
    }
    if (bt_http_read_reply(fd, r, deadline, q->cancel_fd, what, err, errlen) < 0) {
        rc = errno == ETIMEDOUT   ? BT_HTTP_TIMEOUT
             : errno == ECANCELED ? BT_HTTP_CANCELLED
                                  : BT_HTTP_ERR;
        goto out;
    }
    rc = r->status;
    bt_buf *b = q->on_data ? &s.kept : &r->body;
    if (body) {
        /* the answer's memory goes to the caller */
        size_t n = bt_buf_size(b);
        *body = malloc(n + 1);
        if (!*body) {
            rc = bt_errf(err, errlen, "out of memory");
            goto out;
        }
        if (n)
            memcpy(*body, (const char *)b->p + b->off, n);
        (*body)[n] = '\0';
        if (len)
            *len = n;
    }
out:
    if (fd >= 0)
        close(fd);
    bt_buf_free(&s.kept);
    bt_http_reply_free(r);
    free(r);
    free(head);
    return rc;
}
