/* The application var/db/baetyl/application.yml (SPEC §3): the SDK's schema, and what the
 * master checks on top of it. */
#include "app.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int app_load(const char *path, app_config *app, char *err, size_t errlen)
{
    return bt_app_load(path, app, NULL, NULL, err, errlen);
}

int app_load_warn(const char *path, app_config *app, void (*warn)(void *, const char *), void *arg,
                  char *err, size_t errlen)
{
    return bt_app_load(path, app, warn, arg, err, errlen);
}

int app_load_string(const char *text, size_t len, app_config *app, char *err, size_t errlen)
{
    return bt_app_load_string(text, len, app, err, errlen);
}

void app_free(app_config *app)
{
    bt_app_free(app);
}

int app_service_copy(app_service *dst, const app_service *src)
{
    return bt_cfg_copy(&bt_app_service_schema, dst, src);
}

void app_service_free(app_service *s)
{
    bt_cfg_free(&bt_app_service_schema, s);
}

const app_volume *app_find_volume(const app_config *app, const char *name)
{
    for (size_t i = 0; i < app->volumes.n; i++)
        if (strcmp(APP_VOLUME(app, i)->name, name) == 0)
            return APP_VOLUME(app, i);
    return NULL;
}

const app_service *app_find_service(const app_config *app, const char *name)
{
    for (size_t i = 0; i < app->services.n; i++)
        if (strcmp(APP_SERVICE(app, i)->name, name) == 0)
            return APP_SERVICE(app, i);
    return NULL;
}

int app_check_mounts(const app_config *app, char *err, size_t errlen)
{
    for (size_t i = 0; i < app->services.n; i++) {
        const app_service *s = APP_SERVICE(app, i);
        for (size_t j = 0; j < s->mounts.n; j++)
            if (!app_find_volume(app, APP_MOUNT(s, j)->name))
                return bt_errf(err, errlen, "services[%zu].mounts[%zu].name: volume (%s) not found",
                               i, j, APP_MOUNT(s, j)->name);
    }
    return 0;
}

/* Volume paths compare after cleaning, so "a/b" and "a//b/" are the same directory. */
static bool same_volume_path(const app_volume *a, const app_volume *b)
{
    size_t la = strlen(a->path) + 1, lb = strlen(b->path) + 1;
    char *ca = malloc(la), *cb = malloc(lb);
    bool eq = false;
    if (ca && cb && bt_path_clean_rel(a->path, ca, la) == 0 &&
        bt_path_clean_rel(b->path, cb, lb) == 0)
        eq = strcmp(ca, cb) == 0;
    free(ca);
    free(cb);
    return eq;
}

bool app_service_unchanged(const app_config *cur, const app_config *old, const char *name)
{
    const app_service *c = app_find_service(cur, name), *o = app_find_service(old, name);
    if (!c || !o || !bt_cfg_equal(&bt_app_service_schema, c, o))
        return false;
    for (size_t i = 0; i < c->mounts.n; i++) {
        const char *vn = APP_MOUNT(c, i)->name;
        const app_volume *vc = app_find_volume(cur, vn), *vo = app_find_volume(old, vn);
        if (!vc || !vo || !same_volume_path(vc, vo))
            return false;
    }
    return true;
}
