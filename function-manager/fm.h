/* baetyl-function-manager internals (SPEC §12): the config (config.c), instances started
 * through the master (instance.c), a pool of instances per function (pool.c), one call with
 * its retries (invoke.c), the error JSON (error_json.c), one MQTT rule (rule.c) and the
 * optional gRPC server (server.c). main.c wires them together. */
#ifndef FM_H
#define FM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "baetyl/api.h"
#include "baetyl/util.h"
#include "baetyl/config.h"
#include "baetyl/function.h"
#include "baetyl/function_config.h"
#include "baetyl/log.h"
#include "baetyl/mqtt_client.h"

/* ---- config (config.c) ------------------------------------------------------------------ */

typedef struct {
    char *clientid; /* "" or absent: <function>-rule<i> (decided here) */
    bt_mqtt_topic_info subscribe;
    char *function;             /* function.name */
    bt_mqtt_topic_info publish; /* a topic name: no wildcards */
    long retry_max;             /* attempts in all (0 counts as 1) */
    char *deadletter;           /* topic name: inputs that failed are parked there (NULL) */
} fm_rule_cfg;

typedef struct {
    char *name;
    char *service;
    long min, max;            /* instance.min 0..100, instance.max 1..100 */
    long concurrent;          /* instance.concurrent: calls in flight per instance (32) */
    int64_t idletime;         /* ms */
    int64_t evicttime;        /* ms */
    bt_fn_client_config call; /* message.length.max, backoff.max, timeout */
} fm_function_cfg;

typedef struct {
    bt_mqtt_client_config hub;
    bt_fn_server_config server; /* address NULL: no gRPC server */
    bt_cfg_list rules;          /* of fm_rule_cfg */
    bt_cfg_list functions;      /* of fm_function_cfg */
    bt_logger_config logger;
    int64_t report_interval_ms; /* status.report.interval: metrics to the master (1m) */
} fm_config;

extern const bt_cfg_schema fm_config_schema;

/* The client id of rule number i: its clientid, or "<function>-rule<i>" when empty. */
void fm_rule_clientid(const fm_rule_cfg *r, size_t i, char *out, size_t len);
/* The function named name in c, or NULL. */
const fm_function_cfg *fm_config_function(const fm_config *c, const char *name);

/* ---- instances (instance.c) ------------------------------------------------------------- */

/* What the master knows of an instance's process. */
typedef struct {
    char state[16];    /* "running", "exited" or "unknown" */
    int exit_code;     /* -1: none (still running, or not known) */
    char output[1024]; /* its last lines of output, joined by '\n' (cut to fit) */
} fm_instance_status;

/* How instances come and go; the real one asks the master, tests may plug their own. */
typedef struct {
    /* Starts instance `name` of `service`; writes the address to dial into dial.
     * 0, or -1 with err. */
    int (*start)(void *arg, const char *service, const char *name, char *dial, size_t dial_len,
                 char *err, size_t errlen);
    /* Stops it. 0, or -1 with err (the caller logs it). */
    int (*stop)(void *arg, const char *service, const char *name, char *err, size_t errlen);
    /* Fills st with the state, exit code and last `lines` lines of output of instance
     * `name` (NULL: not known). 0, or -1 with err (e.g. a master without the route). */
    int (*status)(void *arg, const char *service, const char *name, int lines,
                  fm_instance_status *st, char *err, size_t errlen);
    void *arg;
} fm_backend;

/* The master backend: native → a free port from the master, listen and dial
 * 127.0.0.1:<port>; docker → listen 0.0.0.0:50051, dial <instance>:50051. api is borrowed.
 * NULL when out of memory. */
fm_backend *fm_master_backend_new(bt_api_client *api, bool native);
/* Frees a backend of fm_master_backend_new (NULL is fine). */
void fm_master_backend_free(fm_backend *b);

/* Stops the instances of (service, function) a previous run left behind: those the master
 * lists as `<service>.<function>.<n>`. Returns how many were stopped, or -1 with err. */
int fm_stop_leftovers(bt_api_client *api, const char *service, const char *function, char *err,
                      size_t errlen);

/* ---- pool (pool.c) ---------------------------------------------------------------------- */

typedef struct fm_pool fm_pool;
typedef struct fm_instance fm_instance;

/* A pool of at most cfg->max instances of one function (cfg is borrowed and must outlive
 * the pool). NULL with err when out of memory. */
fm_pool *fm_pool_new(const fm_function_cfg *cfg, const fm_backend *b, char *err, size_t errlen);
/* Starts the thread that destroys idle instances every evicttime and keeps min alive. */
int fm_pool_start(fm_pool *p, char *err, size_t errlen);
/* Borrows an instance for one call: a live one serving fewer than instance.concurrent
 * calls, else a new one while fewer than max exist and none is starting (started on a
 * thread of its own when others are live, whose next free slot may come first), else waits
 * for room. Starting one waits out the backoff left by a failed start first.
 * NULL with err when starting failed or the pool is closed. */
fm_instance *fm_pool_get(fm_pool *p, char *err, size_t errlen);
/* A live instance with room for one more call, borrowed without waiting; NULL if none. */
fm_instance *fm_pool_try_get(fm_pool *p);
/* Gives a call's instance back. Not healthy: it takes no more calls, and is destroyed
 * when its last call in flight returns. */
void fm_pool_put(fm_pool *p, fm_instance *in, bool healthy);
/* One attempt: borrow, call (deadline: timeout), give back (destroyed when the call failed).
 * 0 with out filled, or a BT_FN_E* code with err. */
int fm_pool_call(fm_pool *p, const bt_fn_msg *in, bt_fn_msg *out, char *err, size_t errlen);
/* Calls the pool could start now without waiting: free slots of the live instances, and
 * those of the instances it may still start. */
size_t fm_pool_room(fm_pool *p);
/* The client of a borrowed instance, and its name (for logs). */
bt_fn_client *fm_instance_client(fm_instance *in);
const char *fm_instance_name(const fm_instance *in);
/* Whether the instance may serve CallBatch: true until it answered Unimplemented (a
 * Baetyl 1.0 runtime), which fm_instance_set_batches(in, false) remembers (true when that
 * changed what was known). */
bool fm_instance_batches(const fm_instance *in);
bool fm_instance_set_batches(fm_instance *in, bool yes);
/* Wakes every waiter with an error and stops the evictor; calls in progress finish. */
void fm_pool_close(fm_pool *p);
/* True once fm_pool_close was called. */
bool fm_pool_closed(fm_pool *p);
/* Closes, then destroys every instance (none may be borrowed) and frees the pool. */
void fm_pool_free(fm_pool *p);
/* Instances alive (idle + busy + starting), and the most ever alive at once. */
size_t fm_pool_size(fm_pool *p);
/* Instances being started now (counted in fm_pool_size too). */
size_t fm_pool_starting(fm_pool *p);
size_t fm_pool_peak(fm_pool *p);
/* The function this pool serves. */
const fm_function_cfg *fm_pool_function(const fm_pool *p);

/* ---- one invocation (invoke.c, error_json.c) ---------------------------------------------- */

/* Calls in's function up to `attempts` times (at least once) until one succeeds. A message
 * too large for the function fails at once, without an instance. 0 with out filled; -1 with
 * err (the last failure's text); -2 when the pool closed meanwhile (nothing to publish). */
int fm_invoke(fm_pool *p, const bt_fn_msg *in, long attempts, bt_fn_msg *out, char *err,
              size_t errlen);
/* 0 when in is within its function's message.length.max, else -1 with err saying so. */
int fm_invoke_fits(fm_pool *p, const bt_fn_msg *in, char *err, size_t errlen);
/* Error text kept in an error JSON that had to be shortened. */
#define FM_ERROR_TEXT_MAX 512
/* The error JSON published after the last failure:
 * {"errorMessage":err,"errorType":"*errors.Err","functionMessage":{ID,QOS,Topic,
 * Payload (base64),Timestamp,FunctionName,FunctionInvokeID}}. When that is longer than max
 * bytes, err is cut to FM_ERROR_TEXT_MAX bytes and Payload holds only the first bytes of the
 * input that fit, with "PayloadTruncated":true and "PayloadSize" (the input's size); it may
 * still exceed a max too small for the other fields. malloc'd text, NULL when out of memory;
 * *len gets its length. */
char *fm_error_json(const bt_fn_msg *in, const char *err, size_t max, size_t *len);

/* ---- rules (rule.c) --------------------------------------------------------------------- */

typedef struct fm_rule fm_rule;

/* The hub's own default message.length.max (SPEC §11): what a rule assumes the hub takes
 * when hub.message.length.max is not set. */
#define FM_HUB_MESSAGE_MAX_DEFAULT (32 * 1024)

/* What a rule did since it started. */
typedef struct {
    unsigned long long received;  /* inputs taken from the hub */
    unsigned long long failed;    /* calls that failed every attempt: error JSON instead */
    unsigned long long oversized; /* results over the hub's limit: short error JSON instead */
    unsigned long long parked;    /* inputs published on the dead-letter topic */
    unsigned long long refused;   /* messages the client refused to publish (input acked) */
    unsigned long long dropped;   /* QoS 0 inputs dropped on a full queue */
} fm_rule_stats;

/* Called when a rule's client stops for good (validatesubs and a refused subscription). */
typedef void (*fm_fatal_fn)(void *arg, const char *why);

/* Builds rule number index (its MQTT client: hub settings with the rule's clientid and
 * subscription) over pool; fatal(arg, why) is told if its client stops for good. Borrows
 * hub, rc and pool. NULL with err on a bad setting. */
fm_rule *fm_rule_new(const bt_mqtt_client_config *hub, const fm_rule_cfg *rc, size_t index,
                     fm_pool *pool, fm_fatal_fn fatal, void *arg, char *err, size_t errlen);
/* Starts its workers and its MQTT client (which connects in the background). */
int fm_rule_start(fm_rule *r, char *err, size_t errlen);
/* Stops taking messages and disconnects; workers finish the call in progress. Queued
 * messages are dropped (a QoS 1 one is not acknowledged, so the hub sends it again). */
void fm_rule_stop(fm_rule *r);
/* Stops (if needed), joins the workers, logs the rule's totals and frees it. NULL is fine. */
void fm_rule_free(fm_rule *r);

/* ---- gRPC server (server.c) ------------------------------------------------------------- */

typedef struct fm_server fm_server;

/* Serves baetyl.Function/Call on cfg->address, routing each call by FunctionName to one of
 * the n pools; an unknown name fails with "function (x) not found". NULL with err. */
fm_server *fm_server_start(const bt_fn_server_config *cfg, fm_pool **pools, size_t n, char *err,
                           size_t errlen);
/* Stops the server (running calls get a grace period). NULL is fine. */
void fm_server_stop(fm_server *s);

#endif
