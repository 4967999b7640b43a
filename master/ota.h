/* Application OTA (SPEC §9): replace application.yml, restart only what changed, roll back
 * on a load or start failure, and write each step to ota.log as a JSON line. */
#ifndef BAETYL_MASTER_OTA_H
#define BAETYL_MASTER_OTA_H

#include <stdbool.h>
#include <stddef.h>

#include "master.h"

typedef struct ota ota;

/* Starts the worker thread that runs queued updates one at a time. Returns 0 or -1. */
int ota_start(master *m, ota **out, char *err, size_t errlen);
/* Queues an update: mst, a master binary update (mst.h); else an APP update from path (a directory holding application.yml, or the file; it
 * must resolve inside the work dir, a file must be the master's user's); trace may be NULL.
 * Returns 0, or -1 with err when the path is refused, when stopping or too many are
 * pending. A path that does not exist is queued and fails as an update (ota.log). */
int ota_queue(ota *o, bool mst, const char *path, const char *trace, char *err, size_t errlen);
/* Stops the worker after the update in progress (pending ones are dropped) and frees it. */
void ota_stop(ota *o);

/* Boot: recovers what a killed master left, then starts application.yml; a leftover
 * application.yml.old means an update was interrupted and follows the update rules.
 * Returns 0 when an app runs (possibly the rolled back one, with inspect's error set), or
 * -1 with err when nothing could start. */
int ota_boot(master *m, char *err, size_t errlen);

#endif
