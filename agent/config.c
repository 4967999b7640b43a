/* The agent's service.yml (SPEC §15) and what is derived from it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

static const bt_cfg_field fields[] = {
    BT_FIELD(agent_config, mqtt, "remote.mqtt", BT_CFG_STRUCT, .sub = &bt_mqtt_client_schema),
    BT_FIELD(agent_config, http.address, "remote.http.address", BT_CFG_STRING),
    BT_FIELD(agent_config, http.ca, "remote.http.ca", BT_CFG_STRING),
    BT_FIELD(agent_config, http.cert, "remote.http.cert", BT_CFG_STRING),
    BT_FIELD(agent_config, http.key, "remote.http.key", BT_CFG_STRING),
    BT_FIELD(agent_config, http.timeout, "remote.http.timeout", BT_CFG_DURATION, .def = "30s",
             .flags = BT_CFG_RANGE, .min = 1, .max = 86400000),
    BT_FIELD(agent_config, report_url, "remote.report.url", BT_CFG_STRING, .def = "/v3/edge/info",
             .pattern = "^/[^[:space:]]*$"),
    BT_FIELD(agent_config, report_interval, "remote.report.interval", BT_CFG_DURATION, .def = "20s",
             .flags = BT_CFG_RANGE, .min = 100, .max = 86400000),
    BT_FIELD(agent_config, desire_topic, "remote.desire.topic", BT_CFG_STRING,
             .def = "$baidu/iot/edge/%s/core/backward"),
    BT_FIELD(agent_config, ota_timeout, "ota.timeout", BT_CFG_DURATION, .def = "5m",
             .flags = BT_CFG_RANGE, .min = 1, .max = 86400000),
    BT_FIELD(agent_config, ota_log_path, "ota.logger.path", BT_CFG_STRING,
             .def = "var/db/baetyl/volumes/ota.log", .flags = BT_CFG_REQUIRED),
    BT_FIELD(agent_config, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    {0}};

static bool empty(const char *s)
{
    return !s || !*s;
}

/* The cloud forces two-way TLS on MQTT (seed 2.4.1): refuse anything else at startup. */
static int check(void *obj, char *err, size_t errlen)
{
    agent_config *c = obj;
    const char *addr = c->mqtt.address ? c->mqtt.address : "";
    if (strncmp(addr, "ssl://", 6) != 0 && strncmp(addr, "wss://", 6) != 0) {
        snprintf(err, errlen,
                 "remote.mqtt.address: must be ssl:// or wss:// (the cloud link is TLS only)");
        return -1;
    }
    if (empty(c->mqtt.cert) || empty(c->mqtt.key)) {
        snprintf(err, errlen,
                 "remote.mqtt.cert and remote.mqtt.key: required (TLS client certificate)");
        return -1;
    }
    if (empty(c->mqtt.clientid)) {
        snprintf(err, errlen, "remote.mqtt.clientid: required");
        return -1;
    }
    if (!empty(c->http.address) && strncmp(c->http.address, "https://", 8) != 0) {
        snprintf(err, errlen, "remote.http.address: must be https://");
        return -1;
    }
    if (empty(c->http.cert) != empty(c->http.key)) {
        snprintf(err, errlen, "remote.http.cert and remote.http.key: must be given together");
        return -1;
    }
    return 0;
}

const bt_cfg_schema agent_config_schema = {sizeof(agent_config), fields, check};

/* Baetyl 1.0 knew the HTTPS side of Baidu's two regions. */
static const char *derive_http(const char *mqtt)
{
    if (strstr(mqtt, "bj.baidubce.com"))
        return "https://iotedge.bj.baidubce.com";
    if (strstr(mqtt, "gz.baidubce.com"))
        return "https://iotedge.gz.baidubce.com";
    return NULL;
}

int agent_config_finish(agent_config *c, char *err, size_t errlen)
{
    if (empty(c->http.address)) {
        const char *d = derive_http(c->mqtt.address);
        if (!d) {
            snprintf(err, errlen, "remote.http.address: required (cannot be derived from %s)",
                     c->mqtt.address);
            return -1;
        }
        free(c->http.address);
        if (!(c->http.address = strdup(d)))
            goto oom;
    }
    /* The address is joined with report.url: one '/' between them. */
    size_t n = strlen(c->http.address);
    while (n > 8 && c->http.address[n - 1] == '/')
        c->http.address[--n] = '\0';

    const char *t = c->desire_topic ? c->desire_topic : "";
    const char *pct = strstr(t, "%s");
    if (pct) {
        size_t len = strlen(t) - 2 + strlen(c->mqtt.clientid) + 1;
        char *topic = malloc(len);
        if (!topic)
            goto oom;
        snprintf(topic, len, "%.*s%s%s", (int)(pct - t), t, c->mqtt.clientid, pct + 2);
        free(c->desire_topic);
        c->desire_topic = topic;
    }
    if (strchr(c->desire_topic ? c->desire_topic : "", '%') ||
        !bt_mqtt_client_valid_filter(c->desire_topic)) {
        snprintf(err, errlen, "remote.desire.topic: invalid topic (%.200s)",
                 c->desire_topic ? c->desire_topic : "");
        return -1;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}
