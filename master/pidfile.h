/* The pid file var/run/baetyl.pid in the work dir: `start` holds an exclusive lock on it for
 * its whole life, so `stop`/`status` and a second `start` can tell a live master from a
 * stale file left by a killed one. */
#ifndef BAETYL_MASTER_PIDFILE_H
#define BAETYL_MASTER_PIDFILE_H

#include <stddef.h>
#include <sys/types.h>

#define PID_FILE "var/run/baetyl.pid"

/* Creates and locks the pid file (relative to the cwd) and writes our pid. Returns the
 * open descriptor (keep it open), or -1 with err ("baetyl is already running (pid 12)"). */
int pidfile_acquire(const char *path, char *err, size_t errlen);
/* Removes the pid file and closes the descriptor. */
void pidfile_release(const char *path, int fd);
/* The pid of the master that holds the lock, 0 when none runs, -1 on error (err). */
pid_t pidfile_running(const char *path, char *err, size_t errlen);

#endif
