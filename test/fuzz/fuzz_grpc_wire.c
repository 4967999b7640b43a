/* libFuzzer target for the gRPC framing the function server and client read from any peer
 * (sdk/src/grpc_wire.c): a stream's DATA, cut at the splits the input's first byte picks,
 * must give the same outcome as fed whole (one message within the bound, or a refusal),
 * never allocate over the bound, never crash or leak; grpc-timeout and grpc-message values
 * must parse without reading past their length, and percent-encoding must round-trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../sdk/src/grpc_wire.h"

#define MAX_MSG 4096u

/* Feeds data in pieces of step bytes; returns the status (0: a whole message). */
static int feed(const uint8_t *data, size_t size, size_t step, bt_grpc_reader *r)
{
    char err[256];
    memset(r, 0, sizeof *r);
    r->max = MAX_MSG;
    int code = 0;
    for (size_t off = 0; off < size && code == 0; off += step)
        code = bt_grpc_reader_feed(r, data + off, size - off < step ? size - off : step, err,
                                   sizeof err);
    if (code == 0)
        code = bt_grpc_reader_finish(r, err, sizeof err);
    return code;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = (size_t)(data[0] % 17) + 1;
    data++;
    size--;
    bt_grpc_reader whole, cut;
    int a = feed(data, size, size ? size : 1, &whole);
    int b = feed(data, size, step, &cut);
    if (a != b)
        abort();
    if (a == 0) {
        if (whole.len > MAX_MSG || whole.len != size - BT_GRPC_PREFIX ||
            memcmp(whole.buf, data + BT_GRPC_PREFIX, whole.len) != 0 || cut.len != whole.len ||
            memcmp(cut.buf, whole.buf, whole.len) != 0)
            abort();
    }
    bt_grpc_reader_reset(&whole);
    bt_grpc_reader_reset(&cut);

    int64_t ms = bt_grpc_timeout_parse((const char *)data, size);
    if (ms >= 0) {
        char v[24];
        bt_grpc_timeout_format(ms ? ms : 1, v, sizeof v);
        if (bt_grpc_timeout_parse(v, strlen(v)) < (ms ? ms : 1))
            abort();
    }

    /* grpc-message: decode anything; encode a C string and decode it back */
    char dec[512], enc[1600], back[600];
    bt_grpc_pct_decode((const char *)data, size, dec, sizeof dec);
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    size_t slen = strlen(s);
    size_t n = bt_grpc_pct_encode(s, enc, sizeof enc);
    if (n >= sizeof enc || strlen(enc) != n)
        abort();
    bt_grpc_pct_decode(enc, n, back, sizeof back);
    if (slen < 500 && strcmp(back, s) != 0)
        abort();
    free(s);
    return 0;
}
