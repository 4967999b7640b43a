"""Peers and modules for the remote-mqtt and timer tests (no tests here): a fake MQTT broker
that shows CONNECT fields and exact PUBLISH bytes and acks under the test's control, a real
mosquitto, paho clients, a module binary run standalone, certificates, and a hub with an ssl
listener that takes client certificates."""
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import SRC, binary, free_port, mqtt_len, mqtt_str, wait_for, wait_port

GEN_CERTS = os.path.join(SRC, "scripts", "gen-certs.sh")


# ---- a fake MQTT broker: CONNECT fields, exact PUBLISH bytes, acks under test control ------

def u16(b, i):
    return struct.unpack(">H", b[i:i + 2])[0]


def parse_connect(body):
    nl = u16(body, 0)
    i = 2 + nl
    level, flags, keepalive = body[i], body[i + 1], u16(body, i + 2)
    i += 4

    def field(i):
        n = u16(body, i)
        return body[i + 2:i + 2 + n], i + 2 + n
    cid, i = field(i)
    if flags & 0x04:
        _, i = field(i)
        _, i = field(i)
    user = pw = None
    if flags & 0x80:
        user, i = field(i)
        user = user.decode()
    if flags & 0x40:
        pw, i = field(i)
    return {"protocol": body[2:2 + nl].decode(), "level": level, "clean": bool(flags & 0x02),
            "keepalive": keepalive, "clientid": cid.decode(), "username": user, "password": pw}


def parse_pub(flags, body):
    tl = u16(body, 0)
    qos = (flags >> 1) & 3
    pos, pid = 2 + tl, 0
    if qos:
        pid = u16(body, pos)
        pos += 2
    return {"topic": body[2:2 + tl].decode(), "payload": bytes(body[pos:]), "qos": qos,
            "retain": bool(flags & 1), "dup": bool(flags & 8), "pid": pid}


def publish_packet(topic, payload, qos=0, retain=False, pid=1):
    first = 0x30 | (qos << 1) | (1 if retain else 0)
    body = mqtt_str(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return bytes([first]) + mqtt_len(len(body)) + body


class FakeConn:
    """One accepted connection; a thread reads packets and answers as the broker says."""

    def __init__(self, broker, sock):
        self.b, self.sock = broker, sock
        self.buf = b""
        self.packets = []  # (monotonic time, type, flags, body)
        self.cv = threading.Condition()
        self.connect = None
        self.closed = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def send(self, data):
        self.sock.sendall(data)

    def _next(self):
        while True:
            if len(self.buf) >= 2:
                n, mul, i = 0, 1, 1
                while i < len(self.buf):
                    c = self.buf[i]
                    n += (c & 0x7F) * mul
                    mul *= 128
                    i += 1
                    if not c & 0x80:
                        break
                else:
                    i = None
                if i is not None and len(self.buf) >= i + n:
                    p = (self.buf[0] >> 4, self.buf[0] & 0x0F, self.buf[i:i + n])
                    self.buf = self.buf[i + n:]
                    return p
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d

    def _run(self):
        try:
            while True:
                p = self._next()
                if p is None:
                    break
                self._handle(*p)
        except OSError:
            pass
        finally:
            with self.cv:
                self.closed = True
                self.cv.notify_all()

    def _handle(self, t, flags, body):
        with self.cv:
            self.packets.append((time.monotonic(), t, flags, body))
            if t == 1:
                self.connect = parse_connect(body)
            self.cv.notify_all()
        if t == 1:
            if self.b.mode == "silent":
                return
            rc = 3 if self.b.mode == "refuse" else 0
            self.send(bytes([0x20, 2, 0, rc]))
            if rc:
                self.sock.shutdown(socket.SHUT_RDWR)
        elif t == 8:  # SUBSCRIBE: grant what was asked
            i, codes = 2, []
            while i < len(body):
                n = u16(body, i)
                codes.append(body[i + 2 + n])
                i += 3 + n
            self.send(bytes([0x90]) + mqtt_len(2 + len(codes)) + body[:2] + bytes(codes))
        elif t == 10:
            self.send(bytes([0xB0, 2]) + body[:2])
        elif t == 12:
            self.send(bytes([0xD0, 0]))
        elif t == 3 and (flags >> 1) & 3 == 1 and self.b.auto_puback:
            self.send(self.b.puback(parse_pub(flags, body)["pid"]))

    def of_type(self, t):
        with self.cv:
            return [p for p in self.packets if p[1] == t]

    def publishes(self):
        return [parse_pub(p[2], p[3]) for p in self.of_type(3)]

    def pubacks(self):
        return [u16(p[3], 0) for p in self.of_type(4)]


class FakeBroker:
    """mode: 'accept' (CONNACK 0), 'refuse' (CONNACK 3 and close) or 'silent' (never answers
    CONNECT). QoS 1 PUBLISHes are acknowledged only when auto_puback."""

    def __init__(self, mode="accept", auto_puback=True):
        self.mode, self.auto_puback = mode, auto_puback
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.conns = []
        self.attempts = []  # accept times
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def puback(pid):
        return bytes([0x40, 2]) + struct.pack(">H", pid)

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                self.attempts.append(time.monotonic())
                self.conns.append(FakeConn(self, s))

    def conn(self, i=-1):
        with self.lock:
            return self.conns[i]

    def wait_conn(self, n=1, timeout=15):
        wait_for(lambda: len(self.conns) >= n and self.conn(n - 1).connect, timeout,
                 what=f"{n} CONNECT at fake broker {self.port}")
        return self.conn(n - 1)

    def close(self):
        self.ls.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.sock.close()
                except OSError:
                    pass


def closing(cls):
    """The body of a factory fixture: yields make(*a, **kw) -> cls(*a, **kw); everything made
    is closed at teardown."""
    made = []

    def make(*a, **kw):
        x = cls(*a, **kw)
        made.append(x)
        return x
    yield make
    for x in made:
        x.close()


@pytest.fixture
def fake():
    yield from closing(FakeBroker)


# ---- real peers: mosquitto, paho clients, the modules --------------------------------------

class Mosquitto:
    """mosquitto with persistence (sessions survive a SIGTERM restart); listeners: plain tcp
    on 127.0.0.1 and, with certs, ssl on ssl_host requiring a client certificate."""

    def __init__(self, procs, d, certs=None, ssl_host="127.0.0.1"):
        self.procs, self.dir = procs, str(d)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.ssl_port = free_port() if certs else None
        self.ssl_host = ssl_host
        lines = ["per_listener_settings false", "allow_anonymous true", "persistence true",
                 f"persistence_location {self.dir}/", "max_queued_messages 100000",
                 f"log_dest file {self.dir}/mosquitto.log", "log_type all",
                 f"listener {self.port} 127.0.0.1"]
        if os.geteuid() == 0:
            lines.insert(0, "user root")
        if certs:
            lines += [f"listener {self.ssl_port} {ssl_host}", f"cafile {certs['ca']}",
                      f"certfile {certs['server']}", f"keyfile {certs['server_key']}",
                      "require_certificate true"]
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.proc = self.procs.start(["mosquitto", "-c", self.conf], cwd=self.dir,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        if self.ssl_port:
            wait_port(self.ssl_port, host=self.ssl_host)
        return self

    def stop(self):
        return self.procs.stop(self.proc)

    def log(self):
        try:
            with open(os.path.join(self.dir, "mosquitto.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def connects(self):
        """(client id, clean session, keepalive s, username) of every client connection."""
        out = []
        for m in re.finditer(r"New client connected from \S+ as (\S+) \(p\d, c(\d), k(\d+)"
                             r"(?:, u'([^']*)')?\)", self.log()):
            out.append((m.group(1), m.group(2) == "1", int(m.group(3)), m.group(4)))
        return out


@pytest.fixture
def mosq(procs, tmp_path):
    n = [0]

    def make(certs=None, ssl_host="127.0.0.1"):
        n[0] += 1
        return Mosquitto(procs, tmp_path / f"mosquitto{n[0]}", certs, ssl_host).start()
    return make


class Paho:
    """A paho client that subscribes again at every connect and records (topic, payload, qos,
    retain, arrival time)."""

    def __init__(self, port, subs=(), user=None, password=None, client_id="", clean=True,
                 host="127.0.0.1", tls=None):
        self.c = mqtt.Client(client_id=client_id, clean_session=clean)
        self.c.reconnect_delay_set(min_delay=1, max_delay=1)
        if user:
            self.c.username_pw_set(user, password)
        if tls:
            self.c.tls_set(**tls)
            self.c.tls_insecure_set(True)
        self.subs = list(subs)
        self.msgs = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.up = threading.Event()
        self.c.on_disconnect = lambda c, u, rc: self.up.clear()
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda c, u, mid, g: self.ready.set()
        self.c.on_message = self._on_message
        self.c.connect(host, port, keepalive=30)
        self.c.loop_start()
        wait_for(self.ready.is_set, 10, what=f"paho ready on {port}")

    def _on_connect(self, c, u, f, rc):
        if rc == 0:
            self.up.set()
            for t, q in self.subs:
                c.subscribe(t, q)
            if not self.subs:
                self.ready.set()

    def _on_message(self, c, u, m):
        with self.lock:
            self.msgs.append((m.topic, m.payload, m.qos, bool(m.retain), time.monotonic()))

    def pub(self, topic, payload, qos=0, retain=False):
        info = self.c.publish(topic, payload, qos, retain)
        if qos:
            info.wait_for_publish(30)
            assert info.is_published(), f"publish {topic} not acknowledged"

    def got(self, topic=None, real=True):
        with self.lock:
            return [m[:4] for m in self.msgs if (topic is None or m[0] == topic)
                    and not (real and m[1] == b"probe")]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def paho():
    yield from closing(Paho)


def flowing(pub, sub, topic, timeout=20):
    """Publishes QoS 0 probes on pub until one reaches sub: the bridge's subscriptions are in
    place."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.pub(topic, b"probe", 0)
        end = time.monotonic() + 0.4
        while time.monotonic() < end:
            if any(m[0] == topic and m[1] == b"probe" for m in sub.got(real=False)):
                return
            time.sleep(0.02)
    raise AssertionError(f"nothing flows on {topic}")


class Module:
    """A module binary run standalone in its own directory with service.yml; output in
    out.log. Stopped at teardown with SIGTERM: exit 0, no sanitizer report."""

    def __init__(self, procs, d, name, conf):
        self.procs, self.dir, self.name = procs, str(d), name
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "service.yml")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.out = os.path.join(self.dir, "out.log")
        self.proc = None

    def start(self):
        self.outf = open(self.out, "ab")
        self.proc = self.procs.start([binary(self.name), "-c", self.conf], cwd=self.dir,
                                     stdout=self.outf, stderr=subprocess.STDOUT)
        return self

    def stop(self, sig=signal.SIGTERM):
        rc = self.procs.stop(self.proc, sig)
        self.outf.close()
        return rc

    def log(self, rel=None):
        try:
            with open(os.path.join(self.dir, rel) if rel else self.out, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


@pytest.fixture
def module(procs, tmp_path):
    """module(name, conf, start=True) -> Module."""
    made = []

    def make(name, conf, start=True):
        m = Module(procs, tmp_path / f"{name}{len(made) + 1}", name, conf)
        made.append(m)
        return m.start() if start else m
    yield make
    for m in made:
        if m.proc is not None and m.proc.poll() is None:
            rc = m.stop()
            out = m.log()
            assert "Sanitizer" not in out and "runtime error" not in out, out[-3000:]
            assert rc == 0, f"{m.name} exited with {rc}: {out[-2000:]}"


def run_once(tmp_path, name, conf):
    path = tmp_path / "bad.yml"
    path.write_text(conf)
    p = subprocess.run([binary(name), "-c", str(path)], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr + p.stdout


def make_certs(dest):
    subprocess.run([GEN_CERTS, "--force", str(dest)], check=True, capture_output=True)
    d = str(dest)
    return {"ca": f"{d}/ca.pem", "server": f"{d}/server.pem", "server_key": f"{d}/server.key",
            "client": f"{d}/client.pem", "client_key": f"{d}/client.key"}


def hub_yaml(hub, extra=""):
    return (f"hub:\n  address: tcp://127.0.0.1:{hub.port}\n  username: test\n"
            f"  password: hahaha\n  interval: 1s\n{extra}")


def hub_clients(hub):
    """Client ids the hub logged as connected (its logger must be at debug)."""
    return set(re.findall(r'msg="client connected".*? client=(\S+)', hub.read_log()))


def gaps(times):
    return [round(b - a, 2) for a, b in zip(times, times[1:])]


def tls_hub(hub_factory, certs):
    """A baetyl-hub with a tcp and an ssl listener; principal `two-way-tls` logs in with a
    client certificate and no password."""
    h = hub_factory(start=False, extra=f"""certificate:
  ca: {certs['ca']}
  cert: {certs['server']}
  key: {certs['server_key']}
logger: {{level: debug}}
""")
    h.ssl_port = free_port()
    with open(h.conf) as f:
        text = f.read()
    text = text.replace(f"listen: ['tcp://127.0.0.1:{h.port}']",
                        f"listen: ['tcp://127.0.0.1:{h.port}', 'ssl://127.0.0.1:{h.ssl_port}']")
    text = text.replace("principals:\n", """principals:
  - username: two-way-tls
    permissions:
      - {action: pub, permit: ['#']}
      - {action: sub, permit: ['#']}
""", 1)
    with open(h.conf, "w") as f:
        f.write(text)
    h.start()
    wait_port(h.ssl_port)
    return h
