/* The `server:` section shared by every module that serves functions over gRPC (SPEC §12):
 * the runtimes (`server {address, workers.max, concurrent.max, message.length.max, ca, cert,
 * key}`) and the function-manager's optional server; and the settings of a function's
 * caller (`message.length.max`, `backoff.max`, `timeout` of the function-manager's and
 * video-infer's `functions[]`). One schema each, loaded by config.h. */
#ifndef BAETYL_FUNCTION_CONFIG_H
#define BAETYL_FUNCTION_CONFIG_H

#include <stdint.h>

#include "baetyl/config.h"
#include "baetyl/function.h"

typedef struct {
    char *address;       /* "host:port", "tcp://host:port" or "unix:/path"; NULL = absent */
    long workers;        /* workers.max: calls handled at once (4, 1..1024) */
    long concurrent;     /* concurrent.max: streams per connection (0 = 100) */
    int64_t message_max; /* message.length.max: bytes, both ways (4m) */
    char *ca;            /* TLS: ca also requires and verifies client certificates; */
    char *cert;          /* cert and key go together, and ca needs them */
    char *key;
} bt_fn_server_config;

/* Schema of bt_fn_server_config, for BT_FIELD(…, BT_CFG_STRUCT, .sub = &bt_fn_server_schema). */
extern const bt_cfg_schema bt_fn_server_schema;

/* The bt_fn_server_start options of a loaded section (grace period: the default). */
bt_fn_server_options bt_fn_server_config_options(const bt_fn_server_config *c);
/* The address to listen on: address without a "tcp://" prefix. */
const char *bt_fn_listen_address(const char *address);

/* How a module calls a function: inline in an entry of its `functions:` list. */
typedef struct {
    int64_t message_max; /* message.length.max: bytes, both ways (4m, 64..2^31-1) */
    int64_t backoff_max; /* backoff.max: ms, longest wait between failed starts (1m, 0..24h) */
    int64_t timeout;     /* ms: dial and call deadline (30s, 1ms..24h) */
} bt_fn_client_config;

/* Schema of bt_fn_client_config, for BT_FIELD(…, BT_CFG_STRUCT, .flags = BT_CFG_INLINE,
 * .sub = &bt_fn_client_schema). */
extern const bt_cfg_schema bt_fn_client_schema;

/* The bt_fn_client_new options of a loaded entry (deadline and size limit; no TLS). */
bt_fn_client_options bt_fn_client_config_options(const bt_fn_client_config *c);

#endif
