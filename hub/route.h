/* Static routes (`subscriptions`, SPEC §11 Routes): validation at start-up, the QoS rule
 * and the routed copies of a published message. */
#ifndef HUB_ROUTE_H
#define HUB_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "hub.h"

/* Routed copies per message at most (routes form no cycle, but may branch). */
#define ROUTE_COPIES_MAX 256

/* Checks every route: source a valid filter, target a valid name, no duplicate, no cycle. */
int route_validate(const bt_cfg_list *routes, char *err, size_t errlen);

/* QoS of the routed copy of a message of QoS q: 0 if min(q, source.qos) is 0, else target.qos. */
uint8_t route_qos(const hub_route_cfg *r, uint8_t q);

/* Appends the routed copies of m (then their own copies, depth first): QoS 1 copies to *log
 * (to be committed), QoS 0 copies to *zero; at most *budget copies (counted down). */
void route_copies(const hub_config *cfg, msg *m, msg_vec *log, msg_vec *zero, size_t *budget);

#endif
