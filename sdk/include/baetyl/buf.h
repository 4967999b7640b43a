/* A growable byte buffer for stream input and output (the hub's connections, the MQTT
 * client): bytes are appended at the end and consumed from the front; the consumed front is
 * reused before the buffer grows. The fast paths are inline: the hub calls them for every
 * packet. */
#ifndef BAETYL_BUF_H
#define BAETYL_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint8_t *p;
    size_t off, len, cap; /* live bytes are p[off..len); zeroed = empty, nothing allocated */
} bt_buf;

/* The slow path of bt_buf_reserve: moves the live bytes to the front, else grows the
 * buffer (doubling, from 256 bytes). NULL when out of memory. */
uint8_t *bt_buf_grow(bt_buf *b, size_t n);
/* Frees the memory; b is empty and can be used again. */
void bt_buf_free(bt_buf *b);
/* Appends n bytes and keeps a NUL byte after the live bytes (not counted in len), so that
 * (char *)p + off reads as a string, even after appending nothing. 0, or -1 when out of
 * memory. For text and replies built piece by piece. */
int bt_buf_append_nul(bt_buf *b, const void *d, size_t n);

/* Live bytes. */
static inline size_t bt_buf_size(const bt_buf *b)
{
    return b->len - b->off;
}

/* Room for n more bytes at p + len (the caller then adds what it wrote to len); NULL when
 * out of memory. */
static inline uint8_t *bt_buf_reserve(bt_buf *b, size_t n)
{
    if (b->cap - b->len >= n && b->p)
        return b->p + b->len;
    return bt_buf_grow(b, n);
}

/* Appends n bytes. 0, or -1 when out of memory. */
static inline int bt_buf_append(bt_buf *b, const void *d, size_t n)
{
    uint8_t *w = bt_buf_reserve(b, n);
    if (!w)
        return -1;
    if (n)
        memcpy(w, d, n);
    b->len += n;
    return 0;
}

/* Drops n bytes from the front; an emptied buffer starts over at its beginning and keeps
 * its memory (see bt_buf_trim). */
static inline void bt_buf_consume(bt_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

/* Frees the memory of an empty buffer whose capacity is above keep (0: any), so that idle
 * or once-large buffers do not pin memory. */
static inline void bt_buf_trim(bt_buf *b, size_t keep)
{
    if (b->off == b->len && b->cap > keep)
        bt_buf_free(b);
}

#endif
