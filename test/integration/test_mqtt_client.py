"""The SDK MQTT client (sdk/src/mqtt_client*.c) against a real mosquitto started here on
127.0.0.1, driven through test/tools/mqtt_client_driver.c (commands on stdin, JSON events on
stdout). Covers issue 3's list: user/password, TLS with a client certificate made here with
openssl, ws and wss, reconnect after a broker restart (subscriptions restored, queued QoS 1
delivered), QoS 1 completion, manual acknowledgement with redelivery, a full queue,
keepalive against a SIGSTOPped broker, validatesubs; plus DUP resends and hostile packets
against a small fake broker; MQTT 5.0 and QoS 2 (issue 20) against baetyl-hub and a module
with `protocol: 5`."""
import getpass
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BUILD, free_port, wait_for

DRIVER = os.path.join(BUILD, "tools", "mqtt_client_driver")


# ---- certificates -------------------------------------------------------------------

def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(d, name, cn, ca, ext=None):
    """An EC key and a certificate for cn signed by ca (name.key, name.crt in d)."""
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    args = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2"]
    if ext:
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        args += ["-extfile", f"{name}.ext"]
    _openssl(*args, cwd=d)


def _ca(d, name):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))
    _ca(d, "ca")
    _ca(d, "otherca")
    _issue(d, "server", "localhost", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    _issue(d, "wrongname", "wrong.example", "ca", "subjectAltName=DNS:wrong.example")
    _issue(d, "client", "client-1", "ca", "extendedKeyUsage=clientAuth")
    _issue(d, "stranger", "stranger", "otherca", "extendedKeyUsage=clientAuth")
    return {k: os.path.join(d, k) for k in ("ca", "otherca", "server", "wrongname", "client",
                                             "stranger")}


# ---- mosquitto ----------------------------------------------------------------------

def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """mosquitto with five listeners: tcp (anonymous), tcp (password file), ssl (client
    certificate required), ws, wss (a certificate for another name)."""

    def __init__(self, procs, d, certs, acl=None, tcp_port=None):
        self.procs, self.d, self.p = procs, d, None
        self.certs, self.acl, self.tcp_port = certs, acl, tcp_port
        self.configure()

    def configure(self):
        """Picks free ports and writes the configuration (again after a failed start)."""
        d, certs, acl = self.d, self.certs, self.acl
        self.tcp, self.pw, self.tls, self.ws, self.wss = (free_port() for _ in range(5))
        if self.tcp_port:
            self.tcp = self.tcp_port
        pwfile = os.path.join(d, "passwd")
        open(pwfile, "w").close()
        subprocess.run(["mosquitto_passwd", "-b", pwfile, "test", "hahaha"], check=True)
        os.chmod(pwfile, 0o600)
        acl_line = ""
        if acl:
            aclfile = os.path.join(d, "acl")
            with open(aclfile, "w") as f:
                f.write(acl)
            acl_line = f"acl_file {aclfile}\n"
        c = certs
        conf = f"""per_listener_settings true
user {getpass.getuser()}
persistence false
log_dest stdout
listener {self.tcp} 127.0.0.1
allow_anonymous true
{acl_line}listener {self.pw} 127.0.0.1
allow_anonymous false
password_file {pwfile}
listener {self.tls} 127.0.0.1
allow_anonymous true
cafile {c['ca']}.crt
certfile {c['server']}.crt
keyfile {c['server']}.key
require_certificate true
listener {self.ws} 127.0.0.1
protocol websockets
allow_anonymous true
listener {self.wss} 127.0.0.1
protocol websockets
allow_anonymous true
cafile {c['ca']}.crt
certfile {c['wrongname']}.crt
keyfile {c['wrongname']}.key
"""
        self.conf = os.path.join(d, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.log = os.path.join(d, "mosquitto.log")

    def start(self):
        # A free port may be taken by another process (another test run) before mosquitto
        # binds it: mosquitto then exits, and the port may have answered for the other
        # process. Such a first start is made again on new ports (not a restart, whose
        # clients expect the same ports, nor when the test chose the port).
        ports = lambda: (self.tcp, self.pw, self.tls, self.ws, self.wss)  # noqa: E731
        retry = self.p is None and not self.tcp_port
        for attempt in range(3):
            out = open(self.log, "a")
            self.p = self.procs.start(["mosquitto", "-c", self.conf], stdout=out,
                                      stderr=subprocess.STDOUT)
            out.close()
            wait_for(lambda: self.p.poll() is not None or all(map(port_open, ports())), 10,
                     what=f"mosquitto listening on {ports()}")
            time.sleep(0.1)
            if self.p.poll() is None or not retry or attempt == 2:
                break
            self.configure()
        assert self.p.poll() is None, open(self.log).read()[-2000:]
        return self

    def stop(self):
        self.cont()
        self.procs.stop(self.p)

    def sigstop(self):
        os.kill(self.p.pid, signal.SIGSTOP)

    def cont(self):
        if self.p and self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGCONT)


@pytest.fixture
def broker(procs, tmp_path, certs):
    b = Broker(procs, str(tmp_path), certs).start()
    yield b
    b.cont()  # never leave a stopped broker behind


# ---- the driver ---------------------------------------------------------------------

class Driver:
    def __init__(self, procs, tmp, *args):
        assert os.path.exists(DRIVER), f"{DRIVER} not built (make tools)"
        self.errpath = os.path.join(str(tmp), f"driver-{time.monotonic_ns()}.err")
        err = open(self.errpath, "w")
        self.p = procs.start([DRIVER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=err, text=True, bufsize=1)
        err.close()
        self.events = []
        self.cv = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait(lambda e: e["event"] in ("ready", "create-error"), what="ready")

    def _read(self):
        for line in self.p.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "garbage", "line": line}
            with self.cv:
                self.events.append(ev)
                self.cv.notify_all()

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def find(self, pred):
        with self.cv:
            return [e for e in self.events if pred(e)]

    def wait(self, pred, timeout=10.0, count=1, what="event"):
        """Waits until count events match pred; returns them."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                found = [e for e in self.events if pred(e)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    recent = [str(e)[:300] for e in self.events[-20:]]
                    raise AssertionError(f"timed out waiting for {what[:300]}; events: {recent}"
                                         f"\nstderr: {self.stderr()[-2000:]}")
                self.cv.wait(left)

    def event(self, name, timeout=10.0, count=1, **fields):
        def pred(e):
            return e["event"] == name and all(e.get(k) == v for k, v in fields.items())
        return self.wait(pred, timeout, count, what=f"{name} {str(fields)[:200]} x{count}")

    def messages(self, topic_prefix=""):
        return self.find(lambda e: e["event"] == "message" and e["topic"].startswith(topic_prefix))

    def stderr(self):
        with open(self.errpath) as f:
            return f.read()

    def quit(self, timeout=15):
        """Clean exit: the SDK client is destroyed, ASan checks for leaks."""
        if self.p.poll() is None:
            try:
                self.cmd("quit")
            except (BrokenPipeError, ValueError):
                pass
        rc = self.p.wait(timeout)
        self.reader.join(5)
        assert rc == 0, f"driver exited {rc}: {self.stderr()[-3000:]}"
        assert "AddressSanitizer" not in self.stderr() and "runtime error" not in self.stderr()


@pytest.fixture
def driver(procs, tmp_path):
    started = []

    def make(*args):
        d = Driver(procs, tmp_path, *args)
        started.append(d)
        return d
    yield make


def tcp(b):
    return f"tcp://127.0.0.1:{b.tcp}"


def subscribed(d, topic):
    """Waits until d's subscription to topic works: d publishes a probe to itself (its
    SUBSCRIBE went out first on the same connection) and sees it come back."""
    d.event("connected")
    probe = f"probe-{time.monotonic_ns()}"
    d.cmd(f"pub {topic} 0 {probe}")
    d.wait(lambda e: e["event"] == "message" and e["payload"] == probe, what="probe")


def mosquitto_pub(b, topic, *payloads, qos=1):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.tcp), "-t", topic,
                    "-q", str(qos), "-l"], input="".join(p + "\n" for p in payloads),
                   text=True, check=True, timeout=10)


# ---- connect ------------------------------------------------------------------------

def test_username_password(broker, driver):
    d = driver("--address", f"tcp://127.0.0.1:{broker.pw}", "--username", "test",
               "--password", "hahaha", "--clientid", "pw-ok", "--sub", "pw/#:1")
    subscribed(d, "pw/x")
    d.cmd("pub pw/a 1 secret")
    d.event("message", topic="pw/a", payload="secret", qos=1)
    d.event("complete", status=0, count=2)
    d.quit()

    bad = driver("--address", f"tcp://127.0.0.1:{broker.pw}", "--username", "test",
                 "--password", "wrong", "--clientid", "pw-bad", "--interval", "1s")
    wait_for(lambda: "connection refused" in bad.stderr(), what="refusal logged")
    assert not bad.find(lambda e: e["event"] == "connected")
    bad.quit()


def test_mqtt31_and_will(broker, driver, procs, tmp_path):
    watcher = driver("--address", tcp(broker), "--sub", "will/#:1", "--protocol", "3",
                     "--clientid", "watcher")
    subscribed(watcher, "will/probe")
    # a client that dies without DISCONNECT: the broker publishes its will
    dying = driver("--address", tcp(broker), "--clientid", "dying", "--will-topic", "will/dying",
                   "--will-payload", "gone", "--will-qos", "1")
    dying.event("connected")
    os.killpg(dying.p.pid, signal.SIGKILL)
    dying.p.wait()
    watcher.event("message", topic="will/dying", payload="gone", timeout=10)
    # a clean stop sends DISCONNECT: no will
    polite = driver("--address", tcp(broker), "--clientid", "polite", "--will-topic",
                    "will/polite", "--will-payload", "gone")
    polite.event("connected")
    polite.quit()
    time.sleep(0.5)
    assert not watcher.messages("will/polite")
    watcher.quit()


# ---- TLS ----------------------------------------------------------------------------

def test_tls_client_certificate(broker, driver, certs):
    c = certs
    d = driver("--address", f"ssl://127.0.0.1:{broker.tls}", "--ca", c["ca"] + ".crt",
               "--cert", c["client"] + ".crt", "--key", c["client"] + ".key",
               "--clientid", "tls-1", "--sub", "tls/#:1")
    subscribed(d, "tls/p")
    d.cmd("pub tls/a 1 over-tls")
    d.event("message", topic="tls/a", payload="over-tls")
    d.quit()

    # by name: "localhost" may resolve to ::1 first (nothing listens there), then 127.0.0.1;
    # the name is checked against the certificate and sent as SNI
    d = driver("--address", f"ssl://localhost:{broker.tls}", "--ca", c["ca"] + ".crt",
               "--cert", c["client"] + ".crt", "--key", c["client"] + ".key",
               "--clientid", "tls-2")
    d.event("connected")
    d.quit()


def test_tls_refusals(broker, driver, certs):
    c = certs
    # no client certificate: the broker requires one
    d = driver("--address", f"ssl://127.0.0.1:{broker.tls}", "--ca", c["ca"] + ".crt",
               "--clientid", "nocert", "--interval", "1s")
    wait_for(lambda: "cannot connect" in d.stderr() and "tls" in d.stderr(), what="tls failure")
    assert not d.find(lambda e: e["event"] == "connected")
    d.quit()
    # a server certificate from a CA we do not trust
    d = driver("--address", f"ssl://127.0.0.1:{broker.tls}", "--ca", c["otherca"] + ".crt",
               "--cert", c["client"] + ".crt", "--key", c["client"] + ".key",
               "--clientid", "wrongca", "--interval", "1s")
    wait_for(lambda: "certificate verify failed" in d.stderr(), what="verify failure")
    assert not d.find(lambda e: e["event"] == "connected")
    d.quit()
    # a client certificate the broker does not trust
    d = driver("--address", f"ssl://127.0.0.1:{broker.tls}", "--ca", c["ca"] + ".crt",
               "--cert", c["stranger"] + ".crt", "--key", c["stranger"] + ".key",
               "--clientid", "stranger", "--interval", "1s")
    wait_for(lambda: "cannot connect" in d.stderr(), what="refused client cert")
    assert not d.find(lambda e: e["event"] == "connected")
    d.quit()
    # key that does not belong to the certificate: refused at create time
    d = driver("--address", f"ssl://127.0.0.1:{broker.tls}", "--ca", c["ca"] + ".crt",
               "--cert", c["client"] + ".crt", "--key", c["stranger"] + ".key")
    ev = d.event("create-error")[0]
    assert "does not match" in ev["reason"]
    assert d.p.wait(10) == 1


# ---- WebSocket ----------------------------------------------------------------------

def test_websocket(broker, driver):
    d = driver("--address", f"ws://127.0.0.1:{broker.ws}/mqtt", "--clientid", "ws-1",
               "--sub", "ws/#:1")
    subscribed(d, "ws/p")
    big = "x" * 70000  # more than one 64 KiB read, and a 64-bit ws length from mosquitto
    d.cmd(f"pub ws/big 1 {big}")
    d.event("message", topic="ws/big", payload=big)
    mosquitto_pub(broker, "ws/from-tcp", "hello-ws")
    d.event("message", topic="ws/from-tcp", payload="hello-ws")
    d.quit()


def test_secure_websocket_and_insecure(broker, driver, certs):
    # the wss listener's certificate names wrong.example: refused unless insecure
    d = driver("--address", f"wss://127.0.0.1:{broker.wss}/mqtt", "--ca", certs["ca"] + ".crt",
               "--clientid", "wss-strict", "--interval", "1s")
    wait_for(lambda: "certificate verify failed" in d.stderr(), what="name mismatch")
    assert not d.find(lambda e: e["event"] == "connected")
    d.quit()
    d = driver("--address", f"wss://127.0.0.1:{broker.wss}/mqtt", "--ca", certs["ca"] + ".crt",
               "--insecure", "--clientid", "wss-1", "--sub", "wss/#:1")
    subscribed(d, "wss/p")
    mosquitto_pub(broker, "wss/a", "over-wss")
    d.event("message", topic="wss/a", payload="over-wss")
    d.quit()


# ---- sessions -----------------------------------------------------------------------

def test_qos1_completion(broker, driver):
    d = driver("--address", tcp(broker), "--clientid", "pub-1", "--buffersize", "100")
    d.event("connected")
    d.cmd("pubn done/x 1 50 m")
    ev = d.event("pubn")[0]
    assert ev["ok"] == 50 and ev["full"] == 0
    done = d.event("complete", count=50)
    assert sorted(e["tag"] for e in done) == list(range(1, 51))
    assert all(e["status"] == 0 for e in done)
    d.cmd("pending")
    assert d.event("pending")[0]["n"] == 0
    d.quit()


def test_output_high_water_does_not_stall(broker, driver):
    """Big QoS 0 publishes fill the output past its high-water mark while the broker reads
    fast: the held ones must still go out without another wakeup from the publisher (a
    regression: the client slept with a full queue and a blocked publisher)."""
    d = driver("--address", tcp(broker), "--clientid", "big", "--buffersize", "100")
    d.event("connected")
    d.cmd("pubbig big/x 0 400 60000 5000")
    ev = d.event("pubn", timeout=60)[0]
    assert (ev["ok"], ev["full"]) == (400, 0), ev
    d.event("complete", count=400, timeout=30)
    d.quit()


def test_many_threads_publish_and_ack(broker, driver):
    """4 threads publish QoS 1 through a window of 50 while the client's thread delivers
    them back and acks them: every message arrives once and completes (ASan watches)."""
    d = driver("--address", tcp(broker), "--clientid", "threads", "--buffersize", "50",
               "--sub", "th/#:1")
    subscribed(d, "th/probe")
    d.cmd("pubthreads th/x 1 4 500")
    assert d.event("pubthreads", timeout=60)[0]["ok"] == 2000
    msgs = d.wait(lambda e: e["event"] == "message" and e["topic"] == "th/x", count=2000,
                  timeout=60)
    assert len({m["payload"] for m in msgs}) == 2000
    def done():
        seen = len(d.find(lambda e: e["event"] == "pending"))
        d.cmd("pending")
        ev = d.event("pending", count=seen + 1)[-1]
        return ev["n"] == 0 and ev["bulk_complete"] == 2000
    wait_for(done, timeout=30, what="all completed")
    d.quit()


def test_stop_flushes_the_queue(broker, driver):
    """Publishes still queued when the client is destroyed go out before DISCONNECT."""
    watcher = driver("--address", tcp(broker), "--clientid", "flush-watch", "--sub", "fl/#:0")
    subscribed(watcher, "fl/probe")
    d = driver("--address", tcp(broker), "--clientid", "flusher", "--buffersize", "200")
    d.event("connected")
    d.cmd("pubn fl/x 0 200 m")
    d.quit()  # right after the publish calls returned
    got = watcher.wait(lambda e: e["event"] == "message" and e["topic"] == "fl/x", count=200)
    assert [m["payload"] for m in got] == [f"m{i}" for i in range(200)]
    watcher.quit()


def test_manual_ack_redelivery(broker, driver):
    """A persistent-session client receives QoS 1 messages and acks only some; after it
    disconnects and reconnects the broker redelivers exactly the unacked ones."""
    args = ("--address", tcp(broker), "--clientid", "acker", "--clean", "0", "--sub",
            "work/#:1")
    d = driver(*args, "--ack", "none")
    subscribed(d, "work/probe")
    mosquitto_pub(broker, "work/job", *[f"job{i}" for i in range(6)])
    msgs = d.wait(lambda e: e["event"] == "message" and e["topic"] == "work/job", count=6)
    assert [m["payload"] for m in msgs] == [f"job{i}" for i in range(6)]
    assert all(m["qos"] == 1 and m["pid"] > 0 for m in msgs)
    # ack job0, job2, job4 from the main thread; job1, job3, job5 stay unacknowledged
    for m in msgs[0::2]:
        d.cmd(f"ack {m['token']}")
    acks = d.event("ack", count=3)
    assert all(a["rc"] == 0 for a in acks)
    d.cmd(f"ack {msgs[0]['token']}")  # twice: nothing is waiting any more
    assert d.event("ack", count=4)[3]["rc"] == -1
    d.quit()

    d = driver(*args, "--ack", "all")
    d.event("connected")
    again = d.wait(lambda e: e["event"] == "message" and e["topic"] == "work/job", count=3)
    assert sorted(m["payload"] for m in again) == ["job1", "job3", "job5"]
    assert all(m["dup"] for m in again)  # the broker says they were sent before
    time.sleep(1.0)  # and nothing else comes
    assert len(d.messages("work/job")) == 3
    d.quit()

    # all acked now: a third session gets nothing
    d = driver(*args, "--ack", "all")
    subscribed(d, "work/probe")
    time.sleep(0.5)
    assert not d.messages("work/job")
    d.quit()


def test_auto_ack_and_ack_of_old_connection(broker, driver):
    args = ("--address", tcp(broker), "--clientid", "auto", "--clean", "0", "--sub", "auto/#:1")
    d = driver(*args, "--ack", "auto")
    subscribed(d, "auto/probe")
    mosquitto_pub(broker, "auto/j", "a1", "a2")
    msgs = d.wait(lambda e: e["event"] == "message" and e["topic"] == "auto/j", count=2)
    d.cmd(f"ack {msgs[0]['token']}")  # auto_ack: nothing waits for the application
    assert d.event("ack")[0]["rc"] == -1
    d.quit()
    d = driver(*args, "--ack", "auto")
    subscribed(d, "auto/probe")
    time.sleep(0.5)
    assert not d.messages("auto/j")
    d.quit()


def test_reconnect_after_broker_restart(broker, driver):
    d = driver("--address", tcp(broker), "--clientid", "phoenix", "--clean", "0", "--sub",
               "re/#:1", "--interval", "1s", "--buffersize", "20")
    subscribed(d, "re/probe")
    broker.stop()
    d.event("lost")
    # published while the broker is down: held, then sent after the SUBSCRIBE of the
    # reconnect on the same connection, so they come back to this very subscription
    d.cmd("pubn re/q 1 5 queued")
    assert d.event("pubn")[0]["ok"] == 5
    d.cmd("pending")
    ev = d.event("pending")[0]
    assert (ev["n"], ev["connected"]) == (5, False)
    broker.start()  # no persistence: the broker forgot the subscription
    d.event("connected", count=2, timeout=15)
    got = d.wait(lambda e: e["event"] == "message" and e["topic"] == "re/q", count=5)
    assert [m["payload"] for m in got] == [f"queued{i}" for i in range(5)]
    assert len(d.find(lambda e: e["event"] == "complete" and e["status"] == 0)) >= 5
    mosquitto_pub(broker, "re/other", "from-outside")
    d.event("message", topic="re/other", payload="from-outside")
    d.quit()


def test_queue_full(procs, driver, tmp_path, certs):
    port = free_port()  # nothing listens yet
    d = driver("--address", f"tcp://127.0.0.1:{port}", "--clientid", "full", "--buffersize",
               "3", "--interval", "500ms", "--sub", "full/#:1")
    d.cmd("pubn full/a 1 5 f")
    ev = d.event("pubn")[0]
    assert (ev["ok"], ev["full"]) == (3, 2)
    assert "queue full" in ev["err"]
    d.cmd("pubn full/a 0 1 g")
    assert d.event("pubn", count=2)[1]["full"] == 1
    t0 = time.monotonic()
    d.cmd("pubw full/a 0 1 h 300")
    ev = d.event("pubn", count=3)[2]
    assert ev["full"] == 1 and time.monotonic() - t0 >= 0.25
    d.cmd("pending")
    assert d.event("pending")[0]["n"] == 3
    # a broker appears on that port: the held publishes go out and complete
    b = Broker(procs, str(tmp_path), certs, tcp_port=port).start()
    done = d.event("complete", count=3, timeout=15)
    assert all(e["status"] == 0 for e in done)
    d.cmd("pending")
    assert d.event("pending", count=2)[1]["n"] == 0
    d.quit()
    b.stop()


def test_keepalive_detects_stopped_broker(broker, driver):
    d = driver("--address", tcp(broker), "--clientid", "ka", "--keepalive", "2s",
               "--timeout", "3s", "--interval", "1s", "--sub", "ka/#:1")
    subscribed(d, "ka/p")
    t0 = time.monotonic()
    broker.sigstop()
    lost = d.event("lost", timeout=10)[0]
    elapsed = time.monotonic() - t0
    assert "PINGREQ" in lost["reason"]
    assert elapsed < 6, elapsed  # keepalive 2 s + answer bound 1 s, plus slack
    broker.cont()
    d.event("connected", count=2, timeout=20)
    subscribed(d, "ka/p2")
    d.quit()


# ---- a fake broker: DUP resends and hostile input ------------------------------------

def _read_packet(s):
    first = s.recv(1)
    if not first:
        return None, None
    mult, rl = 1, 0
    while True:
        b = s.recv(1)[0]
        rl += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    body = b""
    while len(body) < rl:
        chunk = s.recv(rl - len(body))
        if not chunk:
            return None, None
        body += chunk
    return first[0], body


class FakeBroker:
    """Accepts connections one at a time and runs script(conn, n) for the n-th."""

    def __init__(self, script):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.script, self.log, self.done = script, [], threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        n = 0
        self.srv.settimeout(20)
        try:
            while not self.done.is_set():
                conn, _ = self.srv.accept()
                conn.settimeout(10)
                with conn:
                    try:
                        self.script(self, conn, n)
                    except (OSError, TypeError, IndexError):
                        pass
                n += 1
        except OSError:
            pass

    def close(self):
        self.done.set()
        self.srv.close()


def _serve_session(conn, refuse="secret"):
    """A minimal broker session: CONNACK, SUBACK (0x80 for filters starting with refuse),
    PINGRESP; returns at DISCONNECT or EOF."""
    _read_packet(conn)
    conn.sendall(b"\x20\x02\x00\x00")
    while True:
        t, body = _read_packet(conn)
        if t is None or t >> 4 == 14:
            return
        if t >> 4 == 8:  # SUBSCRIBE
            codes, i = b"", 2
            while i < len(body):
                n = int.from_bytes(body[i:i + 2], "big")
                topic = body[i + 2:i + 2 + n].decode()
                qos = body[i + 2 + n]
                codes += bytes([0x80 if topic.startswith(refuse) else qos])
                i += 3 + n
            conn.sendall(bytes([0x90, 2 + len(codes)]) + body[:2] + codes)
        elif t >> 4 == 12:
            conn.sendall(b"\xd0\x00")


def test_validatesubs(driver):
    fb = FakeBroker(lambda fb, conn, n: _serve_session(conn))
    try:
        # without validatesubs a refused filter is a warning only
        d = driver("--address", f"tcp://127.0.0.1:{fb.port}", "--sub", "ok/#:1", "--sub",
                   "secret/#:1")
        d.event("connected")
        wait_for(lambda: "subscription rejected" in d.stderr(), what="warning")
        d.cmd("sub secret/later 0")  # also for one added later
        wait_for(lambda: "secret/later" in d.stderr(), what="warning for secret/later")
        assert not d.find(lambda e: e["event"] in ("error", "lost"))
        d.quit()
        # with it, the client stops and says why
        d = driver("--address", f"tcp://127.0.0.1:{fb.port}", "--sub", "ok/#:1", "--sub",
                   "secret/#:1", "--validatesubs", "--keep-running")
        err = d.event("error")[0]
        assert "secret/#" in err["reason"] and "rejected" in err["reason"]
        d.cmd("pub ok/x 0 late")
        assert d.event("publish")[0]["rc"] == -3  # BT_MQTT_ESTOPPED
        # The stop is asynchronous: the client's thread closes the link soon after.
        def link_closed():
            n = len(d.find(lambda e: e["event"] == "pending"))
            d.cmd("pending")
            return d.event("pending", count=n + 1)[-1]["connected"] is False
        wait_for(link_closed, what="link closed after the fatal error")
        d.quit()
    finally:
        fb.close()


def test_unacked_qos1_resent_with_dup(driver):
    def script(fb, conn, n):
        t, body = _read_packet(conn)
        assert t >> 4 == 1  # CONNECT
        conn.sendall(b"\x20\x02\x00\x00")
        t, body = _read_packet(conn)
        fb.log.append((n, t, body))
        if n == 0:
            return  # drop the link without PUBACK
        pid = body[2 + body[1]: 4 + body[1]]
        conn.sendall(b"\x40\x02" + pid)
        fb.done.set()
        time.sleep(1)

    fb = FakeBroker(script)
    try:
        d = driver("--address", f"tcp://127.0.0.1:{fb.port}", "--clientid", "dup",
                   "--interval", "500ms")
        d.event("connected")
        d.cmd("pub d/x 1 payload")
        d.event("lost")
        d.event("complete", status=0, timeout=10)
        (n0, t0, b0), (n1, t1, b1) = fb.log[:2]
        assert t0 == 0x32  # PUBLISH qos 1, no DUP
        assert t1 == 0x3A  # PUBLISH qos 1, DUP
        assert b0 == b1  # same topic, packet id and payload
        d.quit()
    finally:
        fb.close()


@pytest.mark.parametrize("garbage,why", [
    (b"\x30\xff\xff\xff\xff\x7f", "bad packet"),           # length over 4 bytes
    (b"\x34\x05\x00\x01a\x00\x00", "bad packet"),         # QoS 2 with packet id 0
    (b"\x36\x05\x00\x01a\x00\x01", "bad packet"),         # QoS 3
    (b"\x90\x03\x00\x01\x00", "ignored"),                 # SUBACK for a request never sent
    (b"\x10\x02\x00\x00", "bad packet"),                  # CONNECT from a broker
    (b"\x32\x04\x00\x01a\x00", "bad packet"),             # truncated packet id
])
def test_hostile_broker(driver, garbage, why):
    def script(fb, conn, n):
        _read_packet(conn)
        conn.sendall(b"\x20\x02\x00\x00" + garbage)
        time.sleep(2)

    fb = FakeBroker(script)
    try:
        d = driver("--address", f"tcp://127.0.0.1:{fb.port}", "--clientid", "victim",
                   "--interval", "5s")
        d.event("connected")
        if why == "ignored":
            # a SUBACK for nothing we sent is ignored, the link stays
            time.sleep(0.5)
            assert not d.find(lambda e: e["event"] == "lost")
        else:
            lost = d.event("lost")[0]
            assert why in lost["reason"], lost
        d.quit()
    finally:
        fb.close()


def test_refused_connack_and_garbage_before_connack(driver):
    def script(fb, conn, n):
        _read_packet(conn)
        conn.sendall([b"\x20\x02\x00\x05", b"\x30\x03\x00\x01a",
                      b"HTTP/1.1 400 Bad\r\n\r\n"][n % 3])
        time.sleep(0.2)

    fb = FakeBroker(script)
    try:
        d = driver("--address", f"tcp://127.0.0.1:{fb.port}", "--clientid", "refused",
                   "--interval", "500ms")
        wait_for(lambda: d.stderr().count("cannot connect") >= 3, timeout=15, what="3 failures")
        err = d.stderr()
        assert "connection refused: not authorized (5)" in err
        assert "expected CONNACK, broker sent PUBLISH" in err
        assert "bad packet from broker" in err  # 'H' reads as PUBACK with flags 8
        assert not d.find(lambda e: e["event"] == "connected")
        d.quit()
    finally:
        fb.close()


# ---- the timer module (timer/main.c), the SDK example --------------------------------------------------------------

def start_timer(procs, tmp_path, broker, name, hub_extra=""):
    """baetyl-timer publishing {id: 1, name: edge} to topic `name` every 200 ms as client
    `name`; returns the process and its config file."""
    from conftest import binary
    conf = tmp_path / "service.yml"
    conf.write_text(f"""hub:
  address: tcp://127.0.0.1:{broker.tcp}
  username: test
  clientid: {name}
{hub_extra}timer:
  interval: 200ms
publish:
  topic: {name}
  qos: 1
  payload:
    id: 1
    name: edge
""")
    err = open(tmp_path / "timer.err", "w")
    p = procs.start([binary("baetyl-timer"), "-c", str(conf)], cwd=str(tmp_path),
                    stderr=err, stdout=err)
    err.close()
    return p, conf


def test_sdk_timer_example(broker, driver, procs, tmp_path):
    from conftest import binary
    d = driver("--address", tcp(broker), "--sub", "timer1:1", "--clientid", "timer-watch")
    subscribed(d, "timer1")
    p, conf = start_timer(procs, tmp_path, broker, "timer1")
    t0 = time.time()
    got = d.wait(lambda e: e["event"] == "message" and e["qos"] == 1, count=3, timeout=15)
    for m in got:
        body = json.loads(m["payload"])
        assert body["id"] == 1 and body["name"] == "edge"
        assert abs(body["time"] - t0) < 30
    assert procs.stop(p) == 0
    d.quit()

    # a bad config is refused with the field named
    conf.write_text("hub:\n  clientid: x\n")
    p = procs.start([binary("baetyl-timer"), "-c", str(conf)], cwd=str(tmp_path),
                    stderr=subprocess.PIPE, text=True)
    assert p.wait(10) == 1
    assert "hub.address: required" in p.stderr.read()


# ---- MQTT 5.0 and QoS 2 (issue 20) -----------------------------------------------------

def test_protocol5_qos2_with_the_hub(hub, driver):
    """The SDK client speaking 5.0 to baetyl-hub: QoS 2 both ways (its own message comes
    back at QoS 2 and completes after PUBCOMP; a mosquitto_pub -V mqttv5 one arrives at QoS
    2), manual acknowledgement kept: an unacked QoS 2 message of a persistent session (the
    client asks 5.0 to keep it) comes again after a reconnect, an acked one does not."""
    args = ("--address", f"tcp://127.0.0.1:{hub.port}", "--username", "test", "--password",
            "hahaha", "--protocol", "5", "--clientid", "sdk5", "--clean", "0")
    d = driver(*args, "--ack", "none")
    d.event("connected")
    d.cmd("sub q2/# 2")
    assert d.event("sub")[0]["rc"] == 0
    probe = f"probe-{time.monotonic_ns()}"
    d.cmd(f"pub q2/self 2 {probe}")
    m = d.wait(lambda e: e["event"] == "message" and e["payload"] == probe, what="own QoS 2")[0]
    assert m["qos"] == 2 and m["pid"] > 0
    assert d.event("complete")[0]["status"] == 0
    d.cmd(f"ack {m['token']}")
    assert d.event("ack")[0]["rc"] == 0
    subprocess.run(["mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(hub.port),
                    "-u", "test", "-P", "hahaha", "-q", "2", "-t", "q2/in", "-l"],
                   input="acked\nkept\n", text=True, check=True, timeout=10)
    got = d.wait(lambda e: e["event"] == "message" and e["topic"] == "q2/in", count=2)
    assert [(g["payload"], g["qos"]) for g in got] == [("acked", 2), ("kept", 2)]
    d.cmd(f"ack {got[0]['token']}")
    assert d.event("ack", count=2)[1]["rc"] == 0
    time.sleep(0.3)  # the PUBREC, PUBREL, PUBCOMP of "acked" go round
    d.quit()

    d = driver(*args, "--ack", "all")
    d.event("connected")
    again = d.wait(lambda e: e["event"] == "message" and e["topic"] == "q2/in")
    assert again[0]["payload"] == "kept" and again[0]["qos"] == 2
    time.sleep(1.0)  # and nothing else comes
    assert [m["payload"] for m in d.messages("q2/")] == ["kept"]
    d.quit()


def test_timer_module_protocol5(broker, driver, procs, tmp_path):
    """A module with `protocol: 5` in its hub settings connects with MQTT 5.0 (mosquitto logs
    the level as p5) and its messages flow to a 3.1.1 subscriber."""
    d = driver("--address", tcp(broker), "--sub", "timer5:1", "--clientid", "timer5-watch")
    subscribed(d, "timer5")
    p, _ = start_timer(procs, tmp_path, broker, "timer5", hub_extra="  protocol: 5\n")
    d.wait(lambda e: e["event"] == "message" and e["topic"] == "timer5", count=2, timeout=15)
    assert procs.stop(p) == 0
    d.quit()
    broker.stop()  # its log is complete once it exited
    with open(broker.log) as f:
        log = f.read()
    assert "as timer5 (p5," in log, log[-2000:]
    assert "as timer5-watch (p2," in log  # mosquitto's name for 3.1.1
