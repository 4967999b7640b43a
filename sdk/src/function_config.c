/* The `server:` section of function servers and the settings of function callers
 * (baetyl/function_config.h). */
#include "baetyl/function_config.h"

#include <stddef.h>
#include <string.h>

#include "baetyl/error.h"

static int server_check(void *obj, char *err, size_t errlen)
{
    const bt_fn_server_config *s = obj;
    if (!s->cert != !s->key)
        return bt_errf(err, errlen, "cert and key must be given together");
    if (s->ca && !s->cert)
        return bt_errf(err, errlen, "ca needs cert and key");
    return 0;
}

static const bt_cfg_field server_fields[] = {
    BT_FIELD(bt_fn_server_config, address, "address", BT_CFG_STRING),
    BT_FIELD(bt_fn_server_config, workers, "workers.max", BT_CFG_INT, .def = "4",
             .flags = BT_CFG_RANGE, .min = 1, .max = 1024),
    /* 0: 100 streams per connection (bt_fn_server_options) */
    BT_FIELD(bt_fn_server_config, concurrent, "concurrent.max", BT_CFG_INT, .def = "0",
             .flags = BT_CFG_RANGE, .min = 0, .max = 1000000),
    /* The limits fit an int, as other gRPC implementations take them. */
    BT_FIELD(bt_fn_server_config, message_max, "message.length.max", BT_CFG_SIZE, .def = "4m",
             .flags = BT_CFG_RANGE, .min = 1, .max = 2147483647),
    BT_FIELD(bt_fn_server_config, ca, "ca", BT_CFG_STRING),
    BT_FIELD(bt_fn_server_config, cert, "cert", BT_CFG_STRING),
    BT_FIELD(bt_fn_server_config, key, "key", BT_CFG_STRING),
    {0}};
const bt_cfg_schema bt_fn_server_schema = {sizeof(bt_fn_server_config), server_fields,
                                           server_check};

bt_fn_server_options bt_fn_server_config_options(const bt_fn_server_config *c)
{
    return (bt_fn_server_options){
        .max_msg_size = (size_t)c->message_max,
        .workers = (int)c->workers,
        .concurrent = (int)c->concurrent,
        .cert = c->cert,
        .key = c->key,
        .ca = c->ca,
    };
}

const char *bt_fn_listen_address(const char *address)
{
    return address && strncmp(address, "tcp://", 6) == 0 ? address + 6 : address;
}

/* The limits fit an int (as other gRPC implementations take them); below 64 bytes not even
 * the message's fields fit. */
static const bt_cfg_field client_fields[] = {
    BT_FIELD(bt_fn_client_config, message_max, "message.length.max", BT_CFG_SIZE, .def = "4m",
             .flags = BT_CFG_RANGE, .min = 64, .max = 2147483647),
    BT_FIELD(bt_fn_client_config, backoff_max, "backoff.max", BT_CFG_DURATION, .def = "1m",
             .flags = BT_CFG_RANGE, .min = 0, .max = 86400000),
    BT_FIELD(bt_fn_client_config, timeout, "timeout", BT_CFG_DURATION, .def = "30s",
             .flags = BT_CFG_RANGE, .min = 1, .max = 86400000),
    {0}};
const bt_cfg_schema bt_fn_client_schema = {sizeof(bt_fn_client_config), client_fields, NULL};

bt_fn_client_options bt_fn_client_config_options(const bt_fn_client_config *c)
{
    return (bt_fn_client_options){
        .timeout_ms = (long)c->timeout,
        .max_msg_size = (size_t)c->message_max,
    };
}
