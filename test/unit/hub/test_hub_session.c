/* A hub session driven from memory: CONNECT, SUBSCRIBE and PUBLISH bytes in, delivery to
 * another session's output, QoS 1 window and PUBACK bookkeeping, config validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "../../../hub/hub.h"
#include "../../../hub/store.h"
#include "baetyl/util.h"

static const char CONF[] = "listen: [tcp://127.0.0.1:1]\n"
                           "message: {egress: {qos1: {buffer: {size: 2}}}}\n"
                           "principals:\n"
                           "  - username: u\n    password: p\n"
                           "    permissions:\n"
                           "      - {action: pub, permit: ['#']}\n"
                           "      - {action: sub, permit: ['#']}\n";

static const uint8_t CONNECT_A[] = {0x10, 0x13, 0, 4,   'M', 'Q', 'T', 'T', 4, 0xC2, 0,
                                    60,   0,    1, 'a', 0,   1,   'u', 0,   1, 'p'};
static const uint8_t CONNECT_B[] = {0x10, 0x13, 0, 4,   'M', 'Q', 'T', 'T', 4, 0xC2, 0,
                                    60,   0,    1, 'b', 0,   1,   'u', 0,   1, 'p'};
static const uint8_t SUB_T1[] = {0x82, 0x06, 0, 1, 0, 1, 't', 1};
static const uint8_t PUB_T_Q1[] = {0x32, 0x06, 0, 1, 't', 0, 9, 'x'};

/* A hub on CONF without a store and two connections on it, not yet connected. */
static void two_conns(hub *h, hub_config *cfg, conn **a, conn **b)
{
    char err[256];
    assert_int_equal(
        bt_cfg_load_string(&hub_config_schema, cfg, CONF, strlen(CONF), err, sizeof err), 0);
    assert_int_equal(hub_init(h, cfg, NULL, err, sizeof err), 0);
    *a = conn_new(h, transport_mem_new());
    *b = conn_new(h, transport_mem_new());
}

static void test_deliver_and_window(void **state)
{
    hub_config cfg;
    hub h;
    conn *a, *b;
    two_conns(&h, &cfg, &a, &b);
    assert_int_equal(conn_feed(a, CONNECT_A, sizeof CONNECT_A), 0);
    assert_int_equal(a->state, CONN_ACTIVE);
    assert_int_equal(conn_feed(a, SUB_T1, sizeof SUB_T1), 0);
    assert_int_equal(a->nsubs, 1);
    assert_int_equal(conn_feed(b, CONNECT_B, sizeof CONNECT_B), 0);
    /* three QoS 1 publishes: committed at the end of the turn */
    for (int i = 0; i < 3; i++)
        assert_int_equal(conn_feed(b, PUB_T_Q1, sizeof PUB_T_Q1), 0);
    assert_int_equal(h.npend, 3);
    hub_commit(&h);
    assert_int_equal(h.last_seq, 3);
    /* window of 2: two in flight, the third waits (catch-up) */
    assert_int_equal(a->qlen, 2);
    assert_true(a->catchup);
    assert_int_equal(session_offset(a), 0);
    assert_int_equal(handle_puback(a, a->q[a->qhead].pid), 0);
    assert_int_equal(a->qlen, 1);
    assert_int_equal(session_offset(a), 1);
    hub_turn_end(&h);
    /* without a store the catch-up cannot read the log and goes back to live */
    assert_false(a->catchup);

    /* a publish to '$x' is invalid: the connection closes */
    static const uint8_t BAD[] = {0x30, 0x04, 0, 2, '$', 'x'};
    assert_int_equal(conn_feed(b, BAD, sizeof BAD), -1);
    assert_int_equal(b->state, CONN_CLOSED);
    hub_turn_end(&h);
    hub_shutdown(&h);
    bt_cfg_free(&hub_config_schema, &cfg);
}

/* Waits until the writer has committed the job in flight (the loop has not taken it back). */
static void wait_committed(store *st)
{
    struct pollfd p = {store_done_fd(st), POLLIN, 0};
    assert_int_equal(poll(&p, 1, 10000), 1);
}

/* A group the writer committed is in the log before the loop takes it back and dispatches
 * it: a log pump that reads to the end meanwhile sends part of it, and the dispatch must
 * not send that again (CI saw ten messages twice over wss). */
static void test_pump_does_not_resend_an_undispatched_group(void **state)
{
    (void)state;
    char dir[512], err[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/hub-session-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    store_options o = {.dir = dir, .sync = 1};
    store *st;
    assert_int_equal(store_open(&o, &st, err, sizeof err), 0);
    hub_config cfg;
    hub h;
    assert_int_equal(
        bt_cfg_load_string(&hub_config_schema, &cfg, CONF, strlen(CONF), err, sizeof err), 0);
    assert_int_equal(hub_init(&h, &cfg, st, err, sizeof err), 0);
    h.epfd = epoll_create1(EPOLL_CLOEXEC); /* as in the loop: commits go to the writer */
    conn *a = conn_new(&h, transport_mem_new()), *b = conn_new(&h, transport_mem_new());
    assert_int_equal(conn_feed(a, CONNECT_A, sizeof CONNECT_A), 0);
    assert_int_equal(conn_feed(a, SUB_T1, sizeof SUB_T1), 0);
    assert_int_equal(conn_feed(b, CONNECT_B, sizeof CONNECT_B), 0);
    /* three publishes: the window (2) takes two, the third is left to the log */
    for (int i = 0; i < 3; i++)
        assert_int_equal(conn_feed(b, PUB_T_Q1, sizeof PUB_T_Q1), 0);
    hub_commit(&h);
    wait_committed(st);
    hub_commit_done(&h, false);
    assert_int_equal(h.ctr.out_qos[1], 2);
    assert_true(a->catchup);
    /* a fourth, committed by the writer but not yet taken back by the loop */
    assert_int_equal(conn_feed(b, PUB_T_Q1, sizeof PUB_T_Q1), 0);
    hub_commit(&h);
    wait_committed(st);
    /* the window empties: the pump reads seqs 3 and 4, to the end of the log */
    for (int i = 0; i < 2; i++)
        assert_int_equal(handle_puback(a, a->q[a->qhead].pid), 0);
    hub_turn_end(&h);
    assert_int_equal(h.ctr.out_qos[1], 4);
    /* now the loop takes the group back and dispatches seq 4: already sent */
    hub_commit_done(&h, false);
    while (a->qlen)
        assert_int_equal(handle_puback(a, a->q[a->qhead].pid), 0);
    hub_turn_end(&h);
    assert_int_equal(h.ctr.out_qos[1], 4);
    assert_false(a->catchup);
    hub_shutdown(&h);
    bt_cfg_free(&hub_config_schema, &cfg);
    store_close(st);
    assert_int_equal(bt_rm_rf(dir, err, sizeof err), 0);
}

static void test_config_errors(void **state)
{
    hub_config cfg;
    char err[256];
    const char *cyc = "subscriptions:\n"
                      "  - {source: {topic: a}, target: {topic: b}}\n"
                      "  - {source: {topic: b}, target: {topic: a}}\n";
    assert_int_equal(
        bt_cfg_load_string(&hub_config_schema, &cfg, cyc, strlen(cyc), err, sizeof err), -1);
    assert_non_null(strstr(err, "cycle"));
    const char *dup =
        "principals:\n  - {username: x, password: y}\n  - {username: x, password: z}\n";
    assert_int_equal(
        bt_cfg_load_string(&hub_config_schema, &cfg, dup, strlen(dup), err, sizeof err), -1);
    assert_non_null(strstr(err, "duplicate username"));
    const char *ok =
        "subscriptions:\n  - {source: {topic: 'a/#', qos: 1}, target: {topic: b/c, qos: 1}}\n";
    assert_int_equal(bt_cfg_load_string(&hub_config_schema, &cfg, ok, strlen(ok), err, sizeof err),
                     0);
    assert_int_equal(cfg.length_max, 32 * 1024);
    assert_int_equal(cfg.retry_interval_ms, 20000);
    assert_int_equal(cfg.retention_ms, 48LL * 3600 * 1000);
    assert_string_equal(cfg.storage_dir, "var/db/baetyl/data");
    bt_cfg_free(&hub_config_schema, &cfg);
}

/* "$share/<group>/<filter>": the filter inside, or NULL when it is not a valid one. */
static void test_shared_filter(void **state)
{
    (void)state;
    static const char *ok[][2] = {
        {"$share/g/t", "t"}, {"$share/g/a/+/#", "a/+/#"}, {"$share/grp/#", "#"}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        const char *in = shared_filter(ok[i][0], strlen(ok[i][0]));
        assert_non_null(in);
        assert_string_equal(in, ok[i][1]);
    }
    static const char *bad[] = {"$share/g",    "$share/g/",  "$share//t",
                                "$share/g+/t", "$share/#/t", "$share/g/a#",
                                "$shar/g/t",   "share/g/t",  "$share/g/$x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(shared_filter(bad[i], strlen(bad[i])));
    char big[300] = "$share/g/";
    memset(big + 9, 'a', sizeof big - 10);
    big[sizeof big - 1] = 0;
    assert_null(shared_filter(big, strlen(big)));
    assert_true(shared_match("$share/g/a/+", "a/b"));
    assert_false(shared_match("$share/g/a/+", "$share/g/a/b"));
    assert_true(shared_match("a/#", "a/b"));
}

/* Two sessions in one group share its messages, the group holds what no window has room
 * for, and goes when its last member left. */
static void test_shared_group(void **state)
{
    (void)state;
    hub_config cfg;
    hub h;
    conn *a, *b;
    two_conns(&h, &cfg, &a, &b);
    assert_int_equal(conn_feed(a, CONNECT_A, sizeof CONNECT_A), 0);
    assert_int_equal(conn_feed(b, CONNECT_B, sizeof CONNECT_B), 0);
    static const uint8_t SUB_SH[] = {0x82, 0x0F, 0,   1,   0,   10,  '$', 's', 'h',
                                     'a',  'r',  'e', '/', 'g', '/', 't', 1};
    assert_int_equal(conn_feed(a, SUB_SH, sizeof SUB_SH), 0);
    assert_int_equal(conn_feed(b, SUB_SH, sizeof SUB_SH), 0);
    assert_int_equal(h.shared.n, 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(conn_feed(b, PUB_T_Q1, sizeof PUB_T_Q1), 0);
    hub_commit(&h);
    assert_int_equal(a->qlen, 2);
    assert_int_equal(b->qlen, 2);
    assert_true(a->q[a->qhead].shared);
    assert_int_equal(a->q[a->qhead].seq, 0); /* held in memory, not read from the log */
    /* every window full: two more wait in the group, one goes when a makes room */
    for (int i = 0; i < 2; i++)
        assert_int_equal(conn_feed(b, PUB_T_Q1, sizeof PUB_T_Q1), 0);
    hub_commit(&h);
    assert_int_equal(h.shared_queued, 2);
    assert_int_equal(handle_puback(a, a->q[a->qhead].pid), 0);
    hub_turn_end(&h);
    assert_int_equal(a->qlen, 2);
    assert_int_equal(h.shared_queued, 1);
    /* a leaves with two unacknowledged: b has no room, they wait in the group too */
    conn_close(a, "test");
    assert_int_equal(b->qlen, 2);
    assert_int_equal(h.shared_queued, 3);
    hub_tick(&h);
    assert_int_equal(h.shared.n, 1);
    /* the last member leaves: nobody takes them (counted), the group goes */
    conn_close(b, "test");
    hub_turn_end(&h);
    assert_int_equal(h.shared_queued, 0);
    assert_int_equal(h.ctr.shared_dropped, 3);
    hub_tick(&h);
    assert_int_equal(h.shared.n, 0);
    hub_turn_end(&h);
    hub_shutdown(&h);
    bt_cfg_free(&hub_config_schema, &cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deliver_and_window),
        cmocka_unit_test(test_pump_does_not_resend_an_undispatched_group),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_shared_filter),
        cmocka_unit_test(test_shared_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
