/* baetyl-video-infer (SPEC §16): reads frames from a camera, a stream or a file, runs a
 * DNN on each (OpenCV, cv.h), hands the raw float32 output to a function over gRPC, and
 * following the function's JSON answer saves the frame as JPEG and publishes the result
 * to the hub.
 *
 * One thread does the work, frame after frame: a frame is only read when the previous one
 * is done, so a slow network or function lowers the rate instead of queueing frames. A stop
 * (SIGTERM) is noticed between frames and during every wait; a function call in progress
 * ends first (within functions[].timeout). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "after.h"
#include "baetyl/context.h"
#include "baetyl/util.h"
#include "baetyl/function.h"
#include "baetyl/log.h"
#include "baetyl/mqtt_client.h"
#include "config.h"
#include "cv.h"
#include "pace.h"

/* How long to wait before opening the source again after it failed (SPEC §16), and
 * before calling an unreachable function again. */
#define RETRY_MS 1000

typedef struct {
    bt_ctx *ctx;
    const vi_config *cfg;
    vi_blob_params blob;
    vi_net *net;
    bt_fn_client *fn;
    bt_mqtt_client *hub;
} vi_app;

/* Saves the frame as JPEG at location. */
static void save_frame(const vi_frame *frame, const char *location)
{
    char err[512];
    uint8_t *jpg = NULL;
    size_t len = 0;
    if (vi_frame_jpeg(frame, &jpg, &len, err, sizeof err) < 0 ||
        vi_save_file(location, jpg, len, err, sizeof err) < 0)
        bt_logkv(BT_LOG_ERROR, "failed to save image", "error", err, NULL);
    else
        bt_debug("image saved to %s (%zu bytes)", location, len);
    free(jpg);
}

/* The function's answer: keep the frame, publish the result. */
static void after(vi_app *a, const vi_frame *frame, const bt_fn_msg *reply, int64_t capture_ns,
                  int64_t t0, double infer_s)
{
    char err[512];
    vi_result r;
    if (vi_result_parse(reply->payload, reply->payload_len, &r, err, sizeof err) < 0) {
        bt_logkv(BT_LOG_ERROR, "failed to process infer result", "function", a->cfg->function_name,
                 "error", err, NULL);
        return;
    }
    if (!r.discard && r.location)
        save_frame(frame, r.location);
    if (r.topic) {
        vi_image_info info = {
            .width = vi_frame_width(frame),
            .height = vi_frame_height(frame),
            .capture_ns = capture_ns,
            .infer_s = infer_s,
            .process_s = (double)(bt_now_ns() - t0) / 1e9,
        };
        char *msg = vi_result_message(&r, &info, err, sizeof err);
        if (!msg || bt_mqtt_client_publish(a->hub, r.topic, msg, strlen(msg), r.qos, false, NULL,
                                           err, sizeof err) < 0)
            bt_logkv(BT_LOG_ERROR, "failed to publish infer result", "topic", r.topic, "error", err,
                     NULL);
        free(msg);
    }
    vi_result_free(&r);
}

/* One frame: network, function, answer. t0 is when it was read (monotonic). */
static void process_frame(vi_app *a, const vi_frame *frame, int64_t capture_ns, int64_t t0)
{
    char err[512];
    const float *out;
    size_t count;
    int64_t t = bt_now_ns();
    if (vi_net_forward(a->net, frame, &a->blob, &out, &count, err, sizeof err) < 0) {
        bt_logkv(BT_LOG_ERROR, "failed to run inference", "error", err, NULL);
        return;
    }
    double infer_s = (double)(bt_now_ns() - t) / 1e9;

    char invoke_id[37];
    bt_uuid4(invoke_id);
    bt_fn_msg in = {
        .payload = (uint8_t *)out,
        .payload_len = count * sizeof(float),
        .timestamp = capture_ns,
        .function_name = a->cfg->function_name,
        .function_invoke_id = invoke_id,
    };
    bt_fn_msg reply = {0};
    t = bt_now_ns();
    int rc = bt_fn_call(a->fn, &in, &reply, err, sizeof err);
    if (rc < 0) {
        bt_logkv(BT_LOG_ERROR, "failed to call function", "function", a->cfg->function_name,
                 "error", err, NULL);
        /* An unreachable function would otherwise be called at the frame rate: wait up to
         * RETRY_MS for its server, the client dialling again every few ms meanwhile. */
        if (rc == BT_FN_EUNAVAILABLE && !bt_ctx_stopped(a->ctx))
            bt_fn_client_connect(a->fn, RETRY_MS, err, sizeof err);
        return;
    }
    if (bt_log_enabled(BT_LOG_DEBUG))
        bt_debug("frame %dx%d: inference %.3fs (%zu floats), function %.3fs (%zu bytes)",
                 vi_frame_width(frame), vi_frame_height(frame), infer_s, count,
                 (double)(bt_now_ns() - t) / 1e9, reply.payload_len);
    after(a, frame, &reply, capture_ns, t0, infer_s);
    bt_fn_msg_clear(&reply);
}

/* Opens the source and sets its pace; NULL (logged) when it cannot be opened. */
static vi_capture *open_source(vi_app *a, vi_pace *pace)
{
    char err[512];
    const char *uri = a->cfg->video_uri;
    vi_capture *cap = vi_capture_open(uri, err, sizeof err);
    if (!cap) {
        bt_logkv(BT_LOG_ERROR, "failed to open video, retrying in 1s", "uri", uri, "error", err,
                 NULL);
        return NULL;
    }
    double fps = vi_capture_fps(cap);
    vi_pace_init(pace, vi_source_kind_of(uri), fps, a->cfg->limit_fps, bt_now_ns());
    int w, h;
    vi_capture_size(cap, &w, &h);
    bt_info("video opened: uri=%s fps=%g width=%d height=%d skip=%ld", uri,
            pace->fps_known ? fps : 0.0, w, h, pace->skip);
    return cap;
}

/* Reads and processes frames until a stop is asked. */
static int loop(vi_app *a)
{
    vi_frame *frame = vi_frame_new();
    if (!frame) {
        bt_error("out of memory");
        return 1;
    }
    vi_capture *cap = NULL;
    vi_pace pace;
    char err[512];
    while (!bt_ctx_stopped(a->ctx)) {
        if (!cap && !(cap = open_source(a, &pace))) {
            bt_ctx_sleep(a->ctx, RETRY_MS);
            continue;
        }
        int64_t wait = vi_pace_wait(&pace, bt_now_ns());
        if (wait > 0 && bt_ctx_sleep(a->ctx, (wait + 999999) / 1000000))
            break;
        if (vi_capture_grab(cap) < 0) {
            /* A file's end reads the same: it plays again from the start. */
            bt_logkv(BT_LOG_WARN, "failed to read video, reopening in 1s", "uri", a->cfg->video_uri,
                     NULL);
            vi_capture_close(cap);
            cap = NULL;
            bt_ctx_sleep(a->ctx, RETRY_MS);
            continue;
        }
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        int64_t capture_ns = (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec;
        int64_t t0 = bt_now_ns();
        if (!vi_pace_take(&pace, t0))
            continue;
        if (vi_capture_retrieve(cap, frame, err, sizeof err) < 0) {
            bt_logkv(BT_LOG_WARN, "failed to read video", "error", err, NULL);
            continue;
        }
        process_frame(a, frame, capture_ns, t0);
    }
    vi_capture_close(cap);
    vi_frame_free(frame);
    return 0;
}

/* The model files must exist: a clearer error than the one OpenCV gives. */
static int check_file(const char *field, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(err, errlen, "%s: %s: %s", field, path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: %s: not a file", field, path);
        return -1;
    }
    return 0;
}

static vi_net *load_net(const vi_config *cfg, char *err, size_t errlen)
{
    if (check_file("infer.model", cfg->model, err, errlen) < 0 ||
        (cfg->model_config && *cfg->model_config &&
         check_file("infer.config", cfg->model_config, err, errlen) < 0))
        return NULL;
    return vi_net_load(cfg->model, cfg->model_config, cfg->backend, cfg->device, err, errlen);
}

static int run(bt_ctx *ctx)
{
    vi_config cfg;
    char err[1024];
    if (bt_ctx_load_config(ctx, &vi_config_schema, &cfg, err, sizeof err) < 0)
        return 1;
    vi_app a = {
        .ctx = ctx,
        .cfg = &cfg,
        .blob = {.scale = cfg.scale,
                 .width = (int)cfg.width,
                 .height = (int)cfg.hight,
                 .mean = {cfg.mean[0], cfg.mean[1], cfg.mean[2], cfg.mean[3]},
                 .swaprb = cfg.swaprb,
                 .crop = cfg.crop},
    };
    int rc = 1;
    /* The seed's config has no hub.clientid, yet a persistent session needs one: this
     * instance's name is unique. */
    if ((!cfg.hub.clientid || !*cfg.hub.clientid) && !cfg.hub.cleansession) {
        free(cfg.hub.clientid);
        const char *id = ctx->env.instance_name ? ctx->env.instance_name : ctx->service_name;
        if (!(cfg.hub.clientid = strdup(id ? id : "video-infer"))) {
            bt_error("out of memory");
            goto out;
        }
    }
    vi_cv_init();
    if (!(a.net = load_net(&cfg, err, sizeof err))) {
        bt_logkv(BT_LOG_ERROR, "failed to load the model", "error", err, NULL);
        if (bt_log_is_file())
            fprintf(stderr, "failed to load the model: %s\n", err);
        goto out;
    }
    bt_info("model loaded: %s (backend %s, device %s)", cfg.model, cfg.backend, cfg.device);

    /* backoff.max (Baetyl 1.0's gRPC reconnect backoff) is accepted but the SDK client
     * dials again at the next call, which suits a local function server better. */
    const vi_function_cfg *f = vi_config_function(&cfg, cfg.function_name);
    bt_fn_client_options fo = bt_fn_client_config_options(&f->call);
    fo.ca = f->ca;
    fo.cert = f->cert;
    fo.key = f->key;
    if (!(a.fn = bt_fn_client_new(f->address, &fo, err, sizeof err))) {
        bt_logkv(BT_LOG_ERROR, "failed to create the function client", "function", f->name, "error",
                 err, NULL);
        goto out;
    }
    if (!(a.hub = bt_mqtt_client_create(&cfg.hub, NULL, err, sizeof err)) ||
        bt_mqtt_client_start(a.hub, err, sizeof err) < 0) {
        bt_logkv(BT_LOG_ERROR, "failed to create the hub client", "error", err, NULL);
        goto out;
    }
    rc = loop(&a);
out:
    bt_mqtt_client_destroy(a.hub); /* flushes what is queued, then DISCONNECT */
    bt_fn_client_free(a.fn);
    vi_net_free(a.net);
    bt_cfg_free(&vi_config_schema, &cfg);
    return rc;
}

int main(int argc, char **argv)
{
    static const bt_module_info info = {
        "reads video, runs a DNN on each frame and publishes what a function makes of it", NULL};
    return bt_run_module(&info, argc, argv, run);
}
