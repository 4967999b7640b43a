"""Acceptance tests of the agent (SPEC §15), written from SPEC.md and the seed only, for what
test_agent.py leaves out (its harness is reused)."""
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
