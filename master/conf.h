/* The master config etc/baetyl/conf.yml (SPEC §2), loaded through the SDK schema. */
#ifndef BAETYL_MASTER_CONF_H
#define BAETYL_MASTER_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <baetyl/api.h>
#include <baetyl/config.h>
#include <baetyl/log.h>

#define MASTER_DEFAULT_CONF "etc/baetyl/conf.yml"
#define MASTER_DEFAULT_LOG "var/log/baetyl/baetyl.log"
#define MASTER_DEFAULT_ADDRESS "unix:///var/run/baetyl.sock"

typedef struct {
    char *mode;    /* docker|native|swarm */
    int64_t grace; /* ms */
    struct {
        char *address;   /* unix:///path or tcp://host:port */
        int64_t timeout; /* ms */
    } server;
    char *snfile;
    struct {
        char *api_version;
    } docker;
    bt_logger_config logger;
    char *logger_path; /* logger.path with the master's own default */
    struct {
        char *path;
    } otalog;
    struct {
        char *address; /* tcp://host:port of /metrics and the status page; "" = off */
    } metrics;
    struct {
        int64_t timeout; /* ms: a new master binary must start its application within it */
    } ota;
} master_conf;

/* Loads conf.yml; a missing file gives the defaults and sets *missing. Relative paths stay
 * relative to the work dir (the master runs in it). Returns 0 or -1 with err naming the field. */
int conf_load(const char *path, master_conf *c, bool *missing, char *err, size_t errlen);
/* Frees a loaded config. */
void conf_free(master_conf *c);

#endif
