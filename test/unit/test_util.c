/* The SDK's small helpers (baetyl/util.h): clock and deadlines, path cleaning (the guard
 * against volumes and archive entries escaping their root), Go-style durations, RFC 3339
 * times, files (mkdir -p, rm -rf never following a mounted volume, bounded reads, atomic
 * writes), UTF-8, ids and tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "baetyl/util.h"

static void test_clock_and_deadlines(void **state)
{
    (void)state;
    int64_t a = bt_now_ms(), an = bt_now_ns();
    usleep(20000);
    int64_t b = bt_now_ms(), bn = bt_now_ns();
    assert_true(b - a >= 19 && b - a < 5000);
    assert_true(bn - an >= 19000000);
    /* a deadline 1500 ms ahead, on the monotonic clock */
    struct timespec now, d = bt_deadline_in(1500);
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t diff = (int64_t)(d.tv_sec - now.tv_sec) * 1000 + (d.tv_nsec - now.tv_nsec) / 1000000;
    assert_true(diff > 1400 && diff <= 1500);
    assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
    d = bt_deadline_in(-5); /* the past counts as now */
    clock_gettime(CLOCK_MONOTONIC, &now);
    assert_true(d.tv_sec < now.tv_sec || (d.tv_sec == now.tv_sec && d.tv_nsec <= now.tv_nsec));
    assert_int_equal(bt_poll_timeout(1000, 2000, 60000), 0);
    assert_int_equal(bt_poll_timeout(1000, 1000, 60000), 0);
    assert_int_equal(bt_poll_timeout(1250, 1000, 60000), 250);
    assert_int_equal(bt_poll_timeout(INT64_MAX, 0, 60000), 60000);
    /* a monotonic condition variable times out at its deadline */
    pthread_cond_t cv;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    assert_int_equal(bt_cond_init_monotonic(&cv), 0);
    int64_t t0 = bt_now_ms();
    struct timespec until = bt_deadline_in(50);
    pthread_mutex_lock(&mu);
    int r;
    while ((r = pthread_cond_timedwait(&cv, &mu, &until)) == 0) {}
    pthread_mutex_unlock(&mu);
    assert_int_equal(r, ETIMEDOUT);
    assert_true(bt_now_ms() - t0 >= 49);
    pthread_cond_destroy(&cv);
}

static void test_clean_rel_path(void **state)
{
    struct {
        const char *in, *out;
    } ok[] = {
        {"a/b", "a/b"},
        {"a//b/./c/", "a/b/c"},
        {"/etc", "etc"},
        {"a/../b", "b"},
        {"var/db/baetyl/x/..", "var/db/baetyl"},
        {"./a", "a"},
        {"a/b/../../c", "c"},
    };
    char buf[64];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(bt_path_clean_rel(ok[i].in, buf, sizeof buf), 0);
        assert_string_equal(buf, ok[i].out);
    }
    const char *bad[] = {"",        ".",         "..",  "../etc", "../../etc",
                         "a/../..", "a/../../b", "/..", "./",     "//"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(bt_path_clean_rel(bad[i], buf, sizeof buf), -1);
    assert_int_equal(bt_path_clean_rel("abc", buf, 3), -1); /* no room */
}

static void test_fmt_duration(void **state)
{
    struct {
        int64_t ms;
        const char *s;
    } c[] = {
        {0, "0s"},           {1, "1ms"},     {200, "200ms"},   {1000, "1s"},
        {1500, "1.5s"},      {1600, "1.6s"}, {60000, "1m0s"},  {90000, "1m30s"},
        {3600000, "1h0m0s"}, {30000, "30s"}, {300000, "5m0s"}, {1234, "1.234s"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        bt_fmt_duration(c[i].ms, buf, sizeof buf);
        assert_string_equal(buf, c[i].s);
    }
}

static void test_fmt_time_utc(void **state)
{
    char buf[64];
    struct timespec ts = {.tv_sec = 1555603485, .tv_nsec = 920152000};
    bt_fmt_time_utc(&ts, buf, sizeof buf);
    assert_string_equal(buf, "2019-04-18T16:04:45.920152Z");
    ts.tv_nsec = 0;
    bt_fmt_time_utc(&ts, buf, sizeof buf);
    assert_string_equal(buf, "2019-04-18T16:04:45Z");
    ts.tv_nsec = 5;
    bt_fmt_time_utc(&ts, buf, sizeof buf);
    assert_string_equal(buf, "2019-04-18T16:04:45.000000005Z");
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
    char *vol = bt_strdup_printf("%s/volume", base),
         *svc = bt_strdup_printf("%s/svc/deep/er", base);
    char *file = bt_strdup_printf("%s/keep.txt", vol),
         *link = bt_strdup_printf("%s/svc/deep/er/vol", base);
    char *own = bt_strdup_printf("%s/svc/own.txt", base), *top = bt_strdup_printf("%s/svc", base);
    char err[256];
    assert_int_equal(bt_mkdir_p(vol, 0755, err, sizeof err), 0);
    assert_int_equal(bt_mkdir_p(svc, 0755, err, sizeof err), 0);
    touch(file, "precious");
    touch(own, "x");
    assert_int_equal(symlink(vol, link), 0);
    assert_int_equal(bt_rm_rf(top, err, sizeof err), 0);
    assert_false(bt_path_exists(top));
    assert_true(bt_path_exists(file));
    assert_int_equal(bt_rm_rf(top, err, sizeof err), 0); /* missing is fine */

    /* copy_file refuses what is too large, read_file what is not a regular file */
    char *copy = bt_strdup_printf("%s/copy.txt", base);
    assert_int_equal(bt_copy_file(file, copy, 100, err, sizeof err), 0);
    char *text = NULL;
    size_t n = 0;
    assert_int_equal(bt_read_file(copy, 100, &text, &n, err, sizeof err), 0);
    assert_string_equal(text, "precious");
    assert_int_equal(n, 8);
    free(text);
    assert_int_equal(bt_copy_file(file, copy, 4, err, sizeof err), -1);
    assert_non_null(strstr(err, "too large"));
    assert_int_equal(bt_read_file(vol, 100, &text, &n, err, sizeof err), -1);
    assert_int_equal(bt_read_file("/nonexistent/x", 100, &text, &n, err, sizeof err), -1);
    assert_string_equal(err, "open /nonexistent/x: No such file or directory");
    char *fifo = bt_strdup_printf("%s/fifo", base);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(bt_read_file(fifo, 100, &text, &n, err, sizeof err),
                     -1); /* at once, no writer */
    assert_non_null(strstr(err, "not a regular file"));
    free(fifo);

    assert_int_equal(bt_rm_rf(base, err, sizeof err), 0);
    free(vol);
    free(svc);
    free(file);
    free(link);
    free(own);
    free(top);
    free(copy);
}

static void test_mkdir_and_atomic_write(void **state)
{
    (void)state;
    char base[] = "/tmp/bt-util-XXXXXX";
    assert_non_null(mkdtemp(base));
    char err[256];
    char *deep = bt_strdup_printf("%s/a/b/c", base), *file = bt_strdup_printf("%s/a/file", base);
    assert_int_equal(bt_mkdir_p(deep, 0755, err, sizeof err), 0);
    assert_int_equal(bt_mkdir_p(deep, 0755, err, sizeof err), 0); /* exists: fine */
    assert_int_equal(bt_mkdir_p("", 0755, err, sizeof err), -1);
    touch(file, "x");
    char *under = bt_strdup_printf("%s/below", file);
    assert_int_equal(bt_mkdir_p(under, 0755, err, sizeof err), -1); /* a file in the way */
    assert_non_null(strstr(err, under));
    assert_int_equal(bt_mkdir_p(file, 0755, err, sizeof err), -1);
    assert_non_null(strstr(err, "Not a directory"));
    char *log = bt_strdup_printf("%s/x/y/z.log", base), *xy = bt_strdup_printf("%s/x/y", base);
    assert_int_equal(bt_mkdir_parents(log, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(stat(xy, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_false(bt_path_exists(log)); /* only the parents */
    assert_int_equal(bt_mkdir_parents("plain.log", err, sizeof err), 0);

    /* atomic write: the mode asked for, even over an older .tmp with another mode */
    char *out = bt_strdup_printf("%s/app.yml", base),
         *tmp = bt_strdup_printf("%s/app.yml.tmp", base);
    touch(tmp, "stale");
    assert_int_equal(chmod(tmp, 0644), 0);
    assert_int_equal(bt_write_file_atomic(out, "v: 1\n", 5, 0600, err, sizeof err), 0);
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_false(bt_path_exists(tmp));
    char *text = NULL;
    assert_int_equal(bt_read_file(out, 5, &text, NULL, err, sizeof err), 0);
    assert_string_equal(text, "v: 1\n");
    free(text);
    assert_true(bt_is_regular_file(out));
    assert_false(bt_is_regular_file(base));
    assert_int_equal(bt_rm_rf(base, err, sizeof err), 0);
    free(deep), free(file), free(under), free(log), free(xy), free(out), free(tmp);
}

static void test_clean_inside_and_join(void **state)
{
    (void)state;
    struct {
        const char *in, *out;
    } ok[] = {{"a/b", "a/b"}, {"./a//b/", "a/b"},   {"a/./b/.", "a/b"}, {".", ""},
              {"", ""},       {"a..b/c", "a..b/c"}, {"...", "..."}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *c = bt_path_clean_inside(ok[i].in);
        assert_non_null(c);
        assert_string_equal(c, ok[i].out);
        free(c);
    }
    const char *bad[] = {"/etc", "..", "../x", "a/../b", "a/..", "a/b/../../.."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(bt_path_clean_inside(bad[i]));
    assert_null(bt_path_clean_inside(NULL));
    char *j = bt_path_join("/w", "var/db");
    assert_string_equal(j, "/w/var/db");
    free(j);
    j = bt_path_join("/w/", "x");
    assert_string_equal(j, "/w/x");
    free(j);
    j = bt_path_join("/w", "/abs");
    assert_string_equal(j, "/abs");
    free(j);
}

static void test_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t n, len;
        uint32_t cp;
    } dec[] = {
        {"A", 1, 1, 'A'},
        {"\0", 1, 1, 0},
        {"\xc2\x80", 2, 2, 0x80},
        {"\xdf\xbf", 2, 2, 0x7FF},
        {"\xe0\xa0\x80", 3, 3, 0x800},
        {"\xed\x9f\xbf", 3, 3, 0xD7FF},
        {"\xef\xbf\xbf", 3, 3, 0xFFFF},
        {"\xf0\x90\x80\x80", 4, 4, 0x10000},
        {"\xf4\x8f\xbf\xbf", 4, 4, 0x10FFFF},
        {"\x80", 1, 0, 0xFFFD},
        {"\xc1\xbf", 2, 0, 0xFFFD}, /* overlong */
        {"\xe0\x9f\xbf", 3, 0, 0xFFFD},
        {"\xed\xa0\x80", 3, 0, 0xFFFD}, /* surrogate */
        {"\xf4\x90\x80\x80", 4, 0, 0xFFFD},
        {"\xf5\x80\x80\x80", 4, 0, 0xFFFD},
        {"\xe2\x82", 2, 0, 0xFFFD},
        {"\xe2\x28\xa1", 3, 0, 0xFFFD},
    };
    for (size_t i = 0; i < sizeof dec / sizeof dec[0]; i++) {
        uint32_t cp = 1;
        size_t l = bt_utf8_decode((const uint8_t *)dec[i].s, dec[i].n, &cp);
        if (l != dec[i].len || cp != dec[i].cp)
            fail_msg("decode case %zu: got len %zu cp %x", i, l, (unsigned)cp);
    }
    assert_int_equal(bt_utf8_valid_prefix("ab\xe4\xbd\xa0\xff!", 7), 5);
    assert_true(bt_utf8_valid("\xe4\xbd\xa0\xe5\xa5\xbd", 6));
    assert_true(bt_utf8_valid("a\0b", 3)); /* U+0000 is UTF-8; MQTT refuses it on its own */
    assert_false(bt_utf8_valid("\xe4\xbd", 2));
    assert_true(bt_utf8_valid("", 0));
}

static void test_ids_and_text(void **state)
{
    (void)state;
    char a[37], b[37];
    bt_uuid4(a);
    bt_uuid4(b);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(a[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", a[i]));
    }
    assert_int_equal(a[14], '4');           /* version 4 */
    assert_non_null(strchr("89ab", a[19])); /* variant 10 */
    char big[200];
    assert_int_equal(bt_random_hex(big, 65), -1); /* more than it promises */
    char *s = bt_strdup_printf("%s-%d", "x", 42);
    assert_string_equal(s, "x-42");
    free(s);
    char t[] = " \t a b \r\n";
    assert_string_equal(bt_str_trim(t), "a b");
    char e[] = "   ";
    assert_string_equal(bt_str_trim(e), "");
}

static void test_tokens(void **state)
{
    char t1[65], t2[65];
    assert_int_equal(bt_random_hex(t1, 32), 0);
    assert_int_equal(bt_random_hex(t2, 32), 0);
    assert_int_equal(strlen(t1), 64);
    assert_string_not_equal(t1, t2);
    assert_true(bt_secure_streq(t1, t1));
    assert_false(bt_secure_streq(t1, t2));
    assert_false(bt_secure_streq("abc", "abcd"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clock_and_deadlines),
        cmocka_unit_test(test_clean_rel_path),
        cmocka_unit_test(test_clean_inside_and_join),
        cmocka_unit_test(test_fmt_duration),
        cmocka_unit_test(test_fmt_time_utc),
        cmocka_unit_test(test_rm_rf_keeps_link_targets),
        cmocka_unit_test(test_mkdir_and_atomic_write),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_ids_and_text),
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
