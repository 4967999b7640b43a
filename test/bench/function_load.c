/* Load and reference peer for function_bench.py (issue 17), on the SDK's MQTT client:
 *
 *   function_load flood <port> <topic> <qos> <count> <window>
 *     publishes {"id":n} (n = 0..count-1) on <topic> at <qos>, with at most <window> sent
 *     and not yet answered, and waits for every output on <topic>/out. Warms up first (one
 *     message answered: subscription and instance ready). Prints one JSON line:
 *     {"count","seconds","rate","p50_ms","p99_ms","in_order"}, seconds from the first publish
 *     to the last output; in_order is false when an output came before an earlier one.
 *   function_load sqlref <port> <filter> <statement>
 *     the side-by-side reference for the SQL path: subscribes to <filter>, evaluates the
 *     statement in-process (function-sql's evaluator) and publishes on <topic>/out at the input's
 *     QoS, acknowledging a QoS 1 input once its output is PUBACKed, as the function-manager
 *     does. Prints "ready" once subscribed; runs until SIGTERM. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "baetyl/config.h"
#include "baetyl/log.h"
#include "baetyl/mqtt_client.h"
#include "baetyl/util.h"
#include "sql.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static double now_s(void)
{
    return (double)bt_now_ns() / 1e9;
}

static bt_mqtt_client *connect_client(int port, const char *id, const char *sub, int subqos,
                                      bt_mqtt_client_options *o)
{
    bt_mqtt_client_config cfg;
    char err[256], addr[64];
    bt_cfg_defaults(&bt_mqtt_client_schema, &cfg, err, sizeof err);
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", port);
    cfg.address = strdup(addr);
    cfg.clientid = strdup(id);
    cfg.username = strdup("test");
    cfg.password = strdup("hahaha");
    cfg.cleansession = true;
    cfg.buffersize = 10000;
    bt_mqtt_topic_info t = {.topic = (char *)sub, .qos = subqos};
    cfg.subscriptions.n = 1;
    cfg.subscriptions.items = &t;
    bt_mqtt_client *c = bt_mqtt_client_create(&cfg, o, err, sizeof err);
    cfg.subscriptions.n = 0;
    cfg.subscriptions.items = NULL;
    bt_cfg_free(&bt_mqtt_client_schema, &cfg);
    if (!c || bt_mqtt_client_start(c, err, sizeof err) < 0 ||
        bt_mqtt_client_wait_connected(c, 10000) < 0) {
        fprintf(stderr, "connect: %s\n", err);
        exit(1);
    }
    return c;
}

/* ---- flood -------------------------------------------------------------------------- */

static long received, last_id = -1, warm;
static bool in_order = true;
static double *sent_at, *lat, t_last;
static long count;

static void flood_message(bt_mqtt_client *c, const bt_mqtt_message *m, void *ud)
{
    const char *p = (const char *)m->payload, *k = memchr(p, ':', m->payload_len);
    long id = k ? strtol(k + 1, NULL, 10) : -2;
    double t = now_s();
    pthread_mutex_lock(&mu);
    if (id < 0) {
        warm++;
    } else if (id < count) {
        if (id <= last_id && in_order) {
            in_order = false;
            fprintf(stderr, "out of order: %ld after %ld\n", id, last_id);
        }
        last_id = id;
        lat[received++] = (t - sent_at[id]) * 1000;
        t_last = t;
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int flood(int port, const char *topic, int qos, long window)
{
    char out[512], err[256], msg[64];
    snprintf(out, sizeof out, "%s/out", topic);
    sent_at = calloc((size_t)count, sizeof *sent_at);
    lat = calloc((size_t)count, sizeof *lat);
    bt_mqtt_client_options o = {.on_message = flood_message, .auto_ack = true};
    bt_mqtt_client *c = connect_client(port, "bench-flood", out, 0, &o);
    /* warm-up: the subscription is active and an instance answers */
    for (int i = 0; i < 300; i++) {
        bt_mqtt_client_publish_wait(c, topic, "{\"id\":-1}", 9, qos, false, NULL, -1, err,
                                    sizeof err);
        pthread_mutex_lock(&mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        if (!warm)
            pthread_cond_timedwait(&cv, &mu, &ts);
        long w = warm;
        pthread_mutex_unlock(&mu);
        if (w)
            break;
    }
    usleep(200 * 1000); /* late warm-up answers */
    double t0 = now_s();
    for (long i = 0; i < count; i++) {
        pthread_mutex_lock(&mu);
        while (i - received >= window)
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
        int n = snprintf(msg, sizeof msg, "{\"id\":%ld}", i);
        sent_at[i] = now_s();
        if (bt_mqtt_client_publish_wait(c, topic, msg, (size_t)n, qos, false, NULL, -1, err,
                                        sizeof err) != BT_MQTT_OK) {
            fprintf(stderr, "publish: %s\n", err);
            return 1;
        }
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 60;
    pthread_mutex_lock(&mu);
    while (received < count && pthread_cond_timedwait(&cv, &mu, &dl) == 0)
        ;
    long got = received;
    pthread_mutex_unlock(&mu);
    bt_mqtt_client_destroy(c);
    if (got < count) {
        fprintf(stderr, "%ld of %ld outputs missing\n", count - got, count);
        return 1;
    }
    qsort(lat, (size_t)count, sizeof *lat, cmp_double);
    double dt = t_last - t0;
    printf("{\"count\":%ld,\"seconds\":%.4f,\"rate\":%.0f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,"
           "\"in_order\":%s}\n",
           count, dt, count / dt, lat[count / 2], lat[count * 99 / 100],
           in_order ? "true" : "false");
    return 0;
}

/* ---- sqlref ------------------------------------------------------------------------- */

static sql_stmt *stmt;

static void ref_complete(bt_mqtt_client *c, void *tag, int status, void *ud)
{
    bt_mqtt_ack_token *t = tag;
    if (t && status == BT_MQTT_OK)
        bt_mqtt_client_ack(c, *t);
    free(t);
}

static void ref_message(bt_mqtt_client *c, const bt_mqtt_message *m, void *ud)
{
    sql_msg sm = {.qos = m->qos, .topic = m->topic, .timestamp = (long long)time(NULL)};
    char *res = NULL, why[256], err[256], out_topic[512];
    snprintf(out_topic, sizeof out_topic, "%s/out", m->topic);
    size_t len = 0;
    int rc = sql_run(stmt, m->payload, m->payload_len, &sm, &res, &len, why, sizeof why);
    if (rc == 1) {
        bt_mqtt_ack_token *t = NULL;
        if (m->qos == 1 && (t = malloc(sizeof *t)))
            *t = m->ack;
        /* in a callback publish_wait does not wait: the window is sized for the bench */
        if (bt_mqtt_client_publish_wait(c, out_topic, res, len, m->qos, false, t, -1, err,
                                        sizeof err) != BT_MQTT_OK) {
            free(t);
            bt_mqtt_client_ack(c, m->ack);
        }
    } else {
        bt_mqtt_client_ack(c, m->ack);
    }
    free(res);
}

static int sqlref(int port, const char *in, const char *text)
{
    char err[256];
    stmt = sql_compile(text, err, sizeof err);
    if (!stmt) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    bt_mqtt_client_options o = {.on_message = ref_message, .on_publish_complete = ref_complete};
    bt_mqtt_client *c = connect_client(port, "bench-sqlref", in, 1, &o);
    usleep(200 * 1000);
    printf("ready\n");
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    bt_mqtt_client_destroy(c);
    sql_free(stmt);
    return 0;
}

int main(int argc, char **argv)
{
    bt_log_set_level(BT_LOG_WARN);
    if (argc == 7 && strcmp(argv[1], "flood") == 0) {
        count = atol(argv[5]);
        return flood(atoi(argv[2]), argv[3], atoi(argv[4]), atol(argv[6]));
    }
    if (argc == 5 && strcmp(argv[1], "sqlref") == 0)
        return sqlref(atoi(argv[2]), argv[3], argv[4]);
    fprintf(stderr,
            "usage: %s flood <port> <topic> <qos> <count> <window>\n"
            "       %s sqlref <port> <filter> <statement>\n",
            argv[0], argv[0]);
    return 2;
}
