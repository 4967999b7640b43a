/* Client of the master API (SPEC §7): HTTP/1.1 over a unix socket or tcp (its own small
 * client, no libcurl), every request signed with `x-openedge-username: <service>` and
 * `x-openedge-password: <token>`.
 *
 * A client holds only immutable settings; each call opens its own connection, so one client
 * may be shared by any number of threads. Every call returns 0 (or a port) on success, or -1
 * with err holding either "<status>: <body text>" for a non-2xx answer (e.g.
 * "401: account unauthorized") or a message naming the transport error ("cannot connect to
 * the master API (unix socket …): …", "… timed out", "… bad status line"). */
#ifndef BAETYL_API_H
#define BAETYL_API_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define BT_API_DEFAULT_TIMEOUT_MS 30000L

/* The account of every request (SPEC §7), read by the master and sent by the client. */
#define BT_API_HEADER_USERNAME "x-openedge-username"
#define BT_API_HEADER_PASSWORD "x-openedge-password"

/* A master API address, parsed by the one rule the master (server.address) and the client
 * (BAETYL_MASTER_API_ADDRESS) share. */
typedef struct {
    bool is_unix;
    char *path; /* unix: the socket path (relative only when parsed with pwd NULL) */
    char *host; /* tcp: a name of [A-Za-z0-9._-] or an IPv6 literal without brackets */
    char *port; /* tcp: 1..65535 (0 is refused: a port picked at bind time could not be
                  * given to the services) */
} bt_api_addr;

/* Parses "unix:///abs.sock", "unix://rel.sock" (joined to pwd unless pwd is NULL) or
 * "tcp://host:port" / "tcp://[v6]:port". The path must fit sun_path. Returns 0, or -1 with
 * err naming what is wrong ("bad port", "bad character in host", "too long", ...). */
int bt_api_addr_parse(const char *address, const char *pwd, bt_api_addr *a, char *err,
                      size_t errlen);
/* Frees a parsed address (and zeroes it). */
void bt_api_addr_free(bt_api_addr *a);

typedef struct bt_api_client bt_api_client;

typedef struct {
    /* "unix:///abs/path.sock", "unix://relative/path.sock" (relative to the cwd at
     * creation) or "tcp://host:port" ("tcp://[::1]:port" for IPv6). */
    const char *address;
    const char *username; /* service name; NULL = "" */
    const char *password; /* service token; NULL = "" */
    long timeout_ms;      /* whole request, connect included; <= 0 = 30 s */
} bt_api_options;

/* Creates a client from explicit settings; NULL with err on a bad address. */
bt_api_client *bt_api_new(const bt_api_options *o, char *err, size_t errlen);
/* Creates a client from BAETYL_MASTER_API_ADDRESS, BAETYL_SERVICE_NAME and
 * BAETYL_SERVICE_TOKEN (each falling back to its OPENEDGE_* twin); timeout_ms <= 0 = 30 s.
 * The address is required; name and token may be absent (sent empty). */
bt_api_client *bt_api_new_from_env(long timeout_ms, char *err, size_t errlen);
/* Frees a client (NULL is fine). */
void bt_api_free(bt_api_client *c);

/* GET /v1/system/inspect. *json (if json is not NULL) gets the parsed object and *raw (if
 * raw is not NULL) the body text; the caller frees them (json_decref, free). */
int bt_api_inspect(bt_api_client *c, json_t **json, char **raw, char *err, size_t errlen);
/* PUT /v1/system/update {"type","path","trace"}; type NULL = "APP", trace NULL = omitted. */
int bt_api_update_system(bt_api_client *c, const char *type, const char *path, const char *trace,
                         char *err, size_t errlen);
/* GET /v1/ports/available; returns the port (1..65535) or -1. */
int bt_api_get_available_port(bt_api_client *c, char *err, size_t errlen);
/* PUT /v1/services/{service}/instances/{instance}/start with env, a JSON object of string
 * values (NULL = {}): extra environment of that instance. */
int bt_api_start_instance(bt_api_client *c, const char *service, const char *instance,
                          const json_t *env, char *err, size_t errlen);
/* PUT /v1/services/{service}/instances/{instance}/stop. */
int bt_api_stop_instance(bt_api_client *c, const char *service, const char *instance, char *err,
                         size_t errlen);
/* PUT /v1/services/{service}/instances/{instance}/report with stats, a JSON object. */
int bt_api_report_instance(bt_api_client *c, const char *service, const char *instance,
                           const json_t *stats, char *err, size_t errlen);

/* Any request: method "GET"/"PUT"/..., path starting with '/' (already encoded), body of
 * body_len bytes sent as application/json (NULL = no body). On 2xx returns 0 and, when
 * resp is not NULL, *resp = the body (NUL-terminated, free() it; *resp_len its length
 * when resp_len is not NULL). Replies larger than 64 MiB are refused. */
int bt_api_request(bt_api_client *c, const char *method, const char *path, const char *body,
                   size_t body_len, char **resp, size_t *resp_len, char *err, size_t errlen);

/* Percent-encodes s for one URL path segment (everything but A-Z a-z 0-9 - . _ ~).
 * Returns a malloc'd string, or NULL when out of memory. */
char *bt_api_escape(const char *s);

#endif
