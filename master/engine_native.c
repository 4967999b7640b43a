/* The native engine (SPEC §4): each instance is a process of a package found through the
 * service's mounts, in its own session and process group, started with posix_spawn and
 * watched through a pidfd (or by polling on kernels without pidfd). */
#include "cgroup.h"
#include "engine.h"
#include "host_stats.h"
#include "instance_log.h"
#include "path_beneath.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/config.h>
#include <baetyl/log.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SERVICES_DIR "var/run/baetyl/services"
#define SOCK_LINK "var/run/baetyl.sock"

typedef struct {
    char *entry;
} package_conf;

static const bt_cfg_field package_fields[] = {
    BT_FIELD(package_conf, entry, "entry", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    {0},
};
static const bt_cfg_schema package_schema = {sizeof(package_conf), package_fields, NULL};

typedef struct {
    char *name;
    char *dir;   /* absolute service work dir */
    char *exec;  /* absolute program path */
    char **args; /* argv[1..], NULL-terminated */
    size_t nargs;
    cg_service *cg; /* its cgroup when `resources` asks for limits and cgroups work */
} native_svc;

static void native_svc_free(native_svc *s)
{
    if (!s)
        return;
    free(s->name);
    free(s->dir);
    free(s->exec);
    for (size_t i = 0; i < s->nargs; i++)
        free(s->args[i]);
    free(s->args);
    cg_service_destroy(s->cg);
    free(s);
}

/* Links dst -> target, creating dst's parent when missing; the parent may not be reached
 * through a symlink that leaves the work dir. */
static int make_link(const char *pwd, char *const *vroots, const char *target, const char *dst,
                     char *err, size_t errlen)
{
    char *parent = strdup(dst), *base = strdup(dst), *rroot = realpath(pwd, NULL);
    char *rparent =
        parent && base ? path_dir_beneath(pwd, vroots, dirname(parent), err, errlen) : NULL;
    char *link = rparent ? bt_path_join(rparent, basename(base)) : NULL;
    int r = 0;
    if (!parent || !base || (rparent && !link))
        r = bt_errf(err, errlen, "out of memory");
    else if (!rparent)
        r = -1;
    else if (!rroot || !path_inside(rroot, rparent))
        r = bt_errf(err, errlen, "link %s: its directory %s is outside the work dir", dst, rparent);
    else if (symlink(target, link) != 0)
        r = bt_errf(err, errlen, "link %s -> %s: %s", dst, target, strerror(errno));
    free(parent);
    free(base);
    free(rroot);
    free(rparent);
    free(link);
    return r;
}

/* Links dst -> src, creating src (a directory) when missing, below the work dir too. */
static int link_mount(const char *pwd, char *const *vroots, const char *src, const char *dst,
                      char *err, size_t errlen)
{
    char *rsrc = path_dir_beneath(pwd, vroots, src, err, errlen);
    if (!rsrc)
        return -1;
    free(rsrc);
    return make_link(pwd, vroots, src, dst, err, errlen);
}

static int mount_all_in(bt_engine *e, const app_config *app, const app_service *svc,
                        const char *dir, char *const *vroots, char *err, size_t errlen)
{
    for (size_t i = 0; i < svc->mounts.n; i++) {
        const app_mount *m = APP_MOUNT(svc, i);
        const app_volume *v = app_find_volume(app, m->name);
        if (!v)
            return bt_errf(err, errlen, "volume (%s) not found", m->name);
        size_t lv = strlen(v->path) + 1, lm = strlen(m->path) + 1;
        char *vrel = malloc(lv), *mrel = malloc(lm), *src = NULL, *dst = NULL;
        int r;
        if (!vrel || !mrel)
            r = bt_errf(err, errlen, "out of memory");
        else if (bt_path_clean_rel(v->path, vrel, lv) != 0)
            r = bt_errf(err, errlen, "volume (%s): path (%s) escapes the work dir", v->name,
                        v->path);
        else if (bt_path_clean_rel(m->path, mrel, lm) != 0)
            r = bt_errf(err, errlen, "mount (%s): path (%s) escapes the service dir", m->name,
                        m->path);
        else if (!(src = bt_path_join(e->opts.pwd, vrel)) || !(dst = bt_path_join(dir, mrel)))
            r = bt_errf(err, errlen, "out of memory");
        else
            r = link_mount(e->opts.pwd, vroots, src, dst, err, errlen);
        free(vrel);
        free(mrel);
        free(src);
        free(dst);
        if (r != 0)
            return -1;
    }
    if (e->opts.api->is_unix) {
        char *dst = bt_path_join(dir, SOCK_LINK);
        if (!dst)
            return bt_errf(err, errlen, "out of memory");
        int r = make_link(e->opts.pwd, vroots, e->opts.api->path, dst, err, errlen);
        free(dst);
        if (r != 0)
            return -1;
    }
    return 0;
}

static int mount_all(bt_engine *e, const app_config *app, const app_service *svc, const char *dir,
                     char *err, size_t errlen)
{
    char **vroots = volume_roots(e->opts.pwd, app);
    if (!vroots)
        return bt_errf(err, errlen, "out of memory");
    int r = mount_all_in(e, app, svc, dir, vroots, err, errlen);
    volume_roots_free(vroots);
    return r;
}

/* Finds lib/baetyl/<image>/package.yml through the mounts and resolves its entry. */
static int find_program(const app_service *svc, const char *dir, char **exec, char *err,
                        size_t errlen)
{
    size_t n = strlen(svc->image) + 1;
    char *image = strdup(svc->image), *clean = malloc(n);
    char *pkgdir = NULL, *pkgfile = NULL, *entry = NULL, *prog = NULL;
    package_conf pkg = {0};
    bool loaded = false;
    char why[512];
    int rc = -1;
    if (!image || !clean) {
        bt_errf(err, errlen, "out of memory");
        goto out;
    }
    for (char *p = image; *p; p++)
        if (*p == ':')
            *p = '/';
    if (bt_path_clean_rel(image, clean, n) != 0) {
        bt_errf(err, errlen, "image (%s) is not a valid package name", svc->image);
        goto out;
    }
    pkgdir = bt_strdup_printf("%s/lib/baetyl/%s", dir, clean);
    pkgfile = pkgdir ? bt_strdup_printf("%s/package.yml", pkgdir) : NULL;
    if (!pkgfile) {
        bt_errf(err, errlen, "out of memory");
        goto out;
    }
    if (bt_cfg_load_file(&package_schema, &pkg, pkgfile, why, sizeof why) != 0) {
        bt_errf(err, errlen, "package (%s) not usable: %s", svc->image, why);
        goto out;
    }
    loaded = true;
    size_t le = strlen(pkg.entry) + 1;
    entry = malloc(le);
    if (!entry) {
        bt_errf(err, errlen, "out of memory");
        goto out;
    }
    if (pkg.entry[0] == '/' || bt_path_clean_rel(pkg.entry, entry, le) != 0) {
        bt_errf(err, errlen, "package (%s): entry (%s) must be a path inside the package (%s)",
                svc->image, pkg.entry, pkgfile);
        goto out;
    }
    prog = bt_path_join(pkgdir, entry);
    if (!prog) {
        bt_errf(err, errlen, "out of memory");
        goto out;
    }
    struct stat st;
    if (stat(prog, &st) != 0) {
        bt_errf(err, errlen, "package (%s): entry program %s: %s", svc->image, prog,
                strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        bt_errf(err, errlen, "package (%s): entry program %s is not a regular file", svc->image,
                prog);
        goto out;
    }
    /* Packages unpacked from zip volumes lose their mode bits: add x like Baetyl 1.0 did. */
    if (access(prog, X_OK) != 0 && chmod(prog, st.st_mode | 0111) != 0) {
        bt_errf(err, errlen, "package (%s): entry program %s is not executable: %s", svc->image,
                prog, strerror(errno));
        goto out;
    }
    *exec = prog;
    prog = NULL;
    rc = 0;
out:
    if (loaded)
        bt_cfg_free(&package_schema, &pkg);
    free(image);
    free(clean);
    free(entry);
    free(prog);
    free(pkgfile);
    free(pkgdir);
    return rc;
}

/* The host path of lib/baetyl/<image>/package.yml for a service: the mount whose path is
 * the longest prefix of lib/baetyl/<image>, plus the rest. NULL when no mount provides it. */
static char *package_host_path(const char *pwd, const app_config *app, const app_service *svc)
{
    char *image = strdup(svc->image);
    if (!image)
        return NULL;
    for (char *p = image; *p; p++)
        if (*p == ':')
            *p = '/';
    char *want = bt_strdup_printf("lib/baetyl/%s/package.yml", image);
    free(image);
    if (!want)
        return NULL;
    size_t wl = strlen(want);
    char *clean = malloc(wl + 1), *best = NULL;
    size_t best_len = 0;
    const app_mount *bm = NULL;
    if (clean && bt_path_clean_rel(want, clean, wl + 1) == 0) {
        for (size_t i = 0; i < svc->mounts.n; i++) {
            const app_mount *m = APP_MOUNT(svc, i);
            size_t ml = strlen(m->path) + 1;
            char *mp = malloc(ml);
            if (mp && bt_path_clean_rel(m->path, mp, ml) == 0) {
                size_t n = strlen(mp);
                if (strncmp(clean, mp, n) == 0 && clean[n] == '/' && n > best_len) {
                    best_len = n;
                    bm = m;
                }
            }
            free(mp);
        }
        const app_volume *v = bm ? app_find_volume(app, bm->name) : NULL;
        if (v) {
            size_t vl = strlen(v->path) + 1;
            char *vp = malloc(vl);
            if (vp && bt_path_clean_rel(v->path, vp, vl) == 0)
                best = bt_strdup_printf("%s/%s%s", pwd, vp, clean + best_len);
            free(vp);
        }
    }
    free(clean);
    free(want);
    return best;
}

int native_check_packages(const char *pwd, const app_config *app, char *err, size_t errlen)
{
    for (size_t i = 0; i < app->services.n; i++) {
        const app_service *svc = APP_SERVICE(app, i);
        char *p = package_host_path(pwd, app, svc);
        if (!p)
            return bt_errf(err, errlen,
                           "services[%zu]: no mount provides the package (lib/baetyl/%s)", i,
                           svc->image);
        int ok = bt_is_regular_file(p);
        if (!ok)
            bt_errf(err, errlen, "services[%zu]: package (%s) not found: %s: %s", i, svc->image, p,
                    strerror(ENOENT));
        free(p);
        if (!ok)
            return -1;
    }
    return 0;
}

static int native_prepare(bt_engine *e, const app_config *app, char *err, size_t errlen)
{
    return 0; /* packages arrive through volumes: nothing to fetch */
}

static int native_start_service(bt_engine *e, const app_config *app, const app_service *svc,
                                void **state, char *err, size_t errlen)
{
    *state = NULL;
    native_svc *s = calloc(1, sizeof *s);
    if (!s)
        return bt_errf(err, errlen, "out of memory");
    s->name = strdup(svc->name);
    s->dir = bt_strdup_printf("%s/%s/%s", e->opts.pwd, SERVICES_DIR, svc->name);
    s->args = calloc(svc->args.n + 1, sizeof(char *));
    if (!s->name || !s->dir || !s->args) {
        native_svc_free(s);
        return bt_errf(err, errlen, "out of memory");
    }
    for (size_t i = 0; i < svc->args.n; i++) {
        s->args[i] = strdup(BT_CFG_AT(svc->args, char *, i));
        if (!s->args[i]) {
            native_svc_free(s);
            return bt_errf(err, errlen, "out of memory");
        }
        s->nargs++;
    }
    /* A service whose instances are taken over keeps its dir: it is their cwd. */
    pthread_mutex_lock(&engine_adopt_mu);
    bool keep = e->adopt && json_object_get(e->adopt, svc->name) && bt_path_exists(s->dir);
    pthread_mutex_unlock(&engine_adopt_mu);
    if ((!keep &&
         (bt_rm_rf(s->dir, err, errlen) != 0 || bt_mkdir_p(s->dir, 0755, err, errlen) != 0 ||
          mount_all(e, app, svc, s->dir, err, errlen) != 0)) ||
        find_program(svc, s->dir, &s->exec, err, errlen) != 0) {
        bt_rm_rf(s->dir, NULL, 0);
        native_svc_free(s);
        return -1;
    }
    if (cg_wanted(&svc->resources)) {
        cg_system sys = {.root = "/sys/fs/cgroup"};
        char why[512];
        s->cg = cg_service_create(&sys, e->opts.pwd, svc->name, &svc->resources, why, sizeof why);
        if (!s->cg)
            bt_logkv(BT_LOG_WARN, "resources not applied: the service runs unlimited", "service",
                     svc->name, "error", why, NULL);
    }
    *state = s;
    return 0;
}

static void native_stop_service(bt_engine *e, void *state)
{
    native_svc *s = state;
    if (!s)
        return;
    char why[256];
    if (bt_rm_rf(s->dir, why, sizeof why) != 0)
        bt_logkv(BT_LOG_WARN, "failed to remove service dir", "service", s->name, "error", why,
                 NULL);
    native_svc_free(s);
}

/* Takes over the recorded process of that instance when it still runs and would be started
 * with the same environment (adopt.h); a recorded process that may not be taken over is
 * killed. Returns 0 when taken over, -1 to start a new process. */
static int take_over(bt_engine *e, native_svc *s, const char *instance, char *const env[],
                     eng_instance *out)
{
    json_t *rec = engine_adopt_take(e, s->name, instance);
    if (!rec)
        return -1;
    pid_t pid = (pid_t)json_integer_value(json_object_get(rec, "pid"));
    uint64_t start = (uint64_t)json_integer_value(json_object_get(rec, "start"));
    char hash[24], pids[24];
    snprintf(hash, sizeof hash, "%016" PRIx64, engine_env_hash(env));
    snprintf(pids, sizeof pids, "%d", (int)pid);
    const char *rh = json_string_value(json_object_get(rec, "env_hash"));
    bool same_env = rh && !strcmp(rh, hash);
    json_decref(rec);
    uint64_t ticks, rss, st;
    char comm[64];
    int fd = -1;
    if (pid > 1 && proc_sample(pid, &ticks, &rss, &st, comm, sizeof comm) == 0 && st == start) {
        fd = (int)syscall(SYS_pidfd_open, pid, 0);
        /* The pidfd names the process; check it is still the recorded one. */
        if (fd >= 0 &&
            (proc_sample(pid, &ticks, &rss, &st, comm, sizeof comm) != 0 || st != start)) {
            close(fd);
            fd = -1;
        }
        if (fd >= 0 && !same_env) {
            killpg(pid, SIGKILL);
            close(fd);
            bt_logkv(BT_LOG_INFO, "old instance stopped", "service", s->name, "instance", instance,
                     "pid", pids, "reason", "its environment changed", NULL);
            return -1;
        }
    }
    if (fd < 0)
        return -1;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    out->pid = pid;
    out->wait_fd = fd;
    out->adopted = true;
    out->log_path = ilog_path(e->opts.pwd, s->name, instance);
    out->log_fd = out->log_path ? ilog_reopen(out->log_path) : -1;
    out->owner = s;
    snprintf(out->id, sizeof out->id, "%d", (int)pid);
    snprintf(out->name, sizeof out->name, "%s", comm);
    bt_logkv(BT_LOG_INFO, "instance taken over", "service", s->name, "instance", instance, "pid",
             pids, NULL);
    return 0;
}

static int native_start_instance(bt_engine *e, void *state, const char *instance, char *const env[],
                                 eng_instance *out, char *err, size_t errlen)
{
    native_svc *s = state;
    memset(out, 0, sizeof *out);
    out->wait_fd = -1;
    out->log_fd = -1;
    if (take_over(e, s, instance, env, out) == 0)
        return 0;
    /* Its output goes to its own file, written by the instance itself (instance_log.h). */
    char *log_path = ilog_path(e->opts.pwd, s->name, instance);
    if (!log_path)
        return bt_errf(err, errlen, "out of memory");
    int log_fd = ilog_open_new(log_path, err, errlen);
    if (log_fd < 0) {
        free(log_path);
        return -1;
    }
    /* With a cgroup the program is started through the master's own binary, which joins
     * the cgroup and then execs it (cgroup.h): argv is __cgexec's, then the program's. */
    char *const *cgf = s->cg ? cg_service_procs_files(s->cg) : NULL;
    size_t ncg = 0;
    while (cgf && cgf[ncg])
        ncg++;
    size_t pre = cgf ? 4 + ncg : 0;
    char **argv = calloc(pre + s->nargs + 2, sizeof(char *));
    if (!argv) {
        close(log_fd);
        free(log_path);
        return bt_errf(err, errlen, "out of memory");
    }
    char nbuf[24];
    snprintf(nbuf, sizeof nbuf, "%zu", ncg);
    if (cgf) {
        argv[0] = "baetyl";
        argv[1] = "__cgexec";
        argv[2] = s->exec;
        argv[3] = nbuf;
        for (size_t i = 0; i < ncg; i++)
            argv[4 + i] = cgf[i];
    }
    argv[pre] = (char *)instance;
    for (size_t i = 0; i < s->nargs; i++)
        argv[pre + i + 1] = s->args[i];

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addchdir_np(&fa, s->dir);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, log_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, log_fd, 2);
    /* The master's own descriptors (API socket, log, pid file lock) stay with the master. */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawn(&pid, cgf ? "/proc/self/exe" : s->exec, &fa, &attr, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free(argv);
    if (rc != 0) {
        close(log_fd);
        free(log_path);
        return bt_errf(err, errlen, "failed to start instance (%s): exec %s: %s", instance, s->exec,
                       strerror(rc));
    }
    out->pid = pid;
    out->log_fd = log_fd;
    out->log_path = log_path;
    out->wait_fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (out->wait_fd >= 0)
        fcntl(out->wait_fd, F_SETFD, FD_CLOEXEC);
    snprintf(out->id, sizeof out->id, "%d", (int)pid);
    out->owner = s;
    uint64_t ticks, rss, start;
    if (cgf) /* still __cgexec for a moment: the name the program will have (TASK_COMM_LEN) */
        snprintf(out->name, sizeof out->name, "%.15s", basename(s->exec));
    else if (proc_sample(pid, &ticks, &rss, &start, out->name, sizeof out->name) != 0)
        snprintf(out->name, sizeof out->name, "%s", basename(s->exec));
    return 0;
}

static int exit_code_of(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* The leader has ended but is not reaped yet, so its pid still names the group: kill what
 * it left in the group (like a container whose main process ends), then reap. */
static int reap(eng_instance *inst, int *exit_code)
{
    if (inst->adopted) {
        /* Not our child (unless this master re-executed itself, mst.h): its parent reaps
         * it, its exit status is not ours to see, and its pid may name another group. */
        int st = 0;
        *exit_code = waitpid(inst->pid, &st, WNOHANG) == inst->pid ? exit_code_of(st) : -1;
    } else {
        killpg(inst->pid, SIGKILL);
        int st = 0;
        pid_t r;
        do
            r = waitpid(inst->pid, &st, 0);
        while (r < 0 && errno == EINTR);
        *exit_code = r == inst->pid ? exit_code_of(st) : -1;
    }
    inst->adopted = false;
    if (inst->wait_fd >= 0)
        close(inst->wait_fd);
    inst->wait_fd = -1;
    inst->pid = 0;
    ilog_check(inst->log_fd, inst->log_path, ILOG_MAX_BYTES);
    if (inst->log_fd >= 0)
        close(inst->log_fd);
    inst->log_fd = -1;
    free(inst->log_path);
    inst->log_path = NULL;
    return 1;
}

static int native_wait_instance(bt_engine *e, eng_instance *inst, int timeout_ms, int wake_fd,
                                int *exit_code)
{
    if (inst->pid <= 0) {
        *exit_code = -1;
        return 1;
    }
    int64_t deadline = timeout_ms < 0 ? -1 : bt_now_ms() + timeout_ms;
    for (;;) {
        /* The output file's cap is checked once a second while the instance runs. */
        ilog_check(inst->log_fd, inst->log_path, ILOG_MAX_BYTES);
        int left = -1;
        if (deadline >= 0) {
            int64_t l = deadline - bt_now_ms();
            left = l < 0 ? 0 : (int)l;
        }
        if (inst->wait_fd >= 0) {
            struct pollfd p[2] = {{.fd = inst->wait_fd, .events = POLLIN},
                                  {.fd = wake_fd, .events = POLLIN}};
            int slice = left < 0 || left > 1000 ? 1000 : left;
            int r = poll(p, wake_fd >= 0 ? 2 : 1, slice);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
            if (p[0].revents)
                return reap(inst, exit_code);
            if (p[1].revents || (r == 0 && slice == left))
                return 0;
            continue;
        }
        /* No pidfd (kernel < 5.3): look without reaping, then sleep a little. */
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)inst->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            si.si_pid == inst->pid)
            return reap(inst, exit_code);
        int slice = left < 0 || left > 100 ? 100 : left;
        struct pollfd p = {.fd = wake_fd, .events = POLLIN};
        int r = poll(&p, wake_fd >= 0 ? 1 : 0, slice);
        if (r > 0)
            return 0;
        if (left == 0)
            return 0;
    }
}

static int native_signal_instance(bt_engine *e, eng_instance *inst, bool force)
{
    if (inst->pid <= 0)
        return 0;
    if (killpg(inst->pid, force ? SIGKILL : SIGTERM) != 0 && errno != ESRCH)
        return -1;
    return 0;
}

static void native_instance_stats(bt_engine *e, eng_instance *inst, json_t *obj)
{
    /* Limits and cgroup counters even between restarts: an instance waiting out its backoff
     * after an OOM kill is when a user looks for oom_kills. */
    const native_svc *s = inst->owner;
    if (s && s->cg)
        cg_service_stats(s->cg, obj);
    if (inst->pid <= 0)
        return;
    uint64_t ticks = 0, rss = 0, start = 0;
    char comm[64] = "";
    if (proc_sample(inst->pid, &ticks, &rss, &start, comm, sizeof comm) != 0)
        return;
    json_object_set_new(obj, "process",
                        json_pack("{s:i,s:s}", "id", (json_int_t)inst->pid, "name", comm));
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    int64_t now = bt_now_ms();
    double pct = 0;
    if (inst->cpu_at_ms > 0 && now > inst->cpu_at_ms && ticks >= inst->cpu_ticks) {
        pct = (double)(ticks - inst->cpu_ticks) / (double)hz * 1000.0 /
              (double)(now - inst->cpu_at_ms) * 100.0;
    } else {
        double age = host_uptime() - (double)start / (double)hz;
        if (age > 0.01)
            pct = (double)ticks / (double)hz / age * 100.0;
    }
    inst->cpu_ticks = ticks;
    inst->cpu_at_ms = now;
    json_object_set_new(obj, "cpu_stats", json_pack("{s:f}", "used_percent", pct));
    uint64_t total = host_mem_total();
    json_object_set_new(obj, "mem_stats",
                        json_pack("{s:I,s:f}", "rss", (json_int_t)rss, "used_percent",
                                  total ? (double)rss * 100.0 / (double)total : 0.0));
}

static int native_instance_logs(bt_engine *e, void *state, const char *instance,
                                const eng_instance *inst, int n, json_t *arr)
{
    const native_svc *s = state;
    char *path = s ? ilog_path(e->opts.pwd, s->name, instance) : NULL;
    int r = path && ilog_tail(path, n, arr) == 0 ? 0 : 1;
    free(path);
    return r;
}

static void native_drop_adopted(bt_engine *e, const char *service, const char *instance,
                                json_t *rec)
{
    pid_t pid = (pid_t)json_integer_value(json_object_get(rec, "pid"));
    uint64_t start = (uint64_t)json_integer_value(json_object_get(rec, "start"));
    uint64_t ticks, rss, st;
    char comm[64], pids[24];
    if (pid <= 1 || pid == getpid() ||
        proc_sample(pid, &ticks, &rss, &st, comm, sizeof comm) != 0 || st != start)
        return; /* gone already */
    killpg(pid, SIGKILL);
    snprintf(pids, sizeof pids, "%d", (int)pid);
    bt_logkv(BT_LOG_INFO, "old instance stopped", "service", service, "instance", instance, "pid",
             pids, "reason", "not part of the application any more", NULL);
}

/* An instance started just before its master was killed may have no record yet: any
 * session leader working in a service dir of this work dir that is not taken over is
 * such a stray, and is killed (its service starts it again). */
static void kill_strays(bt_engine *e)
{
    char *dir = bt_path_join(e->opts.pwd, SERVICES_DIR);
    char *real = dir ? realpath(dir, NULL) : NULL;
    free(dir);
    DIR *d = real ? opendir("/proc") : NULL;
    size_t n = real ? strlen(real) : 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 1 || pid == getpid() || getsid((pid_t)pid) != (pid_t)pid)
            continue;
        char link[64], cwd[4096];
        snprintf(link, sizeof link, "/proc/%ld/cwd", pid);
        ssize_t l = readlink(link, cwd, sizeof cwd - 1);
        if (l <= 0)
            continue;
        cwd[l] = '\0';
        if (strncmp(cwd, real, n) != 0 || cwd[n] != '/' ||
            engine_adopt_has(e, "pid", json_integer(pid)))
            continue;
        char pids[24];
        snprintf(pids, sizeof pids, "%ld", pid);
        if (killpg((pid_t)pid, SIGKILL) == 0)
            bt_logkv(BT_LOG_INFO, "old instance stopped", "pid", pids, "reason",
                     "not recorded (its master was killed as it started)", NULL);
    }
    if (d)
        closedir(d);
    free(real);
}

static void native_recover(bt_engine *e, json_t *stats)
{
    const char *sname, *iname;
    json_t *svc, *inst;
    if (json_is_object(stats)) {
        json_object_foreach(stats, sname, svc)
        {
            if (!json_is_object(svc))
                continue;
            json_object_foreach(svc, iname, inst)
            {
                json_t *proc = json_object_get(inst, "process");
                json_t *jid = json_object_get(proc, "id"), *jname = json_object_get(proc, "name");
                if (!json_is_integer(jid) || !json_is_string(jname))
                    continue;
                json_int_t id = json_integer_value(jid);
                if (id <= 1 || id > 0x3fffffff || id == getpid())
                    continue;
                uint64_t t, r, st;
                char comm[64];
                if (proc_sample((pid_t)id, &t, &r, &st, comm, sizeof comm) != 0)
                    continue; /* gone already */
                if (strcmp(comm, json_string_value(jname)) != 0) {
                    bt_logkv(BT_LOG_DEBUG, "old process is another program now", "service", sname,
                             "instance", iname, NULL);
                    continue;
                }
                pthread_mutex_lock(&engine_adopt_mu);
                bool taken = e->adopt && json_object_get(json_object_get(e->adopt, sname), iname);
                pthread_mutex_unlock(&engine_adopt_mu);
                if (taken)
                    continue;
                pid_t pid = (pid_t)id;
                int r2 = getpgid(pid) == pid ? killpg(pid, SIGKILL) : kill(pid, SIGKILL);
                char pids[24];
                snprintf(pids, sizeof pids, "%d", (int)pid);
                if (r2 == 0)
                    bt_logkv(BT_LOG_INFO, "old instance stopped", "service", sname, "instance",
                             iname, "pid", pids, NULL);
                else
                    bt_logkv(BT_LOG_WARN, "failed to stop old instance", "service", sname,
                             "instance", iname, "pid", pids, "error", strerror(errno), NULL);
            }
        }
    }
    kill_strays(e);
    /* Service dirs only hold links; whatever a killed master left is stale, except the dirs
     * of services whose instances are taken over (their cwd). */
    char *dir = bt_path_join(e->opts.pwd, SERVICES_DIR);
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        pthread_mutex_lock(&engine_adopt_mu);
        bool keep = e->adopt && json_object_get(e->adopt, de->d_name);
        pthread_mutex_unlock(&engine_adopt_mu);
        char *sub = keep ? NULL : bt_path_join(dir, de->d_name);
        if (sub)
            bt_rm_rf(sub, NULL, 0);
        free(sub);
    }
    if (d)
        closedir(d);
    free(dir);
}

static void native_destroy(bt_engine *e)
{
    free(e->api_env);
    free(e);
}

static const engine_ops native_ops = {
    .name = "native",
    .prepare = native_prepare,
    .start_service = native_start_service,
    .stop_service = native_stop_service,
    .start_instance = native_start_instance,
    .wait_instance = native_wait_instance,
    .signal_instance = native_signal_instance,
    .instance_stats = native_instance_stats,
    .stats_between_runs = true,
    .instance_logs = native_instance_logs,
    .drop_adopted = native_drop_adopted,
    .recover = native_recover,
    .destroy = native_destroy,
};

int engine_native_new(const engine_opts *opts, bt_engine **out, char *err, size_t errlen)
{
    bt_engine *e = calloc(1, sizeof *e);
    if (!e)
        return bt_errf(err, errlen, "out of memory");
    e->ops = &native_ops;
    e->opts = *opts;
    if (opts->api->is_unix)
        e->api_env = strdup("unix://" SOCK_LINK);
    else if (strchr(opts->api->host, ':'))
        e->api_env = bt_strdup_printf("tcp://[%s]:%s", opts->api->host, opts->api->port);
    else
        e->api_env = bt_strdup_printf("tcp://%s:%s", opts->api->host, opts->api->port);
    if (!e->api_env) {
        free(e);
        return bt_errf(err, errlen, "out of memory");
    }
    *out = e;
    return 0;
}
