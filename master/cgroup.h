/* Resource limits of native services through cgroups (SPEC §3 `resources`, which §19 extends
 * to native mode): cpu.cpus, cpu.setcpus, memory.limit, memory.swap (memory + swap, as
 * Docker counts it) and pids.limit.
 *
 * Each limited service gets its own cgroup, <hierarchy>/baetyl/<master id>/<service>, the
 * master id being a hash of the work dir so that two masters on one machine never share
 * one. cgroup v2 is used when the root is a cgroup2 mount with the controllers enabled,
 * else cgroup v1 (one hierarchy per controller). An instance joins its cgroup before it
 * execs its program: the master starts it through its own binary (`baetyl __cgexec`), which
 * writes itself into the cgroup and then execs, so not one instruction of the program runs
 * unlimited. The cgroup is removed when the service stops. Without cgroup access (not root,
 * a controller missing) the service runs unlimited, with one warning naming what failed. */
#ifndef BAETYL_MASTER_CGROUP_H
#define BAETYL_MASTER_CGROUP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "baetyl/app_config.h"

typedef struct cg_service cg_service;

/* Where cgroups are mounted and which version: root /sys/fs/cgroup on a real system; a
 * temporary directory in unit tests (then version is given, not detected). */
typedef struct {
    const char *root;
    int version; /* 0: detect, 1 or 2 */
} cg_system;

/* 16 hex digits naming a master by its work dir (FNV-1a 64): baetyl/<id>/<service>. */
void cg_master_id(const char *workdir, char out[17]);
/* True when r asks for any limit. */
bool cg_wanted(const bt_app_resources *r);

/* Creates the service's cgroup(s) under sys and writes r's limits. Returns NULL with err
 * when it cannot (the caller warns and runs the service unlimited). */
cg_service *cg_service_create(const cg_system *sys, const char *workdir, const char *service,
                              const bt_app_resources *r, char *err, size_t errlen);
/* The cgroup.procs files an instance writes itself into (NULL-terminated, owned by c). */
char *const *cg_service_procs_files(const cg_service *c);
/* Adds "limits" (what was asked) and "cgroup" (memory peak, OOM kills, pids) to obj. */
void cg_service_stats(const cg_service *c, json_t *obj);
/* Removes the cgroup(s) (their processes must be gone) and frees c. NULL is fine. */
void cg_service_destroy(cg_service *c);

/* `baetyl __cgexec PROGRAM N FILE... ARGV0 ARGS...`: writes its pid into the N cgroup.procs
 * files, then execs PROGRAM with ARGV0 ARGS... and the same environment. Returns only on
 * error (exit code 127, as a failed exec). */
int cg_exec_main(int argc, char **argv);

#endif
