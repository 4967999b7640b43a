#!/usr/bin/python3
"""Function benchmark (issue 7): MQTT round trips through the hub, the function-manager and
each runtime (Python 3, Node, SQL), all started by the real master in native mode.

For each runtime:
  cold    first-message latency of a function without an instance (the instance starts)
  seq     round-trip latency p50/p99 with one message in flight, 1 instance (new)
  warm    seq p50 again, on the same instance after the floods and BENCH_WARM more calls
  q0/q1 x1/xN  throughput of a flood (at most BENCH_WINDOW sent and not yet answered) at
          QoS 0 and QoS 1 (input, output and the manager's acks), instance.max 1 and N
  in order  whether every flood's outputs came back in input order
Then the same floods through `function_load sqlref`, a minimal C client that evaluates the
SQL statement in-process (no function-manager, no gRPC): the limit the SQL path could reach.
The floods are driven by test/bench/function_load.c (the SDK's MQTT client), compiled here;
the figures of the code before issue 17 (same machine, same bench) are printed alongside.

Run from the repository root after a release build (`make`):
  /usr/bin/python3 test/bench/function_bench.py            # BAETYL_BUILD defaults to build/
Environment: BAETYL_BUILD (build dir), BENCH_N (flood size, 20000), BENCH_WINDOW (flood
window, 2000), BENCH_SEQ (sequential samples, 300), BENCH_WARM (calls before the warm
samples, 2000), BENCH_MAX (instance.max of the second flood, 4), BENCH_CONCURRENT
(instance.concurrent; the manager's default when unset), BENCH_RUNTIMES (python,node,sql),
BENCH_FLOODS (0: cold start and sequential latency only)."""
import json
import os
import shlex
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
N = int(os.environ.get("BENCH_N", "20000"))
WINDOW = int(os.environ.get("BENCH_WINDOW", "2000"))
SEQ = int(os.environ.get("BENCH_SEQ", "300"))
WARM = int(os.environ.get("BENCH_WARM", "2000"))
MAXI = int(os.environ.get("BENCH_MAX", "4"))
COLD = 3
PKGS = "yaml-0.1 jansson libcurl openssl lmdb libarchive libprotobuf-c libnghttp2"
SQLREF = "select id, qos() as qos, topic() as topic"
FLOODS = ("q0x1", "q1x1", f"q0x{MAXI}", f"q1x{MAXI}")
if os.environ.get("BENCH_FLOODS") == "0":
    FLOODS = ()
# Before issue 17 (commit 97e97a0: one call in flight per instance; this bench, same machine,
# 2 cores shared with other work): msg/s of each flood, cold start and sequential p50 in ms.
BEFORE = {
    "python": {"cold": 301, "seq": 0.62, "q0x1": 2669, "q1x1": 2583, "q0x4": 4660, "q1x4": 3044},
    "node": {"cold": 508, "seq": 1.30, "q0x1": 2095, "q1x1": 2910, "q0x4": 2626, "q1x4": 2369},
    "sql": {"cold": 108, "seq": 0.38, "q0x1": 5998, "q1x1": 5202, "q0x4": 9590, "q1x4": 6512},
}

ALL_RUNTIMES = {
    # name: (image, handler, package)
    "python": ("baetyl-function-python", "index.handler", ("dir", os.path.join(SRC, "function-python"))),
    "node": ("baetyl-function-node", "index.handler", ("dir", os.path.join(SRC, "function-node"))),
    "sql": ("baetyl-function-sql", "select id, qos() as qos, topic() as topic", ("bin", "baetyl-function-sql")),
}
RUNTIMES = {k: v for k, v in ALL_RUNTIMES.items()
            if k in os.environ.get("BENCH_RUNTIMES", "python,node,sql").split(",")}
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


def build_load():
    """Compiles function_load.c (with function-sql's evaluator) against the build's SDK."""
    lib = os.path.join(BUILD, "lib", "libbaetyl-sdk.a")
    if not os.path.exists(lib):
        sys.exit(f"{lib} missing: build first (make)")
    out = os.path.join(BUILD, "bench", "function_load")
    srcs = [os.path.join(SRC, "test", "bench", "function_load.c")]
    srcs += [os.path.join(SRC, "function-sql", f) for f in ("sql_lex.c", "sql_parse.c", "sql_eval.c")]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if os.path.exists(out) and os.path.getmtime(out) > max(map(os.path.getmtime, srcs + [lib])):
        return out
    flags = ["-O2", "-g", "-std=gnu11", "-D_GNU_SOURCE", "-I" + os.path.join(SRC, "sdk", "include"),
             "-I" + os.path.join(SRC, "function-sql")]
    if "__asan_report" in subprocess.run(["nm", lib], capture_output=True, text=True).stdout:
        flags += ["-fsanitize=address,undefined"]
        print("warning: a sanitizer build; numbers are not representative", file=sys.stderr)
    libs = shlex.split(subprocess.run(["pkg-config", "--libs", *PKGS.split()],
                                      capture_output=True, text=True, check=True).stdout)
    subprocess.run(["cc", *flags, "-o", out, *srcs, lib, *libs, "-lpthread", "-lm"], check=True)
    return out


def functions_of(rt):
    """(function name, [(topic in, qos)], instance.max) of one runtime: each topic in has its
    rule (subscribe and publish at that qos), publishing on <topic in>/out."""
    out = [(f"{rt}-one", [(f"b/{rt}/seq", 0), (f"b/{rt}/q0x1", 0), (f"b/{rt}/q1x1", 1)], 1),
           (f"{rt}-max", [(f"b/{rt}/q0x{MAXI}", 0), (f"b/{rt}/q1x{MAXI}", 1)], MAXI)]
    out += [(f"{rt}-cold{k}", [(f"b/{rt}/cold{k}", 0)], 1) for k in range(COLD)]
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
        for name, topics, mx in functions_of(rt):
            f = {"name": name, "handler": handler}
            if rt in CODE:
                f["codedir"] = "code"
            conf["functions"].append(f)
            inst = {"max": mx}
            if os.environ.get("BENCH_CONCURRENT"):
                inst["concurrent"] = int(os.environ["BENCH_CONCURRENT"])
            fm["functions"].append({"name": name, "service": f"rt-{rt}", "instance": inst})
            for tin, qos in topics:
                fm["rules"].append({"clientid": f"bench-{tin.replace('/', '-')}",
                                    "subscribe": {"topic": tin, "qos": qos},
                                    "function": {"name": name},
                                    "publish": {"topic": tin + "/out", "qos": qos}})
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
        # not the floods' outputs: function_load takes those
        self.c.subscribe([(f"b/{rt}/{t}/out", 0) for rt in RUNTIMES
                          for t in ["seq"] + [f"cold{k}" for k in range(COLD)]] + [("b/hub/out", 0)])
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

    def send(self, topic, seq, direct=False):
        self.sent[(topic + "/out", seq)] = time.perf_counter()
        self.c.publish(topic + "/out" if direct else topic, json.dumps({"id": seq}), qos=0)

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


def flood(load, port, topic, qos):
    """One flood through function_load: its JSON result."""
    r = subprocess.run([load, "flood", str(port), topic, str(qos), str(N), str(WINDOW)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"flood on {topic}: {r.stderr.strip()}")
    if r.stderr.strip():
        print(f"{topic}: {r.stderr.strip()}", file=sys.stderr)
    return json.loads(r.stdout)


def sequential(probe, t, seq_base, n):
    """n round trips on topic t, one in flight: their latencies (ms) and the next seq."""
    lat = []
    for _ in range(n):
        probe.send(t, seq_base)
        lat += probe.wait(t, [seq_base])
        seq_base += 1
    return lat, seq_base


def bench_runtime(probe, load, port, rt, seq_base):
    res = {}
    colds = []
    for k in range(COLD):
        lat, seq_base = sequential(probe, f"b/{rt}/cold{k}", seq_base, 1)
        colds += lat
    res["cold"] = statistics.median(colds)
    t = f"b/{rt}/seq"
    _, seq_base = sequential(probe, t, seq_base, 1)  # the instance is up
    lat, seq_base = sequential(probe, t, seq_base, SEQ)
    res["seq"] = (pct(lat, 50), pct(lat, 99))
    for label in FLOODS:
        res[label] = flood(load, port, f"b/{rt}/{label}", int(label[1]))
    # The same instance once it has run a while (the floods, then WARM more calls): what a
    # long-running function sees. An interpreter compiles its hot code only after many
    # calls (V8 after hundreds), so a new instance's first calls are slower.
    _, seq_base = sequential(probe, t, seq_base, WARM)
    lat, seq_base = sequential(probe, t, seq_base, SEQ)
    res["warm"] = pct(lat, 50)
    return res, seq_base


def hub_seq(probe, seq_base):
    """Sequential p50 of the probe's own messages through the hub alone: the floor under
    every runtime's seq p50 (the probe, paho in Python, and the hub)."""
    lat = []
    for _ in range(SEQ):
        probe.send("b/hub", seq_base, direct=True)
        lat += probe.wait("b/hub", [seq_base])
        seq_base += 1
    return pct(lat, 50)


def print_row(rt, r):
    """The runtime's figures now (flood msg/s with the ratio to before), then before."""
    b = BEFORE.get(rt, {})
    key = {label: label.replace(f"x{MAXI}", "x4") for label in FLOODS}
    cells = [f"{r['cold']:.0f}", f"{r['seq'][0]:.2f}", f"{r['warm']:.2f}"]
    for label in FLOODS:
        rate, was = r[label]["rate"], b.get(key[label])
        cells.append(f"{rate:.0f} ({rate / was:.1f}x)" if was else f"{rate:.0f}")
    order = "yes" if all(r[label]["in_order"] for label in FLOODS) else "NO"
    print(f"{rt:8} " + " ".join(f"{c:>14}" for c in cells) + f" {order:>8}", flush=True)
    if b:
        was = [f"{b['cold']:.0f}", f"{b['seq']:.2f}", "-"] + [f"{b[key[label]]:.0f}"
                                                              for label in FLOODS]
        print(f"{'  before':8} " + " ".join(f"{c:>14}" for c in was), flush=True)


def bench_sqlref(load, port):
    """The floods of the 1-instance SQL function, through the in-process reference client."""
    ref = subprocess.Popen([load, "sqlref", str(port), "r/+", SQLREF],
                           stdout=subprocess.PIPE, text=True)
    try:
        ref.stdout.readline()
        return {q: flood(load, port, f"r/q{q}", q) for q in (0, 1)}
    finally:
        ref.terminate()
        ref.wait(10)


def main():
    for b in ("baetyl", "baetyl-hub", "baetyl-function-manager", "baetyl-function-sql"):
        if not os.path.exists(os.path.join(BUILD, "bin", b)):
            sys.exit(f"{BUILD}/bin/{b} missing: build first (make)")
    load = build_load()
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
              f"flood {N} (window {WINDOW}), sequential {SEQ}, payload {{\"id\":n}}; "
              "floods in msg/s (ratio to before issue 17); 'before': that code, this bench")
        print(f"{'runtime':8} " + " ".join(f"{h:>14}" for h in (
            "cold ms", "seq p50 ms", "warm p50 ms", "QoS0 1 inst", "QoS1 1 inst", f"QoS0 {MAXI} inst",
            f"QoS1 {MAXI} inst")) + f" {'in order':>8}")
        seq, results = 0, {}
        for rt in RUNTIMES:
            results[rt], seq = bench_runtime(probe, load, port, rt, seq)
            print_row(rt, results[rt])
        floor = hub_seq(probe, seq)
        print(f"{'hub only':8} {'-':>14} {floor:>14.2f} {'-':>14}  (the probe's messages through"
              " the hub alone: the floor under seq p50)", flush=True)
        probe.c.loop_stop()
        if not FLOODS:
            return
        ref = bench_sqlref(load, port)
        sql = results.get("sql") or {f"q{q}x1": {"rate": float("nan")} for q in (0, 1)}
        rates = " ".join(f"{ref[q]['rate']:>14.0f}" for q in (0, 1))
        print(f"{'sql ref':8} {'-':>14} {'-':>14} {'-':>14} {rates}  (in-process SQL: no manager, no gRPC;"
              f" the SQL function gets {sql['q0x1']['rate'] / ref[0]['rate']:.0%} of it at QoS 0, "
              f"{sql['q1x1']['rate'] / ref[1]['rate']:.0%} at QoS 1)", flush=True)
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
