/* libFuzzer target: arbitrary bytes fed to a hub session driven from memory (no sockets),
 * over a real LMDB store in a temporary directory (sync off), so QoS 1 commits,
 * persistent sessions, catch-up from the log, retained messages and wills are fuzzed too.
 * The first byte picks whether a valid CONNECT comes first (to reach the packet handlers),
 * MQTT 3.1.1 or 5.0 (then the input is read as 5.0 packets, QoS 2 too), how the input is
 * split into reads, whether the watcher (a second client subscribed to
 * a/# and +/b) keeps a persistent session, and whether it acknowledges and timers run. At
 * the end the watcher reconnects, taking its session over and catching up from the log.
 * Linked with the hub's objects (test/fuzz/hub/: everything in hub/ but main.c).
 *
 * The store is opened once (opening and closing LMDB per input cost more than the session
 * itself) and emptied after each input, so every input starts from an empty store. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../../hub/hub.h"

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
static const uint8_t CONNECT[] = {0x10, 0x13, 0, 4,   'M', 'Q', 'T', 'T', 4, 0xC2, 0,
                                  60,   0,    1, 'f', 0,   1,   'u', 0,   1, 'p'};
/* CONNECT "f" u/p at level 5: session expiry 60, receive maximum 4, maximum packet 200. */
static const uint8_t CONNECT5[] = {0x10, 0x21, 0, 4, 'M', 'Q', 'T',  'T', 5, 0xC2, 0,  60,
                                   13,   0x11, 0, 0, 0,   60,  0x21, 0,   4, 0x27, 0,  0,
                                   0,    200,  0, 1, 'f', 0,   1,    'u', 0, 1,    'p'};
/* The watcher "w": clean (0xC2) or persistent (0xC0), then SUBSCRIBE a/# QoS 2, +/b QoS 0. */
static const uint8_t WATCH_CONNECT[] = {0x10, 0x13, 0, 4,   'M', 'Q', 'T', 'T', 4, 0xC2, 0,
                                        60,   0,    1, 'w', 0,   1,   'u', 0,   1, 'p'};
static const uint8_t WATCH_SUB[] = {0x82, 0x0E, 0, 1, 0,   3,   'a', '/',
                                    '#',  2,    0, 3, '+', '/', 'b', 0};

static store *st;
static char store_dir[] = "/tmp/fuzz-hub-XXXXXX";

/* Removes the store's files and its directory (LMDB keeps two files, nothing deeper). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int del_retained(const store_msg *m, void *arg)
{
    return store_del_retained(st, m->topic, NULL, 0) < 0 ? -1 : 0;
}

static int del_session(const char *client_id, const char *owner, const store_sub *subs, size_t n,
                       void *arg)
{
    char consumer[160];
    snprintf(consumer, sizeof consumer, "s:%s", client_id);
    return store_del_session(st, client_id, NULL, 0) < 0 ||
                   store_del_offset(st, consumer, NULL, 0) < 0
               ? -1
               : 0;
}

static int del_offset(const char *consumer, uint64_t offset, void *arg)
{
    return store_del_offset(st, consumer, NULL, 0) < 0 ? -1 : 0;
}

static int del_will(const char *client_id, const store_msg *m, void *arg)
{
    return store_del_will(st, client_id, NULL, 0) < 0 ? -1 : 0;
}

/* Empties the store for the next input (sequence numbers only grow, as they must). */
static void store_reset(void)
{
    char err[256];
    if (store_load_retained(st, del_retained, NULL, err, sizeof err) < 0 ||
        store_load_sessions(st, del_session, NULL, err, sizeof err) < 0 ||
        store_load_wills(st, del_will, NULL, err, sizeof err) < 0 ||
        store_load_offsets(st, "q:", del_offset, NULL, err, sizeof err) < 0 ||
        store_load_offsets(st, "x:", del_offset, NULL, err, sizeof err) < 0 ||
        store_trim(st, UINT64_MAX, 0, err, sizeof err) < 0) {
        fprintf(stderr, "store reset: %s\n", err);
        abort();
    }
}

static void close_store(void)
{
    store_close(st);
    remove_dir(store_dir);
}

static conn *watcher(hub *h, bool persistent)
{
    uint8_t c[sizeof WATCH_CONNECT];
    memcpy(c, WATCH_CONNECT, sizeof c);
    if (persistent)
        c[9] = 0xC0;
    conn *w = conn_new(h, transport_mem_new());
    conn_feed(w, c, sizeof c);
    conn_feed(w, WATCH_SUB, sizeof WATCH_SUB);
    return w->state == CONN_CLOSED ? NULL : w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static hub_config cfg;
    static int loaded;
    if (!loaded) {
        char err[256];
        bt_log_set_level(BT_LOG_ERROR); /* closing connections is the normal outcome */
        if (bt_cfg_load_string(&hub_config_schema, &cfg, CONF, strlen(CONF), err, sizeof err) < 0)
            abort();
        store_options so = {.dir = store_dir, .sync = 0, .map_size = 1 << 20, .map_max = 8 << 20};
        if (!mkdtemp(store_dir) || store_open(&so, &st, err, sizeof err) < 0) {
            fprintf(stderr, "store_open: %s\n", err);
            abort();
        }
        atexit(close_store);
        loaded = 1;
    }
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    bool persistent = mode & 0x40;

    char err[256];
    hub h;
    if (hub_init(&h, &cfg, st, err, sizeof err) < 0) {
        fprintf(stderr, "hub_init: %s\n", err);
        abort();
    }
    conn *w = watcher(&h, persistent);
    conn *c = conn_new(&h, transport_mem_new());
    if ((mode & 1) && (mode & 0x20))
        conn_feed(c, CONNECT5, sizeof CONNECT5);
    else if (mode & 1)
        conn_feed(c, CONNECT, sizeof CONNECT);
    size_t chunk = (size_t)((mode >> 1) & 0x0F) + 1;
    /* Closed connections are freed at the end of a turn: forget them before that. */
    for (size_t off = 0; off < size && c; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        conn_feed(c, data + off, n);
        if ((mode & 0x80) && w) {
            /* acknowledge what the watcher holds, run timers (retries, keep-alive) */
            for (uint16_t pid = 1; pid < 8 && w->state != CONN_CLOSED; pid++) {
                handle_puback(w, pid);
                handle_pubrec(w, pid);
                handle_pubcomp(w, pid);
            }
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
    /* The watcher comes back: takeover of the old connection, catch-up from the log. */
    watcher(&h, persistent);
    hub_turn_end(&h);
    hub_shutdown(&h);
    store_reset();
    return 0;
}
