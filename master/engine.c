/* Picks the engine named by conf.yml `mode`. */
#include "engine.h"
#include "docker_config.h"
#include "path_beneath.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/log.h>

#include <stdlib.h>
#include <string.h>

int engine_new(const char *mode, const engine_opts *opts, bt_engine **out, char *err, size_t errlen)
{
    *out = NULL;
    if (strcmp(mode, "native") == 0)
        return engine_native_new(opts, out, err, errlen);
    if (strcmp(mode, "docker") == 0)
        return engine_docker_new(opts, out, err, errlen);
    if (strcmp(mode, "swarm") == 0)
        return engine_swarm_new(opts, out, err, errlen);
    return bt_errf(err, errlen, "mode (%s) not supported", mode);
}

void engine_free(bt_engine *e)
{
    if (e)
        e->ops->destroy(e);
}

void engine_placement_warn(const bt_engine *e, const app_config *app)
{
    if (strcmp(e->ops->name, "swarm") == 0)
        return;
    for (size_t i = 0; i < app->services.n; i++) {
        const app_service *s = APP_SERVICE(app, i);
        if (s->placement.constraints.n || s->placement.spread) {
            bt_logkv(BT_LOG_WARN, "placement is ignored: only mode swarm places services", "mode",
                     e->ops->name, "service", s->name, NULL);
            return; /* once per application */
        }
    }
}

int engine_bind_dirs(const char *pwd, const app_config *app, const app_service *svc, char *err,
                     size_t errlen)
{
    char **vroots = volume_roots(pwd, app);
    int r = vroots ? 0 : bt_errf(err, errlen, "out of memory");
    for (size_t i = 0; r == 0 && i < svc->mounts.n; i++) {
        char *src = docker_mount_source(pwd, app, APP_MOUNT(svc, i), err, errlen);
        char *real = src ? path_dir_beneath(pwd, vroots, src, err, errlen) : NULL;
        r = real ? 0 : -1;
        free(real);
        free(src);
    }
    volume_roots_free(vroots);
    return r;
}
