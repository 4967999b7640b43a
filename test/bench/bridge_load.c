/* Load for bridge_bench.py: publishes numbered messages to one broker and counts them at
 * another, through whatever bridges the two (baetyl-remote-mqtt or a mosquitto bridge).
 *
 *   bridge_load <pub address> <sub address> <qos> <count> <payload bytes> <window>
 *               [user password]
 *
 * The subscriber (QoS qos, on bench/#) connects first; probes go through until one arrives,
 * so the bridge's subscriptions are in place before the clock starts. Then `count`
 * messages of `size` bytes (the first 8 hold the sequence number) are published on
 * bench/load with QoS qos by one client (SDK client, buffersize 1000, blocking for room),
 * with at most `window` of them published and not yet received (end-to-end flow control:
 * what is measured is the rate the bridge sustains, not how much of an overload it drops;
 * a message that does not arrive within 1 s no longer holds the window). Time runs from the
 * first publish to the last new message received; the run ends when all
 * arrived or nothing new came for 5 s. Prints one JSON line:
 * {"qos","count","received","unique","lost","seconds","rate"} (rate = unique / seconds). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baetyl/config.h"
#include "baetyl/log.h"
#include "baetyl/mqtt_client.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static uint8_t *seen;
static long count, received, unique_n, probes;
static double last_new;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_message(bt_mqtt_client *c, const bt_mqtt_message *m, void *ud)
{
    pthread_mutex_lock(&mu);
    if (m->payload_len == 5 && memcmp(m->payload, "probe", 5) == 0) {
        probes++;
    } else if (m->payload_len >= 8) {
        uint64_t seq;
        memcpy(&seq, m->payload, 8);
        received++;
        if (seq < (uint64_t)count && !(seen[seq >> 3] & (1u << (seq & 7)))) {
            seen[seq >> 3] |= (uint8_t)(1u << (seq & 7));
            unique_n++;
            last_new = now_s();
        }
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static bt_mqtt_client *client(const char *address, const char *id, const char *user,
                              const char *pass, int sub_qos, bool subscriber)
{
    bt_mqtt_client_config cfg;
    char err[256];
    if (bt_cfg_defaults(&bt_mqtt_client_schema, &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "defaults: %s\n", err);
        exit(1);
    }
    cfg.address = strdup(address);
    cfg.clientid = strdup(id);
    cfg.cleansession = true;
    cfg.buffersize = 1000;
    cfg.interval = 1000;
    if (user) {
        cfg.username = strdup(user);
        cfg.password = strdup(pass);
    }
    bt_mqtt_topic_info sub = {.topic = "bench/#", .qos = sub_qos};
    bt_mqtt_client_options o = {.auto_ack = true};
    if (subscriber) {
        o.on_message = on_message;
        cfg.subscriptions.n = 1;
        cfg.subscriptions.items = &sub;
    }
    bt_mqtt_client *c = bt_mqtt_client_create(&cfg, &o, err, sizeof err);
    cfg.subscriptions.n = 0;
    cfg.subscriptions.items = NULL;
    bt_cfg_free(&bt_mqtt_client_schema, &cfg);
    if (!c || bt_mqtt_client_start(c, err, sizeof err) < 0 ||
        bt_mqtt_client_wait_connected(c, 10000) < 0) {
        fprintf(stderr, "%s: cannot connect: %s\n", address, c ? "timeout" : err);
        exit(1);
    }
    return c;
}

/* Waits for cond or until deadline (absolute, now_s clock); [mu] held. */
static void wait_until(double deadline)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double left = deadline - now_s();
    if (left <= 0)
        return;
    ts.tv_sec += (time_t)left;
    ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&cv, &mu, &ts);
}

int main(int argc, char **argv)
{
    if (argc != 7 && argc != 9) {
        fprintf(stderr, "usage: bridge_load PUB_ADDR SUB_ADDR QOS COUNT SIZE WINDOW [USER PASS]\n");
        return 2;
    }
    int qos = atoi(argv[3]);
    count = atol(argv[4]);
    size_t size = (size_t)atol(argv[5]);
    long window = atol(argv[6]);
    if ((qos != 0 && qos != 1) || count <= 0 || size < 8 || size > 65536 || window < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    bt_log_set_level(BT_LOG_ERROR);
    seen = calloc((size_t)count / 8 + 1, 1);
    uint8_t *payload = calloc(1, size);
    if (!seen || !payload)
        return 1;
    const char *user = argc == 9 ? argv[7] : NULL, *pass = argc == 9 ? argv[8] : NULL;
    bt_mqtt_client *sub = client(argv[2], "bench-sub", NULL, NULL, qos, true);
    bt_mqtt_client *pub = client(argv[1], "bench-pub", user, pass, 0, false);
    char err[256];

    /* probes until the path through the bridge works (20 s at most) */
    double deadline = now_s() + 20;
    pthread_mutex_lock(&mu);
    while (probes == 0 && now_s() < deadline) {
        pthread_mutex_unlock(&mu);
        bt_mqtt_client_publish_wait(pub, "bench/probe", "probe", 5, 0, false, NULL, -1, err,
                                    sizeof err);
        pthread_mutex_lock(&mu);
        wait_until(now_s() + 0.2);
    }
    bool up = probes > 0;
    pthread_mutex_unlock(&mu);
    if (!up) {
        fprintf(stderr, "nothing arrives through the bridge\n");
        return 1;
    }

    double t0 = now_s();
    for (long i = 0; i < count; i++) {
        pthread_mutex_lock(&mu);
        double stall = now_s() + 1.0;
        while (i - unique_n >= window && now_s() < stall)
            wait_until(stall);
        pthread_mutex_unlock(&mu);
        uint64_t seq = (uint64_t)i;
        memcpy(payload, &seq, 8);
        if (bt_mqtt_client_publish_wait(pub, "bench/load", payload, size, qos, false, NULL, -1, err,
                                        sizeof err) < 0) {
            fprintf(stderr, "publish: %s\n", err);
            return 1;
        }
    }
    double wait_from = now_s();
    pthread_mutex_lock(&mu);
    while (unique_n < count) {
        double ref = last_new > wait_from ? last_new : wait_from;
        if (now_s() - ref >= 5.0)
            break;
        wait_until(ref + 5.0);
    }
    double secs = (unique_n ? last_new : now_s()) - t0;
    long got = received, uniq = unique_n;
    pthread_mutex_unlock(&mu);
    bt_mqtt_client_destroy(pub);
    bt_mqtt_client_destroy(sub);
    printf("{\"qos\":%d,\"count\":%ld,\"received\":%ld,\"unique\":%ld,\"lost\":%ld,"
           "\"seconds\":%.4f,\"rate\":%.1f}\n",
           qos, count, got, uniq, count - uniq, secs, secs > 0 ? (double)uniq / secs : 0.0);
    free(seen);
    free(payload);
    return 0;
}
