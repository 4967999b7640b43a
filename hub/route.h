/* Static routes (`subscriptions`, SPEC §11 Routes): validation at start-up and the QoS rule. */
#ifndef HUB_ROUTE_H
#define HUB_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Checks every route: source a valid filter, target a valid name, no duplicate, no cycle. */
int hub_routes_validate(const bt_cfg_list *routes, char *err, size_t errlen);

/* QoS of the routed copy of a message of QoS q: 0 if min(q, source.qos) is 0, else target.qos. */
uint8_t hub_route_qos(const hub_route_cfg *r, uint8_t q);

#endif
