/* One rule of remote-mqtt at run time: a client to the hub, a client to the remote, and the
 * forwarding between them in both directions (SPEC §13).
 *
 * A message received on one side is published unchanged (topic, QoS, payload, retain) on
 * the other. A QoS 1 message is acknowledged to its source only once the other side
 * acknowledged the copy (the SDK client's manual ack), so a message is never lost between
 * the two brokers: one that remote-mqtt holds when it dies, or while the other side is
 * unreachable, is still unacknowledged at its source, whose persistent session resends it.
 * Duplicates are possible (at least once), losses are not. */
#ifndef REMOTE_MQTT_BRIDGE_H
#define REMOTE_MQTT_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#include "baetyl/mqtt_client.h"

/* Messages waiting, per direction, for room in the other side's client. Beyond this the
 * source is slowed down (its client stops reading) while the other side is connected;
 * otherwise a QoS 0 message is dropped and a QoS 1 message is left unacknowledged (its
 * source resends it). A source broker's own in-flight window normally keeps QoS 1 far
 * below it. */
#define RM_QUEUE_MAX_MSGS 10000
#define RM_QUEUE_MAX_BYTES (64u << 20)

typedef struct rm_bridge rm_bridge;

/* Called once (from a client's thread) when a client stopped on a fatal error. */
typedef void (*rm_fatal_fn)(const char *rule, const char *reason, void *arg);

/* Builds the two clients of a rule from complete settings (client ids and subscriptions
 * already resolved). name is used in logs. NULL with err on a bad setting. */
rm_bridge *rm_bridge_create(const char *name, const bt_mqtt_client_config *hub,
                            const bt_mqtt_client_config *remote, rm_fatal_fn on_fatal, void *arg,
                            char *err, size_t errlen);
/* Starts both clients (they connect in the background). 0 or -1 with err. */
int rm_bridge_start(rm_bridge *b, char *err, size_t errlen);
/* Asks both clients to stop, without waiting. */
void rm_bridge_stop(rm_bridge *b);
/* Stops, waits for both clients' threads and frees everything. NULL is a no-op. */
void rm_bridge_destroy(rm_bridge *b);

/* Counters of one direction (0 = hub to remote, 1 = remote to hub). */
typedef struct {
    uint64_t received;   /* messages from the source */
    uint64_t forwarded;  /* accepted by the other side's client */
    uint64_t duplicates; /* resends of a message being forwarded, not forwarded again */
    uint64_t dropped;    /* not forwarded: queue limit, or a message the other side refuses */
    uint64_t connects;   /* connections of the other side's client (the first one included) */
    size_t queued;       /* waiting for room now */
    size_t pending;      /* held by the other side's client (queued or awaiting PUBACK) */
    bool up;             /* the other side's client is connected */
} rm_dir_stats;

/* Copies the counters of direction dir (0 or 1): dir 0's connects, pending and up are the
 * remote link's, dir 1's the hub link's. */
void rm_bridge_stats(rm_bridge *b, int dir, rm_dir_stats *out);

#endif
