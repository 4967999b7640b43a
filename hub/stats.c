/* Counters of the hub, logged when status.logging is on and reported to the master. */
#include <inttypes.h>
#include <stdio.h>

#include "baetyl/log.h"
#include "hub.h"

void stats_log(hub *h)
{
    const hub_counters *k = &h->ctr;
    char v[19][32];
    snprintf(v[0], sizeof v[0], "%zu", h->nconns);
    snprintf(v[1], sizeof v[1], "%" PRIu64, k->conns_total);
    snprintf(v[2], sizeof v[2], "%" PRIu64, k->msgs_in);
    snprintf(v[3], sizeof v[3], "%" PRIu64, k->msgs_out);
    snprintf(v[4], sizeof v[4], "%" PRIu64, k->bytes_in);
    snprintf(v[5], sizeof v[5], "%" PRIu64, k->bytes_out);
    snprintf(v[6], sizeof v[6], "%" PRIu64, k->committed);
    snprintf(v[7], sizeof v[7], "%" PRIu64, k->qos0_dropped);
    snprintf(v[8], sizeof v[8], "%" PRIu64, k->retried);
    snprintf(v[9], sizeof v[9], "%zu", h->subs.count);
    snprintf(v[10], sizeof v[10], "%" PRIu64, h->last_seq);
    snprintf(v[11], sizeof v[11], "%" PRIu64, k->bad_packets);
    snprintf(v[12], sizeof v[12], "%" PRIu64, k->slow_closed);
    snprintf(v[13], sizeof v[13], "%" PRIu64, k->accept_failed);
    snprintf(v[14], sizeof v[14], "%" PRIu64, k->dropped_full);
    snprintf(v[15], sizeof v[15], "%" PRIu64, k->dropped_count);
    snprintf(v[16], sizeof v[16], "%" PRIu64, k->dropped_age);
    snprintf(v[17], sizeof v[17], "%" PRIu64, k->full_waits);
    snprintf(v[18], sizeof v[18], "%zu", h->store_full ? h->npend : (size_t)0);
    bt_logkv(BT_LOG_INFO, "hub status", "connections", v[0], "connections_total", v[1],
             "messages_in", v[2], "messages_out", v[3], "bytes_in", v[4], "bytes_out", v[5],
             "qos1_committed", v[6], "qos0_dropped", v[7], "qos1_resent", v[8], "subscriptions",
             v[9], "last_seq", v[10], "bad_packets", v[11], "slow_closed", v[12], "accept_failed",
             v[13], "dropped_full", v[14], "dropped_count", v[15], "dropped_age", v[16],
             "store_full_waits", v[17], "qos1_waiting", v[18], NULL);
}
