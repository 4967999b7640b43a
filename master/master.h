/* The master's model: running services and their instances, tokens, the running app's
 * version and last error, and the operations the API, OTA and shutdown use.
 *
 * Locks: `ops` serializes changes of the services (boot, OTA, shutdown), which may take a
 * grace period. The API's instance start/stop take a reference on their service and its
 * `inst_mu` instead, so a service stopping during an OTA can still stop its peers'
 * instances through the API (its token stays valid until it has stopped); a service being
 * stopped first waits for those references.
 * `mu` guards the lists and the state inspect reads and is held only briefly; supervisor
 * threads take only `mu`. Order: ops -> inst_mu -> stats_mu -> mu. */
#ifndef BAETYL_MASTER_MASTER_H
#define BAETYL_MASTER_MASTER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <jansson.h>

#include "app.h"
#include "conf.h"
#include "engine.h"
#include "host_stats.h"
#include "supervisor.h"

typedef enum { INST_RUNNING = 0, INST_RESTARTING, INST_EXITED } inst_status;

typedef struct master master;
typedef struct m_service m_service;
typedef struct m_instance m_instance;

struct m_instance {
    master *m;
    m_service *svc;
    char *name;
    bool dynamic;    /* started through the API: no token */
    char **env;      /* full environment, NULL-terminated */
    json_t *dyn_env; /* the extra env of an API start, or NULL (kept for adoption) */
    sup_proc sup;    /* its supervisor (owner = this record) */
    /* guarded by master.mu */
    eng_instance view; /* what stats read; view.pid is 0 while nothing runs */
    bool alive;
    bool finished; /* supervision over (thread may be joined) */
    inst_status status;
    int exit_code; /* of its last run, when has_exit */
    bool has_exit;
    struct timespec start_time;
    json_t *reported; /* keys merged from report calls */
    m_instance *next;
};

struct m_service {
    char *name;
    app_service cfg; /* deep copy */
    char *token;
    char **grants; /* other services whose instances it may act on (grants.h) */
    void *eng_state;
    m_instance *instances;
    /* Instances the engine is starting, listed once it returned (guarded by mu): only their
     * reports are taken meanwhile, since a swarm task may run and report before that. */
    m_instance *launching;
    pthread_mutex_t inst_mu; /* serializes the API's instance start/stop in this service */
    int refs;                /* API calls using the service; guarded by mu */
    bool stopping;           /* being stopped: its token still works, new instances do not */
    m_service *next;
};

struct master {
    char *pwd; /* absolute work dir (the master's cwd) */
    char *conf_path;
    master_conf conf;
    bt_api_addr api;
    bt_engine *engine;
    host_sampler *sampler;
    pthread_mutex_t ops;
    pthread_mutex_t stats_mu;
    pthread_mutex_t mu;
    pthread_cond_t refs_cond; /* a service's refs dropped to 0 */
    m_service *services;      /* in start order; guarded by mu (changed under ops too) */
    app_config app;           /* the running application; guarded by ops */
    char *conf_version;       /* guarded by mu */
    char *error;              /* last update error, "" when none; guarded by mu */
    json_t *volumes;          /* [{name, path}] of the running app; guarded by mu */
    char cli_token[65];       /* account of the local CLI (`baetyl status`) */
    char host_id[256];
    char *host_sn; /* snfile content, or NULL */
};

#define CLI_USER "baetyl.cli" /* a '.' no service name may contain */
#define CLI_TOKEN_FILE "var/run/baetyl/cli.token"

/* Prepares the model (no service runs yet). conf and api are moved into m. */
int master_init(master *m, const char *pwd, master_conf *conf, bt_api_addr *api, bt_engine *engine,
                char *err, size_t errlen);
/* Frees the model; every service must be stopped. */
void master_destroy(master *m);

/* Starts, in order, the services of app that do not run yet. On a failure the services
 * this call started are left running (the caller rolls back). Caller holds ops. */
int master_start_app(master *m, const app_config *app, char *err, size_t errlen);
/* Stops every running service except those identical in cur and old (both may be NULL:
 * stop all). All instances get their stop request at once, so the whole set takes at
 * most one grace period. Caller holds ops. */
void master_stop_changed(master *m, const app_config *cur, const app_config *old);

/* API: starts (or restarts) instance `inst` of service `svc` with extra env (a JSON
 * object of strings, may be NULL). No token is given. Returns 0 or -1 with err. */
int master_instance_start(master *m, const char *svc, const char *inst, json_t *env, char *err,
                          size_t errlen);
/* API: stops that instance; 0 also when it does not run; -1 for an unknown service. */
int master_instance_stop(master *m, const char *svc, const char *inst, char *err, size_t errlen);
/* API: merges the top-level keys of obj into the instance's stats. */
int master_instance_report(master *m, const char *svc, const char *inst, json_t *obj, char *err,
                           size_t errlen);
/* API: the last n lines of the output of that instance, running or exited (also of an
 * instance no longer listed whose output the engine still has). Returns a new
 * {"state","exit_code","lines"} object, or NULL with err (*not_found when the master knows
 * nothing of that service or instance). */
json_t *master_instance_logs(master *m, const char *svc, const char *inst, int n, bool *not_found,
                             char *err, size_t errlen);
/* True when user/password is a service's account or the CLI's. */
bool master_auth(master *m, const char *user, const char *password);
/* True when account `user` (authenticated) may start, stop or report into the instances of
 * service svc: the CLI, the service itself, or a service granted svc. */
bool master_may_act(master *m, const char *user, const char *svc);

/* The "services" array of inspect (new reference). */
json_t *master_services_json(master *m);
/* Sets the running app version (inspect conf_version). */
void master_set_version(master *m, const char *v);
/* Sets the volumes inspect shows from the running app. */
void master_set_volumes(master *m, const app_config *app);
/* A copy of those volumes (new reference). */
json_t *master_volumes_json(master *m);
/* Sets the last update error ("" or NULL clears it). */
void master_set_error(master *m, const char *e);
/* Copies of conf_version and error (free them). */
char *master_get_version(master *m);
char *master_get_error(master *m);
/* Writes application.stats from the current instances. */
void master_save_stats(master *m);

/* Environment (env.c): the full environment of one instance (SPEC §8). dyn is the extra
 * env of an API start (JSON object of strings) or NULL. Returns a NULL-terminated
 * malloc'd array, or NULL with err. */
char **env_build(master *m, const m_service *s, const char *instance, bool dynamic, json_t *dyn,
                 char *err, size_t errlen);
/* Frees an environment array. */
void env_free(char **env);

#endif
