/* A service's grants from its own config (grants.h). */
#include "grants.h"
#include "stats_file.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/context.h>
#include <baetyl/log.h>

#include <stdlib.h>
#include <string.h>

#define GRANTS_MAX_CONFIG (4u << 20) /* a service config is a few KiB */
#define GRANTS_MAX 256

/* The config path the service reads, relative to its dir (leading '/' dropped: in a
 * container it is absolute, and mounts are relative to the container's root). */
static const char *config_arg(const app_service *svc)
{
    char **args = (char **)svc->args.items;
    for (size_t i = 0; i < svc->args.n; i++) {
        if ((!strcmp(args[i], "-c") || !strcmp(args[i], "--config")) && i + 1 < svc->args.n)
            return args[i + 1];
        if (!strncmp(args[i], "--config=", 9))
            return args[i] + 9;
    }
    return BT_DEFAULT_CONFIG_PATH;
}

/* pwd/<volume>/<rest> for the mount holding rel (the longest mount path that is a prefix). */
static char *host_path(const char *pwd, const app_config *app, const app_service *svc,
                       const char *rel)
{
    size_t best = 0;
    char *out = NULL;
    for (size_t i = 0; i < svc->mounts.n; i++) {
        const app_mount *mt = APP_MOUNT(svc, i);
        const app_volume *v = app_find_volume(app, mt->name);
        char *mp = malloc(strlen(mt->path) + 1), *vp = v ? malloc(strlen(v->path) + 1) : NULL;
        if (mp && vp && bt_path_clean_rel(mt->path, mp, strlen(mt->path) + 1) == 0 &&
            bt_path_clean_rel(v->path, vp, strlen(v->path) + 1) == 0) {
            size_t n = strlen(mp);
            if (n > best && !strncmp(rel, mp, n) && rel[n] == '/') {
                char *p = bt_strdup_printf("%s/%s/%s", pwd, vp, rel + n + 1);
                if (p) {
                    free(out);
                    out = p;
                    best = n;
                }
            }
        }
        free(mp);
        free(vp);
    }
    return out;
}

char **grants_of(const char *pwd, const app_config *app, const app_service *svc)
{
    char **list = calloc(1, sizeof *list);
    const char *arg = config_arg(svc);
    char *rel = malloc(strlen(arg) + 1), *file = NULL, *text = NULL, why[512];
    size_t len = 0, n = 0;
    json_t *conf = NULL;
    if (!list || !rel || bt_path_clean_rel(arg, rel, strlen(arg) + 1) != 0)
        goto out;
    file = host_path(pwd, app, svc, rel);
    if (!file || !bt_is_regular_file(file) ||
        bt_read_file(file, GRANTS_MAX_CONFIG, &text, &len, why, sizeof why) != 0)
        goto out;
    conf = yaml_text_to_json(text, len, why, sizeof why);
    json_t *fns = json_object_get(conf, "functions"), *f;
    size_t i;
    json_array_foreach(fns, i, f)
    {
        const char *s = json_string_value(json_object_get(f, "service"));
        if (!s || !*s || grants_allow(list, s) || n >= GRANTS_MAX)
            continue;
        char **nl = realloc(list, (n + 2) * sizeof *list);
        if (!nl)
            break;
        list = nl;
        if (!(list[n] = strdup(s)))
            break;
        list[++n] = NULL;
    }
out:
    json_decref(conf);
    free(text);
    free(file);
    free(rel);
    return list;
}

bool grants_allow(char *const *grants, const char *name)
{
    for (char *const *g = grants; g && *g; g++)
        if (!strcmp(*g, name))
            return true;
    return false;
}

void grants_free(char **grants)
{
    for (char **g = grants; g && *g; g++)
        free(*g);
    free(grants);
}
