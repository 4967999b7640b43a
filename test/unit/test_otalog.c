/* ota.log lines (baetyl/otalog.h): written by the master and the agent alike, read back from
 * the end of the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "baetyl/otalog.h"

static char dir[] = "/tmp/bt-otalog-XXXXXX";
static char path[256];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/bt-otalog-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/a/b/ota.log", dir); /* its directories do not exist yet */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *read_all(const char *p)
{
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void test_lines(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(
        bt_otalog_write(path, "t1", NULL, "UPDATING", "app is updating", NULL, err, sizeof err), 0);
    assert_int_equal(
        bt_otalog_write(path, NULL, "MST", "FAILURE", "failed", "it \"broke\"", err, sizeof err),
        0);
    char *text = read_all(path);
    char *nl = strchr(text, '\n');
    assert_non_null(nl);
    *nl = '\0';
    /* keys sorted, compact, level from the error, type APP by default */
    assert_non_null(strstr(text, "{\"level\":\"info\",\"msg\":\"app is updating\",\"step\":"
                                 "\"UPDATING\",\"time\":\""));
    assert_non_null(strstr(text, "\",\"trace\":\"t1\",\"type\":\"APP\"}"));
    json_t *second = json_loads(nl + 1, 0, NULL);
    assert_non_null(second);
    assert_string_equal(json_string_value(json_object_get(second, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(second, "error")), "it \"broke\"");
    assert_string_equal(json_string_value(json_object_get(second, "trace")), "");
    assert_string_equal(json_string_value(json_object_get(second, "type")), "MST");
    /* local RFC 3339 time with its offset, to the second */
    const char *t = json_string_value(json_object_get(second, "time"));
    assert_non_null(t);
    assert_true(strlen(t) == 20 || strlen(t) == 25);
    assert_int_equal(t[10], 'T');
    json_decref(second);

    /* the last line has no trace: none */
    assert_null(bt_otalog_last_trace(path));
    assert_int_equal(
        bt_otalog_write(path, "t2", NULL, "UPDATED", "app is updated", NULL, err, sizeof err), 0);
    char *tr = bt_otalog_last_trace(path);
    assert_string_equal(tr, "t2");
    free(tr);
}

static void test_errors(void **state)
{
    (void)state;
    char err[256] = "";
    assert_int_equal(bt_otalog_write(dir, "t", NULL, "UPDATING", "m", NULL, err, sizeof err), -1);
    char want[300];
    snprintf(want, sizeof want, "open %s: Is a directory", dir);
    assert_string_equal(err, want);
    size_t len = 7;
    assert_null(bt_otalog_tail(dir, &len)); /* not a regular file */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.log", dir);
    assert_null(bt_otalog_tail(missing, &len));
    assert_null(bt_otalog_last_trace(missing));
}

static void test_tail_of_a_long_file(void **state)
{
    (void)state;
    /* more than BT_OTALOG_TAIL_MAX bytes: only whole lines of the end are read */
    char longlog[300];
    snprintf(longlog, sizeof longlog, "%s/long.log", dir);
    FILE *f = fopen(longlog, "w");
    assert_non_null(f);
    char line[100];
    size_t total = 0;
    for (int i = 0; total <= BT_OTALOG_TAIL_MAX + 1000; i++) {
        int n = snprintf(line, sizeof line, "{\"trace\":\"t%d\",\"step\":\"UPDATING\"}\n", i);
        fputs(line, f);
        total += (size_t)n;
    }
    fputs("{\"trace\":\"last\",\"step\":\"UPDATED\"}\r\n\n", f);
    fclose(f);
    size_t len = 0;
    char *text = bt_otalog_tail(longlog, &len);
    assert_non_null(text);
    assert_true(len <= BT_OTALOG_TAIL_MAX);
    assert_int_equal(strlen(text), len);
    assert_int_equal(text[0], '{'); /* starts at a line */
    free(text);
    char *tr = bt_otalog_last_trace(longlog);
    assert_string_equal(tr, "last");
    free(tr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail_of_a_long_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
