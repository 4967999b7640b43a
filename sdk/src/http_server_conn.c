/* One connection of the server (baetyl/http_server.h): read a request with its bounds, hand
 * it to the handlers, write the answer, and again while the client keeps the connection.
 * Every wait is bounded: the whole head by the idle timeout (a client sending a byte now and
 * then is still cut off), the body and the answer by the idle timeout between progress. */
#include "http_reply.h"
#include "http_request.h"
#include "http_server_internal.h"

#include "baetyl/util.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* After an answer to a request whose body was not read to its end: how long and how much
 * of it is read and dropped before closing, so that closing does not reset the connection
 * under the answer before the client read it. */
#define LINGER_MS 1000
#define LINGER_BYTES (1u << 20)
/* A body up to this size is copied behind the head and sent with it. */
#define SMALL_BODY (64u << 10)

typedef struct {
    bt_httpd_conn *c;
    const bt_http_server_opts *o;
    int idle_ms;
    bt_http_request q;
    bt_buf body;  /* the kept body */
    bool keep;    /* on_head's keep_body */
    bool too_big; /* the body passed max_body */
    size_t off, len;
    char buf[8192]; /* bytes read and not parsed yet (the next request's, pipelined) */
} session;

static bool stopping(const session *ss)
{
    return __atomic_load_n(&ss->c->s->stopping, __ATOMIC_ACQUIRE);
}

/* Body bytes: kept up to max_body, dropped past it. */
static int on_body(const char *p, size_t n, void *arg)
{
    session *ss = arg;
    if (!ss->keep || ss->too_big)
        return 0;
    if (n > ss->o->max_body - bt_buf_size(&ss->body)) {
        ss->too_big = true;
        bt_buf_free(&ss->body);
        return 0;
    }
    return bt_buf_append_nul(&ss->body, p, n);
}

/* Reads into the (empty) buffer before deadline: > 0 bytes, 0 at the end, -1 on a timeout or
 * an error. */
static ssize_t fill(session *ss, int64_t deadline)
{
    for (;;) {
        ssize_t n = recv(ss->c->fd, ss->buf, sizeof ss->buf, 0);
        if (n >= 0) {
            ss->off = 0;
            ss->len = (size_t)n;
            return n;
        }
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        if (errno == EAGAIN && bt_http_wait_fd(ss->c->fd, POLLIN, deadline, -1) < 0)
            return -1;
    }
}

static int feed(session *ss)
{
    size_t used;
    int rc = bt_http_request_feed(&ss->q, ss->buf + ss->off, ss->len - ss->off, &used);
    ss->off += used;
    if (ss->off == ss->len)
        ss->off = ss->len = 0;
    return rc;
}

static int send_bytes(session *ss, const char *p, size_t n)
{
    bt_http_io io = {
        .fd = ss->c->fd, .deadline = INT64_MAX, .idle_ms = ss->idle_ms, .cancel_fd = -1};
    return bt_http_send_all(&io, p, n);
}

/* Writes the answer: 0, or -1 when the client is gone or stalled. */
static int send_resp(session *ss, const bt_http_resp *r, bool head_only, bool keep, int minor)
{
    int status = r->status ? r->status : 500;
    char date[40];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
    const char *conn = !keep        ? "Connection: close\r\n"
                       : minor == 0 ? "Connection: keep-alive\r\n"
                                    : "";
    size_t len = r->body ? r->len : 0, send_len = head_only ? 0 : len;
    bt_buf out = {0};
    char line[160];
    int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Length: %zu\r\n",
                     status, bt_http_status_text(status), date, len);
    const char *parts[] = {line,
                           r->type ? "Content-Type: " : "",
                           r->type ? r->type : "",
                           r->type ? "\r\n" : "",
                           r->headers ? r->headers : "",
                           conn,
                           "\r\n"};
    int rc = n > 0 && (size_t)n < sizeof line ? 0 : -1;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0] && rc == 0; i++)
        rc = bt_buf_append(&out, parts[i], strlen(parts[i]));
    /* a small body goes in the same write as the head: one wakeup for the client */
    bool joined = send_len <= SMALL_BODY;
    if (rc == 0 && joined && send_len)
        rc = bt_buf_append(&out, r->body, send_len);
    if (rc == 0)
        rc = send_bytes(ss, (const char *)out.p + out.off, bt_buf_size(&out));
    bt_buf_free(&out);
    if (rc == 0 && !joined)
        rc = send_bytes(ss, r->body, send_len);
    return rc;
}

/* Ends our side, then drops what the client still sends for a while. */
static void linger(session *ss)
{
    shutdown(ss->c->fd, SHUT_WR);
    int64_t deadline = bt_now_ms() + LINGER_MS;
    for (size_t got = 0; got < LINGER_BYTES;) {
        ssize_t n = fill(ss, deadline);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
}

/* A request the parser refused: its status and reason, then the connection closes. */
static void refuse(session *ss)
{
    char text[sizeof ss->q.err + 2];
    snprintf(text, sizeof text, "%s\n", ss->q.err);
    bt_http_resp r = {.status = ss->q.status,
                      .type = "text/plain; charset=utf-8",
                      .body = text,
                      .len = strlen(text)};
    if (send_resp(ss, &r, false, false, 1) == 0)
        linger(ss);
}

/* Reads the body after the head; false when the connection is to close without an answer. */
static bool read_body(session *ss, bt_http_req *rq)
{
    bt_http_request *q = &ss->q;
    if (q->has_length && q->length > ss->o->max_drop) {
        rq->body_cut = true; /* refused unread */
        return true;
    }
    if (q->expect_continue && (q->chunked || q->length) &&
        send_bytes(ss, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0)
        return false;
    /* a body to be dropped has the head's bound on the whole: nobody waits for it */
    int64_t whole = ss->keep ? INT64_MAX : bt_now_ms() + ss->idle_ms;
    int rc;
    while ((rc = feed(ss)) == BT_HTTPD_MORE) {
        if (q->seen > ss->o->max_drop) {
            rq->body_cut = true;
            return true;
        }
        int64_t next = bt_now_ms() + ss->idle_ms;
        if (fill(ss, next < whole ? next : whole) <= 0)
            return false;
    }
    if (rc < 0) {
        refuse(ss);
        return false;
    }
    return true;
}

/* Serves one request: true when the connection stays open for another. */
static bool serve_one(session *ss)
{
    bt_http_request *q = &ss->q;
    bt_http_request_free(q);
    bt_http_request_init(q);
    bt_buf_free(&ss->body);
    ss->too_big = false;
    int64_t deadline = bt_now_ms() + ss->idle_ms; /* for the whole head */
    int rc;
    while ((rc = feed(ss)) == BT_HTTPD_MORE)
        if (fill(ss, deadline) <= 0)
            return false; /* gone, idle or too slow: closed without an answer */
    if (rc < 0) {
        refuse(ss);
        return false;
    }
    bt_http_req rq = {.method = q->method,
                      .path = q->path,
                      .query = q->query,
                      .minor = q->minor,
                      .headers = q->headers,
                      .nheaders = q->nheaders,
                      .conn = ss->c->state,
                      .keep_body = true,
                      .idle_timeout_ms = ss->idle_ms};
    if (ss->o->on_head)
        ss->o->on_head(&rq, ss->o->arg);
    if (rq.idle_timeout_ms > 0)
        ss->idle_ms = rq.idle_timeout_ms;
    ss->keep = rq.keep_body;
    if (!read_body(ss, &rq))
        return false;
    rq.body_seen = q->seen;
    rq.body_too_big = ss->too_big;
    bool kept = ss->keep && !ss->too_big && !rq.body_cut && ss->body.p;
    rq.body = kept ? (const char *)ss->body.p + ss->body.off : "";
    rq.body_len = kept ? bt_buf_size(&ss->body) : 0;
    bt_http_resp resp = {0};
    ss->o->on_request(&rq, &resp, ss->o->arg);
    if (rq.idle_timeout_ms > 0)
        ss->idle_ms = rq.idle_timeout_ms;
    bool keep = q->keep_alive && !rq.body_cut && !stopping(ss);
    int sent = send_resp(ss, &resp, !strcmp(q->method, "HEAD"), keep, q->minor);
    if (resp.free_body)
        free((void *)resp.body);
    bt_buf_free(&ss->body);
    if (sent == 0 && rq.body_cut)
        linger(ss);
    return sent == 0 && keep;
}

void bt_httpd_conn_serve(bt_httpd_conn *c)
{
    session *ss = calloc(1, sizeof *ss);
    if (!ss)
        return;
    ss->c = c;
    ss->o = &c->s->o;
    ss->idle_ms = ss->o->idle_timeout_ms;
    ss->q.on_body = on_body;
    ss->q.on_body_arg = ss;
    while (serve_one(ss) && !stopping(ss))
        ;
    bt_http_request_free(&ss->q);
    bt_buf_free(&ss->body);
    free(ss);
}
