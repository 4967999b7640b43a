/* The server's life (baetyl/http_server.h): a listener thread accepting connections up to
 * the limit, a detached thread per connection, and a stop that wakes them all and waits. */
#include "http_server_internal.h"

#include "baetyl/error.h"
#include "baetyl/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Sanitizers make frames several times larger. */
#if defined(__SANITIZE_ADDRESS__)
#define STACK_SCALE 4
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STACK_SCALE 4
#endif
#endif
#ifndef STACK_SCALE
#define STACK_SCALE 1
#endif
#define LISTENER_STACK ((size_t)64 << 10)

static void conn_end(bt_httpd_conn *c)
{
    bt_http_server *s = c->s;
    pthread_mutex_lock(&s->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    close(c->fd);
    if (--s->n == 0)
        pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu); /* s may be gone from here on */
    free(c);
}

/* "<server>-<role>" in ps and top (at most 15 characters). */
static void name_thread(const bt_http_server *s, const char *role)
{
    char name[16];
    snprintf(name, sizeof name, "%.8s-%.6s", s->name, role);
    pthread_setname_np(pthread_self(), name);
}

static void *conn_main(void *arg)
{
    bt_httpd_conn *c = arg;
    name_thread(c->s, "conn");
    bt_httpd_conn_serve(c);
    if (c->s->o.on_close)
        c->s->o.on_close(c->state, c->s->o.arg);
    conn_end(c);
    return NULL;
}

/* A new connection: refused at the limit or by on_accept, else served on its own thread. */
static void admit(bt_http_server *s, int fd)
{
    pthread_mutex_lock(&s->mu);
    bool full = s->n >= s->o.max_connections;
    pthread_mutex_unlock(&s->mu);
    if (full) {
        bt_logkv(BT_LOG_DEBUG, "http connection refused: connection limit", "server", s->name,
                 NULL);
        close(fd);
        return;
    }
    void *state = NULL;
    if (s->o.on_accept && !s->o.on_accept(fd, &state, s->o.arg)) {
        close(fd);
        return;
    }
    /* answers are written head then body: no Nagle wait between them (unix sockets: no-op) */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bt_httpd_conn *c = calloc(1, sizeof *c);
    if (!c) {
        if (s->o.on_close)
            s->o.on_close(state, s->o.arg);
        close(fd);
        return;
    }
    c->s = s;
    c->fd = fd;
    c->state = state;
    pthread_mutex_lock(&s->mu);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n++;
    pthread_mutex_unlock(&s->mu);
    pthread_t t;
    int e = pthread_create(&t, &s->conn_attr, conn_main, c);
    if (e != 0) {
        bt_logkv(BT_LOG_WARN, "http connection refused: no thread", "server", s->name, "error",
                 strerror(e), NULL);
        if (s->o.on_close)
            s->o.on_close(state, s->o.arg);
        conn_end(c);
    }
}

static void *listener_main(void *arg)
{
    bt_http_server *s = arg;
    name_thread(s, "listen");
    for (;;) {
        struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN},
                              {.fd = s->wake[0], .events = POLLIN}};
        int n = poll(p, 2, -1);
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0)
            continue;
        if (p[1].revents)
            break;
        int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            admit(s, fd);
        } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
            /* out of descriptors or memory: wait a little instead of spinning */
            poll(&p[1], 1, 100);
        }
    }
    return NULL;
}

int bt_http_server_start(int fd, const bt_http_server_opts *o, bt_http_server **out, char *err,
                         size_t errlen)
{
    bt_http_server *s = calloc(1, sizeof *s);
    if (!s || !o->on_request) {
        free(s);
        close(fd);
        return bt_errf(err, errlen, s ? "http server: no request handler" : "out of memory");
    }
    s->o = *o;
    snprintf(s->name, sizeof s->name, "%s", o->name ? o->name : "http");
    if (!s->o.max_connections)
        s->o.max_connections = 64;
    if (s->o.idle_timeout_ms <= 0)
        s->o.idle_timeout_ms = 10000;
    if (!s->o.max_body)
        s->o.max_body = 1u << 20;
    if (s->o.max_drop < s->o.max_body)
        s->o.max_drop = 4 * s->o.max_body;
    if (!s->o.stack_size)
        s->o.stack_size = (size_t)256 << 10;
    s->fd = fd;
    s->wake[0] = s->wake[1] = -1;
    int e = pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0 ? errno : 0;
    pthread_attr_t la;
    if (e == 0) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->idle, NULL);
        pthread_attr_init(&s->conn_attr);
        pthread_attr_setdetachstate(&s->conn_attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&s->conn_attr, s->o.stack_size * STACK_SCALE);
        pthread_attr_init(&la);
        pthread_attr_setstacksize(&la, LISTENER_STACK * STACK_SCALE);
        e = pthread_create(&s->listener, &la, listener_main, s);
        pthread_attr_destroy(&la);
        if (e != 0) {
            pthread_attr_destroy(&s->conn_attr);
            pthread_cond_destroy(&s->idle);
            pthread_mutex_destroy(&s->mu);
        }
    }
    if (e != 0) {
        for (int i = 0; i < 2; i++)
            if (s->wake[i] >= 0)
                close(s->wake[i]);
        close(fd);
        free(s);
        return bt_errf(err, errlen, "http server: %s", strerror(e));
    }
    *out = s;
    return 0;
}

void bt_http_server_stop(bt_http_server *s)
{
    if (!s)
        return;
    __atomic_store_n(&s->stopping, true, __ATOMIC_RELEASE);
    if (write(s->wake[1], "x", 1) < 0)
        bt_logkv(BT_LOG_WARN, "http server: cannot wake the listener", "server", s->name, NULL);
    pthread_join(s->listener, NULL);
    close(s->fd);
    pthread_mutex_lock(&s->mu);
    for (bt_httpd_conn *c = s->conns; c; c = c->next)
        shutdown(c->fd, SHUT_RDWR); /* its thread wakes and ends */
    while (s->n)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
    pthread_attr_destroy(&s->conn_attr);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    close(s->wake[0]);
    close(s->wake[1]);
    free(s);
}

/* ---- what handlers ask of a request ------------------------------------------------------ */

const char *bt_http_req_header(const bt_http_req *rq, const char *name)
{
    for (size_t i = 0; i < rq->nheaders; i++)
        if (!strcasecmp(rq->headers[i].name, name))
            return rq->headers[i].value;
    return NULL;
}

/* Decodes n bytes of a query component (%XX, '+' for space) into out (NUL-terminated): its
 * length, or -1. */
static long query_decode(const char *in, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++, o++) {
        if (o + 1 >= outlen)
            return -1;
        char c = in[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (n - i < 3 || !isxdigit((unsigned char)in[i + 1]) ||
                !isxdigit((unsigned char)in[i + 2]))
                return -1;
            char hex[3] = {in[i + 1], in[i + 2], '\0'};
            c = (char)strtol(hex, NULL, 16);
            if (!c)
                return -1;
            i += 2;
        }
        out[o] = c;
    }
    out[o] = '\0';
    return (long)o;
}

int bt_http_req_query(const bt_http_req *rq, const char *name, char *out, size_t outlen)
{
    for (const char *p = rq->query; p && *p;) {
        const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        char key[128];
        long kl = query_decode(p, (size_t)((eq ? eq : end) - p), key, sizeof key);
        if (kl >= 0 && !strcmp(key, name)) {
            if (!eq)
                return 0;
            return query_decode(eq + 1, (size_t)(end - eq - 1), out, outlen) < 0 ? -1 : 1;
        }
        p = amp ? amp + 1 : end;
    }
    return 0;
}

const char *bt_http_status_text(int status)
{
    static const struct {
        int code;
        const char *text;
    } t[] = {{100, "Continue"},
             {200, "OK"},
             {201, "Created"},
             {204, "No Content"},
             {400, "Bad Request"},
             {401, "Unauthorized"},
             {403, "Forbidden"},
             {404, "Not Found"},
             {405, "Method Not Allowed"},
             {408, "Request Timeout"},
             {413, "Content Too Large"},
             {414, "URI Too Long"},
             {417, "Expectation Failed"},
             {431, "Request Header Fields Too Large"},
             {500, "Internal Server Error"},
             {501, "Not Implemented"},
             {503, "Service Unavailable"},
             {505, "HTTP Version Not Supported"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].code == status)
            return t[i].text;
    return status < 300 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
}
