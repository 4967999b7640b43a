/* Unit tests of the SDK MQTT client without a broker: the settings schema (SPEC §17),
 * address parsing, topic rules, argument checks, the bounded queue, packet ids and the
 * encoded PUBLISH, cancellation at destroy, a client that cannot connect, and ack tokens
 * against a scripted broker. The network behaviour is tested against mosquitto in
 * test/integration/test_mqtt_client.py. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../sdk/src/mqtt_client_internal.h"
#include "baetyl/config.h"
#include "baetyl/log.h"
#include "baetyl/mqtt_client.h"

static char err[512];

/* A module config embedding the hub settings, as every module does. */
typedef struct {
    bt_mqtt_client_config hub;
    long other;
} module_cfg;

static const bt_cfg_field module_fields[] = {
    BT_FIELD(module_cfg, hub, "hub", BT_CFG_STRUCT, .sub = &bt_mqtt_client_schema),
    BT_FIELD(module_cfg, other, "other", BT_CFG_INT, .def = "7"),
    {0}};
static const bt_cfg_schema module_schema = {sizeof(module_cfg), module_fields, NULL};

static int load(module_cfg *m, const char *yaml)
{
    err[0] = '\0';
    return bt_cfg_load_string(&module_schema, m, yaml, strlen(yaml), err, sizeof err);
}

static void test_schema_defaults(void **state)
{
    module_cfg m;
    assert_int_equal(load(&m, "hub:\n  address: tcp://localhub:1883\n  clientid: timer1\n"), 0);
    assert_string_equal(m.hub.address, "tcp://localhub:1883");
    assert_string_equal(m.hub.clientid, "timer1");
    assert_int_equal(m.hub.timeout, 30000);
    assert_int_equal(m.hub.interval, 60000);
    assert_int_equal(m.hub.keepalive, 600000);
    assert_int_equal(m.hub.buffersize, 10);
    assert_int_equal(m.hub.protocol, 4); /* MQTT 3.1.1 unless configured */
    assert_false(m.hub.cleansession);
    assert_false(m.hub.validatesubs);
    assert_false(m.hub.insecure);
    assert_null(m.hub.username);
    assert_int_equal(m.hub.subscriptions.n, 0);
    assert_int_equal(m.other, 7);
    bt_cfg_free(&module_schema, &m);
}

static void test_schema_full(void **state)
{
    module_cfg m;
    assert_int_equal(load(&m, "hub:\n"
                              "  address: ssl://hub:8883\n"
                              "  username: test\n  password: hahaha\n"
                              "  ca: ca.pem\n  cert: c.pem\n  key: k.pem\n  insecure: true\n"
                              "  cleansession: true\n  timeout: 5s\n  interval: 2m\n"
                              "  keepalive: 30s\n  buffersize: 100\n  validatesubs: true\n"
                              "  protocol: 5\n"
                              "  subscriptions:\n    - topic: a/+/c\n      qos: 1\n"
                              "    - topic: '#'\n"),
                     0);
    assert_true(m.hub.insecure && m.hub.cleansession && m.hub.validatesubs);
    assert_int_equal(m.hub.timeout, 5000);
    assert_int_equal(m.hub.interval, 120000);
    assert_int_equal(m.hub.keepalive, 30000);
    assert_int_equal(m.hub.buffersize, 100);
    assert_int_equal(m.hub.protocol, 5);
    assert_int_equal(m.hub.subscriptions.n, 2);
    bt_mqtt_topic_info *t = m.hub.subscriptions.items;
    assert_string_equal(t[0].topic, "a/+/c");
    assert_int_equal(t[0].qos, 1);
    assert_string_equal(t[1].topic, "#");
    assert_int_equal(t[1].qos, 0);
    bt_cfg_free(&module_schema, &m);
}

static void expect_error(const char *yaml, const char *text)
{
    module_cfg m;
    assert_int_equal(load(&m, yaml), -1);
    if (!strstr(err, text))
        fail_msg("error \"%s\" does not contain \"%s\"", err, text);
}

static void test_schema_errors(void **state)
{
    expect_error("other: 1\n", "hub.address: required");
    expect_error("hub:\n  address: http://x:1\n", "unsupported scheme");
    expect_error("hub:\n  address: tcp://:1883\n", "has no host");
    expect_error("hub:\n  address: tcp://h:70000\n", "port out of range");
    expect_error("hub:\n  address: tcp://h:1883/path\n", "only ws:// and wss://");
    expect_error("hub:\n  address: tcp://h\n  buffersize: 0\n", "hub.buffersize");
    expect_error("hub:\n  address: tcp://h\n  keepalive: 20h\n", "hub.keepalive");
    expect_error("hub:\n  address: tcp://h\n  cert: c.pem\n", "cert and key");
    expect_error("hub:\n  address: tcp://h\n  protocol: 6\n", "hub.protocol");
    expect_error("hub:\n  address: tcp://h\n  subscriptions:\n    - topic: a\n      qos: 2\n",
                 "hub.subscriptions[0].qos");
    expect_error("hub:\n  address: tcp://h\n  subscriptions:\n    - topic: a/#/b\n",
                 "invalid topic filter");
    expect_error("hub:\n  address: tcp://h\n  subscriptions:\n    - qos: 1\n",
                 "hub.subscriptions[0].topic: required");
}

static void test_address(void **state)
{
    mc_addr a;
    assert_int_equal(mc_parse_address("tcp://127.0.0.1:1883", &a, err, sizeof err), 0);
    assert_false(a.tls || a.ws);
    assert_string_equal(a.host, "127.0.0.1");
    assert_string_equal(a.port, "1883");
    assert_int_equal(mc_parse_address("SSL://hub", &a, err, sizeof err), 0);
    assert_true(a.tls && !a.ws);
    assert_string_equal(a.port, "8883");
    assert_int_equal(mc_parse_address("ws://hub:8080", &a, err, sizeof err), 0);
    assert_true(a.ws && !a.tls);
    assert_string_equal(a.path, "/mqtt");
    assert_string_equal(a.hostport, "hub:8080");
    assert_int_equal(mc_parse_address("wss://[::1]:8884/custom/path", &a, err, sizeof err), 0);
    assert_true(a.ws && a.tls);
    assert_string_equal(a.host, "::1");
    assert_string_equal(a.hostport, "[::1]:8884");
    assert_string_equal(a.path, "/custom/path");
    assert_int_equal(mc_parse_address("wss://h", &a, err, sizeof err), 0);
    assert_string_equal(a.port, "443");
    const char *bad[] = {
        "",          "h:1883",    "://h",          "mqtt://h",   "tcp://[::1",   "tcp://h:",
        "tcp://h:x", "tcp://h:0", "tcp://h:1883x", "ws://h/a b", "tcp://user@h", NULL};
    for (int i = 0; bad[i]; i++)
        if (mc_parse_address(bad[i], &a, err, sizeof err) != -1)
            fail_msg("accepted %s", bad[i]);
}

static void test_topics(void **state)
{
    assert_true(bt_mqtt_client_valid_name("a/b"));
    assert_true(bt_mqtt_client_valid_name("$baidu/iot/edge/x")); /* remote brokers use these */
    assert_true(bt_mqtt_client_valid_name("/"));
    assert_false(bt_mqtt_client_valid_name(""));
    assert_false(bt_mqtt_client_valid_name(NULL));
    assert_false(bt_mqtt_client_valid_name("a/+"));
    assert_false(bt_mqtt_client_valid_name("a/#"));
    assert_false(bt_mqtt_client_valid_name("bad\xff"));
    assert_true(bt_mqtt_client_valid_filter("#"));
    assert_true(bt_mqtt_client_valid_filter("+/+/#"));
    assert_true(bt_mqtt_client_valid_filter("a//+"));
    assert_false(bt_mqtt_client_valid_filter("a/#/b"));
    assert_false(bt_mqtt_client_valid_filter("a+"));
    assert_false(bt_mqtt_client_valid_filter("a/b#"));
    char *long_topic = malloc(70000);
    memset(long_topic, 'a', 69999);
    long_topic[69999] = '\0';
    assert_false(bt_mqtt_client_valid_name(long_topic));
    free(long_topic);
}

/* A settings struct filled in code, as remote-mqtt does. */
static void base_cfg(bt_mqtt_client_config *c, const char *address, long buffersize)
{
    assert_int_equal(bt_cfg_defaults(&bt_mqtt_client_schema, c, err, sizeof err), 0);
    c->address = strdup(address);
    c->clientid = strdup("unit");
    c->buffersize = buffersize;
}

static void test_create_errors(void **state)
{
    bt_mqtt_client_config c;
    base_cfg(&c, "tcp://127.0.0.1:1", 10);
    free(c.clientid);
    c.clientid = NULL;
    assert_null(bt_mqtt_client_create(&c, NULL, err, sizeof err));
    assert_non_null(strstr(err, "clientid: required when cleansession is false"));
    c.cleansession = true; /* an empty id is fine with a clean session */
    bt_mqtt_client *cl = bt_mqtt_client_create(&c, NULL, err, sizeof err);
    assert_non_null(cl);
    bt_mqtt_client_destroy(cl);

    bt_mqtt_client_options o = {.will_topic = "w/+", .will_payload = "x", .will_len = 1};
    assert_null(bt_mqtt_client_create(&c, &o, err, sizeof err));
    assert_non_null(strstr(err, "will topic"));
    o.will_topic = "w";
    o.will_qos = 2;
    assert_null(bt_mqtt_client_create(&c, &o, err, sizeof err));
    assert_non_null(strstr(err, "will qos"));
    bt_mqtt_client_options p = {.protocol_level = 6};
    assert_null(bt_mqtt_client_create(&c, &p, err, sizeof err));
    assert_non_null(strstr(err, "protocol level"));

    free(c.address);
    c.address = strdup("ssl://127.0.0.1:1");
    c.ca = strdup("/nonexistent/ca.pem");
    assert_null(bt_mqtt_client_create(&c, NULL, err, sizeof err));
    assert_non_null(strstr(err, "ca: cannot load /nonexistent/ca.pem"));
    free(c.address);
    c.address = strdup("gopher://x");
    assert_null(bt_mqtt_client_create(&c, NULL, err, sizeof err));
    assert_non_null(strstr(err, "unsupported scheme"));
    assert_null(bt_mqtt_client_create(NULL, NULL, err, sizeof err));
    bt_cfg_free(&bt_mqtt_client_schema, &c);
}

typedef struct {
    int ok, cancelled;
    long tags;
} counts;

static void on_complete(bt_mqtt_client *c, void *tag, int status, void *ud)
{
    counts *n = ud;
    if (status == BT_MQTT_OK)
        n->ok++;
    else if (status == BT_MQTT_ECANCELLED)
        n->cancelled++;
    n->tags += (long)(intptr_t)tag;
}

/* Not started: everything stays queued, so the bounds are exact. */
static void test_queue_bounds_and_cancel(void **state)
{
    bt_mqtt_client_config c;
    base_cfg(&c, "tcp://127.0.0.1:1", 3);
    counts n = {0};
    bt_mqtt_client_options o = {.on_publish_complete = on_complete, .userdata = &n};
    bt_mqtt_client *cl = bt_mqtt_client_create(&c, &o, err, sizeof err);
    assert_non_null(cl);
    bt_cfg_free(&bt_mqtt_client_schema, &c);

    assert_int_equal(bt_mqtt_client_publish(cl, "a/+", "x", 1, 0, false, NULL, err, sizeof err),
                     BT_MQTT_EINVAL);
    assert_int_equal(bt_mqtt_client_publish(cl, "a", "x", 1, 3, false, NULL, err, sizeof err),
                     BT_MQTT_EINVAL);
    assert_int_equal(bt_mqtt_client_publish(cl, "a", NULL, 1, 0, false, NULL, err, sizeof err),
                     BT_MQTT_EINVAL);
    assert_int_equal(bt_mqtt_client_publish(cl, "a", NULL, 0, 0, false, (void *)1, err, sizeof err),
                     BT_MQTT_OK); /* empty payload is fine */
    assert_int_equal(
        bt_mqtt_client_publish(cl, "t/1", "hello", 5, 1, true, (void *)10, err, sizeof err),
        BT_MQTT_OK);
    assert_int_equal(
        bt_mqtt_client_publish(cl, "t/2", "bye", 3, 1, false, (void *)100, err, sizeof err),
        BT_MQTT_OK);
    assert_int_equal(bt_mqtt_client_pending(cl), 3);
    assert_int_equal(bt_mqtt_client_publish(cl, "t", "x", 1, 0, false, NULL, err, sizeof err),
                     BT_MQTT_EFULL);
    assert_non_null(strstr(err, "queue full"));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(
        bt_mqtt_client_publish_wait(cl, "t", "x", 1, 0, false, NULL, 200, err, sizeof err),
        BT_MQTT_EFULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 190);

    /* the queued PUBLISHes are encoded with their window ids 1 and 2 */
    uint8_t want[64];
    mc_msg *m = cl->queue.head->next;
    ssize_t w = bt_mqtt_encode_publish(want, sizeof want, "t/1", 3, "hello", 5, 1, true, false, 1);
    assert_int_equal(m->len, (size_t)w);
    assert_memory_equal(m->data, want, (size_t)w);
    m = m->next;
    w = bt_mqtt_encode_publish(want, sizeof want, "t/2", 3, "bye", 3, 1, false, false, 2);
    assert_memory_equal(m->data, want, (size_t)w);

    /* nothing inbound waits: acks are refused */
    assert_int_equal(bt_mqtt_client_ack(cl, mc_token(0, 1)), BT_MQTT_EINVAL);
    assert_int_equal(bt_mqtt_client_ack(cl, mc_token(0, 0)), BT_MQTT_EINVAL);
    assert_int_equal(bt_mqtt_client_wait_connected(cl, 50), -1);
    assert_false(bt_mqtt_client_connected(cl));

    bt_mqtt_client_destroy(cl); /* never sent: all three cancelled */
    assert_int_equal(n.cancelled, 3);
    assert_int_equal(n.ok, 0);
    assert_int_equal(n.tags, 111);
}

/* message.length.max: publishes the broker would refuse (closing the connection) are
 * refused here, with the limit named; the payload room follows from topic and QoS. */
static void test_message_length_max(void **state)
{
    module_cfg m;
    assert_int_equal(load(&m, "hub:\n  address: tcp://h\n"), 0);
    assert_int_equal(m.hub.message_max, 0);
    bt_cfg_free(&module_schema, &m);
    assert_int_equal(load(&m, "hub:\n  address: tcp://h\n  message: {length: {max: 32k}}\n"), 0);
    assert_int_equal(m.hub.message_max, 32768);
    bt_cfg_free(&module_schema, &m);
    expect_error("hub:\n  address: tcp://h\n  message: {length: {max: 300m}}\n",
                 "hub.message.length.max");

    bt_mqtt_client_config c;
    base_cfg(&c, "tcp://127.0.0.1:1", 10);
    bt_mqtt_client *cl = bt_mqtt_client_create(&c, NULL, err, sizeof err);
    assert_int_equal(bt_mqtt_client_payload_max(cl, "t", 1), SIZE_MAX);
    bt_mqtt_client_destroy(cl);
    c.message_max = 20;
    cl = bt_mqtt_client_create(&c, NULL, err, sizeof err);
    bt_cfg_free(&bt_mqtt_client_schema, &c);
    assert_non_null(cl);
    assert_int_equal(bt_mqtt_client_payload_max(cl, "t", 1), 15); /* 20 - 2 - 1 - 2 */
    assert_int_equal(bt_mqtt_client_payload_max(cl, "t", 0), 17);
    assert_int_equal(bt_mqtt_client_payload_max(cl, "a/very/long/topic/name", 1), 0);
    char payload[32] = {0};
    assert_int_equal(bt_mqtt_client_publish(cl, "t", payload, 15, 1, false, NULL, err, sizeof err),
                     BT_MQTT_OK);
    assert_int_equal(bt_mqtt_client_publish(cl, "t", payload, 16, 1, false, NULL, err, sizeof err),
                     BT_MQTT_EINVAL);
    assert_non_null(strstr(err, "message too large: 21 bytes, the broker takes at most 20"));
    assert_int_equal(bt_mqtt_client_pending(cl), 1);
    bt_mqtt_client_destroy(cl);
}

static void test_subscriptions_bookkeeping(void **state)
{
    bt_mqtt_client_config c;
    base_cfg(&c, "tcp://127.0.0.1:1", 10);
    bt_mqtt_client *cl = bt_mqtt_client_create(&c, NULL, err, sizeof err);
    bt_cfg_free(&bt_mqtt_client_schema, &c);
    assert_non_null(cl);
    assert_int_equal(bt_mqtt_client_subscribe(cl, "a/#/b", 0, err, sizeof err), BT_MQTT_EINVAL);
    assert_int_equal(bt_mqtt_client_subscribe(cl, "a/#", 3, err, sizeof err), BT_MQTT_EINVAL);
    assert_int_equal(bt_mqtt_client_subscribe(cl, "a/#", 0, err, sizeof err), 0);
    assert_int_equal(bt_mqtt_client_subscribe(cl, "a/#", 1, err, sizeof err), 0); /* qos change */
    assert_int_equal(bt_mqtt_client_subscribe(cl, "b", 0, err, sizeof err), 0);
    assert_int_equal(cl->nsubs, 2);
    assert_int_equal(cl->subs[0].qos, 1);
    assert_int_equal(bt_mqtt_client_unsubscribe(cl, "zzz", err, sizeof err), BT_MQTT_EINVAL);
    assert_int_equal(bt_mqtt_client_unsubscribe(cl, "a/#", err, sizeof err), 0);
    assert_int_equal(cl->nsubs, 1);
    assert_null(cl->ctl_head); /* not connected: nothing to send now */
    bt_mqtt_client_stop(cl);
    assert_int_equal(bt_mqtt_client_subscribe(cl, "c", 0, err, sizeof err), BT_MQTT_ESTOPPED);
    assert_int_equal(bt_mqtt_client_publish(cl, "c", "x", 1, 0, false, NULL, err, sizeof err),
                     BT_MQTT_ESTOPPED);
    assert_int_equal(bt_mqtt_client_start(cl, err, sizeof err), -1);
    bt_mqtt_client_destroy(cl);
}

/* Started against a port nobody listens on: it retries in the background and still stops
 * promptly, cancelling what it held. */
static void test_unreachable_stops_promptly(void **state)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s); /* the port is free now: connect is refused */
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    bt_mqtt_client_config c;
    base_cfg(&c, addr, 5);
    c.interval = 200;
    counts n = {0};
    bt_mqtt_client_options o = {.on_publish_complete = on_complete, .userdata = &n};
    bt_mqtt_client *cl = bt_mqtt_client_create(&c, &o, err, sizeof err);
    bt_cfg_free(&bt_mqtt_client_schema, &c);
    assert_non_null(cl);
    assert_int_equal(bt_mqtt_client_start(cl, err, sizeof err), 0);
    assert_int_equal(bt_mqtt_client_start(cl, err, sizeof err), -1);
    assert_int_equal(bt_mqtt_client_publish(cl, "t", "x", 1, 1, false, NULL, err, sizeof err), 0);
    usleep(700 * 1000); /* a few attempts: 0, 200 ms, 400 ms... */
    assert_false(bt_mqtt_client_connected(cl));
    assert_int_equal(bt_mqtt_client_pending(cl), 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bt_mqtt_client_destroy(cl);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms < 500);
    assert_int_equal(n.cancelled, 1);
}

/* ---- a scripted broker on loopback, for the ack token ------------------------------- */

typedef struct {
    int lsn, fd;
    uint8_t buf[4096];
    size_t len;
    int version;        /* BT_MQTT_V5: the connection speaks 5.0 */
    uint8_t level, qos; /* of the last CONNECT, of the last PUBLISH or SUBSCRIBE entry */
    uint32_t expiry;    /* the last CONNECT's session expiry interval (0 when absent) */
    char payload[16];   /* the last PUBLISH's */
    uint16_t recv_max;  /* sent in a 5.0 CONNACK when not 0 */
} fake_broker;

static void fb_listen(fake_broker *b, char *addr, size_t addrlen)
{
    b->lsn = socket(AF_INET, SOCK_STREAM, 0);
    b->fd = -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(b->lsn, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(b->lsn, 4), 0);
    assert_int_equal(getsockname(b->lsn, (struct sockaddr *)&a, &al), 0);
    snprintf(addr, addrlen, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
}

/* The next packet from the client (5 s at most); its type. */
static bt_mqtt_type fb_read(fake_broker *b, bt_mqtt_packet *p)
{
    for (;;) {
        size_t used;
        char why[128];
        int d = bt_mqtt_decode_v(b->buf, b->len, 0, b->version, p, &used, why, sizeof why);
        assert_true(d >= 0);
        if (d == 1) {
            bt_mqtt_type t = p->type;
            uint16_t pid = t >= BT_MQTT_PUBACK && t <= BT_MQTT_PUBCOMP ? p->ack.packet_id
                           : t == BT_MQTT_SUBSCRIBE                    ? p->subscribe.packet_id
                           : t == BT_MQTT_PUBLISH                      ? p->publish.packet_id
                                                                       : 0;
            bt_mqtt_prop pr;
            if (t == BT_MQTT_CONNECT) {
                b->level = p->connect.protocol_level;
                b->expiry = bt_mqtt_props_get(&p->connect.props, BT_MQTT_PROP_SESSION_EXPIRY, &pr)
                                ? pr.num
                                : 0;
            } else if (t == BT_MQTT_PUBLISH) {
                b->qos = p->publish.qos;
                snprintf(b->payload, sizeof b->payload, "%.*s", (int)p->publish.payload.len,
                         (const char *)p->publish.payload.ptr);
            } else if (t == BT_MQTT_SUBSCRIBE) {
                bt_mqtt_sub_iter it;
                bt_mqtt_sub_iter_init(&it, p);
                assert_true(bt_mqtt_sub_next(&it, NULL, &b->qos));
            }
            memmove(b->buf, b->buf + used, b->len - used);
            b->len -= used;
            p->ack.packet_id = pid; /* the views into buf are gone: keep the id only */
            return t;
        }
        ssize_t n = read(b->fd, b->buf + b->len, sizeof b->buf - b->len);
        assert_true(n > 0);
        b->len += (size_t)n;
    }
}

static void fb_write(fake_broker *b, const uint8_t *data, ssize_t n)
{
    assert_true(n > 0);
    assert_int_equal(write(b->fd, data, (size_t)n), n);
}

/* Accepts the client's connection: CONNECT → CONNACK, SUBSCRIBE → SUBACK. */
static void fb_accept(fake_broker *b)
{
    b->fd = accept(b->lsn, NULL, NULL);
    assert_true(b->fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(b->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    b->len = 0;
    bt_mqtt_packet p;
    uint8_t out[16];
    assert_int_equal(fb_read(b, &p), BT_MQTT_CONNECT);
    bt_mqtt_prop rm = {.id = BT_MQTT_PROP_RECEIVE_MAXIMUM, .num = b->recv_max};
    bt_mqtt_packet k = {.type = BT_MQTT_CONNACK, .version = (uint8_t)b->version};
    if (b->version == BT_MQTT_V5 && b->recv_max)
        k.connack.props = (bt_mqtt_props){.list = &rm, .count = 1};
    fb_write(b, out, bt_mqtt_encode(&k, out, sizeof out));
    assert_int_equal(fb_read(b, &p), BT_MQTT_SUBSCRIBE);
    uint8_t code = b->qos;
    bt_mqtt_packet s = {.type = BT_MQTT_SUBACK, .version = (uint8_t)b->version};
    s.suback = (bt_mqtt_suback){.packet_id = p.ack.packet_id, .codes = &code, .count = 1};
    fb_write(b, out, bt_mqtt_encode(&s, out, sizeof out));
}

/* A PUBLISH (or any ack with a reason code) in the broker's protocol. */
static void fb_send(fake_broker *b, bt_mqtt_packet *p)
{
    uint8_t out[128];
    p->version = (uint8_t)b->version;
    fb_write(b, out, bt_mqtt_encode(p, out, sizeof out));
}

static void fb_ack(fake_broker *b, bt_mqtt_type t, uint16_t pid, uint8_t reason)
{
    bt_mqtt_packet p = {.type = t};
    p.ack = (bt_mqtt_ack){.packet_id = pid, .reason = reason};
    fb_send(b, &p);
}

static void fb_publish2(fake_broker *b, const char *payload, bool dup, uint16_t pid)
{
    bt_mqtt_packet p = {.type = BT_MQTT_PUBLISH};
    p.publish = (bt_mqtt_publish){.qos = 2,
                                  .dup = dup,
                                  .packet_id = pid,
                                  .topic = {"t", 1},
                                  .payload = {(const uint8_t *)payload, strlen(payload)}};
    fb_send(b, &p);
}

/* True when the client sent nothing within 100 ms. */
static bool fb_quiet(fake_broker *b)
{
    usleep(100000);
    uint8_t x;
    return b->len == 0 && recv(b->fd, &x, 1, MSG_DONTWAIT | MSG_PEEK) < 0;
}

/* The next n raw bytes from the client (what fb_read buffered first). */
static void fb_read_raw(fake_broker *b, uint8_t *dst, size_t n)
{
    size_t k = b->len < n ? b->len : n;
    memcpy(dst, b->buf, k);
    memmove(b->buf, b->buf + k, b->len - k);
    b->len -= k;
    while (k < n) {
        ssize_t r = read(b->fd, dst + k, n - k);
        assert_true(r > 0);
        k += (size_t)r;
    }
}

static void fb_publish(fake_broker *b, const char *payload, bool dup, uint16_t pid)
{
    uint8_t out[128];
    fb_write(b, out,
             bt_mqtt_encode_publish(out, sizeof out, "t", 1, payload, strlen(payload), 1, false,
                                    dup, pid));
}

typedef struct {
    pthread_mutex_t mu;
    int n;
    char payload[4][16];
    bt_mqtt_ack_token token[4];
} received;

static void on_msg_keep(bt_mqtt_client *c, const bt_mqtt_message *m, void *ud)
{
    received *r = ud;
    pthread_mutex_lock(&r->mu);
    if (r->n < 4) {
        snprintf(r->payload[r->n], sizeof r->payload[r->n], "%.*s", (int)m->payload_len,
                 (const char *)m->payload);
        r->token[r->n] = m->ack;
    }
    r->n++;
    pthread_mutex_unlock(&r->mu);
}

/* Waits (5 s at most) until *count, guarded by mu, reaches want: its value, or -1. */
static int wait_count(pthread_mutex_t *mu, const int *count, int want)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(mu);
        int n = *count;
        pthread_mutex_unlock(mu);
        if (n >= want)
            return n;
        usleep(10000);
    }
    return -1;
}

static int received_n(received *r, int want)
{
    return wait_count(&r->mu, &r->n, want);
}

/* A token kept across a reconnect acknowledges nothing, even though the new connection
 * delivered another message with the same packet id; that message's own token acks it. A
 * DUP resend of a message the application still holds is not delivered twice. */
static void test_ack_token_stale_after_reconnect(void **state)
{
    fake_broker b = {0}; /* version 0: a 3.1.1 broker */
    char addr[64];
    fb_listen(&b, addr, sizeof addr);
    bt_mqtt_client_config c;
    base_cfg(&c, addr, 10);
    c.interval = 100;
    bt_mqtt_topic_info sub = {.topic = "t", .qos = 1};
    bt_mqtt_client_config cc = c;
    cc.subscriptions.n = 1;
    cc.subscriptions.items = &sub;
    received r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    bt_mqtt_client_options o = {.on_message = on_msg_keep, .userdata = &r};
    bt_mqtt_client *cl = bt_mqtt_client_create(&cc, &o, err, sizeof err);
    bt_cfg_free(&bt_mqtt_client_schema, &c);
    assert_non_null(cl);
    assert_int_equal(bt_mqtt_client_start(cl, err, sizeof err), 0);

    fb_accept(&b);
    fb_publish(&b, "old", false, 7);
    fb_publish(&b, "old", true, 7); /* the broker's retry while the application holds it */
    assert_int_equal(received_n(&r, 1), 1);
    assert_string_equal(r.payload[0], "old");
    usleep(100000);
    assert_int_equal(received_n(&r, 1), 1);
    assert_int_equal(bt_mqtt_client_resends_held(cl), 1);
    bt_mqtt_ack_token stale = r.token[0];
    assert_true(stale.v != 0);

    close(b.fd); /* the connection ends before the application acks */
    fb_accept(&b);
    fb_publish(&b, "new", false, 7); /* same packet id, another message */
    assert_int_equal(received_n(&r, 2), 2);
    assert_string_equal(r.payload[1], "new");
    assert_int_equal(bt_mqtt_client_ack(cl, stale), BT_MQTT_EINVAL);
    bt_mqtt_ack_token zero = {0};
    assert_int_equal(bt_mqtt_client_ack(cl, zero), BT_MQTT_EINVAL);
    /* no PUBACK went out for the stale token: the next packet is the one of the new token */
    fb_publish(&b, "ping", false, 8);
    assert_int_equal(received_n(&r, 3), 3);
    assert_int_equal(bt_mqtt_client_ack(cl, r.token[2]), BT_MQTT_OK);
    bt_mqtt_packet p;
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBACK);
    assert_int_equal(p.ack.packet_id, 8);
    assert_int_equal(bt_mqtt_client_ack(cl, r.token[1]), BT_MQTT_OK);
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBACK);
    assert_int_equal(p.ack.packet_id, 7);
    assert_int_equal(bt_mqtt_client_ack(cl, r.token[1]), BT_MQTT_EINVAL); /* once only */

    bt_mqtt_client_destroy(cl);
    close(b.fd);
    close(b.lsn);
}

typedef struct {
    pthread_mutex_t mu;
    int n;
    int status[4];
    char lost[128];
} completions;

static void on_done(bt_mqtt_client *c, void *tag, int status, void *ud)
{
    completions *k = ud;
    pthread_mutex_lock(&k->mu);
    if (k->n < 4)
        k->status[k->n] = status;
    k->n++;
    pthread_mutex_unlock(&k->mu);
}

static int completed(completions *k, int want)
{
    return wait_count(&k->mu, &k->n, want);
}

typedef struct {
    received r;
    completions k;
} v5_state;

static void v5_msg(bt_mqtt_client *c, const bt_mqtt_message *m, void *ud)
{
    on_msg_keep(c, m, &((v5_state *)ud)->r);
}

static void v5_done(bt_mqtt_client *c, void *tag, int status, void *ud)
{
    on_done(c, tag, status, &((v5_state *)ud)->k);
}

/* `protocol: 5` against a scripted 5.0 broker: CONNECT level 5 keeping the session
 * (expiry "never"), SUBSCRIBE at QoS 2; outgoing QoS 2 PUBLISH / PUBREC / PUBREL / PUBCOMP
 * under a receive maximum of 1, a PUBREC with reason 0x97 completes as refused; inbound QoS
 * 2 with manual ack: PUBREC only after the ack, resends (held, or PUBRECed) not delivered
 * again, PUBREL answered with PUBCOMP, the id then free for a new message; after a reconnect
 * a released message is released again (PUBREL), not resent. */
static void test_v5_qos2(void **state)
{
    fake_broker b = {.version = BT_MQTT_V5, .recv_max = 1};
    char addr[64];
    fb_listen(&b, addr, sizeof addr);
    bt_mqtt_client_config c;
    base_cfg(&c, addr, 10);
    c.protocol = 5;
    c.cleansession = false;
    free(c.clientid);
    c.clientid = strdup("c5");
    bt_mqtt_client_config cc = c;
    v5_state st = {.r = {.mu = PTHREAD_MUTEX_INITIALIZER}, .k = {.mu = PTHREAD_MUTEX_INITIALIZER}};
    bt_mqtt_client_options o = {
        .on_message = v5_msg, .on_publish_complete = v5_done, .userdata = &st};
    bt_mqtt_client *cl = bt_mqtt_client_create(&cc, &o, err, sizeof err);
    assert_non_null(cl);
    assert_int_equal(bt_mqtt_client_subscribe(cl, "t", 2, err, sizeof err), 0);
    assert_int_equal(bt_mqtt_client_subscribe(cl, "t", 3, err, sizeof err), BT_MQTT_EINVAL);
    assert_int_equal(bt_mqtt_client_start(cl, err, sizeof err), 0);
    fb_accept(&b);
    assert_int_equal(b.level, 5);
    assert_int_equal(b.expiry, UINT32_MAX);
    assert_int_equal(b.qos, 2); /* the subscription options' QoS */

    assert_int_equal(bt_mqtt_client_publish(cl, "o", "one", 3, 2, false, NULL, err, sizeof err), 0);
    assert_int_equal(bt_mqtt_client_publish(cl, "o", "two", 3, 2, false, NULL, err, sizeof err), 0);
    bt_mqtt_packet p;
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBLISH);
    assert_int_equal(b.qos, 2);
    assert_string_equal(b.payload, "one");
    uint16_t one = p.ack.packet_id;
    assert_true(fb_quiet(&b)); /* receive maximum 1: "two" waits */
    fb_ack(&b, BT_MQTT_PUBREC, one, 0);
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBREL);
    assert_int_equal(p.ack.packet_id, one);
    assert_int_equal(st.k.n, 0); /* not complete before PUBCOMP */
    fb_ack(&b, BT_MQTT_PUBCOMP, one, 0);
    assert_int_equal(completed(&st.k, 1), 1);
    assert_int_equal(st.k.status[0], BT_MQTT_OK);
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBLISH);
    assert_string_equal(b.payload, "two");
    fb_ack(&b, BT_MQTT_PUBREC, p.ack.packet_id, BT_MQTT_RC_QUOTA_EXCEEDED);
    assert_int_equal(completed(&st.k, 2), 2);
    assert_int_equal(st.k.status[1], BT_MQTT_EREFUSED);
    assert_true(fb_quiet(&b)); /* a refused PUBREC ends the exchange: no PUBREL */

    fb_publish2(&b, "in", false, 9);
    assert_int_equal(received_n(&st.r, 1), 1);
    fb_publish2(&b, "in", true, 9); /* held by the application */
    assert_true(fb_quiet(&b));
    assert_int_equal(bt_mqtt_client_resends_held(cl), 1);
    assert_int_equal(bt_mqtt_client_ack(cl, st.r.token[0]), BT_MQTT_OK);
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBREC);
    assert_int_equal(p.ack.packet_id, 9);
    fb_publish2(&b, "in", true, 9); /* as if the PUBREC was lost: PUBREC again, no delivery */
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBREC);
    fb_ack(&b, BT_MQTT_PUBREL, 9, 0);
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBCOMP);
    assert_int_equal(p.ack.packet_id, 9);
    fb_publish2(&b, "next", false, 9); /* released: the id carries a new message */
    assert_int_equal(received_n(&st.r, 2), 2);
    assert_string_equal(st.r.payload[1], "next");
    assert_int_equal(st.r.n, 2);

    /* released, then the link drops before PUBCOMP: the next connection sends the PUBREL
     * again, not the message */
    assert_int_equal(bt_mqtt_client_publish(cl, "o", "three", 5, 2, false, NULL, err, sizeof err),
                     0);
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBLISH);
    uint16_t three = p.ack.packet_id;
    fb_ack(&b, BT_MQTT_PUBREC, three, 0);
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBREL);
    close(b.fd);
    fb_accept(&b);
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBREL);
    assert_int_equal(p.ack.packet_id, three);
    assert_int_equal(st.k.n, 2);
    fb_ack(&b, BT_MQTT_PUBCOMP, three, 0);
    assert_int_equal(completed(&st.k, 3), 3);
    assert_int_equal(st.k.status[2], BT_MQTT_OK);

    bt_mqtt_client_destroy(cl);
    bt_cfg_free(&bt_mqtt_client_schema, &c);
    close(b.fd);
    close(b.lsn);
}

static void test_strerror(void **state)
{
    assert_string_equal(bt_mqtt_strerror(BT_MQTT_EREFUSED), "refused by the broker");
    assert_string_equal(bt_mqtt_strerror(BT_MQTT_EFULL), "queue full");
    assert_string_equal(bt_mqtt_strerror(BT_MQTT_ESTOPPED), "client stopped");
    assert_string_equal(bt_mqtt_strerror(42), "unknown error");
}

/* ---- publishes written by the publishing thread --------------------------------------- */

static uint64_t direct_sent(bt_mqtt_client *cl)
{
    pthread_mutex_lock(&cl->mu);
    uint64_t n = cl->direct_sent;
    pthread_mutex_unlock(&cl->mu);
    return n;
}

/* The payload's leading number (fb_read keeps its first 15 bytes). */
static int fb_number(const fake_broker *b, int *thread)
{
    int t = 0, i = -1;
    assert_int_equal(sscanf(b->payload, "%d:%d", &t, &i), 2);
    *thread = t;
    return i;
}

typedef struct {
    bt_mqtt_client *cl;
    int id, n;
} publisher;

static void *publish_numbered(void *arg)
{
    publisher *p = arg;
    char e[128], pl[32];
    for (int i = 0; i < p->n; i++) {
        snprintf(pl, sizeof pl, "%d:%d", p->id, i);
        assert_int_equal(bt_mqtt_client_publish_wait(p->cl, "o", pl, strlen(pl), 1, false,
                                                     (void *)1, -1, e, sizeof e),
                         BT_MQTT_OK);
    }
    return NULL;
}

/* On a plain TCP link whose thread sleeps, a publish is written by the calling thread: a
 * QoS 0 one without a completion due, and QoS 1 ones (in flight until their PUBACK, which
 * completes them on the client's thread); a QoS 0 one with a tag is left to the thread.
 * Packets stay in call order when the socket fills (the rest of a packet written in part
 * goes first) and when threads publish at once; every QoS 1 publish completes once. */
static void test_direct_publish_order(void **state)
{
    fake_broker b = {0};
    char addr[64];
    fb_listen(&b, addr, sizeof addr);
    bt_mqtt_client_config c;
    base_cfg(&c, addr, 5000);
    bt_mqtt_topic_info sub = {.topic = "t", .qos = 1};
    c.subscriptions.n = 1;
    c.subscriptions.items = &sub;
    completions k = {.mu = PTHREAD_MUTEX_INITIALIZER};
    bt_mqtt_client_options o = {
        .on_publish_complete = on_done, .complete_tagged_only = true, .userdata = &k};
    bt_mqtt_client *cl = bt_mqtt_client_create(&c, &o, err, sizeof err);
    c.subscriptions.n = 0;
    c.subscriptions.items = NULL;
    bt_cfg_free(&bt_mqtt_client_schema, &c);
    assert_non_null(cl);
    assert_int_equal(bt_mqtt_client_start(cl, err, sizeof err), 0);
    fb_accept(&b);
    assert_int_equal(bt_mqtt_client_wait_connected(cl, 5000), 0);
    usleep(100000); /* the SUBACK handled: the thread sleeps */

    bt_mqtt_packet p;
    assert_int_equal(bt_mqtt_client_publish(cl, "o", "0:0", 3, 0, false, NULL, err, sizeof err),
                     BT_MQTT_OK);
    assert_int_equal(direct_sent(cl), 1);
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBLISH);
    assert_string_equal(b.payload, "0:0");
    assert_int_equal(
        bt_mqtt_client_publish(cl, "o", "0:1", 3, 0, false, (void *)1, err, sizeof err),
        BT_MQTT_OK);
    assert_int_equal(completed(&k, 1), 1); /* by the thread, which wrote it */
    assert_int_equal(direct_sent(cl), 1);
    assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBLISH);
    assert_string_equal(b.payload, "0:1");

    /* 16 MB while the broker reads nothing: the socket takes part of it, the rest goes
     * first from the thread's output; the publishes after it queue behind */
    enum { BIG = 16 << 20, NSMALL = 50 };
    uint8_t *big = malloc(BIG);
    assert_non_null(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (uint8_t)(i % 251);
    usleep(50000);
    assert_int_equal(bt_mqtt_client_publish(cl, "o", big, BIG, 0, false, NULL, err, sizeof err),
                     BT_MQTT_OK);
    assert_int_equal(direct_sent(cl), 2);
    for (int i = 0; i < NSMALL; i++) {
        char pl[16];
        snprintf(pl, sizeof pl, "1:%d", i);
        assert_int_equal(
            bt_mqtt_client_publish(cl, "o", pl, strlen(pl), 0, false, NULL, err, sizeof err),
            BT_MQTT_OK);
    }
    /* the big PUBLISH: 0x30, its remaining length (4 bytes), topic "o", the payload */
    uint8_t head[8];
    fb_read_raw(&b, head, 8);
    size_t rl = (head[1] & 0x7F) | (size_t)(head[2] & 0x7F) << 7 | (size_t)(head[3] & 0x7F) << 14 |
                (size_t)(head[4] & 0x7F) << 21;
    assert_int_equal(head[0], 0x30);
    assert_int_equal(rl, 3 + (size_t)BIG);
    assert_memory_equal(head + 5, "\0\1o", 3);
    uint8_t *got = malloc(BIG);
    assert_non_null(got);
    fb_read_raw(&b, got, BIG);
    assert_memory_equal(got, big, BIG);
    free(got);
    free(big);
    for (int i = 0; i < NSMALL; i++) {
        int t;
        assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBLISH);
        assert_int_equal(fb_number(&b, &t), i);
        assert_int_equal(t, 1);
    }
    uint64_t before = direct_sent(cl);

    /* four threads at once, QoS 1: each one's publishes in its order, each PUBACKed once */
    enum { THREADS = 4, EACH = 250 };
    usleep(50000);
    publisher pubs[THREADS];
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        pubs[t] = (publisher){cl, t, EACH};
        assert_int_equal(pthread_create(&th[t], NULL, publish_numbered, &pubs[t]), 0);
    }
    int next[THREADS] = {0};
    bool seen[65536] = {false};
    for (int n = 0; n < THREADS * EACH; n++) {
        int t;
        assert_int_equal(fb_read(&b, &p), BT_MQTT_PUBLISH);
        int i = fb_number(&b, &t);
        assert_true(t >= 0 && t < THREADS);
        assert_int_equal(i, next[t]++);
        assert_int_equal(b.qos, 1);
        assert_false(seen[p.ack.packet_id]); /* ids of messages in flight are distinct */
        seen[p.ack.packet_id] = true;
        if (n % 3 == 2 || n + 1 == THREADS * EACH) { /* ack in runs, as a broker may */
            for (int id = 0; id < 65536; id++)
                if (seen[id]) {
                    fb_ack(&b, BT_MQTT_PUBACK, (uint16_t)id, 0);
                    seen[id] = false;
                }
        }
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(completed(&k, 1 + THREADS * EACH), 1 + THREADS * EACH);
    for (int i = 0; i < 100 && bt_mqtt_client_pending(cl) > 0; i++)
        usleep(10000);
    assert_int_equal(bt_mqtt_client_pending(cl), 0);
    assert_true(direct_sent(cl) > before); /* the lone ones at least */
    assert_true(fb_quiet(&b));
    pthread_mutex_lock(&k.mu);
    for (int i = 0; i < 4; i++)
        assert_int_equal(k.status[i], BT_MQTT_OK);
    pthread_mutex_unlock(&k.mu);

    bt_mqtt_client_destroy(cl);
    close(b.fd);
    close(b.lsn);
}

/* TLS (one SSL object, the thread's) and WebSocket (framing in the thread's buffers) links
 * never take publishes from other threads: only a plain TCP one does. */
static void test_direct_only_plain_tcp(void **state)
{
    const char *addrs[] = {"tcp://127.0.0.1:1", "ssl://127.0.0.1:1", "ws://127.0.0.1:1",
                           "wss://127.0.0.1:1"};
    for (int i = 0; i < 4; i++) {
        bt_mqtt_client_config c;
        base_cfg(&c, addrs[i], 10);
        c.insecure = true;
        bt_mqtt_client *cl = bt_mqtt_client_create(&c, NULL, err, sizeof err);
        bt_cfg_free(&bt_mqtt_client_schema, &c);
        assert_non_null(cl);
        cl->state = MC_UP; /* as if connected; never started */
        assert_int_equal(mc_tr_direct_ok(cl), i == 0);
        cl->state = MC_IDLE;
        bt_mqtt_client_destroy(cl);
    }
}

int main(void)
{
    bt_log_set_level(BT_LOG_ERROR); /* connect failures are expected here */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_defaults),
        cmocka_unit_test(test_schema_full),
        cmocka_unit_test(test_schema_errors),
        cmocka_unit_test(test_address),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_queue_bounds_and_cancel),
        cmocka_unit_test(test_message_length_max),
        cmocka_unit_test(test_subscriptions_bookkeeping),
        cmocka_unit_test(test_unreachable_stops_promptly),
        cmocka_unit_test(test_ack_token_stale_after_reconnect),
        cmocka_unit_test(test_v5_qos2),
        cmocka_unit_test(test_direct_publish_order),
        cmocka_unit_test(test_direct_only_plain_tcp),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
