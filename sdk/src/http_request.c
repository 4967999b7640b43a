/* One HTTP/1.1 request, parsed as it arrives (RFC 9112): the head is gathered whole (up to
 * BT_HTTPD_MAX_HEAD) and then split in place; the body is framed by Content-Length or
 * chunked coding and handed on piece by piece. Anything outside the grammar is refused with
 * the status to answer and a message naming what was wrong. */
#include "http_request.h"
#include "http_parse.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum {
    S_HEAD,
    S_HEAD_DONE,
    S_BODY,
    S_CHUNK_SIZE,
    S_CHUNK_DATA,
    S_CHUNK_END,
    S_TRAILER,
    S_DONE,
    S_ERROR
};

void bt_http_request_init(bt_http_request *q)
{
    int (*on_body)(const char *, size_t, void *) = q->on_body;
    void *arg = q->on_body_arg;
    memset(q, 0, sizeof *q);
    q->on_body = on_body;
    q->on_body_arg = arg;
    q->state = S_HEAD;
}

void bt_http_request_free(bt_http_request *q)
{
    bt_buf_free(&q->head);
    q->nheaders = 0;
    q->method = q->path = q->query = NULL;
}

bool bt_http_request_started(const bt_http_request *q)
{
    return q->state != S_HEAD || bt_buf_size(&q->head) > 0;
}

__attribute__((format(printf, 3, 4))) static int fail(bt_http_request *q, int status,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->err, sizeof q->err, fmt, ap);
    va_end(ap);
    q->status = status;
    q->state = S_ERROR;
    return -1;
}

static int hexval(char c)
{
    return isdigit((unsigned char)c) ? c - '0' : tolower((unsigned char)c) - 'a' + 10;
}

/* Decodes %XX in place; no NUL may come out. 0, or -1. */
static int pct_decode(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        if (!isxdigit((unsigned char)r[1]) || !isxdigit((unsigned char)r[2]))
            return -1;
        char c = (char)(hexval(r[1]) * 16 + hexval(r[2]));
        if (!c)
            return -1;
        *w++ = c;
        r += 2;
    }
    *w = '\0';
    return 0;
}

/* "METHOD SP target SP HTTP/x.y", NUL-terminated in place. */
static int request_line(bt_http_request *q, char *l, size_t n)
{
    size_t m = 0;
    while (m < n && bt_http_tchar((unsigned char)l[m]))
        m++;
    if (m == 0 || m >= n || l[m] != ' ')
        return fail(q, 400, "bad request line (method)");
    char *t = l + m + 1, *e = l + n;
    char *sp = memchr(t, ' ', (size_t)(e - t));
    if (!sp || sp == t)
        return fail(q, 400, "bad request line (target or version missing)");
    for (const char *c = t; c < sp; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
            return fail(q, 400, "bad request line (character %#x in the target)",
                        (unsigned)(unsigned char)*c);
    const char *v = sp + 1;
    if (e - v != 8 || memcmp(v, "HTTP/", 5) != 0 || !isdigit((unsigned char)v[5]) || v[6] != '.' ||
        !isdigit((unsigned char)v[7]))
        return fail(q, 400, "bad request line (version)");
    if (v[5] != '1')
        return fail(q, 505, "HTTP version %.8s not supported: want HTTP/1.1", v);
    q->minor = v[7] - '0' > 1 ? 1 : v[7] - '0';
    l[m] = '\0';
    *sp = '\0';
    q->method = l;
    /* the absolute form (as sent to proxies) names the same resource */
    if (!strncasecmp(t, "http://", 7) || !strncasecmp(t, "https://", 8)) {
        char *slash = strchr(strstr(t, "//") + 2, '/');
        if (slash) {
            t = slash;
        } else { /* no path: "/" (the target is longer than that) */
            t[0] = '/';
            t[1] = '\0';
        }
    } else if (t[0] != '/' && strcmp(t, "*") != 0) {
        return fail(q, 400, "bad request target: want an absolute path");
    }
    char *qm = strchr(t, '?');
    q->query = "";
    if (qm) {
        *qm = '\0';
        q->query = qm + 1;
    }
    if (pct_decode(t) != 0)
        return fail(q, 400, "bad percent-encoding in the request path");
    q->path = t;
    return 0;
}

/* One header field line, NUL-terminated in place; the framing ones are read. */
static int header_line(bt_http_request *q, char *l, size_t n)
{
    size_t k, vn;
    const char *v;
    const char *why = bt_http_header_split(l, n, &k, &v, &vn);
    if (why)
        return fail(q, 400, "%s%s%.*s", why, k ? " " : "", (int)(k > 40 ? 40 : k), l);
    if (q->nheaders == BT_HTTPD_MAX_HEADERS)
        return fail(q, 431, "more than %u header fields", BT_HTTPD_MAX_HEADERS);
    if (bt_http_name_is(l, k, "Content-Length")) {
        uint64_t len;
        if (bt_http_length_value(v, vn, &len) != 0)
            return fail(q, 400, "bad Content-Length");
        if (q->has_length && len != q->length)
            return fail(q, 400, "conflicting Content-Length headers");
        q->has_length = true;
        q->length = len;
    } else if (bt_http_name_is(l, k, "Transfer-Encoding")) {
        int te = bt_http_te_value(v, vn);
        if (te < 0 || (te == 1 && q->chunked))
            return fail(q, 501, "unsupported Transfer-Encoding (%.*s)", (int)(vn > 40 ? 40 : vn),
                        v);
        q->chunked = te == 1;
    } else if (bt_http_name_is(l, k, "Connection")) {
        q->conn_close |= bt_http_list_has(v, vn, "close");
        q->conn_keep |= bt_http_list_has(v, vn, "keep-alive");
    } else if (bt_http_name_is(l, k, "Expect")) {
        if (vn != 12 || strncasecmp(v, "100-continue", 12) != 0)
            return fail(q, 417, "unsupported Expect (%.*s)", (int)(vn > 40 ? 40 : vn), v);
        q->expect_continue = q->minor >= 1;
    }
    l[k] = '\0';
    ((char *)v)[vn] = '\0';
    q->headers[q->nheaders++] = (bt_http_header){l, v};
    return 0;
}

/* The whole head (len bytes ending with the empty line), split into its lines. */
static int parse_head(bt_http_request *q, char *b, size_t len)
{
    bool first = true;
    for (size_t i = 0; i < len;) {
        char *nl = memchr(b + i, '\n', len - i);
        size_t n = (size_t)(nl - (b + i));
        char *l = b + i;
        i += n + 1;
        if (n > 0 && l[n - 1] == '\r')
            n--;
        if (memchr(l, '\r', n) || memchr(l, '\0', n))
            return fail(q, 400, "stray CR or NUL in the request's head");
        if (n == 0)
            break; /* the end of the head */
        l[n] = '\0';
        if (first) {
            first = false;
            if (request_line(q, l, n) != 0)
                return -1;
        } else if (header_line(q, l, n) != 0) {
            return -1;
        }
    }
    q->keep_alive = !q->conn_close && (q->minor >= 1 || q->conn_keep);
    if (q->chunked && q->has_length)
        return fail(q, 400, "both Transfer-Encoding and Content-Length");
    if (q->chunked && q->minor == 0)
        return fail(q, 400, "Transfer-Encoding in an HTTP/1.0 request");
    q->state = S_HEAD_DONE;
    return 0;
}

/* Gathers the head up to its empty line. */
static int feed_head(bt_http_request *q, const char *p, size_t n, size_t *used)
{
    size_t i = 0;
    if (bt_buf_size(&q->head) == 0) /* empty lines before a request are ignored */
        while (i < n && (p[i] == '\r' || p[i] == '\n'))
            i++;
    size_t have = bt_buf_size(&q->head), take = n - i;
    if (take > BT_HTTPD_MAX_HEAD - have)
        take = BT_HTTPD_MAX_HEAD - have;
    if (take && bt_buf_append_nul(&q->head, p + i, take) != 0)
        return fail(q, 500, "out of memory");
    char *b = (char *)q->head.p;
    size_t len = bt_buf_size(&q->head);
    for (size_t j = q->scan; j < len; j++) {
        if (b[j] != '\n')
            continue;
        if (!q->line1 && j > BT_HTTPD_MAX_LINE)
            return fail(q, 414, "request line longer than %u bytes", BT_HTTPD_MAX_LINE);
        q->line1 = true;
        if ((j >= 1 && b[j - 1] == '\n') || (j >= 2 && b[j - 1] == '\r' && b[j - 2] == '\n')) {
            size_t end = j + 1;
            *used = i + take - (len - end);
            q->head.len = q->head.off + end;
            return parse_head(q, b, end) == 0 ? BT_HTTPD_HEAD : -1;
        }
    }
    q->scan = len;
    *used = i + take;
    if (!q->line1 && len > BT_HTTPD_MAX_LINE)
        return fail(q, 414, "request line longer than %u bytes", BT_HTTPD_MAX_LINE);
    if (len == BT_HTTPD_MAX_HEAD)
        return fail(q, 431, "request head larger than %u bytes", BT_HTTPD_MAX_HEAD);
    return BT_HTTPD_MORE;
}

static int give(bt_http_request *q, const char *p, size_t n)
{
    q->seen += n;
    if (q->on_body && n && q->on_body(p, n, q->on_body_arg) != 0)
        return fail(q, 500, "out of memory");
    return 0;
}

static int chunk_line(bt_http_request *q, const char *l, size_t n)
{
    switch (q->state) {
    case S_CHUNK_SIZE: {
        bool too_large;
        if (bt_http_chunk_size(l, n, &q->remaining, &too_large) != 0)
            return fail(q, 400, too_large ? "chunk size too large" : "bad chunk size line");
        q->state = q->remaining ? S_CHUNK_DATA : S_TRAILER;
        return 0;
    }
    case S_CHUNK_END:
        if (n != 0)
            return fail(q, 400, "chunk not followed by CRLF");
        q->state = S_CHUNK_SIZE;
        return 0;
    default: { /* S_TRAILER: fields are checked, not kept */
        size_t k, vn;
        const char *v;
        if (n == 0)
            q->state = S_DONE;
        else if (bt_http_header_split(l, n, &k, &v, &vn))
            return fail(q, 400, "bad trailer field");
        return 0;
    }
    }
}

/* Takes bytes of a line of the chunked coding up to LF; runs it once complete. */
static int take_line(bt_http_request *q, const char **p, size_t *n)
{
    const char *nl = memchr(*p, '\n', *n);
    size_t take = nl ? (size_t)(nl - *p) + 1 : *n;
    if (take > BT_HTTPD_MAX_CHUNK_LINE - q->line_len)
        return fail(q, 400, "chunk line longer than %u bytes", BT_HTTPD_MAX_CHUNK_LINE);
    if (q->state == S_TRAILER && take > BT_HTTPD_MAX_HEAD - q->trailer_len)
        return fail(q, 431, "trailer larger than %u bytes", BT_HTTPD_MAX_HEAD);
    if (q->state == S_TRAILER)
        q->trailer_len += take;
    memcpy(q->line + q->line_len, *p, take);
    q->line_len += take;
    *p += take;
    *n -= take;
    if (!nl)
        return 0;
    size_t len = q->line_len - 1;
    if (len > 0 && q->line[len - 1] == '\r')
        len--;
    if (memchr(q->line, '\r', len) || memchr(q->line, '\0', len))
        return fail(q, 400, "stray CR or NUL in a chunk line");
    q->line_len = 0;
    return chunk_line(q, q->line, len);
}

int bt_http_request_feed(bt_http_request *q, const char *p, size_t n, size_t *used)
{
    *used = 0;
    if (q->state == S_ERROR)
        return -1;
    if (q->state == S_HEAD)
        return feed_head(q, p, n, used);
    if (q->state == S_HEAD_DONE) {
        q->state = q->chunked ? S_CHUNK_SIZE : q->length ? S_BODY : S_DONE;
        q->remaining = q->length;
    }
    const char *start = p;
    while (q->state != S_DONE && n > 0) {
        if (q->state == S_BODY || q->state == S_CHUNK_DATA) {
            size_t take = n < q->remaining ? n : (size_t)q->remaining;
            if (give(q, p, take) != 0)
                return -1;
            p += take;
            n -= take;
            q->remaining -= take;
            if (q->remaining == 0)
                q->state = q->state == S_BODY ? S_DONE : S_CHUNK_END;
        } else if (take_line(q, &p, &n) != 0) {
            return -1;
        }
    }
    *used = (size_t)(p - start);
    return q->state == S_DONE ? BT_HTTPD_DONE : BT_HTTPD_MORE;
}
