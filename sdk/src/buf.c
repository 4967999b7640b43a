/* The slow paths of the byte buffer (baetyl/buf.h). */
#include "baetyl/buf.h"

#include <stdlib.h>

uint8_t *bt_buf_grow(bt_buf *b, size_t n)
{
    if (b->off == b->len)
        b->off = b->len = 0;
    if (b->cap - b->len >= n && b->p)
        return b->p + b->len;
    /* Reclaim consumed space first; grow only when still short. */
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= n)
            return b->p + b->len;
    }
    if (n > SIZE_MAX / 2 - b->len)
        return NULL;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return NULL;
    b->p = p;
    b->cap = cap;
    return b->p + b->len;
}

int bt_buf_append_nul(bt_buf *b, const void *d, size_t n)
{
    if (n == SIZE_MAX)
        return -1;
    uint8_t *w = bt_buf_reserve(b, n + 1);
    if (!w)
        return -1;
    if (n)
        memcpy(w, d, n);
    w[n] = '\0';
    b->len += n;
    return 0;
}

void bt_buf_free(bt_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->off = b->len = b->cap = 0;
}
