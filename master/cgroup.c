/* cgroup v1 and v2 for native services' limits (cgroup.h). */
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "baetyl/error.h"
#include "baetyl/util.h"

#define CGROUP2_MAGIC 0x63677270
#define CPU_PERIOD_US 100000

enum { C_CPU, C_CPUSET, C_MEMORY, C_PIDS, C_N };
static const char *const ctrl_name[C_N] = {"cpu", "cpuset", "memory", "pids"};

struct cg_service {
    int version;
    char *dirs[C_N]; /* v1: the service's dir in each controller used; v2: dirs[0] only */
    char *procs[C_N + 1];
    bt_app_resources want;
};

bool cg_wanted(const bt_app_resources *r)
{
    return r->cpus > 0 || (r->setcpus && *r->setcpus) || r->memory_limit > 0 ||
           r->memory_swap > 0 || r->pids_limit > 0;
}

static int write_text(const char *dir, const char *file, const char *text, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    /* O_TRUNC: cgroupfs ignores it; the test's plain files need it */
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0)
        return bt_errf(err, errlen, "cgroup %s: %s", path, strerror(errno));
    int r = bt_write_all(fd, text, strlen(text));
    int e = errno;
    close(fd);
    if (r != 0)
        return bt_errf(err, errlen, "cgroup %s = %s: %s", path, text, strerror(e));
    return 0;
}

/* The first line of dir/file, trailing newline removed; "" when unreadable. */
static void read_line(const char *dir, const char *file, char *out, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    out[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    if (fgets(out, (int)len, f))
        out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

/* The number after `key ` in a flat keyed file (memory.events, memory.oom_control); -1. */
static long long keyed(const char *dir, const char *file, const char *key)
{
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    long long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ' ') {
            v = atoll(line + kl + 1);
            break;
        }
    fclose(f);
    return v;
}

static long long number(const char *dir, const char *file)
{
    char v[64];
    read_line(dir, file, v, sizeof v);
    return v[0] >= '0' && v[0] <= '9' ? atoll(v) : -1;
}

void cg_master_id(const char *workdir, char out[17])
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = workdir; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 1099511628211ull;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static int detect(const char *root)
{
    struct statfs sf;
    if (statfs(root, &sf) == 0 && (unsigned long)sf.f_type == CGROUP2_MAGIC)
        return 2;
    return 1;
}

/* mkdir of base/baetyl/<id>/<service>, level by level; for cpuset v1 each new level gets its
 * parent's cpus and mems (a v1 cpuset without them takes no task). */
static char *make_dirs(const char *base, const char *id, const char *service, bool cpuset,
                       char *err, size_t errlen)
{
    const char *parts[3] = {"baetyl", id, service};
    char *dir = strdup(base);
    for (int i = 0; dir && i < 3; i++) {
        char *next = bt_strdup_printf("%s/%s", dir, parts[i]);
        if (!next) {
            free(dir);
            dir = NULL;
            break;
        }
        if (mkdir(next, 0755) != 0 && errno != EEXIST) {
            bt_errf(err, errlen, "cgroup mkdir %s: %s", next, strerror(errno));
            free(next);
            free(dir);
            return NULL;
        }
        if (cpuset) {
            char v[256];
            for (int k = 0; k < 2; k++) {
                const char *f = k ? "cpuset.mems" : "cpuset.cpus";
                char cur[256];
                read_line(next, f, cur, sizeof cur);
                read_line(dir, f, v, sizeof v);
                if (!cur[0] && v[0] && write_text(next, f, v, err, errlen) < 0) {
                    free(next);
                    free(dir);
                    return NULL;
                }
            }
        }
        free(dir);
        dir = next;
    }
    if (!dir)
        bt_errf(err, errlen, "out of memory");
    return dir;
}

static int set_limits_v1(cg_service *c, char *err, size_t errlen)
{
    const bt_app_resources *r = &c->want;
    char v[64];
    if (c->dirs[C_CPU]) {
        snprintf(v, sizeof v, "%d", CPU_PERIOD_US);
        if (write_text(c->dirs[C_CPU], "cpu.cfs_period_us", v, err, errlen) < 0)
            return -1;
        snprintf(v, sizeof v, "%lld", (long long)(r->cpus * CPU_PERIOD_US));
        if (write_text(c->dirs[C_CPU], "cpu.cfs_quota_us", v, err, errlen) < 0)
            return -1;
    }
    if (c->dirs[C_CPUSET] &&
        write_text(c->dirs[C_CPUSET], "cpuset.cpus", r->setcpus, err, errlen) < 0)
        return -1;
    if (c->dirs[C_MEMORY]) {
        if (r->memory_limit > 0) {
            snprintf(v, sizeof v, "%lld", (long long)r->memory_limit);
            if (write_text(c->dirs[C_MEMORY], "memory.limit_in_bytes", v, err, errlen) < 0)
                return -1;
        }
        /* memory.swap is memory + swap (Docker's MemorySwap); it needs swap accounting */
        if (r->memory_swap > 0) {
            snprintf(v, sizeof v, "%lld", (long long)r->memory_swap);
            if (write_text(c->dirs[C_MEMORY], "memory.memsw.limit_in_bytes", v, err, errlen) < 0)
                return -1;
        }
    }
    if (c->dirs[C_PIDS]) {
        snprintf(v, sizeof v, "%ld", r->pids_limit);
        if (write_text(c->dirs[C_PIDS], "pids.max", v, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int set_limits_v2(cg_service *c, char *err, size_t errlen)
{
    const bt_app_resources *r = &c->want;
    const char *d = c->dirs[0];
    char v[64];
    if (r->cpus > 0) {
        snprintf(v, sizeof v, "%lld %d", (long long)(r->cpus * CPU_PERIOD_US), CPU_PERIOD_US);
        if (write_text(d, "cpu.max", v, err, errlen) < 0)
            return -1;
    }
    if (r->setcpus && *r->setcpus && write_text(d, "cpuset.cpus", r->setcpus, err, errlen) < 0)
        return -1;
    if (r->memory_limit > 0) {
        snprintf(v, sizeof v, "%lld", (long long)r->memory_limit);
        if (write_text(d, "memory.max", v, err, errlen) < 0)
            return -1;
    }
    if (r->memory_swap > 0) { /* v2 counts swap alone: memory + swap minus memory */
        long long swap = r->memory_swap - (r->memory_limit > 0 ? r->memory_limit : 0);
        snprintf(v, sizeof v, "%lld", swap > 0 ? swap : 0);
        if (write_text(d, "memory.swap.max", v, err, errlen) < 0)
            return -1;
    }
    if (r->pids_limit > 0) {
        snprintf(v, sizeof v, "%ld", r->pids_limit);
        if (write_text(d, "pids.max", v, err, errlen) < 0)
            return -1;
    }
    return 0;
}

cg_service *cg_service_create(const cg_system *sys, const char *workdir, const char *service,
                              const bt_app_resources *r, char *err, size_t errlen)
{
    cg_service *c = calloc(1, sizeof *c);
    if (!c) {
        bt_errf(err, errlen, "out of memory");
        return NULL;
    }
    c->version = sys->version ? sys->version : detect(sys->root);
    c->want = *r;
    char id[17];
    cg_master_id(workdir, id);
    bool need[C_N] = {r->cpus > 0, r->setcpus && *r->setcpus,
                      r->memory_limit > 0 || r->memory_swap > 0, r->pids_limit > 0};
    size_t np = 0;
    if (c->version == 2) {
        /* the controllers must be enabled from the root down to the service's parent */
        char have[256];
        read_line(sys->root, "cgroup.controllers", have, sizeof have);
        char enable[64] = "";
        for (int k = 0; k < C_N; k++) {
            if (!need[k])
                continue;
            if (!strstr(have, ctrl_name[k])) {
                bt_errf(err, errlen, "cgroup v2 controller %s is not available", ctrl_name[k]);
                goto fail;
            }
            snprintf(enable + strlen(enable), sizeof enable - strlen(enable), "%s+%s",
                     enable[0] ? " " : "", ctrl_name[k]);
        }
        char *dir = make_dirs(sys->root, id, service, false, err, errlen);
        if (!dir)
            goto fail;
        c->dirs[0] = dir;
        char *lvl[2] = {bt_strdup_printf("%s/baetyl", sys->root),
                        bt_strdup_printf("%s/baetyl/%s", sys->root, id)};
        int bad = !lvl[0] || !lvl[1] ||
                  write_text(sys->root, "cgroup.subtree_control", enable, err, errlen) < 0 ||
                  write_text(lvl[0], "cgroup.subtree_control", enable, err, errlen) < 0 ||
                  write_text(lvl[1], "cgroup.subtree_control", enable, err, errlen) < 0;
        free(lvl[0]);
        free(lvl[1]);
        if (bad || set_limits_v2(c, err, errlen) < 0)
            goto fail;
        c->procs[np++] = bt_strdup_printf("%s/cgroup.procs", dir);
    } else {
        for (int k = 0; k < C_N; k++) {
            if (!need[k])
                continue;
            char *base = bt_strdup_printf("%s/%s", sys->root, ctrl_name[k]);
            struct stat st;
            if (!base || stat(base, &st) != 0 || !S_ISDIR(st.st_mode)) {
                bt_errf(err, errlen, "cgroup v1 controller %s is not mounted at %s", ctrl_name[k],
                        base ? base : sys->root);
                free(base);
                goto fail;
            }
            c->dirs[k] = make_dirs(base, id, service, k == C_CPUSET, err, errlen);
            free(base);
            if (!c->dirs[k])
                goto fail;
            c->procs[np++] = bt_strdup_printf("%s/cgroup.procs", c->dirs[k]);
        }
        if (set_limits_v1(c, err, errlen) < 0)
            goto fail;
    }
    for (size_t i = 0; i < np; i++)
        if (!c->procs[i]) {
            bt_errf(err, errlen, "out of memory");
            goto fail;
        }
    return c;
fail:
    cg_service_destroy(c);
    return NULL;
}

char *const *cg_service_procs_files(const cg_service *c)
{
    return c->procs;
}

void cg_service_stats(const cg_service *c, json_t *obj)
{
    const bt_app_resources *r = &c->want;
    json_t *lim = json_object(), *cg = json_object();
    if (r->cpus > 0)
        json_object_set_new(lim, "cpus", json_real(r->cpus));
    if (r->setcpus && *r->setcpus)
        json_object_set_new(lim, "setcpus", json_string(r->setcpus));
    if (r->memory_limit > 0)
        json_object_set_new(lim, "memory", json_integer(r->memory_limit));
    if (r->memory_swap > 0)
        json_object_set_new(lim, "memory_swap", json_integer(r->memory_swap));
    if (r->pids_limit > 0)
        json_object_set_new(lim, "pids", json_integer(r->pids_limit));
    long long peak = -1, cur = -1, oom = -1, pids = -1;
    if (c->version == 2) {
        const char *d = c->dirs[0];
        peak = number(d, "memory.peak");
        cur = number(d, "memory.current");
        oom = keyed(d, "memory.events", "oom_kill");
        pids = number(d, "pids.current");
    } else {
        if (c->dirs[C_MEMORY]) {
            peak = number(c->dirs[C_MEMORY], "memory.max_usage_in_bytes");
            cur = number(c->dirs[C_MEMORY], "memory.usage_in_bytes");
            oom = keyed(c->dirs[C_MEMORY], "memory.oom_control", "oom_kill");
        }
        if (c->dirs[C_PIDS])
            pids = number(c->dirs[C_PIDS], "pids.current");
    }
    json_object_set_new(cg, "version", json_integer(c->version));
    if (peak >= 0)
        json_object_set_new(cg, "memory_peak", json_integer(peak));
    if (cur >= 0)
        json_object_set_new(cg, "memory_current", json_integer(cur));
    if (oom >= 0)
        json_object_set_new(cg, "oom_kills", json_integer(oom));
    if (pids >= 0)
        json_object_set_new(cg, "pids_current", json_integer(pids));
    json_object_set_new(obj, "limits", lim);
    json_object_set_new(obj, "cgroup", cg);
}

/* rmdir of the service's dir, then of baetyl/<id> and baetyl when they are empty. */
static void remove_dirs(char *dir)
{
    for (int up = 0; up < 3 && dir; up++) {
        if (rmdir(dir) != 0)
            break;
        char *slash = strrchr(dir, '/');
        if (!slash)
            break;
        *slash = '\0';
    }
}

void cg_service_destroy(cg_service *c)
{
    if (!c)
        return;
    for (int k = 0; k < C_N; k++) {
        remove_dirs(c->dirs[k]);
        free(c->dirs[k]);
    }
    for (int k = 0; k <= C_N; k++)
        free(c->procs[k]);
    free(c);
}

int cg_exec_main(int argc, char **argv)
{
    /* baetyl __cgexec PROGRAM N FILE... ARGV0 ARGS... */
    if (argc < 5)
        return 127;
    long n = strtol(argv[3], NULL, 10);
    if (n < 0 || n > C_N || argc < 5 + n)
        return 127;
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    for (long i = 0; i < n; i++) {
        int fd = open(argv[4 + i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || bt_write_all(fd, pid, strlen(pid)) != 0) {
            /* the service's output is the master's log of it: say why it did not start */
            fprintf(stderr, "baetyl: cannot join cgroup %s: %s\n", argv[4 + i], strerror(errno));
            return 127;
        }
        close(fd);
    }
    execv(argv[2], argv + 4 + n);
    fprintf(stderr, "baetyl: exec %s: %s\n", argv[2], strerror(errno));
    return 127;
}
