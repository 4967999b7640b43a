#!/usr/bin/env python3
"""make bench: baetyl-hub side by side with Debian's mosquitto, same machine, same C load
generator (test/tools/hub_bench.c), printed as ratios hub/mosquitto.

Scenarios: (a) QoS 0 throughput 1 -> 1, 100-byte payloads; (b) QoS 1 1 -> 1 (hub durable
vs mosquitto in memory and with persistence) and 10 -> 1 (many publishers share each group
commit); (c) fan-out 1 -> 50; (d) fan-in 50 -> 1;
(e) latency p50/p99 at a fixed moderate rate; (o) QoS 1 latency at 1k and 20k msg/s, both
delivery and PUBLISH -> PUBACK, the hub with fsync and without; (f) RSS per idle connection (1000 of them);
(g) (h) (i) QoS 0 throughput 1 -> 1 over ssl, ws and wss listeners (both brokers with the
same certificates from scripts/gen-certs.sh; the generator speaks TLS and WebSocket itself);
(j) the cost of metrics: the hub's QoS 0 throughput reporting its counters every 100 ms to a
stub master API, side by side with the hub not reporting (the ratio must stay above 0.98);
(k) (l) (m) MQTT 5.0 on both brokers: QoS 0, QoS 1 and QoS 2 throughput 1 -> 1 (m also
against 3.1.1 QoS 2 in the hub and mosquitto); (n) what 5.0 costs in the hub: its 5.0 over
its 3.1.1 throughput at QoS 0 and 1 (100 in flight: the hub's receive maximum) and RSS per
idle connection, alternated in one run (the
goal is 5.0 within 10% of 3.1.1: a throughput ratio >= 0.90, an RSS ratio <= 1.10).
Every scenario also checks that no message was lost. BENCH_ONLY=a,g runs only the scenarios
named; BENCH_SCALE scales the message counts."""
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from socketserver import ThreadingMixIn, UnixStreamServer

BUILD = os.environ.get("BAETYL_BUILD") or os.path.join(os.path.dirname(__file__), "..", "..", "build")
HUB = os.path.join(BUILD, "bin", "baetyl-hub")
GEN = os.path.join(BUILD, "tools", "hub_bench")
GEN_CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "gen-certs.sh")
CERTS = None  # directory of ca.pem, server.pem, server.key (made in main)
SCALE = float(os.environ.get("BENCH_SCALE", "1"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


class Broker:
    """kind hub or mosquitto, with a tcp listener and, for link ssl/ws/wss, one more: .port
    is the one the load generator uses."""

    def __init__(self, kind, persistence=False, link="tcp", api=None, wrap=()):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"bench-{kind}-")
        self.tcp_port = free_port()
        self.port = self.tcp_port if link == "tcp" else free_port()
        if kind == "hub":
            conf = os.path.join(self.dir, "conf.yml")
            listen = [f"tcp://127.0.0.1:{self.tcp_port}"]
            if link != "tcp":
                listen.append(f"{link}://127.0.0.1:{self.port}" + ("/mqtt" if link.startswith("ws") else ""))
            with open(conf, "w") as f:
                # persistence=False for the hub: storage.sync false (crash-safe, not power-safe)
                sync = "true" if persistence else "false"
                f.write(f"listen: {listen!r}\nstorage: {{dir: data, sync: {sync}}}\n"
                        "principals:\n  - username: test\n    password: hahaha\n    permissions:\n"
                        "      - {action: pub, permit: ['#']}\n      - {action: sub, permit: ['#']}\n"
                        "logger: {level: warn}\n")
                # ten reports a second: far more often than the default (1m), so that the
                # cost shows within one run
                f.write("status: {report: {interval: 100ms}}\n")
                if link in ("ssl", "wss"):
                    f.write(f"certificate: {{ca: {CERTS}/ca.pem, cert: {CERTS}/server.pem, "
                            f"key: {CERTS}/server.key}}\n")
            args = [*wrap, HUB, "-c", conf]
        else:
            conf = os.path.join(self.dir, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write(f"listener {self.tcp_port} 127.0.0.1\nallow_anonymous true\n"
                        "max_inflight_messages 100\nmax_queued_messages 0\nlog_type none\n")
                if persistence:
                    f.write(f"persistence true\npersistence_location {self.dir}/\nautosave_interval 1\n")
                if link != "tcp":
                    # mosquitto binds a websockets listener to an interface name
                    f.write(f"listener {self.port} {'lo' if link.startswith('ws') else '127.0.0.1'}\n")
                    if link.startswith("ws"):
                        f.write("protocol websockets\n")
                    if link in ("ssl", "wss"):
                        f.write(f"cafile {CERTS}/ca.pem\ncertfile {CERTS}/server.pem\nkeyfile {CERTS}/server.key\n")
            args = ["mosquitto", "-c", conf]
        env = dict(os.environ)
        if api:  # the hub reports to a master only when it has one
            env.update(BAETYL_MASTER_API_ADDRESS="unix://" + api, BAETYL_SERVICE_NAME="hub",
                       BAETYL_SERVICE_INSTANCE_NAME="hub", BAETYL_SERVICE_TOKEN="x")
        self.proc = subprocess.Popen(args, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=raise_nofile, env=env)
        wait_port(self.tcp_port)
        wait_port(self.port)

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def gen(*args, timeout=300, version=4, window=None):
    v5 = (["-5"] if version == 5 else []) + (["-w", str(window)] if window else [])
    out = subprocess.run([GEN, *v5, *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, preexec_fn=raise_nofile)
    if out.returncode != 0:
        raise RuntimeError(f"hub_bench {args}: {out.stderr}")
    return dict((k, float(v)) for k, v in re.findall(r"(\w+)=([-\d.]+)", out.stdout))


class StubMaster(ThreadingMixIn, UnixStreamServer):
    """Takes the hub's reports (PUT .../report) on a unix socket and counts them."""
    daemon_threads = True

    def __init__(self, path):
        self.reports = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_PUT(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.reports += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def address_string(self):
                return "unix"

            def log_message(self, *args):
                pass
        super().__init__(path, Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def tput(kind, pubs, subs, qos, count, persistence=False, runs=3, link="tcp", api=None, version=4,
         window=None):
    best = None
    extra = [] if link == "tcp" else [link, os.path.join(CERTS, "ca.pem")]
    for _ in range(runs):
        b = Broker(kind, persistence, link, api)
        try:
            c0 = cpu_s(b.proc.pid)
            r = gen("tput", b.port, pubs, subs, qos, int(count * SCALE), 100, *extra,
                    version=version, window=window)
            cpu = cpu_s(b.proc.pid) - c0
        finally:
            b.stop()
        lost = r["expected"] - r["received"]
        if best is None or r["rate"] > best[0]:
            # (rate, lost, the broker's CPU microseconds per message delivered)
            best = (r["rate"], lost, cpu * 1e6 / max(r["received"], 1))
    return best


def instructions_per_msg(qos, version, count=100000):
    """The hub's instructions per message under callgrind (a count the machine's other work
    does not move, unlike CPU time): two runs, count / 5 and count messages, so that what
    starting and stopping cost cancels out. None without valgrind."""
    if not shutil.which("valgrind"):
        return None
    total = {}
    for n in (count // 5, count):
        out = os.path.join(tempfile.gettempdir(), f"bench-callgrind-{os.getpid()}-{n}")
        b = Broker("hub", wrap=("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"))
        try:
            r = gen("tput", b.port, 1, 1, qos, n, 100, version=version, window=100, timeout=900)
        finally:
            b.stop()
        try:
            with open(out) as f:
                total[n] = (int(next(ln for ln in f if ln.startswith("summary:")).split()[1]),
                            r["received"])
        finally:
            os.unlink(out)
    (i1, m1), (i2, m2) = total[count // 5], total[count]
    return (i2 - i1) / max(m2 - m1, 1)


def cpu_s(pid):
    """User + system CPU seconds of a process so far (clock ticks: 10 ms steps)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency(kind, rate=5000, secs=3, qos=0, persistence=False):
    """(p50, p99, lost) of publish -> delivery at a fixed rate; at QoS 1 also the p50 and
    p99 of PUBLISH -> PUBACK, the publisher's wait (for the hub with fsync: its commit)."""
    b = Broker(kind, persistence)
    try:
        gen("lat", b.port, rate, 1, 100, qos)  # warm-up
        r = gen("lat", b.port, rate, secs, 100, qos)
    finally:
        b.stop()
    out = (r["p50_us"], r["p99_us"], r["sent"] - r["received"])
    return out + ((r["ack_p50_us"], r["ack_p99_us"]) if qos else ())


def idle_rss(kind, n=1000, version=4):
    b = Broker(kind)
    try:
        time.sleep(0.3)
        before = b.rss_kb()
        v5 = ["-5"] if version == 5 else []
        p = subprocess.Popen([GEN, *v5, "idle", str(b.port), str(n)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE,
                             text=True, preexec_fn=raise_nofile)
        line = p.stdout.readline()
        if "ready" not in line:
            raise RuntimeError("idle connections failed")
        time.sleep(1.0)
        after = b.rss_kb()
        p.stdin.close()
        p.wait(30)
    finally:
        b.stop()
    return (after - before) * 1024 / n


def main():
    for path in (HUB, GEN):
        if not os.path.exists(path):
            sys.exit(f"{path} not built (make all tools)")
    if not shutil.which("mosquitto"):
        sys.exit("mosquitto not installed (scripts/deps.sh)")
    # One set of certificates for both brokers; readable by mosquitto's unprivileged user.
    global CERTS
    CERTS = tempfile.mkdtemp(prefix="bench-certs-")
    subprocess.run([GEN_CERTS, "--force", CERTS], check=True, capture_output=True)
    os.chmod(CERTS, 0o755)
    for name in os.listdir(CERTS):
        os.chmod(os.path.join(CERTS, name), 0o644)
    try:
        run_all()
    finally:
        shutil.rmtree(CERTS, ignore_errors=True)


def run_all():
    rows = []
    lost_any = False

    def row(name, hub_v, mos_v, unit, higher_better=True, hub_lost=0, mos_lost=0):
        nonlocal lost_any
        ratio = hub_v / mos_v if mos_v else float("inf")
        lost_any = lost_any or hub_lost > 0
        rows.append((name, hub_v, mos_v, unit, ratio, hub_lost, mos_lost))

    # BENCH_ONLY=g,h,i runs only those scenarios (all by default).
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").replace(" ", "").split(",")))

    def want(letter):
        return not only or letter in only

    if want("a"):
        h = tput("hub", 1, 1, 0, 500000)
        m = tput("mosquitto", 1, 1, 0, 500000)
        row("(a) QoS 0 1->1 msg/s", h[0], m[0], "msg/s", True, h[1], m[1])
    if want("b"):
        # the hub's default, storage.sync true: PUBACK after the commit reached the disk
        hs = tput("hub", 1, 1, 1, 100000, persistence=True)
        h = tput("hub", 1, 1, 1, 100000)
        m = tput("mosquitto", 1, 1, 1, 100000)
        mp = tput("mosquitto", 1, 1, 1, 100000, persistence=True)
        row("(b) QoS 1 1->1 msg/s (hub fsync; mosquitto in memory)", hs[0], m[0], "msg/s", True,
            hs[1], m[1])
        row("(b) QoS 1 1->1 msg/s (hub sync false; mosquitto in memory)", h[0], m[0], "msg/s",
            True, h[1], m[1])
        row("(b) QoS 1 1->1 msg/s (hub fsync; mosquitto persistence)", hs[0], mp[0], "msg/s",
            True, hs[1], mp[1])
        hf = tput("hub", 10, 1, 1, 20000, persistence=True)
        mf = tput("mosquitto", 10, 1, 1, 20000)
        row("(b) QoS 1 10->1 msg/s (hub fsync; mosquitto in memory)", hf[0], mf[0], "msg/s", True,
            hf[1], mf[1])
    if want("c"):
        h = tput("hub", 1, 50, 0, 20000)
        m = tput("mosquitto", 1, 50, 0, 20000)
        row("(c) fan-out 1->50 deliveries/s", h[0], m[0], "msg/s", True, h[1], m[1])
    if want("d"):
        h = tput("hub", 50, 1, 0, 10000)
        m = tput("mosquitto", 50, 1, 0, 10000)
        row("(d) fan-in 50->1 msg/s", h[0], m[0], "msg/s", True, h[1], m[1])
    if want("e"):
        hl = latency("hub")
        ml = latency("mosquitto")
        row("(e) latency p50 at 5000 msg/s (us)", hl[0], ml[0], "us", False, hl[2], ml[2])
        row("(e) latency p99 at 5000 msg/s (us)", hl[1], ml[1], "us", False)
    if want("o"):
        # what a power-cut-safe PUBACK costs: the hub with fsync (its default) against
        # mosquitto in memory, and the hub with sync false
        for rate in (1000, 20000):
            hs = latency("hub", rate, qos=1, persistence=True)
            h = latency("hub", rate, qos=1)
            m = latency("mosquitto", rate, qos=1)
            k = f"{rate // 1000}k/s"
            row(f"(o) QoS 1 latency p50 at {k}, hub fsync (us)", hs[0], m[0], "us", False,
                hs[2], m[2])
            row(f"(o) QoS 1 latency p99 at {k}, hub fsync (us)", hs[1], m[1], "us", False)
            row(f"(o) QoS 1 PUBACK p50 at {k}, hub fsync (us)", hs[3], m[3], "us", False)
            row(f"(o) QoS 1 latency p50 at {k}, hub sync false (us)", h[0], m[0], "us", False,
                h[2], m[2])
    if want("f"):
        hr = idle_rss("hub")
        mr = idle_rss("mosquitto")
        row("(f) RSS per idle connection (bytes)", hr, mr, "B", False)
    for letter, link in (("g", "ssl"), ("h", "ws"), ("i", "wss")):
        if want(letter):
            h = tput("hub", 1, 1, 0, 500000, link=link)
            m = tput("mosquitto", 1, 1, 0, 500000, link=link)
            row(f"({letter}) QoS 0 1->1 over {link} msg/s", h[0], m[0], "msg/s", True, h[1], m[1])

    if want("j"):
        d = tempfile.mkdtemp(prefix="bench-api-")
        stub = StubMaster(os.path.join(d, "api.sock"))
        try:
            on, off = [], []
            for _ in range(2):  # alternated, so a busy moment of the machine hits both
                on.append(tput("hub", 1, 1, 0, 2000000, api=stub.server_address))
                off.append(tput("hub", 1, 1, 0, 2000000))
            on, off = max(on), max(off)
            assert stub.reports > 0, "the hub never reported"
        finally:
            stub.shutdown()
            stub.server_close()
            shutil.rmtree(d, ignore_errors=True)
        rows.append(("(j) QoS 0 1->1 msg/s: metrics on / off", on[0], off[0], "msg/s",
                     on[0] / off[0], on[1], off[1]))
        lost_any = lost_any or on[1] > 0 or off[1] > 0

    if want("k"):
        h = tput("hub", 1, 1, 0, 500000, version=5)
        m = tput("mosquitto", 1, 1, 0, 500000, version=5)
        row("(k) 5.0 QoS 0 1->1 msg/s", h[0], m[0], "msg/s", True, h[1], m[1])
    if want("l"):
        h = tput("hub", 1, 1, 1, 100000, version=5)
        m = tput("mosquitto", 1, 1, 1, 100000, version=5)
        row("(l) 5.0 QoS 1 1->1 msg/s (hub sync false; mosq memory)", h[0], m[0], "msg/s",
            True, h[1], m[1])
    if want("m"):
        h = tput("hub", 1, 1, 2, 50000, version=5)
        m = tput("mosquitto", 1, 1, 2, 50000, version=5)
        row("(m) 5.0 QoS 2 1->1 msg/s (hub sync false; mosq memory)", h[0], m[0], "msg/s",
            True, h[1], m[1])
        hs = tput("hub", 1, 1, 2, 50000, persistence=True, version=5)
        mp = tput("mosquitto", 1, 1, 2, 50000, persistence=True, version=5)
        row("(m) 5.0 QoS 2 1->1 msg/s (hub fsync; mosq persistence)", hs[0], mp[0], "msg/s",
            True, hs[1], mp[1])
        h3 = tput("hub", 1, 1, 2, 50000)
        m3 = tput("mosquitto", 1, 1, 2, 50000)
        row("(m) 3.1.1 QoS 2 1->1 msg/s (hub sync false; mosq memory)", h3[0], m3[0], "msg/s",
            True, h3[1], m3[1])
    if want("n"):
        # hub 5.0 against hub 3.1.1, alternated so a busy moment of the machine hits both;
        # QoS 1 with 100 in flight on both, the receive maximum the hub gives 5.0 clients
        for qos, count in ((0, 500000), (1, 100000)):
            v5, v3 = [], []
            for _ in range(2):
                v5.append(tput("hub", 1, 1, qos, count, runs=2, version=5, window=100))
                v3.append(tput("hub", 1, 1, qos, count, runs=2, window=100))
            v5, v3 = max(v5), max(v3)
            rows.append((f"(n) hub QoS {qos} 1->1 msg/s: 5.0 / 3.1.1", v5[0], v3[0], "msg/s",
                         v5[0] / v3[0], v5[1], v3[1]))
            # the cost in the hub itself (the load generator decodes 5.0 too): its CPU time
            # per message, in nanoseconds
            c5, c3 = v5[2] * 1000, v3[2] * 1000
            rows.append((f"(n) hub CPU ns per QoS {qos} msg: 5.0 / 3.1.1", c5, c3, "ns",
                         c5 / c3 if c3 else 0, 0, 0))
            lost_any = lost_any or v5[1] > 0 or v3[1] > 0
        i5, i3 = instructions_per_msg(0, 5), instructions_per_msg(0, 4)
        if i5 and i3:
            rows.append(("(n) hub instructions per QoS 0 msg: 5.0 / 3.1.1", i5, i3, "",
                         i5 / i3, 0, 0))
        r5, r3 = idle_rss("hub", version=5), idle_rss("hub")
        rows.append(("(n) hub RSS per idle connection: 5.0 / 3.1.1", r5, r3, "B", r5 / r3, 0, 0))

    print(f"{'scenario':48} {'hub':>12} {'mosquitto':>12} {'hub/mosq':>9} {'lost hub/mosq':>14}")
    for name, hv, mv, unit, ratio, hlost, mlost in rows:
        print(f"{name:48} {hv:12.0f} {mv:12.0f} {ratio:9.2f} {int(hlost):>7}/{int(mlost)}")
    if lost_any:
        print("FAIL: the hub lost messages")
        sys.exit(1)


if __name__ == "__main__":
    main()
