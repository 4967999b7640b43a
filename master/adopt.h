/* Adoption (issue 15.2, SPEC §19): instances that outlive a killed master keep running and
 * the next master takes them over instead of killing them. Each running native instance
 * has a record, var/run/baetyl/instances/<service>/<instance>.json (pid, process start
 * time, its service's token, its API env, a hash of its environment), written when it
 * starts and removed when it ends; the application the services run from is kept beside
 * it (running.yml). At boot, a recorded process that still runs (same pid and start time
 * in /proc/<pid>/stat) and whose service did not change in application.yml is handed to
 * the engine (bt_engine.adopt), which takes it over at its start_instance instead of
 * starting a new one; anything else recorded is stopped as before. Docker: the record holds
 * the container id; the engine checks at take-over that it still runs. */
#ifndef BAETYL_MASTER_ADOPT_H
#define BAETYL_MASTER_ADOPT_H

#include "master.h"

#define ADOPT_DIR "var/run/baetyl/instances"
#define ADOPT_RUNNING_APP ADOPT_DIR "/running.yml"

/* Records instance in, running as run (native: pid; docker: container id). */
void adopt_record(master *m, const m_instance *in, const eng_instance *run);
/* Removes the record of instance `inst` of service `svc`. */
void adopt_forget(master *m, const char *svc, const char *inst);
/* Keeps a copy of application.yml as the app the services now run from. */
void adopt_save_running_app(void);
/* At boot, before the services start: sets m->engine->adopt to what may be taken over and
 * stops recorded processes that may not. */
void adopt_prepare(master *m);
/* After the app started: starts the recorded dynamic instances again (taken over), stops
 * what was not taken over, and clears m->engine->adopt. */
void adopt_finish(master *m);
/* The token a taken-over service keeps (its instances hold it), or NULL. */
const char *adopt_token(master *m, const char *svc);

#endif
