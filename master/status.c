/* `baetyl status`: the running master's inspect through its API (the SDK client), with the
 * CLI account the master writes to var/run/baetyl/cli.token. */
#include "cli.h"
#include "conf.h"
#include "master.h"
#include "pidfile.h"
#include "util.h"

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

static void print_readable(json_t *j, pid_t pid)
{
    json_t *sw = json_object_get(j, "software"), *hw = json_object_get(j, "hardware");
    printf("baetyl %s (%s mode), pid %d, work dir %s\n", str_at(sw, "bin_version"), str_at(sw, "mode"),
           (int)pid, str_at(sw, "pwd"));
    printf("app version: %s\n", *str_at(sw, "conf_version") ? str_at(sw, "conf_version") : "(none)");
    if (*str_at(j, "error"))
        printf("error: %s\n", str_at(j, "error"));
    json_t *host = json_object_get(hw, "host_stats"), *mem = json_object_get(hw, "mem_stats");
    json_t *cpu = json_object_get(hw, "cpu_stats"), *disk = json_object_get(hw, "disk_stats");
    char a[32], b[32], c[32], d[32];
    human(num_at(mem, "used"), a, sizeof a);
    human(num_at(mem, "total"), b, sizeof b);
    human(num_at(disk, "used"), c, sizeof c);
    human(num_at(disk, "total"), d, sizeof d);
    printf("host: %s, linux %s %s, %d cores (%.1f%% used), memory %s/%s (%.0f%%), disk %s/%s (%.0f%%)\n",
           str_at(host, "hostname"), str_at(host, "kernel_version"), str_at(sw, "arch"),
           (int)json_integer_value(json_object_get(cpu, "cores")), num_at(cpu, "used_percent"), a, b,
           num_at(mem, "used_percent"), c, d, num_at(disk, "used_percent"));
    printf("\n%-20s %-28s %-11s %-8s %6s %9s  %s\n", "SERVICE", "INSTANCE", "STATUS", "PID", "CPU%", "MEMORY",
           "STARTED");
    size_t i, k;
    json_t *s, *in;
    json_array_foreach(json_object_get(j, "services"), i, s) {
        json_t *insts = json_object_get(s, "instances");
        if (json_array_size(insts) == 0)
            printf("%-20s %-28s %-11s\n", str_at(s, "name"), "-", "-");
        json_array_foreach(insts, k, in) {
            json_t *proc = json_object_get(in, "process");
            char pids[16] = "-", cpus[16] = "-", mems[16] = "-";
            json_t *ctr = json_object_get(in, "container"), *ms = json_object_get(in, "mem_stats");
            if (json_is_integer(json_object_get(proc, "id")))
                snprintf(pids, sizeof pids, "%lld", (long long)json_integer_value(json_object_get(proc, "id")));
            else if (json_is_string(json_object_get(ctr, "id"))) /* docker: the short container id */
                snprintf(pids, sizeof pids, "%.12s", json_string_value(json_object_get(ctr, "id")));
            if (json_object_get(in, "cpu_stats"))
                snprintf(cpus, sizeof cpus, "%.1f", num_at(json_object_get(in, "cpu_stats"), "used_percent"));
            if (ms) /* native: rss; docker: the container's usage */
                human(num_at(ms, json_object_get(ms, "rss") ? "rss" : "usage"), mems, sizeof mems);
            printf("%-20s %-28s %-11s %-8s %6s %9s  %s\n", str_at(s, "name"), str_at(in, "name"),
                   str_at(in, "status"), pids, cpus, mems, str_at(in, "start_time"));
        }
    }
}

int cmd_status(const char *conf_path, bool as_json)
{
    char err[1024];
    pid_t pid = pidfile_running(PID_FILE, err, sizeof err);
    if (pid < 0) {
        fprintf(stderr, "baetyl: %s\n", err);
        return 1;
    }
    if (pid == 0) {
        fprintf(stderr, "baetyl is not running\n");
        return 3;
    }
    master_conf conf;
    bool missing;
    if (conf_load(conf_path, &conf, &missing, err, sizeof err) != 0) {
        fprintf(stderr, "baetyl: %s: %s\n", conf_path, err);
        return 1;
    }
    char *token = NULL;
    if (read_file(CLI_TOKEN_FILE, 256, &token, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "baetyl: cannot read the CLI token (run as the master's user): %s\n", err);
        conf_free(&conf);
        return 1;
    }
    str_trim(token);
    bt_api_options ao = {.address = conf.server.address, .username = CLI_USER, .password = token,
                         .timeout_ms = 30000};
    bt_api_client *cl = bt_api_new(&ao, err, sizeof err);
    int rc = 1;
    json_t *j = NULL;
    char *raw = NULL;
    if (!cl)
        fprintf(stderr, "baetyl: %s\n", err);
    else if (bt_api_inspect(cl, &j, &raw, err, sizeof err) != 0)
        fprintf(stderr, "baetyl: inspect failed: %s\n", err);
    else {
        if (as_json)
            printf("%s\n", raw);
        else
            print_readable(j, pid);
        rc = 0;
    }
    json_decref(j);
    free(raw);
    bt_api_free(cl);
    free(token);
    conf_free(&conf);
    return rc;
}
