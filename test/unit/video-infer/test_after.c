/* video-infer's handling of the function's reply (after.h): hostile JSON, the message that
 * is published, Go's RFC 3339 time text, and saving files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../video-infer/after.h"

static int parse(const char *json, vi_result *r, char *err, size_t errlen)
{
    return vi_result_parse((const uint8_t *)json, strlen(json), r, err, errlen);
}

static void test_empty_reply_does_nothing(void **state)
{
    vi_result r;
    char err[256] = "";
    assert_int_equal(vi_result_parse(NULL, 0, &r, err, sizeof err), 0);
    assert_null(r.body);
    assert_null(r.topic);
    assert_null(r.location);
    assert_false(r.discard);
    vi_result_free(&r);
}

static void test_seed_reply(void **state)
{
    vi_result r;
    char err[256] = "";
    assert_int_equal(parse("{\"imageDiscard\":false,\"imageObjects\":[{\"class\":\"person\"}],"
                           "\"publishTopic\":\"video/infer/result\",\"publishQOS\":1,"
                           "\"imageLocation\":\"var/db/baetyl/image/1.jpg\"}",
                           &r, err, sizeof err),
                     0);
    assert_false(r.discard);
    assert_string_equal(r.topic, "video/infer/result");
    assert_string_equal(r.location, "var/db/baetyl/image/1.jpg");
    assert_int_equal(r.qos, 1);
    vi_result_free(&r);
    assert_null(r.body);
}

static void test_discard_values(void **state)
{
    static const struct {
        const char *json;
        bool discard;
    } cases[] = {
        {"{\"imageDiscard\":true}", true},
        {"{\"imageDiscard\":\"TRUE\"}", true},
        {"{\"imageDiscard\":\"true\"}", true},
        {"{\"imageDiscard\":false}", false},
        {"{\"imageDiscard\":\"yes\"}", false},
        {"{\"imageDiscard\":1}", false},
        {"{}", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vi_result r;
        char err[256];
        assert_int_equal(parse(cases[i].json, &r, err, sizeof err), 0);
        assert_int_equal(r.discard, cases[i].discard);
        vi_result_free(&r);
    }
}

static void test_topic_and_location(void **state)
{
    vi_result r;
    char err[256];
    /* Empty or absent topic: nothing to publish. */
    assert_int_equal(parse("{\"publishTopic\":\"\",\"imageLocation\":\"\"}", &r, err, sizeof err),
                     0);
    assert_null(r.topic);
    assert_null(r.location);
    vi_result_free(&r);
    assert_int_equal(parse("{\"publishTopic\":null,\"imageLocation\":5}", &r, err, sizeof err), 0);
    assert_null(r.topic);
    assert_null(r.location); /* not a string: ignored, as Baetyl 1.0 did */
    vi_result_free(&r);
    /* Unusable topics are errors with a reason. */
    const char *bad[] = {"{\"publishTopic\":\"a/#\"}", "{\"publishTopic\":\"a/+/b\"}",
                         "{\"publishTopic\":7}", "{\"publishTopic\":\"a\\u0000b\"}",
                         "{\"imageLocation\":\"a\\u0000b\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(parse(bad[i], &r, err, sizeof err), -1);
        assert_true(strstr(err, "publishTopic") || strstr(err, "imageLocation"));
        assert_null(r.body);
    }
}

static void test_qos(void **state)
{
    vi_result r;
    char err[256];
    assert_int_equal(parse("{\"publishQOS\":1.0}", &r, err, sizeof err), 0);
    assert_int_equal(r.qos, 1);
    vi_result_free(&r);
    assert_int_equal(parse("{\"publishQOS\":0}", &r, err, sizeof err), 0);
    assert_int_equal(r.qos, 0);
    vi_result_free(&r);
    const char *bad[] = {"{\"publishQOS\":2}", "{\"publishQOS\":\"1\"}", "{\"publishQOS\":0.5}",
                         "{\"publishQOS\":-1}", "{\"publishQOS\":true}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i], &r, err, sizeof err), -1);
        assert_non_null(strstr(err, "publishQOS must be 0 or 1"));
    }
}

static void test_not_an_object(void **state)
{
    const char *bad[] = {"[1,2]", "\"x\"", "{\"a\":", "\xff\xfe", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vi_result r;
        char err[256] = "";
        assert_int_equal(parse(bad[i], &r, err, sizeof err), -1);
        assert_non_null(strstr(err, "not a JSON object"));
        assert_null(r.body);
    }
}

static void set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static void test_time_format(void **state)
{
    char buf[64];
    set_tz("UTC0");
    assert_int_equal(vi_format_time(1500000000LL, buf, sizeof buf), 0);
    assert_string_equal(buf, "1970-01-01T00:00:01.5Z");
    assert_int_equal(vi_format_time(1569247749000000000LL, buf, sizeof buf), 0);
    assert_string_equal(buf, "2019-09-23T14:09:09Z");
    assert_int_equal(vi_format_time(1569247749123456789LL, buf, sizeof buf), 0);
    assert_string_equal(buf, "2019-09-23T14:09:09.123456789Z");
    assert_int_equal(vi_format_time(-1, buf, sizeof buf), 0);
    assert_string_equal(buf, "1969-12-31T23:59:59.999999999Z");
    set_tz("CST-8"); /* China, the seed's zone: UTC+08:00 */
    assert_int_equal(vi_format_time(1569247749000000000LL, buf, sizeof buf), 0);
    assert_string_equal(buf, "2019-09-23T22:09:09+08:00");
    set_tz("XXX+3:30");
    assert_int_equal(vi_format_time(1569247749010000000LL, buf, sizeof buf), 0);
    assert_string_equal(buf, "2019-09-23T10:39:09.01-03:30");
    assert_int_equal(vi_format_time(0, buf, 10), -1); /* no room */
    set_tz("UTC0");
}

static void test_message(void **state)
{
    vi_result r;
    char err[256];
    set_tz("UTC0");
    assert_int_equal(
        parse("{\"publishTopic\":\"t\",\"imageWidth\":1,\"score\":0.5}", &r, err, sizeof err), 0);
    vi_image_info info = {.width = 640,
                          .height = 480,
                          .capture_ns = 1569247749500000000LL,
                          .infer_s = 0.25,
                          .process_s = 0.5};
    char *s = vi_result_message(&r, &info, err, sizeof err);
    assert_non_null(s);
    /* The function's keys first, in order; the image fields replace its own. */
    assert_string_equal(s, "{\"publishTopic\":\"t\",\"imageWidth\":640,\"score\":0.5,"
                           "\"imageHight\":480,\"imageCaptureTime\":\"2019-09-23T14:09:09.5Z\","
                           "\"imageInferenceTime\":0.25,\"imageProcessTime\":0.5}");
    free(s);
    /* r's body is left as it was (a copy is published). */
    assert_int_equal(json_integer_value(json_object_get(r.body, "imageWidth")), 1);
    vi_result_free(&r);
}

static char tmpdir[64];

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 4096);
    *len = fread(buf, 1, 4095, f);
    fclose(f);
    return buf;
}

static void test_save_file(void **state)
{
    char path[256], err[512];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/vi-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(path, sizeof path, "%s/a/b/c.jpg", tmpdir);
    assert_int_equal(vi_save_file(path, "\xff\xd8\xff", 3, err, sizeof err), 0);
    size_t len;
    char *got = read_all(path, &len);
    assert_non_null(got);
    assert_int_equal(len, 3);
    assert_memory_equal(got, "\xff\xd8\xff", 3);
    free(got);
    /* Replaced whole, and no temporary file is left behind. */
    assert_int_equal(vi_save_file(path, "xy", 2, err, sizeof err), 0);
    got = read_all(path, &len);
    assert_int_equal(len, 2);
    free(got);
    char dir[256];
    snprintf(dir, sizeof dir, "%s/a/b", tmpdir);
    assert_int_equal(rmdir(dir), -1); /* not empty: c.jpg only, checked below */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);

    /* A parent that is a file: a clear error. */
    char file[256];
    snprintf(file, sizeof file, "%s/plain", tmpdir);
    assert_int_equal(vi_save_file(file, "x", 1, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/plain/x.jpg", tmpdir);
    assert_int_equal(vi_save_file(path, "x", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "Not a directory"));
    assert_non_null(strstr(err, path));
    assert_int_equal(vi_save_file("", "x", 1, err, sizeof err), -1);
    snprintf(path, sizeof path, "%s/dir/", tmpdir);
    assert_int_equal(vi_save_file(path, "x", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a file path"));
    unlink(file);
    snprintf(dir, sizeof dir, "%s/a", tmpdir);
    rmdir(dir);
    assert_int_equal(rmdir(tmpdir), 0); /* nothing else was created */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_reply_does_nothing),
        cmocka_unit_test(test_seed_reply),
        cmocka_unit_test(test_discard_values),
        cmocka_unit_test(test_topic_and_location),
        cmocka_unit_test(test_qos),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_message),
        cmocka_unit_test(test_save_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
