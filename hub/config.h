/* The hub's configuration (SPEC §11), declared with the SDK schema loader. */
#ifndef HUB_CONFIG_H
#define HUB_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "baetyl/config.h"
#include "baetyl/log.h"

typedef struct {
    char *action;       /* pub | sub */
    bt_cfg_list permit; /* of char *: filters */
} hub_permission_cfg;

typedef struct {
    char *username;
    char *password;          /* NULL: certificate-only principal */
    bt_cfg_list permissions; /* of hub_permission_cfg */
} hub_principal_cfg;

typedef struct {
    char *topic;
    long qos;
} hub_topic_qos_cfg;

typedef struct {
    hub_topic_qos_cfg source, target;
} hub_route_cfg;

typedef struct {
    bt_cfg_list listen;        /* of char * */
    char *ca, *cert, *key;     /* certificate.{ca,cert,key} */
    bt_cfg_list principals;    /* of hub_principal_cfg */
    bt_cfg_list subscriptions; /* of hub_route_cfg */
    int64_t length_max;
    long in_qos0_size, in_qos1_size, in_qos1_batch;
    int64_t retention_ms, cleanup_interval_ms;
    long out_qos0_size, out_qos1_size, out_qos1_batch;
    int64_t egress_max; /* decided here: bytes waiting to be sent per connection (16m) */
    int64_t retry_interval_ms;
    long offset_size, offset_batch;
    char *storage_dir;
    bool storage_sync;      /* fsync each commit (power-loss safety); default on (SPEC §19) */
    int64_t storage_max;    /* decided here: the store's size limit ("store full" beyond; 2g) */
    long storage_count_max; /* at most this many QoS 1 messages in the log; 0 = no bound */
    char *storage_policy;   /* when full: reject-new (hold PUBACKs) | drop-oldest */
    int64_t handshake_timeout_ms; /* decided here: TLS + WebSocket handshake deadline (10s) */
    int64_t shutdown_timeout_ms;
    bool status_logging;
    int64_t status_interval_ms;
    int64_t report_interval_ms; /* decided here: how often counters go to the master (1m) */
    bt_logger_config logger;
} hub_config;

/* Loads and validates the whole hub config (listeners, principals, routes): use it with
 * bt_ctx_load_config, bt_cfg_load_string and bt_cfg_free. */
extern const bt_cfg_schema hub_config_schema;

#endif
