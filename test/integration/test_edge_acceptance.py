"""Acceptance tests of the agent (SPEC §15), video-infer (§16) and the docker engine (§5),
written from SPEC.md and the seed (chapters 2.4, 4, 11) only, for what test_agent.py,
test_video_infer.py and test_master_docker.py leave out. Their harnesses are reused: the
master, the fake cloud (HTTPS + TLS mosquitto), the hub, the Python runtime and the docker
engine started by test_master_docker's fixtures."""
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

TERMINAL = ["UPDATED", "ROLLEDBACK", "FAILURE", "TIMEOUT"]


# =========================================================================================
# agent (SPEC §15)
# =========================================================================================

def set_agent_conf(e, text):
    e.m.write("var/db/baetyl/agent-conf/service.yml", text)


def report_arrivals(e, seconds):
    """Monotonic arrival times of the reports the fake cloud gets during `seconds`."""
    out = []
    n = len(e.cloud.reports)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        k = len(e.cloud.reports)
        out += [time.monotonic()] * (k - n)
        n = k
        time.sleep(0.02)
    return out


def openssl(*args, data=None):
    r = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


def test_report_crypto_checked_with_openssl_custom_url_and_interval(env, certs, tmp_path):
    """The report, decrypted by the openssl command rather than the harness's library:
    x-iot-edge-key is base64 of the 32-byte key, RSA PKCS#1 v1.5 with the client's private
    key (so the cloud recovers it with the public key); the body is base64 of AES-256-CBC
    with a zero IV and PKCS#7 padding. x-iot-edge-sn is the serial openssl reads from the
    certificate, in decimal. report.url and report.interval are obeyed."""
    e = env()
    raw = []
    decrypt = e.cloud.decrypt

    def keep(headers, body):  # the raw request, beside the harness's own decryption
        raw.append((headers, body))
        return decrypt(headers, body)
    e.cloud.decrypt = keep
    conf = agent_conf(e.broker.port, e.cloud.port)
    conf = conf.replace("  report:\n    interval: 1s\n", "  report:\n    url: /v9/edge/custom\n    interval: 2s\n")
    # <http address><report.url>: a trailing '/' on the address does not double the slash
    conf = conf.replace(f"address: https://127.0.0.1:{e.cloud.port}\n", f"address: https://127.0.0.1:{e.cloud.port}/\n")
    assert "/v9/edge/custom" in conf and f"{e.cloud.port}/\n" in conf
    set_agent_conf(e, conf)
    e.start()
    wait_for(lambda: e.cloud.reports, 20, what="a report")
    arrivals = report_arrivals(e, 5.0)
    assert not e.cloud.bad, e.cloud.bad
    assert {r["path"] for r in e.cloud.reports} == {"/v9/edge/custom"}
    # every 2 s: 2 or 3 reports in 5 s, spaced by about 2 s
    assert 2 <= len(arrivals) <= 3, arrivals
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert all(1.5 <= g <= 3.2 for g in gaps), gaps

    headers, body = raw[-1]
    pub = tmp_path / "pub.pem"
    pub.write_bytes(openssl("x509", "-in", os.path.join(certs, "client.pem"), "-noout", "-pubkey"))
    enc_key = base64.b64decode(headers["x-iot-edge-key"], validate=True)
    aes_key = openssl("pkeyutl", "-verifyrecover", "-pubin", "-inkey", str(pub),
                      "-pkeyopt", "rsa_padding_mode:pkcs1", data=enc_key)
    assert len(aes_key) == 32
    cipher = base64.b64decode(body, validate=True)  # standard alphabet, no line breaks
    assert len(cipher) % 16 == 0
    plain = openssl("enc", "-d", "-aes-256-cbc", "-K", aes_key.hex(), "-iv", "00" * 16, data=cipher)
    doc = json.loads(plain)  # openssl checked and removed the PKCS#7 padding
    assert doc["software"]["conf_version"] == "v1" and isinstance(doc["services"], list)
    serial_hex = openssl("x509", "-in", os.path.join(certs, "client.pem"), "-noout", "-serial").decode()
    assert headers["x-iot-edge-sn"] == str(int(serial_hex.strip().split("=", 1)[1], 16))
    assert headers["x-iot-edge-clientid"] == CLIENT_ID
    assert headers["content-type"] == "application/x-www-form-urlencoded"


def test_custom_desire_topic_qos1_and_default_interval(env):
    """remote.desire.topic replaces the default topic (events there are applied, events on
    the default topic are not heard); the subscription is QoS 1; without report.interval
    the agent does not report more often than every 20 s."""
    e = env()
    conf = agent_conf(e.broker.port, e.cloud.port)
    conf = conf.replace("  report:\n    interval: 1s\n", "  desire:\n    topic: edge/cloud/events\n")
    assert "desire" in conf and "report" not in conf
    set_agent_conf(e, conf)
    e.start()
    wait_for(lambda: "Sending SUBACK to " + CLIENT_ID in e.broker.read_log(), 30, what="subscribed")
    sub = re.findall(r"Received SUBSCRIBE from " + CLIENT_ID + r"\s*\n.*?\t(\S+) \(QoS (\d)\)",
                     e.broker.read_log())
    assert sub == [("edge/cloud/events", "1")], e.broker.read_log()[-2000:]

    # default interval 20 s: at most the one report of the start within these seconds
    wait_for(lambda: e.cloud.reports, 25, what="the first report")
    assert report_arrivals(e, 3.0) == []

    appzip = make_zip([("application.yml", app([AGENT_SVC], AGENT_VOLS, "v2").encode(), 0o644)])
    e.cloud.files = {"app-v2.zip": appzip}
    ev = {"time": "2019-09-23T17:55:42Z", "event": "OTA",
          "content": {"type": "APP", "trace": "tr-default", "version": "v2",
                      "volume": {"name": "app-v2", "path": "var/db/baetyl/app-v2",
                                 "meta": {"url": e.cloud.url("app-v2.zip"), "md5": md5_b64(appzip)}}}}
    e.broker.publish(json.dumps(ev), topic=DESIRE)  # not the configured topic: ignored
    ev["content"]["trace"] = "tr-custom"
    e.broker.publish(json.dumps(ev), topic="edge/cloud/events")
    e.m.wait_ota_step("tr-custom", TERMINAL, timeout=60)
    assert e.steps("tr-custom") == ["RECEIVED", "UPDATING", "UPDATED"], e.m.ota_log()
    assert e.steps("tr-default") == []


def test_event_sent_while_the_agent_is_down_is_received_after_restart(env):
    """The desire subscription is QoS 1 on a persistent session (cleansession false by
    default, §17): an OTA event the cloud sends while the agent is down (killed, restarted
    by the master) is applied once it is back."""
    import signal
    e = env()
    m = e.m
    e.start()
    e.broker.wait_subscribed()
    appzip = make_zip([("application.yml", app([AGENT_SVC], AGENT_VOLS, "v2").encode(), 0o644)])
    e.cloud.files = {"app-v2.zip": appzip}
    os.kill(e.agent_pid, signal.SIGKILL)
    e.ota_event("tr-offline", "app-v2", "var/db/baetyl/app-v2", appzip)
    assert e.steps("tr-offline") == []
    wait_for(lambda: (m.running_pid("agent") or e.agent_pid) != e.agent_pid, 30, what="agent restarted")
    m.wait_ota_step("tr-offline", TERMINAL, timeout=60)
    assert e.steps("tr-offline") == ["RECEIVED", "UPDATING", "UPDATED"], m.ota_log()


def test_volume_with_same_md5_is_not_downloaded_again_and_progress_reported_at_once(env):
    """A volume zip already there with the event's MD5 is not fetched again; one with
    another MD5 is replaced by a download. The steps reach the cloud at once, not at the
    next report (the interval here is 30 s)."""
    e = env()
    set_agent_conf(e, agent_conf(e.broker.port, e.cloud.port).replace("interval: 1s\nota", "interval: 30s\nota"))
    m = e.m
    e.start()
    e.broker.wait_subscribed()
    pkg2 = make_zip([("package.yml", b"entry: bin/prog\n", 0o644), ("bin/prog", SLEEPER.encode(), 0o755)])
    pkg2_vol = {"name": "pkg2", "path": "var/db/baetyl/pkg2",
                "meta": {"url": e.cloud.url("pkg2.zip"), "md5": md5_b64(pkg2), "version": "1"}}
    new_svc = {"name": "new", "image": "pkg2", "replica": 1,
               "mounts": [{"name": "pkg2", "path": "lib/baetyl/pkg2", "readonly": True},
                          {"name": "data", "path": "data"}]}
    vols = AGENT_VOLS + [pkg2_vol, {"name": "data", "path": "var/db/data"}]
    app_a = make_zip([("application.yml", app([AGENT_SVC, new_svc], vols, "v2").encode(), 0o644)])
    app_b = make_zip([("application.yml", app([AGENT_SVC, new_svc], vols, "v3").encode(), 0o644)])
    e.cloud.files = {"app-a.zip": app_a, "app-b.zip": app_b, "pkg2.zip": pkg2}

    e.ota_event("tr-a", "app-a", "var/db/baetyl/app-a", app_a, version="v2")
    line = m.wait_ota_step("tr-a", TERMINAL, timeout=60)
    t_done = time.monotonic()
    assert e.steps("tr-a") == ["RECEIVED", "UPDATING", "UPDATED"], m.ota_log()
    wait_for(lambda: e.cloud.ota_steps("tr-a") == ["RECEIVED", "UPDATING", "UPDATED"], 10,
             what="the UPDATED step reported")
    assert time.monotonic() - t_done < 8, "progress waited for the 30 s report interval"
    # the report's records are the lines of ota.log
    rec = [r for r in e.cloud.reports if "tr-a" in (r["json"].get("ota") or {})][-1]["json"]["ota"]["tr-a"]
    lines = [x for x in m.ota_log() if x.get("trace") == "tr-a"]
    assert [(r["step"], r["time"], r["trace"]) for r in rec] == [(x["step"], x["time"], "tr-a") for x in lines]
    assert line["type"] == "APP"
    assert sorted(e.cloud.gets) == ["/files/app-a.zip", "/files/pkg2.zip"]
    m.wait_running("new", timeout=30)
    new_pid = m.running_pid("new")

    # The cleanup after UPDATED removes app-a (no volume uses it); then a stale app-b.zip
    # (another MD5) is left where the next download goes.
    wait_for(lambda: not os.path.exists(m.path("var/db/baetyl/app-a")), 20, what="cleanup of app-a")
    m.write("var/db/baetyl/app-b/app-b.zip", "stale content, another MD5")
    e.ota_event("tr-b", "app-b", "var/db/baetyl/app-b", app_b, version="v3")
    m.wait_ota_step("tr-b", TERMINAL, timeout=60)
    assert e.steps("tr-b") == ["RECEIVED", "UPDATING", "UPDATED"], m.ota_log()
    assert sorted(e.cloud.gets) == ["/files/app-a.zip", "/files/app-b.zip", "/files/pkg2.zip"], \
        "pkg2.zip (same MD5, already there) was downloaded again, or the stale app-b.zip was trusted"
    assert m.inspect()["software"]["conf_version"] == "v3"
    assert m.running_pid("new") == new_pid, "the unchanged service keeps running"


class FlakyFiles(dict):
    """Cloud.files whose get() answers nothing (404) the first `fails` times per name."""

    def __init__(self, files, fails):
        super().__init__(files)
        self.fails = dict(fails)

    def get(self, name, default=None):
        if self.fails.get(name, 0) > 0:
            self.fails[name] -= 1
            return None
        return super().get(name, default)


def test_download_is_retried_once(env):
    e = env()
    m = e.m
    e.start()
    e.broker.wait_subscribed()
    appzip = make_zip([("application.yml", app([AGENT_SVC], AGENT_VOLS, "v2").encode(), 0o644)])
    # the first try fails, the retry succeeds
    e.cloud.files = FlakyFiles({"app-r.zip": appzip}, {"app-r.zip": 1})
    e.ota_event("tr-retry", "app-r", "var/db/baetyl/app-r", appzip)
    m.wait_ota_step("tr-retry", TERMINAL, timeout=60)
    assert e.steps("tr-retry") == ["RECEIVED", "UPDATING", "UPDATED"], m.ota_log()
    assert e.cloud.gets.count("/files/app-r.zip") == 2

    # both fail: FAILURE after exactly one retry
    e.cloud.files = FlakyFiles({"app-f.zip": appzip}, {"app-f.zip": 5})
    e.ota_event("tr-fail", "app-f", "var/db/baetyl/app-f", appzip, version="v3")
    line = m.wait_ota_step("tr-fail", TERMINAL, timeout=60)
    assert e.steps("tr-fail") == ["RECEIVED", "FAILURE"], m.ota_log()
    assert "app-f" in line.get("error", ""), line
    time.sleep(1.5)
    assert e.cloud.gets.count("/files/app-f.zip") == 2
    assert m.inspect()["software"]["conf_version"] == "v2"


def test_hostile_volume_path_and_plain_http_url_fail(env):
    """A volume path leaving var/db/baetyl, an absolute one, or a meta.url that is not
    HTTPS: FAILURE, nothing fetched, nothing written outside."""
    e = env()
    m = e.m
    e.start()
    e.broker.wait_subscribed()
    appzip = make_zip([("application.yml", app([AGENT_SVC], AGENT_VOLS, "v2").encode(), 0o644)])
    e.cloud.files = {"evil.zip": appzip}
    outside = f"/tmp/bt-escape-{uuid.uuid4().hex[:8]}"
    cases = {
        "tr-dots": ("var/db/baetyl/" + "../" * 12 + outside.lstrip("/"), e.cloud.url("evil.zip")),
        "tr-abs": (outside, e.cloud.url("evil.zip")),
        "tr-http": ("var/db/baetyl/plain", e.cloud.url("evil.zip").replace("https://", "http://")),
    }
    try:
        for trace, (path, url) in cases.items():
            ev = {"event": "OTA", "content": {"type": "APP", "trace": trace, "version": "v2",
                                              "volume": {"name": "evil", "path": path,
                                                         "meta": {"url": url, "md5": md5_b64(appzip)}}}}
            e.broker.publish(json.dumps(ev))
            m.wait_ota_step(trace, TERMINAL, timeout=60)
            assert e.steps(trace) == ["RECEIVED", "FAILURE"], (trace, m.ota_log())
        assert not os.path.exists(outside)
        assert not os.path.exists(m.path("var/db/baetyl/plain/evil.zip"))
        assert e.cloud.gets == [], "a refused volume was fetched"
        assert m.inspect()["software"]["conf_version"] == "v1"
        assert m.running_pid("agent") == e.agent_pid
    finally:
        subprocess.run(["rm", "-rf", outside])


def test_rolled_back_ota_is_followed_and_nothing_is_cleaned(env):
    """The new app fails to start (its package is missing): the master rolls back, the
    agent sees ROLLEDBACK as the end (no TIMEOUT later), reports it, and removes nothing."""
    e = env(ota_timeout="4s")
    m = e.m
    e.start()
    e.broker.wait_subscribed()
    broken = {"name": "broken", "image": "no-such-package", "replica": 1}
    appzip = make_zip([("application.yml", app([AGENT_SVC, broken], AGENT_VOLS, "v2").encode(), 0o644)])
    e.cloud.files = {"app-v2.zip": appzip}
    e.ota_event("tr-rb", "app-v2", "var/db/baetyl/app-v2", appzip)
    m.wait_ota_step("tr-rb", TERMINAL, timeout=60)
    assert e.steps("tr-rb") == ["RECEIVED", "UPDATING", "ROLLINGBACK", "ROLLEDBACK"], m.ota_log()
    wait_for(lambda: e.cloud.ota_steps("tr-rb") == ["RECEIVED", "UPDATING", "ROLLINGBACK", "ROLLEDBACK"], 10,
             what="ROLLEDBACK reported")
    assert m.inspect()["software"]["conf_version"] == "v1"
    m.wait_running("old", timeout=30)
    time.sleep(4.2)  # past ota.timeout: the OTA is over, no TIMEOUT is written
    assert e.steps("tr-rb") == ["RECEIVED", "UPDATING", "ROLLINGBACK", "ROLLEDBACK"], m.ota_log()
    for kept in ("old-stuff/nested/file", "pkg/package.yml", "app-v2/application.yml"):
        assert os.path.exists(m.path(f"var/db/baetyl/{kept}")), kept
    assert m.running_pid("agent") == e.agent_pid


STUBBORN = """#!/bin/sh
trap 'echo TERM ignored' TERM
while :; do sleep 0.2; done
"""


def test_timeout_while_the_master_is_still_updating(env):
    """An update that takes longer than ota.timeout (a service ignoring SIGTERM holds the
    master for its grace period): the agent writes TIMEOUT ota.timeout after it asked for
    the update, and reports it."""
    e = env(ota_timeout="2s")
    m = e.m
    m.write("etc/baetyl/conf.yml", m.read("etc/baetyl/conf.yml").replace("grace: 10s", "grace: 5s"))
    m.package("stubborn", STUBBORN)
    v1 = json.loads(V1)
    v1["services"].append({"name": "stubborn", "image": "stubborn", "replica": 1,
                           "mounts": [{"name": "stubborn", "path": "lib/baetyl/stubborn", "readonly": True}]})
    v1["volumes"].append({"name": "stubborn", "path": "var/db/baetyl/stubborn"})
    m.app(json.dumps(v1))
    e.start()
    m.wait_running("stubborn", timeout=30)
    e.broker.wait_subscribed()
    appzip = make_zip([("application.yml", app([AGENT_SVC], AGENT_VOLS, "v2").encode(), 0o644)])
    e.cloud.files = {"app-v2.zip": appzip}
    e.ota_event("tr-slow", "app-v2", "var/db/baetyl/app-v2", appzip)
    m.wait_ota_step("tr-slow", ["TIMEOUT", "UPDATED", "FAILURE", "ROLLEDBACK"], timeout=30)
    lines = [x for x in m.ota_log() if x.get("trace") == "tr-slow"]
    assert [x["step"] for x in lines][:3] == ["RECEIVED", "UPDATING", "TIMEOUT"], lines
    t = {x["step"]: rfc3339_to_unix(x["time"]) for x in lines}
    assert 1.8 <= t["TIMEOUT"] - t["UPDATING"] <= 4.5, t
    wait_for(lambda: (e.cloud.ota_steps("tr-slow") or [""])[-1] == "TIMEOUT", 10, what="TIMEOUT reported")
    # the master finishes on its own afterwards
    m.wait_ota_step("tr-slow", ["UPDATED"], timeout=30)


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


# =========================================================================================
# docker engine (SPEC §5)
# =========================================================================================

def container_ip(name):
    c = dinspect(name)
    return c and c["NetworkSettings"]["Networks"]["baetyl"]["IPAddress"]


def test_docker_replicas_names_labels_network_binds(dmaster):
    """Replica i is the container <service>.i<i>; every container, dynamic ones too, has the
    labels, the network baetyl where the others find it by service and instance name,
    restart policy no, the read-only binds really read-only and the API socket bound
    read-only."""
    m = dmaster()
    m.write("var/db/baetyl/conf-ro/file", "x")
    rw = ("(touch /conf/w 2>/dev/null && echo yes || echo no) > /data/ro-$BAETYL_SERVICE_INSTANCE_NAME; "
          "echo hi > /data/rw-$BAETYL_SERVICE_INSTANCE_NAME; ")
    probe = ("while :; do for n in drep drep.i1 drep.fn.1; do nslookup $n > /data/dns-$n.tmp 2>&1; "
             "mv /data/dns-$n.tmp /data/dns-$n; done; sleep 0.3; done")
    mounts = [{"name": "data", "path": "data"}, {"name": "conf-ro", "path": "conf", "readonly": True}]
    m.app(json.dumps({"version": "v1", "services": [
        box("drep", rw + "trap 'exit 0' TERM; while :; do sleep 0.2; done", replica=2, mounts=mounts),
        box("dprobe", probe)], "volumes": DATA + [{"name": "conf-ro", "path": "var/db/baetyl/conf-ro"}]}))
    m.start()
    st, body = m.request("PUT", "/v1/services/drep/instances/drep.fn.1/start", {"X": "1"})
    assert st == 200, body
    for inst in ("drep", "drep.i1", "drep.fn.1"):
        wait_for(lambda: m.read(f"var/db/data/rw-{inst}"), 20, what=f"{inst} wrote its data")
        assert m.read(f"var/db/data/ro-{inst}").strip() == "no", "a readonly mount was writable"
        assert not os.path.exists(m.path("var/db/baetyl/conf-ro/w"))
        c = dinspect(inst)
        assert c and c["Name"] == "/" + inst
        assert c["Config"]["Labels"] == {"baetyl": "baetyl", "service": "drep",
                                         "baetyl-master": master_id(m.dir)}
        hc = c["HostConfig"]
        assert hc["RestartPolicy"]["Name"] == "no"
        assert hc["NetworkMode"] == "baetyl" and list(c["NetworkSettings"]["Networks"]) == ["baetyl"]
        mounts_rw = {x["Destination"]: x["RW"] for x in c["Mounts"]}
        assert mounts_rw == {"/data": True, "/conf": False, "/var/run/baetyl.sock": False}, mounts_rw
        ip = container_ip(inst)
        wait_for(lambda: ip in (m.read(f"var/db/data/dns-{inst}") or ""), 15,
                 what=f"{inst} resolved by name from another container")
    # the service name leads to its instances
    answer = m.read("var/db/data/dns-drep").split("Name:", 1)[-1]
    addrs = set(re.findall(r"\d+\.\d+\.\d+\.\d+", answer))
    assert addrs and addrs <= {container_ip(i) for i in ("drep", "drep.i1", "drep.fn.1")}, answer
    assert sorted(labelled("service=drep")) == ["drep", "drep.fn.1", "drep.i1"]
    assert m.stop() == 0
    assert labelled() == []


def test_docker_stop_kills_after_grace(dmaster):
    """Stop = docker stop with the grace period (a container ignoring SIGTERM is killed
    when it ends), then the container is removed."""
    m = dmaster(grace="2s")
    m.app(json.dumps({"version": "v1", "services": [
        box("dstub", "trap 'echo TERM ignored' TERM; echo started; while :; do sleep 0.2; done")],
        "volumes": DATA}))
    m.start()
    wait_for(lambda: (dinspect("dstub") or {}).get("State", {}).get("Running"), 15, what="dstub running")
    t = time.monotonic()
    assert m.stop() == 0
    took = time.monotonic() - t
    assert 1.8 <= took <= 10, took
    assert dinspect("dstub") is None and labelled() == []
    assert "TERM ignored" in m.log()


def test_docker_update_keeps_identical_containers(dmaster):
    """An application update in docker mode (SPEC §9 on §5): the identical service keeps
    its container, the changed one gets a new container with the new config, the removed
    one's container is gone, the new one runs; each with the labels and network."""
    m = dmaster()
    sleeper = "trap 'exit 0' TERM; while :; do sleep 0.2; done"
    v1 = [box("dkeep", sleeper), box("dchange", sleeper, env={"V": "1"}), box("dgone", sleeper)]
    v2 = [box("dkeep", sleeper), box("dchange", sleeper, env={"V": "2"}), box("dnew", sleeper)]
    m.app(json.dumps({"version": "v1", "services": v1, "volumes": DATA}))
    m.write("var/db/baetyl/app2/application.yml", json.dumps({"version": "v2", "services": v2, "volumes": DATA}))
    m.start()
    before = {n: wait_for(lambda: (dinspect(n) or {}).get("Id"), 15, what=n) for n in ("dkeep", "dchange", "dgone")}
    st, body = m.update(m.path("var/db/baetyl/app2"), trace="tr-docker")
    assert st == 200, body
    m.wait_ota_step("tr-docker", ["UPDATED", "ROLLEDBACK", "FAILURE"], timeout=60)
    assert [x["step"] for x in m.ota_log() if x.get("trace") == "tr-docker"] == ["UPDATING", "UPDATED"], m.ota_log()
    assert m.inspect()["software"]["conf_version"] == "v2"
    assert dinspect("dkeep")["Id"] == before["dkeep"], "an identical service was restarted"
    c = dinspect("dchange")
    assert c["Id"] != before["dchange"] and "V=2" in c["Config"]["Env"]
    assert dinspect("dgone") is None
    new = wait_for(lambda: dinspect("dnew"), 15, what="dnew")
    assert new["Config"]["Labels"] == {"baetyl": "baetyl", "service": "dnew",
                                       "baetyl-master": master_id(m.dir)}
    assert new["HostConfig"]["NetworkMode"] == "baetyl"
    assert sorted(labelled()) == ["dchange", "dkeep", "dnew"]
    assert m.stop() == 0
    assert labelled() == []


# ---- the seed's chapter 11 in docker mode: hub, Python runtime and video-infer images -------

ARRAY_FUNCTION = SEED_FUNCTION.replace("import numpy as np\n", "import array\n").replace(
    "    data = np.frombuffer(event, np.float32)\n    score = float(data.mean())\n",
    "    data = array.array('f')\n    data.frombytes(event)\n    score = sum(data) / len(data)\n")


@pytest.fixture(scope="module")
def chapter11_images(images):
    """The video-infer and Python runtime images built by docker/build-images.sh from the
    binaries under test; removed at the end."""
    from conftest import BUILD, SRC
    from test_master_docker import TAG
    names = ["baetyl-video-infer", "baetyl-function-python"]
    r = subprocess.run([os.path.join(SRC, "docker", "build-images.sh"), "-b", BUILD, "-t", TAG, *names],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    yield {n: f"{n}:{TAG}" for n in names}
    docker("rmi", "-f", *[f"{n}:{TAG}" for n in names])


def test_chapter11_video_infer_in_docker(dmaster, chapter11_images, media):
    """Seed chapter 11 in docker mode, with the images of this build: video-infer reads a
    video file from a volume, calls the Python runtime by its service name on the network
    baetyl, saves the frames the function keeps into the shared image volume and publishes
    to the hub container, whose published port a subscriber uses."""
    import shutil
    from conftest import free_port
    from test_master_docker import HUB_CONF, HUB_IMAGE
    assert "import array" in ARRAY_FUNCTION and "np." not in ARRAY_FUNCTION
    m = dmaster(grace="5s")
    port = free_port()
    db = m.path("var/db/baetyl")
    m.write("var/db/baetyl/localhub-conf/service.yml", HUB_CONF)
    m.write("var/db/baetyl/function-python-code/analyse.py", ARRAY_FUNCTION)
    m.write("var/db/baetyl/function-python-conf/service.yml",
            "server:\n  address: 0.0.0.0:50051\nfunctions:\n  - name: analyse\n"
            "    handler: analyse.handler\n    codedir: var/db/baetyl/code\n")
    os.makedirs(os.path.join(db, "infer-model"))
    for k in ("cfg", "weights"):
        shutil.copy(media[k], os.path.join(db, "infer-model"))
    os.makedirs(os.path.join(db, "video"))
    shutil.copy(media["alternating"], os.path.join(db, "video", "v.avi"))
    m.write("var/db/baetyl/video-infer-conf/service.yml", f"""hub:
  address: tcp://localhub:1883
  username: test
  password: hahaha
video:
  uri: var/db/baetyl/video/v.avi
  limit:
    fps: 10
infer:
  model: var/db/baetyl/model/tiny.weights
  config: var/db/baetyl/model/tiny.cfg
process:
  before:
    scale: {1 / 255!r}
    swaprb: true
    width: 4
    hight: 4
  after:
    function:
      name: analyse
functions:
  - name: analyse
    address: function-python:50051
logger:
  path: var/log/baetyl/infer-service.log
  level: debug
""")

    def mount(name, path, ro=False):
        return {"name": name, "path": path, "readonly": ro}
    services = [
        {"name": "localhub", "image": HUB_IMAGE, "replica": 1, "ports": [f"127.0.0.1:{port}:1883"],
         "mounts": [mount("localhub-conf", "etc/baetyl", True)]},
        {"name": "function-python", "image": chapter11_images["baetyl-function-python"], "replica": 1,
         "mounts": [mount("function-python-conf", "etc/baetyl", True),
                    mount("function-python-code", "var/db/baetyl/code", True),
                    mount("image-data", "var/db/baetyl/image")]},
        {"name": "video-infer", "image": chapter11_images["baetyl-video-infer"], "replica": 1,
         "mounts": [mount("infer-model", "var/db/baetyl/model", True), mount("image-data", "var/db/baetyl/image"),
                    mount("demo-log", "var/log/baetyl"), mount("video-infer-conf", "etc/baetyl", True),
                    mount("video", "var/db/baetyl/video", True)]}]
    volumes = [{"name": n, "path": f"var/db/baetyl/{n}"} for n in
               ("localhub-conf", "function-python-conf", "function-python-code", "image-data", "demo-log",
                "infer-model", "video-infer-conf", "video")]
    m.app(json.dumps({"version": "V0", "services": services, "volumes": volumes}))
    m.start()
    wait_for(lambda: labelled("service=video-infer"), 20, what="video-infer container")
    sub = None
    try:
        def connect():
            try:
                return Sub(port, "video/infer/result")
            except Exception:  # the engine's proxy accepts before the hub listens
                return None
        sub = wait_for(connect, 30, 0.5, what="subscriber on the hub container")
        msgs = sub.collect(4, timeout=60)
    except AssertionError as err:
        logs = m.read("var/db/baetyl/demo-log/infer-service.log", "")[-3000:] + m.log()[-3000:]
        raise AssertionError(f"{err}\n{logs}") from err
    finally:
        if sub:
            sub.close()
    bodies = [json.loads(p) for _, _, p, _ in msgs]
    assert {b["imageDiscard"] for b in bodies} == {True, False}, bodies
    for b in bodies:
        assert (b["imageWidth"], b["imageHight"]) == (WIDTH, HEIGHT)
        if not b["imageDiscard"]:
            # saved by video-infer at /var/db/baetyl/image/… in its container: the volume
            name = os.path.basename(b["imageLocation"])
            path = os.path.join(db, "image-data", name)
            wait_for(lambda: os.path.exists(path), 5, what=path)
            with open(path, "rb") as f:
                assert f.read(3) == b"\xff\xd8\xff"
    assert m.stop() == 0
    assert labelled() == []
    log = m.read("var/db/baetyl/demo-log/infer-service.log", "")
    assert 'msg="service stopped"' in log, log[-2000:]
