/* One rule (SPEC §12): its own MQTT connection (the hub settings with the rule's client id
 * and subscription; a persistent session by default), a queue, and two threads: a
 * dispatcher that starts the calls without waiting for them (up to `instance.max` x
 * `instance.concurrent` in flight, the pool's limit), and a completer that takes their
 * completions in batches from one queue (bt_fn_async), publishes the results and only
 * then acknowledges a QoS 1 input. No thread per call: calls are in flight on the
 * instances' HTTP/2 streams, not on threads. A call carries one input (Call) or, when
 * several wait, its share of them (CallBatch: one result each, so each input is retried,
 * failed or published on its own as after a Call).
 *
 * Order: the dispatcher takes inputs from the queue in arrival order and appends each to
 * the in-flight list, so that list is in input order too. The calls run side by side; a
 * failed attempt goes back to the dispatcher (retries first) and keeps its place in the
 * list. A finished one is marked done, and whichever thread finds the list's head done
 * publishes from the head while the head is done (one publisher at a time). The client
 * sends on one connection in the order it is given, so outputs leave in input order even
 * when an earlier call is retried or slower than a later one. Results waiting for an earlier
 * one are bounded: no new input is taken while INFLIGHT_PER_CALL x BATCH_MAX x the calls the
 * pool allows are in flight, at most INFLIGHT_ITEMS_MAX (a call that hangs until its
 * timeout must not let finished results of a QoS 0 flood pile up).
 *
 * The client's callbacks run on its network thread and must not block, so messages are
 * queued and the calls started by the dispatcher. A QoS 1 input is acknowledged once its output
 * was PUBACKed (QoS 1 output), written (QoS 0 output) or not needed (empty result), with
 * the SDK's ack token, which acknowledges nothing once its connection ended: the hub then
 * sends the message again and that copy is the one acknowledged. QoS 0 input waits in a
 * bounded queue (the hub does not bound what it sends at QoS 0); when that is full new QoS 0
 * messages are dropped, logged.
 *
 * No input may block the rule: a result over the hub's message.length.max (which would make
 * the hub close the connection, and a QoS 1 input come back forever) and the error JSON of a
 * failed call are replaced or cut to fit; the input is then acknowledged, counted and, when
 * the rule has a `deadletter` topic, parked there as it came. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fm.h"
#include "metrics.h"

#define QOS0_QUEUE_MAX 10000
#define QOS0_QUEUE_BYTES ((size_t)64 << 20)
#define DROP_LOG_EVERY_MS 10000
/* An error that replaces an oversized result stays short: the input is cut to fit. */
#define SHORT_ERROR_MAX 1024
/* Inputs in flight per call the pool allows (instance.max x instance.concurrent, counted
 * up to CALLS_MAX): room for finished results waiting for an earlier one. */
#define CALLS_MAX 128
#define INFLIGHT_PER_CALL 2
/* Messages per CallBatch at most (and the batch within the function's message.length.max);
 * in-flight inputs are bounded by INFLIGHT_PER_CALL x calls x BATCH_MAX, up to
 * INFLIGHT_ITEMS_MAX. */
#define BATCH_MAX 64
#define INFLIGHT_ITEMS_MAX 2048
#define SPREAD_MAX 8
#define THREAD_STACK ((size_t)512 << 10)
/* How often the completer looks up from its queue to see whether the rule stops. */
#define POLL_MS 100

typedef struct fm_item {
    struct fm_item *next;
    bt_fn_msg msg;         /* points into this allocation, and at the rule's function name */
    bt_mqtt_ack_token ack; /* QoS 1: what acknowledges it */
    size_t size;
    size_t esize;                  /* protobuf size of msg */
    struct fm_item *inflight_next; /* the next input taken by the dispatcher */
    struct fm_item *retry_next;    /* on the retry list [mu] */
    struct fm_rule *rule;
    fm_instance *inst; /* of the call in flight */
    long attempts;     /* made so far */
    int64_t t0;        /* metrics clock at the first attempt */
    bool done;         /* the call returned: rv, out, err are set [mu] */
    int rv;            /* of fm_invoke */
    bt_fn_msg out;
    char *err; /* rv == -1: what failed (malloc'd) */
    char invoke_id[37];
} fm_item;

struct fm_rule {
    const fm_rule_cfg *cfg;
    fm_pool *pool;
    char clientid[256];
    bt_mqtt_client *cli;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fm_item *head, *tail;
    size_t qlen;                       /* items from head to tail [mu] */
    fm_item *inflight, *inflight_tail; /* taken by the dispatcher, in input order [mu] */
    size_t ninflight;                  /* their number [mu] */
    size_t inflight_max;               /* set before the threads start */
    fm_item *retry, *retry_tail;       /* failed attempts to make again, first come [mu] */
    size_t pending;                    /* calls started and not completed [mu] */
    bool publishing;                   /* a thread publishes from the in-flight head [mu] */
    bool resume;           /* results wait for the completer to publish them (handed over) [mu] */
    size_t room_max;       /* publishes the client holds at most (buffersize, its QoS 1 window) */
    size_t q0len, q0bytes; /* QoS 0 items queued */
    bool stopping;
    bool dispatched; /* the dispatcher left: no call starts any more [mu] */
    bt_fn_async *q;  /* the calls' completions */
    pthread_t dispatcher, completer;
    bool threads; /* both started */
    fm_fatal_fn fatal;
    void *fatal_arg;
    int64_t drop_logged;
    fm_rule_stats st; /* [mu] */
};

static void ack(fm_rule *r, bt_mqtt_ack_token token)
{
    if (token.v)
        bt_mqtt_client_ack(r->cli, token);
}

/* Called once for every publish accepted with a tag: PUBACKed, or cancelled at stop. */
static void on_publish_complete(bt_mqtt_client *c, void *tag, int status, void *userdata)
{
    fm_rule *r = userdata;
    bt_mqtt_ack_token *a = tag;
    if (!a)
        return;
    if (status == BT_MQTT_OK)
        ack(r, *a);
    free(a);
}

static void on_connected(bt_mqtt_client *c, bool session_present, void *userdata)
{
    fm_rule *r = userdata;
    bt_logkv(BT_LOG_INFO, "rule connected to the hub", "rule", r->clientid, "topic",
             r->cfg->subscribe.topic, NULL);
}

static void on_connection_lost(bt_mqtt_client *c, const char *reason, void *userdata)
{
    fm_rule *r = userdata;
    bt_logkv(BT_LOG_WARN, "rule lost its hub connection", "rule", r->clientid, "reason", reason,
             NULL);
}

static void on_error(bt_mqtt_client *c, const char *reason, void *userdata)
{
    fm_rule *r = userdata;
    bt_logkv(BT_LOG_ERROR, "rule stopped", "rule", r->clientid, "reason", reason, NULL);
    if (r->fatal)
        r->fatal(r->fatal_arg, reason);
}

static size_t take_locked(fm_rule *r, fm_item **items, size_t max);
static void start_inline(fm_rule *r, fm_item *it, fm_instance *inst);
static bool first_attempt(fm_rule *r, fm_item *it);

static void on_message(bt_mqtt_client *c, const bt_mqtt_message *m, void *userdata)
{
    fm_rule *r = userdata;
    size_t tlen = strlen(m->topic);
    size_t size = sizeof(fm_item) + tlen + 1 + m->payload_len + 1;
    pthread_mutex_lock(&r->mu);
    if (r->stopping) {
        pthread_mutex_unlock(&r->mu);
        return; /* not acknowledged: sent again after the restart */
    }
    if (m->qos == 0 && (r->q0len >= QOS0_QUEUE_MAX || r->q0bytes + size > QOS0_QUEUE_BYTES)) {
        r->st.dropped++;
        int64_t now = bt_now_ms();
        if (now - r->drop_logged >= DROP_LOG_EVERY_MS) {
            r->drop_logged = now;
            char n[32];
            snprintf(n, sizeof n, "%llu", r->st.dropped);
            bt_logkv(BT_LOG_WARN, "rule queue full: QoS 0 messages dropped", "rule", r->clientid,
                     "dropped", n, NULL);
        }
        pthread_mutex_unlock(&r->mu);
        return;
    }
    pthread_mutex_unlock(&r->mu);

    fm_item *it = malloc(size);
    if (!it) {
        bt_logkv(BT_LOG_ERROR, "out of memory: message dropped", "rule", r->clientid, NULL);
        return;
    }
    memset(it, 0, sizeof *it);
    char *topic = (char *)(it + 1);
    uint8_t *payload = (uint8_t *)topic + tlen + 1;
    memcpy(topic, m->topic, tlen + 1);
    if (m->payload_len)
        memcpy(payload, m->payload, m->payload_len);
    payload[m->payload_len] = 0;
    bt_uuid4(it->invoke_id);
    it->size = size;
    it->ack = m->ack;
    it->msg = (bt_fn_msg){
        .id = m->packet_id,
        .qos = m->qos,
        .topic = topic,
        .payload = payload,
        .payload_len = m->payload_len,
        .timestamp = (int64_t)time(NULL),
        .function_name = r->cfg->function,
        .function_invoke_id = it->invoke_id,
    };
    it->esize = bt_fn_msg_encoded_size(&it->msg);

    pthread_mutex_lock(&r->mu);
    r->st.received++;
    if (m->qos == 0) {
        r->q0len++;
        r->q0bytes += size;
    }
    if (r->tail)
        r->tail->next = it;
    else
        r->head = it;
    r->tail = it;
    r->qlen++;
    fm_instance *inst = NULL;
    if (r->ninflight == 0 && !r->retry && r->head == it && !r->stopping &&
        it->esize <= (size_t)fm_pool_function(r->pool)->call.message_max)
        inst = fm_pool_try_get(r->pool);
    if (!inst) {
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    fm_item *taken;
    take_locked(r, &taken, 1); /* it: the only input waiting */
    r->pending++;
    pthread_mutex_unlock(&r->mu);
    start_inline(r, it, inst);
}

/* Adds one to the counter at *n and logs what happened with the new total ([mu] taken). */
static void count(fm_rule *r, unsigned long long *n, bt_log_level lvl, const char *what,
                  const fm_item *it, const char *why)
{
    pthread_mutex_lock(&r->mu);
    unsigned long long total = ++*n;
    pthread_mutex_unlock(&r->mu);
    char t[32];
    snprintf(t, sizeof t, "%llu", total);
    bt_logkv(lvl, what, "rule", r->clientid, "function", r->cfg->function, "invokeid",
             it->invoke_id, "error", why, "total", t, NULL);
}

/* Publishes one message for the input; token (zero: none) acknowledges the input once the
 * hub has it (PUBACK of a QoS 1 publish, at once for QoS 0). A message the client refuses
 * (over the hub's limit…) is logged, counted and the input acknowledged all the same: it
 * would be refused again on every redelivery. */
static int publish_for(fm_rule *r, const fm_item *it, const char *topic, const void *payload,
                       size_t len, int qos, bt_mqtt_ack_token token)
{
    bt_mqtt_ack_token *tag = NULL;
    if (qos == 1 && token.v) {
        if (!(tag = malloc(sizeof *tag))) {
            /* unacknowledged: the hub sends the input again after a reconnect */
            bt_logkv(BT_LOG_ERROR, "out of memory: result not published", "rule", r->clientid,
                     NULL);
            return BT_MQTT_ENOMEM;
        }
        *tag = token;
    }
    char perr[256];
    int prc = bt_mqtt_client_publish_wait(r->cli, topic, payload, len, qos, false, tag, -1, perr,
                                          sizeof perr);
    if (prc == BT_MQTT_OK) {
        if (!tag)
            ack(r, token);
        return prc;
    }
    free(tag); /* refused: no completion will come */
    if (prc == BT_MQTT_ESTOPPED)
        return prc; /* stopping: a QoS 1 input stays unacknowledged */
    char why[512];
    snprintf(why, sizeof why, "topic (%s): %s", topic, perr);
    count(r, &r->st.refused, BT_LOG_ERROR, "message not published", it, why);
    ack(r, token);
    return prc;
}

/* Publishes the result of a call (rv of fm_invoke), or a bounded error JSON and parks the
 * input on the dead-letter topic when the rule has one; acknowledges. */
static void publish_result(fm_rule *r, fm_item *it, int rv, const bt_fn_msg *out, char *err,
                           size_t errlen)
{
    const fm_rule_cfg *rc = r->cfg;
    int qos = it->msg.qos < (uint32_t)rc->publish.qos ? (int)it->msg.qos : (int)rc->publish.qos;
    size_t room = bt_mqtt_client_payload_max(r->cli, rc->publish.topic, qos);
    const void *payload = NULL;
    size_t len = 0;
    char *ej = NULL;
    if (rv == 0 && out->payload_len <= room) {
        payload = out->payload;
        len = out->payload_len;
        if (bt_log_enabled(BT_LOG_DEBUG)) {
            char n[32];
            snprintf(n, sizeof n, "%zu", len);
            bt_logkv(BT_LOG_DEBUG, "function called", "rule", r->clientid, "invokeid",
                     it->invoke_id, "result_bytes", n, NULL);
        }
    } else {
        if (rv == 0) {
            /* The hub would close the connection for it, and a QoS 1 input would come back
             * forever: a short error takes its place. */
            snprintf(err, errlen,
                     "result too large: %zu bytes, the hub takes at most %zu on topic (%s) "
                     "(hub.message.length.max)",
                     out->payload_len, room, rc->publish.topic);
            count(r, &r->st.oversized, BT_LOG_ERROR, "function result too large", it, err);
        } else {
            count(r, &r->st.failed, BT_LOG_ERROR, "function failed", it, err);
        }
        ej = fm_error_json(&it->msg, err,
                           rv == 0 && room > SHORT_ERROR_MAX ? SHORT_ERROR_MAX : room, &len);
        if (!ej) {
            bt_logkv(BT_LOG_ERROR, "out of memory: error message not published", "rule",
                     r->clientid, NULL);
            return;
        }
        payload = ej;
    }
    bool park = ej && rc->deadletter && *rc->deadletter;
    bt_mqtt_ack_token none = {0};
    if (len > 0) /* an empty result publishes nothing */
        publish_for(r, it, rc->publish.topic, payload, len, qos, park ? none : it->ack);
    if (park) {
        /* the input as it came, for whoever investigates or replays it */
        if (publish_for(r, it, rc->deadletter, it->msg.payload, it->msg.payload_len,
                        (int)it->msg.qos, it->ack) == BT_MQTT_OK)
            count(r, &r->st.parked, BT_LOG_WARN, "input parked on the dead-letter topic", it,
                  rc->deadletter);
    } else if (len == 0) {
        ack(r, it->ack);
    }
    free(ej);
}

/* Publishes the results at the head of the in-flight list that are done, in order, and
 * frees them, unless another thread does it. nonblock (a completion on a gRPC client's I/O
 * thread, whose other calls wait meanwhile): a result whose publish could wait for room
 * in the MQTT client is handed over to the completer instead (woken). */
static void publish_done(fm_rule *r, bool nonblock)
{
    char err[2048];
    pthread_mutex_lock(&r->mu);
    if (r->publishing) {
        pthread_mutex_unlock(&r->mu); /* the publisher takes them when their turn comes */
        return;
    }
    r->publishing = true;
    bool handed = false;
    while (r->inflight && r->inflight->done) {
        /* 2: a result and its input parked on the dead-letter topic */
        if (nonblock && bt_mqtt_client_pending(r->cli) + 2 > r->room_max) {
            handed = r->resume = true;
            break;
        }
        fm_item *h = r->inflight;
        r->inflight = h->inflight_next;
        if (!r->inflight)
            r->inflight_tail = NULL;
        if (r->ninflight-- == r->inflight_max)
            pthread_cond_broadcast(&r->cv); /* room to take inputs again */
        pthread_mutex_unlock(&r->mu);
        if (h->rv != -2) { /* -2: stopping, a QoS 1 input stays unacknowledged */
            snprintf(err, sizeof err, "%s", h->err ? h->err : "out of memory");
            publish_result(r, h, h->rv, &h->out, err, sizeof err);
        }
        bt_fn_msg_clear(&h->out);
        free(h->err);
        free(h);
        pthread_mutex_lock(&r->mu);
    }
    r->publishing = false;
    pthread_mutex_unlock(&r->mu);
    if (handed)
        bt_fn_async_wake(r->q);
}

/* Marks it done with rv (of fm_invoke) and e (malloc'd error text or NULL); then publishes
 * what is ready (publish_done). */
static void finished(fm_rule *r, fm_item *it, int rv, char *e, bool nonblock)
{
    pthread_mutex_lock(&r->mu);
    it->rv = rv;
    it->err = e;
    it->done = true;
    pthread_mutex_unlock(&r->mu);
    publish_done(r, nonblock);
}

/* Puts it on the retry list (mu held): the dispatcher takes it before new inputs. */
static void retry_push_locked(fm_rule *r, fm_item *it)
{
    it->retry_next = NULL;
    if (r->retry_tail)
        r->retry_tail->retry_next = it;
    else
        r->retry = it;
    r->retry_tail = it;
    pthread_cond_broadcast(&r->cv);
}

/* An attempt failed with err: the input goes back to the dispatcher while attempts are
 * left, else it is finished with the error. */
static void attempt_failed(fm_rule *r, fm_item *it, const char *err)
{
    it->attempts++;
    long attempts = r->cfg->retry_max < 1 ? 1 : r->cfg->retry_max;
    if (fm_pool_closed(r->pool)) {
        finished(r, it, -2, NULL, false);
        return;
    }
    if (it->attempts < attempts) {
        pthread_mutex_lock(&r->mu);
        retry_push_locked(r, it);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    fm_metrics_invoked(r->pool, it->t0, -1, it->attempts);
    finished(r, it, -1, strdup(err), false);
}

/* A successful attempt: it takes the reply over and is finished (nonblock: publish_done). */
static void attempt_ok(fm_rule *r, fm_item *it, bt_fn_msg *out, bool nonblock)
{
    it->out = *out; /* taken over */
    memset(out, 0, sizeof *out);
    fm_metrics_invoked(r->pool, it->t0, 0, it->attempts + 1);
    finished(r, it, 0, NULL, nonblock);
}

static void log_call_failed(fm_rule *r, fm_instance *inst, const fm_item *it, const char *err)
{
    bt_logkv(BT_LOG_WARN, "call failed", "function", fm_pool_function(r->pool)->name, "instance",
             fm_instance_name(inst), "invokeid", it->invoke_id, "error", err, NULL);
}

/* Set by complete_inline when the completion it accepted runs next on this thread. */
static __thread bool completing_inline;

/* Whether a call's completion may run on its gRPC client's I/O thread (bt_fn_inline_fn):
 * when it succeeded and is the only input in flight (a sequential caller), sparing the
 * completer's wake-up. A failed call goes to the completer: its retries and the instance's
 * end may block. */
static bool complete_inline(void *arg, bool succeeded)
{
    fm_item *it = arg;
    fm_rule *r = it->rule;
    if (!succeeded)
        return false;
    pthread_mutex_lock(&r->mu);
    bool lone = r->ninflight == 1;
    pthread_mutex_unlock(&r->mu);
    completing_inline = lone;
    return lone;
}

/* A call's completion, on the completer thread, or on the client's I/O thread when
 * complete_inline said so (then nothing here blocks). pending drops last: the rule is not
 * freed while a completion still runs. */
static void call_done(void *arg, int rc, int code, bt_fn_msg *out, const char *err)
{
    (void)code;
    bool nonblock = completing_inline;
    completing_inline = false;
    fm_item *it = arg;
    fm_rule *r = it->rule;
    if (rc != BT_FN_OK)
        log_call_failed(r, it->inst, it, err);
    fm_pool_put(r->pool, it->inst, rc == BT_FN_OK);
    it->inst = NULL;
    if (rc != BT_FN_OK)
        attempt_failed(r, it, err);
    else
        attempt_ok(r, it, out, nonblock);
    pthread_mutex_lock(&r->mu);
    r->pending--;
    pthread_mutex_unlock(&r->mu);
}

/* The inputs of one CallBatch. */
typedef struct {
    fm_rule *r;
    fm_instance *inst;
    size_t n;
    fm_item *items[BATCH_MAX];
} fm_batch;

/* A batch's completion, on the completer thread. Each message has its own outcome: one
 * that failed is retried (or finished with its error) like a failed Call, and as after a
 * failed Call the instance takes no more calls. A runtime without CallBatch answers
 * Unimplemented: remembered for the instance, and the messages go back to the dispatcher
 * without counting an attempt (it calls them one by one there). Aborted messages (the
 * reply was full) go back the same way. */
static void batch_done(void *arg, int rc, int code, bt_fn_result *res, size_t n, const char *err)
{
    fm_batch *b = arg;
    fm_rule *r = b->r;
    bool unimplemented = rc != BT_FN_OK && code == BT_FN_CODE_UNIMPLEMENTED;
    bool healthy = rc == BT_FN_OK || unimplemented;
    if (unimplemented && fm_instance_set_batches(b->inst, false)) {
        bt_logkv(BT_LOG_INFO, "instance has no CallBatch: it gets one message per call", "function",
                 fm_pool_function(r->pool)->name, "instance", fm_instance_name(b->inst), NULL);
    }
    for (size_t i = 0; i < b->n; i++) {
        const char *e = rc != BT_FN_OK ? err : res[i].err;
        int c = rc != BT_FN_OK ? code : res[i].code;
        if (unimplemented || c == BT_FN_CODE_OK || c == BT_FN_CODE_ABORTED)
            continue;
        healthy = false;
        log_call_failed(r, b->inst, b->items[i], e ? e : "");
    }
    if (rc == BT_FN_OK && bt_log_enabled(BT_LOG_DEBUG)) {
        char k[32];
        snprintf(k, sizeof k, "%zu", b->n);
        bt_logkv(BT_LOG_DEBUG, "batch called", "rule", r->clientid, "instance",
                 fm_instance_name(b->inst), "messages", k, NULL);
    }
    fm_pool_put(r->pool, b->inst, healthy);
    pthread_mutex_lock(&r->mu);
    r->pending--;
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < b->n; i++) {
        fm_item *it = b->items[i];
        int c = rc != BT_FN_OK ? code : res[i].code;
        if (unimplemented || (rc == BT_FN_OK && c == BT_FN_CODE_ABORTED)) {
            pthread_mutex_lock(&r->mu);
            retry_push_locked(r, it);
            pthread_mutex_unlock(&r->mu);
        } else if (rc != BT_FN_OK) {
            attempt_failed(r, it, err);
        } else if (c == BT_FN_CODE_OK) {
            attempt_ok(r, it, &res[i].msg, false);
        } else {
            attempt_failed(r, it, res[i].err ? res[i].err : "out of memory");
        }
    }
    (void)n; /* == b->n on success: the client checks one result per message */
    free(b);
}

/* Starts one Call of it on inst (a slot of it already taken). */
static void start_call(fm_rule *r, fm_item *it, fm_instance *inst)
{
    char err[1024];
    it->inst = inst;
    pthread_mutex_lock(&r->mu);
    r->pending++;
    pthread_mutex_unlock(&r->mu);
    const fm_function_cfg *f = fm_pool_function(r->pool);
    if (bt_fn_call_start(fm_instance_client(inst), r->q, &it->msg, (long)f->call.timeout, call_done,
                         it, err, sizeof err) != BT_FN_OK)
        call_done(it, BT_FN_EFAIL, BT_FN_CODE_UNKNOWN, &(bt_fn_msg){0}, err);
}

/* A lone input (nothing else in flight or queued) whose instance had room: its call is
 * started here, on the client's thread, sparing the dispatcher's wake-up (a sequential
 * caller's latency). Taken in order like any input (take_locked), so order holds. The
 * call could not start: the attempt is the dispatcher's to make (it handles failures, which
 * may block), so the input goes to the retry list without counting an attempt. */
static void start_inline(fm_rule *r, fm_item *it, fm_instance *inst)
{
    char err[1024];
    it->inst = inst;
    first_attempt(r, it); /* it fits: true */
    const fm_function_cfg *f = fm_pool_function(r->pool);
    if (bt_fn_call_start(fm_instance_client(inst), r->q, &it->msg, (long)f->call.timeout, call_done,
                         it, err, sizeof err) == BT_FN_OK)
        return;
    fm_pool_put(r->pool, inst, true);
    it->inst = NULL;
    pthread_mutex_lock(&r->mu);
    r->pending--;
    retry_push_locked(r, it);
    pthread_mutex_unlock(&r->mu);
}

/* Starts one CallBatch of items[0..n) on inst (a slot of it already taken). */
static void start_batch(fm_rule *r, fm_item **items, size_t n, fm_instance *inst)
{
    char err[1024];
    fm_batch *b = malloc(sizeof *b);
    const bt_fn_msg *msgs[BATCH_MAX];
    if (!b) { /* out of memory: the first alone, the others back to the dispatcher */
        pthread_mutex_lock(&r->mu);
        for (size_t i = 1; i < n; i++)
            retry_push_locked(r, items[i]);
        pthread_mutex_unlock(&r->mu);
        start_call(r, items[0], inst);
        return;
    }
    b->r = r;
    b->inst = inst;
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        b->items[i] = items[i];
        msgs[i] = &items[i]->msg;
    }
    pthread_mutex_lock(&r->mu);
    r->pending++;
    pthread_mutex_unlock(&r->mu);
    const fm_function_cfg *f = fm_pool_function(r->pool);
    if (bt_fn_call_batch_start(fm_instance_client(inst), r->q, msgs, n, (long)f->call.timeout,
                               batch_done, b, err, sizeof err) != BT_FN_OK)
        batch_done(b, BT_FN_EFAIL, BT_FN_CODE_UNKNOWN, NULL, 0, err);
}

/* Takes up to max inputs (mu held): retries first, then new inputs in arrival order while
 * the in-flight list has room, within the function's message.length.max in all (the first
 * one always: it fits alone). */
static size_t take_locked(fm_rule *r, fm_item **items, size_t max)
{
    const fm_function_cfg *f = fm_pool_function(r->pool);
    size_t n = 0, bytes = 0;
    while (n < max) {
        fm_item *it = r->retry ? r->retry : r->head;
        if (!it || (it == r->head && r->ninflight >= r->inflight_max))
            break;
        size_t add = it->esize + 8; /* its tag and length in FunctionMessages */
        if (n > 0 && bytes + add > (size_t)f->call.message_max)
            break;
        if (it == r->retry) {
            r->retry = it->retry_next;
            if (!r->retry)
                r->retry_tail = NULL;
        } else {
            r->head = it->next;
            if (!r->head)
                r->tail = NULL;
            r->qlen--;
            if (it->msg.qos == 0) {
                r->q0len--;
                r->q0bytes -= it->size;
            }
            if (r->inflight_tail)
                r->inflight_tail->inflight_next = it;
            else
                r->inflight = it;
            r->inflight_tail = it;
            r->ninflight++;
            it->rule = r;
        }
        bytes += add;
        items[n++] = it;
    }
    return n;
}

/* Before an input's first attempt: its clock starts, and when it is too large for the
 * function it fails once (every attempt would fail the same way) and false is returned. */
static bool first_attempt(fm_rule *r, fm_item *it)
{
    char err[1024];
    if (it->attempts > 0 || it->t0)
        return true;
    it->t0 = fm_metrics_clock();
    if (fm_invoke_fits(r->pool, &it->msg, err, sizeof err) == 0)
        return true;
    fm_metrics_invoked(r->pool, it->t0, -1, 1);
    finished(r, it, -1, strdup(err), false);
    return false;
}

/* How many of the waiting inputs one call takes: its share of them over this call and
 * the calls the pool could start now, counted up to SPREAD_MAX (slow handlers spread over
 * instances and slots, while a flood still goes in batches worth a call), up to BATCH_MAX;
 * at least one (mu held). */
static size_t share_locked(fm_rule *r, size_t room)
{
    size_t waiting = r->qlen;
    for (fm_item *it = r->retry; it; it = it->retry_next)
        waiting++;
    if (room > SPREAD_MAX)
        room = SPREAD_MAX;
    size_t n = (waiting + room) / (room + 1);
    return n < 1 ? 1 : n > BATCH_MAX ? BATCH_MAX : n;
}

/* An instance slot first (waiting for one, or for a start), then its share of whatever is
 * queued by then: no wait for a batch to fill, and the busier the slots the more a call
 * takes. One input goes as a Call, several as a CallBatch (to an instance that does not
 * serve it, as one Call each). */
static void dispatch(fm_rule *r)
{
    char err[2048];
    fm_item *items[BATCH_MAX];
    /* An input too large for the function fails at once, without an instance. */
    pthread_mutex_lock(&r->mu);
    const fm_item *h = r->retry ? NULL : r->head;
    bool big = h && h->esize > (size_t)fm_pool_function(r->pool)->call.message_max;
    if (big)
        big = take_locked(r, items, 1) == 1;
    pthread_mutex_unlock(&r->mu);
    if (big) {
        first_attempt(r, items[0]);
        return;
    }
    fm_instance *inst = fm_pool_get(r->pool, err, sizeof err);
    bool batches = inst && fm_instance_batches(inst);
    size_t room = batches ? fm_pool_room(r->pool) : 0;
    pthread_mutex_lock(&r->mu);
    size_t got = take_locked(r, items, batches ? share_locked(r, room) : 1);
    pthread_mutex_unlock(&r->mu);
    size_t n = 0;
    for (size_t i = 0; i < got; i++)
        if (first_attempt(r, items[i]))
            items[n++] = items[i];
    if (!inst) {
        for (size_t i = 0; i < n; i++)
            attempt_failed(r, items[i], err);
    } else if (n == 0) {
        fm_pool_put(r->pool, inst, true);
    } else if (n == 1) {
        start_call(r, items[0], inst);
    } else {
        start_batch(r, items, n, inst);
    }
}

/* Dispatches while inputs or retries wait, until the rule stops. */
static void *dispatcher_main(void *arg)
{
    fm_rule *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->retry && (!r->head || r->ninflight >= r->inflight_max) && !r->stopping)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->stopping)
            break;
        pthread_mutex_unlock(&r->mu);
        dispatch(r);
        pthread_mutex_lock(&r->mu);
    }
    r->dispatched = true;
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Takes completions in batches, and publishes the results handed over by completions run
 * on the clients' threads, until the rule stops and no call is pending. */
static void *completer_main(void *arg)
{
    fm_rule *r = arg;
    for (;;) {
        bt_fn_async_poll(r->q, POLL_MS);
        pthread_mutex_lock(&r->mu);
        bool resume = r->resume;
        r->resume = false;
        pthread_mutex_unlock(&r->mu);
        if (resume)
            publish_done(r, false);
        pthread_mutex_lock(&r->mu);
        bool over = r->dispatched && r->pending == 0 && !r->resume;
        pthread_mutex_unlock(&r->mu);
        if (over)
            break;
    }
    return NULL;
}

fm_rule *fm_rule_new(const bt_mqtt_client_config *hub, const fm_rule_cfg *rc, size_t index,
                     fm_pool *pool, fm_fatal_fn fatal, void *arg, char *err, size_t errlen)
{
    fm_rule *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->cfg = rc;
    r->pool = pool;
    r->fatal = fatal;
    r->fatal_arg = arg;
    fm_rule_clientid(rc, index, r->clientid, sizeof r->clientid);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);

    bt_mqtt_client_config cc = *hub; /* shallow: the client copies what it keeps */
    if (cc.message_max <= 0)
        cc.message_max = FM_HUB_MESSAGE_MAX_DEFAULT;
    bt_mqtt_topic_info sub = rc->subscribe;
    cc.clientid = r->clientid;
    cc.subscriptions.n = 1;
    cc.subscriptions.items = &sub;
    bt_mqtt_client_options o = {
        .on_message = on_message,
        .on_publish_complete = on_publish_complete,
        .on_connected = on_connected,
        .on_connection_lost = on_connection_lost,
        .on_error = on_error,
        .complete_tagged_only = true, /* untagged results may leave from the calling thread */
        .userdata = r,
    };
    char why[512];
    r->cli = bt_mqtt_client_create(&cc, &o, why, sizeof why);
    r->room_max = cc.buffersize < 60000 ? (size_t)cc.buffersize : 60000; /* its QoS 1 ids */
    if (!r->cli) {
        snprintf(err, errlen, "rule (%s): %s", r->clientid, why);
        fm_rule_free(r);
        return NULL;
    }
    return r;
}

int fm_rule_start(fm_rule *r, char *err, size_t errlen)
{
    const fm_function_cfg *f = fm_pool_function(r->pool);
    size_t n = (size_t)f->max * (size_t)f->concurrent;
    if (n > CALLS_MAX)
        n = CALLS_MAX;
    r->inflight_max = INFLIGHT_PER_CALL * n * BATCH_MAX;
    if (r->inflight_max > INFLIGHT_ITEMS_MAX)
        r->inflight_max = INFLIGHT_ITEMS_MAX;
    if (!(r->q = bt_fn_async_new())) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    bt_fn_async_set_inline(r->q, complete_inline);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    int rc = pthread_create(&r->completer, &attr, completer_main, r);
    if (rc == 0) {
        rc = pthread_create(&r->dispatcher, &attr, dispatcher_main, r);
        if (rc != 0) {
            fm_rule_stop(r);
            pthread_mutex_lock(&r->mu);
            r->dispatched = true;
            pthread_mutex_unlock(&r->mu);
            pthread_join(r->completer, NULL);
        }
    }
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        snprintf(err, errlen, "rule (%s): cannot start a thread: %s", r->clientid, strerror(rc));
        return -1;
    }
    r->threads = true;
    char why[512];
    if (bt_mqtt_client_start(r->cli, why, sizeof why) < 0) {
        snprintf(err, errlen, "rule (%s): %s", r->clientid, why);
        return -1;
    }
    bt_logkv(BT_LOG_INFO, "rule started", "rule", r->clientid, "subscribe", r->cfg->subscribe.topic,
             "function", r->cfg->function, "publish", r->cfg->publish.topic, NULL);
    return 0;
}

void fm_rule_stop(fm_rule *r)
{
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->cli)
        bt_mqtt_client_stop(r->cli);
}

/* One line with what the rule did, for whoever reads the log after a stop. */
static void log_totals(fm_rule *r)
{
    pthread_mutex_lock(&r->mu);
    fm_rule_stats st = r->st;
    pthread_mutex_unlock(&r->mu);
    char v[6][24];
    unsigned long long n[6] = {st.received, st.failed,  st.oversized,
                               st.parked,   st.refused, st.dropped};
    for (int i = 0; i < 6; i++)
        snprintf(v[i], sizeof v[i], "%llu", n[i]);
    bt_logkv(BT_LOG_INFO, "rule totals", "rule", r->clientid, "received", v[0], "failed", v[1],
             "oversized", v[2], "parked", v[3], "refused", v[4], "dropped", v[5], NULL);
}

void fm_rule_free(fm_rule *r)
{
    if (!r)
        return;
    fm_rule_stop(r);
    if (r->threads) {
        pthread_join(r->dispatcher, NULL);
        pthread_join(r->completer, NULL); /* after every pending call completed */
        log_totals(r);
    }
    bt_mqtt_client_destroy(r->cli); /* no callback runs after this */
    while (r->head) {
        fm_item *it = r->head;
        r->head = it->next;
        free(it);
    }
    while (r->inflight) { /* left at stop: retries not made, results behind them */
        fm_item *it = r->inflight;
        r->inflight = it->inflight_next;
        bt_fn_msg_clear(&it->out);
        free(it->err);
        free(it);
    }
    bt_fn_async_free(r->q);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
