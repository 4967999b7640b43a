/* The function server: gRPC over HTTP/2 on nghttp2. One I/O thread runs the listener and
 * every connection (accept, TLS handshakes, HTTP/2 frames, replies); `workers` threads run
 * the handler on the requests it queues. A request is queued once its stream has ended with
 * exactly one message within max; the I/O thread stops reading from the connections while
 * the queue is full, so memory stays bounded by connections x streams x max. Calls to
 * other methods get Unimplemented, undecodable requests Internal, both answered by the I/O
 * thread without a worker. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "baetyl/log.h"
#include "baetyl/util.h"

#include "function_internal.h"
#include "grpc_transport.h"
#include "grpc_wire.h"

/* Streams a connection may open at once when `concurrent` is not set. */
#define DEFAULT_CONCURRENT 100
/* Connections served at once; more are accepted and closed at once. */
#define MAX_CONNS 1024
/* Requests queued per worker before the I/O thread stops reading. */
#define QUEUE_PER_WORKER 16
/* The flow-control window each stream and the connection open to a client: a 4 MiB request
 * flows without waiting for WINDOW_UPDATEs. */
#define WINDOW (1 << 20)
/* The I/O thread's stack; the workers keep the default one, since they run the user's
 * handler (a JSON parser recursing 2048 levels deep needs more than 1 MiB under ASan), and
 * so does an I/O thread that runs the handler itself (inline_calls). */
#define IO_STACK (128 * 1024)
#define PATH_MAX_LEN 256

typedef struct sconn sconn;

/* One call: created with its request's HEADERS, freed by the I/O thread once both its
 * stream is closed and no worker holds it. */
typedef struct sstream {
    int32_t id;
    sconn *conn;                 /* NULL once the connection is gone */
    struct sstream *prev, *next; /* the connection's streams */
    struct sstream *qnext;       /* the work queue or the done list */
    char path[PATH_MAX_LEN];     /* :path (cut) */
    bool refused;                /* answered early (size, compression, bad headers) */
    bool queued;                 /* a worker holds it: only the worker touches rd/reply */
    bool answered;               /* a response was submitted */
    atomic_bool cancelled;       /* the stream ended: a queued handler need not run */
    int64_t deadline;            /* from grpc-timeout (bt_now_ms), 0 none */
    bt_grpc_reader rd;
    /* the worker's outcome */
    int status;
    char *message;
    uint8_t *reply; /* prefix + message */
    size_t reply_len, reply_off;
} sstream;

struct sconn {
    bt_grpc_conn c;
    bt_fn_server *srv;
    sstream *streams;
    sconn *prev, *next;
    bool goaway; /* a GOAWAY was sent (stopping) */
};

struct bt_fn_server {
    bt_fn_handler handler;
    void *arg;
    size_t max_msg_size;
    long grace_ms;
    int concurrent;
    int port;
    int lfd;
    char unix_path[108];
    SSL_CTX *tls;
    nghttp2_session_callbacks *cbs;
    int wake[2]; /* the I/O thread's wakeup pipe */
    pthread_t io;
    bool io_started;
    sconn *conns;
    size_t nconns;
    int64_t next_check; /* no stream's grpc-timeout ends before this (0: none) */
    /* work queue and done list [mu] */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sstream *qhead, *qtail;
    size_t qlen, qcap;
    sstream *done;
    bool stopping;     /* bt_fn_server_stop was called [mu] */
    bool workers_exit; /* [mu] */
    bool inline_calls; /* handlers on the I/O thread, no workers */
    int nworkers;
    pthread_t *workers;
    int nstarted;
};

static void wake(bt_fn_server *s)
{
    char b = 1;
    ssize_t w = write(s->wake[1], &b, 1);
    (void)w; /* a full pipe already wakes the thread */
}

static void stream_free(sstream *st)
{
    bt_grpc_reader_reset(&st->rd);
    free(st->message);
    free(st->reply);
    free(st);
}

/* Unlinks st from its connection (I/O thread). */
static void stream_unlink(sstream *st)
{
    sconn *k = st->conn;
    if (!k)
        return;
    if (st->prev)
        st->prev->next = st->next;
    else
        k->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
    st->conn = NULL;
}

/* ---- answers (I/O thread) ------------------------------------------------------------- */

static ssize_t reply_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                          uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)user;
    sstream *st = src->ptr;
    size_t n = st->reply_len - st->reply_off;
    if (n > len)
        n = len;
    memcpy(buf, st->reply + st->reply_off, n);
    st->reply_off += n;
    if (st->reply_off == st->reply_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv tr[] = {bt_grpc_nv("grpc-status", "0")};
        if (nghttp2_submit_trailer(ng, id, tr, 1) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* Submits st's answer: the reply then status OK, or a trailers-only status. */
static void answer(sstream *st, int status, const char *message)
{
    if (st->answered || !st->conn)
        return;
    st->answered = true;
    nghttp2_session *ng = st->conn->c.ng;
    if (status == BT_FN_CODE_OK && st->reply) {
        nghttp2_nv h[] = {bt_grpc_nv(":status", "200"),
                          bt_grpc_nv("content-type", "application/grpc")};
        nghttp2_data_provider dp = {.source.ptr = st, .read_callback = reply_read};
        nghttp2_submit_response(ng, st->id, h, 2, &dp);
        return;
    }
    char code[12], text[1024];
    snprintf(code, sizeof code, "%d", status);
    bt_grpc_pct_encode(message ? message : "", text, sizeof text);
    nghttp2_nv h[] = {bt_grpc_nv(":status", "200"), bt_grpc_nv("content-type", "application/grpc"),
                      bt_grpc_nv("grpc-status", code), bt_grpc_nv("grpc-message", text)};
    nghttp2_submit_response(ng, st->id, h, text[0] ? 4 : 3, NULL);
}

/* Refuses a stream early (the request is not read further). */
static void refuse(sstream *st, int status, const char *message)
{
    st->refused = true;
    answer(st, status, message);
}

/* ---- nghttp2 callbacks (I/O thread) --------------------------------------------------- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    sconn *k = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    sstream *st = calloc(1, sizeof *st);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
    st->id = f->hd.stream_id;
    st->conn = k;
    st->rd.max = k->srv->max_msg_size;
    st->next = k->streams;
    if (k->streams)
        k->streams->prev = st;
    k->streams = st;
    nghttp2_session_set_stream_user_data(ng, st->id, st);
    return 0;
}

static bool is(const uint8_t *p, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(p, s, n) == 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    (void)user;
    sstream *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!st || st->refused || f->hd.type != NGHTTP2_HEADERS ||
        f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (is(name, namelen, ":path")) {
        size_t n = valuelen < PATH_MAX_LEN - 1 ? valuelen : PATH_MAX_LEN - 1;
        memcpy(st->path, value, n);
        st->path[n] = '\0';
    } else if (is(name, namelen, "content-type")) {
        if (valuelen < 16 || memcmp(value, "application/grpc", 16) != 0)
            refuse(st, BT_FN_CODE_INTERNAL, "content-type is not application/grpc");
    } else if (is(name, namelen, "grpc-encoding")) {
        if (!is(value, valuelen, "identity"))
            refuse(st, BT_FN_CODE_UNIMPLEMENTED, "grpc-encoding not supported");
    } else if (is(name, namelen, "grpc-timeout")) {
        int64_t ms = bt_grpc_timeout_parse((const char *)value, valuelen);
        if (ms < 0)
            refuse(st, BT_FN_CODE_INTERNAL, "invalid grpc-timeout");
        else
            st->deadline = bt_now_ms() + ms;
        bt_fn_server *s = st->conn->srv;
        if (st->deadline && (!s->next_check || st->deadline < s->next_check))
            s->next_check = st->deadline;
    }
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *user)
{
    (void)flags;
    (void)user;
    sstream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st || st->refused || st->queued)
        return 0;
    char err[256];
    int code = bt_grpc_reader_feed(&st->rd, data, len, err, sizeof err);
    if (code) {
        bt_grpc_reader_reset(&st->rd);
        refuse(st, code, err);
    }
    return 0;
}

static void enqueue(bt_fn_server *s, sstream *st)
{
    st->queued = true;
    pthread_mutex_lock(&s->mu);
    st->qnext = NULL;
    if (s->qtail)
        s->qtail->qnext = st;
    else
        s->qhead = st;
    s->qtail = st;
    s->qlen++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void serve(bt_fn_server *s, sstream *st);

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    sconn *k = user;
    if ((f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    sstream *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!st || st->refused || st->queued)
        return 0;
    char err[256], msg[PATH_MAX_LEN + 32];
    bool call = strcmp(st->path, BT_FN_METHOD) == 0;
    bool batch = strcmp(st->path, BT_FN_METHOD_BATCH) == 0;
    if (!call && !batch) {
        snprintf(msg, sizeof msg, "unknown method %s", st->path);
        refuse(st, BT_FN_CODE_UNIMPLEMENTED, msg);
        return 0;
    }
    int code = bt_grpc_reader_finish(&st->rd, err, sizeof err);
    if (code) {
        refuse(st, code, err);
        return 0;
    }
    if (k->srv->inline_calls) {
        serve(k->srv, st);
        answer(st, st->status, st->message);
        return 0;
    }
    enqueue(k->srv, st);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    (void)code;
    (void)user;
    sstream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    stream_unlink(st);
    if (st->queued)
        atomic_store(&st->cancelled, true); /* the worker hands it back; freed then */
    else
        stream_free(st);
    return 0;
}

/* ---- connections (I/O thread) --------------------------------------------------------- */

static void conn_free(bt_fn_server *s, sconn *k)
{
    for (sstream *st = k->streams, *nx; st; st = nx) {
        nx = st->next;
        st->conn = NULL;
        st->prev = st->next = NULL;
        if (st->queued)
            atomic_store(&st->cancelled, true);
        else
            stream_free(st);
    }
    k->streams = NULL;
    bt_grpc_conn_close(&k->c);
    if (k->prev)
        k->prev->next = k->next;
    else
        s->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    s->nconns--;
    free(k);
}

/* The session and the SETTINGS opening it, once TLS (if any) is up. */
static int conn_start(bt_fn_server *s, sconn *k)
{
    if (nghttp2_session_server_new(&k->c.ng, s->cbs, k) != 0)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)s->concurrent},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW},
    };
    if (nghttp2_submit_settings(k->c.ng, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
        nghttp2_session_set_local_window_size(k->c.ng, NGHTTP2_FLAG_NONE, 0, WINDOW * 4) != 0)
        return -1;
    if (s->stopping) { /* accepted as the server stops: tell it at once */
        nghttp2_submit_goaway(k->c.ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
        k->goaway = true;
    }
    return 0;
}

static void do_accept(bt_fn_server *s)
{
    for (int i = 0; i < 16; i++) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (s->nconns >= MAX_CONNS) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sconn *k = calloc(1, sizeof *k);
        char err[256];
        if (!k) {
            close(fd);
            continue;
        }
        if (bt_grpc_conn_init(&k->c, fd, s->tls, true, NULL, err, sizeof err) < 0) {
            bt_logkv(BT_LOG_DEBUG, "function server: connection refused", "error", err, NULL);
            free(k);
            continue;
        }
        k->srv = s;
        k->next = s->conns;
        if (s->conns)
            s->conns->prev = k;
        s->conns = k;
        s->nconns++;
        if (!k->c.handshaking && conn_start(s, k) < 0)
            conn_free(s, k);
    }
}

/* Serves what poll said about k; false when k must be closed. */
static bool conn_io(bt_fn_server *s, sconn *k, short rev)
{
    if (k->c.handshaking) {
        int r = bt_grpc_conn_handshake(&k->c);
        if (r < 0) {
            bt_logkv(BT_LOG_DEBUG, "function server: TLS handshake failed", "error", k->c.why,
                     NULL);
            return false;
        }
        if (r == 0 || conn_start(s, k) < 0)
            return r == 0;
    }
    if ((rev & (POLLIN | POLLHUP | POLLERR)) && bt_grpc_conn_recv(&k->c) < 0)
        return false;
    return true;
}

/* Sends what is pending on k; false when k must be closed (failed, or done). */
static bool conn_flush(sconn *k)
{
    if (k->c.handshaking || !k->c.ng)
        return true;
    if (bt_grpc_conn_send(&k->c) < 0)
        return false;
    return nghttp2_session_want_read(k->c.ng) || nghttp2_session_want_write(k->c.ng) ||
           k->c.write_blocked;
}

/* Answers the streams the workers are done with. */
static void take_done(bt_fn_server *s)
{
    pthread_mutex_lock(&s->mu);
    sstream *d = s->done;
    s->done = NULL;
    pthread_mutex_unlock(&s->mu);
    while (d) {
        sstream *st = d;
        d = d->qnext;
        st->queued = false;
        if (!st->conn) { /* its stream or connection closed meanwhile */
            stream_free(st);
            continue;
        }
        answer(st, st->status, st->message);
    }
}

/* Ends the calls whose grpc-timeout passed (DeadlineExceeded; a handler still running is
 * not waited for); returns the next deadline (0 none). */
static int64_t expire(bt_fn_server *s, int64_t now)
{
    if (!s->next_check || now < s->next_check)
        return s->next_check; /* looked at only once the earliest may have passed */
    int64_t next = 0;
    for (sconn *k = s->conns; k; k = k->next)
        for (sstream *st = k->streams; st; st = st->next) {
            if (!st->deadline || st->answered)
                continue;
            if (st->deadline <= now) {
                /* the client gives up now too: tell it why rather than reset the stream,
                 * which it could read as a cancel before its own deadline fires */
                atomic_store(&st->cancelled, true);
                answer(st, BT_FN_CODE_DEADLINE_EXCEEDED, "Deadline Exceeded");
            } else if (!next || st->deadline < next) {
                next = st->deadline;
            }
        }
    return s->next_check = next;
}

/* Stopping: GOAWAY to every connection (once), and at the end of the grace a reset of
 * every stream still open. */
static void stop_conns(bt_fn_server *s, bool cancel)
{
    for (sconn *k = s->conns; k; k = k->next) {
        if (!k->c.ng)
            continue;
        if (!k->goaway) {
            k->goaway = true;
            nghttp2_submit_goaway(k->c.ng, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(k->c.ng),
                                  NGHTTP2_NO_ERROR, NULL, 0);
        }
        if (cancel)
            for (sstream *st = k->streams; st; st = st->next) {
                atomic_store(&st->cancelled, true);
                nghttp2_submit_rst_stream(k->c.ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
            }
    }
}

static void *io_main(void *p)
{
    bt_fn_server *s = p;
    struct pollfd *pf = malloc((MAX_CONNS + 2) * sizeof *pf);
    sconn **pk = malloc((MAX_CONNS + 2) * sizeof *pk);
    int64_t stop_at = 0;
    bool cancelled = false;
    if (!pf || !pk) {
        bt_logf(BT_LOG_ERROR, "function server: out of memory");
        goto out;
    }
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool stopping = s->stopping, full = !s->inline_calls && s->qlen >= s->qcap;
        pthread_mutex_unlock(&s->mu);
        take_done(s);
        int64_t now = bt_now_ms();
        if (stopping && !stop_at) {
            stop_at = now + s->grace_ms;
            if (s->lfd >= 0) {
                close(s->lfd);
                s->lfd = -1;
            }
            stop_conns(s, false);
        }
        if (stopping && !cancelled && now >= stop_at) {
            cancelled = true;
            stop_conns(s, true);
        }
        int64_t next = expire(s, now);
        for (sconn *k = s->conns, *nx; k; k = nx) {
            nx = k->next;
            /* stopping: a connection still in its TLS handshake has no call to wait for */
            if ((stopping && !k->c.ng) || !conn_flush(k))
                conn_free(s, k);
        }
        if (stopping && (!s->conns || cancelled))
            break;
        int n = 0;
        pf[n++] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
        if (s->lfd >= 0)
            pf[n++] = (struct pollfd){.fd = s->lfd, .events = full ? 0 : POLLIN};
        int first = n;
        for (sconn *k = s->conns; k; k = k->next) {
            short ev = bt_grpc_conn_events(&k->c);
            if (full && !k->c.handshaking)
                ev &= (short)~POLLIN; /* the workers catch up first */
            pk[n] = k;
            pf[n++] = (struct pollfd){.fd = k->c.fd, .events = ev};
        }
        int64_t until = next;
        if (stopping && !cancelled && (!until || stop_at < until))
            until = stop_at;
        int timeout =
            until ? (int)(until > now ? (until - now < 1000 ? until - now : 1000) : 0) : -1;
        if (poll(pf, (nfds_t)n, timeout) < 0 && errno != EINTR)
            break;
        if (pf[0].revents) {
            char buf[64];
            while (read(s->wake[0], buf, sizeof buf) > 0)
                ;
        }
        if (s->lfd >= 0 && first == 2 && (pf[1].revents & POLLIN))
            do_accept(s);
        for (int i = first; i < n; i++)
            if (pf[i].revents && !conn_io(s, pk[i], pf[i].revents))
                conn_free(s, pk[i]);
    }
out:
    while (s->conns)
        conn_free(s, s->conns);
    free(pf);
    free(pk);
    return NULL;
}

/* ---- workers -------------------------------------------------------------------------- */

/* Runs the handler on one decoded request: 0 with *out (owned fields) of encoded size
 * *size, or the gRPC status code with err (*out zeroed). */
static int run_one(bt_fn_server *s, const bt_fn_msg *in, bt_fn_msg *out, size_t *size, char *err,
                   size_t errlen)
{
    /* out starts as the request without its payload (see bt_fn_handler). */
    if (bt_fn_msg_copy(out, in) < 0 || bt_fn_msg_set_payload(out, NULL, 0) < 0) {
        bt_fn_msg_clear(out);
        snprintf(err, errlen, "out of memory");
        return BT_FN_CODE_RESOURCE_EXHAUSTED;
    }
    *err = '\0';
    if (s->handler(in, out, err, errlen, s->arg) < 0) {
        bt_fn_msg_clear(out);
        if (!*err)
            snprintf(err, errlen, "function failed");
        return BT_FN_CODE_UNKNOWN;
    }
    *size = bt_fn_msg_encoded_size(out);
    if (*size > s->max_msg_size) {
        bt_fn_msg_clear(out);
        snprintf(err, errlen, "reply larger than max (%zu vs. %zu)", *size, s->max_msg_size);
        return BT_FN_CODE_RESOURCE_EXHAUSTED;
    }
    return BT_FN_CODE_OK;
}

/* Sets the stream's outcome: the encoding of m as reply, or status and text. */
static void set_outcome(sstream *st, const ProtobufCMessage *m, int status, const char *text)
{
    if (status == BT_FN_CODE_OK) {
        st->reply = bt_fn_pb_frame(m, &st->reply_len);
        if (!st->reply) {
            status = BT_FN_CODE_RESOURCE_EXHAUSTED;
            text = "out of memory";
        }
    }
    st->status = status;
    if (status != BT_FN_CODE_OK)
        st->message = strdup(text ? text : "");
}

static void serve_call(bt_fn_server *s, sstream *st)
{
    bt_fn_msg in, out;
    char err[1024] = "", derr[128];
    if (bt_fn_msg_decode(st->rd.buf, st->rd.len, &in, derr, sizeof derr) < 0) {
        snprintf(err, sizeof err, "error unmarshalling request: %s", derr);
        set_outcome(st, NULL, BT_FN_CODE_INTERNAL, err);
        return;
    }
    size_t size;
    int code = run_one(s, &in, &out, &size, err, sizeof err);
    bt_fn_msg_clear(&in);
    if (code != BT_FN_CODE_OK) {
        set_outcome(st, NULL, code, err);
        return;
    }
    Baetyl__FunctionMessage pb;
    bt_fn_msg_to_pb(&out, &pb);
    set_outcome(st, &pb.base, BT_FN_CODE_OK, NULL);
    bt_fn_msg_clear(&out);
}

/* Bytes a length-delimited field of `len` bytes adds to its message: tag, length, value. */
static size_t field_size(size_t len)
{
    size_t n = 2; /* the tag, and the first byte of the length */
    for (size_t v = len >> 7; v; v >>= 7)
        n++;
    return n + len;
}

/* A failed message's text in a batch's reply is cut to this, so that room can be kept for
 * the results still to come: BATCH_ERR_COST bytes each at most. */
#define BATCH_ERR_TEXT_MAX 512
#define BATCH_ERR_COST (BATCH_ERR_TEXT_MAX + 16)

/* What serve_batch keeps per message until the reply is encoded. */
typedef struct {
    Baetyl__FunctionResult r;
    Baetyl__FunctionMessage pb; /* a view of out */
    bt_fn_msg out;
    char *text;
} batch_entry;

/* CallBatch: the handler on each message in turn, each with its own result. A reply that
 * would take the batch's reply over max (keeping room for a failure of each message still
 * to come) is not kept (Aborted: the caller calls that message again); the first one
 * always is, or fails alone as Call would. */
static void serve_batch(bt_fn_server *s, sstream *st)
{
    Baetyl__FunctionMessages *pb = baetyl__function_messages__unpack(NULL, st->rd.len, st->rd.buf);
    if (!pb) {
        set_outcome(st, NULL, BT_FN_CODE_INTERNAL,
                    "error unmarshalling request: invalid FunctionMessages");
        return;
    }
    size_t n = pb->n_messages;
    batch_entry *es = calloc(n ? n : 1, sizeof *es);
    Baetyl__FunctionResult **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (!es || !ptrs) {
        free(es);
        free(ptrs);
        baetyl__function_messages__free_unpacked(pb, NULL);
        set_outcome(st, NULL, BT_FN_CODE_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        batch_entry *e = &es[i];
        baetyl__function_result__init(&e->r);
        ptrs[i] = &e->r;
        bt_fn_msg in;
        char err[1024] = "", derr[128];
        size_t size = 0;
        int code;
        if (bt_fn_msg_from_pb(pb->messages[i], &in, derr, sizeof derr) < 0) {
            snprintf(err, sizeof err, "error unmarshalling request: %s", derr);
            code = BT_FN_CODE_INTERNAL;
        } else {
            code = run_one(s, &in, &e->out, &size, err, sizeof err);
            bt_fn_msg_clear(&in);
        }
        /* a result's code 0 and empty error take no bytes */
        size_t add = field_size(field_size(size));
        size_t room = (n - i - 1) * BATCH_ERR_COST;
        if (code == BT_FN_CODE_OK && i > 0 && total + add + room > s->max_msg_size) {
            bt_fn_msg_clear(&e->out);
            code = BT_FN_CODE_ABORTED;
            snprintf(err, sizeof err, "the batch's reply is full: call again");
        }
        if (code == BT_FN_CODE_OK) {
            bt_fn_msg_to_pb(&e->out, &e->pb);
            e->r.message = &e->pb;
            total += add;
        } else {
            e->r.code = (uint32_t)code;
            err[BATCH_ERR_TEXT_MAX] = '\0';
            e->text = strdup(err);
            e->r.error = e->text ? e->text : (char *)"out of memory";
            total += field_size(field_size(strlen(e->r.error)) + 2);
        }
    }
    baetyl__function_messages__free_unpacked(pb, NULL);
    Baetyl__FunctionResults out = BAETYL__FUNCTION_RESULTS__INIT;
    out.n_results = n;
    out.results = ptrs;
    set_outcome(st, &out.base, BT_FN_CODE_OK, NULL);
    for (size_t i = 0; i < n; i++) {
        bt_fn_msg_clear(&es[i].out);
        free(es[i].text);
    }
    free(es);
    free(ptrs);
}

/* Runs the handler on a complete request (a worker, or the I/O thread with inline_calls);
 * its outcome goes to st->status and st->message. */
static void serve(bt_fn_server *s, sstream *st)
{
    if (strcmp(st->path, BT_FN_METHOD_BATCH) == 0)
        serve_batch(s, st);
    else
        serve_call(s, st);
    bt_grpc_reader_reset(&st->rd);
}

static void *worker_main(void *p)
{
    bt_fn_server *s = p;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->qhead && !s->workers_exit)
            pthread_cond_wait(&s->cv, &s->mu);
        sstream *st = s->qhead;
        if (!st)
            break;
        s->qhead = st->qnext;
        if (!s->qhead)
            s->qtail = NULL;
        bool was_full = s->qlen-- >= s->qcap;
        pthread_mutex_unlock(&s->mu);
        if (was_full)
            wake(s); /* the I/O thread reads again */
        if (!atomic_load(&st->cancelled))
            serve(s, st);
        else
            bt_grpc_reader_reset(&st->rd);
        pthread_mutex_lock(&s->mu);
        st->qnext = s->done;
        s->done = st;
        pthread_mutex_unlock(&s->mu);
        wake(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------------- */

static void server_free(bt_fn_server *s)
{
    /* what the workers handed back after the I/O thread left */
    while (s->done) {
        sstream *st = s->done;
        s->done = st->qnext;
        stream_free(st);
    }
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->unix_path[0])
        unlink(s->unix_path);
    if (s->wake[0] >= 0) {
        close(s->wake[0]);
        close(s->wake[1]);
    }
    if (s->cbs)
        nghttp2_session_callbacks_del(s->cbs);
    if (s->tls)
        SSL_CTX_free(s->tls);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->workers);
    free(s);
}

static int tls_options(bt_fn_server *s, const bt_fn_server_options *o, char *err, size_t errlen)
{
    bool has_cert = o->cert && *o->cert, has_key = o->key && *o->key;
    bool has_ca = o->ca && *o->ca;
    if (has_cert != has_key || (has_ca && !has_cert)) {
        snprintf(err, errlen, "tls: the server needs cert and key%s",
                 has_ca ? " (ca only verifies clients)" : "");
        return -1;
    }
    if (!has_cert)
        return 0;
    /* Read first: a missing file is named the way a user expects ("cert: cannot open"). */
    const char *what[] = {"ca", "cert", "key"}, *paths[] = {o->ca, o->cert, o->key};
    for (int i = has_ca ? 0 : 1; i < 3; i++) {
        char *pem = bt_fn_read_pem(what[i], paths[i], err, errlen);
        if (!pem)
            return -1;
        free(pem);
    }
    s->tls = bt_grpc_server_tls(o->cert, o->key, has_ca ? o->ca : NULL, err, errlen);
    return s->tls ? 0 : -1;
}

bt_fn_server *bt_fn_server_start(const char *address, const bt_fn_server_options *o,
                                 bt_fn_handler handler, void *arg, char *err, size_t errlen)
{
    bt_fn_server_options def = {0};
    if (!o)
        o = &def;
    if (!address || !*address || !handler) {
        snprintf(err, errlen, "function server: %s required", handler ? "address" : "handler");
        return NULL;
    }
    size_t max = o->max_msg_size ? o->max_msg_size : BT_FN_DEFAULT_MAX_MSG_SIZE;
    if (max > INT_MAX) {
        snprintf(err, errlen, "function server: max message size %zu too large", max);
        return NULL;
    }
    int nw = o->inline_calls ? 0 : o->workers > 0 ? o->workers : BT_FN_DEFAULT_WORKERS;
    if (nw > 1024) {
        snprintf(err, errlen, "function server: %d workers is too many (max 1024)", nw);
        return NULL;
    }
    bt_grpc_addr a;
    char why[256];
    if (bt_grpc_addr_parse(address, &a, why, sizeof why) < 0) {
        snprintf(err, errlen, "function server: cannot listen on %s: %s", address, why);
        return NULL;
    }
    bt_fn_server *s = calloc(1, sizeof *s);
    pthread_t *ws = calloc(nw ? (size_t)nw : 1, sizeof *ws);
    if (!s || !ws) {
        free(s);
        free(ws);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->lfd = s->wake[0] = s->wake[1] = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->workers = ws;
    s->nworkers = nw;
    s->handler = handler;
    s->arg = arg;
    s->max_msg_size = max;
    s->grace_ms = o->grace_ms > 0 ? o->grace_ms : BT_FN_DEFAULT_GRACE_MS;
    s->concurrent = o->concurrent > 0 ? o->concurrent : DEFAULT_CONCURRENT;
    s->qcap = (size_t)nw * QUEUE_PER_WORKER;
    s->inline_calls = o->inline_calls;
    if (tls_options(s, o, err, errlen) < 0)
        goto fail;
    if (pipe2(s->wake, O_NONBLOCK | O_CLOEXEC) < 0 || nghttp2_session_callbacks_new(&s->cbs) != 0) {
        snprintf(err, errlen, "function server: %s", strerror(errno));
        goto fail;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(s->cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(s->cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(s->cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(s->cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(s->cbs, on_stream_close);
    if ((s->lfd = bt_grpc_listen(&a, &s->port, why, sizeof why)) < 0) {
        snprintf(err, errlen, "function server: %s", why);
        goto fail;
    }
    if (a.is_unix)
        snprintf(s->unix_path, sizeof s->unix_path, "%s", a.path);
    for (int i = 0; i < nw; i++) {
        if (bt_thread_start_quiet(&ws[i], worker_main, s, 0) != 0)
            break;
        s->nstarted++;
    }
    if (s->nstarted < nw ||
        bt_thread_start_quiet(&s->io, io_main, s, s->inline_calls ? 0 : IO_STACK) != 0) {
        snprintf(err, errlen, "function server: cannot start threads");
        bt_fn_server_stop(s);
        return NULL;
    }
    s->io_started = true;
    return s;
fail:
    server_free(s);
    return NULL;
}

int bt_fn_server_port(const bt_fn_server *s)
{
    return s->port;
}

void bt_fn_server_stop(bt_fn_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_mutex_unlock(&s->mu);
    if (s->io_started) {
        wake(s);
        pthread_join(s->io, NULL);
    }
    /* The queue's streams are cancelled (their connections are gone): the workers hand
     * them back without running the handler, and finish the handlers still running. */
    pthread_mutex_lock(&s->mu);
    s->workers_exit = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nstarted; i++)
        pthread_join(s->workers[i], NULL);
    server_free(s);
}
