/* The swarm engine's pure parts: swarm service names of instances and the service spec of a
 * service (ports in host mode, binds, limits, restart policy, placement, the network). The
 * engine itself runs on a real swarm in test/swarm/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <baetyl/json.h>

#include "../../../master/app.h"
#include "../../../master/docker_config.h"
#include "../../../master/engine_swarm.h"

static const char APP[] = "services:\n"
                          "  - name: localhub\n"
                          "    image: baetyl-hub\n"
                          "    args: ['-c', 'etc/baetyl/service.yml']\n"
                          "    ports: ['1883:1883', '8883/udp']\n"
                          "    resources: {cpu: {cpus: 1.5}, memory: {limit: 500m}}\n"
                          "    restart: {policy: on-failure, retry: {max: 3}, backoff: {min: 2s}}\n"
                          "    placement: {constraints: ['node.labels.line==1'], spread: "
                          "node.labels.rack}\n"
                          "    mounts: [{name: conf, path: etc/baetyl, readonly: true}]\n"
                          "  - name: dev\n"
                          "    image: x\n"
                          "    devices: ['/dev/ttyUSB0']\n"
                          "  - name: bound\n"
                          "    image: x\n"
                          "    ports: ['127.0.0.1:1883:1883']\n"
                          "  - name: fn\n"
                          "    image: f\n"
                          "    mounts: [{name: conf, path: etc/baetyl, readonly: true}]\n"
                          "volumes: [{name: conf, path: var/db/baetyl/conf}]\n";

/* The compact JSON (keys sorted) of the value at path in s; freed by the caller. */
static char *at(const json_t *s, const char *path)
{
    return json_dumps(bt_json_get(s, path), JSON_COMPACT | JSON_SORT_KEYS);
}

static void name_is(const char *instance, const char *want)
{
    char out[SWARM_NAME_MAX + 1];
    assert_int_equal(swarm_name(instance, out, sizeof out), 0);
    if (want)
        assert_string_equal(out, want);
    assert_true(strlen(out) <= SWARM_NAME_MAX);
    assert_null(strchr(out, '.'));
}

static void test_names(void **state)
{
    (void)state;
    name_is("localhub", "localhub");
    name_is("a_b-c", "a_b-c");
    name_is("function-sql-filter.sql-filter.1", "function-sql-filter-sql-filter-1-6904b267");
    char a[SWARM_NAME_MAX + 1], b[SWARM_NAME_MAX + 1], long_name[129];
    memset(long_name, 'x', 128);
    long_name[128] = '\0';
    name_is(long_name, NULL);
    /* two names that read the same once cleaned stay apart */
    assert_int_equal(swarm_name("a.b", a, sizeof a), 0);
    assert_int_equal(swarm_name("a-b.", b, sizeof b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(swarm_name("...", a, sizeof a), -1);
    assert_int_equal(swarm_name("a", a, 8), -1);
}

static void test_spec(void **state)
{
    (void)state;
    app_config app;
    char err[512] = "";
    if (app_load_string(APP, strlen(APP), &app, err, sizeof err) != 0)
        fail_msg("%s", err);
    swarm_ctx ctx = {
        .pwd = "/w", .network = DOCKER_NETWORK, .master_id = "0123456789ab", .grace_ms = 5000};
    json_t *s = swarm_service_spec(&ctx, &app, APP_SERVICE(&app, 0), err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    char *t = at(s, "EndpointSpec");
    assert_string_equal(t, "{\"Mode\":\"dnsrr\",\"Ports\":[{\"Protocol\":\"tcp\",\"PublishMode\":"
                           "\"host\",\"PublishedPort\":1883,\"TargetPort\":1883},{\"Protocol\":"
                           "\"udp\",\"PublishMode\":\"host\",\"TargetPort\":8883}]}");
    free(t);
    t = at(s, "TaskTemplate.ContainerSpec.Mounts");
    assert_string_equal(t, "[{\"ReadOnly\":true,\"Source\":\"/w/var/db/baetyl/conf\",\"Target\":"
                           "\"/etc/baetyl\",\"Type\":\"bind\"}]");
    free(t);
    t = at(s, "TaskTemplate.Placement");
    assert_string_equal(t, "{\"Constraints\":[\"node.labels.line==1\"],\"Preferences\":"
                           "[{\"Spread\":{\"SpreadDescriptor\":\"node.labels.rack\"}}]}");
    free(t);
    t = at(s, "TaskTemplate.RestartPolicy");
    assert_string_equal(t, "{\"Condition\":\"on-failure\",\"Delay\":2000000000,\"MaxAttempts\":3}");
    free(t);
    assert_int_equal(bt_json_get_int(s, "TaskTemplate.Resources.Limits.NanoCPUs", 0), 1500000000LL);
    assert_int_equal(bt_json_get_int(s, "TaskTemplate.Resources.Limits.MemoryBytes", 0),
                     500LL << 20);
    assert_int_equal(bt_json_get_int(s, "TaskTemplate.ContainerSpec.StopGracePeriod", 0),
                     5000000000LL);
    assert_int_equal(bt_json_get_int(s, "Mode.Replicated.Replicas", 0), 1);
    assert_string_equal(bt_json_get_str(s, "Labels.baetyl-master"), "0123456789ab");
    /* updated in place, rolled back by the swarm; a published port: the old task goes first */
    t = at(s, "UpdateConfig");
    assert_string_equal(t, "{\"FailureAction\":\"rollback\",\"MaxFailureRatio\":0.0,\"Monitor\":"
                           "5000000000,\"Order\":\"stop-first\",\"Parallelism\":1}");
    free(t);
    assert_string_equal(bt_json_get_str(s, "RollbackConfig.FailureAction"), "pause");
    char *env[] = {"A=1", NULL};
    assert_int_equal(swarm_instance_spec(s, "localhub-i1", "localhub.i1", env), 0);
    t = at(s, "TaskTemplate.Networks");
    assert_string_equal(t, "[{\"Aliases\":[\"localhub\",\"localhub.i1\"],\"Target\":\"baetyl\"}]");
    free(t);
    assert_string_equal(bt_json_get_str(s, "Labels.baetyl-instance"), "localhub.i1");
    assert_string_equal(bt_json_get_str(s, "TaskTemplate.ContainerSpec.Env.0"), "A=1");
    char h1[40], h2[40];
    assert_int_equal(swarm_spec_hash(s, h1, sizeof h1), 0);
    assert_int_equal(swarm_spec_hash(s, h2, sizeof h2), 0);
    assert_string_equal(h1, h2);
    assert_int_equal(strlen(h1), 32);
    json_decref(s);
    /* what a swarm cannot do is an error naming the field */
    assert_null(swarm_service_spec(&ctx, &app, APP_SERVICE(&app, 1), err, sizeof err));
    assert_non_null(strstr(err, "devices"));
    assert_null(swarm_service_spec(&ctx, &app, APP_SERVICE(&app, 2), err, sizeof err));
    assert_non_null(strstr(err, "ports"));
    /* no port, read-only binds: the new task starts before the old one stops */
    s = swarm_service_spec(&ctx, &app, APP_SERVICE(&app, 3), err, sizeof err);
    assert_non_null(s);
    assert_string_equal(bt_json_get_str(s, "UpdateConfig.Order"), "start-first");
    json_decref(s);
    app_free(&app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_spec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
