/* MQTT codec helpers shared by the decoder and the encoder: type names, the UTF-8 rule of
 * MQTT strings, the subscription list iterator and packet comparison. */
#include "baetyl/mqtt_codec.h"
#include "baetyl/util.h"
#include "mqtt_props.h"

#include <string.h>

const char *bt_mqtt_type_name(int type)
{
    static const char *const names[] = {
        NULL,      "CONNECT",  "CONNACK",    "PUBLISH", "PUBACK",      "PUBREC",
        "PUBREL",  "PUBCOMP",  "SUBSCRIBE",  "SUBACK",  "UNSUBSCRIBE", "UNSUBACK",
        "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
    };
    if (type < 1 || type > 15)
        return "UNKNOWN";
    return names[type];
}

/* Well-formed UTF-8 per RFC 3629 §4 (which is what MQTT 3.1.1 §1.5.3 requires); MQTT adds:
 * no U+0000. */
int bt_mqtt_utf8_check(const char *str, size_t len)
{
    size_t ok = bt_utf8_valid_prefix(str, len);
    if (ok && memchr(str, 0, ok)) /* the first fault decides, as the reader meets it */
        return -2;
    return ok == len ? 0 : -1;
}

void bt_mqtt_sub_iter_init(bt_mqtt_sub_iter *it, const bt_mqtt_packet *p)
{
    memset(it, 0, sizeof(*it));
    it->type = p->type;
    if (p->type == BT_MQTT_SUBSCRIBE || p->type == BT_MQTT_UNSUBSCRIBE) {
        const bt_mqtt_sub_list *l = &p->subscribe;
        if (l->entries) {
            it->entry = l->entries;
            it->left = l->count;
        } else if (l->raw.ptr) {
            it->pos = l->raw.ptr;
            it->end = l->raw.ptr + l->raw.len;
        }
    } else if ((p->type == BT_MQTT_SUBACK || (p->type == BT_MQTT_UNSUBACK && p->version == 5)) &&
               p->suback.codes) {
        it->type = BT_MQTT_SUBACK;
        it->pos = p->suback.codes;
        it->end = p->suback.codes + p->suback.count;
    }
}

bool bt_mqtt_sub_next(bt_mqtt_sub_iter *it, bt_mqtt_str *topic, uint8_t *qos)
{
    bt_mqtt_str t = {NULL, 0};
    uint8_t q = 0;
    if (it->entry) {
        if (it->left == 0)
            return false;
        t = it->entry->topic;
        q = it->type == BT_MQTT_SUBSCRIBE ? it->entry->qos : 0;
        it->entry++;
        it->left--;
    } else if (it->type == BT_MQTT_SUBACK) {
        if (!it->pos || it->pos >= it->end)
            return false;
        q = *it->pos++;
    } else {
        /* A raw list was validated by the decoder; bounds are still checked so that a
         * hand-made one cannot make us read past its end. */
        if (!it->pos || it->end - it->pos < 2)
            return false;
        size_t n = (size_t)it->pos[0] << 8 | it->pos[1];
        size_t need = 2 + n + (it->type == BT_MQTT_SUBSCRIBE ? 1 : 0);
        if ((size_t)(it->end - it->pos) < need)
            return false; /* pos stays short of end: the encoder reports it */
        t.ptr = (const char *)it->pos + 2;
        t.len = n;
        if (it->type == BT_MQTT_SUBSCRIBE)
            q = it->pos[2 + n];
        it->pos += need;
    }
    if (topic)
        *topic = t;
    if (qos)
        *qos = q;
    return true;
}

static bool str_eq(bt_mqtt_str a, bt_mqtt_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool bin_eq(bt_mqtt_bin a, bt_mqtt_bin b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool list_eq(const bt_mqtt_packet *a, const bt_mqtt_packet *b)
{
    bt_mqtt_sub_iter ia, ib;
    bt_mqtt_sub_iter_init(&ia, a);
    bt_mqtt_sub_iter_init(&ib, b);
    for (;;) {
        bt_mqtt_str ta = {NULL, 0}, tb = {NULL, 0};
        uint8_t qa = 0, qb = 0;
        bool ha = bt_mqtt_sub_next(&ia, &ta, &qa);
        bool hb = bt_mqtt_sub_next(&ib, &tb, &qb);
        if (ha != hb)
            return false;
        if (!ha)
            return true;
        if (qa != qb || !str_eq(ta, tb))
            return false;
    }
}

/* The 5.0 fields of two packets of the same type and version 5. */
static bool equal5(const bt_mqtt_packet *a, const bt_mqtt_packet *b)
{
    switch (a->type) {
    case BT_MQTT_CONNECT:
        return bt_mqtt_props_equal(&a->connect.props, &b->connect.props) &&
               (!a->connect.will_flag ||
                bt_mqtt_props_equal(&a->connect.will_props, &b->connect.will_props));
    case BT_MQTT_CONNACK: return bt_mqtt_props_equal(&a->connack.props, &b->connack.props);
    case BT_MQTT_PUBLISH: return bt_mqtt_props_equal(&a->publish.props, &b->publish.props);
    case BT_MQTT_SUBSCRIBE:
    case BT_MQTT_UNSUBSCRIBE: return bt_mqtt_props_equal(&a->subscribe.props, &b->subscribe.props);
    case BT_MQTT_SUBACK:
    case BT_MQTT_UNSUBACK: return bt_mqtt_props_equal(&a->suback.props, &b->suback.props);
    case BT_MQTT_PINGREQ:
    case BT_MQTT_PINGRESP: return true;
    default:
        return a->ack.packet_id == b->ack.packet_id && a->ack.reason == b->ack.reason &&
               bt_mqtt_props_equal(&a->ack.props, &b->ack.props);
    }
}

bool bt_mqtt_packet_equal(const bt_mqtt_packet *a, const bt_mqtt_packet *b)
{
    if (a->type != b->type || a->version != b->version)
        return false;
    if (a->version == BT_MQTT_V5) {
        if (!equal5(a, b))
            return false;
        if (a->type == BT_MQTT_UNSUBACK)
            return a->suback.packet_id == b->suback.packet_id && list_eq(a, b);
        if (a->type == BT_MQTT_DISCONNECT || a->type == BT_MQTT_AUTH || a->type == BT_MQTT_PUBACK ||
            a->type == BT_MQTT_PUBREC || a->type == BT_MQTT_PUBREL || a->type == BT_MQTT_PUBCOMP)
            return true;
    }
    switch (a->type) {
    case BT_MQTT_CONNECT: {
        const bt_mqtt_connect *x = &a->connect, *y = &b->connect;
        if (x->protocol_level != y->protocol_level || x->clean_session != y->clean_session ||
            x->keepalive != y->keepalive || !str_eq(x->client_id, y->client_id) ||
            x->will_flag != y->will_flag || x->has_username != y->has_username ||
            x->has_password != y->has_password)
            return false;
        if (x->will_flag &&
            (x->will_qos != y->will_qos || x->will_retain != y->will_retain ||
             !str_eq(x->will_topic, y->will_topic) || !bin_eq(x->will_payload, y->will_payload)))
            return false;
        if (x->has_username && !str_eq(x->username, y->username))
            return false;
        if (x->has_password && !bin_eq(x->password, y->password))
            return false;
        return true;
    }
    case BT_MQTT_CONNACK:
        return a->connack.session_present == b->connack.session_present &&
               a->connack.return_code == b->connack.return_code;
    case BT_MQTT_PUBLISH: {
        const bt_mqtt_publish *x = &a->publish, *y = &b->publish;
        return x->qos == y->qos && x->retain == y->retain && x->dup == y->dup &&
               (x->qos == 0 || x->packet_id == y->packet_id) && str_eq(x->topic, y->topic) &&
               bin_eq(x->payload, y->payload);
    }
    case BT_MQTT_PUBACK:
    case BT_MQTT_PUBREC:
    case BT_MQTT_PUBREL:
    case BT_MQTT_PUBCOMP:
    case BT_MQTT_UNSUBACK: return a->ack.packet_id == b->ack.packet_id;
    case BT_MQTT_SUBSCRIBE:
    case BT_MQTT_UNSUBSCRIBE:
        return a->subscribe.packet_id == b->subscribe.packet_id && list_eq(a, b);
    case BT_MQTT_SUBACK: return a->suback.packet_id == b->suback.packet_id && list_eq(a, b);
    default: return true;
    }
}
