/* libFuzzer target for the function-manager's error JSON (function-manager/error_json.c): the
 * input is split at its first two '\n' into a topic, an error text (both may hold any bytes,
 * invalid UTF-8 included: a runtime's error text is not ours) and a payload. The result must
 * always be a JSON object whose Payload decodes back to the payload bytes and whose other
 * strings are the inputs when those were valid UTF-8; with a size limit, the JSON is within
 * it or carries none of the input.
 *
 * The Makefile links the function-manager objects (all but main.o) into this target. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "../../../function-manager/fm.h"

static char *part(const uint8_t **p, size_t *n)
{
    const uint8_t *nl = memchr(*p, '\n', *n);
    size_t len = nl ? (size_t)(nl - *p) : *n;
    char *s = malloc(len + 1);
    if (!s)
        abort();
    memcpy(s, *p, len);
    s[len] = '\0';
    size_t used = nl ? len + 1 : len;
    *p += used;
    *n -= used;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    size_t n = size;
    char *topic = part(&p, &n);
    char *err = part(&p, &n);
    bt_fn_msg m = {.id = 65535,
                   .qos = 1,
                   .topic = topic,
                   .payload = (uint8_t *)p,
                   .payload_len = n,
                   .timestamp = -1,
                   .function_name = "f",
                   .function_invoke_id = "50f8f102-2b8c-4904-86df-0728811a5a4b"};
    size_t len = 0;
    char *s = fm_error_json(&m, err, SIZE_MAX, &len);
    if (!s || strlen(s) != len)
        abort();
    json_error_t je;
    json_t *o = json_loadb(s, len, 0, &je);
    if (!json_is_object(o))
        abort();
    json_t *fm = json_object_get(o, "functionMessage");
    const char *b64 = json_string_value(json_object_get(fm, "Payload"));
    if (!b64 || !json_is_string(json_object_get(o, "errorMessage")))
        abort();
    size_t blen = strlen(b64);
    unsigned char *dec = malloc(blen / 4 * 3 + 1);
    int dlen = blen ? EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)blen) : 0;
    if (dlen < 0)
        abort();
    size_t pad = blen >= 2 ? (b64[blen - 1] == '=') + (b64[blen - 2] == '=') : 0;
    if ((size_t)dlen - pad != n || (n && memcmp(dec, p, n) != 0))
        abort();
    json_t *t = json_string(topic);
    if (t && strcmp(json_string_value(json_object_get(fm, "Topic")), topic) != 0)
        abort(); /* valid UTF-8 is kept as is */
    json_decref(t);
    if (json_integer_value(json_object_get(fm, "ID")) != 65535 ||
        json_integer_value(json_object_get(fm, "Timestamp")) != -1)
        abort();
    free(dec);
    json_decref(o);
    free(s);
    /* bounded: within the limit, or (when the other fields alone are longer) without any
     * of the input */
    size_t max = 200 + (size % 1000);
    s = fm_error_json(&m, err, max, &len);
    if (!s || strlen(s) != len)
        abort();
    o = json_loadb(s, len, 0, &je);
    if (!json_is_object(o))
        abort();
    b64 = json_string_value(json_object_get(json_object_get(o, "functionMessage"), "Payload"));
    if (len > max && (!b64 || *b64))
        abort();
    json_decref(o);
    free(s);
    free(topic);
    free(err);
    return 0;
}
