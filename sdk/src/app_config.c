/* The application file (SPEC §3): its schema, shared by the master and the agent. */
#include "baetyl/app_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/error.h"
#include "baetyl/util.h"

#define NAME_PATTERN "^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$"

/* A relative path that stays inside its base ("the work dir", "the service dir"). */
static int check_rel_path(const char *s, const char *base, char *err, size_t errlen)
{
    if (s[0] == '/') /* an error, not silently rewritten (issue #12.8) */
        return bt_errf(err, errlen, "path (%s) must be relative to %s", s, base);
    size_t n = strlen(s);
    char *buf = malloc(n + 1);
    if (!buf)
        return bt_errf(err, errlen, "out of memory");
    int r = bt_path_clean_rel(s, buf, n + 1);
    free(buf);
    if (r != 0)
        return bt_errf(err, errlen, "path (%s) escapes %s", s, base);
    return 0;
}

static int check_volume_path(const void *v, char *err, size_t errlen)
{
    return check_rel_path(*(char *const *)v, "the work dir", err, errlen);
}

static int check_mount_path(const void *v, char *err, size_t errlen)
{
    return check_rel_path(*(char *const *)v, "the service dir", err, errlen);
}

/* An image names a package directory: no "..", no empty name. */
static int check_image(const void *v, char *err, size_t errlen)
{
    const char *s = *(char *const *)v;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20)
            return bt_errf(err, errlen, "image (%s) contains a control character", s);
    size_t n = strlen(s);
    char *buf = malloc(n + 1), *tmp = strdup(s);
    if (!buf || !tmp) {
        free(buf);
        free(tmp);
        return bt_errf(err, errlen, "out of memory");
    }
    for (char *p = tmp; *p; p++)
        if (*p == ':')
            *p = '/';
    int r = bt_path_clean_rel(tmp, buf, n + 1);
    bool dotdot = strstr(tmp, "..") != NULL;
    free(buf);
    free(tmp);
    if (r != 0 || dotdot)
        return bt_errf(err, errlen, "image (%s) is not a valid package name", s);
    return 0;
}

static int check_restart(void *obj, char *err, size_t errlen)
{
    const bt_app_restart *r = obj;
    if (r->backoff_min > r->backoff_max)
        return bt_errf(err, errlen, "backoff.min must not exceed backoff.max");
    return 0;
}

static int check_service(void *obj, char *err, size_t errlen)
{
    const bt_app_service *s = obj;
    for (size_t i = 0; i < s->env.n; i++) {
        const char *k = s->env.keys[i];
        if (!*k || strchr(k, '='))
            return bt_errf(err, errlen, "env: invalid variable name (%s)", k);
    }
    for (size_t i = 0; i < s->mounts.n; i++)
        for (size_t j = 0; j < i; j++) {
            const bt_app_mount *a = BT_APP_MOUNT(s, i), *b = BT_APP_MOUNT(s, j);
            if (strcmp(a->path, b->path) == 0)
                return bt_errf(err, errlen, "mounts[%zu].path: path (%s) is mounted twice", i,
                               a->path);
        }
    return 0;
}

static int check_app(void *obj, char *err, size_t errlen)
{
    const bt_app_config *a = obj;
    for (size_t i = 0; i < a->services.n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(BT_APP_SERVICE(a, i)->name, BT_APP_SERVICE(a, j)->name) == 0)
                return bt_errf(err, errlen, "services[%zu].name: service name (%s) is duplicated",
                               i, BT_APP_SERVICE(a, i)->name);
    for (size_t i = 0; i < a->volumes.n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(BT_APP_VOLUME(a, i)->name, BT_APP_VOLUME(a, j)->name) == 0)
                return bt_errf(err, errlen, "volumes[%zu].name: volume name (%s) is duplicated", i,
                               BT_APP_VOLUME(a, i)->name);
    return 0;
}

static const bt_cfg_field mount_fields[] = {
    BT_FIELD(bt_app_mount, name, "name", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .pattern = NAME_PATTERN),
    BT_FIELD(bt_app_mount, path, "path", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .check = check_mount_path),
    BT_FIELD(bt_app_mount, readonly, "readonly", BT_CFG_BOOL),
    {0},
};
static const bt_cfg_schema mount_schema = {sizeof(bt_app_mount), mount_fields, NULL};

static const bt_cfg_field volume_fields[] = {
    BT_FIELD(bt_app_volume, name, "name", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .pattern = NAME_PATTERN),
    BT_FIELD(bt_app_volume, path, "path", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .check = check_volume_path),
    BT_FIELD(bt_app_volume, url, "meta.url", BT_CFG_STRING),
    BT_FIELD(bt_app_volume, md5, "meta.md5", BT_CFG_STRING),
    BT_FIELD(bt_app_volume, version, "meta.version", BT_CFG_STRING),
    {0},
};
static const bt_cfg_schema volume_schema = {sizeof(bt_app_volume), volume_fields, NULL};

static const bt_cfg_field restart_fields[] = {
    BT_FIELD(bt_app_restart, policy, "policy", BT_CFG_STRING, .def = "always",
             .choices = "always|on-failure|no"),
    BT_FIELD(bt_app_restart, retry_max, "retry.max", BT_CFG_INT, .flags = BT_CFG_RANGE, .min = 0,
             .max = 2147483647),
    BT_FIELD(bt_app_restart, backoff_min, "backoff.min", BT_CFG_DURATION, .def = "1s",
             .flags = BT_CFG_RANGE, .min = 0, .max = 86400000.0 * 30),
    BT_FIELD(bt_app_restart, backoff_max, "backoff.max", BT_CFG_DURATION, .def = "5m",
             .flags = BT_CFG_RANGE, .min = 0, .max = 86400000.0 * 30),
    BT_FIELD(bt_app_restart, backoff_factor, "backoff.factor", BT_CFG_FLOAT, .def = "2",
             .flags = BT_CFG_RANGE, .min = 1, .max = 1000),
    {0},
};
static const bt_cfg_schema restart_schema = {sizeof(bt_app_restart), restart_fields, check_restart};

static const bt_cfg_field resources_fields[] = {
    BT_FIELD(bt_app_resources, cpus, "cpu.cpus", BT_CFG_FLOAT, .flags = BT_CFG_RANGE, .min = 0,
             .max = 4096),
    BT_FIELD(bt_app_resources, setcpus, "cpu.setcpus", BT_CFG_STRING, .pattern = "^[0-9,-]*$"),
    BT_FIELD(bt_app_resources, memory_limit, "memory.limit", BT_CFG_SIZE, .flags = BT_CFG_RANGE,
             .min = 0, .max = 9.2e18),
    BT_FIELD(bt_app_resources, memory_swap, "memory.swap", BT_CFG_SIZE, .flags = BT_CFG_RANGE,
             .min = -1, .max = 9.2e18),
    BT_FIELD(bt_app_resources, pids_limit, "pids.limit", BT_CFG_INT, .flags = BT_CFG_RANGE,
             .min = -1, .max = 2147483647),
    {0},
};
static const bt_cfg_schema resources_schema = {sizeof(bt_app_resources), resources_fields, NULL};

static const bt_cfg_field service_fields[] = {
    BT_FIELD(bt_app_service, name, "name", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .pattern = NAME_PATTERN),
    BT_FIELD(bt_app_service, image, "image", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .check = check_image),
    BT_FIELD(bt_app_service, replica, "replica", BT_CFG_INT, .flags = BT_CFG_RANGE, .min = 0,
             .max = 1000),
    BT_FIELD(bt_app_service, mounts, "mounts", BT_CFG_LIST, .sub = &mount_schema),
    BT_FIELD(bt_app_service, ports, "ports", BT_CFG_LIST, .elem = BT_CFG_STRING),
    BT_FIELD(bt_app_service, devices, "devices", BT_CFG_LIST, .elem = BT_CFG_STRING),
    BT_FIELD(bt_app_service, args, "args", BT_CFG_LIST, .elem = BT_CFG_STRING),
    BT_FIELD(bt_app_service, env, "env", BT_CFG_MAP, .elem = BT_CFG_STRING),
    BT_FIELD(bt_app_service, restart, "restart", BT_CFG_STRUCT, .sub = &restart_schema),
    BT_FIELD(bt_app_service, resources, "resources", BT_CFG_STRUCT, .sub = &resources_schema),
    /* Where a swarm puts the service (mode swarm); other engines warn and ignore it. */
    BT_FIELD(bt_app_service, placement.constraints, "placement.constraints", BT_CFG_LIST,
             .elem = BT_CFG_STRING),
    BT_FIELD(bt_app_service, placement.spread, "placement.spread", BT_CFG_STRING,
             .pattern = "^[A-Za-z0-9._-]+$"),
    {0},
};
const bt_cfg_schema bt_app_service_schema = {sizeof(bt_app_service), service_fields, check_service};

static const bt_cfg_field app_fields[] = {
    BT_FIELD(bt_app_config, version, "version", BT_CFG_STRING),
    BT_FIELD(bt_app_config, services, "services", BT_CFG_LIST, .sub = &bt_app_service_schema,
             .seen = BT_SEEN(bt_app_config, has_services)),
    BT_FIELD(bt_app_config, volumes, "volumes", BT_CFG_LIST, .sub = &volume_schema),
    {0},
};
const bt_cfg_schema bt_app_schema = {sizeof(bt_app_config), app_fields, check_app};

int bt_app_load(const char *path, bt_app_config *app, void (*warn)(void *, const char *),
                void *warn_arg, char *err, size_t errlen)
{
    bt_cfg_opts o = {.strict_top = true, .warn = warn, .warn_arg = warn_arg};
    return bt_cfg_load_file_opts(&bt_app_schema, app, path, &o, err, errlen);
}

int bt_app_load_string(const char *text, size_t len, bt_app_config *app, char *err, size_t errlen)
{
    bt_cfg_opts o = {.strict_top = true};
    return bt_cfg_load_string_opts(&bt_app_schema, app, text, len, &o, err, errlen);
}

void bt_app_free(bt_app_config *app)
{
    bt_cfg_free(&bt_app_schema, app);
}
