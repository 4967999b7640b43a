/* libFuzzer target for the function server's side of the wire (sdk/src/function_server.c,
 * grpc_transport.c, grpc_wire.c over libnghttp2): any bytes a client may send, written to a
 * real server on a unix socket (after the HTTP/2 preface and SETTINGS when the input's first
 * byte is odd), then the end of the stream: the server must read them, answer or close,
 * never crash, never leak, and keep serving. */
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "baetyl/function.h"

static bt_fn_server *srv;
static struct sockaddr_un sa = {.sun_family = AF_UNIX};

static int echo(const bt_fn_msg *in, bt_fn_msg *out, char *err, size_t errlen, void *arg)
{
    return bt_fn_msg_set_payload(out, in->payload, in->payload_len);
}

static void stop(void)
{
    bt_fn_server_stop(srv);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("TMPDIR");
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/fuzz-grpc-%d.sock", dir ? dir : "/tmp",
             (int)getpid());
    char addr[128], err[256];
    snprintf(addr, sizeof addr, "unix:%s", sa.sun_path);
    bt_fn_server_options o = {.max_msg_size = 4096, .workers = 1, .grace_ms = 100};
    if (!(srv = bt_fn_server_start(addr, &o, echo, NULL, err, sizeof err))) {
        fprintf(stderr, "fuzz_grpc_server: %s\n", err);
        abort();
    }
    atexit(stop);
    return 0;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server closed: what it read was enough */
        b += w;
        n -= (size_t)w;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    static const uint8_t settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        abort(); /* the server stopped listening */
    if (size && (data[0] & 1)) {
        send_all(fd, preface, sizeof preface - 1);
        send_all(fd, settings, sizeof settings);
    }
    if (size > 1)
        send_all(fd, data + 1, size - 1);
    shutdown(fd, SHUT_WR);
    /* the server closes once it has read the end of the stream */
    char buf[4096];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, 5000) > 0 && read(fd, buf, sizeof buf) > 0)
        ;
    close(fd);
    return 0;
}
