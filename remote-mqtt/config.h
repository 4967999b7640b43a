/* remote-mqtt's configuration (SPEC §13): the hub settings, the remote brokers and the
 * rules that pair the hub with one remote, with the client ids each rule's two clients use.
 *
 *   hub: {address: tcp://localhub:1883, username: test, password: hahaha}
 *   remotes:
 *     - {name: iothub, address: 'ssl://x.mqtt.iot.gz.baidubce.com:1884', clientid: r1, ...}
 *   rules:
 *     - hub: {clientid: h1, subscriptions: [{topic: t1, qos: 1}]}
 *       remote: {name: iothub, subscriptions: [{topic: t2, qos: 1}]}
 *
 * The subscriptions of a rule replace those of `hub:` and `remotes[]` (as in Baetyl 1.0):
 * each rule's clients subscribe to their rule's topics only. */
#ifndef REMOTE_MQTT_CONFIG_H
#define REMOTE_MQTT_CONFIG_H

#include "baetyl/config.h"
#include "baetyl/log.h"
#include "baetyl/mqtt_client.h"

/* One remote broker: a name plus the hub client settings of SPEC §17. */
typedef struct {
    char *name;
    bt_mqtt_client_config mqtt;
} rm_remote;

/* One side of a rule. `name` is set for the remote side only. */
typedef struct {
    char *name;
    char *clientid;
    bt_cfg_list subscriptions; /* of bt_mqtt_topic_info */
} rm_rule_side;

typedef struct {
    rm_rule_side hub;
    rm_rule_side remote;
} rm_rule;

typedef struct {
    bt_mqtt_client_config hub;
    bt_cfg_list remotes; /* of rm_remote */
    bt_cfg_list rules;   /* of rm_rule */
    bt_logger_config logger;
    int64_t report_interval_ms; /* status.report.interval: metrics to the master (1m) */
} rm_config;

/* Schema of rm_config; its check refuses duplicate remote names, a rule naming an unknown
 * remote, and two rules whose clients would share a client id on the same broker. */
extern const bt_cfg_schema rm_config_schema;

/* The remote named name, or NULL. */
const rm_remote *rm_config_remote(const rm_config *cfg, const char *name);
/* Client id of rule i at its remote: rule.remote.clientid, else remotes[].clientid, else the
 * remote's name (an unknown remote, which the check refuses, gives NULL). */
const char *rm_config_remote_clientid(const rm_config *cfg, size_t i);
/* Client id of rule i at the hub: rule.hub.clientid, else its remote client id. */
const char *rm_config_hub_clientid(const rm_config *cfg, size_t i);

#endif
