#!/usr/bin/python3
"""Bridged throughput hub -> remote broker: baetyl-remote-mqtt vs a mosquitto configured as a
bridge between the same two brokers, in the same run, as ratios (issue 8's benchmark).

    make BUILD=build all                          # release build: hub, remote-mqtt, SDK
    BAETYL_BUILD=$PWD/build /usr/bin/python3 test/bench/bridge_bench.py [--reps 3]
        [--count0 100000] [--count1 30000] [--size 100] [--inflight 100] [--window 2000]
        [--json]

Brokers: the hub (baetyl-hub, user test) and a remote mosquitto, fresh for every run. The
load (test/bench/bridge_load.c, compiled here against $BAETYL_BUILD/lib/libbaetyl-sdk.a)
publishes numbered messages on bench/load to the hub and counts them at the remote, with at
most `--window` messages published and not yet received (so that the rate measured is what a
bridge sustains; an unpaced QoS 0 burst mostly measures which buffer drops first).
Bridges, each given `--inflight` unacknowledged QoS 1 messages towards the remote:
  remote-mqtt  one rule, hub subscription bench/# (QoS 0 or 1), remote buffersize = inflight;
               QoS 1 is acknowledged to the hub only after the remote acknowledged it
  mosquitto    a third mosquitto with two bridge connections: `topic bench/# in` from the
               hub and `topic bench/# out` to the remote, max_inflight_messages = inflight;
               QoS 1 is acknowledged hop by hop (a weaker guarantee than end to end)
Each scenario runs `reps` times per bridge, alternating, and keeps the best rate; lost
messages (QoS 0 may drop under overload; QoS 1 must not) are reported too."""
import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BAETYL_BUILD") or os.path.join(SRC, "build")
PKGS = "yaml-0.1 jansson libcurl openssl lmdb libarchive libprotobuf-c libnghttp2"


def build_load():
    lib = os.path.join(BUILD, "lib", "libbaetyl-sdk.a")
    if not os.path.exists(lib):
        sys.exit(f"{lib} missing: run `make BUILD={BUILD} all` first")
    out = os.path.join(BUILD, "bench", "bridge_load")
    src = os.path.join(SRC, "test", "bench", "bridge_load.c")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if os.path.exists(out) and os.path.getmtime(out) > max(os.path.getmtime(src),
                                                          os.path.getmtime(lib)):
        return out
    flags = ["-O2", "-g", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
             "-Wno-unused-parameter", "-I" + os.path.join(SRC, "sdk", "include")]
    nm = subprocess.run(["nm", lib], capture_output=True, text=True).stdout
    if "__asan_report" in nm:
        flags += ["-fsanitize=address,undefined"]
        print("warning: the SDK library is a sanitizer build; numbers are not representative",
              file=sys.stderr)
    libs = shlex.split(subprocess.run(["pkg-config", "--libs", *PKGS.split()],
                                      capture_output=True, text=True, check=True).stdout)
    subprocess.run(["cc", *flags, "-o", out, src, lib, *libs, "-lpthread", "-lm"], check=True)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


class Run:
    """The processes of one measurement, in one temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bridge-bench-")
        self.procs = []

    def start(self, args, name, port=None):
        log = open(os.path.join(self.dir, name + ".log"), "wb")
        p = subprocess.Popen(args, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        log.close()
        self.procs.append(p)
        if port:
            wait_port(port, p)
        return p

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def mosquitto(self, name, extra=""):
        port = free_port()
        user = "user root\n" if os.geteuid() == 0 else ""
        conf = self.write(f"{name}.conf", f"{user}per_listener_settings false\n"
                          f"allow_anonymous true\npersistence false\nlog_type error\n"
                          f"log_dest stderr\nmax_queued_messages 0\n{extra}"
                          f"listener {port} 127.0.0.1\n")
        self.start(["mosquitto", "-c", conf], name, port)
        return port

    def hub(self):
        port = free_port()
        conf = self.write("hub.yml", f"listen: ['tcp://127.0.0.1:{port}']\nstorage: {{dir: data}}\n"
                          "principals:\n  - username: test\n    password: hahaha\n    permissions:\n"
                          "      - {action: pub, permit: ['#']}\n      - {action: sub, permit: ['#']}\n"
                          "logger: {level: warn}\n")
        self.start([os.path.join(BUILD, "bin", "baetyl-hub"), "-c", conf], "hub", port)
        return port

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def remote_mqtt_bridge(r, hub, remote, qos, inflight):
    conf = r.write("remote-mqtt.yml", f"""hub:
  address: tcp://127.0.0.1:{hub}
  username: test
  password: hahaha
  interval: 1s
remotes:
  - name: remote
    address: tcp://127.0.0.1:{remote}
    clientid: bench-bridge
    buffersize: {inflight}
    interval: 1s
rules:
  - hub: {{subscriptions: [{{topic: 'bench/#', qos: {qos}}}]}}
    remote: {{name: remote}}
logger: {{level: warn}}
""")
    r.start([os.path.join(BUILD, "bin", "baetyl-remote-mqtt"), "-c", conf], "remote-mqtt")


def mosquitto_bridge(r, hub, remote, qos, inflight):
    r.mosquitto("mosquitto-bridge", f"""max_inflight_messages {inflight}
connection hub
address 127.0.0.1:{hub}
bridge_protocol_version mqttv311
try_private false
remote_clientid bench-bridge-in
remote_username test
remote_password hahaha
cleansession false
restart_timeout 1
notifications false
topic bench/# in {qos}
connection remote
address 127.0.0.1:{remote}
bridge_protocol_version mqttv311
try_private false
remote_clientid bench-bridge-out
cleansession false
restart_timeout 1
notifications false
topic bench/# out {qos}
""")


BRIDGES = {"remote-mqtt": remote_mqtt_bridge, "mosquitto": mosquitto_bridge}


def measure(load, bridge, qos, count, size, inflight, window):
    r = Run()
    try:
        hub = r.hub()
        remote = r.mosquitto("remote")
        BRIDGES[bridge](r, hub, remote, qos, inflight)
        out = subprocess.run([load, f"tcp://127.0.0.1:{hub}", f"tcp://127.0.0.1:{remote}",
                              str(qos), str(count), str(size), str(window), "test", "hahaha"],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            logs = {n: open(os.path.join(r.dir, n)).read()[-1500:] for n in os.listdir(r.dir)
                    if n.endswith(".log")}
            raise RuntimeError(f"{bridge} qos {qos}: {out.stderr.strip()} {logs}")
        return json.loads(out.stdout)
    finally:
        r.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--count0", type=int, default=100000)
    ap.add_argument("--count1", type=int, default=30000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--inflight", type=int, default=100)
    ap.add_argument("--window", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    for path in (os.path.join(BUILD, "bin", "baetyl-hub"),
                 os.path.join(BUILD, "bin", "baetyl-remote-mqtt")):
        if not os.path.exists(path):
            sys.exit(f"{path} not built (make BUILD={BUILD} all)")
    if not shutil.which("mosquitto"):
        sys.exit("mosquitto not installed (scripts/deps.sh)")
    load = build_load()
    result = {"size": a.size, "inflight": a.inflight, "window": a.window, "reps": a.reps}
    failed = False
    for qos, count in ((0, a.count0), (1, a.count1)):
        best = {}
        for _ in range(a.reps):
            for bridge in BRIDGES:
                r = measure(load, bridge, qos, count, a.size, a.inflight, a.window)
                if bridge not in best or r["rate"] > best[bridge]["rate"]:
                    best[bridge] = r
        rm, mo = best["remote-mqtt"], best["mosquitto"]
        result[f"qos{qos}"] = {"count": count, "remote_mqtt_rate": rm["rate"],
                               "mosquitto_rate": mo["rate"],
                               "ratio": round(rm["rate"] / mo["rate"], 2) if mo["rate"] else None,
                               "remote_mqtt_lost": rm["lost"], "mosquitto_lost": mo["lost"]}
        failed = failed or (qos == 1 and rm["lost"] > 0)
    if a.json:
        print(json.dumps(result))
    else:
        print(f"bridged throughput hub -> remote mosquitto ({a.size}-byte payloads, "
              f"{a.inflight} in flight, window {a.window}, best of {a.reps})")
        print(f"{'':6}{'remote-mqtt msg/s':>19}{'mosquitto msg/s':>17}{'ratio':>8}"
              f"{'lost remote-mqtt/mosquitto':>28}")
        for qos in (0, 1):
            r = result[f"qos{qos}"]
            ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
            print(f"QoS {qos} {r['remote_mqtt_rate']:>19,.0f}{r['mosquitto_rate']:>17,.0f}"
                  f"{ratio:>8}{r['remote_mqtt_lost']:>20}/{r['mosquitto_lost']}")
    if failed:
        print("FAIL: remote-mqtt lost QoS 1 messages", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
