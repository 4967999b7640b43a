/* The `baetyl` command line (SPEC §1): start, check, version, stop, status. */
#ifndef BAETYL_MASTER_CLI_H
#define BAETYL_MASTER_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* Runs the command in argv; returns the process exit code. */
int cli_main(int argc, char **argv);

/* `baetyl start` (start.c): runs the master in the foreground in workdir (already the
 * cwd) with the config at conf_path. Returns the exit code. */
int cmd_start(const char *workdir, const char *conf_path);
/* `baetyl status` (status.c): prints the running master's inspect, readable or raw JSON. */
int cmd_status(const char *conf_path, bool json, bool check, int64_t max_age_ms);

#endif
