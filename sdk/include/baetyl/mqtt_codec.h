/* MQTT 3.1 / 3.1.1 / 5.0 packets to and from bytes, shared by the hub and the client.
 *
 * Decoding is incremental and zero-copy: bt_mqtt_decode() looks at the bytes received so
 * far and either needs more, yields one packet whose strings and payload are views into the
 * caller's buffer (valid while that buffer is), or rejects the input with a reason. Every
 * rule of the wire format is checked (flags, lengths, QoS, packet ids, UTF-8 of strings);
 * the meaning of topics (wildcards, levels) is left to topic.h. Encoding writes into a
 * caller's buffer and never allocates.
 *
 * MQTT 5.0: a packet's `version` is 5 when it follows the 5.0 format (properties, reason
 * codes); 0 means 3.1 / 3.1.1, whose bytes are exactly those of the 3.1.1 codec. Decoding
 * needs the version of the connection (bt_mqtt_decode_v); a CONNECT tells its own. */
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
    BT_MQTT_AUTH = 15, /* 5.0 only */
} bt_mqtt_type;

/* Protocol levels. */
#define BT_MQTT_V31 3
#define BT_MQTT_V311 4
#define BT_MQTT_V5 5

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

/* MQTT 5.0 reason codes (§2.4) used by the hub and the client. */
enum {
    BT_MQTT_RC_SUCCESS = 0x00, /* also normal disconnection, granted qos 0 */
    BT_MQTT_RC_GRANTED_QOS1 = 0x01,
    BT_MQTT_RC_GRANTED_QOS2 = 0x02,
    BT_MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    BT_MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    BT_MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    BT_MQTT_RC_CONTINUE_AUTH = 0x18,
    BT_MQTT_RC_REAUTHENTICATE = 0x19,
    BT_MQTT_RC_UNSPECIFIED = 0x80,
    BT_MQTT_RC_MALFORMED = 0x81,
    BT_MQTT_RC_PROTOCOL_ERROR = 0x82,
    BT_MQTT_RC_IMPLEMENTATION_SPECIFIC = 0x83,
    BT_MQTT_RC_UNSUPPORTED_VERSION = 0x84,
    BT_MQTT_RC_BAD_CLIENT_ID = 0x85,
    BT_MQTT_RC_BAD_USERNAME_PASSWORD = 0x86,
    BT_MQTT_RC_NOT_AUTHORIZED = 0x87,
    BT_MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    BT_MQTT_RC_SERVER_BUSY = 0x89,
    BT_MQTT_RC_BANNED = 0x8A,
    BT_MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    BT_MQTT_RC_BAD_AUTH_METHOD = 0x8C,
    BT_MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    BT_MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    BT_MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    BT_MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    BT_MQTT_RC_PACKET_ID_IN_USE = 0x91,
    BT_MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    BT_MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93,
    BT_MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    BT_MQTT_RC_PACKET_TOO_LARGE = 0x95,
    BT_MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    BT_MQTT_RC_QUOTA_EXCEEDED = 0x97,
    BT_MQTT_RC_ADMINISTRATIVE_ACTION = 0x98,
    BT_MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    BT_MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    BT_MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
    BT_MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
    BT_MQTT_RC_SERVER_MOVED = 0x9D,
    BT_MQTT_RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E,
    BT_MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    BT_MQTT_RC_MAXIMUM_CONNECT_TIME = 0xA0,
    BT_MQTT_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
    BT_MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

/* MQTT 5.0 property identifiers (§2.2.2.2). */
enum {
    BT_MQTT_PROP_PAYLOAD_FORMAT = 0x01,         /* byte 0/1: PUBLISH, will */
    BT_MQTT_PROP_MESSAGE_EXPIRY = 0x02,         /* u32: PUBLISH, will */
    BT_MQTT_PROP_CONTENT_TYPE = 0x03,           /* string: PUBLISH, will */
    BT_MQTT_PROP_RESPONSE_TOPIC = 0x08,         /* string: PUBLISH, will */
    BT_MQTT_PROP_CORRELATION_DATA = 0x09,       /* binary: PUBLISH, will */
    BT_MQTT_PROP_SUBSCRIPTION_ID = 0x0B,        /* varint 1..: PUBLISH (repeats), SUBSCRIBE */
    BT_MQTT_PROP_SESSION_EXPIRY = 0x11,         /* u32: CONNECT, CONNACK, DISCONNECT */
    BT_MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,     /* string: CONNACK */
    BT_MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,      /* u16: CONNACK */
    BT_MQTT_PROP_AUTH_METHOD = 0x15,            /* string: CONNECT, CONNACK, AUTH */
    BT_MQTT_PROP_AUTH_DATA = 0x16,              /* binary: CONNECT, CONNACK, AUTH */
    BT_MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,   /* byte 0/1: CONNECT */
    BT_MQTT_PROP_WILL_DELAY = 0x18,             /* u32: will */
    BT_MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,  /* byte 0/1: CONNECT */
    BT_MQTT_PROP_RESPONSE_INFO = 0x1A,          /* string: CONNACK */
    BT_MQTT_PROP_SERVER_REFERENCE = 0x1C,       /* string: CONNACK, DISCONNECT */
    BT_MQTT_PROP_REASON_STRING = 0x1F,          /* string: acks, DISCONNECT, AUTH */
    BT_MQTT_PROP_RECEIVE_MAXIMUM = 0x21,        /* u16 1..: CONNECT, CONNACK */
    BT_MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,    /* u16: CONNECT, CONNACK */
    BT_MQTT_PROP_TOPIC_ALIAS = 0x23,            /* u16 1..: PUBLISH */
    BT_MQTT_PROP_MAXIMUM_QOS = 0x24,            /* byte 0/1: CONNACK */
    BT_MQTT_PROP_RETAIN_AVAILABLE = 0x25,       /* byte 0/1: CONNACK */
    BT_MQTT_PROP_USER_PROPERTY = 0x26,          /* string pair, repeats: every packet */
    BT_MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,    /* u32 1..: CONNECT, CONNACK */
    BT_MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28, /* byte 0/1: CONNACK */
    BT_MQTT_PROP_SUB_ID_AVAILABLE = 0x29,       /* byte 0/1: CONNACK */
    BT_MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,   /* byte 0/1: CONNACK */
};

/* MQTT 5.0 subscription options byte (a SUBSCRIBE entry's qos field in 5.0). */
#define BT_MQTT_SUBOPT_QOS(o) ((o)&0x03)
#define BT_MQTT_SUBOPT_NO_LOCAL 0x04
#define BT_MQTT_SUBOPT_RETAIN_AS_PUBLISHED 0x08
#define BT_MQTT_SUBOPT_RETAIN_HANDLING(o) (((o) >> 4) & 0x03)

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

/* One property: numbers in `num`, a string or binary value in `bin`, a user property's
 * name in `bin` and its value in `value`. */
typedef struct {
    uint8_t id;
    uint32_t num;
    bt_mqtt_bin bin;
    bt_mqtt_str value;
} bt_mqtt_prop;

/* The properties of a 5.0 packet: either `raw` (the wire bytes after the property length,
 * as decoded; already validated) or, when `list` is not NULL, `count` properties given by
 * a caller who builds a packet (encoded in that order). `present` has bit (1 << id) set
 * for each identifier present (set by the decoder; computed for a list). Read them with
 * bt_mqtt_props_get / bt_mqtt_props_iter_init + bt_mqtt_props_next. */
typedef struct {
    bt_mqtt_bin raw;
    const bt_mqtt_prop *list;
    size_t count;
    uint64_t present;
} bt_mqtt_props;

/* Walks a property set without allocating. */
typedef struct {
    const uint8_t *pos, *end;
    const bt_mqtt_prop *item;
    size_t left;
} bt_mqtt_props_iter;

/* CONNECT. The protocol name follows from the level: 3 is "MQIsdp" (3.1), 4 and 5 "MQTT".
 * In 5.0 clean_session is "clean start". */
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
    bt_mqtt_props props;      /* 5.0 */
    bt_mqtt_props will_props; /* 5.0, with will_flag */
} bt_mqtt_connect;

/* CONNACK. return_code is the 5.0 reason code in 5.0. */
typedef struct {
    bool session_present;
    uint8_t return_code;
    bt_mqtt_props props; /* 5.0 */
} bt_mqtt_connack;

/* PUBLISH. packet_id is 0 for QoS 0 (it is not on the wire then). */
typedef struct {
    uint8_t qos;
    bool retain;
    bool dup;
    uint16_t packet_id;
    bt_mqtt_str topic; /* 5.0: may be empty when props carry a topic alias */
    bt_mqtt_bin payload;
    bt_mqtt_props props; /* 5.0 */
} bt_mqtt_publish;

/* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK (3.1.x): a packet id. In 5.0 the four PUB acks
 * also carry a reason code and properties, and DISCONNECT and AUTH use this with only the
 * reason and properties (packet_id 0). A 5.0 UNSUBACK is a bt_mqtt_suback. */
typedef struct {
    uint16_t packet_id;
    uint8_t reason;      /* 5.0 */
    bt_mqtt_props props; /* 5.0 */
} bt_mqtt_ack;

/* One SUBSCRIBE entry (qos unused for UNSUBSCRIBE; in 5.0 it is the whole subscription
 * options byte, see BT_MQTT_SUBOPT_*), for building packets to encode. */
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
    bt_mqtt_props props; /* 5.0 */
} bt_mqtt_sub_list;

/* SUBACK: one return code per filter (0, 1, 2 or 0x80; the 5.0 reason codes in 5.0). Also
 * a 5.0 UNSUBACK (its reason codes). */
typedef struct {
    uint16_t packet_id;
    const uint8_t *codes;
    size_t count;
    bt_mqtt_props props; /* 5.0 */
} bt_mqtt_suback;

/* One control packet; `type` says which member of the union is meaningful. PINGREQ,
 * PINGRESP and a 3.1.x DISCONNECT have no fields. */
typedef struct {
    bt_mqtt_type type;
    uint8_t version; /* BT_MQTT_V5 for the 5.0 format, else 0 (3.1 / 3.1.1) */
    union {
        bt_mqtt_connect connect;
        bt_mqtt_connack connack;
        bt_mqtt_publish publish;
        bt_mqtt_ack ack;              /* PUBACK PUBREC PUBREL PUBCOMP UNSUBACK(3.1.x)
                                         DISCONNECT(5.0) AUTH */
        bt_mqtt_sub_list subscribe;   /* SUBSCRIBE */
        bt_mqtt_sub_list unsubscribe; /* UNSUBSCRIBE (same layout as subscribe) */
        bt_mqtt_suback suback;        /* SUBACK, UNSUBACK(5.0) */
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
/* bt_mqtt_frame_len for a connection of `version` (BT_MQTT_V5 allows AUTH and the longer
 * 5.0 acks; any other value is bt_mqtt_frame_len). */
int bt_mqtt_frame_len_v(const uint8_t *buf, size_t len, size_t max_packet, int version,
                        size_t *total, char *err, size_t errlen);

/* Decodes one packet from buf[0..len): 1 = decoded, *consumed = its size, views in *out
 * point into buf; 0 = need more bytes; -1 = malformed, reason in err. max_packet bounds the
 * whole packet (header included; 0 = only the protocol limit). On -1 *out is zeroed, except
 * for a CONNECT with a well-formed protocol name but an unsupported level: then out->type is
 * BT_MQTT_CONNECT and out->connect.protocol_level is that level, so a broker can answer
 * CONNACK 1 before it closes. */
int bt_mqtt_decode(const uint8_t *buf, size_t len, size_t max_packet, bt_mqtt_packet *out,
                   size_t *consumed, char *err, size_t errlen);
/* bt_mqtt_decode for a connection of `version`. BT_MQTT_V5: a CONNECT of level 5 is
 * accepted (levels 3 and 4 too: a CONNECT is decoded by its own level, and out->version is
 * 5 only for level 5), and every other packet is read in the 5.0 format with all its rules:
 * properties allowed in that packet only, no duplicates but user properties (and
 * subscription identifiers in PUBLISH), values in range, minimal variable byte integers,
 * known reason codes. Any other version is bt_mqtt_decode. */
int bt_mqtt_decode_v(const uint8_t *buf, size_t len, size_t max_packet, int version,
                     bt_mqtt_packet *out, size_t *consumed, char *err, size_t errlen);

/* Starts walking a property set. */
void bt_mqtt_props_iter_init(bt_mqtt_props_iter *it, const bt_mqtt_props *ps);
/* Next property: true with *out set; false at the end. */
bool bt_mqtt_props_next(bt_mqtt_props_iter *it, bt_mqtt_prop *out);
/* The first property `id` of ps: true with *out set (out may be NULL). */
bool bt_mqtt_props_get(const bt_mqtt_props *ps, uint8_t id, bt_mqtt_prop *out);
/* Checks a property set for a packet type (BT_MQTT_CONNECT..BT_MQTT_AUTH, or 0 for the
 * will properties of a CONNECT): 0 with *present filled, or -1 + reason. */
int bt_mqtt_props_check(const bt_mqtt_props *ps, int type, uint64_t *present, char *err,
                        size_t errlen);
/* Copies the wire bytes of the properties of ps (decoded: raw) into out, leaving out those
 * whose identifier has its bit (1 << id) in drop; no length prefix. Returns the bytes
 * written, or the size needed when over cap (nothing written), or -1 for a listed set. */
ssize_t bt_mqtt_props_filter(const bt_mqtt_props *ps, uint64_t drop, uint8_t *out, size_t cap);
/* True when the reason code `rc` may appear in a 5.0 packet of `type`. */
bool bt_mqtt_reason_valid(int type, uint8_t rc);

/* Starts walking the list of p (SUBSCRIBE, UNSUBSCRIBE or SUBACK; any other type is empty). */
void bt_mqtt_sub_iter_init(bt_mqtt_sub_iter *it, const bt_mqtt_packet *p);
/* Next entry: true with *topic and *qos set (either may be NULL); false at the end. SUBACK
 * gives an empty topic and the return code in *qos; UNSUBSCRIBE gives qos 0. */
bool bt_mqtt_sub_next(bt_mqtt_sub_iter *it, bt_mqtt_str *topic, uint8_t *qos);

/* ---- encoding ------------------------------------------------------------------------ */
/* Every encoder returns the bytes written, or the size needed when that is more than cap
 * (nothing written; the caller grows its buffer), or -1 for a packet that cannot be
 * encoded. A packet they write always decodes again. bt_mqtt_encode and its size functions
 * follow p->version (5.0: a PUB ack, DISCONNECT or AUTH without properties has no property
 * length, and no reason code when it is 0); the other encoders write 3.1.x packets. */

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
/* The 5.0 hot path PUBLISH: as bt_mqtt_encode_publish, with props_len bytes of properties
 * that are NOT re-validated either (a relay's own, or ones decoded and checked); topic_len
 * may be 0 when they carry a topic alias. */
ssize_t bt_mqtt_encode_publish5(uint8_t *buf, size_t cap, const char *topic, size_t topic_len,
                                const void *payload, size_t payload_len, int qos, bool retain,
                                bool dup, uint16_t packet_id, const uint8_t *props,
                                size_t props_len);
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

/* Name of a packet type for logs ("PUBLISH", "AUTH"), "UNKNOWN" for others. */
const char *bt_mqtt_type_name(int type);
/* MQTT string check (3.1.1 §1.5.3): 0 = well-formed UTF-8; -1 = ill-formed (overlong,
 * surrogate, > U+10FFFF, truncated sequence); -2 = contains U+0000. */
int bt_mqtt_utf8_check(const char *s, size_t len);
/* True when a and b have the same type and fields; views compared by content. */
bool bt_mqtt_packet_equal(const bt_mqtt_packet *a, const bt_mqtt_packet *b);

#endif
