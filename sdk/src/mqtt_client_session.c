/* The MQTT session of the client: CONNECT, the outgoing queue and its QoS 1/2 window (packet
 * ids are window slots, so a PUBACK finds its message at once), inbound QoS 1/2 messages
 * that wait for the application's ack, subscriptions and their SUBACK checks. 3.1.x and 5.0
 * differ only in CONNECT, SUBSCRIBE, PUBLISH (built in mqtt_client_api.c), the reason codes
 * read and a broker's DISCONNECT: 3.1.1's 4-byte acks are valid 5.0 ones ("success"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/log.h"
#include "mqtt_client_internal.h"

/* ---- lists ------------------------------------------------------------------------ */

void mc_list_push(mc_list *l, mc_msg *m)
{
    m->next = NULL;
    m->prev = l->tail;
    if (l->tail)
        l->tail->next = m;
    else
        l->head = m;
    l->tail = m;
}

void mc_list_unlink(mc_list *l, mc_msg *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        l->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        l->tail = m->prev;
    m->prev = m->next = NULL;
}

void mc_list_prepend_all(mc_list *dst, mc_list *src)
{
    if (!src->head)
        return;
    if (dst->head) {
        src->tail->next = dst->head;
        dst->head->prev = src->tail;
    } else {
        dst->tail = src->tail;
    }
    dst->head = src->head;
    src->head = src->tail = NULL;
}

void mc_complete(bt_mqtt_client *c, mc_list *l, int status)
{
    mc_msg *m = l->head;
    l->head = l->tail = NULL;
    while (m) {
        mc_msg *next = m->next;
        if (c->opt.on_publish_complete && (m->tag || !c->opt.complete_tagged_only))
            c->opt.on_publish_complete(c, m->tag, status, c->opt.userdata);
        free(m);
        m = next;
    }
}

/* ---- output ----------------------------------------------------------------------- */

static int out_oom(bt_mqtt_client *c)
{
    mc_reason(c, "out of memory");
    return -1;
}

int mc_send_empty(bt_mqtt_client *c, bt_mqtt_type t)
{
    bt_buf *o = mc_tr_mqtt_out(c);
    uint8_t *dst = bt_buf_reserve(o, 2);
    if (!dst)
        return out_oom(c);
    o->len += (size_t)bt_mqtt_encode_empty(dst, 2, t);
    return 0;
}

/* PUBACK, PUBREC, PUBREL or PUBCOMP. */
static int send_ack(bt_mqtt_client *c, bt_mqtt_type t, uint16_t pid)
{
    bt_buf *o = mc_tr_mqtt_out(c);
    uint8_t *dst = bt_buf_reserve(o, 4);
    if (!dst)
        return out_oom(c);
    o->len += (size_t)bt_mqtt_encode_ack(dst, 4, t, pid);
    return 0;
}

static bool v5(const bt_mqtt_client *c)
{
    return c->opt.protocol_level == BT_MQTT_V5;
}

static int send_packet(bt_mqtt_client *c, const bt_mqtt_packet *p)
{
    char why[160];
    if (bt_mqtt_check(p, why, sizeof why) < 0) {
        mc_reason(c, "cannot encode %s: %s", bt_mqtt_type_name(p->type), why);
        return -1;
    }
    ssize_t n = bt_mqtt_encoded_len(p);
    bt_buf *o = mc_tr_mqtt_out(c);
    uint8_t *dst = n > 0 ? bt_buf_reserve(o, (size_t)n) : NULL;
    if (!dst)
        return out_oom(c);
    o->len += (size_t)bt_mqtt_encode(p, dst, (size_t)n);
    return 0;
}

int mc_send_connect(bt_mqtt_client *c)
{
    const bt_mqtt_client_config *cfg = &c->cfg;
    bt_mqtt_packet p = {.type = BT_MQTT_CONNECT, .version = v5(c) ? BT_MQTT_V5 : 0};
    bt_mqtt_connect *k = &p.connect;
    /* 5.0 ends a session at disconnect unless told otherwise: keep 3.1.1's persistent one */
    static const bt_mqtt_prop forever = {.id = BT_MQTT_PROP_SESSION_EXPIRY, .num = UINT32_MAX};
    if (v5(c) && !cfg->cleansession) {
        k->props.list = &forever;
        k->props.count = 1;
    }
    k->protocol_level = (uint8_t)c->opt.protocol_level;
    k->clean_session = cfg->cleansession;
    k->keepalive = c->keepalive_s;
    k->client_id.ptr = cfg->clientid ? cfg->clientid : "";
    k->client_id.len = strlen(k->client_id.ptr);
    if (c->will_topic) {
        k->will_flag = true;
        k->will_qos = (uint8_t)c->opt.will_qos;
        k->will_retain = c->opt.will_retain;
        k->will_topic.ptr = c->will_topic;
        k->will_topic.len = strlen(c->will_topic);
        k->will_payload.ptr = c->will_payload;
        k->will_payload.len = c->opt.will_len;
    }
    if (cfg->username && *cfg->username) {
        k->has_username = true;
        k->username.ptr = cfg->username;
        k->username.len = strlen(cfg->username);
    }
    if (cfg->password && *cfg->password) {
        k->has_password = true;
        k->password.ptr = (const uint8_t *)cfg->password;
        k->password.len = strlen(cfg->password);
    }
    return send_packet(c, &p);
}

static uint16_t ctl_pid(bt_mqtt_client *c)
{
    if (c->next_ctl_pid < MC_CTL_PID_FIRST)
        c->next_ctl_pid = MC_CTL_PID_FIRST;
    uint16_t pid = c->next_ctl_pid;
    c->next_ctl_pid = pid == 0xFFFF ? MC_CTL_PID_FIRST : (uint16_t)(pid + 1);
    return pid;
}

void mc_subwait_clear(bt_mqtt_client *c)
{
    while (c->subwait) {
        mc_subwait *w = c->subwait;
        c->subwait = w->next;
        for (size_t i = 0; i < w->n; i++)
            free(w->topics[i]);
        free(w->topics);
        free(w);
    }
}

/* One SUBSCRIBE for n filters, remembered until its SUBACK. */
static int send_subscribe(bt_mqtt_client *c, const bt_mqtt_topic_info *subs, size_t n)
{
    bt_mqtt_sub_entry *e = calloc(n, sizeof *e);
    mc_subwait *w = calloc(1, sizeof *w);
    char **topics = calloc(n, sizeof *topics);
    if (!e || !w || !topics)
        goto oom;
    w->topics = topics;
    for (size_t i = 0; i < n; i++) {
        if (!(topics[i] = strdup(subs[i].topic)))
            goto oom;
        w->n++;
        e[i].topic.ptr = topics[i];
        e[i].topic.len = strlen(topics[i]);
        e[i].qos = (uint8_t)subs[i].qos;
    }
    w->pid = ctl_pid(c);
    bt_mqtt_packet p = {.type = BT_MQTT_SUBSCRIBE, .version = v5(c) ? BT_MQTT_V5 : 0};
    p.subscribe.packet_id = w->pid;
    p.subscribe.count = n;
    p.subscribe.entries = e;
    int rc = send_packet(c, &p);
    free(e);
    if (rc < 0) {
        for (size_t i = 0; i < w->n; i++)
            free(topics[i]);
        free(topics);
        free(w);
        return -1;
    }
    w->next = c->subwait;
    c->subwait = w;
    return 0;
oom:
    if (topics)
        for (size_t i = 0; i < n; i++)
            free(topics[i]);
    free(topics);
    free(w);
    free(e);
    return out_oom(c);
}

static int send_unsubscribe(bt_mqtt_client *c, const char *topic)
{
    bt_mqtt_sub_entry e = {.topic = {topic, strlen(topic)}};
    bt_mqtt_packet p = {.type = BT_MQTT_UNSUBSCRIBE, .version = v5(c) ? BT_MQTT_V5 : 0};
    p.unsubscribe.packet_id = ctl_pid(c);
    p.unsubscribe.count = 1;
    p.unsubscribe.entries = &e;
    return send_packet(c, &p);
}

bool mc_collect(bt_mqtt_client *c, mc_list *done)
{
    bt_buf *o = mc_tr_mqtt_out(c);
    pthread_mutex_lock(&c->mu);
    c->wake_pending = false;
    if (c->state != MC_UP) {
        pthread_mutex_unlock(&c->mu);
        return false;
    }
    for (size_t i = 0; i < c->nacks; i++)
        if (send_ack(c, (bt_mqtt_type)(c->acks[i] >> 16), (uint16_t)c->acks[i]) < 0)
            break; /* out of memory: the broker resends after a reconnect */
    c->nacks = 0;
    while (c->ctl_head) {
        mc_ctl *r = c->ctl_head;
        c->ctl_head = r->next;
        if (r->unsub) {
            send_unsubscribe(c, r->topic);
        } else {
            bt_mqtt_topic_info t = {.topic = r->topic, .qos = r->qos};
            send_subscribe(c, &t, 1);
        }
        free(r);
    }
    c->ctl_tail = NULL;
    bool freed = false, capped = false;
    while (c->queue.head && o->len - o->off < MC_OUT_HIGH) {
        mc_msg *m = c->queue.head;
        if (m->qos && c->ninflight >= c->send_max) {
            capped = true; /* the broker's receive maximum (5.0): an ack makes room */
            break;
        }
        if (m->released) {
            /* QoS 2 whose PUBREC came on an earlier connection: release it again */
            if (send_ack(c, BT_MQTT_PUBREL, m->pid) < 0)
                break;
        } else {
            if (m->sent && m->qos)
                m->data[0] |= 0x08; /* DUP: the broker may have it already */
            if (bt_buf_append(o, m->data, m->len) < 0)
                break;
        }
        mc_list_unlink(&c->queue, m);
        m->sent = true;
        if (m->qos) {
            m->inflight = true;
            c->ninflight++;
            mc_list_push(&c->inflight, m);
        } else {
            c->pending--;
            mc_list_push(done, m);
            freed = true;
        }
    }
    if (freed)
        pthread_cond_broadcast(&c->cond);
    bool more = c->queue.head != NULL && !capped;
    pthread_mutex_unlock(&c->mu);
    return more;
}

void mc_session_reset(bt_mqtt_client *c)
{
    pthread_mutex_lock(&c->mu);
    c->connected = false;
    for (mc_msg *m = c->inflight.head; m; m = m->next)
        m->inflight = false;
    mc_list_prepend_all(&c->queue, &c->inflight);
    c->ninflight = 0;
    c->send_max = 65535;
    /* delivered and unacked: forgotten (the broker sends them again); PUBRECed: kept */
    memset(c->unacked, 0, 2 * MC_IDS_BYTES);
    c->nacks = 0;
    while (c->ctl_head) {
        mc_ctl *r = c->ctl_head;
        c->ctl_head = r->next;
        free(r);
    }
    c->ctl_tail = NULL;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    mc_subwait_clear(c);
}

/* ---- input ------------------------------------------------------------------------ */

static const char *connack_text(int rc)
{
    switch (rc) {
    case BT_MQTT_CONNACK_BAD_PROTOCOL: return "unacceptable protocol version";
    case BT_MQTT_CONNACK_BAD_CLIENT_ID: return "identifier rejected";
    case BT_MQTT_CONNACK_UNAVAILABLE: return "server unavailable";
    case BT_MQTT_CONNACK_BAD_CREDENTIALS: return "bad user name or password";
    case BT_MQTT_CONNACK_NOT_AUTHORIZED: return "not authorized";
    default: return "unknown return code";
    }
}

/* CONNACK accepted: subscribe to everything wanted (the queue follows in mc_collect). */
static int on_connack(bt_mqtt_client *c, const bt_mqtt_connack *k)
{
    if (k->return_code != BT_MQTT_CONNACK_ACCEPTED) {
        if (v5(c))
            mc_reason(c, "connection refused: reason code 0x%02X", k->return_code);
        else
            mc_reason(c, "connection refused: %s (%u)", connack_text(k->return_code),
                      k->return_code);
        return -1;
    }
    c->state = MC_UP;
    c->backoff_ms = MC_BACKOFF_MIN_MS;
    int rc = 0;
    bt_mqtt_prop rm;
    pthread_mutex_lock(&c->mu);
    if (v5(c) && bt_mqtt_props_get(&k->props, BT_MQTT_PROP_RECEIVE_MAXIMUM, &rm))
        c->send_max = (uint16_t)rm.num;
    if (!k->session_present) /* a new session: no QoS 2 id waits for its PUBREL */
        memset(c->unacked + 2 * MC_IDS_BYTES, 0, MC_IDS_BYTES);
    c->connected = true;
    c->conn_gen++;        /* tokens of earlier connections acknowledge nothing now */
    while (c->ctl_head) { /* the whole set goes below */
        mc_ctl *r = c->ctl_head;
        c->ctl_head = r->next;
        free(r);
    }
    c->ctl_tail = NULL;
    for (size_t i = 0; i < c->nsubs && rc == 0; i += 64)
        rc = send_subscribe(c, c->subs + i, c->nsubs - i < 64 ? c->nsubs - i : 64);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    if (rc < 0)
        return -1;
    bt_logkv(BT_LOG_INFO, "mqtt client connected", "address", c->cfg.address, "clientid",
             c->cfg.clientid ? c->cfg.clientid : "", NULL);
    if (c->opt.on_connected)
        c->opt.on_connected(c, k->session_present, c->opt.userdata);
    return 0;
}

static int on_publish(bt_mqtt_client *c, const bt_mqtt_publish *p)
{
    uint8_t bit = (uint8_t)(1u << (p->packet_id & 7));
    size_t at = p->packet_id >> 3;
    if (p->qos == 2) {
        pthread_mutex_lock(&c->mu);
        bool recd = c->unacked[2 * MC_IDS_BYTES + at] & bit;
        pthread_mutex_unlock(&c->mu);
        if (recd) /* delivered and PUBRECed already: the broker missed the PUBREC */
            return send_ack(c, BT_MQTT_PUBREC, p->packet_id);
    }
    if (p->topic.len == 0) {
        /* a 5.0 topic alias: this client announces no alias maximum, so none is valid */
        mc_reason(c, "broker sent a PUBLISH without a topic name");
        return -1;
    }
    if (p->topic.len + 1 > c->topic_cap) {
        size_t cap = p->topic.len + 1 < 256 ? 256 : p->topic.len + 1;
        char *t = realloc(c->topic_buf, cap);
        if (!t)
            return out_oom(c);
        c->topic_buf = t;
        c->topic_cap = cap;
    }
    memcpy(c->topic_buf, p->topic.ptr, p->topic.len);
    c->topic_buf[p->topic.len] = '\0';
    bt_mqtt_message m = {
        .topic = c->topic_buf,
        .payload = p->payload.ptr,
        .payload_len = p->payload.len,
        .qos = p->qos,
        .retain = p->retain,
        .dup = p->dup,
        .packet_id = p->packet_id,
    };
    bool manual = p->qos && !c->opt.auto_ack && c->opt.on_message;
    if (manual) { /* before the callback, which may ack at once */
        pthread_mutex_lock(&c->mu);
        if (p->dup && (c->unacked[at] & bit)) {
            /* the broker's retry of a message the application still holds: its ack will
             * acknowledge this copy too */
            c->resends_held++;
            pthread_mutex_unlock(&c->mu);
            return 0;
        }
        c->unacked[at] |= bit;
        if (p->qos == 2)
            c->unacked[MC_IDS_BYTES + at] |= bit;
        m.ack = mc_token(c->conn_gen, p->packet_id);
        pthread_mutex_unlock(&c->mu);
    }
    if (c->opt.on_message)
        c->opt.on_message(c, &m, c->opt.userdata);
    if (p->qos == 1 && !manual)
        return send_ack(c, BT_MQTT_PUBACK, p->packet_id);
    if (p->qos == 2 && !manual) {
        pthread_mutex_lock(&c->mu);
        c->unacked[2 * MC_IDS_BYTES + at] |= bit;
        pthread_mutex_unlock(&c->mu);
        return send_ack(c, BT_MQTT_PUBREC, p->packet_id);
    }
    return 0;
}

/* PUBREL of an inbound QoS 2 message: it is done (PUBCOMP even for an unknown id, as the
 * broker may have lost our PUBCOMP). */
static int on_pubrel(bt_mqtt_client *c, uint16_t pid)
{
    pthread_mutex_lock(&c->mu);
    c->unacked[2 * MC_IDS_BYTES + (pid >> 3)] &= (uint8_t) ~(1u << (pid & 7));
    pthread_mutex_unlock(&c->mu);
    return send_ack(c, BT_MQTT_PUBCOMP, pid);
}

/* PUBACK (QoS 1), PUBREC or PUBCOMP (QoS 2) of an outgoing message. */
static int on_pub_ack(bt_mqtt_client *c, bt_mqtt_type type, const bt_mqtt_ack *a)
{
    mc_list done = {0};
    uint16_t pid = a->packet_id;
    bool refused = v5(c) && a->reason >= 0x80 && type != BT_MQTT_PUBCOMP;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    mc_msg *m = pid >= 1 && pid <= c->window ? c->slots[pid - 1] : NULL;
    bool want = m && m->inflight &&
                (m->qos == 1 ? type == BT_MQTT_PUBACK
                             : type == (m->released ? BT_MQTT_PUBCOMP : BT_MQTT_PUBREC));
    if (want && type == BT_MQTT_PUBREC && !refused) {
        m->released = true;
        rc = send_ack(c, BT_MQTT_PUBREL, pid);
    } else if (want) {
        mc_list_unlink(&c->inflight, m);
        c->ninflight--;
        c->slots[pid - 1] = NULL;
        c->free_pids[c->nfree++] = pid;
        c->pending--;
        mc_list_push(&done, m);
        pthread_cond_broadcast(&c->cond);
    } else if (type == BT_MQTT_PUBREC) {
        rc = send_ack(c, BT_MQTT_PUBREL, pid); /* a repeat: the broker waits for it */
    }
    pthread_mutex_unlock(&c->mu);
    if (done.head) {
        if (refused)
            bt_logf(BT_LOG_WARN, "mqtt client: broker refused publish %u: reason code 0x%02X", pid,
                    a->reason);
        mc_complete(c, &done, refused ? BT_MQTT_EREFUSED : BT_MQTT_OK);
    } else if (!want) {
        bt_logf(BT_LOG_DEBUG, "mqtt client: %s for unknown packet id %u", bt_mqtt_type_name(type),
                pid);
    }
    return rc;
}

/* SUBACK: a refused filter (0x80) is fatal with validatesubs, else a warning. */
static int on_suback(bt_mqtt_client *c, const bt_mqtt_packet *p)
{
    mc_subwait **pp = &c->subwait, *w;
    while ((w = *pp) && w->pid != p->suback.packet_id)
        pp = &w->next;
    if (!w)
        return 0; /* from a request of an earlier connection */
    *pp = w->next;
    int rc = 0;
    if (p->suback.count != w->n) {
        mc_reason(c, "SUBACK has %zu codes for %zu filters", p->suback.count, w->n);
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < w->n; i++) {
        if (p->suback.codes[i] < BT_MQTT_SUBACK_FAILURE) /* 5.0 failures: 0x80 and up */
            continue;
        if (c->cfg.validatesubs) {
            mc_reason(c, "subscribe topic (%.200s) rejected by broker", w->topics[i]);
            rc = -2;
        } else {
            bt_logkv(BT_LOG_WARN, "mqtt client: subscription rejected by broker", "topic",
                     w->topics[i], NULL);
        }
    }
    for (size_t i = 0; i < w->n; i++)
        free(w->topics[i]);
    free(w->topics);
    free(w);
    return rc;
}

static int handle(bt_mqtt_client *c, const bt_mqtt_packet *p)
{
    if (c->state == MC_MQTT) {
        if (p->type != BT_MQTT_CONNACK) {
            mc_reason(c, "expected CONNACK, broker sent %s", bt_mqtt_type_name(p->type));
            return -1;
        }
        return on_connack(c, &p->connack);
    }
    switch (p->type) {
    case BT_MQTT_PUBLISH: return on_publish(c, &p->publish);
    case BT_MQTT_PUBACK:
    case BT_MQTT_PUBREC:
    case BT_MQTT_PUBCOMP: return on_pub_ack(c, p->type, &p->ack);
    case BT_MQTT_PUBREL: return on_pubrel(c, p->ack.packet_id);
    case BT_MQTT_SUBACK: return on_suback(c, p);
    case BT_MQTT_DISCONNECT: /* 5.0 only: the broker says why it closes */
        mc_reason(c, "broker disconnected: reason code 0x%02X", p->ack.reason);
        return -1;
    case BT_MQTT_UNSUBACK:
    case BT_MQTT_PINGRESP: return 0;
    default: mc_reason(c, "unexpected %s from broker", bt_mqtt_type_name(p->type)); return -1;
    }
}

int mc_handle_input(bt_mqtt_client *c)
{
    char why[160];
    int rc = 0;
    while (rc == 0 && c->in.len > c->in.off && (c->state == MC_MQTT || c->state == MC_UP)) {
        bt_mqtt_packet p;
        size_t used = 0;
        int d = bt_mqtt_decode_v(c->in.p + c->in.off, c->in.len - c->in.off, c->opt.max_packet,
                                 c->opt.protocol_level, &p, &used, why, sizeof why);
        if (d == 0)
            break;
        if (d < 0) {
            mc_reason(c, "bad packet from broker: %s", why);
            return -1;
        }
        c->last_recv = bt_now_ms();
        c->ping_sent = 0; /* the broker is alive */
        rc = handle(c, &p);
        bt_buf_consume(&c->in, used);
        /* stop() from a callback: leave the rest for nobody */
        pthread_mutex_lock(&c->mu);
        bool stop = c->stop_req;
        pthread_mutex_unlock(&c->mu);
        if (stop)
            break;
    }
    return rc;
}
