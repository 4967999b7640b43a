/* The function client: gRPC over HTTP/2 on nghttp2. One connection per client, shared by
 * every call (each an HTTP/2 stream; nghttp2 queues the streams beyond the server's
 * MAX_CONCURRENT_STREAMS), run by one I/O thread of the client's, started by its first call:
 * it dials lazily and again after the peer closed, sends, reads, expires deadlines and
 * posts each finished call to its caller's queue (bt_fn_async), where a blocking call waits
 * for it and async calls are taken by bt_fn_async_poll. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "baetyl/util.h"

#include "function_internal.h"
#include "grpc_transport.h"
#include "grpc_wire.h"

#define IO_STACK (128 * 1024)
/* A dial with no call deadline to bound it (bt_fn_client_connect sets its own). */
#define DIAL_MAX_MS 20000
/* While waiting for a connection (wait_for_ready, bt_fn_client_connect): a refused dial is
 * made again after RETRY_MS, then 1.5 times longer each time up to RETRY_MAX_MS: a starting
 * runtime usually listens a few ms after the first refusal, and a peer that stays down is
 * not dialled hundreds of times a second. */
#define RETRY_MS 2
#define RETRY_MAX_MS 50
/* The flow-control window opened to the server for replies. */
#define WINDOW (1 << 20)

typedef struct ccall ccall;

/* Calls in order: started and not taken yet, waiting to be sent, in flight, finished. */
typedef struct {
    ccall *head, *tail;
} clist;

struct bt_fn_async {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    clist done;                /* finished calls [mu] */
    bool woken;                /* bt_fn_async_wake: the poll returns [mu] */
    bt_fn_inline_fn inline_ok; /* set before the first call */
};

/* One call, from its start to its completion's delivery. */
struct ccall {
    ccall *next, *prev;
    clist *list; /* the list k is on */
    bt_fn_client *c;
    const char *method;
    uint8_t *req; /* the framed request */
    size_t req_len, req_off;
    int64_t deadline;
    int32_t stream; /* 0: not sent yet */
    bool resent;    /* sent again once after the server refused its stream */
    /* what came back */
    int http_status;
    int grpc_status; /* -1: none yet */
    char message[1024];
    bt_grpc_reader rd;
    /* the outcome */
    int status;
    char desc[1024];
    /* whom to tell */
    bt_fn_async *q;
    bt_fn_done done;
    bt_fn_batch_done batch_done;
    size_t n; /* messages in a batch */
    void *arg;
};

struct bt_fn_client {
    char *address;
    bt_grpc_addr addr;
    char authority[300];
    char *server_name; /* TLS: the name checked (default: the host) */
    long timeout_ms;
    size_t max;
    bool wait_for_ready;
    SSL_CTX *tls;
    nghttp2_session_callbacks *cbs;
    int wake[2];
    pthread_t io;
    pthread_mutex_t mu;
    pthread_cond_t up_cv;
    bool io_started;          /* [mu] */
    bool quit;                /* [mu] */
    bool up;                  /* connected [mu] */
    int connect_waiters;      /* bt_fn_client_connect calls waiting [mu] */
    int64_t connect_deadline; /* the latest of theirs [mu] */
    clist submitted;          /* new calls for the I/O thread [mu] */
    /* The I/O thread sleeps in poll with nothing to send on a plain connection: a new call
     * is sent by its caller (send_direct), sparing the thread's wake-up [mu] */
    bool idle;
    int64_t poll_until; /* when that poll ends [mu] */
    /* the I/O thread's */
    bt_grpc_conn conn;
    bool connected, goaway;
    clist pending;      /* calls waiting to be sent (for a connection, or a GOAWAY's end) */
    clist inflight;     /* calls sent */
    int64_t next_check; /* no call's deadline is before this (0: no call) */
    int64_t retry_at;
    long retry_ms;
    char why[256];     /* why the last dial or connection failed */
    bool free_on_exit; /* freed from a callback on the I/O thread: it frees the client */
};

/* The client whose I/O thread this is (NULL on other threads). */
static __thread bt_fn_client *io_self;

static void wake(bt_fn_client *c)
{
    char b = 1;
    ssize_t w = write(c->wake[1], &b, 1);
    (void)w;
}

/* Room for the text of a failed RPC: its prefix and a call's whole desc. */
#define RPC_ERR_MAX 1100

/* Go grpc's text of a failed RPC. */
static int rpc_error(int status, const char *desc, int *code, char *err, size_t errlen)
{
    if (code)
        *code = status;
    snprintf(err, errlen, "rpc error: code = %s desc = %s", bt_fn_code_name(status), desc);
    return status == BT_FN_CODE_DEADLINE_EXCEEDED || status == BT_FN_CODE_UNAVAILABLE
               ? BT_FN_EUNAVAILABLE
               : BT_FN_EFAIL;
}

static void ccall_free(ccall *k)
{
    free(k->req);
    bt_grpc_reader_reset(&k->rd);
    free(k);
}

/* ---- the I/O thread ------------------------------------------------------------------- */

/* Appends k to l (k on no list). */
static void clist_add(clist *l, ccall *k)
{
    k->list = l;
    k->next = NULL;
    k->prev = l->tail;
    if (l->tail)
        l->tail->next = k;
    else
        l->head = k;
    l->tail = k;
}

/* Takes k off its list, if any. */
static void clist_del(ccall *k)
{
    clist *l = k->list;
    if (!l)
        return;
    if (k->prev)
        k->prev->next = k->next;
    else
        l->head = k->next;
    if (k->next)
        k->next->prev = k->prev;
    else
        l->tail = k->prev;
    k->next = k->prev = NULL;
    k->list = NULL;
}

static void async_complete(ccall *k);

static void post(bt_fn_async *q, ccall *k)
{
    pthread_mutex_lock(&q->mu);
    clist_add(&q->done, k);
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* Ends k with status (desc its text) and posts it: k leaves the I/O thread. */
static void finish(bt_fn_client *c, ccall *k, int status, const char *desc)
{
    clist_del(k);
    if (k->stream && c->conn.ng)
        nghttp2_session_set_stream_user_data(c->conn.ng, k->stream, NULL);
    k->status = status;
    snprintf(k->desc, sizeof k->desc, "%s", desc ? desc : "");
    free(k->req);
    k->req = NULL;
    bt_fn_async *q = k->q;
    /* not from send_direct on a caller's thread, which holds c->mu */
    if (k->done && q->inline_ok && io_self == c && q->inline_ok(k->arg, status == BT_FN_CODE_OK))
        async_complete(k); /* here, on the I/O thread: no wake-up of q's poller */
    else
        post(q, k);
}

static void set_up(bt_fn_client *c, bool up)
{
    pthread_mutex_lock(&c->mu);
    c->up = up;
    if (up)
        pthread_cond_broadcast(&c->up_cv);
    pthread_mutex_unlock(&c->mu);
}

/* The connection is gone: the calls on it fail as Unavailable, the others wait for the
 * next dial. */
static void conn_down(bt_fn_client *c, const char *why)
{
    snprintf(c->why, sizeof c->why, "%s", why);
    char d[320];
    snprintf(d, sizeof d, "connection to %s lost: %s", c->address, why);
    while (c->inflight.head)
        finish(c, c->inflight.head, BT_FN_CODE_UNAVAILABLE, d);
    bt_grpc_conn_close(&c->conn);
    c->connected = c->goaway = false;
    set_up(c, false);
}

/* The request's bytes, found through the stream (never a pointer nghttp2 could keep past
 * the call): a call finished meanwhile (its deadline) resets its stream. */
static ssize_t req_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    ccall *k = nghttp2_session_get_stream_user_data(ng, id);
    if (!k || !k->req)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = k->req_len - k->req_off;
    if (n > len)
        n = len;
    memcpy(buf, k->req + k->req_off, n);
    k->req_off += n;
    if (k->req_off == k->req_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static bool is(const uint8_t *p, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(p, s, n) == 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    ccall *k = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!k || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (is(name, namelen, ":status")) {
        k->http_status = 0;
        for (size_t i = 0; i < valuelen && i < 4 && value[i] >= '0' && value[i] <= '9'; i++)
            k->http_status = k->http_status * 10 + (value[i] - '0');
    } else if (is(name, namelen, "grpc-status")) {
        int s = 0;
        for (size_t i = 0; i < valuelen && i < 4 && value[i] >= '0' && value[i] <= '9'; i++)
            s = s * 10 + (value[i] - '0');
        k->grpc_status = valuelen ? s : BT_FN_CODE_UNKNOWN;
    } else if (is(name, namelen, "grpc-message")) {
        bt_grpc_pct_decode((const char *)value, valuelen, k->message, sizeof k->message);
    }
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *user)
{
    bt_fn_client *c = user;
    ccall *k = nghttp2_session_get_stream_user_data(ng, id);
    if (!k)
        return 0;
    char err[256];
    int code = bt_grpc_reader_feed(&k->rd, data, len, err, sizeof err);
    if (code) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        finish(c, k, code, err);
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    bt_fn_client *c = user;
    if (f->hd.type == NGHTTP2_GOAWAY)
        c->goaway = true; /* no new streams here: the next calls dial again */
    return 0;
}

/* gRPC's status for an HTTP status other than 200 (its protocol document's table). */
static int http_to_grpc(int http)
{
    switch (http) {
    case 400: return BT_FN_CODE_INTERNAL;
    case 401: return 16; /* Unauthenticated */
    case 403: return 7;  /* PermissionDenied */
    case 404: return BT_FN_CODE_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504: return BT_FN_CODE_UNAVAILABLE;
    default: return BT_FN_CODE_UNKNOWN;
    }
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error, void *user)
{
    bt_fn_client *c = user;
    ccall *k = nghttp2_session_get_stream_user_data(ng, id);
    if (!k)
        return 0;
    char d[300];
    if (k->grpc_status >= 0) {
        if (k->grpc_status != BT_FN_CODE_OK)
            finish(c, k, k->grpc_status, k->message);
        else if (!k->rd.received)
            finish(c, k, BT_FN_CODE_INTERNAL, "server sent no reply");
        else
            finish(c, k, BT_FN_CODE_OK, NULL);
    } else if (error == NGHTTP2_REFUSED_STREAM && !k->http_status && !k->resent) {
        /* not processed (past a GOAWAY's last stream, or over the server's streams before
         * its SETTINGS came): sent again once, on this connection or the next */
        k->resent = true;
        clist_del(k);
        clist_add(&c->pending, k);
        k->stream = 0;
        k->req_off = 0;
        bt_grpc_reader_reset(&k->rd);
        k->grpc_status = -1;
        k->message[0] = '\0';
    } else if (error == NGHTTP2_REFUSED_STREAM) {
        finish(c, k, BT_FN_CODE_UNAVAILABLE, "stream refused by the server");
    } else if (error == NGHTTP2_CANCEL && bt_now_ms() >= k->deadline) {
        finish(c, k, BT_FN_CODE_DEADLINE_EXCEEDED, "Deadline Exceeded");
    } else if (error == NGHTTP2_CANCEL) {
        finish(c, k, BT_FN_CODE_CANCELLED, "stream cancelled by the server");
    } else if (error != NGHTTP2_NO_ERROR) {
        snprintf(d, sizeof d, "stream reset by the server (HTTP/2 error %u)", error);
        finish(c, k, BT_FN_CODE_INTERNAL, d);
    } else if (k->http_status != 200) {
        snprintf(d, sizeof d, "unexpected HTTP status code %d", k->http_status);
        finish(c, k, http_to_grpc(k->http_status), d);
    } else {
        finish(c, k, BT_FN_CODE_INTERNAL, "stream closed without a grpc-status");
    }
    return 0;
}

/* The TLS handshake of a new connection, within deadline. 0, or -1 with c->why. */
static int handshake(bt_fn_client *c, int64_t deadline)
{
    for (;;) {
        int r = bt_grpc_conn_handshake(&c->conn);
        if (r != 0)
            return r < 0 ? -1 : 0;
        int64_t now = bt_now_ms();
        if (now >= deadline) {
            snprintf(c->conn.why, sizeof c->conn.why, "tls handshake timed out");
            return -1;
        }
        struct pollfd p = {.fd = c->conn.fd, .events = c->conn.hs_events};
        poll(&p, 1, bt_poll_timeout(deadline, now, 1000));
    }
}

/* Dials, and sets the HTTP/2 session up. 0, or -1 with c->why. */
static int dial(bt_fn_client *c, int64_t deadline)
{
    char err[256];
    int fd = bt_grpc_dial(&c->addr, deadline, err, sizeof err);
    if (fd < 0 ||
        bt_grpc_conn_init(&c->conn, fd, c->tls, false,
                          c->server_name ? c->server_name : c->addr.host, err, sizeof err) < 0) {
        snprintf(c->why, sizeof c->why, "%s", err);
        c->conn.fd = -1;
        return -1;
    }
    if (c->conn.ssl && handshake(c, deadline) < 0) {
        snprintf(c->why, sizeof c->why, "%s", c->conn.why);
        bt_grpc_conn_close(&c->conn);
        return -1;
    }
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW}};
    if (nghttp2_session_client_new(&c->conn.ng, c->cbs, c) != 0 ||
        nghttp2_submit_settings(c->conn.ng, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
        nghttp2_session_set_local_window_size(c->conn.ng, NGHTTP2_FLAG_NONE, 0, WINDOW * 4) != 0) {
        snprintf(c->why, sizeof c->why, "http2: cannot start a session");
        bt_grpc_conn_close(&c->conn);
        return -1;
    }
    c->connected = true;
    c->goaway = false;
    c->retry_ms = RETRY_MS;
    set_up(c, true);
    return 0;
}

/* Sends k's HEADERS and DATA on the connection. false: the connection takes no new
 * streams (k stays waiting for the next one). */
static bool send_call(bt_fn_client *c, ccall *k, int64_t now)
{
    char timeout[24];
    bt_grpc_timeout_format(k->deadline - now, timeout, sizeof timeout);
    nghttp2_nv h[] = {
        bt_grpc_nv(":method", "POST"),
        bt_grpc_nv(":scheme", c->tls ? "https" : "http"),
        bt_grpc_nv(":path", k->method),
        bt_grpc_nv(":authority", c->authority),
        bt_grpc_nv("content-type", "application/grpc"),
        bt_grpc_nv("te", "trailers"),
        bt_grpc_nv("grpc-timeout", timeout),
        bt_grpc_nv("user-agent", "baetyl-c"),
    };
    nghttp2_data_provider dp = {.read_callback = req_read};
    int32_t id = nghttp2_submit_request(c->conn.ng, NULL, h, sizeof h / sizeof h[0], &dp, k);
    if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE || id == NGHTTP2_ERR_START_STREAM_NOT_ALLOWED) {
        c->goaway = true;
        return false;
    }
    if (id < 0) {
        finish(c, k, BT_FN_CODE_INTERNAL, nghttp2_strerror(id));
        return true;
    }
    k->stream = id;
    clist_del(k);
    clist_add(&c->inflight, k);
    return true;
}

/* Takes the calls started since the last turn. Returns false when the client quits. */
static bool take_submitted(bt_fn_client *c, int *waiters, int64_t *waiter_deadline)
{
    pthread_mutex_lock(&c->mu);
    ccall *k = c->submitted.head;
    c->submitted = (clist){0};
    bool quit = c->quit;
    *waiters = c->connect_waiters;
    *waiter_deadline = c->connect_deadline;
    pthread_mutex_unlock(&c->mu);
    for (ccall *nx; k; k = nx) {
        nx = k->next;
        clist_add(&c->pending, k);
        if (!c->next_check || k->deadline < c->next_check)
            c->next_check = k->deadline;
    }
    return !quit;
}

/* Ends the calls whose deadline passed, looking only once the earliest may have; returns
 * the next time to look (0: no call). */
static int64_t expire(bt_fn_client *c, int64_t now)
{
    if (!c->next_check || now < c->next_check)
        return c->next_check;
    int64_t next = 0;
    clist *lists[] = {&c->pending, &c->inflight};
    for (int i = 0; i < 2; i++)
        for (ccall *k = lists[i]->head, *nx; k; k = nx) {
            nx = k->next;
            if (k->deadline <= now) {
                if (k->stream && c->conn.ng)
                    nghttp2_submit_rst_stream(c->conn.ng, NGHTTP2_FLAG_NONE, k->stream,
                                              NGHTTP2_CANCEL);
                finish(c, k, BT_FN_CODE_DEADLINE_EXCEEDED, "Deadline Exceeded");
            } else if (!next || k->deadline < next) {
                next = k->deadline;
            }
        }
    return c->next_check = next;
}

/* Dials for the waiting calls and connect waiters (within the earliest of their deadlines);
 * a failed dial fails the calls that do not wait for ready and is made again later. */
static void dial_for_calls(bt_fn_client *c, int waiters, int64_t waiter_deadline, int64_t now)
{
    int64_t dial_by =
        waiters > 0 && waiter_deadline < now + DIAL_MAX_MS ? waiter_deadline : now + DIAL_MAX_MS;
    for (ccall *k = c->pending.head; k; k = k->next)
        if (k->deadline < dial_by)
            dial_by = k->deadline;
    if (dial(c, dial_by) == 0)
        return;
    char d[320];
    snprintf(d, sizeof d, "connection error: %s", c->why);
    while (!c->wait_for_ready && c->pending.head)
        finish(c, c->pending.head, BT_FN_CODE_UNAVAILABLE, d);
    c->retry_at = bt_now_ms() + c->retry_ms;
    c->retry_ms =
        c->retry_ms + c->retry_ms / 2 > RETRY_MAX_MS ? RETRY_MAX_MS : c->retry_ms + c->retry_ms / 2;
}

static void client_release(bt_fn_client *c);

static void *io_main(void *p)
{
    bt_fn_client *c = p;
    io_self = c;
    c->retry_ms = RETRY_MS;
    for (;;) {
        int waiters;
        int64_t waiter_deadline;
        if (!take_submitted(c, &waiters, &waiter_deadline))
            break;
        int64_t now = bt_now_ms();
        int64_t next = expire(c, now);
        bool want = waiters > 0 || c->pending.head;
        if (c->connected && c->goaway && !nghttp2_session_want_read(c->conn.ng) &&
            !nghttp2_session_want_write(c->conn.ng))
            conn_down(c, "connection closed by the server (GOAWAY)");
        if (want && !c->connected && now >= c->retry_at) {
            dial_for_calls(c, waiters, waiter_deadline, now);
            continue; /* time has passed: look at the deadlines again */
        }
        /* in the order they were started */
        while (c->connected && !c->goaway && c->pending.head)
            if (!send_call(c, c->pending.head, now))
                break;
        if (c->connected && bt_grpc_conn_send(&c->conn) < 0) {
            conn_down(c, c->conn.why);
            continue;
        }
        if (want && !c->connected && (!next || c->retry_at < next))
            next = c->retry_at;
        struct pollfd pf[2] = {{.fd = c->wake[0], .events = POLLIN}};
        nfds_t n = 1;
        if (c->connected)
            pf[n++] = (struct pollfd){.fd = c->conn.fd, .events = bt_grpc_conn_events(&c->conn)};
        /* Idle, a call with the client's timeout ends after this poll: its caller need
         * not wake the thread to have its deadline watched. */
        int timeout = next ? bt_poll_timeout(next, now, 1000)
                           : (int)(c->timeout_ms < 60000 ? c->timeout_ms : 60000);
        bool idle =
            c->connected && !c->goaway && !c->tls && !c->pending.head && !c->conn.write_blocked;
        if (idle) {
            pthread_mutex_lock(&c->mu);
            c->idle = true;
            c->poll_until = now + timeout;
            pthread_mutex_unlock(&c->mu);
        }
        int prc = poll(pf, n, timeout);
        if (idle) {
            pthread_mutex_lock(&c->mu);
            c->idle = false;
            pthread_mutex_unlock(&c->mu);
        }
        if (prc < 0 && errno != EINTR)
            break;
        if (pf[0].revents) {
            char buf[64];
            while (read(c->wake[0], buf, sizeof buf) > 0)
                ;
        }
        if (n > 1 && pf[1].revents && bt_grpc_conn_recv(&c->conn) < 0)
            conn_down(c, c->conn.why);
    }
    if (c->free_on_exit)
        client_release(c);
    io_self = NULL;
    return NULL;
}

/* ---- the client ----------------------------------------------------------------------- */

static int tls_options(bt_fn_client *c, const bt_fn_client_options *o, char *err, size_t errlen)
{
    bool has_cert = o->cert && *o->cert, has_key = o->key && *o->key;
    bool has_ca = o->ca && *o->ca;
    if (has_cert != has_key) {
        snprintf(err, errlen, "tls: cert and key must be given together");
        return -1;
    }
    if (!has_ca && !has_cert)
        return 0;
    /* Read first: a missing file is named the way a user expects ("ca: cannot open"). */
    const char *what[] = {"ca", "cert", "key"}, *paths[] = {o->ca, o->cert, o->key};
    for (int i = 0; i < 3; i++) {
        if (!paths[i] || !*paths[i])
            continue;
        char *pem = bt_fn_read_pem(what[i], paths[i], err, errlen);
        if (!pem)
            return -1;
        free(pem);
    }
    c->tls = bt_grpc_client_tls(has_ca ? o->ca : NULL, has_cert ? o->cert : NULL,
                                has_key ? o->key : NULL, err, errlen);
    return c->tls ? 0 : -1;
}

bt_fn_client *bt_fn_client_new(const char *address, const bt_fn_client_options *o, char *err,
                               size_t errlen)
{
    bt_fn_client_options def = {0};
    if (!o)
        o = &def;
    if (!address || !*address) {
        snprintf(err, errlen, "function client: address required");
        return NULL;
    }
    size_t max = o->max_msg_size ? o->max_msg_size : BT_FN_DEFAULT_MAX_MSG_SIZE;
    if (max > INT_MAX) {
        snprintf(err, errlen, "function client: max message size %zu too large", max);
        return NULL;
    }
    bt_fn_client *c = calloc(1, sizeof *c);
    if (!c || !(c->address = strdup(address))) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->wake[0] = c->wake[1] = -1;
    c->conn.fd = -1;
    pthread_mutex_init(&c->mu, NULL);
    bt_cond_init_monotonic(&c->up_cv);
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : BT_FN_DEFAULT_TIMEOUT_MS;
    c->wait_for_ready = o->wait_for_ready;
    c->max = max;
    char why[256];
    if (bt_grpc_addr_parse(address, &c->addr, why, sizeof why) < 0) {
        snprintf(err, errlen, "function client: %s", why);
        goto fail;
    }
    if (c->addr.is_unix)
        snprintf(c->authority, sizeof c->authority, "localhost");
    else if (strchr(c->addr.host, ':'))
        snprintf(c->authority, sizeof c->authority, "[%s]:%s", c->addr.host, c->addr.port);
    else
        snprintf(c->authority, sizeof c->authority, "%s:%s", c->addr.host, c->addr.port);
    if (o->server_name && *o->server_name && !(c->server_name = strdup(o->server_name))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (tls_options(c, o, err, errlen) < 0)
        goto fail;
    if (pipe2(c->wake, O_NONBLOCK | O_CLOEXEC) < 0 || nghttp2_session_callbacks_new(&c->cbs) != 0) {
        snprintf(err, errlen, "function client: %s", strerror(errno));
        goto fail;
    }
    nghttp2_session_callbacks_set_on_header_callback(c->cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c->cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c->cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(c->cbs, on_stream_close);
    return c;
fail:
    bt_fn_client_free(c);
    return NULL;
}

void bt_fn_client_free(bt_fn_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->quit = true;
    bool started = c->io_started;
    pthread_mutex_unlock(&c->mu);
    if (io_self == c) {
        /* from a callback on its own I/O thread: it cannot join itself; it frees c as it
         * leaves, after the callback returned */
        c->free_on_exit = true;
        pthread_detach(pthread_self());
        return;
    }
    if (started) {
        wake(c);
        pthread_join(c->io, NULL);
    }
    client_release(c);
}

/* Frees what the client holds, its I/O thread gone (or never started). */
static void client_release(bt_fn_client *c)
{
    bt_grpc_conn_close(&c->conn);
    if (c->wake[0] >= 0) {
        close(c->wake[0]);
        close(c->wake[1]);
    }
    if (c->cbs)
        nghttp2_session_callbacks_del(c->cbs);
    if (c->tls)
        SSL_CTX_free(c->tls);
    pthread_cond_destroy(&c->up_cv);
    pthread_mutex_destroy(&c->mu);
    free(c->server_name);
    free(c->address);
    free(c);
}

/* Starts the I/O thread on first use (mu held). 0, or -1. */
static int io_start(bt_fn_client *c)
{
    if (c->io_started)
        return 0;
    if (bt_thread_start_quiet(&c->io, io_main, c, IO_STACK) != 0)
        return -1;
    c->io_started = true;
    return 0;
}

int bt_fn_client_connect(bt_fn_client *c, long timeout_ms, char *err, size_t errlen)
{
    long ms = timeout_ms > 0 ? timeout_ms : c->timeout_ms;
    int64_t deadline = bt_now_ms() + ms;
    struct timespec ts = bt_deadline_in(ms);
    pthread_mutex_lock(&c->mu);
    int rc = io_start(c);
    if (rc == 0) {
        c->connect_waiters++;
        if (deadline > c->connect_deadline)
            c->connect_deadline = deadline;
        wake(c);
        while (!c->up && rc == 0)
            rc = pthread_cond_timedwait(&c->up_cv, &c->mu, &ts);
        c->connect_waiters--;
    }
    bool up = c->up;
    pthread_mutex_unlock(&c->mu);
    if (up)
        return BT_FN_OK;
    snprintf(err, errlen, "connect to %s timed out after %ld ms", c->address, ms);
    return BT_FN_EUNAVAILABLE;
}

static void async_init(bt_fn_async *q)
{
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    bt_cond_init_monotonic(&q->cv);
}

/* Sends k from the caller's thread while the I/O thread sleeps in poll (c->idle, mu held;
 * the first call since it went to sleep), as the thread would: nothing started before it
 * waits, so calls go in start order. The
 * thread is woken only when it must look again: bytes left to write, a connection that
 * failed or takes no new stream, a deadline before its poll ends. false: not idle (k is
 * the thread's to send). */
static bool send_direct(bt_fn_client *c, ccall *k)
{
    if (!c->idle || c->quit || c->submitted.head)
        return false;
    int64_t now = bt_now_ms(), deadline = k->deadline;
    clist_add(&c->pending, k);
    if (!c->next_check || deadline < c->next_check)
        c->next_check = deadline;
    /* k may be finished (and freed) by send_call; false: it waits on pending */
    bool sent = send_call(c, k, now);
    /* One per sleep: the next calls go through the thread, which sends a burst's calls in
     * one write (a write per call would cost more than the wake-up). */
    c->idle = false;
    if (!sent || bt_grpc_conn_send(&c->conn) < 0 || c->conn.write_blocked ||
        deadline < c->poll_until)
        wake(c); /* the thread has things to do */
    return true;
}

/* Starts a call of method with the framed request (taken over) completing on q. 0, or -1
 * with err (request freed). A request over max completes at once with ResourceExhausted. */
static int start(bt_fn_client *c, bt_fn_async *q, const char *method, uint8_t *req, size_t req_len,
                 long timeout_ms, ccall *k, char *err, size_t errlen)
{
    k->c = c;
    k->q = q;
    k->method = method;
    k->req = req;
    k->req_len = req_len;
    k->grpc_status = -1;
    k->rd.max = c->max;
    k->deadline = bt_now_ms() + (timeout_ms > 0 ? timeout_ms : c->timeout_ms);
    if (req_len - BT_GRPC_PREFIX > c->max) {
        k->status = BT_FN_CODE_RESOURCE_EXHAUSTED;
        snprintf(k->desc, sizeof k->desc, "trying to send message larger than max (%zu vs. %zu)",
                 req_len - BT_GRPC_PREFIX, c->max);
        free(k->req);
        k->req = NULL;
        post(q, k);
        return 0;
    }
    pthread_mutex_lock(&c->mu);
    if (io_start(c) < 0) {
        pthread_mutex_unlock(&c->mu);
        snprintf(err, errlen, "cannot start the call to %s: no thread", c->address);
        ccall_free(k);
        return -1;
    }
    if (send_direct(c, k)) {
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    clist_add(&c->submitted, k);
    pthread_mutex_unlock(&c->mu);
    wake(c);
    return 0;
}

/* Starts a Call of in completing on q, with done(arg) for async calls. 0, or -1 with err. */
static int call_begin(bt_fn_client *c, bt_fn_async *q, const bt_fn_msg *in, long timeout_ms,
                      bt_fn_done done, void *arg, char *err, size_t errlen)
{
    ccall *k = calloc(1, sizeof *k);
    Baetyl__FunctionMessage pb;
    bt_fn_msg_to_pb(in, &pb);
    size_t len;
    uint8_t *req = k ? bt_fn_pb_frame(&pb.base, &len) : NULL;
    if (!req) {
        free(k);
        snprintf(err, errlen, "out of memory encoding FunctionMessage");
        return -1;
    }
    k->done = done;
    k->arg = arg;
    return start(c, q, BT_FN_METHOD, req, len, timeout_ms, k, err, errlen);
}

/* The outcome of a finished call into out (zeroed first), *code and err; frees k. */
static int call_end(ccall *k, bt_fn_msg *out, int *code, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (code)
        *code = BT_FN_CODE_UNKNOWN;
    int rc;
    if (k->status != BT_FN_CODE_OK) {
        rc = rpc_error(k->status, k->desc, code, err, errlen);
    } else {
        char derr[128];
        if (bt_fn_msg_decode(k->rd.buf, k->rd.len, out, derr, sizeof derr) < 0) {
            char desc[192];
            snprintf(desc, sizeof desc, "failed to unmarshal the reply: %s", derr);
            rc = rpc_error(BT_FN_CODE_INTERNAL, desc, code, err, errlen);
        } else {
            rc = BT_FN_OK;
            if (code)
                *code = BT_FN_CODE_OK;
        }
    }
    ccall_free(k);
    return rc;
}

/* Takes one finished call of q, waiting until ts (NULL: no limit); NULL when none came. */
static ccall *take(bt_fn_async *q, const struct timespec *ts)
{
    pthread_mutex_lock(&q->mu);
    int rc = 0;
    while (!q->done.head && !q->woken && rc == 0)
        rc = ts ? pthread_cond_timedwait(&q->cv, &q->mu, ts) : pthread_cond_wait(&q->cv, &q->mu);
    q->woken = false;
    ccall *k = q->done.head;
    if (k)
        clist_del(k);
    pthread_mutex_unlock(&q->mu);
    return k;
}

int bt_fn_call_ex(bt_fn_client *c, const bt_fn_msg *in, bt_fn_msg *out, long timeout_ms, int *code,
                  char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (code)
        *code = BT_FN_CODE_UNKNOWN;
    bt_fn_async q;
    async_init(&q);
    int rc = BT_FN_EFAIL;
    if (call_begin(c, &q, in, timeout_ms, NULL, NULL, err, errlen) == 0) {
        /* the deadline bounds this wait: the I/O thread always finishes the call */
        rc = call_end(take(&q, NULL), out, code, err, errlen);
    }
    pthread_cond_destroy(&q.cv);
    pthread_mutex_destroy(&q.mu);
    return rc;
}

int bt_fn_call(bt_fn_client *c, const bt_fn_msg *in, bt_fn_msg *out, char *err, size_t errlen)
{
    return bt_fn_call_ex(c, in, out, 0, NULL, err, errlen);
}

/* ---- asynchronous calls ---------------------------------------------------------------- */

bt_fn_async *bt_fn_async_new(void)
{
    bt_fn_async *q = malloc(sizeof *q);
    if (q)
        async_init(q);
    return q;
}

int bt_fn_call_start(bt_fn_client *c, bt_fn_async *q, const bt_fn_msg *in, long timeout_ms,
                     bt_fn_done done, void *arg, char *err, size_t errlen)
{
    return call_begin(c, q, in, timeout_ms, done, arg, err, errlen) == 0 ? BT_FN_OK : BT_FN_EFAIL;
}

int bt_fn_call_batch_start(bt_fn_client *c, bt_fn_async *q, const bt_fn_msg *const *in, size_t n,
                           long timeout_ms, bt_fn_batch_done done, void *arg, char *err,
                           size_t errlen)
{
    ccall *k = calloc(1, sizeof *k);
    Baetyl__FunctionMessage *pbs = calloc(n ? n : 1, sizeof *pbs);
    Baetyl__FunctionMessage **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    uint8_t *req = NULL;
    size_t len = 0;
    if (k && pbs && ptrs) {
        for (size_t i = 0; i < n; i++) {
            bt_fn_msg_to_pb(in[i], &pbs[i]);
            ptrs[i] = &pbs[i];
        }
        Baetyl__FunctionMessages m = BAETYL__FUNCTION_MESSAGES__INIT;
        m.n_messages = n;
        m.messages = ptrs;
        req = bt_fn_pb_frame(&m.base, &len);
    }
    free(pbs);
    free(ptrs);
    if (!req) {
        free(k);
        snprintf(err, errlen, "out of memory encoding FunctionMessages");
        return BT_FN_EFAIL;
    }
    k->batch_done = done;
    k->n = n;
    k->arg = arg;
    return start(c, q, BT_FN_METHOD_BATCH, req, len, timeout_ms, k, err, errlen) == 0 ? BT_FN_OK
                                                                                      : BT_FN_EFAIL;
}

/* The results of a finished batch into *res (calloc'd, k->n of them); rc as call_end. */
static int batch_end(ccall *k, bt_fn_result **res, int *code, char *err, size_t errlen)
{
    *res = NULL;
    *code = BT_FN_CODE_UNKNOWN;
    if (k->status != BT_FN_CODE_OK)
        return rpc_error(k->status, k->desc, code, err, errlen);
    Baetyl__FunctionResults *pb = baetyl__function_results__unpack(NULL, k->rd.len, k->rd.buf);
    if (!pb || pb->n_results != k->n) {
        char desc[128];
        snprintf(desc, sizeof desc, "failed to unmarshal the reply: %s",
                 !pb ? "invalid FunctionResults" : "not one result per message");
        if (pb)
            baetyl__function_results__free_unpacked(pb, NULL);
        return rpc_error(BT_FN_CODE_INTERNAL, desc, code, err, errlen);
    }
    bt_fn_result *r = calloc(k->n ? k->n : 1, sizeof *r);
    if (!r) {
        baetyl__function_results__free_unpacked(pb, NULL);
        return rpc_error(BT_FN_CODE_UNKNOWN, "out of memory", code, err, errlen);
    }
    for (size_t i = 0; i < k->n; i++) {
        const Baetyl__FunctionResult *x = pb->results[i];
        char e[1024], derr[128];
        r[i].code = (int)x->code;
        if (x->code == BT_FN_CODE_OK &&
            bt_fn_msg_from_pb(x->message, &r[i].msg, derr, sizeof derr) < 0) {
            char desc[192];
            snprintf(desc, sizeof desc, "failed to unmarshal the reply: %s", derr);
            rpc_error(BT_FN_CODE_INTERNAL, desc, &r[i].code, e, sizeof e);
            r[i].err = strdup(e);
        } else if (x->code != BT_FN_CODE_OK) {
            rpc_error((int)x->code, x->error ? x->error : "", NULL, e, sizeof e);
            r[i].err = strdup(e);
        }
    }
    baetyl__function_results__free_unpacked(pb, NULL);
    *res = r;
    *code = BT_FN_CODE_OK;
    return BT_FN_OK;
}

/* Runs the callback of one finished batch. */
static void batch_complete(ccall *k)
{
    bt_fn_result *res;
    int code;
    char err[RPC_ERR_MAX];
    bt_fn_batch_done done = k->batch_done;
    void *arg = k->arg;
    size_t n = k->n;
    int rc = batch_end(k, &res, &code, err, sizeof err);
    ccall_free(k);
    done(arg, rc, code, res, rc == BT_FN_OK ? n : 0, rc == BT_FN_OK ? "" : err);
    for (size_t i = 0; res && i < n; i++) {
        bt_fn_msg_clear(&res[i].msg);
        free(res[i].err);
    }
    free(res);
}

/* Runs the callback of one finished call. */
static void async_complete(ccall *k)
{
    if (k->batch_done) {
        batch_complete(k);
        return;
    }
    bt_fn_msg out;
    int code;
    char err[RPC_ERR_MAX];
    bt_fn_done done = k->done;
    void *arg = k->arg;
    int rc = call_end(k, &out, &code, err, sizeof err);
    done(arg, rc, code, &out, rc == BT_FN_OK ? "" : err);
    bt_fn_msg_clear(&out);
}

int bt_fn_async_poll(bt_fn_async *q, long timeout_ms)
{
    struct timespec ts = bt_deadline_in(timeout_ms < 0 ? 0 : timeout_ms);
    ccall *k = take(q, timeout_ms < 0 ? NULL : &ts);
    if (!k)
        return 0;
    /* then every other call already finished, without sleeping */
    pthread_mutex_lock(&q->mu);
    ccall *rest = q->done.head;
    q->done = (clist){0};
    pthread_mutex_unlock(&q->mu);
    int n = 1;
    async_complete(k);
    while (rest) {
        ccall *nx = rest->next;
        async_complete(rest);
        rest = nx;
        n++;
    }
    return n;
}

void bt_fn_async_set_inline(bt_fn_async *q, bt_fn_inline_fn fn)
{
    q->inline_ok = fn;
}

void bt_fn_async_wake(bt_fn_async *q)
{
    pthread_mutex_lock(&q->mu);
    q->woken = true;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void bt_fn_async_free(bt_fn_async *q)
{
    if (!q)
        return;
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}
