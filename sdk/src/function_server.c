/* The function server: `workers` threads, each with its own completion queue and one
 * requested call at a time, so at most `workers` handlers run at once and no thread ever
 * waits on another's events. Calls beyond that wait inside gRPC until a worker is free. */
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

typedef struct {
    struct bt_fn_server *srv;
    grpc_completion_queue *cq;
    pthread_t th;
    bool started;
} worker;

struct bt_fn_server {
    grpc_server *server;
    bt_fn_handler handler;
    void *arg;
    size_t max_msg_size;
    long grace_ms;
    int port;
    int nworkers;
    worker *workers;
    bool started;
};

static gpr_timespec inf_future(void)
{
    return gpr_inf_future(GPR_CLOCK_REALTIME);
}

/* Runs one batch on the worker's queue and waits for it; returns the event's success. */
static bool run_batch(worker *w, grpc_call *call, const grpc_op *ops, size_t n)
{
    if (grpc_call_start_batch(call, ops, n, w, NULL) != GRPC_CALL_OK)
        return false;
    grpc_event ev = grpc_completion_queue_next(w->cq, inf_future(), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Sends the reply (reply may be NULL) and the final status, then waits for the close. */
static void finish(worker *w, grpc_call *call, grpc_byte_buffer *reply, grpc_status_code st,
                   const char *msg)
{
    grpc_op ops[4];
    size_t n = 0;
    int cancelled = 0;
    grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");
    memset(ops, 0, sizeof ops);
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (reply) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = reply;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = st;
    ops[n++].data.send_status_from_server.status_details = msg && *msg ? &details : NULL;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &cancelled;
    run_batch(w, call, ops, n);
    grpc_slice_unref(details);
}

/* Receives the request, runs the handler and answers. */
static void serve_call(worker *w, grpc_call *call, const grpc_call_details *details)
{
    bt_fn_server *s = w->srv;
    if (!grpc_slice_eq(details->method, grpc_slice_from_static_string(BT_FN_METHOD))) {
        char *m = bt_fn_slice_str(details->method), msg[256];
        snprintf(msg, sizeof msg, "unknown method %.200s", m ? m : "?");
        free(m);
        finish(w, call, NULL, GRPC_STATUS_UNIMPLEMENTED, msg);
        return;
    }
    grpc_byte_buffer *req = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &req;
    if (!run_batch(w, call, &op, 1)) {
        if (req)
            grpc_byte_buffer_destroy(req);
        return; /* cancelled: nothing to answer */
    }
    if (!req) {
        finish(w, call, NULL, GRPC_STATUS_INTERNAL, "no request message");
        return;
    }
    bt_fn_msg in, out;
    char err[1024] = "", derr[128];
    int rc = bt_fn_msg_from_bb(req, &in, derr, sizeof derr);
    grpc_byte_buffer_destroy(req);
    if (rc < 0) {
        snprintf(err, sizeof err, "error unmarshalling request: %s", derr);
        finish(w, call, NULL, GRPC_STATUS_INTERNAL, err);
        return;
    }
    /* out starts as the request without its payload (see bt_fn_handler). */
    if (bt_fn_msg_copy(&out, &in) < 0 || bt_fn_msg_set_payload(&out, NULL, 0) < 0) {
        bt_fn_msg_clear(&in);
        bt_fn_msg_clear(&out);
        finish(w, call, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    rc = s->handler(&in, &out, err, sizeof err, s->arg);
    bt_fn_msg_clear(&in);
    if (rc < 0) {
        bt_fn_msg_clear(&out);
        finish(w, call, NULL, GRPC_STATUS_UNKNOWN, *err ? err : "function failed");
        return;
    }
    size_t size = 0;
    grpc_byte_buffer *reply = bt_fn_msg_to_bb(&out, &size);
    bt_fn_msg_clear(&out);
    if (!reply) {
        finish(w, call, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else if (size > s->max_msg_size) {
        /* Say why here rather than let the transport fail the call less clearly. */
        snprintf(err, sizeof err, "reply larger than max (%zu vs. %zu)", size, s->max_msg_size);
        finish(w, call, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, err);
    } else {
        finish(w, call, reply, GRPC_STATUS_OK, NULL);
    }
    if (reply)
        grpc_byte_buffer_destroy(reply);
}

static void *worker_main(void *p)
{
    worker *w = p;
    for (;;) {
        grpc_call *call = NULL;
        grpc_call_details details;
        grpc_metadata_array md;
        grpc_call_details_init(&details);
        grpc_metadata_array_init(&md);
        bool ok = false;
        if (grpc_server_request_call(w->srv->server, &call, &details, &md, w->cq, w->cq, w) ==
            GRPC_CALL_OK) {
            grpc_event ev = grpc_completion_queue_next(w->cq, inf_future(), NULL);
            ok = ev.type == GRPC_OP_COMPLETE && ev.success;
        }
        if (ok)
            serve_call(w, call, &details);
        if (call)
            grpc_call_unref(call);
        grpc_call_details_destroy(&details);
        grpc_metadata_array_destroy(&md);
        if (!ok)
            break; /* the server is shutting down: requests fail from now on */
    }
    /* Only this thread starts operations on its queue, so it alone may shut it down: the
     * server's shutdown notification can come while a cancelled call's handler still runs
     * here, and must not take the queue away from it. */
    grpc_completion_queue_shutdown(w->cq);
    while (grpc_completion_queue_next(w->cq, inf_future(), NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
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
static void server_free(bt_fn_server *s)
{
    if (s->server)
        grpc_server_destroy(s->server);
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].cq)
            grpc_completion_queue_destroy(s->workers[i].cq);
    free(s->workers);
    free(s);
    grpc_shutdown();
}

/* Joins the workers, which shut their own queue down on leaving; shuts down and drains
 * the queues of workers never started. */
static void stop_workers(bt_fn_server *s)
{
    for (int i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        if (w->started) {
            pthread_join(w->th, NULL);
        } else if (w->cq) {
            grpc_completion_queue_shutdown(w->cq);
            while (grpc_completion_queue_next(w->cq, inf_future(), NULL).type !=
                   GRPC_QUEUE_SHUTDOWN)
                ;
        }
    }
}

/* Graceful shutdown of the gRPC server: grace for running calls, then cancel them. */
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
    for (int i = 0; i < nw; i++) {
        ws[i].srv = s;
        ws[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, ws[i].cq, NULL);
    }
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
