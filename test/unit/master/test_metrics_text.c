/* The Prometheus text builder: grouping by family, escaping, and hostile module reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../master/metrics_text.h"

static void test_families_grouped_and_escaped(void **state)
{
    mt_set *s = mt_new();
    const char *a[] = {"service", "a\"b\\c\nd", NULL};
    const char *b[] = {"service", "x", NULL};
    assert_int_equal(mt_add(s, "m_total", "counter", "Help\\ with\nnewline", "", a, 3), 0);
    assert_int_equal(mt_add(s, "g", "gauge", "G.", "", NULL, 0.5), 0);
    assert_int_equal(mt_add(s, "m_total", "counter", "ignored", "", b, 4), 0);
    assert_int_equal(mt_add(s, "m_total", "gauge", "", "", b, 4), -1);  /* type clash */
    assert_int_equal(mt_add(s, "1bad", "gauge", "", "", NULL, 1), -1);  /* bad name */
    assert_int_equal(mt_add(s, "g", "gauge", "", "_sum", NULL, 1), -1); /* suffix of a gauge */
    size_t n;
    char *out = mt_render(s, &n);
    assert_string_equal(out, "# HELP m_total Help\\\\ with\\nnewline\n"
                             "# TYPE m_total counter\n"
                             "m_total{service=\"a\\\"b\\\\c\\nd\"} 3\n"
                             "m_total{service=\"x\"} 4\n"
                             "# HELP g G.\n"
                             "# TYPE g gauge\n"
                             "g 0.5\n");
    assert_int_equal(n, strlen(out));
    free(out);
    mt_free(s);
}

static void test_reported(void **state)
{
    json_error_t je;
    json_t *j = json_loads(
        "{\"h_seconds\":{\"type\":\"histogram\",\"help\":\"H.\",\"samples\":["
        "[\"_bucket\",{\"le\":\"0.1\",\"service\":\"spoof\"},1],[\"_bucket\",{\"le\":\"+Inf\"},2],"
        "[\"_sum\",{},0.3],[\"_count\",null,2],[\"\",{},1],[\"_bucket\",{\"__x\":\"1\"},\"no\"],"
        "[1,2,3],\"junk\"]},"
        "\"bad name\":{\"type\":\"gauge\",\"samples\":[[\"\",{},1]]},"
        "\"t\":{\"type\":\"summary\",\"samples\":[[\"\",{},1]]},"
        "\"c_total\":{\"type\":\"counter\",\"samples\":[[\"\",{\"bad-label\":\"1\",\"ok\":\"2\"},7]"
        "]}}",
        0, &je);
    assert_non_null(j);
    mt_set *s = mt_new();
    assert_int_equal(mt_add_reported(s, j, "hub", "hub", 100), 5);
    char *out = mt_render(s, NULL);
    assert_non_null(
        strstr(out, "h_seconds_bucket{service=\"hub\",instance_name=\"hub\",le=\"0.1\"} 1\n"));
    assert_non_null(strstr(out, "h_seconds_count{service=\"hub\",instance_name=\"hub\"} 2\n"));
    assert_non_null(strstr(out, "c_total{service=\"hub\",instance_name=\"hub\",ok=\"2\"} 7\n"));
    assert_null(strstr(out, "spoof"));
    assert_null(strstr(out, "bad"));
    assert_null(strstr(out, "summary"));
    free(out);
    mt_free(s);
    s = mt_new();
    assert_int_equal(mt_add_reported(s, j, "hub", "hub", 2), 2); /* the cap */
    mt_free(s);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families_grouped_and_escaped),
        cmocka_unit_test(test_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
