/* The `baetyl` command line (SPEC §1): start, check, version, stop, status, logs. */
#ifndef BAETYL_MASTER_CLI_H
#define BAETYL_MASTER_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <baetyl/api.h>

/* Runs the command in argv; returns the process exit code. */
int cli_main(int argc, char **argv);

/* `baetyl start` (start.c): runs the master in the foreground in workdir (already the
 * cwd) with the config at conf_path. Returns the exit code. */
int cmd_start(const char *workdir, const char *conf_path);
/* `baetyl status` (status.c): prints the running master's inspect, readable or raw JSON. */
int cmd_status(const char *conf_path, bool json, bool check, int64_t max_age_ms);

/* The API client of the CLI account for the master running in the cwd (status.c). Returns
 * 0, or the exit code after printing why (3: not running). *pid gets the master's pid. */
int cli_api_connect(const char *conf_path, bt_api_client **out, pid_t *pid);
/* `baetyl logs` (logs_cmd.c): a service's output, the last `lines` lines of each instance,
 * then (follow) what comes, until interrupted. */
int cmd_logs(const char *conf_path, const char *service, long lines, bool follow);

#endif
