/* libFuzzer target for the MQTT codec: decode arbitrary bytes packet after packet until an
 * error or need-more, as a 3.1.1 connection and again as a 5.0 one; every decoded packet
 * must re-encode and decode again to an equal packet (3.1.x: with the same body bytes), and
 * its prefixes must only ever need more.
 * 5.0 properties are also rebuilt as a caller's list and must encode to the same bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/mqtt_codec.h"

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "check failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* Offset of the body: after the type byte and the variable length. */
static size_t body_offset(const uint8_t *b)
{
    size_t i = 1;
    while (b[i] & 0x80)
        i++;
    return i + 1;
}

/* The properties of p as a list, encoded again: same bytes as the raw form. */
static void check_props_list(const bt_mqtt_packet *p, const uint8_t *wire, size_t n)
{
    bt_mqtt_packet q = *p;
    bt_mqtt_props *ps;
    switch (p->type) {
    case BT_MQTT_CONNECT: ps = &q.connect.props; break;
    case BT_MQTT_CONNACK: ps = &q.connack.props; break;
    case BT_MQTT_PUBLISH: ps = &q.publish.props; break;
    case BT_MQTT_SUBSCRIBE:
    case BT_MQTT_UNSUBSCRIBE: ps = &q.subscribe.props; break;
    case BT_MQTT_SUBACK:
    case BT_MQTT_UNSUBACK: ps = &q.suback.props; break;
    case BT_MQTT_PINGREQ:
    case BT_MQTT_PINGRESP: return;
    default: ps = &q.ack.props; break;
    }
    bt_mqtt_prop list[64];
    size_t k = 0;
    bt_mqtt_props_iter it;
    bt_mqtt_prop pr;
    bt_mqtt_props_iter_init(&it, ps);
    while (k < 64 && bt_mqtt_props_next(&it, &pr))
        list[k++] = pr;
    if (k == 64)
        return;
    ps->list = list;
    ps->count = k;
    ps->raw.ptr = NULL;
    ps->raw.len = 0;
    CHECK(bt_mqtt_encoded_len(&q) == (ssize_t)n);
    uint8_t *out = malloc(n);
    CHECK(out);
    CHECK(bt_mqtt_encode(&q, out, n) == (ssize_t)n);
    CHECK(memcmp(out, wire, n) == 0);
    CHECK(bt_mqtt_packet_equal(p, &q));
    free(out);
}

static void check_packet(const uint8_t *in, size_t used, const bt_mqtt_packet *p, int version)
{
    char err[160];
    CHECK(bt_mqtt_check(p, err, sizeof(err)) == 0);
    ssize_t n = bt_mqtt_encoded_len(p);
    CHECK(n >= 2 && (size_t)n <= used); /* ours is minimal; the input's length may not be */

    uint8_t *out = malloc((size_t)n);
    CHECK(out);
    CHECK(bt_mqtt_encode(p, out, (size_t)n - 1) == n); /* too small: tells the size */
    CHECK(bt_mqtt_encode(p, out, (size_t)n) == n);
    size_t ib = body_offset(in), ob = body_offset(out);
    /* 5.0 acks may arrive longer than the shortest form the encoder writes */
    if (p->version != BT_MQTT_V5) {
        CHECK(used - ib == (size_t)n - ob);
        CHECK(memcmp(in + ib, out + ob, used - ib) == 0);
    }

    bt_mqtt_packet q;
    size_t used2 = 0;
    CHECK(bt_mqtt_decode_v(out, (size_t)n, (size_t)n, version, &q, &used2, err, sizeof(err)) == 1);
    CHECK(used2 == (size_t)n);
    CHECK(bt_mqtt_packet_equal(p, &q));
    /* one byte over the limit is refused */
    CHECK(bt_mqtt_decode_v(out, (size_t)n, (size_t)n - 1, version, &q, &used2, err, sizeof(err)) ==
          -1);
    if (p->version == BT_MQTT_V5) {
        check_props_list(p, out, (size_t)n);
        free(out);
        return;
    }

    if (p->type == BT_MQTT_PUBLISH) {
        const bt_mqtt_publish *x = &p->publish;
        uint8_t *fast = malloc((size_t)n);
        CHECK(fast);
        CHECK(bt_mqtt_encode_publish(fast, (size_t)n, x->topic.ptr, x->topic.len, x->payload.ptr,
                                     x->payload.len, x->qos, x->retain, x->dup, x->packet_id) == n);
        CHECK(memcmp(fast, out, (size_t)n) == 0);
        free(fast);
    } else if (p->type == BT_MQTT_SUBSCRIBE || p->type == BT_MQTT_UNSUBSCRIBE ||
               p->type == BT_MQTT_SUBACK) {
        size_t count = 0;
        bt_mqtt_sub_iter it;
        bt_mqtt_sub_iter_init(&it, p);
        while (bt_mqtt_sub_next(&it, NULL, NULL))
            count++;
        CHECK(count == (p->type == BT_MQTT_SUBACK ? p->suback.count : p->subscribe.count));
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run(const uint8_t *data, size_t size, int version)
{
    size_t off = 0;
    while (off < size) {
        bt_mqtt_packet p;
        size_t used = 0;
        char err[160] = "";
        int rc = bt_mqtt_decode_v(data + off, size - off, 0, version, &p, &used, err, sizeof(err));
        CHECK(rc >= -1 && rc <= 1);
        if (rc < 0)
            CHECK(err[0] != '\0');
        if (rc <= 0)
            break;
        CHECK(used >= 2 && used <= size - off);
        /* every proper prefix of a good packet just needs more bytes */
        bt_mqtt_packet q;
        size_t u2;
        CHECK(bt_mqtt_decode_v(data + off, used - 1, 0, version, &q, &u2, err, sizeof(err)) == 0);
        CHECK(bt_mqtt_decode_v(data + off, used / 2, 0, version, &q, &u2, err, sizeof(err)) == 0);
        check_packet(data + off, used, &p, version);
        off += used;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size, BT_MQTT_V311);
    run(data, size, BT_MQTT_V5);
    return 0;
}
