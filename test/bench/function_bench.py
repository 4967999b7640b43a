#!/usr/bin/python3
"""Function benchmark (issue 7): MQTT round trips through the hub, the function-manager and
each runtime (Python 3, Node, SQL), all started by the real master in native mode.

For each runtime:
  cold    first-message latency of a function without an instance (the instance starts)
  seq     round-trip latency p50/p99 with one message in flight, 1 instance
  flood1  throughput (and round trips incl. queueing) of a burst, instance.max 1
  floodN  the same with instance.max N (default 4)

Run from the repository root after a release build (`make`):
  /usr/bin/python3 test/bench/function_bench.py            # BAETYL_BUILD defaults to build/
Environment: BAETYL_BUILD (build dir), BENCH_N (burst size, 2000), BENCH_SEQ (sequential
samples, 300), BENCH_MAX (instance.max of the second burst, 4)."""
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("BAETYL_BUILD") or os.path.join(SRC, "build"))
N = int(os.environ.get("BENCH_N", "2000"))
SEQ = int(os.environ.get("BENCH_SEQ", "300"))
MAXI = int(os.environ.get("BENCH_MAX", "4"))
COLD = 3

RUNTIMES = {
    # name: (image, handler, package)
    "python": ("baetyl-function-python", "index.handler", ("dir", os.path.join(SRC, "function-python"))),
    "node": ("baetyl-function-node", "index.handler", ("dir", os.path.join(SRC, "function-node"))),
    "sql": ("baetyl-function-sql", "select id, qos() as qos, topic() as topic", ("bin", "baetyl-function-sql")),
}
CODE = {"python": os.path.join(SRC, "example", "native", "var", "db", "baetyl", "function-sayhi-code"),
        "node": os.path.join(SRC, "example", "native", "var", "db", "baetyl", "function-sayjs-code")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def link_package(root, image, kind, what):
    dest = os.path.join(root, "var/db/baetyl", image)
    if kind == "dir":
        os.symlink(what, dest)
        return
    os.makedirs(os.path.join(dest, "bin"))
    os.symlink(os.path.join(BUILD, "bin", what), os.path.join(dest, "bin", what))
    with open(os.path.join(dest, "package.yml"), "w") as f:
        f.write(f"entry: bin/{what}\n")


def write(root, rel, obj):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj, indent=1))


def functions_of(rt):
    """(function name, topic in, topic out, instance.max) of one runtime."""
    out = [(f"{rt}-one", f"b/{rt}/one", f"b/{rt}/one/out", 1),
           (f"{rt}-max", f"b/{rt}/max", f"b/{rt}/max/out", MAXI)]
    out += [(f"{rt}-cold{k}", f"b/{rt}/cold{k}", f"b/{rt}/cold{k}/out", 1) for k in range(COLD)]
    return out


def make_workdir(port):
    root = tempfile.mkdtemp(prefix="fbench", dir="/tmp")
    write(root, "etc/baetyl/conf.yml", f"mode: native\ngrace: 5s\nserver:\n  address: unix://{root}/b.sock\n"
                                       "logger:\n  path: var/log/baetyl/baetyl.log\n  level: info\n")
    os.makedirs(os.path.join(root, "var/db/baetyl"), exist_ok=True)
    link_package(root, "baetyl-hub", "bin", "baetyl-hub")
    link_package(root, "baetyl-function-manager", "bin", "baetyl-function-manager")
    services, volumes = [], []

    def vol(name, path):
        volumes.append({"name": name, "path": path})
    write(root, "var/db/baetyl/hub-conf/service.yml",
          f"listen: ['tcp://127.0.0.1:{port}']\nprincipals:\n  - username: test\n    password: hahaha\n"
          "    permissions:\n      - {action: pub, permit: ['#']}\n      - {action: sub, permit: ['#']}\n"
          "logger: {path: var/log/baetyl/service.log, level: warn}\n")
    services.append({"name": "localhub", "image": "baetyl-hub", "replica": 1, "mounts": [
        {"name": "hub-pkg", "path": "lib/baetyl/baetyl-hub", "readonly": True},
        {"name": "hub-conf", "path": "etc/baetyl", "readonly": True},
        {"name": "hub-data", "path": "var/db/baetyl/data"},
        {"name": "logs", "path": "var/log/baetyl"}]})
    vol("hub-pkg", "var/db/baetyl/baetyl-hub")
    vol("hub-conf", "var/db/baetyl/hub-conf")
    vol("hub-data", "var/db/baetyl/hub-data")
    vol("logs", "var/db/baetyl/logs")
    fm = {"hub": {"address": f"tcp://127.0.0.1:{port}", "username": "test", "password": "hahaha",
                  "buffersize": 1000},
          "rules": [], "functions": [], "logger": {"path": "var/log/baetyl/fm.log", "level": "info"}}
    for rt, (image, handler, (kind, what)) in RUNTIMES.items():
        link_package(root, image, kind, what)
        vol(f"{rt}-pkg", f"var/db/baetyl/{image}")
        vol(f"{rt}-conf", f"var/db/baetyl/{rt}-conf")
        mounts = [{"name": f"{rt}-pkg", "path": f"lib/baetyl/{image}", "readonly": True},
                  {"name": f"{rt}-conf", "path": "etc/baetyl", "readonly": True}]
        conf = {"functions": [], "logger": {"level": "warn"}}
        if rt in CODE:
            os.symlink(CODE[rt], os.path.join(root, f"var/db/baetyl/{rt}-code"))
            vol(f"{rt}-code", f"var/db/baetyl/{rt}-code")
            mounts.append({"name": f"{rt}-code", "path": "code", "readonly": True})
        for name, tin, tout, mx in functions_of(rt):
            f = {"name": name, "handler": handler}
            if rt in CODE:
                f["codedir"] = "code"
            conf["functions"].append(f)
            fm["functions"].append({"name": name, "service": f"rt-{rt}", "instance": {"max": mx}})
            fm["rules"].append({"clientid": f"bench-{name}", "subscribe": {"topic": tin},
                                "function": {"name": name}, "publish": {"topic": tout}})
        write(root, f"var/db/baetyl/{rt}-conf/service.yml", conf)
        services.append({"name": f"rt-{rt}", "image": image, "replica": 0, "mounts": mounts})
    write(root, "var/db/baetyl/fm-conf/service.yml", fm)
    services.append({"name": "function-manager", "image": "baetyl-function-manager", "replica": 1,
                     "mounts": [{"name": "fm-pkg", "path": "lib/baetyl/baetyl-function-manager", "readonly": True},
                                {"name": "fm-conf", "path": "etc/baetyl", "readonly": True},
                                {"name": "logs", "path": "var/log/baetyl"}]})
    vol("fm-pkg", "var/db/baetyl/baetyl-function-manager")
    vol("fm-conf", "var/db/baetyl/fm-conf")
    write(root, "var/db/baetyl/application.yml", {"version": "bench", "services": services, "volumes": volumes})
    return root, len(fm["rules"])


class Probe:
    """Publishes {"id": seq} and records when each output comes back."""

    def __init__(self, port):
        self.lock = threading.Condition()
        self.sent, self.got = {}, {}
        self.c = mqtt.Client(client_id="bench-probe", clean_session=True)
        self.c.username_pw_set("test", "hahaha")
        self.c.on_message = self.on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe("b/#", qos=0)
        time.sleep(0.3)

    def on_message(self, c, u, msg):
        if not msg.topic.endswith("/out"):
            return
        now = time.perf_counter()
        try:
            seq = json.loads(msg.payload)["id"]
        except (ValueError, KeyError, TypeError):
            print("unexpected output:", msg.topic, msg.payload[:200], file=sys.stderr)
            return
        with self.lock:
            self.got[(msg.topic, seq)] = now
            self.lock.notify_all()

    def send(self, topic, seq):
        self.sent[(topic + "/out", seq)] = time.perf_counter()
        self.c.publish(topic, json.dumps({"id": seq}), qos=0)

    def wait(self, topic, seqs, timeout=120):
        keys = [(topic + "/out", s) for s in seqs]
        end = time.monotonic() + timeout
        with self.lock:
            while not all(k in self.got for k in keys):
                left = end - time.monotonic()
                if left <= 0:
                    missing = sum(k not in self.got for k in keys)
                    raise RuntimeError(f"{missing} outputs missing on {topic}/out")
                self.lock.wait(left)
        return [(self.got[k] - self.sent[k]) * 1000 for k in keys]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def bench_runtime(probe, rt, seq_base):
    res = {}
    colds = []
    for k in range(COLD):
        t = f"b/{rt}/cold{k}"
        probe.send(t, seq_base)
        colds.append(probe.wait(t, [seq_base])[0])
        seq_base += 1
    res["cold"] = statistics.median(colds)
    t = f"b/{rt}/one"
    probe.send(t, seq_base)
    probe.wait(t, [seq_base])  # warm
    seq_base += 1
    lat = []
    for _ in range(SEQ):
        probe.send(t, seq_base)
        lat += probe.wait(t, [seq_base])
        seq_base += 1
    res["seq"] = (pct(lat, 50), pct(lat, 99))
    for label, topic in (("flood1", f"b/{rt}/one"), (f"flood{MAXI}", f"b/{rt}/max")):
        warm = list(range(seq_base, seq_base + 4 * MAXI))
        for s in warm:  # starts every instance before the measured burst
            probe.send(topic, s)
        probe.wait(topic, warm)
        seq_base += len(warm)
        seqs = list(range(seq_base, seq_base + N))
        t0 = time.perf_counter()
        for s in seqs:
            probe.send(topic, s)
        lat = probe.wait(topic, seqs)
        t1 = max(probe.got[(topic + "/out", s)] for s in seqs)
        seq_base += N
        res[label] = (N / (t1 - t0), pct(lat, 50), pct(lat, 99))
    return res, seq_base


def main():
    for b in ("baetyl", "baetyl-hub", "baetyl-function-manager", "baetyl-function-sql"):
        if not os.path.exists(os.path.join(BUILD, "bin", b)):
            sys.exit(f"{BUILD}/bin/{b} missing: build first (make)")
    port = free_port()
    root, nrules = make_workdir(port)
    master = subprocess.Popen([os.path.join(BUILD, "bin", "baetyl"), "start", "-w", root],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        fmlog = os.path.join(root, "var/db/baetyl/logs/fm.log")

        def connected():
            try:
                with open(fmlog) as f:
                    return f.read().count("rule connected") >= nrules
            except OSError:
                return False
        wait_for(connected, 30, "the function-manager's rules")
        probe = Probe(port)
        print(f"function round trips (publish -> function -> result received), {os.cpu_count()} cores, "
              f"burst {N}, sequential {SEQ}, payload {{\"id\":n}}")
        print(f"{'runtime':8} {'cold ms':>8} {'seq p50/p99 ms':>15} {'1 inst msg/s':>13} "
              f"{'p50/p99 ms':>13} {f'{MAXI} inst msg/s':>13} {'p50/p99 ms':>13}")
        seq = 0
        for rt in RUNTIMES:
            r, seq = bench_runtime(probe, rt, seq)
            f1, fn = r["flood1"], r[f"flood{MAXI}"]
            print(f"{rt:8} {r['cold']:8.0f} {r['seq'][0]:7.2f}/{r['seq'][1]:<7.2f} {f1[0]:13.0f} "
                  f"{f1[1]:6.0f}/{f1[2]:<6.0f} {fn[0]:13.0f} {fn[1]:6.0f}/{fn[2]:<6.0f}", flush=True)
        probe.c.loop_stop()
    finally:
        os.killpg(master.pid, signal.SIGTERM)
        try:
            master.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(master.pid, signal.SIGKILL)
            master.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
