/* The metrics.address listener (SPEC §19): GET /metrics and the status page GET /, without
 * an account (bind it to a local or private address); nothing else is served there. */
#ifndef BAETYL_MASTER_METRICS_SERVER_H
#define BAETYL_MASTER_METRICS_SERVER_H

#include <stddef.h>

#include <baetyl/http_server.h>

#include "master.h"

/* Listens on address (tcp://host:port). Returns the server, or NULL with err. */
bt_http_server *metrics_server_start(master *m, const char *address, char *err, size_t errlen);
/* Stops it (NULL is fine). */
void metrics_server_stop(bt_http_server *d);

#endif
