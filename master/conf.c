/* The master config etc/baetyl/conf.yml (SPEC §2). */
#include "conf.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static int check_address(const void *v, char *err, size_t errlen)
{
    const char *s = *(char *const *)v;
    api_addr a;
    /* The pwd only matters for relative unix paths, whose length is checked again later. */
    int r = api_addr_parse(s, "/", &a, err, errlen);
    if (r == 0)
        api_addr_free(&a);
    return r;
}

static const bt_cfg_field conf_fields[] = {
    BT_FIELD(master_conf, mode, "mode", BT_CFG_STRING, .def = "docker", .choices = "docker|native"),
    BT_FIELD(master_conf, grace, "grace", BT_CFG_DURATION, .def = "30s", .flags = BT_CFG_RANGE,
             .min = 0, .max = 86400000.0 * 365),
    BT_FIELD(master_conf, server.address, "server.address", BT_CFG_STRING,
             .def = MASTER_DEFAULT_ADDRESS, .flags = BT_CFG_REQUIRED, .check = check_address),
    BT_FIELD(master_conf, server.timeout, "server.timeout", BT_CFG_DURATION, .def = "5m",
             .flags = BT_CFG_RANGE, .min = 1000, .max = 86400000.0),
    BT_FIELD(master_conf, snfile, "snfile", BT_CFG_STRING),
    BT_FIELD(master_conf, docker.api_version, "docker.api_version", BT_CFG_STRING, .def = "1.38"),
    BT_FIELD(master_conf, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    /* The same key again, for the master's own default path (the SDK's is stderr). */
    BT_FIELD(master_conf, logger_path, "logger.path", BT_CFG_STRING, .def = MASTER_DEFAULT_LOG),
    BT_FIELD(master_conf, otalog.path, "otalog.path", BT_CFG_STRING, .def = "var/db/baetyl/ota.log",
             .flags = BT_CFG_REQUIRED),
    {0},
};

static const bt_cfg_schema conf_schema = {sizeof(master_conf), conf_fields, NULL};

int conf_load(const char *path, master_conf *c, bool *missing, char *err, size_t errlen)
{
    *missing = false;
    if (!bt_path_exists(path)) {
        *missing = true;
        return bt_cfg_load_string(&conf_schema, c, "", 0, err, errlen);
    }
    return bt_cfg_load_file(&conf_schema, c, path, err, errlen);
}

void conf_free(master_conf *c)
{
    bt_cfg_free(&conf_schema, c);
}

int api_addr_parse(const char *address, const char *pwd, api_addr *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    if (strncmp(address, "unix://", 7) == 0) {
        const char *p = address + 7;
        if (!*p)
            return bt_errf(err, errlen, "unix socket path is empty");
        a->is_unix = true;
        a->path = p[0] == '/' ? strdup(p) : bt_path_join(pwd, p);
        if (!a->path)
            return bt_errf(err, errlen, "out of memory");
        if (strlen(a->path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            bt_errf(err, errlen, "unix socket path (%s) too long (max %zu bytes)", a->path,
                    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            api_addr_free(a);
            return -1;
        }
        return 0;
    }
    if (strncmp(address, "tcp://", 6) == 0) {
        const char *hp = address + 6;
        const char *colon;
        if (hp[0] == '[') {
            const char *rb = strchr(hp, ']');
            if (!rb || rb[1] != ':')
                return bt_errf(err, errlen, "invalid tcp address (%s): want tcp://host:port",
                               address);
            a->host = strndup(hp + 1, (size_t)(rb - hp - 1));
            colon = rb + 1;
        } else {
            colon = strrchr(hp, ':');
            if (!colon)
                return bt_errf(err, errlen, "invalid tcp address (%s): want tcp://host:port",
                               address);
            a->host = strndup(hp, (size_t)(colon - hp));
        }
        const char *port = colon + 1;
        char *end;
        errno = 0;
        long pn = strtol(port, &end, 10);
        if (!a->host || !*port || *end || errno || pn < 0 || pn > 65535 || strchr(port, '/')) {
            api_addr_free(a);
            return bt_errf(err, errlen, "invalid tcp address (%s): bad port", address);
        }
        a->port = strdup(port);
        if (!a->port) {
            api_addr_free(a);
            return bt_errf(err, errlen, "out of memory");
        }
        return 0;
    }
    const char *sep = strstr(address, "://");
    if (sep)
        return bt_errf(err, errlen, "scheme (%.*s) not supported: want unix:// or tcp://",
                       (int)(sep - address > 32 ? 32 : sep - address), address);
    return bt_errf(err, errlen, "invalid address (%s): want unix:///path or tcp://host:port",
                   address);
}

void api_addr_free(api_addr *a)
{
    free(a->path);
    free(a->host);
    free(a->port);
    memset(a, 0, sizeof *a);
}
