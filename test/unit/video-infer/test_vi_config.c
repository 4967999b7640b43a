/* video-infer's config (SPEC §16): defaults, the seed's chapter 11 file, and errors that
 * name the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../video-infer/config.h"

/* The seed's chapter 11 service.yml of video-infer. */
static const char SEED[] = "hub:\n"
                           "  address: tcp://localhub:1883\n"
                           "  username: test\n"
                           "  password: hahaha\n"
                           "video:\n"
                           "  uri: \"rtsp://admin:admin@192.168.1.2:554/Streaming/channels/1/\"\n"
                           "  limit:\n"
                           "    fps: 1\n"
                           "infer:\n"
                           "  model: var/db/baetyl/model/frozen_inference_graph.pb\n"
                           "  config: var/db/baetyl/model/ssd_mobilenet_v1_coco_2017_11_17.pbtxt\n"
                           "process:\n"
                           "  before:\n"
                           "    swaprb: true\n"
                           "    width: 300\n"
                           "    hight: 300\n"
                           "  after:\n"
                           "    function:\n"
                           "      name: analyse\n"
                           "functions:\n"
                           "  - name: analyse\n"
                           "    address: function-manager:50051\n"
                           "logger:\n"
                           "  path: var/log/baetyl/infer-service.log\n"
                           "  level: \"debug\"\n";

static int load(const char *yaml, vi_config *c, char *err, size_t errlen)
{
    return bt_cfg_load_string(&vi_config_schema, c, yaml, strlen(yaml), err, errlen);
}

static void test_seed_config_and_defaults(void **state)
{
    vi_config c;
    char err[512] = "";
    assert_int_equal(load(SEED, &c, err, sizeof err), 0);
    assert_string_equal(c.video_uri, "rtsp://admin:admin@192.168.1.2:554/Streaming/channels/1/");
    assert_true(c.limit_fps == 1.0);
    assert_string_equal(c.backend, "default");
    assert_string_equal(c.device, "cpu");
    assert_true(c.scale == 1.0);
    assert_true(c.swaprb);
    assert_false(c.crop);
    assert_int_equal(c.width, 300);
    assert_int_equal(c.hight, 300);
    assert_true(c.mean[0] == 0 && c.mean[3] == 0);
    assert_string_equal(c.function_name, "analyse");
    const vi_function_cfg *f = vi_config_function(&c, "analyse");
    assert_non_null(f);
    assert_string_equal(f->address, "function-manager:50051");
    assert_int_equal(f->call.message_max, 4 << 20);
    assert_int_equal(f->call.backoff_max, 60000);
    assert_int_equal(f->call.timeout, 30000);
    assert_null(vi_config_function(&c, "other"));
    assert_null(vi_config_function(&c, NULL));
    bt_cfg_free(&vi_config_schema, &c);
}

static void test_mean_and_crop(void **state)
{
    vi_config c;
    char err[512] = "";
    char yaml[2048];
    snprintf(
        yaml, sizeof yaml, "%s",
        "hub: {address: 'tcp://h:1883', clientid: x}\n"
        "video: {uri: '0'}\n"
        "infer: {model: m.onnx, backend: opencv, device: fp16}\n"
        "process:\n"
        "  before: {scale: 0.007843, crop: true, mean: {v1: 127.5, v2: 127.5, v3: 127.5, v4: 1}}\n"
        "  after: {function: {name: f}}\n"
        "functions: [{name: f, address: '127.0.0.1:50051', timeout: 2s, message: {length: {max: "
        "1m}}}]\n");
    assert_int_equal(load(yaml, &c, err, sizeof err), 0);
    assert_string_equal(c.model_config, ""); /* ONNX needs no config file */
    assert_true(c.mean[0] == 127.5 && c.mean[2] == 127.5 && c.mean[3] == 1);
    assert_true(c.crop);
    assert_true(c.limit_fps == 0);
    assert_string_equal(c.backend, "opencv");
    assert_string_equal(c.device, "fp16");
    const vi_function_cfg *f = vi_config_function(&c, "f");
    assert_int_equal(f->call.timeout, 2000);
    assert_int_equal(f->call.message_max, 1 << 20);
    bt_cfg_free(&vi_config_schema, &c);
}

static void expect_error(const char *from, const char *to, const char *message)
{
    char yaml[4096];
    const char *at = strstr(SEED, from);
    assert_non_null(at);
    snprintf(yaml, sizeof yaml, "%.*s%s%s", (int)(at - SEED), SEED, to, at + strlen(from));
    vi_config c;
    char err[512] = "";
    assert_int_equal(load(yaml, &c, err, sizeof err), -1);
    if (!strstr(err, message))
        fail_msg("expected \"%s\" in \"%s\"", message, err);
}

static void test_errors_name_the_field(void **state)
{
    expect_error("  uri:", "  url:", "video.uri: required");
    expect_error("  model:", "  modl:", "infer.model: required");
    expect_error("  address: tcp", "  adress: tcp", "hub.address: required");
    expect_error("fps: 1", "fps: -2", "video.limit.fps: must be between 0 and 1000");
    expect_error("fps: 1", "fps: fast", "video.limit.fps");
    expect_error("width: 300", "width: -1", "process.before.width: must be between 0 and 16384");
    expect_error("hight: 300", "hight: 99999", "process.before.hight");
    expect_error("    swaprb: true", "    swaprb: maybe", "process.before.swaprb");
    expect_error("infer:\n", "infer:\n  device: tpu\n", "infer.device: must be one of");
    expect_error("infer:\n", "infer:\n  backend: tensorrt\n", "infer.backend: must be one of");
    expect_error("      name: analyse", "      name: other",
                 "process.after.function.name: function (other) not found in functions");
    expect_error("    function:\n      name: analyse\n", "    function: {}\n",
                 "process.after.function.name: required");
    expect_error("    address: function-manager:50051\n", "", "functions[0].address: required");
    expect_error("    address: function-manager:50051\n",
                 "    address: function-manager:50051\n  - name: analyse\n    address: b:1\n",
                 "functions[1].name: function (analyse) is declared twice");
    expect_error("    address: function-manager:50051\n",
                 "    address: function-manager:50051\n    timeout: 0s\n", "functions[0].timeout");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_config_and_defaults),
        cmocka_unit_test(test_mean_and_crop),
        cmocka_unit_test(test_errors_name_the_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
