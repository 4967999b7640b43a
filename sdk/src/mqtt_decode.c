/* MQTT 3.1 / 3.1.1 / 5.0 decoder: bytes in, one packet out as views into those bytes. The
 * input comes from the network: every length is checked against what is really there, and
 * every rule of the wire format that a packet can break is reported with a reason. */
#include "baetyl/mqtt_codec.h"
#include "baetyl/error.h"
#include "mqtt_props.h"

#include <stdio.h>
#include <string.h>

/* ---- fixed header -------------------------------------------------------------------- */

/* Flags of the first byte: fixed for every type but PUBLISH (MQTT 3.1.1 §2.2.2). */
static int check_first_byte(uint8_t b, bool v5, char *err, size_t errlen)
{
    int type = b >> 4, flags = b & 0x0F;
    switch (type) {
    case 0: return bt_errf(err, errlen, "reserved packet type %d", type);
    case 15:
        if (!v5)
            return bt_errf(err, errlen, "reserved packet type %d", type);
        if (flags != 0)
            return bt_errf(err, errlen, "AUTH flags must be 0x0");
        return 0;
    case BT_MQTT_PUBLISH: {
        int qos = (flags >> 1) & 3;
        if (qos == 3)
            return bt_errf(err, errlen, "PUBLISH qos 3");
        if (qos == 0 && (flags & 0x08))
            return bt_errf(err, errlen, "PUBLISH dup with qos 0");
        return 0;
    }
    case BT_MQTT_PUBREL:
    case BT_MQTT_SUBSCRIBE:
    case BT_MQTT_UNSUBSCRIBE:
        if (flags != 0x2)
            return bt_errf(err, errlen, "%s flags must be 0x2", bt_mqtt_type_name(type));
        return 0;
    default:
        if (flags != 0)
            return bt_errf(err, errlen, "%s flags must be 0x0", bt_mqtt_type_name(type));
        return 0;
    }
}

/* Types whose remaining length is fixed are rejected on the header alone. In 5.0 only the
 * pings are fixed; the acks have a minimum. */
static int check_fixed_length(int type, size_t rl, bool v5, char *err, size_t errlen)
{
    size_t want;
    if (v5) {
        size_t least = type == BT_MQTT_CONNACK                            ? 3
                       : type == BT_MQTT_PUBACK                           ? 2
                       : type == BT_MQTT_PUBREC || type == BT_MQTT_PUBREL ? 2
                       : type == BT_MQTT_PUBCOMP                          ? 2
                       : type == BT_MQTT_UNSUBACK                         ? 3
                                                                          : 0;
        if (rl < least)
            return bt_errf(err, errlen, "%s remaining length %zu (must be at least %zu)",
                           bt_mqtt_type_name(type), rl, least);
        if ((type == BT_MQTT_PINGREQ || type == BT_MQTT_PINGRESP) && rl != 0)
            return bt_errf(err, errlen, "%s remaining length %zu (must be 0)",
                           bt_mqtt_type_name(type), rl);
        return 0;
    }
    switch (type) {
    case BT_MQTT_CONNACK:
    case BT_MQTT_PUBACK:
    case BT_MQTT_PUBREC:
    case BT_MQTT_PUBREL:
    case BT_MQTT_PUBCOMP:
    case BT_MQTT_UNSUBACK: want = 2; break;
    case BT_MQTT_PINGREQ:
    case BT_MQTT_PINGRESP:
    case BT_MQTT_DISCONNECT: want = 0; break;
    default: return 0;
    }
    if (rl != want)
        return bt_errf(err, errlen, "%s remaining length %zu (must be %zu)",
                       bt_mqtt_type_name(type), rl, want);
    return 0;
}

int bt_mqtt_frame_len_v(const uint8_t *buf, size_t len, size_t max_packet, int version,
                        size_t *total, char *err, size_t errlen)
{
    bool v5 = version == BT_MQTT_V5;
    if (len < 1)
        return 0;
    if (check_first_byte(buf[0], v5, err, errlen) < 0)
        return -1;
    size_t rl = 0, hdr = 0;
    for (size_t i = 1; i <= 4; i++) {
        if (i >= len)
            return 0;
        rl |= (size_t)(buf[i] & 0x7F) << (7 * (i - 1));
        if (!(buf[i] & 0x80)) {
            hdr = i + 1;
            break;
        }
    }
    if (hdr == 0)
        return bt_errf(err, errlen, "remaining length exceeds 4 bytes");
    size_t whole = hdr + rl;
    if (max_packet && whole > max_packet)
        return bt_errf(err, errlen, "packet too large (%zu > %zu)", whole, max_packet);
    if (check_fixed_length(buf[0] >> 4, rl, v5, err, errlen) < 0)
        return -1;
    *total = whole;
    return 1;
}

int bt_mqtt_frame_len(const uint8_t *buf, size_t len, size_t max_packet, size_t *total, char *err,
                      size_t errlen)
{
    return bt_mqtt_frame_len_v(buf, len, max_packet, BT_MQTT_V311, total, err, errlen);
}

/* ---- variable header and payload ----------------------------------------------------- */

/* A cursor over the body of one complete packet; running past `end` is a malformed packet
 * (its remaining length promised less than its fields need). */
typedef struct {
    const uint8_t *p, *end;
    char *err;
    size_t errlen;
} reader;

static size_t left(const reader *r)
{
    return (size_t)(r->end - r->p);
}

/* Length-prefixed bytes, not checked as text. */
static int rd_bin(reader *r, bt_mqtt_bin *v, const char *what)
{
    if (left(r) < 2)
        return bt_errf(r->err, r->errlen, "truncated string (%s)", what);
    size_t n = (size_t)r->p[0] << 8 | r->p[1];
    if (left(r) - 2 < n)
        return bt_errf(r->err, r->errlen, "truncated string (%s)", what);
    v->ptr = r->p + 2;
    v->len = n;
    r->p += 2 + n;
    return 0;
}

/* Length-prefixed UTF-8 string (MQTT 3.1.1 §1.5.3). */
static int rd_str(reader *r, bt_mqtt_str *v, const char *what)
{
    bt_mqtt_bin b = {NULL, 0};
    if (rd_bin(r, &b, what) < 0)
        return -1;
    int rc = bt_mqtt_utf8_check((const char *)b.ptr, b.len);
    if (rc == -1)
        return bt_errf(r->err, r->errlen, "invalid UTF-8 in %s", what);
    if (rc == -2)
        return bt_errf(r->err, r->errlen, "%s contains U+0000", what);
    v->ptr = (const char *)b.ptr;
    v->len = b.len;
    return 0;
}

static int rd_packet_id(reader *r, uint16_t *id, int type)
{
    if (left(r) < 2)
        return bt_errf(r->err, r->errlen, "truncated packet id in %s", bt_mqtt_type_name(type));
    *id = (uint16_t)(r->p[0] << 8 | r->p[1]);
    r->p += 2;
    if (*id == 0)
        return bt_errf(r->err, r->errlen, "packet id 0 in %s", bt_mqtt_type_name(type));
    return 0;
}

/* A protocol name for an error text: printable ASCII kept, the rest escaped, cut short. */
static void quote_name(const uint8_t *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        if (i == 16) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '"' && s[i] != '\\')
            out[o++] = (char)s[i];
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", s[i]);
    }
    out[o] = '\0';
}

static int rd_props(reader *r, int type, bt_mqtt_props *ps)
{
    if (r->p < r->end && *r->p == 0) { /* none: the common case, kept off the call */
        memset(ps, 0, sizeof *ps);
        r->p++;
        return 0;
    }
    return bt_mqtt_props_read(&r->p, r->end, type, ps, r->err, r->errlen);
}

/* Returns -2 (not -1) for an unsupported level so that the caller keeps what was filled in.
 * Level 5 is supported when allow5. */
static int decode_connect(reader *r, bt_mqtt_connect *c, bool allow5)
{
    bt_mqtt_bin name = {NULL, 0};
    if (rd_bin(r, &name, "protocol name") < 0)
        return -1;
    bool mqtt = name.len == 4 && memcmp(name.ptr, "MQTT", 4) == 0;
    bool mqisdp = name.len == 6 && memcmp(name.ptr, "MQIsdp", 6) == 0;
    if (!mqtt && !mqisdp) {
        char q[80];
        quote_name(name.ptr, name.len, q, sizeof(q));
        return bt_errf(r->err, r->errlen, "CONNECT unknown protocol name \"%s\"", q);
    }
    if (left(r) < 4)
        return bt_errf(r->err, r->errlen, "truncated CONNECT variable header");
    uint8_t level = r->p[0], flags = r->p[1];
    c->keepalive = (uint16_t)(r->p[2] << 8 | r->p[3]);
    r->p += 4;
    if ((mqtt && level == 3) || (mqisdp && level == 4))
        return bt_errf(r->err, r->errlen, "CONNECT protocol name %s with level %u",
                       mqtt ? "MQTT" : "MQIsdp", level);
    if (level != 3 && level != 4 && !(allow5 && mqtt && level == 5)) {
        c->protocol_level = level;
        bt_errf(r->err, r->errlen, "unsupported protocol level %u", level);
        return -2;
    }
    c->protocol_level = level;
    if (flags & 0x01)
        return bt_errf(r->err, r->errlen, "reserved flag set in CONNECT");
    c->clean_session = flags & 0x02;
    c->will_flag = flags & 0x04;
    c->will_qos = (flags >> 3) & 3;
    c->will_retain = flags & 0x20;
    c->has_password = flags & 0x40;
    c->has_username = flags & 0x80;
    if (c->will_qos == 3)
        return bt_errf(r->err, r->errlen, "will qos 3");
    if (!c->will_flag && c->will_qos)
        return bt_errf(r->err, r->errlen, "will flag clear but will qos set");
    if (!c->will_flag && c->will_retain)
        return bt_errf(r->err, r->errlen, "will flag clear but will retain set");
    /* MQTT 3.1 did not forbid it; 3.1.1 §3.1.2.9 does; 5.0 allows it again (§3.1.2.9). */
    if (level == 4 && c->has_password && !c->has_username)
        return bt_errf(r->err, r->errlen, "password without username");
    if (level == 5) {
        if (rd_props(r, BT_MQTT_CONNECT, &c->props) < 0)
            return -1;
        uint64_t auth = (uint64_t)1 << BT_MQTT_PROP_AUTH_DATA;
        if ((c->props.present & auth) &&
            !(c->props.present & ((uint64_t)1 << BT_MQTT_PROP_AUTH_METHOD)))
            return bt_errf(r->err, r->errlen, "CONNECT authentication data without a method");
    }

    if (rd_str(r, &c->client_id, "client id") < 0)
        return -1;
    if (c->will_flag && level == 5 && rd_props(r, 0, &c->will_props) < 0)
        return -1;
    if (c->will_flag && (rd_str(r, &c->will_topic, "will topic") < 0 ||
                         rd_bin(r, &c->will_payload, "will payload") < 0))
        return -1;
    if (c->has_username && rd_str(r, &c->username, "username") < 0)
        return -1;
    if (c->has_password && rd_bin(r, &c->password, "password") < 0)
        return -1;
    if (left(r))
        return bt_errf(r->err, r->errlen, "%zu trailing bytes in CONNECT", left(r));
    return 0;
}

static int decode_connack(reader *r, bt_mqtt_connack *c)
{
    uint8_t flags = r->p[0], rc = r->p[1]; /* length 2 checked with the header */
    if (flags & 0xFE)
        return bt_errf(r->err, r->errlen, "reserved bits set in CONNACK flags");
    if (rc > BT_MQTT_CONNACK_NOT_AUTHORIZED)
        return bt_errf(r->err, r->errlen, "CONNACK return code %u unknown", rc);
    if ((flags & 1) && rc != 0)
        return bt_errf(r->err, r->errlen, "CONNACK session present with return code %u", rc);
    c->session_present = flags & 1;
    c->return_code = rc;
    return 0;
}

static int decode_publish(reader *r, uint8_t first, bool v5, bt_mqtt_publish *p)
{
    p->dup = first & 0x08;
    p->qos = (first >> 1) & 3;
    p->retain = first & 0x01;
    if (rd_str(r, &p->topic, "topic") < 0)
        return -1;
    if (p->qos > 0 && rd_packet_id(r, &p->packet_id, BT_MQTT_PUBLISH) < 0)
        return -1;
    if (v5) {
        if (rd_props(r, BT_MQTT_PUBLISH, &p->props) < 0)
            return -1;
        /* §3.3.2.1: an empty topic needs an alias */
        if (p->topic.len == 0 && !(p->props.present & ((uint64_t)1 << BT_MQTT_PROP_TOPIC_ALIAS)))
            return bt_errf(r->err, r->errlen, "PUBLISH empty topic without a topic alias");
    }
    p->payload.ptr = r->p;
    p->payload.len = left(r);
    r->p = r->end;
    return 0;
}

/* SUBSCRIBE and UNSUBSCRIBE: the list is validated here once, then only walked. */
static int decode_sub_list(reader *r, int type, bool v5, bt_mqtt_sub_list *l)
{
    if (rd_packet_id(r, &l->packet_id, type) < 0)
        return -1;
    if (v5 && rd_props(r, type, &l->props) < 0)
        return -1;
    const char *name = bt_mqtt_type_name(type);
    l->raw.ptr = r->p;
    l->raw.len = left(r);
    while (left(r)) {
        bt_mqtt_str t = {NULL, 0};
        if (rd_str(r, &t, "topic filter") < 0)
            return -1;
        if (type == BT_MQTT_SUBSCRIBE) {
            if (left(r) < 1)
                return bt_errf(r->err, r->errlen, "truncated SUBSCRIBE: no requested qos");
            uint8_t q = *r->p++;
            if (v5) {
                /* §3.8.3.1: bits 6-7 reserved, retain handling 3 is a protocol error */
                if (q & 0xC0)
                    return bt_errf(r->err, r->errlen,
                                   "SUBSCRIBE reserved bits set in subscription options");
                if (BT_MQTT_SUBOPT_RETAIN_HANDLING(q) == 3)
                    return bt_errf(r->err, r->errlen, "SUBSCRIBE retain handling 3");
                if (BT_MQTT_SUBOPT_QOS(q) == 3)
                    return bt_errf(r->err, r->errlen, "SUBSCRIBE qos 3");
            } else if (q & 0xFC)
                return bt_errf(r->err, r->errlen, "SUBSCRIBE reserved bits set in requested qos");
            if (q == 3)
                return bt_errf(r->err, r->errlen, "SUBSCRIBE qos 3");
        }
        l->count++;
    }
    if (l->count == 0)
        return bt_errf(r->err, r->errlen, "%s with no topic filter", name);
    return 0;
}

/* SUBACK, and UNSUBACK in 5.0. */
static int decode_suback(reader *r, int type, bool v5, bt_mqtt_suback *s)
{
    const char *name = bt_mqtt_type_name(type);
    if (rd_packet_id(r, &s->packet_id, type) < 0)
        return -1;
    if (v5 && rd_props(r, type, &s->props) < 0)
        return -1;
    if (left(r) == 0)
        return bt_errf(r->err, r->errlen, "%s with no return codes", name);
    for (const uint8_t *c = r->p; c < r->end; c++)
        if (v5 ? !bt_mqtt_reason_valid(type, *c) : *c > 2 && *c != BT_MQTT_SUBACK_FAILURE)
            return bt_errf(r->err, r->errlen, "%s return code 0x%02x invalid", name, *c);
    s->codes = r->p;
    s->count = left(r);
    r->p = r->end;
    return 0;
}

/* 5.0 CONNACK: flags, reason code, properties. */
static int decode_connack5(reader *r, bt_mqtt_connack *c)
{
    uint8_t flags = r->p[0], rc = r->p[1]; /* length >= 3 checked with the header */
    r->p += 2;
    if (flags & 0xFE)
        return bt_errf(r->err, r->errlen, "reserved bits set in CONNACK flags");
    if (!bt_mqtt_reason_valid(BT_MQTT_CONNACK, rc))
        return bt_errf(r->err, r->errlen, "CONNACK reason code 0x%02x invalid", rc);
    if ((flags & 1) && rc != 0)
        return bt_errf(r->err, r->errlen, "CONNACK session present with reason code 0x%02x", rc);
    c->session_present = flags & 1;
    c->return_code = rc;
    return rd_props(r, BT_MQTT_CONNACK, &c->props);
}

/* 5.0 PUB acks (packet id first), DISCONNECT and AUTH: reason code and properties, both
 * omitted for reason 0 without properties (§3.4.2.1, §3.14.2.1, §3.15.2.1). */
static int decode_reason(reader *r, int type, bt_mqtt_ack *a)
{
    bool has_id = type != BT_MQTT_DISCONNECT && type != BT_MQTT_AUTH;
    if (has_id && rd_packet_id(r, &a->packet_id, type) < 0)
        return -1;
    if (!left(r))
        return 0;
    a->reason = *r->p++;
    if (!bt_mqtt_reason_valid(type, a->reason))
        return bt_errf(r->err, r->errlen, "%s reason code 0x%02x invalid", bt_mqtt_type_name(type),
                       a->reason);
    if (!left(r))
        return 0;
    if (rd_props(r, type, &a->props) < 0)
        return -1;
    if (left(r))
        return bt_errf(r->err, r->errlen, "%zu trailing bytes in %s", left(r),
                       bt_mqtt_type_name(type));
    return 0;
}

/* Decodes one packet of a 5.0 connection other than CONNECT. */
static int decode_v5(reader *r, int type, uint8_t first, bt_mqtt_packet *out)
{
    switch (type) {
    case BT_MQTT_CONNACK: return decode_connack5(r, &out->connack);
    case BT_MQTT_PUBLISH: return decode_publish(r, first, true, &out->publish);
    case BT_MQTT_SUBSCRIBE:
    case BT_MQTT_UNSUBSCRIBE: return decode_sub_list(r, type, true, &out->subscribe);
    case BT_MQTT_SUBACK:
    case BT_MQTT_UNSUBACK: return decode_suback(r, type, true, &out->suback);
    case BT_MQTT_PINGREQ:
    case BT_MQTT_PINGRESP: return 0;
    default: return decode_reason(r, type, &out->ack);
    }
}

int bt_mqtt_decode(const uint8_t *buf, size_t len, size_t max_packet, bt_mqtt_packet *out,
                   size_t *consumed, char *err, size_t errlen)
{
    return bt_mqtt_decode_v(buf, len, max_packet, BT_MQTT_V311, out, consumed, err, errlen);
}

int bt_mqtt_decode_v(const uint8_t *buf, size_t len, size_t max_packet, int version,
                     bt_mqtt_packet *out, size_t *consumed, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    *consumed = 0;
    size_t total;
    bool v5 = version == BT_MQTT_V5;
    int rc = bt_mqtt_frame_len_v(buf, len, max_packet, version, &total, err, errlen);
    if (rc <= 0)
        return rc;
    if (len < total)
        return 0;

    size_t rl_bytes = 1;
    while (buf[rl_bytes] & 0x80)
        rl_bytes++;
    reader r = {buf + 1 + rl_bytes, buf + total, err, errlen};
    int type = buf[0] >> 4;
    out->type = (bt_mqtt_type)type;
    if (type == BT_MQTT_CONNECT) {
        rc = decode_connect(&r, &out->connect, v5);
        if (rc == 0 && out->connect.protocol_level == BT_MQTT_V5)
            out->version = BT_MQTT_V5;
    } else if (v5) {
        out->version = BT_MQTT_V5;
        rc = decode_v5(&r, type, buf[0], out);
        if (rc == 0 && left(&r))
            rc =
                bt_errf(err, errlen, "%zu trailing bytes in %s", left(&r), bt_mqtt_type_name(type));
    } else
        switch (type) {
        case BT_MQTT_CONNACK: rc = decode_connack(&r, &out->connack); break;
        case BT_MQTT_PUBLISH: rc = decode_publish(&r, buf[0], false, &out->publish); break;
        case BT_MQTT_PUBACK:
        case BT_MQTT_PUBREC:
        case BT_MQTT_PUBREL:
        case BT_MQTT_PUBCOMP:
        case BT_MQTT_UNSUBACK: rc = rd_packet_id(&r, &out->ack.packet_id, type); break;
        case BT_MQTT_SUBSCRIBE:
        case BT_MQTT_UNSUBSCRIBE: rc = decode_sub_list(&r, type, false, &out->subscribe); break;
        case BT_MQTT_SUBACK: rc = decode_suback(&r, type, false, &out->suback); break;
        default: /* PINGREQ, PINGRESP, DISCONNECT: empty, length checked with the header */
            rc = 0;
            break;
        }
    if (rc == -2)
        return -1; /* unsupported CONNECT level: out keeps type and level */
    if (rc < 0) {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    *consumed = total;
    return 1;
}
