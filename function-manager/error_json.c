/* The error JSON that replaces a function's result after its last failure (SPEC §12). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "baetyl/json.h"
#include "baetyl/util.h"
#include "fm.h"

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

/* The JSON with the first `prefix` bytes of the payload and at most errmax bytes of err;
 * a cut payload is flagged, with its whole size. NULL when out of memory. */
static char *build(const bt_fn_msg *in, const char *err, size_t prefix, size_t errmax)
{
    char *b64 = malloc(4 * ((prefix + 2) / 3) + 1);
    char *e = strndup(err ? err : "", errmax);
    if (!b64 || !e) {
        free(b64);
        free(e);
        return NULL;
    }
    b64[0] = '\0';
    if (prefix)
        EVP_EncodeBlock((unsigned char *)b64, in->payload, (int)prefix);
    json_t *fm = json_object();
    json_object_set_new(fm, "ID", json_integer((json_int_t)in->id));
    json_object_set_new(fm, "QOS", json_integer((json_int_t)in->qos));
    json_object_set_new(fm, "Topic", text(in->topic));
    json_object_set_new(fm, "Payload", json_string(b64));
    if (prefix < in->payload_len) {
        json_object_set_new(fm, "PayloadTruncated", json_true());
        json_object_set_new(fm, "PayloadSize", json_integer((json_int_t)in->payload_len));
    }
    json_object_set_new(fm, "Timestamp", json_integer((json_int_t)in->timestamp));
    json_object_set_new(fm, "FunctionName", text(in->function_name));
    json_object_set_new(fm, "FunctionInvokeID", text(in->function_invoke_id));
    free(b64);
    json_t *o = json_object();
    json_object_set_new(o, "errorMessage", text(e));
    free(e);
    /* Baetyl 1.0 traced every error through its errors package: keep the type users match. */
    json_object_set_new(o, "errorType", json_string("*errors.Err"));
    json_object_set_new(o, "functionMessage", fm);
    char *s = bt_json_dump(o);
    json_decref(o);
    return s;
}

char *fm_error_json(const bt_fn_msg *in, const char *err, size_t max, size_t *len)
{
    char *s = build(in, err, in->payload_len, SIZE_MAX);
    if (s && strlen(s) > max) {
        /* Too large to publish whole: the error text cut, then as much of the input as fits
         * (base64: 3 bytes per 4 characters); the invoke id and topic still identify it. */
        free(s);
        s = build(in, err, 0, FM_ERROR_TEXT_MAX);
        size_t base = s ? strlen(s) : 0;
        if (s && base < max && in->payload_len) {
            size_t prefix = (max - base) / 4 * 3;
            if (prefix > in->payload_len)
                prefix = in->payload_len;
            if (prefix) {
                free(s);
                s = build(in, err, prefix, FM_ERROR_TEXT_MAX);
            }
        }
    }
    if (s && len)
        *len = strlen(s);
    return s;
}
