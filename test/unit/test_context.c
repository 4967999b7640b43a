/* Module context (SPEC §8): BAETYL_* environment with the OPENEDGE_* fallback, bt_run's
 * command line, exit codes, log fields, stop on SIGTERM/SIGINT through the stop fd and
 * bt_ctx_wait, and config loading with the logger section. Each case runs bt_run for
 * real, with a main function that records what it saw. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "baetyl/config.h"
#include "baetyl/context.h"
#include "baetyl/util.h"
#include "baetyl/log.h"

static const char *const all_vars[] = {"SERVICE_NAME",
                                       "SERVICE_INSTANCE_NAME",
                                       "SERVICE_MODE",
                                       "SERVICE_TOKEN",
                                       "MASTER_API_ADDRESS",
                                       "MASTER_API_SOCKET",
                                       "MASTER_API_VERSION",
                                       "HOST_OS",
                                       "HOST_ID",
                                       "HOST_SN",
                                       "SERVICE_INSTANCE_ADDRESS",
                                       NULL};

static char g_dir[256];

static void clear_env(void)
{
    char name[64];
    for (int i = 0; all_vars[i]; i++) {
        snprintf(name, sizeof name, "BAETYL_%s", all_vars[i]);
        unsetenv(name);
        snprintf(name, sizeof name, "OPENEDGE_%s", all_vars[i]);
        unsetenv(name);
    }
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Runs fn with fd `which` (1 or 2) sent to a file; returns what was written (malloc'd). */
typedef struct {
    int which;
    int fd_saved;
    char path[320];
} capture;

static void capture_start(capture *c, int which)
{
    c->which = which;
    snprintf(c->path, sizeof c->path, "%s/capture-%d.txt", g_dir, which);
    fflush(which == 1 ? stdout : stderr);
    int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    c->fd_saved = dup(which);
    dup2(fd, which);
    close(fd);
}

static char *capture_end(capture *c)
{
    fflush(c->which == 1 ? stdout : stderr);
    dup2(c->fd_saved, c->which);
    close(c->fd_saved);
    return slurp(c->path);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/bt-test-ctx-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    clear_env();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char err[64];
    bt_log_init(NULL, err, sizeof err); /* back to stderr, text, info */
    bt_log_set_field("service", NULL);
    bt_log_set_field("instance", NULL);
    clear_env();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* ---- environment ---------------------------------------------------------------------- */

static void test_env_and_openedge_fallback(void **state)
{
    (void)state;
    setenv("BAETYL_SERVICE_NAME", "localhub", 1);
    setenv("OPENEDGE_SERVICE_NAME", "old-name", 1); /* BAETYL_* wins */
    setenv("OPENEDGE_SERVICE_TOKEN", "tok", 1);     /* only the old twin set */
    setenv("BAETYL_SERVICE_MODE", "", 1);           /* empty: the twin is used */
    setenv("OPENEDGE_SERVICE_MODE", "docker", 1);
    setenv("BAETYL_SERVICE_INSTANCE_NAME", "localhub-1", 1);
    setenv("BAETYL_MASTER_API_ADDRESS", "unix://var/run/baetyl.sock", 1);
    setenv("BAETYL_MASTER_API_VERSION", "v1", 1);
    setenv("BAETYL_HOST_OS", "linux", 1);
    setenv("BAETYL_HOST_ID", "abc", 1);
    setenv("OPENEDGE_HOST_SN", "sn-9", 1);
    setenv("BAETYL_SERVICE_INSTANCE_ADDRESS", "127.0.0.1:4100", 1);
    setenv("BAETYL_MASTER_API_SOCKET", "/var/run/baetyl.sock", 1);
    bt_env e;
    assert_int_equal(bt_env_load(&e), 0);
    assert_string_equal(e.service_name, "localhub");
    assert_string_equal(e.service_token, "tok");
    assert_string_equal(e.service_mode, "docker");
    assert_string_equal(e.instance_name, "localhub-1");
    assert_string_equal(e.api_address, "unix://var/run/baetyl.sock");
    assert_string_equal(e.api_socket, "/var/run/baetyl.sock");
    assert_string_equal(e.api_version, "v1");
    assert_string_equal(e.host_os, "linux");
    assert_string_equal(e.host_id, "abc");
    assert_string_equal(e.host_sn, "sn-9");
    assert_string_equal(e.instance_address, "127.0.0.1:4100");
    bt_env_free(&e);
    assert_null(e.service_name);

    clear_env();
    assert_int_equal(bt_env_load(&e), 0);
    assert_null(e.service_name);
    assert_null(e.api_address);
    assert_null(e.host_sn);
    bt_env_free(&e);
}

/* ---- bt_run: command line, exit code ------------------------------------------------ */

static struct {
    int calls;
    char config[256];
    bool given;
    char service[64];
    int argc;
    char arg0[64];
    bool native;
    int ret;
} seen;

static int record(bt_ctx *ctx)
{
    seen.calls++;
    snprintf(seen.config, sizeof seen.config, "%s", ctx->config_path);
    seen.given = ctx->config_given;
    snprintf(seen.service, sizeof seen.service, "%s", ctx->service_name);
    seen.argc = ctx->argc;
    snprintf(seen.arg0, sizeof seen.arg0, "%s", ctx->argc > 0 ? ctx->argv[0] : "");
    seen.native = bt_ctx_is_native(ctx);
    return seen.ret;
}

static void test_run_config_option(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof seen);
    char *a1[] = {"/usr/local/bin/baetyl-timer", "-c", "conf/x.yml", "extra", NULL};
    assert_int_equal(bt_run(4, a1, record), 0);
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.config, "conf/x.yml");
    assert_true(seen.given);
    assert_string_equal(seen.service, "baetyl-timer"); /* standalone: argv[0]'s base name */
    assert_int_equal(seen.argc, 1);
    assert_string_equal(seen.arg0, "extra");
    assert_true(seen.native); /* standalone counts as native */

    char *a2[] = {"prog", "--config=other.yml", NULL};
    assert_int_equal(bt_run(2, a2, record), 0);
    assert_string_equal(seen.config, "other.yml");

    char *a3[] = {"prog", "--config", "third.yml", NULL};
    assert_int_equal(bt_run(3, a3, record), 0);
    assert_string_equal(seen.config, "third.yml");

    char *a4[] = {"prog", NULL};
    assert_int_equal(bt_run(1, a4, record), 0);
    assert_string_equal(seen.config, "etc/baetyl/service.yml");
    assert_false(seen.given);
    assert_int_equal(seen.calls, 4);
}

static void test_run_exit_codes(void **state)
{
    (void)state;
    char *a[] = {"prog", NULL};
    memset(&seen, 0, sizeof seen);
    seen.ret = 7;
    assert_int_equal(bt_run(1, a, record), 7);
    seen.ret = -1;
    assert_int_equal(bt_run(1, a, record), 1);
    seen.ret = 300;
    assert_int_equal(bt_run(1, a, record), 1);
    assert_int_equal(seen.calls, 3);
}

static void test_run_help_version_and_bad_options(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof seen);
    bt_module_info info = {.description = "baetyl-timer publishes a message every interval"};
    capture c;
    char *h[] = {"/x/baetyl-timer", "-h", NULL};
    capture_start(&c, 1);
    int rc = bt_run_module(&info, 2, h, record);
    char *out = capture_end(&c);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "Usage: baetyl-timer [-c <file>]"));
    assert_non_null(strstr(out, "publishes a message every interval"));
    assert_non_null(strstr(out, "--config <file>"));
    assert_non_null(strstr(out, "etc/baetyl/service.yml"));
    free(out);

    char *v[] = {"baetyl-timer", "--version", NULL};
    capture_start(&c, 1);
    rc = bt_run(2, v, record);
    out = capture_end(&c);
    assert_int_equal(rc, 0);
    /* Not compared with this file's BT_VERSION: an incremental build may have compiled
     * context.c at another commit. */
    assert_memory_equal(out, "baetyl-timer version ", 21);
    assert_true(strlen(out) > 22 && out[21] != '\n');
    assert_non_null(strstr(out, "\nrevision: "));
    free(out);

    char *bad1[] = {"prog", "-x", NULL};
    char *bad2[] = {"prog", "-c", NULL};
    char *bad3[] = {"prog", "--nope", NULL};
    char *bad4[] = {"prog", "-c", "", NULL};
    char **bads[] = {bad1, bad2, bad3, bad4};
    int argcs[] = {2, 2, 2, 3};
    const char *msgs[] = {"unknown option -x", "needs a file name", "unknown option --nope",
                          "needs a file name"};
    for (int i = 0; i < 4; i++) {
        capture_start(&c, 2);
        rc = bt_run(argcs[i], bads[i], record);
        out = capture_end(&c);
        assert_int_equal(rc, 2);
        if (!strstr(out, msgs[i]) || !strstr(out, "Usage: prog"))
            fail_msg("case %d: %s", i, out);
        free(out);
    }
    assert_int_equal(seen.calls, 0); /* main never ran */
}

static void test_run_under_master_sets_log_fields(void **state)
{
    (void)state;
    setenv("BAETYL_SERVICE_NAME", "timer", 1);
    setenv("BAETYL_SERVICE_INSTANCE_NAME", "timer-0", 1);
    setenv("BAETYL_SERVICE_MODE", "docker", 1);
    memset(&seen, 0, sizeof seen);
    char *a[] = {"/bin/baetyl-timer", NULL};
    capture c;
    capture_start(&c, 2);
    int rc = bt_run(1, a, record);
    char *err = capture_end(&c);
    assert_int_equal(rc, 0);
    assert_string_equal(seen.service, "timer");
    assert_false(seen.native);
    assert_non_null(strstr(err, "msg=\"service starting\""));
    assert_non_null(strstr(err, "instance=timer-0 program=baetyl-timer service=timer\n"));
    assert_non_null(strstr(err, "msg=\"service stopped\" instance=timer-0 service=timer\n"));
    free(err);
}

/* ---- stop ----------------------------------------------------------------------------- */

static int readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

static void *watch_stop_fd(void *arg)
{
    bt_ctx *ctx = arg;
    return (void *)(intptr_t)readable(bt_ctx_stop_fd(ctx), 5000);
}

static int stop_sig;

static int wait_for_signal(bt_ctx *ctx)
{
    int fd = bt_ctx_stop_fd(ctx);
    if (readable(fd, 0) || bt_ctx_stopped(ctx))
        return 10; /* fired too early */
    pthread_t th;  /* an event loop in another thread sees the same stop */
    pthread_create(&th, NULL, watch_stop_fd, ctx);
    kill(getpid(), stop_sig);
    if (!readable(fd, 5000))
        return 11;
    void *seen_by_thread;
    pthread_join(th, &seen_by_thread);
    if (!seen_by_thread)
        return 12;
    if (bt_ctx_wait(ctx) != stop_sig)
        return 13;
    if (!readable(fd, 0) || !bt_ctx_stopped(ctx)) /* stays readable */
        return 14;
    return 0;
}

static void test_stop_fd_fires_on_sigterm_and_sigint(void **state)
{
    (void)state;
    char *a[] = {"prog", NULL};
    stop_sig = SIGTERM;
    assert_int_equal(bt_run(1, a, wait_for_signal), 0);
    stop_sig = SIGINT;
    assert_int_equal(bt_run(1, a, wait_for_signal), 0);
}

static int stop_by_call(bt_ctx *ctx)
{
    bt_ctx_stop(ctx);
    bt_ctx_stop(ctx); /* twice is harmless */
    if (bt_ctx_wait(ctx) != 0 || !readable(bt_ctx_stop_fd(ctx), 0))
        return 20;
    return 0;
}

static void test_stop_by_call(void **state)
{
    (void)state;
    char *a[] = {"prog", NULL};
    assert_int_equal(bt_run(1, a, stop_by_call), 0);
}

/* bt_ctx_sleep: the whole time when nobody asks, at once when a stop comes. */
static void *stop_later(void *arg)
{
    usleep(50000);
    bt_ctx_stop(arg);
    return NULL;
}

static int sleep_then_stop(bt_ctx *ctx)
{
    int64_t t0 = bt_now_ms();
    if (bt_ctx_sleep(ctx, 60))
        return 30; /* nobody asked */
    if (bt_now_ms() - t0 < 59)
        return 31;
    if (bt_ctx_sleep(ctx, 0) || bt_ctx_sleep(ctx, -5))
        return 32;
    pthread_t th;
    pthread_create(&th, NULL, stop_later, ctx);
    t0 = bt_now_ms();
    bool stopped = bt_ctx_sleep(ctx, 30000);
    pthread_join(th, NULL);
    if (!stopped || bt_now_ms() - t0 > 5000)
        return 33;
    if (!bt_ctx_sleep(ctx, 30000)) /* already stopped: at once */
        return 34;
    return 0;
}

static void test_sleep_until_stop(void **state)
{
    (void)state;
    char *a[] = {"prog", NULL};
    assert_int_equal(bt_run(1, a, sleep_then_stop), 0);
}

/* ---- config --------------------------------------------------------------------------- */

typedef struct {
    char *address;
    long port;
    bt_logger_config logger;
} mod_cfg;

static const bt_cfg_field mod_fields[] = {
    BT_FIELD(mod_cfg, address, "hub.address", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(mod_cfg, port, "port", BT_CFG_INT, .def = "1234"),
    BT_FIELD(mod_cfg, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    {0},
};
static const bt_cfg_schema mod_schema = {sizeof(mod_cfg), mod_fields, NULL};

static const bt_cfg_field opt_fields[] = {
    BT_FIELD(mod_cfg, port, "port", BT_CFG_INT, .def = "1234"),
    {0},
};
static const bt_cfg_schema opt_schema = {sizeof(mod_cfg), opt_fields, NULL};

static const bt_cfg_schema *g_schema;
static char g_err[256];
static mod_cfg g_cfg;
static int g_is_file;

static int load(bt_ctx *ctx)
{
    memset(&g_cfg, 0xAB, sizeof g_cfg);
    int rc = bt_ctx_load_config(ctx, g_schema, &g_cfg, g_err, sizeof g_err);
    g_is_file = bt_log_is_file();
    if (rc == 0) {
        bt_info("module configured");
        bt_cfg_free(g_schema, &g_cfg);
        return 0;
    }
    return 1;
}

static void test_load_config_inits_logger(void **state)
{
    (void)state;
    char cfg[400], log[400];
    snprintf(cfg, sizeof cfg, "%s/service.yml", g_dir);
    snprintf(log, sizeof log, "%s/log/mod.log", g_dir);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "hub:\n  address: tcp://127.0.0.1:1883\nlogger:\n  path: %s\n  format: json\n  level: "
             "debug\n",
             log);
    write_file(cfg, yaml);
    g_schema = &mod_schema;
    char *a[] = {"prog", "-c", cfg, NULL};
    assert_int_equal(bt_run(3, a, load), 0);
    assert_int_equal(g_is_file, 1);
    bt_log_close();
    char *s = slurp(log);
    assert_non_null(s);
    assert_non_null(strstr(s, "\"level\":\"info\",\"msg\":\"module configured\""));
    assert_non_null(strstr(s, "\"msg\":\"service stopped\""));
    free(s);
}

static void test_load_config_error_names_field(void **state)
{
    (void)state;
    char cfg[400];
    snprintf(cfg, sizeof cfg, "%s/service.yml", g_dir);
    write_file(cfg, "hub:\n  other: 1\n");
    g_schema = &mod_schema;
    char *a[] = {"prog", "-c", cfg, NULL};
    capture c;
    capture_start(&c, 2);
    int rc = bt_run(3, a, load);
    char *err = capture_end(&c);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(g_err, "hub.address"));
    assert_non_null(strstr(err, "level=error msg=\"failed to load config\" error=\"hub.address"));
    assert_null(g_cfg.address); /* obj zeroed on error */
    assert_int_equal(g_is_file, 0);
    free(err);

    /* A file named with -c must exist. */
    char *b[] = {"prog", "-c", "/nonexistent/x.yml", NULL};
    capture_start(&c, 2);
    rc = bt_run(3, b, load);
    err = capture_end(&c);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(g_err, "No such file"));
    free(err);

    /* A logger that cannot open its file is a config error too. */
    char blocker[400];
    snprintf(blocker, sizeof blocker, "%s/blocker", g_dir);
    write_file(blocker, "x");
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "hub:\n  address: tcp://h:1\nlogger:\n  path: %s/sub/x.log\n",
             blocker);
    write_file(cfg, yaml);
    capture_start(&c, 2);
    rc = bt_run(3, a, load);
    err = capture_end(&c);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(g_err, "mkdir"));
    assert_null(g_cfg.address);
    free(err);
}

static void test_load_config_default_path_missing(void **state)
{
    (void)state;
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(g_dir), 0);
    char *a[] = {"prog", NULL};
    capture c;
    /* No etc/baetyl/service.yml: defaults, but required fields still count. */
    g_schema = &opt_schema;
    capture_start(&c, 2);
    int rc1 = bt_run(1, a, load);
    char *err1 = capture_end(&c);
    g_schema = &mod_schema;
    capture_start(&c, 2);
    int rc2 = bt_run(1, a, load);
    char *err2 = capture_end(&c);
    char g_err2[256];
    snprintf(g_err2, sizeof g_err2, "%s", g_err);
    /* The old OpenEdge path is used when only it exists. */
    mkdir("etc", 0755);
    mkdir("etc/openedge", 0755);
    write_file("etc/openedge/service.yml", "hub:\n  address: tcp://old:1\n");
    memset(&seen, 0, sizeof seen);
    int rc3 = bt_run(1, a, record);
    assert_int_equal(chdir(cwd), 0);

    assert_int_equal(rc1, 0);
    assert_non_null(strstr(err1, "no config file, using defaults"));
    assert_int_equal(rc2, 1);
    assert_non_null(strstr(g_err2, "hub.address"));
    assert_non_null(strstr(err2, "hub.address"));
    assert_int_equal(rc3, 0);
    assert_string_equal(seen.config, "etc/openedge/service.yml");
    free(err1);
    free(err2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_env_and_openedge_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_config_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_exit_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_help_version_and_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_under_master_sets_log_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_fd_fires_on_sigterm_and_sigint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_by_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sleep_until_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_config_inits_logger, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_config_error_names_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_config_default_path_missing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
