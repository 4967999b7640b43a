/* `baetyl status`: the running master's inspect through its API (the SDK client), with the
 * CLI account the master writes to var/run/baetyl/cli.token. */
#include "cli.h"
#include "conf.h"
#include "master.h"
#include "pidfile.h"
#include "status_health.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/api.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void human(double v, char *buf, size_t len)
{
    const char *u[] = {"B", "K", "M", "G", "T"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(buf, len, i ? "%.1f%s" : "%.0f%s", v, u[i]);
}

static const char *str_at(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static double num_at(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

/* The cells of one row of the services table; an instance-less service has "-" cells. */
typedef struct {
    const char *svc, *inst, *status, *started;
    char pid[16], cpu[16], mem[16];
} row_t;

static void row_of(json_t *s, json_t *in, row_t *r)
{
    *r = (row_t){.svc = str_at(s, "name"),
                 .inst = "-",
                 .status = "-",
                 .started = "",
                 .pid = "-",
                 .cpu = "-",
                 .mem = "-"};
    if (!in)
        return;
    r->inst = str_at(in, "name");
    r->status = str_at(in, "status");
    r->started = str_at(in, "start_time");
    json_t *proc = json_object_get(in, "process");
    json_t *ctr = json_object_get(in, "container"), *ms = json_object_get(in, "mem_stats");
    if (json_is_integer(json_object_get(proc, "id")))
        snprintf(r->pid, sizeof r->pid, "%lld",
                 (long long)json_integer_value(json_object_get(proc, "id")));
    else if (json_is_string(json_object_get(ctr, "id"))) /* docker: the short container id */
        snprintf(r->pid, sizeof r->pid, "%.12s", json_string_value(json_object_get(ctr, "id")));
    if (json_object_get(in, "cpu_stats"))
        snprintf(r->cpu, sizeof r->cpu, "%.1f",
                 num_at(json_object_get(in, "cpu_stats"), "used_percent"));
    if (ms) /* native: rss; docker: the container's usage */
        human(num_at(ms, json_object_get(ms, "rss") ? "rss" : "usage"), r->mem, sizeof r->mem);
}

/* Column widths: the widest of the header and the cells, so long names keep the table
 * aligned. */
typedef struct {
    int svc, inst, status, pid, cpu, mem;
} widths_t;

static int widest(int w, const char *s)
{
    size_t n = strlen(s);
    return n > (size_t)w ? (n > 1024 ? 1024 : (int)n) : w;
}

static void widen(widths_t *w, const row_t *r)
{
    w->svc = widest(w->svc, r->svc);
    w->inst = widest(w->inst, r->inst);
    w->status = widest(w->status, r->status);
    w->pid = widest(w->pid, r->pid);
    w->cpu = widest(w->cpu, r->cpu);
    w->mem = widest(w->mem, r->mem);
}

static void print_row(const widths_t *w, const row_t *r)
{
    printf("%-*s %-*s %-*s %-*s %*s %*s  %s\n", w->svc, r->svc, w->inst, r->inst, w->status,
           r->status, w->pid, r->pid, w->cpu, r->cpu, w->mem, r->mem, r->started);
}

/* Pass 0 measures a row, pass 1 prints it. */
static void emit(widths_t *w, const row_t *r, int pass)
{
    if (pass == 0)
        widen(w, r);
    else
        print_row(w, r);
}

/* Whether an instance runs as a container: the id column then holds container ids. */
static bool any_container(json_t *services)
{
    size_t i, k;
    json_t *s, *in;
    json_array_foreach(services, i, s)
    {
        json_array_foreach(json_object_get(s, "instances"), k, in)
        {
            if (json_object_get(in, "container"))
                return true;
        }
    }
    return false;
}

/* Two passes over the services: the widths first, then the rows. */
static void print_table(json_t *services)
{
    row_t head = {.svc = "SERVICE",
                  .inst = "INSTANCE",
                  .status = "STATUS",
                  .started = "STARTED",
                  .pid = "PID",
                  .cpu = "CPU%",
                  .mem = "MEMORY"};
    if (any_container(services))
        snprintf(head.pid, sizeof head.pid, "CONTAINER ID");
    widths_t w = {0};
    row_t r;
    widen(&w, &head);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            printf("\n");
            print_row(&w, &head);
        }
        size_t i, k;
        json_t *s, *in;
        json_array_foreach(services, i, s)
        {
            json_t *insts = json_object_get(s, "instances");
            if (json_array_size(insts) == 0) {
                row_of(s, NULL, &r);
                emit(&w, &r, pass);
            }
            json_array_foreach(insts, k, in)
            {
                row_of(s, in, &r);
                emit(&w, &r, pass);
            }
        }
    }
}

static void print_readable(json_t *j, pid_t pid)
{
    json_t *sw = json_object_get(j, "software"), *hw = json_object_get(j, "hardware");
    printf("baetyl %s (%s mode), pid %d, work dir %s\n", str_at(sw, "bin_version"),
           str_at(sw, "mode"), (int)pid, str_at(sw, "pwd"));
    printf("app version: %s\n",
           *str_at(sw, "conf_version") ? str_at(sw, "conf_version") : "(none)");
    if (*str_at(j, "error"))
        printf("error: %s\n", str_at(j, "error"));
    json_t *host = json_object_get(hw, "host_stats"), *mem = json_object_get(hw, "mem_stats");
    json_t *cpu = json_object_get(hw, "cpu_stats"), *disk = json_object_get(hw, "disk_stats");
    char a[32], b[32], c[32], d[32];
    human(num_at(mem, "used"), a, sizeof a);
    human(num_at(mem, "total"), b, sizeof b);
    human(num_at(disk, "used"), c, sizeof c);
    human(num_at(disk, "total"), d, sizeof d);
    printf("host: %s, linux %s %s, %d cores (%.1f%% used), memory %s/%s (%.0f%%), disk %s/%s "
           "(%.0f%%)\n",
           str_at(host, "hostname"), str_at(host, "kernel_version"), str_at(sw, "arch"),
           (int)json_integer_value(json_object_get(cpu, "cores")), num_at(cpu, "used_percent"), a,
           b, num_at(mem, "used_percent"), c, d, num_at(disk, "used_percent"));
    print_table(json_object_get(j, "services"));
}

/* The health figures (all of them, or with check only the problems) from /metrics.
 * Returns the number of problems, or -1 when /metrics cannot be read. */
static int health(bt_api_client *cl, bool check, int64_t max_age_ms)
{
    char err[512], *text = NULL;
    if (bt_api_request(cl, "GET", "/metrics", NULL, 0, &text, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "baetyl: metrics failed: %s\n", err);
        return -1;
    }
    int n = status_health(text, max_age_ms, !check, stdout, stdout);
    free(text);
    if (check && n == 0)
        printf("healthy\n");
    return n;
}

int cli_api_connect(const char *conf_path, bt_api_client **out, pid_t *pid_out)
{
    char err[1024];
    *out = NULL;
    pid_t pid = pidfile_running(PID_FILE, err, sizeof err);
    if (pid < 0) {
        fprintf(stderr, "baetyl: %s\n", err);
        return 1;
    }
    if (pid == 0) {
        fprintf(stderr, "baetyl is not running\n");
        return 3;
    }
    if (pid_out)
        *pid_out = pid;
    master_conf conf;
    bool missing;
    if (conf_load(conf_path, &conf, &missing, err, sizeof err) != 0) {
        fprintf(stderr, "baetyl: %s: %s\n", conf_path, err);
        return 1;
    }
    char *token = NULL;
    if (bt_read_file(CLI_TOKEN_FILE, 256, &token, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "baetyl: cannot read the CLI token (run as the master's user): %s\n", err);
        conf_free(&conf);
        return 1;
    }
    bt_str_trim(token);
    bt_api_options ao = {.address = conf.server.address,
                         .username = CLI_USER,
                         .password = token,
                         .timeout_ms = 30000};
    *out = bt_api_new(&ao, err, sizeof err);
    free(token);
    conf_free(&conf);
    if (!*out) {
        fprintf(stderr, "baetyl: %s\n", err);
        return 1;
    }
    return 0;
}

int cmd_status(const char *conf_path, bool as_json, bool check, int64_t max_age_ms)
{
    char err[1024];
    bt_api_client *cl;
    pid_t pid = 0;
    int rc = cli_api_connect(conf_path, &cl, &pid);
    if (rc != 0)
        return rc;
    rc = 1;
    json_t *j = NULL;
    char *raw = NULL;
    if (check)
        rc = health(cl, true, max_age_ms) == 0 ? 0 : 1;
    else if (bt_api_inspect(cl, &j, &raw, err, sizeof err) != 0)
        fprintf(stderr, "baetyl: inspect failed: %s\n", err);
    else {
        if (as_json)
            printf("%s\n", raw);
        else {
            print_readable(j, pid);
            health(cl, false, max_age_ms);
        }
        rc = 0;
    }
    json_decref(j);
    free(raw);
    bt_api_free(cl);
    return rc;
}
