/* The video-infer config schema (SPEC §16; field names, typos included, are Baetyl 1.0's:
 * `hight`). A config that cannot work is refused at start with the field named. */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const bt_cfg_field function_fields[] = {
    BT_FIELD(vi_function_cfg, name, "name", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(vi_function_cfg, address, "address", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(vi_function_cfg, call, "", BT_CFG_STRUCT, .flags = BT_CFG_INLINE,
             .sub = &bt_fn_client_schema),
    BT_FIELD(vi_function_cfg, ca, "ca", BT_CFG_STRING),
    BT_FIELD(vi_function_cfg, cert, "cert", BT_CFG_STRING),
    BT_FIELD(vi_function_cfg, key, "key", BT_CFG_STRING),
    {0}};
static const bt_cfg_schema function_schema = {sizeof(vi_function_cfg), function_fields, NULL};

const vi_function_cfg *vi_config_function(const vi_config *c, const char *name)
{
    for (size_t i = 0; name && i < c->functions.n; i++) {
        const vi_function_cfg *f = &BT_CFG_AT(c->functions, vi_function_cfg, i);
        if (f->name && strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

/* Function names are unique, and the function called after inference is one of them. */
static int check_config(void *obj, char *err, size_t errlen)
{
    const vi_config *c = obj;
    for (size_t i = 0; i < c->functions.n; i++) {
        const vi_function_cfg *f = &BT_CFG_AT(c->functions, vi_function_cfg, i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(BT_CFG_AT(c->functions, vi_function_cfg, j).name, f->name) == 0) {
                snprintf(err, errlen, "functions[%zu].name: function (%s) is declared twice", i,
                         f->name);
                return -1;
            }
    }
    if (!vi_config_function(c, c->function_name)) {
        snprintf(err, errlen, "process.after.function.name: function (%s) not found in functions",
                 c->function_name ? c->function_name : "");
        return -1;
    }
    return 0;
}

static const bt_cfg_field config_fields[] = {
    BT_FIELD(vi_config, hub, "hub", BT_CFG_STRUCT, .sub = &bt_mqtt_client_schema),
    BT_FIELD(vi_config, video_uri, "video.uri", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(vi_config, limit_fps, "video.limit.fps", BT_CFG_FLOAT, .def = "0",
             .flags = BT_CFG_RANGE, .min = 0, .max = 1000),
    BT_FIELD(vi_config, model, "infer.model", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(vi_config, model_config, "infer.config", BT_CFG_STRING, .def = ""),
    BT_FIELD(vi_config, backend, "infer.backend", BT_CFG_STRING, .def = "default",
             .choices = "default|halide|openvino|opencv|vulkan|cuda"),
    BT_FIELD(vi_config, device, "infer.device", BT_CFG_STRING, .def = "cpu",
             .choices = "cpu|fp32|fp16|vpu|vulkan|fpga|cuda|cuda_fp16"),
    BT_FIELD(vi_config, scale, "process.before.scale", BT_CFG_FLOAT, .def = "1.0"),
    BT_FIELD(vi_config, swaprb, "process.before.swaprb", BT_CFG_BOOL),
    /* 0 = the frame's own size; the upper bound keeps a blob within memory. */
    BT_FIELD(vi_config, width, "process.before.width", BT_CFG_INT, .flags = BT_CFG_RANGE, .min = 0,
             .max = 16384),
    BT_FIELD(vi_config, hight, "process.before.hight", BT_CFG_INT, .flags = BT_CFG_RANGE, .min = 0,
             .max = 16384),
    BT_FIELD(vi_config, mean[0], "process.before.mean.v1", BT_CFG_FLOAT),
    BT_FIELD(vi_config, mean[1], "process.before.mean.v2", BT_CFG_FLOAT),
    BT_FIELD(vi_config, mean[2], "process.before.mean.v3", BT_CFG_FLOAT),
    BT_FIELD(vi_config, mean[3], "process.before.mean.v4", BT_CFG_FLOAT),
    BT_FIELD(vi_config, crop, "process.before.crop", BT_CFG_BOOL),
    BT_FIELD(vi_config, function_name, "process.after.function.name", BT_CFG_STRING,
             .flags = BT_CFG_REQUIRED),
    BT_FIELD(vi_config, functions, "functions", BT_CFG_LIST, .sub = &function_schema),
    BT_FIELD(vi_config, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    {0}};

const bt_cfg_schema vi_config_schema = {sizeof(vi_config), config_fields, check_config};
