/* remote-mqtt's config: client id precedence (SPEC §13) and the rules refused at start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "../../../remote-mqtt/config.h"

#define HUB "hub: {address: 'tcp://127.0.0.1:1883', username: test, password: hahaha}\n"

static int load(rm_config *cfg, const char *yaml, char *err, size_t errlen)
{
    return bt_cfg_load_string(&rm_config_schema, cfg, yaml, strlen(yaml), err, errlen);
}

static void loads(rm_config *cfg, const char *yaml)
{
    char err[512] = "";
    int rc = load(cfg, yaml, err, sizeof err);
    if (rc != 0)
        fail_msg("unexpected error: %s", err);
}

/* The load fails and the error contains want. */
static void refused(const char *yaml, const char *want)
{
    rm_config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg, yaml, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void test_clientid_precedence(void **state)
{
    rm_config cfg;
    loads(&cfg, HUB "remotes:\n"
                    "  - {name: a, address: 'tcp://127.0.0.1:1884'}\n"
                    "  - {name: b, address: 'ssl://127.0.0.1:1885', clientid: b-id}\n"
                    "rules:\n"
                    "  - remote: {name: a}\n"                 /* a's name, at both brokers */
                    "  - remote: {name: b}\n"                 /* b's clientid */
                    "  - remote: {name: b, clientid: r3}\n"   /* the rule's remote id */
                    "    hub: {clientid: h3}\n"               /* the rule's hub id */
                    "  - remote: {name: a, clientid: r4}\n"); /* the hub takes the remote id */
    assert_int_equal(cfg.remotes.n, 2);
    assert_int_equal(cfg.rules.n, 4);
    assert_string_equal(rm_config_remote_clientid(&cfg, 0), "a");
    assert_string_equal(rm_config_hub_clientid(&cfg, 0), "a");
    assert_string_equal(rm_config_remote_clientid(&cfg, 1), "b-id");
    assert_string_equal(rm_config_hub_clientid(&cfg, 1), "b-id");
    assert_string_equal(rm_config_remote_clientid(&cfg, 2), "r3");
    assert_string_equal(rm_config_hub_clientid(&cfg, 2), "h3");
    assert_string_equal(rm_config_remote_clientid(&cfg, 3), "r4");
    assert_string_equal(rm_config_hub_clientid(&cfg, 3), "r4");
    assert_null(rm_config_hub_clientid(&cfg, 4));
    const rm_remote *b = rm_config_remote(&cfg, "b");
    assert_non_null(b);
    assert_string_equal(b->mqtt.address, "ssl://127.0.0.1:1885");
    assert_null(rm_config_remote(&cfg, "c"));
    bt_cfg_free(&rm_config_schema, &cfg);
}

static void test_defaults(void **state)
{
    rm_config cfg;
    loads(&cfg,
          HUB "remotes: [{name: a, address: 'tcp://h:1884'}]\n"
              "rules:\n"
              "  - hub: {subscriptions: [{topic: t1}]}\n"
              "    remote: {name: a, subscriptions: [{topic: t2, qos: 1}, {topic: 'x/#'}]}\n");
    const rm_remote *a = rm_config_remote(&cfg, "a");
    assert_false(a->mqtt.cleansession); /* SPEC §17 defaults apply to remotes too */
    assert_int_equal(a->mqtt.timeout, 30000);
    assert_int_equal(a->mqtt.interval, 60000);
    assert_int_equal(a->mqtt.keepalive, 600000);
    assert_int_equal(a->mqtt.buffersize, 100); /* remote-mqtt's own default (config.c) */
    assert_int_equal(cfg.hub.buffersize, 10);  /* the hub client keeps the SDK's */
    const rm_rule *r = &BT_CFG_AT(cfg.rules, rm_rule, 0);
    assert_int_equal(r->hub.subscriptions.n, 1);
    assert_int_equal(BT_CFG_AT(r->hub.subscriptions, bt_mqtt_topic_info, 0).qos, 0);
    assert_int_equal(r->remote.subscriptions.n, 2);
    assert_int_equal(BT_CFG_AT(r->remote.subscriptions, bt_mqtt_topic_info, 0).qos, 1);
    assert_string_equal(BT_CFG_AT(r->remote.subscriptions, bt_mqtt_topic_info, 1).topic, "x/#");
    bt_cfg_free(&rm_config_schema, &cfg);

    /* a buffersize given is kept */
    loads(&cfg, HUB "remotes: [{name: a, address: 'tcp://h:1884', buffersize: 7}]\n");
    assert_int_equal(rm_config_remote(&cfg, "a")->mqtt.buffersize, 7);
    bt_cfg_free(&rm_config_schema, &cfg);

    /* no remotes and no rules: valid (nothing to do) */
    loads(&cfg, HUB);
    assert_int_equal(cfg.rules.n, 0);
    bt_cfg_free(&rm_config_schema, &cfg);
}

static void test_refused(void **state)
{
    refused(HUB "remotes: [{name: a, address: 'tcp://h:1'}]\nrules: [{remote: {name: b}}]\n",
            "rules[0].remote.name: remote (b) not found");
    refused(HUB "remotes: [{name: a, address: 'tcp://h:1'}]\nrules: [{hub: {clientid: x}}]\n",
            "rules[0].remote.name: required");
    refused(HUB "rules: [{remote: {name: a}}]\n", "rules[0].remote.name: remote (a) not found");
    refused(HUB "remotes: [{name: a, address: 'tcp://h:1'}, {name: a, address: 'tcp://h:2'}]\n",
            "remotes[1].name: remote name (a) is duplicated");
    refused(HUB "remotes: [{name: a}]\n", "remotes[0].address: required");
    refused(HUB "remotes: [{address: 'tcp://h:1'}]\n", "remotes[0].name: required");
    refused(HUB "remotes: [{name: a, address: 'http://h:1'}]\n",
            "remotes[0].address: address (http://h:1) has an unsupported scheme");
    refused(HUB "remotes: [{name: a, address: 'tcp://h:1', cert: c.pem}]\n",
            "cert and key must be given together");
    refused("remotes: [{name: a, address: 'tcp://h:1'}]\n", "hub.address: required");
    refused(HUB "remotes: [{name: a, address: 'tcp://h:1'}]\n"
                "rules: [{remote: {name: a, subscriptions: [{topic: 'a/#/b'}]}}]\n",
            "rules[0].remote.subscriptions[0].topic: invalid topic filter (a/#/b)");
    refused(HUB "remotes: [{name: a, address: 'tcp://h:1'}]\n"
                "rules: [{remote: {name: a}, hub: {subscriptions: [{topic: t, qos: 2}]}}]\n",
            "rules[0].hub.subscriptions[0].qos: must be between 0 and 1");
    /* two rules, one hub client id (the default: the remote's name) */
    refused(HUB "remotes: [{name: a, address: 'tcp://h:1'}]\n"
                "rules: [{remote: {name: a}}, {remote: {name: a}}]\n",
            "rules[1].hub.clientid: client id (a) is also used by rules[0] at the hub");
    /* distinct hub ids, one remote id at the same remote */
    refused(HUB "remotes: [{name: a, address: 'tcp://h:1', clientid: r}]\n"
                "rules: [{remote: {name: a}, hub: {clientid: h1}},\n"
                "        {remote: {name: a}, hub: {clientid: h2}}]\n",
            "rules[1].remote.clientid: client id (r) is also used by rules[0] at remote (a)");
}

static void test_same_remote_id_on_two_remotes(void **state)
{
    rm_config cfg;
    loads(&cfg, HUB "remotes:\n"
                    "  - {name: a, address: 'tcp://h:1', clientid: edge}\n"
                    "  - {name: b, address: 'tcp://h:2', clientid: edge}\n"
                    "rules:\n"
                    "  - {remote: {name: a}, hub: {clientid: to-a}}\n"
                    "  - {remote: {name: b}, hub: {clientid: to-b}}\n");
    assert_string_equal(rm_config_remote_clientid(&cfg, 0), "edge");
    assert_string_equal(rm_config_remote_clientid(&cfg, 1), "edge");
    bt_cfg_free(&rm_config_schema, &cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clientid_precedence),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_same_remote_id_on_two_remotes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
