/* JSON helpers: parse errors with a position, compact dump, dotted-path lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "baetyl/json.h"

static json_t *parse(const char *s)
{
    char err[160] = "";
    json_t *v = bt_json_parse(s, strlen(s), err, sizeof err);
    if (!v)
        fail_msg("parse %s: %s", s, err);
    return v;
}

static void test_parse_and_errors(void **state)
{
    (void)state;
    char err[160] = "";
    json_t *v = bt_json_parse("{\"a\": [1, 2}", 12, err, sizeof err);
    assert_null(v);
    assert_non_null(strstr(err, "line 1 column"));

    /* Only len bytes count: the rest of the buffer is not read. */
    v = bt_json_parse("[1]garbage", 3, err, sizeof err);
    assert_non_null(v);
    assert_int_equal(json_array_size(v), 1);
    json_decref(v);

    v = bt_json_parse("\"a\\u0000b\"", 10, err, sizeof err); /* NUL inside a string */
    assert_non_null(v);
    assert_int_equal(json_string_length(v), 3);
    json_decref(v);

    v = bt_json_parse("42", 2, err, sizeof err); /* any value */
    assert_int_equal(json_integer_value(v), 42);
    json_decref(v);

    assert_null(bt_json_parse_object("[1]", 3, err, sizeof err));
    assert_string_equal(err, "not a JSON object");
    assert_null(bt_json_parse_object("", 0, err, sizeof err));
    assert_null(bt_json_parse(NULL, 0, err, sizeof err));
    assert_null(bt_json_parse("\xff", 1, err, sizeof err)); /* invalid UTF-8 */
    v = bt_json_parse_object("{}", 2, err, sizeof err);
    assert_true(json_is_object(v));
    json_decref(v);
}

static void test_dump_compact_in_order(void **state)
{
    (void)state;
    json_t *v = parse("{ \"z\" : 1, \"a\" : [true, null, \"s\"], \"m\": {\"k\": 1.5} }");
    char *s = bt_json_dump(v);
    assert_string_equal(s, "{\"z\":1,\"a\":[true,null,\"s\"],\"m\":{\"k\":1.5}}");
    free(s);
    json_decref(v);
    json_t *str = json_string("x");
    s = bt_json_dump(str); /* a bare value is fine */
    assert_string_equal(s, "\"x\"");
    free(s);
    json_decref(str);
    assert_null(bt_json_dump(NULL));
}

static void test_path_lookup(void **state)
{
    (void)state;
    json_t *v =
        parse("{\"type\":\"APP\",\"hub\":{\"address\":\"tcp://h:1\",\"port\":1883,\"tls\":false},"
              "\"services\":[{\"name\":\"a\"},{\"name\":\"b\",\"replica\":2}],\"a.b\":\"dotted\"}");
    assert_string_equal(bt_json_get_str(v, "type"), "APP");
    assert_string_equal(bt_json_get_str(v, "hub.address"), "tcp://h:1");
    assert_string_equal(bt_json_get_str(v, "services.1.name"), "b");
    assert_int_equal(bt_json_get_int(v, "services.1.replica", -1), 2);
    assert_int_equal(bt_json_get_int(v, "hub.port", 0), 1883);
    assert_false(bt_json_get_bool(v, "hub.tls", true));
    assert_ptr_equal(bt_json_get(v, ""), v);

    /* Missing, wrong type, bad index: NULL or the default. */
    assert_null(bt_json_get_str(v, "hub.port"));
    assert_null(bt_json_get_str(v, "hub.nope"));
    assert_null(bt_json_get_str(v, "type.x"));
    assert_null(bt_json_get(v, "services.2"));
    assert_null(bt_json_get(v, "services.01"));
    assert_null(bt_json_get(v, "services.-1"));
    assert_null(bt_json_get(v, "services.x"));
    assert_null(bt_json_get(v, "hub."));
    assert_null(bt_json_get(v, "a.b")); /* dotted keys need json_object_get */
    assert_string_equal(json_string_value(json_object_get(v, "a.b")), "dotted");
    assert_int_equal(bt_json_get_int(v, "type", 7), 7);
    assert_true(bt_json_get_bool(v, "hub.address", true));
    assert_null(bt_json_get(NULL, "a"));
    assert_null(bt_json_get(v, NULL));
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_errors),
        cmocka_unit_test(test_dump_compact_in_order),
        cmocka_unit_test(test_path_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
