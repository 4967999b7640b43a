/* The SDK's gRPC function client and server as a command, for the interop tests against
 * Python grpcio (test/integration/test_function_grpc.py).
 *
 *   function_tool serve --address A [--prefix P] [--fail MSG] [--sleep MS] [--workers N]
 *                       [--max-size N] [--grace MS] [--cert F --key F [--ca F]]
 *       Prints "port N" once listening, serves until SIGTERM/SIGINT, then stops gracefully
 *       and exits 0. The handler echoes the request with P prepended to the payload, or
 *       fails with MSG, after sleeping MS.
 *
 *   function_tool call --address A [--payload S | --payload-file F | --payload-size N]
 *                      [--id N] [--qos N] [--topic T] [--timestamp N] [--name S]
 *                      [--invoke-id S] [--timeout MS] [--max-size N] [--wait]
 *                      [--ca F] [--cert F --key F] [--server-name S]
 *                      [--threads N --count N]
 *       Prints the reply as one JSON line (Payload in base64, ID as a decimal string) and
 *       exits 0; on failure prints "code=<grpc code> <error>" on stderr and exits 1, or 2 when
 *       the peer is unavailable or the deadline passed. With --threads, every thread makes
 *       --count calls on one shared client and checks each echo; prints "ok=X failed=Y". */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "baetyl/function.h"

typedef struct {
    const char *address, *prefix, *fail, *payload, *payload_file, *topic, *name, *invoke_id;
    const char *ca, *cert, *key, *server_name;
    long sleep_ms, timeout_ms, grace_ms, payload_size;
    long workers, threads, count;
    unsigned long long id, qos, max_size;
    long long timestamp;
    int wait;
} args;

static int usage(void)
{
    fprintf(stderr, "usage: function_tool serve|call --address A [options] (see the source)\n");
    return 64;
}

static int parse_args(int argc, char **argv, args *a)
{
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--wait")) {
            a->wait = 1;
            continue;
        }
        if (!v || strncmp(k, "--", 2) != 0)
            return -1;
        i++;
#define S(name, field)      \
    if (!strcmp(k, name)) { \
        a->field = v;       \
        continue;           \
    }
#define L(name, field)                  \
    if (!strcmp(k, name)) {             \
        a->field = strtol(v, NULL, 10); \
        continue;                       \
    }
        S("--address", address);
        S("--prefix", prefix);
        S("--fail", fail);
        S("--payload", payload);
        S("--payload-file", payload_file);
        S("--topic", topic);
        S("--name", name);
        S("--invoke-id", invoke_id);
        S("--ca", ca);
        S("--cert", cert);
        S("--key", key);
        S("--server-name", server_name);
        L("--sleep", sleep_ms);
        L("--timeout", timeout_ms);
        L("--grace", grace_ms);
        L("--payload-size", payload_size);
        L("--workers", workers);
        L("--threads", threads);
        L("--count", count);
#undef S
#undef L
        if (!strcmp(k, "--id")) {
            a->id = strtoull(v, NULL, 10);
            continue;
        }
        if (!strcmp(k, "--qos")) {
            a->qos = strtoull(v, NULL, 10);
            continue;
        }
        if (!strcmp(k, "--max-size")) {
            a->max_size = strtoull(v, NULL, 10);
            continue;
        }
        if (!strcmp(k, "--timestamp")) {
            a->timestamp = strtoll(v, NULL, 10);
            continue;
        }
        return -1;
    }
    return a->address ? 0 : -1;
}

/* ---- serve ---------------------------------------------------------------------------- */

static int handler(const bt_fn_msg *in, bt_fn_msg *out, char *err, size_t errlen, void *arg)
{
    const args *a = arg;
    if (a->sleep_ms > 0) {
        struct timespec ts = {a->sleep_ms / 1000, (a->sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (a->fail) {
        snprintf(err, errlen, "%s", a->fail);
        return -1;
    }
    size_t pl = a->prefix ? strlen(a->prefix) : 0;
    uint8_t *p = malloc(pl + in->payload_len + 1);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (pl)
        memcpy(p, a->prefix, pl);
    if (in->payload_len)
        memcpy(p + pl, in->payload, in->payload_len);
    int rc = bt_fn_msg_set_payload(out, p, pl + in->payload_len);
    free(p);
    return rc;
}

static int serve(args *a)
{
    /* Blocked before the server starts (its own threads block every signal), so the signal
     * reaches sigwait below. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    bt_fn_server_options o = {
        .max_msg_size = a->max_size,
        .workers = (int)a->workers,
        .grace_ms = a->grace_ms,
        .cert = a->cert,
        .key = a->key,
        .ca = a->ca,
    };
    char err[512];
    bt_fn_server *s = bt_fn_server_start(a->address, &o, handler, a, err, sizeof err);
    if (!s) {
        fprintf(stderr, "function_tool: %s\n", err);
        return 1;
    }
    printf("port %d\n", bt_fn_server_port(s));
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    bt_fn_server_stop(s);
    fprintf(stderr, "function_tool: stopped\n");
    return 0;
}

/* ---- call ----------------------------------------------------------------------------- */

static char *b64(const uint8_t *p, size_t n)
{
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    if (o)
        EVP_EncodeBlock((unsigned char *)o, p, (int)n);
    return o;
}

/* A JSON string of s, or null when s is not valid UTF-8. */
static char *jstr(const char *s)
{
    json_t *j = json_string(s ? s : "");
    char *o = j ? json_dumps(j, JSON_ENCODE_ANY) : strdup("null");
    json_decref(j);
    return o;
}

static void print_msg(const bt_fn_msg *m)
{
    char *p = b64(m->payload, m->payload_len);
    char *t = jstr(m->topic), *n = jstr(m->function_name), *i = jstr(m->function_invoke_id);
    printf("{\"ID\":\"%" PRIu64 "\",\"QOS\":%" PRIu32 ",\"Topic\":%s,\"Payload\":\"%s\","
           "\"Timestamp\":%" PRId64 ",\"FunctionName\":%s,\"FunctionInvokeID\":%s}\n",
           m->id, m->qos, t, p ? p : "", m->timestamp, n, i);
    free(p);
    free(t);
    free(n);
    free(i);
}

static uint8_t *load_payload(const args *a, size_t *len)
{
    if (a->payload_file) {
        FILE *f = fopen(a->payload_file, "rb");
        if (!f)
            return NULL;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
        if (p && n > 0 && fread(p, 1, (size_t)n, f) != (size_t)n) {
            free(p);
            p = NULL;
        }
        fclose(f);
        *len = n > 0 ? (size_t)n : 0;
        return p;
    }
    if (a->payload_size > 0) {
        uint8_t *p = malloc((size_t)a->payload_size);
        for (long i = 0; p && i < a->payload_size; i++)
            p[i] = (uint8_t)(i * 31 + 7);
        *len = (size_t)a->payload_size;
        return p;
    }
    const char *s = a->payload ? a->payload : "";
    *len = strlen(s);
    return (uint8_t *)strdup(s);
}

typedef struct {
    bt_fn_client *c;
    int thread;
    long count, ok;
    char err[512];
} caller;

static void *call_many(void *p)
{
    caller *k = p;
    for (long i = 0; i < k->count; i++) {
        char payload[64];
        int n = snprintf(payload, sizeof payload, "{\"thread\":%d,\"i\":%ld}", k->thread, i);
        bt_fn_msg in = {.id = (uint64_t)i,
                        .topic = "t",
                        .payload = (uint8_t *)payload,
                        .payload_len = (size_t)n},
                  out;
        if (bt_fn_call(k->c, &in, &out, k->err, sizeof k->err) == BT_FN_OK &&
            out.payload_len >= (size_t)n &&
            !memcmp(out.payload + out.payload_len - (size_t)n, payload, (size_t)n))
            k->ok++;
        bt_fn_msg_clear(&out);
    }
    return NULL;
}

static int call(args *a)
{
    bt_fn_client_options o = {
        .timeout_ms = a->timeout_ms,
        .max_msg_size = a->max_size,
        .ca = a->ca,
        .cert = a->cert,
        .key = a->key,
        .server_name = a->server_name,
        .wait_for_ready = a->wait,
    };
    char err[1024];
    bt_fn_client *c = bt_fn_client_new(a->address, &o, err, sizeof err);
    if (!c) {
        fprintf(stderr, "function_tool: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (a->threads > 0) {
        long nt = a->threads > 64 ? 64 : a->threads;
        caller ks[64];
        pthread_t th[64];
        for (long i = 0; i < nt; i++) {
            ks[i] = (caller){.c = c, .thread = (int)i, .count = a->count > 0 ? a->count : 1};
            pthread_create(&th[i], NULL, call_many, &ks[i]);
        }
        long ok = 0, failed = 0;
        for (long i = 0; i < nt; i++) {
            pthread_join(th[i], NULL);
            ok += ks[i].ok;
            failed += ks[i].count - ks[i].ok;
            if (ks[i].count != ks[i].ok)
                fprintf(stderr, "function_tool: thread %ld: %s\n", i, ks[i].err);
        }
        printf("ok=%ld failed=%ld\n", ok, failed);
        rc = failed ? 1 : 0;
    } else {
        size_t len = 0;
        uint8_t *payload = load_payload(a, &len);
        if (!payload) {
            fprintf(stderr, "function_tool: cannot load the payload\n");
            bt_fn_client_free(c);
            return 1;
        }
        bt_fn_msg in =
                      {
                          .id = a->id,
                          .qos = (uint32_t)a->qos,
                          .topic = (char *)a->topic,
                          .payload = payload,
                          .payload_len = len,
                          .timestamp = a->timestamp,
                          .function_name = (char *)a->name,
                          .function_invoke_id = (char *)a->invoke_id,
                      },
                  out;
        int code = -1;
        int r = bt_fn_call_ex(c, &in, &out, 0, &code, err, sizeof err);
        if (r == BT_FN_OK) {
            print_msg(&out);
            bt_fn_msg_clear(&out);
        } else {
            fprintf(stderr, "code=%d %s\n", code, err);
            rc = r == BT_FN_EUNAVAILABLE ? 2 : 1;
        }
        free(payload);
    }
    bt_fn_client_free(c);
    return rc;
}

int main(int argc, char **argv)
{
    args a = {0};
    if (argc < 2 || parse_args(argc, argv, &a) < 0)
        return usage();
    if (!strcmp(argv[1], "serve"))
        return serve(&a);
    if (!strcmp(argv[1], "call"))
        return call(&a);
    return usage();
}
