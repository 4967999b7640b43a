/* `baetyl start`: config, logger, pid file, engine, API server, the app; then wait for
 * SIGTERM/SIGINT/SIGHUP and stop everything within one grace period. */
#include "api_server.h"
#include "cli.h"
#include "conf.h"
#include "engine.h"
#include "master.h"
#include "mst.h"
#include "ota.h"
#include "pidfile.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/log.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int init_logger(const master_conf *c, char *err, size_t errlen)
{
    bt_logger_config lc = c->logger;
    lc.path = c->logger_path; /* the master's default is a file, not stderr */
    if (bt_log_init(&lc, err, errlen) != 0)
        return -1;
    bt_log_set_field("baetyl", "master");
    return 0;
}

/* The token `baetyl status` uses, readable by the owner only. */
static void write_cli_token(const master *m)
{
    char why[256];
    if (bt_mkdir_p("var/run/baetyl", 0755, why, sizeof why) != 0 ||
        bt_write_file_atomic(CLI_TOKEN_FILE, m->cli_token, strlen(m->cli_token), 0600, why,
                             sizeof why) != 0)
        bt_logkv(BT_LOG_WARN, "failed to write the CLI token: `baetyl status` will not work",
                 "error", why, NULL);
}

int cmd_start(const char *workdir, const char *conf_path)
{
    char err[2048];
    master_conf conf;
    bool missing;
    if (conf_load(conf_path, &conf, &missing, err, sizeof err) != 0) {
        fprintf(stderr, "baetyl: failed to load %s: %s\n", conf_path, err);
        return 1;
    }
    if (init_logger(&conf, err, sizeof err) != 0) {
        fprintf(stderr, "baetyl: failed to open the log: %s\n", err);
        conf_free(&conf);
        return 1;
    }
    if (missing)
        bt_logkv(BT_LOG_INFO, "config file not found: using defaults", "path", conf_path, NULL);
    mst_boot_begin(workdir, conf_path, conf.otalog.path, conf.ota.timeout);

    /* application.stats and ota.log live there even before any application arrives. */
    if (bt_mkdir_p("var/db/baetyl", 0755, err, sizeof err) != 0)
        bt_logkv(BT_LOG_WARN, "cannot create var/db/baetyl", "error", err, NULL);
    int pidfd = pidfile_acquire(PID_FILE, err, sizeof err);
    if (pidfd < 0) {
        bt_logkv(BT_LOG_ERROR, err, NULL);
        fprintf(stderr, "baetyl: %s\n", err);
        conf_free(&conf);
        bt_log_close();
        return 1;
    }
    /* Signals go to sigwait in this thread only: block them before any thread exists. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    /* An inherited SIG_IGN would discard them before sigwait sees them (SIGHUP is left
     * alone: nohup means it). SIGCHLD ignored would reap children behind our back. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    bt_api_addr api;
    bt_engine *engine = NULL;
    master m;
    bool m_ok = false;
    ota *o = NULL;
    api_server *srv = NULL;
    if (bt_api_addr_parse(conf.server.address, workdir, &api, err, sizeof err) != 0) {
        bt_logkv(BT_LOG_ERROR, "server.address invalid", "error", err, NULL);
        fprintf(stderr, "baetyl: server.address: %s\n", err);
        conf_free(&conf);
        goto out;
    }
    char grace[32];
    bt_fmt_duration(conf.grace, grace, sizeof grace);
    char line[1024];
    snprintf(line, sizeof line, "mode: %s; grace: %s; pwd: %s; api: %s", conf.mode, grace, workdir,
             conf.server.address);
    bt_logkv(BT_LOG_INFO, line, NULL);
    engine_opts eo = {.pwd = workdir, .grace_ms = conf.grace, .api = NULL, .api_version = NULL};
    /* The engine keeps pointers into the master's copies, made by master_init below. */
    if (master_init(&m, workdir, &conf, &api, NULL, err, sizeof err) != 0) {
        bt_logkv(BT_LOG_ERROR, err, NULL);
        fprintf(stderr, "baetyl: %s\n", err);
        goto out;
    }
    m_ok = true;
    eo.pwd = m.pwd;
    eo.api = &m.api;
    eo.api_version = m.conf.docker.api_version;
    if (engine_new(m.conf.mode, &eo, &engine, err, sizeof err) != 0) {
        bt_logkv(BT_LOG_ERROR, "failed to start the engine", "error", err, NULL);
        fprintf(stderr, "baetyl: %s\n", err);
        goto out;
    }
    m.engine = engine;
    bt_logkv(BT_LOG_INFO, "engine started", NULL);
    write_cli_token(&m);
    if (ota_start(&m, &o, err, sizeof err) != 0 ||
        api_server_start(&m, o, &srv, err, sizeof err) != 0) {
        bt_logkv(BT_LOG_ERROR, "failed to start the API server", "error", err, NULL);
        fprintf(stderr, "baetyl: %s\n", err);
        goto out;
    }
    bt_logkv(BT_LOG_INFO, "server started", NULL);
    if (ota_boot(&m, err, sizeof err) != 0) {
        fprintf(stderr, "baetyl: %s\n", err);
        goto out;
    }
    bt_logkv(BT_LOG_INFO, "services started", NULL);
    mst_boot_end(true);
    if (bt_log_is_file())
        fprintf(stderr, "baetyl: running in %s (api %s, log %s)\n", workdir, m.conf.server.address,
                m.conf.logger_path);

    /* Waiting, this thread trims the heap now and then (util.h). */
    struct timespec trim = {BT_HEAP_TRIM_FIRST_MS / 1000, 0};
    for (;;) {
        siginfo_t si;
        int s = sigtimedwait(&sigs, &si, &trim);
        if (s < 0 && errno == EAGAIN) {
            bt_heap_trim();
            trim = (struct timespec){BT_HEAP_TRIM_MS / 1000, 0};
            continue;
        }
        if (s < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        bt_logkv(BT_LOG_INFO, "master is stopping", "signal", strsignal(s), NULL);
        break;
    }
    rc = 0;
out:
    if (rc != 0)
        mst_boot_end(false); /* a new master binary that fails: the old one comes back */
    /* The server first (it queues updates), then the update worker (it finishes the update
     * in progress), then the services. */
    if (srv) {
        api_server_stop(srv);
        bt_logkv(BT_LOG_INFO, "server stopped", NULL);
    }
    ota_stop(o);
    if (m_ok) {
        if (m.engine) {
            pthread_mutex_lock(&m.ops);
            master_stop_changed(&m, NULL, NULL);
            pthread_mutex_unlock(&m.ops);
            master_save_stats(&m);
            bt_logkv(BT_LOG_INFO, "engine stopped", NULL);
        }
        master_destroy(&m);
    }
    unlink(CLI_TOKEN_FILE);
    pidfile_release(PID_FILE, pidfd);
    bt_logkv(BT_LOG_INFO, rc == 0 ? "master stopped" : "master failed", NULL);
    bt_log_close();
    return rc;
}
