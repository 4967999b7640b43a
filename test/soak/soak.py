#!/usr/bin/python3
"""Soak test of the whole system (`make soak`; a short bounded run inside `make test`).

Installs the main example (example/native: the hub with route t -> t/topic and the chapter 9
Python, Node and SQL functions on t) into a temporary work dir, moves it to free ports of
127.0.0.1 and starts the real master. For SOAK_TIME seconds a publisher sends numbered QoS 1
messages {"id":n} on t at a steady rate while a persistent QoS 1 subscriber on t/# records
which ids arrive on each output topic, and the CHAOS table below kills and pauses parts of
the system, the master itself included (kill -9 and start again, and a binary update (MST)
that re-executes it: it must take its services over, the hub keeping its pid and the
subscriber its connection). RSS and fd counts of the
master and every service are sampled throughout.
At the end the master gets SIGTERM and must take everything with it within its grace.

Fails (exit 1) when a PUBACKed message never reached t (our QoS 1 persistent session), or
never reached the output of a function whose input is QoS 1 end to end (the SQL filter; it
passes id < 10 only), when a message is never PUBACKed, when the system did not heal after a
chaos event, when a sanitizer report appears in any log, when the shutdown is not clean, and
in long runs when memory or fds keep growing. The seed's route t -> t/topic and its Python and
Node rules are QoS 0 (see TOPICS): their losses are only reported.

Environment: BAETYL_BUILD (default <src>/build), BAETYL_SRC, SOAK_TIME (s, default 60),
SOAK_RATE (messages/s, default 200), SOAK_KEEP=1 keeps the work dir even on success.
The last line of the output is the one-line summary.
"""
import base64
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import paho.mqtt.client as mqtt

SRC = os.environ.get("BAETYL_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("BAETYL_BUILD") or os.path.join(SRC, "build"))
SOAK_TIME = float(os.environ.get("SOAK_TIME", "60"))
RATE = float(os.environ.get("SOAK_RATE", "200"))
KEEP = os.environ.get("SOAK_KEEP") == "1"

USER, PASSWORD = "test", "hahaha"
GRACE = 10                       # written into conf.yml: the master's stop timeout
SAMPLE_EVERY = 3.0               # seconds between RSS/fd samples
WARMUP = min(60.0, max(3.0, SOAK_TIME * 0.2))   # samples before this are not the baseline
LONG_RUN = SOAK_TIME >= 300      # only long runs turn resource growth into a failure
HEAL_TIMEOUT = 30.0              # a killed part must be back within this
DRAIN_TIMEOUT = 60.0             # after the last publish, time for every output to arrive
SQL_PASSES = range(0, 10)        # the seed's statement: `... where id < 10`
SANITIZER = re.compile(r"(Address|Leak|UndefinedBehavior|Thread|Memory)Sanitizer|runtime error:")
MARKER = "BAETYL_SOAK_MARKER"    # in the environment of the master, so of every service

# Output topics of example/native and whether each must carry every acknowledged id:
# - t: the message itself, QoS 1 to our persistent session: the hub's durability promise.
# - t/sqlfilter: that rule is QoS 1 in and out, and the function-manager acks an input only
#   after its output was acked: every acked id below 10 must come out (or its error).
# - t/topic: the seed's route sets no qos, so its copies are QoS 0 (SPEC §11: min(message
#   QoS, source.qos)), and t/py3hi, t/node8hi: the seed's rules subscribe with QoS 0.
#   In flight when the hub or the function-manager dies, they may be lost: only reported,
#   and each must still carry output at the end (the path healed).
TOPICS = {"t": "all", "t/sqlfilter": "sql", "t/topic": "qos0", "t/py3hi": "qos0", "t/node8hi": "qos0"}


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


T0 = time.monotonic()


# ---- processes of the install -------------------------------------------------------------

def read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return b"" if "b" in mode else ""


def marked_pids(marker):
    """Every process whose environment carries our marker: the master and all services."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and f"{MARKER}={marker}".encode() in read(f"/proc/{d}/environ", "rb").split(b"\0"):
            out.append(int(d))
    return out


def instances(marker):
    """{instance name: pid} of every service instance of our master: a session leader (the
    master starts each in its own session) with our marker. Not by parent: an instance
    a restarted master took over is no child of it."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        stat = read(f"/proc/{d}/stat")
        # the command name may hold spaces: fields after the closing parenthesis
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) < 4 or int(fields[3]) != int(d) or fields[0] in "ZX":
            continue
        env = read(f"/proc/{d}/environ", "rb").split(b"\0")
        if f"{MARKER}={marker}".encode() not in env:
            continue
        name = next((e.split(b"=", 1)[1].decode() for e in env
                     if e.startswith(b"BAETYL_SERVICE_INSTANCE_NAME=")), None)
        if name:
            out[name] = int(d)
    return out


def usage(pid):
    """(anonymous RSS in KiB, open fds) of a process, or None once it is gone. Anonymous
    memory, not VmRSS: the hub maps its LMDB log, whose pages are not a leak."""
    status = read(f"/proc/{pid}/status")
    m = re.search(r"^RssAnon:\s+(\d+)", status, re.M)
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    return (int(m.group(1)), fds) if m else None


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def wait_until(pred, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- install and start ---------------------------------------------------------------------

class System:
    """The main example installed in a temp work dir and its master."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="soak", dir="/tmp")  # short: it holds the API socket
        self.port = free_port()
        self.marker = uuid.uuid4().hex
        self.master = None

    def path(self, rel):
        return os.path.join(self.dir, rel)

    def install(self):
        # `-o all`: install what BUILD holds, never rebuild; a clean environment, so that the
        # flags of a calling make (`make test` -> `make soak`) do not leak into this one.
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        r = subprocess.run(["make", "--no-print-directory", "-s", "-o", "all", "install", f"BUILD={BUILD}",
                            f"PREFIX={self.dir}", "MODE=native"], cwd=SRC, env=env, capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError(f"make install failed:\n{r.stdout}{r.stderr}")
        self.rewrite("etc/baetyl/conf.yml", r"grace: *\S+", f"grace: {GRACE}s")
        self.rewrite("etc/baetyl/conf.yml", r"address: *unix://\S+", "address: unix://var/run/baetyl.sock")
        # The hub is killed every CHAOS period; with the default backoff (doubling, reset only
        # after 5m of running, SPEC §6) its outages would grow to minutes. A short backoff.max
        # keeps each restart at backoff.min: the soak is about recovery, not that policy.
        self.rewrite("var/db/baetyl/application.yml", r"(\n    image: baetyl-hub\n)",
                     r"\1    restart: {backoff: {min: 1s, max: 5s}}\n")
        self.rewrite("var/db/baetyl/localhub-conf/service.yml", r"tcp://0\.0\.0\.0:1883",
                     f"tcp://127.0.0.1:{self.port}")
        self.rewrite("var/db/baetyl/function-manager-conf/service.yml", r"tcp://127\.0\.0\.1:1883",
                     f"tcp://127.0.0.1:{self.port}")

    def rewrite(self, rel, pattern, repl):
        text = read(self.path(rel))
        new, n = re.subn(pattern, repl, text)
        if n == 0:
            raise RuntimeError(f"{rel}: nothing matches {pattern!r}: has example/native changed?")
        with open(self.path(rel), "w") as f:
            f.write(new)

    def start(self):
        env = dict(os.environ, **{MARKER: self.marker})
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        started = read(self.path("var/log/baetyl/baetyl.log")).count("services started")
        self.out = open(self.path("master.out"), "a")
        self.master = subprocess.Popen([self.path("bin/baetyl"), "start", "-w", self.dir], cwd=self.dir,
                                       stdout=self.out, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
        ok = wait_until(lambda: self.master.poll() is not None or
                        (read(self.path("var/log/baetyl/baetyl.log")).count("services started")
                         > started and port_open(self.port)), 60)
        if not ok or self.master.poll() is not None:
            raise RuntimeError("the master did not start:\n" + read(self.path("master.out"))[-3000:]
                               + read(self.path("var/log/baetyl/baetyl.log"))[-3000:])

    def instances(self):
        return instances(self.marker)

    def api(self, method, path, body=None):
        """(status, text) of a master API call with the CLI account."""
        token = read(self.path("var/run/baetyl/cli.token")).strip()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.path("var/run/baetyl.sock"))
        data = json.dumps(body).encode() if body is not None else b""
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                  f"x-openedge-username: baetyl.cli\r\nx-openedge-password: {token}\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        s.close()
        head, _, text = out.decode(errors="replace").partition("\r\n\r\n")
        return int(head.split()[1]), text

    def stop(self):
        """SIGTERM to the master; (exit code or None, seconds taken, pids left)."""
        t = time.monotonic()
        self.master.send_signal(signal.SIGTERM)
        try:
            rc = self.master.wait(GRACE + 15)   # grace for the services, then the master's own exit
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t
        wait_until(lambda: not marked_pids(self.marker), 3)
        left = marked_pids(self.marker)
        self.out.close()
        return rc, took, left

    def kill_all(self):
        for pid in marked_pids(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.master and self.master.poll() is None:
            self.master.kill()
            self.master.wait()

    def sanitizer_reports(self):
        """(file, line) of every sanitizer report in the master output and in every log."""
        hits = []
        for root, dirs, files in os.walk(self.dir):
            dirs[:] = [d for d in dirs if d != "node_modules"]
            for name in files:
                if name == "master.out" or name.endswith(".log") or ".log." in name:
                    p = os.path.join(root, name)
                    for line in read(p).splitlines():
                        if SANITIZER.search(line):
                            hits.append((os.path.relpath(p, self.dir), line.strip()))
                            break
        return hits


# ---- MQTT: the publisher and the persistent subscriber ----------------------------------------

def client(client_id, clean):
    c = mqtt.Client(client_id=client_id, clean_session=clean)
    c.username_pw_set(USER, PASSWORD)
    c.reconnect_delay_set(0.2, 2)
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)    # unbounded: messages published while the hub is down wait
    return c


def message_id(payload):
    """(id, is_error) of an output: {"id":n,...}, or a function error that carries the input
    base64-encoded in functionMessage.Payload; (None, False) when it is neither."""
    try:
        doc = json.loads(payload)
        if isinstance(doc, dict) and "errorMessage" in doc:
            inner = json.loads(base64.b64decode(doc["functionMessage"]["Payload"]))
            return int(inner["id"]), True
        return int(doc["id"]), False
    except (ValueError, KeyError, TypeError):
        return None, False


class Subscriber:
    """Persistent session (clean session false), QoS 1 on t/#: ids seen per topic."""

    def __init__(self, port):
        self.lock = threading.Lock()
        self.got = {t: set() for t in TOPICS}
        self.errors = {t: set() for t in TOPICS}
        self.other = 0
        self.total = 0
        self.probes = set()      # (topic, id) of each probe's output (negative ids)
        self.connects = 0
        self.last_rx = time.monotonic()
        self.c = client(f"soak-sub-{uuid.uuid4().hex[:8]}", clean=False)
        self.c.on_connect = self.on_connect
        self.c.on_message = self.on_message
        self.subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        if not self.subscribed.wait(15):
            raise RuntimeError("subscriber: no SUBACK")

    def on_connect(self, c, userdata, flags, rc):
        # Subscribes once: after a reconnect (also after a hub crash) the persistent session
        # must still hold the subscription and the messages it missed (SPEC §11). The hub
        # answers session-present 0 by design, so that flag tells nothing.
        if rc == 0:
            self.connects += 1
            if self.connects == 1:
                c.subscribe("t/#", qos=1)

    def on_message(self, c, userdata, msg):
        n, err = message_id(msg.payload)
        with self.lock:
            self.total += 1
            self.last_rx = time.monotonic()
            if msg.topic not in TOPICS or n is None:
                self.other += 1
            elif n < 0:
                self.probes.add((msg.topic, n))
            elif err:
                self.errors[msg.topic].add(n)
            else:
                self.got[msg.topic].add(n)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class Publisher:
    """QoS 1 {"id":n} on t at RATE per second. paho keeps every unacknowledged message and
    sends it again (DUP) after a reconnect, so an id is either PUBACKed or still pending."""

    def __init__(self, port):
        self.c = client(f"soak-pub-{uuid.uuid4().hex[:8]}", clean=True)
        self.puback_mids = collections.deque()   # filled by paho's thread, drained by collect()
        self.c.on_publish = lambda c, userdata, mid: self.puback_mids.append(mid)
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        self.pending = {}        # packet id -> message id, until its PUBACK
        self.probes = 0          # probes sent so far: each gets its own id -1, -2, …
        self.acked = set()
        self.sent = 0

    def publish(self, n):
        info = self.c.publish("t", json.dumps({"id": n}, separators=(",", ":")), qos=1)
        # paho refuses a message only when its queue is full (it is unbounded here) or its
        # packet id is still in flight (65535 messages ago): then the id stays pending.
        self.pending[info.mid] = n
        self.sent += 1

    def collect(self):
        """Moves PUBACKed ids to acked. Runs in the publishing thread, so a PUBACK is never
        looked up before publish() recorded its packet id."""
        while self.puback_mids:
            n = self.pending.pop(self.puback_mids.popleft(), None)
            if n is not None:
                self.acked.add(n)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


# ---- chaos -----------------------------------------------------------------------------------

class Chaos:
    """Runs the CHAOS table in its own thread and records each event and whether the system
    healed."""

    def __init__(self, system):
        self.sys = system
        self.done = []              # (seconds into the run, event, ok, detail)
        self.runtime_turn = 0
        self.stop = threading.Event()

    def kill_runtime(self):
        """kill -9 one function runtime instance (in turn); the function-manager or the master
        must bring that function back."""
        runtimes = sorted(n for n in self.sys.instances() if n not in ("localhub", "function-manager"))
        if not runtimes:
            return True, "no runtime instance running: skipped"
        name = runtimes[self.runtime_turn % len(runtimes)]
        self.runtime_turn += 1
        service = name.split(".")[0]
        pid = self.sys.instances().get(name)
        if pid is None:
            return True, f"{name} already gone: skipped"
        os.kill(pid, signal.SIGKILL)
        back = wait_until(lambda: any(n.split(".")[0] == service and p != pid
                                      for n, p in self.sys.instances().items()), HEAL_TIMEOUT)
        return bool(back), f"{name} (pid {pid}) " + ("replaced" if back else "NOT replaced")

    def kill_hub(self):
        """kill -9 the hub; the master must restart it and it must accept connections."""
        pid = self.sys.instances().get("localhub")
        if pid is None:
            return False, "no hub running"
        os.kill(pid, signal.SIGKILL)
        new = wait_until(lambda: (self.sys.instances().get("localhub") not in (None, pid)
                                  and port_open(self.sys.port)), HEAL_TIMEOUT)
        return bool(new), f"pid {pid} " + ("restarted" if new else "NOT restarted")

    def kill_master(self):
        """kill -9 the master and start it again: the new one takes the running services over
        (issue 15.2), so the hub keeps its pid and the subscriber stays connected."""
        before = self.sys.instances()
        hub, connects = before.get("localhub"), self.sys.sub.connects
        self.sys.master.kill()
        self.sys.master.wait()
        self.sys.out.close()
        self.sys.start()
        after = self.sys.instances()
        kept = hub is not None and after.get("localhub") == hub
        stayed = self.sys.sub.connects == connects
        same = sorted(n for n in before if before[n] == after.get(n))
        hub_said = "kept" if kept else f"now {after.get('localhub')}"
        sub_said = "subscriber stayed" if stayed else "subscriber RECONNECTED"
        return kept and stayed, (f"hub pid {hub} {hub_said}, {sub_said}, "
                                 f"{len(same)} of {len(before)} instances taken over")

    def update_master(self):
        """A master binary update (MST) with a copy of the installed binary: the master
        re-executes itself in place and takes its services over, as after a kill."""
        self.mst_turn = getattr(self, "mst_turn", 0) + 1
        trace = f"soak-mst-{self.mst_turn}"
        rel = f"var/db/baetyl/soak-mst-{self.mst_turn}"
        os.makedirs(self.sys.path(rel + "/bin"), exist_ok=True)
        shutil.copy(self.sys.path("bin/baetyl"), self.sys.path(rel + "/bin/baetyl"))
        hub, connects = self.sys.instances().get("localhub"), self.sys.sub.connects
        st, body = self.sys.api("PUT", "/v1/system/update",
                                {"type": "MST", "path": rel, "trace": trace})
        if st != 200:
            return False, f"update refused: {st} {body}"
        otalog = self.sys.path("var/db/baetyl/ota.log")

        def step():
            for line in read(otalog).splitlines():
                if f'"trace":"{trace}"' in line.replace(" ", "") and any(
                        f'"{s}"' in line for s in ("UPDATED", "FAILURE", "ROLLEDBACK")):
                    return json.loads(line)["step"]
            return None
        done = wait_until(step, HEAL_TIMEOUT)
        kept = hub is not None and self.sys.instances().get("localhub") == hub
        stayed = self.sys.sub.connects == connects
        ok = done == "UPDATED" and kept and stayed and self.sys.master.poll() is None
        return ok, (f"{done}, hub pid {hub} " + ("kept" if kept else "CHANGED")
                    + (", subscriber stayed" if stayed else ", subscriber RECONNECTED"))

    def pause_fm(self, secs=3.0):
        """SIGSTOP the function-manager for a few seconds, then SIGCONT."""
        pid = self.sys.instances().get("function-manager")
        if pid is None:
            return False, "no function-manager running"
        os.kill(pid, signal.SIGSTOP)
        try:
            self.stop.wait(secs)
        finally:
            os.kill(pid, signal.SIGCONT)
        return True, f"pid {pid} stopped {secs:.0f}s"

    def run(self, start):
        events = []
        for first, every, name, action in CHAOS:
            t = first
            while t < SOAK_TIME - 2:          # nothing in the last seconds of publishing
                events.append((t, name, action))
                t += every
        for t, name, action in sorted(events, key=lambda e: e[0]):
            if self.stop.wait(max(0.0, start + t - time.monotonic())):
                return
            at = time.monotonic() - start
            try:
                ok, detail = action(self)
            except OSError as e:              # the target exited between lookup and signal
                ok, detail = True, f"skipped: {e}"
            self.done.append((at, name, ok, detail))
            log(f"chaos: {name}: {detail}")


# (first at second, then every N seconds, event). A 20 s run does each once.
CHAOS = [
    (5, 30, "kill -9 runtime", Chaos.kill_runtime),
    (9, 45, "kill -9 hub", Chaos.kill_hub),
    (14, 40, "SIGSTOP function-manager", Chaos.pause_fm),
    (11, 37, "MST update of the master", Chaos.update_master),
    (17, 35, "kill -9 master", Chaos.kill_master),
]


# ---- resource sampling ---------------------------------------------------------------------

class Sampler:
    """Every SAMPLE_EVERY seconds: anonymous RSS and fds of the master and each instance, by
    name. The baseline is the first sample after WARMUP; a name restarted later keeps it."""

    def __init__(self, system, start):
        self.sys, self.start = system, start
        self.base, self.last, self.pids = {}, {}, {}
        self.stop = threading.Event()

    def sample(self):
        procs = dict(self.sys.instances(), **{"baetyl (master)": self.sys.master.pid})
        warm = time.monotonic() - self.start >= WARMUP
        for name, pid in procs.items():
            u = usage(pid)
            if u is None:
                continue
            self.pids.setdefault(name, set()).add(pid)
            self.last[name] = u
            if warm:
                self.base.setdefault(name, u)

    def run(self):
        while not self.stop.wait(SAMPLE_EVERY):
            self.sample()

    def report(self):
        """Prints the table; returns what grew by more than half (and a little in absolute
        terms) since the baseline."""
        fails = []
        print(f"{'process':44} {'anon RSS KiB start -> end':>28} {'fds start -> end':>18}  restarts")
        for name in sorted(self.last):
            base = self.base.get(name, self.last[name])
            end = self.last[name]
            rss_grow = end[0] > base[0] * 1.5 and end[0] - base[0] > 4096
            fd_grow = end[1] > base[1] * 1.5 and end[1] - base[1] > 8
            flag = ("  GROWTH" if rss_grow or fd_grow else "")
            print(f"{name[:44]:44} {base[0]:>12} -> {end[0]:<12} {base[1]:>7} -> {end[1]:<8} "
                  f"{len(self.pids[name]) - 1:>3}{flag}")
            if rss_grow or fd_grow:
                fails.append(f"{name} grew: rss {base[0]}->{end[0]} KiB, fds {base[1]}->{end[1]}")
        return fails


# ---- the run -------------------------------------------------------------------------------

def soak(system, failures):
    system.install()
    system.start()
    log(f"master pid {system.master.pid} in {system.dir}, hub on 127.0.0.1:{system.port}")
    sub = Subscriber(system.port)
    system.sub = sub
    pub = Publisher(system.port)
    silent = probe(sub, pub, 60)
    if silent:
        raise RuntimeError(f"no output on {silent} within 60s of start")
    start = time.monotonic()
    chaos, sampler = Chaos(system), Sampler(system, start)
    sampler.sample()
    threads = [threading.Thread(target=chaos.run, args=(start,), daemon=True),
               threading.Thread(target=sampler.run, daemon=True)]
    for t in threads:
        t.start()

    # Steady rate: publish whatever is due, then sleep a little.
    next_report = start + 10
    try:
        while (now := time.monotonic()) < start + SOAK_TIME:
            while pub.sent < int((now - start) * RATE):
                pub.publish(pub.sent)
            pub.collect()
            if now >= next_report:
                next_report += 10
                log(f"sent {pub.sent} acked {len(pub.acked)} pending {len(pub.pending)} "
                    f"received {sub.total}")
            time.sleep(0.005)
    finally:
        threads[0].join(HEAL_TIMEOUT + 10)    # an event still healing finishes first
        chaos.stop.set()

    # Drain: every acked id must reach its strict topics; then wait for quiet.
    def drained():
        pub.collect()
        with sub.lock:
            complete = not pub.pending and all(missing(sub, pub, t) == [] for t in TOPICS
                                               if TOPICS[t] != "qos0")
            quiet = time.monotonic() - sub.last_rx > 3
        return complete and quiet
    wait_until(drained, DRAIN_TIMEOUT, 0.2)
    # Every path must work again after the chaos, the QoS 0 ones included.
    for topic in probe(sub, pub, 30):
        failures.append(f"{topic}: no output for a new message after the run: that path did not heal")
    sampler.stop.set()
    threads[1].join(SAMPLE_EVERY + 2)
    sampler.sample()
    pub.close()
    sub.close()

    print("---- per topic (ids of acknowledged messages)")
    print(f"{'topic':14} {'expected':>9} {'received':>9} {'errors':>7} {'missing':>8}  rule")
    for topic, kind in TOPICS.items():
        miss = missing(sub, pub, topic)
        want = expected(pub, topic)
        print(f"{topic:14} {len(want):>9} {len(sub.got[topic] & want):>9} {len(sub.errors[topic]):>7} "
              f"{len(miss):>8}  {kind}" + (f"  e.g. {miss[:8]}" if miss else ""))
        if miss and kind != "qos0":
            failures.append(f"{topic}: {len(miss)} acknowledged ids never arrived, e.g. {miss[:10]}")
    if pub.pending:
        failures.append(f"publisher: {len(pub.pending)} messages never acknowledged by the hub")
    print(f"publisher: sent {pub.sent}, acked {len(pub.acked)}, pending {len(pub.pending)}; "
          f"subscriber: {sub.total} messages, {sub.connects} connects, {sub.other} unrecognised")

    print("---- chaos")
    for at, name, ok, detail in chaos.done:
        print(f"{at:7.1f}s  {name:26} {'ok ' if ok else 'FAILED'}  {detail}")
        if not ok:
            failures.append(f"chaos {name} at {at:.0f}s: {detail}")

    # ASan holds freed memory in its quarantine (256 MiB): growth there says nothing.
    sanitized = b"__asan_init" in read(system.path("bin/baetyl"), "rb")
    judge = LONG_RUN and not sanitized
    why = "a failure" if judge else "only reported: " + ("sanitizer build" if sanitized else "short run")
    print(f"---- resources (baseline after {WARMUP:.0f}s; growth is {why})")
    growth = sampler.report()
    if judge:
        failures.extend(growth)

    rc, took, left = system.stop()
    print(f"---- shutdown: master exit code {rc} after {took:.1f}s (grace {GRACE}s), {len(left)} processes left")
    if rc is None:
        failures.append(f"the master did not exit within {GRACE + 15}s of SIGTERM")
    elif rc != 0:
        failures.append(f"the master exited with {rc}")
    if left:
        failures.append(f"processes left after the master exited: {left}")
    for f, line in system.sanitizer_reports():
        failures.append(f"sanitizer report in {f}: {line[:160]}")
    return pub, sub, chaos


def probe(sub, pub, timeout):
    """Publishes probes {"id":-k} on t until each output topic has answered one; returns the
    topics still silent after timeout. At start it also waits for the function-manager's
    rules to subscribe and the runtimes to come up, so that numbered messages have readers."""
    first = -pub.probes - 1          # ids of this round: first, first - 1, …
    deadline = time.monotonic() + timeout
    k = 0
    while True:
        with sub.lock:
            silent = sorted(set(TOPICS) - {t for t, n in sub.probes if n <= first})
        if not silent or time.monotonic() > deadline:
            log(f"probes: {k} sent, " + (f"no answer on {silent}" if silent else "every output topic answered"))
            return silent
        k += 1
        pub.probes += 1
        pub.c.publish("t", json.dumps({"id": -pub.probes}), qos=1)
        time.sleep(0.5)


def expected(pub, topic):
    if TOPICS[topic] == "sql":
        return {n for n in pub.acked if n in SQL_PASSES}
    return set(pub.acked)


def missing(sub, pub, topic):
    return sorted(expected(pub, topic) - sub.got[topic] - sub.errors[topic])


def main():
    system = System()
    failures = []
    pub = sub = chaos = None
    try:
        pub, sub, chaos = soak(system, failures)
    except Exception as e:   # noqa: BLE001 - any setup error is a failed soak with its reason
        failures.append(f"{type(e).__name__}: {e}")
        for f, line in system.sanitizer_reports():
            failures.append(f"sanitizer report in {f}: {line[:160]}")
    finally:
        system.kill_all()
    if failures:
        print("---- failures")
        for f in failures:
            print("  " + f)
    if failures or KEEP:
        print(f"work dir kept: {system.dir}")
    else:
        shutil.rmtree(system.dir, ignore_errors=True)
    counts = ""
    if pub and sub and chaos:
        lost = {kind: sum(len(missing(sub, pub, t)) for t in TOPICS if (TOPICS[t] == "qos0") == (kind == "qos0"))
                for kind in ("strict", "qos0")}
        counts = (f"sent={pub.sent} acked={len(pub.acked)} missing={lost['strict']} "
                  f"qos0-lost={lost['qos0']} chaos={len(chaos.done)}")
    verdict = "FAIL" if failures else "PASS"
    print(f"soak: {verdict} {SOAK_TIME:.0f}s {counts} failures={len(failures)}"
          + (f" ({failures[0][:120]})" if failures else ""), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
