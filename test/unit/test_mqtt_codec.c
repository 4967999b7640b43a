/* MQTT codec: known-good bytes, round trips of all 14 packet types, incremental decoding,
 * and every malformed input rejected with its reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "baetyl/mqtt_codec.h"

#define S(lit) ((bt_mqtt_str){lit, sizeof(lit) - 1})
#define B(lit) ((bt_mqtt_bin){(const uint8_t *)(lit), sizeof(lit) - 1})

/* Decodes from a heap copy of exactly len bytes, so ASan catches any read past the input.
 * The copy is freed: only the result, the type and the lengths may be looked at after. */
static int decode_exact(const uint8_t *bytes, size_t len, size_t max, bt_mqtt_packet *out,
                        size_t *used, char *err, size_t errlen)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, bytes, len);
    int rc = bt_mqtt_decode(copy, len, max, out, used, err, errlen);
    free(copy);
    return rc;
}

/* Encodes p, checks the size functions agree, decodes it back and checks it is equal. The
 * views of *back point into *wire, which the caller frees. */
static void round_trip(const bt_mqtt_packet *p, bt_mqtt_packet *back, uint8_t **wire)
{
    char err[128] = "";
    assert_int_equal(bt_mqtt_check(p, err, sizeof(err)), 0);
    ssize_t n = bt_mqtt_encoded_len(p);
    assert_true(n >= 2);
    uint8_t *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(bt_mqtt_encode(p, buf, (size_t)n), n);
    size_t used = 0;
    int rc = bt_mqtt_decode(buf, (size_t)n, 0, back, &used, err, sizeof(err));
    if (rc != 1)
        fail_msg("decode of %s failed: %s", bt_mqtt_type_name(p->type), err);
    assert_int_equal(used, (size_t)n);
    assert_true(bt_mqtt_packet_equal(p, back));
    *wire = buf;
}

static void expect_bytes(const bt_mqtt_packet *p, const uint8_t *want, size_t n)
{
    uint8_t buf[512];
    assert_int_equal(bt_mqtt_encode(p, buf, sizeof(buf)), (ssize_t)n);
    assert_memory_equal(buf, want, n);
    /* and back */
    bt_mqtt_packet q;
    size_t used;
    char err[128] = "";
    assert_int_equal(bt_mqtt_decode(want, n, 0, &q, &used, err, sizeof(err)), 1);
    assert_int_equal(used, n);
    assert_true(bt_mqtt_packet_equal(p, &q));
}

/* ---- known-good bytes ------------------------------------------------------------------ */

static void test_connect_311_bytes(void **state)
{
    static const uint8_t want[] = {0x10, 0x15, 0x00, 0x04, 'M',  'Q',  'T', 'T',
                                   0x04, 0xC2, 0x00, 0x3C, 0x00, 0x03, 'a', 'b',
                                   'c',  0x00, 0x01, 'u',  0x00, 0x01, 'p'};
    bt_mqtt_packet p = {.type = BT_MQTT_CONNECT,
                        .connect = {.protocol_level = 4,
                                    .clean_session = true,
                                    .keepalive = 60,
                                    .client_id = S("abc"),
                                    .has_username = true,
                                    .username = S("u"),
                                    .has_password = true,
                                    .password = B("p")}};
    expect_bytes(&p, want, sizeof(want));
}

static void test_connect_31_will_bytes(void **state)
{
    /* MQTT 3.1: "MQIsdp", level 3; will QoS 1 retained, clean session. */
    static const uint8_t want[] = {0x10, 0x16, 0x00, 0x06, 'M',  'Q',  'I',  's',
                                   'd',  'p',  0x03, 0x2E, 0x00, 0x0A, 0x00, 0x01,
                                   'c',  0x00, 0x01, 'w',  0x00, 0x02, 'h',  'i'};
    bt_mqtt_packet p = {.type = BT_MQTT_CONNECT,
                        .connect = {.protocol_level = 3,
                                    .clean_session = true,
                                    .keepalive = 10,
                                    .client_id = S("c"),
                                    .will_flag = true,
                                    .will_qos = 1,
                                    .will_retain = true,
                                    .will_topic = S("w"),
                                    .will_payload = B("hi")}};
    expect_bytes(&p, want, sizeof(want));
}

static void test_publish_bytes(void **state)
{
    /* MQTT 3.1.1 §3.3.2.3: topic "a/b", packet id 10; QoS 1, DUP and RETAIN set. */
    static const uint8_t want[] = {0x3B, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 'h', 'i'};
    bt_mqtt_packet p = {.type = BT_MQTT_PUBLISH,
                        .publish = {.qos = 1,
                                    .retain = true,
                                    .dup = true,
                                    .packet_id = 10,
                                    .topic = S("a/b"),
                                    .payload = B("hi")}};
    expect_bytes(&p, want, sizeof(want));

    uint8_t buf[64];
    assert_int_equal(bt_mqtt_encode_publish(buf, sizeof(buf), "a/b", 3, "hi", 2, 1, true, true, 10),
                     (ssize_t)sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));

    /* QoS 0 has no packet id on the wire, whatever the caller passes. */
    static const uint8_t q0[] = {0x30, 0x06, 0x00, 0x01, 't', 'x', 'y', 'z'};
    assert_int_equal(bt_mqtt_encode_publish(buf, sizeof(buf), "t", 1, "xyz", 3, 0, false, false, 7),
                     (ssize_t)sizeof(q0));
    assert_memory_equal(buf, q0, sizeof(q0));
}

static void test_subscribe_bytes(void **state)
{
    /* MQTT 3.1.1 §3.8.3.1: packet id 10, "a/b" QoS 1, "c/d" QoS 2. */
    static const uint8_t want[] = {0x82, 0x0E, 0x00, 0x0A, 0x00, 0x03, 'a', '/',
                                   'b',  0x01, 0x00, 0x03, 'c',  '/',  'd', 0x02};
    bt_mqtt_sub_entry e[] = {{S("a/b"), 1}, {S("c/d"), 2}};
    bt_mqtt_packet p = {.type = BT_MQTT_SUBSCRIBE,
                        .subscribe = {.packet_id = 10, .count = 2, .entries = e}};
    expect_bytes(&p, want, sizeof(want));
    uint8_t buf[64];
    assert_int_equal(bt_mqtt_encode_subscribe(buf, sizeof(buf), BT_MQTT_SUBSCRIBE, 10, e, 2),
                     (ssize_t)sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));

    /* the decoded list walks back to the same entries, without allocation */
    bt_mqtt_packet q;
    size_t used;
    char err[128];
    assert_int_equal(bt_mqtt_decode(want, sizeof(want), 0, &q, &used, err, sizeof(err)), 1);
    assert_int_equal(q.subscribe.count, 2);
    assert_ptr_equal(q.subscribe.raw.ptr, want + 4);
    bt_mqtt_sub_iter it;
    bt_mqtt_sub_iter_init(&it, &q);
    bt_mqtt_str t;
    uint8_t qos;
    assert_true(bt_mqtt_sub_next(&it, &t, &qos));
    assert_int_equal(t.len, 3);
    assert_memory_equal(t.ptr, "a/b", 3);
    assert_int_equal(qos, 1);
    assert_true(bt_mqtt_sub_next(&it, &t, &qos));
    assert_memory_equal(t.ptr, "c/d", 3);
    assert_int_equal(qos, 2);
    assert_false(bt_mqtt_sub_next(&it, &t, &qos));
}

static void test_small_packet_bytes(void **state)
{
    uint8_t buf[16];
    static const uint8_t connack[] = {0x20, 0x02, 0x00, 0x04};
    assert_int_equal(bt_mqtt_encode_connack(buf, sizeof(buf), false, 4), 4);
    assert_memory_equal(buf, connack, 4);
    static const uint8_t connack_sp[] = {0x20, 0x02, 0x01, 0x00};
    assert_int_equal(bt_mqtt_encode_connack(buf, sizeof(buf), true, 0), 4);
    assert_memory_equal(buf, connack_sp, 4);
    static const uint8_t puback[] = {0x40, 0x02, 0x12, 0x34};
    assert_int_equal(bt_mqtt_encode_puback(buf, sizeof(buf), 0x1234), 4);
    assert_memory_equal(buf, puback, 4);
    static const uint8_t pubrel[] = {0x62, 0x02, 0x00, 0x01};
    assert_int_equal(bt_mqtt_encode_ack(buf, sizeof(buf), BT_MQTT_PUBREL, 1), 4);
    assert_memory_equal(buf, pubrel, 4);
    static const uint8_t unsuback[] = {0xB0, 0x02, 0xFF, 0xFF};
    assert_int_equal(bt_mqtt_encode_ack(buf, sizeof(buf), BT_MQTT_UNSUBACK, 0xFFFF), 4);
    assert_memory_equal(buf, unsuback, 4);
    static const uint8_t suback[] = {0x90, 0x05, 0x00, 0x0A, 0x00, 0x01, 0x80};
    static const uint8_t codes[] = {0x00, 0x01, 0x80};
    assert_int_equal(bt_mqtt_encode_suback(buf, sizeof(buf), 10, codes, 3), 7);
    assert_memory_equal(buf, suback, 7);
    static const uint8_t unsub[] = {0xA2, 0x05, 0x00, 0x02, 0x00, 0x01, 'x'};
    bt_mqtt_sub_entry e = {S("x"), 2}; /* qos of an UNSUBSCRIBE entry is ignored */
    assert_int_equal(bt_mqtt_encode_subscribe(buf, sizeof(buf), BT_MQTT_UNSUBSCRIBE, 2, &e, 1), 7);
    assert_memory_equal(buf, unsub, 7);
    static const uint8_t pingreq[] = {0xC0, 0x00}, pingresp[] = {0xD0, 0x00},
                         disconnect[] = {0xE0, 0x00};
    assert_int_equal(bt_mqtt_encode_empty(buf, sizeof(buf), BT_MQTT_PINGREQ), 2);
    assert_memory_equal(buf, pingreq, 2);
    assert_int_equal(bt_mqtt_encode_empty(buf, sizeof(buf), BT_MQTT_PINGRESP), 2);
    assert_memory_equal(buf, pingresp, 2);
    assert_int_equal(bt_mqtt_encode_empty(buf, sizeof(buf), BT_MQTT_DISCONNECT), 2);
    assert_memory_equal(buf, disconnect, 2);
}

/* ---- round trips ------------------------------------------------------------------------- */

static void test_round_trip_every_type(void **state)
{
    static const uint8_t codes[] = {0, 1, 2, 0x80};
    bt_mqtt_sub_entry subs[] = {
        {S("a/+/c"), 0}, {S("#"), 1}, {S("caf\xc3\xa9/\xf0\x9f\x98\x80"), 2}};
    bt_mqtt_sub_entry unsubs[] = {{S("a/b"), 0}, {S(""), 0}};
    const bt_mqtt_packet packets[] = {
        {.type = BT_MQTT_CONNECT,
         .connect = {.protocol_level = 4,
                     .keepalive = 0xFFFF,
                     .client_id = S("dev-1"),
                     .will_flag = true,
                     .will_qos = 2,
                     .will_topic = S("status/dev-1"),
                     .will_payload = B("off\0line"),
                     .has_username = true,
                     .username = S("u\xc3\xa9"),
                     .has_password = true,
                     .password = B("\x00\xff secret")}},
        {.type = BT_MQTT_CONNECT, .connect = {.protocol_level = 4, .client_id = S("")}},
        {.type = BT_MQTT_CONNECT, /* 3.1 allows a password without a username */
         .connect = {.protocol_level = 3,
                     .clean_session = true,
                     .client_id = S("x"),
                     .has_password = true,
                     .password = B("pw")}},
        {.type = BT_MQTT_CONNACK, .connack = {.session_present = true, .return_code = 0}},
        {.type = BT_MQTT_CONNACK, .connack = {.return_code = 5}},
        {.type = BT_MQTT_PUBLISH, .publish = {.topic = S("t"), .payload = B("")}},
        {.type = BT_MQTT_PUBLISH,
         .publish = {.qos = 2,
                     .retain = true,
                     .packet_id = 65535,
                     .topic = S("a/b/c"),
                     .payload = B("\x00\x01\x02")}},
        {.type = BT_MQTT_PUBACK, .ack = {.packet_id = 1}},
        {.type = BT_MQTT_PUBREC, .ack = {.packet_id = 2}},
        {.type = BT_MQTT_PUBREL, .ack = {.packet_id = 3}},
        {.type = BT_MQTT_PUBCOMP, .ack = {.packet_id = 4}},
        {.type = BT_MQTT_SUBSCRIBE, .subscribe = {.packet_id = 5, .count = 3, .entries = subs}},
        {.type = BT_MQTT_SUBACK, .suback = {.packet_id = 6, .codes = codes, .count = 4}},
        {.type = BT_MQTT_UNSUBSCRIBE,
         .unsubscribe = {.packet_id = 7, .count = 2, .entries = unsubs}},
        {.type = BT_MQTT_UNSUBACK, .ack = {.packet_id = 8}},
        {.type = BT_MQTT_PINGREQ},
        {.type = BT_MQTT_PINGRESP},
        {.type = BT_MQTT_DISCONNECT},
    };
    bool seen[15] = {false};
    for (size_t i = 0; i < sizeof(packets) / sizeof(packets[0]); i++) {
        bt_mqtt_packet back;
        uint8_t *wire;
        round_trip(&packets[i], &back, &wire);
        seen[packets[i].type] = true;
        /* decoding gives views into the wire bytes, not copies */
        if (back.type == BT_MQTT_PUBLISH) {
            assert_true((const uint8_t *)back.publish.topic.ptr > wire);
            assert_int_equal(back.publish.packet_id, packets[i].publish.packet_id);
        }
        /* re-encoding the decoded packet gives the same bytes */
        ssize_t n = bt_mqtt_encoded_len(&back);
        uint8_t *again = malloc((size_t)n);
        assert_int_equal(bt_mqtt_encode(&back, again, (size_t)n), n);
        assert_memory_equal(again, wire, (size_t)n);
        free(again);
        free(wire);
    }
    for (int t = 1; t <= 14; t++)
        assert_true(seen[t]);
}

static void test_connect_fields(void **state)
{
    bt_mqtt_packet p = {.type = BT_MQTT_CONNECT,
                        .connect = {.protocol_level = 4,
                                    .keepalive = 30,
                                    .client_id = S("id"),
                                    .will_flag = true,
                                    .will_qos = 1,
                                    .will_topic = S("w/t"),
                                    .will_payload = B("bye"),
                                    .has_username = true,
                                    .username = S("user")}};
    bt_mqtt_packet q;
    uint8_t *wire;
    round_trip(&p, &q, &wire);
    assert_int_equal(q.connect.protocol_level, 4);
    assert_false(q.connect.clean_session);
    assert_int_equal(q.connect.keepalive, 30);
    assert_int_equal(q.connect.client_id.len, 2);
    assert_memory_equal(q.connect.client_id.ptr, "id", 2);
    assert_true(q.connect.will_flag);
    assert_int_equal(q.connect.will_qos, 1);
    assert_false(q.connect.will_retain);
    assert_memory_equal(q.connect.will_topic.ptr, "w/t", 3);
    assert_int_equal(q.connect.will_payload.len, 3);
    assert_true(q.connect.has_username);
    assert_memory_equal(q.connect.username.ptr, "user", 4);
    assert_false(q.connect.has_password);
    free(wire);
}

static void test_suback_unsubscribe_iter(void **state)
{
    static const uint8_t suback[] = {0x90, 0x04, 0x00, 0x09, 0x02, 0x80};
    bt_mqtt_packet q;
    size_t used;
    char err[128];
    assert_int_equal(bt_mqtt_decode(suback, sizeof(suback), 0, &q, &used, err, sizeof(err)), 1);
    assert_int_equal(q.suback.packet_id, 9);
    assert_int_equal(q.suback.count, 2);
    bt_mqtt_sub_iter it;
    bt_mqtt_sub_iter_init(&it, &q);
    uint8_t code;
    bt_mqtt_str t;
    assert_true(bt_mqtt_sub_next(&it, &t, &code));
    assert_int_equal(code, 2);
    assert_int_equal(t.len, 0);
    assert_true(bt_mqtt_sub_next(&it, NULL, &code));
    assert_int_equal(code, 0x80);
    assert_false(bt_mqtt_sub_next(&it, NULL, &code));

    static const uint8_t unsub[] = {0xA2, 0x0A, 0x00, 0x03, 0x00, 0x01,
                                    'a',  0x00, 0x03, 'b',  '/',  'c'};
    assert_int_equal(bt_mqtt_decode(unsub, sizeof(unsub), 0, &q, &used, err, sizeof(err)), 1);
    assert_int_equal(q.type, BT_MQTT_UNSUBSCRIBE);
    assert_int_equal(q.unsubscribe.packet_id, 3);
    assert_int_equal(q.unsubscribe.count, 2);
    bt_mqtt_sub_iter_init(&it, &q);
    assert_true(bt_mqtt_sub_next(&it, &t, NULL));
    assert_memory_equal(t.ptr, "a", 1);
    assert_true(bt_mqtt_sub_next(&it, &t, &code));
    assert_int_equal(t.len, 3);
    assert_memory_equal(t.ptr, "b/c", 3);
    assert_int_equal(code, 0);
    assert_false(bt_mqtt_sub_next(&it, &t, &code));
}

/* ---- incremental decoding ------------------------------------------------------------------ */

static void test_incremental_one_byte_at_a_time(void **state)
{
    /* a stream of CONNECT, SUBSCRIBE, a 200-byte PUBLISH (2-byte length), PINGREQ, DISCONNECT */
    uint8_t stream[1024];
    size_t sizes[8], n = 0, len = 0;
    bt_mqtt_packet c = {
        .type = BT_MQTT_CONNECT,
        .connect = {
            .protocol_level = 4, .client_id = S("x"), .has_username = true, .username = S("u")}};
    ssize_t w = bt_mqtt_encode(&c, stream + len, sizeof(stream) - len);
    sizes[n++] = (size_t)w, len += (size_t)w;
    bt_mqtt_sub_entry e = {S("a/#"), 1};
    w = bt_mqtt_encode_subscribe(stream + len, sizeof(stream) - len, BT_MQTT_SUBSCRIBE, 1, &e, 1);
    sizes[n++] = (size_t)w, len += (size_t)w;
    uint8_t payload[200];
    memset(payload, 'p', sizeof(payload));
    w = bt_mqtt_encode_publish(stream + len, sizeof(stream) - len, "a/b", 3, payload,
                               sizeof(payload), 1, false, false, 77);
    assert_int_equal(w, 1 + 2 + 2 + 3 + 2 + 200);
    sizes[n++] = (size_t)w, len += (size_t)w;
    w = bt_mqtt_encode_empty(stream + len, sizeof(stream) - len, BT_MQTT_PINGREQ);
    sizes[n++] = (size_t)w, len += (size_t)w;
    w = bt_mqtt_encode_empty(stream + len, sizeof(stream) - len, BT_MQTT_DISCONNECT);
    sizes[n++] = (size_t)w, len += (size_t)w;

    static const bt_mqtt_type types[] = {BT_MQTT_CONNECT, BT_MQTT_SUBSCRIBE, BT_MQTT_PUBLISH,
                                         BT_MQTT_PINGREQ, BT_MQTT_DISCONNECT};
    size_t off = 0, have = 0, got = 0;
    while (off < len) {
        have++; /* one more byte arrived */
        bt_mqtt_packet p;
        size_t used = 99;
        char err[128] = "";
        int rc = decode_exact(stream + off, have, 1024, &p, &used, err, sizeof(err));
        if (have < sizes[got]) {
            assert_int_equal(rc, 0);
            assert_int_equal(used, 0);
            continue;
        }
        assert_int_equal(rc, 1);
        assert_int_equal(used, sizes[got]);
        assert_int_equal(p.type, types[got]);
        off += used;
        have = 0;
        got++;
    }
    assert_int_equal(got, n);

    /* all at once: the packets come out one after the other */
    off = 0;
    for (size_t i = 0; i < n; i++) {
        bt_mqtt_packet p;
        size_t used;
        char err[128];
        assert_int_equal(bt_mqtt_decode(stream + off, len - off, 0, &p, &used, err, sizeof(err)),
                         1);
        assert_int_equal(p.type, types[i]);
        if (p.type == BT_MQTT_PUBLISH) {
            assert_int_equal(p.publish.packet_id, 77);
            assert_int_equal(p.publish.payload.len, 200);
            assert_ptr_equal(p.publish.payload.ptr, stream + off + 10);
        }
        off += used;
    }
    assert_int_equal(off, len);
}

/* ---- lengths and limits -------------------------------------------------------------------- */

static void test_max_remaining_length(void **state)
{
    /* FF FF FF 7F is the largest remaining length: 268435455 */
    static const uint8_t hdr[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x01, 't'};
    size_t total = 0;
    char err[128] = "";
    assert_int_equal(bt_mqtt_frame_len(hdr, sizeof(hdr), 0, &total, err, sizeof(err)), 1);
    assert_int_equal(total, 268435455u + 5);
    bt_mqtt_packet p;
    size_t used;
    assert_int_equal(decode_exact(hdr, sizeof(hdr), 0, &p, &used, err, sizeof(err)), 0);

    /* the encoder writes that header for the largest PUBLISH, and refuses one byte more */
    uint8_t buf[16];
    size_t payload = BT_MQTT_MAX_REMAINING - 3;
    assert_int_equal(
        bt_mqtt_encode_publish_header(buf, sizeof(buf), "t", 1, payload, 0, false, false, 0), 8);
    assert_memory_equal(buf, hdr, 8);
    assert_int_equal(
        bt_mqtt_encode_publish_header(buf, sizeof(buf), "t", 1, payload + 1, 0, false, false, 0),
        -1);
    assert_int_equal(
        bt_mqtt_encode_publish_header(buf, sizeof(buf), "t", 1, SIZE_MAX, 0, false, false, 0), -1);

    /* boundaries of 1, 2, 3 and 4 length bytes */
    static const struct {
        size_t rl;
        uint8_t bytes[4];
        size_t n;
    } cases[] = {
        {127, {0x7F}, 1},
        {128, {0x80, 0x01}, 2},
        {16383, {0xFF, 0x7F}, 2},
        {16384, {0x80, 0x80, 0x01}, 3},
        {2097151, {0xFF, 0xFF, 0x7F}, 3},
        {2097152, {0x80, 0x80, 0x80, 0x01}, 4},
    };
    uint8_t *big_payload = calloc(1, 2097152);
    assert_non_null(big_payload);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ssize_t h = bt_mqtt_encode_publish_header(buf, sizeof(buf), "t", 1, cases[i].rl - 3, 0,
                                                  false, false, 0);
        assert_int_equal(h, (ssize_t)(1 + cases[i].n + 3));
        assert_memory_equal(buf + 1, cases[i].bytes, cases[i].n);
        assert_int_equal(bt_mqtt_frame_len(buf, (size_t)h, 0, &total, err, sizeof(err)), 1);
        assert_int_equal(total, 1 + cases[i].n + cases[i].rl);
        /* the whole packet, in a buffer of exactly its size, decodes back */
        bt_mqtt_packet big = {
            .type = BT_MQTT_PUBLISH,
            .publish = {.topic = S("t"), .payload = {big_payload, cases[i].rl - 3}}};
        assert_int_equal(bt_mqtt_encoded_len(&big), (ssize_t)total);
        uint8_t *wire = malloc(total);
        assert_non_null(wire);
        assert_int_equal(bt_mqtt_encode(&big, wire, total - 1), (ssize_t)total);
        assert_int_equal(bt_mqtt_encode(&big, wire, total), (ssize_t)total);
        assert_int_equal(bt_mqtt_decode(wire, total, total, &p, &used, err, sizeof(err)), 1);
        assert_int_equal(used, total);
        assert_int_equal(p.publish.payload.len, cases[i].rl - 3);
        assert_ptr_equal(p.publish.payload.ptr, wire + 1 + cases[i].n + 3);
        free(wire);
    }
    free(big_payload);
}

static void test_oversize_from_header_alone(void **state)
{
    /* a PUBLISH announcing 40000 bytes in all: only its 4 header bytes have arrived */
    static const uint8_t hdr[] = {0x30, 0xBC, 0xB8, 0x02};
    bt_mqtt_packet p;
    size_t used = 7;
    char err[128] = "";
    assert_int_equal(decode_exact(hdr, sizeof(hdr), 32768, &p, &used, err, sizeof(err)), -1);
    assert_string_equal(err, "packet too large (40000 > 32768)");
    assert_int_equal(used, 0);
    /* without the limit it is just incomplete; at exactly the limit it is allowed */
    assert_int_equal(decode_exact(hdr, sizeof(hdr), 0, &p, &used, err, sizeof(err)), 0);
    assert_int_equal(decode_exact(hdr, sizeof(hdr), 40000, &p, &used, err, sizeof(err)), 0);
    /* one length byte still missing: cannot tell yet */
    assert_int_equal(decode_exact(hdr, 3, 32768, &p, &used, err, sizeof(err)), 0);
    /* a complete small packet is checked against the limit too */
    static const uint8_t ping[] = {0xC0, 0x00};
    assert_int_equal(decode_exact(ping, 2, 1, &p, &used, err, sizeof(err)), -1);
    assert_string_equal(err, "packet too large (2 > 1)");
}

/* ---- malformed input ----------------------------------------------------------------------- */

typedef struct {
    const char *reason;
    uint8_t bytes[48];
    size_t len;
} bad_case;

#define BAD(r, ...)                                        \
    {                                                      \
        r, {__VA_ARGS__}, sizeof((uint8_t[]){__VA_ARGS__}) \
    }

static const bad_case bad_cases[] = {
    BAD("reserved packet type 0", 0x00, 0x00),
    BAD("reserved packet type 15", 0xF0, 0x00),
    BAD("PUBLISH qos 3", 0x36),
    BAD("PUBLISH dup with qos 0", 0x38, 0x03, 0x00, 0x01, 't'),
    BAD("CONNECT flags must be 0x0", 0x11),
    BAD("PUBACK flags must be 0x0", 0x41, 0x02, 0x00, 0x01),
    BAD("PINGREQ flags must be 0x0", 0xC8, 0x00),
    BAD("PUBREL flags must be 0x2", 0x60, 0x02, 0x00, 0x01),
    BAD("SUBSCRIBE flags must be 0x2", 0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00),
    BAD("UNSUBSCRIBE flags must be 0x2", 0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'),
    BAD("remaining length exceeds 4 bytes", 0x30, 0xFF, 0xFF, 0xFF, 0xFF),
    BAD("remaining length exceeds 4 bytes", 0x30, 0x80, 0x80, 0x80, 0x80, 0x01),
    BAD("PUBACK remaining length 3 (must be 2)", 0x40, 0x03),
    BAD("CONNACK remaining length 0 (must be 2)", 0x20, 0x00),
    BAD("PINGREQ remaining length 1 (must be 0)", 0xC0, 0x01),
    BAD("DISCONNECT remaining length 2 (must be 0)", 0xE0, 0x02, 0x00, 0x00),
    BAD("packet id 0 in PUBACK", 0x40, 0x02, 0x00, 0x00),
    BAD("packet id 0 in PUBREL", 0x62, 0x02, 0x00, 0x00),
    BAD("packet id 0 in UNSUBACK", 0xB0, 0x02, 0x00, 0x00),
    BAD("packet id 0 in PUBLISH", 0x32, 0x05, 0x00, 0x01, 't', 0x00, 0x00),
    BAD("truncated packet id in PUBLISH", 0x32, 0x04, 0x00, 0x01, 't', 0x00),
    BAD("truncated string (topic)", 0x30, 0x03, 0x00, 0x05, 't'),
    BAD("truncated string (topic)", 0x30, 0x01, 0x00),
    BAD("truncated string (topic)", 0x30, 0x00),
    BAD("invalid UTF-8 in topic", 0x30, 0x04, 0x00, 0x02, 0xC3, 0x28),       /* bad continuation */
    BAD("invalid UTF-8 in topic", 0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80), /* surrogate */
    BAD("invalid UTF-8 in topic", 0x30, 0x04, 0x00, 0x02, 0xC0, 0xAF),       /* overlong '/' */
    BAD("invalid UTF-8 in topic", 0x30, 0x06, 0x00, 0x04, 0xF4, 0x90, 0x80, 0x80), /* > U+10FFFF */
    BAD("invalid UTF-8 in topic", 0x30, 0x04, 0x00, 0x02, 'a', 0xE2), /* cut sequence */
    BAD("topic contains U+0000", 0x30, 0x04, 0x00, 0x02, 'a', 0x00),
    BAD("packet id 0 in SUBSCRIBE", 0x82, 0x06, 0x00, 0x00, 0x00, 0x01, 'a', 0x00),
    BAD("truncated packet id in SUBSCRIBE", 0x82, 0x01, 0x00),
    BAD("SUBSCRIBE with no topic filter", 0x82, 0x02, 0x00, 0x01),
    BAD("SUBSCRIBE qos 3", 0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x03),
    BAD("SUBSCRIBE reserved bits set in requested qos", 0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a',
        0x04),
    BAD("truncated SUBSCRIBE: no requested qos", 0x82, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'),
    BAD("truncated string (topic filter)", 0x82, 0x06, 0x00, 0x01, 0x00, 0x04, 'a', 0x00),
    BAD("topic filter contains U+0000", 0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00),
    BAD("UNSUBSCRIBE with no topic filter", 0xA2, 0x02, 0x00, 0x01),
    BAD("invalid UTF-8 in topic filter", 0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, 0xFF),
    BAD("SUBACK with no return codes", 0x90, 0x02, 0x00, 0x01),
    BAD("SUBACK return code 0x03 invalid", 0x90, 0x03, 0x00, 0x01, 0x03),
    BAD("packet id 0 in SUBACK", 0x90, 0x03, 0x00, 0x00, 0x00),
    BAD("reserved bits set in CONNACK flags", 0x20, 0x02, 0x02, 0x00),
    BAD("CONNACK return code 6 unknown", 0x20, 0x02, 0x00, 0x06),
    BAD("CONNACK session present with return code 5", 0x20, 0x02, 0x01, 0x05),
    /* CONNECT */
    BAD("CONNECT protocol name MQTT with level 3", 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x03,
        0x02, 0x00, 0x3C, 0x00, 0x01, 'c'),
    BAD("CONNECT protocol name MQIsdp with level 4", 0x10, 0x0F, 0x00, 0x06, 'M', 'Q', 'I', 's',
        'd', 'p', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x01, 'c'),
    BAD("CONNECT unknown protocol name \"HTTP\"", 0x10, 0x0D, 0x00, 0x04, 'H', 'T', 'T', 'P', 0x04,
        0x02, 0x00, 0x3C, 0x00, 0x01, 'c'),
    BAD("CONNECT unknown protocol name \"M\\x00TT\"", 0x10, 0x0D, 0x00, 0x04, 'M', 0x00, 'T', 'T',
        0x04, 0x02, 0x00, 0x3C, 0x00, 0x01, 'c'),
    BAD("truncated string (protocol name)", 0x10, 0x03, 0x00, 0x04, 'M'),
    BAD("truncated CONNECT variable header", 0x10, 0x08, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
        0x02),
    BAD("reserved flag set in CONNECT", 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x03,
        0x00, 0x3C, 0x00, 0x01, 'c'),
    BAD("will flag clear but will qos set", 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x0A,
        0x00, 0x3C, 0x00, 0x01, 'c'),
    BAD("will flag clear but will retain set", 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
        0x22, 0x00, 0x3C, 0x00, 0x01, 'c'),
    BAD("will qos 3", 0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x1E, 0x00, 0x3C, 0x00,
        0x01, 'c', 0x00, 0x01, 'w', 0x00, 0x00),
    BAD("password without username", 0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x42, 0x00,
        0x3C, 0x00, 0x01, 'c', 0x00, 0x01, 'p'),
    BAD("truncated string (client id)", 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02,
        0x00, 0x3C, 0x00, 0x02, 'c'),
    BAD("truncated string (client id)", 0x10, 0x0A, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02,
        0x00, 0x3C),
    BAD("invalid UTF-8 in client id", 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00,
        0x3C, 0x00, 0x01, 0x80),
    BAD("truncated string (will topic)", 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06,
        0x00, 0x3C, 0x00, 0x01, 'c'),
    BAD("will topic contains U+0000", 0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00,
        0x3C, 0x00, 0x01, 'c', 0x00, 0x01, 0x00, 0x00),
    BAD("truncated string (will payload)", 0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06,
        0x00, 0x3C, 0x00, 0x01, 'c', 0x00, 0x01, 'w'),
    BAD("truncated string (username)", 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x82, 0x00,
        0x3C, 0x00, 0x01, 'c'),
    BAD("invalid UTF-8 in username", 0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x82, 0x00,
        0x3C, 0x00, 0x01, 'c', 0x00, 0x01, 0xFE),
    BAD("truncated string (password)", 0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xC2, 0x00,
        0x3C, 0x00, 0x01, 'c', 0x00, 0x01, 'u', 0x00),
    BAD("1 trailing bytes in CONNECT", 0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00,
        0x3C, 0x00, 0x01, 'c', 'x'),
};

static void test_malformed_rejected_with_reason(void **state)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case *c = &bad_cases[i];
        bt_mqtt_packet p;
        memset(&p, 0xAB, sizeof(p));
        size_t used = 99;
        char err[128] = "";
        int rc = decode_exact(c->bytes, c->len, 0, &p, &used, err, sizeof(err));
        if (rc != -1 || strcmp(err, c->reason) != 0)
            fail_msg("case %zu: want -1 \"%s\", got %d \"%s\"", i, c->reason, rc, err);
        assert_int_equal(used, 0);
        assert_int_equal(p.type, 0); /* out is cleared on error */
    }
}

static void test_unsupported_level_keeps_level(void **state)
{
    /* MQTT 5 CONNECT: the broker should answer CONNACK 1 (unacceptable protocol version) */
    static const uint8_t v5[] = {0x10, 0x0E, 0x00, 0x04, 'M',  'Q',  'T',  'T',
                                 0x05, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x01, 'c'};
    bt_mqtt_packet p;
    size_t used;
    char err[128];
    assert_int_equal(decode_exact(v5, sizeof(v5), 0, &p, &used, err, sizeof(err)), -1);
    assert_string_equal(err, "unsupported protocol level 5");
    assert_int_equal(p.type, BT_MQTT_CONNECT);
    assert_int_equal(p.connect.protocol_level, 5);
}

static void test_mqtt31_password_without_username(void **state)
{
    static const uint8_t b[] = {0x10, 0x12, 0x00, 0x06, 'M',  'Q',  'I', 's',  'd',  'p',
                                0x03, 0x40, 0x00, 0x3C, 0x00, 0x01, 'c', 0x00, 0x01, 'p'};
    bt_mqtt_packet p;
    size_t used;
    char err[128] = "";
    assert_int_equal(decode_exact(b, sizeof(b), 0, &p, &used, err, sizeof(err)), 1);
    assert_int_equal(p.connect.protocol_level, 3);
    assert_true(p.connect.has_password);
    assert_false(p.connect.has_username);
    assert_int_equal(p.connect.password.len, 1);
}

static void test_utf8_check(void **state)
{
    static const struct {
        const char *s;
        size_t n;
        int want;
    } cases[] = {
        {"", 0, 0},
        {"plain/ascii", 11, 0},
        {"\xc2\x80", 2, 0},         /* U+0080 */
        {"\xdf\xbf", 2, 0},         /* U+07FF */
        {"\xe0\xa0\x80", 3, 0},     /* U+0800 */
        {"\xed\x9f\xbf", 3, 0},     /* U+D7FF */
        {"\xee\x80\x80", 3, 0},     /* U+E000 */
        {"\xef\xbb\xbf", 3, 0},     /* U+FEFF: allowed, not stripped */
        {"\xef\xbf\xbf", 3, 0},     /* U+FFFF */
        {"\xf0\x90\x80\x80", 4, 0}, /* U+10000 */
        {"\xf4\x8f\xbf\xbf", 4, 0}, /* U+10FFFF */
        {"a\0b", 3, -2},
        {"\x80", 1, -1},
        {"\xc1\xbf", 2, -1},         /* overlong */
        {"\xe0\x9f\xbf", 3, -1},     /* overlong */
        {"\xf0\x8f\xbf\xbf", 4, -1}, /* overlong */
        {"\xc0\x80", 2, -1},         /* overlong U+0000 */
        {"\xed\xa0\x80", 3, -1},     /* U+D800 */
        {"\xed\xbf\xbf", 3, -1},     /* U+DFFF */
        {"\xf4\x90\x80\x80", 4, -1}, /* U+110000 */
        {"\xf5\x80\x80\x80", 4, -1},
        {"\xff", 1, -1},
        {"\xe2\x82", 2, -1}, /* truncated */
        {"\xe2\x28\xa1", 3, -1},
        {"\xf0\x90\x80\x28", 4, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (bt_mqtt_utf8_check(cases[i].s, cases[i].n) != cases[i].want)
            fail_msg("utf8 case %zu: want %d", i, cases[i].want);
}

/* ---- encoder: small buffers and invalid packets --------------------------------------------- */

static void test_encode_small_buffer(void **state)
{
    bt_mqtt_packet p = {
        .type = BT_MQTT_PUBLISH,
        .publish = {.qos = 1, .packet_id = 3, .topic = S("a/b"), .payload = B("0123456789")}};
    ssize_t need = bt_mqtt_encoded_len(&p);
    assert_int_equal(need, 2 + 5 + 2 + 10);
    uint8_t buf[64];
    memset(buf, 0xEE, sizeof(buf));
    assert_int_equal(bt_mqtt_encode(&p, buf, (size_t)need - 1), need);
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xEE); /* nothing written */
    assert_int_equal(bt_mqtt_encode_publish(buf, 5, "a/b", 3, "0123456789", 10, 1, false, false, 3),
                     need);
    assert_int_equal(buf[0], 0xEE);
    assert_int_equal(bt_mqtt_encode_puback(buf, 3, 1), 4);
    assert_int_equal(bt_mqtt_encode_connack(buf, 0, false, 0), 4);
    assert_int_equal(bt_mqtt_encode_empty(buf, 1, BT_MQTT_PINGRESP), 2);
    static const uint8_t codes[] = {0, 1};
    assert_int_equal(bt_mqtt_encode_suback(buf, 4, 1, codes, 2), 6);
    assert_int_equal(buf[0], 0xEE);

    /* header-only PUBLISH: header + payload from elsewhere = the whole packet */
    uint8_t whole[64];
    assert_int_equal(bt_mqtt_encode(&p, whole, sizeof(whole)), need);
    ssize_t h = bt_mqtt_encode_publish_header(buf, sizeof(buf), "a/b", 3, 10, 1, false, false, 3);
    assert_int_equal(h, need - 10);
    assert_memory_equal(buf, whole, (size_t)h);
    assert_int_equal(bt_mqtt_encode_publish_header(buf, 2, "a/b", 3, 10, 1, false, false, 3), h);
}

static void test_encode_invalid(void **state)
{
    static const struct {
        bt_mqtt_packet p;
        const char *reason;
    } cases[] = {
        {{.type = BT_MQTT_PUBLISH, .publish = {.qos = 3, .packet_id = 1, .topic = S("t")}},
         "PUBLISH qos 3"},
        {{.type = BT_MQTT_PUBLISH, .publish = {.qos = 1, .topic = S("t")}},
         "packet id 0 in PUBLISH"},
        {{.type = BT_MQTT_PUBLISH, .publish = {.dup = true, .topic = S("t")}},
         "PUBLISH dup with qos 0"},
        {{.type = BT_MQTT_PUBLISH, .publish = {.topic = S("a\xff")}}, "invalid UTF-8 in topic"},
        {{.type = BT_MQTT_PUBLISH, .publish = {.topic = S("a\0")}}, "topic contains U+0000"},
        {{.type = BT_MQTT_PUBLISH, .publish = {.topic = {NULL, 70000}}},
         "topic longer than 65535 bytes"},
        {{.type = BT_MQTT_PUBACK}, "packet id 0 in PUBACK"},
        {{.type = BT_MQTT_CONNACK, .connack = {.return_code = 6}}, "CONNACK return code 6 unknown"},
        {{.type = BT_MQTT_CONNECT, .connect = {.protocol_level = 6}},
         "unsupported protocol level 6"},
        {{.type = BT_MQTT_CONNECT, .connect = {.protocol_level = 5}},
         "CONNECT level 5 in a packet of version 0"},
        {{.type = BT_MQTT_CONNECT, .connect = {.protocol_level = 4, .will_qos = 1}},
         "will flag clear but will qos set"},
        {{.type = BT_MQTT_CONNECT,
          .connect = {.protocol_level = 4, .will_flag = true, .will_qos = 3}},
         "will qos 3"},
        {{.type = BT_MQTT_CONNECT, .connect = {.protocol_level = 4, .has_password = true}},
         "password without username"},
        {{.type = BT_MQTT_CONNECT,
          .connect = {.protocol_level = 4, .has_username = true, .username = S("\xed\xa0\x80")}},
         "invalid UTF-8 in username"},
        {{.type = BT_MQTT_SUBSCRIBE, .subscribe = {.packet_id = 1}},
         "SUBSCRIBE with no topic filter"},
        {{.type = BT_MQTT_SUBSCRIBE, .subscribe = {.count = 1}}, "packet id 0 in SUBSCRIBE"},
        {{.type = BT_MQTT_SUBSCRIBE, /* raw list cut in the middle of an entry */
          .subscribe = {.packet_id = 1,
                        .count = 1,
                        .raw = {(const uint8_t *)"\x00\x05"
                                                 "ab",
                                4}}},
         "SUBSCRIBE list is malformed"},
        {{.type = BT_MQTT_SUBSCRIBE,
          .subscribe = {.packet_id = 1,
                        .count = 2,
                        .raw = {(const uint8_t *)"\x00\x01"
                                                 "a\x01",
                                4}}},
         "SUBSCRIBE count 2 but its list has 1"},
        {{.type = BT_MQTT_SUBACK, .suback = {.packet_id = 1}}, "SUBACK with no return codes"},
        {{.type = BT_MQTT_SUBACK,
          .suback = {.packet_id = 1, .codes = (const uint8_t *)"\x81", .count = 1}},
         "SUBACK return code 0x81 invalid"},
        {{.type = (bt_mqtt_type)0}, "unknown packet type 0"},
    };
    uint8_t buf[128];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[128] = "";
        if (bt_mqtt_check(&cases[i].p, err, sizeof(err)) != -1 || strcmp(err, cases[i].reason))
            fail_msg("case %zu: want \"%s\", got \"%s\"", i, cases[i].reason, err);
        assert_int_equal(bt_mqtt_encoded_len(&cases[i].p), -1);
        assert_int_equal(bt_mqtt_encode(&cases[i].p, buf, sizeof(buf)), -1);
    }
    bt_mqtt_sub_entry bad = {S("a"), 3};
    assert_int_equal(bt_mqtt_encode_subscribe(buf, sizeof(buf), BT_MQTT_SUBSCRIBE, 1, &bad, 1), -1);
    assert_int_equal(bt_mqtt_encode_subscribe(buf, sizeof(buf), BT_MQTT_PUBLISH, 1, &bad, 1), -1);
    assert_int_equal(bt_mqtt_encode_publish(buf, sizeof(buf), "t", 1, NULL, 0, 3, false, false, 1),
                     -1);
    assert_int_equal(bt_mqtt_encode_publish(buf, sizeof(buf), "t", 1, NULL, 0, -1, false, false, 1),
                     -1);
    assert_int_equal(bt_mqtt_encode_publish(buf, sizeof(buf), "t", 1, NULL, 0, 1, false, false, 0),
                     -1);
    assert_int_equal(bt_mqtt_encode_publish(buf, sizeof(buf), "t", 1, NULL, 0, 0, false, true, 0),
                     -1);
    assert_int_equal(bt_mqtt_encode_publish(buf, sizeof(buf), "t", 1, NULL, 5, 0, false, false, 0),
                     -1);
    assert_int_equal(bt_mqtt_encode_ack(buf, sizeof(buf), BT_MQTT_PUBACK, 0), -1);
    assert_int_equal(bt_mqtt_encode_ack(buf, sizeof(buf), BT_MQTT_CONNECT, 1), -1);
    assert_int_equal(bt_mqtt_encode_connack(buf, sizeof(buf), true, 4), -1);
    assert_int_equal(bt_mqtt_encode_connack(buf, sizeof(buf), false, 6), -1);
    assert_int_equal(bt_mqtt_encode_empty(buf, sizeof(buf), BT_MQTT_PUBACK), -1);
    static const uint8_t codes[] = {0x00, 0x03};
    assert_int_equal(bt_mqtt_encode_suback(buf, sizeof(buf), 1, codes, 2), -1);
    assert_int_equal(bt_mqtt_encode_suback(buf, sizeof(buf), 0, codes, 1), -1);
}

static void test_type_names(void **state)
{
    assert_string_equal(bt_mqtt_type_name(BT_MQTT_CONNECT), "CONNECT");
    assert_string_equal(bt_mqtt_type_name(BT_MQTT_PUBLISH), "PUBLISH");
    assert_string_equal(bt_mqtt_type_name(BT_MQTT_UNSUBSCRIBE), "UNSUBSCRIBE");
    assert_string_equal(bt_mqtt_type_name(BT_MQTT_DISCONNECT), "DISCONNECT");
    assert_string_equal(bt_mqtt_type_name(BT_MQTT_AUTH), "AUTH");
    assert_string_equal(bt_mqtt_type_name(0), "UNKNOWN");
    assert_string_equal(bt_mqtt_type_name(16), "UNKNOWN");
    assert_string_equal(bt_mqtt_type_name(-1), "UNKNOWN");
}

/* ---- MQTT 5.0 ------------------------------------------------------------------------ */

static int decode5_exact(const uint8_t *bytes, size_t len, bt_mqtt_packet *out, size_t *used,
                         char *err, size_t errlen)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, bytes, len);
    int rc = bt_mqtt_decode_v(copy, len, 0, BT_MQTT_V5, out, used, err, errlen);
    free(copy);
    return rc;
}

static void round_trip5(const bt_mqtt_packet *p)
{
    char err[160] = "";
    if (bt_mqtt_check(p, err, sizeof(err)) != 0)
        fail_msg("check of %s: %s", bt_mqtt_type_name(p->type), err);
    ssize_t n = bt_mqtt_encoded_len(p);
    assert_true(n >= 2);
    uint8_t *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(bt_mqtt_encode(p, buf, (size_t)n), n);
    bt_mqtt_packet back;
    size_t used = 0;
    if (bt_mqtt_decode_v(buf, (size_t)n, 0, BT_MQTT_V5, &back, &used, err, sizeof(err)) != 1)
        fail_msg("decode of 5.0 %s failed: %s", bt_mqtt_type_name(p->type), err);
    assert_int_equal(used, (size_t)n);
    assert_int_equal(back.version, BT_MQTT_V5);
    assert_true(bt_mqtt_packet_equal(p, &back));
    /* the decoded (raw) form encodes to the same bytes */
    uint8_t *again = malloc((size_t)n);
    assert_int_equal(bt_mqtt_encode(&back, again, (size_t)n), n);
    assert_memory_equal(again, buf, (size_t)n);
    free(again);
    free(buf);
}

#define P_NUM(i, v)           \
    {                         \
        .id = (i), .num = (v) \
    }
#define P_STR(i, lit)            \
    {                            \
        .id = (i), .bin = B(lit) \
    }
#define P_USER(k, v)                                                 \
    {                                                                \
        .id = BT_MQTT_PROP_USER_PROPERTY, .bin = B(k), .value = S(v) \
    }
#define PROPS(arr)                                             \
    {                                                          \
        .list = (arr), .count = sizeof(arr) / sizeof((arr)[0]) \
    }

static void test_v5_connect_bytes(void **state)
{
    static const bt_mqtt_prop cp[] = {P_NUM(BT_MQTT_PROP_SESSION_EXPIRY, 3600),
                                      P_NUM(BT_MQTT_PROP_RECEIVE_MAXIMUM, 20), P_USER("k", "v")};
    static const bt_mqtt_prop wp[] = {P_NUM(BT_MQTT_PROP_WILL_DELAY, 5)};
    bt_mqtt_packet p = {.type = BT_MQTT_CONNECT,
                        .version = BT_MQTT_V5,
                        .connect = {.protocol_level = 5,
                                    .clean_session = true,
                                    .keepalive = 60,
                                    .client_id = S("c"),
                                    .will_flag = true,
                                    .will_topic = S("w"),
                                    .will_payload = B("x"),
                                    .has_password = true, /* 5.0 allows it without username */
                                    .password = B("p"),
                                    .props = PROPS(cp),
                                    .will_props = PROPS(wp)}};
    static const uint8_t want[] = {0x10, 0x2C, 0x00, 0x04, 'M',  'Q',  'T',  'T',  0x05,
                                   0x46, 0x00, 0x3C, /* header */
                                   0x0F, 0x11, 0x00, 0x00, 0x0E, 0x10, 0x21, 0x00, 0x14,
                                   0x26, 0x00, 0x01, 'k',  0x00, 0x01, 'v', /* properties */
                                   0x00, 0x01, 'c',                         /* client id */
                                   0x05, 0x18, 0x00, 0x00, 0x00, 0x05,      /* will props */
                                   0x00, 0x01, 'w',  0x00, 0x01, 'x',  0x00, 0x01, 'p'};
    uint8_t buf[128];
    assert_int_equal(bt_mqtt_encode(&p, buf, sizeof(buf)), (ssize_t)sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    bt_mqtt_packet q;
    size_t used;
    char err[128] = "";
    assert_int_equal(decode5_exact(want, sizeof(want), &q, &used, err, sizeof(err)), 1);
    assert_int_equal(q.version, BT_MQTT_V5);
    /* the 3.1.1 decoder still refuses level 5 (a broker answers CONNACK 1) */
    assert_int_equal(bt_mqtt_decode(want, sizeof(want), 0, &q, &used, err, sizeof(err)), -1);
    assert_string_equal(err, "unsupported protocol level 5");
    round_trip5(&p);
}

static void test_v5_round_trip_every_type(void **state)
{
    static const bt_mqtt_prop conn[] = {
        P_NUM(BT_MQTT_PROP_REQUEST_PROBLEM_INFO, 1), P_NUM(BT_MQTT_PROP_MAXIMUM_PACKET_SIZE, 1024),
        P_NUM(BT_MQTT_PROP_TOPIC_ALIAS_MAXIMUM, 10), P_STR(BT_MQTT_PROP_AUTH_METHOD, "SCRAM"),
        P_STR(BT_MQTT_PROP_AUTH_DATA, "\x00\x01")};
    static const bt_mqtt_prop ack[] = {
        P_NUM(BT_MQTT_PROP_SESSION_EXPIRY, 0xFFFFFFFF),
        P_STR(BT_MQTT_PROP_ASSIGNED_CLIENT_ID, "auto-1"),
        P_NUM(BT_MQTT_PROP_SERVER_KEEP_ALIVE, 30),
        P_NUM(BT_MQTT_PROP_MAXIMUM_QOS, 1),
        P_NUM(BT_MQTT_PROP_RETAIN_AVAILABLE, 1),
        P_NUM(BT_MQTT_PROP_WILDCARD_SUB_AVAILABLE, 1),
        P_NUM(BT_MQTT_PROP_SUB_ID_AVAILABLE, 1),
        P_NUM(BT_MQTT_PROP_SHARED_SUB_AVAILABLE, 0),
        P_STR(BT_MQTT_PROP_RESPONSE_INFO, "r/"),
        P_STR(BT_MQTT_PROP_SERVER_REFERENCE, "other:1883"),
        P_STR(BT_MQTT_PROP_REASON_STRING, "ok"),
    };
    static const bt_mqtt_prop pub[] = {
        P_NUM(BT_MQTT_PROP_PAYLOAD_FORMAT, 1),
        P_NUM(BT_MQTT_PROP_MESSAGE_EXPIRY, 60),
        P_STR(BT_MQTT_PROP_CONTENT_TYPE, "text/plain"),
        P_STR(BT_MQTT_PROP_RESPONSE_TOPIC, "reply/1"),
        P_STR(BT_MQTT_PROP_CORRELATION_DATA, "\xff\x00"),
        P_NUM(BT_MQTT_PROP_SUBSCRIPTION_ID, 268435455),
        P_NUM(BT_MQTT_PROP_SUBSCRIPTION_ID, 7), /* repeats in PUBLISH */
        P_NUM(BT_MQTT_PROP_TOPIC_ALIAS, 3),
        P_USER("a", "1"),
        P_USER("a", "2"),
    };
    static const bt_mqtt_prop reason[] = {P_STR(BT_MQTT_PROP_REASON_STRING, "why"),
                                          P_USER("x", "")};
    static const bt_mqtt_prop sub[] = {P_NUM(BT_MQTT_PROP_SUBSCRIPTION_ID, 200)};
    static const bt_mqtt_prop auth[] = {P_STR(BT_MQTT_PROP_AUTH_METHOD, "SCRAM"),
                                        P_STR(BT_MQTT_PROP_AUTH_DATA, "d")};
    static const uint8_t sub_codes[] = {0, 1, 2, 0x80, 0x87, 0x9E, 0xA1, 0xA2};
    static const uint8_t unsub_codes[] = {0, 0x11, 0x8F};
    bt_mqtt_sub_entry subs[] = {
        {S("a/+"), 2 | BT_MQTT_SUBOPT_NO_LOCAL | BT_MQTT_SUBOPT_RETAIN_AS_PUBLISHED | 0x20},
        {S("$share/g/x"), 1 | 0x10}};
    bt_mqtt_sub_entry unsubs[] = {{S("a/+"), 0}};
#define V5 .version = BT_MQTT_V5
    const bt_mqtt_packet packets[] = {
        {.type = BT_MQTT_CONNECT,
         V5,
         .connect = {.protocol_level = 5, .client_id = S(""), .props = PROPS(conn)}},
        {.type = BT_MQTT_CONNACK,
         V5,
         .connack = {.session_present = true, .return_code = 0, .props = PROPS(ack)}},
        {.type = BT_MQTT_CONNACK, V5, .connack = {.return_code = BT_MQTT_RC_BAD_AUTH_METHOD}},
        {.type = BT_MQTT_PUBLISH,
         V5,
         .publish = {.qos = 2, .packet_id = 9, .topic = S(""), .props = PROPS(pub)}},
        {.type = BT_MQTT_PUBLISH, V5, .publish = {.topic = S("t"), .payload = B("x")}},
        {.type = BT_MQTT_PUBACK, V5, .ack = {.packet_id = 1}},
        {.type = BT_MQTT_PUBACK, V5, .ack = {.packet_id = 1, .reason = 0x87}},
        {.type = BT_MQTT_PUBREC,
         V5,
         .ack = {.packet_id = 2, .reason = 0x10, .props = PROPS(reason)}},
        {.type = BT_MQTT_PUBREL, V5, .ack = {.packet_id = 3, .reason = 0x92}},
        {.type = BT_MQTT_PUBCOMP, V5, .ack = {.packet_id = 4, .props = PROPS(reason)}},
        {.type = BT_MQTT_SUBSCRIBE,
         V5,
         .subscribe = {.packet_id = 5, .count = 2, .entries = subs, .props = PROPS(sub)}},
        {.type = BT_MQTT_SUBACK,
         V5,
         .suback = {.packet_id = 6, .codes = sub_codes, .count = 8, .props = PROPS(reason)}},
        {.type = BT_MQTT_UNSUBSCRIBE,
         V5,
         .unsubscribe = {.packet_id = 7, .count = 1, .entries = unsubs}},
        {.type = BT_MQTT_UNSUBACK,
         V5,
         .suback = {.packet_id = 8, .codes = unsub_codes, .count = 3}},
        {.type = BT_MQTT_PINGREQ, V5},
        {.type = BT_MQTT_PINGRESP, V5},
        {.type = BT_MQTT_DISCONNECT, V5},
        {.type = BT_MQTT_DISCONNECT, V5, .ack = {.reason = BT_MQTT_RC_DISCONNECT_WITH_WILL}},
        {.type = BT_MQTT_DISCONNECT, V5, .ack = {.reason = 0x8E, .props = PROPS(reason)}},
        {.type = BT_MQTT_AUTH,
         V5,
         .ack = {.reason = BT_MQTT_RC_CONTINUE_AUTH, .props = PROPS(auth)}},
        {.type = BT_MQTT_AUTH, V5},
    };
#undef V5
    bool seen[16] = {false};
    for (size_t i = 0; i < sizeof(packets) / sizeof(packets[0]); i++) {
        round_trip5(&packets[i]);
        seen[packets[i].type] = true;
    }
    for (int t = 1; t <= 15; t++)
        assert_true(seen[t]);
}

static void test_v5_short_forms(void **state)
{
    static const struct {
        uint8_t bytes[8];
        size_t len;
        int type;
        uint8_t reason;
    } cases[] = {
        {{0x40, 0x02, 0x00, 0x01}, 4, BT_MQTT_PUBACK, 0},
        {{0x40, 0x03, 0x00, 0x01, 0x10}, 5, BT_MQTT_PUBACK, 0x10},
        {{0x50, 0x04, 0x00, 0x01, 0x00, 0x00}, 6, BT_MQTT_PUBREC, 0},
        {{0x62, 0x03, 0x00, 0x01, 0x92}, 5, BT_MQTT_PUBREL, 0x92},
        {{0xE0, 0x00}, 2, BT_MQTT_DISCONNECT, 0},
        {{0xE0, 0x01, 0x8B}, 3, BT_MQTT_DISCONNECT, 0x8B},
        {{0xF0, 0x00}, 2, BT_MQTT_AUTH, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bt_mqtt_packet p;
        size_t used;
        char err[128] = "";
        if (decode5_exact(cases[i].bytes, cases[i].len, &p, &used, err, sizeof(err)) != 1)
            fail_msg("case %zu: %s", i, err);
        assert_int_equal(used, cases[i].len);
        assert_int_equal(p.type, cases[i].type);
        assert_int_equal(p.ack.reason, cases[i].reason);
    }
    /* the encoder writes the shortest form */
    uint8_t buf[16];
    bt_mqtt_packet ok = {.type = BT_MQTT_PUBACK, .version = BT_MQTT_V5, .ack = {.packet_id = 1}};
    assert_int_equal(bt_mqtt_encode(&ok, buf, sizeof(buf)), 4);
    bt_mqtt_packet rc = {
        .type = BT_MQTT_PUBACK, .version = BT_MQTT_V5, .ack = {.packet_id = 1, .reason = 0x10}};
    assert_int_equal(bt_mqtt_encode(&rc, buf, sizeof(buf)), 5); /* no property length */
    /* 3.1.1 is unchanged: a PUBACK is always 4 bytes, AUTH does not exist */
    bt_mqtt_packet p;
    size_t used;
    char err[128] = "";
    assert_int_equal(bt_mqtt_decode(cases[1].bytes, cases[1].len, 0, &p, &used, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "PUBACK remaining length 3 (must be 2)");
    assert_int_equal(bt_mqtt_decode(cases[6].bytes, cases[6].len, 0, &p, &used, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "reserved packet type 15");
}

#define BAD5 BAD

static const bad_case bad5_cases[] = {
    BAD5("property session expiry interval twice in DISCONNECT", 0xE0, 0x0C, 0x00, 0x0A, 0x11, 0, 0,
         0, 1, 0x11, 0, 0, 0, 2),
    BAD5("property topic alias not allowed in DISCONNECT", 0xE0, 0x05, 0x00, 0x03, 0x23, 0x00,
         0x01),
    BAD5("unknown property 0x04", 0xE0, 0x04, 0x00, 0x02, 0x04, 0x00),
    BAD5("property receive maximum value 0 out of range", 0x20, 0x06, 0x00, 0x00, 0x03, 0x21, 0x00,
         0x00),
    BAD5("property maximum qos value 2 out of range", 0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02),
    BAD5("property topic alias value 0 out of range", 0x30, 0x07, 0x00, 0x01, 't', 0x03, 0x23, 0x00,
         0x00),
    BAD5("property payload format indicator value 2 out of range", 0x30, 0x06, 0x00, 0x01, 't',
         0x02, 0x01, 0x02),
    BAD5("property subscription identifier value 0 out of range", 0x30, 0x06, 0x00, 0x01, 't', 0x02,
         0x0B, 0x00),
    BAD5("property subscription identifier twice in SUBSCRIBE", 0x82, 0x0B, 0x00, 0x01, 0x04, 0x0B,
         0x01, 0x0B, 0x02, 0x00, 0x01, 'a', 0x00),
    BAD5("property length not in its shortest form", 0x30, 0x05, 0x00, 0x01, 't', 0x80, 0x00),
    BAD5("property length 5 exceeds the packet", 0x30, 0x05, 0x00, 0x01, 't', 0x05, 0x01),
    BAD5("truncated property (message expiry interval)", 0x30, 0x06, 0x00, 0x01, 't', 0x02, 0x02,
         0x00),
    BAD5("invalid UTF-8 in user property", 0x30, 0x0C, 0x00, 0x01, 't', 0x08, 0x26, 0x00, 0x01, 'k',
         0x00, 0x01, 0xC0, 0x80),
    BAD5("content type contains U+0000", 0x30, 0x09, 0x00, 0x01, 't', 0x05, 0x03, 0x00, 0x02, 'a',
         0x00),
    BAD5("PUBLISH empty topic without a topic alias", 0x30, 0x03, 0x00, 0x00, 0x00),
    BAD5("SUBSCRIBE reserved bits set in subscription options", 0x82, 0x07, 0x00, 0x01, 0x00, 0x00,
         0x01, 'a', 0x40),
    BAD5("SUBSCRIBE retain handling 3", 0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x30),
    BAD5("SUBSCRIBE qos 3", 0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x03),
    BAD5("PUBACK reason code 0x92 invalid", 0x40, 0x03, 0x00, 0x01, 0x92),
    BAD5("PUBREL reason code 0x10 invalid", 0x62, 0x03, 0x00, 0x01, 0x10),
    BAD5("DISCONNECT reason code 0x05 invalid", 0xE0, 0x01, 0x05),
    BAD5("AUTH reason code 0x01 invalid", 0xF0, 0x01, 0x01),
    BAD5("AUTH flags must be 0x0", 0xF1, 0x00),
    BAD5("SUBACK return code 0x03 invalid", 0x90, 0x04, 0x00, 0x01, 0x00, 0x03),
    BAD5("UNSUBACK return code 0x01 invalid", 0xB0, 0x04, 0x00, 0x01, 0x00, 0x01),
    BAD5("UNSUBACK with no return codes", 0xB0, 0x03, 0x00, 0x01, 0x00),
    BAD5("UNSUBACK remaining length 2 (must be at least 3)", 0xB0, 0x02, 0x00, 0x01),
    BAD5("CONNACK reason code 0x01 invalid", 0x20, 0x03, 0x00, 0x01, 0x00),
    BAD5("CONNACK session present with reason code 0x87", 0x20, 0x03, 0x01, 0x87, 0x00),
    BAD5("CONNACK remaining length 2 (must be at least 3)", 0x20, 0x02, 0x00, 0x00),
    BAD5("PINGREQ remaining length 1 (must be 0)", 0xC0, 0x01, 0x00),
    BAD5("2 trailing bytes in PUBACK", 0x40, 0x06, 0x00, 0x01, 0x00, 0x00, 0xAA, 0xBB),
    BAD5("1 trailing bytes in CONNACK", 0x20, 0x04, 0x00, 0x00, 0x00, 0xAA),
    BAD5("CONNECT authentication data without a method", 0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T',
         0x05, 0x02, 0x00, 0x3C, 0x04, 0x16, 0x00, 0x01, 'd', 0x00, 0x00),
    BAD5("property will delay interval not allowed in CONNECT", 0x10, 0x12, 0x00, 0x04, 'M', 'Q',
         'T', 'T', 0x05, 0x02, 0x00, 0x3C, 0x05, 0x18, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00),
    BAD5("property session expiry interval not allowed in will properties", 0x10, 0x18, 0x00, 0x04,
         'M', 'Q', 'T', 'T', 0x05, 0x06, 0x00, 0x3C, 0x00, 0x00, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00,
         0x01, 0x00, 0x01, 'w', 0x00, 0x00),
};

static void test_v5_malformed_rejected_with_reason(void **state)
{
    for (size_t i = 0; i < sizeof(bad5_cases) / sizeof(bad5_cases[0]); i++) {
        const bad_case *c = &bad5_cases[i];
        bt_mqtt_packet p;
        memset(&p, 0xAB, sizeof(p));
        size_t used = 99;
        char err[128] = "";
        int rc = decode5_exact(c->bytes, c->len, &p, &used, err, sizeof(err));
        if (rc != -1 || strcmp(err, c->reason) != 0)
            fail_msg("case %zu: want -1 \"%s\", got %d \"%s\"", i, c->reason, rc, err);
        assert_int_equal(used, 0);
        assert_int_equal(p.type, 0);
    }
}

static void test_v5_encode_invalid(void **state)
{
    static const bt_mqtt_prop dup[] = {P_NUM(BT_MQTT_PROP_CONTENT_TYPE, 0),
                                       P_STR(BT_MQTT_PROP_CONTENT_TYPE, "b")};
    static const bt_mqtt_prop alias0[] = {P_NUM(BT_MQTT_PROP_TOPIC_ALIAS, 0)};
    static const bt_mqtt_prop unknown[] = {P_NUM(0x05, 1)};
    static const bt_mqtt_prop bad_utf8[] = {P_STR(BT_MQTT_PROP_REASON_STRING, "\xff")};
    bt_mqtt_sub_entry rh3 = {S("a"), 0x30};
    static const struct {
        bt_mqtt_packet p;
        const char *reason;
    } cases[] = {
        {{.type = BT_MQTT_PUBLISH, .version = 5, .publish = {.topic = S("t"), .props = PROPS(dup)}},
         "property content type twice in PUBLISH"},
        {{.type = BT_MQTT_PUBLISH,
          .version = 5,
          .publish = {.topic = S("t"), .props = PROPS(alias0)}},
         "property topic alias value 0 out of range"},
        {{.type = BT_MQTT_PUBACK, .version = 5, .ack = {.packet_id = 1, .props = PROPS(unknown)}},
         "unknown property 0x05"},
        {{.type = BT_MQTT_PUBACK, .version = 5, .ack = {.packet_id = 1, .props = PROPS(alias0)}},
         "property topic alias not allowed in PUBACK"},
        {{.type = BT_MQTT_DISCONNECT, .version = 5, .ack = {.props = PROPS(bad_utf8)}},
         "invalid UTF-8 in reason string"},
        {{.type = BT_MQTT_PUBLISH, .version = 5, .publish = {.topic = S("")}},
         "PUBLISH empty topic without a topic alias"},
        {{.type = BT_MQTT_PUBACK, .version = 5, .ack = {.packet_id = 1, .reason = 0x92}},
         "PUBACK reason code 0x92 invalid"},
        {{.type = BT_MQTT_AUTH}, "unknown packet type 15"},
        {{.type = BT_MQTT_PUBACK, .version = 4, .ack = {.packet_id = 1}},
         "packet version 4 (0 or 5)"},
    };
    uint8_t buf[128];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[128] = "";
        if (bt_mqtt_check(&cases[i].p, err, sizeof(err)) != -1 || strcmp(err, cases[i].reason))
            fail_msg("case %zu: want \"%s\", got \"%s\"", i, cases[i].reason, err);
        assert_int_equal(bt_mqtt_encode(&cases[i].p, buf, sizeof(buf)), -1);
    }
    bt_mqtt_packet sub = {.type = BT_MQTT_SUBSCRIBE,
                          .version = 5,
                          .subscribe = {.packet_id = 1, .count = 1, .entries = &rh3}};
    char err[128] = "";
    assert_int_equal(bt_mqtt_check(&sub, err, sizeof(err)), -1);
    assert_string_equal(err, "SUBSCRIBE options 0x30 invalid");
}

static void test_v5_props_access(void **state)
{
    /* PUBLISH t: content type "ct", user a=1, user b=2, subscription ids 129 and 2; "P" */
    static const uint8_t b[] = {0x30, 0x1D, 0x00, 0x01, 't',  0x18, 0x03, 0x00, 0x02, 'c',  't',
                                0x26, 0x00, 0x01, 'a',  0x00, 0x01, '1',  0x26, 0x00, 0x01, 'b',
                                0x00, 0x01, '2',  0x0B, 0x81, 0x01, 0x0B, 0x02, 'P'};
    bt_mqtt_packet p;
    size_t used;
    char err[128] = "";
    if (bt_mqtt_decode_v(b, sizeof(b), 0, BT_MQTT_V5, &p, &used, err, sizeof(err)) != 1)
        fail_msg("decode: %s", err);
    const bt_mqtt_props *ps = &p.publish.props;
    assert_true(ps->present & (1ull << BT_MQTT_PROP_CONTENT_TYPE));
    assert_true(ps->present & (1ull << BT_MQTT_PROP_SUBSCRIPTION_ID));
    assert_false(ps->present & (1ull << BT_MQTT_PROP_TOPIC_ALIAS));
    bt_mqtt_prop pr;
    assert_true(bt_mqtt_props_get(ps, BT_MQTT_PROP_CONTENT_TYPE, &pr));
    assert_int_equal(pr.bin.len, 2);
    assert_memory_equal(pr.bin.ptr, "ct", 2);
    assert_true(bt_mqtt_props_get(ps, BT_MQTT_PROP_SUBSCRIPTION_ID, &pr));
    assert_int_equal(pr.num, 129);
    assert_false(bt_mqtt_props_get(ps, BT_MQTT_PROP_TOPIC_ALIAS, NULL));
    bt_mqtt_props_iter it;
    bt_mqtt_props_iter_init(&it, ps);
    int users = 0, ids = 0;
    while (bt_mqtt_props_next(&it, &pr)) {
        if (pr.id == BT_MQTT_PROP_USER_PROPERTY) {
            assert_int_equal(pr.value.len, 1);
            assert_int_equal(pr.value.ptr[0], users ? '2' : '1');
            users++;
        }
        ids += pr.id == BT_MQTT_PROP_SUBSCRIPTION_ID;
    }
    assert_int_equal(users, 2);
    assert_int_equal(ids, 2);
    assert_int_equal(p.publish.payload.len, 1);
    assert_int_equal(p.publish.payload.ptr[0], 'P');
    /* the checker tells where a property may go */
    assert_int_equal(bt_mqtt_props_check(ps, BT_MQTT_PUBLISH, NULL, err, sizeof(err)), 0);
    assert_int_equal(bt_mqtt_props_check(ps, BT_MQTT_CONNACK, NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "property content type not allowed in CONNACK");
    /* filtering: user properties and subscription ids dropped, the content type kept */
    uint8_t out[32];
    uint64_t drop = 1ull << BT_MQTT_PROP_USER_PROPERTY | 1ull << BT_MQTT_PROP_SUBSCRIPTION_ID;
    assert_int_equal(bt_mqtt_props_filter(ps, drop, out, 2), 5); /* too small: the size */
    assert_int_equal(bt_mqtt_props_filter(ps, drop, out, sizeof(out)), 5);
    assert_memory_equal(out,
                        "\x03\x00\x02"
                        "ct",
                        5);
    assert_int_equal(bt_mqtt_props_filter(ps, 0, out, sizeof(out)), 24);
    assert_memory_equal(out, b + 6, 24);
    assert_true(bt_mqtt_reason_valid(BT_MQTT_PUBREC, BT_MQTT_RC_NOT_AUTHORIZED));
    assert_false(bt_mqtt_reason_valid(BT_MQTT_PUBCOMP, BT_MQTT_RC_NOT_AUTHORIZED));
    assert_false(bt_mqtt_reason_valid(BT_MQTT_PUBLISH, 0));
}

/* The hub's 5.0 hot path gives the same bytes as the validating encoder, properties (a
 * topic alias and a user property) included, and an alias-only topic. */
static void test_v5_encode_publish5_matches(void **state)
{
    (void)state;
    static const uint8_t props[] = {0x23, 0x00, 0x02, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v'};
    for (int alias_only = 0; alias_only < 2; alias_only++) {
        bt_mqtt_packet p = {.type = BT_MQTT_PUBLISH,
                            .version = BT_MQTT_V5,
                            .publish = {.qos = 1,
                                        .dup = true,
                                        .retain = true,
                                        .packet_id = 9,
                                        .topic = {"a/b", alias_only ? 0 : 3},
                                        .payload = {(const uint8_t *)"hi", 2},
                                        .props = {.raw = {props, sizeof props}}}};
        uint8_t want[64], got[64];
        ssize_t n = bt_mqtt_encode(&p, want, sizeof want);
        assert_true(n > 0);
        assert_int_equal(bt_mqtt_encode_publish5(NULL, 0, "a/b", alias_only ? 0 : 3, "hi", 2, 1,
                                                 true, true, 9, props, sizeof props),
                         n);
        assert_int_equal(bt_mqtt_encode_publish5(got, sizeof got, "a/b", alias_only ? 0 : 3, "hi",
                                                 2, 1, true, true, 9, props, sizeof props),
                         n);
        assert_memory_equal(got, want, (size_t)n);
    }
    /* no properties: one zero length byte */
    uint8_t buf[16];
    static const uint8_t q0[] = {0x30, 0x07, 0x00, 0x01, 't', 0x00, 'x', 'y', 'z'};
    assert_int_equal(
        bt_mqtt_encode_publish5(buf, sizeof buf, "t", 1, "xyz", 3, 0, false, false, 0, NULL, 0),
        (ssize_t)sizeof q0);
    assert_memory_equal(buf, q0, sizeof q0);
    assert_int_equal(
        bt_mqtt_encode_publish5(buf, sizeof buf, "t", 1, "xyz", 3, 1, false, false, 0, NULL, 0),
        -1); /* packet id 0 with QoS 1 */
}

static void test_v5_incremental(void **state)
{
    static const bt_mqtt_prop pub[] = {P_USER("key", "value"),
                                       P_NUM(BT_MQTT_PROP_MESSAGE_EXPIRY, 10)};
    bt_mqtt_packet p = {.type = BT_MQTT_PUBLISH,
                        .version = BT_MQTT_V5,
                        .publish = {.qos = 1,
                                    .packet_id = 4,
                                    .topic = S("a/b"),
                                    .payload = B("hello"),
                                    .props = PROPS(pub)}};
    uint8_t buf[64];
    ssize_t n = bt_mqtt_encode(&p, buf, sizeof(buf));
    assert_true(n > 0);
    for (ssize_t i = 0; i < n; i++) {
        bt_mqtt_packet q;
        size_t used;
        char err[64];
        assert_int_equal(
            bt_mqtt_decode_v(buf, (size_t)i, 0, BT_MQTT_V5, &q, &used, err, sizeof(err)), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_311_bytes),
        cmocka_unit_test(test_connect_31_will_bytes),
        cmocka_unit_test(test_publish_bytes),
        cmocka_unit_test(test_subscribe_bytes),
        cmocka_unit_test(test_small_packet_bytes),
        cmocka_unit_test(test_round_trip_every_type),
        cmocka_unit_test(test_connect_fields),
        cmocka_unit_test(test_suback_unsubscribe_iter),
        cmocka_unit_test(test_incremental_one_byte_at_a_time),
        cmocka_unit_test(test_max_remaining_length),
        cmocka_unit_test(test_oversize_from_header_alone),
        cmocka_unit_test(test_malformed_rejected_with_reason),
        cmocka_unit_test(test_unsupported_level_keeps_level),
        cmocka_unit_test(test_mqtt31_password_without_username),
        cmocka_unit_test(test_utf8_check),
        cmocka_unit_test(test_encode_small_buffer),
        cmocka_unit_test(test_encode_invalid),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_v5_connect_bytes),
        cmocka_unit_test(test_v5_round_trip_every_type),
        cmocka_unit_test(test_v5_short_forms),
        cmocka_unit_test(test_v5_malformed_rejected_with_reason),
        cmocka_unit_test(test_v5_encode_invalid),
        cmocka_unit_test(test_v5_props_access),
        cmocka_unit_test(test_v5_incremental),
        cmocka_unit_test(test_v5_encode_publish5_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
