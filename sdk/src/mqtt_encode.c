/* MQTT 3.1 / 3.1.1 / 5.0 encoder: packets into a caller's buffer. Sizes are computed first,
 * so a buffer that is too small is reported with the size it needs and left untouched; a
 * packet the decoder would reject is never written. */
#include "baetyl/mqtt_codec.h"
#include "baetyl/error.h"
#include "mqtt_props.h"

#include <stdio.h>
#include <string.h>

/* Bytes of the variable length encoding of rl (rl <= BT_MQTT_MAX_REMAINING). */
static size_t vlen(size_t rl)
{
    return rl < 128 ? 1 : rl < 16384 ? 2 : rl < 2097152 ? 3 : 4;
}

/* Writes the fixed header, returns its size. */
static size_t put_header(uint8_t *b, uint8_t first, size_t rl)
{
    size_t i = 0;
    b[i++] = first;
    do {
        uint8_t d = rl & 0x7F;
        rl >>= 7;
        b[i++] = rl ? (d | 0x80) : d;
    } while (rl);
    return i;
}

static uint8_t *put_u16(uint8_t *b, uint16_t v)
{
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
    return b + 2;
}

static uint8_t *put_bytes(uint8_t *b, const void *p, size_t n)
{
    b = put_u16(b, (uint16_t)n);
    if (n)
        memcpy(b, p, n);
    return b + n;
}

static int check_bin(const void *p, size_t n, const char *what, char *err, size_t errlen)
{
    if (n > 0xFFFF)
        return bt_errf(err, errlen, "%s longer than 65535 bytes", what);
    if (n && !p)
        return bt_errf(err, errlen, "%s is NULL", what);
    return 0;
}

static int check_str(bt_mqtt_str s, const char *what, char *err, size_t errlen)
{
    if (check_bin(s.ptr, s.len, what, err, errlen) < 0)
        return -1;
    int rc = bt_mqtt_utf8_check(s.ptr, s.len);
    if (rc == -1)
        return bt_errf(err, errlen, "invalid UTF-8 in %s", what);
    if (rc == -2)
        return bt_errf(err, errlen, "%s contains U+0000", what);
    return 0;
}

/* ---- validation and sizes ------------------------------------------------------------ */

static ssize_t props_add(size_t *rl, const bt_mqtt_props *ps, int type, char *err, size_t errlen)
{
    ssize_t n = bt_mqtt_props_size(ps, type, err, errlen);
    if (n < 0)
        return -1;
    *rl += (size_t)n;
    return 0;
}

static bool props_empty(const bt_mqtt_props *ps)
{
    return ps->list ? ps->count == 0 : ps->raw.len == 0;
}

static ssize_t connect_rl(const bt_mqtt_connect *c, char *err, size_t errlen)
{
    if (c->protocol_level != 3 && c->protocol_level != 4 && c->protocol_level != 5)
        return bt_errf(err, errlen, "unsupported protocol level %u", c->protocol_level);
    if (c->will_qos > 2)
        return bt_errf(err, errlen, "will qos %u", c->will_qos);
    if (!c->will_flag && c->will_qos)
        return bt_errf(err, errlen, "will flag clear but will qos set");
    if (!c->will_flag && c->will_retain)
        return bt_errf(err, errlen, "will flag clear but will retain set");
    if (c->protocol_level == 4 && c->has_password && !c->has_username)
        return bt_errf(err, errlen, "password without username");
    size_t rl = (c->protocol_level == 3 ? 8 : 6) + 4; /* name, level, flags, keepalive */
    if (c->protocol_level == 5) {
        if (props_add(&rl, &c->props, BT_MQTT_CONNECT, err, errlen) < 0)
            return -1;
        bt_mqtt_prop m;
        if (bt_mqtt_props_get(&c->props, BT_MQTT_PROP_AUTH_DATA, NULL) &&
            !bt_mqtt_props_get(&c->props, BT_MQTT_PROP_AUTH_METHOD, &m))
            return bt_errf(err, errlen, "CONNECT authentication data without a method");
        if (c->will_flag && props_add(&rl, &c->will_props, 0, err, errlen) < 0)
            return -1;
    }
    if (check_str(c->client_id, "client id", err, errlen) < 0)
        return -1;
    rl += 2 + c->client_id.len;
    if (c->will_flag) {
        if (check_str(c->will_topic, "will topic", err, errlen) < 0 ||
            check_bin(c->will_payload.ptr, c->will_payload.len, "will payload", err, errlen) < 0)
            return -1;
        rl += 4 + c->will_topic.len + c->will_payload.len;
    }
    if (c->has_username) {
        if (check_str(c->username, "username", err, errlen) < 0)
            return -1;
        rl += 2 + c->username.len;
    }
    if (c->has_password) {
        if (check_bin(c->password.ptr, c->password.len, "password", err, errlen) < 0)
            return -1;
        rl += 2 + c->password.len;
    }
    return (ssize_t)rl;
}

/* PUBLISH rules shared by the generic and the hot-path encoders (no UTF-8 check here). */
static ssize_t publish_rl(size_t topic_len, const void *topic, size_t payload_len, int qos,
                          bool dup, uint16_t packet_id, size_t props_len, char *err, size_t errlen)
{
    if (qos < 0 || qos > 2)
        return bt_errf(err, errlen, "PUBLISH qos %d", qos);
    if (qos == 0 && dup)
        return bt_errf(err, errlen, "PUBLISH dup with qos 0");
    if (qos > 0 && packet_id == 0)
        return bt_errf(err, errlen, "packet id 0 in PUBLISH");
    if (check_bin(topic, topic_len, "topic", err, errlen) < 0)
        return -1;
    size_t fixed = 2 + topic_len + (qos ? 2 : 0) + props_len;
    if (payload_len > BT_MQTT_MAX_REMAINING - fixed)
        return bt_errf(err, errlen, "PUBLISH payload too large (%zu bytes)", payload_len);
    return (ssize_t)(fixed + payload_len);
}

/* Size of a SUBSCRIBE/UNSUBSCRIBE list, given as entries or as raw wire bytes. */
static ssize_t sub_list_rl(const bt_mqtt_packet *p, char *err, size_t errlen)
{
    const bt_mqtt_sub_list *l = &p->subscribe;
    const char *name = bt_mqtt_type_name(p->type);
    bool sub = p->type == BT_MQTT_SUBSCRIBE;
    if (l->packet_id == 0)
        return bt_errf(err, errlen, "packet id 0 in %s", name);
    if (!l->entries && l->raw.len && !l->raw.ptr)
        return bt_errf(err, errlen, "%s list is NULL", name);
    bt_mqtt_sub_iter it;
    bt_mqtt_sub_iter_init(&it, p);
    bt_mqtt_str t = {NULL, 0};
    uint8_t q = 0;
    size_t rl = 2, n = 0;
    while (bt_mqtt_sub_next(&it, &t, &q)) {
        if (check_str(t, "topic filter", err, errlen) < 0)
            return -1;
        if (p->version == BT_MQTT_V5 && sub) {
            if ((q & 0xC0) || BT_MQTT_SUBOPT_RETAIN_HANDLING(q) == 3 || BT_MQTT_SUBOPT_QOS(q) == 3)
                return bt_errf(err, errlen, "SUBSCRIBE options 0x%02x invalid", q);
        } else if (q > 2)
            return bt_errf(err, errlen, "SUBSCRIBE qos %u", q);
        rl += 2 + t.len + (sub ? 1 : 0);
        if (rl > BT_MQTT_MAX_REMAINING)
            return bt_errf(err, errlen, "%s too large", name);
        n++;
    }
    if (!l->entries && it.pos != it.end)
        return bt_errf(err, errlen, "%s list is malformed", name);
    if (n == 0)
        return bt_errf(err, errlen, "%s with no topic filter", name);
    if (n != l->count)
        return bt_errf(err, errlen, "%s count %zu but its list has %zu", name, l->count, n);
    if (p->version == BT_MQTT_V5 && props_add(&rl, &l->props, p->type, err, errlen) < 0)
        return -1;
    return (ssize_t)rl;
}

static ssize_t suback_rl(uint16_t packet_id, const uint8_t *codes, size_t n, char *err,
                         size_t errlen)
{
    if (packet_id == 0)
        return bt_errf(err, errlen, "packet id 0 in SUBACK");
    if (n == 0 || !codes)
        return bt_errf(err, errlen, "SUBACK with no return codes");
    if (n > BT_MQTT_MAX_REMAINING - 2)
        return bt_errf(err, errlen, "SUBACK too large");
    for (size_t i = 0; i < n; i++)
        if (codes[i] > 2 && codes[i] != BT_MQTT_SUBACK_FAILURE)
            return bt_errf(err, errlen, "SUBACK return code 0x%02x invalid", codes[i]);
    return (ssize_t)(2 + n);
}

/* A PUBLISH given as a packet (3.1.x or 5.0): its strings checked too. */
static ssize_t publish_packet_rl(const bt_mqtt_packet *p, char *err, size_t errlen)
{
    const bt_mqtt_publish *x = &p->publish;
    if (check_str(x->topic, "topic", err, errlen) < 0)
        return -1;
    if (x->payload.len && !x->payload.ptr)
        return bt_errf(err, errlen, "payload is NULL");
    size_t pl = 0;
    if (p->version == BT_MQTT_V5) {
        if (props_add(&pl, &x->props, BT_MQTT_PUBLISH, err, errlen) < 0)
            return -1;
        if (x->topic.len == 0 && !bt_mqtt_props_get(&x->props, BT_MQTT_PROP_TOPIC_ALIAS, NULL))
            return bt_errf(err, errlen, "PUBLISH empty topic without a topic alias");
    }
    return publish_rl(x->topic.len, x->topic.ptr, x->payload.len, x->qos, x->dup, x->packet_id, pl,
                      err, errlen);
}

/* 5.0 SUBACK and UNSUBACK. */
static ssize_t suback5_rl(const bt_mqtt_packet *p, char *err, size_t errlen)
{
    const bt_mqtt_suback *s = &p->suback;
    const char *name = bt_mqtt_type_name(p->type);
    if (s->packet_id == 0)
        return bt_errf(err, errlen, "packet id 0 in %s", name);
    if (s->count == 0 || !s->codes)
        return bt_errf(err, errlen, "%s with no return codes", name);
    for (size_t i = 0; i < s->count; i++)
        if (!bt_mqtt_reason_valid(p->type, s->codes[i]))
            return bt_errf(err, errlen, "%s return code 0x%02x invalid", name, s->codes[i]);
    size_t rl = 2 + s->count;
    if (props_add(&rl, &s->props, p->type, err, errlen) < 0)
        return -1;
    if (rl > BT_MQTT_MAX_REMAINING)
        return bt_errf(err, errlen, "%s too large", name);
    return (ssize_t)rl;
}

/* 5.0 PUB acks, DISCONNECT and AUTH: no reason code when it is 0 and there are no
 * properties, no property length when there are none. */
static ssize_t reason_rl(const bt_mqtt_packet *p, char *err, size_t errlen)
{
    const bt_mqtt_ack *a = &p->ack;
    const char *name = bt_mqtt_type_name(p->type);
    bool has_id = p->type != BT_MQTT_DISCONNECT && p->type != BT_MQTT_AUTH;
    if (has_id && a->packet_id == 0)
        return bt_errf(err, errlen, "packet id 0 in %s", name);
    if (!bt_mqtt_reason_valid(p->type, a->reason))
        return bt_errf(err, errlen, "%s reason code 0x%02x invalid", name, a->reason);
    size_t rl = has_id ? 2 : 0;
    if (a->reason == 0 && props_empty(&a->props))
        return bt_mqtt_props_check(&a->props, p->type, NULL, err, errlen) < 0 ? -1 : (ssize_t)rl;
    rl++;
    if (props_empty(&a->props)) /* no property length either (§3.4.2.2.1) */
        return (ssize_t)rl;
    if (props_add(&rl, &a->props, p->type, err, errlen) < 0)
        return -1;
    return (ssize_t)rl;
}

static ssize_t remaining5(const bt_mqtt_packet *p, char *err, size_t errlen)
{
    size_t rl;
    switch (p->type) {
    case BT_MQTT_CONNACK:
        if (!bt_mqtt_reason_valid(BT_MQTT_CONNACK, p->connack.return_code))
            return bt_errf(err, errlen, "CONNACK reason code 0x%02x invalid",
                           p->connack.return_code);
        if (p->connack.session_present && p->connack.return_code)
            return bt_errf(err, errlen, "CONNACK session present with reason code 0x%02x",
                           p->connack.return_code);
        rl = 2;
        return props_add(&rl, &p->connack.props, BT_MQTT_CONNACK, err, errlen) < 0 ? -1
                                                                                   : (ssize_t)rl;
    case BT_MQTT_PUBLISH: return publish_packet_rl(p, err, errlen);
    case BT_MQTT_SUBSCRIBE:
    case BT_MQTT_UNSUBSCRIBE: return sub_list_rl(p, err, errlen);
    case BT_MQTT_SUBACK:
    case BT_MQTT_UNSUBACK: return suback5_rl(p, err, errlen);
    case BT_MQTT_PINGREQ:
    case BT_MQTT_PINGRESP: return 0;
    case BT_MQTT_PUBACK:
    case BT_MQTT_PUBREC:
    case BT_MQTT_PUBREL:
    case BT_MQTT_PUBCOMP:
    case BT_MQTT_DISCONNECT:
    case BT_MQTT_AUTH: return reason_rl(p, err, errlen);
    default: return bt_errf(err, errlen, "unknown packet type %d", (int)p->type);
    }
}

static bool is_ack(int type)
{
    return type == BT_MQTT_PUBACK || type == BT_MQTT_PUBREC || type == BT_MQTT_PUBREL ||
           type == BT_MQTT_PUBCOMP || type == BT_MQTT_UNSUBACK;
}

/* Remaining length of p, or -1 with a reason. */
static ssize_t remaining(const bt_mqtt_packet *p, char *err, size_t errlen)
{
    if (p->type == BT_MQTT_CONNECT) {
        if ((p->connect.protocol_level == 5) != (p->version == BT_MQTT_V5))
            return bt_errf(err, errlen, "CONNECT level %u in a packet of version %u",
                           p->connect.protocol_level, p->version);
        return connect_rl(&p->connect, err, errlen);
    }
    if (p->version == BT_MQTT_V5)
        return remaining5(p, err, errlen);
    if (p->version != 0)
        return bt_errf(err, errlen, "packet version %u (0 or 5)", p->version);
    switch (p->type) {
    case BT_MQTT_CONNACK:
        if (p->connack.return_code > BT_MQTT_CONNACK_NOT_AUTHORIZED)
            return bt_errf(err, errlen, "CONNACK return code %u unknown", p->connack.return_code);
        if (p->connack.session_present && p->connack.return_code)
            return bt_errf(err, errlen, "CONNACK session present with return code %u",
                           p->connack.return_code);
        return 2;
    case BT_MQTT_PUBLISH: return publish_packet_rl(p, err, errlen);
    case BT_MQTT_PUBACK:
    case BT_MQTT_PUBREC:
    case BT_MQTT_PUBREL:
    case BT_MQTT_PUBCOMP:
    case BT_MQTT_UNSUBACK:
        if (p->ack.packet_id == 0)
            return bt_errf(err, errlen, "packet id 0 in %s", bt_mqtt_type_name(p->type));
        return 2;
    case BT_MQTT_SUBSCRIBE:
    case BT_MQTT_UNSUBSCRIBE: return sub_list_rl(p, err, errlen);
    case BT_MQTT_SUBACK:
        return suback_rl(p->suback.packet_id, p->suback.codes, p->suback.count, err, errlen);
    case BT_MQTT_PINGREQ:
    case BT_MQTT_PINGRESP:
    case BT_MQTT_DISCONNECT: return 0;
    default: return bt_errf(err, errlen, "unknown packet type %d", (int)p->type);
    }
}

int bt_mqtt_check(const bt_mqtt_packet *p, char *err, size_t errlen)
{
    return remaining(p, err, errlen) < 0 ? -1 : 0;
}

ssize_t bt_mqtt_encoded_len(const bt_mqtt_packet *p)
{
    ssize_t rl = remaining(p, NULL, 0);
    return rl < 0 ? -1 : (ssize_t)(1 + vlen((size_t)rl) + (size_t)rl);
}

/* ---- writing ------------------------------------------------------------------------- */

static uint8_t first_byte(const bt_mqtt_packet *p)
{
    uint8_t b = (uint8_t)(p->type << 4);
    if (p->type == BT_MQTT_PUBREL || p->type == BT_MQTT_SUBSCRIBE || p->type == BT_MQTT_UNSUBSCRIBE)
        b |= 0x02;
    return b;
}

static void write_connect(uint8_t *b, const bt_mqtt_connect *c)
{
    bool v5 = c->protocol_level == 5;
    if (c->protocol_level != 3)
        b = put_bytes(b, "MQTT", 4);
    else
        b = put_bytes(b, "MQIsdp", 6);
    *b++ = c->protocol_level;
    uint8_t flags = (uint8_t)((c->clean_session ? 0x02 : 0) | (c->will_flag ? 0x04 : 0) |
                              (c->will_flag ? c->will_qos << 3 : 0) |
                              (c->will_flag && c->will_retain ? 0x20 : 0) |
                              (c->has_password ? 0x40 : 0) | (c->has_username ? 0x80 : 0));
    *b++ = flags;
    b = put_u16(b, c->keepalive);
    if (v5)
        b = bt_mqtt_props_write(b, &c->props);
    b = put_bytes(b, c->client_id.ptr, c->client_id.len);
    if (c->will_flag) {
        if (v5)
            b = bt_mqtt_props_write(b, &c->will_props);
        b = put_bytes(b, c->will_topic.ptr, c->will_topic.len);
        b = put_bytes(b, c->will_payload.ptr, c->will_payload.len);
    }
    if (c->has_username)
        b = put_bytes(b, c->username.ptr, c->username.len);
    if (c->has_password)
        put_bytes(b, c->password.ptr, c->password.len);
}

/* Fixed header, topic and packet id of a PUBLISH whose remaining length is rl. */
static size_t write_publish_head(uint8_t *buf, size_t rl, const char *topic, size_t topic_len,
                                 int qos, bool retain, bool dup, uint16_t packet_id,
                                 const bt_mqtt_props *props)
{
    uint8_t first =
        (uint8_t)(BT_MQTT_PUBLISH << 4 | (dup ? 0x08 : 0) | qos << 1 | (retain ? 1 : 0));
    uint8_t *b = buf + put_header(buf, first, rl);
    b = put_bytes(b, topic, topic_len);
    if (qos)
        b = put_u16(b, packet_id);
    if (props)
        b = bt_mqtt_props_write(b, props);
    return (size_t)(b - buf);
}

/* Packet id, 5.0 properties (props not NULL) and the list of a SUBSCRIBE or UNSUBSCRIBE. */
static void write_sub_list(uint8_t *b, const bt_mqtt_packet *p, const bt_mqtt_props *props)
{
    b = put_u16(b, p->subscribe.packet_id);
    if (props)
        b = bt_mqtt_props_write(b, props);
    bt_mqtt_sub_iter it;
    bt_mqtt_sub_iter_init(&it, p);
    bt_mqtt_str t = {NULL, 0};
    uint8_t q = 0;
    while (bt_mqtt_sub_next(&it, &t, &q)) {
        b = put_bytes(b, t.ptr, t.len);
        if (p->type == BT_MQTT_SUBSCRIBE)
            *b++ = q;
    }
}

/* Packet id, 5.0 properties (props not NULL) and the codes of a SUBACK (or 5.0 UNSUBACK). */
static void write_codes(uint8_t *b, const bt_mqtt_packet *p, const bt_mqtt_props *props)
{
    b = put_u16(b, p->suback.packet_id);
    if (props)
        b = bt_mqtt_props_write(b, props);
    memcpy(b, p->suback.codes, p->suback.count);
}

/* Body of a 5.0 packet other than CONNECT and PUBLISH, whose remaining length is rl. */
static void write5(uint8_t *b, const bt_mqtt_packet *p, size_t rl)
{
    switch (p->type) {
    case BT_MQTT_CONNACK:
        *b++ = p->connack.session_present ? 1 : 0;
        *b++ = p->connack.return_code;
        bt_mqtt_props_write(b, &p->connack.props);
        break;
    case BT_MQTT_SUBSCRIBE:
    case BT_MQTT_UNSUBSCRIBE: write_sub_list(b, p, &p->subscribe.props); break;
    case BT_MQTT_SUBACK:
    case BT_MQTT_UNSUBACK: write_codes(b, p, &p->suback.props); break;
    case BT_MQTT_PINGREQ:
    case BT_MQTT_PINGRESP: break;
    default: { /* PUB acks, DISCONNECT, AUTH */
        bool has_id = p->type != BT_MQTT_DISCONNECT && p->type != BT_MQTT_AUTH;
        if (has_id)
            b = put_u16(b, p->ack.packet_id);
        if (rl > (has_id ? 2u : 0u)) {
            *b++ = p->ack.reason;
            if (!props_empty(&p->ack.props))
                bt_mqtt_props_write(b, &p->ack.props);
        }
        break;
    }
    }
}

ssize_t bt_mqtt_encode(const bt_mqtt_packet *p, uint8_t *buf, size_t cap)
{
    ssize_t srl = remaining(p, NULL, 0);
    if (srl < 0)
        return -1;
    size_t rl = (size_t)srl, total = 1 + vlen(rl) + rl;
    if (total > cap)
        return (ssize_t)total;
    if (p->type == BT_MQTT_PUBLISH) {
        const bt_mqtt_publish *x = &p->publish;
        bool v5 = p->version == BT_MQTT_V5;
        size_t head = write_publish_head(buf, rl, x->topic.ptr, x->topic.len, x->qos, x->retain,
                                         x->dup, x->packet_id, v5 ? &x->props : NULL);
        if (x->payload.len)
            memcpy(buf + head, x->payload.ptr, x->payload.len);
        return (ssize_t)total;
    }
    uint8_t *b = buf + put_header(buf, first_byte(p), rl);
    if (p->version == BT_MQTT_V5 && p->type != BT_MQTT_CONNECT) {
        write5(b, p, rl);
        return (ssize_t)total;
    }
    switch (p->type) {
    case BT_MQTT_CONNECT: write_connect(b, &p->connect); break;
    case BT_MQTT_CONNACK:
        b[0] = p->connack.session_present ? 1 : 0;
        b[1] = p->connack.return_code;
        break;
    case BT_MQTT_SUBSCRIBE:
    case BT_MQTT_UNSUBSCRIBE: write_sub_list(b, p, NULL); break;
    case BT_MQTT_SUBACK: write_codes(b, p, NULL); break;
    case BT_MQTT_PINGREQ:
    case BT_MQTT_PINGRESP:
    case BT_MQTT_DISCONNECT: break;
    default: /* the acks */ put_u16(b, p->ack.packet_id); break;
    }
    return (ssize_t)total;
}

/* ---- hot path ------------------------------------------------------------------------ */

ssize_t bt_mqtt_encode_publish_header(uint8_t *buf, size_t cap, const char *topic, size_t topic_len,
                                      size_t payload_len, int qos, bool retain, bool dup,
                                      uint16_t packet_id)
{
    ssize_t srl = publish_rl(topic_len, topic, payload_len, qos, dup, packet_id, 0, NULL, 0);
    if (srl < 0)
        return -1;
    size_t rl = (size_t)srl, head = 1 + vlen(rl) + rl - payload_len;
    if (head > cap)
        return (ssize_t)head;
    return (ssize_t)write_publish_head(buf, rl, topic, topic_len, qos, retain, dup, packet_id,
                                       NULL);
}

/* The hot-path PUBLISH of both levels: v5 adds the property length and the raw property
 * bytes (written here rather than through a bt_mqtt_props: the hub's path towards 5.0
 * subscribers). */
static inline ssize_t encode_publish(uint8_t *buf, size_t cap, const char *topic, size_t topic_len,
                                     const void *payload, size_t payload_len, int qos, bool retain,
                                     bool dup, uint16_t packet_id, bool v5, const uint8_t *props,
                                     size_t props_len)
{
    if ((payload_len && !payload) || (props_len && !props) || props_len > BT_MQTT_MAX_REMAINING)
        return -1;
    ssize_t srl = publish_rl(topic_len, topic, payload_len, qos, dup, packet_id,
                             v5 ? vlen(props_len) + props_len : 0, NULL, 0);
    if (srl < 0)
        return -1;
    size_t rl = (size_t)srl, total = 1 + vlen(rl) + rl;
    if (total > cap)
        return (ssize_t)total;
    uint8_t *b =
        buf + write_publish_head(buf, rl, topic, topic_len, qos, retain, dup, packet_id, NULL);
    if (v5) {
        b = bt_mqtt_put_varint(b, (uint32_t)props_len);
        if (props_len)
            memcpy(b, props, props_len);
        b += props_len;
    }
    if (payload_len)
        memcpy(b, payload, payload_len);
    return (ssize_t)total;
}

ssize_t bt_mqtt_encode_publish(uint8_t *buf, size_t cap, const char *topic, size_t topic_len,
                               const void *payload, size_t payload_len, int qos, bool retain,
                               bool dup, uint16_t packet_id)
{
    return encode_publish(buf, cap, topic, topic_len, payload, payload_len, qos, retain, dup,
                          packet_id, false, NULL, 0);
}

ssize_t bt_mqtt_encode_publish5(uint8_t *buf, size_t cap, const char *topic, size_t topic_len,
                                const void *payload, size_t payload_len, int qos, bool retain,
                                bool dup, uint16_t packet_id, const uint8_t *props,
                                size_t props_len)
{
    return encode_publish(buf, cap, topic, topic_len, payload, payload_len, qos, retain, dup,
                          packet_id, true, props, props_len);
}

ssize_t bt_mqtt_encode_ack(uint8_t *buf, size_t cap, bt_mqtt_type type, uint16_t packet_id)
{
    if (!is_ack(type) || packet_id == 0)
        return -1;
    if (cap < 4)
        return 4;
    buf[0] = (uint8_t)(type << 4 | (type == BT_MQTT_PUBREL ? 0x02 : 0));
    buf[1] = 2;
    put_u16(buf + 2, packet_id);
    return 4;
}

ssize_t bt_mqtt_encode_puback(uint8_t *buf, size_t cap, uint16_t packet_id)
{
    return bt_mqtt_encode_ack(buf, cap, BT_MQTT_PUBACK, packet_id);
}

ssize_t bt_mqtt_encode_connack(uint8_t *buf, size_t cap, bool session_present, uint8_t return_code)
{
    if (return_code > BT_MQTT_CONNACK_NOT_AUTHORIZED || (session_present && return_code))
        return -1;
    if (cap < 4)
        return 4;
    buf[0] = BT_MQTT_CONNACK << 4;
    buf[1] = 2;
    buf[2] = session_present ? 1 : 0;
    buf[3] = return_code;
    return 4;
}

ssize_t bt_mqtt_encode_suback(uint8_t *buf, size_t cap, uint16_t packet_id, const uint8_t *codes,
                              size_t n)
{
    bt_mqtt_packet p = {.type = BT_MQTT_SUBACK,
                        .suback = {.packet_id = packet_id, .codes = codes, .count = n}};
    return bt_mqtt_encode(&p, buf, cap);
}

ssize_t bt_mqtt_encode_subscribe(uint8_t *buf, size_t cap, bt_mqtt_type type, uint16_t packet_id,
                                 const bt_mqtt_sub_entry *entries, size_t n)
{
    if ((type != BT_MQTT_SUBSCRIBE && type != BT_MQTT_UNSUBSCRIBE) || !entries)
        return -1;
    bt_mqtt_packet p = {.type = type,
                        .subscribe = {.packet_id = packet_id, .count = n, .entries = entries}};
    return bt_mqtt_encode(&p, buf, cap);
}

ssize_t bt_mqtt_encode_empty(uint8_t *buf, size_t cap, bt_mqtt_type type)
{
    if (type != BT_MQTT_PINGREQ && type != BT_MQTT_PINGRESP && type != BT_MQTT_DISCONNECT)
        return -1;
    if (cap < 2)
        return 2;
    buf[0] = (uint8_t)(type << 4);
    buf[1] = 0;
    return 2;
}
