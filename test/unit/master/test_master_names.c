/* The master's instance-name rule (the general helpers are tested in test/unit/test_util.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "baetyl/util.h"
#include "../../../master/names.h"

static void test_names(void **state)
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
