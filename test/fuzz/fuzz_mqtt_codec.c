/* libFuzzer target for the MQTT codec: decode arbitrary bytes packet after packet until an
 * error or need-more; every decoded packet must re-encode and decode again to an equal
 * packet with the same body bytes, and its prefixes must only ever need more. */
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

static void check_packet(const uint8_t *in, size_t used, const bt_mqtt_packet *p)
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
    CHECK(used - ib == (size_t)n - ob);
    CHECK(memcmp(in + ib, out + ob, used - ib) == 0);

    bt_mqtt_packet q;
    size_t used2 = 0;
    CHECK(bt_mqtt_decode(out, (size_t)n, (size_t)n, &q, &used2, err, sizeof(err)) == 1);
    CHECK(used2 == (size_t)n);
    CHECK(bt_mqtt_packet_equal(p, &q));
    /* one byte over the limit is refused */
    CHECK(bt_mqtt_decode(out, (size_t)n, (size_t)n - 1, &q, &used2, err, sizeof(err)) == -1);

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        bt_mqtt_packet p;
        size_t used = 0;
        char err[160] = "";
        int rc = bt_mqtt_decode(data + off, size - off, 0, &p, &used, err, sizeof(err));
        CHECK(rc >= -1 && rc <= 1);
        if (rc < 0)
            CHECK(err[0] != '\0');
        if (rc <= 0)
            break;
        CHECK(used >= 2 && used <= size - off);
        /* every proper prefix of a good packet just needs more bytes */
        bt_mqtt_packet q;
        size_t u2;
        CHECK(bt_mqtt_decode(data + off, used - 1, 0, &q, &u2, err, sizeof(err)) == 0);
        CHECK(bt_mqtt_decode(data + off, used / 2, 0, &q, &u2, err, sizeof(err)) == 0);
        check_packet(data + off, used, &p);
        off += used;
    }
    return 0;
}
