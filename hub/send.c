/* Every packet the hub sends, encoded here: CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL,
 * PUBCOMP, SUBACK, UNSUBACK and PINGRESP go into the connection's output buffer
 * (conn_send), flushed at the end of the loop turn. Each returns 0, or -1 when the
 * connection is (now) closed. */
#include <stdlib.h>

#include "hub.h"

/* Output bytes that trigger a write in the middle of a turn. */
#define EARLY_FLUSH_BYTES (64u << 10)

int send_connack(conn *c, uint8_t code)
{
    uint8_t b[4];
    bt_mqtt_encode_connack(b, sizeof b, false, code);
    return conn_send(c, b, sizeof b);
}

int send_puback(conn *c, uint16_t pid)
{
    uint8_t b[4];
    bt_mqtt_encode_puback(b, sizeof b, pid);
    return conn_send(c, b, sizeof b);
}

int send_ack(conn *c, bt_mqtt_type type, uint16_t pid)
{
    uint8_t b[4];
    bt_mqtt_encode_ack(b, sizeof b, type, pid);
    return conn_send(c, b, sizeof b);
}

int send_unsuback(conn *c, uint16_t pid)
{
    uint8_t b[4];
    bt_mqtt_encode_ack(b, sizeof b, BT_MQTT_UNSUBACK, pid);
    return conn_send(c, b, sizeof b);
}

int send_pingresp(conn *c)
{
    uint8_t b[2];
    bt_mqtt_encode_empty(b, sizeof b, BT_MQTT_PINGRESP);
    return conn_send(c, b, sizeof b);
}

int send_suback(conn *c, uint16_t pid, const uint8_t *codes, size_t n)
{
    size_t cap = 5 + 2 + n;
    uint8_t *b = malloc(cap);
    ssize_t len = b ? bt_mqtt_encode_suback(b, cap, pid, codes, n) : -1;
    int rc;
    if (len < 0 || (size_t)len > cap) {
        conn_close(c, "cannot encode SUBACK");
        rc = -1;
    } else {
        rc = conn_send(c, b, (size_t)len);
    }
    free(b);
    return rc;
}

int send_publish(conn *c, const char *topic, size_t tlen, const void *payload, size_t plen,
                 uint8_t q, bool retain, bool dup, uint16_t pid)
{
    size_t need = 5 + 2 + tlen + 2 + plen;
    uint8_t *w = bt_buf_reserve(&c->out, need);
    if (!w) {
        conn_close(c, "out of memory");
        return -1;
    }
    ssize_t n = bt_mqtt_encode_publish(w, need, topic, tlen, payload, plen, q, retain, dup, pid);
    if (n < 0 || (size_t)n > need)
        return -1;
    c->out.len += (size_t)n;
    /* A large backlog goes out now rather than at the end of the turn, so a fan-in does
     * not pile up more than the socket could have taken. */
    if (bt_buf_size(&c->out) >= EARLY_FLUSH_BYTES && !c->want_write)
        conn_flush_soft(c);
    if (!c->in_dirty)
        conn_mark_dirty(c);
    c->h->ctr.msgs_out++;
    return bt_buf_size(&c->out) > c->h->out_max ? conn_check_out(c) : 0;
}
