/* The application file var/db/baetyl/application.yml (SPEC §3, §19): one schema for every
 * reader (the master runs it, the agent downloads its volumes). It checks what the file
 * itself says (names, paths that stay inside the work dir, ranges, duplicates); what needs
 * the engine (packages, images, declared volumes of mounts) stays with the master. */
#ifndef BAETYL_APP_CONFIG_H
#define BAETYL_APP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "baetyl/config.h"

typedef struct {
    char *name;
    char *path;
    bool readonly;
} bt_app_mount;

typedef struct {
    char *name;
    char *path;    /* relative to the work dir */
    char *url;     /* meta.url: where the agent downloads it; NULL = nothing to download */
    char *md5;     /* meta.md5 */
    char *version; /* meta.version */
} bt_app_volume;

typedef struct {
    char *policy;        /* always|on-failure|no */
    long retry_max;      /* 0 = unlimited */
    int64_t backoff_min; /* ms */
    int64_t backoff_max; /* ms */
    double backoff_factor;
} bt_app_restart;

typedef struct {
    double cpus;
    char *setcpus;
    int64_t memory_limit;
    int64_t memory_swap;
    long pids_limit;
} bt_app_resources;

typedef struct {
    char *name;
    char *image;
    long replica;
    bt_cfg_list mounts;  /* bt_app_mount */
    bt_cfg_list ports;   /* char * */
    bt_cfg_list devices; /* char * */
    bt_cfg_list args;    /* char * */
    bt_cfg_map env;      /* char * values */
    bt_app_restart restart;
    bt_app_resources resources;
    struct {
        bt_cfg_list constraints; /* char *: swarm constraints ("node.labels.line==2") */
        char *spread;            /* a node label to spread the replicas over, or NULL */
    } placement;
} bt_app_service;

typedef struct {
    char *version;
    bt_cfg_list services; /* bt_app_service */
    bt_cfg_list volumes;  /* bt_app_volume */
    bool has_services;    /* "services" was written (an explicit "services: []" included) */
} bt_app_config;

/* Why an OTA refuses an app that does not write "services" (a misspelled key used to turn
 * into an empty app that stopped everything). */
#define BT_APP_NO_SERVICES \
    "application has no services (write services: [] to update to an empty application)"

#define BT_APP_SERVICE(app, i) (&BT_CFG_AT((app)->services, bt_app_service, i))
#define BT_APP_VOLUME(app, i) (&BT_CFG_AT((app)->volumes, bt_app_volume, i))
#define BT_APP_MOUNT(svc, i) (&BT_CFG_AT((svc)->mounts, bt_app_mount, i))

/* The schemas, for bt_cfg_equal/bt_cfg_copy/bt_cfg_free on a service or a whole app. */
extern const bt_cfg_schema bt_app_schema;
extern const bt_cfg_schema bt_app_service_schema;

/* Loads an application file (an empty file is an empty app); an unknown top-level key is an
 * error, an unknown key elsewhere a warning (warn/warn_arg as in bt_cfg_opts; NULL = logged).
 * Returns 0 or -1 with err naming the field ("services[1].name: required (line 4)"). */
int bt_app_load(const char *path, bt_app_config *app, void (*warn)(void *, const char *),
                void *warn_arg, char *err, size_t errlen);
/* The same from a text. */
int bt_app_load_string(const char *text, size_t len, bt_app_config *app, char *err, size_t errlen);
/* Frees a loaded application and zeroes it. */
void bt_app_free(bt_app_config *app);

#endif
