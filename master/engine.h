/* The engine interface: how services and their instances run (SPEC §4 native, §5 docker).
 *
 * The supervisor, the API and OTA only see this struct of function pointers, so a new
 * engine is one new file and one line in engine_new(). Threading contract: prepare,
 * start_service, stop_service and recover are called with the master's ops lock held (one
 * at a time); the *_instance calls of one instance come from one thread at a time (its
 * supervisor, or the starter before the supervisor exists); instance_stats may run on any
 * thread while the instance is alive (or at any time, with stats_between_runs). */
#ifndef BAETYL_MASTER_ENGINE_H
#define BAETYL_MASTER_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "app.h"
#include "conf.h"

typedef struct bt_engine bt_engine;

typedef struct {
    const char *pwd;         /* absolute work dir */
    int64_t grace_ms;        /* stop timeout before a kill */
    const bt_api_addr *api;  /* the master API address */
    const char *api_version; /* docker.api_version */
} engine_opts;

/* One running instance as an engine sees it. */
typedef struct {
    pid_t pid;           /* native: process id, also its process group; 0 once reaped */
    int wait_fd;         /* native: pidfd, -1 when none */
    int log_fd;          /* native: its output file (instance_log.h) for the cap, -1 when none */
    char *log_path;      /* native: that file's path (malloc'd; the supervisor's copy owns it) */
    char id[80];         /* container id (docker) or the pid as text (native) */
    char name[80];       /* process name (native: /proc comm) or container name */
    bool stop_requested; /* signal_instance was called: an exit now is no failure (docker) */
    bool adopted;        /* native: taken over from an earlier master, so not our child */
    void *owner;         /* the engine's state of the instance's service */
    int64_t started_ms;  /* when start_instance started it (docker) */
    /* Previous CPU sample, for a CPU % over the time between two stats calls. */
    uint64_t cpu_ticks;
    int64_t cpu_at_ms;
} eng_instance;

typedef struct {
    const char *name; /* "native", "docker": BAETYL_SERVICE_MODE */
    /* Before services start: e.g. pull missing images. Returns 0 or -1 with err. */
    int (*prepare)(bt_engine *e, const app_config *app, char *err, size_t errlen);
    /* Prepares one service (work dir, mounts, package) into *state. Returns 0 or -1 with err. */
    int (*start_service)(bt_engine *e, const app_config *app, const app_service *svc, void **state,
                         char *err, size_t errlen);
    /* Undoes start_service once all its instances are gone. */
    void (*stop_service)(bt_engine *e, void *state);
    /* Starts one instance named `instance` with that full environment. Returns 0 or -1. */
    int (*start_instance)(bt_engine *e, void *state, const char *instance, char *const env[],
                          eng_instance *out, char *err, size_t errlen);
    /* Waits up to timeout_ms (-1 = forever) for the instance to end, returning early when
     * wake_fd (if >= 0) is readable. Returns 1 when it ended (*exit_code set: the exit
     * status, or 128+signal; everything it held is released), 0 on timeout or wake, -1 on
     * error. */
    int (*wait_instance)(bt_engine *e, eng_instance *inst, int timeout_ms, int wake_fd,
                         int *exit_code);
    /* Asks the instance to stop (SIGTERM / docker stop), or kills it when force. */
    int (*signal_instance)(bt_engine *e, eng_instance *inst, bool force);
    /* Adds the instance's stats to obj: "process" or "container", "cpu_stats", "mem_stats". */
    void (*instance_stats)(bt_engine *e, eng_instance *inst, json_t *obj);
    /* instance_stats also answers between two runs of an instance (native: its cgroup's
     * limits and OOM kills, what a user looks for while it waits out its backoff). */
    bool stats_between_runs;
    /* Appends the last n lines of the output of instance `instance` of the service (state)
     * to arr, JSON strings: of the running inst, or when inst is NULL of its last run.
     * Returns 0, or 1 when there is no output to show. Any thread (with the service held). */
    int (*instance_logs)(bt_engine *e, void *state, const char *instance, const eng_instance *inst,
                         int n, json_t *arr);
    /* Stops a process or container recorded for adoption (rec: its record) that was not
     * taken over: its service changed or is gone. */
    void (*drop_adopted)(bt_engine *e, const char *service, const char *instance, json_t *rec);
    /* Optional, for an engine that updates what it runs in place (swarm): the services of
     * next are about to start (NULL: nothing will), so instances of those that are stopped
     * before that may be kept for the start to update. */
    void (*retarget)(bt_engine *e, const app_config *next);
    /* Optional: the application has started (or failed for good): what retarget kept and
     * no start took goes. */
    void (*settle)(bt_engine *e);
    /* Cleans what a killed master left: stats is application.stats as JSON
     * (service -> instance -> stats), or NULL. */
    void (*recover)(bt_engine *e, json_t *stats);
    /* Frees the engine. */
    void (*destroy)(bt_engine *e);
} engine_ops;

struct bt_engine {
    const engine_ops *ops;
    engine_opts opts;
    char *api_env; /* BAETYL_MASTER_API_ADDRESS as instances of this engine see it */
    /* BAETYL_MASTER_API_SOCKET as instances see it (unix API only); NULL: the master's path. */
    const char *api_socket_env;
    /* Instances do not inherit the master's environment (containers have their own). */
    bool isolated_env;
    /* At boot, the running instances the engine may take over (adopt.h): service ->
     * instance -> {"pid","start","env_hash"}; an entry is removed when taken over. Set
     * and cleared under the ops lock, read by start_service/start_instance. */
    json_t *adopt;
    void *priv;
};

/* A hash of an environment (NULL-terminated), to see whether a recorded instance would be
 * started the same way. */
uint64_t engine_env_hash(char *const env[]);
/* True when a record of e->adopt has key equal to value (a reference taken over). */
bool engine_adopt_has(bt_engine *e, const char *key, json_t *value);
/* The record of that instance in e->adopt, taken out of it (new reference), or NULL. */
json_t *engine_adopt_take(bt_engine *e, const char *service, const char *instance);
/* Guards bt_engine.adopt (supervisors may start instances while the master boots). */
extern pthread_mutex_t engine_adopt_mu;

/* Creates the engine for conf.mode ("native", "docker" or "swarm"). Returns 0 or -1 with err. */
int engine_new(const char *mode, const engine_opts *opts, bt_engine **out, char *err,
               size_t errlen);
/* Frees an engine (NULL is fine). */
void engine_free(bt_engine *e);

/* The native engine (engine_native.c). */
int engine_native_new(const engine_opts *opts, bt_engine **out, char *err, size_t errlen);
/* The docker engine (engine_docker.c): fails with a clear error when the Docker engine
 * is not reachable or does not speak opts->api_version. */
int engine_docker_new(const engine_opts *opts, bt_engine **out, char *err, size_t errlen);
/* The swarm engine (engine_swarm.c): the engine must be a swarm manager and the master API
 * a tcp address the other nodes reach. */
int engine_swarm_new(const engine_opts *opts, bt_engine **out, char *err, size_t errlen);
/* Makes the directory of each bind of svc (<pwd>/<volume.path>) when missing; none may lead
 * out of the work dir through a symlink (docker follows them). Returns 0 or -1 with err. */
int engine_bind_dirs(const char *pwd, const app_config *app, const app_service *svc, char *err,
                     size_t errlen);
/* Warns once when the application places services and the engine is not swarm. */
void engine_placement_warn(const bt_engine *e, const app_config *app);
/* For `baetyl check` in native mode: every service's package.yml is reachable through its
 * mounts. Returns 0 or -1 with err naming the service and the missing path. */
int native_check_packages(const char *pwd, const app_config *app, char *err, size_t errlen);
/* For `baetyl check` in docker mode: the engine answers and has every image the application
 * names. Returns 0 or -1 with err naming the missing images (or the unreachable socket). */
int docker_check_images(const app_config *app, const char *api_version, char *err, size_t errlen);

#endif
