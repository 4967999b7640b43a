/* A strict, bounded parser of one HTTP/1.1 reply, fed bytes as they arrive (the master API
 * client's transport; the fuzz target drives it directly). It keeps the status and the body
 * (Content-Length, chunked, or up to the end of the connection) and nothing else. */
#ifndef BT_HTTP_REPLY_H
#define BT_HTTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "baetyl/buf.h"

/* Longest line (status, header, chunk size) and the whole head of a reply. */
#define BT_HTTP_MAX_LINE 8192u
#define BT_HTTP_MAX_HEAD 65536u

typedef struct {
    int state;
    int status;   /* 100..599 once the status line is read */
    bool no_body; /* 204, 304 */
    bool chunked;
    bool has_length;
    uint64_t remaining; /* bytes left of the body or of the current chunk */
    size_t max_body;
    size_t head_len; /* bytes of head read so far (bounded by BT_HTTP_MAX_HEAD) */
    size_t line_len;
    char line[BT_HTTP_MAX_LINE];
    bt_buf body;  /* NUL-terminated once anything is in it */
    bool too_big; /* the body went past max_body */
    /* When set, body bytes go there instead of into body (max_body still bounds them); a
     * non-zero return stops the reply: feed returns -1 with stopped set. */
    int (*on_body)(const char *p, size_t n, void *arg);
    void *on_body_arg;
    bool stopped;
    size_t streamed; /* body bytes given to on_body */
    char *location;  /* a 3xx reply's Location (malloc'd), else NULL */
    char err[160];   /* why the reply was refused */
} bt_http_reply;

/* Starts a parser that accepts a body of at most max_body bytes. */
void bt_http_reply_init(bt_http_reply *r, size_t max_body);
/* Frees the body (unless taken) and resets nothing else. */
void bt_http_reply_free(bt_http_reply *r);
/* Parses n more bytes. Returns 1 once the reply is complete (bytes after it are ignored), 0
 * when it wants more, -1 with r->err on a malformed or oversized reply. */
int bt_http_reply_feed(bt_http_reply *r, const char *p, size_t n);
/* The peer closed the connection: 1 when that ends the reply (a body delimited by the end
 * of the connection), -1 with r->err when the reply is cut short. */
int bt_http_reply_eof(bt_http_reply *r);

/* The transport under it (http_io.c), shared by the master API client and bt_http_request
 * (baetyl/http.h). Deadlines are bt_now_ms() values. */
/* A request method: uppercase letters only (nothing a request line could be forged with). */
bool bt_http_method_ok(const char *m);
/* Waits for fd to be ready for events until deadline or until cancel_fd (>= 0) is readable;
 * 0, or -1 with errno (ETIMEDOUT, ECANCELED). The server's connections wait with it too. */
int bt_http_wait_fd(int fd, short events, int64_t deadline, int cancel_fd);
/* A non-blocking connect bounded by the deadline; the socket or -1 with errno. */
int bt_http_connect(const struct sockaddr *sa, socklen_t len, int64_t deadline);

struct ssl_st;
/* One connection: the socket, TLS over it or not, and the bounds of every wait on it. */
typedef struct {
    int fd;
    struct ssl_st *ssl; /* NULL: plain */
    int64_t deadline;   /* of the whole request (INT64_MAX: none) */
    long idle_ms;       /* no progress for this long = ETIMEDOUT; 0 = no bound */
    int cancel_fd;      /* readable = ECANCELED; -1 = none */
} bt_http_io;

/* The TLS client handshake on io->ssl: 0, or -1 with why (the certificate's problem,
 * "timed out", ...) and errno (ETIMEDOUT, ECANCELED, EPROTO, ...). */
int bt_http_tls_handshake(const bt_http_io *io, char *why, size_t len);
/* Sends all n bytes; 0, or -1 with errno. */
int bt_http_send_all(const bt_http_io *io, const char *p, size_t n);
/* Reads the reply into r until it is complete (or its on_body stopped it): 0, or -1 with err
 * and errno ETIMEDOUT, ECANCELED, EPROTO (refused reply or TLS failure) or the socket's
 * error. what names the request in err. */
int bt_http_read_reply(const bt_http_io *io, bt_http_reply *r, const char *what, char *err,
                       size_t errlen);

#endif
