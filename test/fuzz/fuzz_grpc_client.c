/* libFuzzer target for the function client's side of the wire (sdk/src/function_client.c,
 * grpc_transport.c, grpc_wire.c over libnghttp2): a fake server on a unix socket answers
 * each connection with the input's bytes (after an empty SETTINGS when the first byte is
 * odd) and closes it; the client's call must end with a reply or an error, never crash,
 * hang or leak, and the client must dial again for the next call. */
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "baetyl/function.h"

static bt_fn_client *client;
static int lfd = -1;
static struct sockaddr_un sa = {.sun_family = AF_UNIX};
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *reply; /* what the fake server sends [mu] */
static size_t reply_len;

static void send_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        b += w;
        n -= (size_t)w;
    }
}

/* Answers every connection with the current reply, then reads until the client closes. */
static void *fake_server(void *arg)
{
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            return NULL; /* closed at exit */
        char buf[4096];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) > 0 && read(fd, buf, sizeof buf) <= 0) {
            close(fd);
            continue;
        }
        pthread_mutex_lock(&mu);
        send_all(fd, reply, reply_len);
        pthread_mutex_unlock(&mu);
        shutdown(fd, SHUT_WR);
        while (poll(&p, 1, 2000) > 0 && read(fd, buf, sizeof buf) > 0)
            ;
        close(fd);
    }
}

static void stop(void)
{
    bt_fn_client_free(client);
    shutdown(lfd, SHUT_RDWR);
    close(lfd);
    unlink(sa.sun_path);
    free(reply);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("TMPDIR");
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/fuzz-grpc-client-%d.sock", dir ? dir : "/tmp",
             (int)getpid());
    unlink(sa.sun_path);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 16) < 0)
        abort();
    pthread_t th;
    if (pthread_create(&th, NULL, fake_server, NULL) != 0)
        abort();
    pthread_detach(th);
    char addr[128], err[256];
    snprintf(addr, sizeof addr, "unix:%s", sa.sun_path);
    bt_fn_client_options o = {.timeout_ms = 1000, .max_msg_size = 4096};
    if (!(client = bt_fn_client_new(addr, &o, err, sizeof err)))
        abort();
    atexit(stop);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    size_t pre = size && (data[0] & 1) ? sizeof settings : 0;
    size_t n = size ? size - 1 : 0;
    uint8_t *r = malloc(pre + n + 1);
    if (!r)
        return 0;
    memcpy(r, settings, pre);
    if (n)
        memcpy(r + pre, data + 1, n);
    pthread_mutex_lock(&mu);
    free(reply);
    reply = r;
    reply_len = pre + n;
    pthread_mutex_unlock(&mu);
    bt_fn_msg in = {.topic = "t", .payload = (uint8_t *)"hi", .payload_len = 2}, out;
    char err[1200];
    int code;
    int rc = bt_fn_call_ex(client, &in, &out, 0, &code, err, sizeof err);
    if (rc == BT_FN_OK)
        bt_fn_msg_clear(&out);
    else if (strncmp(err, "rpc error: code = ", 18) != 0 || out.topic || code == 0)
        abort(); /* a failure reads like Go grpc's, with its code, and leaves out zeroed */
    return 0;
}
