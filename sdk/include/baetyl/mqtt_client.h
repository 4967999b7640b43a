/* The SDK's MQTT 3.1.1 / 5.0 client: what every module uses to talk to the hub (and remote-mqtt to
 * remote brokers). Why our own: paho.mqtt.c and libmosquitto acknowledge an incoming QoS 1
 * message before the application sees it; Baetyl acknowledges only after the message was
 * passed on (SPEC §12-13). Here an inbound QoS 1 message is PUBACKed when the application
 * calls bt_mqtt_client_ack() with the message's token (or at once after on_message with
 * auto_ack). A token names one delivery on one connection: after a reconnect the old token
 * acknowledges nothing (the broker sends the message again, with a new token), so a late
 * ack can never acknowledge a different message that reuses the packet id. While the
 * application holds a message, a resend of it on the same connection (DUP, the broker's
 * retry interval) is not delivered again: the pending ack covers both.
 *
 *   bt_mqtt_client_options o = {.on_message = on_msg, .userdata = me};
 *   bt_mqtt_client *c = bt_mqtt_client_create(&cfg.hub, &o, err, sizeof err);
 *   bt_mqtt_client_start(c, err, sizeof err);
 *   bt_mqtt_client_publish(c, "t", "hi", 2, 1, false, NULL, err, sizeof err);
 *   ...
 *   bt_mqtt_client_destroy(c);
 *
 * Addresses: tcp://host[:1883], ssl://host[:8883], ws://host[:80][/path], wss://host[:443][/path]
 * (path default /mqtt). TLS verifies the server against `ca` (else the system store) and
 * its name against the host unless `insecure`; SNI is sent for host names.
 *
 * One thread per client owns the socket (poll + an eventfd to wake it; while it sleeps with
 * nothing to write, a publish may be written by its caller); every callback runs
 * on that thread, one at a time. Every function may be called from any thread, callbacks
 * included. The client connects in the background and reconnects after any failure,
 * waiting 500 ms, then twice as long each time up to `interval` (up to `reconnectinterval`
 * while it holds publishes to send); after a reconnect it
 * subscribes again to every subscription and resends unacknowledged QoS 1 publishes with
 * DUP set. Keepalive: a PINGREQ after `keepalive` without traffic either way; no answer
 * within min(keepalive/2, timeout) closes the link (and the client reconnects). Host names
 * are resolved on the client's thread (getaddrinfo blocks it while it runs).
 *
 * Outgoing publishes the client holds (queued, or sent with QoS 1 and not yet PUBACKed) are
 * bounded by `buffersize`: one more is refused with BT_MQTT_EFULL. QoS 1 packet ids come from
 * a window of min(buffersize, 60000).
 *
 * QoS 2 (any protocol): an outgoing message completes at PUBCOMP; after a reconnect one whose
 * PUBREC came is released again (PUBREL), the others are resent. An inbound one is PUBRECed
 * when the application acks it (as a QoS 1 PUBACK); its PUBREL is answered with PUBCOMP,
 * and a resend of an id PUBRECed and not yet released is not delivered again.
 * MQTT 5.0 (`protocol: 5`): no properties are sent but a session expiry interval of "never"
 * when cleansession is false (3.1.1's persistent session); the broker's receive maximum
 * bounds the publishes in flight; a 5.0 reason code >= 0x80 in PUBACK or PUBREC completes
 * the publish with BT_MQTT_EREFUSED; a DISCONNECT from the broker ends the connection with
 * its reason. Properties received are ignored. */
#ifndef BAETYL_MQTT_CLIENT_H
#define BAETYL_MQTT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "baetyl/config.h"

/* Return codes of the calls below (and statuses of on_publish_complete). */
#define BT_MQTT_OK 0
#define BT_MQTT_EINVAL (-1)     /* bad argument: topic, qos, size, unknown packet id */
#define BT_MQTT_EFULL (-2)      /* buffersize publishes are already held */
#define BT_MQTT_ESTOPPED (-3)   /* the client was stopped (by the caller or a fatal error) */
#define BT_MQTT_ECANCELLED (-4) /* completion status: dropped at stop, never acknowledged */
#define BT_MQTT_ENOMEM (-5)     /* out of memory */
#define BT_MQTT_EREFUSED (-6)   /* completion status: the broker refused it (5.0 reason code) */

/* One subscription, or a publish target: `{topic, qos}` in YAML. */
typedef struct {
    char *topic;
    long qos; /* 0 or 1 in settings; 0..2 through the calls */
} bt_mqtt_topic_info;

/* Hub client settings, SPEC §17 (every module's `hub:` and remote-mqtt's remotes). */
typedef struct {
    char *address; /* required: tcp://, ssl://, ws://, wss:// */
    long protocol; /* 4 (MQTT 3.1.1, default; 0 in code means it), 5 (MQTT 5.0) or 3 (3.1) */
    char *username;
    char *password;
    char *ca;                  /* PEM file of the CA that signed the server certificate */
    char *cert;                /* PEM client certificate (chain) ... */
    char *key;                 /* ... and its private key, for two-way TLS */
    bool insecure;             /* do not check the server's name against its certificate */
    char *clientid;            /* required when cleansession is false */
    bool cleansession;         /* false */
    int64_t timeout;           /* ms, 30s: connect + handshake + CONNACK; ping answer bound */
    int64_t interval;          /* ms, 1m: longest wait between reconnect attempts */
    int64_t reconnectinterval; /* ms, 1s: longest wait while publishes are held (a link that
                                * returns after a long outage drains at once, not after
                                * `interval`); SPEC §19's interval.min */
    int64_t keepalive;         /* ms, 10m (0 = no keepalive) */
    long buffersize;           /* 10: outgoing publishes held at most */
    bool validatesubs;         /* false; true: a refused subscription stops the client */
    int64_t message_max;       /* message.length.max: the broker's limit on a packet's remaining
                             * length (the hub's own setting; 0 = unknown: not checked) */
    bt_cfg_list subscriptions; /* of bt_mqtt_topic_info, subscribed at every connect */
} bt_mqtt_client_config;

/* Schema of bt_mqtt_client_config, for BT_CFG_STRUCT (`hub:`) or BT_CFG_INLINE. */
extern const bt_cfg_schema bt_mqtt_client_schema;
/* Schema of bt_mqtt_topic_info (topic required and a valid filter; qos 0..1, default 0). */
extern const bt_cfg_schema bt_mqtt_topic_schema;

typedef struct bt_mqtt_client bt_mqtt_client;

/* What acknowledges one inbound QoS 1 (or 2) delivery: copy it, keep it as long as needed, pass it
 * to bt_mqtt_client_ack(). Opaque; zero (`{0}`) acknowledges nothing. */
typedef struct {
    uint64_t v;
} bt_mqtt_ack_token;

/* An inbound PUBLISH, valid during on_message only (the token may be kept). */
typedef struct {
    const char *topic;      /* NUL-terminated */
    const uint8_t *payload; /* payload_len bytes, not NUL-terminated */
    size_t payload_len;
    uint8_t qos;
    bool retain;
    bool dup;
    uint16_t packet_id;    /* QoS 1/2: the broker's id (logs, FunctionMessage.ID); 0 for QoS 0 */
    bt_mqtt_ack_token ack; /* QoS 1/2 without auto_ack: for bt_mqtt_client_ack(); else {0} */
} bt_mqtt_message;

/* Callbacks (any may be NULL) and options that are not part of the YAML settings. */
typedef struct {
    /* A message arrived. Without auto_ack a QoS 1 message stays unacknowledged until
     * bt_mqtt_client_ack(m->ack) (from any thread, now or later). */
    void (*on_message)(bt_mqtt_client *c, const bt_mqtt_message *m, void *userdata);
    /* A publish is done: QoS 1 PUBACKed, QoS 2 PUBCOMPed, QoS 0 written to the connection's
     * output (status BT_MQTT_OK), refused by a 5.0 broker (BT_MQTT_EREFUSED), or dropped at
     * stop (BT_MQTT_ECANCELLED). tag is the caller's. */
    void (*on_publish_complete)(bt_mqtt_client *c, void *tag, int status, void *userdata);
    /* The broker accepted a connection (CONNACK 0); subscriptions are being sent. */
    void (*on_connected)(bt_mqtt_client *c, bool session_present, void *userdata);
    /* An established connection ended; the client reconnects by itself. */
    void (*on_connection_lost)(bt_mqtt_client *c, const char *reason, void *userdata);
    /* A fatal error (validatesubs and a refused subscription): the client has stopped. */
    void (*on_error)(bt_mqtt_client *c, const char *reason, void *userdata);
    void *userdata;
    bool auto_ack; /* PUBACK inbound QoS 1 right after on_message returns */
    /* on_publish_complete only for publishes with a tag: a QoS 0 one without may then be
     * written to the socket by the publishing thread itself (see bt_mqtt_client_publish) */
    bool complete_tagged_only;
    const char *will_topic; /* NULL: no will */
    const void *will_payload;
    size_t will_len;
    int will_qos; /* 0 or 1 */
    bool will_retain;
    int protocol_level; /* 0: the setting `protocol`; else 3 (3.1), 4 (3.1.1) or 5 (5.0) */
    size_t max_packet;  /* largest inbound packet in bytes (0 = the protocol limit) */
} bt_mqtt_client_options;

/* Checks cfg and opt (NULL = defaults) and builds a client (copies everything; TLS files are
 * loaded now, so a bad certificate is reported here). Not connected until start.
 * Returns NULL with err on a bad setting. */
bt_mqtt_client *bt_mqtt_client_create(const bt_mqtt_client_config *cfg,
                                      const bt_mqtt_client_options *opt, char *err, size_t errlen);
/* Starts the client's thread, which connects (and reconnects) in the background.
 * Returns 0, or -1 with err (already started, no thread). */
int bt_mqtt_client_start(bt_mqtt_client *c, char *err, size_t errlen);
/* Asks the client to stop without waiting (safe in callbacks): it flushes what it can,
 * sends DISCONNECT and cancels what is still held. Later calls get BT_MQTT_ESTOPPED. */
void bt_mqtt_client_stop(bt_mqtt_client *c);
/* Stops (as above, waiting at most min(timeout, 2s) for the flush), joins the thread and
 * frees the client. NULL is a no-op. Called in one of the client's callbacks it returns at
 * once, no callback runs after it, and the client's thread frees the client when it ends. */
void bt_mqtt_client_destroy(bt_mqtt_client *c);

/* Queues a PUBLISH (qos 0, 1 or 2) of payload[0..len) to topic (a name: no wildcards).
 * On a plain TCP link (tcp://) whose thread sleeps with nothing to write and nothing asked
 * earlier still waiting, the calling thread writes it to the socket itself, sparing the
 * thread's wake-up (not for a QoS 0 one whose on_publish_complete is due: that callback runs
 * on the client's thread); either way packets leave in the order of the calls.
 * Returns BT_MQTT_OK, BT_MQTT_EFULL, BT_MQTT_ESTOPPED, BT_MQTT_EINVAL or BT_MQTT_ENOMEM,
 * with err for the errors. on_publish_complete gets tag once the call returned OK. A
 * message over message.length.max is refused (EINVAL): a broker would close the connection
 * for it, and a QoS 1 one would be resent, and refused, after every reconnect. */
int bt_mqtt_client_publish(bt_mqtt_client *c, const char *topic, const void *payload, size_t len,
                           int qos, bool retain, void *tag, char *err, size_t errlen);
/* bt_mqtt_client_publish that waits up to timeout_ms (-1 = forever) for room instead of
 * returning BT_MQTT_EFULL at once. Called in a callback it does not wait. */
int bt_mqtt_client_publish_wait(bt_mqtt_client *c, const char *topic, const void *payload,
                                size_t len, int qos, bool retain, void *tag, int64_t timeout_ms,
                                char *err, size_t errlen);
/* The largest payload a PUBLISH to topic at qos may carry under message.length.max
 * (SIZE_MAX when no limit is set; 0 when not even the topic fits). */
size_t bt_mqtt_client_payload_max(bt_mqtt_client *c, const char *topic, int qos);
/* Acknowledges the inbound QoS 1 or 2 delivery of token (the PUBACK or PUBREC goes out from
 * the client's thread). BT_MQTT_EINVAL, and nothing sent, when that delivery waits no more: acked
 * already, auto_ack, a zero token, or a connection that has since ended (the broker of a
 * persistent session sends the message again, and that copy's token acknowledges it). */
int bt_mqtt_client_ack(bt_mqtt_client *c, bt_mqtt_ack_token token);
/* Adds (or changes the qos of) a subscription, sent now when connected and at every
 * reconnect. Returns 0 or BT_MQTT_EINVAL/ESTOPPED/ENOMEM with err. */
int bt_mqtt_client_subscribe(bt_mqtt_client *c, const char *topic, int qos, char *err,
                             size_t errlen);
/* Removes a subscription (UNSUBSCRIBE when connected). Unknown topic: BT_MQTT_EINVAL. */
int bt_mqtt_client_unsubscribe(bt_mqtt_client *c, const char *topic, char *err, size_t errlen);

/* True while a connection is up (CONNACK accepted and not lost). */
bool bt_mqtt_client_connected(bt_mqtt_client *c);
/* Waits until connected: 0, or -1 after timeout_ms (-1 = forever) or when stopped. */
int bt_mqtt_client_wait_connected(bt_mqtt_client *c, int64_t timeout_ms);
/* Outgoing publishes held now (queued or awaiting PUBACK). */
size_t bt_mqtt_client_pending(bt_mqtt_client *c);
/* Resends (DUP) of messages the application held unacknowledged, not delivered again. */
uint64_t bt_mqtt_client_resends_held(bt_mqtt_client *c);
/* Text of a BT_MQTT_* code ("queue full"). */
const char *bt_mqtt_strerror(int code);

/* True when s is a valid MQTT topic name (1..65535 bytes of UTF-8 without U+0000, no + or
 * #). The client checks MQTT's rules only: hubs add their own (topic.h). */
bool bt_mqtt_client_valid_name(const char *s);
/* True when s is a valid MQTT topic filter ('+' a whole level, '#' a whole last level). */
bool bt_mqtt_client_valid_filter(const char *s);

#endif
