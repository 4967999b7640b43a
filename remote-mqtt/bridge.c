/* Forwarding between the hub and one remote (bridge.h). Everything runs in the two clients'
 * callbacks, on their threads:
 *
 * - on_message (source's thread): publish the copy on the other client at once, or, when
 *   that client already holds `buffersize` publishes, append it to this direction's queue
 *   (in order: once something waits, later messages wait behind it).
 * - on_publish_complete (other side's thread): the copy was acknowledged, so acknowledge
 *   the original to its source; the client has room again, so move queued messages in.
 *
 * When the queue is full (a source faster than the destination) and the destination is
 * connected, on_message waits for room: the source's thread stops reading, and TCP slows
 * the source down instead of messages being dropped here. Only one direction of a rule may
 * wait at a time: if both did, each thread would wait for the other (deadlock); the other
 * direction then drops QoS 0 and leaves QoS 1 unacknowledged (its source resends it). With
 * the destination down nothing waits: QoS 1 stays unacknowledged at its source, QoS 0
 * beyond the queue is dropped (at most once, as its sender asked).
 *
 * An acknowledgement is the SDK's ack token of the source delivery: one of a connection
 * that has ended acknowledges nothing; the source resends such a message and it is
 * forwarded again (a duplicate, never a loss). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baetyl/log.h"
#include "baetyl/util.h"
#include "bridge.h"

/* A message waiting for room in the destination client. */
typedef struct rm_item {
    struct rm_item *next;
    void *tag; /* QoS 1: the source's bt_mqtt_ack_token (malloc'd); NULL for QoS 0 */
    uint8_t qos;
    bool retain;
    size_t topic_len, len;
    uint8_t data[]; /* topic, NUL, payload */
} rm_item;

/* One direction: messages from src are published on dst. */
typedef struct {
    const char *what; /* "hub -> remote" */
    rm_bridge *b;
    bt_mqtt_client *src, *dst;
    pthread_mutex_t mu;
    rm_item *head, *tail;
    size_t bytes;
    rm_dir_stats st;
    int64_t last_drop_log, last_wait_log;
    bool closing;        /* the clients are being freed: callbacks touch neither */
    bool dst_up;         /* dst is connected */
    bool waiting;        /* on_message waits for room ([b->wait_mu]) */
    pthread_cond_t room; /* the queue shrank, dst went down, or closing */
} rm_dir;

struct rm_bridge {
    char *name;
    bt_mqtt_client *hub, *remote;
    rm_dir dir[2]; /* 0: hub -> remote, 1: remote -> hub */
    rm_fatal_fn on_fatal;
    void *arg;
    atomic_bool fatal;
    pthread_mutex_t wait_mu; /* guards both dirs' `waiting`: at most one is set */
};

/* The source's copy of a QoS 1 message is done with: acknowledge it when asked, and free
 * its token. A token of a source connection that has ended acknowledges nothing. */
static void release(rm_dir *d, void *tag, bool ack)
{
    if (!tag)
        return;
    if (ack)
        bt_mqtt_client_ack(d->src, *(bt_mqtt_ack_token *)tag);
    free(tag);
}

/* A message was not forwarded ([mu] held). One the destination can never take (EINVAL) is
 * acknowledged, or its source would resend it forever; any other is left unacknowledged
 * so that its source resends it later. */
static void not_forwarded(rm_dir *d, const char *topic, void *tag, int rc, const char *why)
{
    if (rc == BT_MQTT_ESTOPPED) { /* shutting down */
        release(d, tag, false);
        return;
    }
    d->st.dropped++;
    release(d, tag, rc == BT_MQTT_EINVAL);
    int64_t now = bt_now_ms();
    if (rc == BT_MQTT_EINVAL || d->last_drop_log == 0 || now - d->last_drop_log >= 10000) {
        d->last_drop_log = now;
        char n[32];
        snprintf(n, sizeof n, "%llu", (unsigned long long)d->st.dropped);
        bt_logkv(rc == BT_MQTT_EINVAL ? BT_LOG_ERROR : BT_LOG_WARN, "message not forwarded", "rule",
                 d->b->name, "direction", d->what, "topic", topic, "reason", why, "dropped", n,
                 NULL);
    }
}

static int publish(rm_dir *d, const char *topic, const void *payload, size_t len, int qos,
                   bool retain, void *tag, char *err, size_t errlen)
{
    int rc = bt_mqtt_client_publish(d->dst, topic, payload, len, qos, retain, tag, err, errlen);
    if (rc == BT_MQTT_OK)
        d->st.forwarded++;
    return rc;
}

/* Moves queued messages into the destination while it has room ([mu] held). */
static void drain(rm_dir *d)
{
    char err[256];
    bool popped = false;
    while (d->head) {
        rm_item *it = d->head;
        const char *topic = (const char *)it->data;
        int rc = publish(d, topic, it->data + it->topic_len + 1, it->len, it->qos, it->retain,
                         it->tag, err, sizeof err);
        if (rc == BT_MQTT_EFULL)
            break;
        popped = true;
        if (rc != BT_MQTT_OK)
            not_forwarded(d, topic, it->tag, rc, err);
        d->head = it->next;
        if (!d->head)
            d->tail = NULL;
        d->st.queued--;
        d->bytes -= it->topic_len + it->len;
        free(it);
    }
    if (popped)
        pthread_cond_broadcast(&d->room); /* a source waiting for room (cheap if none) */
}

/* True when the queue cannot take m ([mu] held). An empty queue takes anything. */
static bool queue_full(const rm_dir *d, const bt_mqtt_message *m)
{
    return d->head && (d->st.queued >= RM_QUEUE_MAX_MSGS ||
                       d->bytes + strlen(m->topic) + m->payload_len > RM_QUEUE_MAX_BYTES);
}

/* Appends a copy of m to the queue ([mu] held); false when out of memory. */
static bool enqueue(rm_dir *d, const bt_mqtt_message *m, void *tag)
{
    size_t tl = strlen(m->topic);
    rm_item *it = malloc(sizeof *it + tl + 1 + m->payload_len);
    if (!it)
        return false;
    it->next = NULL;
    it->tag = tag;
    it->qos = m->qos;
    it->retain = m->retain;
    it->topic_len = tl;
    it->len = m->payload_len;
    memcpy(it->data, m->topic, tl + 1);
    if (m->payload_len)
        memcpy(it->data + tl + 1, m->payload, m->payload_len);
    if (d->tail)
        d->tail->next = it;
    else
        d->head = it;
    d->tail = it;
    d->st.queued++;
    d->bytes += tl + m->payload_len;
    return true;
}

static rm_dir *dir_from(rm_bridge *b, bt_mqtt_client *src)
{
    return src == b->hub ? &b->dir[0] : &b->dir[1];
}

static rm_dir *dir_to(rm_bridge *b, bt_mqtt_client *dst)
{
    return dst == b->remote ? &b->dir[0] : &b->dir[1];
}

/* Waits once for room in a full queue ([mu] held, released while waiting), when the
 * destination is connected and the other direction does not wait itself. Returns false
 * when it may not wait: the message has to be dropped. */
static bool wait_for_room(rm_dir *d)
{
    rm_bridge *b = d->b;
    rm_dir *other = d == &b->dir[0] ? &b->dir[1] : &b->dir[0];
    if (d->closing || !d->dst_up)
        return false;
    pthread_mutex_lock(&b->wait_mu);
    bool may = !other->waiting;
    d->waiting = may;
    pthread_mutex_unlock(&b->wait_mu);
    if (!may)
        return false;
    int64_t now = bt_now_ms();
    if (d->last_wait_log == 0 || now - d->last_wait_log >= 10000) {
        d->last_wait_log = now;
        bt_logkv(BT_LOG_INFO, "queue full: the source waits for the destination", "rule",
                 d->b->name, "direction", d->what, NULL);
    }
    pthread_cond_wait(&d->room, &d->mu);
    pthread_mutex_lock(&b->wait_mu);
    d->waiting = false;
    pthread_mutex_unlock(&b->wait_mu);
    return true;
}

static void on_message(bt_mqtt_client *c, const bt_mqtt_message *m, void *userdata)
{
    rm_dir *d = dir_from(userdata, c);
    char err[256];
    pthread_mutex_lock(&d->mu);
    if (d->closing) {
        pthread_mutex_unlock(&d->mu);
        return;
    }
    d->st.received++;
    void *tag = NULL;
    int rc = BT_MQTT_OK;
    if (m->qos == 1 && !(tag = malloc(sizeof m->ack))) {
        /* unacknowledged: the source sends it again after a reconnect */
        snprintf(err, sizeof err, "out of memory");
        not_forwarded(d, m->topic, NULL, BT_MQTT_ENOMEM, err);
        pthread_mutex_unlock(&d->mu);
        return;
    }
    if (tag)
        memcpy(tag, &m->ack, sizeof m->ack);
    for (;;) { /* published, queued, or refused; waiting for room in between */
        if (!d->head) {
            rc = publish(d, m->topic, m->payload, m->payload_len, m->qos, m->retain, tag, err,
                         sizeof err);
            if (rc != BT_MQTT_EFULL)
                break;
        }
        if (!queue_full(d, m)) {
            rc = enqueue(d, m, tag) ? BT_MQTT_OK : BT_MQTT_ENOMEM;
            if (rc != BT_MQTT_OK)
                snprintf(err, sizeof err, "out of memory");
            break;
        }
        if (!wait_for_room(d)) {
            rc = d->closing ? BT_MQTT_ESTOPPED : BT_MQTT_ENOMEM;
            snprintf(err, sizeof err, "%zu messages wait for %s already", d->st.queued, d->what);
            break;
        }
    }
    if (rc != BT_MQTT_OK)
        not_forwarded(d, m->topic, tag, rc, err);
    pthread_mutex_unlock(&d->mu);
}

static void on_publish_complete(bt_mqtt_client *c, void *tag, int status, void *userdata)
{
    rm_dir *d = dir_to(userdata, c);
    pthread_mutex_lock(&d->mu);
    bool ok = status == BT_MQTT_OK && !d->closing;
    release(d, tag, ok);
    if (ok)
        drain(d);
    pthread_mutex_unlock(&d->mu);
}

static void on_connected(bt_mqtt_client *c, bool session_present, void *userdata)
{
    rm_dir *d = dir_to(userdata, c);
    pthread_mutex_lock(&d->mu);
    d->dst_up = true;
    d->st.connects++;
    pthread_mutex_unlock(&d->mu);
}

static void on_connection_lost(bt_mqtt_client *c, const char *reason, void *userdata)
{
    rm_dir *d = dir_to(userdata, c);
    pthread_mutex_lock(&d->mu);
    d->dst_up = false;
    pthread_cond_broadcast(&d->room); /* a waiting source gives up */
    pthread_mutex_unlock(&d->mu);
}

static void on_error(bt_mqtt_client *c, const char *reason, void *userdata)
{
    rm_bridge *b = userdata;
    if (!atomic_exchange(&b->fatal, true) && b->on_fatal)
        b->on_fatal(b->name, reason, b->arg);
}

static void dir_init(rm_dir *d, rm_bridge *b, const char *what, bt_mqtt_client *src,
                     bt_mqtt_client *dst)
{
    d->what = what;
    d->b = b;
    d->src = src;
    d->dst = dst;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->room, NULL);
}

static void dir_free(rm_dir *d)
{
    while (d->head) {
        rm_item *it = d->head;
        d->head = it->next;
        free(it->tag);
        free(it);
    }
    d->tail = NULL;
    pthread_cond_destroy(&d->room);
    pthread_mutex_destroy(&d->mu);
}

rm_bridge *rm_bridge_create(const char *name, const bt_mqtt_client_config *hub,
                            const bt_mqtt_client_config *remote, rm_fatal_fn on_fatal, void *arg,
                            char *err, size_t errlen)
{
    rm_bridge *b = calloc(1, sizeof *b);
    if (!b || !(b->name = strdup(name ? name : "rule"))) {
        free(b);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->on_fatal = on_fatal;
    b->arg = arg;
    pthread_mutex_init(&b->wait_mu, NULL);
    bt_mqtt_client_options o = {
        .on_message = on_message,
        .on_publish_complete = on_publish_complete,
        .on_connected = on_connected,
        .on_connection_lost = on_connection_lost,
        .on_error = on_error,
        .userdata = b,
    };
    char why[256];
    b->hub = bt_mqtt_client_create(hub, &o, why, sizeof why);
    if (!b->hub) {
        snprintf(err, errlen, "hub: %s", why);
        goto fail;
    }
    b->remote = bt_mqtt_client_create(remote, &o, why, sizeof why);
    if (!b->remote) {
        snprintf(err, errlen, "remote: %s", why);
        goto fail;
    }
    dir_init(&b->dir[0], b, "hub -> remote", b->hub, b->remote);
    dir_init(&b->dir[1], b, "remote -> hub", b->remote, b->hub);
    return b;
fail:
    bt_mqtt_client_destroy(b->hub);
    pthread_mutex_destroy(&b->wait_mu);
    free(b->name);
    free(b);
    return NULL;
}

int rm_bridge_start(rm_bridge *b, char *err, size_t errlen)
{
    char why[256];
    if (bt_mqtt_client_start(b->remote, why, sizeof why) < 0) {
        snprintf(err, errlen, "remote: %s", why);
        return -1;
    }
    if (bt_mqtt_client_start(b->hub, why, sizeof why) < 0) {
        snprintf(err, errlen, "hub: %s", why);
        return -1;
    }
    return 0;
}

void rm_bridge_stop(rm_bridge *b)
{
    if (!b)
        return;
    bt_mqtt_client_stop(b->hub);
    bt_mqtt_client_stop(b->remote);
}

void rm_bridge_destroy(rm_bridge *b)
{
    if (!b)
        return;
    rm_bridge_stop(b);
    /* Each client's callbacks use the other client: after this, they touch neither, so
     * one can be freed while the other's thread still runs. */
    for (int i = 0; i < 2; i++) {
        pthread_mutex_lock(&b->dir[i].mu);
        b->dir[i].closing = true;
        pthread_cond_broadcast(&b->dir[i].room);
        pthread_mutex_unlock(&b->dir[i].mu);
    }
    bt_mqtt_client_destroy(b->hub);
    bt_mqtt_client_destroy(b->remote);
    dir_free(&b->dir[0]);
    dir_free(&b->dir[1]);
    pthread_mutex_destroy(&b->wait_mu);
    free(b->name);
    free(b);
}

void rm_bridge_stats(rm_bridge *b, int dir, rm_dir_stats *out)
{
    rm_dir *d = &b->dir[dir ? 1 : 0];
    pthread_mutex_lock(&d->mu);
    *out = d->st;
    out->up = d->dst_up;
    pthread_mutex_unlock(&d->mu);
    out->pending = bt_mqtt_client_pending(d->dst);
    out->duplicates = bt_mqtt_client_resends_held(d->src);
}
