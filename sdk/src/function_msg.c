/* FunctionMessage: the plain C struct <-> protobuf-c (generated from proto/function.proto)
 * <-> gRPC byte buffers, plus the small helpers client and server share. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/support/log.h>

#include "baetyl/log.h"
#include "baetyl/mqtt_codec.h"

#include "function.pb-c.h"
#include "function_internal.h"
#include "grpc_wire.h"

void bt_fn_msg_clear(bt_fn_msg *m)
{
    if (!m)
        return;
    free(m->topic);
    free(m->payload);
    free(m->function_name);
    free(m->function_invoke_id);
    memset(m, 0, sizeof *m);
}

int bt_fn_msg_set_str(char **field, const char *s)
{
    char *c = NULL;
    if (s && !(c = strdup(s)))
        return -1;
    free(*field);
    *field = c;
    return 0;
}

int bt_fn_msg_set_payload(bt_fn_msg *m, const void *p, size_t n)
{
    /* One spare NUL byte so a text payload can be read as a C string. */
    uint8_t *c = malloc(n + 1);
    if (!c)
        return -1;
    if (n)
        memcpy(c, p, n);
    c[n] = '\0';
    free(m->payload);
    m->payload = c;
    m->payload_len = n;
    return 0;
}

int bt_fn_msg_copy(bt_fn_msg *dst, const bt_fn_msg *src)
{
    memset(dst, 0, sizeof *dst);
    dst->id = src->id;
    dst->qos = src->qos;
    dst->timestamp = src->timestamp;
    if (bt_fn_msg_set_str(&dst->topic, src->topic) < 0 ||
        bt_fn_msg_set_str(&dst->function_name, src->function_name) < 0 ||
        bt_fn_msg_set_str(&dst->function_invoke_id, src->function_invoke_id) < 0 ||
        bt_fn_msg_set_payload(dst, src->payload, src->payload_len) < 0) {
        bt_fn_msg_clear(dst);
        return -1;
    }
    return 0;
}

void bt_fn_msg_to_pb(const bt_fn_msg *m, Baetyl__FunctionMessage *pb)
{
    baetyl__function_message__init(pb);
    pb->id = m->id;
    pb->qos = m->qos;
    pb->topic = m->topic ? m->topic : (char *)"";
    pb->payload.data = m->payload;
    pb->payload.len = m->payload ? m->payload_len : 0;
    pb->timestamp = m->timestamp;
    pb->functionname = m->function_name ? m->function_name : (char *)"";
    pb->functioninvokeid = m->function_invoke_id ? m->function_invoke_id : (char *)"";
}

size_t bt_fn_msg_encoded_size(const bt_fn_msg *m)
{
    Baetyl__FunctionMessage pb;
    bt_fn_msg_to_pb(m, &pb);
    return baetyl__function_message__get_packed_size(&pb);
}

int bt_fn_msg_encode(const bt_fn_msg *m, uint8_t **buf, size_t *len)
{
    Baetyl__FunctionMessage pb;
    bt_fn_msg_to_pb(m, &pb);
    size_t n = baetyl__function_message__get_packed_size(&pb);
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return -1;
    if (baetyl__function_message__pack(&pb, b) != n) {
        free(b);
        return -1;
    }
    *buf = b;
    *len = n;
    return 0;
}

int bt_fn_msg_from_pb(const Baetyl__FunctionMessage *pb, bt_fn_msg *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    static const Baetyl__FunctionMessage empty = BAETYL__FUNCTION_MESSAGE__INIT;
    if (!pb)
        pb = &empty;
    /* proto3 strings are UTF-8; Go and Python peers refuse anything else, so do we (a
     * string holding U+0000 is cut there: protobuf-c keeps no length for strings). */
    const char *names[] = {"Topic", "FunctionName", "FunctionInvokeID"};
    const char *strs[] = {pb->topic, pb->functionname, pb->functioninvokeid};
    for (int i = 0; i < 3; i++) {
        if (strs[i] && bt_mqtt_utf8_check(strs[i], strlen(strs[i])) != 0) {
            snprintf(err, errlen, "invalid FunctionMessage: %s is not valid UTF-8", names[i]);
            return -1;
        }
    }
    out->id = pb->id;
    out->qos = pb->qos;
    out->timestamp = pb->timestamp;
    /* Strings are never NULL in a decoded message: absent fields become "". */
    if (bt_fn_msg_set_str(&out->topic, pb->topic ? pb->topic : "") < 0 ||
        bt_fn_msg_set_str(&out->function_name, pb->functionname ? pb->functionname : "") < 0 ||
        bt_fn_msg_set_str(&out->function_invoke_id,
                          pb->functioninvokeid ? pb->functioninvokeid : "") < 0 ||
        bt_fn_msg_set_payload(out, pb->payload.data, pb->payload.data ? pb->payload.len : 0) < 0) {
        bt_fn_msg_clear(out);
        snprintf(err, errlen, "out of memory decoding FunctionMessage");
        return -1;
    }
    return 0;
}

int bt_fn_msg_decode(const uint8_t *buf, size_t len, bt_fn_msg *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    Baetyl__FunctionMessage *pb = baetyl__function_message__unpack(NULL, len, buf);
    if (!pb) {
        snprintf(err, errlen, "invalid FunctionMessage (%zu bytes)", len);
        return -1;
    }
    int rc = bt_fn_msg_from_pb(pb, out, err, errlen);
    baetyl__function_message__free_unpacked(pb, NULL);
    return rc;
}

uint8_t *bt_fn_pb_frame(const ProtobufCMessage *m, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > UINT32_MAX)
        return NULL;
    uint8_t *buf = malloc(BT_GRPC_PREFIX + n);
    if (!buf)
        return NULL;
    bt_grpc_prefix(buf, (uint32_t)n);
    if (protobuf_c_message_pack(m, buf + BT_GRPC_PREFIX) != n) {
        free(buf);
        return NULL;
    }
    *len = BT_GRPC_PREFIX + n;
    return buf;
}

grpc_byte_buffer *bt_fn_pb_to_bb(const ProtobufCMessage *m, size_t *size)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return NULL;
    if (protobuf_c_message_pack(m, buf) != len) {
        free(buf);
        return NULL;
    }
    *size = len;
    /* The slice takes the buffer over: a 4 MiB payload is not copied once more. */
    grpc_slice s = len ? grpc_slice_new(buf, len, free) : grpc_empty_slice();
    if (!len)
        free(buf);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

ProtobufCMessage *bt_fn_pb_from_bb(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}

grpc_byte_buffer *bt_fn_msg_to_bb(const bt_fn_msg *m, size_t *size)
{
    Baetyl__FunctionMessage pb;
    bt_fn_msg_to_pb(m, &pb);
    return bt_fn_pb_to_bb(&pb.base, size);
}

int bt_fn_msg_from_bb(grpc_byte_buffer *bb, bt_fn_msg *out, char *err, size_t errlen)
{
    grpc_byte_buffer_reader r;
    memset(out, 0, sizeof *out);
    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        snprintf(err, errlen, "cannot read the received message");
        return -1;
    }
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    int rc = bt_fn_msg_decode(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), out, err, errlen);
    grpc_slice_unref(s);
    return rc;
}

const char *bt_fn_code_name(int code)
{
    /* Go grpc's codes.Code.String(), so error texts read like Baetyl 1.0's. */
    static const char *const names[] = {
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    };
    static __thread char other[24];
    if (code >= 0 && (size_t)code < sizeof names / sizeof names[0])
        return names[code];
    snprintf(other, sizeof other, "Code(%d)", code);
    return other;
}

char *bt_fn_read_pem(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open %s: %s", what, path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(BT_FN_PEM_MAX + 1);
    size_t n = buf ? fread(buf, 1, BT_FN_PEM_MAX + 1, f) : 0;
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad || n == 0 || n > BT_FN_PEM_MAX) {
        snprintf(err, errlen, "%s: cannot read %s: %s", what, path,
                 !buf     ? "out of memory"
                 : n == 0 ? "empty or unreadable file"
                          : "larger than 1 MiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

char *bt_fn_slice_str(grpc_slice s)
{
    size_t n = GRPC_SLICE_LENGTH(s);
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    memcpy(c, GRPC_SLICE_START_PTR(s), n);
    c[n] = '\0';
    return c;
}

/* gRPC's own diagnostics (bind failures, TLS handshakes…) go to the module's log rather
 * than raw to stderr. Its errors become warnings: whatever fails for the caller is also
 * reported through err. */
static void grpc_log(gpr_log_func_args *a)
{
    bt_log_level l = a->severity == GPR_LOG_SEVERITY_ERROR ? BT_LOG_WARN : BT_LOG_DEBUG;
    if (bt_log_enabled(l))
        bt_logkv(l, a->message, "source", "grpc", NULL);
}

static void set_log(void)
{
    gpr_set_log_function(grpc_log);
    /* Resolve names with getaddrinfo (hosts file, docker's DNS) rather than c-ares:
     * Debian's c-ares 1.18.1 leaks the name on every resolution of "localhost". Read by
     * gRPC at its first init; a value set by the user is kept. */
    setenv("GRPC_DNS_RESOLVER", "native", 0);
}

void bt_fn_grpc_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, set_log);
    grpc_init();
}
