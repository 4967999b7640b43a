/* The master's small helpers: path cleaning (the guard against volumes escaping the work
 * dir), Go-style durations, RFC 3339 times, rm_rf never following a mounted volume. */
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

#include "../../../master/util.h"

static void test_clean_rel_path(void **state)
{
    struct {
        const char *in, *out;
    } ok[] = {
        {"a/b", "a/b"}, {"a//b/./c/", "a/b/c"}, {"/etc", "etc"}, {"a/../b", "b"},
        {"var/db/baetyl/x/..", "var/db/baetyl"}, {"./a", "a"}, {"a/b/../../c", "c"},
    };
    char buf[64];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(clean_rel_path(ok[i].in, buf, sizeof buf), 0);
        assert_string_equal(buf, ok[i].out);
    }
    const char *bad[] = {"", ".", "..", "../etc", "../../etc", "a/../..", "a/../../b", "/..", "./", "//"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(clean_rel_path(bad[i], buf, sizeof buf), -1);
    assert_int_equal(clean_rel_path("abc", buf, 3), -1); /* no room */
}

static void test_fmt_duration(void **state)
{
    struct {
        int64_t ms;
        const char *s;
    } c[] = {
        {0, "0s"}, {1, "1ms"}, {200, "200ms"}, {1000, "1s"}, {1500, "1.5s"}, {1600, "1.6s"},
        {60000, "1m0s"}, {90000, "1m30s"}, {3600000, "1h0m0s"}, {30000, "30s"}, {300000, "5m0s"},
        {1234, "1.234s"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        fmt_duration(c[i].ms, buf, sizeof buf);
        assert_string_equal(buf, c[i].s);
    }
}

static void test_fmt_time_utc(void **state)
{
    char buf[64];
    struct timespec ts = {.tv_sec = 1555603485, .tv_nsec = 920152000};
    fmt_time_utc(&ts, buf, sizeof buf);
    assert_string_equal(buf, "2019-04-18T16:04:45.920152Z");
    ts.tv_nsec = 0;
    fmt_time_utc(&ts, buf, sizeof buf);
    assert_string_equal(buf, "2019-04-18T16:04:45Z");
    ts.tv_nsec = 5;
    fmt_time_utc(&ts, buf, sizeof buf);
    assert_string_equal(buf, "2019-04-18T16:04:45.000000005Z");
}

static void test_names_and_tokens(void **state)
{
    assert_true(valid_instance_name("function-python.sayhi.0"));
    assert_true(valid_instance_name("a"));
    assert_false(valid_instance_name(""));
    assert_false(valid_instance_name("..x"));
    assert_false(valid_instance_name("-x"));
    assert_false(valid_instance_name("a/b"));
    assert_false(valid_instance_name("a b"));
    char long_name[200];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_false(valid_instance_name(long_name));

    char t1[65], t2[65];
    assert_int_equal(random_hex(t1, 32), 0);
    assert_int_equal(random_hex(t2, 32), 0);
    assert_int_equal(strlen(t1), 64);
    assert_string_not_equal(t1, t2);
    assert_true(secure_streq(t1, t1));
    assert_false(secure_streq(t1, t2));
    assert_false(secure_streq("abc", "abcd"));
}

static void touch(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_rm_rf_keeps_link_targets(void **state)
{
    char base[] = "/tmp/bt-util-XXXXXX";
    assert_non_null(mkdtemp(base));
    char *vol = str_printf("%s/volume", base), *svc = str_printf("%s/svc/deep/er", base);
    char *file = str_printf("%s/keep.txt", vol), *link = str_printf("%s/svc/deep/er/vol", base);
    char *own = str_printf("%s/svc/own.txt", base), *top = str_printf("%s/svc", base);
    char err[256];
    assert_int_equal(mkdir_p(vol, 0755, err, sizeof err), 0);
    assert_int_equal(mkdir_p(svc, 0755, err, sizeof err), 0);
    touch(file, "precious");
    touch(own, "x");
    assert_int_equal(symlink(vol, link), 0);
    assert_int_equal(rm_rf(top, err, sizeof err), 0);
    assert_false(path_exists(top));
    assert_true(path_exists(file));
    assert_int_equal(rm_rf(top, err, sizeof err), 0); /* missing is fine */

    /* copy_file refuses what is too large, read_file what is not a regular file */
    char *copy = str_printf("%s/copy.txt", base);
    assert_int_equal(copy_file(file, copy, 100, err, sizeof err), 0);
    char *text = NULL;
    size_t n = 0;
    assert_int_equal(read_file(copy, 100, &text, &n, err, sizeof err), 0);
    assert_string_equal(text, "precious");
    assert_int_equal(n, 8);
    free(text);
    assert_int_equal(copy_file(file, copy, 4, err, sizeof err), -1);
    assert_non_null(strstr(err, "too large"));
    assert_int_equal(read_file(vol, 100, &text, &n, err, sizeof err), -1);
    assert_int_equal(read_file("/nonexistent/x", 100, &text, &n, err, sizeof err), -1);
    assert_string_equal(err, "open /nonexistent/x: No such file or directory");
    char *fifo = str_printf("%s/fifo", base);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(read_file(fifo, 100, &text, &n, err, sizeof err), -1); /* at once, no writer */
    assert_non_null(strstr(err, "not a regular file"));
    free(fifo);

    assert_int_equal(rm_rf(base, err, sizeof err), 0);
    free(vol);
    free(svc);
    free(file);
    free(link);
    free(own);
    free(top);
    free(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_rel_path),
        cmocka_unit_test(test_fmt_duration),
        cmocka_unit_test(test_fmt_time_utc),
        cmocka_unit_test(test_names_and_tokens),
        cmocka_unit_test(test_rm_rf_keeps_link_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
