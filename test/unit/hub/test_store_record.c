/* The store's record layouts with MQTT 5.0 fields: a message keeps its properties and expiry,
 * a subscription its options and identifier, across a reopen; records of the earlier layout
 * (no 5.0 fields) still read, and those without 5.0 fields are still written that way;
 * corrupt 5.0 blocks are refused with an error. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../hub/store.h"
#include "../../../hub/store_internal.h"

/* PUBLISH properties as a client sends them: payload format 1, content type, response
 * topic, correlation data, a user property. */
static const uint8_t PROPS[] = {
    0x01, 1,                                                       /* payload format */
    0x03, 0, 10, 't', 'e', 'x', 't', '/', 'p', 'l', 'a', 'i', 'n', /* content type */
    0x08, 0, 5,  'r', 'e', 'p', 'l', 'y',                          /* response topic */
    0x09, 0, 3,  1,   2,   3,                                      /* correlation data */
    0x26, 0, 1,  'k', 0,   2,   'v', '1',                          /* user property */
};

/* The layout written before 5.0 fields existed: ts, qos, retain, topic length, topic,
 * payload. */
static size_t old_record(uint8_t *out, const char *topic, const char *payload, uint8_t qos,
                         uint8_t retain, int64_t ts)
{
    size_t tl = strlen(topic), pl = strlen(payload);
    store_be64_put(out, (uint64_t)ts);
    out[8] = qos;
    out[9] = retain;
    out[10] = (uint8_t)(tl >> 8);
    out[11] = (uint8_t)tl;
    memcpy(out + 12, topic, tl);
    memcpy(out + 12 + tl, payload, pl);
    return 12 + tl + pl;
}

static void test_plain_record_keeps_the_old_layout(void **state)
{
    (void)state;
    uint8_t old[64], rec[64];
    size_t n = old_record(old, "a/b", "hello", 1, 1, 1234567);
    store_msg m = {.topic = "a/b",
                   .topic_len = 3,
                   .payload = "hello",
                   .payload_len = 5,
                   .qos = 1,
                   .retain = 1,
                   .ts_ms = 1234567};
    assert_int_equal(store_msg_size(&m), n);
    store_msg_encode(&m, rec);
    assert_memory_equal(rec, old, n);

    store_msg d;
    char err[200] = "";
    assert_int_equal(store_msg_decode(old, n, &d, err, sizeof err), 0);
    assert_int_equal(d.ts_ms, 1234567);
    assert_int_equal(d.qos, 1);
    assert_int_equal(d.retain, 1);
    assert_int_equal(d.topic_len, 3);
    assert_memory_equal(d.topic, "a/b", 3);
    assert_int_equal(d.payload_len, 5);
    assert_memory_equal(d.payload, "hello", 5);
    assert_null(d.props);
    assert_int_equal(d.props_len, 0);
    assert_int_equal(d.expiry_s, 0);
}

/* A message with PROPS and an expiry. */
static store_msg v5msg(const char *topic, const char *payload, uint8_t qos, uint32_t expiry_s)
{
    return (store_msg){.topic = topic,
                       .topic_len = strlen(topic),
                       .payload = payload,
                       .payload_len = strlen(payload),
                       .qos = qos,
                       .props = PROPS,
                       .props_len = sizeof PROPS,
                       .expiry_s = expiry_s};
}

static void test_v5_record_round_trip(void **state)
{
    (void)state;
    store_msg m = v5msg("t/5", "body", 2, 3600);
    m.retain = 1;
    m.ts_ms = 99;
    m.origin = "pub-1";
    m.origin_len = 5;
    char err[200] = "";
    assert_int_equal(store_msg_check(&m, 1, err, sizeof err), 0);
    size_t n = store_msg_size(&m);
    uint8_t *rec = malloc(n);
    store_msg_encode(&m, rec);
    store_msg d;
    assert_int_equal(store_msg_decode(rec, n, &d, err, sizeof err), 0);
    assert_int_equal(d.qos, 2);
    assert_int_equal(d.retain, 1);
    assert_int_equal(d.ts_ms, 99);
    assert_int_equal(d.expiry_s, 3600);
    assert_int_equal(d.props_len, sizeof PROPS);
    assert_memory_equal(d.props, PROPS, sizeof PROPS);
    assert_int_equal(d.payload_len, 4);
    assert_memory_equal(d.payload, "body", 4);
    assert_int_equal(d.origin_len, 5);
    assert_memory_equal(d.origin, "pub-1", 5);

    /* an origin holding a NUL is refused both ways */
    uint8_t *bad = malloc(n);
    memcpy(bad, rec, n);
    bad[n - 4 - 3] = 0; /* inside "pub-1", before the 4-byte payload */
    assert_int_equal(store_msg_decode(bad, n, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "NUL"));
    free(bad);
    m.origin = "a\0b";
    m.origin_len = 3;
    assert_int_equal(store_msg_check(&m, 1, err, sizeof err), -1);

    /* expiry alone, no properties */
    store_msg e = {
        .topic = "t", .topic_len = 1, .payload = "p", .payload_len = 1, .qos = 1, .expiry_s = 5};
    uint8_t rec2[64];
    store_msg_encode(&e, rec2);
    assert_int_equal(store_msg_decode(rec2, store_msg_size(&e), &d, err, sizeof err), 0);
    assert_int_equal(d.expiry_s, 5);
    assert_null(d.props);
    assert_int_equal(d.payload_len, 1);
    free(rec);
}

/* Decodes rec after patching: must fail with an error holding want. */
static void refused(const uint8_t *rec, size_t n, const char *want)
{
    store_msg d;
    char err[200] = "";
    assert_int_equal(store_msg_decode(rec, n, &d, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not name \"%s\"", err, want);
}

static void test_v5_record_corrupt(void **state)
{
    (void)state;
    store_msg m = v5msg("t", "p", 1, 1);
    size_t n = store_msg_size(&m);
    uint8_t rec[128], bad[128];
    store_msg_encode(&m, rec);
    /* the 5.0 block after the 1-byte topic: expiry u32, props length u32, origin length
     * u16, then the properties */
    const size_t blk = STORE_MSG_HDR + 1, props_at = blk + 10;

    memcpy(bad, rec, n);
    bad[9] |= 0x04; /* an unknown flag */
    refused(bad, n, "flags");
    memcpy(bad, rec, n);
    bad[blk + 8] = 0x7F; /* an origin longer than the record */
    refused(bad, n, "exceed");
    refused(rec, blk + 5, "cut short");
    memcpy(bad, rec, n);
    bad[blk + 6] = 0x7F; /* properties longer than the record */
    refused(bad, n, "exceed");
    memcpy(bad, rec, n);
    bad[props_at] = 0x7E; /* an unknown property id */
    refused(bad, n, "invalid properties");
    memcpy(bad, rec, n);
    bad[props_at + 1] = 7; /* payload format indicator 7 */
    refused(bad, n, "invalid properties");

    /* a topic alias has no place in a stored message */
    static const uint8_t alias[] = {0x23, 0, 1};
    store_msg a = {.topic = "t",
                   .topic_len = 1,
                   .payload = "p",
                   .payload_len = 1,
                   .qos = 1,
                   .props = alias,
                   .props_len = sizeof alias};
    store_msg_encode(&a, bad);
    refused(bad, store_msg_size(&a), "per-delivery");
}

static void test_subs_options_and_ids(void **state)
{
    (void)state;
    store_sub subs[] = {
        {.filter = "a/+", .qos = 2, .opts = 0x04 | 0x08, .id = 268435455},
        {.filter = "b/#", .qos = 1},
        {.filter = "$share/g/c", .qos = 0, .opts = 0x20, .id = 7},
    };
    char err[200] = "", *owner = NULL;
    size_t n = store_subs_size(subs, 3, "alice", err, sizeof err);
    assert_true(n > 0);
    uint8_t *rec = malloc(n);
    store_subs_encode(subs, 3, "alice", rec);
    store_sub *d = NULL;
    size_t nd = 0;
    assert_int_equal(store_subs_decode(rec, n, &d, &nd, &owner, err, sizeof err), 0);
    assert_int_equal(nd, 3);
    assert_string_equal(owner, "alice");
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(d[i].filter, subs[i].filter);
        assert_int_equal(d[i].qos, subs[i].qos);
        assert_int_equal(d[i].opts, subs[i].opts);
        assert_int_equal(d[i].id, subs[i].id);
    }
    free(d);
    free(owner);

    /* a record of the earlier layout: QoS only */
    static const uint8_t old[] = {0, 0, 0, 1, 1, 0, 3, 'x', '/', 'y'};
    assert_int_equal(store_subs_decode(old, sizeof old, &d, &nd, &owner, err, sizeof err), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(d[0].qos, 1);
    assert_int_equal(d[0].opts, 0);
    assert_int_equal(d[0].id, 0);
    assert_null(owner);
    free(d);

    /* an identifier announced but cut, an identifier 0, a reserved bit */
    static const uint8_t cut[] = {0, 0, 0, 1, 0x41, 0, 1, 'x', 0, 0};
    static const uint8_t zero[] = {0, 0, 0, 1, 0x41, 0, 1, 'x', 0, 0, 0, 0};
    static const uint8_t resv[] = {0, 0, 0, 1, 0x81, 0, 1, 'x'};
    assert_int_equal(store_subs_decode(cut, sizeof cut, &d, &nd, &owner, err, sizeof err), -1);
    assert_non_null(strstr(err, "identifier"));
    assert_int_equal(store_subs_decode(zero, sizeof zero, &d, &nd, &owner, err, sizeof err), -1);
    assert_int_equal(store_subs_decode(resv, sizeof resv, &d, &nd, &owner, err, sizeof err), -1);
    assert_non_null(strstr(err, "options"));

    /* what the API refuses to write */
    store_sub badid = {.filter = "x", .id = 268435456}, badopt = {.filter = "x", .opts = 0x40};
    assert_int_equal(store_subs_size(&badid, 1, NULL, err, sizeof err), 0);
    assert_int_equal(store_subs_size(&badopt, 1, NULL, err, sizeof err), 0);
    free(rec);
}

/* ---- through a store that is closed and opened again --------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

typedef struct {
    int n;
    uint32_t expiry[4];
    size_t props_len[4], payload_len[4];
    int props_ok[4];
} scanned;

static int scan_cb(uint64_t seq, const store_msg *m, void *arg)
{
    (void)seq;
    scanned *s = arg;
    assert_true(s->n < 4);
    s->expiry[s->n] = m->expiry_s;
    s->props_len[s->n] = m->props_len;
    s->payload_len[s->n] = m->payload_len;
    s->props_ok[s->n] = m->props_len == sizeof PROPS && !memcmp(m->props, PROPS, sizeof PROPS);
    s->n++;
    return 0;
}

typedef struct {
    int n;
    store_sub subs[2];
} sess_seen;

static int sess_cb(const char *client_id, const char *owner, const store_sub *subs, size_t n,
                   void *arg)
{
    (void)client_id, (void)owner;
    sess_seen *w = arg;
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++)
        w->subs[i] = (store_sub){NULL, subs[i].qos, subs[i].opts, subs[i].id};
    w->n++;
    return 0;
}

static int retained_cb(const store_msg *m, void *arg)
{
    scanned *s = arg;
    return scan_cb(0, m, s);
}

static store *reopen(const char *dir)
{
    store_options o = {.dir = dir};
    store *s = NULL;
    char err[200] = "";
    if (store_open(&o, &s, err, sizeof err))
        fail_msg("store_open: %s", err);
    return s;
}

static void test_store_keeps_v5_fields(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_store_record.XXXXXX", err[200] = "";
    assert_non_null(mkdtemp(dir));
    store *s = reopen(dir);
    store_msg msgs[] = {
        {.topic = "old",
         .topic_len = 3,
         .payload = "plain",
         .payload_len = 5,
         .qos = 1,
         .ts_ms = 1},
        {.topic = "new",
         .topic_len = 3,
         .payload = "five",
         .payload_len = 4,
         .qos = 2,
         .ts_ms = 2,
         .props = PROPS,
         .props_len = sizeof PROPS,
         .expiry_s = 60},
    };
    uint64_t seqs[2];
    assert_int_equal(store_append(s, msgs, 2, seqs, NULL, 0, err, sizeof err), 0);
    store_msg r = msgs[1];
    r.retain = 1;
    assert_int_equal(store_put_retained(s, &r, err, sizeof err), 0);
    store_sub subs[] = {{.filter = "a", .qos = 1, .opts = 0x04, .id = 42},
                        {.filter = "b", .qos = 2, .opts = 0x08}};
    assert_int_equal(store_put_session(s, "c5", "u", subs, 2, err, sizeof err), 0);
    store_close(s);

    s = reopen(dir);
    scanned sc = {0};
    assert_int_equal(store_scan(s, 0, 0, scan_cb, &sc, err, sizeof err), 2);
    assert_int_equal(sc.props_len[0], 0);
    assert_int_equal(sc.expiry[0], 0);
    assert_int_equal(sc.payload_len[0], 5);
    assert_true(sc.props_ok[1]);
    assert_int_equal(sc.expiry[1], 60);
    assert_int_equal(sc.payload_len[1], 4);
    scanned rt = {0};
    assert_int_equal(store_load_retained(s, retained_cb, &rt, err, sizeof err), 0);
    assert_int_equal(rt.n, 1);
    assert_true(rt.props_ok[0]);
    assert_int_equal(rt.expiry[0], 60);
    sess_seen w = {0};
    assert_int_equal(store_load_sessions(s, sess_cb, &w, err, sizeof err), 0);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.subs[0].opts, 0x04);
    assert_int_equal(w.subs[0].id, 42);
    assert_int_equal(w.subs[1].opts, 0x08);
    assert_int_equal(w.subs[1].id, 0);
    store_close(s);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_record_keeps_the_old_layout),
        cmocka_unit_test(test_v5_record_round_trip),
        cmocka_unit_test(test_v5_record_corrupt),
        cmocka_unit_test(test_subs_options_and_ids),
        cmocka_unit_test(test_store_keeps_v5_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
