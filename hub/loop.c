/* epoll event loop (level-triggered). Reads are drained per ready connection, output is
 * written once per turn for every connection that got some (hub_turn_end).
 *
 * At the descriptor limit accept() fails with EMFILE and leaves the connection pending, so
 * a level-triggered listener would wake the loop forever: a reserve descriptor is closed to
 * accept and close each pending connection (the client sees its connection end), then
 * taken again. When even that fails, the listeners pause until the next tick. Refusals are
 * logged at most once per interval, with their count. */
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "baetyl/log.h"
#include "hub.h"
#include "listener.h"

#define TICK_MS 100
#define MAX_EVENTS 256
#define REFUSED_LOG_MS 10000

typedef struct {
    int reserve;      /* a descriptor kept free for shedding at EMFILE */
    uint64_t refused; /* connections refused since the last log line */
    int last_errno;
    int64_t next_log_ms;
    bool paused; /* listeners out of epoll until the next tick */
} accept_guard;

static void refused_log(hub *h, accept_guard *g, bool force)
{
    if (!g->refused || (!force && h->now_ms < g->next_log_ms))
        return;
    char n[24];
    snprintf(n, sizeof n, "%llu", (unsigned long long)g->refused);
    bt_logkv(BT_LOG_WARN, "connections refused", "error", strerror(g->last_errno), "count", n,
             NULL);
    g->refused = 0;
    g->next_log_ms = h->now_ms + REFUSED_LOG_MS;
}

static void listeners_set(hub *h, listener *ls, size_t nl, uint32_t events)
{
    for (size_t i = 0; i < nl; i++) {
        struct epoll_event ev = {.events = events, .data.ptr = &ls[i]};
        epoll_ctl(h->epfd, EPOLL_CTL_MOD, ls[i].fd, &ev);
    }
}

/* Ends one pending connection of l through the reserve descriptor; false when the
 * reserve is gone (the caller pauses the listeners) or nothing is pending. */
static bool shed_one(listener *l, accept_guard *g)
{
    if (g->reserve < 0)
        return false;
    close(g->reserve);
    int fd = accept(l->fd, NULL, NULL);
    if (fd >= 0)
        close(fd);
    g->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0;
}

static void accept_all(hub *h, listener *l, accept_guard *g, listener *ls, size_t nl)
{
    for (int i = 0; i < 256; i++) {
        int fd = listener_accept(l);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return;
            g->last_errno = errno;
            g->refused++;
            h->ctr.accept_failed++;
            bool shed = (errno == EMFILE || errno == ENFILE) && shed_one(l, g);
            refused_log(h, g, false);
            if (shed)
                continue;
            if (!g->paused) {
                listeners_set(h, ls, nl, 0);
                g->paused = true;
            }
            return;
        }
        transport *t = listener_transport(l, fd); /* closes fd when it fails */
        conn *c = t ? conn_new(h, t) : NULL;
        if (!c) {
            if (t)
                t->ops->close(t);
            continue;
        }
        c->lix = (uint8_t)(l - ls < STATS_LISTENERS ? l - ls : STATS_LISTENERS - 1);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            conn_close(c, "epoll registration failed");
    }
}

int loop_run(hub *h, void *listeners, size_t nl, int stop_fd, loop_tick_fn on_tick, void *arg,
             char *err, size_t errlen)
{
    listener *ls = listeners;
    h->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (h->epfd < 0) {
        snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < nl; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &ls[i]};
        if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, ls[i].fd, &ev) < 0) {
            snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
            return -1;
        }
    }
    static int stop_tag = LOOP_STOP;
    if (stop_fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &stop_tag};
        epoll_ctl(h->epfd, EPOLL_CTL_ADD, stop_fd, &ev);
    }
    static int store_tag = LOOP_STORE; /* a group commit is on the disk */
    if (store_done_fd(h->st) >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &store_tag};
        epoll_ctl(h->epfd, EPOLL_CTL_ADD, store_done_fd(h->st), &ev);
    }
    accept_guard g = {.reserve = open("/dev/null", O_RDONLY | O_CLOEXEC), .last_errno = 0};
    int64_t next_tick = bt_now_ms() + TICK_MS;
    int64_t next_status = bt_now_ms() + h->cfg->status_interval_ms;
    struct epoll_event evs[MAX_EVENTS];
    bool stop = false;
    while (!stop) {
        int64_t now = bt_now_ms();
        int timeout = next_tick > now ? (int)(next_tick - now) : 0;
        int n = epoll_wait(h->epfd, evs, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            snprintf(err, errlen, "epoll_wait: %s", strerror(errno));
            return -1;
        }
        h->now_ms = bt_now_ms();
        h->wall_ms = hub_wall_ms();
        for (int i = 0; i < n; i++) {
            int kind = *(int *)evs[i].data.ptr;
            if (kind == LOOP_CONN) {
                conn *c = evs[i].data.ptr;
                if (c->state == CONN_CLOSED)
                    continue;
                /* A TLS handshake step may wait for writability: retry it first, so the
                 * flush below sees what the socket waits for now. */
                if (c->paused && (evs[i].events & (EPOLLHUP | EPOLLERR))) {
                    /* Not read while its publishes wait: a reset would wake us forever. */
                    conn_close(c, "connection closed by peer");
                    continue;
                }
                if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ||
                    ((evs[i].events & EPOLLOUT) && c->tr->read_wants_write))
                    conn_on_readable(c);
                if ((evs[i].events & EPOLLOUT) && c->state != CONN_CLOSED)
                    conn_flush(c);
            } else if (kind == LOOP_LISTENER) {
                accept_all(h, evs[i].data.ptr, &g, ls, nl);
            } else if (kind == LOOP_STORE) {
                hub_commit_done(h, false);
            } else if (kind == LOOP_STOP) {
                stop = true; /* the stop fd stays readable: never read it */
            }
        }
        if (h->now_ms >= next_tick) {
            if (g.paused) {
                listeners_set(h, ls, nl, EPOLLIN);
                g.paused = false;
            }
            if (g.reserve < 0)
                g.reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
            refused_log(h, &g, false);
            hub_tick(h);
            if (on_tick)
                on_tick(h, arg);
            next_tick = h->now_ms + TICK_MS;
            if (h->cfg->status_logging && h->now_ms >= next_status) {
                stats_log(h);
                next_status = h->now_ms + h->cfg->status_interval_ms;
            }
        }
        hub_turn_end(h);
    }
    for (size_t i = 0; i < nl; i++)
        epoll_ctl(h->epfd, EPOLL_CTL_DEL, ls[i].fd, NULL);
    refused_log(h, &g, true);
    if (g.reserve >= 0)
        close(g.reserve);
    return 0;
}
