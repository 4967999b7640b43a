/* The seed's timer module written with the SDK (SPEC §14): every `timer.interval` it
 * publishes {"time": <unix seconds>, ...publish.payload} to `publish.topic` on the hub of
 * its `hub:` settings. Run: example-sdk-timer -c service.yml, stop with SIGTERM. */
#include <jansson.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baetyl/context.h"
#include "baetyl/log.h"
#include "baetyl/mqtt_client.h"

typedef struct {
    bt_mqtt_client_config hub;
    int64_t interval;
    char *topic;
    long qos;
    bt_cfg_map payload; /* extra scalar fields of every message */
    bt_logger_config logger;
} timer_cfg;

static const bt_cfg_field timer_fields[] = {
    BT_FIELD(timer_cfg, hub, "hub", BT_CFG_STRUCT, .sub = &bt_mqtt_client_schema),
    BT_FIELD(timer_cfg, interval, "timer.interval", BT_CFG_DURATION, .def = "1m",
             .flags = BT_CFG_RANGE, .min = 1, .max = 2147483647),
    BT_FIELD(timer_cfg, topic, "publish.topic", BT_CFG_STRING, .def = "timer"),
    BT_FIELD(timer_cfg, qos, "publish.qos", BT_CFG_INT, .def = "0", .flags = BT_CFG_RANGE,
             .min = 0, .max = 1),
    BT_FIELD(timer_cfg, payload, "publish.payload", BT_CFG_MAP, .elem = BT_CFG_STRING),
    BT_FIELD(timer_cfg, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    {0}};
static const bt_cfg_schema timer_schema = {sizeof(timer_cfg), timer_fields, NULL};

/* {"time": now, ...payload}; YAML scalars that read as JSON (1, true) keep their type. */
static char *message(const timer_cfg *cfg)
{
    json_t *o = json_object();
    for (size_t i = 0; i < cfg->payload.n; i++) {
        const char *v = ((char **)cfg->payload.values)[i];
        json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
        if (!j || json_is_object(j) || json_is_array(j)) {
            json_decref(j);
            j = json_string(v);
        }
        json_object_set_new(o, cfg->payload.keys[i], j);
    }
    json_object_set_new(o, "time", json_integer((json_int_t)time(NULL)));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static int run(bt_ctx *ctx)
{
    timer_cfg cfg;
    char err[512];
    if (bt_ctx_load_config(ctx, &timer_schema, &cfg, err, sizeof err) < 0)
        return 1;
    bt_mqtt_client *hub = bt_mqtt_client_create(&cfg.hub, NULL, err, sizeof err);
    if (!hub || bt_mqtt_client_start(hub, err, sizeof err) < 0) {
        bt_error("hub client: %s", err);
        bt_mqtt_client_destroy(hub);
        bt_cfg_free(&timer_schema, &cfg);
        return 1;
    }
    struct pollfd stop = {.fd = bt_ctx_stop_fd(ctx), .events = POLLIN};
    while (poll(&stop, 1, cfg.interval > 2147483647 ? 2147483647 : (int)cfg.interval) == 0) {
        char *msg = message(&cfg);
        if (msg && bt_mqtt_client_publish(hub, cfg.topic, msg, strlen(msg), (int)cfg.qos,
                                          false, NULL, err, sizeof err) < 0)
            bt_error("publish: %s", err);
        free(msg);
    }
    bt_mqtt_client_destroy(hub); /* flushes what is queued, then DISCONNECT */
    bt_cfg_free(&timer_schema, &cfg);
    return 0;
}

int main(int argc, char **argv)
{
    static const bt_module_info info = {"publishes the time to the hub at a fixed interval", NULL};
    return bt_run_module(&info, argc, argv, run);
}
