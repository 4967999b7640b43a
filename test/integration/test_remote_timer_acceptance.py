"""Acceptance tests of remote-mqtt (SPEC §13), timer (§14), the hub client settings (§17) and
logging (§18), written from SPEC and the seed (6.4.3, 6.4.4, chapter 10, chapter 17) only.
They cover what test_remote_mqtt.py, test_timer.py and test_mqtt_client.py do not: the seed's
configs exactly as written, the bytes of forwarded PUBLISH packets and the end-to-end PUBACK
seen on the wire (two fake brokers in this file), CONNECT fields and reconnect timing of
§17's defaults, buffersize, validatesubs false, persistent sessions across a restart of
remote-mqtt and of the remote, `insecure`, client certificates towards the hub, the timer's
JSON and the logger's file/level/format."""
import json
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

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # paho's ssl.PROTOCOL_TLS

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


@pytest.fixture
def fake():
    made = []

    def make(*a, **kw):
        b = FakeBroker(*a, **kw)
        made.append(b)
        return b
    yield make
    for b in made:
        b.close()


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
    made = []

    def make(*a, **kw):
        c = Paho(*a, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


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


# ---- remote-mqtt: the seed's configs as written ---------------------------------------------

def test_seed_chapter10_config_as_written(hub_factory, mosq, module, paho, tmp_path):
    """Chapter 10's remote config, keys and values as the seed writes them (a top-level
    `name`, a remote over ssl with clientid, a username and no password, ca/cert/key; the hub
    subscription t1 without qos; the remote subscription t2 with qos 1; logger path relative
    to the work dir, level 'debug')."""
    hub = hub_factory(extra="logger: {level: debug}\n")
    certs = make_certs(tmp_path / "certs")
    cloud = mosq(certs=certs)
    conf = f"""name: remote-iothub
hub:
  address: tcp://127.0.0.1:{hub.port}
  username: test
  password: hahaha
remotes:
  - name: iothub
    address: 'ssl://127.0.0.1:{cloud.ssl_port}'
    clientid: remote-iothub-1
    username: 'xxxxxx/test'
    ca: var/db/baetyl/cert/ca.pem
    cert: var/db/baetyl/cert/client.pem
    key: var/db/baetyl/cert/client.key
rules:
  - hub:
      subscriptions:
        - topic: t1
    remote:
      name: iothub
      subscriptions:
        - topic: t2
          qos: 1
logger:
  path: var/log/baetyl/remote-service.log
  level: 'debug'
"""
    r = module("baetyl-remote-mqtt", conf, start=False)
    # the certificates where the relative paths of the config point, from the work dir
    cert_dir = os.path.join(r.dir, "var", "db", "baetyl", "cert")
    os.makedirs(cert_dir)
    for src, dst in ((certs["ca"], "ca.pem"), (certs["client"], "client.pem"),
                     (certs["client_key"], "client.key")):
        with open(src, "rb") as f, open(os.path.join(cert_dir, dst), "wb") as g:
            g.write(f.read())
    r.start()

    box = paho(hub.port, [("t2", 1)], user="test", password="hahaha")      # MQTTBox
    fx = paho(cloud.port, [("t1", 1)])                                      # MQTT.fx
    flowing(box, fx, "t1")
    flowing(fx, box, "t2")
    box.pub("t1", b"This message is from MQTTBox.", 1)
    fx.pub("t2", b"This message is from MQTT.fx.", 1)
    wait_for(lambda: fx.got("t1") and box.got("t2"), 20, what="both directions")
    time.sleep(0.3)
    # t1 is subscribed at the hub with the default qos 0: the copy is QoS 0
    assert fx.got("t1") == [("t1", b"This message is from MQTTBox.", 0, False)]
    assert box.got("t2") == [("t2", b"This message is from MQTT.fx.", 1, False)]

    # §13/§17: remote client id from remotes[].clientid, the username, cleansession false,
    # keepalive 10m; at the hub the same client id (no rules[].hub.clientid)
    assert ("remote-iothub-1", False, 600, "xxxxxx/test") in cloud.connects(), cloud.connects()
    assert "remote-iothub-1" in hub_clients(hub)
    # §18: the log file at its relative path, text lines like logrus
    lines = r.log("var/log/baetyl/remote-service.log").splitlines()
    assert any('msg="rule started"' in ln for ln in lines), lines
    for ln in lines:
        assert re.match(r'time="\d{4}-\d\d-\d\dT[^"]+" level=(debug|info|warning|error) '
                        r'msg=', ln), ln


def test_seed_6_4_3_qos_per_subscription(hub, mosq, module, paho):
    """6.4.3's rule example: hub subscriptions say (qos 1) and hi (qos 0), remote
    subscriptions remote/say and remote/hi (qos 0). Delivered QoS is min(publish, subscription):
    a QoS 1 message on hi or remote/* arrives as QoS 0, a QoS 0 message on say stays QoS 0."""
    cloud = mosq()
    module("baetyl-remote-mqtt", hub_yaml(hub) + f"""remotes:
  - name: cloud
    address: tcp://127.0.0.1:{cloud.port}
    interval: 1s
rules:
  - hub:
      subscriptions:
        - topic: say
          qos: 1
        - topic: hi
          qos: 0
    remote:
      name: cloud
      subscriptions:
        - topic: remote/say
          qos: 0
        - topic: remote/hi
          qos: 0
""")
    at_hub = paho(hub.port, [("remote/#", 1)], user="test", password="hahaha")
    at_cloud = paho(cloud.port, [("say", 1), ("hi", 1)])
    for t in ("say", "hi"):
        flowing(at_hub, at_cloud, t)
    for t in ("remote/say", "remote/hi"):
        flowing(at_cloud, at_hub, t)
    for q in (1, 0):
        at_hub.pub("say", f"say q{q}".encode(), q)
        at_hub.pub("hi", f"hi q{q}".encode(), q)
        at_cloud.pub("remote/say", f"rsay q{q}".encode(), q)
        at_cloud.pub("remote/hi", f"rhi q{q}".encode(), q)
    wait_for(lambda: len(at_cloud.got()) >= 4 and len(at_hub.got()) >= 4, 20, what="8 messages")
    time.sleep(0.3)
    assert sorted(at_cloud.got()) == sorted([
        ("say", b"say q1", 1, False), ("say", b"say q0", 0, False),
        ("hi", b"hi q1", 0, False), ("hi", b"hi q0", 0, False)])
    assert sorted(at_hub.got()) == sorted([
        ("remote/say", b"rsay q1", 0, False), ("remote/say", b"rsay q0", 0, False),
        ("remote/hi", b"rhi q1", 0, False), ("remote/hi", b"rhi q0", 0, False)])


def test_messages_unchanged_both_ways(hub, mosq, module, paho):
    """Topic (UTF-8, spaces, deep levels), payload bytes (empty, every byte value, NUL, 30 KB)
    and QoS (0 stays 0, 1 stays 1) unchanged in both directions, in publish order per QoS
    (MQTT orders messages of one QoS only: the hub delivers QoS 1 after its log commit)."""
    cloud = mosq()
    module("baetyl-remote-mqtt", hub_yaml(hub) + f"""remotes:
  - {{name: cloud, address: 'tcp://127.0.0.1:{cloud.port}', interval: 1s}}
rules:
  - hub: {{subscriptions: [{{topic: 'up/#', qos: 1}}]}}
    remote: {{name: cloud, subscriptions: [{{topic: 'down/#', qos: 1}}]}}
""")
    at_hub = paho(hub.port, [("down/#", 1)], user="test", password="hahaha")
    at_cloud = paho(cloud.port, [("up/#", 1)])
    flowing(at_hub, at_cloud, "up/p")
    flowing(at_cloud, at_hub, "down/p")
    cases = [("x", b"", 1), ("x", b"", 0), ("bytes", bytes(range(256)), 1),
             ("bytes", bytes(range(255, -1, -1)), 0), ("nul", b"\x00\x00a\x00", 1),
             ("big", os.urandom(30000), 1), ("ü é/日本/a b/c/d/e", "héllo ✓".encode(), 1),
             ("x", b"last", 0)]
    for src, dst, pre in ((at_hub, at_cloud, "up/"), (at_cloud, at_hub, "down/")):
        for sub, payload, q in cases:
            src.pub(pre + sub, payload, q)
        want = [(pre + sub, payload, q, False) for sub, payload, q in cases]
        wait_for(lambda: len(dst.got()) >= len(want), 20, what=f"{len(want)} on {pre}")
        time.sleep(0.3)
        got = [m for m in dst.got() if m[0] != pre + "p"]
        for q in (0, 1):
            assert [m for m in got if m[2] == q] == [m for m in want if m[2] == q], \
                [(m[0], m[1][:20], m[2], m[3]) for m in got]
        assert len(got) == len(want)


def test_forwarded_packets_and_end_to_end_ack_on_the_wire(fake, module):
    """Two fake brokers: the CONNECT fields each side gets (§17 defaults: cleansession false,
    keepalive 10m, MQTT 3.1.1; client id precedence), the exact PUBLISH forwarded (topic,
    payload, QoS, retain; DUP 0) and a QoS 1 PUBACK given to its source only after the other
    side acknowledged the copy, both ways."""
    hub = fake(auto_puback=False)
    cloud = fake(auto_puback=False)
    module("baetyl-remote-mqtt", f"""hub:
  address: {hub.address}
  username: test
  password: hahaha
remotes:
  - name: cloud
    address: {cloud.address}
    clientid: remote-level-id
    username: cloud-user
rules:
  - hub: {{subscriptions: [{{topic: t1, qos: 1}}]}}
    remote: {{name: cloud, clientid: rule-level-id, subscriptions: [{{topic: t2, qos: 1}}]}}
""")
    h, c = hub.wait_conn(), cloud.wait_conn()
    assert h.connect == {"protocol": "MQTT", "level": 4, "clean": False, "keepalive": 600,
                         "clientid": "rule-level-id", "username": "test",
                         "password": b"hahaha"}, h.connect
    assert c.connect == {"protocol": "MQTT", "level": 4, "clean": False, "keepalive": 600,
                         "clientid": "rule-level-id", "username": "cloud-user",
                         "password": None}, c.connect
    wait_for(lambda: h.of_type(8) and c.of_type(8), 10, what="SUBSCRIBE on both sides")
    assert h.of_type(8)[0][3][2:] == mqtt_str("t1") + b"\x01"
    assert c.of_type(8)[0][3][2:] == mqtt_str("t2") + b"\x01"

    # hub -> remote, QoS 1 retained with binary payload
    h.send(publish_packet("t1", b"\x00\x01bin\xff", qos=1, retain=True, pid=9))
    wait_for(c.publishes, 10, what="copy at the remote")
    p = c.publishes()[0]
    assert (p["topic"], p["payload"], p["qos"], p["retain"], p["dup"]) == \
        ("t1", b"\x00\x01bin\xff", 1, True, False)
    time.sleep(1.0)
    assert h.pubacks() == [], "hub message acknowledged before the remote acknowledged it"
    c.send(FakeBroker.puback(p["pid"]))
    wait_for(lambda: h.pubacks() == [9], 10, what="PUBACK 9 at the hub")

    # remote -> hub, QoS 1 with an empty payload
    c.send(publish_packet("t2", b"", qos=1, pid=7))
    wait_for(h.publishes, 10, what="copy at the hub")
    p = h.publishes()[0]
    assert (p["topic"], p["payload"], p["qos"], p["retain"], p["dup"]) == \
        ("t2", b"", 1, False, False)
    time.sleep(1.0)
    assert c.pubacks() == [], "remote message acknowledged before the hub acknowledged it"
    h.send(FakeBroker.puback(p["pid"]))
    wait_for(lambda: c.pubacks() == [7], 10, what="PUBACK 7 at the remote")

    # QoS 0 keeps its retain flag, both ways
    h.send(publish_packet("t1", b"q0 retained", qos=0, retain=True))
    c.send(publish_packet("t2", b"q0 plain", qos=0))
    wait_for(lambda: len(c.publishes()) >= 2 and len(h.publishes()) >= 2, 10, what="QoS 0 copies")
    p, q = c.publishes()[1], h.publishes()[1]
    assert (p["topic"], p["payload"], p["qos"], p["retain"]) == ("t1", b"q0 retained", 0, True)
    assert (q["topic"], q["payload"], q["qos"], q["retain"]) == ("t2", b"q0 plain", 0, False)


def test_client_id_precedence(fake, module):
    """§13: remote client id = rules[].remote.clientid, else remotes[].clientid, else the
    remote's name; hub client id = rules[].hub.clientid, else the remote client id."""
    hub = fake()
    r1, r2, r3 = fake(), fake(), fake()
    module("baetyl-remote-mqtt", f"""hub: {{address: '{hub.address}', username: test}}
remotes:
  - {{name: one, address: '{r1.address}', clientid: one-remote}}
  - {{name: two, address: '{r2.address}', clientid: two-remote}}
  - {{name: three, address: '{r3.address}'}}
rules:
  - hub: {{clientid: rule1-hub}}
    remote: {{name: one, clientid: rule1-remote}}
  - remote: {{name: two}}
  - hub: {{subscriptions: [{{topic: a}}]}}
    remote: {{name: three}}
""")
    assert r1.wait_conn().connect["clientid"] == "rule1-remote"
    assert r2.wait_conn().connect["clientid"] == "two-remote"
    assert r3.wait_conn().connect["clientid"] == "three"
    hub.wait_conn(3)
    assert sorted(c.connect["clientid"] for c in hub.conns) == ["rule1-hub", "three", "two-remote"]


def test_seed_camelcase_clientid_keys(fake, module):
    """6.4.3 spells the key `clientId` (rules[].hub, rules[].remote, remotes[]). SPEC §17 says
    `clientid`; a user copying the seed expects the id to be used, not silently ignored."""
    hub, cloud = fake(), fake()
    module("baetyl-remote-mqtt", f"""hub: {{address: '{hub.address}', username: test}}
remotes:
  - {{name: cloud, address: '{cloud.address}', clientId: camel-remote}}
rules:
  - hub: {{clientId: camel-hub}}
    remote: {{name: cloud}}
""")
    assert cloud.wait_conn().connect["clientid"] == "camel-remote"
    assert hub.wait_conn().connect["clientid"] == "camel-hub"


# ---- §17 settings: backoff, timeout, keepalive, cleansession ------------------------------

def gaps(times):
    return [round(b - a, 2) for a, b in zip(times, times[1:])]


def test_reconnect_backoff_timeout_keepalive(fake, module):
    """interval: reconnect waits 500ms and doubles up to `interval` (2s here; the default 1m
    lets it reach 4s); timeout: a broker that never answers CONNECT is given up after
    `timeout` (1s here; nothing within 8s with the default 30s); keepalive 2s and
    cleansession true reach the CONNECT, and a PINGREQ follows ~2s of silence."""
    hub = fake()
    capped, default, silent, silent_def, custom = (fake("refuse"), fake("refuse"),
                                                   fake("silent"), fake("silent"), fake())
    t0 = time.monotonic()
    module("baetyl-remote-mqtt", f"""hub: {{address: '{hub.address}', username: test}}
remotes:
  - {{name: capped, address: '{capped.address}', interval: 2s}}
  - {{name: default, address: '{default.address}'}}
  - {{name: silent, address: '{silent.address}', timeout: 1s, interval: 1s}}
  - {{name: silentdef, address: '{silent_def.address}'}}
  - {{name: custom, address: '{custom.address}', clientid: custom-id, cleansession: true,
      keepalive: 2s}}
rules:
  - remote: {{name: capped}}
  - remote: {{name: default}}
  - remote: {{name: silent}}
  - remote: {{name: silentdef}}
  - remote: {{name: custom, subscriptions: [{{topic: x}}]}}
""")
    wait_for(lambda: len(default.attempts) >= 5, 15, what="5 attempts with the default interval")
    assert len(silent_def.attempts) == 1 and time.monotonic() - t0 > 7, silent_def.attempts
    g = gaps(capped.attempts[:5])
    assert 0.3 <= g[0] <= 0.9 and 0.8 <= g[1] <= 1.5 and 1.7 <= g[2] <= 2.6 and \
        1.7 <= g[3] <= 2.6, g
    g = gaps(default.attempts[:5])
    assert 0.3 <= g[0] <= 0.9 and 0.8 <= g[1] <= 1.5 and 1.7 <= g[2] <= 2.6 and \
        3.6 <= g[3] <= 4.8, g
    g = gaps(silent.attempts[:3])
    assert 1.3 <= g[0] <= 2.0 and 1.8 <= g[1] <= 2.7, g   # 1s timeout + 0.5s, 1s + 1s
    c = custom.conn(0)
    assert c.connect["clean"] is True and c.connect["keepalive"] == 2 and \
        c.connect["clientid"] == "custom-id", c.connect
    pings = c.of_type(12)
    assert pings, "no PINGREQ with keepalive 2s"
    first = pings[0][0] - c.packets[0][0]
    assert 1.5 <= first <= 3.5, first
    assert len(custom.attempts) == 1  # answered pings keep the link up


def test_validatesubs_default_false_keeps_running(hub, mosq, module, paho):
    """§17 validatesubs false: a subscription the hub refuses is not fatal; the others work."""
    cloud = mosq()
    r = module("baetyl-remote-mqtt", f"""hub:
  address: tcp://127.0.0.1:{hub.port}
  username: limited
  password: secret
remotes: [{{name: cloud, address: 'tcp://127.0.0.1:{cloud.port}', interval: 1s}}]
rules:
  - hub: {{subscriptions: [{{topic: forbidden, qos: 1}}, {{topic: a/ok, qos: 1}}]}}
    remote: {{name: cloud}}
""")
    src = paho(hub.port, user="test", password="hahaha")
    dst = paho(cloud.port, [("#", 1)])
    flowing(src, dst, "a/ok")
    src.pub("a/ok", b"allowed", 1)
    wait_for(lambda: dst.got("a/ok"), 10, what="a/ok at the remote")
    assert r.proc.poll() is None
    assert "forbidden" in r.log()  # the refusal is reported


# ---- QoS 1 end to end across restarts --------------------------------------------------------

def persistent_conf(hub, cloud):
    return hub_yaml(hub) + f"""remotes:
  - name: iothub
    address: tcp://127.0.0.1:{cloud.port}
    clientid: remote-iothub-1
    interval: 1s
rules:
  - hub: {{subscriptions: [{{topic: t1, qos: 1}}]}}
    remote: {{name: iothub, subscriptions: [{{topic: t2, qos: 1}}]}}
"""


def test_qos1_published_while_remote_mqtt_is_down(hub, mosq, module, paho):
    """cleansession false (the default) on both sides: QoS 1 messages published on either
    broker while remote-mqtt is stopped are delivered once it is back."""
    cloud = mosq()
    r = module("baetyl-remote-mqtt", persistent_conf(hub, cloud))
    at_hub = paho(hub.port, [("t2", 1)], user="test", password="hahaha")
    at_cloud = paho(cloud.port, [("t1", 1)])
    flowing(at_hub, at_cloud, "t1")
    flowing(at_cloud, at_hub, "t2")
    assert r.stop() == 0
    for i in range(20):
        at_hub.pub("t1", b"h%d" % i, 1)
        at_cloud.pub("t2", b"c%d" % i, 1)
    r.start()
    wait_for(lambda: {m[1] for m in at_cloud.got("t1")} >= {b"h%d" % i for i in range(20)}
             and {m[1] for m in at_hub.got("t2")} >= {b"c%d" % i for i in range(20)}, 30,
             what="40 messages after the restart")
    assert all(m[2] == 1 for m in at_cloud.got("t1") + at_hub.got("t2"))


def test_qos1_remote_to_hub_while_the_remote_restarts(hub, mosq, module, paho):
    """remote -> hub QoS 1 while the remote broker restarts mid-stream: nothing is lost."""
    cloud = mosq()
    module("baetyl-remote-mqtt", persistent_conf(hub, cloud))
    at_hub = paho(hub.port, [("t2", 1)], user="test", password="hahaha", client_id="w-hub",
                  clean=False)
    pub = paho(cloud.port, client_id="pub-cloud", clean=False)
    flowing(pub, at_hub, "t2")
    n = 100
    for i in range(n):
        if i == 40:
            cloud.stop()
            time.sleep(0.3)
            cloud.start()
            wait_for(pub.up.is_set, 15, what="publisher back")
        pub.pub("t2", str(i).encode(), 1)
    wait_for(lambda: {int(m[1]) for m in at_hub.got("t2")} >= set(range(n)), 40,
             what=f"all {n} at the hub")


# ---- TLS: insecure, client certificates towards the hub -------------------------------------

def test_ssl_remote_name_check_and_insecure(hub, mosq, module, paho, tmp_path):
    """The remote's certificate is for 127.0.0.1/localhost and it is dialled as 127.0.0.2:
    without `insecure` the name check fails and nothing is forwarded; with `insecure: true`
    (same ca/cert/key) it connects and forwards."""
    certs = make_certs(tmp_path / "certs")
    cloud = mosq(certs=certs, ssl_host="127.0.0.2")
    tls = f"ca: {certs['ca']}, cert: {certs['client']}, key: {certs['client_key']}"
    r = module("baetyl-remote-mqtt", hub_yaml(hub) + f"""remotes:
  - {{name: strict, address: 'ssl://127.0.0.2:{cloud.ssl_port}', {tls}, interval: 1s}}
  - {{name: lax, address: 'ssl://127.0.0.2:{cloud.ssl_port}', {tls}, insecure: true, interval: 1s}}
rules:
  - hub: {{subscriptions: [{{topic: up/strict, qos: 1}}]}}
    remote: {{name: strict}}
  - hub: {{subscriptions: [{{topic: up/lax, qos: 1}}]}}
    remote: {{name: lax}}
""")
    src = paho(hub.port, user="test", password="hahaha")
    dst = paho(cloud.port, [("up/#", 1)])
    flowing(src, dst, "up/lax")
    src.pub("up/strict", b"must not pass", 1)
    src.pub("up/lax", b"passes", 1)
    wait_for(lambda: dst.got("up/lax"), 10, what="up/lax")
    time.sleep(1.0)
    assert dst.got("up/strict") == []
    assert "strict" not in [c[0] for c in cloud.connects()]
    assert "lax" in [c[0] for c in cloud.connects()]
    assert re.search(r"mqtt client cannot connect.*127\.0\.0\.2", r.log()), r.log()[-2000:]


def tls_hub(hub_factory, certs):
    """A baetyl-hub with a tcp and an ssl listener; principal `two-way-tls` logs in with a
    client certificate and no password."""
    h = hub_factory(start=False, extra=f"""certificate: {{ca: {certs['ca']}, cert: {certs['server']}, key: {certs['server_key']}}}
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


def test_timer_to_hub_over_ssl_with_client_certificate(hub_factory, module, paho, tmp_path):
    """§17 towards the hub: ssl address, ca/cert/key, a username and no password."""
    certs = make_certs(tmp_path / "certs")
    hub = tls_hub(hub_factory, certs)
    w = paho(hub.port, [("tls/tick", 1)], user="test", password="hahaha")
    module("baetyl-timer", f"""hub:
  address: ssl://127.0.0.1:{hub.ssl_port}
  username: two-way-tls
  clientid: tls-timer
  ca: {certs['ca']}
  cert: {certs['client']}
  key: {certs['client_key']}
timer: {{interval: 200ms}}
publish: {{topic: tls/tick, qos: 1}}
""")
    wait_for(lambda: len(w.got()) >= 2, 15, what="ticks over ssl")
    assert all(m[0] == "tls/tick" and m[2] == 1 for m in w.got()), w.got()
    assert "tls-timer" in hub_clients(hub)


# ---- timer ------------------------------------------------------------------------------

def test_timer_seed_chapter17_config(hub_factory, module, paho):
    """Chapter 17's config exactly: clientid timer1, interval 1s, topic timer1 (qos and payload
    unset): QoS 0 messages `{"time": <unix seconds>}` once a second."""
    hub = hub_factory(extra="logger: {level: debug}\n")
    w = paho(hub.port, [("#", 1)], user="test", password="hahaha")
    module("baetyl-timer", f"""hub:
  address: tcp://127.0.0.1:{hub.port}
  username: test
  password: hahaha
  clientid: timer1
timer:
  interval: 1s
publish:
  topic: timer1
""")
    wait_for(lambda: len(w.got()) >= 3, 15, what="3 ticks")
    with w.lock:
        msgs = list(w.msgs[:3])
    for topic, payload, qos, retain, _ in msgs:
        assert (topic, qos, retain) == ("timer1", 0, False)
        body = json.loads(payload)
        assert list(body) == ["time"] and type(body["time"]) is int
        assert abs(body["time"] - time.time()) <= 3
    g = gaps([m[4] for m in msgs])
    assert all(0.7 <= x <= 1.3 for x in g), g
    assert "timer1" in hub_clients(hub)


def test_timer_payload_scalars_keep_their_yaml_type(hub, module, paho):
    """The payload map is published as JSON with YAML's types: quoted scalars are strings
    (even when they look like numbers or booleans), strings are escaped properly."""
    w = paho(hub.port, [("types", 1)], user="test", password="hahaha")
    module("baetyl-timer", hub_yaml(hub, "  clientid: types-timer\n") + """timer: {interval: 200ms}
publish:
  topic: types
  payload:
    id: 1
    ratio: 2.5
    on: true
    code: "42"
    flag: 'false'
    name: "007"
    text: 'say "hi" \\ ünï'
""")
    wait_for(lambda: w.got(), 10, what="a tick")
    body = json.loads(w.got()[0][1])
    time_ = body.pop("time")
    assert type(time_) is int
    assert body == {"id": 1, "ratio": 2.5, "on": True, "code": "42", "flag": "false",
                    "name": "007", "text": 'say "hi" \\ ünï'}, body


def test_timer_payload_nested_values(hub, module, paho):
    """`payload` is a map (6.4.4): nested maps and lists in it are published as JSON."""
    w = paho(hub.port, [("nested", 1)], user="test", password="hahaha")
    t = module("baetyl-timer", hub_yaml(hub, "  clientid: nested-timer\n") + """timer: {interval: 200ms}
publish:
  topic: nested
  payload:
    device: {id: 7, tags: [a, b]}
    list: [1, 2]
""")
    wait_for(lambda: w.got() or t.proc.poll() is not None, 10, what="a tick")
    assert t.proc.poll() is None, t.log()[-1000:]
    body = json.loads(w.got()[0][1])
    body.pop("time")
    assert body == {"device": {"id": 7, "tags": ["a", "b"]}, "list": [1, 2]}, body


def test_timer_buffersize_default_bounds_what_is_held(hub, module, paho):
    """§17 buffersize 10: while the hub does not acknowledge (frozen), the timer holds at most
    10 QoS 1 ticks; the rest are dropped (logged), not piled up."""
    w = paho(hub.port, [("buf", 1)], user="test", password="hahaha")
    t = module("baetyl-timer", hub_yaml(hub, "  clientid: buf-timer\n") +
               "timer: {interval: 100ms}\npublish: {topic: buf, qos: 1}\n")
    wait_for(lambda: len(w.got()) >= 3, 10, what="ticks")
    os.kill(hub.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(2.5)  # 25 ticks
    finally:
        os.kill(hub.proc.pid, signal.SIGCONT)
    thaw = time.monotonic()
    time.sleep(1.0)
    with w.lock:
        after = [m[4] for m in w.msgs if m[4] >= thaw]
    assert after, "nothing after the thaw"
    burst = [x for x in after if x - after[0] <= 0.08]
    assert 9 <= len(burst) <= 11, (len(burst), len(after))
    assert "tick not published" in t.log() or "queue full" in t.log(), t.log()[-2000:]


# ---- §18 logging ------------------------------------------------------------------------------

def json_lines(text):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return [json.loads(ln) for ln in lines]


def test_logger_json_file_and_level(hub, module, paho):
    """logger {path (relative to the work dir), level, format json}: every line is a JSON
    object with level, msg and time; lines below the level are left out. The timer without
    timer.interval (default 1m) publishes nothing within a few seconds."""
    w = paho(hub.port, [("#", 1)], user="test", password="hahaha")
    t = module("baetyl-timer", hub_yaml(hub, "  clientid: log-timer\n") +
               "logger: {path: var/log/baetyl/timer.log, level: info, format: json}\n")
    r = module("baetyl-remote-mqtt", hub_yaml(hub) + """remotes:
  - {name: gone, address: 'tcp://127.0.0.1:1', interval: 1s}
rules:
  - remote: {name: gone}
logger:
  path: logs/remote.log
  level: warn
  format: json
""")
    wait_for(lambda: "cannot connect" in r.log("logs/remote.log"), 10, what="a warning")
    time.sleep(2.5)
    assert w.got() == [], "a tick before the default interval of 1m"
    lines = json_lines(r.log("logs/remote.log"))
    assert lines and all({"level", "msg", "time"} <= set(x) for x in lines), lines[:5]
    assert {x["level"] for x in lines} <= {"warning", "error"}, lines
    assert any(x["msg"] == "mqtt client cannot connect" for x in lines)
    lines = json_lines(t.log("var/log/baetyl/timer.log"))
    assert any(x["msg"] == "mqtt client connected" and x["level"] == "info" for x in lines), lines
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", lines[0]["time"]), lines[0]


# ---- config errors name the field ----------------------------------------------------------

@pytest.mark.parametrize("conf,want", [
    # chapter 10's config with the rule naming a remote that is not declared
    ("""name: remote-iothub
hub: {address: 'tcp://127.0.0.1:1', username: test, password: hahaha}
remotes:
  - {name: iothub, address: 'ssl://127.0.0.1:2', clientid: remote-iothub-1}
rules:
  - hub: {subscriptions: [{topic: t1}]}
    remote: {name: IoTHub, subscriptions: [{topic: t2, qos: 1}]}
""", ["rules[0].remote.name", "IoTHub"]),
    ("""hub: {address: 'tcp://127.0.0.1:1'}
remotes: [{name: a, address: 'tcp://127.0.0.1:2'}]
rules: [{hub: {subscriptions: [{topic: t1}]}, remote: {subscriptions: [{topic: t2}]}}]
""", ["rules[0].remote.name", "required"]),
    ("""hub: {address: 'tcp://127.0.0.1:1'}
remotes: [{address: 'tcp://127.0.0.1:2'}]
""", ["remotes[0].name", "required"]),
    ("""hub: {address: 'tcp://127.0.0.1:1'}
remotes: [{name: a}]
""", ["remotes[0].address", "required"]),
    ("""hub: {address: 'tcp://127.0.0.1:1'}
remotes: [{name: a, address: 'tcp://127.0.0.1:2'}]
rules: [{hub: {subscriptions: [{topic: t1, qos: 2}]}, remote: {name: a}}]
""", ["rules[0].hub.subscriptions[0].qos"]),
    ("""hub: {address: 'tcp://127.0.0.1:1'}
remotes: [{name: a, address: 'tcp://127.0.0.1:2', keepalive: soon}]
""", ["remotes[0].keepalive"]),
])
def test_remote_mqtt_config_errors_name_the_field(tmp_path, conf, want):
    rc, out = run_once(tmp_path, "baetyl-remote-mqtt", conf)
    assert rc == 1, out
    for w in want:
        assert w in out, out
    assert "Sanitizer" not in out


@pytest.mark.parametrize("conf,want", [
    ("timer: {interval: 1s}\n", ["hub.address", "required"]),
    ("hub: {address: 'tcp://127.0.0.1:1', buffersize: 0}\n", ["hub.buffersize"]),
    ("hub: {address: 'http://127.0.0.1:1'}\n", ["hub.address"]),
])
def test_timer_config_errors_name_the_field(tmp_path, conf, want):
    rc, out = run_once(tmp_path, "baetyl-timer", conf)
    assert rc == 1, out
    for w in want:
        assert w in out, out
