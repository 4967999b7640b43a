/* The function call of SPEC §12: `rpc Call(FunctionMessage) returns (FunctionMessage)` at
 * `/baetyl.Function/Call` (proto/function.proto), and Baetyl-C's `CallBatch` (several
 * messages, one result each), client and server speaking gRPC over HTTP/2 themselves (on
 * libnghttp2, with protobuf-c messages; no gRPC library): h2c with prior knowledge over TCP
 * and unix sockets, h2 over TLS (ALPN "h2", OpenSSL loaded only when TLS is configured),
 * uncompressed messages, deadlines sent as grpc-timeout. They interoperate with grpcio and
 * @grpc/grpc-js peers.
 *
 * Errors: every call that can fail returns 0 on success or a negative BT_FN_E* code and
 * fills err. A failed RPC reads like Go grpc's error text, e.g.
 * "rpc error: code = Unknown desc = [UserCodeInvoke] boom", so the function-manager can put
 * it in its error JSON as is. BT_FN_EUNAVAILABLE (deadline exceeded or peer unavailable)
 * tells a caller that the instance behind the address should be replaced. */
#ifndef BAETYL_FUNCTION_H
#define BAETYL_FUNCTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_FN_METHOD "/baetyl.Function/Call"
/* Several messages per call (Baetyl-C's addition; Baetyl 1.0 runtimes answer Unimplemented). */
#define BT_FN_METHOD_BATCH "/baetyl.Function/CallBatch"
#define BT_FN_DEFAULT_MAX_MSG_SIZE ((size_t)4 << 20) /* 4 MiB, both ways (SPEC §12) */
#define BT_FN_DEFAULT_TIMEOUT_MS 30000L
/* Threads, sized for an edge box (2-4 cores shared with the user's work): a server runs one
 * I/O thread (every connection: accept, TLS, HTTP/2) and its handlers on
 * BT_FN_DEFAULT_WORKERS threads of its own (workers.max) fed by a bounded queue; a client
 * runs one I/O thread (its connection), started by its first call. 4 workers keep a 2-core
 * box busy with fast handlers (SQL: microseconds); more calls in flight wait in the queue. */
#define BT_FN_DEFAULT_WORKERS 4
#define BT_FN_DEFAULT_GRACE_MS 5000L

/* Return codes. */
#define BT_FN_OK 0
#define BT_FN_EFAIL (-1)        /* the call failed: bad input, handler error, size limit… */
#define BT_FN_EUNAVAILABLE (-2) /* deadline exceeded or peer unavailable: replace it */

/* gRPC status codes that callers test (the numbers are gRPC's, stable on the wire). */
#define BT_FN_CODE_OK 0
#define BT_FN_CODE_CANCELLED 1
#define BT_FN_CODE_UNKNOWN 2
#define BT_FN_CODE_INVALID_ARGUMENT 3
#define BT_FN_CODE_DEADLINE_EXCEEDED 4
#define BT_FN_CODE_RESOURCE_EXHAUSTED 8
#define BT_FN_CODE_ABORTED 10 /* a batch's message not answered (reply full): call again */
#define BT_FN_CODE_UNIMPLEMENTED 12
#define BT_FN_CODE_INTERNAL 13
#define BT_FN_CODE_UNAVAILABLE 14

/* One FunctionMessage. A message filled by this library (a call's reply, a decoded
 * message, the handler's `in`) owns every pointer (malloc'd); release it with
 * bt_fn_msg_clear. A message the caller builds for input may point anywhere: it is only
 * read. NULL strings are sent as "", a NULL payload as empty. */
typedef struct {
    uint64_t id;      /* ID: the MQTT packet id */
    uint32_t qos;     /* QOS */
    char *topic;      /* Topic */
    uint8_t *payload; /* Payload (payload_len bytes, may hold NULs) */
    size_t payload_len;
    int64_t timestamp;        /* Timestamp (unix seconds) */
    char *function_name;      /* FunctionName */
    char *function_invoke_id; /* FunctionInvokeID */
} bt_fn_msg;

/* Frees the owned fields of m and zeroes it (NULL is fine). */
void bt_fn_msg_clear(bt_fn_msg *m);
/* Deep copy of src into dst (dst's old contents are not freed). 0, or -1 out of memory
 * (dst left zeroed). */
int bt_fn_msg_copy(bt_fn_msg *dst, const bt_fn_msg *src);
/* Replaces m's payload by a copy of p[0..n) (freeing the old one). 0, or -1 out of memory. */
int bt_fn_msg_set_payload(bt_fn_msg *m, const void *p, size_t n);
/* Replaces *field (one of m's strings) by a copy of s (NULL = NULL). 0, or -1 out of memory. */
int bt_fn_msg_set_str(char **field, const char *s);
/* The exact protobuf size of m (what gRPC's size limits count). */
size_t bt_fn_msg_encoded_size(const bt_fn_msg *m);
/* Protobuf encoding of m into a malloc'd *buf of *len bytes. 0, or -1 out of memory. */
int bt_fn_msg_encode(const bt_fn_msg *m, uint8_t **buf, size_t *len);
/* Decodes protobuf bytes into out (owned fields; out's old contents are not freed): its
 * strings are never NULL and its payload is followed by a NUL byte (not counted). 0, or -1
 * with err ("invalid FunctionMessage…") on malformed input or a string that is not UTF-8. */
int bt_fn_msg_decode(const uint8_t *buf, size_t len, bt_fn_msg *out, char *err, size_t errlen);

/* Go grpc's name of a status code ("Unknown", "DeadlineExceeded", …; "Code(n)" otherwise). */
const char *bt_fn_code_name(int code);

/* ---- client ------------------------------------------------------------------------------ */

typedef struct bt_fn_client bt_fn_client;

typedef struct {
    long timeout_ms;     /* deadline of each call; <= 0 = 30 s */
    size_t max_msg_size; /* largest message sent or received; 0 = 4 MiB */
    /* TLS: set ca and/or cert+key (PEM file paths) to dial with TLS. ca verifies the server
     * (NULL = the system's CA store); cert+key is the client certificate. */
    const char *ca;
    const char *cert;
    const char *key;
    const char *server_name; /* TLS: name the server certificate must carry (default: host) */
    /* true: a call waits (within its deadline) for the connection to come up instead of
     * failing at once with Unavailable when the peer does not answer. */
    bool wait_for_ready;
} bt_fn_client_options;

/* Creates a client of the server at address ("host:port", "[::1]:port", "unix:/path"); o
 * may be NULL (defaults). Connects lazily, and again after the peer closed. One connection
 * shared by every call (one HTTP/2 stream each; those beyond the server's
 * MAX_CONCURRENT_STREAMS wait for a free one): bt_fn_call may run from many threads at
 * once. NULL with err on bad options or unreadable PEM files. */
bt_fn_client *bt_fn_client_new(const char *address, const bt_fn_client_options *o, char *err,
                               size_t errlen);
/* Waits until the connection is up (dialling again every few ms while refused), at most
 * timeout_ms (<= 0 = the client's timeout). 0, or BT_FN_EUNAVAILABLE with err ("connect to … timed out"). */
int bt_fn_client_connect(bt_fn_client *c, long timeout_ms, char *err, size_t errlen);
/* Calls the function with the client's timeout. On 0, out holds the reply (owned fields;
 * out's old contents are not freed). On failure out is zeroed and err is set; returns
 * BT_FN_EUNAVAILABLE for DeadlineExceeded/Unavailable, BT_FN_EFAIL otherwise. */
int bt_fn_call(bt_fn_client *c, const bt_fn_msg *in, bt_fn_msg *out, char *err, size_t errlen);
/* bt_fn_call with its own timeout (<= 0 = the client's) that also stores the gRPC status
 * code in *code when code is not NULL (0 on success, 2 = Unknown for a local failure). */
int bt_fn_call_ex(bt_fn_client *c, const bt_fn_msg *in, bt_fn_msg *out, long timeout_ms, int *code,
                  char *err, size_t errlen);
/* Frees a client (NULL is fine). No call may be running on it. Called from a callback
 * running on the client's own I/O thread (bt_fn_async_set_inline) it returns at once, and
 * that thread frees the client once the callback returned. */
void bt_fn_client_free(bt_fn_client *c);

/* Asynchronous calls: many calls in flight from one thread, their completions posted by the
 * clients' I/O threads to one queue and taken in batches by whoever polls it. */
typedef struct bt_fn_async bt_fn_async;

/* What a call started with bt_fn_call_start ended with: rc and code as bt_fn_call_ex; out
 * the reply on BT_FN_OK (zeroed otherwise), which the callback may take over (moving its
 * fields and zeroing them); err the failure's text ("" on success). Runs in
 * bt_fn_async_poll, or on the client's I/O thread (bt_fn_async_set_inline). */
typedef void (*bt_fn_done)(void *arg, int rc, int code, bt_fn_msg *out, const char *err);

/* A new queue; NULL out of memory. */
bt_fn_async *bt_fn_async_new(void);
/* Starts a call of c's function whose completion comes on q (deadline timeout_ms, <= 0 =
 * the client's). in is copied: the caller may free it at once. 0: done(arg, …) will run
 * exactly once from bt_fn_async_poll (or inline); BT_FN_EFAIL with err: it will not. c must
 * outlive the call. While c's I/O thread sleeps with nothing to send (a plain, not TLS,
 * connection), the call is sent from the calling thread, sparing that thread's wake-up. */
int bt_fn_call_start(bt_fn_client *c, bt_fn_async *q, const bt_fn_msg *in, long timeout_ms,
                     bt_fn_done done, void *arg, char *err, size_t errlen);
/* Waits up to timeout_ms (< 0: no limit) for a completed call, then runs the callbacks of
 * it and of every other call already completed. Returns how many ran (0: time is up). Only
 * one thread may poll a queue. */
int bt_fn_async_poll(bt_fn_async *q, long timeout_ms);
/* Asked on a client's I/O thread as a call of q ends (succeeded: whether it did), with the
 * call's arg: true runs its bt_fn_done there and then, on that thread, sparing the wake-up
 * of q's poller; false posts it to q as usual. Such a callback delays the client's other
 * calls while it runs, so it must not block; it must not make a blocking call (bt_fn_call,
 * bt_fn_call_ex) on that client; it may start calls and free the client. Batches always go
 * to q. */
typedef bool (*bt_fn_inline_fn)(void *arg, bool succeeded);
/* Sets q's inline test (NULL: none, the default), before any call is started on q. */
void bt_fn_async_set_inline(bt_fn_async *q, bt_fn_inline_fn fn);
/* Makes the poller's bt_fn_async_poll return now (0 when no call completed). */
void bt_fn_async_wake(bt_fn_async *q);
/* One message's outcome in a batch: code 0 (BT_FN_CODE_OK) with msg the reply, or the gRPC
 * status code Call would have failed with and err its text as bt_fn_call gives it ("rpc
 * error: code = Unknown desc = …", malloc'd). BT_FN_CODE_ABORTED: the server did not fit
 * this reply into the batch's reply; call the message again. */
typedef struct {
    int code;
    char *err;
    bt_fn_msg msg;
} bt_fn_result;

/* What a batch started with bt_fn_call_batch_start ended with: rc, code and err for the
 * call as a whole (as bt_fn_done); on BT_FN_OK, res holds n results, one per message in
 * order, whose msg fields the callback may take over (moving them and zeroing them). Runs
 * in bt_fn_async_poll. */
typedef void (*bt_fn_batch_done)(void *arg, int rc, int code, bt_fn_result *res, size_t n,
                                 const char *err);

/* Starts a CallBatch of in[0..n) (n >= 1) on c, completing on q like bt_fn_call_start. A
 * server without CallBatch ends it with code BT_FN_CODE_UNIMPLEMENTED. in is copied. */
int bt_fn_call_batch_start(bt_fn_client *c, bt_fn_async *q, const bt_fn_msg *const *in, size_t n,
                           long timeout_ms, bt_fn_batch_done done, void *arg, char *err,
                           size_t errlen);

/* Frees a queue (NULL is fine); no call may be pending on it. */
void bt_fn_async_free(bt_fn_async *q);

/* ---- server ------------------------------------------------------------------------------ */

typedef struct bt_fn_server bt_fn_server;

/* Handles one call. in is valid during the call only. out starts as a copy of in with an
 * empty payload (like the Python runtime, which returns the request with a new Payload);
 * the handler sets out's payload (bt_fn_msg_set_payload) and may change other fields, all
 * malloc'd: the server frees them. Returns 0, or -1 with err: the client then gets status
 * Unknown with err as message. Runs on a worker thread, up to `workers` at once. */
typedef int (*bt_fn_handler)(const bt_fn_msg *in, bt_fn_msg *out, char *err, size_t errlen,
                             void *arg);

typedef struct {
    size_t max_msg_size; /* largest message received or sent; 0 = 4 MiB. Larger requests
                           * are refused with ResourceExhausted before they are read. */
    int workers;         /* calls handled at once (one thread each); <= 0 = 4 */
    int concurrent;      /* streams a client connection may open at once
                          * (SETTINGS_MAX_CONCURRENT_STREAMS); <= 0 = 100 */
    /* TLS: cert+key (PEM file paths) serve TLS; ca additionally requires and verifies
     * client certificates. */
    const char *cert;
    const char *key;
    const char *ca;
    long grace_ms; /* bt_fn_server_stop: time left to running calls; <= 0 = 5 s */
    /* true: the handler runs on the server's I/O thread as each request completes, and no
     * worker starts (workers is ignored). For handlers that take microseconds and never
     * block (the SQL runtime): a call then crosses no thread, which halves a lone call's
     * time in the server; a slow handler would hold every connection. */
    bool inline_calls;
} bt_fn_server_options;

/* Listens on address ("127.0.0.1:50051", "0.0.0.0:0" for a free port, "unix:/path") and
 * serves handler(…, arg) on `workers` threads; o may be NULL (defaults). Calls to other
 * methods get Unimplemented, undecodable requests Internal. CallBatch is served too: the
 * handler runs for each of its messages in turn on one worker, each with its own outcome.
 * NULL with err when the address cannot be bound (a port in use is refused) or the options
 * are wrong. */
bt_fn_server *bt_fn_server_start(const char *address, const bt_fn_server_options *o,
                                 bt_fn_handler handler, void *arg, char *err, size_t errlen);
/* The port bound (useful with port 0); 0 for a unix socket. */
int bt_fn_server_port(const bt_fn_server *s);
/* Stops: GOAWAY, no new calls; running calls get grace_ms to finish, then are cancelled
 * (RST_STREAM); returns
 * once every handler has returned and everything is freed (NULL is fine). */
void bt_fn_server_stop(bt_fn_server *s);

#endif
