/* The hub's core types: the broker state (struct hub), connections with their MQTT session
 * state, shared message buffers and the transport layer under the codec. One I/O thread
 * owns all of it; nothing here is locked.
 *
 * A session can be driven without sockets: conn_new() with a memory transport and
 * conn_feed() with bytes (the fuzz target and unit tests do this). */
#ifndef HUB_HUB_H
#define HUB_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <jansson.h>

#include "baetyl/buf.h"
#include "baetyl/util.h" /* bt_now_ms: the clock cached per turn in h->now_ms */
#include "baetyl/mqtt_codec.h"
#include "config.h"
#include "map.h"
#include "store.h"
#include "trie.h"

typedef struct hub hub;
typedef struct conn conn;
typedef struct shgroup shgroup;

/* ---- messages: one allocation, shared by every subscriber (reference counted) -------- */
typedef struct msg {
    uint32_t refs;
    uint8_t qos, retain;
    uint16_t topic_len;
    uint32_t payload_len;
    uint32_t props_len;
    uint32_t expiry_s; /* MQTT 5.0 message expiry interval from ts_ms, 0 = none */
    uint64_t seq;      /* log sequence number (QoS 1 once committed), 0 otherwise */
    uint64_t from;     /* id of the publishing connection (no-local), 0 = none */
    int64_t ts_ms;
    uint8_t *payload;
    /* MQTT 5.0 properties passed on to 5.0 subscribers (wire bytes without the length;
     * never a topic alias, subscription identifier or message expiry), NULL when none. */
    uint8_t *props;
    /* 5.0: the client id of a QoS 1/2 publisher with a no-local subscription (kept in the
     * log record so that a read back skips it for that client), NULL otherwise; owned. */
    char *origin;
    char topic[]; /* NUL-terminated, payload and props follow */
} msg;

/* A new message with refs = 1; NULL when out of memory. */
msg *msg_new(const char *topic, size_t tlen, const void *payload, size_t plen, uint8_t qos,
             uint8_t retain);
/* The same with MQTT 5.0 properties (see msg.props). */
msg *msg_new_props(const char *topic, size_t tlen, const void *payload, size_t plen,
                   const uint8_t *props, size_t props_len, uint8_t qos, uint8_t retain);
/* Takes one more reference. */
static inline msg *msg_ref(msg *m)
{
    m->refs++;
    return m;
}
/* Drops one reference (frees at zero; NULL is fine). */
void msg_unref(msg *m);
/* m as the store keeps it (views into m). */
store_msg msg_store_view(const msg *m);

/* A growable array of message references. */
typedef struct {
    msg **v;
    size_t n, cap;
} msg_vec;
/* Appends m (the vector takes the caller's reference). 0, or -1 when out of memory. */
int msg_vec_push(msg_vec *v, msg *m);

/* ---- transports: the byte stream under the codec (tcp, tls, ws over either) ------------ */
/* A transport turns socket readiness into MQTT bytes both ways. TLS and WebSocket have
 * handshakes and bytes of their own to send (handshake answers, pongs, close frames), so
 * besides read and writev a transport reports what it waits for through the flags below;
 * the connection turns them into epoll interest (conn.c). */
typedef struct transport transport;
typedef struct {
    /* >0 MQTT bytes, 0 = peer closed, -1 with errno (EAGAIN = nothing now; otherwise t->err
     * may say why). */
    ssize_t (*read)(transport *t, void *b, size_t n);
    /* MQTT bytes taken (all of them or a prefix), -1 with errno (EAGAIN = none now). */
    ssize_t (*writev)(transport *t, const struct iovec *iov, int n);
    /* Writes the bytes the transport holds itself (out_pending): 0 when none is left, -1
     * with errno (EAGAIN = later). NULL when it never holds any. */
    int (*flush)(transport *t);
    /* Closes and frees the transport (best effort goodbye: TLS close_notify, WebSocket close). */
    void (*close)(transport *t);
} transport_ops;

struct transport {
    const transport_ops *ops;
    int fd;                /* -1 for memory transports */
    bool cert_verified;    /* TLS with a verified client certificate */
    bool gather;           /* writev with several iovecs costs no more than with one */
    bool drained;          /* the last read took everything there was: stop reading */
    bool handshaking;      /* TLS or WebSocket handshake not finished (handshake.timeout) */
    bool read_wants_write; /* the last read waits for the socket to be writable (TLS) */
    bool write_wants_read; /* the last write waits for the socket to be readable (TLS) */
    bool out_pending;      /* flush() has bytes to write */
    const char *err;       /* why the last read or write failed, when known, else NULL */
};

/* A transport on a connected non-blocking tcp socket (takes the fd). NULL when no memory. */
transport *transport_tcp_new(int fd);
/* A transport that reads nothing and swallows writes (sessions driven from memory). */
transport *transport_mem_new(void);

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
/* The TLS server context of certificate {ca, cert, key}: cert and key are required; with
 * ca a client certificate is requested and, when presented, must verify against it.
 * NULL with err naming the field and file. */
struct ssl_ctx_st *transport_tls_ctx_new(const hub_config *cfg, char *err, size_t errlen);
/* Drops the caller's reference (connections hold their own); NULL is fine. */
void transport_tls_ctx_free(struct ssl_ctx_st *ctx);
/* A TLS server transport on an accepted non-blocking socket (takes the fd); the handshake
 * runs inside read(), never blocking. NULL when no memory (the fd is closed). */
transport *transport_tls_new(int fd, struct ssl_ctx_st *ctx);
/* A WebSocket server transport (RFC 6455, MQTT subprotocol) over inner, which it owns:
 * ws = over tcp, wss = over tls. max_message bounds one WebSocket message. NULL when no
 * memory (inner is closed). */
transport *transport_ws_new(transport *inner, uint64_t max_message);
/* A memory transport that reads the given bytes in chunks of at most chunk (the fuzz
 * target and unit tests put TLS-free stacks such as ws over it); it reports EOF after
 * them. The bytes must outlive it. Writes are swallowed. */
transport *transport_mem_reader_new(const uint8_t *d, size_t n, size_t chunk);

/* ---- connections and their session ---------------------------------------------------- */
/* One QoS 1 or 2 delivery in flight. A QoS 2 one is `released` once its PUBREC came: the
 * message is done (m NULL, seq 0) and only the PUBREL/PUBCOMP exchange holds its pid. */
typedef struct {
    msg *m;
    uint64_t seq; /* log seq when it came from the log (for offsets), else 0 */
    int64_t sent_ms;
    uint16_t pid;
    uint8_t qos;
    bool acked;
    bool released;
    bool rel_wait; /* released, its PUBREL waits for the packet id to be stored */
    bool shared;   /* a shared subscription's delivery: another member takes it if c leaves */
} outq_entry;

/* Packet ids of one session's QoS 2 exchanges: received PUBLISHes waiting for PUBREL
 * (inbound) or released deliveries waiting for PUBCOMP (outbound). */
typedef struct {
    uint16_t *v;
    size_t n, cap;
} pid_set;

typedef struct {
    char *filter;
    uint8_t qos;
    uint8_t opts; /* 5.0 subscription options but QoS (BT_MQTT_SUBOPT_NO_LOCAL, ...) */
    uint32_t id;  /* 5.0 subscription identifier, 0 = none */
} conn_sub;

/* Topic aliases a 5.0 client may use towards the hub (CONNACK topic alias maximum). */
#define TOPIC_ALIAS_MAX 32
/* Topic aliases the hub assigns towards a 5.0 client at most (bounded by the client's own
 * topic alias maximum): each costs a map entry for the connection's life. */
#define TOPIC_ALIAS_OUT_MAX 1024

enum { CONN_NEW = 0, CONN_ACTIVE, CONN_CLOSED };

struct conn {
    int kind; /* first field: epoll tag (LOOP_CONN) */
    hub *h;
    transport *tr;
    uint64_t id;
    int state;
    bool want_write; /* EPOLLOUT armed */
    bool in_dirty;   /* on the hub's dirty list (output to flush) */
    bool in_pump;    /* on the hub's pump list (catch-up from the log) */
    bool graceful;   /* DISCONNECT received: no will */
    bool clean;
    bool catchup;     /* QoS 1 comes from the log from next_seq, not live */
    bool paused;      /* not read: its QoS 1 publishes wait for room in a full store */
    bool resume_read; /* reading resumed: read what is there at the end of the turn */
    uint32_t npend;   /* its QoS 1 publishes waiting for the commit */
    uint8_t level;
    uint8_t lix;             /* index of the listener that accepted it (metrics) */
    bool problem_info;       /* 5.0: reason strings may be sent (request problem information) */
    bool expire_on_close;    /* 5.0 session expiry 0 on a resumed session: dropped at close */
    bool sub_opts;           /* 5.0: some subscription has no-local or retain-as-published */
    bool sub_ids;            /* 5.0: some subscription has an identifier */
    uint16_t recv_max;       /* 5.0: the client's receive maximum (0: none given) */
    uint32_t max_packet;     /* 5.0: the client's maximum packet size (0: none given) */
    uint32_t session_expiry; /* 5.0 session expiry interval, seconds */
    uint32_t will_delay;     /* 5.0 will delay interval, seconds */
    char **aliases;          /* 5.0: topics of the client's topic aliases 1..TOPIC_ALIAS_MAX */
    map alias_out;           /* 5.0: topic -> alias the hub assigned towards the client */
    uint16_t alias_out_max;  /* 5.0: aliases the hub may assign (0: none) */
    uint16_t keepalive;
    uint16_t next_pid;
    int64_t last_rx_ms, created_ms;
    char *client_id;
    const hub_principal_cfg *principal;
    msg *will;
    bt_buf in, out;  /* emptied buffers are freed: idle connections hold no memory */
    size_t out_qos0; /* QoS 0 messages queued since the output buffer was last empty */
    conn_sub *subs;
    size_t nsubs, capsubs;
    pid_set rx2;                    /* QoS 2 PUBLISHes received, waiting for their PUBREL */
    outq_entry *q;                  /* QoS 1 and 2 in flight, a ring */
    uint64_t *pidmap;               /* ids of q's unacked entries, once q was long */
    size_t qhead, qlen, qcap, qlog; /* qlog: entries with a log seq (the window) */
    uint64_t next_seq;              /* catch-up position */
    uint64_t mark;                  /* dispatch de-duplication stamp */
    uint8_t mark_qos;
    conn *next, *prev; /* all connections */
    conn *dirty_next;  /* dirty list */
    conn *pump_next;   /* pump list */
};

/* A QoS 1 publish waiting for the group commit. */
typedef struct {
    conn *c; /* NULL when the publisher is gone (or a will) */
    uint16_t pid;
    msg *m;
} pending_pub;

/* A persistent session while its client is away (or present). */
typedef struct {
    char *owner; /* username that created it: only that principal may use the client id */
    conn_sub *subs;
    size_t nsubs;
    uint64_t offset;
    bool offset_dirty;
    conn *online;
    /* Unacknowledged QoS 1 and 2 deliveries that are not in the log (retained copies), kept
     * while the client is away and resent (at held_qos) when it returns; the log covers all
     * the others. */
    msg **held;
    uint8_t *held_qos;
    size_t nheld;
    /* QoS 2 state kept while away and across restarts (store keys "q:<id>/i<pid>" and
     * "q:<id>/o<pid>"): received PUBLISHes waiting for PUBREL, released deliveries
     * waiting for PUBCOMP (their PUBREL is sent again on reconnect). */
    pid_set rx2, rel;
    /* 5.0 session expiry: wall clock ms at which the away session ends (store key
     * "x:<id>"), 0 = never. */
    int64_t expire_at;
    /* Log seqs above offset the client already completed (PUBACK, or PUBREC for QoS 2) while
     * an earlier delivery was not: skipped when the log is read again (store keys
     * "q:<id>/d<seq>", written with the offsets). */
    uint64_t *done;
    size_t ndone, capdone;
} psess;

/* A latency histogram: plain counters, updated by the loop thread only. */
#define STATS_BUCKETS 12
typedef struct {
    uint64_t n[STATS_BUCKETS + 1]; /* last: over the largest bound */
    uint64_t count;
    double sum;
} stats_hist;
/* A change of a stored QoS 2 packet id (or of a completed seq of psess.done), waiting for
 * the next offsets write. */
typedef struct {
    char *client_id;
    uint16_t pid;
    char kind;    /* 'i' inbound, 'o' outbound, 'd' a completed seq */
    bool on;      /* set (else cleared) */
    uint64_t seq; /* kind 'd' */
} qos2_rec;

typedef struct {
    uint64_t conns_total, conns_refused;
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
    uint64_t qos1_in, qos0_dropped, committed, bad_packets, retried;
    uint64_t slow_closed;   /* connections closed for output over message.egress.buffer.max */
    uint64_t accept_failed; /* connections not accepted (descriptor limit) */
    /* Log messages some consumer had not read, deleted because the store was full by size
     * or disk (drop-oldest), full by storage.count.max (drop-oldest), or past retention. */
    uint64_t dropped_full, dropped_count, dropped_age;
    uint64_t full_waits;            /* commits held because the store was full (reject-new) */
    uint64_t in_qos[4], out_qos[4]; /* messages by QoS (metrics) */
    uint64_t auth_failed;           /* CONNECTs refused for their credentials */
    uint64_t shared_dropped;        /* shared QoS 1/2 messages over a group's queue */
    stats_hist commit;              /* store commits (with their fsync), in seconds */
} hub_counters;

typedef struct commit_job commit_job;

struct hub {
    hub_config *cfg;
    store *st; /* NULL: no durability (tests) */
    int epfd;
    int64_t now_ms;
    int64_t wall_ms;   /* hub_wall_ms(), cached per loop turn too: a message's arrival time
                        * (one clock read per turn, not per message: ~8% of a QoS 0 relay) */
    uint64_t last_seq; /* highest committed and dispatched seq */
    uint64_t next_conn_id;
    uint64_t dispatch_mark;
    conn *conns;
    size_t nconns;
    conn *dirty, *pump;
    conn *closed;  /* closed during this turn, freed at its end */
    map clients;   /* client id -> conn */
    map psessions; /* client id -> psess */
    map retained;  /* topic -> msg */
    trie subs;
    trie offline;      /* subscriptions of persistent sessions whose client is away */
    map shared;        /* "$share/<group>/<filter>" -> shgroup (shared.c) */
    trie shared_subs;  /* the groups' filters (owner: the shgroup) */
    shgroup **shmatch; /* groups matching the message being dispatched */
    size_t nshmatch, capshmatch;
    bool shared_empty;    /* some group has no member left: freed at the next tick */
    size_t shared_queued; /* messages waiting in groups for room in a member's window */
    pending_pub *pend;
    size_t npend, cappend;
    commit_job *job; /* the group commit on the store's writer thread */
    msg_vec wills;   /* wills to publish at the end of the turn */
    struct delayed_will {
        char *client_id;
        msg *m;
        int64_t due_ms; /* wall clock */
    } * delayed;        /* 5.0 wills waiting for their will delay interval */
    size_t ndelayed, capdelayed;
    qos2_rec *q2; /* stored QoS 2 packet ids to write with the next offsets */
    size_t nq2, capq2;
    uint8_t *rbuf; /* shared read buffer */
    size_t rbuf_cap;
    struct {
        conn *c;
        uint8_t qos;
    } * match;
    size_t nmatch, capmatch;
    int64_t next_offsets_ms, next_cleanup_ms, next_tick_ms;
    bool offsets_acked;    /* a persistent session acknowledged a delivery in this turn */
    bool log_acked;        /* a log message was acknowledged in this turn (may free room) */
    bool store_full;       /* the pending batch waits for room; its publishers are paused */
    bool full_logged;      /* "store full" was logged: log when it takes messages again */
    bool resume_any;       /* some connection has resume_read set */
    bool pend_paused;      /* publishers paused while a commit was on the disk (PEND_MAX) */
    bool drop_oldest;      /* storage.policy drop-oldest */
    int64_t full_retry_ms; /* earliest retry of a full store after acknowledgements */
    int64_t next_drop_log_ms;
    uint64_t drops_logged[3]; /* dropped_full, _count, _age when last logged */
    hub_counters ctr;
    size_t out_max; /* message.egress.buffer.max, at least two messages of the max size */
    bool stopping;
    uint64_t random_ids;
};

/* ---- hub (broker.c) ------------------------------------------------------------------- */
/* Initialises a hub on a loaded config and an open store (NULL = memory only). Loads
 * retained messages, persistent sessions and publishes wills left by a crash. */
int hub_init(hub *h, hub_config *cfg, store *st, char *err, size_t errlen);
/* Publishes the wills of connected clients, commits and flushes what is pending, frees all. */
void hub_shutdown(hub *h);
/* Work at the end of each loop turn: group commit, catch-up, flush output, free closed. */
void hub_turn_end(hub *h);
/* Periodic work (keep-alive, retries, offsets, cleanup); call often (every ~100 ms). */
void hub_tick(hub *h);
/* Wall clock, unix ms. */
int64_t hub_wall_ms(void);

/* Publishes a message from a client or a will (routes, retain, QoS 1 commit). pub_conn and
 * pid identify the PUBACK to send after commit (NULL/0: none). Takes a reference. */
int hub_publish(hub *h, msg *m, conn *pub_conn, uint16_t pid);
/* Commits pending QoS 1 messages now (one store_append), dispatches them, sends PUBACKs.
 * Only messages a consumer may read from the log are written: a matching QoS 1
 * subscription of a connected client or any subscription of an away persistent session. */
void hub_commit(hub *h);
/* Finishes the group commit the store's writer thread did (waiting for it if wait is
 * set): dispatch, PUBACKs, and the next group starts. */
void hub_commit_done(hub *h, bool wait);
/* c is gone: its publishes waiting for a commit get no PUBACK. */
void hub_pend_forget(hub *h, conn *c);
/* The highest seq every consumer (connected client, persistent session) is done with:
 * the log below it may go. */
uint64_t hub_log_done(hub *h);
/* Sends m to every matching subscriber. */
void hub_dispatch(hub *h, msg *m);

/* ---- connections (conn.c) --------------------------------------------------------------- */
/* A new connection on a transport; registers nothing with epoll (the listener does). */
conn *conn_new(hub *h, transport *tr);
/* Feeds received bytes to the session: parses and handles every whole packet. Returns 0,
 * or -1 when the connection was closed (malformed input, protocol violation). */
int conn_feed(conn *c, const uint8_t *d, size_t n);
/* Reads everything available from the transport and feeds it. */
void conn_on_readable(conn *c);
/* Queues c for the end-of-turn flush. */
void conn_mark_dirty(conn *c);
/* Closes c when its output is over message.egress.buffer.max (a client that does not read);
 * returns -1 then, else 0. */
int conn_check_out(conn *c);
/* Writes what is buffered; arms EPOLLOUT when the socket is full. */
void conn_flush(conn *c);
/* Writes what the socket takes now without closing on error (safe in the middle of a
 * dispatch: the end-of-turn flush reports the error). */
void conn_flush_soft(conn *c);
/* Closes: fires the will unless DISCONNECT was received, leaves the session, frees later.
 * A 5.0 client gets a DISCONNECT with a reason code first (one that fits the reason, 0x80
 * otherwise) unless its transport failed or it disconnected itself. */
void conn_close(conn *c, const char *reason);
/* conn_close with the 5.0 reason code rc (0: no DISCONNECT). */
void conn_close_rc(conn *c, uint8_t rc, const char *reason);
/* Appends bytes to the output and queues a flush. 0 or -1 (no memory, or the output went
 * over message.egress.buffer.max: connection closed). */
int conn_send(conn *c, const void *d, size_t n);
/* Frees a closed connection (end of turn). */
void conn_free(conn *c);
/* Stops (or resumes) reading c: a publisher whose QoS 1 messages wait for a full store. */
void conn_pause(conn *c, bool paused);

/* ---- protocol handlers ---------------------------------------------------------------- */
/* Each returns 0, or -1 after closing the connection. */
int handle_connect(conn *c, const bt_mqtt_packet *p);
int handle_publish(conn *c, const bt_mqtt_packet *p);
int handle_puback(conn *c, uint16_t pid); /* handle_publish.c */
/* QoS 2 (handle_qos2.c): PUBREC and PUBCOMP of deliveries, PUBREL of received publishes. */
int handle_pubrec(conn *c, uint16_t pid);
int handle_pubrel(conn *c, uint16_t pid);
int handle_pubcomp(conn *c, uint16_t pid);
int handle_subscribe(conn *c, const bt_mqtt_packet *p);
int handle_unsubscribe(conn *c, const bt_mqtt_packet *p);

/* ---- packets the hub sends (send.c) ---------------------------------------------------- */
/* Each encodes one packet into c's output; 0, or -1 when the connection is closed. */
int send_connack(conn *c, uint8_t code);
int send_puback(conn *c, uint16_t pid);
/* PUBACK, PUBREC, PUBREL or PUBCOMP. */
int send_ack(conn *c, bt_mqtt_type type, uint16_t pid);
int send_suback(conn *c, uint16_t pid, const uint8_t *codes, size_t n);
int send_unsuback(conn *c, uint16_t pid);
/* 5.0: an ack with a reason code and (when the client accepts them) a reason string. */
int send_ack_rc(conn *c, bt_mqtt_type type, uint16_t pid, uint8_t rc, const char *why);
/* 5.0: UNSUBACK with one reason code per filter; CONNACK with properties; DISCONNECT. */
int send_unsuback5(conn *c, uint16_t pid, const uint8_t *codes, size_t n);
int send_connack5(conn *c, bool session_present, uint8_t rc, const bt_mqtt_prop *props, size_t n);
int send_disconnect5(conn *c, uint8_t rc, const char *why);
int send_pingresp(conn *c);
/* A PUBLISH; a large backlog is written at once rather than at the end of the turn. To a
 * 5.0 client it carries the properties of pm (may be NULL) and its remaining expiry. */
int send_publish(conn *c, const char *topic, size_t tlen, const void *payload, size_t plen,
                 uint8_t q, bool retain, bool dup, uint16_t pid, const msg *pm);

/* ---- session delivery (session.c) ------------------------------------------------------- */
/* Delivers m to c at QoS q (already min'd with the subscription); retain is the RETAIN
 * bit to send. Honours the QoS 1/2 window and the QoS 0 buffer. */
void session_deliver(conn *c, msg *m, uint8_t q, bool retain);
/* Pulls QoS 1 messages from the log while the window has room (catch-up mode). */
void session_pump(conn *c);
/* Queues c for session_pump at the end of the turn. */
void session_pump_later(conn *c);
/* Resends unacknowledged QoS 1/2 messages older than the retry interval, with DUP (and
 * the PUBREL of released QoS 2 deliveries). */
void session_retry(conn *c);
/* Sends m again at QoS q (1 or 2) with DUP=1 (an unacknowledged delivery of an earlier
 * connection). */
void session_resend(conn *c, msg *m, uint8_t q);
/* Takes over a released QoS 2 delivery of an earlier connection: sends its PUBREL. */
void session_resume_release(conn *c, uint16_t pid);
/* The in-flight entry of pid that is not yet acknowledged, or NULL. */
outq_entry *session_find(conn *c, uint16_t pid);
/* Marks a delivery acknowledged (its packet id is free again); session_acked() drops it. */
void session_entry_acked(conn *c, outq_entry *e);
/* Drops acknowledged entries from the head of the ring; pulls more in catch-up. */
void session_acked(conn *c);
/* The acknowledged log offset of a session: every seq <= it is done. */
uint64_t session_offset(const conn *c);
/* Adds (0) or replaces (1) a subscription in the session and the trie; -1 when out of
 * memory. opts: 5.0 no-local and retain-as-published; id: 5.0 subscription identifier. */
int session_subscribe(conn *c, const char *filter, uint8_t qos, uint8_t opts, uint32_t id);
/* Removes a subscription; returns 1 when it existed. */
int session_unsubscribe(conn *c, const char *filter);
/* Drops every subscription of c from the trie and frees the list. */
void session_clear_subs(conn *c);

/* Whether c's QoS 1/2 window has room for one more delivery. */
bool session_has_room(const conn *c);
/* Delivers m to c at QoS q for a shared subscription: held in memory, not read back from
 * the log, and marked shared (see shared_redeliver). */
void session_deliver_shared(conn *c, msg *m, uint8_t q);

/* ---- shared subscriptions (shared.c) ------------------------------------------------------ */
/* The filter inside "$share/<group>/<filter>" (f of len bytes), NULL when f is not a valid
 * shared subscription. */
const char *shared_filter(const char *f, size_t len);
/* bt_topic_match for a subscription's filter, shared or not. */
bool shared_match(const char *filter, const char *topic);
/* c joins (or changes its QoS in) the group of name "$share/g/f". 0 or -1 (no memory). */
int shared_join(conn *c, const char *name, uint8_t qos);
/* A persistent member session of the group of name is away (away set: the group, created
 * when missing, keeps it and holds messages for it while no member is connected) or back
 * or gone (cleared). 0 or -1 (no memory). */
int shared_away(hub *h, const char *name, psess *ps, bool away);
/* c leaves the group of name (an empty group is freed by shared_gc). */
void shared_leave(conn *c, const char *name);
/* Sends m to one member of every group whose filter matches it. */
void shared_dispatch(hub *h, msg *m);
/* c is leaving: its unacknowledged shared deliveries go to other members of their groups. */
void shared_redeliver(conn *c);
/* Sends what groups hold to members that have room now (end of a turn). */
void shared_drain(hub *h);
/* Frees the groups left without members (periodic work). */
void shared_gc(hub *h);
/* Frees every group (shutdown). */
void shared_free_all(hub *h);

/* ---- retained messages (retain.c) ------------------------------------------------------- */
/* Stores (payload) or clears (empty payload) the retained message of m's topic. */
void retain_set(hub *h, msg *m);
/* Sends the retained messages that match filter to c with RETAIN=1 at most QoS q. */
void retain_deliver(hub *h, conn *c, const char *filter, uint8_t q);
/* Loads the retained messages from the store. */
int retain_load(hub *h, char *err, size_t errlen);

/* ---- wills (will.c) ------------------------------------------------------------------- */
/* Queues c's will (if any) for publication at the end of the turn and forgets it. */
void will_fire(conn *c);
/* Forgets c's will without publishing it (DISCONNECT). */
void will_discard(conn *c);
/* Publishes the queued wills, and the delayed ones that are due. */
void will_publish_queued(hub *h);
/* A client connected again: its delayed will is dropped when it took its session back, and
 * published now when it started a new one (the old session ended; MQTT 5.0 §3.1.3.2.2). */
void will_cancel_delayed(hub *h, const char *client_id, bool publish);
/* Frees the delayed wills (shutdown: they stay in the store for the next start). */
void will_free_delayed(hub *h);
/* Publishes wills left in the store by a crashed hub, then deletes them. */
int will_recover(hub *h, char *err, size_t errlen);

/* ---- persistent sessions (psession.c) -------------------------------------------------- */
/* Loads persistent sessions and their offsets from the store. */
int psession_load(hub *h, char *err, size_t errlen);
/* Changed offsets of persistent sessions, to write (consumer names are malloc'd). */
typedef struct {
    store_offset *v;
    size_t n, cap;
    size_t nq2;   /* the last nq2 of v are QoS 2 packet id records, */
    qos2_rec *q2; /* from these (taken from the hub: q2_all, the first q2_taken in v) */
    size_t q2_taken, q2_all;
} psession_offsets;
/* Takes the changed offsets of connected persistent sessions and, with away_too, of away
 * ones; they count as written until psession_offsets_done. */
void psession_offsets_take(hub *h, bool away_too, psession_offsets *o);
/* Frees o; when it was not written, its sessions are written at the next flush. */
void psession_offsets_done(hub *h, psession_offsets *o, bool written);
/* Writes changed offsets of persistent sessions (connected ones; away ones too with
 * away_too) in batches. */
void psession_flush_offsets(hub *h, bool away_too);
/* The psess of a client id, created for owner when owner is not NULL (offset = last seq). */
psess *psession_get(hub *h, const char *client_id, const char *owner);
/* Keeps c's unacknowledged deliveries that are not in the log, for its next connection. */
void psession_hold_unacked(psess *ps, const conn *c);
/* Keeps c's QoS 2 packet ids (received, released) for its next connection. */
void psession_keep_qos2(psess *ps, conn *c);
/* Gives c the QoS 2 packet ids its session kept: PUBREL goes out again for the released. */
void psession_take_qos2(psess *ps, conn *c);
/* Marks ps online on c, or offline when c is NULL (its subscriptions then count, in
 * h->offline, for which QoS 1 messages the log must keep). */
void psession_set_online(hub *h, psess *ps, conn *c);
/* Lowers *min to the offset of every away persistent session below it. */
void psession_min_offset(hub *h, uint64_t *min);
/* Drops what psession_hold_unacked kept. */
void psession_release_held(psess *ps);
/* Records that QoS 2 packet id pid of c's persistent session is set (on) or cleared:
 * kind 'i' (received, waiting for PUBREL) or 'o' (released, waiting for PUBCOMP). Written
 * with the next offsets (in the commit of the turn, or at its end). A clean session keeps
 * nothing. Returns true when a record was queued (the caller waits for it to be written). */
bool psession_qos2_record(conn *c, char kind, uint16_t pid, bool on);
/* c completed the delivery of log seq (PUBACK, PUBREC): when an earlier one is still
 * pending, seq is kept in its persistent session's done set (and stored with the offsets)
 * so that reading the log again skips it. */
void psession_seq_done(conn *c, uint64_t seq);
/* Whether seq is in the done set of ps (NULL: none). */
bool psession_seq_is_done(const psess *ps, uint64_t seq);
/* Loads the stored QoS 2 packet ids into their sessions (after psession_load). */
int psession_qos2_load(hub *h, char *err, size_t errlen);

/* ---- packet id sets (handle_qos2.c) ------------------------------------------------------ */
bool pid_set_has(const pid_set *s, uint16_t pid);
/* Adds pid (no duplicate); -1 when out of memory. */
int pid_set_add(pid_set *s, uint16_t pid);
/* Removes pid; true when it was there. */
bool pid_set_del(pid_set *s, uint16_t pid);
void pid_set_free(pid_set *s);
/* Writes c's subscriptions to its persistent session, in memory and in the store. */
void psession_save_subs(conn *c);
/* Sets (or clears, 0) the time an away session ends, in memory and in the store. */
void psession_set_expiry(hub *h, psess *ps, const char *client_id, int64_t at);
/* Drops a persistent session (clean session connect). */
void psession_drop(hub *h, const char *client_id);
/* Frees every psess. */
void psession_free_all(hub *h);

/* ---- counters (stats.c) --------------------------------------------------------------- */
/* Logs the counters as one line (status.logging). */
void stats_log(hub *h);
/* A monotonic clock in microseconds, for stats_commit_done. */
int64_t stats_clock_us(void);
/* Counts one store commit that began at t0 (stats_clock_us). */
void stats_commit_done(hub *h, int64_t t0);

#define STATS_TOP 10       /* persistent sessions listed by queue length */
#define STATS_LISTENERS 16 /* listeners counted one by one; the others add to the last */
typedef struct {
    char *client_id;
    uint64_t queued;
} stats_session;
/* What the reporter sends: the counters and, taken less often, figures that need a walk
 * over connections and sessions. */
typedef struct {
    hub_counters ctr;
    size_t conns, subs, retained, sessions;
    size_t by_listener[STATS_LISTENERS];
    uint64_t queued;   /* log messages some away persistent session has not acknowledged */
    int64_t oldest_ms; /* time of the oldest of them, 0 when none */
    stats_session top[STATS_TOP];
    size_t ntop;
} stats_snapshot;
/* Copies the counters; with detail also walks connections and sessions (loop thread). */
void stats_take(hub *h, stats_snapshot *s, bool detail);
/* A copy of src (its client ids duplicated; one that cannot be is left out). */
void stats_snapshot_copy(stats_snapshot *dst, const stats_snapshot *src);
/* Frees what a snapshot holds. */
void stats_snapshot_free(stats_snapshot *s);
/* The "metrics" families of the report (metrics.h of the master describes the format). */
json_t *stats_metrics_json(const stats_snapshot *s, const hub_config *cfg);
/* Adds what the files say: the store's size on disk and the expiry of the TLS certificate
 * (reporter thread; out may be NULL). */
void stats_files_json(json_t *out, const hub_config *cfg);

#endif
