/* Growable byte buffers for connection input and output. */
#include <stdlib.h>
#include <string.h>

#include "hub.h"

uint8_t *buf_reserve(buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return b->p + b->len;
    /* Reclaim consumed space first; grow only when still short. */
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= n)
            return b->p + b->len;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2)
            return NULL;
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return NULL;
    b->p = p;
    b->cap = cap;
    return b->p + b->len;
}

int buf_append(buf *b, const void *d, size_t n)
{
    uint8_t *w = buf_reserve(b, n);
    if (!w)
        return -1;
    memcpy(w, d, n);
    b->len += n;
    return 0;
}

void buf_consume(buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len) {
        /* Idle connections keep no buffer memory. */
        buf_free(b);
    }
}

void buf_free(buf *b)
{
    free(b->p);
    b->p = NULL;
    b->off = b->len = b->cap = 0;
}
