/* libFuzzer target for the config loader: arbitrary bytes through templating, libyaml
 * and a schema that uses every type and flag. A load must either succeed, and then copy,
 * compare and free cleanly, or fail with a message and leave the struct zeroed. Unknown-key
 * warnings are one printable line each; a load without warnings also passes the strict
 * top-level check; the application schema of the SDK gets the same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/app_config.h"
#include "baetyl/config.h"
#include "baetyl/log.h"

typedef struct {
    char *topic;
    long qos;
} f_sub;

static const bt_cfg_field f_sub_fields[] = {
    BT_FIELD(f_sub, topic, "topic", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(f_sub, qos, "qos", BT_CFG_INT, .def = "0", .flags = BT_CFG_RANGE, .min = 0, .max = 1),
    {0}};
static const bt_cfg_schema f_sub_schema = {sizeof(f_sub), f_sub_fields, NULL};

typedef struct {
    char *ca;
    bool insecure;
} f_tls;

static const bt_cfg_field f_tls_fields[] = {
    BT_FIELD(f_tls, ca, "ca", BT_CFG_STRING),
    BT_FIELD(f_tls, insecure, "insecure", BT_CFG_BOOL, .def = "off"),
    {0}};
static const bt_cfg_schema f_tls_schema = {sizeof(f_tls), f_tls_fields, NULL};

typedef struct f_node {
    char *name;
    bt_cfg_list kids;
} f_node;

static const bt_cfg_schema f_node_schema;
static const bt_cfg_field f_node_fields[] = {
    BT_FIELD(f_node, name, "name", BT_CFG_STRING, .pattern = "^[a-z0-9_-]{0,16}$"),
    BT_FIELD(f_node, kids, "kids", BT_CFG_LIST, .sub = &f_node_schema),
    {0}};
static const bt_cfg_schema f_node_schema = {sizeof(f_node), f_node_fields, NULL};

typedef struct {
    char *mode;
    bool flag;
    long count;
    double ratio;
    int64_t timeout;
    int64_t size;
    long deep;
    f_tls tls;
    bt_cfg_list listen;
    bt_cfg_list ports;
    bt_cfg_list subs;
    bool has_subs;
    bt_cfg_map env;
    bt_cfg_map remotes;
    bt_cfg_list durations;
    f_node tree;
    bt_logger_config logger;
} f_cfg;

static int check_count(const void *v, char *err, size_t errlen)
{
    if (*(const long *)v == 13) {
        snprintf(err, errlen, "unlucky");
        return -1;
    }
    return 0;
}

static int check_cfg(void *obj, char *err, size_t errlen)
{
    const f_cfg *c = obj;
    if (c->flag && c->count < 0) {
        snprintf(err, errlen, "count: negative with flag");
        return -1;
    }
    return 0;
}

static const bt_cfg_field f_fields[] = {
    BT_FIELD(f_cfg, mode, "mode", BT_CFG_STRING, .def = "docker", .choices = "docker|native"),
    BT_FIELD(f_cfg, flag, "flag", BT_CFG_BOOL),
    BT_FIELD(f_cfg, count, "count", BT_CFG_INT, .def = "3", .check = check_count),
    BT_FIELD(f_cfg, ratio, "ratio", BT_CFG_FLOAT, .flags = BT_CFG_RANGE, .min = -1, .max = 1e9),
    BT_FIELD(f_cfg, timeout, "timeout", BT_CFG_DURATION, .def = "30s"),
    BT_FIELD(f_cfg, size, "size", BT_CFG_SIZE, .def = "32k", .flags = BT_CFG_RANGE, .min = 0,
             .max = 1e12),
    BT_FIELD(f_cfg, deep, "a.b.c", BT_CFG_INT, .def = "1"),
    BT_FIELD(f_cfg, tls, NULL, BT_CFG_STRUCT, .sub = &f_tls_schema, .flags = BT_CFG_INLINE),
    BT_FIELD(f_cfg, listen, "listen", BT_CFG_LIST, .elem = BT_CFG_STRING,
             .def = "['tcp://0.0.0.0:1883']"),
    BT_FIELD(f_cfg, ports, "ports", BT_CFG_LIST, .elem = BT_CFG_INT, .flags = BT_CFG_RANGE,
             .min = 0, .max = 100),
    BT_FIELD(f_cfg, subs, "subs", BT_CFG_LIST, .sub = &f_sub_schema,
             .seen = BT_SEEN(f_cfg, has_subs)),
    BT_FIELD(f_cfg, env, "env", BT_CFG_MAP, .elem = BT_CFG_STRING),
    BT_FIELD(f_cfg, remotes, "remotes", BT_CFG_MAP, .sub = &f_sub_schema),
    BT_FIELD(f_cfg, durations, "durations", BT_CFG_LIST, .elem = BT_CFG_DURATION),
    BT_FIELD(f_cfg, tree, "tree", BT_CFG_STRUCT, .sub = &f_node_schema),
    BT_FIELD(f_cfg, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    {0}};
static const bt_cfg_schema f_schema = {sizeof(f_cfg), f_fields, check_cfg};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("FUZZ", "tcp://h:1", 1);
    bt_log_set_level(BT_LOG_ERROR); /* unset-variable warnings would flood the output */
    return 0;
}

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static int warnings;

static void on_warning(void *arg, const char *msg)
{
    (void)arg;
    if (!msg[0] || strlen(msg) > 2048)
        abort();
    for (const char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20)
            abort();
    warnings++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    f_cfg a, b, c;
    bt_cfg_opts lax = {.warn = on_warning}, strict = {.warn = on_warning, .strict_top = true};
    warnings = 0;
    if (bt_cfg_load_string_opts(&f_schema, &a, (const char *)data, size, &lax, err, sizeof err) <
        0) {
        if (!err[0] || !all_zero(&a, sizeof a))
            abort();
    } else {
        if (bt_cfg_load_string(&f_schema, &b, (const char *)data, size, err, sizeof err) < 0)
            abort();
        if (!bt_cfg_equal(&f_schema, &a, &b) || bt_cfg_copy(&f_schema, &c, &a) < 0 ||
            !bt_cfg_equal(&f_schema, &c, &b))
            abort();
        bt_cfg_free(&f_schema, &b);
        bt_cfg_free(&f_schema, &c);
        bt_cfg_free(&f_schema, &a);
        if (!all_zero(&a, sizeof a))
            abort();
        int rc = bt_cfg_load_string_opts(&f_schema, &b, (const char *)data, size, &strict, err,
                                         sizeof err);
        /* strict only refuses what was a warning */
        if (rc < 0 && (!err[0] || !all_zero(&b, sizeof b) || warnings == 0))
            abort();
        bt_cfg_free(&f_schema, &b);
    }
    bt_cfg_opts tiny = {.max_size = 64, .warn = on_warning};
    if (size > 64 && bt_cfg_load_string_opts(&f_schema, &a, (const char *)data, size, &tiny, err,
                                             sizeof err) == 0)
        abort();

    bt_app_config app;
    if (bt_app_load_string((const char *)data, size, &app, err, sizeof err) == 0)
        bt_app_free(&app);
    else if (!err[0] || !all_zero(&app, sizeof app))
        abort();

    /* The scalar readers on the raw text. */
    if (size < 256) {
        char s[256];
        memcpy(s, data, size);
        s[size] = '\0';
        int64_t v;
        bt_parse_duration(s, &v);
        bt_parse_size(s, &v);
    }
    return 0;
}
