/* PUBLISH from a client (SPEC §11): topic and permission checks, a QoS 2 packet id already
 * received (and not released) is not published again; the message then goes to hub_publish
 * (retain, routes, group commit for QoS 1 and 2). 5.0: topic aliases, properties kept for
 * 5.0 subscribers, payload format checked, receive maximum, refusals by reason code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "baetyl/topic.h"
#include "hub.h"

/* 5.0 topic alias (MQTT 5.0 §3.3.2.3.4): a topic with an alias sets it, an empty topic
 * uses it. 0 with *topic the topic to publish to, or -1 after closing. */
static int resolve_alias(conn *c, const bt_mqtt_publish *pb, bt_mqtt_str *topic)
{
    bt_mqtt_prop pr;
    if (pb->props.present & ((uint64_t)1 << BT_MQTT_PROP_SUBSCRIPTION_ID)) {
        conn_close_rc(c, BT_MQTT_RC_PROTOCOL_ERROR, "subscription identifier in a PUBLISH");
        return -1;
    }
    if (!(pb->props.present & ((uint64_t)1 << BT_MQTT_PROP_TOPIC_ALIAS)) ||
        !bt_mqtt_props_get(&pb->props, BT_MQTT_PROP_TOPIC_ALIAS, &pr))
        return 0;
    if (pr.num > TOPIC_ALIAS_MAX) {
        conn_close_rc(c, BT_MQTT_RC_TOPIC_ALIAS_INVALID, "topic alias over the maximum");
        return -1;
    }
    if (!c->aliases && !(c->aliases = calloc(TOPIC_ALIAS_MAX, sizeof *c->aliases))) {
        conn_close(c, "out of memory");
        return -1;
    }
    char **slot = &c->aliases[pr.num - 1];
    if (pb->topic.len == 0) {
        if (!*slot) {
            conn_close_rc(c, BT_MQTT_RC_PROTOCOL_ERROR, "topic alias not set");
            return -1;
        }
        topic->ptr = *slot;
        topic->len = strlen(*slot);
        return 0;
    }
    char *t = malloc(pb->topic.len + 1);
    if (!t) {
        conn_close(c, "out of memory");
        return -1;
    }
    memcpy(t, pb->topic.ptr, pb->topic.len);
    t[pb->topic.len] = 0;
    free(*slot);
    *slot = t;
    return 0;
}

/* The message of a 5.0 PUBLISH: its properties but the topic alias and the expiry, which
 * goes to m->expiry_s. */
static msg *msg5(const bt_mqtt_publish *pb, bt_mqtt_str topic)
{
    uint8_t small[256];
    size_t cap = pb->props.raw.len;
    uint8_t *props = cap <= sizeof small ? small : malloc(cap);
    if (!props)
        return NULL;
    uint64_t drop = (uint64_t)1 << BT_MQTT_PROP_TOPIC_ALIAS | (uint64_t)1
                                                                  << BT_MQTT_PROP_MESSAGE_EXPIRY;
    ssize_t n = bt_mqtt_props_filter(&pb->props, drop, props, cap);
    msg *m = n < 0 ? NULL
                   : msg_new_props(topic.ptr, topic.len, pb->payload.ptr, pb->payload.len, props,
                                   (size_t)n, pb->qos, pb->retain);
    if (props != small)
        free(props);
    bt_mqtt_prop pr;
    if (m && bt_mqtt_props_get(&pb->props, BT_MQTT_PROP_MESSAGE_EXPIRY, &pr))
        m->expiry_s = pr.num ? pr.num : 0;
    return m;
}

/* A 5.0 publish the hub does not take, answered with its reason: PUBACK or PUBREC for QoS
 * 1 and 2 (the connection stays), DISCONNECT for QoS 0. */
static int refuse5(conn *c, const bt_mqtt_publish *pb, uint8_t rc, const char *why)
{
    if (pb->qos == 0) {
        conn_close_rc(c, rc, why);
        return -1;
    }
    return send_ack_rc(c, pb->qos == 2 ? BT_MQTT_PUBREC : BT_MQTT_PUBACK, pb->packet_id, rc, why);
}

/* 5.0 receive maximum (MQTT 5.0 §3.3.4): QoS 1 publishes not yet acknowledged and QoS 2
 * ones not yet completed, at most message.ingress.qos1.buffer.size (told in CONNACK). */
static bool over_receive_max(const conn *c)
{
    size_t n = c->rx2.n;
    for (size_t i = 0; i < c->h->npend; i++)
        n += c->h->pend[i].c == c && c->h->pend[i].m->qos == 1;
    return n >= (size_t)c->h->cfg->in_qos1_size;
}

/* Whether some subscription of c has no-local: its own QoS 1/2 messages keep its client id,
 * so that the log read back (catch-up, restart) skips them for it too. */
static bool has_no_local(const conn *c)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (c->subs[i].opts & BT_MQTT_SUBOPT_NO_LOCAL)
            return true;
    return false;
}

int handle_publish(conn *c, const bt_mqtt_packet *p)
{
    const bt_mqtt_publish *pb = &p->publish;
    bool v5 = p->version == BT_MQTT_V5;
    bt_mqtt_str topic = pb->topic;
    if (v5 && resolve_alias(c, pb, &topic) < 0)
        return -1;
    if (!bt_topic_valid_name(topic.ptr, topic.len)) {
        char why[320];
        snprintf(why, sizeof why, "publish topic (%.*s) invalid", (int)topic.len, topic.ptr);
        conn_close(c, why);
        return -1;
    }
    if (v5 && pb->qos && !pid_set_has(&c->rx2, pb->packet_id) && over_receive_max(c)) {
        conn_close_rc(c, BT_MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded");
        return -1;
    }
    /* most 5.0 PUBLISHes carry no property: they take the 3.1.1 path (the decoder's
     * `present` bits say which are there; profiled, the calls cost 5.0 ~5 % of the hub) */
    uint64_t present = v5 ? pb->props.present : 0;
    msg *m = present ? msg5(pb, topic)
                     : msg_new(topic.ptr, topic.len, pb->payload.ptr, pb->payload.len, pb->qos,
                               pb->retain);
    if (!m) {
        conn_close(c, "out of memory");
        return -1;
    }
    if (!auth_can_pub(c->principal, m->topic)) {
        char why[320];
        snprintf(why, sizeof why, "publish to topic (%s) not permitted", m->topic);
        msg_unref(m);
        if (v5)
            return refuse5(c, pb, BT_MQTT_RC_NOT_AUTHORIZED, why);
        conn_close(c, why);
        return -1;
    }
    bt_mqtt_prop pr;
    if ((present & ((uint64_t)1 << BT_MQTT_PROP_PAYLOAD_FORMAT)) &&
        bt_mqtt_props_get(&pb->props, BT_MQTT_PROP_PAYLOAD_FORMAT, &pr) && pr.num == 1 &&
        bt_mqtt_utf8_check((const char *)pb->payload.ptr, pb->payload.len) != 0) {
        msg_unref(m);
        return refuse5(c, pb, BT_MQTT_RC_PAYLOAD_FORMAT_INVALID,
                       "payload format indicator 1 but the payload is not UTF-8");
    }
    if (pb->qos == 2) {
        if (pid_set_has(&c->rx2, pb->packet_id)) {
            /* Resent: PUBREC again, unless the first one still waits for its commit. */
            msg_unref(m);
            for (size_t i = 0; i < c->h->npend; i++)
                if (c->h->pend[i].c == c && c->h->pend[i].pid == pb->packet_id)
                    return 0;
            return send_ack(c, BT_MQTT_PUBREC, pb->packet_id);
        }
        if (pid_set_add(&c->rx2, pb->packet_id) < 0) {
            msg_unref(m);
            conn_close(c, "out of memory");
            return -1;
        }
        psession_qos2_record(c, 'i', pb->packet_id, true);
    }
    m->ts_ms = c->h->wall_ms;
    m->from = c->id;
    if (pb->qos && c->sub_opts && c->client_id && has_no_local(c))
        m->origin = strdup(c->client_id); /* without it (no memory): only live no-local */
    int rc = hub_publish(c->h, m, c, pb->packet_id);
    msg_unref(m);
    return rc;
}

/* PUBACK of a QoS 1 delivery: frees its window slot; a session catching up from the log
 * pulls more. An unknown packet id (or one of a QoS 2 delivery) is ignored (MQTT 3.1.1
 * §4.3.2). */
int handle_puback(conn *c, uint16_t pid)
{
    outq_entry *e = session_find(c, pid);
    if (!e || e->qos != 1)
        return 0;
    session_entry_acked(c, e);
    if (!c->clean)
        c->h->offsets_acked = true;
    msg_unref(e->m);
    e->m = NULL;
    if (e->seq) {
        c->qlog--;
        c->h->log_acked = true;
        psession_seq_done(c, e->seq); /* acknowledged before an earlier one: not sent again */
    }
    session_acked(c);
    return 0;
}
