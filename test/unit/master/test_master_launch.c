/* An instance may report to the master API before the engine's start_instance has returned
 * (a swarm service's task runs, and its module reports, before the service is confirmed):
 * the report is kept, not refused as "instance not found". The engine is a fake whose start
 * makes that report itself, the master around it is the real one. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../master/master.h"
#include "baetyl/util.h"

static struct {
    master *m;
    int starts, early_ok;
    char err[256];
} F;

static int f_start_service(bt_engine *e, const app_config *app, const app_service *svc,
                           void **state, char *err, size_t errlen)
{
    (void)e, (void)app, (void)svc, (void)err, (void)errlen;
    *state = NULL;
    return 0;
}

static void f_stop_service(bt_engine *e, void *state)
{
    (void)e, (void)state;
}

static int f_start_instance(bt_engine *e, void *state, const char *instance, char *const env[],
                            eng_instance *out, char *err, size_t errlen)
{
    (void)e, (void)state, (void)env, (void)err, (void)errlen;
    json_t *o = json_pack("{s:s}", "early", instance);
    F.starts++;
    if (master_instance_report(F.m, "svc", instance, o, F.err, sizeof F.err) == 0)
        F.early_ok++;
    json_decref(o);
    memset(out, 0, sizeof *out);
    out->wait_fd = out->log_fd = -1;
    snprintf(out->id, sizeof out->id, "fake-%s", instance);
    return 0;
}

/* Runs until signalled. */
static int f_wait_instance(bt_engine *e, eng_instance *inst, int timeout_ms, int wake_fd, int *code)
{
    (void)e;
    if (!inst->stop_requested) {
        struct pollfd p = {wake_fd, POLLIN, 0};
        poll(&p, wake_fd >= 0 ? 1 : 0, timeout_ms < 0 && wake_fd < 0 ? 0 : timeout_ms);
    }
    *code = 0;
    return inst->stop_requested ? 1 : 0;
}

static int f_signal_instance(bt_engine *e, eng_instance *inst, bool force)
{
    (void)e, (void)force;
    inst->stop_requested = true;
    return 0;
}

static void f_destroy(bt_engine *e)
{
    free(e);
}

static const engine_ops fake_ops = {.name = "native",
                                    .start_service = f_start_service,
                                    .stop_service = f_stop_service,
                                    .start_instance = f_start_instance,
                                    .wait_instance = f_wait_instance,
                                    .signal_instance = f_signal_instance,
                                    .destroy = f_destroy};

static m_instance *listed(master *m, const char *svc, const char *inst)
{
    for (m_service *s = m->services; s; s = s->next)
        for (m_instance *i = strcmp(s->name, svc) == 0 ? s->instances : NULL; i; i = i->next)
            if (strcmp(i->name, inst) == 0)
                return i;
    return NULL;
}

static void test_report_while_starting_is_kept(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_master_launch.XXXXXX", cwd[4096], err[512];
    assert_non_null(mkdtemp(dir));
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0); /* the master writes its stats under its work dir */
    assert_int_equal(bt_mkdir_p("var/db/baetyl", 0700, err, sizeof err), 0);

    master m;
    master_conf conf;
    memset(&conf, 0, sizeof conf);
    bt_api_addr api;
    memset(&api, 0, sizeof api);
    api.is_unix = true;
    api.path = strdup("/nonexistent/b.sock");
    bt_engine *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->ops = &fake_ops;
    e->api_env = "unix:///nonexistent/b.sock";
    assert_int_equal(master_init(&m, dir, &conf, &api, e, err, sizeof err), 0);
    F.m = &m;

    app_config app;
    const char *text = "services:\n  - name: svc\n    image: x\n    replica: 2\n";
    assert_int_equal(app_load_string(text, strlen(text), &app, err, sizeof err), 0);
    assert_int_equal(master_start_app(&m, &app, err, sizeof err), 0);

    assert_int_equal(F.starts, 2);
    if (F.early_ok != 2)
        fail_msg("a report during the start was refused: %s", F.err);
    /* Kept with the instance once it is listed. */
    m_instance *a = listed(&m, "svc", "svc"), *b = listed(&m, "svc", "svc.i1");
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(a->reported, "early")), "svc");
    assert_string_equal(json_string_value(json_object_get(b->reported, "early")), "svc.i1");
    /* An instance that is neither listed nor starting is still unknown. */
    json_t *o = json_object();
    assert_int_equal(master_instance_report(&m, "svc", "svc.i9", o, err, sizeof err), -1);
    assert_non_null(strstr(err, "not found"));
    json_decref(o);

    master_stop_changed(&m, NULL, NULL);
    assert_null(m.services);
    master_destroy(&m);
    app_free(&app);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(bt_rm_rf(dir, err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_while_starting_is_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
