/* Private to mqtt_client*.c: the client's state and the calls between its parts.
 *
 *   mqtt_client_config.c    settings schema, address parsing, topic checks
 *   mqtt_client_transport.c sockets, TLS (OpenSSL), WebSocket framing, raw reads/writes
 *   mqtt_client_session.c   outgoing queue + in-flight window, inbound acks, packets
 *   mqtt_client_loop.c      the client's thread: poll, connect steps, keepalive, reconnect
 *   mqtt_client_api.c       the public calls
 *
 * Locking: `mu` guards every field marked [mu]; the thread owns the fields marked [io] and
 * reads the immutable ones freely. Callbacks run on the thread without `mu` held. */
#ifndef BAETYL_MQTT_CLIENT_INTERNAL_H
#define BAETYL_MQTT_CLIENT_INTERNAL_H

#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "baetyl/ossl.h"

#include "baetyl/buf.h"
#include "baetyl/mqtt_client.h"
#include "baetyl/util.h"
#include "baetyl/mqtt_codec.h"
#include "baetyl/ws.h"

#define MC_BACKOFF_MIN_MS 500
#define MC_MAX_WINDOW 60000    /* QoS 1 packet ids 1..60000 ... */
#define MC_CTL_PID_FIRST 60001 /* ... SUBSCRIBE/UNSUBSCRIBE ids 60001..65535 */
#define MC_READ_CHUNK 65536
#define MC_READ_TURN (1u << 20)  /* bytes read per loop turn before writes get a go */
#define MC_OUT_HIGH (256u << 10) /* stop moving queued publishes out above this */
#define MC_STOP_FLUSH_MS 2000
#define MC_IDS_BYTES (65536 / 8) /* one bitmap over all packet ids */

/* ---- address ------------------------------------------------------------------------ */

typedef struct {
    bool tls, ws;
    char scheme[8];
    char host[256]; /* without [] for IPv6 */
    char port[8];
    char hostport[272]; /* Host header for ws: host[:port] as written */
    char path[256];     /* ws only */
} mc_addr;

/* Parses scheme://host[:port][/path] (IPv6 as [::1]); 0 or -1 with err. */
int mc_parse_address(const char *url, mc_addr *a, char *err, size_t errlen);

/* ---- outgoing publishes ------------------------------------------------------------ */

typedef struct mc_msg {
    struct mc_msg *prev, *next;
    void *tag;
    uint16_t pid;
    uint8_t qos;
    bool sent;     /* written on some connection: DUP on a resend */
    bool inflight; /* in the inflight list (else in the queue) */
    bool released; /* QoS 2: PUBREC came, PUBREL sent (again after a reconnect) */
    size_t len;
    uint8_t data[]; /* the encoded PUBLISH */
} mc_msg;

typedef struct {
    mc_msg *head, *tail;
} mc_list;

void mc_list_push(mc_list *l, mc_msg *m);
void mc_list_unlink(mc_list *l, mc_msg *m);
/* Moves all of src before dst's head (src keeps its order), src becomes empty. */
void mc_list_prepend_all(mc_list *dst, mc_list *src);

/* A SUBSCRIBE/UNSUBSCRIBE asked through the API while connected. */
typedef struct mc_ctl {
    struct mc_ctl *next;
    bool unsub;
    int qos;
    char topic[];
} mc_ctl;

/* A SUBSCRIBE sent and not answered: its filters, for SUBACK checks. */
typedef struct mc_subwait {
    struct mc_subwait *next;
    uint16_t pid;
    size_t n;
    char **topics;
} mc_subwait;

typedef enum {
    MC_IDLE = 0, /* waiting for the next attempt */
    MC_TCP,      /* non-blocking connect in progress */
    MC_TLS,      /* TLS handshake */
    MC_WS,       /* WebSocket upgrade */
    MC_MQTT,     /* CONNECT sent, waiting for CONNACK */
    MC_UP,       /* connected */
} mc_state;

struct bt_mqtt_client {
    /* immutable after create */
    bt_mqtt_client_config cfg;
    bt_mqtt_client_options opt;
    char *will_topic;
    uint8_t *will_payload;
    mc_addr addr;
    SSL_CTX *ssl_ctx;
    uint16_t keepalive_s;
    int64_t keepalive_ms, ping_timeout_ms;
    size_t window; /* QoS 1 packet ids available */

    pthread_mutex_t mu;
    pthread_cond_t cond; /* room in the queue, connection state */
    int wake_fd;
    pthread_t thread;
    bool started;
    bool free_on_exit; /* [io] destroyed from a callback: the thread frees the client */

    /* [mu] */
    bool wake_pending;
    bool direct; /* the thread waits in poll, nothing to write, on plain TCP: a publisher may
                  * write its PUBLISH to the socket itself (mc_tr_send_direct) */
    uint64_t direct_sent; /* publishes written by their callers (mc_tr_send_direct) */
    bool stop_req;
    bool stopped; /* no new work accepted */
    bool connected;
    bool thread_done;
    size_t pending;      /* publishes held: queue + inflight */
    mc_list queue;       /* not written on this connection */
    mc_list inflight;    /* QoS 1/2 written, waiting for PUBACK (PUBREC, PUBCOMP) */
    size_t ninflight;    /* its length */
    uint16_t send_max;   /* the broker's receive maximum (5.0), 65535 without one */
    mc_msg **slots;      /* window entries: slots[pid - 1] */
    uint16_t *free_pids; /* stack of unused QoS 1 ids */
    size_t nfree;
    uint32_t *acks; /* acks to send: type << 16 | packet id (PUBACK, PUBREC) */
    size_t nacks, acks_cap;
    uint8_t *unacked;      /* bitmap of inbound QoS 1/2 ids delivered and not acked, then
                            * (MC_IDS_BYTES further) of those at QoS 2, then of the QoS 2
                            * ids PUBRECed and waiting for PUBREL (kept across reconnects:
                            * a resend of one is not delivered again) */
    uint64_t conn_gen;     /* connections accepted so far: the high bits of ack tokens */
    uint64_t resends_held; /* DUP resends of unacked ids, not delivered again */
    mc_ctl *ctl_head, *ctl_tail;
    bt_mqtt_topic_info *subs; /* the wanted subscriptions */
    size_t nsubs;

    /* [io] */
    mc_state state;
    int fd;
    SSL *ssl;
    bt_ws ws;
    bool tls_want_write; /* the TLS layer waits for POLLOUT during a read */
    struct addrinfo *ai, *ai_next;
    int64_t deadline; /* of the connect attempt */
    int64_t next_attempt;
    int64_t backoff_ms;
    int64_t last_send, last_recv, ping_sent;
    bt_buf in;    /* MQTT bytes received */
    bt_buf out;   /* bytes for the socket (or TLS) */
    bt_buf wsout; /* ws: MQTT bytes waiting to be framed into out */
    mc_subwait *subwait;
    uint16_t next_ctl_pid;
    char *topic_buf; /* NUL-terminated topic for on_message */
    size_t topic_cap;
    char reason[256]; /* why the current connection ended */
};

/* ---- config (mqtt_client_config.c) ------------------------------------------------- */

/* Checks a settings struct beyond its schema (address, clientid vs cleansession). */
int mc_check_config(const bt_mqtt_client_config *cfg, char *err, size_t errlen);

/* ---- transport (mqtt_client_transport.c) -------------------------------------------- */

/* Builds the SSL_CTX for ssl:// and wss:// (CA, client cert/key); 0 or -1 with err. */
int mc_tls_ctx(bt_mqtt_client *c, char *err, size_t errlen);
/* Starts a connection attempt: resolve and begin a non-blocking connect. 0 = started
 * (state MC_TCP), -1 = failed with c->reason. */
int mc_tr_connect(bt_mqtt_client *c);
/* The socket is writable while MC_TCP: 0 = connected and the next step started; -1 failed. */
int mc_tr_connected(bt_mqtt_client *c);
/* Continues the TLS handshake: 1 done, 0 in progress, -1 failed (c->reason). */
int mc_tr_tls_step(bt_mqtt_client *c);
/* Starts the WebSocket upgrade (request queued in out). 0 or -1. */
int mc_tr_ws_start(bt_mqtt_client *c);
/* Reads what is there (TLS decrypted, ws unframed) into c->in. Returns 1 when bytes
 * arrived, 0 when none, -1 when the link ended (c->reason). In MC_WS it runs the upgrade
 * and returns 2 once it is done. */
int mc_tr_read(bt_mqtt_client *c);
/* Writes c->out (after framing wsout); 0 = ok (maybe partly), -1 = the link failed. */
int mc_tr_flush(bt_mqtt_client *c);
/* Whether the link may take direct writes: up, plain TCP (no TLS, whose SSL object is the
 * thread's alone, nor WebSocket framing) and nothing waiting in the output ([io]). */
bool mc_tr_direct_ok(const bt_mqtt_client *c);
/* Writes the n bytes of one packet to the socket from a publisher's thread ([mu] held and
 * c->direct): what the socket does not take goes to the output, for the thread (woken) to
 * write, and c->direct ends so later packets queue behind it. false when nothing was
 * written (the socket is full or failed): the caller queues the packet as usual. */
bool mc_tr_send_direct(bt_mqtt_client *c, const uint8_t *data, size_t n);
/* True when bytes wait in out (or wsout). */
bool mc_tr_has_output(const bt_mqtt_client *c);
/* Buffer MQTT packets go to: wsout for ws, else out. */
bt_buf *mc_tr_mqtt_out(bt_mqtt_client *c);
/* True when TLS holds decrypted bytes not read yet. */
bool mc_tr_pending(const bt_mqtt_client *c);
/* Closes the socket and TLS; buffers are emptied. */
void mc_tr_close(bt_mqtt_client *c);
/* Sets c->reason (printf). */
void mc_reason(bt_mqtt_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- session (mqtt_client_session.c) ------------------------------------------------ */

/* Encodes CONNECT into the MQTT output; 0 or -1. */
int mc_send_connect(bt_mqtt_client *c);
/* Moves acks, SUBSCRIBE requests and queued publishes into the output (MC_UP only).
 * Completed QoS 0 publishes are returned in *done for the completion callbacks. Returns
 * true when publishes stay queued because the output is full: the caller must come back
 * without waiting for a wakeup, which publishers will not send again. */
bool mc_collect(bt_mqtt_client *c, mc_list *done);
/* Decodes and handles every whole packet in c->in: 0, or -1 when the link must end
 * (c->reason), -2 when the client must stop (fatal; c->reason). */
int mc_handle_input(bt_mqtt_client *c);
/* After a connection ended: inflight back to the queue (DUP), inbound acks forgotten. */
void mc_session_reset(bt_mqtt_client *c);
/* Calls on_publish_complete for each message of l with status and frees them. */
void mc_complete(bt_mqtt_client *c, mc_list *l, int status);
/* Appends a PINGREQ or DISCONNECT. */
int mc_send_empty(bt_mqtt_client *c, bt_mqtt_type t);
/* Frees the SUBACK waits. */
void mc_subwait_clear(bt_mqtt_client *c);

/* The ack token of inbound packet id pid on connection number gen. */
static inline bt_mqtt_ack_token mc_token(uint64_t gen, uint16_t pid)
{
    return (bt_mqtt_ack_token){(gen << 16) | pid};
}

/* ---- loop (mqtt_client_loop.c) ----------------------------------------------------- */

/* The client's thread. */
void *mc_thread(void *arg);
/* The client whose thread this is (NULL on other threads). */
extern __thread bt_mqtt_client *mc_current;
/* Wakes the thread ([mu] held). */
void mc_wake_locked(bt_mqtt_client *c);
/* Frees everything (the thread has ended or never ran); held publishes are cancelled. */
void mc_free_client(bt_mqtt_client *c);

#endif
