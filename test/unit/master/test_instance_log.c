/* Native instances' output files (master/instance_log.c): the tail of lines the logs API
 * returns, text that is not UTF-8, the cap with its one older file, a new run; the kept
 * output of ended containers and swarm services. */
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

#include "baetyl/util.h"
#include "../../../master/instance_log.h"

static char *tail_of(const char *text, int n)
{
    json_t *arr = json_array();
    ilog_lines_tail(text, strlen(text), n, arr);
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

static void expect_tail(const char *text, int n, const char *want)
{
    char *got = tail_of(text, n);
    assert_string_equal(got, want);
    free(got);
}

static void test_lines_tail(void **state)
{
    expect_tail("a\nb\nc\n", 2, "[\"b\",\"c\"]");
    expect_tail("a\nb\nc", 2, "[\"b\",\"c\"]"); /* a partial last line counts */
    expect_tail("a\nb\nc\n", 10, "[\"a\",\"b\",\"c\"]");
    expect_tail("a\n\nc\n", 2, "[\"\",\"c\"]");
    expect_tail("a\r\nb\r\n", 5, "[\"a\",\"b\"]");
    expect_tail("only", 1, "[\"only\"]");
    expect_tail("a\nb\n", 0, "[]");
    expect_tail("", 3, "[]");
    /* ill-formed UTF-8 and NUL become U+FFFD */
    json_t *arr = json_array();
    ilog_lines_tail("x\xff\x00y\n", 5, 1, arr);
    assert_string_equal(json_string_value(json_array_get(arr, 0)), "x\xef\xbf\xbd\xef\xbf\xbdy");
    json_decref(arr);
    /* a line is cut at ILOG_LINE_MAX bytes */
    char *big = malloc(ILOG_LINE_MAX * 2 + 2);
    memset(big, 'z', ILOG_LINE_MAX * 2);
    strcpy(big + ILOG_LINE_MAX * 2, "\n");
    arr = json_array();
    ilog_lines_tail(big, strlen(big), 1, arr);
    assert_int_equal(json_string_length(json_array_get(arr, 0)), ILOG_LINE_MAX);
    json_decref(arr);
    free(big);
}

static void test_file_cap_and_runs(void **state)
{
    char dir[] = "/tmp/ilogXXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = ilog_path(dir, "svc", "inst"), err[256];
    char *old = bt_strdup_printf("%s.1", path);
    int fd = ilog_open_new(path, err, sizeof err);
    assert_true(fd >= 0);
    char line[100];
    for (int i = 0; i < 3000; i++) { /* ~30 KB */
        int n = snprintf(line, sizeof line, "line %d\n", i);
        assert_int_equal(write(fd, line, (size_t)n), n);
    }
    ilog_check(fd, path, 1 << 20); /* under the cap: nothing moves */
    assert_int_not_equal(access(old, F_OK), 0);
    ilog_check(fd, path, 10000); /* over: the last half goes to .1, the file starts over */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(stat(old, &st), 0);
    assert_true(st.st_size <= 5000 && st.st_size > 4000);
    assert_int_equal(write(fd, "after\n", 6), 6); /* O_APPEND: at the new end */
    json_t *arr = json_array();
    assert_int_equal(ilog_tail(path, 2, arr), 0); /* reaches into .1 for the rest */
    assert_string_equal(json_string_value(json_array_get(arr, 0)), "line 2999");
    assert_string_equal(json_string_value(json_array_get(arr, 1)), "after");
    json_decref(arr);
    close(fd);
    /* a new run: the previous one becomes .1 */
    fd = ilog_open_new(path, err, sizeof err);
    assert_true(fd >= 0);
    arr = json_array();
    assert_int_equal(ilog_tail(path, 1, arr), 0);
    assert_string_equal(json_string_value(json_array_get(arr, 0)), "after");
    json_decref(arr);
    close(fd);
    /* nothing at all */
    char *none = ilog_path(dir, "svc", "none");
    arr = json_array();
    assert_int_equal(ilog_tail(none, 1, arr), -1);
    json_decref(arr);
    free(none);
    assert_int_equal(bt_rm_rf(dir, err, sizeof err), 0);
    free(path);
    free(old);
}

static void test_kept_output(void **state)
{
    (void)state;
    json_t *kept = NULL, *arr = json_array();
    assert_int_equal(ilog_kept_tail(kept, "a", 5, arr), 1); /* nothing kept yet */
    ilog_keep(&kept, "a", json_pack("[s,s,s]", "1", "2", "3"), 2);
    ilog_keep(&kept, "b", json_pack("[s]", "x"), 2);
    assert_int_equal(ilog_kept_tail(kept, "a", 2, arr), 0);
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(json_string_value(json_array_get(arr, 0)), "2");
    ilog_keep(&kept, "b", json_pack("[s]", "y"), 2); /* a new run of b replaces its lines */
    ilog_keep(&kept, "c", json_pack("[]"), 2);       /* past 2 keys: the oldest (a) goes */
    json_array_clear(arr);
    assert_int_equal(ilog_kept_tail(kept, "a", 5, arr), 1);
    assert_int_equal(ilog_kept_tail(kept, "b", 5, arr), 0);
    assert_string_equal(json_string_value(json_array_get(arr, 0)), "y");
    assert_int_equal(json_object_size(kept), 2);
    json_decref(kept);
    json_decref(arr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_tail),
        cmocka_unit_test(test_file_cap_and_runs),
        cmocka_unit_test(test_kept_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
