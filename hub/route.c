/* Static routes (`subscriptions`, SPEC §11 Routes): a message matching source.topic is
 * published again to target.topic. Validated at start-up (no duplicate, no cycle), applied
 * by the broker to every published message. */
#include "route.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/log.h"
#include "baetyl/topic.h"

uint8_t route_qos(const hub_route_cfg *r, uint8_t q)
{
    uint8_t m = q < r->source.qos ? q : (uint8_t)r->source.qos;
    return m == 0 ? 0 : (uint8_t)r->target.qos;
}

#define R(i) (&BT_CFG_AT(*routes, hub_route_cfg, (i)))

/* Depth-first search from route i: state 1 = on the current path, 2 = done. */
static int find_cycle(const bt_cfg_list *routes, size_t i, unsigned char *state, size_t *at)
{
    state[i] = 1;
    for (size_t j = 0; j < routes->n; j++) {
        if (!bt_topic_match(R(j)->source.topic, R(i)->target.topic))
            continue;
        if (state[j] == 1) {
            *at = j;
            return 1;
        }
        if (state[j] == 0 && find_cycle(routes, j, state, at))
            return 1;
    }
    state[i] = 2;
    return 0;
}

int route_validate(const bt_cfg_list *routes, char *err, size_t errlen)
{
    for (size_t i = 0; i < routes->n; i++) {
        const hub_route_cfg *r = R(i);
        if (!bt_topic_valid_filter(r->source.topic, strlen(r->source.topic))) {
            snprintf(err, errlen, "subscriptions[%zu].source.topic: topic (%s) invalid", i,
                     r->source.topic);
            return -1;
        }
        if (!bt_topic_valid_name(r->target.topic, strlen(r->target.topic))) {
            snprintf(err, errlen, "subscriptions[%zu].target.topic: topic (%s) invalid", i,
                     r->target.topic);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(R(j)->source.topic, r->source.topic) &&
                !strcmp(R(j)->target.topic, r->target.topic)) {
                snprintf(err, errlen, "subscriptions[%zu]: duplicate route (%s -> %s)", i,
                         r->source.topic, r->target.topic);
                return -1;
            }
    }
    if (routes->n == 0)
        return 0;
    unsigned char *state = calloc(routes->n, 1);
    if (!state) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < routes->n && !rc; i++) {
        size_t at = 0;
        if (state[i] == 0 && find_cycle(routes, i, state, &at)) {
            snprintf(err, errlen,
                     "subscriptions[%zu]: route cycle (%s -> %s is routed back to itself)", at,
                     R(at)->source.topic, R(at)->target.topic);
            rc = -1;
        }
    }
    free(state);
    return rc;
}

void route_copies(const hub_config *cfg, msg *m, msg_vec *log, msg_vec *zero, size_t *budget)
{
    const bt_cfg_list *routes = &cfg->subscriptions;
    for (size_t i = 0; i < routes->n; i++) {
        const hub_route_cfg *r = &BT_CFG_AT(*routes, hub_route_cfg, i);
        if (!bt_topic_match(r->source.topic, m->topic))
            continue;
        if (*budget == 0) {
            bt_logkv(BT_LOG_WARN, "too many routed copies, dropping the rest", "topic", m->topic,
                     NULL);
            return;
        }
        (*budget)--;
        uint8_t q = route_qos(r, m->qos);
        msg *cp =
            msg_new(r->target.topic, strlen(r->target.topic), m->payload, m->payload_len, q, 0);
        if (!cp)
            return;
        cp->ts_ms = m->ts_ms;
        if (msg_vec_push(q ? log : zero, cp) < 0) {
            msg_unref(cp);
            return;
        }
        route_copies(cfg, cp, log, zero, budget);
    }
}
