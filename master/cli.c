/* The `baetyl` command line (SPEC §1): argument parsing, the work dir, and the small
 * commands (check, version, stop); start and status have their own files. */
#include "cli.h"
#include "check_certs.h"
#include "cgroup.h"
#include "baetyl/version.h"
#include "app.h"
#include "conf.h"
#include "docker_config.h"
#include "engine.h"
#include "inspect.h"
#include "host_stats.h"
#include "mst.h"
#include "pidfile.h"
#include "status_health.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char usage_main[] =
    "Usage: baetyl <command> [options]\n"
    "\n"
    "Baetyl master: runs, supervises and updates the services of an edge application.\n"
    "\n"
    "Commands:\n"
    "  start     run the master in the foreground (SIGTERM or Ctrl-C stops it)\n"
    "  check     validate etc/baetyl/conf.yml and var/db/baetyl/application.yml\n"
    "  stop      stop the master running in the work dir\n"
    "  status    show the running master's services and host (inspect)\n"
    "  logs      print a service's output (all its instances)\n"
    "  version   print version, git revision, compiler and platform\n"
    "\n"
    "Run 'baetyl <command> --help' for the options of a command.\n";

static const char usage_start[] =
    "Usage: baetyl start [-w workdir] [-c config]\n"
    "\n"
    "Runs the master in the foreground: loads the config, serves the API, starts the\n"
    "application's services and supervises them. SIGTERM, SIGINT or SIGHUP stop every\n"
    "service (SIGTERM, then SIGKILL after `grace`) and the master.\n"
    "\n"
    "Options:\n"
    "  -w, --workdir DIR   work dir (default: the parent of the binary's directory; / for /usr)\n"
    "  -c, --config FILE   master config, relative to the work dir (default etc/baetyl/conf.yml)\n"
    "  -h, --help          this help\n";

static const char usage_check[] =
    "Usage: baetyl check [-w workdir] [-c config]\n"
    "\n"
    "Validates the master config and the application; prints OK! and exits 0, or prints\n"
    "the error (naming the field) and exits 1.\n"
    "\n"
    "Options:\n"
    "  -w, --workdir DIR   work dir (default: the parent of the binary's directory; / for /usr)\n"
    "  -c, --config FILE   master config, relative to the work dir (default etc/baetyl/conf.yml)\n"
    "  -h, --help          this help\n";

static const char usage_stop[] =
    "Usage: baetyl stop [-w workdir] [-c config]\n"
    "\n"
    "Sends SIGTERM to the master running in the work dir (found through var/run/baetyl.pid)\n"
    "and waits until it has stopped its services and exited.\n"
    "\n"
    "Options:\n"
    "  -w, --workdir DIR   work dir (default: the parent of the binary's directory; / for /usr)\n"
    "  -c, --config FILE   master config, for `grace` (default etc/baetyl/conf.yml)\n"
    "  -h, --help          this help\n";

static const char usage_status[] =
    "Usage: baetyl status [-w workdir] [-c config] [--json] [--check [--max-age DURATION]]\n"
    "\n"
    "Asks the running master for its inspect (services, instances, host) and its health\n"
    "figures (restarts, backlogs, oldest waiting message, drops, certificate expiry).\n"
    "\n"
    "Options:\n"
    "  -w, --workdir DIR   work dir (default: the parent of the binary's directory; / for /usr)\n"
    "  -c, --config FILE   master config, for the API address (default etc/baetyl/conf.yml)\n"
    "      --json          print the raw inspect JSON\n"
    "      --check         print only problems; exit 1 when unhealthy: a service restarting,\n"
    "                      a backlog older than --max-age, a certificate expiring within 7 days\n"
    "      --max-age D     the oldest a waiting message may be (default 10m)\n"
    "  -h, --help          this help\n";

static const char usage_logs[] =
    "Usage: baetyl logs <service> [-n N] [-f] [-w workdir] [-c config]\n"
    "\n"
    "Prints the output (stdout and stderr) of the service's instances through the running\n"
    "master: native instances write it to var/log/baetyl/<service>/<instance>.log (1 MiB,\n"
    "one older file .log.1); docker mode reads the container's log. With more than one\n"
    "instance each line starts with [instance]. An instance that exited still shows the\n"
    "output of its last run, until it starts again.\n"
    "\n"
    "Options:\n"
    "  -n, --lines N       the last N lines of each instance (default 50, at most 1000)\n"
    "  -f, --follow        then print new lines as they come (checked every second) until\n"
    "                      interrupted\n"
    "  -w, --workdir DIR   work dir (default: the parent of the binary's directory; / for /usr)\n"
    "  -c, --config FILE   master config, for the API address (default etc/baetyl/conf.yml)\n"
    "  -h, --help          this help\n";

static const char usage_version[] =
    "Usage: baetyl version\n"
    "\n"
    "Prints the version, the git revision, the compiler and the platform.\n";

/* The parent of the directory holding the binary, e.g. /usr/local for /usr/local/bin/baetyl;
 * / for /usr/bin/baetyl (the Debian package): /usr is read-only by convention, so a
 * distribution's master keeps etc/ and var/ at the root (/etc/baetyl, /var/db/baetyl). */
static char *default_workdir(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *d = dirname(exe);
    d = dirname(d);
    return strdup(strcmp(d, "/usr") == 0 ? "/" : d);
}

typedef struct {
    char *workdir;
    const char *conf;
    bool json;
    bool check;
    int64_t max_age_ms;
    const char *service; /* logs */
    long lines;
    bool follow;
} opts_t;

/* Parses the options of a command; returns -1 to exit with *code. */
static int parse_opts(int argc, char **argv, const char *usage, bool status_opts, opts_t *o,
                      int *code)
{
    static const struct option longs[] = {
        {"workdir", required_argument, NULL, 'w'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"json", no_argument, NULL, 'j'},
        {"check", no_argument, NULL, 'k'},
        {"max-age", required_argument, NULL, 'a'},
        {"lines", required_argument, NULL, 'n'},
        {"follow", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    bool logs = usage == usage_logs;
    const char *w = NULL;
    o->conf = MASTER_DEFAULT_CONF;
    o->json = false;
    o->check = false;
    o->max_age_ms = HEALTH_DEFAULT_MAX_AGE_MS;
    o->lines = 50;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, logs ? "w:c:hn:f" : "+w:c:h", longs, NULL)) != -1) {
        switch (c) {
        case 'w': w = optarg; break;
        case 'c': o->conf = optarg; break;
        case 'h':
            fputs(usage, stdout);
            *code = 0;
            return -1;
        case 'j':
            if (status_opts) {
                o->json = true;
                break;
            }
            goto bad;
        case 'k':
            if (status_opts) {
                o->check = true;
                break;
            }
            goto bad;
        case 'a':
            if (status_opts && bt_parse_duration(optarg, &o->max_age_ms) == 0 && o->max_age_ms >= 0)
                break;
            if (status_opts) {
                fprintf(stderr, "baetyl: --max-age: bad duration '%s' (e.g. 30s, 10m)\n", optarg);
                *code = 2;
                return -1;
            }
            goto bad;
        case 'n': {
            if (!logs)
                goto bad;
            char *end;
            errno = 0;
            o->lines = strtol(optarg, &end, 10);
            if (!*optarg || *end || errno || o->lines < 0 || o->lines > 1000) {
                fprintf(stderr, "baetyl: -n (%s) must be a number from 0 to 1000\n\n%s", optarg,
                        usage);
                *code = 2;
                return -1;
            }
            break;
        }
        case 'f':
            if (logs) {
                o->follow = true;
                break;
            }
            /* fall through */
        bad:
        default:
            fprintf(stderr, "baetyl: unknown or incomplete option '%s'\n\n%s", argv[optind - 1],
                    usage);
            *code = 2;
            return -1;
        }
    }
    if (logs && optind < argc)
        o->service = argv[optind++];
    if (logs && !o->service) {
        fprintf(stderr, "baetyl: logs needs a service name\n\n%s", usage);
        *code = 2;
        return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "baetyl: unexpected argument '%s'\n\n%s", argv[optind], usage);
        *code = 2;
        return -1;
    }
    if (w) {
        char real[PATH_MAX];
        if (!realpath(w, real)) {
            fprintf(stderr, "baetyl: work dir %s: %s\n", w, strerror(errno));
            *code = 1;
            return -1;
        }
        o->workdir = strdup(real);
    } else {
        o->workdir = default_workdir();
    }
    if (!o->workdir) {
        fprintf(stderr, "baetyl: cannot find the work dir: use -w\n");
        *code = 1;
        return -1;
    }
    if (chdir(o->workdir) != 0) {
        fprintf(stderr, "baetyl: work dir %s: %s\n", o->workdir, strerror(errno));
        free(o->workdir);
        *code = 1;
        return -1;
    }
    return 0;
}

/* A config warning of baetyl check (an unknown key), one line on stderr. */
static void print_warning(void *file, const char *msg)
{
    fprintf(stderr, "%s: warning: %s\n", (const char *)file, msg);
}

static int cmd_check(const char *workdir, const char *conf_path)
{
    char err[2048];
    master_conf conf;
    bool missing;
    if (conf_load(conf_path, &conf, &missing, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", conf_path, err);
        return 1;
    }
    bool native = strcmp(conf.mode, "native") == 0;
    conf_free(&conf);
    if (bt_path_exists(APP_FILE)) {
        app_config app;
        if (app_load_warn(APP_FILE, &app, print_warning, (void *)APP_FILE, err, sizeof err) != 0) {
            fprintf(stderr, "%s: %s\n", APP_FILE, err);
            return 1;
        }
        int r = app_check_mounts(&app, err, sizeof err);
        if (r == 0)
            r = app_check_certs(&app, err, sizeof err);
        if (r == 0 && native)
            r = native_check_packages(workdir, &app, err, sizeof err);
        else if (r == 0 && (r = docker_check_app(&app, err, sizeof err)) == 0)
            r = docker_check_images(&app, NULL, err, sizeof err);
        app_free(&app);
        if (r != 0) {
            fprintf(stderr, "%s: %s\n", APP_FILE, err);
            return 1;
        }
    }
    printf("OK!\n");
    return 0;
}

static int cmd_version(void)
{
    printf("Version:      %s\n", bt_version);
    printf("Git revision: %s\n", bt_revision);
    printf("Compiler:     %s\n", inspect_compiler());
    printf("Platform:     %s\n", bt_platform); /* built for; inspect shows the host */
    return 0;
}

/* Waits until pid has exited, up to timeout_ms. */
static bool wait_gone(pid_t pid, int64_t timeout_ms)
{
    int64_t deadline = bt_now_ms() + timeout_ms;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    while (bt_now_ms() < deadline) {
        if (pfd >= 0) {
            struct pollfd p = {.fd = pfd, .events = POLLIN};
            int64_t left = deadline - bt_now_ms();
            if (poll(&p, 1, left > 1000 ? 1000 : (int)(left > 0 ? left : 0)) > 0) {
                close(pfd);
                return true;
            }
        } else {
            if (kill(pid, 0) != 0 && errno == ESRCH)
                return true;
            usleep(100 * 1000);
        }
    }
    if (pfd >= 0)
        close(pfd);
    return kill(pid, 0) != 0 && errno == ESRCH;
}

static int cmd_stop(const char *conf_path)
{
    char err[1024];
    pid_t pid = pidfile_running(PID_FILE, err, sizeof err);
    if (pid < 0) {
        fprintf(stderr, "baetyl: %s\n", err);
        return 1;
    }
    if (pid == 0) {
        printf("baetyl is not running\n");
        return 0;
    }
    int64_t grace = 30000;
    master_conf conf;
    bool missing;
    if (conf_load(conf_path, &conf, &missing, err, sizeof err) == 0) {
        grace = conf.grace;
        conf_free(&conf);
    }
    if (kill(pid, SIGTERM) != 0) {
        fprintf(stderr, "baetyl: cannot signal pid %d: %s\n", (int)pid, strerror(errno));
        return 1;
    }
    /* The master needs one grace period for its services, plus its own cleanup. */
    if (!wait_gone(pid, grace + 30000)) {
        fprintf(stderr, "baetyl: pid %d did not stop in time\n", (int)pid);
        return 1;
    }
    printf("baetyl stopped\n");
    return 0;
}

int cli_main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "__cgexec")) /* the native engine's way into a cgroup (cgroup.h) */
        return cg_exec_main(argc, argv);
    if (!strcmp(cmd, "__mst-guard")) /* watches a new master binary (mst.h) */
        return mst_guard_main(argc, argv);
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version") || !strcmp(cmd, "-v")) {
        if (argc > 2 && (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help"))) {
            fputs(usage_version, stdout);
            return 0;
        }
        return cmd_version();
    }
    const char *usage = !strcmp(cmd, "start")    ? usage_start
                        : !strcmp(cmd, "check")  ? usage_check
                        : !strcmp(cmd, "stop")   ? usage_stop
                        : !strcmp(cmd, "status") ? usage_status
                        : !strcmp(cmd, "logs")   ? usage_logs
                                                 : NULL;
    if (!usage) {
        fprintf(stderr, "baetyl: unknown command '%s'\n\n%s", cmd, usage_main);
        return 2;
    }
    opts_t o = {0};
    int code = 0;
    if (parse_opts(argc - 1, argv + 1, usage, usage == usage_status, &o, &code) != 0)
        return code;
    int rc;
    if (usage == usage_start)
        rc = cmd_start(o.workdir, o.conf);
    else if (usage == usage_check)
        rc = cmd_check(o.workdir, o.conf);
    else if (usage == usage_stop)
        rc = cmd_stop(o.conf);
    else if (usage == usage_logs)
        rc = cmd_logs(o.conf, o.service, o.lines, o.follow);
    else
        rc = cmd_status(o.conf, o.json, o.check, o.max_age_ms);
    free(o.workdir);
    return rc;
}
