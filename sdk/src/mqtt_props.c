/* MQTT 5.0 properties and reason codes: which property may appear in which packet, its
 * type and range, the rule on duplicates (§2.2.2.2), and the reason codes each packet may
 * carry (§2.4). Shared by the decoder, which checks what arrives, and the encoder, which
 * checks what a caller built. */
#include "mqtt_props.h"

#include "baetyl/error.h"

#include <string.h>

/* Bit of the will properties in the `where` masks (type 0 is no packet). */
#define WILL (1u << 0)
#define T(x) (1u << BT_MQTT_##x)
#define PUBACKS (T(PUBACK) | T(PUBREC) | T(PUBREL) | T(PUBCOMP))
#define EVERY                                                                           \
    (WILL | T(CONNECT) | T(CONNACK) | T(PUBLISH) | PUBACKS | T(SUBSCRIBE) | T(SUBACK) | \
     T(UNSUBSCRIBE) | T(UNSUBACK) | T(DISCONNECT) | T(AUTH))

typedef struct {
    const char *name;
    uint8_t kind;
    uint8_t min; /* smallest allowed value of a number */
    uint8_t max; /* largest allowed byte value; 0 = no limit */
    uint32_t where;
} prop_rule;

static const prop_rule rules[BT_MQTT_PROP_SHARED_SUB_AVAILABLE + 1] = {
    [0x01] = {"payload format indicator", PK_BYTE, 0, 1, WILL | T(PUBLISH)},
    [0x02] = {"message expiry interval", PK_U32, 0, 0, WILL | T(PUBLISH)},
    [0x03] = {"content type", PK_STR, 0, 0, WILL | T(PUBLISH)},
    [0x08] = {"response topic", PK_STR, 0, 0, WILL | T(PUBLISH)},
    [0x09] = {"correlation data", PK_BIN, 0, 0, WILL | T(PUBLISH)},
    [0x0B] = {"subscription identifier", PK_VAR, 1, 0, T(PUBLISH) | T(SUBSCRIBE)},
    [0x11] = {"session expiry interval", PK_U32, 0, 0, T(CONNECT) | T(CONNACK) | T(DISCONNECT)},
    [0x12] = {"assigned client identifier", PK_STR, 0, 0, T(CONNACK)},
    [0x13] = {"server keep alive", PK_U16, 0, 0, T(CONNACK)},
    [0x15] = {"authentication method", PK_STR, 0, 0, T(CONNECT) | T(CONNACK) | T(AUTH)},
    [0x16] = {"authentication data", PK_BIN, 0, 0, T(CONNECT) | T(CONNACK) | T(AUTH)},
    [0x17] = {"request problem information", PK_BYTE, 0, 1, T(CONNECT)},
    [0x18] = {"will delay interval", PK_U32, 0, 0, WILL},
    [0x19] = {"request response information", PK_BYTE, 0, 1, T(CONNECT)},
    [0x1A] = {"response information", PK_STR, 0, 0, T(CONNACK)},
    [0x1C] = {"server reference", PK_STR, 0, 0, T(CONNACK) | T(DISCONNECT)},
    [0x1F] = {"reason string", PK_STR, 0, 0,
              T(CONNACK) | PUBACKS | T(SUBACK) | T(UNSUBACK) | T(DISCONNECT) | T(AUTH)},
    [0x21] = {"receive maximum", PK_U16, 1, 0, T(CONNECT) | T(CONNACK)},
    [0x22] = {"topic alias maximum", PK_U16, 0, 0, T(CONNECT) | T(CONNACK)},
    [0x23] = {"topic alias", PK_U16, 1, 0, T(PUBLISH)},
    [0x24] = {"maximum qos", PK_BYTE, 0, 1, T(CONNACK)},
    [0x25] = {"retain available", PK_BYTE, 0, 1, T(CONNACK)},
    [0x26] = {"user property", PK_PAIR, 0, 0, EVERY},
    [0x27] = {"maximum packet size", PK_U32, 1, 0, T(CONNECT) | T(CONNACK)},
    [0x28] = {"wildcard subscription available", PK_BYTE, 0, 1, T(CONNACK)},
    [0x29] = {"subscription identifier available", PK_BYTE, 0, 1, T(CONNACK)},
    [0x2A] = {"shared subscription available", PK_BYTE, 0, 1, T(CONNACK)},
};

int bt_mqtt_prop_kind(uint8_t id)
{
    return id < sizeof(rules) / sizeof(rules[0]) && rules[id].name ? rules[id].kind : PK_NONE;
}

/* ---- variable byte integers (§1.5.5) ----------------------------------------------------- */

size_t bt_mqtt_varint_len(uint32_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

uint8_t *bt_mqtt_put_varint(uint8_t *b, uint32_t v)
{
    do {
        uint8_t d = v & 0x7F;
        v >>= 7;
        *b++ = v ? (d | 0x80) : d;
    } while (v);
    return b;
}

int bt_mqtt_get_varint(const uint8_t **pos, const uint8_t *end, uint32_t *v, const char *what,
                       char *err, size_t errlen)
{
    const uint8_t *p = *pos;
    uint32_t r = 0;
    for (int i = 0; i < 4; i++) {
        if (p >= end)
            return bt_errf(err, errlen, "truncated %s", what);
        uint8_t b = *p++;
        r |= (uint32_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            /* MQTT-1.5.5-1: the fewest bytes; a last byte of 0 after others is one too many */
            if (i > 0 && b == 0)
                return bt_errf(err, errlen, "%s not in its shortest form", what);
            *v = r;
            *pos = p;
            return 0;
        }
    }
    return bt_errf(err, errlen, "%s exceeds 4 bytes", what);
}

/* ---- reading ------------------------------------------------------------------------- */

static uint32_t be(const uint8_t *p, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* One length-prefixed field at *p (< end): 0, or -1 when it runs past end. */
static int take_bin(const uint8_t **p, const uint8_t *end, bt_mqtt_bin *v)
{
    if (end - *p < 2)
        return -1;
    size_t n = be(*p, 2);
    if ((size_t)(end - *p) - 2 < n)
        return -1;
    v->ptr = *p + 2;
    v->len = n;
    *p += 2 + n;
    return 0;
}

/* Reads one property at *pos without checking where it may appear. */
static int read_prop(const uint8_t **pos, const uint8_t *end, bt_mqtt_prop *out, char *err,
                     size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const uint8_t *p = *pos;
    uint32_t id;
    if (bt_mqtt_get_varint(&p, end, &id, "property identifier", err, errlen) < 0)
        return -1;
    int kind = id <= 0xFF ? bt_mqtt_prop_kind((uint8_t)id) : PK_NONE;
    if (kind == PK_NONE)
        return bt_errf(err, errlen, "unknown property 0x%02x", (unsigned)id);
    out->id = (uint8_t)id;
    const char *name = rules[id].name;
    size_t n = kind == PK_BYTE ? 1 : kind == PK_U16 ? 2 : kind == PK_U32 ? 4 : 0;
    if (n) {
        if ((size_t)(end - p) < n)
            return bt_errf(err, errlen, "truncated property (%s)", name);
        out->num = be(p, (int)n);
        p += n;
    } else if (kind == PK_VAR) {
        if (bt_mqtt_get_varint(&p, end, &out->num, name, err, errlen) < 0)
            return -1;
    } else {
        if (take_bin(&p, end, &out->bin) < 0)
            return bt_errf(err, errlen, "truncated property (%s)", name);
        if (kind == PK_PAIR) {
            bt_mqtt_bin v = {NULL, 0};
            if (take_bin(&p, end, &v) < 0)
                return bt_errf(err, errlen, "truncated property (%s)", name);
            out->value.ptr = (const char *)v.ptr;
            out->value.len = v.len;
        }
    }
    *pos = p;
    return 0;
}

static int check_utf8(const void *p, size_t n, const char *what, char *err, size_t errlen)
{
    int rc = bt_mqtt_utf8_check(p, n);
    if (rc == -1)
        return bt_errf(err, errlen, "invalid UTF-8 in %s", what);
    if (rc == -2)
        return bt_errf(err, errlen, "%s contains U+0000", what);
    return 0;
}

/* The rules on one property of a packet of `type` (0 = will), *seen the identifiers so far. */
static int check_prop(const bt_mqtt_prop *pr, int type, uint64_t *seen, char *err, size_t errlen)
{
    int kind = bt_mqtt_prop_kind(pr->id);
    if (kind == PK_NONE)
        return bt_errf(err, errlen, "unknown property 0x%02x", pr->id);
    const prop_rule *r = &rules[pr->id];
    const char *where = type ? bt_mqtt_type_name(type) : "will properties";
    if (!(r->where & (1u << type)))
        return bt_errf(err, errlen, "property %s not allowed in %s", r->name, where);
    uint64_t bit = (uint64_t)1 << pr->id;
    bool repeats = pr->id == BT_MQTT_PROP_USER_PROPERTY ||
                   (pr->id == BT_MQTT_PROP_SUBSCRIPTION_ID && type == BT_MQTT_PUBLISH);
    if ((*seen & bit) && !repeats)
        return bt_errf(err, errlen, "property %s twice in %s", r->name, where);
    *seen |= bit;
    switch (kind) {
    case PK_BYTE:
    case PK_U16:
    case PK_U32:
    case PK_VAR: {
        uint32_t lim = kind == PK_BYTE  ? (r->max ? r->max : 0xFF)
                       : kind == PK_U16 ? 0xFFFF
                       : kind == PK_VAR ? BT_MQTT_MAX_REMAINING
                                        : 0xFFFFFFFF;
        if (pr->num < r->min || pr->num > lim)
            return bt_errf(err, errlen, "property %s value %u out of range", r->name,
                           (unsigned)pr->num);
        return 0;
    }
    case PK_BIN:
        if (pr->bin.len > 0xFFFF || (pr->bin.len && !pr->bin.ptr))
            return bt_errf(err, errlen, "property %s too long or NULL", r->name);
        return 0;
    default: /* strings */
        if (pr->bin.len > 0xFFFF || (pr->bin.len && !pr->bin.ptr))
            return bt_errf(err, errlen, "property %s too long or NULL", r->name);
        if (check_utf8(pr->bin.ptr, pr->bin.len, r->name, err, errlen) < 0)
            return -1;
        if (kind == PK_PAIR) {
            if (pr->value.len > 0xFFFF || (pr->value.len && !pr->value.ptr))
                return bt_errf(err, errlen, "property %s too long or NULL", r->name);
            return check_utf8(pr->value.ptr, pr->value.len, r->name, err, errlen);
        }
        return 0;
    }
}

int bt_mqtt_props_check(const bt_mqtt_props *ps, int type, uint64_t *present, char *err,
                        size_t errlen)
{
    uint64_t seen = 0;
    if (ps->list) {
        for (size_t i = 0; i < ps->count; i++)
            if (check_prop(&ps->list[i], type, &seen, err, errlen) < 0)
                return -1;
    } else {
        if (ps->raw.len && !ps->raw.ptr)
            return bt_errf(err, errlen, "properties are NULL");
        if (!ps->raw.len)
            return present ? (*present = 0, 0) : 0;
        const uint8_t *p = ps->raw.ptr, *end = p + ps->raw.len;
        while (p < end) {
            bt_mqtt_prop pr;
            if (read_prop(&p, end, &pr, err, errlen) < 0 ||
                check_prop(&pr, type, &seen, err, errlen) < 0)
                return -1;
        }
    }
    if (present)
        *present = seen;
    return 0;
}

int bt_mqtt_props_read(const uint8_t **pos, const uint8_t *end, int type, bt_mqtt_props *out,
                       char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const uint8_t *p = *pos;
    uint32_t n;
    if (bt_mqtt_get_varint(&p, end, &n, "property length", err, errlen) < 0)
        return -1;
    if ((size_t)(end - p) < n)
        return bt_errf(err, errlen, "property length %u exceeds the packet", (unsigned)n);
    out->raw.ptr = p;
    out->raw.len = n;
    if (bt_mqtt_props_check(out, type, &out->present, err, errlen) < 0)
        return -1;
    *pos = p + n;
    return 0;
}

/* ---- iteration ----------------------------------------------------------------------- */

void bt_mqtt_props_iter_init(bt_mqtt_props_iter *it, const bt_mqtt_props *ps)
{
    memset(it, 0, sizeof(*it));
    if (ps->list) {
        it->item = ps->list;
        it->left = ps->count;
    } else if (ps->raw.ptr) {
        it->pos = ps->raw.ptr;
        it->end = ps->raw.ptr + ps->raw.len;
    }
}

bool bt_mqtt_props_next(bt_mqtt_props_iter *it, bt_mqtt_prop *out)
{
    if (it->item) {
        if (!it->left)
            return false;
        *out = *it->item++;
        it->left--;
        return true;
    }
    /* raw sets were validated; a bad one just ends the walk */
    if (!it->pos || it->pos >= it->end || read_prop(&it->pos, it->end, out, NULL, 0) < 0) {
        it->pos = it->end;
        return false;
    }
    return true;
}

bool bt_mqtt_props_get(const bt_mqtt_props *ps, uint8_t id, bt_mqtt_prop *out)
{
    if (!ps->list && !ps->raw.len) /* most PUBLISHes carry none */
        return false;
    bt_mqtt_props_iter it;
    bt_mqtt_prop pr;
    bt_mqtt_props_iter_init(&it, ps);
    while (bt_mqtt_props_next(&it, &pr))
        if (pr.id == id) {
            if (out)
                *out = pr;
            return true;
        }
    return false;
}

bool bt_mqtt_props_equal(const bt_mqtt_props *a, const bt_mqtt_props *b)
{
    bt_mqtt_props_iter ia, ib;
    bt_mqtt_props_iter_init(&ia, a);
    bt_mqtt_props_iter_init(&ib, b);
    for (;;) {
        bt_mqtt_prop x, y;
        bool ha = bt_mqtt_props_next(&ia, &x), hb = bt_mqtt_props_next(&ib, &y);
        if (ha != hb)
            return false;
        if (!ha)
            return true;
        if (x.id != y.id || x.num != y.num || x.bin.len != y.bin.len ||
            x.value.len != y.value.len || (x.bin.len && memcmp(x.bin.ptr, y.bin.ptr, x.bin.len)) ||
            (x.value.len && memcmp(x.value.ptr, y.value.ptr, x.value.len)))
            return false;
    }
}

ssize_t bt_mqtt_props_filter(const bt_mqtt_props *ps, uint64_t drop, uint8_t *out, size_t cap)
{
    if (ps->list)
        return -1;
    if (!ps->raw.len)
        return 0;
    /* two passes over the validated bytes: the size, then the copy */
    size_t need = 0;
    for (int pass = 0; pass < 2; pass++) {
        const uint8_t *p = ps->raw.ptr, *end = p + ps->raw.len;
        size_t o = 0;
        while (p < end) {
            const uint8_t *start = p;
            bt_mqtt_prop pr;
            if (read_prop(&p, end, &pr, NULL, 0) < 0)
                return -1;
            if (drop & ((uint64_t)1 << pr.id))
                continue;
            if (pass == 1)
                memcpy(out + o, start, (size_t)(p - start));
            o += (size_t)(p - start);
        }
        if (pass == 0) {
            need = o;
            if (need > cap)
                return (ssize_t)need;
        }
    }
    return (ssize_t)need;
}

/* ---- writing ------------------------------------------------------------------------- */

static size_t prop_size(const bt_mqtt_prop *pr)
{
    switch (bt_mqtt_prop_kind(pr->id)) {
    case PK_BYTE: return 2;
    case PK_U16: return 3;
    case PK_U32: return 5;
    case PK_VAR: return 1 + bt_mqtt_varint_len(pr->num);
    case PK_PAIR: return 5 + pr->bin.len + pr->value.len;
    default: return 3 + pr->bin.len;
    }
}

ssize_t bt_mqtt_props_size(const bt_mqtt_props *ps, int type, char *err, size_t errlen)
{
    if (bt_mqtt_props_check(ps, type, NULL, err, errlen) < 0)
        return -1;
    size_t n = 0;
    if (ps->list)
        for (size_t i = 0; i < ps->count; i++)
            n += prop_size(&ps->list[i]);
    else
        n = ps->raw.len;
    if (n > BT_MQTT_MAX_REMAINING)
        return bt_errf(err, errlen, "properties too large");
    return (ssize_t)(bt_mqtt_varint_len((uint32_t)n) + n);
}

static uint8_t *put_be(uint8_t *b, uint32_t v, int n)
{
    for (int i = n - 1; i >= 0; i--)
        *b++ = (uint8_t)(v >> (8 * i));
    return b;
}

static uint8_t *put_field(uint8_t *b, const void *p, size_t n)
{
    b = put_be(b, (uint32_t)n, 2);
    if (n)
        memcpy(b, p, n);
    return b + n;
}

uint8_t *bt_mqtt_props_write(uint8_t *b, const bt_mqtt_props *ps)
{
    if (!ps->list) {
        b = bt_mqtt_put_varint(b, (uint32_t)ps->raw.len);
        if (ps->raw.len)
            memcpy(b, ps->raw.ptr, ps->raw.len);
        return b + ps->raw.len;
    }
    size_t n = 0;
    for (size_t i = 0; i < ps->count; i++)
        n += prop_size(&ps->list[i]);
    b = bt_mqtt_put_varint(b, (uint32_t)n);
    for (size_t i = 0; i < ps->count; i++) {
        const bt_mqtt_prop *pr = &ps->list[i];
        *b++ = pr->id;
        switch (bt_mqtt_prop_kind(pr->id)) {
        case PK_BYTE: *b++ = (uint8_t)pr->num; break;
        case PK_U16: b = put_be(b, pr->num, 2); break;
        case PK_U32: b = put_be(b, pr->num, 4); break;
        case PK_VAR: b = bt_mqtt_put_varint(b, pr->num); break;
        case PK_PAIR:
            b = put_field(b, pr->bin.ptr, pr->bin.len);
            b = put_field(b, pr->value.ptr, pr->value.len);
            break;
        default: b = put_field(b, pr->bin.ptr, pr->bin.len); break;
        }
    }
    return b;
}

/* ---- reason codes (§2.4) ------------------------------------------------------------- */

bool bt_mqtt_reason_valid(int type, uint8_t rc)
{
    static const uint8_t connack[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
                                      0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
                                      0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
    static const uint8_t puback[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
    static const uint8_t pubrel[] = {0x00, 0x92};
    static const uint8_t suback[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                                     0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
    static const uint8_t unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
    static const uint8_t disconnect[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
                                         0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                                         0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
    static const uint8_t auth[] = {0x00, 0x18, 0x19};
    const uint8_t *set;
    size_t n;
#define SET(a) (set = (a), n = sizeof(a))
    switch (type) {
    case BT_MQTT_CONNACK: SET(connack); break;
    case BT_MQTT_PUBACK:
    case BT_MQTT_PUBREC: SET(puback); break;
    case BT_MQTT_PUBREL:
    case BT_MQTT_PUBCOMP: SET(pubrel); break;
    case BT_MQTT_SUBACK: SET(suback); break;
    case BT_MQTT_UNSUBACK: SET(unsuback); break;
    case BT_MQTT_DISCONNECT: SET(disconnect); break;
    case BT_MQTT_AUTH: SET(auth); break;
    default: return false;
    }
#undef SET
    return memchr(set, rc, n) != NULL;
}
