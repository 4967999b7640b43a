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

pthread_mutex_t engine_adopt_mu = PTHREAD_MUTEX_INITIALIZER;

uint64_t engine_env_hash(char *const env[])
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (char *const *v = env; v && *v; v++)
        for (const char *c = *v;; c++) {
            h = (h ^ (uint8_t)*c) * 1099511628211ull;
            if (!*c)
                break;
        }
    return h;
}

bool engine_adopt_has(bt_engine *e, const char *key, json_t *value)
{
    bool found = false;
    const char *sk, *ik;
    json_t *sv, *rec;
    pthread_mutex_lock(&engine_adopt_mu);
    json_object_foreach(e->adopt, sk, sv)
    {
        json_object_foreach(sv, ik, rec)
        {
            found |= json_equal(json_object_get(rec, key), value);
        }
    }
    pthread_mutex_unlock(&engine_adopt_mu);
    json_decref(value);
    return found;
}

json_t *engine_adopt_take(bt_engine *e, const char *service, const char *instance)
{
    pthread_mutex_lock(&engine_adopt_mu);
    json_t *svc = e->adopt ? json_object_get(e->adopt, service) : NULL;
    json_t *rec = json_incref(json_object_get(svc, instance));
    if (rec)
        json_object_del(svc, instance);
    pthread_mutex_unlock(&engine_adopt_mu);
    return rec;
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
