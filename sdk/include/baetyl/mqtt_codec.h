/* MQTT 3.1 / 3.1.1 packets to and from bytes, shared by the hub and the client.
 *
 * Decoding is incremental and zero-copy: bt_mqtt_decode() looks at the bytes received so
 * far and either needs more, yields one packet whose strings and payload are views into the
 * caller's buffer (valid while that buffer is), or rejects the input with a reason. Every
 * rule of the wire format is checked (flags, lengths, QoS, packet ids, UTF-8 of strings);
 * the meaning of topics (wildcards, levels) is left to topic.h. Encoding writes into a
 * caller's buffer and never allocates. */
#ifndef BAETYL_MQTT_CODEC_H
#define BAETYL_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Largest remaining length the 4-byte variable length can carry (MQTT 3.1.1 §2.2.3). */
#define BT_MQTT_MAX_REMAINING 268435455u
/* Largest fixed header: one type byte and four length bytes. */
#define BT_MQTT_MAX_HEADER 5u
/* Largest whole packet. */
#define BT_MQTT_MAX_PACKET (BT_MQTT_MAX_REMAINING + BT_MQTT_MAX_HEADER)

/* Control packet types (the high nibble of the first byte). */
typedef enum {
    BT_MQTT_CONNECT = 1,
    BT_MQTT_CONNACK = 2,
    BT_MQTT_PUBLISH = 3,
    BT_MQTT_PUBACK = 4,
    BT_MQTT_PUBREC = 5,
    BT_MQTT_PUBREL = 6,
    BT_MQTT_PUBCOMP = 7,
    BT_MQTT_SUBSCRIBE = 8,
    BT_MQTT_SUBACK = 9,
    BT_MQTT_UNSUBSCRIBE = 10,
    BT_MQTT_UNSUBACK = 11,
    BT_MQTT_PINGREQ = 12,
    BT_MQTT_PINGRESP = 13,
    BT_MQTT_DISCONNECT = 14,
} bt_mqtt_type;

/* CONNACK return codes (MQTT 3.1.1 §3.2.2.3). */
enum {
    BT_MQTT_CONNACK_ACCEPTED = 0,
    BT_MQTT_CONNACK_BAD_PROTOCOL = 1,
    BT_MQTT_CONNACK_BAD_CLIENT_ID = 2,
    BT_MQTT_CONNACK_UNAVAILABLE = 3,
    BT_MQTT_CONNACK_BAD_CREDENTIALS = 4,
    BT_MQTT_CONNACK_NOT_AUTHORIZED = 5,
};

/* SUBACK return code for a refused filter. */
#define BT_MQTT_SUBACK_FAILURE 0x80

/* A UTF-8 string: a view, not NUL-terminated. */
typedef struct {
    const char *ptr;
    size_t len;
} bt_mqtt_str;

/* Binary data (payloads, passwords): a view. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} bt_mqtt_bin;

/* CONNECT. The protocol name follows from the level: 3 is "MQIsdp" (3.1), 4 is "MQTT". */
typedef struct {
    uint8_t protocol_level;
    bool clean_session;
    uint16_t keepalive;
    bt_mqtt_str client_id;
    bool will_flag;
    uint8_t will_qos;
    bool will_retain;
    bt_mqtt_str will_topic;
    bt_mqtt_bin will_payload;
    bool has_username;
    bt_mqtt_str username;
    bool has_password;
    bt_mqtt_bin password;
} bt_mqtt_connect;

/* CONNACK. */
typedef struct {
    bool session_present;
    uint8_t return_code;
} bt_mqtt_connack;

/* PUBLISH. packet_id is 0 for QoS 0 (it is not on the wire then). */
typedef struct {
    uint8_t qos;
    bool retain;
    bool dup;
    uint16_t packet_id;
    bt_mqtt_str topic;
    bt_mqtt_bin payload;
} bt_mqtt_publish;

/* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: only a packet id. */
typedef struct {
    uint16_t packet_id;
} bt_mqtt_ack;

/* One SUBSCRIBE entry (qos unused for UNSUBSCRIBE), for building packets to encode. */
typedef struct {
    bt_mqtt_str topic;
    uint8_t qos;
} bt_mqtt_sub_entry;

/* SUBSCRIBE / UNSUBSCRIBE. The list is either `raw` (the wire bytes of the entries, as
 * decoded; already validated) or, when `entries` is not NULL, `count` entries given by a
 * caller who builds a packet. Read it with bt_mqtt_sub_iter_init / bt_mqtt_sub_next. */
typedef struct {
    uint16_t packet_id;
    size_t count;
    bt_mqtt_bin raw;
    const bt_mqtt_sub_entry *entries;
} bt_mqtt_sub_list;

/* SUBACK: one return code per filter (0, 1, 2 or 0x80). */
typedef struct {
    uint16_t packet_id;
    const uint8_t *codes;
    size_t count;
} bt_mqtt_suback;

/* One control packet; `type` says which member of the union is meaningful. PINGREQ,
 * PINGRESP and DISCONNECT have no fields. */
typedef struct {
    bt_mqtt_type type;
    union {
        bt_mqtt_connect connect;
        bt_mqtt_connack connack;
        bt_mqtt_publish publish;
        bt_mqtt_ack ack;              /* PUBACK PUBREC PUBREL PUBCOMP UNSUBACK */
        bt_mqtt_sub_list subscribe;   /* SUBSCRIBE */
        bt_mqtt_sub_list unsubscribe; /* UNSUBSCRIBE (same layout as subscribe) */
        bt_mqtt_suback suback;
    };
} bt_mqtt_packet;

/* Walks the list of a SUBSCRIBE, UNSUBSCRIBE or SUBACK without allocating. */
typedef struct {
    bt_mqtt_type type;
    const uint8_t *pos, *end;       /* raw wire list */
    const bt_mqtt_sub_entry *entry; /* or caller-given entries */
    size_t left;
} bt_mqtt_sub_iter;

/* ---- decoding ------------------------------------------------------------------------ */

/* Reads the fixed header at buf[0..len): 1 = complete, *total = whole packet size; 0 = need
 * more bytes; -1 = bad type/flags, a length over 4 bytes, or total > max_packet (0 = only
 * the protocol limit), reason in err. Fires as soon as the header is in, before the body. */
int bt_mqtt_frame_len(const uint8_t *buf, size_t len, size_t max_packet, size_t *total, char *err,
                      size_t errlen);

/* Decodes one packet from buf[0..len): 1 = decoded, *consumed = its size, views in *out
 * point into buf; 0 = need more bytes; -1 = malformed, reason in err. max_packet bounds the
 * whole packet (header included; 0 = only the protocol limit). On -1 *out is zeroed, except
 * for a CONNECT with a well-formed protocol name but an unsupported level: then out->type is
 * BT_MQTT_CONNECT and out->connect.protocol_level is that level, so a broker can answer
 * CONNACK 1 before it closes. */
int bt_mqtt_decode(const uint8_t *buf, size_t len, size_t max_packet, bt_mqtt_packet *out,
                   size_t *consumed, char *err, size_t errlen);

/* Starts walking the list of p (SUBSCRIBE, UNSUBSCRIBE or SUBACK; any other type is empty). */
void bt_mqtt_sub_iter_init(bt_mqtt_sub_iter *it, const bt_mqtt_packet *p);
/* Next entry: true with *topic and *qos set (either may be NULL); false at the end. SUBACK
 * gives an empty topic and the return code in *qos; UNSUBSCRIBE gives qos 0. */
bool bt_mqtt_sub_next(bt_mqtt_sub_iter *it, bt_mqtt_str *topic, uint8_t *qos);

/* ---- encoding ------------------------------------------------------------------------ */
/* Every encoder returns the bytes written, or the size needed when that is more than cap
 * (nothing written; the caller grows its buffer), or -1 for a packet that cannot be
 * encoded. A packet they write always decodes again. */

/* Checks that p can be encoded (lengths, QoS, packet ids, flags, UTF-8): 0 or -1 + reason. */
int bt_mqtt_check(const bt_mqtt_packet *p, char *err, size_t errlen);
/* Whole packet size of p, or -1 when p is invalid (see bt_mqtt_check). */
ssize_t bt_mqtt_encoded_len(const bt_mqtt_packet *p);
/* Encodes any packet; fully validated first. */
ssize_t bt_mqtt_encode(const bt_mqtt_packet *p, uint8_t *buf, size_t cap);

/* Hot path PUBLISH. Checks lengths, qos <= 2, dup only with qos > 0, packet id != 0 when
 * qos > 0 (ignored for qos 0); does NOT re-validate the topic's UTF-8 (pass a topic that
 * was decoded or checked). */
ssize_t bt_mqtt_encode_publish(uint8_t *buf, size_t cap, const char *topic, size_t topic_len,
                               const void *payload, size_t payload_len, int qos, bool retain,
                               bool dup, uint16_t packet_id);
/* Like bt_mqtt_encode_publish but writes everything except the payload, so the payload can
 * follow from its own buffer (writev). Returns the header bytes (size needed if > cap). */
ssize_t bt_mqtt_encode_publish_header(uint8_t *buf, size_t cap, const char *topic, size_t topic_len,
                                      size_t payload_len, int qos, bool retain, bool dup,
                                      uint16_t packet_id);
/* PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK with packet_id (4 bytes). */
ssize_t bt_mqtt_encode_ack(uint8_t *buf, size_t cap, bt_mqtt_type type, uint16_t packet_id);
/* PUBACK (4 bytes). */
ssize_t bt_mqtt_encode_puback(uint8_t *buf, size_t cap, uint16_t packet_id);
/* CONNACK (4 bytes); return_code 0..5. */
ssize_t bt_mqtt_encode_connack(uint8_t *buf, size_t cap, bool session_present, uint8_t return_code);
/* SUBACK with n >= 1 return codes, each 0, 1, 2 or 0x80. */
ssize_t bt_mqtt_encode_suback(uint8_t *buf, size_t cap, uint16_t packet_id, const uint8_t *codes,
                              size_t n);
/* SUBSCRIBE (qos 0..2 each) or UNSUBSCRIBE (qos ignored) of n >= 1 entries. */
ssize_t bt_mqtt_encode_subscribe(uint8_t *buf, size_t cap, bt_mqtt_type type, uint16_t packet_id,
                                 const bt_mqtt_sub_entry *entries, size_t n);
/* PINGREQ, PINGRESP or DISCONNECT (2 bytes). */
ssize_t bt_mqtt_encode_empty(uint8_t *buf, size_t cap, bt_mqtt_type type);

/* ---- helpers ------------------------------------------------------------------------- */

/* Name of a packet type for logs ("PUBLISH"), "UNKNOWN" for others. */
const char *bt_mqtt_type_name(int type);
/* MQTT string check (3.1.1 §1.5.3): 0 = well-formed UTF-8; -1 = ill-formed (overlong,
 * surrogate, > U+10FFFF, truncated sequence); -2 = contains U+0000. */
int bt_mqtt_utf8_check(const char *s, size_t len);
/* True when a and b have the same type and fields; views compared by content. */
bool bt_mqtt_packet_equal(const bt_mqtt_packet *a, const bt_mqtt_packet *b);

#endif
