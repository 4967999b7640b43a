/* gRPC over HTTP/2, the parts that are plain bytes and text (no I/O): the 5-byte message
 * prefix read back from DATA frames, the grpc-timeout header and grpc-message's percent
 * encoding. Shared by the function client and server; fuzzed (test/fuzz/fuzz_grpc_wire.c).
 * Not a public API. */
#ifndef BT_GRPC_WIRE_H
#define BT_GRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_GRPC_PREFIX 5 /* compressed flag (1 byte), length (4 bytes, big endian) */

/* One unary message reassembled from a stream's DATA: its buffer is allocated once the
 * prefix has told a length within max, and grows with the bytes that come (a peer that
 * announces 4 MiB and sends nothing costs a few KiB). */
typedef struct {
    uint8_t hdr[BT_GRPC_PREFIX];
    size_t hlen;    /* prefix bytes seen */
    uint8_t *buf;   /* the message (malloc'd, cap bytes; NULL before the prefix) */
    size_t len;     /* the message's length from the prefix */
    size_t got;     /* message bytes seen */
    size_t cap;     /* bytes allocated */
    size_t max;     /* largest message accepted */
    bool received;  /* prefix and message complete */
    bool too_large; /* what failed: for the "received message larger than max" text */
} bt_grpc_reader;

/* Takes n more bytes of the stream. 0, or the gRPC status code refusing the stream with
 * err: ResourceExhausted (over max), Internal (compressed, a second message, out of memory).
 * After a failure the reader must not be fed again. */
int bt_grpc_reader_feed(bt_grpc_reader *r, const uint8_t *p, size_t n, char *err, size_t errlen);
/* At the end of the stream: 0 when exactly one message came, else Internal with err. */
int bt_grpc_reader_finish(const bt_grpc_reader *r, char *err, size_t errlen);
/* Frees the message and zeroes the reader but keeps max. */
void bt_grpc_reader_reset(bt_grpc_reader *r);

/* Writes the prefix of an uncompressed message of len bytes. */
void bt_grpc_prefix(uint8_t out[BT_GRPC_PREFIX], uint32_t len);

/* grpc-timeout ("1-8 digits" then H, M, S, m, u or n) in milliseconds, rounded up; -1 when
 * malformed. */
int64_t bt_grpc_timeout_parse(const char *v, size_t n);
/* Formats ms (> 0) as a grpc-timeout value into out (at least 12 bytes). */
void bt_grpc_timeout_format(int64_t ms, char *out, size_t outlen);

/* grpc-message's percent encoding of s (bytes outside ' '..'~' and '%' as %XX) into out,
 * cut at a whole escape when out is too small. Returns the length written. */
size_t bt_grpc_pct_encode(const char *s, char *out, size_t outlen);
/* Decodes n bytes of a grpc-message into out (NUL-terminated, cut to fit); a malformed
 * escape is kept as is, as gRPC does. */
void bt_grpc_pct_decode(const char *v, size_t n, char *out, size_t outlen);

#endif
