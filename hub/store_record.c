/* Byte layouts of the store's values. Everything read back from disk is validated: a
 * corrupt length or flag is an error, never an out-of-bounds read. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/error.h"
#include "baetyl/mqtt_codec.h"
#include "store_internal.h"

/* Flags byte of a message record: bit 0 retain; bit 1 an MQTT 5.0 block follows the topic
 * (u32 expiry_s, u32 props_len, u16 origin_len, props, origin). Records without any of
 * them are written without the block, byte for byte as before it existed, so stores of
 * either kind open. */
#define REC_RETAIN 0x01
#define REC_V5 0x02
#define REC_V5_HDR 10
/* Properties the hub adds per delivery: never part of a stored message. */
#define PROPS_NOT_STORED                                                                     \
    ((uint64_t)1 << BT_MQTT_PROP_TOPIC_ALIAS | (uint64_t)1 << BT_MQTT_PROP_SUBSCRIPTION_ID | \
     (uint64_t)1 << BT_MQTT_PROP_MESSAGE_EXPIRY)

/* Subscription record: the options byte is the SUBSCRIBE one (QoS in bits 0-1, no-local,
 * retain-as-published, retain handling in bits 2-5); bit 6 says a u32 subscription
 * identifier follows the filter. Records written before options were kept hold QoS only. */
#define SUB_OPTS_MASK 0x3C
#define SUB_HAS_ID 0x40

void store_be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t store_be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void be16_put(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t be16_get(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int store_msg_check(const store_msg *m, int need_payload, char *err, size_t errlen)
{
    if (!m)
        return bt_errf(err, errlen, "store: no message");
    if (m->topic_len > UINT16_MAX)
        return bt_errf(err, errlen, "store: topic of %zu bytes is too long (max %u)", m->topic_len,
                       UINT16_MAX);
    if (!m->topic && m->topic_len)
        return bt_errf(err, errlen, "store: topic is NULL");
    if (!m->payload && m->payload_len)
        return bt_errf(err, errlen, "store: payload is NULL");
    if (need_payload && !m->payload_len)
        return bt_errf(err, errlen, "store: empty payload");
    if (m->payload_len > SIZE_MAX - STORE_MSG_HDR - UINT16_MAX)
        return bt_errf(err, errlen, "store: payload too large");
    if (m->qos > 2)
        return bt_errf(err, errlen, "store: invalid qos %u", m->qos);
    if ((!m->props && m->props_len) || (!m->origin && m->origin_len))
        return bt_errf(err, errlen, "store: properties or origin are NULL");
    if (m->origin_len > UINT16_MAX || (m->origin_len && memchr(m->origin, 0, m->origin_len)))
        return bt_errf(err, errlen, "store: invalid origin");
    /* (in that order, so that no subtraction wraps on 32-bit targets) */
    const size_t fixed = STORE_MSG_HDR + 2 * (size_t)UINT16_MAX + REC_V5_HDR;
    if (m->props_len > UINT32_MAX || m->props_len > SIZE_MAX - fixed ||
        m->payload_len > SIZE_MAX - fixed - m->props_len)
        return bt_errf(err, errlen, "store: properties too large");
    return 0;
}

static bool has_v5(const store_msg *m)
{
    return m->props_len || m->expiry_s || m->origin_len;
}

size_t store_msg_size(const store_msg *m)
{
    return STORE_MSG_HDR + m->topic_len +
           (has_v5(m) ? REC_V5_HDR + m->props_len + m->origin_len : 0) + m->payload_len;
}

void store_msg_encode(const store_msg *m, uint8_t *out)
{
    store_be64_put(out, (uint64_t)m->ts_ms);
    out[8] = m->qos;
    out[9] = (uint8_t)((m->retain ? REC_RETAIN : 0) | (has_v5(m) ? REC_V5 : 0));
    be16_put(out + 10, (uint16_t)m->topic_len);
    uint8_t *p = out + STORE_MSG_HDR;
    if (m->topic_len)
        memcpy(p, m->topic, m->topic_len);
    p += m->topic_len;
    if (has_v5(m)) {
        be32_put(p, m->expiry_s);
        be32_put(p + 4, (uint32_t)m->props_len);
        be16_put(p + 8, (uint16_t)m->origin_len);
        p += REC_V5_HDR;
        if (m->props_len)
            memcpy(p, m->props, m->props_len);
        p += m->props_len;
        if (m->origin_len)
            memcpy(p, m->origin, m->origin_len);
        p += m->origin_len;
    }
    if (m->payload_len)
        memcpy(p, m->payload, m->payload_len);
}

/* The MQTT 5.0 block of a record at v (left bytes after the topic): its properties must be
 * a valid PUBLISH property set without those the hub adds per delivery; the origin (a
 * client id) holds no NUL. */
static int v5_decode(const uint8_t *v, size_t left, store_msg *m, char *err, size_t errlen)
{
    if (left < REC_V5_HDR)
        return bt_errf(err, errlen, "MQTT 5 block cut short (%zu bytes)", left);
    m->expiry_s = be32_get(v);
    size_t plen = be32_get(v + 4), olen = be16_get(v + 8);
    if (plen > left - REC_V5_HDR || olen > left - REC_V5_HDR - plen)
        return bt_errf(err, errlen, "properties (%zu) or origin (%zu bytes) exceed the record",
                       plen, olen);
    if (!plen && !m->expiry_s && !olen)
        return bt_errf(err, errlen, "empty MQTT 5 block"); /* never written */
    m->props = plen ? v + REC_V5_HDR : NULL;
    m->props_len = plen;
    m->origin = olen ? (const char *)v + REC_V5_HDR + plen : NULL;
    m->origin_len = olen;
    if (olen && memchr(m->origin, 0, olen))
        return bt_errf(err, errlen, "origin holds a NUL byte");
    bt_mqtt_props ps = {.raw = {m->props, plen}};
    uint64_t present = 0;
    char why[120];
    if (bt_mqtt_props_check(&ps, BT_MQTT_PUBLISH, &present, why, sizeof why) < 0)
        return bt_errf(err, errlen, "invalid properties: %s", why);
    if (present & PROPS_NOT_STORED)
        return bt_errf(err, errlen, "properties hold a per-delivery property");
    return 0;
}

int store_msg_decode(const uint8_t *v, size_t vlen, store_msg *m, char *err, size_t errlen)
{
    if (vlen < STORE_MSG_HDR)
        return bt_errf(err, errlen, "record of %zu bytes is shorter than its header", vlen);
    size_t tlen = be16_get(v + 10);
    if (tlen > vlen - STORE_MSG_HDR)
        return bt_errf(err, errlen, "topic length %zu exceeds the record (%zu bytes)", tlen, vlen);
    if (v[8] > 2 || (v[9] & ~(REC_RETAIN | REC_V5)))
        return bt_errf(err, errlen, "invalid qos %u or flags %u", v[8], v[9]);
    m->ts_ms = (int64_t)store_be64_get(v);
    m->qos = v[8];
    m->retain = v[9] & REC_RETAIN;
    m->topic = (const char *)v + STORE_MSG_HDR;
    m->topic_len = tlen;
    m->props = NULL;
    m->props_len = 0;
    m->expiry_s = 0;
    m->origin = NULL;
    m->origin_len = 0;
    size_t pos = STORE_MSG_HDR + tlen;
    if (v[9] & REC_V5) {
        if (v5_decode(v + pos, vlen - pos, m, err, errlen) < 0)
            return -1;
        pos += REC_V5_HDR + m->props_len + m->origin_len;
    }
    m->payload = v + pos;
    m->payload_len = vlen - pos;
    return 0;
}

int store_msg_topic_cstr(store_msg *m, char **buf, size_t *cap, char *err, size_t errlen)
{
    if (m->topic_len + 1 > *cap) {
        size_t ncap = m->topic_len + 1 < 256 ? 256 : m->topic_len + 1;
        char *b = realloc(*buf, ncap);
        if (!b)
            return bt_errf(err, errlen, "store: out of memory");
        *buf = b;
        *cap = ncap;
    }
    memcpy(*buf, m->topic, m->topic_len);
    (*buf)[m->topic_len] = 0;
    m->topic = *buf;
    return 0;
}

size_t store_subs_size(const store_sub *subs, size_t n, const char *owner, char *err, size_t errlen)
{
    if (n > UINT32_MAX || (n && !subs)) {
        bt_errf(err, errlen, "store: invalid subscription list");
        return 0;
    }
    size_t size = 4;
    for (size_t i = 0; i < n; i++) {
        if (!subs[i].filter || !subs[i].filter[0]) {
            bt_errf(err, errlen, "store: subscription %zu has no filter", i);
            return 0;
        }
        size_t len = strlen(subs[i].filter);
        if (len > UINT16_MAX) {
            bt_errf(err, errlen, "store: filter of %zu bytes is too long", len);
            return 0;
        }
        if (subs[i].qos > 2 || (subs[i].opts & ~SUB_OPTS_MASK) || subs[i].id > 268435455) {
            bt_errf(err, errlen, "store: invalid qos %u, options %u or id %u for filter %s",
                    subs[i].qos, subs[i].opts, subs[i].id, subs[i].filter);
            return 0;
        }
        size += 3 + len + (subs[i].id ? 4 : 0);
    }
    if (owner) {
        size_t len = strlen(owner);
        if (!len || len > UINT16_MAX) {
            bt_errf(err, errlen, "store: owner of %zu bytes is invalid", len);
            return 0;
        }
        size += 2 + len;
    }
    return size;
}

void store_subs_encode(const store_sub *subs, size_t n, const char *owner, uint8_t *out)
{
    be32_put(out, (uint32_t)n);
    out += 4;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(subs[i].filter);
        out[0] = (uint8_t)(subs[i].qos | subs[i].opts | (subs[i].id ? SUB_HAS_ID : 0));
        be16_put(out + 1, (uint16_t)len);
        memcpy(out + 3, subs[i].filter, len);
        out += 3 + len;
        if (subs[i].id) {
            be32_put(out, subs[i].id);
            out += 4;
        }
    }
    if (owner) {
        size_t len = strlen(owner);
        be16_put(out, (uint16_t)len);
        memcpy(out + 2, owner, len);
    }
}

/* The optional owner trailer after the subscriptions: u16 len, bytes (records written
 * before owners were kept have none). */
static int owner_decode(const uint8_t *v, size_t left, char **owner, char *err, size_t errlen)
{
    *owner = NULL;
    if (!left)
        return 0;
    if (left < 2)
        return bt_errf(err, errlen, "%zu trailing bytes after the subscriptions", left);
    size_t len = be16_get(v);
    if (!len || len != left - 2)
        return bt_errf(err, errlen, "owner of invalid length %zu (%zu bytes left)", len, left - 2);
    if (memchr(v + 2, 0, len))
        return bt_errf(err, errlen, "owner contains a NUL byte");
    *owner = malloc(len + 1);
    if (!*owner)
        return bt_errf(err, errlen, "out of memory");
    memcpy(*owner, v + 2, len);
    (*owner)[len] = 0;
    return 0;
}

int store_subs_decode(const uint8_t *v, size_t vlen, store_sub **subs, size_t *n, char **owner,
                      char *err, size_t errlen)
{
    *subs = NULL;
    *n = 0;
    *owner = NULL;
    if (vlen < 4)
        return bt_errf(err, errlen, "subscription record of %zu bytes is too short", vlen);
    uint32_t count = be32_get(v);
    /* Each entry takes at least 4 bytes: refuse a count the record cannot hold before
     * allocating for it. */
    if (count > (vlen - 4) / 4)
        return bt_errf(err, errlen, "subscription count %u exceeds the record (%zu bytes)", count,
                       vlen);
    if (!count)
        return owner_decode(v + 4, vlen - 4, owner, err, errlen);
    /* One block: the array, then the filters with their NULs (they fit in vlen bytes). */
    size_t arr = count * sizeof(store_sub);
    store_sub *out = malloc(arr + vlen);
    if (!out)
        return bt_errf(err, errlen, "out of memory");
    char *str = (char *)out + arr;
    size_t pos = 4;
    for (uint32_t i = 0; i < count; i++) {
        if (vlen - pos < 3) {
            bt_errf(err, errlen, "subscription %u is cut short", i);
            goto bad;
        }
        uint8_t ob = v[pos], qos = BT_MQTT_SUBOPT_QOS(ob);
        size_t len = be16_get(v + pos + 1);
        pos += 3;
        if (qos > 2 || (ob & 0x80)) {
            bt_errf(err, errlen, "subscription %u has invalid options %u", i, ob);
            goto bad;
        }
        if (!len || len > vlen - pos) {
            bt_errf(err, errlen, "subscription %u has invalid length %zu", i, len);
            goto bad;
        }
        if (memchr(v + pos, 0, len)) {
            bt_errf(err, errlen, "subscription %u contains a NUL byte", i);
            goto bad;
        }
        memcpy(str, v + pos, len);
        str[len] = 0;
        out[i].filter = str;
        out[i].qos = qos;
        out[i].opts = ob & SUB_OPTS_MASK;
        out[i].id = 0;
        str += len + 1;
        pos += len;
        if (ob & SUB_HAS_ID) {
            /* 1..268435455, as a SUBSCRIBE may carry */
            if (vlen - pos < 4 || !(out[i].id = be32_get(v + pos)) || out[i].id > 268435455) {
                bt_errf(err, errlen, "subscription %u has an invalid identifier", i);
                goto bad;
            }
            pos += 4;
        }
    }
    if (owner_decode(v + pos, vlen - pos, owner, err, errlen) < 0)
        goto bad;
    *subs = out;
    *n = count;
    return 0;
bad:
    free(out);
    return -1;
}
