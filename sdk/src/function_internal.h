/* Shared between function_msg.c, function_client.c and function_server.c: bt_fn_msg <->
 * protobuf-c, gRPC's framing of an encoded message and PEM files. Not a public API. */
#ifndef BAETYL_FUNCTION_INTERNAL_H
#define BAETYL_FUNCTION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "baetyl/function.h"
#include "function.pb-c.h"

/* Largest PEM file read for TLS options. */
#define BT_FN_PEM_MAX (1 << 20)

/* A protobuf-c view of m: no copies, the strings and payload stay m's. */
void bt_fn_msg_to_pb(const bt_fn_msg *m, Baetyl__FunctionMessage *pb);
/* Copies pb (NULL: an empty message) into out (owned fields, as bt_fn_msg_decode). 0, or
 * -1 with err (a string that is not UTF-8, out of memory). */
int bt_fn_msg_from_pb(const Baetyl__FunctionMessage *pb, bt_fn_msg *out, char *err, size_t errlen);

/* The gRPC framing of m's encoding: the 5-byte prefix then the message, malloc'd (*len
 * bytes in all); NULL out of memory. */
uint8_t *bt_fn_pb_frame(const ProtobufCMessage *m, size_t *len);

/* Reads a PEM file whole into a malloc'd NUL-terminated string; NULL with err naming what
 * (e.g. "ca") and the path. */
char *bt_fn_read_pem(const char *what, const char *path, char *err, size_t errlen);

#endif
