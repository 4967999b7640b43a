/* One HTTP/1.1 reply, parsed as it arrives (RFC 9112): status line, header lines, then a
 * body framed by Transfer-Encoding: chunked, Content-Length or the end of the connection.
 * Everything is bounded (line, head, body) and anything outside the grammar is refused with
 * a message naming what was wrong. */
#include "http_reply.h"
#include "http_parse.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_STATUS,
    S_HEADER,
    S_BODY,
    S_BODY_EOF,
    S_CHUNK_SIZE,
    S_CHUNK_DATA,
    S_CHUNK_END,
    S_TRAILER,
    S_DONE,
    S_ERROR
};

void bt_http_reply_init(bt_http_reply *r, size_t max_body)
{
    memset(r, 0, sizeof *r);
    r->state = S_STATUS;
    r->max_body = max_body;
}

void bt_http_reply_free(bt_http_reply *r)
{
    bt_buf_free(&r->body);
    free(r->location);
    r->location = NULL;
}

__attribute__((format(printf, 2, 3))) static int fail(bt_http_reply *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    r->state = S_ERROR;
    return -1;
}

static int add_body(bt_http_reply *r, const char *p, size_t n)
{
    if (r->on_body) {
        if (n > r->max_body - r->streamed) {
            r->too_big = true;
            return fail(r, "reply larger than %zu bytes", r->max_body);
        }
        r->streamed += n;
        if (n && r->on_body(p, n, r->on_body_arg) != 0) {
            r->stopped = true;
            return fail(r, "stopped by the reader");
        }
        return 0;
    }
    if (n > r->max_body - bt_buf_size(&r->body)) {
        r->too_big = true;
        return fail(r, "reply larger than %zu bytes", r->max_body);
    }
    if (bt_buf_append_nul(&r->body, p, n) < 0)
        return fail(r, "out of memory");
    return 0;
}

/* "HTTP/1.x NNN reason" */
static int status_line(bt_http_reply *r, const char *l, size_t n)
{
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)l[7]) || l[8] != ' ' ||
        !isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
        !isdigit((unsigned char)l[11]) || (n > 12 && l[12] != ' '))
        return fail(r, "not an HTTP/1.1 reply (bad status line)");
    r->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    if (r->status < 100 || r->status > 599)
        return fail(r, "bad status code %d", r->status);
    if (r->status == 101)
        return fail(r, "unexpected 101 (switching protocols)");
    r->no_body = r->status == 204 || r->status == 304 || r->status < 200;
    r->state = S_HEADER;
    return 0;
}

/* Content-Length: digits only, the same value if repeated, within max_body. */
static int content_length(bt_http_reply *r, const char *v, size_t n)
{
    uint64_t len;
    if (bt_http_length_value(v, n, &len) != 0)
        return fail(r, "bad Content-Length");
    if (r->has_length && r->remaining != len)
        return fail(r, "conflicting Content-Length headers");
    if (len > r->max_body) {
        r->too_big = true;
        return fail(r, "reply larger than %zu bytes", r->max_body);
    }
    r->has_length = true;
    r->remaining = len;
    return 0;
}

/* Only "chunked" (possibly after identity) is understood: another coding would hand the
 * caller bytes it cannot read. */
static int transfer_encoding(bt_http_reply *r, const char *v, size_t n)
{
    int te = bt_http_te_value(v, n);
    if (te < 0)
        return fail(r, "unsupported Transfer-Encoding (%.*s)", (int)(n > 40 ? 40 : n), v);
    r->chunked = te == 1;
    return 0;
}

static int begin_body(bt_http_reply *r)
{
    if (r->status < 200) { /* an interim reply (100 Continue): the real one follows */
        size_t max = r->max_body, head = r->head_len;
        int (*on_body)(const char *, size_t, void *) = r->on_body;
        void *arg = r->on_body_arg;
        bt_http_reply_free(r);
        bt_http_reply_init(r, max);
        r->head_len = head;
        r->on_body = on_body;
        r->on_body_arg = arg;
        return 0;
    }
    if (r->no_body) {
        r->state = S_DONE;
    } else if (r->chunked) {
        r->state = S_CHUNK_SIZE;
    } else if (r->has_length) {
        r->state = r->remaining ? S_BODY : S_DONE;
    } else {
        r->state = S_BODY_EOF;
    }
    /* an empty body still reads as "" */
    return add_body(r, "", 0);
}

static int header_line(bt_http_reply *r, const char *l, size_t n)
{
    if (n == 0)
        return begin_body(r);
    size_t k, vn;
    const char *v;
    const char *why = bt_http_header_split(l, n, &k, &v, &vn);
    if (why && k)
        return fail(r, "%s %.*s", why, (int)(k > 40 ? 40 : k), l);
    if (why)
        return fail(r, "%s", why);
    if (bt_http_name_is(l, k, "Content-Length"))
        return content_length(r, v, vn);
    if (bt_http_name_is(l, k, "Transfer-Encoding"))
        return transfer_encoding(r, v, vn);
    if (bt_http_name_is(l, k, "Location") && r->status / 100 == 3) {
        /* a redirect's target: one, not empty */
        if (r->location || vn == 0)
            return fail(r, r->location ? "more than one Location header" : "empty Location");
        if (!(r->location = strndup(v, vn)))
            return fail(r, "out of memory");
    }
    return 0;
}

/* "<hex>[;extensions]" */
static int chunk_size_line(bt_http_reply *r, const char *l, size_t n)
{
    uint64_t size;
    bool too_large;
    if (bt_http_chunk_size(l, n, &size, &too_large) != 0)
        return fail(r, too_large ? "chunk size too large" : "bad chunk size line");
    if (size > r->max_body - (r->on_body ? r->streamed : bt_buf_size(&r->body))) {
        r->too_big = true;
        return fail(r, "reply larger than %zu bytes", r->max_body);
    }
    r->remaining = size;
    r->state = size ? S_CHUNK_DATA : S_TRAILER;
    return 0;
}

static int line_done(bt_http_reply *r, const char *l, size_t n)
{
    switch (r->state) {
    case S_STATUS: return status_line(r, l, n);
    case S_HEADER: return header_line(r, l, n);
    case S_CHUNK_SIZE: return chunk_size_line(r, l, n);
    case S_CHUNK_END:
        if (n != 0)
            return fail(r, "chunk not followed by CRLF");
        r->state = S_CHUNK_SIZE;
        return 0;
    case S_TRAILER:
        if (n == 0)
            r->state = S_DONE;
        return 0;
    }
    return fail(r, "internal parser state");
}

static bool in_head(const bt_http_reply *r)
{
    return r->state == S_STATUS || r->state == S_HEADER;
}

/* Takes bytes of a line up to LF; 1 when a line is complete (in r->line, without CRLF). */
static int take_line(bt_http_reply *r, const char **p, size_t *n)
{
    const char *nl = memchr(*p, '\n', *n);
    size_t take = nl ? (size_t)(nl - *p) + 1 : *n;
    if (take > BT_HTTP_MAX_LINE - r->line_len)
        return fail(r, "line longer than %u bytes", BT_HTTP_MAX_LINE);
    if (in_head(r) || r->state == S_TRAILER) {
        if (take > BT_HTTP_MAX_HEAD - r->head_len)
            return fail(r, "head larger than %u bytes", BT_HTTP_MAX_HEAD);
        r->head_len += take;
    }
    memcpy(r->line + r->line_len, *p, take);
    r->line_len += take;
    *p += take;
    *n -= take;
    if (!nl)
        return 0;
    size_t len = r->line_len - 1; /* without LF */
    if (len > 0 && r->line[len - 1] == '\r')
        len--;
    if (memchr(r->line, '\r', len) || memchr(r->line, '\0', len))
        return fail(r, "stray CR or NUL in a line");
    r->line_len = 0;
    return line_done(r, r->line, len) < 0 ? -1 : 1;
}

int bt_http_reply_feed(bt_http_reply *r, const char *p, size_t n)
{
    while (r->state != S_DONE && r->state != S_ERROR && n > 0) {
        if (r->state == S_BODY || r->state == S_CHUNK_DATA || r->state == S_BODY_EOF) {
            size_t take = n;
            if (r->state != S_BODY_EOF && take > r->remaining)
                take = (size_t)r->remaining;
            if (add_body(r, p, take) < 0)
                return -1;
            p += take;
            n -= take;
            if (r->state == S_BODY_EOF)
                continue;
            r->remaining -= take;
            if (r->remaining == 0)
                r->state = r->state == S_BODY ? S_DONE : S_CHUNK_END;
            continue;
        }
        if (take_line(r, &p, &n) < 0)
            return -1;
    }
    return r->state == S_DONE ? 1 : r->state == S_ERROR ? -1 : 0;
}

int bt_http_reply_eof(bt_http_reply *r)
{
    switch (r->state) {
    case S_DONE:
    case S_BODY_EOF: r->state = S_DONE; return 1;
    case S_ERROR: return -1;
    case S_STATUS:
        if (r->line_len == 0 && r->head_len == 0)
            return fail(r, "connection closed without a reply");
        return fail(r, "connection closed in the reply's head");
    case S_HEADER: return fail(r, "connection closed in the reply's head");
    default: return fail(r, "connection closed before the end of the body");
    }
}
