"""baetyl-timer (SPEC §14) against the real hub: the interval, the payload plus the time,
QoS 0 and 1, defaults, config errors, and the timer example run by the master; then the
acceptance pass written from SPEC and the seed (6.4.4, chapter 17) only: chapter 17's config
as written, payload types and nested values, buffersize, ssl with a client certificate, and
config errors naming the field."""
import json
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import SRC, binary, free_port, wait_for, wait_port
from mqtt_peers import gaps, hub_clients, hub_yaml, make_certs, run_once, tls_hub
from mqtt_peers import module, paho  # noqa: F401  (fixtures)
from master_harness import master  # noqa: F401 (fixture)


class Watcher:
    """A paho client of the hub subscribed to one topic (QoS 1), recording (arrival time,
    message)."""

    def __init__(self, port, topic):
        self.c = mqtt.Client(client_id="", clean_session=True)
        self.c.username_pw_set("test", "hahaha")
        self.msgs = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.c.on_connect = lambda c, u, f, rc: c.subscribe(topic, 1)
        self.c.on_subscribe = lambda c, u, mid, g: self.ready.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        wait_for(self.ready.is_set, 10, what=f"subscribed to {topic}")

    def _on_message(self, c, u, m):
        with self.lock:
            self.msgs.append((time.time(), m))

    def wait(self, n, timeout=20):
        wait_for(lambda: len(self.msgs) >= n, timeout, what=f"{n} timer messages")
        with self.lock:
            return list(self.msgs)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def timer(procs, tmp_path):
    """start(conf) -> the timer process (output in timer.log); at teardown: a clean SIGTERM
    stop with exit code 0 and no sanitizer report."""
    made = []

    def start(conf):
        d = tmp_path / f"timer{len(made) + 1}"
        d.mkdir()
        (d / "service.yml").write_text(conf)
        log = open(d / "timer.log", "wb")
        p = procs.start([binary("baetyl-timer"), "-c", str(d / "service.yml")], cwd=str(d),
                        stdout=log, stderr=subprocess.STDOUT)
        made.append((p, log, d / "timer.log"))
        return p
    yield start
    for p, log, path in made:
        if p.poll() is None:
            rc = procs.stop(p)
            log.close()
            text = path.read_text(errors="replace")
            assert "Sanitizer" not in text and "runtime error" not in text, text[-3000:]
            assert rc == 0, f"timer exited with {rc}: {text[-2000:]}"


def hub_section(hub, clientid="timer1"):
    cid = f"  clientid: {clientid}\n" if clientid else ""
    return (f"hub:\n  address: tcp://127.0.0.1:{hub.port}\n  username: test\n"
            f"  password: hahaha\n{cid}")


def test_interval_payload_time_qos1(hub, timer):
    w = Watcher(hub.port, "timer1")
    try:
        timer(hub_section(hub) + """timer:
  interval: 200ms
publish:
  topic: timer1
  qos: 1
  payload:
    id: 1
    name: edge
    ratio: 2.5
    on: true
    time: overwritten
""")
        got = w.wait(8)
    finally:
        w.close()
    for at, m in got:
        assert m.topic == "timer1" and m.qos == 1 and not m.retain
        body = json.loads(m.payload)
        assert set(body) == {"id", "name", "ratio", "on", "time"}
        assert body["id"] == 1 and body["name"] == "edge" and body["ratio"] == 2.5
        assert body["on"] is True
        assert isinstance(body["time"], int) and abs(body["time"] - at) <= 2
    gaps = [b[0] - a[0] for a, b in zip(got, got[1:])]
    assert 0.12 <= statistics.median(gaps) <= 0.3, gaps
    # 7 intervals take 1.4 s (a 100 ms or 400 ms timer would be far off, even on a busy
    # machine where single messages arrive late)
    assert 1.0 <= got[-1][0] - got[0][0] <= 2.2, gaps


def test_defaults_topic_timer_qos0_and_clientid(hub, timer):
    """publish.topic defaults to `timer`, qos to 0; without hub.clientid the persistent
    session uses the instance name (standalone: the program's name)."""
    w = Watcher(hub.port, "#")
    try:
        timer(hub_section(hub, clientid=None) + "timer: {interval: 100ms}\n")
        got = w.wait(3)
    finally:
        w.close()
    for _, m in got:
        assert m.topic == "timer" and m.qos == 0
        assert set(json.loads(m.payload)) == {"time"}


def test_hub_down_then_up(hub, timer):
    """The timer keeps running while the hub is away and publishes again once it is back."""
    timer(hub_section(hub) + "timer: {interval: 100ms}\npublish: {topic: t, qos: 1}\n")
    w = Watcher(hub.port, "t")
    w.wait(2)
    w.close()
    hub.stop()
    time.sleep(1.0)
    hub.start()
    w = Watcher(hub.port, "t")
    try:
        w.wait(3, timeout=30)  # the SDK client reconnects after 0.5 s, 1 s, 2 s, ...
    finally:
        w.close()


@pytest.mark.parametrize("conf,want", [
    ("hub: {clientid: x}\n", "hub.address: required"),
    ("hub: {address: 'tcp://127.0.0.1:1'}\ntimer: {interval: soon}\n", "timer.interval"),
    ("hub: {address: 'tcp://127.0.0.1:1'}\ntimer: {interval: 0s}\n", "timer.interval: must be between"),
    ("hub: {address: 'tcp://127.0.0.1:1'}\npublish: {qos: 2}\n", "publish.qos: must be between 0 and 1"),
    ("hub: {address: 'tcp://127.0.0.1:1'}\npublish: {topic: 'a/+'}\n",
     "publish.topic: invalid topic name (a/+)"),
    ("hub: {address: 'tcp://127.0.0.1:1'}\npublish: {payload: [1, 2]}\n", "publish.payload"),
])
def test_bad_config_refused(tmp_path, conf, want):
    path = tmp_path / "service.yml"
    path.write_text(conf)
    p = subprocess.run([binary("baetyl-timer"), "-c", str(path)], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=30)
    out = p.stderr + p.stdout
    assert p.returncode == 1, out
    assert want in out, out


def test_timer_example_under_master(master):
    """example/native-timer as `make install` lays it out, run by the real master."""
    ex = os.path.join(SRC, "example", "native-timer")
    m = master(grace="5s")
    shutil.copytree(os.path.join(ex, "var"), m.path("var"), dirs_exist_ok=True)
    port = free_port()
    for rel, old in (("var/db/baetyl/localhub-conf/service.yml", "tcp://0.0.0.0:1883"),
                     ("var/db/baetyl/timer-conf/service.yml", "tcp://127.0.0.1:1883")):
        text = m.read(rel)
        assert old in text, (rel, old)
        m.write(rel, text.replace(old, f"tcp://127.0.0.1:{port}"))
    for mod, src_dir in (("baetyl-hub", "hub"), ("baetyl-timer", "timer")):
        pkg = m.path(f"var/db/baetyl/{mod}")
        os.makedirs(os.path.join(pkg, "bin"))
        shutil.copy(binary(mod), os.path.join(pkg, "bin", mod))
        shutil.copy(os.path.join(SRC, src_dir, "package.yml"), os.path.join(pkg, "package.yml"))
    m.start()
    wait_port(port, timeout=20)
    w = Watcher(port, "timer1")
    try:
        got = w.wait(2, timeout=10)
    finally:
        w.close()
    body = json.loads(got[0][1].payload)
    assert body["id"] == 1 and abs(body["time"] - time.time()) < 5
    assert m.stop() == 0
    log = m.read("var/db/baetyl/timer-log/service.log", "")
    assert 'msg="service stopped"' in log


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # paho's ssl.PROTOCOL_TLS
def test_timer_to_hub_over_ssl_with_client_certificate(hub_factory, module, paho, tmp_path):
    """§17 towards the hub: ssl address, ca/cert/key, a username and no password."""
    certs = make_certs(tmp_path / "certs")
    hub = tls_hub(hub_factory, certs)
    w = paho(hub.port, [("tls/tick", 1)], user="test", password="hahaha")
    module("baetyl-timer", f"""hub:
  address: ssl://127.0.0.1:{hub.ssl_port}
  username: two-way-tls
  clientid: tls-timer
  ca: {certs['ca']}
  cert: {certs['client']}
  key: {certs['client_key']}
timer: {{interval: 200ms}}
publish: {{topic: tls/tick, qos: 1}}
""")
    wait_for(lambda: len(w.got()) >= 2, 15, what="ticks over ssl")
    assert all(m[0] == "tls/tick" and m[2] == 1 for m in w.got()), w.got()
    assert "tls-timer" in hub_clients(hub)


# ---- timer ------------------------------------------------------------------------------

def test_timer_seed_chapter17_config(hub_factory, module, paho):
    """Chapter 17's config exactly: clientid timer1, interval 1s, topic timer1 (qos and payload
    unset): QoS 0 messages `{"time": <unix seconds>}` once a second."""
    hub = hub_factory(extra="logger: {level: debug}\n")
    w = paho(hub.port, [("#", 1)], user="test", password="hahaha")
    module("baetyl-timer", f"""hub:
  address: tcp://127.0.0.1:{hub.port}
  username: test
  password: hahaha
  clientid: timer1
timer:
  interval: 1s
publish:
  topic: timer1
""")
    wait_for(lambda: len(w.got()) >= 3, 15, what="3 ticks")
    with w.lock:
        msgs = list(w.msgs[:3])
    for topic, payload, qos, retain, _ in msgs:
        assert (topic, qos, retain) == ("timer1", 0, False)
        body = json.loads(payload)
        assert list(body) == ["time"] and type(body["time"]) is int
        assert abs(body["time"] - time.time()) <= 3
    g = gaps([m[4] for m in msgs])
    assert all(0.7 <= x <= 1.3 for x in g), g
    assert "timer1" in hub_clients(hub)


def test_timer_payload_scalars_keep_their_yaml_type(hub, module, paho):
    """The payload map is published as JSON with YAML's types: quoted scalars are strings
    (even when they look like numbers or booleans), strings are escaped properly."""
    w = paho(hub.port, [("types", 1)], user="test", password="hahaha")
    module("baetyl-timer", hub_yaml(hub, "  clientid: types-timer\n") + """timer: {interval: 200ms}
publish:
  topic: types
  payload:
    id: 1
    ratio: 2.5
    on: true
    code: "42"
    flag: 'false'
    name: "007"
    text: 'say "hi" \\ ünï'
""")
    wait_for(lambda: w.got(), 10, what="a tick")
    body = json.loads(w.got()[0][1])
    time_ = body.pop("time")
    assert type(time_) is int
    assert body == {"id": 1, "ratio": 2.5, "on": True, "code": "42", "flag": "false",
                    "name": "007", "text": 'say "hi" \\ ünï'}, body


def test_timer_payload_nested_values(hub, module, paho):
    """`payload` is a map (6.4.4): nested maps and lists in it are published as JSON."""
    w = paho(hub.port, [("nested", 1)], user="test", password="hahaha")
    t = module("baetyl-timer", hub_yaml(hub, "  clientid: nested-timer\n") + """\
timer: {interval: 200ms}
publish:
  topic: nested
  payload:
    device: {id: 7, tags: [a, b]}
    list: [1, 2]
""")
    wait_for(lambda: w.got() or t.proc.poll() is not None, 10, what="a tick")
    assert t.proc.poll() is None, t.log()[-1000:]
    body = json.loads(w.got()[0][1])
    body.pop("time")
    assert body == {"device": {"id": 7, "tags": ["a", "b"]}, "list": [1, 2]}, body


def test_timer_buffersize_default_bounds_what_is_held(hub, module, paho):
    """§17 buffersize 10: while the hub does not acknowledge (frozen), the timer holds at most
    10 QoS 1 ticks; the rest are dropped (logged), not piled up."""
    w = paho(hub.port, [("buf", 1)], user="test", password="hahaha")
    t = module("baetyl-timer", hub_yaml(hub, "  clientid: buf-timer\n") +
               "timer: {interval: 100ms}\npublish: {topic: buf, qos: 1}\n")
    wait_for(lambda: len(w.got()) >= 3, 10, what="ticks")
    os.kill(hub.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(2.5)  # 25 ticks
    finally:
        os.kill(hub.proc.pid, signal.SIGCONT)
    thaw = time.monotonic()
    time.sleep(1.0)
    with w.lock:
        after = [m[4] for m in w.msgs if m[4] >= thaw]
    assert after, "nothing after the thaw"
    burst = [x for x in after if x - after[0] <= 0.08]
    assert 9 <= len(burst) <= 11, (len(burst), len(after))
    assert "tick not published" in t.log() or "queue full" in t.log(), t.log()[-2000:]


# ---- config errors name the field ----------------------------------------------------------

@pytest.mark.parametrize("conf,want", [
    ("timer: {interval: 1s}\n", ["hub.address", "required"]),
    ("hub: {address: 'tcp://127.0.0.1:1', buffersize: 0}\n", ["hub.buffersize"]),
    ("hub: {address: 'http://127.0.0.1:1'}\n", ["hub.address"]),
])
def test_timer_config_errors_name_the_field(tmp_path, conf, want):
    rc, out = run_once(tmp_path, "baetyl-timer", conf)
    assert rc == 1, out
    for w in want:
        assert w in out, out
