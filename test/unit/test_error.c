/* bt_errf / bt_verrf (baetyl/error.h): the error text of every `char *err, size_t errlen`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "baetyl/error.h"

static int wrapped(int code, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int wrapped(int code, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bt_verrf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

static void test_errf(void **state)
{
    (void)state;
    char err[32] = "old";
    assert_int_equal(bt_errf(err, sizeof err, "open %s: %d", "x.yml", 2), -1);
    assert_string_equal(err, "open x.yml: 2");
    /* cut to the buffer, always terminated */
    assert_int_equal(bt_errf(err, 8, "%s", "a long long reason"), -1);
    assert_string_equal(err, "a long ");
    /* no buffer: nothing written, still -1 */
    assert_int_equal(bt_errf(NULL, 0, "x %d", 1), -1);
    strcpy(err, "kept");
    assert_int_equal(bt_errf(err, 0, "x %d", 1), -1);
    assert_string_equal(err, "kept");
}

static void test_verrf(void **state)
{
    (void)state;
    char err[32];
    assert_int_equal(wrapped(-7, err, sizeof err, "code %d", 7), -7);
    assert_string_equal(err, "code 7");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errf),
        cmocka_unit_test(test_verrf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
