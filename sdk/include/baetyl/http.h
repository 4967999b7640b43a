/* One HTTP/1.1 request over a unix socket (Connection: close), on the SDK's strict, bounded
 * reply parser: for local daemons that speak HTTP on a socket (the Docker Engine API), so
 * their clients need no libcurl. */
#ifndef BAETYL_HTTP_H
#define BAETYL_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* Outcomes of bt_http_request other than an HTTP status. */
#define BT_HTTP_ERR (-1)       /* transport failure or refused reply; err says why */
#define BT_HTTP_TIMEOUT (-2)   /* timeout_ms passed */
#define BT_HTTP_CANCELLED (-3) /* cancel_fd became readable */

#define BT_HTTP_DEFAULT_MAX_BODY (1u << 20)

typedef struct {
    const char *socket;       /* unix socket path */
    const char *method;       /* GET, POST, DELETE, ... */
    const char *target;       /* "/v1.38/containers/json?all=1": encoded, no spaces */
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
} bt_http_req;

/* Performs one request. Returns the HTTP status with the kept body in *body (malloc'd,
 * NUL-terminated; "" when streamed) and its length in *len, or BT_HTTP_ERR /
 * BT_HTTP_TIMEOUT / BT_HTTP_CANCELLED with err. body and len may be NULL. */
int bt_http_request(const bt_http_req *q, char **body, size_t *len, char *err, size_t errlen);

#endif
