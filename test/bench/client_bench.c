/* Publish throughput of one MQTT client library against a broker, for client_bench.py:
 *
 *   client_bench sdk|paho <port> <qos> <count> <window> <payload bytes>
 *
 * Both clients do the same: `count` publishes of one topic from one thread, at most
 * `window` of them handed to the library and not yet complete (QoS 1: PUBACKed; QoS 0:
 * written), then, for QoS 0, one QoS 1 publish whose PUBACK proves the broker has read
 * everything before it. Time runs from the first publish to the last completion.
 * Prints one JSON line: {"client","qos","count","seconds","rate"}. The SDK client's window
 * is its `buffersize`; paho's is enforced here (and by maxInflight). */
#include <MQTTAsync.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "baetyl/config.h"
#include "baetyl/log.h"
#include "baetyl/mqtt_client.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long completed, failed;
static int connected;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void done_one(int ok)
{
    pthread_mutex_lock(&mu);
    completed++;
    if (!ok)
        failed++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* Waits until at most `outstanding` of `sent` are not complete. */
static void wait_room(long sent, long outstanding)
{
    pthread_mutex_lock(&mu);
    while (sent - completed > outstanding)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

/* ---- the SDK client ------------------------------------------------------------------ */

static void sdk_complete(bt_mqtt_client *c, void *tag, int status, void *ud)
{
    done_one(status == BT_MQTT_OK);
}

static double run_sdk(int port, int qos, long count, long window, const char *payload, size_t size)
{
    bt_mqtt_client_config cfg;
    char err[256], addr[64];
    bt_cfg_defaults(&bt_mqtt_client_schema, &cfg, err, sizeof err);
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", port);
    cfg.address = strdup(addr);
    cfg.clientid = strdup("bench-sdk");
    cfg.cleansession = true;
    cfg.buffersize = window;
    bt_mqtt_client_options o = {.on_publish_complete = sdk_complete};
    bt_mqtt_client *c = bt_mqtt_client_create(&cfg, &o, err, sizeof err);
    bt_cfg_free(&bt_mqtt_client_schema, &cfg);
    if (!c || bt_mqtt_client_start(c, err, sizeof err) < 0 ||
        bt_mqtt_client_wait_connected(c, 10000) < 0) {
        fprintf(stderr, "sdk: %s\n", err);
        exit(1);
    }
    double t0 = now_s();
    for (long i = 0; i < count; i++)
        if (bt_mqtt_client_publish_wait(c, "bench/sdk", payload, size, qos, false, NULL, -1, err,
                                        sizeof err) != BT_MQTT_OK) {
            fprintf(stderr, "sdk publish: %s\n", err);
            exit(1);
        }
    long total = count;
    if (qos == 0) {
        bt_mqtt_client_publish_wait(c, "bench/sdk", "end", 3, 1, false, NULL, -1, err, sizeof err);
        total++;
    }
    wait_room(total, 0);
    double dt = now_s() - t0;
    bt_mqtt_client_destroy(c);
    return dt;
}

/* ---- paho.mqtt.c async --------------------------------------------------------------- */

static void paho_ok(void *ctx, MQTTAsync_successData *r)
{
    done_one(1);
}
static void paho_fail(void *ctx, MQTTAsync_failureData *r)
{
    done_one(0);
}
static void paho_connected(void *ctx, MQTTAsync_successData *r)
{
    pthread_mutex_lock(&mu);
    connected = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}
static void paho_connect_failed(void *ctx, MQTTAsync_failureData *r)
{
    fprintf(stderr, "paho connect failed: %d\n", r ? r->code : 0);
    exit(1);
}
static int paho_arrived(void *ctx, char *topic, int tl, MQTTAsync_message *m)
{
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

/* One send, retried while the library says its window is full. */
static void paho_send(MQTTAsync c, const char *payload, size_t size, int qos)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = paho_ok;
    ro.onFailure = paho_fail;
    for (;;) {
        int rc = MQTTAsync_send(c, "bench/paho", (int)size, payload, qos, 0, &ro);
        if (rc == MQTTASYNC_SUCCESS)
            return;
        if (rc != MQTTASYNC_MAX_MESSAGES_INFLIGHT && rc != MQTTASYNC_MAX_BUFFERED_MESSAGES) {
            fprintf(stderr, "paho send: %d\n", rc);
            exit(1);
        }
        usleep(50);
    }
}

static double run_paho(int port, int qos, long count, long window, const char *payload, size_t size)
{
    MQTTAsync c;
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    if (MQTTAsync_create(&c, uri, "bench-paho", MQTTCLIENT_PERSISTENCE_NONE, NULL) != 0)
        exit(1);
    MQTTAsync_setCallbacks(c, NULL, NULL, paho_arrived, NULL);
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    co.keepAliveInterval = 600;
    co.cleansession = 1;
    co.maxInflight = (int)window;
    co.onSuccess = paho_connected;
    co.onFailure = paho_connect_failed;
    if (MQTTAsync_connect(c, &co) != MQTTASYNC_SUCCESS)
        exit(1);
    pthread_mutex_lock(&mu);
    while (!connected)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    double t0 = now_s();
    for (long i = 0; i < count; i++) {
        wait_room(i, window - 1);
        paho_send(c, payload, size, qos);
    }
    long total = count;
    if (qos == 0) {
        wait_room(total, window - 1);
        paho_send(c, "end", 3, 1);
        total++;
    }
    wait_room(total, 0);
    double dt = now_s() - t0;
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = 1000;
    MQTTAsync_disconnect(c, &d);
    usleep(100 * 1000);
    MQTTAsync_destroy(&c);
    return dt;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s sdk|paho <port> <qos> <count> <window> <payload bytes>\n",
                argv[0]);
        return 2;
    }
    int port = atoi(argv[2]), qos = atoi(argv[3]);
    long count = atol(argv[4]), window = atol(argv[5]);
    size_t size = (size_t)atol(argv[6]);
    char *payload = malloc(size + 1);
    memset(payload, 'p', size);
    bt_log_set_level(BT_LOG_WARN);
    bool sdk = strcmp(argv[1], "sdk") == 0;
    double dt = sdk ? run_sdk(port, qos, count, window, payload, size)
                    : run_paho(port, qos, count, window, payload, size);
    free(payload);
    if (failed) {
        fprintf(stderr, "%ld publishes failed\n", failed);
        return 1;
    }
    printf("{\"client\":\"%s\",\"qos\":%d,\"count\":%ld,\"seconds\":%.4f,\"rate\":%.0f}\n", argv[1],
           qos, count, dt, count / dt);
    return 0;
}
