"""Acceptance tests of video-infer (SPEC §16, seed chapter 11), written from SPEC.md and the seed only, for what
test_video_infer.py leaves out (its harness is reused)."""
import base64
import json
import os
import re
import subprocess
import time
import uuid

import pytest

from conftest import wait_for
from test_agent import (AGENT_SVC, AGENT_VOLS, CLIENT_ID, DESIRE, V1, agent_conf, app,  # noqa: F401
                        certs, env, make_zip, md5_b64)
from test_master_docker import (DATA, box, dinspect, dmaster, docker, docker_engine,  # noqa: F401
                                images, labelled, master_id, no_leftovers)
from master_harness import SLEEPER, master  # noqa: F401
from test_video_infer import (HEIGHT, WIDTH, Sub, VideoInfer, media, rfc3339_to_unix,  # noqa: F401
                              stack, vi_conf)



# =========================================================================================
# video-infer (SPEC §16, seed chapter 11)
# =========================================================================================

IMAGE_KEYS = {"imageWidth", "imageHight", "imageCaptureTime", "imageInferenceTime", "imageProcessTime"}

# The seed's chapter 11 function, on this test's one-filter network (the mean of the
# output stands for the detection score): no publishQOS, imageLocation relative to the
# work dir and only when something is found, messageTimestamp turned into milliseconds.
SEED_FUNCTION = '''
import numpy as np

location = "var/db/baetyl/image/{}.jpg"


def handler(event, context):
    data = np.frombuffer(event, np.float32)
    score = float(data.mean())
    objects = []
    if score > 0.5:
        objects.append({"class": "person", "score": score, "left": 0.0, "top": 0.0,
                        "right": 1.0, "bottom": 1.0})
    res = {}
    res["imageDiscard"] = len(objects) == 0
    res["imageObjects"] = objects
    res["imageScores"] = {"person": score}
    res["publishTopic"] = "video/infer/result"
    res["messageTimestamp"] = int(context["messageTimestamp"] / 1000000)
    if len(objects) != 0:
        res["imageLocation"] = location.format(context["messageTimestamp"])
    return res
'''

# Answers a user's function may get wrong, in turn with a good one.
HOSTILE_FUNCTION = '''
import itertools

_n = itertools.count()
BAD = [
    [1, 2, 3],
    "just a string",
    b"\\xff\\xfe not json",
    {"publishTopic": "bad/+/topic"},
    {"publishTopic": "bad/#"},
    {"publishTopic": 7},
    {"publishTopic": "bad/qos", "publishQOS": 2},
    {"publishTopic": "bad/qos", "publishQOS": "one"},
    {"publishTopic": "", "imageDiscard": False, "imageLocation": ""},
    {},
]


def handler(event, context):
    i = next(_n)
    if i % 2:
        return {"publishTopic": "good/result", "n": i}
    return BAD[(i // 2) % len(BAD)]
'''


def write_code(media, name, text):
    with open(os.path.join(media["code"], name), "w") as f:
        f.write(text)


def test_seed_function_message_keys_qos_and_relative_location(stack, media):
    write_code(media, "seedfn.py", SEED_FUNCTION)
    t0 = time.time()
    vi, sub, _, _ = stack(handler="seedfn.handler")
    msgs = sub.collect(8, timeout=40)
    t1 = time.time()
    found = 0
    for topic, qos, payload, _ in msgs:
        assert topic == "video/infer/result"
        assert qos == 0, "no publishQOS: QoS 0"
        m = json.loads(payload)
        fn_keys = {"imageDiscard", "imageObjects", "imageScores", "publishTopic", "messageTimestamp"}
        if m["imageObjects"]:
            fn_keys.add("imageLocation")
        assert set(m) == fn_keys | IMAGE_KEYS, sorted(m)
        assert (m["imageWidth"], m["imageHight"]) == (WIDTH, HEIGHT)
        captured = rfc3339_to_unix(m["imageCaptureTime"])
        assert t0 - 1 <= captured <= t1 + 1
        # Timestamp was the capture time in unix ns: the function's ms agree with it
        assert 0 <= captured * 1000 - m["messageTimestamp"] < 2, (captured, m["messageTimestamp"])
        for k in ("imageInferenceTime", "imageProcessTime"):
            assert isinstance(m[k], (int, float)) and 0 <= m[k] < 10
        if m["imageObjects"]:
            found += 1
            assert m["imageDiscard"] is False
            # relative to video-infer's work dir, directories made as needed
            path = os.path.join(vi.dir, m["imageLocation"])
            wait_for(lambda: os.path.exists(path), 5, what=path)
            with open(path, "rb") as f:
                assert f.read(3) == b"\xff\xd8\xff"
        else:
            assert m["imageDiscard"] is True
    assert 2 <= found <= 6, found
    saved = os.listdir(os.path.join(vi.dir, "var/db/baetyl/image"))
    assert all(n.endswith(".jpg") for n in saved) and len(saved) >= found


def test_hostile_function_answers(stack, media):
    """Every malformed answer is an error in the log; nothing is published for it, no
    QoS 2 reaches the hub; good answers keep flowing; the module stops cleanly."""
    write_code(media, "hostilefn.py", HOSTILE_FUNCTION)
    vi, sub, images, _ = stack(handler="hostilefn.handler")
    msgs = sub.collect(12, timeout=40)
    for topic, qos, payload, _ in msgs:
        assert topic == "good/result", (topic, payload)
        body = json.loads(payload)
        assert IMAGE_KEYS <= set(body) and body["n"] % 2 == 1
        assert qos == 0
    # 12 good answers mean about 12 bad ones went through the module.
    errors = [ln for ln in vi.read_log().splitlines() if "level=error" in ln]
    assert len(errors) >= 6, vi.read_log()[-3000:]
    # clear errors: they name the field that is wrong
    assert any("publishQOS" in ln for ln in errors), errors
    assert any("publishTopic" in ln for ln in errors), errors
    assert vi.proc.poll() is None
    assert not images.exists() or os.listdir(images) == []
    assert not [f for f in os.listdir(vi.dir) if f not in ("conf.yml", "vi.log")], os.listdir(vi.dir)


def test_process_before_mean_swaprb_scale_and_size(procs, hub_factory, tmp_path, media):
    """process.before: the blob is (frame - mean) * scale, resized to width x hight; with
    swaprb the first channel is R (mean v1 is then R's), else B. A network that outputs
    its first input channel shows it, on a solid colour video (B, G, R) = (200, 100, 30)."""
    import struct
    from runtime_harness import Runtime
    import cv2
    import numpy as np
    weights = tmp_path / "first.weights"
    with open(weights, "wb") as f:
        f.write(struct.pack("<iiiq", 0, 2, 0, 0) + struct.pack("<f", 0.0) + struct.pack("<3f", 1, 0, 0))
    video = str(tmp_path / "colour.avi")
    w = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 10, (WIDTH, HEIGHT))
    for _ in range(30):
        w.write(np.full((HEIGHT, WIDTH, 3), (200, 100, 30), np.uint8))
    w.release()
    hub = hub_factory()
    sub = Sub(hub.port, "video/infer/result")
    rt = Runtime(procs, "python", tmp_path / "runtime", [("analyse", "analyse.handler", media["code"])],
                 env={"VI_IMAGES": str(tmp_path / "images")}).start()
    vis = []
    try:
        for name, before in (("bgr", "    swaprb: false\n    width: 4\n    hight: 4\n    mean:\n      v1: 10\n"),
                             ("rgb", "    scale: 0.5\n    swaprb: true\n    width: 6\n    hight: 3\n"
                                     "    mean:\n      v1: 10\n      v2: 50\n      v3: 150\n")):
            conf = vi_conf(media, hub.port, uri=video, model=str(weights), address=rt.address)
            conf = re.sub(r"  before:\n(    .*\n)+", "  before:\n" + before, conf)
            assert before in conf
            vis.append(VideoInfer(procs, tmp_path / name, conf).start())
        got = {}
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            try:
                _, _, payload, _ = sub.get(timeout=1)
            except Exception:  # queue.Empty
                continue
            b = json.loads(payload)
            got.setdefault(b["count"], b["mean"])
        assert set(got) == {16, 18}, (got, [v.read_log()[-1500:] for v in vis])
        assert abs(got[16] - 190) < 5, got  # B - v1, scale 1.0 (the default)
        assert abs(got[18] - 10) < 3, got   # (R - v1) * 0.5
    finally:
        sub.close()
        for v in vis:
            assert v.stop() == 0, v.read_log()[-2000:]
            assert "Sanitizer" not in v.read_log()


def capture_times(msgs):
    return [rfc3339_to_unix(json.loads(p)["imageCaptureTime"]) for _, _, p, _ in msgs]


def test_limit_fps_ceil_rule_and_a_limit_above_the_source_rate(stack, media):
    """limit.fps M on a 10 fps source skips Ceil(10/M) - 1 frames: M = 3 keeps one frame in
    4 (2.5 a second); M = 20 skips none (10 a second)."""
    vi, sub, _, _ = stack(uri=media["long"], fps=3)
    first = sub.get(timeout=30)
    msgs = [first] + sub.drain(4.0)
    assert 8 <= len(msgs) <= 12, len(msgs)
    caps = capture_times(msgs)
    gaps = [b - a for a, b in zip(caps, caps[1:])]
    assert min(gaps) > 0.3, gaps
    assert vi.stop() == 0

    vi, sub, _, _ = stack(uri=media["long"], fps=20)
    first = sub.get(timeout=30)
    msgs = [first] + sub.drain(2.0)
    assert 15 <= len(msgs) <= 24, len(msgs)


def test_end_of_file_reopens_after_one_second(stack):
    """The 2 s file ends; the next frame comes after the 1 s wait and plays from the start."""
    vi, sub, _, _ = stack()
    first = sub.get(timeout=30)
    msgs = [first] + sub.drain(4.5)
    caps = capture_times(msgs)
    gaps = [b - a for a, b in zip(caps, caps[1:])]
    big = [g for g in gaps if g > 0.5]
    assert big, gaps
    assert all(1.0 <= g <= 2.5 for g in big), gaps
    # frames around the reopen: the first pass ends with 20 frames, the second starts over
    i = gaps.index(big[0])
    after = [json.loads(p)["imageDiscard"] for _, _, p, _ in msgs[i + 1:i + 3]]
    assert after == [False, True], "the second pass does not start at the first (bright) frame"


@pytest.mark.parametrize("kind", ["camera", "rtsp"])
def test_missing_camera_or_stream_is_retried_each_second(stack, kind):
    """uri "0" is /dev/video0, rtsp://… an IP camera; while it cannot be opened the module
    tries again once a second, and stops at once when asked."""
    from conftest import free_port
    if kind == "camera":
        if os.path.exists("/dev/video0"):
            pytest.skip("this machine has a camera")
        uri = "0"
    else:
        uri = f"rtsp://admin:admin@127.0.0.1:{free_port()}/Streaming/channels/1/"
    vi, _, _, _ = stack(uri=uri)
    vi.wait_log("level=error", timeout=20)
    time.sleep(3.2)
    log = vi.read_log()
    fails = [ln for ln in log.splitlines() if "level=error" in ln and "video" in ln]
    assert 3 <= len(fails) <= 6, log[-3000:]
    assert vi.proc.poll() is None
    t = time.monotonic()
    assert vi.stop() == 0
    assert time.monotonic() - t < 2
