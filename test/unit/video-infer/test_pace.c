/* video-infer frame pacing (pace.h): the seed's skip rule, real-time playback of files and
 * the time gate for sources without a known rate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>

#include <cmocka.h>

#include "../../../video-infer/pace.h"

#define MS 1000000LL

static void test_source_kinds(void **state)
{
    int i = -1;
    assert_int_equal(vi_source_kind_of("0"), VI_SOURCE_CAMERA);
    assert_true(vi_source_camera_index("0", &i));
    assert_int_equal(i, 0);
    assert_true(vi_source_camera_index("12", &i));
    assert_int_equal(i, 12);
    assert_int_equal(vi_source_kind_of("rtsp://admin:admin@192.168.1.2:554/Streaming/channels/1/"),
                     VI_SOURCE_STREAM);
    assert_int_equal(vi_source_kind_of("http://cam/video.mjpg"), VI_SOURCE_STREAM);
    assert_int_equal(vi_source_kind_of("var/db/baetyl/video/a.mp4"), VI_SOURCE_FILE);
    assert_int_equal(vi_source_kind_of("frames/frame_%03d.png"), VI_SOURCE_FILE);
    /* Not an index: too long, signed, empty or mixed. */
    assert_false(vi_source_camera_index("12345", &i));
    assert_false(vi_source_camera_index("-1", &i));
    assert_false(vi_source_camera_index("", &i));
    assert_false(vi_source_camera_index("1a", &i));
    assert_false(vi_source_camera_index(NULL, &i));
    assert_int_equal(vi_source_kind_of("1a"), VI_SOURCE_FILE);
}

static long skip_of(double src, double limit)
{
    vi_pace p;
    vi_pace_init(&p, VI_SOURCE_CAMERA, src, limit, 0);
    return p.skip;
}

static void test_seed_skip_rule(void **state)
{
    /* Ceil(N/M) - 1 */
    assert_int_equal(skip_of(25, 1), 24);
    assert_int_equal(skip_of(30, 10), 2);
    assert_int_equal(skip_of(30, 7), 4);
    assert_int_equal(skip_of(10, 2), 4);
    assert_int_equal(skip_of(29.97, 10), 2);
    assert_int_equal(skip_of(10, 20), 0); /* the source is slower than the limit */
    assert_int_equal(skip_of(25, 0), 0);  /* no limit */
    /* An unknown rate skips nothing by count: the time gate applies instead. */
    vi_pace p;
    vi_pace_init(&p, VI_SOURCE_STREAM, 90000, 5, 0);
    assert_false(p.fps_known);
    assert_int_equal(p.skip, 0);
    assert_int_equal(p.gate_ns, 200 * MS);
    vi_pace_init(&p, VI_SOURCE_STREAM, NAN, 5, 0);
    assert_false(p.fps_known);
    vi_pace_init(&p, VI_SOURCE_CAMERA, 30, 5, 0);
    assert_true(p.fps_known);
    assert_int_equal(p.gate_ns, 0);
    assert_int_equal(p.frame_ns, 0); /* a camera is never paced by us */
}

/* A 10 fps file limited to 2 fps: read one frame each 100 ms, process every fifth. */
static void test_file_plays_in_real_time(void **state)
{
    vi_pace p;
    int64_t now = 1000 * MS;
    vi_pace_init(&p, VI_SOURCE_FILE, 10, 2, now);
    assert_int_equal(p.frame_ns, 100 * MS);
    int taken = 0;
    for (int i = 0; i < 50; i++) {
        int64_t w = vi_pace_wait(&p, now);
        assert_true(w >= 0 && w <= 100 * MS);
        now += w;
        if (vi_pace_take(&p, now)) {
            assert_int_equal(i % 5, 0);
            taken++;
        }
    }
    /* 50 frames = 5 s of video, 10 processed: 2 a second. */
    assert_int_equal(taken, 10);
    assert_true(now >= 1000 * MS + 4900 * MS && now <= 1000 * MS + 5000 * MS);
    /* Reading right away again must wait for the next frame's time. */
    assert_int_equal(vi_pace_wait(&p, now), 100 * MS);
}

static void test_file_resyncs_after_a_stall(void **state)
{
    vi_pace p;
    int64_t now = 0;
    vi_pace_init(&p, VI_SOURCE_FILE, 10, 0, now);
    assert_true(vi_pace_take(&p, now));
    now += 5000 * MS; /* a function call took 5 s */
    assert_true(vi_pace_take(&p, now));
    /* Not 50 frames of backlog read at full speed: the next one is a frame away. */
    assert_int_equal(vi_pace_wait(&p, now), 100 * MS);
}

static void test_file_without_rate_reads_at_the_limit(void **state)
{
    vi_pace p;
    vi_pace_init(&p, VI_SOURCE_FILE, 0, 4, 0);
    assert_int_equal(p.frame_ns, 250 * MS);
    assert_int_equal(p.gate_ns, 0);
    assert_int_equal(p.skip, 0);
    vi_pace_init(&p, VI_SOURCE_FILE, 0, 0, 0);
    assert_int_equal(p.frame_ns, 0); /* no rate, no limit: as fast as frames come */
    assert_int_equal(vi_pace_wait(&p, 0), 0);
}

/* A stream of unknown rate delivering 30 frames a second, limited to 10. */
static void test_time_gate(void **state)
{
    vi_pace p;
    int64_t t0 = 7 * MS;
    vi_pace_init(&p, VI_SOURCE_STREAM, 0, 10, t0);
    int64_t last = -1;
    int taken = 0;
    for (int i = 0; i < 300; i++) { /* 10 s */
        int64_t now = t0 + i * 1000 * MS / 30;
        assert_int_equal(vi_pace_wait(&p, now), 0); /* a live source is never waited for */
        if (vi_pace_take(&p, now)) {
            if (last >= 0)
                assert_true(now - last >= 50 * MS); /* never closer than half a gap */
            last = now;
            taken++;
        }
    }
    assert_true(taken <= 101);
    assert_true(taken >= 90);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_kinds),
        cmocka_unit_test(test_seed_skip_rule),
        cmocka_unit_test(test_file_plays_in_real_time),
        cmocka_unit_test(test_file_resyncs_after_a_stall),
        cmocka_unit_test(test_file_without_rate_reads_at_the_limit),
        cmocka_unit_test(test_time_gate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
