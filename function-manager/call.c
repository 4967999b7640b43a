/* One invocation of a function for a message (SPEC §12): the attempts (retry.max in all), the
 * size limit checked before any instance is involved, and the error JSON that replaces the
 * result after the last failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "baetyl/json.h"
#include "baetyl/util.h"
#include "fm.h"

int fm_invoke(fm_pool *p, const bt_fn_msg *in, long attempts, bt_fn_msg *out, char *err,
              size_t errlen)
{
    memset(out, 0, sizeof *out);
    const fm_function_cfg *f = fm_pool_function(p);
    size_t size = bt_fn_msg_encoded_size(in);
    if (size > (size_t)f->call.message_max) {
        /* Every attempt would fail the same way: fail once, without touching instances. */
        snprintf(err, errlen,
                 "message too large: %zu bytes (payload %zu), function (%s) accepts at most %lld "
                 "(message.length.max)",
                 size, in->payload_len, f->name, (long long)f->call.message_max);
        return -1;
    }
    if (attempts < 1)
        attempts = 1;
    for (long i = 0; i < attempts; i++) {
        int rc = fm_pool_call(p, in, out, err, errlen);
        if (rc == BT_FN_OK)
            return 0;
        if (fm_pool_closed(p))
            return -2;
    }
    return -1;
}

/* A JSON string of s; bytes of s that are not valid UTF-8 become '?' (json_string refuses
 * them, and a runtime's error text may quote anything). */
static json_t *text(const char *s)
{
    json_t *j = json_string(s ? s : "");
    if (j)
        return j;
    size_t n = strlen(s);
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = bt_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (len) {
            memcpy(c + i, s + i, len);
            i += len;
        } else {
            c[i++] = '?';
        }
    }
    c[n] = '\0';
    j = json_string(c);
    free(c);
    return j;
}

char *fm_error_json(const bt_fn_msg *in, const char *err, size_t *len)
{
    size_t n = in->payload_len;
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    if (!b64)
        return NULL;
    b64[0] = '\0';
    if (n)
        EVP_EncodeBlock((unsigned char *)b64, in->payload, (int)n);
    json_t *fm = json_object();
    json_object_set_new(fm, "ID", json_integer((json_int_t)in->id));
    json_object_set_new(fm, "QOS", json_integer((json_int_t)in->qos));
    json_object_set_new(fm, "Topic", text(in->topic));
    json_object_set_new(fm, "Payload", json_string(b64));
    json_object_set_new(fm, "Timestamp", json_integer((json_int_t)in->timestamp));
    json_object_set_new(fm, "FunctionName", text(in->function_name));
    json_object_set_new(fm, "FunctionInvokeID", text(in->function_invoke_id));
    free(b64);
    json_t *o = json_object();
    json_object_set_new(o, "errorMessage", text(err));
    /* Baetyl 1.0 traced every error through its errors package: keep the type users match. */
    json_object_set_new(o, "errorType", json_string("*errors.Err"));
    json_object_set_new(o, "functionMessage", fm);
    char *s = bt_json_dump(o);
    json_decref(o);
    if (s && len)
        *len = strlen(s);
    return s;
}
