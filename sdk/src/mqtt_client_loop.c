/* The client's thread: one poll() over the socket and the wake eventfd, with a timeout set
 * by the next deadline (connect attempt, keepalive ping, ping answer, reconnect). Nothing
 * spins: every wait is in poll. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "baetyl/log.h"
#include "baetyl/util.h"
#include "mqtt_client_internal.h"

__thread bt_mqtt_client *mc_current;

void mc_wake_locked(bt_mqtt_client *c)
{
    if (c->wake_pending)
        return;
    c->wake_pending = true;
    uint64_t one = 1;
    ssize_t w;
    do
        w = write(c->wake_fd, &one, sizeof one);
    while (w < 0 && errno == EINTR);
    /* EAGAIN: the counter is full, so the thread is awake anyway */
}

static void drain_wake(bt_mqtt_client *c)
{
    uint64_t v;
    ssize_t r;
    do
        r = read(c->wake_fd, &v, sizeof v);
    while (r < 0 && errno == EINTR);
}

static bool stop_requested(bt_mqtt_client *c)
{
    pthread_mutex_lock(&c->mu);
    bool s = c->stop_req;
    pthread_mutex_unlock(&c->mu);
    return s;
}

/* The link ended (or an attempt failed): clean up and plan the next attempt. */
static void link_down(bt_mqtt_client *c)
{
    bool was_up = c->state == MC_UP;
    mc_tr_close(c);
    mc_session_reset(c);
    c->ping_sent = 0;
    int64_t now = bt_now_ms();
    if (was_up) {
        bt_logkv(BT_LOG_WARN, "mqtt client connection lost", "address", c->cfg.address, "reason",
                 c->reason, NULL);
        if (c->opt.on_connection_lost)
            c->opt.on_connection_lost(c, c->reason, c->opt.userdata);
        c->backoff_ms = MC_BACKOFF_MIN_MS;
    } else {
        bt_logkv(BT_LOG_WARN, "mqtt client cannot connect", "address", c->cfg.address, "reason",
                 c->reason, NULL);
    }
    int64_t wait = c->backoff_ms < c->cfg.interval ? c->backoff_ms : c->cfg.interval;
    c->backoff_ms = wait * 2 > c->cfg.interval ? c->cfg.interval : wait * 2;
    /* Messages waiting for this link: try often, so they flow as soon as it is back. */
    pthread_mutex_lock(&c->mu);
    bool held = c->pending > 0;
    pthread_mutex_unlock(&c->mu);
    if (held && c->cfg.reconnectinterval > 0 && wait > c->cfg.reconnectinterval)
        wait = c->cfg.reconnectinterval;
    c->next_attempt = now + wait;
}

/* Connect deadline and keepalive; false when the link must go down. */
static bool timers(bt_mqtt_client *c, int64_t now)
{
    if (c->state == MC_IDLE && now >= c->next_attempt) {
        c->deadline = now + c->cfg.timeout;
        c->reason[0] = '\0';
        if (mc_tr_connect(c) < 0)
            return false;
    }
    if (c->state != MC_IDLE && c->state != MC_UP && now >= c->deadline) {
        mc_reason(c, "connect %s: timed out after %lld ms", c->addr.hostport,
                  (long long)c->cfg.timeout);
        return false;
    }
    if (c->state == MC_UP && c->keepalive_ms > 0) {
        if (c->ping_sent) {
            if (now - c->ping_sent >= c->ping_timeout_ms) {
                mc_reason(c, "no answer to PINGREQ within %lld ms", (long long)c->ping_timeout_ms);
                return false;
            }
        } else if (now - c->last_send >= c->keepalive_ms || now - c->last_recv >= c->keepalive_ms) {
            if (mc_send_empty(c, BT_MQTT_PINGREQ) < 0)
                return false;
            c->ping_sent = now;
        }
    }
    return true;
}

static int poll_timeout(bt_mqtt_client *c, int64_t now)
{
    int64_t t = -1;
    if (mc_tr_pending(c))
        return 0;
    if (c->state == MC_IDLE)
        t = c->next_attempt - now;
    else if (c->state != MC_UP)
        t = c->deadline - now;
    else if (c->keepalive_ms > 0) {
        if (c->ping_sent)
            t = c->ping_sent + c->ping_timeout_ms - now;
        else {
            int64_t oldest = c->last_send < c->last_recv ? c->last_send : c->last_recv;
            t = oldest + c->keepalive_ms - now;
        }
    }
    if (t < 0 && t != -1)
        t = 0;
    if (t > 60000 || t == -1)
        t = 60000; /* a bounded sleep keeps a clock jump from hurting */
    return (int)t;
}

static short socket_events(bt_mqtt_client *c)
{
    switch (c->state) {
    case MC_IDLE: return 0;
    case MC_TCP: return POLLOUT;
    default: break;
    }
    short ev = POLLIN;
    if (c->tls_want_write || (c->state != MC_TLS && mc_tr_has_output(c)))
        ev |= POLLOUT;
    return ev;
}

/* Socket events: false when the link must go down; *fatal when the client must stop. */
static bool on_socket(bt_mqtt_client *c, short rev, bool *fatal)
{
    switch (c->state) {
    case MC_TCP: return mc_tr_connected(c) == 0;
    case MC_TLS: return mc_tr_tls_step(c) >= 0;
    default: break;
    }
    if ((rev & (POLLIN | POLLHUP | POLLERR)) || mc_tr_pending(c) || c->tls_want_write) {
        int r = mc_tr_read(c);
        if (r < 0)
            return false;
        if (r > 0 || c->in.len > c->in.off) {
            int h = mc_handle_input(c);
            if (h == -2)
                *fatal = true;
            if (h < 0)
                return false;
        }
    }
    return true;
}

/* Writes the output until it is empty or `end`; false when the link failed. */
static bool flush_until(bt_mqtt_client *c, int64_t end)
{
    while (mc_tr_has_output(c)) {
        if (mc_tr_flush(c) < 0)
            return false;
        int64_t left = end - bt_now_ms();
        if (!mc_tr_has_output(c))
            break;
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = c->fd, .events = POLLOUT};
        if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
            return false;
    }
    return true;
}

/* Stop: send what is queued, then DISCONNECT, within min(timeout, 2 s). */
static void graceful_close(bt_mqtt_client *c)
{
    if (c->state == MC_UP) {
        int64_t limit = c->cfg.timeout < MC_STOP_FLUSH_MS ? c->cfg.timeout : MC_STOP_FLUSH_MS;
        int64_t end = bt_now_ms() + limit;
        bool more, ok;
        do {
            mc_list done = {0};
            more = mc_collect(c, &done);
            mc_complete(c, &done, BT_MQTT_OK);
            ok = flush_until(c, end);
        } while (ok && more);
        if (ok && mc_send_empty(c, BT_MQTT_DISCONNECT) == 0)
            flush_until(c, end);
    }
    mc_tr_close(c);
    mc_session_reset(c);
}

void *mc_thread(void *arg)
{
    bt_mqtt_client *c = arg;
    bool fatal = false;
    mc_current = c;
    c->backoff_ms = MC_BACKOFF_MIN_MS;
    c->next_attempt = bt_now_ms();
    while (!stop_requested(c)) {
        int64_t now = bt_now_ms();
        if (!timers(c, now)) {
            link_down(c);
            continue;
        }
        mc_list done = {0};
        bool more = mc_collect(c, &done);
        if (done.head)
            mc_complete(c, &done, BT_MQTT_OK);
        if (c->fd >= 0 && c->state != MC_TCP && mc_tr_has_output(c) && mc_tr_flush(c) < 0) {
            link_down(c);
            continue;
        }
        struct pollfd fds[2] = {{.fd = c->wake_fd, .events = POLLIN},
                                {.fd = c->fd, .events = socket_events(c)}};
        nfds_t n = c->fd >= 0 ? 2 : 1;
        /* queued publishes and an output with room: just look at the socket, then go on */
        int timeout = more && !mc_tr_has_output(c) ? 0 : poll_timeout(c, now);
        /* While it sleeps with nothing to write, a publisher may write to the socket itself
         * (one wake-up less per message); it stops before the thread touches the link. */
        bool direct = !more && mc_tr_direct_ok(c);
        if (direct) {
            pthread_mutex_lock(&c->mu);
            c->direct = true;
            pthread_mutex_unlock(&c->mu);
        }
        int rc = poll(fds, n, timeout);
        if (direct) {
            pthread_mutex_lock(&c->mu);
            c->direct = false;
            pthread_mutex_unlock(&c->mu);
        }
        if (rc < 0 && errno != EINTR) {
            mc_reason(c, "poll: %s", strerror(errno));
            fatal = true;
            break;
        }
        if (rc > 0 && (fds[0].revents & POLLIN))
            drain_wake(c);
        if (n == 2 && (fds[1].revents || mc_tr_pending(c))) {
            if (!on_socket(c, fds[1].revents, &fatal)) {
                if (fatal)
                    break;
                link_down(c);
            }
        }
    }
    if (fatal) {
        bt_logkv(BT_LOG_ERROR, "mqtt client stopped", "address", c->cfg.address, "reason",
                 c->reason, NULL);
        pthread_mutex_lock(&c->mu);
        c->stopped = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        if (c->opt.on_error)
            c->opt.on_error(c, c->reason, c->opt.userdata);
    }
    graceful_close(c);
    /* whatever is still held will never be acknowledged now */
    mc_list left = {0};
    pthread_mutex_lock(&c->mu);
    c->stopped = true;
    mc_list_prepend_all(&left, &c->queue);
    for (mc_msg *m = left.head; m; m = m->next)
        if (m->qos)
            c->slots[m->pid - 1] = NULL;
    c->pending = 0;
    c->thread_done = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    mc_complete(c, &left, BT_MQTT_ECANCELLED);
    if (c->free_on_exit)
        mc_free_client(c);
    mc_current = NULL;
    return NULL;
}
