"""The seed's tutorials, walked as a user walks them (chapters 5-18 and the FAQ items that
describe behaviour). Each test installs an example the way `make install MODE=native
EXAMPLE=<name>` does (its etc/ and var/ copied, each module's package under
var/db/baetyl/<image> linked to the built binaries and to the runtimes' source trees), moves
the ports to free ones, starts the real master and plays the seed's MQTTBox / MQTT.fx part
with mosquitto_pub/sub, paho and grpcio."""
import getpass
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
import yaml

from conftest import BIN, BUILD, SRC, binary, free_port, wait_for, wait_port

MARKER = "BAETYL_TUTORIAL_MARKER"
RUNTIMES = {"baetyl-function-python": "function-python", "baetyl-function-node": "function-node"}


def marked_pids(marker):
    """Processes whose environment carries MARKER=marker: the master and every service."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if f"{MARKER}={marker}".encode() in env.split(b"\0"):
            out.append(int(d))
    return out


class Install:
    """A work dir made like `make install PREFIX=<dir> MODE=native EXAMPLE=<example>`, and the
    master started in it (API socket relative to the work dir, so no root and no clash)."""

    def __init__(self, procs, example="native"):
        self.procs = procs
        self.dir = tempfile.mkdtemp(prefix="btt", dir="/tmp")  # short: the socket path
        self.marker = uuid.uuid4().hex
        self.proc = None
        src = os.path.join(SRC, "example", example)
        for top in ("etc", "var"):
            if os.path.isdir(os.path.join(src, top)):
                shutil.copytree(os.path.join(src, top), self.path(top), dirs_exist_ok=True)
        db = self.path("var/db/baetyl")
        os.makedirs(db, exist_ok=True)
        for name in sorted(os.listdir(BIN)):
            if not name.startswith("baetyl-"):
                continue
            os.makedirs(os.path.join(db, name, "bin"))
            os.symlink(os.path.join(BIN, name), os.path.join(db, name, "bin", name))
            with open(os.path.join(db, name, "package.yml"), "w") as f:
                f.write(f"entry: bin/{name}\n")
        for image, srcdir in RUNTIMES.items():
            os.symlink(os.path.join(SRC, srcdir), os.path.join(db, image))
        conf = self.path("etc/baetyl/conf.yml")
        text = open(conf).read() if os.path.exists(conf) else "mode: native\n"
        text = text.replace("unix:///var/run/baetyl.sock", "unix://var/run/baetyl.sock")
        with open(conf, "w") as f:
            f.write(text.replace("grace: 30s", "grace: 5s"))

    def path(self, rel):
        return os.path.join(self.dir, rel)

    def write(self, rel, text):
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(textwrap.dedent(text))
        return p

    def read(self, rel, default=""):
        try:
            with open(self.path(rel), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return default

    def repoint(self, ports):
        """{old: new}: every service.yml under var/db/baetyl/*-conf gets its ports moved."""
        db = self.path("var/db/baetyl")
        for d in os.listdir(db):
            p = os.path.join(db, d, "service.yml")
            if d.endswith("-conf") and os.path.isfile(p):
                text = open(p).read()
                for old, new in ports.items():
                    text = text.replace(f":{old}\n", f":{new}\n").replace(f":{old}/", f":{new}/")
                with open(p, "w") as f:
                    f.write(text)

    def baetyl(self, *args, timeout=60):
        return subprocess.run([binary("baetyl"), *args, "-w", self.dir], capture_output=True, text=True,
                              timeout=timeout, env=dict(os.environ, **{MARKER: self.marker}))

    def log(self):
        return self.read("var/log/baetyl/baetyl.log")

    def start(self):
        self.out = open(self.path("master.out"), "w")
        self.proc = self.procs.start([binary("baetyl"), "start", "-w", self.dir], stdout=self.out,
                                     stderr=subprocess.STDOUT, env=dict(os.environ, **{MARKER: self.marker}))
        wait_for(lambda: "services started" in self.log() or self.proc.poll() is not None, 30,
                 what="master start")
        assert self.proc.poll() is None, self.read("master.out") + self.log()
        return self

    def stop(self):
        """`baetyl stop`, as the seed's systemctl stop: every service goes with the master."""
        r = self.baetyl("stop")
        assert r.returncode == 0, r.stdout + r.stderr
        self.proc.wait(30)
        self.out.close()
        wait_for(lambda: not marked_pids(self.marker), 10, what="every service gone")
        out = self.read("master.out")
        assert "Sanitizer" not in out and "runtime error" not in out, out[-4000:]
        assert self.proc.returncode == 0, out[-2000:]

    def cleanup(self):
        for pid in marked_pids(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def install(procs):
    made = []

    def make(example="native"):
        i = Install(procs, example)
        made.append(i)
        return i
    yield make
    for i in made:
        i.cleanup()


class Box:
    """The seed's MQTTBox: a paho client that records what it receives."""

    def __init__(self, port, user="test", password="hahaha", subs=(), transport="tcp", path="/mqtt",
                 tls=None, client_id=None, clean=True):
        self.q = queue.Queue()
        self.c = mqtt.Client(client_id=client_id or f"box-{uuid.uuid4().hex[:8]}", transport=transport,
                             clean_session=clean)
        if transport == "websockets":
            self.c.ws_set_options(path=path)
        if tls:
            self.c.tls_set(**tls)
        self.c.username_pw_set(user, password)
        self.c.on_message = lambda c, u, m: self.q.put((m.topic, m.payload, m.qos))
        self.subs = {}
        self.c.on_subscribe = lambda c, u, mid, granted: self.subs.__setitem__(mid, granted)
        self.rc = []
        self.c.on_connect = lambda c, u, f, rc: self.rc.append(rc)
        wait_port(port, timeout=20)  # the master has started the hub; it may not listen yet
        self.c.connect("127.0.0.1", port, 30)
        self.c.loop_start()
        wait_for(lambda: self.rc, 10, what="CONNACK")
        assert self.rc == [0], self.rc
        for t in subs:
            _, mid = self.c.subscribe(t, 1)
            wait_for(lambda: mid in self.subs, 10, what=f"SUBACK {t}")

    def publish(self, topic, payload, qos=0):
        self.c.publish(topic, payload, qos).wait_for_publish(10)

    def take(self, n, timeout=20):
        """n messages as {topic: [payload, …]}."""
        got = {}
        deadline = time.monotonic() + timeout
        for _ in range(n):
            t, p, _ = self.q.get(timeout=max(0.1, deadline - time.monotonic()))
            got.setdefault(t, []).append(p)
        return got

    def quiet(self, secs=1.0):
        """Nothing more arrives within secs."""
        try:
            extra = self.q.get(timeout=secs)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected message {extra}")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def mosquitto_pub(port, topic, msg, *args):
    return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-m", msg, *args],
                          capture_output=True, text=True, timeout=30)


def gen_certs(d):
    subprocess.run([os.path.join(SRC, "scripts", "gen-certs.sh"), d], check=True, capture_output=True)
    return d


class Cloud:
    """The seed's Baidu IoT Hub: a mosquitto with an ssl listener that wants a client
    certificate, persistence in its own dir so a restart keeps sessions."""

    def __init__(self, procs, d, certs):
        self.procs, self.dir, self.port = procs, d, free_port()
        os.makedirs(d, exist_ok=True)
        lines = ["per_listener_settings false", "allow_anonymous true", "persistence true",
                 f"persistence_location {d}/", f"listener {self.port} 127.0.0.1",
                 f"cafile {certs}/ca.pem", f"certfile {certs}/server.pem", f"keyfile {certs}/server.key",
                 "require_certificate true"]
        if os.geteuid() == 0:
            lines.insert(0, f"user {getpass.getuser()}")
        with open(os.path.join(d, "m.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")
        self.tls = {"ca_certs": f"{certs}/ca.pem", "certfile": f"{certs}/client.pem",
                    "keyfile": f"{certs}/client.key"}
        self.proc = None

    def start(self):
        self.proc = self.procs.start(["mosquitto", "-c", os.path.join(self.dir, "m.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self):
        self.procs.stop(self.proc)


def hub_conf(listen, extra=""):
    return "listen:\n" + "".join(f"  - {u}\n" for u in listen) + textwrap.dedent("""\
        principals:
          - username: 'test'
            password: 'hahaha'
            permissions:
              - action: 'pub'
                permit: ['#']
              - action: 'sub'
                permit: ['#']
        """) + textwrap.dedent(extra)


def service(name, image, mounts, replica=1):
    return {"name": name, "image": image, "replica": replica,
            "mounts": [{"name": n, "path": p, "readonly": ro} for n, p, ro in mounts]
            + [{"name": f"{image}-pkg", "path": f"lib/baetyl/{image}", "readonly": True}]}


def application(version, services, volumes):
    """An application.yml; each service's package gets its volume (the installed package)."""
    vols = [{"name": n, "path": p} for n, p in volumes]
    for s in services:
        image = s["image"]
        if not any(v["name"] == f"{image}-pkg" for v in vols):
            vols.append({"name": f"{image}-pkg", "path": f"var/db/baetyl/{image}"})
    return yaml.safe_dump({"version": version, "services": services, "volumes": vols}, sort_keys=False)


# ---- chapters 5 and 9: build, install, run the example, functions -------------------------

def test_ch5_ch9_install_check_start_functions_stop(install):
    """`make install MODE=native`, `baetyl check`, `baetyl start`, the chapter 9 message
    {"id":1} on t through the hub's route and the Python, Node and SQL functions, a message
    the SQL filter drops, a handler error, `baetyl status`, `baetyl stop`."""
    i = install("native")
    port = free_port()
    i.repoint({1883: port})
    r = i.baetyl("check")
    assert r.returncode == 0 and "OK!" in r.stdout, r.stdout + r.stderr
    i.start()
    st = i.baetyl("status")
    assert "localhub" in st.stdout and "function-manager" in st.stdout, st.stdout + st.stderr
    box = Box(port, subs=["#"])
    # the three rules subscribe to t on their own connections (QoS 0 input: not kept)
    wait_for(lambda: i.read("var/db/baetyl/function-manager-log/service.log").count("rule connected to the hub") >= 3,
             15, what="function-manager rules connected")
    time.sleep(1)
    box.publish("t", b'{"id":1}')
    got = box.take(5)
    assert got["t"] == [b'{"id":1}'] and got["t/topic"] == [b'{"id":1}'], got
    assert got["t/sqlfilter"] == [b'{"qos":0,"topic":"t","id":1}'], got
    for topic, name in (("t/py3hi", "python36-sayhi"), ("t/node8hi", "node85-sayhi")):
        out = yaml.safe_load(got[topic][0])
        assert out["id"] == 1 and out["Say"] == "Hello Baetyl" and out["functionName"] == name, out
        assert out["messageTopic"] == "t" and out["messageQOS"] == 0 and "functionInvokeID" in out, out
    # id >= 10: the SQL filter publishes nothing; the others still answer
    box.publish("t", b'{"id":20}')
    got = box.take(4)
    assert "t/sqlfilter" not in got and set(got) == {"t", "t/topic", "t/py3hi", "t/node8hi"}, got
    box.quiet(1.5)
    # the runtimes' instances were started on demand (the seed's `docker ps` step)
    st = i.baetyl("status")
    assert "function-python36-sayhi.python36-sayhi.1" in st.stdout, st.stdout
    # raising in the handler: the seed's error message (chapter 2.4.3)
    box.publish("t", b'{"err":"boom","id":3}')
    got = box.take(5, timeout=30)
    err = yaml.safe_load(got["t/py3hi"][0])
    assert "[UserCodeInvoke]" in err["errorMessage"] and err["functionMessage"]["Topic"] == "t", err
    box.close()
    i.stop()


# ---- chapter 7: devices over tcp, ssl (two-way) and ws ------------------------------------

def test_ch7_connect_tcp_ssl_ws(install):
    i = install("native-tls")
    certs = gen_certs(i.path("var/db/baetyl/localhub-cert-only-for-test"))
    tcp, ssl_port, ws = free_port(), free_port(), free_port()
    i.repoint({1883: tcp, 8883: ssl_port, 8080: ws})
    i.start()
    for p in (tcp, ssl_port, ws):
        wait_port(p, timeout=20)
    # TCP, user and password (MQTT.fx "edge_core_tcp"); the route copies t to t/topic
    box = Box(tcp, subs=["t/#"])
    r = mosquitto_pub(tcp, "t", "hello", "-u", "test", "-P", "hahaha")
    assert r.returncode == 0, r.stderr
    assert box.take(2) == {"t": [b"hello"], "t/topic": [b"hello"]}
    # SSL with the CA and the client certificate, user two-way-tls, no password
    tls = {"ca_certs": f"{certs}/ca.pem", "certfile": f"{certs}/client.pem", "keyfile": f"{certs}/client.key"}
    sbox = Box(ssl_port, user="two-way-tls", password=None, subs=["tls/#"], tls=tls)
    sbox.publish("tls/a", b"over tls", 1)
    assert sbox.take(1) == {"tls/a": [b"over tls"]}
    # two-way-tls without a certificate is refused; test/hahaha is fine over ssl
    r = mosquitto_pub(ssl_port, "tls/a", "x", "--cafile", f"{certs}/ca.pem", "-u", "two-way-tls")
    assert r.returncode != 0, r.stdout + r.stderr
    r = mosquitto_pub(ssl_port, "t", "ssl+password", "--cafile", f"{certs}/ca.pem", "-u", "test", "-P", "hahaha")
    assert r.returncode == 0, r.stderr
    assert box.take(2) == {"t": [b"ssl+password"], "t/topic": [b"ssl+password"]}
    # WS (MQTTBox, protocol ws, path /mqtt)
    wbox = Box(ws, transport="websockets", subs=["t/topic"])
    wbox.publish("t", b"over ws", 1)
    assert wbox.take(1) == {"t/topic": [b"over ws"]}
    for b in (box, sbox, wbox):
        b.close()
    i.stop()


# ---- chapter 8: routing, the seed's own application (volume names and paths) --------------

def test_ch8_seed_routing_application(install):
    i = install("native")
    port = free_port()
    i.write("var/db/baetyl/application.yml", application("V2", [
        service("hub", "baetyl-hub", [("localhub-conf", "etc/baetyl", True),
                                      ("localhub_data", "var/db/baetyl/data", False),
                                      ("log-V1", "var/log/baetyl", False)])],
        [("localhub-conf", "var/db/baetyl/localhub-conf/V1"), ("log-V1", "var/db/baetyl/log"),
         ("localhub_data", "var/db/baetyl/localhub_data")]))
    i.write("var/db/baetyl/localhub-conf/V1/service.yml", hub_conf([f"tcp://0.0.0.0:{port}"], """\
        subscriptions:
          - source:
              topic: 't'
            target:
              topic: 't/topic'
        logger:
          path: var/log/baetyl/service.log
          level: 'debug'
        """))
    i.start()
    box = Box(port, subs=["t", "t/topic"])  # client1..3 as one MQTTBox client
    box.publish("t", b"This is a new message.")
    assert box.take(2) == {"t": [b"This is a new message."], "t/topic": [b"This is a new message."]}
    # '#' and '+' as the chapter explains them
    w = Box(port, subs=["sport/tennis/player1/#", "sport/+"])
    for t in ("sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon",
              "sport", "sport/", "sport/tennis/player2/ranking"):
        box.publish(t, t.encode())
    got = w.take(4)
    assert got == {t: [t.encode()] for t in ("sport/tennis/player1", "sport/tennis/player1/ranking",
                                             "sport/tennis/player1/score/wimbledon", "sport/")}, got
    w.quiet(1)
    assert "client connected" in i.read("var/db/baetyl/log/service.log")
    box.close()
    w.close()
    i.stop()


# ---- chapter 10 and FAQ 16: remote-mqtt to a cloud broker over ssl ------------------------

def test_ch10_remote_over_ssl_and_faq16_no_loss(install, procs):
    i = install("native-remote")
    certs = gen_certs(i.path("var/db/baetyl/remote-mqtt-cert"))
    cloud = Cloud(procs, i.path("cloud"), certs).start()
    port = free_port()
    i.repoint({1883: port})
    # the seed's remote-mqtt config (docker names -> 127.0.0.1); t1 at QoS 1 as FAQ 16 asks
    i.write("var/db/baetyl/remote-mqtt-conf/service.yml", f"""\
        name: remote-iothub
        hub:
          address: tcp://127.0.0.1:{port}
          username: test
          password: hahaha
        remotes:
          - name: iothub
            address: 'ssl://127.0.0.1:{cloud.port}'
            clientid: remote-iothub-1
            username: 'xxxxxx/test'
            ca: var/db/baetyl/cert/ca.pem
            cert: var/db/baetyl/cert/client.pem
            key: var/db/baetyl/cert/client.key
            interval: 2s
        rules:
          - hub:
              subscriptions:
                - topic: t1
                  qos: 1
            remote:
              name: iothub
              subscriptions:
                - topic: t2
                  qos: 1
        logger:
          path: var/log/baetyl/remote-service.log
          level: 'debug'
        """)
    i.start()
    fx = Box(cloud.port, user=None, password=None, subs=["t1"], tls=cloud.tls, client_id="mqttfx")
    box = Box(port, subs=["t2"])
    wait_for(lambda: i.read("var/db/baetyl/remote-mqtt-log/remote-service.log").count("mqtt client connected") >= 2,
             15, what="remote-mqtt connected on both sides")
    box.publish("t1", b"This message is from MQTTBox.", 1)
    assert fx.take(1) == {"t1": [b"This message is from MQTTBox."]}
    fx.publish("t2", b"This message is from MQTT.fx.", 1)
    assert box.take(1) == {"t2": [b"This message is from MQTT.fx."]}
    fx.close()
    # FAQ 16: QoS 1 to the local hub and QoS 1 on the bridge: nothing is lost while the cloud
    # is down. MQTT.fx keeps a persistent session on the cloud.
    Box(cloud.port, user=None, password=None, subs=["t1"], tls=cloud.tls, client_id="mqttfx-persistent",
        clean=False).close()
    cloud.stop()
    for n in range(5):
        box.publish("t1", f"offline-{n}".encode(), 1)
    cloud.start()
    back = Box(cloud.port, user=None, password=None, tls=cloud.tls, client_id="mqttfx-persistent", clean=False)
    got = back.take(5, timeout=40)
    assert sorted(set(got["t1"])) == [f"offline-{n}".encode() for n in range(5)], got
    back.close()
    box.close()
    i.stop()


# ---- chapters 12 and 13: the Python and Node "Hello World" functions ----------------------

def ch12_13_app(i, port):
    i.write("var/db/baetyl/application.yml", application("v0", [
        service("localhub", "baetyl-hub", [("localhub-conf", "etc/baetyl", True),
                                           ("localhub-data", "var/db/baetyl/data", False),
                                           ("localhub-log", "var/log/baetyl", False)]),
        service("function-manager", "baetyl-function-manager", [("function-manager-conf", "etc/baetyl", True),
                                                                ("function-manager-log", "var/log/baetyl", False)]),
        service("function-sayhi3", "baetyl-function-python", [("function-sayhi-conf", "etc/baetyl", True),
                                                              ("function-sayhi-code", "var/db/baetyl/function-sayhi",
                                                               True)], replica=0),
        service("function-sayhi", "baetyl-function-node", [("function-sayjs-conf", "etc/baetyl", True),
                                                           ("function-sayjs-code", "var/db/baetyl/function-sayhi",
                                                            True)], replica=0)],
        [(n, f"var/db/baetyl/{n}") for n in ("localhub-conf", "localhub-data", "localhub-log",
                                             "function-manager-conf", "function-manager-log", "function-sayhi-conf",
                                             "function-sayhi-code", "function-sayjs-conf", "function-sayjs-code")]))
    i.write("var/db/baetyl/localhub-conf/service.yml", hub_conf([f"tcp://0.0.0.0:{port}"]))
    i.write("var/db/baetyl/function-manager-conf/service.yml", f"""\
        hub:
          address: tcp://127.0.0.1:{port}
          username: test
          password: hahaha
        rules:
          - clientid: localfunc-1
            subscribe:
              topic: py
            function:
              name: sayhi3
            publish:
              topic: py/hi
          - clientid: localfunc-2
            subscribe:
              topic: node
            function:
              name: sayhi
            publish:
              topic: t/hi
        functions:
          - name: sayhi3
            service: function-sayhi3
            instance:
              min: 0
              max: 10
              idletime: 1m
          - name: sayhi
            service: function-sayhi
            instance:
              min: 0
              max: 10
              idletime: 1m
        """)
    i.write("var/db/baetyl/function-sayhi-conf/service.yml", """\
        functions:
          - name: 'sayhi3'
            handler: 'sayhi.handler'
            codedir: 'var/db/baetyl/function-sayhi'
        """)
    i.write("var/db/baetyl/function-sayjs-conf/service.yml", """\
        functions:
          - name: 'sayhi'
            handler: 'index.handler'
            codedir: 'var/db/baetyl/function-sayhi'
        """)


def test_ch12_ch13_hello_world(install):
    i = install("native")
    port = free_port()
    ch12_13_app(i, port)
    i.write("var/db/baetyl/function-sayhi-code/__init__.py", "")
    i.write("var/db/baetyl/function-sayhi-code/sayhi.py", """\
        #!/usr/bin/env python3
        # -*- coding: utf-8 -*-
        import os

        def handler(event, context):
            result = {}
            if isinstance(event, dict):
                result['msg'] = event
                result['type'] = 'dict'
                result['say'] = 'hello world'
            else:
                result['msg'] = event.decode("utf-8")
                result['type'] = 'non-dict'
                result['say'] = 'hello world'
            result['invokeid'] = context['invokeid'] == context['functionInvokeID']
            result['path'] = 'PATH' in os.environ
            return result
        """)
    i.write("var/db/baetyl/function-sayjs-code/index.js", """\
        #!/usr/bin/env node

        exports.handler = (event, context, callback) => {
          result = {};

          if (Buffer.isBuffer(event)) {
            const message = event.toString();
            result["msg"] = message;
            result["type"] = 'non-dict';
          } else {
            result["msg"] = event;
            result["type"] = 'dict';
          }

          result["say"] = 'hello world';
          callback(null, result);
        };
        """)
    i.start()
    box = Box(port, subs=["py/hi", "t/hi"])
    # QoS 0 inputs are not kept: both rules must be subscribed first (their log lines reach the
    # master's instance log: `baetyl logs`)
    wait_for(lambda: i.baetyl("logs", "function-manager").stdout.count("rule connected to the hub") >= 2,
             20, what="function-manager rules connected")
    time.sleep(1)
    for t in ("py", "node"):
        box.publish(t, b'{"id":1}')
        box.publish(t, b"hello non-dict")
    got = box.take(4)
    py = sorted((yaml.safe_load(p) for p in got["py/hi"]), key=lambda o: o["type"])
    assert py == [{"msg": {"id": 1}, "type": "dict", "say": "hello world", "invokeid": True, "path": True},
                  {"msg": "hello non-dict", "type": "non-dict", "say": "hello world", "invokeid": True,
                   "path": True}], py
    node = sorted((yaml.safe_load(p) for p in got["t/hi"]), key=lambda o: o["type"])
    assert node == [{"msg": {"id": 1}, "type": "dict", "say": "hello world"},
                    {"msg": "hello non-dict", "type": "non-dict", "say": "hello world"}], node
    box.close()
    i.stop()


# ---- chapter 16: a custom function runtime ------------------------------------------------

CUSTOM_RUNTIME = r'''#!/usr/bin/python3
"""A function runtime written from the seed's chapter 16 alone: grpcio, the message of
function.proto built from a descriptor, BAETYL_SERVICE_INSTANCE_ADDRESS, SIGTERM."""
import os, signal, threading
from concurrent import futures
import grpc, yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

fdp = descriptor_pb2.FileDescriptorProto(name="function.proto", package="baetyl", syntax="proto3")
m = fdp.message_type.add(name="FunctionMessage")
F = descriptor_pb2.FieldDescriptorProto
for name, num, typ in [("ID", 1, F.TYPE_UINT64), ("QOS", 2, F.TYPE_UINT32), ("Topic", 3, F.TYPE_STRING),
                       ("Payload", 4, F.TYPE_BYTES), ("Timestamp", 10, F.TYPE_SINT64),
                       ("FunctionName", 11, F.TYPE_STRING), ("FunctionInvokeID", 12, F.TYPE_STRING)]:
    m.field.add(name=name, number=num, type=typ, label=F.LABEL_OPTIONAL)
pool = descriptor_pool.DescriptorPool()
pool.Add(fdp)
desc = pool.FindMessageTypeByName("baetyl.FunctionMessage")
Msg = (message_factory.GetMessageClass(desc) if hasattr(message_factory, "GetMessageClass")
       else message_factory.MessageFactory(pool).GetPrototype(desc))
funcs = {f["name"]: f for f in yaml.safe_load(open("etc/baetyl/service.yml"))["functions"]}

def call(req, ctx):
    if req.FunctionName not in funcs:
        ctx.abort(grpc.StatusCode.NOT_FOUND, "function not found")
    out = req.Payload.upper() + b" by " + os.environ["BAETYL_SERVICE_INSTANCE_NAME"].encode()
    return Msg(ID=req.ID, QOS=req.QOS, Topic=req.Topic, Payload=out, FunctionName=req.FunctionName,
               FunctionInvokeID=req.FunctionInvokeID)

server = grpc.server(futures.ThreadPoolExecutor(4))
server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("baetyl.Function", {
    "Call": grpc.unary_unary_rpc_method_handler(call, request_deserializer=Msg.FromString,
                                                response_serializer=Msg.SerializeToString)})])
server.add_insecure_port(os.environ["BAETYL_SERVICE_INSTANCE_ADDRESS"])
server.start()
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: done.set())
done.wait()
server.stop(2).wait()
'''


def test_ch16_custom_runtime(install):
    i = install("native")
    port = free_port()
    i.write("var/db/baetyl/my-runtime/package.yml", "entry: bin/run\n")
    os.chmod(i.write("var/db/baetyl/my-runtime/bin/run", CUSTOM_RUNTIME), 0o755)
    i.write("var/db/baetyl/upper-conf/service.yml", "functions:\n  - name: upper\n    handler: upper\n")
    i.write("var/db/baetyl/application.yml", application("v16", [
        service("localhub", "baetyl-hub", [("localhub-conf", "etc/baetyl", True),
                                           ("localhub-data", "var/db/baetyl/data", False)]),
        service("function-manager", "baetyl-function-manager", [("function-manager-conf", "etc/baetyl", True)]),
        service("function-upper", "my-runtime", [("upper-conf", "etc/baetyl", True)], replica=0)],
        [(n, f"var/db/baetyl/{n}") for n in ("localhub-conf", "localhub-data", "function-manager-conf",
                                             "upper-conf")]))
    i.write("var/db/baetyl/localhub-conf/service.yml", hub_conf([f"tcp://0.0.0.0:{port}"]))
    i.write("var/db/baetyl/function-manager-conf/service.yml", f"""\
        hub: {{address: 'tcp://127.0.0.1:{port}', username: test, password: hahaha}}
        rules:
          - clientid: custom-1
            subscribe: {{topic: up, qos: 1}}
            function: {{name: upper}}
            publish: {{topic: up/out, qos: 1}}
        functions:
          - name: upper
            service: function-upper
        """)
    i.start()
    box = Box(port, subs=["up/out"])
    # The rule's subscription must exist first (this function-manager logs to the master's
    # output, so there is no log line to wait for): publish until the first answer comes.
    got, deadline = None, time.monotonic() + 30
    while got is None and time.monotonic() < deadline:
        box.publish("up", b"hello custom runtime", 1)
        try:
            got = box.take(1, timeout=1)
        except queue.Empty:
            pass
    assert got == {"up/out": [b"HELLO CUSTOM RUNTIME by function-upper.upper.1"]}, got
    box.close()
    i.stop()


# ---- chapter 17: a custom module in C (the SDK) and in Python -----------------------------

C_MODULE = r'''
#include <baetyl/api.h>
#include <baetyl/config.h>
#include <baetyl/context.h>
#include <baetyl/log.h>

typedef struct { char *tag; bt_logger_config logger; } my_cfg;
static const bt_cfg_field my_fields[] = {
    BT_FIELD(my_cfg, tag, "tag", BT_CFG_STRING, .flags = BT_CFG_REQUIRED),
    BT_FIELD(my_cfg, logger, "logger", BT_CFG_STRUCT, .sub = &bt_logger_schema),
    {0}};
static const bt_cfg_schema my_schema = {sizeof(my_cfg), my_fields, NULL};

static int run(bt_ctx *ctx)
{
    my_cfg cfg;
    char err[256];
    if (bt_ctx_load_config(ctx, &my_schema, &cfg, err, sizeof err) < 0)
        return 1;
    bt_api_client *api = bt_api_new_from_env(0, err, sizeof err);
    int rc = 1;
    if (api && bt_api_get_available_port(api, err, sizeof err) > 0) {
        json_t *r1 = json_pack("{s:{s:s,s:s},s:{s:i}}", "info", "company", "baidu", "tag", cfg.tag,
                               "stats", "msg_count", 124);
        json_t *r2 = json_pack("{s:{s:i}}", "stats", "msg_count", 344);
        if (bt_api_report_instance(api, ctx->env.service_name, ctx->env.instance_name, r1, err, sizeof err) == 0 &&
            bt_api_report_instance(api, ctx->env.service_name, ctx->env.instance_name, r2, err, sizeof err) == 0)
            rc = 0;
        json_decref(r1);
        json_decref(r2);
    }
    if (rc)
        bt_logkv(BT_LOG_ERROR, "api failed", "error", err, NULL);
    bt_api_free(api);
    if (rc == 0)
        bt_ctx_wait(ctx);
    bt_cfg_free(&my_schema, &cfg);
    return rc;
}

int main(int argc, char **argv) { return bt_run(argc, argv, run); }
'''

PY_MODULE = r'''#!/usr/bin/python3
import http.client, json, os, signal, socket, threading, yaml

class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.unix = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.unix)

env = os.environ
cfg = yaml.safe_load(open("etc/baetyl/service.yml"))
hdr = {"x-openedge-username": env["BAETYL_SERVICE_NAME"], "x-openedge-password": env["BAETYL_SERVICE_TOKEN"]}
def api(method, path, body=None, h=hdr):
    c = Unix(env["BAETYL_MASTER_API_ADDRESS"][len("unix://"):])
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    return r.status, r.read().decode()
st, ins = api("GET", "/v1/system/inspect")
bad, _ = api("GET", "/v1/system/inspect", h=dict(hdr, **{"x-openedge-password": "wrong"}))
api("PUT", f"/v1/services/{env['BAETYL_SERVICE_NAME']}/instances/{env['BAETYL_SERVICE_INSTANCE_NAME']}/report",
    {"info": {"tag": cfg["tag"], "inspect": st, "bad_token": bad, "mode": env["BAETYL_SERVICE_MODE"],
              "services": [s["name"] for s in json.loads(ins)["services"]]}})
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: done.set())
done.wait()
'''


def sdk_link_flags():
    """What a module outside the tree links with: the SDK archive and the libraries it uses
    (plus the sanitizers when the SDK was built with them)."""
    lib = os.path.join(BUILD, "lib", "libbaetyl-sdk.a")
    pkgs = "yaml-0.1 jansson openssl lmdb libarchive libprotobuf-c libnghttp2".split()
    libs = subprocess.run(["pkg-config", "--libs", *pkgs], capture_output=True, text=True, check=True).stdout.split()
    nm = subprocess.run(["nm", lib], capture_output=True, text=True).stdout
    san = ["-fsanitize=address,undefined"] if "__asan" in nm or "__ubsan" in nm else []
    return san, [lib, *libs, "-lpthread", "-lm"]


def test_ch17_custom_modules_c_sdk_and_python(install):
    i = install("native")
    port = free_port()
    san, link = sdk_link_flags()
    src = i.write("mymod.c", C_MODULE)
    os.makedirs(i.path("var/db/baetyl/mymod/bin"))
    cc = subprocess.run(["gcc", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
                         f"-I{SRC}/sdk/include", *san, "-o", i.path("var/db/baetyl/mymod/bin/mymod"), src, *link],
                        capture_output=True, text=True, timeout=120)
    assert cc.returncode == 0, cc.stderr
    i.write("var/db/baetyl/mymod/package.yml", "entry: bin/mymod\n")
    i.write("var/db/baetyl/mymod-conf/service.yml", "tag: c-module\n")
    i.write("var/db/baetyl/pymod/package.yml", "entry: bin/pymod\n")
    os.chmod(i.write("var/db/baetyl/pymod/bin/pymod", PY_MODULE), 0o755)
    i.write("var/db/baetyl/pymod-conf/service.yml", "tag: py-module\n")
    i.write("var/db/baetyl/application.yml", application("v17", [
        service("localhub", "baetyl-hub", [("localhub-conf", "etc/baetyl", True),
                                           ("localhub-data", "var/db/baetyl/data", False)]),
        service("mymod", "mymod", [("mymod-conf", "etc/baetyl", True)]),
        service("pymod", "pymod", [("pymod-conf", "etc/baetyl", True)])],
        [(n, f"var/db/baetyl/{n}") for n in ("localhub-conf", "localhub-data", "mymod-conf", "pymod-conf")]))
    i.repoint({1883: port})
    i.start()

    def reported():
        st = yaml.safe_load(i.baetyl("status", "--json").stdout)
        inst = {s["name"]: s["instances"][0] for s in st["services"] if s["instances"]}
        ok = "stats" in inst.get("mymod", {}) and "info" in inst.get("pymod", {})
        return inst if ok else None
    inst = wait_for(reported, 20, what="both modules reported")
    # the seed's report example: info kept, stats overwritten by the second report
    assert inst["mymod"]["info"] == {"company": "baidu", "tag": "c-module"}, inst["mymod"]
    assert inst["mymod"]["stats"] == {"msg_count": 344}, inst["mymod"]
    info = inst["pymod"]["info"]
    assert {k: info[k] for k in ("tag", "inspect", "bad_token", "mode")} == {
        "tag": "py-module", "inspect": 200, "bad_token": 401, "mode": "native"}, info
    assert {"localhub", "mymod", "pymod"} <= set(info["services"]), info
    i.stop()


# ---- chapter 18: data masking over two-way TLS, SQL filter, remote ------------------------

def test_ch18_masking_over_tls_to_the_cloud(install, procs):
    i = install("native")
    db = "var/db/baetyl"
    certs = gen_certs(i.path(f"{db}/baetyl-localhub-cert"))
    shutil.copytree(certs, i.path(f"{db}/baetyl-mqtt-client-cert"))
    cloud_certs = gen_certs(i.path(f"{db}/baetyl-remote-iothub-cert"))
    cloud = Cloud(procs, i.path("cloud"), cloud_certs).start()
    tcp, ssl_port = free_port(), free_port()
    i.write(f"{db}/application.yml", application("V2", [
        service("localhub", "baetyl-hub", [("baetyl-localhub-conf", "etc/baetyl", True),
                                           ("baetyl-log", "var/log/baetyl", False),
                                           ("baetyl-localhub-cert", "var/db/baetyl/cert", True),
                                           ("baetyl-persist-data", "var/db/baetyl/data", False)]),
        service("function-manager", "baetyl-function-manager",
                [("baetyl-func-manager-conf", "etc/baetyl", True), ("baetyl-mqtt-client-cert", "var/db/baetyl/cert", True),
                 ("baetyl-log", "var/log/baetyl", False)]),
        service("function-filter", "baetyl-function-sql", [("baetyl-function-filter-conf", "etc/baetyl", True)],
                replica=0),
        service("remote-mqtt", "baetyl-remote-mqtt",
                [("baetyl-remote-mqtt-conf", "etc/baetyl", True),
                 ("baetyl-remote-iothub-cert", "var/db/baetyl/iothub/cert", True),
                 ("baetyl-mqtt-client-cert", "var/db/baetyl/localhub/cert", True),
                 ("baetyl-log", "var/log/baetyl", False)])],
        [(n, f"{db}/{n}") for n in ("baetyl-log", "baetyl-localhub-cert", "baetyl-persist-data",
                                    "baetyl-mqtt-client-cert", "baetyl-function-filter-conf", "baetyl-localhub-conf",
                                    "baetyl-remote-iothub-cert", "baetyl-remote-mqtt-conf",
                                    "baetyl-func-manager-conf")]))
    i.write(f"{db}/baetyl-localhub-conf/service.yml", f"""\
        listen:
          - tcp://0.0.0.0:{tcp}
          - ssl://0.0.0.0:{ssl_port}
        certificate:
          ca: var/db/baetyl/cert/ca.pem
          cert: var/db/baetyl/cert/server.pem
          key: var/db/baetyl/cert/server.key
        principals:
          - username: two-way-tls
            permissions:
              - action: 'pub'
                permit: ['#']
              - action: 'sub'
                permit: ['#']
          - username: test
            password: hahaha
            permissions:
              - action: 'pub'
                permit: ['#']
              - action: 'sub'
                permit: ['#']
        logger:
          path: var/log/baetyl/localhub-service.log
          level: "debug"
        """)
    # 127.0.0.2 is not in the hub's certificate: `insecure: true` lets it through, as the
    # seed's `localhub` host name does in docker mode.
    i.write(f"{db}/baetyl-func-manager-conf/service.yml", f"""\
        hub:
          address: ssl://127.0.0.2:{ssl_port}
          username: two-way-tls
          ca: var/db/baetyl/cert/ca.pem
          cert: var/db/baetyl/cert/client.pem
          key: var/db/baetyl/cert/client.key
          insecure: true
        rules:
          - clientid: localfunc-1
            subscribe:
              topic: data
              qos: 1
            function:
              name: filter
            publish:
              topic: data/filter
              qos: 1
        functions:
          - name: filter
            service: function-filter
            instance:
              max: 10
        logger:
          path: var/log/baetyl/func-service.log
          level: "debug"
        """)
    i.write(f"{db}/baetyl-function-filter-conf/service.yml", """\
        functions:
          - name: filter
            handler: 'SELECT temperature, ts, unit WHERE temperature > 50'
        """)
    i.write(f"{db}/baetyl-remote-mqtt-conf/service.yml", f"""\
        hub:
          address: ssl://127.0.0.2:{ssl_port}
          username: two-way-tls
          ca: var/db/baetyl/localhub/cert/ca.pem
          cert: var/db/baetyl/localhub/cert/client.pem
          key: var/db/baetyl/localhub/cert/client.key
          insecure: true
        remotes:
          - name: iothub
            address: 'ssl://127.0.0.1:{cloud.port}'
            clientid: remote-iotHub-1
            username: 'xxxxxx/test'
            ca: var/db/baetyl/iothub/cert/ca.pem
            cert: var/db/baetyl/iothub/cert/client.pem
            key: var/db/baetyl/iothub/cert/client.key
        rules:
          - hub:
              subscriptions:
                - topic: data/filter
                  qos: 0
            remote:
              name: iothub
              subscriptions:
        logger:
          path: var/log/baetyl/remote-service.log
          level: "debug"
        """)
    i.start()
    fx = Box(cloud.port, user=None, password=None, subs=["data/filter"], tls=cloud.tls)
    box = Box(tcp, subs=["data/filter"])
    wait_for(lambda: i.read(f"{db}/baetyl-log/remote-service.log").count("mqtt client connected") >= 2, 15,
             what="remote-mqtt connected")
    # The rule's subscription must be in place before "data" is published (QoS 1 is kept
    # only for subscribers): its connection is logged, its SUBSCRIBE follows at once.
    wait_for(lambda: "rule connected to the hub" in i.read(f"{db}/baetyl-log/func-service.log"), 15,
             what="function-manager rule connected")
    time.sleep(1)
    hot = '{"temperature": 67.5, "ts": 1568817178, "deviceid": "dev001", "factory": "shanghai", ' \
          '"type": "temperature tensor", "unit": "\u2103"}'
    cold = hot.replace("67.5", "35.6").replace("1568817178", "1568817182")
    box.publish("data", cold.encode(), 1)
    box.publish("data", hot.encode(), 1)
    want = '{"temperature":67.5,"ts":1568817178,"unit":"\u2103"}'.encode()
    assert box.take(1) == {"data/filter": [want]}
    assert fx.take(1) == {"data/filter": [want]}
    box.quiet(1)
    fx.quiet(0.5)
    fx.close()
    box.close()
    i.stop()


# ---- chapter 6: config reference -----------------------------------------------------------

def test_ch6_hub_listen_forms_of_the_reference(procs, tmp_path):
    """6.3.2's listen examples leave the host out: tcp://:port, ws://:port/mqtt."""
    tcp, ws = free_port(), free_port()
    (tmp_path / "conf.yml").write_text(hub_conf([f"tcp://:{tcp}", f"ws://:{ws}/mqtt"], "storage: {dir: data}\n"))
    procs.start([binary("baetyl-hub"), "-c", "conf.yml"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
    wait_port(tcp)
    wait_port(ws)
    box = Box(ws, transport="websockets", subs=["a"])
    r = mosquitto_pub(tcp, "a", "x", "-u", "test", "-P", "hahaha")
    assert r.returncode == 0, r.stderr
    assert box.take(1) == {"a": [b"x"]}
    box.close()


def test_ch6_timer_payload_is_any_map(procs, tmp_path):
    """6.4.4: `payload` is a map (Go: map[string]interface{}): any YAML value goes to JSON
    as written."""
    port = free_port()
    (tmp_path / "hub.yml").write_text(hub_conf([f"tcp://127.0.0.1:{port}"], "storage: {dir: data}\n"))
    procs.start([binary("baetyl-hub"), "-c", "hub.yml"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
    wait_port(port)
    (tmp_path / "timer.yml").write_text(textwrap.dedent(f"""\
        hub: {{address: 'tcp://127.0.0.1:{port}', username: test, password: hahaha, clientid: timer1}}
        timer: {{interval: 200ms}}
        publish:
          topic: timer1
          payload:
            id: 1
            code: "12"
            loc: {{x: 1, y: 2}}
            tags: [a, b]
        """))
    box = Box(port, subs=["timer1"])
    p = procs.start([binary("baetyl-timer"), "-c", "timer.yml"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    try:
        msg = yaml.safe_load(box.take(1, timeout=5)["timer1"][0])
    finally:
        procs.stop(p)
        box.close()
    assert {k: msg[k] for k in ("id", "code", "loc", "tags")} == {"id": 1, "code": "12", "loc": {"x": 1, "y": 2},
                                                                 "tags": ["a", "b"]}, msg


# ---- FAQ 17: a docker application run in native mode ----------------------------------------

def test_faq17_docker_image_names_in_native_mode_name_the_package_path(install):
    i = install("native")
    i.write("var/db/baetyl/application.yml", """\
        version: v1
        services:
          - name: agent
            image: hub.baidubce.com/baetyl/baetyl-agent:latest
            replica: 1
        """)
    r = i.baetyl("check")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "lib/baetyl/hub.baidubce.com/baetyl/baetyl-agent:latest" in r.stdout + r.stderr, r.stdout + r.stderr
