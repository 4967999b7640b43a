/* remote-mqtt's config schema and the rules the schema alone cannot say (SPEC §13). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* A remote takes the SDK client's keys with one default changed: buffersize 100, not 10.
 * remote-mqtt acknowledges a hub message only after the remote's PUBACK, so its window to
 * the remote bounds the drain rate to buffersize / round trip: over a 20 ms round trip 10
 * drains about 230 msg/s (slower than many sources), 100 about 3500 (test/bench/
 * outage_bench.py, LATENCY_MS=20). More gains nothing while the hub lets a subscriber hold
 * 100 unacknowledged messages (message.egress.qos1.buffer.size). */
#define RM_REMOTE_BUFFERSIZE "100"
enum { RM_CLIENT_FIELDS_MAX = 64 };
static bt_cfg_field remote_client_fields[RM_CLIENT_FIELDS_MAX];
static bt_cfg_schema remote_client_schema;

__attribute__((constructor)) static void remote_client_schema_init(void)
{
    const bt_cfg_field *f = bt_mqtt_client_schema.fields;
    size_t n = 0;
    for (; f[n].name; n++) {
        if (n + 1 >= RM_CLIENT_FIELDS_MAX)
            abort(); /* the SDK schema outgrew the copy: raise RM_CLIENT_FIELDS_MAX */
        remote_client_fields[n] = f[n];
        if (strcmp(f[n].name, "buffersize") == 0)
            remote_client_fields[n].def = RM_REMOTE_BUFFERSIZE;
    }
    remote_client_schema = bt_mqtt_client_schema;
    remote_client_schema.fields = remote_client_fields;
}

static const bt_cfg_field remote_fields[] = {
    BT_FIELD(rm_remote, name, "name", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(rm_remote, mqtt, "", BT_CFG_STRUCT, .flags = BT_CFG_INLINE,
             .sub = &remote_client_schema),
    {0}};
static const bt_cfg_schema remote_schema = {sizeof(rm_remote), remote_fields, NULL};

static const bt_cfg_field rule_hub_fields[] = {
    BT_FIELD(rm_rule_side, clientid, "clientid", BT_CFG_STRING),
    BT_FIELD(rm_rule_side, subscriptions, "subscriptions", BT_CFG_LIST,
             .sub = &bt_mqtt_topic_schema),
    {0}};
static const bt_cfg_schema rule_hub_schema = {sizeof(rm_rule_side), rule_hub_fields, NULL};

static const bt_cfg_field rule_remote_fields[] = {
    BT_FIELD(rm_rule_side, name, "name", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(rm_rule_side, clientid, "clientid", BT_CFG_STRING),
    BT_FIELD(rm_rule_side, subscriptions, "subscriptions", BT_CFG_LIST,
             .sub = &bt_mqtt_topic_schema),
    {0}};
static const bt_cfg_schema rule_remote_schema = {sizeof(rm_rule_side), rule_remote_fields, NULL};

static const bt_cfg_field rule_fields[] = {
    BT_FIELD(rm_rule, hub, "hub", BT_CFG_STRUCT, .sub = &rule_hub_schema),
    BT_FIELD(rm_rule, remote, "remote", BT_CFG_STRUCT, .sub = &rule_remote_schema),
    {0}};
static const bt_cfg_schema rule_schema = {sizeof(rm_rule), rule_fields, NULL};

static bool set(const char *s)
{
    return s && *s;
}

const rm_remote *rm_config_remote(const rm_config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->remotes.n; i++) {
        const rm_remote *r = &BT_CFG_AT(cfg->remotes, rm_remote, i);
        if (r->name && strcmp(r->name, name) == 0)
            return r;
    }
    return NULL;
}

const char *rm_config_remote_clientid(const rm_config *cfg, size_t i)
{
    if (i >= cfg->rules.n)
        return NULL;
    const rm_rule *rule = &BT_CFG_AT(cfg->rules, rm_rule, i);
    if (set(rule->remote.clientid))
        return rule->remote.clientid;
    const rm_remote *r = rm_config_remote(cfg, rule->remote.name);
    if (!r)
        return NULL;
    return set(r->mqtt.clientid) ? r->mqtt.clientid : r->name;
}

const char *rm_config_hub_clientid(const rm_config *cfg, size_t i)
{
    if (i >= cfg->rules.n)
        return NULL;
    const rm_rule *rule = &BT_CFG_AT(cfg->rules, rm_rule, i);
    return set(rule->hub.clientid) ? rule->hub.clientid : rm_config_remote_clientid(cfg, i);
}

/* Two clients with one id on one broker would take each other's session over, forever:
 * refuse it at start rather than flap at run time. */
static int check_config(void *obj, char *err, size_t errlen)
{
    const rm_config *cfg = obj;
    for (size_t i = 0; i < cfg->remotes.n; i++) {
        const char *name = BT_CFG_AT(cfg->remotes, rm_remote, i).name;
        for (size_t j = 0; j < i; j++)
            if (strcmp(BT_CFG_AT(cfg->remotes, rm_remote, j).name, name) == 0) {
                snprintf(err, errlen, "remotes[%zu].name: remote name (%.100s) is duplicated", i,
                         name);
                return -1;
            }
    }
    for (size_t i = 0; i < cfg->rules.n; i++) {
        const rm_rule *rule = &BT_CFG_AT(cfg->rules, rm_rule, i);
        if (!rm_config_remote(cfg, rule->remote.name)) {
            snprintf(err, errlen, "rules[%zu].remote.name: remote (%.100s) not found", i,
                     rule->remote.name);
            return -1;
        }
        const char *hid = rm_config_hub_clientid(cfg, i);
        const char *rid = rm_config_remote_clientid(cfg, i);
        for (size_t j = 0; j < i; j++) {
            const rm_rule *other = &BT_CFG_AT(cfg->rules, rm_rule, j);
            if (strcmp(rm_config_hub_clientid(cfg, j), hid) == 0) {
                snprintf(err, errlen,
                         "rules[%zu].hub.clientid: client id (%.100s) is also used by rules[%zu] "
                         "at the hub",
                         i, hid, j);
                return -1;
            }
            if (strcmp(other->remote.name, rule->remote.name) == 0 &&
                strcmp(rm_config_remote_clientid(cfg, j), rid) == 0) {
                snprintf(err, errlen,
                         "rules[%zu].remote.clientid: client id (%.100s) is also used by "
                         "rules[%zu] at remote (%.100s)",
                         i, rid, j, rule->remote.name);
                return -1;
            }
        }
    }
    return 0;
}

static const bt_cfg_field config_fields[] = {
    BT_FIELD(rm_config, hub, "hub", BT_CFG_STRUCT, .sub = &bt_mqtt_client_schema),
    BT_FIELD(rm_config, remotes, "remotes", BT_CFG_LIST, .sub = &remote_schema),
    BT_FIELD(rm_config, rules, "rules", BT_CFG_LIST, .sub = &rule_schema),
    BT_FIELD(rm_config, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    BT_FIELD(rm_config, report_interval_ms, "status.report.interval", BT_CFG_DURATION, .def = "1m",
             .flags = BT_CFG_RANGE, .min = 1, .max = 1e15),
    {0}};
const bt_cfg_schema rm_config_schema = {sizeof(rm_config), config_fields, check_config};
