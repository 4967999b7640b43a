/* baetyl-agent: the cloud link (SPEC §15, seed 2.4.1). Three jobs: report the master's
 * state to the cloud every interval, take OTA events from the cloud's MQTT broker and apply
 * them through the master, and clean volume directories after an update.
 *
 * Threads: the MQTT client's (events in), the reporter (a report every interval), the
 * worker (one OTA at a time), and main waiting for SIGTERM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "baetyl/context.h"
#include "baetyl/util.h"

static void on_event(bt_mqtt_client *c, const bt_mqtt_message *m, void *userdata)
{
    (void)c;
    agent *a = userdata;
    char err[512];
    agent_ota_event *ev = calloc(1, sizeof *ev);
    if (!ev) {
        bt_logkv(BT_LOG_ERROR, "failed to process event", "error", "out of memory", NULL);
        return;
    }
    int r = agent_event_parse(m->payload, m->payload_len, ev, err, sizeof err);
    if (r == -1) {
        bt_logkv(BT_LOG_ERROR, "failed to process event", "topic", m->topic, "error", err, NULL);
        free(ev);
        return;
    }
    if (r == -2) {
        /* It names an OTA: the worker records the failure in ota.log, the cloud sees it. */
        bt_logkv(BT_LOG_ERROR, "failed to process event", "topic", m->topic, "trace", ev->trace,
                 "error", err, NULL);
        if (!(ev->error = strdup(err))) {
            agent_event_free(ev);
            free(ev);
            return;
        }
    } else {
        bt_logkv(BT_LOG_INFO, "event received", "event", "OTA", "trace", ev->trace, NULL);
    }
    agent_queue_event(a, ev);
}

static void on_connected(bt_mqtt_client *c, bool session_present, void *userdata)
{
    (void)c, (void)session_present, (void)userdata;
    bt_logkv(BT_LOG_INFO, "connected to the cloud", NULL);
}

static void on_lost(bt_mqtt_client *c, const char *reason, void *userdata)
{
    (void)c, (void)userdata;
    bt_logkv(BT_LOG_WARN, "cloud connection lost", "error", reason, NULL);
}

/* Everything that can fail before the threads start. */
static int setup(bt_ctx *ctx, agent *a, char *err, size_t errlen)
{
    char why[512];
    if (bt_ctx_load_config(ctx, &agent_config_schema, &a->cfg, err, errlen) < 0)
        return -2; /* logged already */
    if (agent_config_finish(&a->cfg, err, errlen) < 0)
        return -1;
    if (!(a->key = agent_load_rsa_key(a->cfg.mqtt.key, why, sizeof why))) {
        snprintf(err, errlen, "remote.mqtt.key: %s", why);
        return -1;
    }
    if (!(a->cert_sn = agent_cert_serial(a->cfg.mqtt.cert, why, sizeof why))) {
        snprintf(err, errlen, "remote.mqtt.cert: %s", why);
        return -1;
    }
    if (!(a->api = bt_api_new_from_env((long)a->cfg.http.timeout, why, sizeof why))) {
        snprintf(err, errlen, "master api: %s", why);
        return -1;
    }
    bt_mqtt_client_options o = {.on_message = on_event,
                                .on_connected = on_connected,
                                .on_connection_lost = on_lost,
                                .userdata = a,
                                .auto_ack = true};
    if (!(a->mqtt = bt_mqtt_client_create(&a->cfg.mqtt, &o, why, sizeof why)) ||
        bt_mqtt_client_subscribe(a->mqtt, a->cfg.desire_topic, 1, why, sizeof why) < 0) {
        snprintf(err, errlen, "remote.mqtt: %s", why);
        return -1;
    }
    return 0;
}

static void teardown(agent *a)
{
    bt_mqtt_client_destroy(a->mqtt);
    if (a->pending) {
        agent_event_free(a->pending);
        free(a->pending);
    }
    free(a->ota_trace);
    json_decref(a->ota_records);
    EVP_PKEY_free(a->key);
    free(a->cert_sn);
    bt_api_free(a->api);
    bt_cfg_free(&agent_config_schema, &a->cfg);
}

static int run(bt_ctx *ctx)
{
    agent a;
    memset(&a, 0, sizeof a);
    a.ctx = ctx;
    char err[1024];
    pthread_mutex_init(&a.mu, NULL);
    bt_cond_init_monotonic(&a.cv);

    int rc = setup(ctx, &a, err, sizeof err);
    bool reporter = false, worker = false;
    if (rc == -1) {
        bt_logkv(BT_LOG_ERROR, "failed to start agent", "error", err, NULL);
        if (bt_log_is_file())
            fprintf(stderr, "%s: %s\n", ctx->program, err);
    }
    if (rc == 0 && bt_mqtt_client_start(a.mqtt, err, sizeof err) < 0) {
        bt_logkv(BT_LOG_ERROR, "failed to start the cloud link", "error", err, NULL);
        rc = -1;
    }
    /* Not the 8 MiB default: the deepest is the worker (HTTPS, libarchive, a 64 KiB hash buffer) */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    if (rc == 0 && !(reporter = pthread_create(&a.reporter, &attr, agent_reporter_main, &a) == 0))
        rc = -1;
    if (rc == 0 && !(worker = pthread_create(&a.worker, &attr, agent_worker_main, &a) == 0))
        rc = -1;
    pthread_attr_destroy(&attr);
    if (rc == 0) {
        bt_logkv(BT_LOG_INFO, "agent started", "desire", a.cfg.desire_topic, "report",
                 a.cfg.http.address, NULL);
        bt_ctx_wait(ctx);
    }

    bt_ctx_stop(ctx); /* ends the threads' waits, also when the start failed halfway */
    pthread_mutex_lock(&a.mu);
    a.stop = true;
    pthread_cond_broadcast(&a.cv);
    pthread_mutex_unlock(&a.mu);
    agent_cancel_transfers();
    bt_mqtt_client_destroy(a.mqtt); /* no event after this */
    a.mqtt = NULL;
    if (reporter)
        pthread_join(a.reporter, NULL);
    if (worker)
        pthread_join(a.worker, NULL);
    teardown(&a);
    pthread_cond_destroy(&a.cv);
    pthread_mutex_destroy(&a.mu);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    static const bt_module_info info = {
        "the cloud link: reports the master's state over HTTPS and applies OTA events from MQTT",
        NULL};
    return bt_run_module(&info, argc, argv, run);
}
