/* Load generator for MQTT brokers (make bench): raw sockets and the SDK codec, one thread
 * per client, output batched so the generator is not the bottleneck.
 *
 *   hub_bench [-5] [-w WINDOW] tput PORT PUBS SUBS QOS COUNT SIZE [LINK [CAFILE]]
 *       -> "rate=<msg/s> sent=<n> received=<n> expected=<n>"
 *   hub_bench lat   PORT RATE SECONDS SIZE   (3.1.1)
 *       -> "p50_us=<n> p99_us=<n> received=<n> sent=<n>"
 *   hub_bench idle  PORT N
 *       -> opens N connections, prints "ready", waits for stdin EOF
 * Every publisher sends COUNT messages; each subscriber expects PUBS*COUNT. LINK is tcp
 * (default), ssl, ws or wss: TLS (OpenSSL, server checked against CAFILE) and WebSocket
 * (the SDK's bt_ws client, path /mqtt, one masked binary frame per batch) under MQTT.
 * -5 makes every connection speak MQTT 5.0 (3.1.1 otherwise); QOS is 0, 1 or 2 (PUBREC,
 * PUBREL, PUBCOMP). A publisher keeps up to 200 messages in flight (-w N; at most 100 at
 * QoS 2), fewer when the broker's receive maximum (5.0) says so. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
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

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "baetyl/mqtt_codec.h"
#include "baetyl/ws.h"

static int port;
static int version = BT_MQTT_V311; /* of every connection: BT_MQTT_V311 or BT_MQTT_V5 */
static long window_max = 200;      /* -w: publishes in flight per publisher at QoS 1 */

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- links: the byte stream under MQTT (tcp, ssl, ws, wss) ----------------------------- */
enum { LINK_TCP, LINK_SSL, LINK_WS, LINK_WSS };
static int link_kind = LINK_TCP;
static SSL_CTX *tls_ctx;

typedef struct {
    int fd;
    SSL *ssl;
    bt_ws *ws;
    uint8_t *frame; /* client frames are masked: a copy per write */
    size_t frame_cap;
} link_t;

static ssize_t raw_read(link_t *l, void *b, size_t n)
{
    if (l->ssl) {
        int r = SSL_read(l->ssl, b, n > INT32_MAX ? INT32_MAX : (int)n);
        return r > 0 ? r : -1;
    }
    ssize_t r;
    do
        r = read(l->fd, b, n);
    while (r < 0 && errno == EINTR);
    return r;
}

static int raw_write_all(link_t *l, const uint8_t *b, size_t n)
{
    while (n) {
        ssize_t w;
        if (l->ssl) {
            int r = SSL_write(l->ssl, b, n > INT32_MAX ? INT32_MAX : (int)n);
            w = r > 0 ? r : -1;
        } else {
            w = write(l->fd, b, n);
            if (w < 0 && errno == EINTR)
                continue;
        }
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Sends what the WebSocket layer queued (pongs, close). */
static int ws_answer(link_t *l)
{
    size_t n;
    const uint8_t *o = bt_ws_output(l->ws, &n);
    if (n && raw_write_all(l, o, n) < 0)
        return -1;
    bt_ws_output_consume(l->ws, n);
    return 0;
}

/* MQTT bytes: >0, or -1 at the end or on error. */
static ssize_t link_read(link_t *l, uint8_t *b, size_t n)
{
    for (;;) {
        ssize_t r = raw_read(l, b, n);
        if (r <= 0 || !l->ws)
            return r;
        size_t out;
        char err[160];
        int rc = bt_ws_recv(l->ws, b, (size_t)r, b, &out, err, sizeof err);
        if (ws_answer(l) < 0)
            return -1;
        if (rc < 0) {
            fprintf(stderr, "%s\n", err);
            return -1;
        }
        if (out)
            return (ssize_t)out;
        if (rc == 1)
            return -1;
    }
}

static int write_all(link_t *l, const uint8_t *b, size_t n)
{
    if (!l->ws)
        return raw_write_all(l, b, n);
    if (l->frame_cap < n + BT_WS_HEADER_MAX) {
        free(l->frame);
        l->frame_cap = n + BT_WS_HEADER_MAX;
        l->frame = malloc(l->frame_cap);
        if (!l->frame)
            return -1;
    }
    char err[120];
    ssize_t f = bt_ws_wrap_copy(l->ws, b, n, l->frame, l->frame_cap, err, sizeof err);
    if (f < 0)
        return -1;
    return raw_write_all(l, l->frame, (size_t)f);
}

static void link_close(link_t *l)
{
    if (l->ssl) {
        SSL_shutdown(l->ssl);
        SSL_free(l->ssl);
    }
    free(l->ws);
    free(l->frame);
    close(l->fd);
    l->ssl = NULL;
    l->ws = NULL;
    l->frame = NULL;
}

/* Reads whole packets from a link. */
typedef struct {
    link_t l;
    uint8_t buf[1 << 16];
    size_t off, len;
    uint16_t recv_max; /* the broker's receive maximum (5.0 CONNACK), 65535 when absent */
} reader;

static int next_packet(reader *r, bt_mqtt_packet *p)
{
    for (;;) {
        size_t used;
        char err[128];
        int rc = bt_mqtt_decode_v(r->buf + r->off, r->len - r->off, 0, version, p, &used, err,
                                  sizeof err);
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
        ssize_t n = link_read(&r->l, r->buf + r->len, sizeof r->buf - r->len);
        if (n <= 0)
            return -1;
        r->len += (size_t)n;
    }
}

static void die(const char *what)
{
    fprintf(stderr, "%s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* Connects the link (TLS, WebSocket upgrade) and sends CONNECT; r->buf receives anything
 * that came after the upgrade answer. */
static void dial_link(reader *r)
{
    link_t *l = &r->l;
    l->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(l->fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (link_kind == LINK_SSL || link_kind == LINK_WSS) {
        l->ssl = SSL_new(tls_ctx);
        if (!l->ssl || SSL_set_fd(l->ssl, l->fd) != 1 || SSL_set1_host(l->ssl, "127.0.0.1") != 1 ||
            SSL_connect(l->ssl) != 1)
            die("tls handshake failed");
    }
    if (link_kind == LINK_WS || link_kind == LINK_WSS) {
        char err[160], host[32];
        l->ws = calloc(1, sizeof *l->ws);
        snprintf(host, sizeof host, "127.0.0.1:%d", port);
        bt_ws_init(l->ws, BT_WS_CLIENT, 0);
        if (bt_ws_client_start(l->ws, host, "/mqtt", err, sizeof err) < 0 || ws_answer(l) < 0)
            die(err);
        for (;;) {
            ssize_t n = raw_read(l, r->buf, sizeof r->buf);
            if (n <= 0)
                die("websocket upgrade: connection closed");
            size_t used;
            int rc = bt_ws_handshake(l->ws, r->buf, (size_t)n, &used, err, sizeof err);
            if (rc < 0)
                die(err);
            if (rc == 0)
                continue;
            size_t out;
            if (bt_ws_recv(l->ws, r->buf + used, (size_t)n - used, r->buf, &out, err, sizeof err) <
                0)
                die(err);
            r->len = out;
            break;
        }
    }
}

static reader *dial(const char *cid)
{
    reader *r = calloc(1, sizeof *r);
    dial_link(r);
    bt_mqtt_packet p = {.type = BT_MQTT_CONNECT};
    p.version = version == BT_MQTT_V5 ? BT_MQTT_V5 : 0;
    p.connect.protocol_level = (uint8_t)version;
    p.connect.clean_session = true;
    p.connect.keepalive = 0;
    p.connect.client_id = (bt_mqtt_str){cid, strlen(cid)};
    p.connect.has_username = true;
    p.connect.username = (bt_mqtt_str){"test", 4};
    p.connect.has_password = true;
    p.connect.password = (bt_mqtt_bin){(const uint8_t *)"hahaha", 6};
    uint8_t b[256];
    ssize_t n = bt_mqtt_encode(&p, b, sizeof b);
    if (n < 0 || write_all(&r->l, b, (size_t)n) < 0)
        exit(1);
    bt_mqtt_packet ack;
    if (next_packet(r, &ack) < 0 || ack.type != BT_MQTT_CONNACK || ack.connack.return_code != 0) {
        fprintf(stderr, "connect refused\n");
        exit(1);
    }
    bt_mqtt_prop rm;
    r->recv_max = version == BT_MQTT_V5 &&
                          bt_mqtt_props_get(&ack.connack.props, BT_MQTT_PROP_RECEIVE_MAXIMUM, &rm)
                      ? (uint16_t)rm.num
                      : 65535;
    return r;
}

static void reader_free(reader *r)
{
    link_close(&r->l);
    free(r);
}

static void subscribe(reader *r, const char *topic, int qos)
{
    bt_mqtt_sub_entry e = {{topic, strlen(topic)}, (uint8_t)qos};
    uint8_t b[256];
    bt_mqtt_packet s = {.type = BT_MQTT_SUBSCRIBE, .version = version == BT_MQTT_V5 ? 5 : 0};
    s.subscribe.packet_id = 1;
    s.subscribe.entries = &e;
    s.subscribe.count = 1;
    ssize_t n = bt_mqtt_encode(&s, b, sizeof b);
    if (n < 0 || write_all(&r->l, b, (size_t)n) < 0)
        exit(1);
    bt_mqtt_packet p;
    if (next_packet(r, &p) < 0 || p.type != BT_MQTT_SUBACK || p.suback.count != 1 ||
        p.suback.codes[0] != qos) {
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
    reader *r = dial(cid);
    subscribe(r, "bench/t", qos);
    atomic_fetch_add(&subs_ready, 1);
    long expect = count * pubs;
    uint8_t acks[4096];
    size_t na = 0;
    struct timeval tv = {10, 0};
    setsockopt(r->l.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (s->got < expect) {
        bt_mqtt_packet p;
        /* flush acks before a read may block */
        if (na && r->off == r->len) {
            write_all(&r->l, acks, na);
            na = 0;
        }
        if (next_packet(r, &p) < 0)
            break;
        /* QoS 1: PUBACK; QoS 2: PUBREC, then PUBCOMP for the broker's PUBREL. Both are the
         * 4 bytes of 3.1.1, which 5.0 reads as reason "success" without properties. */
        bt_mqtt_type ack = BT_MQTT_PUBACK;
        uint16_t id = p.ack.packet_id;
        if (p.type == BT_MQTT_PUBLISH) {
            s->got++;
            if (!p.publish.qos)
                continue;
            id = p.publish.packet_id;
            ack = p.publish.qos == 2 ? BT_MQTT_PUBREC : BT_MQTT_PUBACK;
        } else if (p.type == BT_MQTT_PUBREL) {
            ack = BT_MQTT_PUBCOMP;
        } else {
            continue;
        }
        bt_mqtt_encode_ack(acks + na, 4, ack, id);
        na += 4;
        if (na == sizeof acks) {
            write_all(&r->l, acks, na);
            na = 0;
        }
    }
    s->last_us = now_us();
    if (na)
        write_all(&r->l, acks, na);
    /* the last PUBRELs of QoS 2 still want their PUBCOMP (outside the timing) */
    struct timeval shortv = {0, 200000};
    setsockopt(r->l.fd, SOL_SOCKET, SO_RCVTIMEO, &shortv, sizeof shortv);
    bt_mqtt_packet p;
    while (qos == 2 && s->got == expect && next_packet(r, &p) == 0) {
        uint8_t comp[4];
        if (p.type == BT_MQTT_PUBREL &&
            (bt_mqtt_encode_ack(comp, 4, BT_MQTT_PUBCOMP, p.ack.packet_id) < 0 ||
             write_all(&r->l, comp, 4) < 0))
            break;
    }
    atomic_fetch_add(&received_total, s->got);
    reader_free(r);
    return NULL;
}

/* Reads one packet of the publisher's acknowledgement flow: QoS 1 PUBACK ends a message;
 * QoS 2 PUBREC queues a PUBREL in out, PUBCOMP ends a message. -1 when the link ended. */
static int pub_ack(reader *r, long *inflight, uint8_t *out, size_t *no)
{
    bt_mqtt_packet p;
    if (next_packet(r, &p) < 0)
        return -1;
    if (p.type == BT_MQTT_PUBACK || p.type == BT_MQTT_PUBCOMP) {
        (*inflight)--;
    } else if (p.type == BT_MQTT_PUBREC) {
        bt_mqtt_encode_ack(out + *no, 4, BT_MQTT_PUBREL, p.ack.packet_id);
        *no += 4;
    }
    return 0;
}

/* One PUBLISH of the run, encoded once: the packet id is patched into copies of it. */
typedef struct {
    uint8_t b[1024 + 64];
    size_t n, pid_at;
} pub_template;

static void template_init(pub_template *t, const uint8_t *payload)
{
    bt_mqtt_packet p = {.type = BT_MQTT_PUBLISH, .version = version == BT_MQTT_V5 ? 5 : 0};
    p.publish.qos = (uint8_t)qos;
    p.publish.packet_id = qos ? 1 : 0;
    p.publish.topic = (bt_mqtt_str){"bench/t", 7};
    p.publish.payload = (bt_mqtt_bin){payload, (size_t)size};
    ssize_t n = bt_mqtt_encode(&p, t->b, sizeof t->b);
    if (n < 0 || (size_t)n > sizeof t->b)
        die("publish template");
    t->n = (size_t)n;
    /* the id sits right before the payload, or before the 5.0 empty property length */
    t->pid_at = t->n - (size_t)size - 2 - (version == BT_MQTT_V5 ? 1 : 0);
}

static void *pub_main(void *a)
{
    int id = (int)(intptr_t)a;
    char cid[32];
    snprintf(cid, sizeof cid, "bpub%d", id);
    reader *r = dial(cid);
    uint8_t *payload = calloc(1, (size_t)size + 1);
    pub_template t;
    template_init(&t, payload);
    uint8_t out[1 << 16];
    size_t no = 0;
    /* QoS 2 in 3.1.1 has no receive maximum, but mosquitto refuses more than its
     * max_inflight_messages (100 in make bench) unreleased messages */
    long inflight = 0, window = qos == 2 && window_max > 100 ? 100 : window_max;
    if (window > r->recv_max)
        window = r->recv_max;
    uint16_t pid = 0;
    for (long i = 0; i < count; i++) {
        if (qos) {
            while (inflight >= window) {
                if (no) {
                    write_all(&r->l, out, no);
                    no = 0;
                }
                if (pub_ack(r, &inflight, out, &no) < 0)
                    goto done;
            }
            if (++pid == 0)
                pid = 1;
            inflight++;
        }
        if (no + t.n + 64 > sizeof out) {
            write_all(&r->l, out, no);
            no = 0;
        }
        memcpy(out + no, t.b, t.n);
        if (qos) {
            out[no + t.pid_at] = (uint8_t)(pid >> 8);
            out[no + t.pid_at + 1] = (uint8_t)pid;
        }
        no += t.n;
        atomic_fetch_add(&sent_total, 1);
    }
    while (qos && inflight > 0) {
        if (no) {
            write_all(&r->l, out, no);
            no = 0;
        }
        if (pub_ack(r, &inflight, out, &no) < 0)
            break;
    }
    if (no)
        write_all(&r->l, out, no);
done:
    free(payload);
    reader_free(r);
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
    printf("rate=%.0f sent=%ld received=%ld expected=%ld seconds=%.3f\n", rec / secs,
           atomic_load(&sent_total), rec, count * pubs * subs, secs);
    return 0;
}

/* ---- latency ---------------------------------------------------------------------------- */
/* QoS 1: when each packet id went out, and PUBLISH -> PUBACK times (the publisher's wait,
 * which holds the hub's commit). */
static _Atomic int64_t lat_sent_at[65536];
static int64_t *ack_us;
static long ack_got, ack_cap;

static void *ack_main(void *a)
{
    reader *pub = a;
    bt_mqtt_packet p;
    while (ack_got < ack_cap && next_packet(pub, &p) == 0)
        if (p.type == BT_MQTT_PUBACK)
            ack_us[ack_got++] = now_us() - atomic_load(&lat_sent_at[p.ack.packet_id]);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Publish -> delivery latency at a fixed rate; at QoS 1 (q) both ends acknowledge, and
 * PUBLISH -> PUBACK is measured too. */
static int lat(int rate, int seconds, int q)
{
    reader *r = dial("blat-sub");
    subscribe(r, "bench/lat", q);
    reader *pub = dial("blat-pub");
    long total = (long)rate * seconds;
    int64_t *lat_us = calloc((size_t)total, sizeof *lat_us);
    long got = 0;
    uint8_t *payload = calloc(1, (size_t)size < 8 ? 8 : (size_t)size);
    pthread_t acker;
    if (q) {
        ack_us = calloc((size_t)total, sizeof *ack_us);
        ack_cap = total;
        pthread_create(&acker, NULL, ack_main, pub);
    }
    int64_t start = now_us();
    long sent = 0;
    uint16_t pid = 0;
    while (got < total) {
        int64_t t = now_us();
        if (sent < total && t >= start + sent * 1000000 / rate) {
            memcpy(payload, &t, 8);
            uint8_t out[1024 + 64];
            if (q && ++pid == 0)
                pid = 1;
            if (q)
                atomic_store(&lat_sent_at[pid], t);
            ssize_t n = bt_mqtt_encode_publish(out, sizeof out, "bench/lat", 9, payload,
                                               (size_t)size, q, false, false, q ? pid : 0);
            write_all(&pub->l, out, (size_t)n);
            sent++;
            continue;
        }
        if (r->off < r->len || sent >= total || t < start + sent * 1000000 / rate) {
            bt_mqtt_packet p;
            size_t used;
            char err[64];
            int rc = bt_mqtt_decode_v(r->buf + r->off, r->len - r->off, 0, version, &p, &used, err,
                                      sizeof err);
            if (rc == 1) {
                r->off += used;
                if (p.type != BT_MQTT_PUBLISH)
                    continue;
                int64_t t0;
                memcpy(&t0, p.publish.payload.ptr, 8);
                lat_us[got++] = now_us() - t0;
                if (p.publish.qos) {
                    uint8_t ack[4];
                    bt_mqtt_encode_ack(ack, sizeof ack, BT_MQTT_PUBACK, p.publish.packet_id);
                    write_all(&r->l, ack, sizeof ack);
                }
                continue;
            }
            if (r->off) {
                memmove(r->buf, r->buf + r->off, r->len - r->off);
                r->len -= r->off;
                r->off = 0;
            }
            /* Wait for the subscriber's data until the next send is due: ppoll's timeout is
             * exact (a socket's SO_RCVTIMEO rounds up to a jiffy, up to 10 ms late). */
            int64_t due = sent < total ? start + sent * 1000000 / rate : t + 1000;
            int64_t wait = due > t ? due - t : 0;
            struct timespec ts = {(time_t)(wait / 1000000), (long)(wait % 1000000) * 1000};
            struct pollfd pfd = {r->l.fd, POLLIN, 0};
            ssize_t k = ppoll(&pfd, 1, &ts, NULL) > 0
                            ? link_read(&r->l, r->buf + r->len, sizeof r->buf - r->len)
                            : 0;
            if (k > 0)
                r->len += (size_t)k;
            else if (sent >= total && now_us() > start + (int64_t)(seconds + 5) * 1000000)
                break;
        }
    }
    qsort(lat_us, (size_t)got, sizeof *lat_us, cmp_i64);
    printf("p50_us=%ld p99_us=%ld received=%ld sent=%ld", got ? (long)lat_us[got / 2] : -1,
           got ? (long)lat_us[got * 99 / 100] : -1, got, sent);
    if (q) {
        /* The acks of what was sent: the hub answers every PUBLISH, so they all come. */
        shutdown(pub->l.fd, SHUT_WR);
        pthread_join(acker, NULL);
        qsort(ack_us, (size_t)ack_got, sizeof *ack_us, cmp_i64);
        printf(" ack_p50_us=%ld ack_p99_us=%ld acked=%ld", ack_got ? (long)ack_us[ack_got / 2] : -1,
               ack_got ? (long)ack_us[ack_got * 99 / 100] : -1, ack_got);
    }
    printf("\n");
    return 0;
}

static int idle(int n)
{
    reader **rs = calloc((size_t)n, sizeof *rs);
    for (int i = 0; i < n; i++) {
        char cid[32];
        snprintf(cid, sizeof cid, "idle%d", i);
        rs[i] = dial(cid);
    }
    printf("ready\n");
    fflush(stdout);
    char b[16];
    while (read(0, b, sizeof b) > 0) {}
    for (int i = 0; i < n; i++)
        reader_free(rs[i]);
    free(rs);
    return 0;
}

/* Chooses the link of every connection; TLS checks the server against cafile. */
static int setup_link(const char *kind, const char *cafile)
{
    static const char *names[] = {"tcp", "ssl", "ws", "wss"};
    link_kind = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(kind, names[i]))
            link_kind = i;
    if (link_kind < 0) {
        fprintf(stderr, "unknown link %s (tcp, ssl, ws or wss)\n", kind);
        return -1;
    }
    if (link_kind == LINK_SSL || link_kind == LINK_WSS) {
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (!tls_ctx || !cafile || SSL_CTX_load_verify_locations(tls_ctx, cafile, NULL) != 1) {
            fprintf(stderr, "tls: a readable CAFILE is needed\n");
            return -1;
        }
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
    }
    return 0;
}

int main(int argc, char **argv)
{
    for (;;) {
        if (argc >= 2 && !strcmp(argv[1], "-5")) {
            version = BT_MQTT_V5;
        } else if (argc >= 3 && !strcmp(argv[1], "-w") && atol(argv[2]) > 0) {
            window_max = atol(argv[2]);
            argv++;
            argc--;
        } else {
            break;
        }
        argv++;
        argc--;
    }
    if (argc >= 8 && !strcmp(argv[1], "tput")) {
        port = atoi(argv[2]);
        pubs = atoi(argv[3]);
        subs = atoi(argv[4]);
        qos = atoi(argv[5]);
        count = atol(argv[6]);
        size = atoi(argv[7]);
        if (pubs < 1 || pubs > 1024 || subs < 1 || subs > 1024 || size < 0 || size > 1024)
            return 2;
        if (argc >= 9 && setup_link(argv[8], argc >= 10 ? argv[9] : NULL) < 0)
            return 2;
        return tput();
    }
    if (argc >= 6 && !strcmp(argv[1], "lat") && version != BT_MQTT_V5) { /* 3.1.1 only */
        port = atoi(argv[2]);
        size = atoi(argv[5]);
        if (size < 8 || size > 1024)
            size = 100;
        int q = argc >= 7 ? atoi(argv[6]) : 0;
        if (q < 0 || q > 1 || atoi(argv[3]) < 1 || atoi(argv[4]) < 1)
            return 2;
        return lat(atoi(argv[3]), atoi(argv[4]), q);
    }
    if (argc >= 4 && !strcmp(argv[1], "idle")) {
        port = atoi(argv[2]);
        return idle(atoi(argv[3]));
    }
    fprintf(stderr, "usage: hub_bench [-5] [-w WINDOW] tput PORT PUBS SUBS QOS COUNT SIZE "
                    "[tcp|ssl|ws|wss [CAFILE]] | "
                    "lat PORT RATE SECONDS SIZE [QOS 0|1] | idle PORT N\n");
    return 2;
}
