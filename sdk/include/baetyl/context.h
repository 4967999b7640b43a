/* What a module learns from its environment (SPEC §8) and its entry point bt_run(): command
 * line, logger fields, SIGTERM/SIGINT handling and config loading. A module's main.c is:
 *
 *   static int run(bt_ctx *ctx) {
 *       my_cfg cfg;
 *       char err[256];
 *       if (bt_ctx_load_config(ctx, &my_schema, &cfg, err, sizeof err) < 0)
 *           return 1;                      // the error is already printed and logged
 *       ... start threads / an event loop watching bt_ctx_stop_fd(ctx) ...
 *       bt_ctx_wait(ctx);                  // until SIGTERM or SIGINT
 *       ... stop ...
 *       bt_cfg_free(&my_schema, &cfg);
 *       return 0;
 *   }
 *   int main(int argc, char **argv) { return bt_run(argc, argv, run); }
 *
 * Outside the master (no BAETYL_* variables) everything works the same: the service name
 * is the program's base name and the config path the default one. */
#ifndef BAETYL_CONTEXT_H
#define BAETYL_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "baetyl/config.h"

#define BT_DEFAULT_CONFIG_PATH "etc/baetyl/service.yml"
/* Read instead of the default path when only this one exists (Baetyl 0.x modules). */
#define BT_OLD_CONFIG_PATH "etc/openedge/service.yml"

/* The BAETYL_* variables the master sets (SPEC §8); each falls back to its OPENEDGE_*
 * twin when unset or empty. NULL when neither is set. Strings are malloc'd copies. */
typedef struct {
    char *service_name;     /* BAETYL_SERVICE_NAME */
    char *instance_name;    /* BAETYL_SERVICE_INSTANCE_NAME */
    char *service_mode;     /* BAETYL_SERVICE_MODE: native | docker */
    char *service_token;    /* BAETYL_SERVICE_TOKEN */
    char *api_address;      /* BAETYL_MASTER_API_ADDRESS */
    char *api_socket;       /* BAETYL_MASTER_API_SOCKET */
    char *api_version;      /* BAETYL_MASTER_API_VERSION */
    char *host_os;          /* BAETYL_HOST_OS */
    char *host_id;          /* BAETYL_HOST_ID */
    char *host_sn;          /* BAETYL_HOST_SN */
    char *instance_address; /* BAETYL_SERVICE_INSTANCE_ADDRESS */
} bt_env;

/* Reads the environment into e (overwritten). Returns 0, or -1 when out of memory. */
int bt_env_load(bt_env *e);
/* Frees the strings of e and zeroes it. */
void bt_env_free(bt_env *e);

typedef struct bt_ctx_state bt_ctx_state;

/* A running module. Fields are read-only for the module. */
typedef struct {
    bt_env env;
    const char *program;      /* base name of argv[0] */
    const char *service_name; /* env.service_name, or program when run standalone */
    const char *config_path;  /* -c/--config, else BT_DEFAULT_CONFIG_PATH */
    bool config_given;        /* config_path came from the command line */
    int argc;                 /* arguments left after the options */
    char **argv;
    bt_ctx_state *st; /* private */
} bt_ctx;

/* Shown by -h/--help and --version; a module may fill it before calling bt_run_module. */
typedef struct {
    const char *description; /* one line: what the module does */
    const char *usage;       /* extra help text printed after the options; may be NULL */
} bt_module_info;

/* Runs a module: parses -c/--config <file>, -h/--help, --version; blocks SIGTERM and SIGINT
 * (call it before creating threads: they inherit the mask); sets the log fields service
 * and instance under the master; logs start and stop; calls main_fn and returns its value
 * as the exit code (a negative value becomes 1). Bad options print the usage to stderr and
 * return 2; --help and --version print to stdout and return 0. */
int bt_run(int argc, char **argv, int (*main_fn)(bt_ctx *ctx));
/* bt_run with a description for --help (info may be NULL). */
int bt_run_module(const bt_module_info *info, int argc, char **argv, int (*main_fn)(bt_ctx *ctx));

/* True when the module runs as a native process: BAETYL_SERVICE_MODE is "native", or unset
 * because it runs standalone (decided here; Baetyl 1.0 said false then). */
bool bt_ctx_is_native(const bt_ctx *ctx);

/* Loads ctx->config_path into obj with the schema (config.h). A default path that does not
 * exist means all defaults (required fields still checked); a path given with -c must
 * exist. When the schema has a top-level BT_CFG_STRUCT field whose sub-schema is
 * bt_logger_schema, the logger is initialised from it (bt_log_init). On error obj is zeroed,
 * one line naming the field is logged (and also printed to stderr when the log goes to a
 * file), err holds the reason, and -1 is returned: the module should return 1. */
int bt_ctx_load_config(bt_ctx *ctx, const bt_cfg_schema *schema, void *obj, char *err,
                       size_t errlen);

/* Blocks until the module is asked to stop (SIGTERM, SIGINT or bt_ctx_stop). Returns the
 * signal number, or 0 for bt_ctx_stop. Returns at once when already stopped. Signals sent
 * to the process count (kill, the master); raise() aims at one thread only and does not:
 * use kill(getpid(), SIGTERM) or bt_ctx_stop. */
int bt_ctx_wait(bt_ctx *ctx);
/* A descriptor that becomes readable (and stays readable) when the module is asked to
 * stop: add it to poll/epoll; never read from it nor close it. */
int bt_ctx_stop_fd(const bt_ctx *ctx);
/* Asks the module to stop, as a signal would (thread-safe). */
void bt_ctx_stop(bt_ctx *ctx);
/* True once a stop was asked. */
bool bt_ctx_stopped(const bt_ctx *ctx);
/* Sleeps ms milliseconds or until the module is asked to stop, whichever comes first.
 * Returns true when a stop was asked (the caller should wind down). */
bool bt_ctx_sleep(bt_ctx *ctx, int64_t ms);

#endif
