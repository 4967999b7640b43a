/* The function client: one gRPC channel per client, and per call a call object with a
 * completion queue of its own while it runs, so any number of threads may call at once
 * without a poller thread (the calling thread drives its own call). The queues are kept
 * for the next calls rather than created and shut down for each. */
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

/* Idle completion queues kept per client: as many as calls ran at once, up to this. */
#define CQ_CACHE_MAX 64

struct bt_fn_client {
    grpc_channel *ch;
    pthread_mutex_t mu;
    grpc_completion_queue *idle[CQ_CACHE_MAX]; /* queues without a pending event [mu] */
    size_t nidle;                              /* [mu] */
    long timeout_ms;
    bool wait_for_ready;
    char *address;
};

/* Reconnect quickly: peers are runtime instances on this host or this docker network,
 * which come up within a fraction of a second (gRPC's default starts at 1 s). */
#define RECONNECT_INITIAL_MS 100
#define RECONNECT_MAX_MS 2000

static grpc_arg int_arg(const char *key, int v)
{
    grpc_arg a;
    a.type = GRPC_ARG_INTEGER;
    a.key = (char *)key;
    a.value.integer = v;
    return a;
}

static grpc_arg str_arg(const char *key, const char *v)
{
    grpc_arg a;
    a.type = GRPC_ARG_STRING;
    a.key = (char *)key;
    a.value.string = (char *)v;
    return a;
}

static grpc_channel_credentials *client_creds(const bt_fn_client_options *o, char *err,
                                              size_t errlen)
{
    bool has_cert = o->cert && *o->cert, has_key = o->key && *o->key;
    bool has_ca = o->ca && *o->ca;
    if (has_cert != has_key) {
        snprintf(err, errlen, "tls: cert and key must be given together");
        return NULL;
    }
    if (!has_ca && !has_cert)
        return grpc_insecure_credentials_create();
    char *ca = NULL, *cert = NULL, *key = NULL;
    grpc_channel_credentials *cr = NULL;
    if ((has_ca && !(ca = bt_fn_read_pem("ca", o->ca, err, errlen))) ||
        (has_cert && !(cert = bt_fn_read_pem("cert", o->cert, err, errlen))) ||
        (has_key && !(key = bt_fn_read_pem("key", o->key, err, errlen))))
        goto out;
    grpc_ssl_pem_key_cert_pair pair = {key, cert};
    cr = grpc_ssl_credentials_create(ca, has_cert ? &pair : NULL, NULL, NULL);
    if (!cr)
        snprintf(err, errlen, "tls: cannot create client credentials");
out:
    free(ca);
    free(cert);
    free(key);
    return cr;
}

bt_fn_client *bt_fn_client_new(const char *address, const bt_fn_client_options *o, char *err,
                               size_t errlen)
{
    bt_fn_client_options def = {0};
    if (!o)
        o = &def;
    if (!address || !*address) {
        snprintf(err, errlen, "function client: address required");
        return NULL;
    }
    size_t max = o->max_msg_size ? o->max_msg_size : BT_FN_DEFAULT_MAX_MSG_SIZE;
    if (max > INT_MAX) {
        snprintf(err, errlen, "function client: max message size %zu too large", max);
        return NULL;
    }
    bt_fn_client *c = calloc(1, sizeof *c);
    if (!c || !(c->address = strdup(address))) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : BT_FN_DEFAULT_TIMEOUT_MS;
    c->wait_for_ready = o->wait_for_ready;

    bt_fn_grpc_init();
    grpc_channel_credentials *creds = client_creds(o, err, errlen);
    if (!creds) {
        grpc_shutdown();
        pthread_mutex_destroy(&c->mu);
        free(c->address);
        free(c);
        return NULL;
    }
    grpc_arg args[8];
    size_t n = 0;
    args[n++] = int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)max);
    args[n++] = int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, (int)max);
    /* Runtimes are local: an http_proxy in the environment must not capture the calls. */
    args[n++] = int_arg(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    /* Our own connection: a replaced instance at the same address starts afresh instead
     * of inheriting another client's backoff state from the global subchannel pool. */
    args[n++] = int_arg(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args[n++] = int_arg(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, RECONNECT_INITIAL_MS);
    args[n++] = int_arg(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, RECONNECT_MAX_MS);
    if (o->server_name && *o->server_name)
        args[n++] = str_arg(GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, o->server_name);
    grpc_channel_args cargs = {n, args};
    c->ch = grpc_channel_create(address, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (!c->ch) {
        snprintf(err, errlen, "function client: cannot create a channel to %s", address);
        bt_fn_client_free(c);
        return NULL;
    }
    return c;
}

static void cq_destroy(grpc_completion_queue *cq);

void bt_fn_client_free(bt_fn_client *c)
{
    if (!c)
        return;
    if (c->ch)
        grpc_channel_destroy(c->ch);
    for (size_t i = 0; i < c->nidle; i++)
        cq_destroy(c->idle[i]);
    pthread_mutex_destroy(&c->mu);
    free(c->address);
    free(c);
    grpc_shutdown();
}

static gpr_timespec deadline_in(long ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* Shuts a completion queue down, drains it and destroys it. */
static void cq_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

/* An idle queue of the client's, or a new one. */
static grpc_completion_queue *cq_take(bt_fn_client *c)
{
    grpc_completion_queue *cq = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->nidle > 0)
        cq = c->idle[--c->nidle];
    pthread_mutex_unlock(&c->mu);
    return cq ? cq : grpc_completion_queue_create_for_next(NULL);
}

/* Keeps a queue whose call completed (and was released) for the next call. */
static void cq_give(bt_fn_client *c, grpc_completion_queue *cq)
{
    pthread_mutex_lock(&c->mu);
    if (c->nidle < CQ_CACHE_MAX) {
        c->idle[c->nidle++] = cq;
        cq = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (cq)
        cq_destroy(cq);
}

/* While waiting for a connection: a refused dial is made again after CONNECT_POLL_MS, then
 * 1.5 times longer each time up to CONNECT_POLL_MAX_MS, instead of after gRPC's backoff (100
 * ms at least): a starting runtime usually listens a few ms after the first refusal, and a
 * peer that stays down is not dialled hundreds of times a second. */
#define CONNECT_POLL_MS 2
#define CONNECT_POLL_MAX_MS 50

int bt_fn_client_connect(bt_fn_client *c, long timeout_ms, char *err, size_t errlen)
{
    long ms = timeout_ms > 0 ? timeout_ms : c->timeout_ms;
    gpr_timespec deadline = deadline_in(ms);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    int rc = BT_FN_EUNAVAILABLE;
    long poll_ms = CONNECT_POLL_MS;
    for (;;) {
        grpc_connectivity_state st = grpc_channel_check_connectivity_state(c->ch, 1);
        if (st == GRPC_CHANNEL_READY) {
            rc = BT_FN_OK;
            break;
        }
        if (st == GRPC_CHANNEL_SHUTDOWN ||
            gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), deadline) >= 0)
            break;
        /* refused: wait poll_ms (unless the state changes), then dial again */
        bool refused = st == GRPC_CHANNEL_TRANSIENT_FAILURE;
        gpr_timespec until = refused ? deadline_in(poll_ms) : deadline;
        if (gpr_time_cmp(until, deadline) > 0)
            until = deadline;
        grpc_channel_watch_connectivity_state(c->ch, st, until, cq, c);
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            break;
        if (refused && !ev.success) { /* no change within poll_ms */
            grpc_channel_reset_connect_backoff(c->ch);
            poll_ms = poll_ms + poll_ms / 2 > CONNECT_POLL_MAX_MS ? CONNECT_POLL_MAX_MS
                                                                  : poll_ms + poll_ms / 2;
        }
    }
    cq_destroy(cq);
    if (rc != BT_FN_OK)
        snprintf(err, errlen, "connect to %s timed out after %ld ms", c->address, ms);
    return rc;
}

/* Go grpc's text of a failed RPC. */
static int rpc_error(int status, const char *desc, int *code, char *err, size_t errlen)
{
    if (code)
        *code = status;
    snprintf(err, errlen, "rpc error: code = %s desc = %s", bt_fn_code_name(status), desc);
    return status == GRPC_STATUS_DEADLINE_EXCEEDED || status == GRPC_STATUS_UNAVAILABLE
               ? BT_FN_EUNAVAILABLE
               : BT_FN_EFAIL;
}

/* One call in flight: what its single batch fills in, and whom to tell. */
typedef struct {
    bt_fn_client *c;
    grpc_call *call;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
    bt_fn_done done;             /* async calls */
    bt_fn_batch_done batch_done; /* async batches (CallBatch) */
    size_t n;                    /* messages in the batch */
    void *arg;
} call_state;

static void call_state_free(call_state *s)
{
    if (s->call)
        grpc_call_unref(s->call);
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    if (s->recv_bb)
        grpc_byte_buffer_destroy(s->recv_bb);
    if (s->send_bb)
        grpc_byte_buffer_destroy(s->send_bb);
    free(s);
}

static call_state *call_send(bt_fn_client *c, grpc_completion_queue *cq, call_state *s,
                             const char *method_path, long timeout_ms, char *err, size_t errlen);

/* Starts a call of in whose completion comes on cq with the state as tag. The state, or
 * NULL with err (nothing pending). */
static call_state *call_begin(bt_fn_client *c, grpc_completion_queue *cq, const bt_fn_msg *in,
                              long timeout_ms, bt_fn_done done, void *arg, char *err, size_t errlen)
{
    call_state *s = calloc(1, sizeof *s);
    size_t size;
    if (!s || !(s->send_bb = bt_fn_msg_to_bb(in, &size))) {
        free(s);
        snprintf(err, errlen, "out of memory encoding FunctionMessage");
        return NULL;
    }
    s->done = done; /* set before the start: the completion may come at once */
    s->arg = arg;
    return call_send(c, cq, s, BT_FN_METHOD, timeout_ms, err, errlen);
}

/* Starts s (its send_bb and callback set) as a call of method. s, or NULL with err (s freed). */
static call_state *call_send(bt_fn_client *c, grpc_completion_queue *cq, call_state *s,
                             const char *method_path, long timeout_ms, char *err, size_t errlen)
{
    s->c = c;
    s->status = GRPC_STATUS_UNKNOWN;
    s->details = grpc_empty_slice();
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    grpc_slice method = grpc_slice_from_static_string(method_path);
    s->call =
        grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                 deadline_in(timeout_ms > 0 ? timeout_ms : c->timeout_ms), NULL);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].flags = c->wait_for_ready ? GRPC_INITIAL_METADATA_WAIT_FOR_READY : 0;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    ops[5].data.recv_status_on_client.status = &s->status;
    ops[5].data.recv_status_on_client.status_details = &s->details;
    grpc_call_error ce =
        s->call ? grpc_call_start_batch(s->call, ops, 6, s, NULL) : GRPC_CALL_ERROR;
    if (ce != GRPC_CALL_OK) {
        snprintf(err, errlen, "cannot start the call to %s: %s", c->address,
                 grpc_call_error_to_string(ce));
        call_state_free(s);
        return NULL;
    }
    return s;
}

/* The outcome of a completed call into out (zeroed first), *code and err; frees s. */
static int call_end(call_state *s, bt_fn_msg *out, int *code, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (code)
        *code = GRPC_STATUS_UNKNOWN;
    int rc;
    if (s->status != GRPC_STATUS_OK) {
        char *d = bt_fn_slice_str(s->details);
        rc = rpc_error(s->status, d ? d : "", code, err, errlen);
        free(d);
    } else if (!s->recv_bb) {
        rc = rpc_error(GRPC_STATUS_INTERNAL, "server sent no reply", code, err, errlen);
    } else {
        char derr[128];
        if (bt_fn_msg_from_bb(s->recv_bb, out, derr, sizeof derr) < 0) {
            char desc[192];
            snprintf(desc, sizeof desc, "failed to unmarshal the reply: %s", derr);
            rc = rpc_error(GRPC_STATUS_INTERNAL, desc, code, err, errlen);
        } else {
            rc = BT_FN_OK;
            if (code)
                *code = GRPC_STATUS_OK;
        }
    }
    call_state_free(s);
    return rc;
}

int bt_fn_call_ex(bt_fn_client *c, const bt_fn_msg *in, bt_fn_msg *out, long timeout_ms, int *code,
                  char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (code)
        *code = GRPC_STATUS_UNKNOWN;
    grpc_completion_queue *cq = cq_take(c);
    call_state *s = call_begin(c, cq, in, timeout_ms, NULL, NULL, err, errlen);
    if (!s) {
        cq_give(c, cq);
        return BT_FN_EFAIL;
    }
    /* The call's deadline bounds this wait: RECV_STATUS always completes. */
    grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    int rc = call_end(s, out, code, err, errlen);
    cq_give(c, cq);
    return rc;
}

int bt_fn_call(bt_fn_client *c, const bt_fn_msg *in, bt_fn_msg *out, char *err, size_t errlen)
{
    return bt_fn_call_ex(c, in, out, 0, NULL, err, errlen);
}

/* ---- asynchronous calls ---------------------------------------------------------------- */

struct bt_fn_async {
    grpc_completion_queue *cq;
};

bt_fn_async *bt_fn_async_new(void)
{
    bt_fn_async *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    bt_fn_grpc_init();
    q->cq = grpc_completion_queue_create_for_next(NULL);
    return q;
}

int bt_fn_call_start(bt_fn_client *c, bt_fn_async *q, const bt_fn_msg *in, long timeout_ms,
                     bt_fn_done done, void *arg, char *err, size_t errlen)
{
    return call_begin(c, q->cq, in, timeout_ms, done, arg, err, errlen) ? BT_FN_OK : BT_FN_EFAIL;
}

int bt_fn_call_batch_start(bt_fn_client *c, bt_fn_async *q, const bt_fn_msg *const *in, size_t n,
                           long timeout_ms, bt_fn_batch_done done, void *arg, char *err,
                           size_t errlen)
{
    call_state *s = calloc(1, sizeof *s);
    Baetyl__FunctionMessage *pbs = calloc(n ? n : 1, sizeof *pbs);
    Baetyl__FunctionMessage **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (s && pbs && ptrs) {
        for (size_t i = 0; i < n; i++) {
            bt_fn_msg_to_pb(in[i], &pbs[i]);
            ptrs[i] = &pbs[i];
        }
        Baetyl__FunctionMessages req = BAETYL__FUNCTION_MESSAGES__INIT;
        req.n_messages = n;
        req.messages = ptrs;
        size_t size;
        s->send_bb = bt_fn_pb_to_bb(&req.base, &size);
    }
    free(pbs);
    free(ptrs);
    if (!s || !s->send_bb) {
        free(s);
        snprintf(err, errlen, "out of memory encoding FunctionMessages");
        return BT_FN_EFAIL;
    }
    s->batch_done = done;
    s->n = n;
    s->arg = arg;
    return call_send(c, q->cq, s, BT_FN_METHOD_BATCH, timeout_ms, err, errlen) ? BT_FN_OK
                                                                               : BT_FN_EFAIL;
}

/* The results of a completed batch into *res (calloc'd, s->n of them); rc as call_end. */
static int batch_end(call_state *s, bt_fn_result **res, int *code, char *err, size_t errlen)
{
    *res = NULL;
    *code = GRPC_STATUS_UNKNOWN;
    if (s->status != GRPC_STATUS_OK) {
        char *d = bt_fn_slice_str(s->details);
        int rc = rpc_error(s->status, d ? d : "", code, err, errlen);
        free(d);
        return rc;
    }
    Baetyl__FunctionResults *pb = s->recv_bb
                                      ? (Baetyl__FunctionResults *)bt_fn_pb_from_bb(
                                            s->recv_bb, &baetyl__function_results__descriptor)
                                      : NULL;
    if (!pb || pb->n_results != s->n) {
        char desc[128];
        snprintf(desc, sizeof desc, "failed to unmarshal the reply: %s",
                 !pb ? "invalid FunctionResults" : "not one result per message");
        if (pb)
            baetyl__function_results__free_unpacked(pb, NULL);
        return rpc_error(GRPC_STATUS_INTERNAL, desc, code, err, errlen);
    }
    bt_fn_result *r = calloc(s->n ? s->n : 1, sizeof *r);
    if (!r) {
        baetyl__function_results__free_unpacked(pb, NULL);
        return rpc_error(GRPC_STATUS_UNKNOWN, "out of memory", code, err, errlen);
    }
    for (size_t i = 0; i < s->n; i++) {
        const Baetyl__FunctionResult *x = pb->results[i];
        char e[1024], derr[128];
        r[i].code = (int)x->code;
        if (x->code == GRPC_STATUS_OK &&
            bt_fn_msg_from_pb(x->message, &r[i].msg, derr, sizeof derr) < 0) {
            char desc[192];
            snprintf(desc, sizeof desc, "failed to unmarshal the reply: %s", derr);
            rpc_error(GRPC_STATUS_INTERNAL, desc, &r[i].code, e, sizeof e);
            r[i].err = strdup(e);
        } else if (x->code != GRPC_STATUS_OK) {
            rpc_error((int)x->code, x->error ? x->error : "", NULL, e, sizeof e);
            r[i].err = strdup(e);
        }
    }
    baetyl__function_results__free_unpacked(pb, NULL);
    *res = r;
    *code = GRPC_STATUS_OK;
    return BT_FN_OK;
}

/* Runs the callback of one completed batch. */
static void batch_complete(call_state *s)
{
    bt_fn_result *res;
    int code;
    char err[1024];
    bt_fn_batch_done done = s->batch_done;
    void *arg = s->arg;
    size_t n = s->n;
    int rc = batch_end(s, &res, &code, err, sizeof err);
    call_state_free(s);
    done(arg, rc, code, res, rc == BT_FN_OK ? n : 0, rc == BT_FN_OK ? "" : err);
    for (size_t i = 0; res && i < n; i++) {
        bt_fn_msg_clear(&res[i].msg);
        free(res[i].err);
    }
    free(res);
}

/* Runs the callback of one completed call. */
static void async_complete(call_state *s)
{
    if (s->batch_done) {
        batch_complete(s);
        return;
    }
    bt_fn_msg out;
    int code;
    char err[1024];
    bt_fn_done done = s->done;
    void *arg = s->arg;
    int rc = call_end(s, &out, &code, err, sizeof err);
    done(arg, rc, code, &out, rc == BT_FN_OK ? "" : err);
    bt_fn_msg_clear(&out);
}

int bt_fn_async_poll(bt_fn_async *q, long timeout_ms)
{
    gpr_timespec first =
        timeout_ms < 0 ? gpr_inf_future(GPR_CLOCK_REALTIME) : deadline_in(timeout_ms);
    int n = 0;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(q->cq, first, NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            return n;
        async_complete(ev.tag);
        n++;
        /* the rest of the batch: whatever completed meanwhile, without sleeping */
        first = gpr_inf_past(GPR_CLOCK_MONOTONIC);
    }
}

void bt_fn_async_free(bt_fn_async *q)
{
    if (!q)
        return;
    cq_destroy(q->cq);
    free(q);
    grpc_shutdown();
}
