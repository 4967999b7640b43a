"""Operations: the seed's chapter 8 example, listeners, logs (logrus text, JSON file, level),
status logging, counters reported to the master, retention cleanup, SIGTERM and wills at
stop, the command line (--version, --help) and the OPENEDGE_* environment fallback."""

import http.server
import json
import os
import re
import signal
import subprocess
import threading
import time

from conftest import (RawClient, SRC, binary, free_port, mqtt_connect, mqtt_puback, mqtt_publish,
                      mqtt_subscribe, parse_publish, wait_for, wait_port)
from hub_util import PRINCIPALS, conn, get, subscribe


def test_two_listeners(procs, tmp_path):
    p1, p2 = free_port(), free_port()
    (tmp_path / "c.yml").write_text(f"listen: ['tcp://127.0.0.1:{p1}', 'tcp://127.0.0.1:{p2}']\n"
                                    "storage: {dir: data}\n" + PRINCIPALS)
    h = procs.start([binary("baetyl-hub"), "-c", str(tmp_path / "c.yml")], cwd=str(tmp_path))
    wait_port(p1)
    wait_port(p2)
    a = RawClient(p1)
    assert a.connect(client_id="on1", username="test", password="hahaha") == 0
    assert subscribe(a, [("two/x", 0)]) == [0]
    b = RawClient(p2)
    assert b.connect(client_id="on2", username="test", password="hahaha") == 0
    b.send(mqtt_publish("two/x", b"across listeners"))
    assert get(a)[:2] == ("two/x", b"across listeners")
    assert procs.stop(h) == 0


# logrus quotes a value only when it needs quotes (msg=listening, msg="client connected")
LOGRUS = re.compile(r'^time="[^"]+" level=(debug|info|warn|warning|error|fatal) msg=("([^"\\]|\\.)*"|[^\s"]+)( |$)')


def test_log_lines_are_logrus_text(hub_factory):
    hub = hub_factory("logger: {level: debug}\n")
    c = conn(hub, "logme")
    c.send(bytes([0xE0, 0]))
    wait_for(lambda: "logme" in hub.read_log(), timeout=5, what="a log line naming the client")
    hub.stop()
    lines = [ln for ln in hub.read_log().splitlines() if ln.strip()]
    assert lines
    bad = [ln for ln in lines if not LOGRUS.match(ln)]
    assert not bad, bad[:5]
    assert any("level=debug" in ln for ln in lines)


def test_log_json_file_and_level(hub_factory, tmp_path):
    hub = hub_factory("logger: {path: var/log/hub.log, format: json, level: warn}\n")
    c = RawClient(hub.port)
    assert c.connect(client_id="lj", username="test", password="bad") == 4
    ok = conn(hub, "lj2")
    ok.send(bytes([0xE0, 0]))
    assert hub.stop() == 0
    path = os.path.join(hub.dir, "var", "log", "hub.log")
    assert os.path.exists(path), "logger.path must be written"
    lines = [ln for ln in open(path).read().splitlines() if ln.strip()]
    assert lines, "a refused connection is worth a warning"
    for ln in lines:
        d = json.loads(ln)
        assert d["level"] in ("warn", "warning", "error"), d
        assert "msg" in d and "time" in d


def test_sigterm_exits_0_promptly_with_busy_clients(hub_factory):
    hub = hub_factory()
    s = conn(hub, "st-s", clean=False)
    assert subscribe(s, [("st/#", 1)]) == [1]
    p = conn(hub, "st-p")
    for i in range(20):
        p.send(mqtt_publish("st/x", b"%d" % i, qos=1, pid=i + 1))   # never PUBACKed by s
    idle = conn(hub, "st-idle", keepalive=0)
    half = RawClient(hub.port)
    half.send(mqtt_connect(client_id="half", username="test", password="hahaha")[:7])
    time.sleep(0.3)
    t0 = time.monotonic()
    assert hub.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 3, "SIGTERM must stop the hub promptly"
    assert s.closed(1) and idle.closed(1)


SEED_CH8 = """listen:
  - tcp://0.0.0.0:1883
principals:
  - username: 'test'
    password: 'hahaha'
    permissions:
      - action: 'pub'
        permit: ['#']
      - action: 'sub'
        permit: ['#']
subscriptions:
  - source:
      topic: 't'
    target:
      topic: 't/topic'
logger:
  path: var/log/baetyl/service.log
  level: 'debug'
"""


def test_seed_chapter8_with_mosquitto_clients(procs, tmp_path):
    port = free_port()
    (tmp_path / "etc" / "baetyl").mkdir(parents=True)
    (tmp_path / "etc" / "baetyl" / "service.yml").write_text(SEED_CH8.replace("0.0.0.0:1883", f"127.0.0.1:{port}"))
    out = open(tmp_path / "stderr.txt", "wb")
    hub = procs.start([binary("baetyl-hub")], cwd=str(tmp_path), stdout=out, stderr=subprocess.STDOUT)
    wait_port(port)
    common = ["-h", "127.0.0.1", "-p", str(port), "-u", "test", "-P", "hahaha"]
    # client2 subscribes t, client3 subscribes t/topic, the merged client both
    subs = [subprocess.Popen(["mosquitto_sub", *common, "-v", "-C", str(n), "-W", "10", *sum((["-t", t] for t in ts), [])],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for ts, n in ((["t"], 1), (["t/topic"], 1), (["t", "t/topic"], 2))]
    try:
        time.sleep(0.5)
        r = subprocess.run(["mosquitto_pub", *common, "-t", "t", "-m", "This is a new message."],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        outs = [s.communicate(timeout=10)[0] for s in subs]
    finally:
        for s in subs:
            s.kill()
            s.wait()
    assert outs[0].splitlines() == ["t This is a new message."]
    assert outs[1].splitlines() == ["t/topic This is a new message."]
    assert sorted(outs[2].splitlines()) == ["t This is a new message.", "t/topic This is a new message."]
    # chapter 7: a wrong password is refused
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", "test", "-P", "wrong",
                        "-t", "t", "-m", "x"], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert procs.stop(hub) == 0
    out.close()
    log = (tmp_path / "var" / "log" / "baetyl" / "service.log").read_text()
    log += (tmp_path / "stderr.txt").read_text(errors="replace")
    assert "Sanitizer" not in log and "runtime error" not in log
    assert "client connected" in log  # level debug from the seed's config
    assert (tmp_path / "var" / "db" / "baetyl" / "data").is_dir()


def test_example_native_chapter8(procs, tmp_path):
    """The example's hub config (user test, route t -> t/topic), on a free port."""
    src = os.path.join(SRC, "example", "native", "var", "db", "baetyl", "localhub-conf", "service.yml")
    text = open(src).read()
    assert "tcp://0.0.0.0:1883" in text
    port = free_port()
    (tmp_path / "etc" / "baetyl").mkdir(parents=True)
    (tmp_path / "etc" / "baetyl" / "service.yml").write_text(text.replace("0.0.0.0:1883", f"127.0.0.1:{port}"))
    pkg = open(os.path.join(SRC, "hub", "package.yml")).read()
    assert "entry: bin/baetyl-hub" in pkg
    p = procs.start([binary("baetyl-hub")], cwd=tmp_path)  # default config path etc/baetyl/service.yml
    wait_port(port)
    c = RawClient(port)
    assert c.connect(client_id="mqttbox", username="test", password="hahaha") == 0
    c.send(mqtt_subscribe(1, [("t", 0), ("t/topic", 0)]))
    assert c.recv()[0] == 9
    c.send(mqtt_publish("t", b"This is a new message."))
    got = sorted(parse_publish(*c.recv()[1:])[:2] for _ in range(2))
    assert got == [("t", b"This is a new message."), ("t/topic", b"This is a new message.")]
    assert procs.stop(p) == 0
    log = (tmp_path / "var" / "log" / "baetyl" / "service.log").read_text()
    assert "client connected" in log  # level debug, file from the config
    assert (tmp_path / "var" / "db" / "baetyl" / "data").is_dir()  # default storage.dir


def test_status_logging(hub_factory):
    hub = hub_factory("status: {logging: {enable: true, interval: 1s}}\n")
    c = RawClient(hub.port)
    assert c.connect(client_id="s", username="test", password="hahaha") == 0
    wait_for(lambda: "hub status" in hub.read_log(), timeout=5, what="status line")
    assert "connections=1" in hub.read_log()


class Master(http.server.BaseHTTPRequestHandler):
    reports = []

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Master.reports.append((self.path, self.headers.get("x-openedge-username"), json.loads(body or b"{}")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_counters_reported_to_master(hub_factory):
    srv = http.server.HTTPServer(("127.0.0.1", 0), Master)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        hub = hub_factory("status: {report: {interval: 1s}}\n", start=False)
        os.environ.update(BAETYL_MASTER_API_ADDRESS=f"tcp://127.0.0.1:{srv.server_port}",
                          BAETYL_SERVICE_NAME="localhub", BAETYL_SERVICE_INSTANCE_NAME="localhub",
                          BAETYL_SERVICE_TOKEN="tok")
        try:
            hub.start()
        finally:
            for k in ("BAETYL_MASTER_API_ADDRESS", "BAETYL_SERVICE_NAME", "BAETYL_SERVICE_INSTANCE_NAME",
                      "BAETYL_SERVICE_TOKEN"):
                os.environ.pop(k, None)
        c = RawClient(hub.port)
        assert c.connect(client_id="r", username="test", password="hahaha") == 0
        c.send(mqtt_publish("x", b"1"))
        wait_for(lambda: any(r[2].get("hub", {}).get("messages_in", 0) >= 1 for r in Master.reports), timeout=8,
                 what="a report")
        path, user, body = Master.reports[-1]
        assert path == "/v1/services/localhub/instances/localhub/report"
        assert user == "localhub"
        assert body["hub"]["connections"] >= 1
    finally:
        srv.shutdown()


def test_retention_cleanup(hub_factory):
    hub = hub_factory("message: {ingress: {qos1: {cleanup: {retention: 1s, interval: 1s}}}}\n")
    s = RawClient(hub.port)
    assert s.connect(client_id="away", username="test", password="hahaha", clean=False) == 0
    s.send(mqtt_subscribe(1, [("old/#", 1)]))
    s.recv()
    s.close()
    p = RawClient(hub.port)
    assert p.connect(client_id="p", username="test", password="hahaha") == 0
    p.send(mqtt_publish("old/x", b"expired", qos=1, pid=1))
    assert p.recv()[0] == 4
    time.sleep(3)
    s = RawClient(hub.port)
    assert s.connect(client_id="away", username="test", password="hahaha", clean=False) == 0
    try:
        got = s.recv(timeout=1.5)
    except TimeoutError:
        got = None
    assert got is None or got[0] != 3, "a message older than the retention was delivered"


def test_graceful_stop_fires_wills_and_exits_0(hub_factory):
    hub = hub_factory()
    w = RawClient(hub.port)
    assert w.connect(client_id="w", username="test", password="hahaha", clean=False) == 0
    w.send(mqtt_subscribe(1, [("bye/#", 1)]))
    w.recv()
    w.close()
    a = RawClient(hub.port)
    assert a.connect(client_id="a", username="test", password="hahaha", will=("bye/a", b"hub stopped", 1, False)) == 0
    assert hub.stop(signal.SIGTERM) == 0
    log = hub.read_log()
    assert "Sanitizer" not in log
    hub.start()
    w = RawClient(hub.port)
    assert w.connect(client_id="w", username="test", password="hahaha", clean=False) == 0
    m = w.recv()
    assert parse_publish(m[1], m[2])[:2] == ("bye/a", b"hub stopped")
    w.send(mqtt_puback(parse_publish(m[1], m[2])[5]))


def test_cli_version_help_and_bad_option(procs, tmp_path):
    """The hub starts through the SDK's bt_run like every module (issue 11.2)."""
    r = subprocess.run([binary("baetyl-hub"), "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("baetyl-hub version "), r.stdout + r.stderr
    r = subprocess.run([binary("baetyl-hub"), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "--config" in r.stdout and "MQTT" in r.stdout
    r = subprocess.run([binary("baetyl-hub"), "--nope"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "Usage" in r.stderr


def test_openedge_env_fallback_and_empty_values(hub_factory):
    """An empty BAETYL_* variable falls back to its OPENEDGE_* twin (SDK rule)."""
    hub = hub_factory(start=False)
    env = dict(os.environ, BAETYL_SERVICE_NAME="", OPENEDGE_SERVICE_NAME="oldhub",
               OPENEDGE_SERVICE_INSTANCE_NAME="oldhub-1")
    hub.logf = open(hub.log, "ab")
    hub.proc = hub.procs.start([binary("baetyl-hub"), "-c", hub.conf], cwd=hub.dir, env=env,
                               stdout=hub.logf, stderr=subprocess.STDOUT)
    wait_port(hub.port)
    wait_for(lambda: "hub started" in hub.read_log(), timeout=5, what="start line")
    log = hub.read_log()
    assert "service=oldhub" in log and "instance=oldhub-1" in log, log
