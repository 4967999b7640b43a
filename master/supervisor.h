/* Supervision of one instance process (SPEC §6): restart policy with backoff, and the stop
 * sequence SIGTERM, grace, SIGKILL. The supervisor knows nothing of the master's model: it
 * tells its owner each state change through a callback. */
#ifndef BAETYL_MASTER_SUPERVISOR_H
#define BAETYL_MASTER_SUPERVISOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "engine.h"

typedef enum {
    SUP_RUNNING,    /* a process was started (run holds it) */
    SUP_RESTARTING, /* it exited and will be started again after a backoff */
    SUP_EXITED,     /* it exited or was stopped; no restart is pending */
    SUP_FINISHED,   /* supervision is over: the thread may be joined */
} sup_state;

typedef struct sup_proc sup_proc;

/* Called from sup_launch (SUP_RUNNING) and then from the supervising thread. */
typedef void (*sup_state_fn)(sup_proc *p, sup_state st);

struct sup_proc {
    /* set by the owner before sup_launch; read-only afterwards */
    bt_engine *engine;
    void *eng_state;            /* the service's engine state */
    const char *service, *name; /* for logs and the engine */
    char **env;
    const app_restart *restart;
    int64_t grace; /* ms */
    sup_state_fn on_state;
    void *owner; /* the owner's record, for on_state */
    /* the supervisor's own */
    pthread_t thread;
    bool thread_started;
    int wake_fd; /* eventfd, written once to ask for a stop; -1 when closed */
    atomic_bool stop_req;
    eng_instance run; /* owned by the supervising thread once it runs */
    /* for /metrics: restarts done, and the code of the last exit (valid once exited) */
    atomic_uint restarts;
    atomic_int last_exit;
    atomic_bool exited;
    int last_code; /* exit code of the last run, set before SUP_RESTARTING / SUP_EXITED */
};

/* Starts the first process and its supervising thread. Returns 0 or -1 with err (then no
 * process runs and nothing is left open). */
int sup_launch(sup_proc *p, char *err, size_t errlen);
/* Asks the supervisor to stop its process; returns at once. */
void sup_request_stop(sup_proc *p);
/* Waits for the supervising thread to end and closes the eventfd. */
void sup_join(sup_proc *p);

#endif
