/* The environment of an instance (SPEC §8): the BAETYL_* variables win over the service's
 * env, the dynamic env and the master's own; a dynamic instance never gets a token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../master/master.h"

static const char *get(char **env, const char *key)
{
    size_t n = strlen(key);
    const char *found = NULL;
    int count = 0;
    for (char **p = env; *p; p++)
        if (strncmp(*p, key, n) == 0 && (*p)[n] == '=') {
            found = *p + n + 1;
            count++;
        }
    assert_true(count <= 1); /* never twice */
    return found;
}

static const engine_ops fake_ops = {.name = "native"};

static void fixture(master *m, bt_engine *e, m_service *s, app_config *app)
{
    memset(m, 0, sizeof *m);
    memset(e, 0, sizeof *e);
    memset(s, 0, sizeof *s);
    e->ops = &fake_ops;
    e->api_env = "unix://var/run/baetyl.sock";
    m->engine = e;
    m->api.is_unix = true;
    m->api.path = "/w/b.sock";
    strcpy(m->host_id, "host-1");
    m->host_sn = "SN-9";
    const char *text = "services:\n  - name: svc\n    image: x\n"
                       "    env: {FOO: bar, BAETYL_SERVICE_TOKEN: forged, OPENEDGE_SERVICE_NAME: "
                       "forged, PATH: /custom}\n";
    char err[256];
    assert_int_equal(app_load_string(text, strlen(text), app, err, sizeof err), 0);
    assert_int_equal(app_service_copy(&s->cfg, APP_SERVICE(app, 0)), 0);
    s->name = "svc";
    s->token = "secret-token";
}

static void test_application_instance(void **state)
{
    master m;
    bt_engine e;
    m_service s;
    app_config app;
    fixture(&m, &e, &s, &app);
    setenv("BAETYL_SERVICE_TOKEN", "inherited", 1);
    setenv("OUTER", "kept", 1);
    char err[256];
    char **env = env_build(&m, &s, "svc.i1", false, NULL, err, sizeof err);
    assert_non_null(env);
    assert_string_equal(get(env, "FOO"), "bar");
    assert_string_equal(get(env, "PATH"), "/custom");
    assert_string_equal(get(env, "OUTER"), "kept");
    assert_string_equal(get(env, "BAETYL_SERVICE_TOKEN"), "secret-token");
    assert_string_equal(get(env, "OPENEDGE_SERVICE_TOKEN"), "secret-token");
    assert_string_equal(get(env, "OPENEDGE_SERVICE_NAME"), "svc");
    assert_string_equal(get(env, "BAETYL_SERVICE_INSTANCE_NAME"), "svc.i1");
    assert_string_equal(get(env, "BAETYL_MASTER_API_ADDRESS"), "unix://var/run/baetyl.sock");
    assert_string_equal(get(env, "OPENEDGE_MASTER_API"), "unix://var/run/baetyl.sock");
    assert_string_equal(get(env, "BAETYL_MASTER_API_SOCKET"), "/w/b.sock");
    assert_string_equal(get(env, "BAETYL_MASTER_API_VERSION"), "v1");
    assert_string_equal(get(env, "BAETYL_SERVICE_MODE"), "native");
    assert_string_equal(get(env, "BAETYL_HOST_OS"), "linux");
    assert_string_equal(get(env, "BAETYL_HOST_ID"), "host-1");
    assert_string_equal(get(env, "BAETYL_HOST_SN"), "SN-9");
    env_free(env);
    app_service_free(&s.cfg);
    app_free(&app);
    unsetenv("BAETYL_SERVICE_TOKEN");
    unsetenv("OUTER");
}

static void test_dynamic_instance(void **state)
{
    master m;
    bt_engine e;
    m_service s;
    app_config app;
    fixture(&m, &e, &s, &app);
    m.api.is_unix = false;
    e.api_env = "tcp://127.0.0.1:50050";
    setenv("OPENEDGE_SERVICE_TOKEN", "inherited", 1);
    json_t *dyn =
        json_pack("{s:s,s:s,s:s,s:s}", "BAETYL_SERVICE_INSTANCE_ADDRESS", "127.0.0.1:4000", "FOO",
                  "dyn", "BAETYL_SERVICE_TOKEN", "forged", "BAETYL_SERVICE_NAME", "forged");
    char err[256];
    char **env = env_build(&m, &s, "svc.f.0", true, dyn, err, sizeof err);
    assert_non_null(env);
    assert_null(get(env, "BAETYL_SERVICE_TOKEN"));
    assert_null(get(env, "OPENEDGE_SERVICE_TOKEN"));
    assert_null(get(env, "BAETYL_MASTER_API_SOCKET"));
    assert_string_equal(get(env, "BAETYL_SERVICE_NAME"), "svc");
    assert_string_equal(get(env, "FOO"), "dyn");
    assert_string_equal(get(env, "BAETYL_SERVICE_INSTANCE_ADDRESS"), "127.0.0.1:4000");
    assert_string_equal(get(env, "OPENEDGE_SERVICE_INSTANCE_ADDRESS"), "127.0.0.1:4000");
    assert_string_equal(get(env, "BAETYL_MASTER_API_ADDRESS"), "tcp://127.0.0.1:50050");
    env_free(env);
    json_decref(dyn);
    app_service_free(&s.cfg);
    app_free(&app);
    unsetenv("OPENEDGE_SERVICE_TOKEN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_application_instance),
        cmocka_unit_test(test_dynamic_instance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
