/* libFuzzer target: arbitrary bytes fed to a hub session driven from memory (no sockets, no
 * store). The first byte picks whether a valid CONNECT comes first (to reach the packet
 * handlers) and how the input is split into reads; a second client subscribed to '#' makes
 * every publish flow through delivery. The hub's sources are compiled in directly because
 * the fuzz build links only the SDK. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../hub/auth.c"
#include "../../hub/broker.c"
#include "../../hub/buf.c"
#include "../../hub/config.c"
#include "../../hub/conn.c"
#include "../../hub/handle_connect.c"
#include "../../hub/handle_publish.c"
#include "../../hub/handle_subscribe.c"
#include "../../hub/map.c"
#include "../../hub/msg.c"
#include "../../hub/persist.c"
#include "../../hub/retain.c"
#include "../../hub/route.c"
#include "../../hub/session.c"
#include "../../hub/stats.c"
#include "../../hub/transport_tcp.c"
#include "../../hub/trie.c"
#include "../../hub/will.c"

/* Store calls are never reached with st == NULL; these keep the link self-contained. */
int store_append(store *s, const store_msg *m, size_t n, uint64_t *q, char *e, size_t el) { return -1; }
uint64_t store_last_seq(store *s) { return 0; }
long store_scan(store *s, uint64_t f, size_t x, store_scan_cb cb, void *a, char *e, size_t el) { return -1; }
int store_set_offsets(store *s, const store_offset *o, size_t n, char *e, size_t el) { return -1; }
int store_get_offset(store *s, const char *c, uint64_t *o, char *e, size_t el) { return -1; }
int store_del_offset(store *s, const char *c, char *e, size_t el) { return -1; }
int store_put_session(store *s, const char *c, const store_sub *x, size_t n, char *e, size_t el) { return -1; }
int store_del_session(store *s, const char *c, char *e, size_t el) { return -1; }
int store_load_sessions(store *s, store_session_cb cb, void *a, char *e, size_t el) { return -1; }
int store_put_retained(store *s, const store_msg *m, char *e, size_t el) { return -1; }
int store_del_retained(store *s, const char *t, char *e, size_t el) { return -1; }
int store_load_retained(store *s, store_msg_cb cb, void *a, char *e, size_t el) { return -1; }
int store_put_will(store *s, const char *c, const store_msg *m, char *e, size_t el) { return -1; }
int store_del_will(store *s, const char *c, char *e, size_t el) { return -1; }
int store_load_wills(store *s, store_will_cb cb, void *a, char *e, size_t el) { return -1; }
long store_cleanup(store *s, int64_t n, int64_t r, char *e, size_t el) { return -1; }

static const char CONF[] = "listen: [tcp://127.0.0.1:1]\n"
                           "message: {length: {max: 4k}, egress: {qos1: {buffer: {size: 4}}}}\n"
                           "principals:\n"
                           "  - username: u\n    password: p\n"
                           "    permissions:\n"
                           "      - {action: pub, permit: ['#']}\n"
                           "      - {action: sub, permit: ['a/#', '+/b']}\n"
                           "subscriptions:\n"
                           "  - source: {topic: 'a/+', qos: 1}\n    target: {topic: r/x, qos: 1}\n";

/* CONNECT "f" u/p, keepalive 60, clean session. */
static const uint8_t CONNECT[] = {0x10, 0x13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60,
                                  0, 1, 'f', 0, 1, 'u', 0, 1, 'p'};
/* SUBSCRIBE '#'... for the watcher: not permitted for 'u', so use a/# and +/b. */
static const uint8_t WATCH_CONNECT[] = {0x10, 0x13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60,
                                        0, 1, 'w', 0, 1, 'u', 0, 1, 'p'};
static const uint8_t WATCH_SUB[] = {0x82, 0x0E, 0, 1, 0, 3, 'a', '/', '#', 1, 0, 3, '+', '/', 'b', 0};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static hub_config cfg;
    static int loaded;
    if (!loaded) {
        char err[256];
        bt_log_set_level(BT_LOG_ERROR); /* closing connections is the normal outcome */
        if (hub_config_load_string(&cfg, CONF, err, sizeof err) < 0)
            abort();
        loaded = 1;
    }
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    hub h;
    char err[256];
    if (hub_init(&h, &cfg, NULL, err, sizeof err) < 0)
        abort();
    conn *w = hub_conn_new(&h, transport_mem_new());
    hub_conn_feed(w, WATCH_CONNECT, sizeof WATCH_CONNECT);
    hub_conn_feed(w, WATCH_SUB, sizeof WATCH_SUB);
    conn *c = hub_conn_new(&h, transport_mem_new());
    if (mode & 1)
        hub_conn_feed(c, CONNECT, sizeof CONNECT);
    size_t chunk = (size_t)(mode >> 1) + 1;
    /* Closed connections are freed at the end of a turn: forget them before that. */
    for (size_t off = 0; off < size && c; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        hub_conn_feed(c, data + off, n);
        if ((mode & 0x80) && w) {
            /* acknowledge what the watcher holds, run timers (retries, keep-alive) */
            for (uint16_t pid = 1; pid < 8 && w->state != CONN_CLOSED; pid++)
                handle_puback(w, pid);
            h.now_ms += 30000;
            hub_tick(&h);
        }
        if (c->state == CONN_CLOSED)
            c = NULL;
        if (w && w->state == CONN_CLOSED)
            w = NULL;
        hub_turn_end(&h);
    }
    hub_turn_end(&h);
    hub_shutdown(&h);
    return 0;
}
