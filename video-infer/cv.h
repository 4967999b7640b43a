/* The OpenCV part of video-infer behind a C interface (cv.cpp is the one C++ file: OpenCV 4
 * has no C API for video capture or DNN). No C++ exception crosses it: every failure is a
 * return code and a message in err. */
#ifndef VI_CV_H
#define VI_CV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vi_capture vi_capture; /* an open video source */
typedef struct vi_frame vi_frame;     /* one BGR image */
typedef struct vi_net vi_net;         /* a loaded network */

/* process.before: how a frame becomes the network's input (cv::dnn::blobFromImage). */
typedef struct {
    double scale;
    int width, height; /* 0 = the frame's own size */
    double mean[4];
    bool swaprb;
    bool crop;
} vi_blob_params;

/* Keeps OpenCV's own log lines to errors (ours say what failed). */
void vi_cv_init(void);

/* Opens a camera (uri all digits: its index, through V4L2), a stream URL or a file (through
 * FFmpeg), or an image sequence (a path with a printf pattern: frame_%03d.png). NULL with
 * err ("<uri>: No such file or directory" for a missing file). */
vi_capture *vi_capture_open(const char *uri, char *err, size_t errlen);
/* The frame rate the source reports (0 or junk when it does not know). */
double vi_capture_fps(const vi_capture *c);
/* Frame size the source reports (0 when unknown). */
void vi_capture_size(const vi_capture *c, int *width, int *height);
/* Takes the next frame from the source without decoding it. 0, or -1 at the end or on
 * a read error. */
int vi_capture_grab(vi_capture *c);
/* Decodes the frame last grabbed into f. 0, or -1 with err (also for an empty frame). */
int vi_capture_retrieve(vi_capture *c, vi_frame *f, char *err, size_t errlen);
/* Closes the source (NULL is fine). */
void vi_capture_close(vi_capture *c);

/* An empty frame, or NULL when out of memory. */
vi_frame *vi_frame_new(void);
/* Width and height in pixels (0 for an empty frame). */
int vi_frame_width(const vi_frame *f);
int vi_frame_height(const vi_frame *f);
/* The frame as JPEG in a malloc'd *buf of *len bytes. 0, or -1 with err. */
int vi_frame_jpeg(const vi_frame *f, uint8_t **buf, size_t *len, char *err, size_t errlen);
/* Frees a frame (NULL is fine). */
void vi_frame_free(vi_frame *f);

/* Loads a network (cv::dnn::readNet: Caffe, TensorFlow, Darknet, ONNX, … chosen by the
 * files' extensions; config may be "" when the format needs none) and sets its backend
 * and target from infer.backend/device names (config.h). NULL with err. */
vi_net *vi_net_load(const char *model, const char *config, const char *backend, const char *device,
                    char *err, size_t errlen);
/* Runs the network on a frame: *out points at *count float32 values (the first output),
 * valid until the next call or vi_net_free. 0, or -1 with err. */
int vi_net_forward(vi_net *n, const vi_frame *f, const vi_blob_params *p, const float **out,
                   size_t *count, char *err, size_t errlen);
/* Frees a network (NULL is fine). */
void vi_net_free(vi_net *n);

#ifdef __cplusplus
}
#endif

#endif
