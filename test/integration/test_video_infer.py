"""baetyl-video-infer (SPEC §16, seed chapter 11): the real module on a video file made here
with OpenCV, a tiny Darknet network written here (one 1x1 convolution that averages the
three colour channels), the real Python runtime running the function and the real hub.
Nothing is downloaded: the test makes its model and its video."""
import datetime
import json
import os
import queue
import re
import shutil
import struct
import subprocess
import time

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from conftest import SRC, binary, free_port, wait_for, wait_port
from runtime_harness import Runtime
from master_harness import master  # noqa: F401  (fixture)

PYTHON = "/usr/bin/python3"

WIDTH, HEIGHT = 64, 48
BRIGHT, DARK = 200, 20

# The function of the seed's chapter 11, reduced to what a test can check: it reads the raw
# float32 output, and answers with the keys video-infer acts on plus what it saw.
FUNCTION = '''
import array
import os


def _answer(event, context):
    if not isinstance(event, bytes):
        raise TypeError("expected the raw float32 output, got %r" % type(event))
    out = array.array("f")
    out.frombytes(event)
    mean = sum(out) / len(out)
    ts = context["messageTimestamp"]
    bright = mean > 0.5
    return {
        "imageDiscard": not bright,
        "imageLocation": os.path.join(os.environ["VI_IMAGES"],
                                      ("bright-" if bright else "dark-") + "%d.jpg" % ts),
        "publishTopic": "video/infer/result",
        "publishQOS": 1,
        "mean": mean,
        "count": len(out),
        "messageTimestamp": ts,
        "invokeid": context["functionInvokeID"],
    }


def handler(event, context):
    return _answer(event, context)


def broken(event, context):
    raise RuntimeError("boom")


def silent(event, context):
    res = _answer(event, context)
    res["publishTopic"] = ""
    res["imageDiscard"] = False
    return res
'''


def write_darknet(d):
    """A one-layer Darknet network: out = (B + G + R) / 3 per pixel, no bias."""
    cfg = os.path.join(d, "tiny.cfg")
    weights = os.path.join(d, "tiny.weights")
    with open(cfg, "w") as f:
        f.write("[net]\nwidth=4\nheight=4\nchannels=3\n\n"
                "[convolutional]\nfilters=1\nsize=1\nstride=1\npad=0\nactivation=linear\n")
    with open(weights, "wb") as f:
        # Header: major, minor, revision (int32), images seen (int64 since version 0.2).
        f.write(struct.pack("<iiiq", 0, 2, 0, 0))
        f.write(struct.pack("<f", 0.0))                   # bias
        f.write(struct.pack("<3f", 1 / 3, 1 / 3, 1 / 3))  # weights
    return cfg, weights


def write_video(path, frames, fps=10, pattern=lambda i: BRIGHT if i % 2 == 0 else DARK):
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    assert w.isOpened()
    for i in range(frames):
        w.write(np.full((HEIGHT, WIDTH, 3), pattern(i), np.uint8))
    w.release()
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    cfg, weights = write_darknet(str(d))
    codedir = d / "code"
    codedir.mkdir()
    (codedir / "analyse.py").write_text(FUNCTION)
    return {
        "cfg": cfg,
        "weights": weights,
        "code": str(codedir),
        # 2 s at 10 fps: bright, dark, bright, …
        "alternating": write_video(str(d / "alternating.avi"), 20),
        # 12 s at 10 fps, every frame bright.
        "long": write_video(str(d / "long.avi"), 120, pattern=lambda i: BRIGHT),
    }


class Sub:
    """A paho subscriber that records every message."""

    def __init__(self, port, topic="#"):
        self.msgs = queue.Queue()
        self.c = mqtt.Client(client_id=f"vi-sub-{port}", clean_session=True)
        self.c.username_pw_set("test", "hahaha")
        ok = queue.Queue()
        self.c.on_connect = lambda c, u, f, rc: ok.put(rc)
        self.c.on_subscribe = lambda c, u, mid, q: ok.put(("sub", q))
        self.c.on_message = lambda c, u, m: self.msgs.put((m.topic, m.qos, m.payload,
                                                           time.monotonic()))
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        assert ok.get(timeout=5) == 0
        self.c.subscribe(topic, 1)
        assert ok.get(timeout=5)[0] == "sub"

    def get(self, timeout=20):
        return self.msgs.get(timeout=timeout)

    def collect(self, n, timeout=30):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(out)} of {n} messages in {timeout}s"
            try:
                out.append(self.msgs.get(timeout=left))
            except queue.Empty:
                pass
        return out

    def drain(self, seconds):
        out = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(self.msgs.get(timeout=left))
            except queue.Empty:
                pass

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class VideoInfer:
    """One baetyl-video-infer process in its own directory (conf.yml, output in vi.log)."""

    def __init__(self, procs, workdir, conf):
        self.procs = procs
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "conf.yml")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.log = os.path.join(self.dir, "vi.log")
        self.proc = None

    def start(self):
        self.logf = open(self.log, "ab")
        self.proc = self.procs.start([binary("baetyl-video-infer"), "-c", self.conf],
                                     cwd=self.dir, stdout=self.logf, stderr=subprocess.STDOUT)
        return self

    def wait_exit(self, timeout=20):
        try:
            return self.proc.wait(timeout)
        finally:
            self.logf.close()

    def stop(self):
        rc = self.procs.stop(self.proc)
        self.logf.close()
        return rc

    def read_log(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=20, count=1):
        return wait_for(lambda: self.read_log().count(text) >= count, timeout,
                        what=f"{count} x {text!r} in the video-infer log")


def vi_conf(media, hub_port=None, uri=None, fps=0, function="analyse", address="127.0.0.1:1",
            model=None):
    # No hub.clientid, like the seed's config: the instance name is used.
    hub = (f"hub:\n  address: tcp://127.0.0.1:{hub_port}\n  username: test\n"
           f"  password: hahaha\n")
    return hub + f"""video:
  uri: '{uri or media["alternating"]}'
  limit:
    fps: {fps}
infer:
  model: '{model or media["weights"]}'
  config: '{media["cfg"]}'
process:
  before:
    scale: {1 / 255!r}
    swaprb: true
    width: 4
    hight: 4
  after:
    function:
      name: {function}
functions:
  - name: {function}
    address: '{address}'
    timeout: 10s
logger:
  level: debug
"""


@pytest.fixture
def stack(procs, hub_factory, tmp_path, media):
    """make(handler="analyse.handler", start_runtime=True, **conf) -> (vi, sub, images, runtime):
    the hub, a subscriber on '#', the Python runtime serving function `analyse` with the
    given handler, and video-infer (started); every process is checked for a clean stop."""
    made = {"vi": [], "rt": [], "sub": []}

    def make(handler="analyse.handler", start_runtime=True, **conf):
        hub = hub_factory()
        sub = Sub(hub.port)
        made["sub"].append(sub)
        images = tmp_path / "images"
        rt = Runtime(procs, "python", tmp_path / "runtime", [("analyse", handler, media["code"])],
                     env={"VI_IMAGES": str(images)})
        made["rt"].append(rt)
        if start_runtime:
            rt.start()
        vi = VideoInfer(procs, tmp_path / "vi", vi_conf(media, hub.port, address=rt.address,
                                                        **conf)).start()
        made["vi"].append(vi)
        return vi, sub, images, rt

    yield make
    for s in made["sub"]:
        s.close()
    for vi in made["vi"]:
        if vi.proc.poll() is None:
            rc = vi.stop()
            log = vi.read_log()
            assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]
            assert rc == 0, f"video-infer exited with {rc}: {log[-3000:]}"
    for rt in made["rt"]:
        if rt.proc is not None and rt.proc.poll() is None:
            assert rt.stop() == 0, rt.output()


def rfc3339_to_unix(s):
    """Go's RFC3339Nano text -> unix seconds (float)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", s)
    assert m, s
    frac = (m.group(2) or "0").ljust(9, "0")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    dt = datetime.datetime.fromisoformat(m.group(1) + zone)
    return dt.timestamp() + int(frac) / 1e9


def test_frames_flow_end_to_end(stack):
    t_start = time.time()
    vi, sub, images, _ = stack()
    msgs = sub.collect(8)
    t_end = time.time()
    bright = dark = 0
    for topic, qos, payload, _ in msgs:
        assert topic == "video/infer/result"
        assert qos == 1  # publishQOS 1
        m = json.loads(payload)
        # The function's own JSON comes through, plus the image fields.
        assert m["publishTopic"] == "video/infer/result"
        assert m["count"] == 16  # a 4x4 blob through one 1x1 filter: 16 float32
        assert (m["imageWidth"], m["imageHight"]) == (WIDTH, HEIGHT)
        assert isinstance(m["imageInferenceTime"], float) and m["imageInferenceTime"] >= 0
        assert m["imageProcessTime"] >= m["imageInferenceTime"]
        captured = rfc3339_to_unix(m["imageCaptureTime"])
        assert t_start - 1 <= captured <= t_end + 1
        # Timestamp of the call = capture time in unix nanoseconds.
        assert isinstance(m["messageTimestamp"], int)
        assert abs(m["messageTimestamp"] / 1e9 - captured) < 1e-3
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                            m["invokeid"])
        path = m["imageLocation"]
        if m["imageDiscard"]:
            dark += 1
            # scale 1/255 of a dark frame, averaged over B, G and R by the network
            assert abs(m["mean"] - DARK / 255) < 0.02, m
            assert not os.path.exists(path), "a discarded frame was saved"
        else:
            bright += 1
            assert abs(m["mean"] - BRIGHT / 255) < 0.02, m
            wait_for(lambda: os.path.exists(path), 5, what=path)
            with open(path, "rb") as f:
                assert f.read(3) == b"\xff\xd8\xff"  # JPEG
            img = cv2.imread(path)
            assert img.shape == (HEIGHT, WIDTH, 3)
            assert abs(float(img.mean()) - BRIGHT) < 5
    assert bright >= 3 and dark >= 3, (bright, dark)
    # Only bright frames were kept.
    names = os.listdir(images)
    assert names and all(n.startswith("bright-") and n.endswith(".jpg") for n in names), names


def test_empty_publish_topic_publishes_nothing(stack):
    vi, sub, images, _ = stack(handler="analyse.silent")
    # The frames are processed (the function asks to keep each one) ...
    wait_for(lambda: images.exists() and len(os.listdir(images)) >= 5, 30, what="saved images")
    assert all(n.endswith(".jpg") for n in os.listdir(images))
    # ... yet nothing reaches the hub.
    assert sub.drain(1.5) == []


def test_limit_fps(stack, media):
    # A 10 fps file played in real time with limit 2: Ceil(10/2) - 1 = 4 frames skipped
    # after each processed one, so 2 frames a second.
    vi, sub, _, _ = stack(uri=media["long"], fps=2)
    first = sub.get(timeout=30)
    msgs = [first] + sub.drain(4.0)
    assert 7 <= len(msgs) <= 10, len(msgs)
    captures = [rfc3339_to_unix(json.loads(p)["imageCaptureTime"]) for _, _, p, _ in msgs]
    gaps = [b - a for a, b in zip(captures, captures[1:])]
    assert min(gaps) > 0.35, gaps  # 5 frames of 0.1 s apart, give or take scheduling
    assert "skip=4" in vi.read_log()


def test_no_limit_plays_file_at_its_rate(stack, media):
    vi, sub, _, _ = stack(uri=media["long"], fps=0)
    first = sub.get(timeout=30)
    msgs = [first] + sub.drain(2.0)
    # 10 fps for 2 s: about 20 frames, not the hundreds a free-running read would give (a
    # loaded machine may deliver a few late frames of the first second in the window).
    assert 14 <= len(msgs) <= 30, len(msgs)


def test_missing_video_is_retried_each_second(stack, tmp_path, media):
    path = tmp_path / "later" / "video.avi"
    vi, sub, _, _ = stack(uri=str(path))
    vi.wait_log("failed to open video", timeout=20)
    n0 = vi.read_log().count("failed to open video")
    time.sleep(3.2)
    n = vi.read_log().count("failed to open video") - n0
    assert 2 <= n <= 4, n  # once a second
    assert vi.proc.poll() is None
    assert str(path) in vi.read_log()
    # The file appears: frames flow without a restart.
    path.parent.mkdir()
    write_video(str(path) + ".tmp.avi", 20)
    os.rename(str(path) + ".tmp.avi", path)
    topic, _, payload, _ = sub.get(timeout=20)
    assert topic == "video/infer/result"
    assert json.loads(payload)["imageWidth"] == WIDTH


def test_image_sequence(stack, tmp_path):
    # OpenCV's image-sequence reader: frame_000.png, frame_001.png, … (no frame rate: the
    # limit paces the reads).
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(6):
        cv2.imwrite(str(d / f"frame_{i:03d}.png"),
                    np.full((HEIGHT, WIDTH, 3), BRIGHT if i % 2 == 0 else DARK, np.uint8))
    vi, sub, _, _ = stack(uri=str(d / "frame_%03d.png"), fps=5)
    msgs = sub.collect(4, timeout=30)
    kinds = [json.loads(p)["imageDiscard"] for _, _, p, _ in msgs]
    assert kinds[:4] in ([False, True, False, True], [True, False, True, False]), kinds
    captures = [rfc3339_to_unix(json.loads(p)["imageCaptureTime"]) for _, _, p, _ in msgs]
    assert all(b - a > 0.15 for a, b in zip(captures, captures[1:])), captures  # 5 fps


def test_stop_while_waiting_to_retry(stack, tmp_path):
    vi, _, _, _ = stack(uri=str(tmp_path / "none.avi"))
    vi.wait_log("failed to open video", timeout=20)
    t = time.monotonic()
    assert vi.stop() == 0
    assert time.monotonic() - t < 1.5
    assert 'msg="service stopped"' in vi.read_log()


def test_end_of_file_reopens(stack):
    vi, sub, _, _ = stack()
    # 20 frames at 10 fps last 2 s; the file is read again after the end.
    vi.wait_log("failed to read video, reopening in 1s", timeout=30)
    vi.wait_log("video opened", count=2, timeout=10)
    sub.drain(0.5)
    assert sub.get(timeout=10)


def test_function_unreachable_then_up(stack):
    vi, sub, _, rt = stack(start_runtime=False)
    vi.wait_log("failed to call function", timeout=30)
    assert vi.proc.poll() is None
    rt.start()
    # Frames flow again within about a second of the function coming up.
    topic, _, _, _ = sub.get(timeout=5)
    assert topic == "video/infer/result"


def test_function_error_is_logged_and_loop_goes_on(stack):
    vi, sub, _, _ = stack(handler="analyse.broken")
    vi.wait_log("failed to call function", timeout=30, count=2)
    assert "[UserCodeInvoke] RuntimeError: boom" in vi.read_log()
    assert vi.proc.poll() is None
    assert sub.drain(0.5) == []


def test_bad_model_path(procs, tmp_path, media):
    missing = str(tmp_path / "nope.weights")
    vi = VideoInfer(procs, tmp_path / "vi", vi_conf(media, 1, model=missing)).start()
    assert vi.wait_exit() == 1
    log = vi.read_log()
    assert f"infer.model: {missing}: No such file or directory" in log, log
    assert "Sanitizer" not in log


def test_corrupt_model(procs, tmp_path, media):
    bad = tmp_path / "bad.weights"
    bad.write_bytes(b"\x00\x00")  # shorter than a header
    vi = VideoInfer(procs, tmp_path / "vi", vi_conf(media, 1, model=str(bad))).start()
    assert vi.wait_exit() == 1
    log = vi.read_log()
    assert "failed to load the model" in log and f"infer.model: cannot load {bad}" in log, log
    assert "Sanitizer" not in log


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.replace("  uri:", "  nouri:"), "video.uri: required"),
    (lambda c: c.replace("  model:", "  nomodel:"), "infer.model: required"),
    (lambda c: c.replace("address: tcp", "noaddress: tcp"), "hub.address: required"),
    (lambda c: c.replace("fps: 0", "fps: -1"), "video.limit.fps: must be between 0 and 1000"),
    (lambda c: c.replace("width: 4", "width: wide"), "process.before.width"),
    (lambda c: c.replace("infer:\n", "infer:\n  backend: tpu\n"), "infer.backend"),
    (lambda c: c.replace("      name: analyse", "      name: other"),
     "process.after.function.name: function (other) not found in functions"),
    (lambda c: c.replace("  - name: analyse\n    address: '127.0.0.1:1'\n", "  - name: analyse\n"),
     "functions[0].address: required"),
])
def test_config_errors_are_named(procs, tmp_path, media, edit, message):
    conf = edit(vi_conf(media, 1))
    vi = VideoInfer(procs, tmp_path / "vi", conf).start()
    assert vi.wait_exit() == 1
    log = vi.read_log()
    assert message in log, log



# ---- example/native-video, as `make install` and its README lay it out, under the master ----

def test_example_native_video(master):  # noqa: F811
    ex = os.path.join(SRC, "example", "native-video")
    m = master(grace="5s")
    shutil.copytree(os.path.join(ex, "var"), m.path("var"), dirs_exist_ok=True)
    subprocess.run([PYTHON, os.path.join(ex, "make-media.py"), m.dir], check=True,
                   capture_output=True)
    hub_port, fm_port = free_port(), free_port()
    for rel, edits in (
            ("localhub-conf", [("tcp://0.0.0.0:1883", f"tcp://127.0.0.1:{hub_port}")]),
            ("function-manager-conf", [("tcp://127.0.0.1:1883", f"tcp://127.0.0.1:{hub_port}"),
                                       ("127.0.0.1:50051", f"127.0.0.1:{fm_port}")]),
            ("video-infer-conf", [("tcp://127.0.0.1:1883", f"tcp://127.0.0.1:{hub_port}"),
                                  ("127.0.0.1:50051", f"127.0.0.1:{fm_port}")])):
        path = f"var/db/baetyl/{rel}/service.yml"
        text = m.read(path)
        for old, new in edits:
            assert old in text, (rel, old)
            text = text.replace(old, new)
        m.write(path, text)
    for mod, src_dir in (("baetyl-hub", "hub"), ("baetyl-function-manager", "function-manager"),
                         ("baetyl-video-infer", "video-infer")):
        pkg = m.path(f"var/db/baetyl/{mod}")
        os.makedirs(os.path.join(pkg, "bin"))
        os.symlink(binary(mod), os.path.join(pkg, "bin", mod))
        shutil.copy(os.path.join(SRC, src_dir, "package.yml"), os.path.join(pkg, "package.yml"))
    os.symlink(os.path.join(SRC, "function-python"), m.path("var/db/baetyl/baetyl-function-python"))
    m.start()
    wait_port(hub_port, timeout=20)
    sub = Sub(hub_port, "video/infer/result")
    try:
        msgs = sub.collect(4, timeout=60)
    finally:
        sub.close()
    bodies = [json.loads(p) for _, _, p, _ in msgs]
    for b in bodies:
        assert (b["imageWidth"], b["imageHight"]) == (320, 240)
        assert b["imageDiscard"] == (b["brightness"] < 0.5)
    # limit.fps 1 on a video alternating bright and dark seconds: both kinds come, in turn.
    assert {b["imageDiscard"] for b in bodies} == {True, False}, bodies
    kept = [b for b in bodies if not b["imageDiscard"]]
    images = m.path("var/db/baetyl/image-data")
    for b in kept:
        name = os.path.basename(b["imageLocation"])
        with open(os.path.join(images, name), "rb") as f:
            assert f.read(3) == b"\xff\xd8\xff"
    assert all(n.endswith(".jpg") for n in os.listdir(images))
    assert m.stop() == 0
    log = m.read("var/db/baetyl/demo-log/infer-service.log", "")
    assert 'msg="service stopped"' in log, log[-2000:]
    assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]

