/* The hub's config schema (SPEC §11) and its whole-config validation: principals and
 * routes are checked here so a bad file refuses to start with the field named. */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "route.h"

static const bt_cfg_field perm_fields[] = {
    BT_FIELD(hub_permission_cfg, action, "action", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .choices = "pub|sub"),
    BT_FIELD(hub_permission_cfg, permit, "permit", BT_CFG_LIST, .elem = BT_CFG_STRING),
    {0}};
static const bt_cfg_schema perm_schema = {sizeof(hub_permission_cfg), perm_fields, NULL};

static const bt_cfg_field principal_fields[] = {
    BT_FIELD(hub_principal_cfg, username, "username", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(hub_principal_cfg, password, "password", BT_CFG_STRING),
    BT_FIELD(hub_principal_cfg, permissions, "permissions", BT_CFG_LIST, .sub = &perm_schema),
    {0}};
static const bt_cfg_schema principal_schema = {sizeof(hub_principal_cfg), principal_fields, NULL};

static const bt_cfg_field tq_fields[] = {
    BT_FIELD(hub_topic_qos_cfg, topic, "topic", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(hub_topic_qos_cfg, qos, "qos", BT_CFG_INT, .def = "0", .flags = BT_CFG_RANGE, .min = 0,
             .max = 2),
    {0}};
static const bt_cfg_schema tq_schema = {sizeof(hub_topic_qos_cfg), tq_fields, NULL};

static const bt_cfg_field route_fields[] = {BT_FIELD(hub_route_cfg, source, "source", BT_CFG_STRUCT,
                                                     .sub = &tq_schema, .flags = BT_CFG_REQUIRED),
                                            BT_FIELD(hub_route_cfg, target, "target", BT_CFG_STRUCT,
                                                     .sub = &tq_schema, .flags = BT_CFG_REQUIRED),
                                            {0}};
static const bt_cfg_schema route_schema = {sizeof(hub_route_cfg), route_fields, NULL};

static int check_listen(const void *v, char *err, size_t errlen)
{
    const bt_cfg_list *l = v;
    for (size_t i = 0; i < l->n; i++) {
        const char *a = BT_CFG_AT(*l, char *, i);
        if (!a || (strncmp(a, "tcp://", 6) && strncmp(a, "ssl://", 6) && strncmp(a, "ws://", 5) &&
                   strncmp(a, "wss://", 6))) {
            snprintf(err, errlen, "listen address (%s) has an unsupported scheme", a ? a : "");
            return -1;
        }
    }
    return 0;
}

/* Whole-config rules: principals (unique, valid permits) and routes (valid, no duplicate,
 * no cycle). */
static int check_config(void *obj, char *err, size_t errlen)
{
    hub_config *c = obj;
    if (auth_validate(&c->principals, err, errlen) < 0)
        return -1;
    if (route_validate(&c->subscriptions, err, errlen) < 0)
        return -1;
    /* TLS listeners need a server certificate; ca is optional (without it no client
     * certificate is requested, so only password logins work there). */
    for (size_t i = 0; i < c->listen.n; i++) {
        const char *a = BT_CFG_AT(c->listen, char *, i);
        if (strncmp(a, "ssl://", 6) && strncmp(a, "wss://", 6))
            continue;
        const char *missing = NULL;
        if (!c->cert || !c->cert[0])
            missing = "certificate.cert";
        else if (!c->key || !c->key[0])
            missing = "certificate.key";
        if (missing) {
            snprintf(err, errlen, "%s: required by the listener %s", missing, a);
            return -1;
        }
    }
    return 0;
}

static const bt_cfg_field hub_fields[] = {
    BT_FIELD(hub_config, listen, "listen", BT_CFG_LIST, .elem = BT_CFG_STRING,
             .check = check_listen),
    BT_FIELD(hub_config, ca, "certificate.ca", BT_CFG_STRING),
    BT_FIELD(hub_config, cert, "certificate.cert", BT_CFG_STRING),
    BT_FIELD(hub_config, key, "certificate.key", BT_CFG_STRING),
    BT_FIELD(hub_config, principals, "principals", BT_CFG_LIST, .sub = &principal_schema),
    BT_FIELD(hub_config, subscriptions, "subscriptions", BT_CFG_LIST, .sub = &route_schema),
    BT_FIELD(hub_config, length_max, "message.length.max", BT_CFG_SIZE, .def = "32k",
             .flags = BT_CFG_RANGE, .min = 1, .max = 268435455),
    BT_FIELD(hub_config, in_qos0_size, "message.ingress.qos0.buffer.size", BT_CFG_INT,
             .def = "10000", .flags = BT_CFG_RANGE, .min = 1, .max = 100000000),
    BT_FIELD(hub_config, in_qos1_size, "message.ingress.qos1.buffer.size", BT_CFG_INT, .def = "100",
             .flags = BT_CFG_RANGE, .min = 1, .max = 1000000),
    BT_FIELD(hub_config, in_qos1_batch, "message.ingress.qos1.batch.max", BT_CFG_INT, .def = "50",
             .flags = BT_CFG_RANGE, .min = 1, .max = 100000),
    BT_FIELD(hub_config, retention_ms, "message.ingress.qos1.cleanup.retention", BT_CFG_DURATION,
             .def = "48h", .flags = BT_CFG_RANGE, .min = 1, .max = 1e15),
    BT_FIELD(hub_config, cleanup_interval_ms, "message.ingress.qos1.cleanup.interval",
             BT_CFG_DURATION, .def = "1m", .flags = BT_CFG_RANGE, .min = 1, .max = 1e15),
    BT_FIELD(hub_config, out_qos0_size, "message.egress.qos0.buffer.size", BT_CFG_INT,
             .def = "10000", .flags = BT_CFG_RANGE, .min = 1, .max = 100000000),
    BT_FIELD(hub_config, out_qos1_size, "message.egress.qos1.buffer.size", BT_CFG_INT, .def = "100",
             .flags = BT_CFG_RANGE, .min = 1, .max = 65535),
    BT_FIELD(hub_config, out_qos1_batch, "message.egress.qos1.batch.max", BT_CFG_INT, .def = "50",
             .flags = BT_CFG_RANGE, .min = 1, .max = 100000),
    BT_FIELD(hub_config, egress_max, "message.egress.buffer.max", BT_CFG_SIZE, .def = "16m",
             .flags = BT_CFG_RANGE, .min = 1, .max = 1e15),
    BT_FIELD(hub_config, retry_interval_ms, "message.egress.qos1.retry.interval", BT_CFG_DURATION,
             .def = "20s", .flags = BT_CFG_RANGE, .min = 1, .max = 1e15),
    BT_FIELD(hub_config, offset_size, "message.offset.buffer.size", BT_CFG_INT, .def = "10000",
             .flags = BT_CFG_RANGE, .min = 1, .max = 100000000),
    BT_FIELD(hub_config, offset_batch, "message.offset.batch.max", BT_CFG_INT, .def = "100",
             .flags = BT_CFG_RANGE, .min = 1, .max = 100000),
    BT_FIELD(hub_config, storage_dir, "storage.dir", BT_CFG_STRING, .def = "var/db/baetyl/data"),
    BT_FIELD(hub_config, storage_sync, "storage.sync", BT_CFG_BOOL, .def = "true"),
    BT_FIELD(hub_config, storage_max, "storage.size.max", BT_CFG_SIZE, .def = "2g",
             .flags = BT_CFG_RANGE, .min = 1 << 20, .max = 1e15),
    BT_FIELD(hub_config, storage_count_max, "storage.count.max", BT_CFG_INT, .def = "0",
             .flags = BT_CFG_RANGE, .min = 0, .max = 1e15),
    BT_FIELD(hub_config, storage_policy, "storage.policy", BT_CFG_STRING, .def = "reject-new",
             .choices = "reject-new|drop-oldest"),
    BT_FIELD(hub_config, handshake_timeout_ms, "handshake.timeout", BT_CFG_DURATION, .def = "10s",
             .flags = BT_CFG_RANGE, .min = 1, .max = 1e15),
    BT_FIELD(hub_config, shutdown_timeout_ms, "shutdown.timeout", BT_CFG_DURATION, .def = "10m"),
    BT_FIELD(hub_config, status_logging, "status.logging.enable", BT_CFG_BOOL, .def = "false"),
    BT_FIELD(hub_config, status_interval_ms, "status.logging.interval", BT_CFG_DURATION,
             .def = "1m", .flags = BT_CFG_RANGE, .min = 1, .max = 1e15),
    BT_FIELD(hub_config, report_interval_ms, "status.report.interval", BT_CFG_DURATION, .def = "1m",
             .flags = BT_CFG_RANGE, .min = 1, .max = 1e15),
    BT_FIELD(hub_config, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    {0}};

const bt_cfg_schema hub_config_schema = {sizeof(hub_config), hub_fields, check_config};
