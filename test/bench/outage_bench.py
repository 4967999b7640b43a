#!/usr/bin/python3
"""Store-and-forward through a remote outage (issue 16, Azure IoT Edge's table of iotedge
PR #7528): how soon hub -> remote messages flow again after the remote returns, and how fast
the backlog drains.

    make BUILD=build all                     # release build
    BAETYL_BUILD=$PWD/build /usr/bin/python3 test/bench/outage_bench.py
    OUTAGES=0,15,60 ... (seconds; default 0,15,60,120,600)   RATE=500 (msg/s during outage)
    BUFFERSIZE=n (remote-mqtt's remote window; default: remote-mqtt's own default)
    LATENCY_MS=n (0: remote-mqtt reaches the remote through a proxy that delays each
    direction by n/2 ms, a WAN round trip of n ms, where the in-flight window bounds the rate)

For each outage length, fresh processes: the hub (storage.sync default), a mosquitto as the
remote (persistence on, so the counting subscriber's session survives its restart),
remote-mqtt with the chapter 10 rule (t1, QoS 1, hub -> remote) and remote-mqtt's default
reconnect settings, a mosquitto_sub at the remote (persistent session, QoS 1) counting the
sequence numbers. The remote is stopped (SIGTERM); a publisher sends numbered 100-byte QoS 1
messages into the hub at RATE msg/s for the outage's length (each PUBACKed by the hub); the
remote is started again on the same port. Measured from the moment its port accepts:
`first` = until the first waiting message arrives at the remote, `drain` = until the last
one arrives; `msg/s` = waiting messages / (drain - first); `lost` = numbers never seen."""
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bridge_bench import BUILD, Run, free_port, wait_port  # noqa: E402

PAYLOAD = 100


class Remote:
    """The remote mosquitto, restartable on one port with its sessions."""

    def __init__(self, run):
        self.run, self.port = run, free_port()
        self.pdir = os.path.join(run.dir, "remote-data")
        os.makedirs(self.pdir)
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf = run.write("remote.conf", f"{user}per_listener_settings false\n"
                              "allow_anonymous true\npersistence true\n"
                              f"persistence_location {self.pdir}/\nautosave_interval 0\n"
                              "max_queued_messages 0\nmax_inflight_messages 1000\n"
                              "log_type error\nlog_dest stderr\n"
                              f"listener {self.port} 127.0.0.1\n")
        self.proc = None

    def start(self):
        self.proc = self.run.start(["mosquitto", "-c", self.conf], "remote")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return time.monotonic()
            except OSError:
                time.sleep(0.005)
        raise RuntimeError("the remote did not start")

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(20)


class Counter:
    """mosquitto_sub at the remote (client id `counter`, persistent session): arrival time
    (monotonic) of every sequence number."""

    def __init__(self, run, port):
        self.run, self.port = run, port
        self.seen = {}
        self.dups = 0
        self.probes = 0
        self.lock = threading.Lock()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["mosquitto_sub", "-p", str(self.port), "-h", "127.0.0.1",
                                      "-i", "counter", "-c", "-q", "1", "-t", "t1"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.t = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self.t.start()

    def _read(self, proc):
        for line in proc.stdout:
            now = time.monotonic()
            head = line[:10]
            with self.lock:
                if head == b"probe" + b" " * 5:
                    self.probes += 1
                    continue
                seq = int(head)
                if seq in self.seen:
                    self.dups += 1
                else:
                    self.seen[seq] = now

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)
        self.t.join(10)


def proxy(listen, target, one_way_ms):
    """Forwards 127.0.0.1:listen to 127.0.0.1:target, delaying every chunk one_way_ms in each
    direction (order kept); a connection the target refuses is closed at once."""
    delay = one_way_ms / 1000

    async def pipe(reader, writer):
        q = asyncio.Queue()

        async def send():
            while True:
                due, data = await q.get()
                if data is None:
                    break
                await asyncio.sleep(max(0, due - loop.time()))
                writer.write(data)
                await writer.drain()
            writer.close()
        task = asyncio.ensure_future(send())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                q.put_nowait((loop.time() + delay, data))
        except OSError:
            pass
        q.put_nowait((0, None))
        try:
            await task
        except OSError:
            pass

    async def serve(cr, cw):
        try:
            tr, tw = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, tw), pipe(tr, cw))

    loop = asyncio.new_event_loop()
    loop.run_until_complete(asyncio.start_server(serve, "127.0.0.1", listen))
    loop.run_forever()


def bridge_conf(hub, remote, buffersize):
    extra = f"    buffersize: {buffersize}\n" if buffersize else ""
    return f"""hub:
  address: tcp://127.0.0.1:{hub}
  username: test
  password: hahaha
remotes:
  - name: iothub
    address: tcp://127.0.0.1:{remote}
    clientid: remote-iothub-1
{extra}rules:
  - hub: {{subscriptions: [{{topic: t1, qos: 1}}]}}
    remote: {{name: iothub}}
logger: {{level: warn}}
"""


def publisher(port):
    c = mqtt.Client(client_id="bench-pub", clean_session=True)
    c.username_pw_set("test", "hahaha")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    return c


def measure(outage, rate, buffersize, latency):
    r = Run()
    counter = None
    try:
        hub = r.hub()
        remote = Remote(r)
        remote.start()
        counter = Counter(r, remote.port)
        counter.start()
        via = remote.port
        if latency:
            via = free_port()
            r.start([sys.executable, os.path.abspath(__file__), "--proxy", str(via),
                     str(remote.port), str(latency / 2)], "proxy", via)
        conf = r.write("remote-mqtt.yml", bridge_conf(hub, via, buffersize))
        r.start([os.path.join(BUILD, "bin", "baetyl-remote-mqtt"), "-c", conf], "remote-mqtt")
        pub = publisher(hub)
        deadline = time.monotonic() + 30
        while counter.probes == 0:  # the rule's subscriptions are in place
            if time.monotonic() > deadline:
                raise RuntimeError("nothing flows before the outage")
            pub.publish("t1", b"probe".ljust(PAYLOAD), 1)
            time.sleep(0.2)
        time.sleep(0.5)
        counter.stop()
        remote.stop()
        # the outage: numbered QoS 1 messages at a steady rate, each PUBACKed by the hub
        infos, n, t0 = [], 0, time.monotonic()
        end = t0 + outage
        while True:
            due = int((time.monotonic() - t0) * rate) + 1
            while n < due:
                infos.append(pub.publish("t1", f"{n:010d}".encode().ljust(PAYLOAD, b"x"), 1))
                n += 1
            if time.monotonic() >= end:
                break
            time.sleep(0.002)
        for i in infos:
            i.wait_for_publish(60)
        acked = sum(1 for i in infos if i.is_published())
        back = remote.start()
        counter.start()
        deadline = back + 120 + n / 200
        while len(counter.seen) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # late duplicates
        pub.disconnect()
        pub.loop_stop()
        with counter.lock:
            times = sorted(counter.seen.values())
            got = len(counter.seen)
            dups = counter.dups
        first = times[0] - back if times else None
        drain = times[-1] - back if times else None
        span = times[-1] - times[0] if len(times) > 1 else 0
        return {"outage": outage, "waiting": n, "acked": acked, "first": first, "drain": drain,
                "rate": got / span if span > 0 else None, "lost": n - got, "dups": dups}
    finally:
        if counter and counter.proc and counter.proc.poll() is None:
            counter.stop()
        r.close()


def main():
    if sys.argv[1:2] == ["--proxy"]:
        return proxy(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    for path in (os.path.join(BUILD, "bin", "baetyl-hub"),
                 os.path.join(BUILD, "bin", "baetyl-remote-mqtt")):
        if not os.path.exists(path):
            sys.exit(f"{path} not built (make BUILD={BUILD} all)")
    if not shutil.which("mosquitto") or not shutil.which("mosquitto_sub"):
        sys.exit("mosquitto and mosquitto_sub not installed (scripts/deps.sh)")
    outages = [int(x) for x in os.environ.get("OUTAGES", "0,15,60,120,600").split(",") if x]
    rate = int(os.environ.get("RATE", "500"))
    buffersize = int(os.environ.get("BUFFERSIZE", "0"))
    latency = float(os.environ.get("LATENCY_MS", "0"))
    window = buffersize or "default"
    print(f"remote outage, hub -> remote QoS 1 ({PAYLOAD}-byte messages, {rate} msg/s into the "
          f"hub during the outage, remote-mqtt buffersize {window}, "
          f"round trip to the remote +{latency:g} ms)")
    print(f"{'outage s':>9}{'waiting':>9}{'first msg s':>13}{'drained s':>11}"
          f"{'drain msg/s':>13}{'lost':>6}{'dups':>6}")
    failed = False
    for outage in outages:
        m = measure(outage, rate, buffersize, latency)

        def f(v, fmt):
            return format(v, fmt) if v is not None else "-"
        print(f"{outage:>9}{m['waiting']:>9}{f(m['first'], '.2f'):>13}"
              f"{f(m['drain'], '.2f'):>11}{f(m['rate'], ',.0f'):>13}{m['lost']:>6}"
              f"{m['dups']:>6}", flush=True)
        failed = failed or m["lost"] > 0 or m["acked"] != m["waiting"]
    if failed:
        print("FAIL: messages PUBACKed by the hub were lost", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
