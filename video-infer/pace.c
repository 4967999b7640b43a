/* Frame pacing (pace.h): the seed's skip rule for sources with a known rate, real-time
 * playback of files, and a time gate for sources whose rate is unknown. */
#include "pace.h"

#include <math.h>
#include <string.h>

#define NS 1000000000.0
/* A rate above this is a backend's placeholder (RTSP often reports 90000), not a rate. */
#define MAX_SOURCE_FPS 1000.0
/* A file that fell behind by more than this (a slow function call) resynchronises instead
 * of reading the backlog at full speed. */
#define MAX_LAG_NS 1000000000LL

bool vi_source_camera_index(const char *uri, int *index)
{
    size_t n = uri ? strlen(uri) : 0;
    if (n == 0 || n > 4 || strspn(uri, "0123456789") != n)
        return false;
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (uri[i] - '0');
    *index = v;
    return true;
}

vi_source_kind vi_source_kind_of(const char *uri)
{
    int index;
    if (vi_source_camera_index(uri, &index))
        return VI_SOURCE_CAMERA;
    if (uri && strstr(uri, "://"))
        return VI_SOURCE_STREAM;
    return VI_SOURCE_FILE;
}

void vi_pace_init(vi_pace *p, vi_source_kind kind, double source_fps, double limit_fps, int64_t now)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->source_fps = source_fps;
    p->fps_known = isfinite(source_fps) && source_fps > 0 && source_fps <= MAX_SOURCE_FPS;
    bool limited = isfinite(limit_fps) && limit_fps > 0;
    if (limited && p->fps_known) {
        /* Ceil(N/M) - 1; the epsilon keeps 30/10 at 3 despite rounding. */
        double k = ceil(source_fps / limit_fps - 1e-9) - 1;
        p->skip = k > 0 ? (long)k : 0;
    } else if (limited) {
        p->gate_ns = (int64_t)(NS / limit_fps);
    }
    if (kind == VI_SOURCE_FILE) {
        if (p->fps_known)
            p->frame_ns = (int64_t)(NS / source_fps);
        else if (limited)
            p->frame_ns = p->gate_ns; /* one frame per allowed slot: none is read in vain */
        p->gate_ns = 0;               /* the read pace is the limit already */
    }
    p->next_read = now;
    p->next_take = now;
}

int64_t vi_pace_wait(const vi_pace *p, int64_t now)
{
    if (p->frame_ns <= 0 || p->next_read <= now)
        return 0;
    return p->next_read - now;
}

bool vi_pace_take(vi_pace *p, int64_t now)
{
    if (p->frame_ns > 0) {
        p->next_read += p->frame_ns;
        if (p->next_read < now - MAX_LAG_NS)
            p->next_read = now + p->frame_ns;
    }
    bool take = p->count % (uint64_t)(p->skip + 1) == 0;
    p->count++;
    if (!take || p->gate_ns <= 0)
        return take;
    if (now < p->next_take)
        return false;
    /* Lateness up to half a gap is credited so the average rate stays near the limit
     * without ever exceeding it; two frames are never closer than half a gap. */
    int64_t late = now - p->next_take;
    if (late > p->gate_ns / 2)
        late = p->gate_ns / 2;
    p->next_take = now + p->gate_ns - late;
    return true;
}
