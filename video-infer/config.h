/* The video-infer config (SPEC §16): the hub, the video source, the network, the
 * pre-processing of each frame and the function that reads the network's output. */
#ifndef VI_CONFIG_H
#define VI_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "baetyl/config.h"
#include "baetyl/function_config.h"
#include "baetyl/log.h"
#include "baetyl/mqtt_client.h"

/* One entry of `functions:`: where a function is served (a function-manager's gRPC
 * server or a runtime instance) and how to call it. */
typedef struct {
    char *name;
    char *address;            /* host:port */
    bt_fn_client_config call; /* message.length.max, backoff.max (accepted for 1.0
                               * configs; see main.c), timeout: deadline of one call */
    char *ca, *cert, *key;    /* optional TLS to the function server */
} vi_function_cfg;

typedef struct {
    bt_mqtt_client_config hub;
    char *video_uri;       /* video.uri: "0" (a camera index), rtsp://…, or a file */
    double limit_fps;      /* video.limit.fps: frames processed per second at most; 0 = all */
    char *model;           /* infer.model */
    char *model_config;    /* infer.config ("" for formats that need none, e.g. ONNX) */
    char *backend;         /* infer.backend: default|halide|openvino|opencv|vulkan|cuda */
    char *device;          /* infer.device: cpu|fp32|fp16|vpu|vulkan|fpga|cuda|cuda_fp16 */
    double scale;          /* process.before.scale, 1.0 */
    bool swaprb;           /* process.before.swaprb */
    long width, hight;     /* process.before.width/hight: blob size (0 = the frame's) */
    double mean[4];        /* process.before.mean.v1..v4 */
    bool crop;             /* process.before.crop */
    char *function_name;   /* process.after.function.name */
    bt_cfg_list functions; /* of vi_function_cfg */
    bt_logger_config logger;
} vi_config;

/* Schema of vi_config; its check also requires process.after.function.name to be one
 * of functions[].name. */
extern const bt_cfg_schema vi_config_schema;

/* The functions[] entry named name, or NULL. */
const vi_function_cfg *vi_config_function(const vi_config *c, const char *name);

#endif
