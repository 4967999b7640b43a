/* libFuzzer target for the master API client's reply parser (sdk/src/http_reply.c): any
 * bytes from the socket, fed whole and then cut at every split the input's first byte picks,
 * must parse the same way (status, body, a redirect's Location), never crash, never leak, and
 * never keep a body over its bound. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../sdk/src/http_reply.h"

#define MAX_BODY 4096u

/* Feeds data in pieces of `step` bytes, then the end of the connection. */
static int parse(const char *data, size_t size, size_t step, bt_http_reply *r)
{
    bt_http_reply_init(r, MAX_BODY);
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0; off += step)
        rc = bt_http_reply_feed(r, data + off, size - off < step ? size - off : step);
    if (rc == 0)
        rc = bt_http_reply_eof(r);
    if (bt_buf_size(&r->body) > MAX_BODY || (rc < 0 && !r->err[0]))
        abort();
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = data[0] % 17 + 1;
    const char *text = (const char *)data + 1;
    size--;
    bt_http_reply *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    if (!a || !b)
        abort();
    int ra = parse(text, size, size ? size : 1, a), rb = parse(text, size, step, b);
    if (ra != rb)
        abort();
    if (ra > 0 &&
        (a->status != b->status || bt_buf_size(&a->body) != bt_buf_size(&b->body) ||
         memcmp(a->body.p + a->body.off, b->body.p + b->body.off, bt_buf_size(&a->body)) != 0))
        abort();
    if (ra > 0 && (!a->location != !b->location ||
                   (a->location && (strcmp(a->location, b->location) || a->status / 100 != 3))))
        abort();
    bt_http_reply_free(a);
    bt_http_reply_free(b);
    free(a);
    free(b);
    return 0;
}
