/* The function server: one completion queue shared by `workers` threads. Calls are
 * requested ahead (the request's payload read by gRPC with the call, so one event brings a
 * whole call), and whichever worker takes an event runs the handler there and starts the
 * answer without waiting for it: a busy worker goes from one event to the next without
 * sleeping, and at most `workers` handlers run at once. Calls beyond the requests ahead
 * wait inside gRPC. Calls to other methods come through one generic request and get
 * Unimplemented. */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include "function_internal.h"

/* Calls requested ahead per worker: room for a burst to land in one go. */
#define REQUESTS_PER_WORKER 4

typedef enum { SLOT_REGISTERED, SLOT_GENERIC, SLOT_ANSWERING } slot_phase;

/* One call from its request to its answer's completion: exactly one operation of it is
 * pending in the queue, or a worker holds it. */
typedef struct {
    slot_phase phase;
    bool generic;
    bool batch; /* a CallBatch request */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_call_details details; /* generic requests */
    grpc_metadata_array md;
    grpc_byte_buffer *payload; /* the request (registered) */
    grpc_byte_buffer *reply;
    grpc_slice status_details;
    int cancelled;
} slot;

typedef struct {
    struct bt_fn_server *srv;
    pthread_t th;
    bool started;
} worker;

struct bt_fn_server {
    grpc_server *server;
    grpc_completion_queue *cq;
    void *method;       /* the registered BT_FN_METHOD */
    void *batch_method; /* the registered BT_FN_METHOD_BATCH */
    bt_fn_handler handler;
    void *arg;
    size_t max_msg_size;
    long grace_ms;
    int port;
    int nworkers;
    worker *workers;
    bool started;
    pthread_mutex_t mu;
    size_t live;   /* slots alive [mu] */
    bool stopping; /* the server is shut down: the last slot shuts the queue down [mu] */
    bool cq_down;  /* [mu] */
};

static gpr_timespec inf_future(void)
{
    return gpr_inf_future(GPR_CLOCK_REALTIME);
}

/* Shuts the queue down once nothing can start operations on it any more (mu held). */
static void maybe_shutdown_cq(bt_fn_server *s)
{
    if (s->stopping && s->live == 0 && !s->cq_down) {
        s->cq_down = true;
        grpc_completion_queue_shutdown(s->cq);
    }
}

static void slot_free(bt_fn_server *s, slot *sl)
{
    if (sl->call)
        grpc_call_unref(sl->call);
    if (sl->generic)
        grpc_call_details_destroy(&sl->details);
    grpc_metadata_array_destroy(&sl->md);
    if (sl->payload)
        grpc_byte_buffer_destroy(sl->payload);
    if (sl->reply)
        grpc_byte_buffer_destroy(sl->reply);
    grpc_slice_unref(sl->status_details);
    free(sl);
    pthread_mutex_lock(&s->mu);
    s->live--;
    maybe_shutdown_cq(s);
    pthread_mutex_unlock(&s->mu);
}

/* Requests one more call (registered Call or CallBatch, or generic for other methods). */
static void request(bt_fn_server *s, bool generic, bool batch)
{
    slot *sl = calloc(1, sizeof *sl);
    if (!sl)
        return; /* the calls already requested keep serving */
    sl->generic = generic;
    sl->batch = batch;
    sl->phase = generic ? SLOT_GENERIC : SLOT_REGISTERED;
    sl->status_details = grpc_empty_slice();
    grpc_metadata_array_init(&sl->md);
    pthread_mutex_lock(&s->mu);
    s->live++;
    pthread_mutex_unlock(&s->mu);
    grpc_call_error ce;
    if (generic) {
        grpc_call_details_init(&sl->details);
        ce =
            grpc_server_request_call(s->server, &sl->call, &sl->details, &sl->md, s->cq, s->cq, sl);
    } else {
        ce = grpc_server_request_registered_call(s->server, batch ? s->batch_method : s->method,
                                                 &sl->call, &sl->deadline, &sl->md, &sl->payload,
                                                 s->cq, s->cq, sl);
    }
    if (ce != GRPC_CALL_OK)
        slot_free(s, sl);
}

/* Starts the answer: the reply (may be NULL) and the final status; the slot is freed when
 * the call is closed. */
static void answer(bt_fn_server *s, slot *sl, grpc_byte_buffer *reply, grpc_status_code st,
                   const char *msg)
{
    grpc_op ops[4];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    sl->phase = SLOT_ANSWERING;
    sl->reply = reply;
    if (msg && *msg)
        sl->status_details = grpc_slice_from_copied_string(msg);
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (reply) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = reply;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = st;
    ops[n++].data.send_status_from_server.status_details = msg && *msg ? &sl->status_details : NULL;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &sl->cancelled;
    if (grpc_call_start_batch(sl->call, ops, n, sl, NULL) != GRPC_CALL_OK)
        slot_free(s, sl);
}

/* Runs the handler on one decoded request: 0 with *out (owned fields) of encoded size
 * *size, or the gRPC status code with err (*out zeroed). */
static int run_one(bt_fn_server *s, const bt_fn_msg *in, bt_fn_msg *out, size_t *size, char *err,
                   size_t errlen)
{
    /* out starts as the request without its payload (see bt_fn_handler). */
    if (bt_fn_msg_copy(out, in) < 0 || bt_fn_msg_set_payload(out, NULL, 0) < 0) {
        bt_fn_msg_clear(out);
        snprintf(err, errlen, "out of memory");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    *err = '\0';
    if (s->handler(in, out, err, errlen, s->arg) < 0) {
        bt_fn_msg_clear(out);
        if (!*err)
            snprintf(err, errlen, "function failed");
        return GRPC_STATUS_UNKNOWN;
    }
    *size = bt_fn_msg_encoded_size(out);
    if (*size > s->max_msg_size) {
        /* Say why here rather than let the transport fail the call less clearly. */
        bt_fn_msg_clear(out);
        snprintf(err, errlen, "reply larger than max (%zu vs. %zu)", *size, s->max_msg_size);
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    return GRPC_STATUS_OK;
}

/* Decodes the request, runs the handler and starts the answer. */
static void serve_call(bt_fn_server *s, slot *sl)
{
    grpc_byte_buffer *req = sl->payload;
    if (!req) {
        answer(s, sl, NULL, GRPC_STATUS_INTERNAL, "no request message");
        return;
    }
    bt_fn_msg in, out;
    char err[1024] = "", derr[128];
    int rc = bt_fn_msg_from_bb(req, &in, derr, sizeof derr);
    grpc_byte_buffer_destroy(req);
    sl->payload = NULL;
    if (rc < 0) {
        snprintf(err, sizeof err, "error unmarshalling request: %s", derr);
        answer(s, sl, NULL, GRPC_STATUS_INTERNAL, err);
        return;
    }
    size_t size;
    int st = run_one(s, &in, &out, &size, err, sizeof err);
    bt_fn_msg_clear(&in);
    if (st != GRPC_STATUS_OK) {
        answer(s, sl, NULL, (grpc_status_code)st, err);
        return;
    }
    grpc_byte_buffer *reply = bt_fn_msg_to_bb(&out, &size);
    bt_fn_msg_clear(&out);
    if (!reply)
        answer(s, sl, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    else
        answer(s, sl, reply, GRPC_STATUS_OK, NULL);
}

/* Bytes a length-delimited field of `len` bytes adds to its message: tag, length, value. */
static size_t field_size(size_t len)
{
    size_t n = 2; /* the tag, and the first byte of the length */
    for (size_t v = len >> 7; v; v >>= 7)
        n++;
    return n + len;
}

/* A failed message's text in a batch's reply is cut to this, so that room can be kept for
 * the results still to come: BATCH_ERR_COST bytes each at most. */
#define BATCH_ERR_TEXT_MAX 512
#define BATCH_ERR_COST (BATCH_ERR_TEXT_MAX + 16)

/* What serve_batch keeps per message until the reply is encoded. */
typedef struct {
    Baetyl__FunctionResult r;
    Baetyl__FunctionMessage pb; /* a view of out */
    bt_fn_msg out;
    char *text;
} batch_entry;

/* CallBatch: the handler on each message in turn, each with its own result. A reply that
 * would take the batch's reply over max (keeping room for a failure of each message still
 * to come) is not kept (Aborted: the caller calls that message again); the first one
 * always is, or fails alone as Call would. */
static void serve_batch(bt_fn_server *s, slot *sl)
{
    grpc_byte_buffer *req = sl->payload;
    Baetyl__FunctionMessages *pb = req ? (Baetyl__FunctionMessages *)bt_fn_pb_from_bb(
                                             req, &baetyl__function_messages__descriptor)
                                       : NULL;
    if (req)
        grpc_byte_buffer_destroy(req);
    sl->payload = NULL;
    if (!pb) {
        answer(s, sl, NULL, GRPC_STATUS_INTERNAL,
               req ? "error unmarshalling request: invalid FunctionMessages"
                   : "no request message");
        return;
    }
    size_t n = pb->n_messages;
    batch_entry *es = calloc(n ? n : 1, sizeof *es);
    Baetyl__FunctionResult **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (!es || !ptrs) {
        free(es);
        free(ptrs);
        baetyl__function_messages__free_unpacked(pb, NULL);
        answer(s, sl, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        batch_entry *e = &es[i];
        baetyl__function_result__init(&e->r);
        ptrs[i] = &e->r;
        bt_fn_msg in;
        char err[1024] = "", derr[128];
        size_t size = 0;
        int st;
        if (bt_fn_msg_from_pb(pb->messages[i], &in, derr, sizeof derr) < 0) {
            snprintf(err, sizeof err, "error unmarshalling request: %s", derr);
            st = GRPC_STATUS_INTERNAL;
        } else {
            st = run_one(s, &in, &e->out, &size, err, sizeof err);
            bt_fn_msg_clear(&in);
        }
        /* a result's code 0 and empty error take no bytes */
        size_t add = field_size(field_size(size));
        size_t room = (n - i - 1) * BATCH_ERR_COST;
        if (st == GRPC_STATUS_OK && i > 0 && total + add + room > s->max_msg_size) {
            bt_fn_msg_clear(&e->out);
            st = GRPC_STATUS_ABORTED;
            snprintf(err, sizeof err, "the batch's reply is full: call again");
        }
        if (st == GRPC_STATUS_OK) {
            bt_fn_msg_to_pb(&e->out, &e->pb);
            e->r.message = &e->pb;
            total += add;
        } else {
            e->r.code = (uint32_t)st;
            err[BATCH_ERR_TEXT_MAX] = '\0';
            e->text = strdup(err);
            e->r.error = e->text ? e->text : (char *)"out of memory";
            total += field_size(field_size(strlen(e->r.error)) + 2);
        }
    }
    baetyl__function_messages__free_unpacked(pb, NULL);
    Baetyl__FunctionResults out = BAETYL__FUNCTION_RESULTS__INIT;
    out.n_results = n;
    out.results = ptrs;
    size_t size;
    grpc_byte_buffer *reply = bt_fn_pb_to_bb(&out.base, &size);
    for (size_t i = 0; i < n; i++) {
        bt_fn_msg_clear(&es[i].out);
        free(es[i].text);
    }
    free(es);
    free(ptrs);
    if (!reply)
        answer(s, sl, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    else
        answer(s, sl, reply, GRPC_STATUS_OK, NULL);
}

/* Takes events until the queue is shut down. A new call is requested before the handler
 * runs, so the requests ahead stay topped up while handlers work. */
static void *worker_main(void *p)
{
    worker *w = p;
    bt_fn_server *s = w->srv;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, inf_future(), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        slot *sl = ev.tag;
        switch (sl->phase) {
        case SLOT_REGISTERED:
        case SLOT_GENERIC:
            if (!ev.success) { /* the server is shutting down */
                slot_free(s, sl);
                break;
            }
            request(s, sl->generic, sl->batch);
            if (sl->generic) {
                char *m = bt_fn_slice_str(sl->details.method), msg[256];
                snprintf(msg, sizeof msg, "unknown method %.200s", m ? m : "?");
                free(m);
                answer(s, sl, NULL, GRPC_STATUS_UNIMPLEMENTED, msg);
            } else if (sl->batch) {
                serve_batch(s, sl);
            } else {
                serve_call(s, sl);
            }
            break;
        case SLOT_ANSWERING: slot_free(s, sl); break;
        }
    }
    return NULL;
}
static grpc_server_credentials *server_creds(const bt_fn_server_options *o, char *err,
                                             size_t errlen)
{
    bool has_cert = o->cert && *o->cert, has_key = o->key && *o->key;
    bool has_ca = o->ca && *o->ca;
    if (has_cert != has_key || (has_ca && !has_cert)) {
        snprintf(err, errlen, "tls: the server needs cert and key%s",
                 has_ca ? " (ca only verifies clients)" : "");
        return NULL;
    }
    if (!has_cert)
        return grpc_insecure_server_credentials_create();
    char *ca = NULL, *cert = NULL, *key = NULL;
    grpc_server_credentials *cr = NULL;
    if ((has_ca && !(ca = bt_fn_read_pem("ca", o->ca, err, errlen))) ||
        !(cert = bt_fn_read_pem("cert", o->cert, err, errlen)) ||
        !(key = bt_fn_read_pem("key", o->key, err, errlen)))
        goto out;
    grpc_ssl_pem_key_cert_pair pair = {key, cert};
    cr = grpc_ssl_server_credentials_create_ex(
        ca, &pair, 1,
        has_ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
               : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
    if (!cr)
        snprintf(err, errlen, "tls: cannot create server credentials");
out:
    free(ca);
    free(cert);
    free(key);
    return cr;
}

static grpc_arg int_arg(const char *key, int v)
{
    grpc_arg a;
    a.type = GRPC_ARG_INTEGER;
    a.key = (char *)key;
    a.value.integer = v;
    return a;
}

/* Frees what start created; the server must be stopped (or never started). */
/* Frees what start created; the queue must be shut down and drained (or never used). */
static void server_free(bt_fn_server *s)
{
    if (s->server)
        grpc_server_destroy(s->server);
    if (s->cq)
        grpc_completion_queue_destroy(s->cq);
    pthread_mutex_destroy(&s->mu);
    free(s->workers);
    free(s);
    grpc_shutdown();
}

/* Lets the last slot shut the queue down, then joins the workers (which leave at the
 * queue's shutdown), or drains the queue when no worker runs. */
static void stop_workers(bt_fn_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    maybe_shutdown_cq(s);
    pthread_mutex_unlock(&s->mu);
    bool any = false;
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].started) {
            pthread_join(s->workers[i].th, NULL);
            any = true;
        }
    if (any || !s->cq)
        return;
    for (;;) { /* only failed requests can come: no worker ever answered a call */
        grpc_event ev = grpc_completion_queue_next(s->cq, inf_future(), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE)
            slot_free(s, ev.tag);
    }
}

/* Graceful shutdown of the gRPC server: grace for running calls, then cancel them. The
 * requests still pending then fail, which frees their slots. */
static void shutdown_server(bt_fn_server *s)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_shutdown_and_notify(s->server, cq, s);
    gpr_timespec grace =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(s->grace_ms, GPR_TIMESPAN));
    if (grpc_completion_queue_pluck(cq, s, grace, NULL).type == GRPC_QUEUE_TIMEOUT) {
        grpc_server_cancel_all_calls(s->server);
        /* Cancelled calls no longer hold the shutdown back; handlers still running on
         * them are waited for when the workers are joined. */
        grpc_completion_queue_pluck(cq, s, inf_future(), NULL);
    }
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, s, inf_future(), NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

bt_fn_server *bt_fn_server_start(const char *address, const bt_fn_server_options *o,
                                 bt_fn_handler handler, void *arg, char *err, size_t errlen)
{
    bt_fn_server_options def = {0};
    if (!o)
        o = &def;
    if (!address || !*address || !handler) {
        snprintf(err, errlen, "function server: %s required", handler ? "address" : "handler");
        return NULL;
    }
    size_t max = o->max_msg_size ? o->max_msg_size : BT_FN_DEFAULT_MAX_MSG_SIZE;
    if (max > INT_MAX) {
        snprintf(err, errlen, "function server: max message size %zu too large", max);
        return NULL;
    }
    int nw = o->workers > 0 ? o->workers : BT_FN_DEFAULT_WORKERS;
    if (nw > 1024) {
        snprintf(err, errlen, "function server: %d workers is too many (max 1024)", nw);
        return NULL;
    }
    bt_fn_server *s = calloc(1, sizeof *s);
    worker *ws = calloc((size_t)nw, sizeof *ws);
    if (!s || !ws) {
        free(s);
        free(ws);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    bt_fn_grpc_init();
    pthread_mutex_init(&s->mu, NULL);
    s->workers = ws;
    s->nworkers = nw;
    s->handler = handler;
    s->arg = arg;
    s->max_msg_size = max;
    s->grace_ms = o->grace_ms > 0 ? o->grace_ms : BT_FN_DEFAULT_GRACE_MS;

    grpc_server_credentials *creds = server_creds(o, err, errlen);
    if (!creds) {
        server_free(s);
        return NULL;
    }
    grpc_arg args[4];
    size_t n = 0;
    args[n++] = int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)max);
    args[n++] = int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, (int)max);
    /* gRPC sets SO_REUSEPORT by default: two servers could then share a port silently. */
    args[n++] = int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0);
    if (o->concurrent > 0)
        args[n++] = int_arg(GRPC_ARG_MAX_CONCURRENT_STREAMS, o->concurrent);
    grpc_channel_args cargs = {n, args};
    s->server = grpc_server_create(&cargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    s->method = grpc_server_register_method(s->server, BT_FN_METHOD, NULL,
                                            GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    s->batch_method = grpc_server_register_method(s->server, BT_FN_METHOD_BATCH, NULL,
                                                  GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    for (int i = 0; i < nw; i++)
        ws[i].srv = s;
    s->port = grpc_server_add_http2_port(s->server, address, creds);
    grpc_server_credentials_release(creds);
    if (s->port <= 0) {
        snprintf(err, errlen, "function server: cannot listen on %s (address in use or invalid)",
                 address);
        /* Never started and without listener: it may be destroyed directly. */
        stop_workers(s);
        server_free(s);
        return NULL;
    }
    if (strncmp(address, "unix:", 5) == 0)
        s->port = 0;
    grpc_server_start(s->server);
    s->started = true;
    request(s, true, false);
    for (int i = 0; i < nw * REQUESTS_PER_WORKER; i++) {
        request(s, false, false);
        request(s, false, true);
    }
    for (int i = 0; i < nw; i++) {
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) {
            snprintf(err, errlen, "function server: cannot start worker threads");
            bt_fn_server_stop(s);
            return NULL;
        }
        ws[i].started = true;
    }
    return s;
}

int bt_fn_server_port(const bt_fn_server *s)
{
    return s->port;
}

void bt_fn_server_stop(bt_fn_server *s)
{
    if (!s)
        return;
    if (s->started)
        shutdown_server(s);
    stop_workers(s);
    server_free(s);
}
