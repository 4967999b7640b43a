/* Frame pacing: which frames of a source are processed so that at most video.limit.fps
 * frames a second are (SPEC §16, the seed's rule: a source of N fps with a limit of M skips
 * Ceil(N/M) - 1 frames after each one it processes).
 *
 * Decided here: a video file is played at its own frame rate, as a camera would deliver
 * it, so the limit means the same for files and cameras (otherwise a file would be read
 * as fast as the CPU allows). A source that reports no usable frame rate (some RTSP
 * streams, image sequences) is limited by time instead: at most one frame each 1/M s. */
#ifndef VI_PACE_H
#define VI_PACE_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    VI_SOURCE_CAMERA, /* a device index: "0" = /dev/video0 */
    VI_SOURCE_STREAM, /* a URL: rtsp://, http://, … */
    VI_SOURCE_FILE,   /* anything else: a video file or an image sequence (frame_%03d.png) */
} vi_source_kind;

/* The pace of one opened source (times are CLOCK_MONOTONIC nanoseconds). */
typedef struct {
    vi_source_kind kind;
    double source_fps; /* as reported; usable only when fps_known */
    bool fps_known;
    long skip;         /* frames dropped after each processed one */
    int64_t frame_ns;  /* files: one frame read per frame_ns (0 = as fast as they come) */
    int64_t gate_ns;   /* unknown rate: least gap between processed frames (0 = none) */
    uint64_t count;    /* frames read since the source was opened */
    int64_t next_read; /* files: when the next frame may be read */
    int64_t next_take; /* with gate_ns: when the next frame may be processed */
} vi_pace;

/* The kind of source a video.uri names. */
vi_source_kind vi_source_kind_of(const char *uri);
/* True when uri is a camera index ("0", "1", …), stored in *index. */
bool vi_source_camera_index(const char *uri, int *index);
/* Sets up the pace of a source just opened at time now. */
void vi_pace_init(vi_pace *p, vi_source_kind kind, double source_fps, double limit_fps,
                  int64_t now);
/* Nanoseconds to wait before reading the next frame (0 = read now). */
int64_t vi_pace_wait(const vi_pace *p, int64_t now);
/* Records a frame read at time now; true when that frame is to be processed. */
bool vi_pace_take(vi_pace *p, int64_t now);

#ifdef __cplusplus
}
#endif

#endif
