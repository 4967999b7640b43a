/* application.yml and conf.yml through the SDK schema: defaults, errors naming the field,
 * the OTA diff, and the YAML<->JSON of application.stats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../master/app.h"
#include "../../../master/conf.h"
#include "../../../master/stats_file.h"

static const char *APP =
    "version: v7\n"
    "services:\n"
    "  - name: hub\n"
    "    image: baetyl-hub\n"
    "    replica: 1\n"
    "    mounts:\n"
    "      - {name: conf, path: etc/baetyl, readonly: true}\n"
    "    args: ['-c', 'conf.yml']\n"
    "    env: {A: '1'}\n"
    "  - name: rt\n"
    "    image: 'repo/py:3'\n"
    "    restart: {policy: on-failure, retry: {max: 3}, backoff: {min: 2s, max: 1m, factor: 1.5}}\n"
    "volumes:\n"
    "  - {name: conf, path: var/db/baetyl/conf}\n";

static void load(app_config *a, const char *text)
{
    char err[512];
    if (app_load_string(text, strlen(text), a, err, sizeof err) != 0)
        fail_msg("load: %s", err);
}

static void test_defaults(void **state)
{
    app_config a;
    load(&a, APP);
    assert_string_equal(a.version, "v7");
    assert_int_equal(a.services.n, 2);
    const app_service *hub = APP_SERVICE(&a, 0), *rt = APP_SERVICE(&a, 1);
    assert_int_equal(hub->replica, 1);
    assert_string_equal(hub->restart.policy, "always");
    assert_int_equal(hub->restart.retry_max, 0);
    assert_int_equal(hub->restart.backoff_min, 1000);
    assert_int_equal(hub->restart.backoff_max, 300000);
    assert_true(hub->restart.backoff_factor == 2.0);
    assert_true(APP_MOUNT(hub, 0)->readonly);
    assert_int_equal(hub->args.n, 2);
    assert_int_equal(rt->replica, 0);
    assert_string_equal(rt->restart.policy, "on-failure");
    assert_int_equal(rt->restart.retry_max, 3);
    assert_int_equal(rt->restart.backoff_min, 2000);
    assert_true(rt->restart.backoff_factor == 1.5);
    assert_non_null(app_find_volume(&a, "conf"));
    assert_null(app_find_volume(&a, "nope"));
    char err[256];
    assert_int_equal(app_check_mounts(&a, err, sizeof err), 0);
    app_free(&a);

    /* an empty document is an empty app */
    assert_int_equal(app_load_string("", 0, &a, err, sizeof err), 0);
    assert_int_equal(a.services.n, 0);
    assert_false(a.has_services);
    app_free(&a);
}

/* What the app model knows beyond the master's needs: whether "services" was written (an
 * OTA refuses an app without it) and the volumes' meta (the agent downloads them). */
static void test_presence_and_meta(void **state)
{
    app_config a;
    load(&a, "services: []\nvolumes:\n  - name: v\n    path: var/db/baetyl/v\n"
             "    meta: {url: 'https://x/v.zip', md5: abc, version: '3'}\n");
    assert_true(a.has_services);
    assert_int_equal(a.services.n, 0);
    assert_string_equal(APP_VOLUME(&a, 0)->url, "https://x/v.zip");
    assert_string_equal(APP_VOLUME(&a, 0)->md5, "abc");
    assert_string_equal(APP_VOLUME(&a, 0)->version, "3");
    app_free(&a);
    load(&a, "version: v1\nservices:\n");
    assert_false(a.has_services);
    app_free(&a);
    load(&a, APP);
    assert_true(a.has_services);
    app_free(&a);
}

/* A misspelled top-level key used to leave an empty app that stopped everything. */
static void test_unknown_top_level_key(void **state)
{
    app_config a;
    char err[512];
    const char *t = "version: v2\nservics:\n  - {name: a, image: x}\n";
    assert_int_equal(app_load_string(t, strlen(t), &a, err, sizeof err), -1);
    assert_string_equal(err, "unknown key servics (did you mean services?) (line 2)");
    t = "volume: []\n";
    assert_int_equal(app_load_string(t, strlen(t), &a, err, sizeof err), -1);
    assert_string_equal(err, "unknown key volume (did you mean volumes?) (line 1)");
}

static void expect_error(const char *text, const char *want)
{
    app_config a;
    char err[512];
    assert_int_equal(app_load_string(text, strlen(text), &a, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void test_errors_name_the_field(void **state)
{
    expect_error("services:\n  - image: x\n", "services[0].name: required");
    expect_error("services:\n  - name: a\n", "services[0].image: required");
    expect_error("services:\n  - {name: a, image: x}\n  - {name: a, image: y}\n",
                 "services[1].name: service name (a) is duplicated");
    expect_error("volumes:\n  - {name: v, path: a}\n  - {name: v, path: b}\n",
                 "volume name (v) is duplicated");
    expect_error("volumes:\n  - {name: v, path: ../../etc}\n",
                 "volumes[0].path: path (../../etc) escapes the work dir");
    expect_error("volumes:\n  - {name: v, path: a/../../b}\n", "escapes the work dir");
    /* absolute paths are an error naming the field, no longer rewritten (issue 12.8) */
    expect_error("volumes:\n  - {name: v, path: /etc}\n",
                 "volumes[0].path: path (/etc) must be relative to the work dir");
    expect_error("services:\n  - {name: a, image: x, mounts: [{name: v, path: ../x}]}\n",
                 "services[0].mounts[0].path: path (../x) escapes the service dir");
    expect_error("services:\n  - {name: '-a', image: x}\n", "services[0].name");
    expect_error("services:\n  - {name: a, image: '../../bin'}\n", "services[0].image");
    expect_error("services:\n  - {name: a, image: x, replica: -1}\n", "services[0].replica");
    expect_error("services:\n  - {name: a, image: x, restart: {policy: maybe}}\n",
                 "services[0].restart.policy");
    expect_error("services:\n  - {name: a, image: x, restart: {backoff: {min: 1m, max: 1s}}}\n",
                 "backoff.min must not exceed backoff.max");
    expect_error("services:\n  - {name: a, image: x, restart: {backoff: {factor: 0.5}}}\n",
                 "backoff.factor");
    expect_error(
        "services:\n  - {name: a, image: x, mounts: [{name: v, path: d}, {name: w, path: d}]}\n",
        "path (d) is mounted twice");
    expect_error("services: [\n", "yaml:");

    app_config a;
    char err[256];
    load(&a, "services:\n  - {name: a, image: x, mounts: [{name: ghost, path: d}]}\n");
    assert_int_equal(app_check_mounts(&a, err, sizeof err), -1);
    assert_string_equal(err, "services[0].mounts[0].name: volume (ghost) not found");
    app_free(&a);
}

static void test_diff(void **state)
{
    app_config a, b;
    load(&a, APP);
    load(&b, APP);
    assert_true(app_service_unchanged(&a, &b, "hub"));
    assert_true(app_service_unchanged(&a, &b, "rt"));
    assert_false(app_service_unchanged(&a, &b, "nope"));
    app_free(&b);

    /* another env: changed; another path of a mounted volume: changed; the same path
     * written differently: unchanged; another service changed: this one is not */
    char *t = strdup(APP);
    memcpy(strstr(t, "{A: '1'}"), "{A: '2'}", 8);
    load(&b, t);
    assert_false(app_service_unchanged(&a, &b, "hub"));
    assert_true(app_service_unchanged(&a, &b, "rt"));
    app_free(&b);
    free(t);

    const char *moved = "path: var/db/baetyl/conf2}\n";
    size_t n = strlen(APP);
    t = malloc(n + 8);
    snprintf(t, n + 8, "%.*s%s", (int)(strstr(APP, "path: var/db/baetyl/conf}") - APP), APP, moved);
    load(&b, t);
    assert_false(app_service_unchanged(&a, &b, "hub"));
    assert_true(app_service_unchanged(&a, &b, "rt"));
    app_free(&b);
    snprintf(t, n + 8, "%.*s%s", (int)(strstr(APP, "path: var/db/baetyl/conf}") - APP), APP,
             "path: var//db/baetyl/conf/}\n");
    load(&b, t);
    assert_true(app_service_unchanged(&a, &b, "hub"));
    app_free(&b);
    free(t);

    /* a copy is equal to its source */
    app_service copy;
    assert_int_equal(app_service_copy(&copy, APP_SERVICE(&a, 0)), 0);
    assert_string_equal(copy.name, "hub");
    assert_string_equal(BT_CFG_AT(copy.args, char *, 1), "conf.yml");
    app_service_free(&copy);
    app_free(&a);
}

static void test_conf(void **state)
{
    master_conf c;
    bool missing;
    char err[512];
    assert_int_equal(conf_load("/nonexistent/conf.yml", &c, &missing, err, sizeof err), 0);
    assert_true(missing);
    assert_string_equal(c.mode, "docker");
    assert_int_equal(c.grace, 30000);
    assert_string_equal(c.server.address, "unix:///var/run/baetyl.sock");
    assert_int_equal(c.server.timeout, 300000);
    assert_string_equal(c.docker.api_version, "1.38");
    assert_string_equal(c.logger_path, "var/log/baetyl/baetyl.log");
    assert_string_equal(c.logger.level, "info");
    assert_string_equal(c.otalog.path, "var/db/baetyl/ota.log");
    conf_free(&c);

    bt_api_addr a;
    assert_int_equal(bt_api_addr_parse("unix:///var/run/baetyl.sock", "/w", &a, err, sizeof err),
                     0);
    assert_true(a.is_unix);
    assert_string_equal(a.path, "/var/run/baetyl.sock");
    bt_api_addr_free(&a);
    assert_int_equal(bt_api_addr_parse("unix://var/run/x.sock", "/w", &a, err, sizeof err), 0);
    assert_string_equal(a.path, "/w/var/run/x.sock");
    bt_api_addr_free(&a);
    assert_int_equal(bt_api_addr_parse("tcp://127.0.0.1:50050", "/w", &a, err, sizeof err), 0);
    assert_false(a.is_unix);
    assert_string_equal(a.host, "127.0.0.1");
    assert_string_equal(a.port, "50050");
    bt_api_addr_free(&a);
    assert_int_equal(bt_api_addr_parse("tcp://[::1]:80", "/w", &a, err, sizeof err), 0);
    assert_string_equal(a.host, "::1");
    bt_api_addr_free(&a);
    const char *bad[] = {"http://x:1", "tcp://x", "tcp://x:99999", "tcp://x:1/p", "unix://", "x",
                         "tcp://[::1]80",
                         /* one rule with the client: port 0 and an empty host are refused */
                         "tcp://x:0", "tcp://:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(bt_api_addr_parse(bad[i], "/w", &a, err, sizeof err), -1);
    char longp[200] = "unix:///";
    memset(longp + 8, 'x', 150);
    longp[158] = '\0';
    assert_int_equal(bt_api_addr_parse(longp, "/w", &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "too long"));
}

static void test_stats_yaml_roundtrip(void **state)
{
    json_error_t je;
    json_t *j =
        json_loads("{\"hub\":{\"hub\":{\"name\":\"hub\",\"status\":\"running\",\"process\":"
                   "{\"id\":123,\"name\":\"baetyl-hub\"},\"n\":\"123\",\"b\":\"true\",\"f\":1.5,"
                   "\"t\":true,\"z\":null,\"l\":[1,\"two\",{\"x\":\"a: b\"}],\"e\":\"\"}}}",
                   0, &je);
    assert_non_null(j);
    char path[] = "/tmp/bt-stats-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char err[256];
    assert_int_equal(json_to_yaml_file(j, path, err, sizeof err), 0);
    json_t *back = yaml_file_to_json(path, err, sizeof err);
    assert_non_null(back);
    assert_true(json_equal(j, back));
    json_decref(back);
    json_decref(j);
    unlink(path);

    /* hostile documents: alias expansion and depth are bounded */
    const char *bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    assert_null(yaml_text_to_json(bomb, strlen(bomb), err, sizeof err));
    char deep[400];
    memset(deep, '[', 200);
    memset(deep + 200, ']', 200);
    assert_null(yaml_text_to_json(deep, sizeof deep, err, sizeof err));
    assert_null(yaml_text_to_json("a: [", 4, err, sizeof err));
    assert_non_null(strstr(err, "yaml:"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors_name_the_field),
        cmocka_unit_test(test_presence_and_meta),
        cmocka_unit_test(test_unknown_top_level_key),
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_conf),
        cmocka_unit_test(test_stats_yaml_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
