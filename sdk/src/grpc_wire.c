/* gRPC's message prefix, grpc-timeout and grpc-message encoding (grpc_wire.h), as the gRPC
 * over HTTP/2 protocol document describes them. */
#include "grpc_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/function.h"

/* A message's first allocation; larger ones grow as their bytes come. */
#define FIRST_ALLOC (64 * 1024)

int bt_grpc_reader_feed(bt_grpc_reader *r, const uint8_t *p, size_t n, char *err, size_t errlen)
{
    while (n > 0) {
        if (r->received) {
            snprintf(err, errlen, "more than one message in a unary call");
            return BT_FN_CODE_INTERNAL;
        }
        if (r->hlen < BT_GRPC_PREFIX) {
            size_t k = BT_GRPC_PREFIX - r->hlen < n ? BT_GRPC_PREFIX - r->hlen : n;
            memcpy(r->hdr + r->hlen, p, k);
            r->hlen += k;
            p += k;
            n -= k;
            if (r->hlen < BT_GRPC_PREFIX)
                return 0;
            if (r->hdr[0] != 0) {
                /* no grpc-encoding is ever agreed on: a compressed message cannot be read */
                snprintf(err, errlen, "compressed message (flag %u) without an encoding",
                         r->hdr[0]);
                return BT_FN_CODE_INTERNAL;
            }
            r->len = (size_t)r->hdr[1] << 24 | (size_t)r->hdr[2] << 16 | (size_t)r->hdr[3] << 8 |
                     r->hdr[4];
            if (r->len > r->max) {
                r->too_large = true;
                snprintf(err, errlen, "received message larger than max (%zu vs. %zu)", r->len,
                         r->max);
                return BT_FN_CODE_RESOURCE_EXHAUSTED;
            }
            r->cap = r->len < FIRST_ALLOC ? r->len : FIRST_ALLOC;
            if (!(r->buf = malloc(r->cap ? r->cap : 1))) {
                snprintf(err, errlen, "out of memory for a message of %zu bytes", r->len);
                return BT_FN_CODE_INTERNAL;
            }
        }
        size_t k = r->len - r->got < n ? r->len - r->got : n;
        if (r->got + k > r->cap) {
            size_t cap = r->cap * 2 < r->got + k ? r->got + k : r->cap * 2;
            if (cap > r->len)
                cap = r->len;
            uint8_t *b = realloc(r->buf, cap);
            if (!b) {
                snprintf(err, errlen, "out of memory for a message of %zu bytes", r->len);
                return BT_FN_CODE_INTERNAL;
            }
            r->buf = b;
            r->cap = cap;
        }
        if (k)
            memcpy(r->buf + r->got, p, k);
        r->got += k;
        p += k;
        n -= k;
        if (r->got == r->len)
            r->received = true;
    }
    return 0;
}

int bt_grpc_reader_finish(const bt_grpc_reader *r, char *err, size_t errlen)
{
    if (r->received)
        return 0;
    if (r->hlen == 0)
        snprintf(err, errlen, "no request message");
    else
        snprintf(err, errlen, "message cut short (%zu of %zu bytes)", r->got, r->len);
    return BT_FN_CODE_INTERNAL;
}

void bt_grpc_reader_reset(bt_grpc_reader *r)
{
    size_t max = r->max;
    free(r->buf);
    memset(r, 0, sizeof *r);
    r->max = max;
}

void bt_grpc_prefix(uint8_t out[BT_GRPC_PREFIX], uint32_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

int64_t bt_grpc_timeout_parse(const char *v, size_t n)
{
    if (n < 2 || n > 9)
        return -1;
    int64_t x = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    switch (v[n - 1]) {
    case 'H': return x * 3600000;
    case 'M': return x * 60000;
    case 'S': return x * 1000;
    case 'm': return x;
    case 'u': return (x + 999) / 1000;
    case 'n': return (x + 999999) / 1000000;
    default: return -1;
    }
}

void bt_grpc_timeout_format(int64_t ms, char *out, size_t outlen)
{
    if (ms < 1)
        ms = 1;
    if (ms < 100000000)
        snprintf(out, outlen, "%lldm", (long long)ms);
    else if (ms / 1000 < 100000000)
        snprintf(out, outlen, "%lldS", (long long)((ms + 999) / 1000));
    else
        snprintf(out, outlen, "%lldH",
                 (long long)(ms / 3600000 + 1 < 99999999 ? ms / 3600000 + 1 : 99999999));
}

size_t bt_grpc_pct_encode(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (!outlen)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = c >= ' ' && c <= '~' && c != '%';
        if (o + (plain ? 1 : 3) >= outlen)
            break;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void bt_grpc_pct_decode(const char *v, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    if (!outlen)
        return;
    for (size_t i = 0; i < n && o + 1 < outlen; i++) {
        int hi, lo;
        if (v[i] == '%' && i + 2 < n && (hi = hexval(v[i + 1])) >= 0 &&
            (lo = hexval(v[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = v[i];
        }
    }
    out[o] = '\0';
}
