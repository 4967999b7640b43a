/* libFuzzer target for the master's HTTP request path (SPEC §7): each input is written as
 * raw bytes to the real API server (the SDK's HTTP server, baetyl/http_server.h, with the
 * master's routing, accounts, body limits and handlers) over its unix socket, and the answer
 * is read to the end. The request parser alone: test/fuzz/fuzz_http_request.c.
 *
 * One master runs for the whole session in a temporary work dir (no per-input setup): an
 * app with service `s` (replica 0, its program /bin/true, outside the work dir so an update
 * cannot pick it) whose token is set to "tok", and the CLI account's to "fuzz", so mutated
 * requests reach every handler. Seeds: test/fuzz/corpus/fuzz_master_api.
 *
 * The master works relative to its cwd, but libFuzzer's corpus and artifact paths are
 * relative to ours: the master is started from a thread with its own cwd (unshare
 * CLONE_FS), which every thread it creates inherits. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <baetyl/log.h>

#include "../../../master/api_server.h"
#include "../../../master/master.h"
#include "../../../master/ota.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#define MAX_INPUT (256u << 10)

static char sock_path[108], work_dir[64], pkg_dir[64];

/* The temporary dirs go with the process (the master's threads simply end with it). */
static void cleanup(void)
{
    bt_rm_rf(work_dir, NULL, 0);
    bt_rm_rf(pkg_dir, NULL, 0);
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "fuzz_master_api: %s: %s\n", what, err);
    abort();
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    char err[256];
    if (bt_mkdir_parents(path, err, sizeof err) != 0 ||
        bt_write_file_atomic(path, text, strlen(text), mode, err, sizeof err) != 0)
        die(path, err);
}

static void *setup(void *arg)
{
    (void)arg;
    static master m;
    static ota *o;
    static api_server *srv;
    char err[1024], pkg[] = "/tmp/fuzz-master-pkg-XXXXXX", dir[] = "/tmp/fuzz-master-XXXXXX";
    bt_log_set_level(BT_LOG_ERROR);
    if (!mkdtemp(pkg) || !mkdtemp(dir) || unshare(CLONE_FS) != 0 || chdir(dir) != 0)
        die("temp dirs", strerror(errno));
    snprintf(work_dir, sizeof work_dir, "%s", dir);
    snprintf(pkg_dir, sizeof pkg_dir, "%s", pkg);
    atexit(cleanup);
    char *f = bt_path_join(pkg, "package.yml"), *prog = bt_path_join(pkg, "bin/prog");
    write_text(f, "entry: bin/prog\n", 0644);
    if (bt_mkdir_parents(prog, err, sizeof err) != 0 || symlink("/bin/true", prog) != 0)
        die("package", err);
    free(f);
    free(prog);
    if (bt_mkdir_p("var/db/baetyl", 0755, err, sizeof err) != 0 ||
        symlink(pkg, "var/db/baetyl/pkg") != 0)
        die("work dir", err);
    write_text("var/db/baetyl/application.yml",
               "version: v1\nservices:\n  - name: s\n    image: pkg\n    replica: 0\n"
               "    restart: {policy: 'no'}\n    mounts: [{name: pkg, path: lib/baetyl/pkg}]\n"
               "volumes:\n  - {name: pkg, path: var/db/baetyl/pkg}\n",
               0600);

    master_conf conf;
    bool missing;
    bt_api_addr api;
    bt_engine *engine = NULL;
    snprintf(sock_path, sizeof sock_path, "%s/api.sock", dir);
    if (conf_load("etc/baetyl/conf.yml", &conf, &missing, err, sizeof err) != 0)
        die("conf", err);
    conf.grace = 100;
    char addr[128];
    snprintf(addr, sizeof addr, "unix://%s", sock_path);
    if (bt_api_addr_parse(addr, dir, &api, err, sizeof err) != 0 ||
        master_init(&m, dir, &conf, &api, NULL, err, sizeof err) != 0)
        die("master", err);
    engine_opts eo = {.pwd = m.pwd,
                      .grace_ms = m.conf.grace,
                      .api = &m.api,
                      .api_version = m.conf.docker.api_version};
    if (engine_native_new(&eo, &engine, err, sizeof err) != 0)
        die("engine", err);
    m.engine = engine;
    snprintf(m.cli_token, sizeof m.cli_token, "fuzz");
    if (ota_start(&m, &o, err, sizeof err) != 0 ||
        api_server_start(&m, o, &srv, err, sizeof err) != 0 || ota_boot(&m, err, sizeof err) != 0)
        die("start", err);
    pthread_mutex_lock(&m.mu);
    for (m_service *s = m.services; s; s = s->next)
        snprintf(s->token, strlen(s->token) + 1, "tok");
    pthread_mutex_unlock(&m.mu);
    return NULL;
}

/* libFuzzer's per-input leak check races with the server's threads (a connection's request
 * state is freed on its own thread after the answer is read), so it is off; LeakSanitizer
 * still checks the whole run at exit, when every request has ended. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char *args[256];
    static char no_leaks[] = "-detect_leaks=0";
    int n = *argc < 254 ? *argc : 254;
    for (int i = 0; i < n; i++)
        args[i] = (*argv)[i];
    args[n++] = no_leaks;
    args[n] = NULL;
    *argc = n;
    *argv = args;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        pthread_t t;
        if (pthread_create(&t, NULL, setup, NULL) != 0 || pthread_join(t, NULL) != 0)
            die("setup", "thread");
        ready = 1;
    }
    if (size > MAX_INPUT)
        return 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        die("connect", strerror(errno));
    /* The server reads while we write; a refused body is read and dropped. */
    size_t off = 0;
    while (off < size) {
        ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server answered early and closed */
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    char buf[4096];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0)
            die("read", "no answer within 10 s");
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0)
            break;
    }
    close(fd);
    return 0;
}
