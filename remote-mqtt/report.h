/* remote-mqtt's metrics, reported to the master every status.report.interval (SPEC §19):
 * per remote link its state, reconnects, backlog and how long the backlog has not been
 * empty, and per direction the messages forwarded and dropped; the remotes' client
 * certificates' expiry. */
#ifndef REMOTE_MQTT_REPORT_H
#define REMOTE_MQTT_REPORT_H

#include "baetyl/context.h"
#include "bridge.h"
#include "config.h"

typedef struct rm_reporter rm_reporter;

/* Starts the reporter thread when the module runs under a master; NULL otherwise (or when
 * it cannot start: metrics are not worth failing the bridge for). */
rm_reporter *rm_report_start(bt_ctx *ctx, const rm_config *cfg, rm_bridge **bridges, size_t n);
/* Stops the thread (the context must be stopping) and frees r. NULL is fine. */
void rm_report_stop(rm_reporter *r);

#endif
