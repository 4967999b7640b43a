/* Pieces of HTTP/1.1's grammar (RFC 9110, 9112) shared by the reply parser (http_reply.c)
 * and the request parser (http_request.c): header lines, Content-Length, Transfer-Encoding
 * and chunk sizes, each strict and bounded. */
#ifndef BT_HTTP_PARSE_H
#define BT_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A token character (field names, methods, codings). */
bool bt_http_tchar(unsigned char c);
/* Splits the header line l (n bytes, without its CRLF) into a name of *name_len bytes at l
 * and a value (spaces around it dropped) at *v of *vlen bytes. NULL, or why the line is
 * refused (a static string; *name_len is then set when the name was read). */
const char *bt_http_header_split(const char *l, size_t n, size_t *name_len, const char **v,
                                 size_t *vlen);
/* True when the name of n bytes is want, whatever the case. */
bool bt_http_name_is(const char *name, size_t n, const char *want);
/* A Content-Length value: digits only (at most 19). 0 with *len, or -1. */
int bt_http_length_value(const char *v, size_t n, uint64_t *len);
/* A Transfer-Encoding value: 1 when chunked is its last coding (after identity at most), 0
 * for identity alone, -1 for anything else (a coding nobody here can undo). */
int bt_http_te_value(const char *v, size_t n);
/* A chunk-size line "<hex>[ ][;extensions]": 0 with *size (at most 15 hex digits), or -1
 * with *too_large set when only the size was too long. */
int bt_http_chunk_size(const char *l, size_t n, uint64_t *size, bool *too_large);
/* True when the comma-separated list v (n bytes) holds the token want, whatever the case
 * (Connection: close, Expect: 100-continue). */
bool bt_http_list_has(const char *v, size_t n, const char *want);

#endif
