/* The application var/db/baetyl/application.yml (SPEC §3): schema, checks, and the diff
 * OTA uses to keep unchanged services running. */
#ifndef BAETYL_MASTER_APP_H
#define BAETYL_MASTER_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <baetyl/app_config.h>

#define APP_FILE "var/db/baetyl/application.yml"
#define APP_BACKUP_FILE "var/db/baetyl/application.yml.old"
#define APP_STATS_FILE "var/db/baetyl/application.stats"
#define APP_MAX_FILE (16u << 20)

/* The schema and its types live in the SDK (the agent reads the same file). */
typedef bt_app_mount app_mount;
typedef bt_app_volume app_volume;
typedef bt_app_restart app_restart;
typedef bt_app_resources app_resources;
typedef bt_app_service app_service;
typedef bt_app_config app_config;

#define APP_SERVICE(app, i) BT_APP_SERVICE(app, i)
#define APP_VOLUME(app, i) BT_APP_VOLUME(app, i)
#define APP_MOUNT(svc, i) BT_APP_MOUNT(svc, i)

/* Loads an application file (an empty file is an empty app; unknown keys are logged as
 * warnings, an unknown top-level key is an error). Returns 0 or -1 with err naming the
 * field ("services[1].name: required (line 4)"). */
int app_load(const char *path, app_config *app, char *err, size_t errlen);
/* The same, handing each unknown-key warning to warn (baetyl check prints them). */
int app_load_warn(const char *path, app_config *app, void (*warn)(void *, const char *), void *arg,
                  char *err, size_t errlen);
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
