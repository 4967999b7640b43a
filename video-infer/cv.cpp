// The OpenCV side of video-infer (cv.h): video capture, JPEG encoding and DNN inference.
// Every entry point catches what OpenCV throws and turns it into an error message.
#include "cv.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include <sys/stat.h>

#include "pace.h"

struct vi_capture {
    cv::VideoCapture cap;
};

struct vi_frame {
    cv::Mat img;
};

struct vi_net {
    cv::dnn::Net net;
    cv::Mat blob;
    cv::Mat out;
};

namespace
{

void set_err(char *err, size_t errlen, const char *what, const char *why)
{
    if (err && errlen)
        std::snprintf(err, errlen, "%s: %s", what, why);
}

// cv::Exception::what() spans several lines with file and function; err is the reason.
const char *reason(const cv::Exception &e)
{
    return e.err.empty() ? e.what() : e.err.c_str();
}

bool parse_backend(const char *s, int *v)
{
    static const struct {
        const char *name;
        int value;
    } table[] = {
        {"default", cv::dnn::DNN_BACKEND_DEFAULT},
        {"halide", cv::dnn::DNN_BACKEND_HALIDE},
        {"openvino", cv::dnn::DNN_BACKEND_INFERENCE_ENGINE},
        {"opencv", cv::dnn::DNN_BACKEND_OPENCV},
        {"vulkan", cv::dnn::DNN_BACKEND_VKCOM},
        {"cuda", cv::dnn::DNN_BACKEND_CUDA},
    };
    if (!s || !*s)
        s = "default";
    for (const auto &t : table)
        if (std::strcmp(s, t.name) == 0) {
            *v = t.value;
            return true;
        }
    return false;
}

bool parse_target(const char *s, int *v)
{
    static const struct {
        const char *name;
        int value;
    } table[] = {
        {"cpu", cv::dnn::DNN_TARGET_CPU},          {"fp32", cv::dnn::DNN_TARGET_OPENCL},
        {"fp16", cv::dnn::DNN_TARGET_OPENCL_FP16}, {"vpu", cv::dnn::DNN_TARGET_MYRIAD},
        {"vulkan", cv::dnn::DNN_TARGET_VULKAN},    {"fpga", cv::dnn::DNN_TARGET_FPGA},
        {"cuda", cv::dnn::DNN_TARGET_CUDA},        {"cuda_fp16", cv::dnn::DNN_TARGET_CUDA_FP16},
    };
    if (!s || !*s)
        s = "cpu";
    for (const auto &t : table)
        if (std::strcmp(s, t.name) == 0) {
            *v = t.value;
            return true;
        }
    return false;
}

} // namespace

extern "C" {

void vi_cv_init(void)
{
    try {
        cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
    } catch (...) {
    }
}

vi_capture *vi_capture_open(const char *uri, char *err, size_t errlen)
{
    vi_capture *c = new (std::nothrow) vi_capture;
    struct stat st;
    if (!c) {
        set_err(err, errlen, "open video", "out of memory");
        return nullptr;
    }
    try {
        // One backend per kind of source: with CAP_ANY OpenCV tries every backend in turn
        // (gphoto2 among them, which leaks at each try) and logs each failure.
        int index;
        bool ok;
        vi_source_kind kind = vi_source_kind_of(uri);
        if (kind == VI_SOURCE_CAMERA && vi_source_camera_index(uri, &index)) {
            ok = c->cap.open(index, cv::CAP_V4L2);
        } else if (kind == VI_SOURCE_FILE && std::strchr(uri, '%')) {
            ok = c->cap.open(std::string(uri), cv::CAP_IMAGES); // frame_%03d.png
        } else if (kind == VI_SOURCE_FILE && stat(uri, &st) < 0) {
            set_err(err, errlen, uri, std::strerror(errno));
            delete c;
            return nullptr;
        } else {
            ok = c->cap.open(std::string(uri), cv::CAP_FFMPEG);
        }
        if (ok && c->cap.isOpened())
            return c;
        set_err(err, errlen, uri, "cannot open the video source");
    } catch (const cv::Exception &e) {
        set_err(err, errlen, uri, reason(e));
    } catch (const std::exception &e) {
        set_err(err, errlen, uri, e.what());
    } catch (...) {
        set_err(err, errlen, uri, "cannot open the video source");
    }
    delete c;
    return nullptr;
}

double vi_capture_fps(const vi_capture *c)
{
    try {
        return c->cap.get(cv::CAP_PROP_FPS);
    } catch (...) {
        return 0;
    }
}

void vi_capture_size(const vi_capture *c, int *width, int *height)
{
    try {
        *width = (int)c->cap.get(cv::CAP_PROP_FRAME_WIDTH);
        *height = (int)c->cap.get(cv::CAP_PROP_FRAME_HEIGHT);
    } catch (...) {
        *width = *height = 0;
    }
}

int vi_capture_grab(vi_capture *c)
{
    try {
        return c->cap.grab() ? 0 : -1;
    } catch (...) {
        return -1;
    }
}

int vi_capture_retrieve(vi_capture *c, vi_frame *f, char *err, size_t errlen)
{
    try {
        if (c->cap.retrieve(f->img) && !f->img.empty())
            return 0;
        set_err(err, errlen, "read video", "empty frame");
    } catch (const cv::Exception &e) {
        set_err(err, errlen, "read video", reason(e));
    } catch (const std::exception &e) {
        set_err(err, errlen, "read video", e.what());
    }
    return -1;
}

void vi_capture_close(vi_capture *c)
{
    if (!c)
        return;
    try {
        c->cap.release();
    } catch (...) {
    }
    delete c;
}

vi_frame *vi_frame_new(void)
{
    return new (std::nothrow) vi_frame;
}

int vi_frame_width(const vi_frame *f)
{
    return f->img.cols;
}

int vi_frame_height(const vi_frame *f)
{
    return f->img.rows;
}

int vi_frame_jpeg(const vi_frame *f, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
    try {
        std::vector<uchar> out;
        if (f->img.empty() || !cv::imencode(".jpg", f->img, out)) {
            set_err(err, errlen, "encode JPEG", "no image");
            return -1;
        }
        uint8_t *p = static_cast<uint8_t *>(std::malloc(out.size() ? out.size() : 1));
        if (!p) {
            set_err(err, errlen, "encode JPEG", "out of memory");
            return -1;
        }
        std::memcpy(p, out.data(), out.size());
        *buf = p;
        *len = out.size();
        return 0;
    } catch (const cv::Exception &e) {
        set_err(err, errlen, "encode JPEG", reason(e));
    } catch (const std::exception &e) {
        set_err(err, errlen, "encode JPEG", e.what());
    }
    return -1;
}

void vi_frame_free(vi_frame *f)
{
    delete f;
}

vi_net *vi_net_load(const char *model, const char *config, const char *backend, const char *device,
                    char *err, size_t errlen)
{
    int b, t;
    if (!parse_backend(backend, &b)) {
        set_err(err, errlen, "infer.backend", "unknown backend");
        return nullptr;
    }
    if (!parse_target(device, &t)) {
        set_err(err, errlen, "infer.device", "unknown device");
        return nullptr;
    }
    vi_net *n = new (std::nothrow) vi_net;
    if (!n) {
        set_err(err, errlen, "infer", "out of memory");
        return nullptr;
    }
    std::string what = std::string("infer.model: cannot load ") + model;
    try {
        n->net = cv::dnn::readNet(model, config ? config : "");
        if (n->net.empty()) {
            set_err(err, errlen, what.c_str(), "the network has no layers");
            delete n;
            return nullptr;
        }
        n->net.setPreferableBackend(b);
        n->net.setPreferableTarget(t);
        return n;
    } catch (const cv::Exception &e) {
        set_err(err, errlen, what.c_str(), reason(e));
    } catch (const std::exception &e) {
        set_err(err, errlen, what.c_str(), e.what());
    }
    delete n;
    return nullptr;
}

int vi_net_forward(vi_net *n, const vi_frame *f, const vi_blob_params *p, const float **out,
                   size_t *count, char *err, size_t errlen)
{
    try {
        cv::Size size(p->width > 0 ? p->width : f->img.cols,
                      p->height > 0 ? p->height : f->img.rows);
        cv::Scalar mean(p->mean[0], p->mean[1], p->mean[2], p->mean[3]);
        cv::dnn::blobFromImage(f->img, n->blob, p->scale, size, mean, p->swaprb, p->crop);
        n->net.setInput(n->blob);
        cv::Mat m = n->net.forward();
        // The payload is the raw float32 output: make sure it is float and contiguous.
        if (m.depth() != CV_32F)
            m.convertTo(n->out, CV_32F);
        else if (!m.isContinuous())
            n->out = m.clone();
        else
            n->out = m;
        *out = n->out.ptr<float>();
        *count = n->out.total() * (size_t)n->out.channels();
        return 0;
    } catch (const cv::Exception &e) {
        set_err(err, errlen, "inference", reason(e));
    } catch (const std::exception &e) {
        set_err(err, errlen, "inference", e.what());
    }
    return -1;
}

void vi_net_free(vi_net *n)
{
    delete n;
}

} // extern "C"
