/* Master binary OTA (mst.h). */
#include "mst.h"
#include "path_beneath.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/log.h>
#include <baetyl/otalog.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK_OUT_MAX 4096
#define BIN_MAX (512u << 20)
/* The guardian waits this much longer than ota.timeout: a new master that runs at all rolls
 * itself back in place (same pid), which is better than the guardian's new process. */
#define GUARD_GRACE_MS 2000
#define GUARD_TICK_MS 100

extern char **environ;

/* The boot's view of an update in progress. */
static struct {
    char workdir[PATH_MAX], conf[PATH_MAX], otalog[PATH_MAX], trace[256];
    int64_t timeout_ms;
    bool pending;    /* this is the new binary of an update */
    bool rolledback; /* this is the old binary, back after a failed update */
    bool done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} boot = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void mst_log(const char *otalog, const char *trace, const char *step, const char *msg,
                    const char *error)
{
    char why[512];
    if (bt_otalog_write(otalog, trace && *trace ? trace : NULL, "MST", step, msg, error, why,
                        sizeof why) < 0)
        bt_logkv(BT_LOG_WARN, "failed to write ota log", "path", otalog, "error", why, NULL);
    bt_logkv(error ? BT_LOG_ERROR : BT_LOG_INFO, msg, "type", "MST", "step", step, "error", error,
             NULL);
}

/* The running binary's path (readlink /proc/self/exe), or -1. */
static int self_exe(char *out, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", out, len - 1);
    if (n <= 0)
        return -1;
    out[n] = '\0';
    return 0;
}

static int write_marker(const char *state, const char *trace, ino_t ino, char *err, size_t errlen)
{
    json_t *j = json_pack("{s:s,s:s,s:I}", "state", state, "trace", trace ? trace : "", "ino",
                          (json_int_t)ino);
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    int r = t && bt_mkdir_parents(MST_MARKER, err, errlen) == 0
                ? bt_write_file_atomic(MST_MARKER, t, strlen(t), 0600, err, errlen)
                : -1;
    free(t);
    return r;
}

/* Copies src to dst (through dst.tmp, synced, renamed: never a half-written dst). The inode
 * of the result goes to *ino. */
static int copy_file(const char *src, const char *dst, ino_t *ino, char *err, size_t errlen)
{
    char *data = NULL;
    size_t len = 0;
    if (bt_read_file(src, BIN_MAX, &data, &len, err, errlen) != 0)
        return -1;
    int r = bt_write_file_atomic(dst, data, len, 0755, err, errlen);
    free(data);
    struct stat st;
    if (r == 0 && stat(dst, &st) != 0)
        r = bt_errf(err, errlen, "stat %s: %s", dst, strerror(errno));
    if (r == 0 && ino)
        *ino = st.st_ino;
    return r;
}

/* Runs `<bin> check -w <workdir> -c <conf>`: 0 when it prints OK! and exits 0. */
static int check_binary(const char *bin, const char *workdir, const char *conf, char *err,
                        size_t errlen)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return bt_errf(err, errlen, "pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    char *argv[] = {(char *)bin, "check", "-w", (char *)workdir, "-c", (char *)conf, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, bin, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return bt_errf(err, errlen, "exec %s: %s", bin, strerror(rc));
    }
    char out[CHECK_OUT_MAX];
    size_t n = 0;
    for (;;) {
        char buf[1024];
        ssize_t r = read(p[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t k = (size_t)r < sizeof out - 1 - n ? (size_t)r : sizeof out - 1 - n;
        memcpy(out + n, buf, k);
        n += k;
    }
    close(p[0]);
    out[n] = '\0';
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(out, "OK!"))
        return 0;
    bt_str_trim(out);
    return bt_errf(err, errlen, "%s", out[0] ? out : "no OK! from the new binary");
}

/* execs the binary at exe as `baetyl start -w <workdir> -c <conf>`; returns on failure. */
static void reexec(const char *exe)
{
    char *argv[] = {"baetyl", "start", "-w", boot.workdir, "-c", boot.conf, NULL};
    bt_log_close(); /* the next image opens it again */
    execv(exe, argv);
}

/* Puts <exe>.old back at exe and executes it; returns only when that is impossible
 * (logged). exe NULL: the running binary. */
static void rollback_to(const char *exe_path, const char *why)
{
    char exe[PATH_MAX - 8], old[PATH_MAX], err[512];
    struct stat st;
    mst_log(boot.otalog, boot.trace, "ROLLINGBACK", "failed to start master", why);
    if (exe_path)
        snprintf(exe, sizeof exe, "%s", exe_path);
    else if (self_exe(exe, sizeof exe) != 0) {
        mst_log(boot.otalog, boot.trace, "FAILURE", "failed to roll back", "no /proc/self/exe");
        unlink(MST_MARKER);
        return;
    }
    snprintf(old, sizeof old, "%s.old", exe);
    if (stat(old, &st) != 0 ||
        write_marker("ROLLINGBACK", boot.trace, st.st_ino, err, sizeof err) != 0 ||
        rename(old, exe) != 0) {
        mst_log(boot.otalog, boot.trace, "FAILURE", "failed to roll back",
                errno ? strerror(errno) : err);
        unlink(MST_MARKER);
        return;
    }
    reexec(exe);
    mst_log(boot.otalog, boot.trace, "FAILURE", "failed to roll back", strerror(errno));
    unlink(MST_MARKER);
}

static void rollback(const char *why)
{
    rollback_to(NULL, why);
}

/* Starts the guardian (mst_guard_main) from the old binary, kept at old: it rolls back when
 * the new master at exe (this pid, once re-executed) dies or does not start in time. It gets
 * this process's pidfd as fd 3 and leaves a grandchild (no zombie for the new master to
 * reap). Same process group, so a stop of the whole group stops it too. */
static void spawn_guard(const char *old, const char *exe, ino_t ino, int64_t timeout_ms)
{
    char inos[24], tmo[24];
    snprintf(inos, sizeof inos, "%llu", (unsigned long long)ino);
    snprintf(tmo, sizeof tmo, "%lld", (long long)timeout_ms);
    char *argv[] = {"baetyl",     "__mst-guard", inos,        tmo,        (char *)exe,
                    boot.workdir, boot.conf,     boot.otalog, boot.trace, NULL};
    int pfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    /* The master blocks its stop signals for sigwait: the guardian must die of them. */
    posix_spawnattr_t at;
    posix_spawn_file_actions_t fa;
    sigset_t none, stops;
    sigemptyset(&none);
    sigemptyset(&stops);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGINT);
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &stops);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd, 3);
    pid_t g;
    int rc = pfd < 0 ? errno : posix_spawn(&g, old, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (pfd >= 0)
        close(pfd);
    int st;
    if (rc == 0)
        while (waitpid(g, &st, 0) < 0 && errno == EINTR)
            ;
    if (rc != 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        bt_logkv(BT_LOG_WARN, "no MST guardian: a new master that dies cannot roll back", "error",
                 rc ? strerror(rc) : "the guardian did not start", NULL);
}

/* The marker still says the update of the binary with inode ino is under way. */
static bool marker_pending(ino_t ino)
{
    char *text = NULL;
    if (bt_read_file(MST_MARKER, 4096, &text, NULL, NULL, 0) != 0)
        return false;
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    const char *state = json_string_value(json_object_get(j, "state"));
    bool r = state && (!strcmp(state, "UPDATING") || !strcmp(state, "RESTARTING")) &&
             (ino_t)json_integer_value(json_object_get(j, "ino")) == ino;
    json_decref(j);
    return r;
}

int mst_guard_main(int argc, char **argv)
{
    if (argc != 9) {
        fputs("baetyl: __mst-guard is internal to MST updates\n", stderr);
        return 2;
    }
    ino_t ino = (ino_t)strtoull(argv[2], NULL, 10);
    int64_t timeout = strtoll(argv[3], NULL, 10);
    const char *exe = argv[4];
    snprintf(boot.workdir, sizeof boot.workdir, "%s", argv[5]);
    snprintf(boot.conf, sizeof boot.conf, "%s", argv[6]);
    snprintf(boot.otalog, sizeof boot.otalog, "%s", argv[7]);
    snprintf(boot.trace, sizeof boot.trace, "%s", argv[8]);
    int pfd = 3; /* the master's pidfd */
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child > 0)
        _exit(0); /* the master reaps this one; the guardian goes on in the child */
    /* Only the master's pid file lock and sockets would be kept alive by inherited fds. */
    syscall(SYS_close_range, 4u, ~0u, 0u);
    bool dead = false;
    int64_t deadline = bt_now_ms() + timeout + GUARD_GRACE_MS;
    const char *why = "the new master exited before it started its application";
    while (!dead) {
        struct pollfd p = {.fd = pfd, .events = POLLIN};
        int r = poll(&p, 1, GUARD_TICK_MS);
        if (r > 0) {
            dead = true;
            break;
        }
        if (!marker_pending(ino))
            break; /* started (marker gone) or rolling back in place */
        if (bt_now_ms() >= deadline) {
            why = "the new master did not start within ota.timeout";
            syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
            struct pollfd q = {.fd = pfd, .events = POLLIN};
            while (poll(&q, 1, -1) < 0 && errno == EINTR)
                ;
            dead = true;
        }
    }
    close(pfd);
    /* A dead master leaves its instances running: the old one adopts them. */
    if (dead && marker_pending(ino))
        rollback_to(exe, why);
    return 0;
}

int mst_update(master *m, const char *path, const char *trace, char *err, size_t errlen)
{
    const char *otalog = m->conf.otalog.path;
    char *root = realpath(m->pwd, NULL), *real = realpath(path, NULL), *bin = NULL;
    struct stat st;
    char why[1024] = "";
    if (real && stat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
        char *b = bt_path_join(real, "bin/baetyl");
        free(real);
        real = b ? realpath(b, NULL) : NULL;
        free(b);
    }
    if (!root || !real)
        snprintf(why, sizeof why, "open %s: %s", path, strerror(errno));
    else if (!path_inside(root, real))
        snprintf(why, sizeof why, "path (%s) refused: it resolves outside the work dir", path);
    else if (stat(real, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid())
        snprintf(why, sizeof why,
                 "path (%s) refused: not a regular file owned by the master's user", path);
    else
        bin = real;
    free(root);
    if (!bin) {
        free(real);
        mst_log(otalog, trace, "FAILURE", "failed to update master", why);
        return bt_errf(err, errlen, "%s", why);
    }
    chmod(bin, st.st_mode | 0100);
    if (check_binary(bin, m->pwd, boot.conf, why, sizeof why) != 0) {
        free(bin);
        mst_log(otalog, trace, "FAILURE", "failed to check master", why);
        return bt_errf(err, errlen, "failed to check master: %s", why);
    }
    mst_log(otalog, trace, "UPDATING", "master is updating", NULL);
    char exe[PATH_MAX - 8], old[PATH_MAX], tmp[PATH_MAX];
    ino_t ino = 0;
    int r = self_exe(exe, sizeof exe);
    if (r != 0)
        snprintf(why, sizeof why, "readlink /proc/self/exe: %s", strerror(errno));
    snprintf(old, sizeof old, "%s.old", exe);
    snprintf(tmp, sizeof tmp, "%s.new", exe);
    /* The steps; a kill between any two leaves the marker saying where it stood. */
    if (r == 0)
        r = copy_file(exe, old, NULL, why, sizeof why);
    if (r == 0)
        r = copy_file(bin, tmp, &ino, why, sizeof why);
    if (r == 0)
        r = write_marker("UPDATING", trace, ino, why, sizeof why);
    if (r == 0 && rename(tmp, exe) != 0)
        r = bt_errf(why, sizeof why, "rename %s: %s", tmp, strerror(errno));
    free(bin);
    if (r == 0)
        r = write_marker("RESTARTING", trace, ino, why, sizeof why);
    if (r != 0) {
        unlink(tmp);
        unlink(MST_MARKER);
        mst_log(otalog, trace, "FAILURE", "failed to update master", why);
        return bt_errf(err, errlen, "failed to update master: %s", why);
    }
    mst_log(otalog, trace, "RESTARTING", "master is restarting", NULL);
    snprintf(boot.otalog, sizeof boot.otalog, "%s", otalog);
    snprintf(boot.trace, sizeof boot.trace, "%s", trace ? trace : "");
    spawn_guard(old, exe, ino, boot.timeout_ms);
    reexec(exe);
    snprintf(why, sizeof why, "exec %.900s: %s", exe, strerror(errno));
    rename(old, exe);
    unlink(MST_MARKER);
    mst_log(otalog, trace, "FAILURE", "failed to update master", why);
    return bt_errf(err, errlen, "failed to update master: %s", why);
}

static void *watch(void *arg)
{
    int64_t timeout = *(int64_t *)arg;
    free(arg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout / 1000;
    ts.tv_nsec += (timeout % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&boot.mu);
    int r = 0;
    while (!boot.done && r != ETIMEDOUT)
        r = pthread_cond_timedwait(&boot.cv, &boot.mu, &ts);
    bool late = !boot.done;
    boot.done = true;
    pthread_mutex_unlock(&boot.mu);
    if (late)
        rollback("the new master did not start within ota.timeout");
    return NULL;
}

void mst_boot_begin(const char *workdir, const char *conf_path, const char *otalog,
                    int64_t timeout_ms)
{
    snprintf(boot.workdir, sizeof boot.workdir, "%s", workdir);
    snprintf(boot.conf, sizeof boot.conf, "%s", conf_path);
    snprintf(boot.otalog, sizeof boot.otalog, "%s", otalog);
    boot.timeout_ms = timeout_ms;
    char *text = NULL, exe[PATH_MAX - 8], old[PATH_MAX];
    if (!bt_path_exists(MST_MARKER) || bt_read_file(MST_MARKER, 4096, &text, NULL, NULL, 0) != 0)
        return;
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    const char *state = json_string_value(json_object_get(j, "state"));
    snprintf(boot.trace, sizeof boot.trace, "%s",
             json_string_value(json_object_get(j, "trace")) ?: "");
    ino_t ino = (ino_t)json_integer_value(json_object_get(j, "ino"));
    struct stat st;
    bool is_it = self_exe(exe, sizeof exe) == 0 && stat(exe, &st) == 0 && st.st_ino == ino;
    snprintf(old, sizeof old, "%s.old", exe);
    if (state && !strcmp(state, "ROLLINGBACK")) {
        if (is_it) {
            boot.rolledback = true; /* ROLLEDBACK once the app runs again */
        } else if (bt_path_exists(old)) {
            json_decref(j);
            rollback("the rollback was interrupted"); /* the old binary is not back yet */
            return;
        } else {
            unlink(MST_MARKER);
        }
    } else if (state && is_it) {
        boot.pending = true; /* UPDATING (killed after the rename) or RESTARTING */
        int64_t *t = malloc(sizeof *t);
        pthread_t th;
        if (t) {
            *t = timeout_ms;
            if (pthread_create(&th, NULL, watch, t) == 0)
                pthread_detach(th);
            else
                free(t);
        }
    } else {
        /* killed before the new binary was in place: the old one runs on */
        mst_log(otalog, boot.trace, "FAILURE", "failed to update master",
                "the update was interrupted before the new binary was in place");
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s.new", exe);
        unlink(tmp);
        unlink(MST_MARKER);
    }
    json_decref(j);
}

void mst_boot_end(bool ok)
{
    pthread_mutex_lock(&boot.mu);
    bool mine = !boot.done;
    boot.done = true;
    pthread_cond_broadcast(&boot.cv);
    pthread_mutex_unlock(&boot.mu);
    if (!mine && boot.pending)
        return; /* the watch is rolling back */
    char exe[PATH_MAX - 8], old[PATH_MAX];
    if (boot.pending) {
        if (!ok) {
            rollback("the new master failed to start its application");
            return;
        }
        if (self_exe(exe, sizeof exe) == 0) {
            snprintf(old, sizeof old, "%s.old", exe);
            unlink(old);
        }
        unlink(MST_MARKER);
        mst_log(boot.otalog, boot.trace, "UPDATED", "master is updated", NULL);
    } else if (boot.rolledback) {
        unlink(MST_MARKER);
        if (ok)
            mst_log(boot.otalog, boot.trace, "ROLLEDBACK", "master is rolled back", NULL);
        else
            mst_log(boot.otalog, boot.trace, "FAILURE", "failed to roll back",
                    "the old master failed to start its application");
    }
}
