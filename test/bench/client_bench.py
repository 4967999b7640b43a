#!/usr/bin/python3
"""Publish throughput of the SDK MQTT client vs paho.mqtt.c's async client, against one
mosquitto started here, in the same run (issue 3's benchmark; goal: ratio >= 1).

    make BUILD=build sdk                          # a release build of the SDK
    BAETYL_BUILD=$PWD/build /usr/bin/python3 test/bench/client_bench.py [--reps 3]
        [--count0 200000] [--count1 50000] [--window 100] [--size 100] [--json]

It compiles test/bench/client_bench.c against $BAETYL_BUILD/lib/libbaetyl-sdk.a and
libpaho-mqtt3as into $BAETYL_BUILD/bench/, then runs both clients alternately `reps` times
for QoS 0 and QoS 1 and keeps the best rate of each. Prints a table and the ratios
(sdk / paho); with --json, one JSON object instead."""
import argparse
import getpass
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BAETYL_BUILD") or os.path.join(SRC, "build")
PKGS = "yaml-0.1 jansson libcurl openssl lmdb libarchive libprotobuf-c libnghttp2"


def build_bench():
    lib = os.path.join(BUILD, "lib", "libbaetyl-sdk.a")
    if not os.path.exists(lib):
        sys.exit(f"{lib} missing: run `make BUILD={BUILD} sdk` first")
    out = os.path.join(BUILD, "bench", "client_bench")
    src = os.path.join(SRC, "test", "bench", "client_bench.c")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if os.path.exists(out) and os.path.getmtime(out) > max(os.path.getmtime(src),
                                                          os.path.getmtime(lib)):
        return out
    flags = ["-O2", "-g", "-std=gnu11", "-D_GNU_SOURCE", "-I" + os.path.join(SRC, "sdk", "include")]
    nm = subprocess.run(["nm", lib], capture_output=True, text=True).stdout
    if "__asan_report" in nm:  # a SAN=1 build: link the sanitizers too (slower numbers)
        flags += ["-fsanitize=address,undefined"]
        print("warning: the SDK library is a sanitizer build; numbers are not representative",
              file=sys.stderr)
    libs = shlex.split(subprocess.run(["pkg-config", "--libs", *PKGS.split()],
                                      capture_output=True, text=True, check=True).stdout)
    subprocess.run(["cc", *flags, "-o", out, src, lib, *libs, "-lpaho-mqtt3as", "-lpthread",
                    "-lm"], check=True)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(d):
    port = free_port()
    conf = os.path.join(d, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"user {getpass.getuser()}\npersistence false\nlistener {port} 127.0.0.1\n"
                "allow_anonymous true\nmax_queued_messages 0\n")
    p = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("mosquitto did not start")


def run(binary, client, port, qos, count, window, size):
    r = subprocess.run([binary, client, str(port), str(qos), str(count), str(window), str(size)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        sys.exit(f"{client} qos {qos} failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--count0", type=int, default=200000)
    ap.add_argument("--count1", type=int, default=50000)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    binary = build_bench()
    result = {"window": a.window, "size": a.size}
    with tempfile.TemporaryDirectory() as d:
        broker, port = start_mosquitto(d)
        try:
            for qos, count in ((0, a.count0), (1, a.count1)):
                best = {"sdk": 0.0, "paho": 0.0}
                for _ in range(a.reps):
                    for client in ("sdk", "paho"):
                        r = run(binary, client, port, qos, count, a.window, a.size)
                        best[client] = max(best[client], r["rate"])
                result[f"qos{qos}"] = {"count": count, "sdk_rate": best["sdk"],
                                       "paho_rate": best["paho"],
                                       "ratio": round(best["sdk"] / best["paho"], 2)}
        finally:
            os.killpg(broker.pid, signal.SIGTERM)
            broker.wait(10)
    if a.json:
        print(json.dumps(result))
        return
    print(f"client publish throughput vs mosquitto (window {a.window}, {a.size}-byte payloads, "
          f"best of {a.reps})")
    print(f"{'':6}{'sdk msg/s':>14}{'paho msg/s':>14}{'ratio':>8}")
    for qos in (0, 1):
        r = result[f"qos{qos}"]
        print(f"QoS {qos} {r['sdk_rate']:>14,.0f}{r['paho_rate']:>14,.0f}{r['ratio']:>8.2f}")


if __name__ == "__main__":
    main()
