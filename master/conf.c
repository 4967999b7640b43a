/* The master config etc/baetyl/conf.yml (SPEC §2). */
#include "conf.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/api.h>

#include <string.h>

static int check_address(const void *v, char *err, size_t errlen)
{
    const char *s = *(char *const *)v;
    bt_api_addr a;
    /* The pwd only matters for relative unix paths, whose length is checked again later. */
    int r = bt_api_addr_parse(s, "/", &a, err, errlen);
    if (r == 0)
        bt_api_addr_free(&a);
    return r;
}

/* metrics.address: empty (off) or tcp://host:port; never a unix socket. */
static int check_metrics_address(const void *v, char *err, size_t errlen)
{
    const char *s = *(char *const *)v;
    if (!s || !*s)
        return 0;
    if (strncmp(s, "tcp://", 6) != 0)
        return bt_errf(err, errlen, "want tcp://host:port");
    return check_address(v, err, errlen);
}

static const bt_cfg_field conf_fields[] = {
    BT_FIELD(master_conf, mode, "mode", BT_CFG_STRING, .def = "docker",
             .choices = "docker|native|swarm"),
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
    BT_FIELD(master_conf, metrics.address, "metrics.address", BT_CFG_STRING, .def = "",
             .check = check_metrics_address),
    BT_FIELD(master_conf, ota.timeout, "ota.timeout", BT_CFG_DURATION, .def = "5m",
             .flags = BT_CFG_RANGE, .min = 1000, .max = 86400000.0),
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
