/* The gRPC function client and server (function.h), C client against C server on
 * 127.0.0.1: every field through the wire, sizes 0 / 1 MiB / over the limit, handler
 * errors, deadlines, an address nobody listens on, concurrency and its limit, and stops
 * with calls in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "baetyl/function.h"
#include "baetyl/util.h"

/* ---- helpers -------------------------------------------------------------------------- */

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A port nobody listens on (bound then closed). */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* What the test handler does, and what it saw. */
typedef struct {
    long sleep_ms;            /* before answering */
    const char *fail;         /* answer with this error */
    const char *fail_payload; /* answer "bad input" to the requests with this payload */
    size_t reply_size;        /* > 0: reply with this many 'r' bytes instead of an echo */
    atomic_int running, max_running, calls;
} behaviour;

/* Echoes the request with its payload, prefixed fields untouched (out starts as in). */
static int handler(const bt_fn_msg *in, bt_fn_msg *out, char *err, size_t errlen, void *arg)
{
    behaviour *b = arg;
    int r = atomic_fetch_add(&b->running, 1) + 1;
    int m = atomic_load(&b->max_running);
    while (r > m && !atomic_compare_exchange_weak(&b->max_running, &m, r))
        ;
    atomic_fetch_add(&b->calls, 1);
    if (b->sleep_ms)
        sleep_ms(b->sleep_ms);
    atomic_fetch_sub(&b->running, 1);
    if (b->fail) {
        snprintf(err, errlen, "%s", b->fail);
        return -1;
    }
    if (b->fail_payload && in->payload_len == strlen(b->fail_payload) &&
        memcmp(in->payload, b->fail_payload, in->payload_len) == 0) {
        snprintf(err, errlen, "bad input");
        return -1;
    }
    if (b->reply_size) {
        uint8_t *p = malloc(b->reply_size);
        assert_non_null(p);
        memset(p, 'r', b->reply_size);
        int rc = bt_fn_msg_set_payload(out, p, b->reply_size);
        free(p);
        return rc;
    }
    return bt_fn_msg_set_payload(out, in->payload, in->payload_len);
}

typedef struct {
    bt_fn_server *srv;
    char addr[64];
    behaviour b;
} fixture;

static fixture *start_server(const bt_fn_server_options *o)
{
    fixture *f = calloc(1, sizeof *f);
    char err[256] = "";
    assert_non_null(f);
    f->srv = bt_fn_server_start("127.0.0.1:0", o, handler, &f->b, err, sizeof err);
    if (!f->srv)
        fail_msg("server: %s", err);
    assert_true(bt_fn_server_port(f->srv) > 0);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", bt_fn_server_port(f->srv));
    return f;
}

static void stop_server(fixture *f)
{
    bt_fn_server_stop(f->srv);
    free(f);
}

static bt_fn_client *client(const char *addr, const bt_fn_client_options *o)
{
    char err[256] = "";
    bt_fn_client *c = bt_fn_client_new(addr, o, err, sizeof err);
    if (!c)
        fail_msg("client: %s", err);
    return c;
}

static bt_fn_msg sample(const char *payload, size_t len)
{
    bt_fn_msg m = {
        .id = 0xFFFFFFFFFFFFFFF0ull,
        .qos = 1,
        .topic = "t/in",
        .payload = (uint8_t *)payload,
        .payload_len = len,
        .timestamp = -1234567890123LL,
        .function_name = "sayhi",
        .function_invoke_id = "50f8f102-2b8c-4904-86df-0728811a5a4b",
    };
    return m;
}

static void assert_same(const bt_fn_msg *a, const bt_fn_msg *b)
{
    assert_true(a->id == b->id);
    assert_int_equal(a->qos, b->qos);
    assert_string_equal(a->topic, b->topic);
    assert_int_equal(a->payload_len, b->payload_len);
    if (a->payload_len)
        assert_memory_equal(a->payload, b->payload, a->payload_len);
    assert_true(a->timestamp == b->timestamp);
    assert_string_equal(a->function_name, b->function_name);
    assert_string_equal(a->function_invoke_id, b->function_invoke_id);
}

/* ---- messages ------------------------------------------------------------------------- */

static void test_msg_roundtrip(void **state)
{
    static const char bin[] = {'a', 0, 'b', (char)0xff, 0};
    bt_fn_msg in = sample(bin, sizeof bin), out, copy;
    uint8_t *buf;
    size_t len;
    char err[128];
    assert_int_equal(bt_fn_msg_encode(&in, &buf, &len), 0);
    assert_int_equal(bt_fn_msg_decode(buf, len, &out, err, sizeof err), 0);
    assert_same(&in, &out);
    assert_int_equal(out.payload[out.payload_len], 0); /* spare NUL after the payload */
    free(buf);

    assert_int_equal(bt_fn_msg_copy(&copy, &out), 0);
    assert_same(&out, &copy);
    assert_ptr_not_equal(copy.topic, out.topic);
    assert_int_equal(bt_fn_msg_set_str(&copy.topic, "other"), 0);
    assert_string_equal(copy.topic, "other");
    assert_int_equal(bt_fn_msg_set_payload(&copy, "xy", 2), 0);
    assert_int_equal(copy.payload_len, 2);
    bt_fn_msg_clear(&copy);
    assert_null(copy.topic);
    assert_int_equal(copy.payload_len, 0);
    bt_fn_msg_clear(&out);
    bt_fn_msg_clear(NULL);

    /* An all-default message encodes to nothing and decodes with "" strings. */
    bt_fn_msg empty = {0};
    assert_int_equal(bt_fn_msg_encode(&empty, &buf, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(bt_fn_msg_decode(buf, len, &out, err, sizeof err), 0);
    assert_string_equal(out.topic, "");
    assert_string_equal(out.function_name, "");
    assert_int_equal(out.payload_len, 0);
    bt_fn_msg_clear(&out);
    free(buf);
}

static void test_msg_decode_garbage(void **state)
{
    bt_fn_msg out;
    char err[128] = "";
    /* Field 3 (Topic) claims 100 bytes but 1 follows; a bare varint key; wire type 7. */
    static const uint8_t trunc[] = {0x1a, 100, 'x'};
    static const uint8_t key_only[] = {0x08};
    static const uint8_t bad_type[] = {0x0f, 0x00};
    assert_int_equal(bt_fn_msg_decode(trunc, sizeof trunc, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "invalid FunctionMessage"));
    assert_null(out.topic);
    assert_int_equal(bt_fn_msg_decode(key_only, sizeof key_only, &out, err, sizeof err), -1);
    assert_int_equal(bt_fn_msg_decode(bad_type, sizeof bad_type, &out, err, sizeof err), -1);
    /* Strings must be UTF-8, as in every proto3 implementation. */
    static const uint8_t bad_utf8[] = {0x1a, 0x02, 0xff, 0xfe};
    static const uint8_t overlong[] = {0x5a, 0x02, 0xc0, 0xaf};
    assert_int_equal(bt_fn_msg_decode(bad_utf8, sizeof bad_utf8, &out, err, sizeof err), -1);
    assert_string_equal(err, "invalid FunctionMessage: Topic is not valid UTF-8");
    assert_int_equal(bt_fn_msg_decode(overlong, sizeof overlong, &out, err, sizeof err), -1);
    assert_string_equal(err, "invalid FunctionMessage: FunctionName is not valid UTF-8");
    static const uint8_t utf8[] = {0x1a, 0x03, 0xe4, 0xb8, 0xad};
    assert_int_equal(bt_fn_msg_decode(utf8, sizeof utf8, &out, err, sizeof err), 0);
    assert_string_equal(out.topic, "\xe4\xb8\xad");
    bt_fn_msg_clear(&out);
    /* An unknown field is skipped, as protobuf requires. */
    static const uint8_t unknown[] = {0x98, 0x01, 0x05, 0x10, 0x01};
    assert_int_equal(bt_fn_msg_decode(unknown, sizeof unknown, &out, err, sizeof err), 0);
    assert_int_equal(out.qos, 1);
    bt_fn_msg_clear(&out);
    assert_string_equal(bt_fn_code_name(2), "Unknown");
    assert_string_equal(bt_fn_code_name(4), "DeadlineExceeded");
    assert_string_equal(bt_fn_code_name(99), "Code(99)");
}

/* ---- calls ---------------------------------------------------------------------------- */

static void test_echo_every_field(void **state)
{
    fixture *f = start_server(NULL);
    bt_fn_client *c = client(f->addr, NULL);
    bt_fn_msg in = sample("{\"id\":1}", 8), out;
    char err[256] = "";
    int code = -1;
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 5000, &code, err, sizeof err), BT_FN_OK);
    assert_int_equal(code, 0);
    assert_same(&in, &out);
    bt_fn_msg_clear(&out);

    /* Empty payload and NULL strings: sent as "" / empty, echoed as such. */
    bt_fn_msg bare = {.id = 7};
    assert_int_equal(bt_fn_call(c, &bare, &out, err, sizeof err), BT_FN_OK);
    assert_true(out.id == 7);
    assert_int_equal(out.payload_len, 0);
    assert_string_equal(out.topic, "");
    bt_fn_msg_clear(&out);
    assert_int_equal(atomic_load(&f->b.calls), 2);
    bt_fn_client_free(c);
    stop_server(f);
}

static void test_unix_socket(void **state)
{
    char dir[] = "/tmp/bt-fn-XXXXXX", addr[128], err[256] = "";
    assert_non_null(mkdtemp(dir));
    snprintf(addr, sizeof addr, "unix:%s/fn.sock", dir);
    behaviour b = {0};
    bt_fn_server *s = bt_fn_server_start(addr, NULL, handler, &b, err, sizeof err);
    if (!s)
        fail_msg("server: %s", err);
    assert_int_equal(bt_fn_server_port(s), 0);
    bt_fn_client *c = client(addr, NULL);
    bt_fn_msg in = sample("unix", 4), out;
    assert_int_equal(bt_fn_call(c, &in, &out, err, sizeof err), BT_FN_OK);
    assert_same(&in, &out);
    bt_fn_msg_clear(&out);
    bt_fn_client_free(c);
    bt_fn_server_stop(s);
    char path[160];
    snprintf(path, sizeof path, "%s/fn.sock", dir);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
}

static void test_one_mib(void **state)
{
    fixture *f = start_server(NULL);
    bt_fn_client *c = client(f->addr, NULL);
    size_t n = 1 << 20;
    char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(i * 7);
    bt_fn_msg in = sample(p, n), out;
    char err[256] = "";
    assert_int_equal(bt_fn_call(c, &in, &out, err, sizeof err), BT_FN_OK);
    assert_same(&in, &out);
    bt_fn_msg_clear(&out);
    free(p);
    bt_fn_client_free(c);
    stop_server(f);
}

static void test_size_limits(void **state)
{
    bt_fn_server_options so = {.max_msg_size = 64 * 1024};
    fixture *f = start_server(&so);
    bt_fn_client *c = client(f->addr, NULL);
    size_t n = 100 * 1024;
    char *p = calloc(1, n);
    bt_fn_msg in = sample(p, n), out;
    char err[256] = "";
    int code = -1;

    /* Request over the server's limit: refused by gRPC, the handler never runs. */
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 5000, &code, err, sizeof err), BT_FN_EFAIL);
    assert_int_equal(code, BT_FN_CODE_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err, "rpc error: code = ResourceExhausted desc = "));
    assert_non_null(strstr(err, "larger than max"));
    assert_int_equal(atomic_load(&f->b.calls), 0);
    assert_null(out.topic);

    /* A request just under the limit passes. */
    in.payload_len = 60 * 1024;
    assert_int_equal(bt_fn_call(c, &in, &out, err, sizeof err), BT_FN_OK);
    bt_fn_msg_clear(&out);

    /* A reply over the server's limit: the client learns why. */
    in.payload_len = 1;
    f->b.reply_size = 70 * 1024;
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 5000, &code, err, sizeof err), BT_FN_EFAIL);
    assert_int_equal(code, BT_FN_CODE_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err, "reply larger than max"));
    bt_fn_client_free(c);

    /* The client's own limit, both ways. */
    bt_fn_client_options co = {.max_msg_size = 32 * 1024};
    c = client(f->addr, &co);
    f->b.reply_size = 0;
    in.payload_len = 40 * 1024;
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 5000, &code, err, sizeof err), BT_FN_EFAIL);
    assert_int_equal(code, BT_FN_CODE_RESOURCE_EXHAUSTED);
    in.payload_len = 1;
    f->b.reply_size = 40 * 1024;
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 5000, &code, err, sizeof err), BT_FN_EFAIL);
    assert_int_equal(code, BT_FN_CODE_RESOURCE_EXHAUSTED);
    free(p);
    bt_fn_client_free(c);
    stop_server(f);
}

static void test_handler_error(void **state)
{
    fixture *f = start_server(NULL);
    f->b.fail = "[UserCodeInvoke] ZeroDivisionError: division by zero";
    bt_fn_client *c = client(f->addr, NULL);
    bt_fn_msg in = sample("x", 1), out;
    char err[256] = "";
    int code = -1;
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 5000, &code, err, sizeof err), BT_FN_EFAIL);
    assert_int_equal(code, BT_FN_CODE_UNKNOWN);
    assert_string_equal(err, "rpc error: code = Unknown desc = [UserCodeInvoke] "
                             "ZeroDivisionError: division by zero");
    bt_fn_client_free(c);
    stop_server(f);
}

static void test_deadline(void **state)
{
    fixture *f = start_server(NULL);
    f->b.sleep_ms = 800;
    bt_fn_client_options co = {.timeout_ms = 150};
    bt_fn_client *c = client(f->addr, &co);
    bt_fn_msg in = sample("x", 1), out;
    char err[256] = "";
    int code = -1;
    long t0 = now_ms();
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 0, &code, err, sizeof err), BT_FN_EUNAVAILABLE);
    long took = now_ms() - t0;
    assert_int_equal(code, BT_FN_CODE_DEADLINE_EXCEEDED);
    assert_non_null(strstr(err, "rpc error: code = DeadlineExceeded"));
    assert_true(took >= 140 && took < 700);
    /* The per-call timeout overrides the client's. */
    f->b.sleep_ms = 200;
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 3000, &code, err, sizeof err), BT_FN_OK);
    bt_fn_msg_clear(&out);
    bt_fn_client_free(c);
    stop_server(f);
}

static void test_unavailable(void **state)
{
    char addr[64], err[512] = "";
    snprintf(addr, sizeof addr, "127.0.0.1:%d", dead_port());
    bt_fn_client *c = client(addr, NULL);
    bt_fn_msg in = sample("x", 1), out;
    int code = -1;
    long t0 = now_ms();
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 5000, &code, err, sizeof err), BT_FN_EUNAVAILABLE);
    assert_int_equal(code, BT_FN_CODE_UNAVAILABLE);
    assert_non_null(strstr(err, "rpc error: code = Unavailable desc = "));
    assert_true(now_ms() - t0 < 3000); /* fails fast, not at the deadline */
    /* Waiting for a connection that never comes ends at the timeout. */
    t0 = now_ms();
    assert_int_equal(bt_fn_client_connect(c, 300, err, sizeof err), BT_FN_EUNAVAILABLE);
    assert_non_null(strstr(err, "timed out"));
    assert_true(now_ms() - t0 >= 290);
    bt_fn_client_free(c);

    /* wait_for_ready waits for the server until the timeout, then reports it unavailable. */
    bt_fn_client_options wait = {.timeout_ms = 300, .wait_for_ready = true};
    c = client(addr, &wait);
    assert_int_equal(bt_fn_call(c, &in, &out, err, sizeof err), BT_FN_EUNAVAILABLE);
    bt_fn_client_free(c);
}

/* Starts a server on a given port after a delay. */
typedef struct {
    char addr[64];
    behaviour b;
    bt_fn_server *srv;
} late_server;

static void *late_start(void *p)
{
    late_server *l = p;
    char err[256];
    sleep_ms(300);
    l->srv = bt_fn_server_start(l->addr, NULL, handler, &l->b, err, sizeof err);
    return NULL;
}

static void test_wait_for_server(void **state)
{
    late_server l = {0};
    snprintf(l.addr, sizeof l.addr, "127.0.0.1:%d", dead_port());
    pthread_t th;
    pthread_create(&th, NULL, late_start, &l);
    bt_fn_client *c = client(l.addr, NULL);
    char err[256] = "";
    assert_int_equal(bt_fn_client_connect(c, 5000, err, sizeof err), BT_FN_OK);
    pthread_join(th, NULL);
    assert_non_null(l.srv);
    bt_fn_msg in = sample("hi", 2), out;
    assert_int_equal(bt_fn_call(c, &in, &out, err, sizeof err), BT_FN_OK);
    assert_same(&in, &out);
    bt_fn_msg_clear(&out);
    bt_fn_client_free(c);
    bt_fn_client_options wait = {.timeout_ms = 3000, .wait_for_ready = true};
    c = client(l.addr, &wait);
    assert_int_equal(bt_fn_call(c, &in, &out, err, sizeof err), BT_FN_OK);
    bt_fn_client_free(c);
    assert_same(&in, &out);
    bt_fn_msg_clear(&out);
    bt_fn_server_stop(l.srv);
}

/* ---- concurrency ---------------------------------------------------------------------- */

typedef struct {
    bt_fn_client *c;
    int thread, calls, ok;
    char err[256];
    int rc[8];
} caller;

static void *call_many(void *p)
{
    caller *k = p;
    for (int i = 0; i < k->calls; i++) {
        char payload[64];
        int n = snprintf(payload, sizeof payload, "{\"thread\":%d,\"i\":%d}", k->thread, i);
        bt_fn_msg in = sample(payload, (size_t)n), out;
        int rc = bt_fn_call(k->c, &in, &out, k->err, sizeof k->err);
        if (i < 8)
            k->rc[i] = rc;
        if (rc == BT_FN_OK && out.payload_len == (size_t)n &&
            memcmp(out.payload, payload, (size_t)n) == 0)
            k->ok++;
        bt_fn_msg_clear(&out);
    }
    return NULL;
}

static void run_callers(bt_fn_client *c, int nthreads, int calls, caller *ks)
{
    pthread_t th[16];
    for (int i = 0; i < nthreads; i++) {
        ks[i] = (caller){.c = c, .thread = i, .calls = calls};
        pthread_create(&th[i], NULL, call_many, &ks[i]);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
}

static void test_eight_threads(void **state)
{
    bt_fn_server_options so = {.workers = 8};
    fixture *f = start_server(&so);
    f->b.sleep_ms = 20;
    bt_fn_client *c = client(f->addr, NULL);
    caller ks[8];
    long t0 = now_ms();
    run_callers(c, 8, 10, ks);
    long took = now_ms() - t0;
    for (int i = 0; i < 8; i++)
        assert_int_equal(ks[i].ok, 10);
    assert_int_equal(atomic_load(&f->b.calls), 80);
    /* Calls really overlapped: 80 x 20 ms one after the other would take 1.6 s. */
    assert_true(atomic_load(&f->b.max_running) >= 4);
    assert_true(took < 1200);
    bt_fn_client_free(c);
    stop_server(f);
}

/* What async callbacks saw. */
typedef struct {
    int ok, failed;
    uint64_t ids[64];
    char err[256];
} async_seen;

static void on_done(void *arg, int rc, int code, bt_fn_msg *out, const char *err)
{
    async_seen *a = arg;
    if (rc == BT_FN_OK) {
        assert_int_equal(code, BT_FN_CODE_OK);
        assert_int_equal(out->payload_len, 2);
        a->ids[a->ok++] = out->id;
        return;
    }
    a->failed++;
    assert_null(out->payload);
    snprintf(a->err, sizeof a->err, "%s", err);
}

/* 64 calls in flight from one thread, completions taken in batches; then a failure comes
 * through the callback with Go grpc's text. */
static void test_async_calls(void **state)
{
    bt_fn_server_options so = {.workers = 4};
    fixture *f = start_server(&so);
    f->b.sleep_ms = 5;
    bt_fn_client *c = client(f->addr, NULL);
    bt_fn_async *q = bt_fn_async_new();
    assert_non_null(q);
    async_seen seen = {0};
    char err[256] = "";
    for (uint64_t i = 0; i < 64; i++) {
        bt_fn_msg in = sample("hi", 2);
        in.id = i;
        assert_int_equal(bt_fn_call_start(c, q, &in, 5000, on_done, &seen, err, sizeof err), 0);
    }
    int polls = 0;
    while (seen.ok + seen.failed < 64) {
        assert_true(bt_fn_async_poll(q, 5000) > 0);
        polls++;
    }
    assert_int_equal(seen.ok, 64);
    assert_true(polls < 64); /* several completions per poll */
    bool got[64] = {false};
    for (int i = 0; i < 64; i++)
        got[seen.ids[i]] = true;
    for (int i = 0; i < 64; i++)
        assert_true(got[i]);
    assert_true(atomic_load(&f->b.max_running) >= 2);
    assert_int_equal(bt_fn_async_poll(q, 10), 0); /* nothing left */

    f->b.fail = "boom";
    bt_fn_msg in = sample("x", 1);
    assert_int_equal(bt_fn_call_start(c, q, &in, 5000, on_done, &seen, err, sizeof err), 0);
    assert_int_equal(bt_fn_async_poll(q, 5000), 1);
    assert_int_equal(seen.failed, 1);
    assert_string_equal(seen.err, "rpc error: code = Unknown desc = boom");
    bt_fn_async_free(q);
    bt_fn_client_free(c);
    stop_server(f);
}

static void test_workers_limit(void **state)
{
    bt_fn_server_options so = {.workers = 2};
    fixture *f = start_server(&so);
    f->b.sleep_ms = 50;
    bt_fn_client *c = client(f->addr, NULL);
    caller ks[6];
    run_callers(c, 6, 3, ks);
    for (int i = 0; i < 6; i++)
        assert_int_equal(ks[i].ok, 3);
    assert_int_equal(atomic_load(&f->b.max_running), 2);
    bt_fn_client_free(c);
    stop_server(f);
}

/* The server's MAX_CONCURRENT_STREAMS (`concurrent`) holds: the client's streams beyond it
 * wait (or, refused before the client saw the setting, are sent again), none is lost. */
static void test_concurrent_streams_limit(void **state)
{
    bt_fn_server_options so = {.workers = 4, .concurrent = 2};
    fixture *f = start_server(&so);
    f->b.sleep_ms = 30;
    bt_fn_client *c = client(f->addr, NULL);
    bt_fn_async *q = bt_fn_async_new();
    async_seen seen = {0};
    char err[256] = "";
    for (uint64_t i = 0; i < 12; i++) {
        bt_fn_msg in = sample("hi", 2);
        in.id = i;
        assert_int_equal(bt_fn_call_start(c, q, &in, 5000, on_done, &seen, err, sizeof err), 0);
    }
    while (seen.ok + seen.failed < 12)
        assert_true(bt_fn_async_poll(q, 5000) > 0);
    assert_int_equal(seen.ok, 12);
    assert_int_equal(atomic_load(&f->b.max_running), 2);
    bt_fn_async_free(q);
    bt_fn_client_free(c);
    stop_server(f);
}

/* A client dials again once its server went away and another listens at the address. */
static void test_reconnect(void **state)
{
    fixture *f = start_server(NULL);
    bt_fn_client *c = client(f->addr, NULL);
    bt_fn_msg in = sample("hi", 2), out;
    char err[256] = "", addr[64];
    int code;
    assert_int_equal(bt_fn_call(c, &in, &out, err, sizeof err), BT_FN_OK);
    bt_fn_msg_clear(&out);
    snprintf(addr, sizeof addr, "%s", f->addr);
    stop_server(f);
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 2000, &code, err, sizeof err), BT_FN_EUNAVAILABLE);
    assert_int_equal(code, BT_FN_CODE_UNAVAILABLE);
    behaviour b = {0};
    bt_fn_server *s = bt_fn_server_start(addr, NULL, handler, &b, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(bt_fn_call(c, &in, &out, err, sizeof err), BT_FN_OK);
    assert_same(&in, &out);
    bt_fn_msg_clear(&out);
    bt_fn_client_free(c);
    bt_fn_server_stop(s);
}

/* The process's threads now (Linux /proc). */
static int threads(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    if (fp)
        fclose(fp);
    return n;
}

/* The thread count once it is n, or after 3 s (threads that were joined can linger a
 * moment in /proc under emulation). */
static int threads_become(int n)
{
    int t = threads();
    for (int i = 0; i < 60 && t != n; i++) {
        sleep_ms(50);
        t = threads();
    }
    return t;
}

/* Threads are the SDK's own and few: a server has its workers and one I/O thread, a client
 * one I/O thread from its first call on. */
static void test_threads(void **state)
{
    int base = threads_become(1); /* the earlier tests' threads are gone */
    bt_fn_server_options so = {.workers = 2};
    fixture *f = start_server(&so);
    assert_int_equal(threads_become(base + 3), base + 3);
    bt_fn_client *c = client(f->addr, NULL);
    assert_int_equal(threads(), base + 3); /* lazily */
    bt_fn_msg in = sample("hi", 2), out;
    char err[256] = "";
    assert_int_equal(bt_fn_call(c, &in, &out, err, sizeof err), BT_FN_OK);
    bt_fn_msg_clear(&out);
    assert_int_equal(threads_become(base + 4), base + 4);
    bt_fn_client_free(c);
    stop_server(f);
    assert_int_equal(threads_become(base), base);
}

/* ---- stop ----------------------------------------------------------------------------- */

static void test_stop_graceful_in_flight(void **state)
{
    fixture *f = start_server(NULL);
    f->b.sleep_ms = 400;
    bt_fn_client *c = client(f->addr, NULL);
    caller ks[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        ks[i] = (caller){.c = c, .thread = i, .calls = 1};
        pthread_create(&th[i], NULL, call_many, &ks[i]);
    }
    while (atomic_load(&f->b.running) < 4)
        sleep_ms(5);
    long t0 = now_ms();
    bt_fn_server_stop(f->srv);
    long took = now_ms() - t0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ks[i].ok, 1); /* finished within the grace */
    }
    assert_true(took >= 250 && took < 3000);
    /* Nobody listens any more. */
    bt_fn_msg in = sample("x", 1), out;
    char err[256];
    assert_int_equal(bt_fn_call(c, &in, &out, err, sizeof err), BT_FN_EUNAVAILABLE);
    free(f);
    bt_fn_client_free(c);
}

static void test_stop_cancels_after_grace(void **state)
{
    bt_fn_server_options so = {.grace_ms = 100};
    fixture *f = start_server(&so);
    f->b.sleep_ms = 1200;
    bt_fn_client *c = client(f->addr, NULL);
    caller k = {.c = c, .calls = 1};
    pthread_t th;
    pthread_create(&th, NULL, call_many, &k);
    while (atomic_load(&f->b.running) < 1)
        sleep_ms(5);
    long t0 = now_ms();
    bt_fn_server_stop(f->srv); /* returns once the handler has returned */
    long took = now_ms() - t0;
    pthread_join(th, NULL);
    assert_int_equal(k.ok, 0);
    assert_int_not_equal(k.rc[0], BT_FN_OK);
    assert_non_null(strstr(k.err, "rpc error: code = "));
    assert_true(took >= 900);
    free(f);
    bt_fn_client_free(c);
}

/* ---- bad options ---------------------------------------------------------------------- */

static void test_bad_options(void **state)
{
    char err[256] = "";
    behaviour b = {0};
    fixture *f = start_server(NULL);
    /* The port is taken: refused, not shared (gRPC would set SO_REUSEPORT). */
    assert_null(bt_fn_server_start(f->addr, NULL, handler, &b, err, sizeof err));
    assert_non_null(strstr(err, "cannot listen on"));
    stop_server(f);

    assert_null(bt_fn_server_start("", NULL, handler, &b, err, sizeof err));
    assert_non_null(strstr(err, "address required"));
    assert_null(bt_fn_server_start("127.0.0.1:0", NULL, NULL, &b, err, sizeof err));
    assert_non_null(strstr(err, "handler required"));
    assert_null(bt_fn_server_start("not an address", NULL, handler, &b, err, sizeof err));
    bt_fn_server_options so = {.cert = "/nonexistent/server.pem", .key = "/nonexistent/k.pem"};
    assert_null(bt_fn_server_start("127.0.0.1:0", &so, handler, &b, err, sizeof err));
    assert_non_null(strstr(err, "cert: cannot open /nonexistent/server.pem"));
    so = (bt_fn_server_options){.ca = "/nonexistent/ca.pem"};
    assert_null(bt_fn_server_start("127.0.0.1:0", &so, handler, &b, err, sizeof err));
    assert_non_null(strstr(err, "needs cert and key"));

    assert_null(bt_fn_client_new("", NULL, err, sizeof err));
    assert_non_null(strstr(err, "address required"));
    bt_fn_client_options co = {.cert = "/nonexistent/c.pem"};
    assert_null(bt_fn_client_new("127.0.0.1:1", &co, err, sizeof err));
    assert_non_null(strstr(err, "cert and key"));
    co = (bt_fn_client_options){.ca = "/nonexistent/ca.pem"};
    assert_null(bt_fn_client_new("127.0.0.1:1", &co, err, sizeof err));
    assert_non_null(strstr(err, "ca: cannot open /nonexistent/ca.pem"));
    bt_fn_client_free(NULL);
    bt_fn_server_stop(NULL);
}

/* What gRPC's size limits count, as protobuf-c computes it. */
static void test_encoded_size_is_exact(void **state)
{
    static uint8_t payload[300];
    const bt_fn_msg cases[] = {
        {0},
        {.id = 1,
         .qos = 1,
         .topic = "t",
         .payload = payload,
         .payload_len = 1,
         .timestamp = 1,
         .function_name = "f",
         .function_invoke_id = "i"},
        {.id = 65535,
         .qos = 1,
         .topic = "a/b/c",
         .payload = payload,
         .payload_len = 300,
         .timestamp = 1795596864,
         .function_name = "python36-sayhi",
         .function_invoke_id = "50f8f102-2b8c-4904-86df-0728811a5a4b"},
        {.id = UINT64_MAX,
         .qos = UINT32_MAX,
         .payload = payload,
         .payload_len = 127,
         .timestamp = -1},
        {.timestamp = INT64_MIN, .payload = payload, .payload_len = 128},
        {.timestamp = INT64_MAX, .topic = ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        assert_int_equal(bt_fn_msg_encode(&cases[i], &buf, &len), 0);
        assert_int_equal(bt_fn_msg_encoded_size(&cases[i]), len);
        free(buf);
    }
}

/* What a batch callback saw: the codes, errors, ids and payload sizes of its results. */
typedef struct {
    int rc, code, calls;
    size_t n;
    int codes[8];
    char errs[8][128];
    uint64_t ids[8];
    size_t lens[8];
} batch_seen;

static void on_batch(void *arg, int rc, int code, bt_fn_result *res, size_t n, const char *err)
{
    batch_seen *b = arg;
    b->calls++;
    b->rc = rc;
    b->code = code;
    b->n = n;
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        b->codes[i] = res[i].code;
        snprintf(b->errs[i], sizeof b->errs[i], "%s", res[i].err ? res[i].err : "");
        b->ids[i] = res[i].msg.id;
        b->lens[i] = res[i].msg.payload_len;
    }
    if (rc != BT_FN_OK)
        snprintf(b->errs[0], sizeof b->errs[0], "%s", err);
}

/* CallBatch: one result per message in order; a failing message fails alone with the text
 * Call would give; replies beyond the server's max come back Aborted (call again), the
 * first one always answered. */
static void test_batch_calls(void **state)
{
    bt_fn_server_options so = {.workers = 2, .max_msg_size = 4000};
    fixture *f = start_server(&so);
    f->b.fail_payload = "bad";
    bt_fn_client *c = client(f->addr, NULL);
    bt_fn_async *q = bt_fn_async_new();
    assert_non_null(q);
    const char *payloads[] = {"a", "bad", "ccc", "dd", "e"};
    bt_fn_msg ms[5];
    const bt_fn_msg *in[5];
    for (int i = 0; i < 5; i++) {
        ms[i] = sample(payloads[i], strlen(payloads[i]));
        ms[i].id = (uint64_t)i + 10;
        in[i] = &ms[i];
    }
    batch_seen seen = {0};
    char err[256] = "";
    assert_int_equal(bt_fn_call_batch_start(c, q, in, 5, 5000, on_batch, &seen, err, sizeof err),
                     BT_FN_OK);
    assert_int_equal(bt_fn_async_poll(q, 5000), 1);
    assert_int_equal(seen.rc, BT_FN_OK);
    assert_int_equal(seen.n, 5);
    for (int i = 0; i < 5; i++) {
        if (i == 1) {
            assert_int_equal(seen.codes[i], BT_FN_CODE_UNKNOWN);
            assert_string_equal(seen.errs[i], "rpc error: code = Unknown desc = bad input");
            continue;
        }
        assert_int_equal(seen.codes[i], BT_FN_CODE_OK);
        assert_int_equal(seen.ids[i], (uint64_t)i + 10);
        assert_int_equal(seen.lens[i], strlen(payloads[i]));
    }
    assert_int_equal(atomic_load(&f->b.calls), 5);

    /* 1500-byte replies in 4000 bytes: the first one is answered; the second does not fit
     * with room kept for a failure of each message after it (to be called again), the
     * third does (less room kept), the fourth no more */
    f->b.fail_payload = NULL;
    f->b.reply_size = 1500;
    memset(&seen, 0, sizeof seen);
    assert_int_equal(bt_fn_call_batch_start(c, q, in, 4, 5000, on_batch, &seen, err, sizeof err),
                     BT_FN_OK);
    assert_int_equal(bt_fn_async_poll(q, 5000), 1);
    assert_int_equal(seen.rc, BT_FN_OK);
    assert_int_equal(seen.n, 4);
    assert_int_equal(seen.codes[0], BT_FN_CODE_OK);
    assert_int_equal(seen.lens[0], 1500);
    assert_int_equal(seen.codes[1], BT_FN_CODE_ABORTED);
    assert_int_equal(seen.codes[2], BT_FN_CODE_OK);
    assert_int_equal(seen.lens[2], 1500);
    assert_int_equal(seen.codes[3], BT_FN_CODE_ABORTED);
    bt_fn_async_free(q);
    bt_fn_client_free(c);
    stop_server(f);
}

/* inline_calls: the handler runs on the server's I/O thread. No worker starts (one thread
 * for the server), calls from several threads and a batch are all answered, a handler's
 * error comes back as before, and the calls never overlap (one thread runs them). */
static void test_inline_calls(void **state)
{
    int base = threads_become(1);
    bt_fn_server_options so = {.inline_calls = true, .workers = 8};
    fixture *f = start_server(&so);
    assert_int_equal(threads_become(base + 1), base + 1);
    bt_fn_client *c = client(f->addr, NULL);
    caller ks[4];
    run_callers(c, 4, 25, ks);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ks[i].ok, 25);
    assert_int_equal(atomic_load(&f->b.calls), 100);
    assert_int_equal(atomic_load(&f->b.max_running), 1);

    f->b.fail_payload = "bad";
    bt_fn_async *q = bt_fn_async_new();
    assert_non_null(q);
    const char *payloads[] = {"a", "bad", "ccc"};
    bt_fn_msg ms[3];
    const bt_fn_msg *in[3];
    for (int i = 0; i < 3; i++) {
        ms[i] = sample(payloads[i], strlen(payloads[i]));
        ms[i].id = (uint64_t)i + 10;
        in[i] = &ms[i];
    }
    batch_seen seen = {0};
    char err[256] = "";
    assert_int_equal(bt_fn_call_batch_start(c, q, in, 3, 5000, on_batch, &seen, err, sizeof err),
                     BT_FN_OK);
    assert_int_equal(bt_fn_async_poll(q, 5000), 1);
    assert_int_equal(seen.rc, BT_FN_OK);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.codes[0], BT_FN_CODE_OK);
    assert_int_equal(seen.codes[1], BT_FN_CODE_UNKNOWN);
    assert_string_equal(seen.errs[1], "rpc error: code = Unknown desc = bad input");
    assert_int_equal(seen.codes[2], BT_FN_CODE_OK);
    assert_int_equal(seen.lens[2], 3);
    bt_fn_async_free(q);

    bt_fn_msg one = sample("bad", 3), out;
    int code = -1;
    assert_int_equal(bt_fn_call_ex(c, &one, &out, 5000, &code, err, sizeof err), BT_FN_EFAIL);
    assert_int_equal(code, BT_FN_CODE_UNKNOWN);
    bt_fn_client_free(c);
    stop_server(f);
    assert_int_equal(threads_become(base), base);
}

/* What inline completions saw. */
typedef struct {
    bt_fn_client *c;      /* start one more call on it from the first completion */
    bt_fn_client *doomed; /* freed by the completion, on its own I/O thread */
    bt_fn_async *q;
    atomic_int asked, done, failed, on_main;
    pthread_t main;
} inline_seen;

static bool inline_ok(void *arg, bool succeeded)
{
    inline_seen *s = arg;
    atomic_fetch_add(&s->asked, 1);
    return succeeded;
}

static void on_inline_done(void *arg, int rc, int code, bt_fn_msg *out, const char *err)
{
    inline_seen *s = arg;
    if (pthread_equal(pthread_self(), s->main))
        atomic_fetch_add(&s->on_main, 1);
    if (rc != BT_FN_OK)
        atomic_fetch_add(&s->failed, 1);
    if (s->c) { /* a new call on the same client, from its I/O thread */
        bt_fn_client *c = s->c;
        s->c = NULL;
        bt_fn_msg in = sample("again", 5);
        char e[256];
        assert_int_equal(bt_fn_call_start(c, s->q, &in, 5000, on_inline_done, s, e, sizeof e),
                         BT_FN_OK);
    }
    if (s->doomed) {
        bt_fn_client *d = s->doomed;
        s->doomed = NULL;
        bt_fn_client_free(d); /* returns at once; its thread frees it as it leaves */
    }
    atomic_fetch_add(&s->done, 1);
}

static bool reaches(atomic_int *v, int want)
{
    for (int i = 0; i < 500 && atomic_load(v) < want; i++)
        sleep_ms(10);
    return atomic_load(v) >= want;
}

/* bt_fn_async_set_inline: a call its test accepts completes on the client's I/O thread
 * without a poll, and may start another call on that client and free a client from there;
 * one it declines (a failure here) comes through bt_fn_async_poll as before; batches
 * always do. bt_fn_async_wake makes a poll return 0. */
static void test_async_inline(void **state)
{
    fixture *f = start_server(NULL);
    bt_fn_client *c = client(f->addr, NULL);
    bt_fn_async *q = bt_fn_async_new();
    assert_non_null(q);
    bt_fn_async_set_inline(q, inline_ok);
    inline_seen s = {.c = c, .q = q, .main = pthread_self()};
    char err[256] = "";
    bt_fn_msg in = sample("hi", 2);
    assert_int_equal(bt_fn_call_start(c, q, &in, 5000, on_inline_done, &s, err, sizeof err), 0);
    assert_true(reaches(&s.done, 2)); /* both, and no poll */
    assert_int_equal(atomic_load(&s.on_main), 0);
    assert_int_equal(atomic_load(&s.asked), 2);
    assert_int_equal(bt_fn_async_poll(q, 10), 0);

    s.doomed = client(f->addr, NULL);
    assert_int_equal(bt_fn_call_start(s.doomed, q, &in, 5000, on_inline_done, &s, err, sizeof err),
                     0);
    assert_true(reaches(&s.done, 3));
    assert_null(s.doomed);

    f->b.fail = "boom";
    assert_int_equal(bt_fn_call_start(c, q, &in, 5000, on_inline_done, &s, err, sizeof err), 0);
    assert_int_equal(bt_fn_async_poll(q, 5000), 1); /* declined: posted */
    assert_int_equal(atomic_load(&s.failed), 1);
    assert_int_equal(atomic_load(&s.on_main), 1);
    assert_int_equal(atomic_load(&s.asked), 4);

    f->b.fail = NULL;
    const bt_fn_msg *ins[1] = {&in};
    batch_seen bs = {0};
    assert_int_equal(bt_fn_call_batch_start(c, q, ins, 1, 5000, on_batch, &bs, err, sizeof err),
                     BT_FN_OK);
    assert_int_equal(bt_fn_async_poll(q, 5000), 1);
    assert_int_equal(bs.rc, BT_FN_OK);
    assert_int_equal(atomic_load(&s.asked), 4);

    int64_t t0 = bt_now_ms();
    bt_fn_async_wake(q);
    assert_int_equal(bt_fn_async_poll(q, 5000), 0);
    assert_true(bt_now_ms() - t0 < 2000);
    bt_fn_async_free(q);
    bt_fn_client_free(c);
    sleep_ms(50); /* the doomed client's thread has left */
    stop_server(f);
}

/* A call started while the client's I/O thread sleeps is sent by its caller; one whose
 * deadline comes before that sleep ends (a per-call timeout shorter than the client's)
 * still ends on time, and the next call goes through as before. */
static void test_deadline_of_a_call_sent_by_its_caller(void **state)
{
    fixture *f = start_server(NULL);
    bt_fn_client_options co = {.timeout_ms = 5000};
    bt_fn_client *c = client(f->addr, &co);
    bt_fn_msg in = sample("x", 1), out;
    char err[256] = "";
    int code = -1;
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 0, &code, err, sizeof err), BT_FN_OK);
    bt_fn_msg_clear(&out);
    sleep_ms(50); /* the thread sleeps, for up to the client's timeout */
    f->b.sleep_ms = 800;
    long t0 = now_ms();
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 150, &code, err, sizeof err), BT_FN_EUNAVAILABLE);
    long took = now_ms() - t0;
    assert_int_equal(code, BT_FN_CODE_DEADLINE_EXCEEDED);
    assert_true(took >= 140 && took < 700);
    f->b.sleep_ms = 0;
    sleep_ms(900); /* the server's handler is done */
    assert_int_equal(bt_fn_call_ex(c, &in, &out, 0, &code, err, sizeof err), BT_FN_OK);
    assert_int_equal(out.payload_len, 1);
    bt_fn_msg_clear(&out);
    bt_fn_client_free(c);
    stop_server(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoded_size_is_exact),
        cmocka_unit_test(test_msg_roundtrip),
        cmocka_unit_test(test_msg_decode_garbage),
        cmocka_unit_test(test_echo_every_field),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_one_mib),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_handler_error),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_deadline_of_a_call_sent_by_its_caller),
        cmocka_unit_test(test_unavailable),
        cmocka_unit_test(test_wait_for_server),
        cmocka_unit_test(test_eight_threads),
        cmocka_unit_test(test_workers_limit),
        cmocka_unit_test(test_concurrent_streams_limit),
        cmocka_unit_test(test_reconnect),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_async_calls),
        cmocka_unit_test(test_batch_calls),
        cmocka_unit_test(test_inline_calls),
        cmocka_unit_test(test_async_inline),
        cmocka_unit_test(test_stop_graceful_in_flight),
        cmocka_unit_test(test_stop_cancels_after_grace),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
