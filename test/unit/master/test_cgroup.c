/* The cgroup files the native engine writes (master/cgroup.c), against a temporary directory
 * laid out like a cgroup mount: v2 (one hierarchy, controllers enabled level by level) and
 * v1 (one hierarchy per controller, cpuset levels given their parent's cpus and mems). The
 * kernel's side — limits enforced — is tested for real on v1 in
 * test/integration/test_master_resources.py; no v2 hierarchy with controllers can be mounted
 * beside v1 on the test machine, hence this file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../master/cgroup.h"
#include "baetyl/util.h"

static char root[64];

static void put(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    char err[256];
    assert_int_equal(bt_mkdir_parents(p, err, sizeof err), 0);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *get(const char *rel)
{
    char p[512], *text = NULL, err[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    if (bt_read_file(p, 4096, &text, NULL, err, sizeof err) != 0)
        return strdup("(missing)");
    return text;
}

static void expect(const char *rel, const char *want)
{
    char *got = get(rel);
    if (strcmp(got, want) != 0)
        fail_msg("%s: got '%s', want '%s'", rel, got, want);
    free(got);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/bt-cg-XXXXXX");
    assert_non_null(mkdtemp(root));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bt_rm_rf(root, NULL, 0);
    return 0;
}

static void test_v2_limits_and_controllers(void **state)
{
    (void)state;
    char id[17], d[256];
    cg_master_id("/srv/edge", id);
    assert_int_equal(strlen(id), 16);
    put("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma\n");
    put("cgroup.subtree_control", "");
    put("baetyl/cgroup.subtree_control", "");
    snprintf(d, sizeof d, "baetyl/%s/cgroup.subtree_control", id);
    put(d, "");
    const char *files[] = {"cpu.max",       "cpuset.cpus",  "memory.max",  "memory.swap.max",
                           "pids.max",      "cgroup.procs", "memory.peak", "memory.current",
                           "memory.events", "pids.current"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(d, sizeof d, "baetyl/%s/hub/%s", id, files[i]);
        put(d, "");
    }
    snprintf(d, sizeof d, "baetyl/%s/hub/memory.events", id);
    put(d, "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n");
    snprintf(d, sizeof d, "baetyl/%s/hub/memory.peak", id);
    put(d, "1234567\n");
    bt_app_resources r = {.cpus = 0.5,
                          .setcpus = "0-1",
                          .memory_limit = 64 << 20,
                          .memory_swap = 96 << 20,
                          .pids_limit = 50};
    assert_true(cg_wanted(&r));
    cg_system sys = {.root = root, .version = 2};
    char err[512];
    cg_service *c = cg_service_create(&sys, "/srv/edge", "hub", &r, err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    expect("cgroup.subtree_control", "+cpu +cpuset +memory +pids");
    expect("baetyl/cgroup.subtree_control", "+cpu +cpuset +memory +pids");
    char base[128];
    snprintf(base, sizeof base, "baetyl/%s/hub", id);
    struct {
        const char *f, *v;
    } want[] = {{"cpu.max", "50000 100000"},
                {"cpuset.cpus", "0-1"},
                {"memory.max", "67108864"},
                {"memory.swap.max", "33554432"},
                {"pids.max", "50"}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        snprintf(d, sizeof d, "%s/%s", base, want[i].f);
        expect(d, want[i].v);
    }
    char *const *procs = cg_service_procs_files(c);
    assert_non_null(procs[0]);
    assert_null(procs[1]);
    assert_non_null(strstr(procs[0], "/hub/cgroup.procs"));
    json_t *o = json_object();
    cg_service_stats(c, o);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "cgroup"), "oom_kills")),
                     2);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(o, "cgroup"), "memory_peak")), 1234567);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "limits"), "pids")), 50);
    json_decref(o);
    cg_service_destroy(c); /* rmdir fails on a plain directory with files: nothing breaks */
}

static void test_v2_missing_controller_is_an_error(void **state)
{
    (void)state;
    put("cgroup.controllers", "cpu memory\n");
    bt_app_resources r = {.pids_limit = 5};
    cg_system sys = {.root = root, .version = 2};
    char err[512];
    assert_null(cg_service_create(&sys, "/w", "s", &r, err, sizeof err));
    assert_non_null(strstr(err, "controller pids is not available"));
}

static void test_v1_per_controller_and_cpuset_inheritance(void **state)
{
    (void)state;
    char id[17], d[256];
    cg_master_id("/w", id);
    put("cpuset/cpuset.cpus", "0-3\n");
    put("cpuset/cpuset.mems", "0\n");
    for (int i = 0; i < 3; i++) {
        char rel[128];
        if (i == 0)
            snprintf(rel, sizeof rel, "baetyl");
        else
            snprintf(rel, sizeof rel, "baetyl/%s%s", id, i == 2 ? "/s" : "");
        snprintf(d, sizeof d, "cpuset/%s/cpuset.cpus", rel);
        put(d, "");
        snprintf(d, sizeof d, "cpuset/%s/cpuset.mems", rel);
        put(d, "");
    }
    snprintf(d, sizeof d, "memory/baetyl/%s/s/memory.limit_in_bytes", id);
    put(d, "");
    snprintf(d, sizeof d, "memory/baetyl/%s/s/memory.oom_control", id);
    put(d, "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n");
    bt_app_resources r = {.setcpus = "2", .memory_limit = 1 << 20};
    cg_system sys = {.root = root, .version = 1};
    char err[512];
    cg_service *c = cg_service_create(&sys, "/w", "s", &r, err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    snprintf(d, sizeof d, "cpuset/baetyl/%s/cpuset.mems", id);
    expect(d, "0"); /* an intermediate level got its parent's mems */
    snprintf(d, sizeof d, "cpuset/baetyl/%s/s/cpuset.cpus", id);
    expect(d, "2");
    snprintf(d, sizeof d, "memory/baetyl/%s/s/memory.limit_in_bytes", id);
    expect(d, "1048576");
    char *const *procs = cg_service_procs_files(c);
    assert_non_null(procs[0]);
    assert_non_null(procs[1]); /* cpuset and memory */
    assert_null(procs[2]);
    json_t *o = json_object();
    cg_service_stats(c, o);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "cgroup"), "oom_kills")),
                     4);
    json_decref(o);
    cg_service_destroy(c);
    /* a controller that is not mounted: an error naming it */
    bt_app_resources p = {.pids_limit = 3};
    assert_null(cg_service_create(&sys, "/w", "s", &p, err, sizeof err));
    assert_non_null(strstr(err, "controller pids is not mounted"));
}

static void test_nothing_wanted(void **state)
{
    (void)state;
    bt_app_resources r = {0};
    assert_false(cg_wanted(&r));
    r.setcpus = "";
    assert_false(cg_wanted(&r));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_v2_limits_and_controllers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v2_missing_controller_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v1_per_controller_and_cpuset_inheritance, setup,
                                        teardown),
        cmocka_unit_test(test_nothing_wanted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
