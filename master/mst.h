/* Master binary OTA (issue 15.1, type MST): the new binary is checked (`<new> check` must
 * print OK!), the running one is kept as <binary>.old, the new one is renamed into place and
 * the master re-executes itself in place (same pid, terminal and pid file; its services are
 * taken over, adopt.h). The new master must start its application within ota.timeout, else
 * the old binary is put back and executed (ROLLINGBACK, ROLLEDBACK). A marker file,
 * written before each step that changes the binary, lets a master killed at any moment
 * find where the update stood: every such moment leaves a startable master. */
#ifndef BAETYL_MASTER_MST_H
#define BAETYL_MASTER_MST_H

#include <stdbool.h>
#include <stddef.h>

#include "master.h"

#define MST_MARKER "var/run/baetyl/mst.json"

/* Runs an MST update from path (the new binary, or a directory holding bin/baetyl, inside
 * the work dir). Does not return when the master re-executed; returns -1 with err (also in
 * ota.log) when the update failed before. Caller holds ops. */
int mst_update(master *m, const char *path, const char *trace, char *err, size_t errlen);
/* At start, once the config is loaded: finishes what an interrupted update left and, when
 * this is the new binary of an update, starts the ota.timeout watch (which rolls back). */
void mst_boot_begin(const char *workdir, const char *conf_path, const char *otalog,
                    int64_t timeout_ms);
/* At start, once the application started (ok) or failed: UPDATED / ROLLEDBACK in ota.log, or
 * the rollback (which does not return when it re-executes the old binary). */
void mst_boot_end(bool ok);
/* `baetyl __mst-guard <ino> <timeout ms> <exe> <workdir> <conf> <otalog> <trace>` with the
 * master's pidfd as fd 3, started by mst_update from the old binary just before the
 * re-exec; it forks, and the child guards: when that master (now the binary at exe, inode
 * ino) dies, or has not started within the timeout (then it is
 * killed), while the marker still says the update is under way, it puts the old binary back
 * and executes it as the master in this process (its pid file rewritten, the instances
 * adopted). A new master that runs at all rolls back in place; this covers one that crashes,
 * exits or hangs. */
int mst_guard_main(int argc, char **argv);

#endif
