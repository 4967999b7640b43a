/* baetyl-timer (SPEC §14): every `timer.interval` it publishes the JSON object
 * `publish.payload` + {"time": <unix seconds>} to `publish.topic` on the hub. It is also the
 * shortest complete example of a module written with the SDK: config schema, context,
 * logging, hub client.
 *
 *   hub: {address: tcp://localhub:1883, username: test, password: hahaha, clientid: timer1}
 *   timer: {interval: 1s}
 *   publish: {topic: timer1, qos: 1, payload: {id: 1}}
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baetyl/context.h"
#include "baetyl/util.h"
#include "baetyl/log.h"
#include "baetyl/mqtt_client.h"

typedef struct {
    bt_mqtt_client_config hub;
    int64_t interval;
    char *topic;
    long qos;
    json_t *payload; /* the fields of every message, YAML types kept (a mapping) */
    bt_logger_config logger;
} timer_cfg;

static int check_topic(const void *v, char *err, size_t errlen)
{
    const char *s = *(char *const *)v;
    if (s && !bt_mqtt_client_valid_name(s)) {
        snprintf(err, errlen, "invalid topic name (%.200s)", s);
        return -1;
    }
    return 0;
}

static int check_payload(const void *v, char *err, size_t errlen)
{
    const json_t *p = *(json_t *const *)v;
    if (p && !json_is_object(p) && !json_is_null(p)) {
        snprintf(err, errlen, "not a mapping");
        return -1;
    }
    return 0;
}

static const bt_cfg_field timer_fields[] = {
    BT_FIELD(timer_cfg, hub, "hub", BT_CFG_STRUCT, .sub = &bt_mqtt_client_schema),
    BT_FIELD(timer_cfg, interval, "timer.interval", BT_CFG_DURATION, .def = "1m",
             .flags = BT_CFG_RANGE, .min = 1, .max = 2147483647),
    BT_FIELD(timer_cfg, topic, "publish.topic", BT_CFG_STRING, .def = "timer",
             .flags = BT_CFG_REQUIRED, .check = check_topic),
    BT_FIELD(timer_cfg, qos, "publish.qos", BT_CFG_INT, .def = "0", .flags = BT_CFG_RANGE, .min = 0,
             .max = 1),
    BT_FIELD(timer_cfg, payload, "publish.payload", BT_CFG_JSON, .check = check_payload),
    BT_FIELD(timer_cfg, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    {0}};
static const bt_cfg_schema timer_schema = {sizeof(timer_cfg), timer_fields, NULL};

/* The payload map as JSON, built once (nested maps and lists as written). */
static json_t *base_message(const timer_cfg *cfg)
{
    return json_is_object(cfg->payload) ? json_deep_copy(cfg->payload) : json_object();
}

/* Publishes one tick. A full queue (the hub has been unreachable for `buffersize` ticks)
 * drops the tick: a late time is worth less than the next one. */
static void tick(bt_mqtt_client *hub, const timer_cfg *cfg, json_t *msg)
{
    char err[256];
    json_object_set_new(msg, "time", json_integer((json_int_t)time(NULL)));
    char *s = json_dumps(msg, JSON_COMPACT);
    if (!s) {
        bt_error("out of memory");
        return;
    }
    if (bt_mqtt_client_publish(hub, cfg->topic, s, strlen(s), (int)cfg->qos, false, NULL, err,
                               sizeof err) < 0)
        bt_logkv(BT_LOG_WARN, "tick not published", "topic", cfg->topic, "reason", err, NULL);
    free(s);
}

static int run(bt_ctx *ctx)
{
    timer_cfg cfg;
    char err[512];
    if (bt_ctx_load_config(ctx, &timer_schema, &cfg, err, sizeof err) < 0)
        return 1;
    /* a persistent session needs a client id: this instance's name is unique */
    if ((!cfg.hub.clientid || !*cfg.hub.clientid) && !cfg.hub.cleansession) {
        free(cfg.hub.clientid);
        const char *id = ctx->env.instance_name ? ctx->env.instance_name : ctx->service_name;
        cfg.hub.clientid = strdup(id ? id : "timer");
    }
    json_t *msg = base_message(&cfg);
    bt_mqtt_client *hub = msg ? bt_mqtt_client_create(&cfg.hub, NULL, err, sizeof err) : NULL;
    if (!hub || bt_mqtt_client_start(hub, err, sizeof err) < 0) {
        bt_logkv(BT_LOG_ERROR, "cannot start hub client", "error", msg ? err : "out of memory",
                 NULL);
        bt_mqtt_client_destroy(hub);
        json_decref(msg);
        bt_cfg_free(&timer_schema, &cfg);
        return 1;
    }
    /* ticks at start + k * interval: no drift; ticks missed while blocked are skipped */
    int64_t next = bt_now_ms() + cfg.interval;
    for (;;) {
        if (bt_ctx_sleep(ctx, next - bt_now_ms()))
            break; /* asked to stop */
        tick(hub, &cfg, msg);
        next += cfg.interval;
        int64_t now = bt_now_ms();
        if (next <= now)
            next += ((now - next) / cfg.interval + 1) * cfg.interval;
    }
    bt_mqtt_client_destroy(hub); /* flushes what is queued, then DISCONNECT */
    json_decref(msg);
    bt_cfg_free(&timer_schema, &cfg);
    return 0;
}

int main(int argc, char **argv)
{
    static const bt_module_info info = {
        "publishes the time (and a fixed payload) to the hub at a fixed interval", NULL};
    return bt_run_module(&info, argc, argv, run);
}
