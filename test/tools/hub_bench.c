/* Load generator for MQTT brokers (make bench): raw sockets and the SDK codec, one thread
 * per client, output batched so the generator is not the bottleneck.
 *
 *   hub_bench tput  PORT PUBS SUBS QOS COUNT SIZE   -> "rate=<msg/s> sent=<n> received=<n> expected=<n>"
 *   hub_bench lat   PORT RATE SECONDS SIZE          -> "p50_us=<n> p99_us=<n> received=<n> sent=<n>"
 *   hub_bench idle  PORT N                          -> opens N connections, prints "ready", waits for stdin EOF
 * Every publisher sends COUNT messages; each subscriber expects PUBS*COUNT. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "baetyl/mqtt_codec.h"

static int port;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int write_all(int fd, const uint8_t *b, size_t n)
{
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one whole packet into buf (cap bytes); returns its length or -1. */
typedef struct {
    int fd;
    uint8_t buf[1 << 16];
    size_t off, len;
} reader;

static int next_packet(reader *r, bt_mqtt_packet *p)
{
    for (;;) {
        size_t used;
        char err[128];
        int rc = bt_mqtt_decode(r->buf + r->off, r->len - r->off, 0, p, &used, err, sizeof err);
        if (rc == 1) {
            r->off += used;
            return 0;
        }
        if (rc < 0) {
            fprintf(stderr, "decode: %s\n", err);
            return -1;
        }
        if (r->off) {
            memmove(r->buf, r->buf + r->off, r->len - r->off);
            r->len -= r->off;
            r->off = 0;
        }
        ssize_t n = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
        if (n <= 0)
            return -1;
        r->len += (size_t)n;
    }
}

static int dial(const char *cid)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bt_mqtt_packet p = {.type = BT_MQTT_CONNECT};
    p.connect.protocol_level = 4;
    p.connect.clean_session = true;
    p.connect.keepalive = 0;
    p.connect.client_id = (bt_mqtt_str){cid, strlen(cid)};
    p.connect.has_username = true;
    p.connect.username = (bt_mqtt_str){"test", 4};
    p.connect.has_password = true;
    p.connect.password = (bt_mqtt_bin){(const uint8_t *)"hahaha", 6};
    uint8_t b[256];
    ssize_t n = bt_mqtt_encode(&p, b, sizeof b);
    if (n < 0 || write_all(fd, b, (size_t)n) < 0)
        exit(1);
    uint8_t ack[4];
    if (read(fd, ack, 4) != 4 || ack[0] != 0x20 || ack[3] != 0) {
        fprintf(stderr, "connect refused\n");
        exit(1);
    }
    return fd;
}

static void subscribe(int fd, const char *topic, int qos)
{
    bt_mqtt_sub_entry e = {{topic, strlen(topic)}, (uint8_t)qos};
    uint8_t b[256];
    ssize_t n = bt_mqtt_encode_subscribe(b, sizeof b, BT_MQTT_SUBSCRIBE, 1, &e, 1);
    write_all(fd, b, (size_t)n);
    uint8_t ack[5];
    if (read(fd, ack, 5) != 5) {
        fprintf(stderr, "no suback\n");
        exit(1);
    }
}

/* ---- throughput ------------------------------------------------------------------------ */
static int qos, size, pubs, subs;
static long count;
static atomic_long received_total, sent_total;
static atomic_int subs_ready;

typedef struct {
    int id;
    long got;
    int64_t last_us;
} sub_arg;

static void *sub_main(void *a)
{
    sub_arg *s = a;
    char cid[32];
    snprintf(cid, sizeof cid, "bsub%d", s->id);
    reader *r = calloc(1, sizeof *r);
    r->fd = dial(cid);
    subscribe(r->fd, "bench/t", qos);
    atomic_fetch_add(&subs_ready, 1);
    long expect = count * pubs;
    uint8_t acks[4096];
    size_t na = 0;
    struct timeval tv = {10, 0};
    setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (s->got < expect) {
        bt_mqtt_packet p;
        /* flush acks before a read may block */
        if (na && r->off == r->len) {
            write_all(r->fd, acks, na);
            na = 0;
        }
        if (next_packet(r, &p) < 0)
            break;
        if (p.type != BT_MQTT_PUBLISH)
            continue;
        s->got++;
        if (p.publish.qos) {
            bt_mqtt_encode_puback(acks + na, 4, p.publish.packet_id);
            na += 4;
            if (na == sizeof acks) {
                write_all(r->fd, acks, na);
                na = 0;
            }
        }
    }
    if (na)
        write_all(r->fd, acks, na);
    s->last_us = now_us();
    atomic_fetch_add(&received_total, s->got);
    close(r->fd);
    free(r);
    return NULL;
}

static void *pub_main(void *a)
{
    int id = (int)(intptr_t)a;
    char cid[32];
    snprintf(cid, sizeof cid, "bpub%d", id);
    reader *r = calloc(1, sizeof *r);
    r->fd = dial(cid);
    uint8_t *payload = calloc(1, (size_t)size);
    uint8_t out[1 << 16];
    size_t no = 0;
    long inflight = 0, window = 200, acked = 0;
    uint16_t pid = 0;
    for (long i = 0; i < count; i++) {
        if (qos) {
            while (inflight >= window) {
                if (no) {
                    write_all(r->fd, out, no);
                    no = 0;
                }
                bt_mqtt_packet p;
                if (next_packet(r, &p) < 0)
                    goto done;
                if (p.type == BT_MQTT_PUBACK) {
                    inflight--;
                    acked++;
                }
            }
            if (++pid == 0)
                pid = 1;
            inflight++;
        }
        if (no + (size_t)size + 64 > sizeof out) {
            write_all(r->fd, out, no);
            no = 0;
        }
        ssize_t n = bt_mqtt_encode_publish(out + no, sizeof out - no, "bench/t", 7, payload, (size_t)size, qos,
                                           false, false, qos ? pid : 0);
        no += (size_t)n;
        atomic_fetch_add(&sent_total, 1);
    }
    if (no)
        write_all(r->fd, out, no);
    while (qos && inflight > 0) {
        bt_mqtt_packet p;
        if (next_packet(r, &p) < 0)
            break;
        if (p.type == BT_MQTT_PUBACK) {
            inflight--;
            acked++;
        }
    }
done:
    sleep(qos ? 0 : 0);
    close(r->fd);
    free(payload);
    free(r);
    return NULL;
}

static int tput(void)
{
    pthread_t st[1024], pt[1024];
    sub_arg sa[1024];
    for (int i = 0; i < subs; i++) {
        sa[i] = (sub_arg){.id = i};
        pthread_create(&st[i], NULL, sub_main, &sa[i]);
    }
    while (atomic_load(&subs_ready) < subs)
        usleep(1000);
    usleep(100000);
    int64_t t0 = now_us();
    for (int i = 0; i < pubs; i++)
        pthread_create(&pt[i], NULL, pub_main, (void *)(intptr_t)i);
    for (int i = 0; i < pubs; i++)
        pthread_join(pt[i], NULL);
    int64_t last = t0;
    for (int i = 0; i < subs; i++) {
        pthread_join(st[i], NULL);
        if (sa[i].last_us > last)
            last = sa[i].last_us;
    }
    double secs = (double)(last - t0) / 1e6;
    long rec = atomic_load(&received_total);
    /* rate = messages delivered to subscribers per second */
    printf("rate=%.0f sent=%ld received=%ld expected=%ld seconds=%.3f\n", rec / secs, atomic_load(&sent_total), rec,
           count * pubs * subs, secs);
    return 0;
}

/* ---- latency ---------------------------------------------------------------------------- */
static int lat(int rate, int seconds)
{
    reader *r = calloc(1, sizeof *r);
    r->fd = dial("blat-sub");
    subscribe(r->fd, "bench/lat", 0);
    int pfd = dial("blat-pub");
    long total = (long)rate * seconds;
    int64_t *lat_us = calloc((size_t)total, sizeof *lat_us);
    long got = 0;
    uint8_t *payload = calloc(1, (size_t)size < 8 ? 8 : (size_t)size);
    int64_t start = now_us();
    struct timeval tv = {0, 1000};
    setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    long sent = 0;
    while (got < total) {
        int64_t t = now_us();
        if (sent < total && t >= start + sent * 1000000 / rate) {
            memcpy(payload, &t, 8);
            uint8_t out[1024 + 64];
            ssize_t n = bt_mqtt_encode_publish(out, sizeof out, "bench/lat", 9, payload, (size_t)size, 0, false,
                                               false, 0);
            write_all(pfd, out, (size_t)n);
            sent++;
            continue;
        }
        if (r->off < r->len || sent >= total || t < start + sent * 1000000 / rate) {
            bt_mqtt_packet p;
            size_t used;
            char err[64];
            int rc = bt_mqtt_decode(r->buf + r->off, r->len - r->off, 0, &p, &used, err, sizeof err);
            if (rc == 1) {
                r->off += used;
                int64_t t0;
                memcpy(&t0, p.publish.payload.ptr, 8);
                lat_us[got++] = now_us() - t0;
                continue;
            }
            if (r->off) {
                memmove(r->buf, r->buf + r->off, r->len - r->off);
                r->len -= r->off;
                r->off = 0;
            }
            ssize_t k = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
            if (k > 0)
                r->len += (size_t)k;
            else if (sent >= total && now_us() - t > 0 && now_us() > start + (int64_t)(seconds + 5) * 1000000)
                break;
        }
    }
    /* sort */
    for (long i = 1; i < got; i++) {
        int64_t v = lat_us[i];
        long j = i - 1;
        while (j >= 0 && lat_us[j] > v) {
            lat_us[j + 1] = lat_us[j];
            j--;
        }
        lat_us[j + 1] = v;
    }
    printf("p50_us=%ld p99_us=%ld received=%ld sent=%ld\n", got ? (long)lat_us[got / 2] : -1,
           got ? (long)lat_us[got * 99 / 100] : -1, got, sent);
    return 0;
}

static int idle(int n)
{
    int *fds = calloc((size_t)n, sizeof *fds);
    for (int i = 0; i < n; i++) {
        char cid[32];
        snprintf(cid, sizeof cid, "idle%d", i);
        fds[i] = dial(cid);
    }
    printf("ready\n");
    fflush(stdout);
    char b[16];
    while (read(0, b, sizeof b) > 0) {
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 8 && !strcmp(argv[1], "tput")) {
        port = atoi(argv[2]);
        pubs = atoi(argv[3]);
        subs = atoi(argv[4]);
        qos = atoi(argv[5]);
        count = atol(argv[6]);
        size = atoi(argv[7]);
        if (pubs < 1 || pubs > 1024 || subs < 1 || subs > 1024 || size < 0 || size > 1024)
            return 2;
        return tput();
    }
    if (argc >= 6 && !strcmp(argv[1], "lat")) {
        port = atoi(argv[2]);
        size = atoi(argv[5]);
        if (size < 8 || size > 1024)
            size = 100;
        return lat(atoi(argv[3]), atoi(argv[4]));
    }
    if (argc >= 4 && !strcmp(argv[1], "idle")) {
        port = atoi(argv[2]);
        return idle(atoi(argv[3]));
    }
    fprintf(stderr, "usage: hub_bench tput PORT PUBS SUBS QOS COUNT SIZE | lat PORT RATE SECONDS SIZE | idle PORT N\n");
    return 2;
}
