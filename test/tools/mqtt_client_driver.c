/* A command-line MQTT client on the SDK client (mqtt_client.h), for the integration tests.
 * Settings come from options; commands come on stdin, one per line; everything the client
 * reports goes to stdout as JSON lines.
 *
 *   mqtt_client_driver --address tcp://127.0.0.1:P [--clientid X] [--clean 0|1]
 *       [--username U --password P] [--ca F] [--cert F --key F] [--insecure]
 *       [--keepalive 2s] [--timeout 5s] [--interval 1s] [--buffersize N] [--validatesubs]
 *       [--sub topic:qos]... [--ack all|none|auto|first:N] [--exit-after N] [--no-start]
 *       [--will-topic T --will-payload P --will-qos Q --will-retain] [--protocol 3|4|5]
 *       [--keep-running]   (do not exit on the client's fatal error event)
 *
 * --ack: all = ack each QoS 1 message in on_message; none = only on `ack <token>` commands
 * (from the main thread); auto = the client's auto_ack; first:N = ack the first N.
 *
 * Commands: pub <topic> <qos> <payload> | pubn <topic> <qos> <count> <prefix> |
 *           pubw <topic> <qos> <count> <prefix> <timeout_ms> | ack <token> |
 *           pubthreads <topic> <qos> <threads> <count per thread> |
 *           pubbig <topic> <qos> <count> <payload bytes> <timeout_ms> (pubw of big payloads) |
 *           sub <topic> <qos> | unsub <topic> | pending | start | quit
 * Events: ready, connected, lost, error, message, complete, publish, pubn, pubthreads, ack,
 *         sub, unsub, pending. The complete events of pubthreads are counted, not printed. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "baetyl/config.h"
#include "baetyl/mqtt_client.h"

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static int quit_pipe[2] = {-1, -1};

enum { ACK_ALL, ACK_NONE, ACK_AUTO, ACK_FIRST };
static int ack_mode = ACK_ALL;
static long ack_first;
static long exit_after = -1;
static long received;
static bool keep_running;

/* One JSON line on stdout, built with json_pack. */
static void emit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_error_t je;
    json_t *v = json_vpack_ex(&je, 0, fmt, ap);
    va_end(ap);
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    pthread_mutex_lock(&out_mu);
    if (s)
        printf("%s\n", s);
    else
        printf("{\"event\":\"driver-error\",\"reason\":\"json: %s\"}\n", je.text);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    free(s);
    json_decref(v);
}

static void on_message(bt_mqtt_client *c, const bt_mqtt_message *m, void *ud)
{
    json_t *pl = json_stringn(m->payload ? (const char *)m->payload : "", m->payload_len);
    if (!pl)
        pl = json_sprintf("<binary %zu bytes>", m->payload_len);
    emit("{s:s, s:s, s:o, s:i, s:b, s:b, s:i, s:I}", "event", "message", "topic", m->topic,
         "payload", pl, "qos", m->qos, "dup", m->dup, "retain", m->retain, "pid", m->packet_id,
         "token", (json_int_t)m->ack.v);
    long n = __atomic_add_fetch(&received, 1, __ATOMIC_SEQ_CST);
    if (m->qos == 1 && (ack_mode == ACK_ALL || (ack_mode == ACK_FIRST && n <= ack_first))) {
        int rc = bt_mqtt_client_ack(c, m->ack);
        emit("{s:s, s:i, s:i}", "event", "ack", "pid", m->packet_id, "rc", rc);
    }
    if (exit_after >= 0 && n >= exit_after) {
        ssize_t w = write(quit_pipe[1], "q", 1);
        (void)w;
    }
}

static long bulk_complete;

static void on_complete(bt_mqtt_client *c, void *tag, int status, void *ud)
{
    if ((intptr_t)tag == -1) { /* pubthreads: too many to print */
        __atomic_add_fetch(&bulk_complete, 1, __ATOMIC_SEQ_CST);
        return;
    }
    emit("{s:s, s:I, s:i}", "event", "complete", "tag", (json_int_t)(intptr_t)tag, "status",
         status);
}

static void on_connected(bt_mqtt_client *c, bool sp, void *ud)
{
    emit("{s:s, s:b}", "event", "connected", "session_present", sp);
}

static void on_lost(bt_mqtt_client *c, const char *reason, void *ud)
{
    emit("{s:s, s:s}", "event", "lost", "reason", reason);
}

static void on_error(bt_mqtt_client *c, const char *reason, void *ud)
{
    emit("{s:s, s:s}", "event", "error", "reason", reason);
    if (!keep_running) {
        ssize_t w = write(quit_pipe[1], "q", 1);
        (void)w;
    }
}

static long next_tag = 1;

/* pubn / pubw: count publishes with payload prefix<i>; reports how many returned what. */
static void pub_many(bt_mqtt_client *c, const char *topic, int qos, long count, const char *prefix,
                     long timeout_ms, size_t size)
{
    long ok = 0, full = 0, other = 0;
    char err[256] = "";
    char *payload = calloc(1, size + 64);
    if (!payload)
        return;
    if (size)
        memset(payload, 'b', size);
    for (long i = 0; i < count; i++) {
        int n = size ? (int)size : snprintf(payload, 64, "%s%ld", prefix, i);
        int rc = timeout_ms < 0
                     ? bt_mqtt_client_publish(c, topic, payload, (size_t)n, qos, false,
                                              (void *)(intptr_t)next_tag, err, sizeof err)
                     : bt_mqtt_client_publish_wait(c, topic, payload, (size_t)n, qos, false,
                                                   (void *)(intptr_t)next_tag, timeout_ms, err,
                                                   sizeof err);
        next_tag++;
        if (rc == BT_MQTT_OK)
            ok++;
        else if (rc == BT_MQTT_EFULL)
            full++;
        else
            other++;
    }
    free(payload);
    emit("{s:s, s:I, s:I, s:I, s:s}", "event", "pubn", "ok", (json_int_t)ok, "full",
         (json_int_t)full, "other", (json_int_t)other, "err", err);
}

/* pubthreads: several threads publish at once (publish_wait), to exercise the locking. */
typedef struct {
    bt_mqtt_client *c;
    const char *topic;
    int qos, id;
    long count, ok;
} pub_job;

static void *pub_thread(void *arg)
{
    pub_job *j = arg;
    char payload[64], err[256];
    for (long i = 0; i < j->count; i++) {
        int n = snprintf(payload, sizeof payload, "t%d-%ld", j->id, i);
        if (bt_mqtt_client_publish_wait(j->c, j->topic, payload, (size_t)n, j->qos, false,
                                        (void *)(intptr_t)-1, -1, err, sizeof err) == BT_MQTT_OK)
            j->ok++;
    }
    return NULL;
}

static void pub_threads(bt_mqtt_client *c, const char *topic, int qos, int threads, long count)
{
    pthread_t t[64];
    pub_job jobs[64];
    if (threads < 1 || threads > 64)
        threads = 1;
    for (int i = 0; i < threads; i++) {
        jobs[i] = (pub_job){.c = c, .topic = topic, .qos = qos, .id = i, .count = count};
        pthread_create(&t[i], NULL, pub_thread, &jobs[i]);
    }
    long ok = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        ok += jobs[i].ok;
    }
    emit("{s:s, s:I}", "event", "pubthreads", "ok", (json_int_t)ok);
}

/* Runs one command line; returns 1 on quit. */
static int command(bt_mqtt_client *c, char *line)
{
    char *save = NULL, *cmd = strtok_r(line, " \t", &save);
    char err[256] = "";
    if (!cmd)
        return 0;
    if (!strcmp(cmd, "quit"))
        return 1;
    if (!strcmp(cmd, "start")) {
        int rc = bt_mqtt_client_start(c, err, sizeof err);
        emit("{s:s, s:i, s:s}", "event", "start", "rc", rc, "err", err);
    } else if (!strcmp(cmd, "pub")) {
        char *topic = strtok_r(NULL, " \t", &save), *q = strtok_r(NULL, " \t", &save);
        char *payload = save ? save : "";
        if (!topic || !q) {
            emit("{s:s}", "event", "driver-error");
            return 0;
        }
        long tag = next_tag++;
        int rc = bt_mqtt_client_publish(c, topic, payload, strlen(payload), atoi(q), false,
                                        (void *)(intptr_t)tag, err, sizeof err);
        emit("{s:s, s:i, s:I, s:s}", "event", "publish", "rc", rc, "tag", (json_int_t)tag, "err",
             err);
    } else if (!strcmp(cmd, "pubn") || !strcmp(cmd, "pubw")) {
        char *topic = strtok_r(NULL, " \t", &save), *q = strtok_r(NULL, " \t", &save);
        char *n = strtok_r(NULL, " \t", &save), *prefix = strtok_r(NULL, " \t", &save);
        char *t = strtok_r(NULL, " \t", &save);
        if (!topic || !q || !n || !prefix) {
            emit("{s:s}", "event", "driver-error");
            return 0;
        }
        pub_many(c, topic, atoi(q), atol(n), prefix, cmd[3] == 'w' ? (t ? atol(t) : -1) : -1, 0);
    } else if (!strcmp(cmd, "pubbig")) {
        char *topic = strtok_r(NULL, " \t", &save), *q = strtok_r(NULL, " \t", &save);
        char *n = strtok_r(NULL, " \t", &save), *size = strtok_r(NULL, " \t", &save);
        char *t = strtok_r(NULL, " \t", &save);
        if (!topic || !q || !n || !size || !t || atol(size) < 1) {
            emit("{s:s}", "event", "driver-error");
            return 0;
        }
        pub_many(c, topic, atoi(q), atol(n), "", atol(t), (size_t)atol(size));
    } else if (!strcmp(cmd, "pubthreads")) {
        char *topic = strtok_r(NULL, " \t", &save), *q = strtok_r(NULL, " \t", &save);
        char *n = strtok_r(NULL, " \t", &save), *per = strtok_r(NULL, " \t", &save);
        if (!topic || !q || !n || !per) {
            emit("{s:s}", "event", "driver-error");
            return 0;
        }
        pub_threads(c, topic, atoi(q), atoi(n), atol(per));
    } else if (!strcmp(cmd, "ack")) {
        char *p = strtok_r(NULL, " \t", &save);
        bt_mqtt_ack_token t = {p ? strtoull(p, NULL, 10) : 0};
        int rc = bt_mqtt_client_ack(c, t);
        emit("{s:s, s:i, s:i}", "event", "ack", "pid", (int)(t.v & 0xFFFF), "rc", rc);
    } else if (!strcmp(cmd, "sub")) {
        char *topic = strtok_r(NULL, " \t", &save), *q = strtok_r(NULL, " \t", &save);
        int rc = bt_mqtt_client_subscribe(c, topic, q ? atoi(q) : 0, err, sizeof err);
        emit("{s:s, s:i, s:s}", "event", "sub", "rc", rc, "err", err);
    } else if (!strcmp(cmd, "unsub")) {
        char *topic = strtok_r(NULL, " \t", &save);
        int rc = bt_mqtt_client_unsubscribe(c, topic, err, sizeof err);
        emit("{s:s, s:i, s:s}", "event", "unsub", "rc", rc, "err", err);
    } else if (!strcmp(cmd, "pending")) {
        emit("{s:s, s:I, s:b, s:I}", "event", "pending", "n", (json_int_t)bt_mqtt_client_pending(c),
             "connected", bt_mqtt_client_connected(c), "bulk_complete",
             (json_int_t)__atomic_load_n(&bulk_complete, __ATOMIC_SEQ_CST));
    } else {
        emit("{s:s, s:s}", "event", "driver-error", "reason", cmd);
    }
    return 0;
}

/* Reads stdin lines until quit, EOF or the quit pipe. */
static void command_loop(bt_mqtt_client *c)
{
    static char buf[1 << 20]; /* lines carry payloads */
    size_t len = 0;
    for (;;) {
        struct pollfd p[2] = {{.fd = 0, .events = POLLIN}, {.fd = quit_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (p[1].revents)
            return;
        if (!p[0].revents)
            continue;
        ssize_t n = read(0, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            return;
        len += (size_t)n;
        char *nl;
        while ((nl = memchr(buf, '\n', len))) {
            *nl = '\0';
            int q = command(c, buf);
            size_t used = (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, len - used);
            len -= used;
            if (q)
                return;
        }
        if (len == sizeof buf - 1)
            len = 0; /* an over-long line is dropped */
    }
}

static int add_sub(bt_mqtt_client_config *cfg, const char *arg)
{
    const char *colon = strrchr(arg, ':');
    bt_mqtt_topic_info *items =
        realloc(cfg->subscriptions.items, (cfg->subscriptions.n + 1) * sizeof *items);
    if (!items)
        return -1;
    cfg->subscriptions.items = items;
    bt_mqtt_topic_info *t = &items[cfg->subscriptions.n++];
    t->topic = colon ? strndup(arg, (size_t)(colon - arg)) : strdup(arg);
    t->qos = colon ? atol(colon + 1) : 0;
    return t->topic ? 0 : -1;
}

static int set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = strdup(v);
    return *dst ? 0 : -1;
}

int main(int argc, char **argv)
{
    bt_mqtt_client_config cfg;
    bt_mqtt_client_options opt = {.on_message = on_message,
                                  .on_publish_complete = on_complete,
                                  .on_connected = on_connected,
                                  .on_connection_lost = on_lost,
                                  .on_error = on_error};
    char err[512];
    bool start = true;
    if (bt_cfg_defaults(&bt_mqtt_client_schema, &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "defaults: %s\n", err);
        return 2;
    }
    cfg.cleansession = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        bool takes = true;
        if (!strcmp(a, "--insecure"))
            cfg.insecure = true, takes = false;
        else if (!strcmp(a, "--validatesubs"))
            cfg.validatesubs = true, takes = false;
        else if (!strcmp(a, "--will-retain"))
            opt.will_retain = true, takes = false;
        else if (!strcmp(a, "--keep-running"))
            keep_running = true, takes = false;
        else if (!strcmp(a, "--no-start"))
            start = false, takes = false;
        else if (!v)
            rc = -1;
        else if (!strcmp(a, "--address"))
            rc = set_str(&cfg.address, v);
        else if (!strcmp(a, "--clientid"))
            rc = set_str(&cfg.clientid, v);
        else if (!strcmp(a, "--username"))
            rc = set_str(&cfg.username, v);
        else if (!strcmp(a, "--password"))
            rc = set_str(&cfg.password, v);
        else if (!strcmp(a, "--ca"))
            rc = set_str(&cfg.ca, v);
        else if (!strcmp(a, "--cert"))
            rc = set_str(&cfg.cert, v);
        else if (!strcmp(a, "--key"))
            rc = set_str(&cfg.key, v);
        else if (!strcmp(a, "--clean"))
            cfg.cleansession = atoi(v) != 0;
        else if (!strcmp(a, "--keepalive"))
            rc = bt_parse_duration(v, &cfg.keepalive);
        else if (!strcmp(a, "--timeout"))
            rc = bt_parse_duration(v, &cfg.timeout);
        else if (!strcmp(a, "--interval"))
            rc = bt_parse_duration(v, &cfg.interval);
        else if (!strcmp(a, "--buffersize"))
            cfg.buffersize = atol(v);
        else if (!strcmp(a, "--sub"))
            rc = add_sub(&cfg, v);
        else if (!strcmp(a, "--exit-after"))
            exit_after = atol(v);
        else if (!strcmp(a, "--protocol"))
            opt.protocol_level = atoi(v);
        else if (!strcmp(a, "--will-topic"))
            opt.will_topic = v;
        else if (!strcmp(a, "--will-payload"))
            opt.will_payload = v, opt.will_len = strlen(v);
        else if (!strcmp(a, "--will-qos"))
            opt.will_qos = atoi(v);
        else if (!strcmp(a, "--ack")) {
            if (!strcmp(v, "all"))
                ack_mode = ACK_ALL;
            else if (!strcmp(v, "none"))
                ack_mode = ACK_NONE;
            else if (!strcmp(v, "auto"))
                ack_mode = ACK_AUTO, opt.auto_ack = true;
            else if (!strncmp(v, "first:", 6))
                ack_mode = ACK_FIRST, ack_first = atol(v + 6);
            else
                rc = -1;
        } else
            rc = -1;
        if (rc < 0) {
            fprintf(stderr, "bad option %s\n", a);
            bt_cfg_free(&bt_mqtt_client_schema, &cfg);
            return 2;
        }
        if (takes)
            i++;
    }
    if (pipe(quit_pipe) < 0) {
        perror("pipe");
        bt_cfg_free(&bt_mqtt_client_schema, &cfg);
        return 2;
    }
    bt_mqtt_client *c = bt_mqtt_client_create(&cfg, &opt, err, sizeof err);
    bt_cfg_free(&bt_mqtt_client_schema, &cfg);
    if (!c) {
        emit("{s:s, s:s}", "event", "create-error", "reason", err);
        return 1;
    }
    if (start && bt_mqtt_client_start(c, err, sizeof err) < 0) {
        emit("{s:s, s:s}", "event", "create-error", "reason", err);
        bt_mqtt_client_destroy(c);
        return 1;
    }
    emit("{s:s}", "event", "ready");
    command_loop(c);
    bt_mqtt_client_destroy(c);
    emit("{s:s}", "event", "exit");
    close(quit_pipe[0]);
    close(quit_pipe[1]);
    return 0;
}
