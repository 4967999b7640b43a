/* Topic validation, filter matching and permit checks (SPEC §11 Topics, Authorisation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "baetyl/topic.h"

static bool name_ok(const char *s)
{
    return bt_topic_valid_name(s, strlen(s));
}
static bool filter_ok(const char *s)
{
    return bt_topic_valid_filter(s, strlen(s));
}

static void test_valid_plain(void **state)
{
    (void)state;
    const char *good[] = {"a",   "a/b", "a/b/c",   "/", "/a", "a/", "a//c", "sport/tennis/player1",
                          "a b", "é/ü", "a.b-c_d", NULL};
    for (int i = 0; good[i]; i++) {
        assert_true(name_ok(good[i]));
        assert_true(filter_ok(good[i]));
    }
}

static void test_empty_and_null(void **state)
{
    (void)state;
    assert_false(name_ok(""));
    assert_false(filter_ok(""));
    assert_false(bt_topic_valid_name(NULL, 3));
    assert_false(bt_topic_valid_filter(NULL, 3));
}

static void test_dollar_refused(void **state)
{
    (void)state;
    assert_false(name_ok("$SYS/broker"));
    assert_false(filter_ok("$SYS/#"));
    assert_false(name_ok("$"));
    /* '$' elsewhere is an ordinary character. */
    assert_true(name_ok("a/$b"));
    assert_true(filter_ok("a/$b/+"));
}

static void test_nul_inside(void **state)
{
    (void)state;
    assert_false(bt_topic_valid_name("a\0b", 3));
    assert_false(bt_topic_valid_filter("a/\0", 3));
    assert_false(bt_topic_valid_name("\0", 1));
    /* The length given is what counts, not a terminator further on. */
    assert_true(bt_topic_valid_name("ab\0", 2));
}

static void test_wildcards_in_names(void **state)
{
    (void)state;
    assert_false(name_ok("a/+"));
    assert_false(name_ok("#"));
    assert_false(name_ok("a/#"));
    assert_false(name_ok("+"));
    assert_false(name_ok("a+b"));
}

static void test_wildcards_in_filters(void **state)
{
    (void)state;
    const char *good[] = {"#",   "+",  "a/#", "a/+", "+/b",   "+/+", "a/+/c",
                          "+/#", "/#", "/+",  "+/",  "a/+/#", NULL};
    for (int i = 0; good[i]; i++)
        assert_true(filter_ok(good[i]));
    const char *bad[] = {"a/b#", "a/#/b", "a+",  "+a", "a/+b", "a/b+/c", "##",
                         "++",   "#/",    "#/a", "a#", "a/#b", NULL};
    for (int i = 0; bad[i]; i++) {
        assert_false(filter_ok(bad[i]));
        assert_false(name_ok(bad[i]));
    }
}

static void test_separator_limit(void **state)
{
    (void)state;
    assert_true(name_ok("a/b/c/d/e/f/g/h/i"));    /* 8 separators */
    assert_false(name_ok("a/b/c/d/e/f/g/h/i/j")); /* 9 */
    assert_true(filter_ok("+/+/+/+/+/+/+/+/#"));
    assert_false(filter_ok("+/+/+/+/+/+/+/+/+/#"));
    assert_true(name_ok("////////"));
    assert_false(name_ok("/////////"));
}

static void test_length_limit(void **state)
{
    (void)state;
    char buf[300];
    memset(buf, 'x', sizeof buf);
    assert_true(bt_topic_valid_name(buf, 255));
    assert_false(bt_topic_valid_name(buf, 256));
    buf[253] = '/';
    buf[254] = '#';
    assert_true(bt_topic_valid_filter(buf, 255));
    memset(buf, 'x', sizeof buf);
    buf[254] = '/';
    buf[255] = '#';
    assert_false(bt_topic_valid_filter(buf, 256)); /* valid but for its length */
    assert_true(bt_topic_valid_filter(buf + 1, 255));
}

static void test_match(void **state)
{
    (void)state;
    struct {
        const char *f, *n;
        bool m;
    } cases[] = {
        {"a/b", "a/b", true},
        {"a/b", "a/c", false},
        {"a/b", "a", false},
        {"a", "a/b", false},
        {"a/b", "a/bc", false},
        {"a/bc", "a/b", false},
        {"a/#", "a", true},
        {"a/#", "a/b", true},
        {"a/#", "a/b/c", true},
        {"a/#", "a/", true},
        {"a/#", "ab", false},
        {"a/#", "b", false},
        {"#", "a", true},
        {"#", "a/b/c", true},
        {"#", "/", true},
        {"+", "a", true},
        {"+", "a/b", false},
        {"+", "/", false},
        {"a/+/c", "a/b/c", true},
        {"a/+/c", "a//c", true},
        {"a/+/c", "a/b/d/c", false},
        {"a/+/c", "a/b", false},
        {"a/+", "a/", true},
        {"a/+", "a", false},
        {"a/+", "a/b/c", false},
        {"+/+", "/", true},
        {"+/+", "a/b", true},
        {"+/+", "a", false},
        {"+/b", "x/b", true},
        {"+/b", "/b", true},
        {"+/#", "a", true},
        {"+/#", "a/b/c", true},
        {"/#", "/a", true},
        {"/#", "a", false},
        {"a/+/#", "a/b", true},
        {"a/+/#", "a", false},
        /* MQTT 4.7.2: first-level wildcards do not match '$' topics. */
        {"#", "$SYS/x", false},
        {"+/x", "$SYS/x", false},
        {"$SYS/#", "$SYS/x", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (bt_topic_match(cases[i].f, cases[i].n) != cases[i].m)
            fail_msg("match(%s, %s) should be %d", cases[i].f, cases[i].n, cases[i].m);
    }
    assert_false(bt_topic_match(NULL, "a"));
    assert_false(bt_topic_match("a", NULL));
}

static void test_permit(void **state)
{
    (void)state;
    struct {
        const char *p, *t;
        bool ok;
    } cases[] = {
        {"test/#", "test/+", true},
        {"test/#", "test/#", true},
        {"test/#", "test/a/b", true},
        {"test/#", "test", true},
        {"test/#", "other/+", false},
        {"test/a", "test/+", false},
        {"test/a", "test/#", false},
        {"test/a", "test/a", true},
        {"test/a", "test/b", false},
        {"test/+", "test/+", true},
        {"test/+", "test/a", true},
        {"test/+", "test/#", false},
        {"test/+", "test/a/b", false},
        {"test/+", "test", false},
        {"+/b", "x/b", true},
        {"+/b", "+/b", true},
        {"+/b", "x/c", false},
        {"+/b", "#", false},
        {"+/+", "+/+", true},
        {"+/#", "+/#", true},
        {"+/#", "#", false},
        {"#", "a", true},
        {"#", "+", true},
        {"#", "#", true},
        {"#", "a/+/c/#", true},
        {"a/+/c", "a//c", true},
        {"a/b/c", "a/b", false},
        {"a/b", "a/b/c", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (bt_topic_permit(cases[i].p, cases[i].t) != cases[i].ok)
            fail_msg("permit(%s, %s) should be %d", cases[i].p, cases[i].t, cases[i].ok);
    }
    assert_false(bt_topic_permit(NULL, "a"));
    assert_false(bt_topic_permit("#", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_plain),
        cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_dollar_refused),
        cmocka_unit_test(test_nul_inside),
        cmocka_unit_test(test_wildcards_in_names),
        cmocka_unit_test(test_wildcards_in_filters),
        cmocka_unit_test(test_separator_limit),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_permit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
