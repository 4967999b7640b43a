/* Shared between function_msg.c, function_client.c and function_server.c: gRPC byte
 * buffers <-> bt_fn_msg, the library reference count and PEM files. Not a public API. */
#ifndef BAETYL_FUNCTION_INTERNAL_H
#define BAETYL_FUNCTION_INTERNAL_H

#include <stddef.h>

#include <grpc/grpc.h>

#include "baetyl/function.h"

/* Largest PEM file read for TLS options. */
#define BT_FN_PEM_MAX (1 << 20)

/* A byte buffer holding the protobuf encoding of m (the caller destroys it), or NULL out
 * of memory. *size gets the encoded size. */
grpc_byte_buffer *bt_fn_msg_to_bb(const bt_fn_msg *m, size_t *size);
/* Decodes a received byte buffer (not destroyed) into out. 0, or -1 with err. */
int bt_fn_msg_from_bb(grpc_byte_buffer *bb, bt_fn_msg *out, char *err, size_t errlen);

/* Reads a PEM file whole into a malloc'd NUL-terminated string; NULL with err naming what
 * (e.g. "ca") and the path. */
char *bt_fn_read_pem(const char *what, const char *path, char *err, size_t errlen);

/* grpc_init, routing gRPC's log lines to the SDK log the first time; pair with
 * grpc_shutdown. */
void bt_fn_grpc_init(void);

/* A malloc'd copy of a slice as a NUL-terminated string (NULL out of memory). */
char *bt_fn_slice_str(grpc_slice s);

#endif
