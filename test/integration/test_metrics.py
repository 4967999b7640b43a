"""Metrics (SPEC §19, issue 19): the master's /metrics on metrics.address and on the API
socket, scraped by a real Prometheus whose query API must return what the test caused (a
restart counted, messages counted, a backlog seen); `promtool check metrics` on the text."""
import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import HUB_PRINCIPALS, binary, free_port, wait_for, wait_port
from master_harness import CRASHER, SLEEPER, app_yaml, master, svc, vols  # noqa: F401

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"

def hub_conf(port):
    return f"listen:\n  - tcp://127.0.0.1:{port}\n{HUB_PRINCIPALS}" \
        "status:\n  report:\n    interval: 500ms\n"


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


RM_CONF = """hub:
  address: tcp://127.0.0.1:{hub}
  username: test
  password: hahaha
remotes:
  - name: cloud
    address: tcp://127.0.0.1:{cloud}
    clientid: rm-cloud
    interval: 1s
rules:
  - hub: {{subscriptions: [{{topic: up/#, qos: 1}}]}}
    remote: {{name: cloud, subscriptions: [{{topic: down/#, qos: 1}}]}}
status:
  report:
    interval: 500ms
"""


def hub_master(master, hub_extra="", cloud_port=None, **kw):
    """A master with metrics.address, a hub (the real baetyl-hub) and a sleeper service;
    with cloud_port also remote-mqtt bridging up/# to a broker on that port."""
    mport = free_port()
    m = master(conf_extra=f"metrics:\n  address: tcp://127.0.0.1:{mport}\n", **kw)
    m.metrics_port = mport
    m.hub_port = free_port()
    m.package("hubpkg", f"#!/bin/sh\nexec {binary('baetyl-hub')}\n")
    m.package("pkg", SLEEPER)
    m.write("var/db/baetyl/hubconf/service.yml", hub_conf(m.hub_port) + hub_extra)
    hub = svc("hub", "hubpkg", mounts=[
        {"name": "hubpkg", "path": "lib/baetyl/hubpkg", "readonly": True},
        {"name": "hubconf", "path": "etc/baetyl", "readonly": True},
        {"name": "hubdata", "path": "var/db/baetyl/data"}])
    volumes = vols("hubpkg", "pkg") + [
        {"name": "hubconf", "path": "var/db/baetyl/hubconf"},
        {"name": "hubdata", "path": "var/db/hubdata"}]
    services = [hub, svc("sleepy", "pkg")]
    if cloud_port:
        m.package("rmpkg", f"#!/bin/sh\nexec {binary('baetyl-remote-mqtt')}\n")
        m.write("var/db/baetyl/rmconf/service.yml",
                RM_CONF.format(hub=m.hub_port, cloud=cloud_port))
        services.append(svc("remote", "rmpkg", mounts=[
            {"name": "rmpkg", "path": "lib/baetyl/rmpkg", "readonly": True},
            {"name": "rmconf", "path": "etc/baetyl", "readonly": True}]))
        volumes += [{"name": "rmpkg", "path": "var/db/baetyl/rmpkg"},
                    {"name": "rmconf", "path": "var/db/baetyl/rmconf"}]
    m.app(app_yaml(services, volumes))
    m.start()
    m.wait_running("hub")
    wait_port(m.hub_port, timeout=20)  # running is not yet listening
    m.wait_running("sleepy")
    return m


def scrape(m):
    return http_get(f"http://127.0.0.1:{m.metrics_port}/metrics")[2]


def sample(text, name, **labels):
    """The value of the first sample of name carrying those labels, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def mqtt(m, *args):
    base = ["-h", "127.0.0.1", "-p", str(m.hub_port), "-u", "test", "-P", "hahaha"]
    return subprocess.run([args[0], *base, *args[1:]], capture_output=True, text=True, timeout=20)


class Prometheus:
    """A Prometheus server of our own (free port, temp dir) scraping the master every 1s."""

    def __init__(self, procs, d, target):
        self.port = free_port()
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: baetyl\n"
                    f"    static_configs:\n      - targets: ['{target}']\n")
        self.log = open(os.path.join(d, "prometheus.log"), "w")
        self.proc = procs.start([PROMETHEUS, f"--config.file={conf}",
                                 f"--storage.tsdb.path={os.path.join(d, 'tsdb')}",
                                 f"--web.listen-address=127.0.0.1:{self.port}"],
                                stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.ready, 30, interval=0.2, what="prometheus ready")

    def ready(self):
        try:
            return http_get(f"http://127.0.0.1:{self.port}/-/ready", 2)[0] == 200
        except OSError:
            return False

    def query(self, q):
        """[(labels, value)] of an instant query."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        body = json.loads(http_get(url)[2])
        assert body["status"] == "success", body
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]

    def wait_value(self, q, pred, timeout=30):
        def ok():
            r = self.query(q)
            return r if r and all(pred(v) for _, v in r) else None
        return wait_for(ok, timeout, interval=0.5, what=f"prometheus: {q}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)
        self.log.close()


needs_prometheus = pytest.mark.skipif(not os.path.exists(PROMETHEUS),
                                      reason="scripts/deps.sh installs prometheus")


@needs_prometheus
def test_prometheus_sees_restart_messages_and_backlog(master, procs):
    m = hub_master(master)
    prom = Prometheus(procs, m.path("prom"), f"127.0.0.1:{m.metrics_port}")
    prom.wait_value('up{job="baetyl"}', lambda v: v == 1)

    # a restart: kill the sleeper; the supervisor starts it again
    pid = m.running_pid("sleepy")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: m.running_pid("sleepy") not in (None, pid), 15, what="sleepy restarted")
    prom.wait_value('baetyl_instance_restarts_total{service="sleepy",instance_name="sleepy"}',
                    lambda v: v == 1)
    prom.wait_value('baetyl_instance_last_exit_code{service="sleepy"}', lambda v: v == 137)

    # messages: 3 at QoS 1, 2 at QoS 0
    for q, n in (("1", 3), ("0", 2)):
        for i in range(n):
            r = mqtt(m, "mosquitto_pub", "-q", q, "-t", "m/x", "-m", f"hello {i}")
            assert r.returncode == 0, r.stderr
    prom.wait_value('baetyl_hub_messages_received_total{service="hub",qos="1"}',
                    lambda v: v == 3)
    prom.wait_value('baetyl_hub_messages_received_total{service="hub",qos="0"}',
                    lambda v: v == 2)

    # a backlog: a persistent session goes away, then 4 messages wait for it
    r = mqtt(m, "mosquitto_sub", "-c", "-i", "backlogged", "-q", "1", "-t", "b/#", "-W", "1")
    assert r.returncode in (0, 27), r.stderr  # 27: -W timed out, as intended
    for i in range(4):
        assert mqtt(m, "mosquitto_pub", "-q", "1", "-t", "b/x", "-m", str(i)).returncode == 0
    prom.wait_value('baetyl_hub_session_queued_messages{client_id="backlogged"}',
                    lambda v: v == 4)
    prom.wait_value("baetyl_hub_oldest_unacked_age_seconds", lambda v: v > 0)
    # only messages some consumer needs are written: the 4 for the away session
    prom.wait_value("baetyl_hub_store_commit_duration_seconds_count", lambda v: v >= 1)
    prom.stop()


@needs_prometheus
def test_promtool_accepts_the_text_and_the_api_socket_serves_it(master):
    m = hub_master(master)
    wait_for(lambda: sample(scrape(m), "baetyl_hub_connections") is not None, 15,
             what="hub metrics reported")
    status, ctype, text = http_get(f"http://127.0.0.1:{m.metrics_port}/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), ctype
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr + text
    for name in ("baetyl_instance_status", "baetyl_instance_restarts_total",
                 "baetyl_instance_cpu_seconds_total", "baetyl_instance_memory_bytes",
                 "baetyl_instance_uptime_seconds", "baetyl_api_requests_total",
                 "baetyl_hub_messages_sent_total", "baetyl_hub_store_size_bytes",
                 "baetyl_hub_store_commit_duration_seconds", "baetyl_hub_auth_failures_total"):
        assert f"# TYPE {name} " in text, name
    assert sample(text, "baetyl_instance_status", service="sleepy", status="running") == 1
    assert sample(text, "baetyl_hub_connections", service="hub",
                  listener=f"tcp://127.0.0.1:{m.hub_port}") is not None

    # an authentication failure is counted
    r = mqtt(m, "mosquitto_pub", "-P", "wrong", "-t", "a", "-m", "x")
    assert r.returncode != 0
    wait_for(lambda: sample(scrape(m), "baetyl_hub_auth_failures_total") == 1, 10,
             what="auth failure counted")

    # the API socket: the same text with an account, none without; requests are counted
    st, body = m.request("GET", "/metrics")
    assert st == 200 and "# TYPE baetyl_instance_status gauge" in body
    st, _ = m.request("GET", "/metrics", user="nobody", password="x")
    assert st == 401
    text = scrape(m)
    assert sample(text, "baetyl_api_requests_total", route="metrics", code="401") == 1
    assert sample(text, "baetyl_api_requests_total", route="metrics", code="200") >= 1

    # only /metrics and / are served on the metrics listener
    with pytest.raises(urllib.error.HTTPError) as e:
        http_get(f"http://127.0.0.1:{m.metrics_port}/v1/system/inspect")
    assert e.value.code == 404


def test_metrics_address_must_be_tcp(master):
    m = master(conf_extra="metrics:\n  address: unix:///tmp/x.sock\n")
    assert m.start(expect_fail=True) != 0
    assert "metrics.address" in m.read("master.out"), m.read("master.out")


def test_status_prints_health_and_check_says_why(master):
    m = hub_master(master)
    r = m.cmd("status", "--check")
    assert r.returncode == 0 and r.stdout.strip() == "healthy", r.stdout + r.stderr

    # a backlog: with --max-age 1ms the waiting message is too old
    r = mqtt(m, "mosquitto_sub", "-c", "-i", "away", "-q", "1", "-t", "b/#", "-W", "1")
    assert mqtt(m, "mosquitto_pub", "-q", "1", "-t", "b/x", "-m", "1").returncode == 0
    wait_for(lambda: "oldest waiting message" in m.cmd("status").stdout, 15,
             what="backlog in status")
    r = m.cmd("status")
    assert r.returncode == 0
    assert "health:" in r.stdout and "1 messages wait for away persistent sessions" in r.stdout
    r = m.cmd("status", "--check", "--max-age", "1ms")
    assert r.returncode == 1 and "unhealthy: hub: a message has waited" in r.stdout, r.stdout
    assert m.cmd("status", "--check", "--max-age", "1h").returncode == 0
    assert m.cmd("status", "--check", "--max-age", "soon").returncode == 2


def test_check_fails_while_a_service_restarts(master):
    m = master()
    m.package("crash", CRASHER)
    restart = {"policy": "always", "backoff": {"min": "30s"}}
    m.app(app_yaml([svc("c", "crash", restart=restart)], vols("crash")))
    m.start()
    wait_for(lambda: (m.instance("c", "c") or {}).get("status") == "restarting", 15,
             what="restarting")
    r = m.cmd("status", "--check")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "unhealthy: service c instance c is restarting" in r.stdout
    # without metrics.address /metrics is still served on the API socket
    st, body = m.request("GET", "/metrics")
    want = 'baetyl_instance_status{service="c",instance_name="c",status="restarting"} 1'
    assert st == 200 and want in body, body


def test_check_warns_of_a_certificate_expiring_within_7_days(master, tmp_path):
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True, timeout=60)
    m = hub_master(master, hub_extra=f"certificate:\n  cert: {crt}\n  key: {key}\n")
    wait_for(lambda: sample(scrape(m), "baetyl_tls_cert_expires_in_seconds") is not None, 15,
             what="certificate expiry reported")
    left = sample(scrape(m), "baetyl_tls_cert_expires_in_seconds", use="hub")
    assert 2 * 86400 < left <= 3 * 86400, left
    r = m.cmd("status", "--check")
    assert r.returncode == 1, r.stdout
    assert f"unhealthy: hub: certificate {crt} expires in 3.0 days" in r.stdout, r.stdout


def test_remote_link_backlog_and_forwarding(master, procs, tmp_path):
    cloud = free_port()
    m = hub_master(master, cloud_port=cloud)
    m.wait_running("remote")
    lbl = {"service": "remote", "remote": "cloud"}
    wait_for(lambda: sample(scrape(m), "baetyl_remote_link_up", **lbl) == 0, 15,
             what="remote link down reported")
    for i in range(3):
        assert mqtt(m, "mosquitto_pub", "-q", "1", "-t", "up/x", "-m", str(i)).returncode == 0
    wait_for(lambda: (sample(scrape(m), "baetyl_remote_backlog_messages", **lbl) or 0) >= 1, 15,
             what="backlog reported")
    wait_for(lambda: sample(scrape(m), "baetyl_remote_oldest_backlog_age_seconds", **lbl) > 0.5,
             15, what="backlog age")
    r = m.cmd("status", "--check", "--max-age", "100ms")
    assert r.returncode == 1 and "unhealthy: remote: a message has waited" in r.stdout, r.stdout

    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {cloud} 127.0.0.1\nallow_anonymous true\n")
    procs.start(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)

    def drained():
        t = scrape(m)
        return (sample(t, "baetyl_remote_link_up", **lbl) == 1 and
                sample(t, "baetyl_remote_backlog_messages", **lbl) == 0 and
                sample(t, "baetyl_remote_forwarded_messages_total", direction="hub_to_remote",
                       **lbl) == 3)
    wait_for(drained, 30, what="backlog forwarded")
    assert sample(scrape(m), "baetyl_remote_connects_total", **lbl) == 1
