/* function-manager internals (SPEC §12) without a master: the config rules, the invoke id,
 * the error JSON, and the instance pool against a fake backend whose "instances" are real
 * gRPC servers of the SDK in this process (so calls, failures and timeouts are real). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../../function-manager/fm.h"

/* ---- config ------------------------------------------------------------------------------ */

static const char SEED_CONFIG[] = "hub:\n"
                                  "  address: tcp://localhub:1883\n"
                                  "  username: test\n"
                                  "  password: hahaha\n"
                                  "rules:\n"
                                  "  - clientid: func-sql-filter-1\n"
                                  "    subscribe: {topic: t, qos: 1}\n"
                                  "    function: {name: sql-filter}\n"
                                  "    publish: {topic: t/sqlfilter, qos: 1}\n"
                                  "  - clientid: func-python36-sayhi-1\n"
                                  "    subscribe: {topic: t}\n"
                                  "    function: {name: python36-sayhi}\n"
                                  "    publish: {topic: t/py3hi}\n"
                                  "  - subscribe: {topic: t}\n"
                                  "    function: {name: python36-sayhi}\n"
                                  "    publish: {topic: t/py3hi2}\n"
                                  "    retry: {max: 5}\n"
                                  "functions:\n"
                                  "  - name: sql-filter\n"
                                  "    service: function-sql-filter\n"
                                  "  - name: python36-sayhi\n"
                                  "    service: function-python36-sayhi\n"
                                  "    instance: {min: 1, max: 10, idletime: 30s, evicttime: 5s}\n"
                                  "    message: {length: {max: 1m}}\n"
                                  "    backoff: {max: 10s}\n"
                                  "    timeout: 2s\n"
                                  "logger:\n"
                                  "  level: debug\n";

static void test_config_seed_and_defaults(void **state)
{
    fm_config c;
    char err[512] = "";
    int rc = bt_cfg_load_string(&fm_config_schema, &c, SEED_CONFIG, strlen(SEED_CONFIG), err,
                                sizeof err);
    if (rc < 0)
        fail_msg("%s", err);
    assert_int_equal(c.rules.n, 3);
    assert_int_equal(c.functions.n, 2);
    const fm_rule_cfg *r0 = &BT_CFG_AT(c.rules, fm_rule_cfg, 0);
    assert_string_equal(r0->clientid, "func-sql-filter-1");
    assert_string_equal(r0->subscribe.topic, "t");
    assert_int_equal(r0->subscribe.qos, 1);
    assert_string_equal(r0->publish.topic, "t/sqlfilter");
    assert_int_equal(r0->publish.qos, 1);
    assert_int_equal(r0->retry_max, 3);
    const fm_rule_cfg *r1 = &BT_CFG_AT(c.rules, fm_rule_cfg, 1);
    assert_int_equal(r1->subscribe.qos, 0);
    assert_int_equal(r1->publish.qos, 0);
    char id[256];
    fm_rule_clientid(&BT_CFG_AT(c.rules, fm_rule_cfg, 2), 2, id, sizeof id);
    assert_string_equal(id, "python36-sayhi-rule2");
    assert_int_equal(BT_CFG_AT(c.rules, fm_rule_cfg, 2).retry_max, 5);

    const fm_function_cfg *f = fm_config_function(&c, "sql-filter");
    assert_non_null(f);
    assert_string_equal(f->service, "function-sql-filter");
    assert_int_equal(f->min, 0);
    assert_int_equal(f->max, 1);
    assert_int_equal(f->idletime, 600000);
    assert_int_equal(f->evicttime, 60000);
    assert_int_equal(f->call.message_max, 4 << 20);
    assert_int_equal(f->call.backoff_max, 60000);
    assert_int_equal(f->call.timeout, 30000);
    f = fm_config_function(&c, "python36-sayhi");
    assert_int_equal(f->min, 1);
    assert_int_equal(f->max, 10);
    assert_int_equal(f->idletime, 30000);
    assert_int_equal(f->evicttime, 5000);
    assert_int_equal(f->call.message_max, 1 << 20);
    assert_int_equal(f->call.backoff_max, 10000);
    assert_int_equal(f->call.timeout, 2000);
    assert_null(fm_config_function(&c, "nope"));
    assert_false(c.hub.cleansession); /* persistent sessions by default */
    assert_null(c.server.address);
    bt_cfg_free(&fm_config_schema, &c);
}

/* The config of SEED_CONFIG's shape with one part replaced; returns the load error. */
static void expect_error(const char *yaml, const char *want)
{
    fm_config c;
    char err[512] = "";
    int rc = bt_cfg_load_string(&fm_config_schema, &c, yaml, strlen(yaml), err, sizeof err);
    if (rc == 0) {
        bt_cfg_free(&fm_config_schema, &c);
        fail_msg("accepted: %s", yaml);
    }
    if (!strstr(err, want))
        fail_msg("error %s does not contain %s", err, want);
}

#define HUB "hub: {address: 'tcp://127.0.0.1:1883'}\n"
#define FN "functions: [{name: f, service: s}]\n"

static void test_config_errors(void **state)
{
    expect_error(HUB FN
                 "rules: [{subscribe: {topic: t}, function: {name: g}, publish: {topic: o}}]\n",
                 "rules[0].function.name: function (g) not found");
    expect_error(HUB "functions: [{name: f, service: s}, {name: f, service: s2}]\n",
                 "functions[1].name: function (f) is declared twice");
    expect_error(HUB "functions: [{name: f, service: s, instance: {min: 3, max: 2}}]\n",
                 "instance.min (3) is greater than instance.max (2)");
    expect_error(HUB "functions: [{name: f, service: s, instance: {max: 101}}]\n",
                 "functions[0].instance.max");
    expect_error(HUB "functions: [{name: f, service: s, instance: {max: 0}}]\n",
                 "functions[0].instance.max");
    expect_error(HUB "functions: [{name: 'a b', service: s}]\n", "functions[0].name");
    expect_error(HUB "functions: [{name: f, service: s, backoff: {max: 0s}}]\n",
                 "functions[0]: backoff.max: at least 1ms");
    expect_error(HUB "functions: [{name: f}]\n", "functions[0].service: required");
    expect_error(HUB FN
                 "rules: [{subscribe: {topic: t}, function: {name: f}, publish: {topic: 'o/#'}}]\n",
                 "rules[0].publish.topic");
    expect_error(HUB FN "rules: [{subscribe: {topic: t}, function: {name: f}}]\n",
                 "rules[0].publish.topic: required");
    expect_error(HUB FN "rules: [{function: {name: f}, publish: {topic: o}}]\n",
                 "rules[0].subscribe.topic: required");
    expect_error(
        HUB FN "rules: [{subscribe: {topic: 'a/#/b'}, function: {name: f}, publish: {topic: o}}]\n",
        "rules[0].subscribe.topic");
    expect_error(
        HUB FN
        "rules: [{subscribe: {topic: t, qos: 2}, function: {name: f}, publish: {topic: o}}]\n",
        "rules[0].subscribe.qos");
    expect_error(
        HUB FN
        "rules: [{clientid: x, subscribe: {topic: t}, function: {name: f}, publish: {topic: o}},"
        " {clientid: x, subscribe: {topic: u}, function: {name: f}, publish: {topic: p}}]\n",
        "rules[1].clientid: clientid (x) is used twice");
    expect_error(FN, "hub.address: required");
    expect_error(HUB FN "server: {address: '127.0.0.1:0', cert: c.pem}\n",
                 "cert and key must be given together");
}

/* ---- invoke id and error JSON --------------------------------------------------------------- */

static void test_uuid4(void **state)
{
    char a[37], b[37];
    bt_uuid4(a);
    bt_uuid4(b);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(a[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", a[i]));
    }
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
}

static void test_error_json(void **state)
{
    bt_fn_msg m = {.id = 7,
                   .qos = 1,
                   .topic = "t",
                   .payload = (uint8_t *)"{\"id\":1}",
                   .payload_len = 8,
                   .timestamp = 1569247749,
                   .function_name = "sayhi",
                   .function_invoke_id = "50f8f102-2b8c-4904-86df-0728811a5a4b"};
    size_t len = 0;
    char *s =
        fm_error_json(&m, "rpc error: code = Unknown desc = [UserCodeInvoke] boom", SIZE_MAX, &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    assert_string_equal(
        s, "{\"errorMessage\":\"rpc error: code = Unknown desc = [UserCodeInvoke] boom\","
           "\"errorType\":\"*errors.Err\",\"functionMessage\":{\"ID\":7,\"QOS\":1,\"Topic\":\"t\","
           "\"Payload\":\"eyJpZCI6MX0=\",\"Timestamp\":1569247749,\"FunctionName\":\"sayhi\","
           "\"FunctionInvokeID\":\"50f8f102-2b8c-4904-86df-0728811a5a4b\"}}");
    free(s);

    /* empty payload, binary payload, an error text that is not UTF-8 */
    m.payload_len = 0;
    s = fm_error_json(&m, "bad \xff\xfe text \xe2\x82", SIZE_MAX, &len);
    assert_non_null(s);
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "errorMessage")), "bad ?? text ??");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "functionMessage"), "Payload")), "");
    json_decref(j);
    free(s);
    m.payload = (uint8_t *)"\x00\xff\x01";
    m.payload_len = 3;
    s = fm_error_json(&m, "x", SIZE_MAX, &len);
    assert_non_null(strstr(s, "\"Payload\":\"AP8B\""));
    free(s);
}

/* Over the limit: the error text is cut and only the first bytes of the input that fit are
 * embedded, flagged with the input's size; the invoke id still names the call. */
static void test_error_json_bounded(void **state)
{
    static uint8_t big[40000];
    memset(big, 'a', sizeof big);
    static char longerr[3000];
    memset(longerr, 'e', sizeof longerr - 1);
    bt_fn_msg m = {.id = 7,
                   .qos = 1,
                   .topic = "t",
                   .payload = big,
                   .payload_len = sizeof big,
                   .timestamp = 1,
                   .function_name = "f",
                   .function_invoke_id = "id-1"};
    size_t len = 0;
    char *s = fm_error_json(&m, longerr, 1024, &len);
    assert_non_null(s);
    assert_true(len <= 1024);
    assert_true(len > 900); /* as much input as fits */
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    assert_non_null(j);
    json_t *fm = json_object_get(j, "functionMessage");
    assert_true(json_is_true(json_object_get(fm, "PayloadTruncated")));
    assert_int_equal(json_integer_value(json_object_get(fm, "PayloadSize")), sizeof big);
    assert_string_equal(json_string_value(json_object_get(fm, "FunctionInvokeID")), "id-1");
    assert_int_equal(strlen(json_string_value(json_object_get(j, "errorMessage"))),
                     FM_ERROR_TEXT_MAX);
    json_decref(j);
    free(s);
    /* under the limit: whole, as before */
    m.payload_len = 10;
    s = fm_error_json(&m, "x", 1024, &len);
    assert_null(strstr(s, "PayloadTruncated"));
    assert_non_null(strstr(s, "\"Payload\":\"YWFhYWFhYWFhYQ==\""));
    free(s);
}

/* ---- the pool against in-process instances ------------------------------------------------- */

#define MAX_FAKE 32

typedef struct {
    pthread_mutex_t mu;
    int starts, stops, fail_starts, dead_dial;
    int start_delay_ms; /* a start takes this long */
    int exited;         /* status: a dead-dialled instance reports it exited with this code */
    int calls, running, max_running;
    struct {
        char name[192];
        bt_fn_server *srv;
    } inst[MAX_FAKE];
    char last_start[192], last_stop[192];
} fake;

/* Instances answer: payload "fail" → an error; "sleep:<ms>" → sleeps, then echoes; else
 * echo; "" → empty result. */
static int fake_handler(const bt_fn_msg *in, bt_fn_msg *out, char *err, size_t errlen, void *arg)
{
    fake *f = arg;
    pthread_mutex_lock(&f->mu);
    f->calls++;
    if (++f->running > f->max_running)
        f->max_running = f->running;
    pthread_mutex_unlock(&f->mu);
    int rc = 0;
    const char *p = (const char *)in->payload;
    if (in->payload_len == 4 && memcmp(p, "fail", 4) == 0) {
        snprintf(err, errlen, "[UserCodeInvoke] boom");
        rc = -1;
    } else {
        if (in->payload_len > 6 && memcmp(p, "sleep:", 6) == 0)
            usleep((useconds_t)atoi(p + 6) * 1000);
        rc = bt_fn_msg_set_payload(out, in->payload, in->payload_len);
    }
    pthread_mutex_lock(&f->mu);
    f->running--;
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int fake_start(void *arg, const char *service, const char *name, char *dial, size_t dial_len,
                      char *err, size_t errlen)
{
    fake *f = arg;
    pthread_mutex_lock(&f->mu);
    f->starts++;
    snprintf(f->last_start, sizeof f->last_start, "%s", name);
    if (f->fail_starts > 0) {
        f->fail_starts--;
        pthread_mutex_unlock(&f->mu);
        snprintf(err, errlen, "400: refused");
        return -1;
    }
    bool dead = f->dead_dial > 0;
    if (dead)
        f->dead_dial--;
    int delay = f->start_delay_ms;
    pthread_mutex_unlock(&f->mu);
    if (delay)
        usleep((useconds_t)delay * 1000);
    if (dead) {
        /* nothing listens there: the dial times out */
        snprintf(dial, dial_len, "127.0.0.1:1");
        return 0;
    }
    bt_fn_server *s = bt_fn_server_start("127.0.0.1:0", NULL, fake_handler, f, err, errlen);
    if (!s)
        return -1;
    snprintf(dial, dial_len, "127.0.0.1:%d", bt_fn_server_port(s));
    pthread_mutex_lock(&f->mu);
    int i = 0;
    while (i < MAX_FAKE && f->inst[i].srv)
        i++;
    assert_true(i < MAX_FAKE);
    f->inst[i].srv = s;
    snprintf(f->inst[i].name, sizeof f->inst[i].name, "%s", name);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static int fake_stop(void *arg, const char *service, const char *name, char *err, size_t errlen)
{
    fake *f = arg;
    bt_fn_server *s = NULL;
    pthread_mutex_lock(&f->mu);
    f->stops++;
    snprintf(f->last_stop, sizeof f->last_stop, "%s", name);
    for (int i = 0; i < MAX_FAKE; i++)
        if (f->inst[i].srv && strcmp(f->inst[i].name, name) == 0) {
            s = f->inst[i].srv;
            f->inst[i].srv = NULL;
            break;
        }
    pthread_mutex_unlock(&f->mu);
    bt_fn_server_stop(s);
    return 0;
}

static int fake_status(void *arg, const char *service, const char *name, int lines,
                       fm_instance_status *st, char *err, size_t errlen)
{
    fake *f = arg;
    if (!f->exited) {
        snprintf(err, errlen, "404: no such route"); /* an older master */
        return -1;
    }
    snprintf(st->state, sizeof st->state, "exited");
    st->exit_code = f->exited;
    snprintf(st->output, sizeof st->output,
             "service starting\nImportError: No module named 'numpy_for_test'");
    return 0;
}

static int fake_alive(fake *f)
{
    int n = 0;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < MAX_FAKE; i++)
        n += f->inst[i].srv != NULL;
    pthread_mutex_unlock(&f->mu);
    return n;
}

typedef struct {
    fake fk;
    fm_backend be;
    fm_function_cfg cfg;
    fm_pool *pool;
} pool_fixture;

static int pool_setup(void **state)
{
    pool_fixture *x = calloc(1, sizeof *x);
    pthread_mutex_init(&x->fk.mu, NULL);
    x->be =
        (fm_backend){.start = fake_start, .stop = fake_stop, .status = fake_status, .arg = &x->fk};
    x->cfg =
        (fm_function_cfg){.name = "sayhi",
                          .service = "rt",
                          .min = 0,
                          .max = 1,
                          .concurrent = 1, /* one call per instance unless a test says */
                          .idletime = 600000,
                          .evicttime = 60000,
                          .call = {.message_max = 4 << 20, .backoff_max = 60000, .timeout = 3000}};
    *state = x;
    return 0;
}

static void pool_open(pool_fixture *x)
{
    char err[256];
    x->pool = fm_pool_new(&x->cfg, &x->be, err, sizeof err);
    assert_non_null(x->pool);
    assert_int_equal(fm_pool_start(x->pool, err, sizeof err), 0);
}

static int pool_teardown(void **state)
{
    pool_fixture *x = *state;
    fm_pool_free(x->pool);
    assert_int_equal(fake_alive(&x->fk), 0); /* every instance stopped */
    pthread_mutex_destroy(&x->fk.mu);
    free(x);
    return 0;
}

static int call_text(fm_pool *p, const char *payload, char *result, size_t rlen, char *err,
                     size_t errlen)
{
    bt_fn_msg in = {.topic = "t",
                    .payload = (uint8_t *)payload,
                    .payload_len = strlen(payload),
                    .function_name = "sayhi",
                    .function_invoke_id = "id"};
    bt_fn_msg out;
    int rc = fm_invoke(p, &in, 1, &out, err, errlen);
    if (rc == 0 && result)
        snprintf(result, rlen, "%.*s", (int)out.payload_len,
                 out.payload ? (char *)out.payload : "");
    bt_fn_msg_clear(&out);
    return rc;
}

static void test_pool_reuses_one_instance(void **state)
{
    pool_fixture *x = *state;
    pool_open(x);
    assert_int_equal(fm_pool_size(x->pool), 0); /* min 0: nothing before the first call */
    char res[64], err[512];
    for (int i = 0; i < 5; i++) {
        assert_int_equal(call_text(x->pool, "hello", res, sizeof res, err, sizeof err), 0);
        assert_string_equal(res, "hello");
    }
    assert_int_equal(x->fk.starts, 1);
    assert_string_equal(x->fk.last_start, "rt.sayhi.1");
    assert_int_equal(x->fk.calls, 5);
    assert_int_equal(fm_pool_size(x->pool), 1);
    assert_int_equal(call_text(x->pool, "", res, sizeof res, err, sizeof err), 0);
    assert_string_equal(res, "");
}

static void test_failed_call_destroys_the_instance(void **state)
{
    pool_fixture *x = *state;
    pool_open(x);
    char res[64], err[512];
    assert_int_equal(call_text(x->pool, "a", res, sizeof res, err, sizeof err), 0);
    assert_int_not_equal(call_text(x->pool, "fail", res, sizeof res, err, sizeof err), 0);
    assert_non_null(strstr(err, "rpc error: code = Unknown desc = [UserCodeInvoke] boom"));
    assert_int_equal(x->fk.stops, 1);
    assert_string_equal(x->fk.last_stop, "rt.sayhi.1");
    assert_int_equal(fm_pool_size(x->pool), 0);
    /* the next call starts a new one, with the freed number */
    assert_int_equal(call_text(x->pool, "b", res, sizeof res, err, sizeof err), 0);
    assert_int_equal(x->fk.starts, 2);
    assert_string_equal(x->fk.last_start, "rt.sayhi.1");
}

static void test_invoke_retries_in_all(void **state)
{
    pool_fixture *x = *state;
    pool_open(x);
    bt_fn_msg in = {.topic = "t",
                    .payload = (uint8_t *)"fail",
                    .payload_len = 4,
                    .function_name = "sayhi",
                    .function_invoke_id = "id"};
    bt_fn_msg out;
    char err[512];
    assert_int_equal(fm_invoke(x->pool, &in, 3, &out, err, sizeof err), -1);
    assert_int_equal(x->fk.calls, 3); /* three attempts in all */
    assert_int_equal(x->fk.starts, 3);
    assert_int_equal(x->fk.stops, 3);
    assert_int_equal(fm_invoke(x->pool, &in, 0, &out, err, sizeof err), -1);
    assert_int_equal(x->fk.calls, 4); /* 0 still means one attempt */
}

static void test_message_too_large_fails_without_instance(void **state)
{
    pool_fixture *x = *state;
    x->cfg.call.message_max = 1024;
    pool_open(x);
    char *big = calloc(1, 1100);
    memset(big, 'x', 1099);
    bt_fn_msg in = {.topic = "t",
                    .payload = (uint8_t *)big,
                    .payload_len = 1024,
                    .function_name = "sayhi",
                    .function_invoke_id = "id"};
    /* exactly message.length.max + 1 bytes: refused before any instance */
    in.payload_len = 1024 - (bt_fn_msg_encoded_size(&in) - 1024) + 1;
    assert_int_equal(bt_fn_msg_encoded_size(&in), 1025);
    bt_fn_msg out;
    char err[512];
    assert_int_equal(fm_invoke(x->pool, &in, 3, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "message too large: 1025 bytes"));
    assert_int_equal(x->fk.starts, 0);
    /* exactly the limit: goes through (the reply has the same size) */
    in.payload_len--;
    assert_int_equal(bt_fn_msg_encoded_size(&in), 1024);
    assert_int_equal(fm_invoke(x->pool, &in, 3, &out, err, sizeof err), 0);
    assert_int_equal(out.payload_len, in.payload_len);
    bt_fn_msg_clear(&out);
    free(big);
}

typedef struct {
    pool_fixture *x;
    int ok;
} caller_arg;

static void *caller(void *arg)
{
    caller_arg *a = arg;
    char res[64], err[512];
    for (int i = 0; i < 3; i++)
        a->ok += call_text(a->x->pool, "sleep:50", res, sizeof res, err, sizeof err) == 0;
    return NULL;
}

/* n threads (at most 8) making 3 calls each at once; the calls that succeeded. */
static int run_callers(pool_fixture *x, int n)
{
    pthread_t t[8];
    caller_arg a[8];
    for (int i = 0; i < n; i++) {
        a[i] = (caller_arg){x, 0};
        pthread_create(&t[i], NULL, caller, &a[i]);
    }
    int ok = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        ok += a[i].ok;
    }
    return ok;
}

static void test_never_more_than_max(void **state)
{
    pool_fixture *x = *state;
    x->cfg.max = 3;
    pool_open(x);
    assert_int_equal(run_callers(x, 8), 24);
    assert_int_equal(fm_pool_peak(x->pool), 3);
    assert_int_equal(x->fk.starts, 3);
    assert_int_equal(x->fk.max_running, 3);
}

/* instance.concurrent: calls share an instance up to that many at once, and only then
 * does a second instance start. */
static void test_instance_serves_concurrent_calls(void **state)
{
    pool_fixture *x = *state;
    x->cfg.max = 2;
    x->cfg.concurrent = 4;
    pool_open(x);
    assert_int_equal(run_callers(x, 4), 12);
    assert_int_equal(x->fk.starts, 1); /* four callers fit in one instance */
    assert_true(x->fk.max_running > 1 && x->fk.max_running <= 4);
    assert_int_equal(run_callers(x, 8), 24);
    assert_int_equal(fm_pool_peak(x->pool), 2);
    assert_true(x->fk.max_running <= 8);
}

typedef struct {
    fm_pool *pool;
    fm_instance *got;
} getter;

static void *get_main(void *arg)
{
    getter *g = arg;
    char err[256];
    g->got = fm_pool_get(g->pool, err, sizeof err);
    return NULL;
}

/* Scaling out: the second instance starts on its own thread, and a caller waiting for room
 * takes the slot the first one frees meanwhile instead of waiting for the start. */
static void test_scale_out_starts_in_background(void **state)
{
    pool_fixture *x = *state;
    x->cfg.max = 2;
    pool_open(x);
    char err[256];
    fm_instance *a = fm_pool_get(x->pool, err, sizeof err);
    assert_non_null(a);
    x->fk.start_delay_ms = 1500;
    getter g = {.pool = x->pool};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, get_main, &g), 0);
    while (fm_pool_starting(x->pool) == 0)
        usleep(1000);
    usleep(50 * 1000);
    fm_pool_put(x->pool, a, true);
    pthread_join(t, NULL);
    assert_ptr_equal(g.got, a); /* the new one (picked first once live) was not waited for */
    while (fm_pool_starting(x->pool) > 0) /* the second one still comes up */
        usleep(10 * 1000);
    assert_int_equal(fm_pool_size(x->pool), 2);
    assert_int_equal(x->fk.starts, 2);
    fm_pool_put(x->pool, g.got, true);
}

/* A call failing on an instance others are using: they finish, then it is destroyed once. */
static void test_failed_call_among_concurrent_ones(void **state)
{
    pool_fixture *x = *state;
    x->cfg.concurrent = 4;
    pool_open(x);
    char err[512], res[16];
    fm_instance *held = fm_pool_get(x->pool, err, sizeof err); /* a call in flight */
    assert_non_null(held);
    assert_int_not_equal(call_text(x->pool, "fail", res, sizeof res, err, sizeof err), 0);
    assert_int_equal(x->fk.stops, 0); /* still in use */
    assert_int_equal(fm_pool_size(x->pool), 1);
    fm_pool_put(x->pool, held, true);
    assert_int_equal(x->fk.stops, 1);
    assert_int_equal(fm_pool_size(x->pool), 0);
    assert_int_equal(call_text(x->pool, "ok", res, sizeof res, err, sizeof err), 0);
    assert_int_equal(x->fk.starts, 2);
}

static void test_idle_instances_evicted_down_to_min(void **state)
{
    pool_fixture *x = *state;
    x->cfg.min = 1;
    x->cfg.max = 3;
    x->cfg.idletime = 300;
    x->cfg.evicttime = 100;
    pool_open(x);
    /* min is kept from the start */
    for (int i = 0; i < 100 && fm_pool_size(x->pool) < 1; i++)
        usleep(20000);
    assert_int_equal(fm_pool_size(x->pool), 1);
    run_callers(x, 3);
    assert_int_equal(fm_pool_size(x->pool), 3);
    /* after idletime (+ one evicttime) only min is left */
    for (int i = 0; i < 100 && fm_pool_size(x->pool) > 1; i++)
        usleep(20000);
    assert_int_equal(fm_pool_size(x->pool), 1);
    assert_int_equal(fake_alive(&x->fk), 1);
    usleep(500000);
    assert_int_equal(fm_pool_size(x->pool), 1); /* min stays */
}

static void test_failed_start_backs_off(void **state)
{
    pool_fixture *x = *state;
    x->cfg.call.backoff_max = 800;
    pool_open(x);
    x->fk.fail_starts = 3;
    char err[512];
    int64_t t0 = bt_now_ms();
    assert_int_not_equal(call_text(x->pool, "a", NULL, 0, err, sizeof err), 0);
    assert_non_null(strstr(err, "failed to start instance (rt.sayhi.1): 400: refused"));
    assert_int_not_equal(call_text(x->pool, "a", NULL, 0, err, sizeof err), 0); /* waits 500 ms */
    assert_int_not_equal(call_text(x->pool, "a", NULL, 0, err, sizeof err),
                         0); /* waits 800 ms (capped) */
    int64_t t1 = bt_now_ms();
    assert_true(t1 - t0 >= 1300);
    assert_true(t1 - t0 < 3000);
    assert_int_equal(x->fk.starts, 3);
    assert_int_equal(x->fk.stops, 3); /* a failed start is cleaned up */
    char res[16];
    assert_int_equal(call_text(x->pool, "ok", res, sizeof res, err, sizeof err),
                     0); /* after 800 ms */
    assert_true(bt_now_ms() - t1 >= 700);
    assert_string_equal(res, "ok");
    /* a good start resets the backoff */
    assert_int_not_equal(call_text(x->pool, "fail", res, sizeof res, err, sizeof err), 0);
    t1 = bt_now_ms();
    assert_int_equal(call_text(x->pool, "ok", res, sizeof res, err, sizeof err), 0);
    assert_true(bt_now_ms() - t1 < 400);
}

static void test_dial_timeout_fails_the_attempt(void **state)
{
    pool_fixture *x = *state;
    x->cfg.call.timeout = 300;
    pool_open(x);
    x->fk.dead_dial = 1;
    char err[512], res[16];
    int64_t t0 = bt_now_ms();
    assert_int_not_equal(call_text(x->pool, "a", res, sizeof res, err, sizeof err), 0);
    assert_non_null(strstr(err, "failed to connect to instance (rt.sayhi.1)"));
    assert_true(bt_now_ms() - t0 >= 250);
    assert_int_equal(x->fk.stops, 1);
    assert_int_equal(call_text(x->pool, "a", res, sizeof res, err, sizeof err), 0);
}

/* An instance that exits before serving (an import error): the master's report ends the
 * wait for its connection long before the timeout, and the error says why. */
static void test_exited_instance_is_explained(void **state)
{
    pool_fixture *x = *state;
    x->cfg.call.timeout = 20000;
    pool_open(x);
    x->fk.dead_dial = 1;
    x->fk.exited = 1;
    char err[1024], res[16];
    int64_t t0 = bt_now_ms();
    assert_int_not_equal(call_text(x->pool, "a", res, sizeof res, err, sizeof err), 0);
    assert_true(bt_now_ms() - t0 < 10000); /* not the 20 s timeout */
    assert_non_null(strstr(err, "failed to connect to instance (rt.sayhi.1): the instance "
                                "exited (exit code 1) before serving; its last output: "));
    assert_non_null(strstr(err, "ImportError: No module named 'numpy_for_test'"));
    assert_int_equal(x->fk.stops, 1);
}

static void test_hanging_call_times_out_and_replaces(void **state)
{
    pool_fixture *x = *state;
    x->cfg.call.timeout = 300;
    pool_open(x);
    char err[512], res[16];
    assert_int_not_equal(call_text(x->pool, "sleep:1500", res, sizeof res, err, sizeof err), 0);
    assert_non_null(strstr(err, "DeadlineExceeded"));
    assert_int_equal(x->fk.stops, 1);
    assert_int_equal(call_text(x->pool, "a", res, sizeof res, err, sizeof err), 0);
    assert_int_equal(x->fk.starts, 2);
}

static void *closer(void *arg)
{
    usleep(200000);
    fm_pool_close(arg);
    return NULL;
}

static void test_close_wakes_waiters(void **state)
{
    pool_fixture *x = *state;
    pool_open(x);
    char err[512];
    fm_instance *in = fm_pool_get(x->pool, err, sizeof err);
    assert_non_null(in);
    pthread_t t;
    pthread_create(&t, NULL, closer, x->pool);
    /* max 1 and borrowed: this waits until the close */
    assert_null(fm_pool_get(x->pool, err, sizeof err));
    assert_non_null(strstr(err, "function (sayhi) is stopping"));
    pthread_join(t, NULL);
    assert_true(fm_pool_closed(x->pool));
    fm_pool_put(x->pool, in, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_seed_and_defaults),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_uuid4),
        cmocka_unit_test(test_error_json),
        cmocka_unit_test(test_error_json_bounded),
        cmocka_unit_test_setup_teardown(test_pool_reuses_one_instance, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(test_failed_call_destroys_the_instance, pool_setup,
                                        pool_teardown),
        cmocka_unit_test_setup_teardown(test_invoke_retries_in_all, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(test_message_too_large_fails_without_instance, pool_setup,
                                        pool_teardown),
        cmocka_unit_test_setup_teardown(test_never_more_than_max, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(test_instance_serves_concurrent_calls, pool_setup,
                                        pool_teardown),
        cmocka_unit_test_setup_teardown(test_scale_out_starts_in_background, pool_setup,
                                        pool_teardown),
        cmocka_unit_test_setup_teardown(test_failed_call_among_concurrent_ones, pool_setup,
                                        pool_teardown),
        cmocka_unit_test_setup_teardown(test_exited_instance_is_explained, pool_setup,
                                        pool_teardown),
        cmocka_unit_test_setup_teardown(test_idle_instances_evicted_down_to_min, pool_setup,
                                        pool_teardown),
        cmocka_unit_test_setup_teardown(test_failed_start_backs_off, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(test_dial_timeout_fails_the_attempt, pool_setup,
                                        pool_teardown),
        cmocka_unit_test_setup_teardown(test_hanging_call_times_out_and_replaces, pool_setup,
                                        pool_teardown),
        cmocka_unit_test_setup_teardown(test_close_wakes_waiters, pool_setup, pool_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
