/* Connections: reading and parsing (incrementally, straight from the shared read buffer
 * when no partial packet is left over), buffered output flushed once per loop turn, and
 * closing (will, session leave, deferred free). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "baetyl/log.h"
#include "hub.h"
#include "loop.h"

/* Bytes read per connection per turn before others get their turn. */
#define READ_BUDGET (256u << 10)

conn *conn_new(hub *h, transport *tr)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->kind = LOOP_CONN;
    c->h = h;
    c->tr = tr;
    c->id = ++h->next_conn_id;
    c->state = CONN_NEW;
    c->created_ms = c->last_rx_ms = h->now_ms;
    c->next_pid = 1;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    h->ctr.conns_total++;
    return c;
}

void conn_mark_dirty(conn *c)
{
    if (!c->in_dirty) {
        c->in_dirty = true;
        c->dirty_next = c->h->dirty;
        c->h->dirty = c;
    }
}

int conn_send(conn *c, const void *d, size_t n)
{
    if (c->state == CONN_CLOSED)
        return -1;
    if (bt_buf_append(&c->out, d, n) < 0) {
        conn_close(c, "out of memory");
        return -1;
    }
    conn_mark_dirty(c);
    return conn_check_out(c);
}

int conn_check_out(conn *c)
{
    if (bt_buf_size(&c->out) <= c->h->out_max || c->state == CONN_CLOSED)
        return 0;
    /* The client does not read: drop what it has not taken (QoS 1 state stays with its
     * session: unacknowledged log messages come again from its offset). */
    c->h->ctr.slow_closed++;
    bt_buf_free(&c->out);
    char why[120];
    snprintf(why, sizeof why, "output over message.egress.buffer.max (%zu bytes): %s",
             c->h->out_max, "client not reading");
    conn_close(c, why);
    return -1;
}

/* DISCONNECT: the will is discarded, except after 5.0 reason 0x04 (disconnect with will);
 * a 5.0 session expiry interval may change, but not from 0 (MQTT 5.0 §3.14.2.2.2). */
static int on_disconnect(conn *c, const bt_mqtt_packet *p)
{
    if (p->version == BT_MQTT_V5) {
        bt_mqtt_prop pr;
        if (bt_mqtt_props_get(&p->ack.props, BT_MQTT_PROP_SESSION_EXPIRY, &pr)) {
            if (c->session_expiry == 0 && pr.num) {
                conn_close_rc(c, BT_MQTT_RC_PROTOCOL_ERROR,
                              "session expiry interval set on DISCONNECT after 0 on CONNECT");
                return -1;
            }
            c->session_expiry = pr.num;
            if (!pr.num)
                c->expire_on_close = !c->clean;
        }
        if (p->ack.reason == BT_MQTT_RC_DISCONNECT_WITH_WILL) {
            conn_close_rc(c, 0, "client disconnected with its will");
            return -1;
        }
    }
    c->graceful = true;
    will_discard(c);
    conn_close_rc(c, 0, "client disconnected");
    return -1;
}

/* Handles one decoded packet according to the session state. */
static int on_packet(conn *c, const bt_mqtt_packet *p)
{
    if (c->state == CONN_NEW) {
        if (p->type != BT_MQTT_CONNECT) {
            conn_close(c, "first packet is not CONNECT");
            return -1;
        }
        return handle_connect(c, p);
    }
    switch (p->type) {
    case BT_MQTT_PUBLISH: return handle_publish(c, p);
    case BT_MQTT_PUBACK: return handle_puback(c, p->ack.packet_id);
    case BT_MQTT_PUBREC:
        /* 5.0: a receiver that refuses the message ends the exchange with its PUBREC */
        if (p->ack.reason >= 0x80)
            return handle_pubcomp(c, p->ack.packet_id);
        return handle_pubrec(c, p->ack.packet_id);
    case BT_MQTT_SUBSCRIBE: return handle_subscribe(c, p);
    case BT_MQTT_UNSUBSCRIBE: return handle_unsubscribe(c, p);
    case BT_MQTT_PINGREQ: return send_pingresp(c);
    case BT_MQTT_DISCONNECT: return on_disconnect(c, p);
    case BT_MQTT_AUTH:
        conn_close_rc(c, BT_MQTT_RC_PROTOCOL_ERROR, "AUTH without an authentication method");
        return -1;
    case BT_MQTT_CONNECT: conn_close(c, "second CONNECT on a connection"); return -1;
    case BT_MQTT_PUBREL: return handle_pubrel(c, p->ack.packet_id);
    case BT_MQTT_PUBCOMP: return handle_pubcomp(c, p->ack.packet_id);
    default: {
        char why[64];
        snprintf(why, sizeof why, "unexpected %s from a client", bt_mqtt_type_name(p->type));
        conn_close(c, why);
        return -1;
    }
    }
}

/* Parses whole packets from d[0..n); returns the bytes consumed or -1 (closed). */
static ssize_t parse(conn *c, const uint8_t *d, size_t n)
{
    size_t pos = 0;
    /* message.length.max bounds the remaining length: the codec bounds whole packets, so
     * add the fixed header of a packet that long (a longer one has at least as long a
     * header, so it is refused). */
    size_t lmax = (size_t)c->h->cfg->length_max;
    size_t max = lmax + 2 + (lmax >= 128) + (lmax >= 16384) + (lmax >= 2097152);
    while (pos < n && c->state != CONN_CLOSED) {
        bt_mqtt_packet p;
        size_t used = 0;
        char err[160];
        /* Before CONNECT the 5.0 decoder takes a CONNECT of any level (read by its level);
         * other packets are read as 3.1.1 ones, and refused for not being a CONNECT. */
        int version = c->state != CONN_NEW               ? c->level
                      : (d[pos] >> 4) == BT_MQTT_CONNECT ? BT_MQTT_V5
                                                         : BT_MQTT_V311;
        int r = bt_mqtt_decode_v(d + pos, n - pos, max, version, &p, &used, err, sizeof err);
        if (r == 0)
            break;
        if (r < 0) {
            c->h->ctr.bad_packets++;
            if (c->state == CONN_NEW && p.type == BT_MQTT_CONNECT && p.connect.protocol_level)
                send_connack(c, BT_MQTT_CONNACK_BAD_PROTOCOL);
            char why[220];
            snprintf(why, sizeof why, "malformed packet: %s", err);
            conn_close_rc(c, BT_MQTT_RC_MALFORMED, why);
            return -1;
        }
        pos += used;
        c->last_rx_ms = c->h->now_ms;
        if (on_packet(c, &p) < 0 || c->state == CONN_CLOSED)
            return -1;
    }
    return (ssize_t)pos;
}

int conn_feed(conn *c, const uint8_t *d, size_t n)
{
    if (c->state == CONN_CLOSED)
        return -1;
    c->h->ctr.bytes_in += n;
    if (bt_buf_size(&c->in)) {
        /* A partial packet is waiting: append and parse from the connection's buffer. */
        if (bt_buf_append(&c->in, d, n) < 0) {
            conn_close(c, "out of memory");
            return -1;
        }
        ssize_t used = parse(c, c->in.p + c->in.off, bt_buf_size(&c->in));
        if (used < 0)
            return -1;
        bt_buf_consume(&c->in, (size_t)used);
        bt_buf_trim(&c->in, 0);
        return 0;
    }
    ssize_t used = parse(c, d, n);
    if (used < 0)
        return -1;
    if ((size_t)used < n && bt_buf_append(&c->in, d + used, n - (size_t)used) < 0) {
        conn_close(c, "out of memory");
        return -1;
    }
    return 0;
}

void conn_on_readable(conn *c)
{
    hub *h = c->h;
    transport *t = c->tr;
    size_t total = 0;
    while (c->state != CONN_CLOSED && !c->paused && total < READ_BUDGET) {
        ssize_t r = t->ops->read(t, h->rbuf, h->rbuf_cap);
        if (r > 0) {
            total += (size_t)r;
            if (conn_feed(c, h->rbuf, (size_t)r) < 0)
                return;
            if (t->drained)
                break; /* the socket had no more */
            continue;
        }
        if (r == 0) {
            conn_close(c, "connection closed by peer");
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        char why[256];
        snprintf(why, sizeof why, "read failed: %s", t->err ? t->err : strerror(errno));
        conn_close(c, why);
        return;
    }
    /* The transport has bytes of its own (handshake answer, pong), waits for writability,
     * or a write waited for this read: the end-of-turn flush sees to it. */
    if (c->state != CONN_CLOSED &&
        (t->out_pending || t->read_wants_write || (t->write_wants_read && bt_buf_size(&c->out))))
        conn_mark_dirty(c);
}

static void set_want_write(conn *c, bool on)
{
    if (c->want_write == on || c->tr->fd < 0 || c->h->epfd < 0)
        return;
    struct epoll_event ev = {.events = (c->paused ? 0u : EPOLLIN) | (on ? EPOLLOUT : 0u),
                             .data.ptr = c};
    epoll_ctl(c->h->epfd, EPOLL_CTL_MOD, c->tr->fd, &ev);
    c->want_write = on;
}

void conn_pause(conn *c, bool paused)
{
    if (c->paused == paused || c->state == CONN_CLOSED)
        return;
    c->paused = paused;
    if (c->tr->fd < 0 || c->h->epfd < 0)
        return;
    /* Unread bytes stay in the socket: TCP flow control slows the publisher down. */
    struct epoll_event ev = {.events = (paused ? 0u : EPOLLIN) | (c->want_write ? EPOLLOUT : 0u),
                             .data.ptr = c};
    epoll_ctl(c->h->epfd, EPOLL_CTL_MOD, c->tr->fd, &ev);
}

static void conn_write(conn *c, bool may_close)
{
    transport *t = c->tr;
    for (;;) {
        ssize_t w;
        bool own = t->out_pending && t->ops->flush;
        if (own) {
            w = t->ops->flush(t);
        } else if (bt_buf_size(&c->out)) {
            struct iovec iov = {c->out.p + c->out.off, bt_buf_size(&c->out)};
            w = t->ops->writev(t, &iov, 1);
        } else {
            break;
        }
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* A TLS write waiting for input is retried after the next read. */
                if (c->state != CONN_CLOSED)
                    set_want_write(c, !t->write_wants_read || t->read_wants_write);
                return;
            }
            if (!may_close)
                return;
            bt_buf_free(&c->out);
            if (c->state != CONN_CLOSED) {
                char why[256];
                snprintf(why, sizeof why, "write failed: %s", t->err ? t->err : strerror(errno));
                conn_close(c, why);
            }
            return;
        }
        if (!own) {
            c->h->ctr.bytes_out += (uint64_t)w;
            bt_buf_consume(&c->out, (size_t)w);
            bt_buf_trim(&c->out, 0);
        }
    }
    c->out_qos0 = 0;
    /* A paused connection's read waits for its resumption, not for writability. */
    if (c->state != CONN_CLOSED)
        set_want_write(c, t->read_wants_write && !c->paused);
}

void conn_flush(conn *c)
{
    conn_write(c, true);
}

void conn_flush_soft(conn *c)
{
    conn_write(c, false);
}

/* The 5.0 reason code that fits a close reason given as text (0: no DISCONNECT). */
static uint8_t reason_code(const char *reason)
{
    static const struct {
        const char *prefix;
        uint8_t rc;
    } codes[] = {
        {"connection closed by peer", 0},
        {"read failed", 0},
        {"write failed", 0},
        {"epoll", 0},
        {"keepalive timeout", BT_MQTT_RC_KEEP_ALIVE_TIMEOUT},
        {"hub shutting down", BT_MQTT_RC_SERVER_SHUTTING_DOWN},
        {"session taken over", BT_MQTT_RC_SESSION_TAKEN_OVER},
        {"output over", BT_MQTT_RC_QUOTA_EXCEEDED},
        {"out of memory", BT_MQTT_RC_SERVER_BUSY},
        {"publish to topic", BT_MQTT_RC_NOT_AUTHORIZED},
        {"publish topic", BT_MQTT_RC_TOPIC_NAME_INVALID},
        {"second CONNECT", BT_MQTT_RC_PROTOCOL_ERROR},
        {"unexpected", BT_MQTT_RC_PROTOCOL_ERROR},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (!strncmp(reason, codes[i].prefix, strlen(codes[i].prefix)))
            return codes[i].rc;
    return BT_MQTT_RC_UNSPECIFIED;
}

void conn_close(conn *c, const char *reason)
{
    conn_close_rc(c, c->level == BT_MQTT_V5 ? reason_code(reason) : 0, reason);
}

void conn_close_rc(conn *c, uint8_t rc, const char *reason)
{
    if (c->state == CONN_CLOSED)
        return;
    /* 5.0: the client learns why (MQTT 5.0 §4.13), before a will or session work */
    if (rc && c->level == BT_MQTT_V5 && c->state == CONN_ACTIVE)
        send_disconnect5(c, rc, reason);
    hub *h = c->h;
    bool was_active = c->state == CONN_ACTIVE;
    bt_logkv(was_active ? BT_LOG_INFO : BT_LOG_WARN, "connection closed", "client",
             c->client_id ? c->client_id : "", "reason", reason, NULL);
    c->state = CONN_CLOSED;
    if (c->tr->fd >= 0 && h->epfd >= 0)
        epoll_ctl(h->epfd, EPOLL_CTL_DEL, c->tr->fd, NULL);
    if (c->client_id && map_get(&h->clients, c->client_id) == c)
        map_del(&h->clients, c->client_id);
    /* PUBACKs still waiting for the commit have nobody to go to. */
    hub_pend_forget(h, c);
    if (was_active && h->shared.n)
        shared_redeliver(c);
    if (!c->clean && c->client_id) {
        psess *ps = psession_get(h, c->client_id, NULL);
        if (ps && ps->online == c) {
            uint64_t off = was_active ? session_offset(c) : ps->offset;
            if (off != ps->offset) {
                ps->offset = off;
                ps->offset_dirty = true;
            }
            if (was_active) {
                psession_hold_unacked(ps, c);
                psession_keep_qos2(ps, c);
            }
            psession_set_online(h, ps, NULL);
            /* 5.0: the away session ends after its expiry interval (0xFFFFFFFF: never) */
            if (c->level == BT_MQTT_V5 && c->session_expiry != UINT32_MAX && !c->expire_on_close)
                psession_set_expiry(h, ps, c->client_id,
                                    hub_wall_ms() + (int64_t)c->session_expiry * 1000);
        }
        if (c->expire_on_close)
            psession_drop(h, c->client_id);
    }
    session_clear_subs(c);
    if (!c->graceful)
        will_fire(c);
    else
        will_discard(c);
    /* Move to the closed list; freed at the end of the turn, after a last flush. */
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->nconns--;
    c->prev = NULL;
    c->next = h->closed;
    h->closed = c;
}

void conn_free(conn *c)
{
    if (bt_buf_size(&c->out))
        conn_flush(c); /* best effort: a CONNACK with an error code, a last PUBACK */
    for (size_t i = 0; i < c->qlen; i++)
        msg_unref(c->q[(c->qhead + i) % c->qcap].m);
    free(c->q);
    free(c->pidmap);
    pid_set_free(&c->rx2);
    if (c->aliases)
        for (size_t i = 0; i < TOPIC_ALIAS_MAX; i++)
            free(c->aliases[i]);
    free(c->aliases);
    map_free(&c->alias_out);
    for (size_t i = 0; i < c->nsubs; i++)
        free(c->subs[i].filter);
    free(c->subs);
    msg_unref(c->will);
    bt_buf_free(&c->in);
    bt_buf_free(&c->out);
    free(c->client_id);
    c->tr->ops->close(c->tr);
    free(c);
}
