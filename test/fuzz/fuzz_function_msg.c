/* libFuzzer target for FunctionMessage decoding (what a function server reads from any
 * client, and a client from any server): decoding must never crash or leak, and whatever
 * decodes must encode and decode again to the same message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/function.h"

static int same(const bt_fn_msg *a, const bt_fn_msg *b)
{
    return a->id == b->id && a->qos == b->qos && a->timestamp == b->timestamp &&
           !strcmp(a->topic, b->topic) && !strcmp(a->function_name, b->function_name) &&
           !strcmp(a->function_invoke_id, b->function_invoke_id) &&
           a->payload_len == b->payload_len &&
           (!a->payload_len || !memcmp(a->payload, b->payload, a->payload_len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bt_fn_msg m, again;
    char err[128];
    if (bt_fn_msg_decode(data, size, &m, err, sizeof err) < 0)
        return 0;
    uint8_t *buf;
    size_t len;
    if (bt_fn_msg_encode(&m, &buf, &len) < 0)
        abort();
    if (bt_fn_msg_decode(buf, len, &again, err, sizeof err) < 0 || !same(&m, &again))
        abort();
    free(buf);
    bt_fn_msg_clear(&m);
    bt_fn_msg_clear(&again);
    return 0;
}
