/* A module's context and entry point (SPEC §8): environment, command line, stop signals
 * and config loading. Signals: SIGTERM/SIGINT are blocked in every thread and a watcher
 * thread takes them from a signalfd, then makes an eventfd readable for good, so any
 * number of event loops (and bt_ctx_wait) can watch the same stop without racing to read
 * a signal. */
#include "baetyl/version.h"
#include "baetyl/context.h"

#include <errno.h>
#include <getopt.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "baetyl/buf.h"
#include "baetyl/log.h"
#include "baetyl/util.h"

struct bt_ctx_state {
    int sigfd;  /* signalfd of SIGTERM + SIGINT */
    int stopfd; /* eventfd: written once, on the first stop, never read */
    int quitfd; /* eventfd: ends the watcher thread */
    pthread_t watcher;
    int has_watcher;
    atomic_int stopped;
    atomic_int signo;
};

/* ---- environment ---------------------------------------------------------------------- */

static const struct {
    size_t off;
    const char *name, *old;
} env_vars[] = {
    {offsetof(bt_env, service_name), "BAETYL_SERVICE_NAME", "OPENEDGE_SERVICE_NAME"},
    {offsetof(bt_env, instance_name), "BAETYL_SERVICE_INSTANCE_NAME",
     "OPENEDGE_SERVICE_INSTANCE_NAME"},
    {offsetof(bt_env, service_mode), "BAETYL_SERVICE_MODE", "OPENEDGE_SERVICE_MODE"},
    {offsetof(bt_env, service_token), "BAETYL_SERVICE_TOKEN", "OPENEDGE_SERVICE_TOKEN"},
    {offsetof(bt_env, api_address), "BAETYL_MASTER_API_ADDRESS", "OPENEDGE_MASTER_API_ADDRESS"},
    {offsetof(bt_env, api_socket), "BAETYL_MASTER_API_SOCKET", "OPENEDGE_MASTER_API_SOCKET"},
    {offsetof(bt_env, api_version), "BAETYL_MASTER_API_VERSION", "OPENEDGE_MASTER_API_VERSION"},
    {offsetof(bt_env, host_os), "BAETYL_HOST_OS", "OPENEDGE_HOST_OS"},
    {offsetof(bt_env, host_id), "BAETYL_HOST_ID", "OPENEDGE_HOST_ID"},
    {offsetof(bt_env, host_sn), "BAETYL_HOST_SN", "OPENEDGE_HOST_SN"},
    {offsetof(bt_env, instance_address), "BAETYL_SERVICE_INSTANCE_ADDRESS",
     "OPENEDGE_SERVICE_INSTANCE_ADDRESS"},
};
#define N_ENV_VARS (sizeof env_vars / sizeof env_vars[0])

int bt_env_load(bt_env *e)
{
    memset(e, 0, sizeof *e);
    for (size_t i = 0; i < N_ENV_VARS; i++) {
        const char *v = getenv(env_vars[i].name);
        if (!v || !*v)
            v = getenv(env_vars[i].old);
        if (!v || !*v)
            continue;
        char *copy = strdup(v);
        if (!copy) {
            bt_env_free(e);
            return -1;
        }
        *(char **)((char *)e + env_vars[i].off) = copy;
    }
    return 0;
}

void bt_env_free(bt_env *e)
{
    for (size_t i = 0; i < N_ENV_VARS; i++)
        free(*(char **)((char *)e + env_vars[i].off));
    memset(e, 0, sizeof *e);
}

bool bt_ctx_is_native(const bt_ctx *ctx)
{
    const char *m = ctx->env.service_mode;
    return !m || strcmp(m, "native") == 0;
}

/* ---- stop ----------------------------------------------------------------------------- */

static void ctx_stop(bt_ctx_state *st, int signo)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&st->stopped, &expected, 1))
        return;
    atomic_store(&st->signo, signo);
    uint64_t one = 1;
    while (write(st->stopfd, &one, sizeof one) < 0 && errno == EINTR) {}
}

void bt_ctx_stop(bt_ctx *ctx)
{
    ctx_stop(ctx->st, 0);
}

bool bt_ctx_stopped(const bt_ctx *ctx)
{
    return atomic_load(&ctx->st->stopped) != 0;
}

int bt_ctx_stop_fd(const bt_ctx *ctx)
{
    return ctx->st->stopfd;
}

int bt_ctx_wait(bt_ctx *ctx)
{
    struct pollfd p = {.fd = ctx->st->stopfd, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, -1);
        if (r > 0 || (r < 0 && errno != EINTR))
            break;
    }
    return atomic_load(&ctx->st->signo); /* stored before the eventfd was written */
}

bool bt_ctx_sleep(bt_ctx *ctx, int64_t ms)
{
    struct pollfd p = {.fd = ctx->st->stopfd, .events = POLLIN};
    int64_t end = bt_now_ms() + (ms > 0 ? ms : 0);
    for (;;) {
        int64_t now = bt_now_ms();
        if (now >= end)
            return bt_ctx_stopped(ctx);
        int r = poll(&p, 1, bt_poll_timeout(end, now, 60000));
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return bt_ctx_stopped(ctx);
    }
}

/* Also trims the heap now and then: this thread is idle and wakes the process for nothing
 * else. */
static void *watch_signals(void *arg)
{
    bt_ctx_state *st = arg;
    int wait_ms = BT_HEAP_TRIM_FIRST_MS;
    for (;;) {
        struct pollfd p[2] = {{.fd = st->sigfd, .events = POLLIN},
                              {.fd = st->quitfd, .events = POLLIN}};
        int n = poll(p, 2, wait_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (n == 0) {
            bt_heap_trim();
            wait_ms = BT_HEAP_TRIM_MS;
            continue;
        }
        if (p[1].revents)
            break;
        struct signalfd_siginfo si;
        if (p[0].revents && read(st->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
            bt_logkv(BT_LOG_INFO, "stop signal received", "signal",
                     si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM", NULL);
            ctx_stop(st, (int)si.ssi_signo);
        }
    }
    return NULL;
}

static void state_free(bt_ctx_state *st)
{
    if (!st)
        return;
    if (st->has_watcher) {
        uint64_t one = 1;
        while (write(st->quitfd, &one, sizeof one) < 0 && errno == EINTR) {}
        pthread_join(st->watcher, NULL);
    }
    if (st->sigfd >= 0)
        close(st->sigfd);
    if (st->stopfd >= 0)
        close(st->stopfd);
    if (st->quitfd >= 0)
        close(st->quitfd);
    free(st);
}

/* Blocks the stop signals in this thread (and so in every thread created later) and
 * starts the watcher. */
static bt_ctx_state *state_new(char *err, size_t errlen)
{
    bt_ctx_state *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    st->sigfd = st->stopfd = st->quitfd = -1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "pthread_sigmask: %s", strerror(rc));
        goto fail;
    }
    st->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    st->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    st->quitfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (st->sigfd < 0 || st->stopfd < 0 || st->quitfd < 0) {
        snprintf(err, errlen, "signalfd/eventfd: %s", strerror(errno));
        goto fail;
    }
    /* The watcher only polls and reads two fds: a small stack, not the 8 MiB default. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    rc = pthread_create(&st->watcher, &attr, watch_signals, st);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));
        goto fail;
    }
    st->has_watcher = 1;
    return st;
fail:
    state_free(st);
    return NULL;
}

/* ---- command line --------------------------------------------------------------------- */

static void usage(FILE *out, const char *prog, const bt_module_info *info)
{
    fprintf(out, "Usage: %s [-c <file>]\n", prog);
    if (info && info->description)
        fprintf(out, "%s\n", info->description);
    fprintf(out,
            "\nOptions:\n"
            "  -c, --config <file>  config file (default %s)\n"
            "  -h, --help           print this help and exit\n"
            "      --version        print the version and exit\n",
            BT_DEFAULT_CONFIG_PATH);
    if (info && info->usage)
        fprintf(out, "\n%s\n", info->usage);
}

enum { ARGS_RUN, ARGS_HELP, ARGS_VERSION, ARGS_BAD };

static int parse_args(bt_ctx *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 1 || !argv)
        return ARGS_RUN;
    optind = 0; /* glibc: full reset, so bt_run can be called more than once */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (!*optarg) {
                fprintf(stderr, "%s: -c needs a file name\n", ctx->program);
                return ARGS_BAD;
            }
            ctx->config_path = optarg;
            ctx->config_given = true;
            break;
        case 'h': return ARGS_HELP;
        case 'V': return ARGS_VERSION;
        case ':':
            fprintf(stderr, "%s: option %s needs a file name\n", ctx->program, argv[optind - 1]);
            return ARGS_BAD;
        default:
            if (optopt)
                fprintf(stderr, "%s: unknown option -%c\n", ctx->program, optopt);
            else
                fprintf(stderr, "%s: unknown option %s\n", ctx->program, argv[optind - 1]);
            return ARGS_BAD;
        }
    }
    ctx->argc = argc - optind;
    ctx->argv = argv + optind;
    return ARGS_RUN;
}

static const char *base_name(const char *p)
{
    if (!p || !*p)
        return "baetyl-module";
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

int bt_run(int argc, char **argv, int (*main_fn)(bt_ctx *ctx))
{
    return bt_run_module(NULL, argc, argv, main_fn);
}

/* glibc gives each thread that allocates its own malloc arena (up to 8 per core), each
 * keeping freed memory: in a module of a dozen threads that is most of its private dirty
 * memory. Two arenas keep the hot paths apart at a fraction of the memory (issue #18);
 * MALLOC_ARENA_MAX in the environment still wins. */
static void bound_malloc_arenas(void)
{
#if defined(__GLIBC__) && defined(M_ARENA_MAX)
    if (!getenv("MALLOC_ARENA_MAX"))
        mallopt(M_ARENA_MAX, 2);
#endif
}

int bt_run_module(const bt_module_info *info, int argc, char **argv, int (*main_fn)(bt_ctx *ctx))
{
    bound_malloc_arenas();
    bt_ctx ctx = {0};
    ctx.program = base_name(argc > 0 && argv ? argv[0] : NULL);
    ctx.config_path = BT_DEFAULT_CONFIG_PATH;
    switch (parse_args(&ctx, argc, argv)) {
    case ARGS_HELP: usage(stdout, ctx.program, info); return 0;
    case ARGS_VERSION:
        printf("%s version %s\nrevision: %s\n", ctx.program, bt_version, bt_revision);
        return 0;
    case ARGS_BAD: usage(stderr, ctx.program, info); return 2;
    default: break;
    }
    if (!ctx.config_given && access(BT_DEFAULT_CONFIG_PATH, F_OK) != 0 &&
        access(BT_OLD_CONFIG_PATH, F_OK) == 0)
        ctx.config_path = BT_OLD_CONFIG_PATH;

    char err[256];
    if (bt_env_load(&ctx.env) < 0) {
        fprintf(stderr, "%s: out of memory\n", ctx.program);
        return 1;
    }
    ctx.service_name = ctx.env.service_name ? ctx.env.service_name : ctx.program;
    if (ctx.env.service_name) {
        bt_log_set_field("service", ctx.env.service_name);
        if (ctx.env.instance_name)
            bt_log_set_field("instance", ctx.env.instance_name);
    }
    ctx.st = state_new(err, sizeof err);
    if (!ctx.st) {
        bt_logkv(BT_LOG_ERROR, "failed to start", "error", err, NULL);
        bt_env_free(&ctx.env);
        return 1;
    }
    bt_logkv(BT_LOG_INFO, "service starting", "program", ctx.program, "config", ctx.config_path,
             NULL);
    int rc = main_fn ? main_fn(&ctx) : 0;
    if (rc == 0) {
        bt_logkv(BT_LOG_INFO, "service stopped", NULL);
    } else {
        char code[16];
        snprintf(code, sizeof code, "%d", rc);
        bt_logkv(BT_LOG_ERROR, "service stopped with error", "code", code, NULL);
    }
    state_free(ctx.st);
    bt_env_free(&ctx.env);
    return rc < 0 || rc > 255 ? 1 : rc;
}

/* ---- config --------------------------------------------------------------------------- */

/* The logger section of a module's schema: a top-level struct of bt_logger_schema. */
static bt_logger_config *find_logger(const bt_cfg_schema *s, void *obj)
{
    for (const bt_cfg_field *f = s->fields; f && f->name; f++)
        if (f->type == BT_CFG_STRUCT && f->sub == &bt_logger_schema)
            return (bt_logger_config *)((char *)obj + f->offset);
    return NULL;
}

/* Config warnings wait for the logger the config names, so they land in its file. */
static void hold_warning(void *arg, const char *msg)
{
    bt_buf_append_nul(arg, msg, strlen(msg) + 1); /* NUL-separated lines */
}

static void log_warnings(bt_buf *held, const char *path)
{
    const char *p = (const char *)held->p + held->off, *end = (const char *)held->p + held->len;
    for (; held->p && p < end; p += strlen(p) + 1)
        bt_logkv(BT_LOG_WARN, p, "file", path, NULL);
    bt_buf_free(held);
}

int bt_ctx_load_config(bt_ctx *ctx, const bt_cfg_schema *schema, void *obj, char *err,
                       size_t errlen)
{
    const char *path = ctx->config_path;
    bt_buf held = {0};
    bt_cfg_opts opts = {.warn = hold_warning, .warn_arg = &held};
    int rc;
    if (!ctx->config_given && access(path, F_OK) != 0 && errno == ENOENT) {
        bt_logkv(BT_LOG_INFO, "no config file, using defaults", "file", path, NULL);
        rc = bt_cfg_load_string(schema, obj, "", 0, err, errlen);
    } else {
        rc = bt_cfg_load_file_opts(schema, obj, path, &opts, err, errlen);
    }
    if (rc == 0) {
        bt_logger_config *lc = find_logger(schema, obj);
        if (lc && bt_log_init(lc, err, errlen) < 0) {
            bt_cfg_free(schema, obj);
            rc = -1;
        } else if (lc && bt_log_is_file()) {
            /* The first line went to stderr before the config named the log file: the file
             * gets its own, so it holds the service's whole life. */
            bt_logkv(BT_LOG_INFO, "service starting", "program", ctx->program, "config", path,
                     NULL);
        }
    }
    log_warnings(&held, path);
    if (rc < 0) {
        bt_logkv(BT_LOG_ERROR, "failed to load config", "file", path, "error", err, NULL);
        if (bt_log_is_file())
            fprintf(stderr, "%s: failed to load config %s: %s\n", ctx->program, path, err);
        return -1;
    }
    return 0;
}
