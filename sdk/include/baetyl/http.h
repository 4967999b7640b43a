/* One HTTP/1.1 request (Connection: close) over a unix socket or HTTPS, on the SDK's strict,
 * bounded reply parser: for local daemons that speak HTTP on a socket (the Docker Engine API)
 * and for the agent's cloud (TLS through baetyl/ossl.h), so neither needs libcurl. */
#ifndef BAETYL_HTTP_H
#define BAETYL_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* Outcomes of bt_http_request other than an HTTP status. */
#define BT_HTTP_ERR (-1)       /* transport failure or refused reply; err says why */
#define BT_HTTP_TIMEOUT (-2)   /* timeout_ms passed */
#define BT_HTTP_CANCELLED (-3) /* cancel_fd became readable */
#define BT_HTTP_TOO_LARGE (-4) /* a streamed body declared or passed max_stream */

#define BT_HTTP_DEFAULT_MAX_BODY (1u << 20)

#define BT_HTTP_MAX_REDIRECTS 20

typedef struct {
    const char *socket;         /* unix socket path, or NULL with url */
    const char *url;            /* https://host[:port][/target] (target is then NULL) */
    const char *method;         /* GET, POST, DELETE, ... */
    const char *target;         /* "/v1.38/containers/json?all=1": encoded, no spaces */
    const char *const *headers; /* more header lines ("Name: value"), NULL-terminated, or NULL */
    /* HTTPS: the server is always verified, against ca (NULL or "": the system store); a
     * client certificate and its key when cert is set. */
    const char *ca, *cert, *key;
    long connect_timeout_ms;  /* TCP connect + TLS handshake; 0 = only timeout_ms */
    long idle_timeout_ms;     /* no byte received for this long = BT_HTTP_TIMEOUT; 0 = none */
    int max_redirects;        /* 301/302/303/307/308 to https:// followed (GET, HEAD only) */
    const char *content_type; /* with body; NULL: application/json */
    const char *body;         /* or NULL (no body; POST and PUT then send Content-Length: 0) */
    size_t body_len;
    long timeout_ms; /* whole request; 0 = none */
    int cancel_fd;   /* readable = give up with BT_HTTP_CANCELLED; -1 = none */
    size_t max_body; /* answer bytes kept (0: 1 MiB); more is an error (not streamed ones) */
    /* When set, a 2xx answer's body goes here piece by piece instead of being kept (other
     * answers are kept, for their message); a non-zero return stops the transfer and the
     * call returns the status. */
    int (*on_data)(const char *buf, size_t len, void *arg);
    void *arg;
    size_t max_stream; /* with on_data: the body's bound (0: none), checked on its length too */
} bt_http_req;

/* Performs one request. Returns the HTTP status with the kept body in *body (malloc'd,
 * NUL-terminated; "" when streamed) and its length in *len, or BT_HTTP_ERR /
 * BT_HTTP_TIMEOUT / BT_HTTP_CANCELLED with err. body and len may be NULL. */
int bt_http_request(const bt_http_req *q, char **body, size_t *len, char *err, size_t errlen);

/* An https:// URL taken apart: host (an IPv6 address without its brackets), port (443 when
 * absent) and target ("/" when absent). */
typedef struct {
    char host[256];
    char port[6];
    char *target; /* malloc'd */
} bt_http_url;

/* Parses url strictly (https only; a DNS name, IPv4 or [IPv6] host; port 1-65535; no user
 * info, no fragment, no space or control character). 0, or -1 with err naming the part. */
int bt_http_url_parse(const char *url, bt_http_url *u, char *err, size_t errlen);
void bt_http_url_free(bt_http_url *u);

#endif
