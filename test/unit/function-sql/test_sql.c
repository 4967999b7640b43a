/* The SQL dialect of function-sql (SPEC §12, rules in function-sql/sql.h): the seed's two
 * statements, every operator and function, null and missing fields, paths, `*` and names,
 * every syntax error with its position, non-object payloads and nesting limits. Results
 * are compared as the exact JSON text the runtime publishes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../function-sql/sql.h"

static const sql_msg msg = {
    .qos = 1,
    .topic = "t/a/b",
    .timestamp = 1700000000,
    .invokeid = "7c9e6679-7425-40de-944b-e07fc1f90ae7",
};

/* The published text of sql on payload, or NULL when nothing is published. */
static char *run_with(const char *sql, const char *payload, size_t len, const sql_msg *m)
{
    char err[256] = "";
    sql_stmt *st = sql_compile(sql, err, sizeof err);
    if (!st)
        fail_msg("compile %s: %s", sql, err);
    char *out = NULL;
    size_t outlen = 0;
    int rc = sql_run(st, payload, len, m, &out, &outlen, err, sizeof err);
    sql_free(st);
    if (rc < 0)
        fail_msg("run %s on %s: %s", sql, payload ? payload : "(null)", err);
    if (rc == 0) {
        assert_null(out);
        assert_int_equal(outlen, 0);
        return NULL;
    }
    assert_non_null(out);
    assert_int_equal(outlen, strlen(out));
    return out;
}

static void result_msg(const char *sql, const char *payload, const sql_msg *m, const char *want)
{
    char *got = run_with(sql, payload, strlen(payload), m);
    if (!want && got)
        fail_msg("%s on %s: expected no result, got %s", sql, payload, got);
    if (want && !got)
        fail_msg("%s on %s: expected %s, got no result", sql, payload, want);
    if (want && strcmp(want, got) != 0) {
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", got);
        free(got);
        fail_msg("%s on %s:\n  expected %s\n  got      %s", sql, payload, want, copy);
    }
    free(got);
}

static void result_is(const char *sql, const char *payload, const char *want)
{
    result_msg(sql, payload, &msg, want);
}

/* The value of one expression on payload, as JSON text ("null", "3", "\"x\""…). */
static void value_is(const char *expr, const char *payload, const char *want)
{
    char sql[512], obj[600];
    snprintf(sql, sizeof sql, "SELECT %s AS v", expr);
    snprintf(obj, sizeof obj, "{\"v\":%s}", want);
    result_is(sql, payload, obj);
}

static void error_is(const char *sql, const char *want)
{
    char err[256] = "";
    sql_stmt *st = sql_compile(sql, err, sizeof err);
    if (st) {
        sql_free(st);
        fail_msg("%s: compiled, expected %s", sql, want);
    }
    if (strcmp(err, want) != 0)
        fail_msg("%s:\n  expected %s\n  got      %s", sql, want, err);
}

static void test_seed_statements(void **state)
{
    (void)state;
    const char *filter = "select qos() as qos, topic() as topic, * where id < 10";
    result_is(filter, "{\"id\":1}", "{\"qos\":1,\"topic\":\"t/a/b\",\"id\":1}");
    result_is(filter, "{\"id\":9.5,\"name\":\"x\",\"v\":[1,{\"a\":null}]}",
              "{\"qos\":1,\"topic\":\"t/a/b\",\"id\":9.5,\"name\":\"x\",\"v\":[1,{\"a\":null}]}");
    result_is(filter, "{\"id\":10}", NULL);
    result_is(filter, "{\"id\":\"1\"}", NULL); /* a string is not < 10 */
    result_is(filter, "{\"x\":1}", NULL);      /* missing id: null < 10 is false */
    /* The message QoS wins over a payload field named qos, which keeps its position. */
    result_is(filter, "{\"qos\":2,\"id\":3}", "{\"qos\":1,\"topic\":\"t/a/b\",\"id\":3}");
    sql_msg q0 = msg;
    q0.qos = 0;
    q0.topic = "t";
    result_msg(filter, "{\"id\":1}", &q0, "{\"qos\":0,\"topic\":\"t\",\"id\":1}");

    const char *temp = "SELECT temperature, ts, unit WHERE temperature > 50";
    result_is(temp, "{\"temperature\":60,\"ts\":1573000000,\"unit\":\"C\",\"device\":\"d1\"}",
              "{\"temperature\":60,\"ts\":1573000000,\"unit\":\"C\"}");
    result_is(temp, "{\"unit\":\"F\",\"temperature\":50.5}",
              "{\"temperature\":50.5,\"ts\":null,\"unit\":\"F\"}");
    result_is(temp, "{\"temperature\":50,\"ts\":1,\"unit\":\"C\"}", NULL);
    result_is(temp, "{\"temperature\":-60}", NULL);
    result_is(temp, "{\"temperature\":null}", NULL);
    result_is(temp, "{}", NULL);
}

static void test_non_object_payloads(void **state)
{
    (void)state;
    const char *sql = "SELECT qos() AS q";
    result_is(sql, "{}", "{\"q\":1}");
    result_is(sql, "[{\"a\":1}]", NULL);
    result_is(sql, "[]", NULL);
    result_is(sql, "42", NULL);
    result_is(sql, "\"str\"", NULL);
    result_is(sql, "null", NULL);
    result_is(sql, "true", NULL);
    result_is(sql, "{\"a\":", NULL);
    result_is(sql, "{\"a\":1} x", NULL);
    result_is(sql, "not json", NULL);
    result_is(sql, "", NULL);
    result_is(sql, "\xff\xfe", NULL);
    result_is(sql, "{\"a\":\"\xc3\x28\"}", NULL); /* invalid UTF-8 inside */
    assert_null(run_with(sql, NULL, 0, &msg));
    assert_null(run_with(sql, "{}", 0, &msg)); /* length counts, not the NUL */

    /* The reason is told, for the debug log. */
    char err[128];
    sql_stmt *st = sql_compile(sql, err, sizeof err);
    assert_non_null(st);
    char *out = (char *)1;
    size_t n = 9;
    assert_int_equal(sql_run(st, "[1]", 3, &msg, &out, &n, err, sizeof err), 0);
    assert_null(out);
    assert_int_equal(n, 0);
    assert_string_equal(err, "payload is not a JSON object");
    assert_int_equal(sql_run(st, "{x", 2, &msg, &out, &n, err, sizeof err), 0);
    assert_non_null(strstr(err, "payload is not JSON"));
    assert_int_equal(sql_run(st, "", 0, &msg, &out, &n, err, sizeof err), 0);
    assert_string_equal(err, "empty payload");
    sql_free(st);

    /* A NUL inside a string value is data, not the end. */
    result_is("SELECT *, length(s) AS n", "{\"s\":\"a\\u0000b\"}", "{\"s\":\"a\\u0000b\",\"n\":3}");
}

static void test_literals(void **state)
{
    (void)state;
    result_is("SELECT 1 AS i, 1.5 AS f, 2e3 AS e, 'it''s' AS s, true AS t, FALSE AS f2, Null AS n",
              "{}",
              "{\"i\":1,\"f\":1.5,\"e\":2000.0,\"s\":\"it's\",\"t\":true,\"f2\":false,\"n\":null}");
    value_is("''", "{}", "\"\"");
    value_is("'héllo ✓'", "{}", "\"héllo ✓\"");
    value_is("9223372036854775807", "{}", "9223372036854775807");
    value_is("99999999999999999999", "{}", "1e20"); /* past 64 bits: a float */
    value_is("0.1", "{}", "0.1");
    value_is("1.25E-2", "{}", "0.0125");
    value_is("20.1", "{}", "20.1");
}

static void test_arithmetic(void **state)
{
    (void)state;
    value_is("1 + 2", "{}", "3");
    value_is("1 + 2.5", "{}", "3.5");
    value_is("5 - 7", "{}", "-2");
    value_is("3 * 4", "{}", "12");
    value_is("1.5 * 2", "{}", "3.0"); /* a float stays a float */
    value_is("6 / 2", "{}", "3");
    value_is("7 / 2", "{}", "3.5");
    value_is("-7 / 2", "{}", "-3.5");
    value_is("7.0 / 2", "{}", "3.5");
    value_is("7 % 3", "{}", "1");
    value_is("-7 % 3", "{}", "-1");
    value_is("7 % -3", "{}", "1");
    value_is("5.5 % 2", "{}", "1.5");
    value_is("1 / 0", "{}", "null");
    value_is("1.5 / 0.0", "{}", "null");
    value_is("1 % 0", "{}", "null");
    value_is("1 % 0.0", "{}", "null");
    value_is("0.1 + 0.2", "{}", "0.30000000000000004");
    value_is("1 + 2 * 3", "{}", "7");
    value_is("(1 + 2) * 3", "{}", "9");
    value_is("10 - 4 - 3", "{}", "3");
    value_is("2 * 9 / 3 % 4", "{}", "2");
    value_is("-a", "{\"a\":4}", "-4");
    value_is("-a", "{\"a\":-4.5}", "4.5");
    value_is("- - 3", "{}", "3");
    value_is("+a", "{\"a\":4}", "4");
    value_is("+a", "{\"a\":\"x\"}", "null");
    value_is("-a", "{\"a\":\"4\"}", "null");
    value_is("a * 2", "{\"a\":21}", "42");
    /* 64-bit overflow continues as a float; INT64_MIN edge cases do not trap. */
    value_is("9223372036854775807 + 1", "{}", "9.223372036854776e18");
    value_is("a - 1", "{\"a\":-9223372036854775808}", "-9.223372036854776e18");
    value_is("a * 2", "{\"a\":9223372036854775807}", "1.8446744073709552e19");
    value_is("a / -1", "{\"a\":-9223372036854775808}", "9.223372036854776e18");
    value_is("a % -1", "{\"a\":-9223372036854775808}", "0");
    value_is("-a", "{\"a\":-9223372036854775808}", "9.223372036854776e18");
    value_is("a * a", "{\"a\":1e300}", "null"); /* infinity is not JSON */
    /* Type mismatches are null, not errors. */
    value_is("'a' + 1", "{}", "null");
    value_is("1 + true", "{}", "null");
    value_is("a + 1", "{}", "null");
    value_is("a + 1", "{\"a\":null}", "null");
    value_is("a + 1", "{\"a\":[1]}", "null");
    value_is("a * 2", "{\"a\":{}}", "null");
}

static void test_comparisons(void **state)
{
    (void)state;
    result_is("SELECT 1 = 1 AS a, 1 = 2 AS b, 1 != 2 AS c, 1 <> 1 AS d, 1 < 2 AS e, 2 <= 2 AS f,"
              " 3 > 2 AS g, 2 >= 3 AS h",
              "{}",
              "{\"a\":true,\"b\":false,\"c\":true,\"d\":false,\"e\":true,\"f\":true,"
              "\"g\":true,\"h\":false}");
    value_is("1 = 1.0", "{}", "true");
    value_is("2 > 1.5", "{}", "true");
    value_is("9007199254740993 > 9007199254740992.0", "{}", "true"); /* exact */
    value_is("'abc' < 'abd'", "{}", "true");
    value_is("'ab' < 'abc'", "{}", "true");
    value_is("'b' >= 'abc'", "{}", "true");
    value_is("'x' = 'x'", "{}", "true");
    value_is("true = true", "{}", "true");
    value_is("true = false", "{}", "false");
    value_is("a = b", "{\"a\":{\"x\":[1,2]},\"b\":{\"x\":[1,2]}}", "true");
    value_is("a = b", "{\"a\":[1,2],\"b\":[2,1]}", "false");
    /* Different types are unequal; ordering them is null. */
    value_is("'1' = 1", "{}", "false");
    value_is("'1' != 1", "{}", "true");
    value_is("'1' < 1", "{}", "null");
    value_is("true < false", "{}", "null");
    value_is("a > b", "{\"a\":[1],\"b\":[0]}", "null");
    /* Anything compared with null, or a missing field, is false. */
    value_is("a = 1", "{}", "false");
    value_is("a != 1", "{}", "false");
    value_is("a < 1", "{\"a\":null}", "false");
    value_is("null = null", "{}", "false");
    value_is("null <> null", "{}", "false");
    /* Comparison binds looser than arithmetic. */
    value_is("1 + 1 = 2", "{}", "true");
    value_is("a * 2 > a + 3", "{\"a\":4}", "true");
}

static void test_logic(void **state)
{
    (void)state;
    value_is("true AND true", "{}", "true");
    value_is("true AND false", "{}", "false");
    value_is("false OR true", "{}", "true");
    value_is("false OR false", "{}", "false");
    value_is("NOT true", "{}", "false");
    value_is("NOT NOT true", "{}", "true");
    value_is("not false", "{}", "true");
    /* null counts as false */
    value_is("null AND true", "{}", "false");
    value_is("null OR true", "{}", "true");
    value_is("null OR false", "{}", "false");
    value_is("NOT null", "{}", "true");
    value_is("NOT (a = 1)", "{}", "true");
    /* non-booleans make null, unless the other side decides alone */
    value_is("1 AND true", "{}", "null");
    value_is("'x' OR false", "{}", "null");
    value_is("NOT 5", "{}", "null");
    value_is("false AND 1", "{}", "false");
    value_is("1 AND false", "{}", "false");
    value_is("true OR 'x'", "{}", "true");
    /* AND binds tighter than OR; NOT tighter than AND */
    value_is("true OR true AND false", "{}", "true");
    value_is("(true OR true) AND false", "{}", "false");
    value_is("NOT false AND false", "{}", "false");
    value_is("a > 1 AND a < 5 OR a = 10", "{\"a\":10}", "true");
    /* In WHERE only true passes. */
    result_is("SELECT a WHERE a", "{\"a\":true}", "{\"a\":true}");
    result_is("SELECT a WHERE a", "{\"a\":1}", NULL);
    result_is("SELECT a WHERE a", "{\"a\":\"true\"}", NULL);
    result_is("SELECT a WHERE a", "{\"a\":null}", NULL);
    result_is("SELECT a WHERE a", "{}", NULL);
    result_is("SELECT a WHERE NOT a", "{\"a\":false}", "{\"a\":false}");
    result_is("SELECT a WHERE false", "{\"a\":1}", NULL);
    result_is("SELECT a WHERE null", "{\"a\":1}", NULL);
}

static void test_like(void **state)
{
    (void)state;
    value_is("'hello' LIKE 'h%'", "{}", "true");
    value_is("'hello' LIKE '%llo'", "{}", "true");
    value_is("'hello' LIKE '%ell%'", "{}", "true");
    value_is("'hello' LIKE 'h_llo'", "{}", "true");
    value_is("'hello' LIKE 'h_lo'", "{}", "false");
    value_is("'hello' LIKE 'hello'", "{}", "true");
    value_is("'hello' LIKE 'Hello'", "{}", "false"); /* case-sensitive */
    value_is("'hello' LIKE '%'", "{}", "true");
    value_is("'' LIKE '%'", "{}", "true");
    value_is("'' LIKE '_'", "{}", "false");
    value_is("'hello' LIKE ''", "{}", "false");
    value_is("'aaa' LIKE '%a%a%a%'", "{}", "true");
    value_is("'aab' LIKE '%a%b%a'", "{}", "false");
    value_is("'mississippi' LIKE 'm%iss%pi'", "{}", "true");
    value_is("'héllo' LIKE 'h_llo'", "{}", "true"); /* _ is one character, not byte */
    value_is("'日本語' LIKE '__語'", "{}", "true");
    value_is("'10%' LIKE '10!%' ESCAPE '!'", "{}", "true");
    value_is("'100' LIKE '10!%' ESCAPE '!'", "{}", "false");
    value_is("'a_b' LIKE 'a\\_b' ESCAPE '\\'", "{}", "true");
    value_is("'axb' LIKE 'a\\_b' ESCAPE '\\'", "{}", "false");
    value_is("'a!' LIKE 'a!' ESCAPE '!'", "{}", "true"); /* a trailing escape is itself */
    value_is("'a%' LIKE 'a%' ESCAPE '%'", "{}", "true");
    value_is("'ab' LIKE 'a%' ESCAPE '%'", "{}", "false");
    value_is("'a%b' LIKE 'a%%%' ESCAPE '%'", "{}", "false"); /* %% is one literal % */
    value_is("'a%b' LIKE 'a%%_' ESCAPE '%'", "{}", "true");
    value_is("'hello' NOT LIKE 'h%'", "{}", "false");
    value_is("'hello' NOT LIKE 'x%'", "{}", "true");
    value_is("s LIKE 'a%'", "{}", "false");
    value_is("s NOT LIKE 'a%'", "{}", "false"); /* null is never matched */
    value_is("'a' LIKE p", "{\"p\":null}", "false");
    value_is("n LIKE '1%'", "{\"n\":12}", "null");
}

static void test_in_and_is_null(void **state)
{
    (void)state;
    value_is("2 IN (1, 2, 3)", "{}", "true");
    value_is("4 IN (1, 2, 3)", "{}", "false");
    value_is("2.0 IN (1, 2)", "{}", "true");
    value_is("'b' IN ('a', 'b')", "{}", "true");
    value_is("'1' IN (1, 2)", "{}", "false");
    value_is("a IN (b, c + 1)", "{\"a\":3,\"c\":2}", "true");
    value_is("4 NOT IN (1, 2, 3)", "{}", "true");
    value_is("2 not in (1, 2, 3)", "{}", "false");
    value_is("a IN (1, null)", "{}", "false");
    value_is("a NOT IN (1, 2)", "{}", "false"); /* null is never in or not in */
    value_is("null IN (null)", "{}", "false");
    value_is("x IN (1)", "{\"x\":[1]}", "false");
}

static void test_in_and_is_null_values(void **state)
{
    (void)state;
    value_is("a IS NULL", "{}", "true");
    value_is("a IS NULL", "{\"a\":null}", "true");
    value_is("a IS NULL", "{\"a\":0}", "false");
    value_is("a IS NOT NULL", "{\"a\":0}", "true");
    value_is("a IS NOT NULL", "{\"a\":null}", "false");
    value_is("a.b IS NULL", "{\"a\":5}", "true");
    value_is("NOT a IS NULL", "{}", "false");
    value_is("1 / 0 IS NULL", "{}", "true");
    result_is("SELECT * WHERE b IS NOT NULL", "{\"a\":1}", NULL);
    result_is("SELECT * WHERE b IS NOT NULL", "{\"b\":false}", "{\"b\":false}");
}

static void test_paths(void **state)
{
    (void)state;
    const char *p = "{\"a\":{\"b\":{\"c\":1},\"list\":[10,{\"x\":\"y\"},[5,6]]},"
                    "\"arr\":[1,2,3],\"k w\":7,\"select\":8,\"Case\":9,\"é\":\"u\"}";
    value_is("a.b.c", p, "1");
    value_is("a.list[0]", p, "10");
    value_is("a.list[1].x", p, "\"y\"");
    value_is("a.list[2][1]", p, "6");
    value_is("arr[2]", p, "3");
    value_is("arr[3]", p, "null");
    value_is("arr[99999999999]", p, "null");
    value_is("a.b", p, "{\"c\":1}");
    value_is("arr", p, "[1,2,3]");
    value_is("a.missing.deeper", p, "null");
    value_is("arr.x", p, "null");   /* a name on an array */
    value_is("a[0]", p, "null");    /* an index on an object */
    value_is("a.b.c.d", p, "null"); /* through a number */
    value_is("\"k w\"", p, "7");
    value_is("\"select\"", p, "8");
    value_is("a.\"b\".c", p, "1");
    value_is("Case", p, "9");
    value_is("case", p, "null"); /* field names are case-sensitive */
    value_is("é", p, "\"u\"");
    value_is("a.list[1].\"x\"", p, "\"y\"");
    value_is("x.null", "{\"x\":{\"null\":1}}", "1"); /* any name after a dot */
    value_is("\"a\"\"b\"", "{\"a\\\"b\":2}", "2");
    value_is("a.b.c + a.list[0]", p, "11");
}

static void test_functions(void **state)
{
    (void)state;
    result_is("SELECT qos(), topic(), timestamp(), invokeid()", "{}",
              "{\"qos()\":1,\"topic()\":\"t/a/b\",\"timestamp()\":1700000000,"
              "\"invokeid()\":\"7c9e6679-7425-40de-944b-e07fc1f90ae7\"}");
    result_is("SELECT topic(1) AS a, topic(2) AS b, topic(3) AS c, topic(4) AS d, topic(0) AS e,"
              " topic(-1) AS f, topic('1') AS g, topic(1.0) AS h",
              "{}",
              "{\"a\":\"t\",\"b\":\"a\",\"c\":\"b\",\"d\":null,\"e\":null,\"f\":null,\"g\":null,"
              "\"h\":null}");
    sql_msg odd = {.qos = 0, .topic = "/x//y", .timestamp = -5, .invokeid = NULL};
    result_msg("SELECT topic(1) AS a, topic(2) AS b, topic(3) AS c, topic(4) AS d, "
               "timestamp() AS t, invokeid() AS i",
               "{}", &odd, "{\"a\":\"\",\"b\":\"x\",\"c\":\"\",\"d\":\"y\",\"t\":-5,\"i\":null}");
    sql_msg none = {0};
    result_msg("SELECT topic() AS t, topic(1) AS u, qos() AS q", "{}", &none,
               "{\"t\":null,\"u\":null,\"q\":0}");
    sql_msg bad = {.topic = "t/\xff", .invokeid = "\xc3"};
    result_msg("SELECT topic() AS t, topic(1) AS u, invokeid() AS i", "{}", &bad,
               "{\"t\":null,\"u\":\"t\",\"i\":null}");
    result_msg("SELECT qos() AS q", "{}", NULL, "{\"q\":0}");

    value_is("abs(-3)", "{}", "3");
    value_is("abs(3)", "{}", "3");
    value_is("abs(-2.5)", "{}", "2.5");
    value_is("abs(a)", "{\"a\":-9223372036854775808}", "9.223372036854776e18");
    value_is("abs('x')", "{}", "null");
    value_is("round(2.5)", "{}", "3");
    value_is("round(-2.5)", "{}", "-3");
    value_is("round(2.4)", "{}", "2");
    value_is("round(7)", "{}", "7");
    value_is("round(1e300)", "{}", "1e300");
    value_is("round(3.14159, 2)", "{}", "3.14");
    value_is("round(-3.145, 1)", "{}", "-3.1");
    value_is("round(1234.5, -2)", "{}", "1200.0");
    value_is("round(1250, -2)", "{}", "1300");
    value_is("round(-1250, -2)", "{}", "-1300");
    value_is("round(1249, -2)", "{}", "1200");
    value_is("round(17, 3)", "{}", "17");
    value_is("round(9223372036854775807, -1)", "{}", "9.223372036854776e18");
    value_is("round(5, -30)", "{}", "0");
    value_is("round(2.5, 400)", "{}", "2.5");
    value_is("round(2.5, -400)", "{}", "0.0");
    value_is("round(2.5, 'x')", "{}", "null");
    value_is("round(2.5, 1.0)", "{}", "null");
    value_is("round(null)", "{}", "null");
    value_is("floor(1.7)", "{}", "1");
    value_is("floor(-1.2)", "{}", "-2");
    value_is("floor(4)", "{}", "4");
    value_is("ceil(1.2)", "{}", "2");
    value_is("ceil(-1.7)", "{}", "-1");
    value_is("ceil(1e19)", "{}", "1e19");
    value_is("floor('1.5')", "{}", "null");
    value_is("lower('HeLLo É')", "{}", "\"hello É\"");
    value_is("upper('hello é')", "{}", "\"HELLO é\"");
    value_is("upper(5)", "{}", "null");
    value_is("length('héllo')", "{}", "5");
    value_is("length('')", "{}", "0");
    value_is("length(a)", "{\"a\":[1,2,3]}", "3");
    value_is("length(a)", "{\"a\":{\"x\":1}}", "1");
    value_is("length(a)", "{\"a\":12}", "null");
    value_is("length(a)", "{}", "null");
    value_is("concat('a', 'b', 'c')", "{}", "\"abc\"");
    value_is("concat('n=', 1, ' f=', 1.5, ' g=', 2.0, ' b=', true)", "{}",
             "\"n=1 f=1.5 g=2.0 b=true\"");
    value_is("concat('x')", "{}", "\"x\"");
    value_is("concat(topic(1), '/', id)", "{\"id\":7}", "\"t/7\"");
    value_is("concat('a', missing)", "{}", "null");
    value_is("concat('a', o)", "{\"o\":{}}", "null");
    value_is("substring('hello', 2)", "{}", "\"ello\"");
    value_is("substring('hello', 2, 3)", "{}", "\"ell\"");
    value_is("substring('hello', 1, 0)", "{}", "\"\"");
    value_is("substring('hello', 0, 2)", "{}", "\"h\""); /* the window 0..1 */
    value_is("substring('hello', -5, 3)", "{}", "\"\"");
    value_is("substring('hello', 4, 100)", "{}", "\"lo\"");
    value_is("substring('hello', 9)", "{}", "\"\"");
    value_is("substring('héllo', 2, 2)", "{}", "\"él\"");
    value_is("substring('hello', 2, -1)", "{}", "null");
    value_is("substring('hello', '2')", "{}", "null");
    value_is("substring(5, 1)", "{}", "null");
    value_is("substring('hello', 2, 9223372036854775807)", "{}", "\"ello\"");
    /* function names are case-insensitive */
    value_is("UPPER(Concat('a', 'b'))", "{}", "\"AB\"");
    value_is("Qos()", "{}", "1");
}

static void test_star_and_names(void **state)
{
    (void)state;
    const char *p = "{\"z\":1,\"a\":{\"b\":[4,5]},\"m\":\"x\"}";
    result_is("SELECT *", p, p); /* field order kept */
    result_is("select * ", "{}", "{}");
    result_is("SELECT *, *", p, p);
    result_is("SELECT z AS first, *", p, "{\"first\":1,\"z\":1,\"a\":{\"b\":[4,5]},\"m\":\"x\"}");
    result_is("SELECT *, 1 AS extra", p, "{\"z\":1,\"a\":{\"b\":[4,5]},\"m\":\"x\",\"extra\":1}");
    /* a named expression keeps the payload's position and wins over * */
    result_is("SELECT *, upper(m) AS m", p, "{\"z\":1,\"a\":{\"b\":[4,5]},\"m\":\"X\"}");
    result_is("SELECT 0 AS m, *", p, "{\"m\":0,\"z\":1,\"a\":{\"b\":[4,5]}}");
    /* a name given twice: first position, last value */
    result_is("SELECT 1 AS v, 2 AS w, 3 AS v", "{}", "{\"v\":3,\"w\":2}");
    /* default names: a path's last field name, else the text as written */
    result_is("SELECT a.b, a.b[1], z, m AS \"my m\", m AS 'm2'", p,
              "{\"b\":5,\"z\":1,\"my m\":\"x\",\"m2\":\"x\"}");
    result_is("SELECT a.b[0], \"a\".b[1] AS c", p, "{\"b\":4,\"c\":5}");
    result_is("SELECT a[0]", "{\"a\":[9]}", "{\"a\":9}");
    result_is("SELECT z  *  2, (z + 1), upper( m ), z IS NULL, 'lit', 3", p,
              "{\"z  *  2\":2,\"(z + 1)\":2,\"upper( m )\":\"X\",\"z IS NULL\":false,"
              "\"'lit'\":\"lit\",\"3\":3}");
    result_is("SELECT missing, a.nothing", p, "{\"missing\":null,\"nothing\":null}");
    result_is("SELECT \"z\", \"a\".\"b\"", p, "{\"z\":1,\"b\":[4,5]}");
    result_is("SELECT m AS qos, qos() AS q", p, "{\"qos\":\"x\",\"q\":1}");
    result_is("SELECT 1 AS Timestamp, 2 AS topic", "{}", "{\"Timestamp\":1,\"topic\":2}");
    /* WHERE reads the payload, not aliases */
    result_is("SELECT 5 AS z WHERE z = 1", p, "{\"z\":5}");
}

static void test_keywords_and_spacing(void **state)
{
    (void)state;
    result_is("sElEcT a As b WhErE a iS nOt NuLl AnD NoT a In (2) Or a LiKe 'x'", "{\"a\":1}",
              "{\"b\":1}");
    result_is("\n\tSELECT\ta\r\n,b\fWHERE\va=1  ", "{\"a\":1,\"b\":2}", "{\"a\":1,\"b\":2}");
    result_is("SELECT a>=1 AS x,a<>2 AS y,a!=3 AS z,a<=1 AS w", "{\"a\":1}",
              "{\"x\":true,\"y\":true,\"z\":true,\"w\":true}");
    result_is("SELECT(a)AS x", "{\"a\":1}", "{\"x\":1}");
}

static void test_float_output(void **state)
{
    (void)state;
    /* Each field is written with the fewest digits that read back exactly. */
    result_is("SELECT 0.1 + 0.2 AS s, 20.1 AS t, *", "{\"v\":[0.1,0.5],\"w\":1.0,\"x\":-0.0}",
              "{\"s\":0.30000000000000004,\"t\":20.1,\"v\":[0.1,0.5],\"w\":1.0,\"x\":-0.0}");
    result_is(
        "SELECT *",
        "{\"a\":1.7976931348623157e308,\"b\":2.2250738585072014e-308,\"c\":123456789012345.6}",
        "{\"a\":1.7976931348623157e308,\"b\":2.2250738585072014e-308,\"c\":123456789012345.6}");
}

static void test_sql_dump_and_eval_api(void **state)
{
    (void)state;
    char err[128];
    sql_stmt *st = sql_compile("SELECT a * 2 AS d WHERE a > 1", err, sizeof err);
    assert_non_null(st);
    assert_string_equal(sql_text(st), "SELECT a * 2 AS d WHERE a > 1");
    json_t *in = json_pack("{s:i}", "a", 3), *out = NULL;
    assert_int_equal(sql_eval(st, in, &msg, &out, err, sizeof err), 1);
    assert_int_equal(json_integer_value(json_object_get(out, "d")), 6);
    json_decref(out);
    json_object_set_new(in, "a", json_integer(1));
    assert_int_equal(sql_eval(st, in, &msg, &out, err, sizeof err), 0);
    assert_null(out);
    json_decref(in);
    in = json_array();
    assert_int_equal(sql_eval(st, in, &msg, &out, err, sizeof err), 0);
    assert_int_equal(sql_eval(st, NULL, &msg, &out, err, sizeof err), 0);
    json_decref(in);
    sql_free(st);
    sql_free(NULL);
    assert_null(sql_text(NULL));

    json_t *v = json_real(0.5);
    char *s = sql_dump(v);
    assert_string_equal(s, "0.5");
    free(s);
    json_decref(v);
    v = json_pack("[f,s]", 0.1, "x");
    s = sql_dump(v);
    assert_string_equal(s, "[0.1,\"x\"]");
    free(s);
    json_decref(v);
    assert_null(sql_dump(NULL));
    assert_null(sql_compile(NULL, err, sizeof err));
    assert_string_equal(err, "no statement");
}

static void test_string_limit(void **state)
{
    (void)state;
    /* concat repeating a large field is refused with an error, not a huge allocation. */
    size_t big = 3u << 20;
    char *payload = malloc(big + 16);
    assert_non_null(payload);
    memcpy(payload, "{\"s\":\"", 6);
    memset(payload + 6, 'x', big);
    memcpy(payload + 6 + big, "\"}", 3);
    char err[128];
    sql_stmt *st = sql_compile("SELECT concat(s, s, s, s, s, s) AS c", err, sizeof err);
    assert_non_null(st);
    char *out = NULL;
    size_t n = 0;
    assert_int_equal(sql_run(st, payload, strlen(payload), &msg, &out, &n, err, sizeof err), -1);
    assert_null(out);
    assert_string_equal(err, "string result too long");
    sql_free(st);
    st = sql_compile("SELECT length(concat(s, s)) AS c", err, sizeof err);
    assert_int_equal(sql_run(st, payload, strlen(payload), &msg, &out, &n, err, sizeof err), 1);
    assert_string_equal(out, "{\"c\":6291456}");
    free(out);
    sql_free(st);
    free(payload);
}

static void test_like_budget(void **state)
{
    (void)state;
    /* A long value with a long pattern is refused after a bounded number of steps; a long
     * value with a short pattern is fine. */
    size_t big = 200000;
    char *payload = malloc(big + 2100);
    assert_non_null(payload);
    char *w = payload + sprintf(payload, "{\"s\":\"");
    memset(w, 'a', big);
    w += big;
    w += sprintf(w, "\",\"p\":\"%%");
    memset(w, 'a', 1000);
    strcpy(w + 1000, "b\"}");
    char err[128], *out = NULL;
    size_t n = 0;
    sql_stmt *st = sql_compile("SELECT s LIKE p AS m", err, sizeof err);
    assert_non_null(st);
    assert_int_equal(sql_run(st, payload, strlen(payload), &msg, &out, &n, err, sizeof err), -1);
    assert_null(out);
    assert_string_equal(err, "LIKE takes too many steps (a long pattern on a long value)");
    sql_free(st);
    st = sql_compile("SELECT s LIKE '%aab%' AS m, s LIKE '%a' AS e", err, sizeof err);
    assert_int_equal(sql_run(st, payload, strlen(payload), &msg, &out, &n, err, sizeof err), 1);
    assert_string_equal(out, "{\"m\":false,\"e\":true}");
    free(out);
    sql_free(st);
    free(payload);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    error_is("", "syntax error at position 1: expected SELECT, found end of statement");
    error_is("   ", "syntax error at position 4: expected SELECT, found end of statement");
    error_is("SELEC a", "syntax error at position 1: expected SELECT, found 'SELEC'");
    error_is("a", "syntax error at position 1: expected SELECT, found 'a'");
    error_is("SELECT", "syntax error at position 7: expected '*' or an expression, found "
                       "end of statement");
    error_is("SELECT WHERE a", "syntax error at position 8: expected '*' or an expression, "
                               "found 'WHERE'");
    error_is("SELECT a,", "syntax error at position 10: expected an expression, found end "
                          "of statement");
    error_is("SELECT a b", "syntax error at position 10: unexpected 'b'");
    error_is("SELECT a WHERE", "syntax error at position 15: expected an expression, found "
                               "end of statement");
    error_is("SELECT a FROM t", "syntax error at position 10: FROM is not supported (a "
                                "statement reads the message it is called with)");
    error_is("SELECT a WHERE b FROM t", "syntax error at position 18: FROM is not "
                                        "supported (a statement reads the message it is "
                                        "called with)");
    error_is("SELECT 'abc", "syntax error at position 8: unterminated string");
    error_is("SELECT 'it''s", "syntax error at position 8: unterminated string");
    error_is("SELECT \"abc", "syntax error at position 8: unterminated quoted name");
    error_is("SELECT \"\"", "syntax error at position 8: empty quoted name");
    error_is("SELECT 1e", "syntax error at position 8: invalid number");
    error_is("SELECT 1e+", "syntax error at position 8: invalid number");
    error_is("SELECT 12abc", "syntax error at position 8: invalid number");
    error_is("SELECT 1.2.3", "syntax error at position 8: invalid number");
    error_is("SELECT 1e999", "syntax error at position 8: number out of range");
    error_is("SELECT a # b", "syntax error at position 10: unexpected character '#'");
    error_is("SELECT a ! b", "syntax error at position 10: unexpected character '!'");
    error_is("SELECT a\x01", "syntax error at position 9: unexpected character 0x01");
    error_is("SELECT a || b", "syntax error at position 10: unexpected character '|'");
    /* positions count characters, not bytes */
    error_is("SELECT 'é' + ;", "syntax error at position 14: unexpected character ';'");
    error_is("SELECT é\xff", "syntax error at position 9: invalid UTF-8");
    error_is("SELECT \xc0\xaf", "syntax error at position 8: invalid UTF-8"); /* overlong */
    error_is("SELECT \xed\xa0\x80", "syntax error at position 8: invalid UTF-8");
    error_is("SELECT 'abc\xe2\x82'", "syntax error at position 12: invalid UTF-8");
    error_is("SELECT foo(1)", "syntax error at position 8: unknown function 'foo'");
    error_is("SELECT abs()", "syntax error at position 8: abs() takes 1 argument");
    error_is("SELECT abs(1, 2)", "syntax error at position 8: abs() takes 1 argument");
    error_is("SELECT qos(1)", "syntax error at position 8: qos() takes no arguments");
    error_is("SELECT round(1, 2, 3)", "syntax error at position 8: round() takes 1 to 2 "
                                      "arguments");
    error_is("SELECT concat()", "syntax error at position 8: concat() takes at least 1 "
                                "argument");
    error_is("SELECT substring('a')", "syntax error at position 8: substring() takes 2 to "
                                      "3 arguments");
    error_is("SELECT abs(1", "syntax error at position 13: expected ',' or ')', found end "
                             "of statement");
    error_is("SELECT (1 + 2", "syntax error at position 14: expected ')', found end of "
                              "statement");
    error_is("SELECT 1 + 2)", "syntax error at position 13: unexpected ')'");
    error_is("SELECT a.", "syntax error at position 10: expected a field name after '.', "
                          "found end of statement");
    error_is("SELECT a.1", "syntax error at position 10: expected a field name after '.', "
                           "found '1'");
    error_is("SELECT a[x]", "syntax error at position 10: expected an array index (a "
                            "non-negative integer), found 'x'");
    error_is("SELECT a[-1]", "syntax error at position 10: expected an array index (a "
                             "non-negative integer), found '-'");
    error_is("SELECT a[1.5]", "syntax error at position 10: expected an array index (a "
                              "non-negative integer), found '1.5'");
    error_is("SELECT a[1", "syntax error at position 11: expected ']', found end of "
                           "statement");
    error_is("SELECT a AS", "syntax error at position 12: expected a name after AS, found "
                            "end of statement");
    error_is("SELECT a AS where", "syntax error at position 13: expected a name after AS, "
                                  "found 'where'");
    error_is("SELECT a AS 1", "syntax error at position 13: expected a name after AS, "
                              "found '1'");
    error_is("SELECT select", "syntax error at position 8: expected an expression, found "
                              "'select'");
    error_is("SELECT and", "syntax error at position 8: expected an expression, found "
                           "'and'");
    error_is("SELECT a WHERE a IS 1", "syntax error at position 21: expected NULL or NOT "
                                      "NULL after IS, found '1'");
    error_is("SELECT a WHERE a IS NOT 1", "syntax error at position 25: expected NULL after "
                                          "IS NOT, found '1'");
    error_is("SELECT a WHERE a NOT BETWEEN 1", "syntax error at position 22: expected LIKE "
                                               "or IN after NOT, found 'BETWEEN'");
    error_is("SELECT a WHERE a IN 1", "syntax error at position 21: expected '(' after IN, "
                                      "found '1'");
    error_is("SELECT a WHERE a IN ()", "syntax error at position 22: expected an "
                                       "expression, found ')'");
    error_is("SELECT a WHERE a IN (1,", "syntax error at position 24: expected an "
                                        "expression, found end of statement");
    error_is("SELECT a WHERE a IN (1 2)", "syntax error at position 24: expected ',' or "
                                          "')', found '2'");
    error_is("SELECT a LIKE 'x' ESCAPE 'ab'", "syntax error at position 26: expected a "
                                              "one-character string after ESCAPE, found "
                                              "''ab''");
    error_is("SELECT a LIKE 'x' ESCAPE x", "syntax error at position 26: expected a "
                                           "one-character string after ESCAPE, found 'x'");
    error_is("SELECT a = b = c", "syntax error at position 14: unexpected '='");
    error_is("SELECT 1 < 2 < 3", "syntax error at position 14: unexpected '<'");
    error_is("SELECT x IN ([1])", "syntax error at position 14: expected an expression, "
                                  "found '['");
    error_is("SELECT *.a", "syntax error at position 9: unexpected '.'");
    error_is("SELECT * * 2", "syntax error at position 10: unexpected '*'");
    error_is("SELECT a WHERE *", "syntax error at position 16: expected an expression, "
                                 "found '*'");
    error_is("SELECT topic().a", "syntax error at position 15: unexpected '.'");
    /* long tokens are cut in the message, on a character boundary */
    error_is("SELECT a bbbbbbbbbbbbbbbbbbbbbbbéééé",
             "syntax error at position 10: unexpected 'bbbbbbbbbbbbbbbbbbbbbbb...'");

    /* a short error buffer is cut, never overrun */
    char small[16];
    assert_null(sql_compile("SELECT a b", small, sizeof small));
    assert_string_equal(small, "syntax error at");
    assert_null(sql_compile("SELECT a b", NULL, 0));
}

/* "SELECT " + open × "(" + "1" + close × ")" */
static char *nested(const char *open, const char *inner, const char *close, int n)
{
    size_t lo = strlen(open), li = strlen(inner), lc = strlen(close);
    char *s = malloc(8 + n * (lo + lc) + li);
    assert_non_null(s);
    char *p = s + sprintf(s, "SELECT ");
    for (int k = 0; k < n; k++)
        p += sprintf(p, "%s", open);
    p += sprintf(p, "%s", inner);
    for (int k = 0; k < n; k++)
        p += sprintf(p, "%s", close);
    return s;
}

static void depth_limit(const char *open, const char *inner, const char *close, int ok_n,
                        const char *want_err_prefix)
{
    char err[256];
    char *s = nested(open, inner, close, ok_n);
    sql_stmt *st = sql_compile(s, err, sizeof err);
    if (!st)
        fail_msg("%d levels of %s: %s", ok_n, open, err);
    char *out = NULL;
    size_t n;
    assert_int_equal(sql_run(st, "{\"a\":1}", 7, &msg, &out, &n, err, sizeof err), 1);
    free(out);
    sql_free(st);
    free(s);
    s = nested(open, inner, close, ok_n + 1);
    assert_null(sql_compile(s, err, sizeof err));
    if (strncmp(err, want_err_prefix, strlen(want_err_prefix)) != 0 ||
        !strstr(err, "expression nested too deeply"))
        fail_msg("%d levels of %s: %s", ok_n + 1, open, err);
    free(s);
    s = nested(open, inner, close, 100000); /* far beyond: still an error, not a crash */
    assert_null(sql_compile(s, err, sizeof err));
    assert_non_null(strstr(err, "expression nested too deeply"));
    free(s);
}

static void test_nesting_limits(void **state)
{
    (void)state;
    assert_int_equal(SQL_MAX_DEPTH, 100);
    /* 99 parentheses inside the select item are the 100th level */
    depth_limit("(", "a", ")", 99, "syntax error at position 108:");
    depth_limit("-", "a", "", 99, "syntax error at position 107:");
    depth_limit("NOT ", "true", "", 99, "syntax error at position 404:");
    depth_limit("abs(", "a", ")", 99, "syntax error at position 408:");
    /* a long flat chain is deep as a tree: 100 operands pass, 101 do not */
    char buf[1024] = "SELECT a", err[256];
    for (int k = 1; k < 100; k++)
        strcat(buf, "+a");
    sql_stmt *st = sql_compile(buf, err, sizeof err);
    assert_non_null(st);
    char *out = NULL;
    size_t n;
    assert_int_equal(sql_run(st, "{\"a\":1}", 7, &msg, &out, &n, err, sizeof err), 1);
    assert_non_null(strstr(out, ":100}"));
    free(out);
    sql_free(st);
    strcat(buf, "+a");
    assert_null(sql_compile(buf, err, sizeof err));
    assert_string_equal(err, "syntax error at position 207: expression nested too deeply");
    /* wide is fine: a long IN list and many items */
    char *wide = malloc(200000);
    assert_non_null(wide);
    strcpy(wide, "SELECT a WHERE a IN (0");
    for (int k = 1; k < 20000; k++)
        sprintf(wide + strlen(wide), ",%d", k);
    strcat(wide, ")");
    result_is(wide, "{\"a\":19999}", "{\"a\":19999}");
    free(wide);
}

static void test_deep_payload(void **state)
{
    (void)state;
    /* jansson refuses JSON nested past 2048 levels: no result, no crash */
    size_t depth = 100000;
    char *p = malloc(2 * depth + 16);
    assert_non_null(p);
    char *w = p + sprintf(p, "{\"a\":");
    memset(w, '[', depth);
    memset(w + depth, ']', depth);
    strcpy(w + 2 * depth, "}");
    assert_null(run_with("SELECT *", p, strlen(p), &msg));
    /* 2000 levels parse and come back out unchanged */
    depth = 2000;
    w = p + sprintf(p, "{\"a\":");
    memset(w, '[', depth);
    memset(w + depth, ']', depth);
    strcpy(w + 2 * depth, "}");
    char *out = run_with("SELECT *, length(a) AS n WHERE a = a", p, strlen(p), &msg);
    assert_non_null(out);
    assert_int_equal(strlen(out), strlen(p) + strlen(",\"n\":1"));
    free(out);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_statements),
        cmocka_unit_test(test_non_object_payloads),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_arithmetic),
        cmocka_unit_test(test_comparisons),
        cmocka_unit_test(test_logic),
        cmocka_unit_test(test_like),
        cmocka_unit_test(test_in_and_is_null),
        cmocka_unit_test(test_in_and_is_null_values),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_functions),
        cmocka_unit_test(test_star_and_names),
        cmocka_unit_test(test_keywords_and_spacing),
        cmocka_unit_test(test_float_output),
        cmocka_unit_test(test_sql_dump_and_eval_api),
        cmocka_unit_test(test_string_limit),
        cmocka_unit_test(test_like_budget),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_nesting_limits),
        cmocka_unit_test(test_deep_payload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
