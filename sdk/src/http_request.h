/* A strict, bounded parser of HTTP/1.1 requests (RFC 9112), fed bytes as they arrive: the
 * head (request line and header fields) is kept whole, the body (Content-Length or chunked)
 * is handed to on_body piece by piece. The server's connections (http_server_conn.c) and
 * the fuzz target drive it. */
#ifndef BT_HTTP_REQUEST_H
#define BT_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "baetyl/buf.h"
#include "baetyl/http_server.h"

/* Bounds of a request's head: the request line, the whole head, the header fields; and of
 * a chunk-size or trailer line. Past them: 414, 431, 431, 400. */
#define BT_HTTPD_MAX_LINE 8192u
#define BT_HTTPD_MAX_HEAD 16384u
#define BT_HTTPD_MAX_HEADERS 64u
#define BT_HTTPD_MAX_CHUNK_LINE 1024u

/* What bt_http_request_feed says. */
#define BT_HTTPD_MORE 0 /* every byte was taken: more are wanted */
#define BT_HTTPD_HEAD 1 /* the head is complete: look at it, then feed the body */
#define BT_HTTPD_DONE 2 /* the request is complete: what follows is the next request */

typedef struct {
    int state;
    bt_buf head;        /* the head's bytes (then its lines, split in place) */
    size_t scan;        /* where the search for the head's end resumes */
    bool line1;         /* the request line's end was seen */
    int status;         /* a refused request's answer: 400, 414, 431, 501, 505 */
    char err[160];      /* and why, for its body */
    const char *method; /* once the head is complete: pointers into head */
    const char *path;   /* percent-decoded, up to '?' */
    const char *query;  /* after '?', as sent; "" when none */
    int minor;          /* HTTP/1.minor */
    bt_http_header headers[BT_HTTPD_MAX_HEADERS];
    size_t nheaders;
    bool conn_close, conn_keep; /* Connection: close, keep-alive */
    bool keep_alive;            /* HTTP/1.1 without "Connection: close", or 1.0 with keep-alive */
    bool expect_continue;       /* Expect: 100-continue */
    bool chunked;
    bool has_length;
    uint64_t length;    /* Content-Length */
    uint64_t remaining; /* of the body or of the current chunk */
    uint64_t seen;      /* body bytes so far */
    size_t line_len;    /* of a chunk-size or trailer line being read */
    size_t trailer_len; /* bytes of trailer fields (bounded like the head) */
    char line[BT_HTTPD_MAX_CHUNK_LINE];
    /* Body bytes, as they come; a non-zero return refuses the request (500). NULL: dropped. */
    int (*on_body)(const char *p, size_t n, void *arg);
    void *on_body_arg;
} bt_http_request;

void bt_http_request_init(bt_http_request *q);
/* Frees the head; q may be init'ed again for the next request. */
void bt_http_request_free(bt_http_request *q);
/* Parses up to n bytes, *used of which it took: BT_HTTPD_MORE, BT_HTTPD_HEAD (once, when the
 * head is complete; call again, even with no bytes, for the body), BT_HTTPD_DONE, or -1
 * with q->status and q->err for a request that cannot be served. */
int bt_http_request_feed(bt_http_request *q, const char *p, size_t n, size_t *used);
/* True once some byte of a request was taken (empty lines before it do not count). */
bool bt_http_request_started(const bt_http_request *q);

#endif
