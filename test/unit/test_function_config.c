/* The `server:` section of function servers (baetyl/function_config.h), shared by the SQL
 * runtime and the function-manager, and the caller settings of a `functions:` entry, shared
 * by the function-manager and video-infer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "baetyl/function_config.h"

typedef struct {
    bt_fn_server_config server;
} doc;

static const bt_cfg_field doc_fields[] = {
    BT_FIELD(doc, server, "server", BT_CFG_STRUCT, .sub = &bt_fn_server_schema), {0}};
static const bt_cfg_schema doc_schema = {sizeof(doc), doc_fields, NULL};

static int load(const char *yaml, doc *d, char *err, size_t errlen)
{
    return bt_cfg_load_string(&doc_schema, d, yaml, strlen(yaml), err, errlen);
}

static void test_defaults_and_options(void **state)
{
    (void)state;
    doc d;
    char err[256];
    assert_int_equal(load("server: {address: 'tcp://127.0.0.1:50051'}\n", &d, err, sizeof err), 0);
    assert_string_equal(d.server.address, "tcp://127.0.0.1:50051");
    assert_int_equal(d.server.workers, 4);
    assert_int_equal(d.server.concurrent, 0);
    assert_int_equal(d.server.message_max, 4 << 20);
    assert_null(d.server.ca);
    assert_string_equal(bt_fn_listen_address(d.server.address), "127.0.0.1:50051");
    bt_cfg_free(&doc_schema, &d);

    assert_int_equal(load("server:\n  address: unix:/tmp/x.sock\n  workers: {max: 3}\n"
                          "  concurrent: {max: 5}\n  message: {length: {max: 1k}}\n"
                          "  cert: c.pem\n  key: k.pem\n  ca: ca.pem\n",
                          &d, err, sizeof err),
                     0);
    bt_fn_server_options o = bt_fn_server_config_options(&d.server);
    assert_int_equal(o.max_msg_size, 1024);
    assert_int_equal(o.workers, 3);
    assert_int_equal(o.concurrent, 5);
    assert_string_equal(o.cert, "c.pem");
    assert_string_equal(o.key, "k.pem");
    assert_string_equal(o.ca, "ca.pem");
    assert_int_equal(o.grace_ms, 0); /* the server's default */
    assert_string_equal(bt_fn_listen_address(d.server.address), "unix:/tmp/x.sock");
    bt_cfg_free(&doc_schema, &d);
    assert_null(bt_fn_listen_address(NULL));
}

static void test_refused(void **state)
{
    (void)state;
    doc d;
    char err[256];
    assert_int_equal(load("server: {cert: c.pem}\n", &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "server: cert and key must be given together"));
    assert_int_equal(load("server: {ca: ca.pem}\n", &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "server: ca needs cert and key"));
    assert_int_equal(load("server: {workers: {max: 0}}\n", &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "server.workers.max"));
    assert_int_equal(load("server: {message: {length: {max: 3g}}}\n", &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "server.message.length.max"));
    assert_int_equal(load("server: {concurrent: {max: -1}}\n", &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "server.concurrent.max"));
}

/* A `functions:` entry as a module declares it: its own keys plus the caller settings. */
typedef struct {
    char *name;
    bt_fn_client_config call;
} fn_entry;

static const bt_cfg_field fn_fields[] = {BT_FIELD(fn_entry, name, "name", BT_CFG_STRING),
                                         BT_FIELD(fn_entry, call, "", BT_CFG_STRUCT,
                                                  .flags = BT_CFG_INLINE,
                                                  .sub = &bt_fn_client_schema),
                                         {0}};
static const bt_cfg_schema fn_schema = {sizeof(fn_entry), fn_fields, NULL};

static int load_fn(const char *yaml, fn_entry *f, char *err, size_t errlen)
{
    return bt_cfg_load_string(&fn_schema, f, yaml, strlen(yaml), err, errlen);
}

static void test_client_settings(void **state)
{
    (void)state;
    fn_entry f;
    char err[256];
    assert_int_equal(load_fn("name: f\n", &f, err, sizeof err), 0);
    assert_int_equal(f.call.message_max, 4 << 20);
    assert_int_equal(f.call.backoff_max, 60000);
    assert_int_equal(f.call.timeout, 30000);
    bt_cfg_free(&fn_schema, &f);
    assert_int_equal(load_fn("name: f\nmessage: {length: {max: 1m}}\nbackoff: {max: 0s}\n"
                             "timeout: 2s\n",
                             &f, err, sizeof err),
                     0);
    bt_fn_client_options o = bt_fn_client_config_options(&f.call);
    assert_int_equal(o.max_msg_size, 1 << 20);
    assert_int_equal(o.timeout_ms, 2000);
    assert_int_equal(f.call.backoff_max, 0);
    assert_null(o.ca);
    bt_cfg_free(&fn_schema, &f);
    assert_int_equal(load_fn("timeout: 0s\n", &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "timeout"));
    assert_int_equal(load_fn("message: {length: {max: 63}}\n", &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "message.length.max"));
    assert_int_equal(load_fn("backoff: {max: 25h}\n", &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "backoff.max"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_options),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_client_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
