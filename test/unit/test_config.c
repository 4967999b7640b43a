/* Unit tests of the config loader (sdk/src/config*.c): every type, default, error text
 * (path and line), templating, equal/copy/free, hostile documents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>

#include "baetyl/config.h"
#include "baetyl/log.h"
#include "../../sdk/src/config_internal.h" /* bt_cfg_distance */

static char err[512];

/* ---- schemas --------------------------------------------------------------------- */

typedef struct {
    char *s;
    bool b;
    long i;
    double f;
    int64_t d;
    int64_t z;
} scalars_cfg;

static const bt_cfg_field scalars_fields[] = {BT_FIELD(scalars_cfg, s, "s", BT_CFG_STRING),
                                              BT_FIELD(scalars_cfg, b, "b", BT_CFG_BOOL),
                                              BT_FIELD(scalars_cfg, i, "i", BT_CFG_INT),
                                              BT_FIELD(scalars_cfg, f, "f", BT_CFG_FLOAT),
                                              BT_FIELD(scalars_cfg, d, "d", BT_CFG_DURATION),
                                              BT_FIELD(scalars_cfg, z, "z", BT_CFG_SIZE),
                                              {0}};
static const bt_cfg_schema scalars_schema = {sizeof(scalars_cfg), scalars_fields, NULL};

static const bt_cfg_field defaults_fields[] = {
    BT_FIELD(scalars_cfg, s, "s", BT_CFG_STRING, .def = "unix:///var/run/baetyl.sock"),
    BT_FIELD(scalars_cfg, b, "b", BT_CFG_BOOL, .def = "yes"),
    BT_FIELD(scalars_cfg, i, "i", BT_CFG_INT, .def = "-42"),
    BT_FIELD(scalars_cfg, f, "f", BT_CFG_FLOAT, .def = "1.5"),
    BT_FIELD(scalars_cfg, d, "d", BT_CFG_DURATION, .def = "1m30s"),
    BT_FIELD(scalars_cfg, z, "z", BT_CFG_SIZE, .def = "32k"),
    {0}};
static const bt_cfg_schema defaults_schema = {sizeof(scalars_cfg), defaults_fields, NULL};

/* Hub client settings (SPEC §17) nested in a module config, plus dotted names. */
typedef struct {
    char *topic;
    long qos;
} sub_cfg;

static const bt_cfg_field sub_fields[] = {
    BT_FIELD(sub_cfg, topic, "topic", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(sub_cfg, qos, "qos", BT_CFG_INT, .def = "0", .flags = BT_CFG_RANGE, .min = 0,
             .max = 1),
    {0}};
static const bt_cfg_schema sub_schema = {sizeof(sub_cfg), sub_fields, NULL};

typedef struct {
    char *address;
    char *username;
    int64_t timeout;
    int64_t interval;
    bool cleansession;
    bt_cfg_list subscriptions;
} hub_cfg;

static const bt_cfg_field hub_fields[] = {
    BT_FIELD(hub_cfg, address, "address", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(hub_cfg, username, "username", BT_CFG_STRING),
    BT_FIELD(hub_cfg, timeout, "timeout", BT_CFG_DURATION, .def = "30s"),
    BT_FIELD(hub_cfg, interval, "interval", BT_CFG_DURATION, .def = "1m"),
    BT_FIELD(hub_cfg, cleansession, "cleansession", BT_CFG_BOOL, .def = "false"),
    BT_FIELD(hub_cfg, subscriptions, "subscriptions", BT_CFG_LIST, .sub = &sub_schema),
    {0}};
static const bt_cfg_schema hub_schema = {sizeof(hub_cfg), hub_fields, NULL};

typedef struct {
    char *ca;
    char *cert;
    bool insecure;
} tls_cfg;

static const bt_cfg_field tls_fields[] = {
    BT_FIELD(tls_cfg, ca, "ca", BT_CFG_STRING),
    BT_FIELD(tls_cfg, cert, "cert", BT_CFG_STRING),
    BT_FIELD(tls_cfg, insecure, "insecure", BT_CFG_BOOL, .def = "off"),
    {0}};
static const bt_cfg_schema tls_schema = {sizeof(tls_cfg), tls_fields, NULL};

typedef struct {
    char *name;
    hub_cfg hub;
    tls_cfg tls;
    long length_max;
    int64_t retention;
    bt_cfg_list listen;
    bt_cfg_list ports;
    bt_cfg_map env;
    bt_cfg_map remotes;
    bt_logger_config logger;
} module_cfg;

static const bt_cfg_field module_fields[] = {
    BT_FIELD(module_cfg, name, "name", BT_CFG_STRING),
    BT_FIELD(module_cfg, hub, "hub", BT_CFG_STRUCT, .sub = &hub_schema),
    BT_FIELD(module_cfg, tls, NULL, BT_CFG_STRUCT, .sub = &tls_schema, .flags = BT_CFG_INLINE),
    BT_FIELD(module_cfg, length_max, "message.length.max", BT_CFG_INT, .def = "32768",
             .flags = BT_CFG_RANGE, .min = 1, .max = 268435455),
    BT_FIELD(module_cfg, retention, "message.ingress.qos1.cleanup.retention", BT_CFG_DURATION,
             .def = "48h"),
    BT_FIELD(module_cfg, listen, "listen", BT_CFG_LIST, .elem = BT_CFG_STRING,
             .def = "['tcp://0.0.0.0:1883']"),
    BT_FIELD(module_cfg, ports, "ports", BT_CFG_LIST, .elem = BT_CFG_INT),
    BT_FIELD(module_cfg, env, "env", BT_CFG_MAP, .elem = BT_CFG_STRING),
    BT_FIELD(module_cfg, remotes, "remotes", BT_CFG_MAP, .sub = &hub_schema),
    BT_FIELD(module_cfg, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    {0}};
static const bt_cfg_schema module_schema = {sizeof(module_cfg), module_fields, NULL};

/* The application (SPEC §3), with a struct check for unique names. */
typedef struct {
    char *name;
    char *path;
    bool readonly;
} mount_cfg;

static const bt_cfg_field mount_fields[] = {
    BT_FIELD(mount_cfg, name, "name", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(mount_cfg, path, "path", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(mount_cfg, readonly, "readonly", BT_CFG_BOOL),
    {0}};
static const bt_cfg_schema mount_schema = {sizeof(mount_cfg), mount_fields, NULL};

typedef struct {
    char *policy;
    long retry_max;
    int64_t backoff_min, backoff_max;
    double factor;
} restart_cfg;

static const bt_cfg_field restart_fields[] = {
    BT_FIELD(restart_cfg, policy, "policy", BT_CFG_STRING, .def = "always",
             .choices = "always|on-failure|no"),
    BT_FIELD(restart_cfg, retry_max, "retry.max", BT_CFG_INT, .def = "0"),
    BT_FIELD(restart_cfg, backoff_min, "backoff.min", BT_CFG_DURATION, .def = "1s"),
    BT_FIELD(restart_cfg, backoff_max, "backoff.max", BT_CFG_DURATION, .def = "5m"),
    BT_FIELD(restart_cfg, factor, "backoff.factor", BT_CFG_FLOAT, .def = "2", .flags = BT_CFG_RANGE,
             .min = 1, .max = 100),
    {0}};
static const bt_cfg_schema restart_schema = {sizeof(restart_cfg), restart_fields, NULL};

typedef struct {
    char *name;
    char *image;
    long replica;
    bt_cfg_list mounts;
    bt_cfg_list args;
    bt_cfg_map env;
    restart_cfg restart;
    int64_t memory;
} service_cfg;

static int check_image(const void *v, char *why, size_t n)
{
    const char *s = *(char *const *)v;
    if (strchr(s, ' ')) {
        snprintf(why, n, "image (%s) contains a space", s);
        return -1;
    }
    return 0;
}

static const bt_cfg_field service_fields[] = {
    BT_FIELD(service_cfg, name, "name", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .pattern = "^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$"),
    BT_FIELD(service_cfg, image, "image", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .check = check_image),
    BT_FIELD(service_cfg, replica, "replica", BT_CFG_INT, .def = "0"),
    BT_FIELD(service_cfg, mounts, "mounts", BT_CFG_LIST, .sub = &mount_schema),
    BT_FIELD(service_cfg, args, "args", BT_CFG_LIST, .elem = BT_CFG_STRING),
    BT_FIELD(service_cfg, env, "env", BT_CFG_MAP, .elem = BT_CFG_STRING),
    BT_FIELD(service_cfg, restart, "restart", BT_CFG_STRUCT, .sub = &restart_schema),
    BT_FIELD(service_cfg, memory, "resources.memory.limit", BT_CFG_SIZE),
    {0}};
static const bt_cfg_schema service_schema = {sizeof(service_cfg), service_fields, NULL};

typedef struct {
    char *version;
    bt_cfg_list services;
    bt_cfg_list volumes;
} app_cfg;

static int check_app(void *obj, char *why, size_t n)
{
    app_cfg *a = obj;
    for (size_t i = 0; i < a->services.n; i++)
        for (size_t j = 0; j < i; j++) {
            const char *x = BT_CFG_AT(a->services, service_cfg, i).name;
            if (strcmp(x, BT_CFG_AT(a->services, service_cfg, j).name) == 0) {
                snprintf(why, n, "services: name (%s) duplicated", x);
                return -1;
            }
        }
    return 0;
}

static const bt_cfg_field app_fields[] = {
    BT_FIELD(app_cfg, version, "version", BT_CFG_STRING),
    BT_FIELD(app_cfg, services, "services", BT_CFG_LIST, .sub = &service_schema),
    BT_FIELD(app_cfg, volumes, "volumes", BT_CFG_LIST, .sub = &mount_schema),
    {0}};
static const bt_cfg_schema app_schema = {sizeof(app_cfg), app_fields, check_app};

/* Master config pieces (SPEC §2). */
typedef struct {
    char *mode;
    int64_t grace;
    char *address;
} master_cfg;

static const bt_cfg_field master_fields[] = {
    BT_FIELD(master_cfg, mode, "mode", BT_CFG_STRING, .def = "docker", .choices = "docker|native"),
    BT_FIELD(master_cfg, grace, "grace", BT_CFG_DURATION, .def = "30s"),
    BT_FIELD(master_cfg, address, "server.address", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    {0}};
static const bt_cfg_schema master_schema = {sizeof(master_cfg), master_fields, NULL};

/* A recursive schema: a tree of nodes with kids. */
typedef struct {
    bt_cfg_list kids;
} tree_cfg;
static const bt_cfg_schema tree_schema;
static const bt_cfg_field tree_fields[] = {
    BT_FIELD(tree_cfg, kids, "k", BT_CFG_LIST, .sub = &tree_schema), {0}};
static const bt_cfg_schema tree_schema = {sizeof(tree_cfg), tree_fields, NULL};

/* ---- helpers --------------------------------------------------------------------- */

static int load(const bt_cfg_schema *s, void *obj, const char *yaml)
{
    err[0] = '\0';
    return bt_cfg_load_string(s, obj, yaml, strlen(yaml), err, sizeof err);
}

/* Loads a document that must fail, and checks the whole error text and that obj was
 * zeroed again. */
static void expect_error(const bt_cfg_schema *s, const char *yaml, const char *want)
{
    char obj[1024];
    assert_true(s->size <= sizeof obj);
    memset(obj, 0x5a, sizeof obj);
    assert_int_equal(load(s, obj, yaml), -1);
    assert_string_equal(err, want);
    for (size_t i = 0; i < s->size; i++)
        assert_int_equal(obj[i], 0);
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_every_scalar_type(void **state)
{
    scalars_cfg c;
    assert_int_equal(load(&scalars_schema, &c,
                          "s: hello world\nb: On\ni: -123456789\nf: 2.5e3\nd: 1h2m3.5s\nz: 1.5m\n"),
                     0);
    assert_string_equal(c.s, "hello world");
    assert_true(c.b);
    assert_int_equal(c.i, -123456789);
    assert_true(c.f == 2500.0);
    assert_int_equal(c.d, 3723500);
    assert_int_equal(c.z, 1572864);
    bt_cfg_free(&scalars_schema, &c);
    assert_null(c.s);

    /* A number written as a YAML int is still a string for a string field; quoted
     * numbers are numbers for numeric fields. */
    assert_int_equal(load(&scalars_schema, &c, "s: 1883\ni: '7'\nd: 10\nz: 512\nb: NO\n"), 0);
    assert_string_equal(c.s, "1883");
    assert_int_equal(c.i, 7);
    assert_int_equal(c.d, 10000);
    assert_int_equal(c.z, 512);
    assert_false(c.b);
    bt_cfg_free(&scalars_schema, &c);
}

static void test_bool_spellings(void **state)
{
    const char *yes[] = {"true", "True", "TRUE", "yes", "YES", "on", "oN"};
    const char *no[] = {"false", "False", "no", "No", "off", "OFF"};
    char doc[64];
    scalars_cfg c;
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        snprintf(doc, sizeof doc, "b: %s", yes[i]);
        assert_int_equal(load(&scalars_schema, &c, doc), 0);
        assert_true(c.b);
        bt_cfg_free(&scalars_schema, &c);
    }
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        snprintf(doc, sizeof doc, "b: %s", no[i]);
        assert_int_equal(load(&defaults_schema, &c, doc), 0); /* default is yes */
        assert_false(c.b);
        bt_cfg_free(&defaults_schema, &c);
    }
    expect_error(&scalars_schema, "b: 1", "b: not a boolean (line 1)");
    expect_error(&scalars_schema, "b: y", "b: not a boolean (line 1)");
}

static void test_durations(void **state)
{
    struct {
        const char *in;
        int64_t ms;
    } ok[] = {{"10s", 10000}, {"1m30s", 90000}, {"500ms", 500},     {"48h", 172800000},
              {"0", 0},       {"1.5", 1500},    {"30", 30000},      {"1h2m3.5s", 3723500},
              {"100us", 0},   {"600us", 1},     {"1500000ns", 2},   {"2\xc2\xb5s", 0},
              {".5s", 500},   {"+5s", 5000},    {"1m0.25s", 60250}, {"2562047h", 9223369200000}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        int64_t ms = -1;
        assert_int_equal(bt_parse_duration(ok[i].in, &ms), 0);
        assert_int_equal(ms, ok[i].ms);
    }
    const char *bad[] = {"",         "10x",    "s",    "1m30", "-5s",
                         "1..5s",    "10 s",   " 10s", "1e3s", "9999999999999999999999s",
                         "2562048h", "1.5.5s", "h1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ms = 77;
        assert_int_equal(bt_parse_duration(bad[i], &ms), -1);
        assert_int_equal(ms, 77);
    }
}

static void test_sizes(void **state)
{
    struct {
        const char *in;
        int64_t b;
    } ok[] = {{"32k", 32768},    {"4m", 4194304},   {"1g", 1073741824}, {"10kb", 10240},
              {"512b", 512},     {"1.5m", 1572864}, {"100", 100},       {"2KiB", 2048},
              {"3 MB", 3145728}, {"1t", 1LL << 40}, {"2p", 1LL << 51},  {"0", 0},
              {"7G", 7LL << 30}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        int64_t b = -1;
        assert_int_equal(bt_parse_size(ok[i].in, &b), 0);
        assert_int_equal(b, ok[i].b);
    }
    const char *bad[] = {"",      "k",   "-1k", "10x", "1.k", "5ik", "1kk", "99999999999999999999",
                         "8192p", " 1k", "1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t b = 77;
        assert_int_equal(bt_parse_size(bad[i], &b), -1);
        assert_int_equal(b, 77);
    }
}

static void test_defaults_everywhere(void **state)
{
    const char *empties[] = {"", "# only a comment\n", "---\n", "~\n", "null", "--- # c\n...\n"};
    for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) {
        scalars_cfg c;
        assert_int_equal(load(&defaults_schema, &c, empties[i]), 0);
        assert_string_equal(c.s, "unix:///var/run/baetyl.sock");
        assert_true(c.b);
        assert_int_equal(c.i, -42);
        assert_true(c.f == 1.5);
        assert_int_equal(c.d, 90000);
        assert_int_equal(c.z, 32768);
        bt_cfg_free(&defaults_schema, &c);
    }
    /* No default: zero and NULL. Null values count as absent. */
    scalars_cfg z;
    assert_int_equal(load(&scalars_schema, &z, "s:\nb: ~\ni: null\n"), 0);
    assert_null(z.s);
    assert_false(z.b);
    assert_int_equal(z.i, 0);
    assert_int_equal(z.d, 0);
    bt_cfg_free(&scalars_schema, &z);
    /* ...but a quoted empty string is a value. */
    assert_int_equal(load(&defaults_schema, &z, "s: ''\n"), 0);
    assert_string_equal(z.s, "");
    bt_cfg_free(&defaults_schema, &z);

    module_cfg m;
    assert_int_equal(bt_cfg_defaults(&module_schema, &m, err, sizeof err), 0);
    assert_null(m.name);
    assert_null(m.hub.address); /* required is not checked by bt_cfg_defaults */
    assert_int_equal(m.hub.timeout, 30000);
    assert_int_equal(m.hub.interval, 60000);
    assert_int_equal(m.length_max, 32768);
    assert_int_equal(m.retention, 48 * 3600 * 1000LL);
    assert_int_equal(m.listen.n, 1);
    assert_string_equal(BT_CFG_AT(m.listen, char *, 0), "tcp://0.0.0.0:1883");
    assert_int_equal(m.ports.n, 0);
    assert_int_equal(m.env.n, 0);
    assert_false(m.tls.insecure);
    assert_null(m.logger.path);
    assert_string_equal(m.logger.level, "info");
    assert_string_equal(m.logger.format, "text");
    assert_int_equal(m.logger.age_max, 15);
    assert_int_equal(m.logger.size_max, 50);
    assert_int_equal(m.logger.backup_max, 15);
    bt_cfg_free(&module_schema, &m);

    /* An empty document still checks required fields. */
    expect_error(&master_schema, "", "server.address: required");
}

static const char *module_yaml = "name: timer\n"
                                 "hub:\n"
                                 "  address: tcp://127.0.0.1:1883\n"
                                 "  username: test\n"
                                 "  timeout: 5s\n"
                                 "  subscriptions:\n"
                                 "    - topic: a/b\n"
                                 "      qos: 1\n"
                                 "    - {topic: c}\n"
                                 "ca: var/ca.pem\n"
                                 "cert: var/cert.pem\n"
                                 "insecure: true\n"
                                 "message:\n"
                                 "  length:\n"
                                 "    max: 1024\n"
                                 "  ingress: {qos1: {cleanup: {retention: 1h}}}\n"
                                 "listen: ['tcp://0.0.0.0:1883', \"ssl://0.0.0.0:8883\"]\n"
                                 "ports:\n"
                                 "  - 80\n"
                                 "  - 443\n"
                                 "env:\n"
                                 "  zeta: last\n"
                                 "  alpha: '1'\n"
                                 "  empty:\n"
                                 "remotes:\n"
                                 "  cloud:\n"
                                 "    address: ssl://cloud:8883\n"
                                 "  backup: {address: tcp://b:1883, interval: 2m}\n"
                                 "unknown: {deep: [1, 2, 3]}\n"
                                 "logger:\n"
                                 "  path: var/log/x.log\n"
                                 "  level: debug\n"
                                 "  age: {max: 3}\n";

static void test_nested_dotted_inline_lists_maps(void **state)
{
    module_cfg m;
    assert_int_equal(load(&module_schema, &m, module_yaml), 0);
    assert_string_equal(m.name, "timer");
    assert_string_equal(m.hub.address, "tcp://127.0.0.1:1883");
    assert_string_equal(m.hub.username, "test");
    assert_int_equal(m.hub.timeout, 5000);
    assert_int_equal(m.hub.interval, 60000);
    assert_int_equal(m.hub.subscriptions.n, 2);
    assert_string_equal(BT_CFG_AT(m.hub.subscriptions, sub_cfg, 0).topic, "a/b");
    assert_int_equal(BT_CFG_AT(m.hub.subscriptions, sub_cfg, 0).qos, 1);
    assert_string_equal(BT_CFG_AT(m.hub.subscriptions, sub_cfg, 1).topic, "c");
    assert_int_equal(BT_CFG_AT(m.hub.subscriptions, sub_cfg, 1).qos, 0); /* default in element */
    assert_string_equal(m.tls.ca, "var/ca.pem");
    assert_string_equal(m.tls.cert, "var/cert.pem");
    assert_true(m.tls.insecure);
    assert_int_equal(m.length_max, 1024);
    assert_int_equal(m.retention, 3600000);
    assert_int_equal(m.listen.n, 2);
    assert_string_equal(BT_CFG_AT(m.listen, char *, 0), "tcp://0.0.0.0:1883");
    assert_string_equal(BT_CFG_AT(m.listen, char *, 1), "ssl://0.0.0.0:8883");
    assert_int_equal(m.ports.n, 2);
    assert_int_equal(BT_CFG_AT(m.ports, long, 0), 80);
    assert_int_equal(BT_CFG_AT(m.ports, long, 1), 443);
    assert_int_equal(m.env.n, 3);
    assert_string_equal(m.env.keys[0], "zeta"); /* file order */
    assert_string_equal(((char **)m.env.values)[0], "last");
    assert_string_equal(m.env.keys[1], "alpha");
    assert_string_equal(((char **)m.env.values)[1], "1");
    assert_string_equal(m.env.keys[2], "empty");
    assert_string_equal(((char **)m.env.values)[2], "");
    assert_int_equal(m.remotes.n, 2);
    hub_cfg *r = m.remotes.values;
    assert_string_equal(m.remotes.keys[0], "cloud");
    assert_string_equal(r[0].address, "ssl://cloud:8883");
    assert_int_equal(r[0].timeout, 30000); /* defaults inside map values */
    assert_int_equal(r[0].interval, 60000);
    assert_string_equal(m.remotes.keys[1], "backup");
    assert_int_equal(r[1].interval, 120000);
    assert_string_equal(m.logger.path, "var/log/x.log");
    assert_string_equal(m.logger.level, "debug");
    assert_string_equal(m.logger.format, "text");
    assert_int_equal(m.logger.age_max, 3);
    assert_int_equal(m.logger.size_max, 50);
    bt_cfg_free(&module_schema, &m);
    assert_null(m.name);
    assert_int_equal(m.remotes.n, 0);
}

static const char *app_yaml =
    "version: v1\n"
    "services:\n"
    "  - name: localhub\n"
    "    image: baetyl-hub\n"
    "    replica: 1\n"
    "    mounts: [{name: vol, path: etc/baetyl, readonly: true}]\n"
    "    args: ['-c', conf/conf.yml]\n"
    "    env: {version: v1}\n"
    "    restart: {policy: on-failure, retry: {max: 3}, backoff: {min: 2s, factor: 1.5}}\n"
    "    resources: {memory: {limit: 500m}}\n"
    "  - name: timer\n"
    "    image: baetyl-timer\n"
    "volumes:\n"
    "  - {name: vol, path: var/db/baetyl/localhub-conf}\n";

static void test_application(void **state)
{
    app_cfg a;
    assert_int_equal(load(&app_schema, &a, app_yaml), 0);
    assert_string_equal(a.version, "v1");
    assert_int_equal(a.services.n, 2);
    service_cfg *s = a.services.items;
    assert_string_equal(s[0].name, "localhub");
    assert_int_equal(s[0].replica, 1);
    assert_int_equal(s[0].mounts.n, 1);
    assert_true(BT_CFG_AT(s[0].mounts, mount_cfg, 0).readonly);
    assert_int_equal(s[0].args.n, 2);
    assert_string_equal(BT_CFG_AT(s[0].args, char *, 1), "conf/conf.yml");
    assert_string_equal(s[0].restart.policy, "on-failure");
    assert_int_equal(s[0].restart.retry_max, 3);
    assert_int_equal(s[0].restart.backoff_min, 2000);
    assert_int_equal(s[0].restart.backoff_max, 300000);
    assert_true(s[0].restart.factor == 1.5);
    assert_int_equal(s[0].memory, 500LL << 20);
    assert_string_equal(s[1].name, "timer");
    assert_int_equal(s[1].replica, 0);
    assert_string_equal(s[1].restart.policy, "always"); /* absent struct: its defaults */
    assert_true(s[1].restart.factor == 2.0);
    assert_int_equal(s[1].memory, 0);
    assert_int_equal(a.volumes.n, 1);
    bt_cfg_free(&app_schema, &a);
}

static void test_error_messages(void **state)
{
    expect_error(&module_schema, "name: x\nhub:\n  username: u\n",
                 "hub.address: required (line 3)");
    expect_error(&module_schema, "name: x\n", "hub.address: required");
    expect_error(&module_schema, "hub:\n  address: ''\n", "hub.address: required (line 2)");
    expect_error(&master_schema, "mode: native\n", "server.address: required");
    expect_error(&master_schema, "server:\n  timeout: 1m\n", "server.address: required (line 2)");
    expect_error(&app_schema,
                 "version: v1\n"
                 "services:\n"
                 "  - name: a\n"
                 "    image: img\n"
                 "    replica: 1\n"
                 "  - name: b\n"
                 "    image: img\n"
                 "    env: {k: v}\n"
                 "    replica: x\n",
                 "services[1].replica: not an integer (line 9)");
    expect_error(&app_schema, "services:\n  - image: i\n", "services[0].name: required (line 2)");
    expect_error(&app_schema, "services:\n  - {name: x, image: i}\n  - {name: x, image: j}\n",
                 "services: name (x) duplicated");
    expect_error(
        &app_schema, "services:\n  - {name: 'bad name', image: i}\n",
        "services[0].name: \"bad name\" does not match ^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$ (line 2)");
    expect_error(&app_schema, "services:\n  - {name: a, image: 'x y'}\n",
                 "services[0].image: image (x y) contains a space (line 2)");
    expect_error(&app_schema, "services:\n  - {name: a, image: i, restart: {policy: sometimes}}\n",
                 "services[0].restart.policy: must be one of always|on-failure|no (line 2)");
    expect_error(
        &app_schema,
        "services:\n  - name: a\n    image: i\n    restart:\n      backoff: {factor: 0.5}\n",
        "services[0].restart.backoff.factor: must be between 1 and 100 (line 5)");
    expect_error(&app_schema, "services:\n  - name: a\n    image: i\n    mounts: [{name: v}]\n",
                 "services[0].mounts[0].path: required (line 4)");
    expect_error(&app_schema,
                 "services:\n  - {name: a, image: i, resources: {memory: {limit: 5q}}}\n",
                 "services[0].resources.memory.limit: invalid size \"5q\" (line 2)");
    expect_error(&app_schema, "services:\n  - {name: a, image: i, resources: 5}\n",
                 "services[0].resources: not a mapping (line 2)");
    expect_error(&app_schema, "services: {a: 1}\n", "services: not a list (line 1)");
    expect_error(&app_schema, "services: [5]\n", "services[0]: not a mapping (line 1)");
    expect_error(&app_schema, "version: [1]\n", "version: not a string (line 1)");
    expect_error(&master_schema, "mode: foo\nserver: {address: x}\n",
                 "mode: must be one of docker|native (line 1)");
    expect_error(&master_schema, "server: {address: x}\ngrace: 10x\n",
                 "grace: invalid duration \"10x\" (line 2)");
    expect_error(&module_schema, "hub: {address: x}\nmessage: {length: {max: 0}}\n",
                 "message.length.max: must be between 1 and 2.68435e+08 (line 2)");
    expect_error(&module_schema, "hub: {address: x}\nmessage: 5\n",
                 "message: not a mapping (line 2)");
    expect_error(&module_schema, "hub: {address: x}\nports: [1, two]\n",
                 "ports[1]: not an integer (line 2)");
    expect_error(&module_schema, "hub: {address: x}\nports: [99999999999999999999]\n",
                 "ports[0]: integer out of range (line 2)");
    expect_error(&module_schema, "hub: {address: x}\nenv: [a]\n", "env: not a mapping (line 2)");
    expect_error(&module_schema, "hub: {address: x}\nenv:\n  a: 1\n  b: 2\n  a: 3\n",
                 "env: key \"a\" duplicated (line 5)");
    expect_error(&module_schema, "hub: {address: x}\nremotes: {r: {username: u}}\n",
                 "remotes.r.address: required (line 2)");
    expect_error(&module_schema, "hub: {address: x}\nlogger: {level: verbose}\n",
                 "logger.level: must be one of debug|info|warn|error (line 2)");
    expect_error(&module_schema,
                 "hub: {address: x}\nhub: {address: x, subscriptions: [{topic: t, qos: 2}]}\n",
                 "hub.subscriptions[0].qos: must be between 0 and 1 (line 2)");
    expect_error(&scalars_schema, "f: nan\n", "f: not a number (line 1)");
    expect_error(&scalars_schema, "f: 1e999\n", "f: number out of range (line 1)");
    expect_error(&scalars_schema, "s: \"a\\0b\"\n", "s: contains a NUL byte (line 1)");
    expect_error(&scalars_schema, "d: {a: 1}\n", "d: not a duration (line 1)");
    expect_error(&scalars_schema, "- a\n- b\n", "config is not a mapping (line 1)");
    expect_error(&scalars_schema, "just text\n", "config is not a mapping (line 1)");
    expect_error(&scalars_schema, "a: [1, 2\nb: 3\n",
                 "yaml: did not find expected ',' or ']' (line 2, column 2)");
    expect_error(&scalars_schema, "a: b: c\n",
                 "yaml: mapping values are not allowed in this context (line 1, column 5)");
    expect_error(&scalars_schema, "a: *nowhere\n",
                 "yaml: found undefined alias (line 1, column 4)");
    /* Long values are cut in messages. */
    char doc[300] = "d: ";
    memset(doc + 3, '9', 200);
    doc[203] = 'x';
    doc[204] = '\0';
    expect_error(
        &scalars_schema, doc,
        "d: invalid duration "
        "\"9999999999999999999999999999999999999999999999999999999999999999...\" (line 1)");
}

/* Choices and patterns check each string of a list or map; RANGE bounds lengths of
 * lists/maps, durations in ms and sizes in bytes. */
typedef struct {
    bt_cfg_list actions;
    bt_cfg_map labels;
    int64_t every;
    int64_t buf;
} perm_cfg;

static const bt_cfg_field perm_fields[] = {
    BT_FIELD(perm_cfg, actions, "actions", BT_CFG_LIST, .elem = BT_CFG_STRING, .choices = "pub|sub",
             .flags = BT_CFG_RANGE, .min = 1, .max = 2),
    BT_FIELD(perm_cfg, labels, "labels", BT_CFG_MAP, .elem = BT_CFG_STRING, .pattern = "^[a-z]*$",
             .flags = BT_CFG_RANGE, .min = 0, .max = 2),
    BT_FIELD(perm_cfg, every, "every", BT_CFG_DURATION, .def = "1s", .flags = BT_CFG_RANGE,
             .min = 1000, .max = 60000),
    BT_FIELD(perm_cfg, buf, "buf", BT_CFG_SIZE, .def = "1k", .flags = BT_CFG_RANGE, .min = 1,
             .max = 1 << 20),
    {0}};
static const bt_cfg_schema perm_schema = {sizeof(perm_cfg), perm_fields, NULL};

static void test_element_checks_and_ranges(void **state)
{
    perm_cfg p;
    assert_int_equal(
        load(&perm_schema, &p, "actions: [pub, sub]\nlabels: {a: x, b: ''}\nevery: 1m\nbuf: 1m\n"),
        0);
    assert_int_equal(p.actions.n, 2);
    assert_string_equal(BT_CFG_AT(p.actions, char *, 1), "sub");
    assert_int_equal(p.every, 60000);
    assert_int_equal(p.buf, 1 << 20);
    bt_cfg_free(&perm_schema, &p);
    expect_error(&perm_schema, "actions:\n  - pub\n  - get\n",
                 "actions[1]: must be one of pub|sub (line 3)");
    expect_error(&perm_schema, "actions: []\n",
                 "actions: must have between 1 and 2 entries (line 1)");
    expect_error(&perm_schema, "actions: [pub]\nlabels: {a: X}\n",
                 "labels.a: \"X\" does not match ^[a-z]*$ (line 2)");
    expect_error(&perm_schema, "actions: [pub]\nlabels: {a: x, b: y, c: z}\n",
                 "labels: must have between 0 and 2 entries (line 2)");
    expect_error(&perm_schema, "actions: [pub]\nevery: 61s\n",
                 "every: must be between 1000 and 60000 (line 2)");
    expect_error(&perm_schema, "actions: [pub]\nbuf: 1025k\n",
                 "buf: must be between 1 and 1.04858e+06 (line 2)");
    expect_error(&perm_schema, "actions: [pub]\nbuf: 0\n",
                 "buf: must be between 1 and 1.04858e+06 (line 2)");
    /* A list may not be written as a scalar, and a null list is an empty one. */
    expect_error(&perm_schema, "actions: pub\n", "actions: not a list (line 1)");
    expect_error(&perm_schema, "actions:\n", "actions: must have between 1 and 2 entries");
}

static void test_nul_bytes_and_control_chars(void **state)
{
    scalars_cfg c;
    const char doc[] = "s: a\0b\n";
    assert_int_equal(bt_cfg_load_string(&scalars_schema, &c, doc, sizeof doc - 1, err, sizeof err),
                     -1);
    assert_string_equal(err, "yaml: control characters are not allowed (line 1, column 5)");
    const char doc2[] = "i: 1\n\0";
    assert_int_equal(
        bt_cfg_load_string(&scalars_schema, &c, doc2, sizeof doc2 - 1, err, sizeof err), -1);
    assert_string_equal(err, "yaml: control characters are not allowed (line 2, column 1)");
    /* Invalid UTF-8 */
    assert_int_equal(load(&scalars_schema, &c, "s: \xff\xfe\xfd\n"), -1);
    assert_non_null(strstr(err, "yaml: invalid"));
}

static void test_anchors_aliases_merge(void **state)
{
    const char *yaml = "base: &hub {address: 'tcp://h:1883', timeout: 3s}\n"
                       "hub: *hub\n"
                       "remotes:\n"
                       "  a: *hub\n"
                       "  b:\n"
                       "    <<: *hub\n"
                       "    timeout: 4s\n"
                       "listen: &l [x, y]\n"
                       "env:\n"
                       "  <<: {k1: merged, k2: merged}\n"
                       "  k2: own\n";
    module_cfg m;
    assert_int_equal(load(&module_schema, &m, yaml), 0);
    assert_string_equal(m.hub.address, "tcp://h:1883");
    assert_int_equal(m.hub.timeout, 3000);
    hub_cfg *r = m.remotes.values;
    assert_string_equal(r[0].address, "tcp://h:1883");
    assert_string_equal(r[1].address, "tcp://h:1883");
    assert_int_equal(r[1].timeout, 4000);
    assert_int_equal(m.listen.n, 2);
    assert_int_equal(m.env.n, 2);
    assert_string_equal(m.env.keys[0], "k2");
    assert_string_equal(((char **)m.env.values)[0], "own");
    assert_string_equal(m.env.keys[1], "k1");
    assert_string_equal(((char **)m.env.values)[1], "merged");
    bt_cfg_free(&module_schema, &m);
}

static void test_template(void **state)
{
    setenv("BT_TEST_HOST", "10.0.0.1", 1);
    setenv("BT_TEST_EMPTY", "", 1);
    unsetenv("BT_TEST_UNSET");
    const char *in =
        "a: {{.BT_TEST_HOST}}:{{ .BT_TEST_HOST }} {{.BT_TEST_EMPTY}}|{{.BT_TEST_UNSET}}"
        " {{ BT_TEST_HOST}} {{.}} {{{.BT_TEST_HOST}}} {{.BT_TEST_HOST}";
    size_t n = 0;
    char *out = bt_cfg_template(in, strlen(in), &n);
    assert_non_null(out);
    assert_string_equal(out, "a: 10.0.0.1:10.0.0.1 |{{.BT_TEST_UNSET}} {{ BT_TEST_HOST}} {{.}} "
                             "{10.0.0.1} {{.BT_TEST_HOST}");
    assert_int_equal(n, strlen(out));
    free(out);

    /* Bytes after a NUL are kept: the length counts, not the terminator. */
    const char raw[] = "x\0{{.BT_TEST_HOST}}";
    out = bt_cfg_template(raw, sizeof raw - 1, &n);
    assert_int_equal(n, 10);
    assert_memory_equal(out,
                        "x\0"
                        "10.0.0.1",
                        10);
    free(out);
    out = bt_cfg_template(NULL, 0, &n);
    assert_non_null(out);
    assert_int_equal(n, 0);
    free(out);

    /* Through the loader, and an unset name logs a warning. */
    char logpath[] = "/tmp/bt-test-config-log-XXXXXX";
    int fd = mkstemp(logpath);
    assert_true(fd >= 0);
    close(fd);
    bt_logger_config lc;
    bt_logger_defaults(&lc);
    lc.path = logpath;
    assert_int_equal(bt_log_init(&lc, err, sizeof err), 0);
    master_cfg mc;
    assert_int_equal(
        load(&master_schema, &mc,
             "server:\n  address: tcp://{{.BT_TEST_HOST}}:80\nmode: '{{.BT_TEST_UNSET}}'\n"),
        -1);
    assert_string_equal(err, "mode: must be one of docker|native (line 3)");
    bt_log_close();
    FILE *fp = fopen(logpath, "r");
    assert_non_null(fp);
    char line[512] = "";
    size_t got = fread(line, 1, sizeof line - 1, fp);
    line[got] = '\0';
    fclose(fp);
    unlink(logpath);
    assert_non_null(strstr(line, "level=warning"));
    assert_non_null(strstr(line, "BT_TEST_UNSET is not set"));

    assert_int_equal(load(&master_schema, &mc, "server:\n  address: tcp://{{.BT_TEST_HOST}}:80\n"),
                     0);
    assert_string_equal(mc.address, "tcp://10.0.0.1:80");
    bt_cfg_free(&master_schema, &mc);
    setenv("BT_TEST_HOST", "h\nmode: native", 1); /* the value is YAML, like Baetyl 1.0 */
    assert_int_equal(load(&master_schema, &mc, "server: {address: x}\nhost: {{.BT_TEST_HOST}}\n"),
                     0);
    assert_string_equal(mc.mode, "native");
    bt_cfg_free(&master_schema, &mc);
    unsetenv("BT_TEST_HOST");
    unsetenv("BT_TEST_EMPTY");
}

static void test_equal_copy_free(void **state)
{
    app_cfg a, b, c;
    assert_int_equal(load(&app_schema, &a, app_yaml), 0);
    assert_int_equal(load(&app_schema, &b, app_yaml), 0);
    assert_true(bt_cfg_equal(&app_schema, &a, &b));
    assert_int_equal(bt_cfg_copy(&app_schema, &c, &a), 0);
    assert_true(bt_cfg_equal(&app_schema, &a, &c));
    /* The copy owns its memory: changing the copy leaves the original intact. */
    service_cfg *cs = c.services.items;
    assert_ptr_not_equal(cs[0].name, ((service_cfg *)a.services.items)[0].name);
    free(cs[0].env.keys[0]);
    cs[0].env.keys[0] = strdup("other");
    assert_false(bt_cfg_equal(&app_schema, &a, &c));
    assert_string_equal(((service_cfg *)a.services.items)[0].env.keys[0], "version");
    bt_cfg_free(&app_schema, &c);
    bt_cfg_free(&app_schema, &b);

    /* Each kind of difference is seen. */
    struct {
        const char *from, *to;
    } diffs[] = {
        {"replica: 1", "replica: 2"},
        {"readonly: true", "readonly: false"},
        {"'-c'", "'-d'"},
        {"version: v1}", "version: v2}"},
        {"factor: 1.5", "factor: 1.25"},
        {"min: 2s", "min: 3s"},
        {"limit: 500m", "limit: 501m"},
        {"  - name: timer\n    image: baetyl-timer\n", ""},
        {"conf/conf.yml]", "conf/conf.yml, x]"},
    };
    for (size_t i = 0; i < sizeof diffs / sizeof *diffs; i++) {
        char doc[2048];
        const char *at = strstr(app_yaml, diffs[i].from);
        assert_non_null(at);
        snprintf(doc, sizeof doc, "%.*s%s%s", (int)(at - app_yaml), app_yaml, diffs[i].to,
                 at + strlen(diffs[i].from));
        assert_int_equal(load(&app_schema, &b, doc), 0);
        assert_false(bt_cfg_equal(&app_schema, &a, &b));
        assert_false(bt_cfg_equal(&app_schema, &b, &a));
        bt_cfg_free(&app_schema, &b);
    }
    bt_cfg_free(&app_schema, &a);

    module_cfg m, n;
    assert_int_equal(load(&module_schema, &m, module_yaml), 0);
    assert_int_equal(bt_cfg_copy(&module_schema, &n, &m), 0);
    assert_true(bt_cfg_equal(&module_schema, &m, &n));
    free(n.tls.ca); /* inline struct fields are compared too */
    n.tls.ca = NULL;
    assert_false(bt_cfg_equal(&module_schema, &m, &n));
    bt_cfg_free(&module_schema, &n);
    assert_int_equal(bt_cfg_copy(&module_schema, &n, &m), 0);
    ((hub_cfg *)n.remotes.values)[1].timeout++;
    assert_false(bt_cfg_equal(&module_schema, &m, &n));
    bt_cfg_free(&module_schema, &n);
    bt_cfg_free(&module_schema, &m);
    /* Freeing twice is harmless: the first free zeroed everything. */
    bt_cfg_free(&module_schema, &m);
}

static void test_load_file(void **state)
{
    char path[] = "/tmp/bt-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *yaml = "mode: native\nserver:\n  address: unix:///var/run/baetyl.sock\ngrace: 1m\n";
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    master_cfg c;
    assert_int_equal(bt_cfg_load_file(&master_schema, &c, path, err, sizeof err), 0);
    assert_string_equal(c.mode, "native");
    assert_int_equal(c.grace, 60000);
    bt_cfg_free(&master_schema, &c);
    unlink(path);
    assert_int_equal(bt_cfg_load_file(&master_schema, &c, path, err, sizeof err), -1);
    char want[128];
    snprintf(want, sizeof want, "open %s: No such file or directory", path);
    assert_string_equal(err, want);
    assert_int_equal(bt_cfg_load_file(&master_schema, &c, "/tmp", err, sizeof err), -1);
    assert_string_equal(err, "read /tmp: Is a directory");
}

static void test_hostile_documents(void **state)
{
    /* Billion laughs: 9 levels of 10 aliases = 10^9 strings if walked naively. */
    typedef struct {
        bt_cfg_list l;
    } lol_cfg;
    static const bt_cfg_field lol_fields[] = {
        BT_FIELD(lol_cfg, l, "l", BT_CFG_LIST, .elem = BT_CFG_STRING), {0}};
    static const bt_cfg_schema lol_schema = {sizeof(lol_cfg), lol_fields, NULL};
    char doc[4096];
    int o =
        snprintf(doc, sizeof doc, "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (int i = 1; i < 9; i++)
        o += snprintf(doc + o, sizeof doc - (size_t)o,
                      "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i,
                      i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
    /* A list of strings only takes the 10 top aliases (they are not strings)... */
    snprintf(doc + o, sizeof doc - (size_t)o, "l: *a8\n");
    expect_error(&lol_schema, doc, "l[0]: not a string (line 8)");
    /* ...while a recursive schema walking the same kind of tree is stopped by the budget. */
    o = snprintf(doc, sizeof doc, "t0: &t0 {k: []}\n");
    for (int i = 1; i < 9; i++)
        o += snprintf(
            doc + o, sizeof doc - (size_t)o,
            "t%d: &t%d {k: [*t%d, *t%d, *t%d, *t%d, *t%d, *t%d, *t%d, *t%d, *t%d, *t%d]}\n", i, i,
            i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
    snprintf(doc + o, sizeof doc - (size_t)o, "k: [*t8, *t8, *t8]\n");
    expect_error(&tree_schema, doc,
                 "yaml: document too large (more than 1000000 values, aliases included)");

    /* Deep nesting is refused before libyaml's scanner goes quadratic on it; 255 levels
     * under the root mapping are fine (and the walk stops at the schema's depth). */
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 16);
    assert_non_null(deep);
    strcpy(deep, "l: ");
    memset(deep + 3, '[', depth);
    memset(deep + 3 + depth, ']', depth);
    deep[3 + 2 * depth] = '\0';
    expect_error(&lol_schema, deep, "yaml: nested deeper than 256 levels (line 1, column 259)");
    memset(deep + 3, '{', depth);
    memset(deep + 3 + depth, '}', depth);
    expect_error(&lol_schema, deep, "yaml: nested deeper than 256 levels (line 1, column 259)");
    memset(deep + 3, '[', 255);
    memset(deep + 3 + 255, ']', 255);
    deep[3 + 2 * 255] = '\0';
    expect_error(&lol_schema, deep, "l[0]: not a string (line 1)");
    free(deep);

    /* A recursive schema is stopped by the depth limit, not the stack. */
    tree_cfg t;
    assert_int_equal(load(&tree_schema, &t, "k: [{k: [{k: []}, {}]}]\n"), 0);
    assert_int_equal(t.kids.n, 1);
    assert_int_equal(BT_CFG_AT(BT_CFG_AT(t.kids, tree_cfg, 0).kids, tree_cfg, 0).kids.n, 0);
    bt_cfg_free(&tree_schema, &t);
    assert_int_equal(load(&tree_schema, &t, "k: &a [{k: *a}]\n"), -1);
    assert_non_null(strstr(err, ": too deeply nested (line 1)"));
    assert_int_equal(load(&tree_schema, &t, "x: &a {k: [*a]}\nk: [*a]\n"), -1);
    assert_non_null(strstr(err, "too deeply nested"));

    /* A merge cycle ends. */
    module_cfg m;
    assert_int_equal(load(&module_schema, &m, "hub: &h {<<: *h, address: a}\nenv: &e {<<: *e}\n"),
                     0);
    bt_cfg_free(&module_schema, &m);

    /* Merges of merges: 10^16 mappings to visit if nothing counted them. */
    o = snprintf(doc, sizeof doc, "m0: &m0 {a: b}\n");
    for (int i = 1; i < 17; i++)
        o += snprintf(
            doc + o, sizeof doc - (size_t)o,
            "m%d: &m%d {<<: [*m%d, *m%d, *m%d, *m%d, *m%d, *m%d, *m%d, *m%d, *m%d, *m%d]}\n", i, i,
            i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
    char *tail = doc + o;
    snprintf(tail, sizeof doc - (size_t)o, "hub: {address: x}\nenv: *m16\n");
    expect_error(&module_schema, doc,
                 "yaml: document too large (more than 1000000 values, aliases included)");
    snprintf(tail, sizeof doc - (size_t)o, "hub: *m16\n");
    expect_error(&module_schema, doc,
                 "yaml: document too large (more than 10000000 key lookups, aliases included)");

    /* Overlong keys and values. */
    size_t big = 200000;
    char *longdoc = malloc(big + 64);
    assert_non_null(longdoc);
    strcpy(longdoc, "env:\n  ? ");
    size_t at = strlen(longdoc);
    memset(longdoc + at, 'k', big);
    strcpy(longdoc + at + big, "\n  : v\nhub: {address: x}\n");
    assert_int_equal(load(&module_schema, &m, longdoc), 0);
    assert_int_equal(m.env.n, 1);
    assert_int_equal(strlen(m.env.keys[0]), big);
    bt_cfg_free(&module_schema, &m);
    strcpy(longdoc, "env:\n  ");
    at = strlen(longdoc);
    memset(longdoc + at, 'k', big);
    strcpy(longdoc + at + big, ": v\n");
    assert_int_equal(load(&module_schema, &m, longdoc), -1);
    assert_string_equal(
        err, "yaml: mapping values are not allowed in this context (line 2, column 200003)");
    free(longdoc);

    /* Non-scalar keys in a map, a map key with a NUL. */
    expect_error(&module_schema, "hub: {address: x}\nenv: {[a]: b}\n",
                 "env: key is not a string (line 2)");
    expect_error(&module_schema, "hub: {address: x}\nenv: {\"a\\0\": b}\n",
                 "env.a?: key contains a NUL byte (line 2)");
}

/* BT_CFG_JSON keeps YAML types (quoted = string), nesting, defaults, equal/copy/free. */
typedef struct {
    json_t *data;
    json_t *dflt;
    char *clientid;
} json_cfg;
static const bt_cfg_field json_fields[] = {
    BT_FIELD(json_cfg, data, "data", BT_CFG_JSON),
    BT_FIELD(json_cfg, dflt, "dflt", BT_CFG_JSON, .def = "{a: [1, x]}"),
    BT_FIELD(json_cfg, clientid, "clientid", BT_CFG_STRING),
    {0}};
static const bt_cfg_schema json_schema = {sizeof(json_cfg), json_fields, NULL};

static void test_json_values_and_folded_keys(void **state)
{
    (void)state;
    json_cfg c, d;
    char why[256];
    const char *y = "data:\n  n: 42\n  q: \"42\"\n  f: 2.5\n  b: true\n  s: 'false'\n  z: ~\n"
                    "  nest: {id: 7, tags: [a, 1]}\nclientId: camel\n";
    assert_int_equal(bt_cfg_load_string(&json_schema, &c, y, strlen(y), why, sizeof why), 0);
    char *txt = json_dumps(c.data, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(txt,
                        "{\"b\":true,\"f\":2.5,\"n\":42,\"nest\":{\"id\":7,\"tags\":[\"a\",1]},"
                        "\"q\":\"42\",\"s\":\"false\",\"z\":null}");
    free(txt);
    txt = json_dumps(c.dflt, JSON_COMPACT);
    assert_string_equal(txt, "{\"a\":[1,\"x\"]}");
    free(txt);
    /* a key in another case is taken when the exact one is absent */
    assert_string_equal(c.clientid, "camel");
    assert_int_equal(bt_cfg_copy(&json_schema, &d, &c), 0);
    assert_true(bt_cfg_equal(&json_schema, &c, &d));
    json_object_set_new(d.data, "extra", json_integer(1));
    assert_false(bt_cfg_equal(&json_schema, &c, &d));
    bt_cfg_free(&json_schema, &d);
    bt_cfg_free(&json_schema, &c);
    assert_null(c.data);
    /* the exact key wins over a folded one */
    y = "clientId: camel\nclientid: exact\n";
    assert_int_equal(bt_cfg_load_string(&json_schema, &c, y, strlen(y), why, sizeof why), 0);
    assert_string_equal(c.clientid, "exact");
    bt_cfg_free(&json_schema, &c);
}

static void test_schema_mistakes(void **state)
{
    typedef struct {
        bt_cfg_list l;
        char *s;
    } bad_cfg;
    static const bt_cfg_field nested_list[] = {
        BT_FIELD(bad_cfg, l, "l", BT_CFG_LIST, .elem = BT_CFG_LIST), {0}};
    static const bt_cfg_schema nested_schema = {sizeof(bad_cfg), nested_list, NULL};
    expect_error(&nested_schema, "l: [[1]]\n",
                 "l: schema: list/map elements must be scalars or structs (line 1)");
    static const bt_cfg_field bad_pattern[] = {
        BT_FIELD(bad_cfg, s, "s", BT_CFG_STRING, .pattern = "(("), {0}};
    static const bt_cfg_schema pattern_schema = {sizeof(bad_cfg), bad_pattern, NULL};
    expect_error(&pattern_schema, "s: x\n", "s: schema: invalid pattern (( (line 1)");
    static const bt_cfg_field bad_default[] = {
        BT_FIELD(bad_cfg, s, "s", BT_CFG_STRING),
        BT_FIELD(bad_cfg, l, "l", BT_CFG_LIST, .elem = BT_CFG_INT, .def = "[1, x]"),
        {0}};
    static const bt_cfg_schema default_schema = {sizeof(bad_cfg), bad_default, NULL};
    expect_error(&default_schema, "s: x\n", "l[1]: not an integer");
    bad_cfg b;
    assert_int_equal(bt_cfg_defaults(&default_schema, &b, err, sizeof err), -1);
    assert_string_equal(err, "l[1]: not an integer");
}

/* ---- unknown keys, size cap, presence --------------------------------------------- */

typedef struct {
    char text[4096];
    int n;
} warnings_t;

static void collect(void *arg, const char *msg)
{
    warnings_t *w = arg;
    size_t o = strlen(w->text);
    snprintf(w->text + o, sizeof w->text - o, "%s\n", msg);
    w->n++;
}

static int load_warn(const bt_cfg_schema *s, void *obj, const char *yaml, warnings_t *w,
                     bool strict)
{
    memset(w, 0, sizeof *w);
    bt_cfg_opts o = {.strict_top = strict, .warn = collect, .warn_arg = w};
    err[0] = '\0';
    return bt_cfg_load_string_opts(s, obj, yaml, strlen(yaml), &o, err, sizeof err);
}

static void test_unknown_keys(void **state)
{
    (void)state;
    warnings_t w;
    module_cfg m;
    /* the module document's only unknown key is its top-level "unknown" */
    assert_int_equal(load_warn(&module_schema, &m, module_yaml, &w, false), 0);
    assert_string_equal(w.text, "unknown key unknown (line 29)\n");
    bt_cfg_free(&module_schema, &m);
    /* nested, dotted, inline, folded, MAP and list element keys */
    const char *y = "hub:\n  adress: tcp://h:1\n  address: tcp://h:1\n"
                    "  subscriptions: [{topic: a, qso: 1}]\n"
                    "message: {length: {mx: 3}, ingres: {}}\n"
                    "insecur: true\nCA: x\nenv: {anything: 1}\n"
                    "remotes: {r: {address: tcp://r:1, usernme: u}}\n"
                    "logger: {levl: debug}\n";
    assert_int_equal(load_warn(&module_schema, &m, y, &w, false), 0);
    assert_string_equal(w.text,
                        "message.length: unknown key mx (did you mean max?) (line 5)\n"
                        "message: unknown key ingres (did you mean ingress?) (line 5)\n"
                        "unknown key insecur (did you mean insecure?) (line 6)\n"
                        "hub: unknown key adress (did you mean address?) (line 2)\n"
                        "hub.subscriptions[0]: unknown key qso (did you mean qos?) (line 4)\n"
                        "remotes.r: unknown key usernme (did you mean username?) (line 9)\n"
                        "logger: unknown key levl (did you mean level?) (line 10)\n");
    assert_string_equal(m.tls.ca, "x");
    bt_cfg_free(&module_schema, &m);
    /* keys brought in by a merge are checked; a far key gets no suggestion */
    y = "base: &b {timeout: 1s, zzzzzz: 1}\nhub: {<<: *b, address: tcp://h:1}\n";
    assert_int_equal(load_warn(&module_schema, &m, y, &w, false), 0);
    assert_string_equal(w.text, "unknown key base (line 1)\n"
                                "hub: unknown key zzzzzz (line 1)\n");
    bt_cfg_free(&module_schema, &m);
    /* an unknown top-level key is an error when asked; deeper ones stay warnings */
    app_cfg a;
    assert_int_equal(load_warn(&app_schema, &a, "servics: []\n", &w, true), -1);
    assert_string_equal(err, "unknown key servics (did you mean services?) (line 1)");
    assert_int_equal(w.n, 0);
    assert_int_equal(
        load_warn(&app_schema, &a, "services: [{name: a, imgae: x, image: i}]\n", &w, true), 0);
    assert_string_equal(w.text, "services[0]: unknown key imgae (did you mean image?) (line 1)\n");
    bt_cfg_free(&app_schema, &a);
    /* the warning comes before the error it often explains */
    assert_int_equal(load_warn(&module_schema, &m, "hub: {adress: x}\n", &w, false), -1);
    assert_string_equal(w.text, "hub: unknown key adress (did you mean address?) (line 1)\n");
    assert_string_equal(err, "hub.address: required (line 1)");
    /* at most 20 warnings, then one saying more were left out; control characters shown */
    char big[2048] = "";
    for (int i = 0; i < 30; i++)
        snprintf(big + strlen(big), sizeof big - strlen(big), "k%d: 1\n", i);
    scalars_cfg sc;
    assert_int_equal(load_warn(&scalars_schema, &sc, big, &w, false), 0);
    assert_int_equal(w.n, 21);
    assert_non_null(strstr(w.text, "unknown key k19 (line 20)\nmore unknown keys not shown\n"));
    bt_cfg_free(&scalars_schema, &sc);
    assert_int_equal(load_warn(&scalars_schema, &sc, "\"a\\tb\": 1\n", &w, false), 0);
    assert_string_equal(w.text, "unknown key a?b (line 1)\n");
    bt_cfg_free(&scalars_schema, &sc);
}

static void test_distance(void **state)
{
    (void)state;
    assert_int_equal(bt_cfg_distance("servics", 7, "services", 8, 3), 1);
    assert_int_equal(bt_cfg_distance("imgae", 5, "image", 5, 3), 1);
    assert_int_equal(bt_cfg_distance("IMAGE", 5, "image", 5, 3), 0);
    assert_int_equal(bt_cfg_distance("abc", 3, "xyz", 3, 1), 2); /* stops past the limit */
    assert_int_equal(bt_cfg_distance("a", 1, "abcdef", 6, 2), 3);
}

static void test_size_cap(void **state)
{
    (void)state;
    scalars_cfg c;
    bt_cfg_opts o = {.max_size = 8};
    assert_int_equal(
        bt_cfg_load_string_opts(&scalars_schema, &c, "s: 123456\n", 10, &o, err, sizeof err), -1);
    assert_string_equal(err, "config: file too large (10 bytes, limit 8; see "
                             "BAETYL_CONFIG_MAX_SIZE)");
    assert_int_equal(bt_cfg_max_size(NULL), BT_CFG_DEFAULT_MAX_SIZE);
    setenv("BAETYL_CONFIG_MAX_SIZE", "1k", 1);
    assert_int_equal(bt_cfg_max_size(NULL), 1024);
    assert_int_equal(bt_cfg_max_size(&o), 8);
    char path[] = "/tmp/bt-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 5000), 0); /* NUL bytes: refused before they are read */
    close(fd);
    assert_int_equal(bt_cfg_load_file(&scalars_schema, &c, path, err, sizeof err), -1);
    char want[256];
    snprintf(want, sizeof want,
             "%s: file too large (5000 bytes, limit 1024; see BAETYL_CONFIG_MAX_SIZE)", path);
    assert_string_equal(err, want);
    setenv("BAETYL_CONFIG_MAX_SIZE", "nonsense", 1);
    assert_int_equal(bt_cfg_max_size(NULL), BT_CFG_DEFAULT_MAX_SIZE);
    unsetenv("BAETYL_CONFIG_MAX_SIZE");
    /* a stream without a size (a pipe) is cut while it is read */
    o.max_size = 4;
    assert_int_equal(bt_cfg_load_file_opts(&scalars_schema, &c, "/dev/zero", &o, err, sizeof err),
                     -1);
    assert_string_equal(err, "/dev/zero: file too large (4096 bytes, limit 4; see "
                             "BAETYL_CONFIG_MAX_SIZE)");
    unlink(path);
}

typedef struct {
    bt_cfg_list l;
    bool has_l;
} seen_cfg;

static void test_seen(void **state)
{
    (void)state;
    static const bt_cfg_field fields[] = {BT_FIELD(seen_cfg, l, "l", BT_CFG_LIST,
                                                   .elem = BT_CFG_INT,
                                                   .seen = BT_SEEN(seen_cfg, has_l)),
                                          {0}};
    static const bt_cfg_schema schema = {sizeof(seen_cfg), fields, NULL};
    static const struct {
        const char *yaml;
        bool seen;
    } cases[] = {
        {"l: []\n", true}, {"l: [1]\n", true}, {"", false}, {"l:\n", false}, {"x: 1\n", false}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        seen_cfg c;
        assert_int_equal(load(&schema, &c, cases[i].yaml), 0);
        assert_int_equal(c.has_l, cases[i].seen);
        bt_cfg_free(&schema, &c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_scalar_type),
        cmocka_unit_test(test_bool_spellings),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_defaults_everywhere),
        cmocka_unit_test(test_nested_dotted_inline_lists_maps),
        cmocka_unit_test(test_application),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_element_checks_and_ranges),
        cmocka_unit_test(test_nul_bytes_and_control_chars),
        cmocka_unit_test(test_anchors_aliases_merge),
        cmocka_unit_test(test_template),
        cmocka_unit_test(test_equal_copy_free),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_hostile_documents),
        cmocka_unit_test(test_schema_mistakes),
        cmocka_unit_test(test_json_values_and_folded_keys),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_distance),
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_seen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
