/* The function-manager's config (SPEC §12): hub, server, rules, functions, logger, with the
 * checks the schema cannot say alone (unique names, rules naming known functions). */
#include <stdio.h>
#include <string.h>

#include "fm.h"

/* Instance names are <service>.<function>.<n> and the master takes [A-Za-z0-9._-]{1,128}. */
#define NAME_PATTERN "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"

static int check_topic_name(const void *v, char *err, size_t errlen)
{
    const char *s = *(char *const *)v;
    if (s && !bt_mqtt_client_valid_name(s)) {
        snprintf(err, errlen, "topic (%s) invalid: a topic name without wildcards is expected", s);
        return -1;
    }
    return 0;
}

static const bt_cfg_field publish_fields[] = {
    BT_FIELD(bt_mqtt_topic_info, topic, "topic", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .check = check_topic_name),
    BT_FIELD(bt_mqtt_topic_info, qos, "qos", BT_CFG_INT, .def = "0", .flags = BT_CFG_RANGE,
             .min = 0, .max = 1),
    {0}};
static const bt_cfg_schema publish_schema = {sizeof(bt_mqtt_topic_info), publish_fields, NULL};

static const bt_cfg_field rule_fields[] = {
    BT_FIELD(fm_rule_cfg, clientid, "clientid", BT_CFG_STRING),
    BT_FIELD(fm_rule_cfg, subscribe, "subscribe", BT_CFG_STRUCT, .sub = &bt_mqtt_topic_schema),
    BT_FIELD(fm_rule_cfg, function, "function.name", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(fm_rule_cfg, publish, "publish", BT_CFG_STRUCT, .sub = &publish_schema),
    BT_FIELD(fm_rule_cfg, retry_max, "retry.max", BT_CFG_INT, .def = "3", .flags = BT_CFG_RANGE,
             .min = 0, .max = 100),
    BT_FIELD(fm_rule_cfg, deadletter, "deadletter", BT_CFG_STRING, .check = check_topic_name),
    {0}};
static const bt_cfg_schema rule_schema = {sizeof(fm_rule_cfg), rule_fields, NULL};

static int function_check(void *obj, char *err, size_t errlen)
{
    const fm_function_cfg *f = obj;
    if (f->min > f->max) {
        snprintf(err, errlen, "instance.min (%ld) is greater than instance.max (%ld)", f->min,
                 f->max);
        return -1;
    }
    if (f->call.backoff_max < 1) { /* 0 would restart a failing runtime in a tight loop */
        snprintf(err, errlen, "backoff.max: at least 1ms is expected");
        return -1;
    }
    return 0;
}

static const bt_cfg_field function_fields[] = {
    BT_FIELD(fm_function_cfg, name, "name", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .pattern = NAME_PATTERN),
    BT_FIELD(fm_function_cfg, service, "service", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .pattern = NAME_PATTERN),
    BT_FIELD(fm_function_cfg, min, "instance.min", BT_CFG_INT, .def = "0", .flags = BT_CFG_RANGE,
             .min = 0, .max = 100),
    BT_FIELD(fm_function_cfg, max, "instance.max", BT_CFG_INT, .def = "1", .flags = BT_CFG_RANGE,
             .min = 1, .max = 100),
    /* calls in flight per instance, each a stream of its HTTP/2 connection (no thread:
     * the rule starts calls and takes their completions from one queue): deep enough to
     * fill the HTTP/2 frames and the runtime's request queue; a slow function with
     * instance.max > 1 scales out sooner with less; 1 gives one call at a time */
    BT_FIELD(fm_function_cfg, concurrent, "instance.concurrent", BT_CFG_INT, .def = "32",
             .flags = BT_CFG_RANGE, .min = 1, .max = 1024),
    BT_FIELD(fm_function_cfg, idletime, "instance.idletime", BT_CFG_DURATION, .def = "10m",
             .flags = BT_CFG_RANGE, .min = 1, .max = 31536000000.0),
    /* a floor, so that a tiny value cannot turn the evictor into a busy loop */
    BT_FIELD(fm_function_cfg, evicttime, "instance.evicttime", BT_CFG_DURATION, .def = "1m",
             .flags = BT_CFG_RANGE, .min = 10, .max = 31536000000.0),
    BT_FIELD(fm_function_cfg, call, "", BT_CFG_STRUCT, .flags = BT_CFG_INLINE,
             .sub = &bt_fn_client_schema),
    {0}};
static const bt_cfg_schema function_schema = {sizeof(fm_function_cfg), function_fields,
                                              function_check};

const fm_function_cfg *fm_config_function(const fm_config *c, const char *name)
{
    for (size_t i = 0; name && i < c->functions.n; i++) {
        const fm_function_cfg *f = &BT_CFG_AT(c->functions, fm_function_cfg, i);
        if (strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

void fm_rule_clientid(const fm_rule_cfg *r, size_t i, char *out, size_t len)
{
    if (r->clientid && *r->clientid)
        snprintf(out, len, "%s", r->clientid);
    else
        snprintf(out, len, "%s-rule%zu", r->function, i);
}

static int config_check(void *obj, char *err, size_t errlen)
{
    fm_config *c = obj;
    for (size_t i = 0; i < c->functions.n; i++) {
        const fm_function_cfg *f = &BT_CFG_AT(c->functions, fm_function_cfg, i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(f->name, BT_CFG_AT(c->functions, fm_function_cfg, j).name) == 0) {
                snprintf(err, errlen, "functions[%zu].name: function (%s) is declared twice", i,
                         f->name);
                return -1;
            }
    }
    for (size_t i = 0; i < c->rules.n; i++) {
        fm_rule_cfg *r = &BT_CFG_AT(c->rules, fm_rule_cfg, i);
        if (!fm_config_function(c, r->function)) {
            snprintf(err, errlen, "rules[%zu].function.name: function (%s) not found", i,
                     r->function);
            return -1;
        }
        /* Two connections with one client id would take each other's session over forever. */
        char a[256], b[256];
        fm_rule_clientid(r, i, a, sizeof a);
        for (size_t j = 0; j < i; j++) {
            fm_rule_clientid(&BT_CFG_AT(c->rules, fm_rule_cfg, j), j, b, sizeof b);
            if (strcmp(a, b) == 0) {
                snprintf(err, errlen, "rules[%zu].clientid: clientid (%s) is used twice", i, a);
                return -1;
            }
        }
    }
    return 0;
}

static const bt_cfg_field config_fields[] = {
    BT_FIELD(fm_config, hub, "hub", BT_CFG_STRUCT, .sub = &bt_mqtt_client_schema),
    BT_FIELD(fm_config, server, "server", BT_CFG_STRUCT, .sub = &bt_fn_server_schema),
    BT_FIELD(fm_config, rules, "rules", BT_CFG_LIST, .sub = &rule_schema),
    BT_FIELD(fm_config, functions, "functions", BT_CFG_LIST, .sub = &function_schema),
    BT_FIELD(fm_config, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    BT_FIELD(fm_config, report_interval_ms, "status.report.interval", BT_CFG_DURATION, .def = "1m",
             .flags = BT_CFG_RANGE, .min = 1, .max = 1e15),
    {0}};
const bt_cfg_schema fm_config_schema = {sizeof(fm_config), config_fields, config_check};
