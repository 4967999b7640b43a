/* The application var/db/baetyl/application.yml (SPEC §3): schema, checks, and the diff
 * OTA uses to keep unchanged services running. */
#ifndef BAETYL_MASTER_APP_H
#define BAETYL_MASTER_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <baetyl/config.h>

#define APP_FILE "var/db/baetyl/application.yml"
#define APP_BACKUP_FILE "var/db/baetyl/application.yml.old"
#define APP_STATS_FILE "var/db/baetyl/application.stats"
#define APP_MAX_FILE (16u << 20)

typedef struct {
    char *name;
    char *path;
    bool readonly;
} app_mount;

typedef struct {
    char *name;
    char *path;
} app_volume;

typedef struct {
    char *policy;        /* always|on-failure|no */
    long retry_max;      /* 0 = unlimited */
    int64_t backoff_min; /* ms */
    int64_t backoff_max; /* ms */
    double backoff_factor;
} app_restart;

typedef struct {
    double cpus;
    char *setcpus;
    int64_t memory_limit;
    int64_t memory_swap;
    long pids_limit;
} app_resources;

typedef struct {
    char *name;
    char *image;
    long replica;
    bt_cfg_list mounts;  /* app_mount */
    bt_cfg_list ports;   /* char * */
    bt_cfg_list devices; /* char * */
    bt_cfg_list args;    /* char * */
    bt_cfg_map env;      /* char * values */
    app_restart restart;
    app_resources resources;
} app_service;

typedef struct {
    char *version;
    bt_cfg_list services; /* app_service */
    bt_cfg_list volumes;  /* app_volume */
} app_config;

#define APP_SERVICE(app, i) (&BT_CFG_AT((app)->services, app_service, i))
#define APP_VOLUME(app, i) (&BT_CFG_AT((app)->volumes, app_volume, i))
#define APP_MOUNT(svc, i) (&BT_CFG_AT((svc)->mounts, app_mount, i))

/* Loads an application file (an empty file is an empty app). Returns 0 or -1 with err
 * naming the field ("services[1].name: required (line 4)"). */
int app_load(const char *path, app_config *app, char *err, size_t errlen);
/* Loads an application from text. */
int app_load_string(const char *text, size_t len, app_config *app, char *err, size_t errlen);
/* Frees a loaded application. */
void app_free(app_config *app);
/* Deep copy of one service (free with app_service_free). Returns 0 or -1. */
int app_service_copy(app_service *dst, const app_service *src);
/* Frees a service copied with app_service_copy. */
void app_service_free(app_service *s);
/* The volume of that name, or NULL. */
const app_volume *app_find_volume(const app_config *app, const char *name);
/* The service of that name, or NULL. */
const app_service *app_find_service(const app_config *app, const char *name);
/* Checks that every mount names a declared volume: "service (x): volume (y) not found". */
int app_check_mounts(const app_config *app, char *err, size_t errlen);
/* True when the service `name` is identical in both apps: same config, and every volume
 * it mounts has the same path in both. */
bool app_service_unchanged(const app_config *cur, const app_config *old, const char *name);

#endif
