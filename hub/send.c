/* Every packet the hub sends, encoded here: CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL,
 * PUBCOMP, SUBACK, UNSUBACK and PINGRESP go into the connection's output buffer
 * (conn_send), flushed at the end of the loop turn. Each returns 0, or -1 when the
 * connection is (now) closed. */
#include <stdlib.h>
#include <string.h>

#include "baetyl/topic.h"
#include "hub.h"

/* Output bytes that trigger a write in the middle of a turn. */
#define EARLY_FLUSH_BYTES (64u << 10)

int send_connack(conn *c, uint8_t code)
{
    uint8_t b[4];
    bt_mqtt_encode_connack(b, sizeof b, false, code);
    return conn_send(c, b, sizeof b);
}

int send_puback(conn *c, uint16_t pid)
{
    uint8_t b[4];
    bt_mqtt_encode_puback(b, sizeof b, pid);
    return conn_send(c, b, sizeof b);
}

int send_ack(conn *c, bt_mqtt_type type, uint16_t pid)
{
    uint8_t b[4];
    bt_mqtt_encode_ack(b, sizeof b, type, pid);
    return conn_send(c, b, sizeof b);
}

int send_unsuback(conn *c, uint16_t pid)
{
    uint8_t b[4];
    bt_mqtt_encode_ack(b, sizeof b, BT_MQTT_UNSUBACK, pid);
    return conn_send(c, b, sizeof b);
}

int send_pingresp(conn *c)
{
    uint8_t b[2];
    bt_mqtt_encode_empty(b, sizeof b, BT_MQTT_PINGRESP);
    return conn_send(c, b, sizeof b);
}

/* Encodes a 5.0 packet into c's output. */
static int send5(conn *c, const bt_mqtt_packet *p)
{
    ssize_t need = bt_mqtt_encoded_len(p);
    uint8_t *w = need > 0 ? bt_buf_reserve(&c->out, (size_t)need) : NULL;
    if (!w || bt_mqtt_encode(p, w, (size_t)need) != need) {
        conn_close_rc(c, BT_MQTT_RC_IMPLEMENTATION_SPECIFIC, "cannot encode a packet");
        return -1;
    }
    c->out.len += (size_t)need;
    conn_mark_dirty(c);
    return conn_check_out(c);
}

/* A reason string property, when the client accepts them; a reason string is cut to keep
 * the packet small. */
static size_t why_prop(const conn *c, const char *why, bt_mqtt_prop *pr)
{
    if (!why || !c->problem_info)
        return 0;
    size_t n = strlen(why);
    *pr = (bt_mqtt_prop){.id = BT_MQTT_PROP_REASON_STRING,
                         .bin = {(const uint8_t *)why, n > 200 ? 200 : n}};
    return 1;
}

int send_ack_rc(conn *c, bt_mqtt_type type, uint16_t pid, uint8_t rc, const char *why)
{
    bt_mqtt_prop pr;
    bt_mqtt_packet p = {
        .type = type, .version = BT_MQTT_V5, .ack = {.packet_id = pid, .reason = rc}};
    p.ack.props.list = &pr;
    p.ack.props.count = why_prop(c, why, &pr);
    return send5(c, &p);
}

int send_unsuback5(conn *c, uint16_t pid, const uint8_t *codes, size_t n)
{
    bt_mqtt_packet p = {.type = BT_MQTT_UNSUBACK,
                        .version = BT_MQTT_V5,
                        .suback = {.packet_id = pid, .codes = codes, .count = n}};
    return send5(c, &p);
}

int send_connack5(conn *c, bool session_present, uint8_t rc, const bt_mqtt_prop *props, size_t n)
{
    bt_mqtt_packet p = {.type = BT_MQTT_CONNACK,
                        .version = BT_MQTT_V5,
                        .connack = {.session_present = session_present, .return_code = rc}};
    p.connack.props.list = props;
    p.connack.props.count = n;
    return send5(c, &p);
}

int send_disconnect5(conn *c, uint8_t rc, const char *why)
{
    bt_mqtt_prop pr;
    bt_mqtt_packet p = {.type = BT_MQTT_DISCONNECT, .version = BT_MQTT_V5, .ack = {.reason = rc}};
    p.ack.props.list = &pr;
    p.ack.props.count = why_prop(c, why, &pr);
    return send5(c, &p);
}

int send_suback(conn *c, uint16_t pid, const uint8_t *codes, size_t n)
{
    if (c->level == BT_MQTT_V5) {
        bt_mqtt_packet p = {.type = BT_MQTT_SUBACK,
                            .version = BT_MQTT_V5,
                            .suback = {.packet_id = pid, .codes = codes, .count = n}};
        return send5(c, &p);
    }
    size_t cap = 5 + 2 + n;
    uint8_t *b = malloc(cap);
    ssize_t len = b ? bt_mqtt_encode_suback(b, cap, pid, codes, n) : -1;
    int rc;
    if (len < 0 || (size_t)len > cap) {
        conn_close(c, "cannot encode SUBACK");
        rc = -1;
    } else {
        rc = conn_send(c, b, (size_t)len);
    }
    free(b);
    return rc;
}

/* The subscription identifiers of c's subscriptions matching topic (no-local ones apart for
 * its own messages), as properties into out (NULL: only counts); their length. Computed at
 * each send, so a resent PUBLISH carries them too. */
static size_t sub_id_props(const conn *c, const char *topic, uint64_t from, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < c->nsubs; i++) {
        const conn_sub *s = &c->subs[i];
        if (!s->id || ((s->opts & BT_MQTT_SUBOPT_NO_LOCAL) && from == c->id) ||
            !shared_match(s->filter, topic))
            continue;
        if (out)
            out[o] = BT_MQTT_PROP_SUBSCRIPTION_ID;
        o++;
        uint32_t v = s->id; /* variable byte integer, 1..268435455 (the decoder checked) */
        do {
            if (out)
                out[o] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
            o++;
            v >>= 7;
        } while (v);
    }
    return o;
}

/* A 5.0 PUBLISH: pm's properties after its remaining message expiry and the subscription
 * identifiers. Dropped (0) when it is over the client's maximum packet size (MQTT 5.0
 * §3.1.2.11.4). */
static int encode_publish5(conn *c, const char *topic, size_t tlen, const void *payload,
                           size_t plen, uint8_t q, bool retain, bool dup, uint16_t pid,
                           const msg *pm)
{
    if (!c->sub_ids && !c->alias_out_max && (!pm || (!pm->expiry_s && !pm->props_len))) {
        /* nothing to add (most messages): the 3.1.1 path with an empty property length */
        size_t room = 5 + 2 + tlen + 2 + 1 + plen;
        uint8_t *w = bt_buf_reserve(&c->out, room);
        if (!w) {
            conn_close(c, "out of memory");
            return -1;
        }
        ssize_t n = bt_mqtt_encode_publish5(w, room, topic, tlen, payload, plen, q, retain,
                                            q ? dup : false, pid, NULL, 0);
        if (n < 0 || (size_t)n > room || (c->max_packet && (uint64_t)n > c->max_packet))
            return 1;
        c->out.len += (size_t)n;
        return 0;
    }
    uint8_t small[256];
    size_t nids = c->sub_ids ? sub_id_props(c, topic, pm ? pm->from : 0, NULL) : 0;
    /* Topic aliases towards the client, first come first served: the first alias_out_max
     * topics sent get one for the connection's life, the others always go in full. */
    uint16_t alias = 0;
    bool fresh = false;
    if (c->alias_out_max) {
        alias = (uint16_t)(uintptr_t)map_get(&c->alias_out, topic);
        if (!alias && c->alias_out.n < c->alias_out_max) {
            alias = (uint16_t)(c->alias_out.n + 1);
            fresh = true;
        }
    }
    size_t plen5 = (pm ? pm->props_len : 0) + (pm && pm->expiry_s ? 5 : 0) + nids + (alias ? 3 : 0);
    uint8_t *props = plen5 <= sizeof small ? small : malloc(plen5);
    if (!props) {
        conn_close(c, "out of memory");
        return -1;
    }
    size_t o = 0;
    if (alias) {
        props[o++] = BT_MQTT_PROP_TOPIC_ALIAS;
        props[o++] = (uint8_t)(alias >> 8);
        props[o++] = (uint8_t)alias;
    }
    if (nids)
        o += sub_id_props(c, topic, pm ? pm->from : 0, props + o);
    if (pm && pm->expiry_s) {
        int64_t left = (int64_t)pm->expiry_s - (hub_wall_ms() - pm->ts_ms) / 1000;
        uint32_t v = left > 0 ? (uint32_t)left : 1;
        props[o++] = BT_MQTT_PROP_MESSAGE_EXPIRY;
        for (int i = 3; i >= 0; i--)
            props[o++] = (uint8_t)(v >> (8 * i));
    }
    if (pm && pm->props_len)
        memcpy(props + o, pm->props, pm->props_len);
    /* the hot path encoder: the topic was checked on the way in, the properties are the
     * hub's own or were checked on the way in (or when read back from the store) */
    size_t tl = alias && !fresh ? 0 : tlen;
    dup = q ? dup : false;
    /* encoded once into room for the largest header (as 3.1.1 does), then measured */
    size_t room = 5 + 2 + tl + 2 + 4 + plen5 + plen;
    uint8_t *w = bt_buf_reserve(&c->out, room);
    ssize_t need = w ? bt_mqtt_encode_publish5(w, room, topic, tl, payload, plen, q, retain, dup,
                                               pid, props, plen5)
                     : -1;
    int rc = 0;
    if (!w) {
        conn_close(c, "out of memory");
        rc = -1;
    } else if (need < 0 || (size_t)need > room ||
               (c->max_packet && (uint64_t)need > c->max_packet)) {
        rc = 1; /* cannot go to this client (nothing was committed to c->out) */
    } else if (fresh && map_put(&c->alias_out, topic, (void *)(uintptr_t)alias, NULL) < 0) {
        /* the alias is the client's only once a PUBLISH setting it went out */
        conn_close(c, "out of memory");
        rc = -1;
    } else {
        c->out.len += (size_t)need;
    }
    if (props != small)
        free(props);
    return rc;
}

int send_publish(conn *c, const char *topic, size_t tlen, const void *payload, size_t plen,
                 uint8_t q, bool retain, bool dup, uint16_t pid, const msg *pm)
{
    if (c->level == BT_MQTT_V5) {
        int r = encode_publish5(c, topic, tlen, payload, plen, q, retain, dup, pid, pm);
        if (r)
            return r < 0 ? -1 : 0;
    } else {
        size_t need = 5 + 2 + tlen + 2 + plen;
        uint8_t *w = bt_buf_reserve(&c->out, need);
        if (!w) {
            conn_close(c, "out of memory");
            return -1;
        }
        ssize_t n =
            bt_mqtt_encode_publish(w, need, topic, tlen, payload, plen, q, retain, dup, pid);
        if (n < 0 || (size_t)n > need)
            return -1;
        c->out.len += (size_t)n;
    }
    /* A large backlog goes out now rather than at the end of the turn, so a fan-in does
     * not pile up more than the socket could have taken. */
    if (bt_buf_size(&c->out) >= EARLY_FLUSH_BYTES && !c->want_write)
        conn_flush_soft(c);
    if (!c->in_dirty)
        conn_mark_dirty(c);
    c->h->ctr.msgs_out++;
    c->h->ctr.out_qos[q & 3]++;
    return bt_buf_size(&c->out) > c->h->out_max ? conn_check_out(c) : 0;
}
