/* The public calls of mqtt_client.h: building and freeing a client, and the thread-safe
 * requests (publish, ack, subscribe) that hand work to the client's thread. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "baetyl/error.h"
#include "baetyl/util.h"
#include "mqtt_client_internal.h"

__attribute__((format(printf, 4, 5))) static int fail(int code, char *err, size_t errlen,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bt_verrf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

const char *bt_mqtt_strerror(int code)
{
    switch (code) {
    case BT_MQTT_OK: return "ok";
    case BT_MQTT_EINVAL: return "invalid argument";
    case BT_MQTT_EFULL: return "queue full";
    case BT_MQTT_ESTOPPED: return "client stopped";
    case BT_MQTT_ECANCELLED: return "cancelled";
    case BT_MQTT_ENOMEM: return "out of memory";
    case BT_MQTT_EREFUSED: return "refused by the broker";
    default: return "unknown error";
    }
}

/* ---- create / destroy ------------------------------------------------------------- */

void mc_free_client(bt_mqtt_client *c)
{
    mc_list left = {0};
    mc_list_prepend_all(&left, &c->inflight);
    mc_list_prepend_all(&left, &c->queue);
    mc_complete(c, &left, BT_MQTT_ECANCELLED);
    mc_tr_close(c);
    mc_subwait_clear(c);
    while (c->ctl_head) {
        mc_ctl *r = c->ctl_head;
        c->ctl_head = r->next;
        free(r);
    }
    for (size_t i = 0; i < c->nsubs; i++)
        free(c->subs[i].topic);
    free(c->subs);
    bt_buf_free(&c->in);
    bt_buf_free(&c->out);
    bt_buf_free(&c->wsout);
    free(c->topic_buf);
    free(c->slots);
    free(c->free_pids);
    free(c->acks);
    free(c->unacked);
    free(c->will_topic);
    free(c->will_payload);
    if (c->ssl_ctx)
        SSL_CTX_free(c->ssl_ctx);
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    bt_cfg_free(&bt_mqtt_client_schema, &c->cfg);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static int check_options(const bt_mqtt_client_options *o, char *err, size_t errlen)
{
    if (o->protocol_level != 0 && (o->protocol_level < 3 || o->protocol_level > 5))
        return fail(-1, err, errlen, "protocol level %d (3, 4 or 5)", o->protocol_level);
    if (o->will_topic) {
        if (!bt_mqtt_client_valid_name(o->will_topic))
            return fail(-1, err, errlen, "will topic (%.200s) invalid", o->will_topic);
        if (o->will_qos < 0 || o->will_qos > 1)
            return fail(-1, err, errlen, "will qos %d (0 or 1)", o->will_qos);
        if (o->will_len > 0xFFFF || (o->will_len && !o->will_payload))
            return fail(-1, err, errlen, "will payload too long or NULL");
    }
    return 0;
}

bt_mqtt_client *bt_mqtt_client_create(const bt_mqtt_client_config *cfg,
                                      const bt_mqtt_client_options *opt, char *err, size_t errlen)
{
    static const bt_mqtt_client_options none;
    if (!cfg) {
        fail(-1, err, errlen, "no settings");
        return NULL;
    }
    if (!opt)
        opt = &none;
    if (mc_check_config(cfg, err, errlen) < 0 || check_options(opt, err, errlen) < 0)
        return NULL;
    bt_mqtt_client *c = calloc(1, sizeof *c);
    if (!c) {
        fail(-1, err, errlen, "out of memory");
        return NULL;
    }
    c->fd = c->wake_fd = -1;
    pthread_mutex_init(&c->mu, NULL);
    bt_cond_init_monotonic(&c->cond);
    c->opt = *opt;
    if (!c->opt.protocol_level)
        c->opt.protocol_level = cfg->protocol ? (int)cfg->protocol : BT_MQTT_V311;
    c->send_max = 65535;
    if (!c->opt.max_packet || c->opt.max_packet > BT_MQTT_MAX_PACKET)
        c->opt.max_packet = BT_MQTT_MAX_PACKET;
    c->opt.will_topic = NULL;
    c->opt.will_payload = NULL;
    if (bt_cfg_copy(&bt_mqtt_client_schema, &c->cfg, cfg) < 0)
        goto oom;
    mc_parse_address(c->cfg.address, &c->addr, NULL, 0); /* checked above */
    if (opt->will_topic) {
        c->will_topic = strdup(opt->will_topic);
        c->will_payload = malloc(opt->will_len ? opt->will_len : 1);
        if (!c->will_topic || !c->will_payload)
            goto oom;
        if (opt->will_len)
            memcpy(c->will_payload, opt->will_payload, opt->will_len);
    }
    c->keepalive_s = (uint16_t)((c->cfg.keepalive + 999) / 1000);
    c->keepalive_ms = (int64_t)c->keepalive_s * 1000;
    c->ping_timeout_ms =
        c->keepalive_ms / 2 < c->cfg.timeout ? c->keepalive_ms / 2 : c->cfg.timeout;
    if (c->ping_timeout_ms < 1)
        c->ping_timeout_ms = 1;
    c->window =
        (size_t)c->cfg.buffersize < MC_MAX_WINDOW ? (size_t)c->cfg.buffersize : MC_MAX_WINDOW;
    c->slots = calloc(c->window, sizeof *c->slots);
    c->free_pids = malloc(c->window * sizeof *c->free_pids);
    c->unacked = calloc(3, MC_IDS_BYTES);
    if (!c->slots || !c->free_pids || !c->unacked)
        goto oom;
    for (size_t i = 0; i < c->window; i++) /* popped from the end: ids 1, 2, 3 ... first */
        c->free_pids[i] = (uint16_t)(c->window - i);
    c->nfree = c->window;
    for (size_t i = 0; i < c->cfg.subscriptions.n; i++) {
        const bt_mqtt_topic_info *t = &BT_CFG_AT(c->cfg.subscriptions, bt_mqtt_topic_info, i);
        if (bt_mqtt_client_subscribe(c, t->topic, (int)t->qos, err, errlen) < 0) {
            mc_free_client(c);
            return NULL;
        }
    }
    if (c->addr.tls && mc_tls_ctx(c, err, errlen) < 0) {
        mc_free_client(c);
        return NULL;
    }
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->wake_fd < 0) {
        fail(-1, err, errlen, "eventfd: %s", strerror(errno));
        mc_free_client(c);
        return NULL;
    }
    return c;
oom:
    fail(-1, err, errlen, "out of memory");
    mc_free_client(c);
    return NULL;
}

int bt_mqtt_client_start(bt_mqtt_client *c, char *err, size_t errlen)
{
    if (!c)
        return fail(-1, err, errlen, "no client");
    pthread_mutex_lock(&c->mu);
    bool bad = c->started || c->stopped;
    c->started = true;
    pthread_mutex_unlock(&c->mu);
    if (bad)
        return fail(-1, err, errlen, "client already started or stopped");
    /* The module's callbacks run on this thread too: 1 MiB, not the 8 MiB default. */
    int rc = bt_thread_start_quiet(&c->thread, mc_thread, c, 1024 * 1024);
    if (rc != 0) {
        pthread_mutex_lock(&c->mu);
        c->started = false;
        pthread_mutex_unlock(&c->mu);
        return fail(-1, err, errlen, "thread: %s", strerror(rc));
    }
    return 0;
}

void bt_mqtt_client_stop(bt_mqtt_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop_req = true;
    c->stopped = true;
    pthread_cond_broadcast(&c->cond);
    mc_wake_locked(c);
    pthread_mutex_unlock(&c->mu);
}

void bt_mqtt_client_destroy(bt_mqtt_client *c)
{
    if (!c)
        return;
    bt_mqtt_client_stop(c);
    if (mc_current == c) {
        /* from one of its callbacks: the thread cannot join itself, it frees c on exit */
        c->free_on_exit = true;
        c->opt.on_message = NULL; /* the caller may free what callbacks use */
        c->opt.on_publish_complete = NULL;
        c->opt.on_connected = NULL;
        c->opt.on_connection_lost = NULL;
        c->opt.on_error = NULL;
        pthread_detach(pthread_self());
        return;
    }
    pthread_mutex_lock(&c->mu);
    bool started = c->started;
    pthread_mutex_unlock(&c->mu);
    if (started)
        pthread_join(c->thread, NULL);
    mc_free_client(c);
}

/* ---- requests --------------------------------------------------------------------- */

static bool on_own_thread(bt_mqtt_client *c)
{
    return mc_current == c;
}

static size_t vlen(size_t rl)
{
    return rl < 128 ? 1 : rl < 16384 ? 2 : rl < 2097152 ? 3 : 4;
}

/* Writes m to the socket from the caller's thread when the client's thread sleeps with
 * nothing to write and nothing asked before m waits (queued publishes, acks, SUBSCRIBEs):
 * the wire order stays the order of the calls, and the thread does not wake for m (a lone
 * publish: the first since the thread went to sleep). m is
 * then held as if mc_collect had written it (QoS 1/2: in flight until its ack) or freed
 * (QoS 0; one whose on_publish_complete is due is left to the thread, which runs it). true
 * when m was taken ([mu] held). */
static bool send_direct(bt_mqtt_client *c, mc_msg *m)
{
    if (!c->direct || c->queue.head || c->nacks || c->ctl_head ||
        (m->qos ? c->ninflight >= c->send_max
                : m->tag || (c->opt.on_publish_complete && !c->opt.complete_tagged_only)))
        return false;
    if (!mc_tr_send_direct(c, m->data, m->len))
        return false;
    m->sent = true;
    c->direct_sent++;
    /* one per sleep: a burst's next publishes wake the thread, which writes them together
     * (a write per message would cost more than the wake-up) */
    c->direct = false;
    if (!m->qos) {
        free(m);
        return true;
    }
    m->inflight = true;
    c->ninflight++;
    mc_list_push(&c->inflight, m);
    c->pending++;
    return true;
}

static int publish(bt_mqtt_client *c, const char *topic, const void *payload, size_t len, int qos,
                   bool retain, void *tag, int64_t timeout_ms, char *err, size_t errlen)
{
    if (!c)
        return fail(BT_MQTT_EINVAL, err, errlen, "no client");
    if (!bt_mqtt_client_valid_name(topic))
        return fail(BT_MQTT_EINVAL, err, errlen, "publish topic (%.200s) invalid",
                    topic ? topic : "(null)");
    if (qos < 0 || qos > 2)
        return fail(BT_MQTT_EINVAL, err, errlen, "publish qos %d (0, 1 or 2)", qos);
    if (len && !payload)
        return fail(BT_MQTT_EINVAL, err, errlen, "payload is NULL");
    size_t tl = strlen(topic);
    bool v5 = c->opt.protocol_level == BT_MQTT_V5;
    size_t fixed = 2 + tl + (qos ? 2 : 0) + (v5 ? 1 : 0); /* 5.0: empty property length */
    if (len > BT_MQTT_MAX_REMAINING - fixed)
        return fail(BT_MQTT_EINVAL, err, errlen, "payload of %zu bytes is too large", len);
    if (c->cfg.message_max > 0 && fixed + len > (size_t)c->cfg.message_max)
        return fail(BT_MQTT_EINVAL, err, errlen,
                    "message too large: %zu bytes, the broker takes at most %lld "
                    "(message.length.max)",
                    fixed + len, (long long)c->cfg.message_max);
    size_t rl = fixed + len, total = 1 + vlen(rl) + rl;
    mc_msg *m = malloc(sizeof *m + total);
    if (!m)
        return fail(BT_MQTT_ENOMEM, err, errlen, "out of memory");
    memset(m, 0, sizeof *m);
    m->tag = tag;
    m->qos = (uint8_t)qos;
    m->len = total;
    /* encoded outside the lock with a placeholder id, patched once the id is known */
    ssize_t n;
    if (v5) {
        bt_mqtt_packet p = {.type = BT_MQTT_PUBLISH, .version = BT_MQTT_V5};
        p.publish = (bt_mqtt_publish){.qos = (uint8_t)qos,
                                      .retain = retain,
                                      .packet_id = qos ? 1 : 0,
                                      .topic = {topic, tl},
                                      .payload = {payload, len}};
        n = bt_mqtt_encode(&p, m->data, total);
    } else {
        n = bt_mqtt_encode_publish(m->data, total, topic, tl, payload, len, qos, retain, false,
                                   qos ? 1 : 0);
    }
    if (n != (ssize_t)total) {
        free(m);
        return fail(BT_MQTT_EINVAL, err, errlen, "cannot encode PUBLISH");
    }
    bool wait = timeout_ms != 0 && !on_own_thread(c);
    struct timespec until = bt_deadline_in(timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_lock(&c->mu);
    while (!c->stopped && (c->pending >= (size_t)c->cfg.buffersize || (qos && c->nfree == 0))) {
        int rc = 0;
        if (!wait)
            rc = ETIMEDOUT;
        else if (timeout_ms < 0)
            pthread_cond_wait(&c->cond, &c->mu);
        else
            rc = pthread_cond_timedwait(&c->cond, &c->mu, &until);
        if (rc == ETIMEDOUT) {
            size_t held = c->pending;
            pthread_mutex_unlock(&c->mu);
            free(m);
            return fail(BT_MQTT_EFULL, err, errlen,
                        "queue full (%zu publishes held, buffersize %ld)", held, c->cfg.buffersize);
        }
    }
    if (c->stopped) {
        pthread_mutex_unlock(&c->mu);
        free(m);
        return fail(BT_MQTT_ESTOPPED, err, errlen, "client stopped");
    }
    if (qos) {
        uint16_t pid = c->free_pids[--c->nfree];
        c->slots[pid - 1] = m;
        m->pid = pid;
        size_t at = 1 + vlen(rl) + 2 + tl;
        m->data[at] = (uint8_t)(pid >> 8);
        m->data[at + 1] = (uint8_t)pid;
    }
    if (send_direct(c, m)) {
        pthread_mutex_unlock(&c->mu);
        return BT_MQTT_OK;
    }
    mc_list_push(&c->queue, m);
    c->pending++;
    mc_wake_locked(c);
    pthread_mutex_unlock(&c->mu);
    return BT_MQTT_OK;
}

size_t bt_mqtt_client_payload_max(bt_mqtt_client *c, const char *topic, int qos)
{
    if (!c || c->cfg.message_max <= 0)
        return SIZE_MAX;
    size_t fixed = 2 + (topic ? strlen(topic) : 0) + (qos ? 2 : 0) +
                   (c->opt.protocol_level == BT_MQTT_V5 ? 1 : 0);
    size_t max = (size_t)c->cfg.message_max;
    return fixed < max ? max - fixed : 0;
}

int bt_mqtt_client_publish(bt_mqtt_client *c, const char *topic, const void *payload, size_t len,
                           int qos, bool retain, void *tag, char *err, size_t errlen)
{
    return publish(c, topic, payload, len, qos, retain, tag, 0, err, errlen);
}

int bt_mqtt_client_publish_wait(bt_mqtt_client *c, const char *topic, const void *payload,
                                size_t len, int qos, bool retain, void *tag, int64_t timeout_ms,
                                char *err, size_t errlen)
{
    return publish(c, topic, payload, len, qos, retain, tag, timeout_ms < 0 ? -1 : timeout_ms, err,
                   errlen);
}

int bt_mqtt_client_ack(bt_mqtt_client *c, bt_mqtt_ack_token token)
{
    uint16_t packet_id = (uint16_t)(token.v & 0xFFFF);
    if (!c || packet_id == 0)
        return BT_MQTT_EINVAL;
    int rc = BT_MQTT_OK;
    pthread_mutex_lock(&c->mu);
    uint8_t bit = (uint8_t)(1u << (packet_id & 7));
    bool qos2 = c->unacked[MC_IDS_BYTES + (packet_id >> 3)] & bit;
    if (c->stopped) {
        rc = BT_MQTT_ESTOPPED;
    } else if (token.v != mc_token(c->conn_gen, packet_id).v || !c->connected ||
               !(c->unacked[packet_id >> 3] & bit)) {
        rc = BT_MQTT_EINVAL;
    } else {
        if (c->nacks == c->acks_cap) {
            size_t cap = c->acks_cap ? c->acks_cap * 2 : 64;
            uint32_t *a = realloc(c->acks, cap * sizeof *a);
            if (!a) {
                pthread_mutex_unlock(&c->mu);
                return BT_MQTT_ENOMEM;
            }
            c->acks = a;
            c->acks_cap = cap;
        }
        c->unacked[packet_id >> 3] &= (uint8_t)~bit;
        c->unacked[MC_IDS_BYTES + (packet_id >> 3)] &= (uint8_t)~bit;
        if (qos2) /* PUBRECed: a resend of it is not delivered again until its PUBREL */
            c->unacked[2 * MC_IDS_BYTES + (packet_id >> 3)] |= bit;
        c->acks[c->nacks++] = (uint32_t)(qos2 ? BT_MQTT_PUBREC : BT_MQTT_PUBACK) << 16 | packet_id;
        mc_wake_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* Queues a SUBSCRIBE/UNSUBSCRIBE for the thread ([mu] held, connected). */
static int queue_ctl(bt_mqtt_client *c, const char *topic, int qos, bool unsub)
{
    size_t tl = strlen(topic);
    mc_ctl *r = malloc(sizeof *r + tl + 1);
    if (!r)
        return -1;
    r->next = NULL;
    r->unsub = unsub;
    r->qos = qos;
    memcpy(r->topic, topic, tl + 1);
    if (c->ctl_tail)
        c->ctl_tail->next = r;
    else
        c->ctl_head = r;
    c->ctl_tail = r;
    mc_wake_locked(c);
    return 0;
}

int bt_mqtt_client_subscribe(bt_mqtt_client *c, const char *topic, int qos, char *err,
                             size_t errlen)
{
    if (!c)
        return fail(BT_MQTT_EINVAL, err, errlen, "no client");
    if (!bt_mqtt_client_valid_filter(topic))
        return fail(BT_MQTT_EINVAL, err, errlen, "subscribe topic (%.200s) invalid",
                    topic ? topic : "(null)");
    if (qos < 0 || qos > 2)
        return fail(BT_MQTT_EINVAL, err, errlen, "subscribe qos %d (0, 1 or 2)", qos);
    int rc = BT_MQTT_OK;
    pthread_mutex_lock(&c->mu);
    size_t i = 0;
    while (i < c->nsubs && strcmp(c->subs[i].topic, topic) != 0)
        i++;
    if (c->stopped) {
        rc = fail(BT_MQTT_ESTOPPED, err, errlen, "client stopped");
    } else if (i < c->nsubs) {
        c->subs[i].qos = qos;
    } else {
        bt_mqtt_topic_info *s = realloc(c->subs, (c->nsubs + 1) * sizeof *s);
        char *t = strdup(topic);
        if (s)
            c->subs = s;
        if (!s || !t) {
            free(t);
            rc = fail(BT_MQTT_ENOMEM, err, errlen, "out of memory");
        } else {
            c->subs[c->nsubs].topic = t;
            c->subs[c->nsubs].qos = qos;
            c->nsubs++;
        }
    }
    if (rc == BT_MQTT_OK && c->connected && queue_ctl(c, topic, qos, false) < 0)
        rc = fail(BT_MQTT_ENOMEM, err, errlen, "out of memory");
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int bt_mqtt_client_unsubscribe(bt_mqtt_client *c, const char *topic, char *err, size_t errlen)
{
    if (!c || !topic)
        return fail(BT_MQTT_EINVAL, err, errlen, "no client or topic");
    int rc = BT_MQTT_OK;
    pthread_mutex_lock(&c->mu);
    size_t i = 0;
    while (i < c->nsubs && strcmp(c->subs[i].topic, topic) != 0)
        i++;
    if (c->stopped) {
        rc = fail(BT_MQTT_ESTOPPED, err, errlen, "client stopped");
    } else if (i == c->nsubs) {
        rc = fail(BT_MQTT_EINVAL, err, errlen, "not subscribed to %.200s", topic);
    } else {
        free(c->subs[i].topic);
        c->subs[i] = c->subs[--c->nsubs];
        if (c->connected && queue_ctl(c, topic, 0, true) < 0)
            rc = fail(BT_MQTT_ENOMEM, err, errlen, "out of memory");
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---- state ------------------------------------------------------------------------ */

bool bt_mqtt_client_connected(bt_mqtt_client *c)
{
    if (!c)
        return false;
    pthread_mutex_lock(&c->mu);
    bool up = c->connected;
    pthread_mutex_unlock(&c->mu);
    return up;
}

int bt_mqtt_client_wait_connected(bt_mqtt_client *c, int64_t timeout_ms)
{
    if (!c)
        return -1;
    struct timespec until = bt_deadline_in(timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (!c->connected && !c->stopped && rc == 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&c->cond, &c->mu);
        else
            rc = pthread_cond_timedwait(&c->cond, &c->mu, &until);
    }
    bool up = c->connected && !c->stopped;
    pthread_mutex_unlock(&c->mu);
    return up ? 0 : -1;
}

uint64_t bt_mqtt_client_resends_held(bt_mqtt_client *c)
{
    if (!c)
        return 0;
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->resends_held;
    pthread_mutex_unlock(&c->mu);
    return n;
}

size_t bt_mqtt_client_pending(bt_mqtt_client *c)
{
    if (!c)
        return 0;
    pthread_mutex_lock(&c->mu);
    size_t n = c->pending;
    pthread_mutex_unlock(&c->mu);
    return n;
}
