/* FunctionMessage: the plain C struct <-> protobuf-c (generated from proto/function.proto)
 * <-> gRPC framed bytes, plus the small helpers client and server share. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
