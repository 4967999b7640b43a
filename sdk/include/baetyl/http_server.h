/* A small HTTP/1.1 server (RFC 9112) for the master's API and metrics, and any module that
 * serves HTTP on a socket it made (unix or tcp; no TLS). Every byte a client sends is
 * bounded: the head (request line, header count and size), the body (kept up to max_body,
 * read and dropped up to max_drop), and time (the whole head, and a body to be dropped, must
 * come within the idle timeout; then every read and write must progress within it).
 * Keep-alive, pipelining, HTTP/1.0 clients, Content-Length and chunked bodies, Expect:
 * 100-continue and HEAD.
 *
 * One listener thread accepts; each connection gets a thread of its own with a small stack,
 * up to max_connections. A poll loop with workers would hold idle connections more cheaply,
 * but handlers here block for long (an update, a container started through the Docker API,
 * a log read), and a thread per connection keeps them plain blocking code; an idle
 * connection costs its stack's touched pages, and the limits bound how many there are. */
#ifndef BAETYL_HTTP_SERVER_H
#define BAETYL_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name, *value;
} bt_http_header;

/* One request, as the handlers see it; valid during the call only. */
typedef struct {
    const char *method; /* a token, as sent ("GET") */
    const char *path;   /* the target's path, percent-decoded ("/v1/system/inspect") */
    const char *query;  /* what follows '?', as sent; "" when none */
    int minor;          /* HTTP/1.minor: 0 or 1 */
    const bt_http_header *headers;
    size_t nheaders;
    void *conn;          /* the connection's state, from on_accept */
    int tag;             /* on_head's note for on_request (0 at first) */
    bool keep_body;      /* on_head: keep the body (true at first) or read and drop it */
    int idle_timeout_ms; /* this connection's idle timeout from now on; handlers may set it */
    const char *body;    /* the kept body, NUL-terminated ("" when none or dropped) */
    size_t body_len;
    uint64_t body_seen; /* body bytes received, kept or not */
    bool body_too_big;  /* past max_body: not kept */
    bool body_cut;      /* past max_drop: not read to its end (the connection then closes) */
} bt_http_req;

/* The answer on_request fills in. Content-Length (and Date, Connection) are added. */
typedef struct {
    int status;          /* 0 = 500 */
    const char *type;    /* Content-Type, or NULL */
    const char *headers; /* more header lines, each ending in "\r\n", or NULL */
    const char *body;    /* len bytes (not sent for HEAD), or NULL */
    size_t len;
    bool free_body; /* free(body) once sent */
} bt_http_resp;

typedef struct {
    const char *name;         /* in log lines ("api", "metrics") */
    unsigned max_connections; /* open at once; more are closed at once (0: 64) */
    int idle_timeout_ms;      /* 0: 10 s */
    size_t max_body;          /* body bytes kept (0: 1 MiB) */
    size_t max_drop;          /* body bytes read at most (0: 4 * max_body) */
    size_t stack_size;        /* of a connection's thread (0: 256 KiB) */
    /* A new connection on fd (from the listener thread): false closes it at once; *conn is
     * its state (NULL at first), seen by every request and by on_close. May be NULL. */
    bool (*on_accept)(int fd, void **conn, void *arg);
    void (*on_close)(void *conn, void *arg); /* the connection closed (accepted ones only) */
    /* The head is read, the body not yet: may set keep_body, tag, idle_timeout_ms. May be
     * NULL. */
    void (*on_head)(bt_http_req *rq, void *arg);
    /* The request is complete: fill resp. Required. */
    void (*on_request)(bt_http_req *rq, bt_http_resp *resp, void *arg);
    void *arg;
} bt_http_server_opts;

typedef struct bt_http_server bt_http_server;

/* Serves the listening socket fd (owned from now on, closed by stop, or here on failure).
 * 0, or -1 with err. */
int bt_http_server_start(int fd, const bt_http_server_opts *o, bt_http_server **out, char *err,
                         size_t errlen);
/* Stops accepting, closes every connection (a handler running finishes first) and frees s
 * (NULL is fine). */
void bt_http_server_stop(bt_http_server *s);

/* The value of header name (any case), the first if repeated, or NULL. */
const char *bt_http_req_header(const bt_http_req *rq, const char *name);
/* The query parameter name, percent-decoded into out: 1, 0 when absent (or without '='),
 * -1 when its encoding is bad or it does not fit. */
int bt_http_req_query(const bt_http_req *rq, const char *name, char *out, size_t outlen);
/* The reason phrase of a status ("Not Found"). */
const char *bt_http_status_text(int status);

#endif
