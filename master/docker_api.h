/* A small client of the Docker Engine API: HTTP/1.1 over the engine's unix socket on the
 * SDK's client (baetyl/http.h), with only the calls the docker engine (SPEC §5) needs. Every
 * call makes its own connection, so one client serves all threads. Answers are hostile input: sizes are
 * capped and every JSON field is type-checked. */
#ifndef BAETYL_MASTER_DOCKER_API_H
#define BAETYL_MASTER_DOCKER_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define DOCKER_DEFAULT_SOCKET "/var/run/docker.sock"

/* Outcomes of docker_call other than an HTTP status. */
#define DOCKER_ERR (-1)       /* transport failure; err says why */
#define DOCKER_TIMEOUT (-2)   /* the request's timeout passed */
#define DOCKER_CANCELLED (-3) /* cancel_fd became readable */

typedef struct docker_client docker_client;

typedef struct {
    const char *method; /* GET, POST, DELETE */
    const char *path;   /* after the version prefix, query included: "/containers/json?all=1" */
    bool unversioned;   /* no "/v<version>" prefix (for /version) */
    const json_t *body; /* sent as JSON, or NULL */
    long timeout_ms;    /* whole request; 0 = none */
    int cancel_fd;      /* readable = give up with DOCKER_CANCELLED; -1 = none */
    size_t max_body;    /* answer bytes kept (default 1 MiB); more is an error */
    /* When set, the answer goes here piece by piece instead of being kept; a non-zero
     * return stops the transfer (the call then returns the status it had). */
    int (*on_data)(const char *buf, size_t len, void *arg);
    void *arg;
} docker_req;

/* A client of the engine at socket (NULL: $DOCKER_HOST when it is unix://…, else
 * /var/run/docker.sock) speaking API version `version` ("1.38"). Returns 0 or -1 with err. */
int docker_client_new(const char *socket, const char *version, docker_client **out, char *err,
                      size_t errlen);
/* Frees a client (NULL is fine). */
void docker_client_free(docker_client *c);
/* The socket path the client talks to. */
const char *docker_client_socket(const docker_client *c);
/* Whether the engine (after docker_check_version) speaks API version major.minor. */
bool docker_engine_speaks(const docker_client *c, unsigned major, unsigned minor);

/* Performs one request. Returns the HTTP status (body in *body, NUL-terminated, malloc'd;
 * NULL with on_data), or DOCKER_ERR / DOCKER_TIMEOUT / DOCKER_CANCELLED with err. body and
 * len may be NULL. */
int docker_call(docker_client *c, const docker_req *r, char **body, size_t *len, char *err,
                size_t errlen);
/* Writes "<what>: <the engine's message>" for a failed answer into err; returns -1. */
int docker_answer_error(int status, const char *body, const char *what, char *err, size_t errlen);

/* Checks that the engine answers and supports the client's API version; err names both
 * versions otherwise. Returns 0 or -1. */
int docker_check_version(docker_client *c, char *err, size_t errlen);

/* 1 when the image is present locally, 0 when not, -1 with err. */
int docker_image_present(docker_client *c, const char *image, char *err, size_t errlen);
/* Pulls an image (the tag defaults to latest). Returns 0 or -1 with the engine's error. */
int docker_image_pull(docker_client *c, const char *image, char *err, size_t errlen);
/* Splits an image reference into what the pull API takes: repo and tag ("" for a digest
 * reference, "latest" when none). Returns 0, or -1 when the reference is empty or too long. */
int docker_image_split(const char *image, char *repo, size_t repolen, char *tag, size_t taglen);

/* Makes sure a bridge network of that name exists, creating it with labels baetyl=baetyl
 * and baetyl-master=<master_id> (the master that made it; masters share it, none removes
 * it). Returns 1 when created, 0 when it existed, -1 with err. */
int docker_network_ensure(docker_client *c, const char *name, const char *master_id, char *err,
                          size_t errlen);

/* Creates a container of that name from a create body. Returns 0 with its id, 1 when the
 * name is taken (a conflict), -1 with err. */
int docker_container_create(docker_client *c, const char *name, const json_t *config, char *id,
                            size_t idlen, char *err, size_t errlen);
/* Starts a created container. Returns 0 or -1 with err. */
int docker_container_start(docker_client *c, const char *id, char *err, size_t errlen);
/* Stops a container: SIGTERM (its stop signal), then SIGKILL after timeout_s. Blocks until it
 * has stopped. A container already stopped or gone is not an error. Returns 0 or -1. */
int docker_container_stop(docker_client *c, const char *id, int timeout_s, char *err,
                          size_t errlen);
/* Sends SIGKILL. A container not running or gone is not an error. Returns 0 or -1. */
int docker_container_kill(docker_client *c, const char *id, char *err, size_t errlen);
/* Removes a container (force: even a running one). A missing one is not an error. */
int docker_container_remove(docker_client *c, const char *id, bool force, char *err, size_t errlen);
/* Waits up to timeout_ms (-1 = forever) for the container to stop, returning early when
 * cancel_fd (>= 0) is readable. Returns 1 when it is not running (*code: its exit code, -1
 * when the container is gone), 0 on timeout or cancel, -1 with err. */
int docker_container_wait(docker_client *c, const char *id, int timeout_ms, int cancel_fd,
                          int *code, char *err, size_t errlen);
/* The container's JSON (GET /containers/{id}/json) in *out. Returns 0, 1 when there is no
 * such container, -1 with err. */
int docker_container_inspect(docker_client *c, const char *id, json_t **out, char *err,
                             size_t errlen);
/* The containers (running or not) carrying label (`key=value`), a JSON array in *out.
 * Returns 0 or -1 with err. */
int docker_container_list(docker_client *c, const char *label, json_t **out, char *err,
                          size_t errlen);
/* One stats sample (GET /containers/{id}/stats?stream=false) in *out; given up when
 * cancel_fd (>= 0) is readable. Returns 0 or -1 with err. */
int docker_container_stats(docker_client *c, const char *id, int cancel_fd, json_t **out, char *err,
                           size_t errlen);
/* Feeds the last `tail` lines of the container's stdout and stderr, one at a time, to
 * line(stream 1|2, text, len, arg), at most max_bytes in all. Returns 0 or -1 with err. */
int docker_container_logs(docker_client *c, const char *id, int tail, size_t max_bytes,
                          void (*line)(int stream, const char *text, size_t len, void *arg),
                          void *arg, char *err, size_t errlen);
/* The same for a swarm service (GET /services/{id}/logs: the output of all its tasks, which
 * the manager gathers from the nodes that ran them). */
int docker_service_logs(docker_client *c, const char *id, int tail, size_t max_bytes,
                        void (*line)(int stream, const char *text, size_t len, void *arg),
                        void *arg, char *err, size_t errlen);

/* The last n lines (n > 0; none asked: 1 read, none appended) of a container's output, or
 * a swarm service's when service, appended to arr as JSON strings (ilog_add_line), all or
 * none. Returns 0 or -1 with err. */
int docker_logs_json(docker_client *c, bool service, const char *id, int n, size_t max_bytes,
                     json_t *arr, char *err, size_t errlen);

/* The demultiplexer of the engine's log stream (8-byte frame headers: stream, 0, 0, 0,
 * big-endian size) into lines; a line longer than DOCKER_LINE_MAX is cut there. */
#define DOCKER_LINE_MAX 16384
typedef struct {
    unsigned char hdr[8];
    size_t hlen;   /* header bytes read of the current frame */
    uint32_t left; /* payload bytes left in the current frame */
    int stream;    /* stream of the current frame */
    bool raw;      /* the stream has no frames (a TTY container): lines only */
    bool started;
    char line[DOCKER_LINE_MAX];
    size_t llen;
    int lstream; /* stream of the pending line */
    void (*emit)(int stream, const char *text, size_t len, void *arg);
    void *arg;
} docker_demux;

/* Prepares a demultiplexer that emits lines to emit(stream, text, len, arg). */
void docker_demux_init(docker_demux *d, void (*emit)(int, const char *, size_t, void *), void *arg);
/* Feeds bytes of the stream. */
void docker_demux_feed(docker_demux *d, const char *buf, size_t len);
/* Emits a pending partial line. */
void docker_demux_flush(docker_demux *d);

/* CPU % and memory of one stats sample, like `docker stats`: *cpu_pct over the interval
 * between its two samples, *mem_usage (page cache excluded), *mem_limit. Returns 0, or -1
 * when the sample lacks the fields. */
int docker_stats_compute(const json_t *s, double *cpu_pct, uint64_t *mem_usage,
                         uint64_t *mem_limit);

#endif
