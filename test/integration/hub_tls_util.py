"""Helpers for test_hub_tls.py and test_hub_ws.py (no tests here).

Chapter7: the seed's chapter 7 example (example/native-tls) installed into a temporary work
dir the way `make install` does it (the example's var tree, the hub package, certificates
made by scripts/gen-certs.sh), with free ports instead of 1883/8883/8080 and a wss listener
added, run by the real master.
Paho: a paho client that waits for each step. WsRaw: a hand-made WebSocket client for the
frames paho never sends (bad masking, fragments, pings, odd opcodes)."""
import base64
import hashlib
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time

import paho.mqtt.client as mqtt

from conftest import SRC, Procs, binary, free_port, wait_for, wait_port
from master_harness import Master

GEN_CERTS = os.path.join(SRC, "scripts", "gen-certs.sh")
EXAMPLE = os.path.join(SRC, "example", "native-tls")
CERT_VOLUME = "var/db/baetyl/localhub-cert-only-for-test"


def gen_certs(dest):
    subprocess.run([GEN_CERTS, "--force", str(dest)], check=True, capture_output=True)
    return {k: os.path.join(str(dest), k + ext) for k, ext in
            (("ca", ".pem"), ("server", ".pem"), ("client", ".pem"))} | {
            "client_key": os.path.join(str(dest), "client.key"),
            "server_key": os.path.join(str(dest), "server.key")}


class Chapter7:
    """The example under the master: .tcp .ssl .ws .wss ports, .certs (ca, client, client_key)."""

    def __init__(self, extra=""):
        self.procs = Procs()
        self.m = Master(self.procs)
        m = self.m
        # the example's application and hub config, as `make install` copies them
        shutil.copytree(os.path.join(EXAMPLE, "var"), m.path("var"), dirs_exist_ok=True)
        self.tcp, self.ssl, self.ws, self.wss = (free_port() for _ in range(4))
        conf = m.path("var/db/baetyl/localhub-conf/service.yml")
        text = open(conf).read()
        for old, new in (("tcp://0.0.0.0:1883", f"tcp://127.0.0.1:{self.tcp}"),
                         ("ssl://0.0.0.0:8883", f"ssl://127.0.0.1:{self.ssl}"),
                         ("ws://0.0.0.0:8080/mqtt", f"ws://127.0.0.1:{self.ws}/mqtt")):
            assert old in text, old
            text = text.replace(old, new)
        text = re.sub(r"(\n  - ws://[^\n]*)", rf"\1\n  - wss://127.0.0.1:{self.wss}/mqtt", text, count=1)
        with open(conf, "w") as f:
            f.write(text + extra)
        # the hub package where the application mounts it from
        pkg = m.path("var/db/baetyl/baetyl-hub")
        os.makedirs(os.path.join(pkg, "bin"))
        shutil.copy(binary("baetyl-hub"), os.path.join(pkg, "bin", "baetyl-hub"))
        shutil.copy(os.path.join(SRC, "hub", "package.yml"), os.path.join(pkg, "package.yml"))
        self.certs = gen_certs(m.path(CERT_VOLUME))

    def start(self):
        self.m.start()
        for p in (self.tcp, self.ssl, self.ws, self.wss):
            wait_port(p, timeout=20)
        return self

    def hub_log(self):
        return self.m.read("var/db/baetyl/localhub-log/service.log", "")

    def stop(self):
        """Stops the master (and so the hub); returns problems found (exit code, sanitizers)."""
        problems = []
        try:
            rc = self.m.finish()
            if rc not in (None, 0):
                problems.append(f"master exited with {rc}")
            rep = self.m.sanitizer_report()
            if rep:
                problems.append(rep[-4000:])
            if "hub failed" in self.hub_log():
                problems.append(self.hub_log()[-2000:])
        finally:
            self.m.cleanup()
            self.procs.cleanup()
        return problems


def tls_args(certs, client_cert=True):
    a = {"ca_certs": certs["ca"]}
    if client_cert:
        a.update(certfile=certs["client"], keyfile=certs["client_key"])
    return a


class Paho:
    """A paho client (MQTT 3.1.1) whose steps wait for their answer."""

    def __init__(self, port, user=None, password=None, transport="tcp", tls=None, client_id="",
                 path="/mqtt"):
        self.c = mqtt.Client(client_id=client_id, clean_session=True, transport=transport)
        if transport == "websockets":
            self.c.ws_set_options(path=path)
        if tls:
            self.c.tls_set(**tls)
        if user is not None:
            self.c.username_pw_set(user, password)
        self.rc = None
        self.disconnected = threading.Event()
        self.msgs = []
        self.granted = {}
        self.lock = threading.Lock()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda c, u, rc: self.disconnected.set()
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda c, u, mid, granted: self.granted.__setitem__(mid, granted)
        self.port = port

    def _on_connect(self, c, u, flags, rc):
        self.rc = rc

    def _on_message(self, c, u, msg):
        with self.lock:
            self.msgs.append((msg.topic, msg.payload, msg.qos))

    def connect(self, timeout=10):
        """Returns the CONNACK code (None when the connection failed before one came)."""
        self.c.connect("127.0.0.1", self.port, keepalive=30)
        self.c.loop_start()
        deadline = time.monotonic() + timeout
        while self.rc is None and not self.disconnected.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.rc

    def subscribe(self, topic, qos=1):
        rc, mid = self.c.subscribe(topic, qos)
        assert rc == 0
        return wait_for(lambda: self.granted.get(mid), 10, what=f"suback {topic}")

    def publish(self, topic, payload, qos=0):
        info = self.c.publish(topic, payload, qos)
        if qos:
            info.wait_for_publish(10)
        return info

    def wait_msgs(self, n, timeout=10):
        wait_for(lambda: len(self.msgs) >= n, timeout, what=f"{n} messages")
        with self.lock:
            return list(self.msgs)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


# ---- raw WebSocket ----------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """One frame; length overrides the encoded payload length (to lie about it)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


class WsRaw:
    """A WebSocket client on a plain (or TLS) socket: handshake(), send frames, read frames."""

    def __init__(self, port, tls_ctx=None, timeout=5.0):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls_ctx:
            s = tls_ctx.wrap_socket(s, server_hostname="127.0.0.1")
        self.sock = s
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            d = b""
        if not d:
            raise EOFError
        self.buf += d

    def handshake(self, request=None, protocol="mqtt"):
        """Sends the upgrade request (or the given raw bytes); returns (status line, headers
        dict lower-cased, raw answer). Status None when the hub closed without an answer."""
        key = base64.b64encode(os.urandom(16)).decode()
        self.key = key
        if request is None:
            request = ("GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                       + (f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else "") + "\r\n").encode()
        self.send(request)
        try:
            while b"\r\n\r\n" not in self.buf:
                self._fill(5.0)
        except EOFError:
            if not self.buf:
                return None, {}, b""
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return lines[0], headers, head

    def send_frame(self, *a, **kw):
        self.send(ws_frame(*a, **kw))

    def send_mqtt(self, data):
        self.send(ws_frame(0x2, data))

    def recv_frame(self, timeout=5.0):
        """(fin, opcode, payload), or None when the connection closed."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                if len(self.buf) >= 2:
                    b0, b1 = self.buf[0], self.buf[1]
                    n, pos = b1 & 0x7F, 2
                    if n == 126 and len(self.buf) >= 4:
                        n, pos = struct.unpack(">H", self.buf[2:4])[0], 4
                    elif n == 127 and len(self.buf) >= 10:
                        n, pos = struct.unpack(">Q", self.buf[2:10])[0], 10
                    elif n >= 126:
                        pos = None
                    assert not b1 & 0x80, "a server must not mask"
                    if pos is not None and len(self.buf) >= pos + n:
                        payload = self.buf[pos:pos + n]
                        self.buf = self.buf[pos + n:]
                        return bool(b0 & 0x80), b0 & 0x0F, payload
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no frame in time")
                self._fill(left)
        except EOFError:
            return None

    def recv_mqtt(self, timeout=5.0):
        """The next MQTT packet carried in binary frames: (type, flags, body)."""
        data = getattr(self, "mqtt_buf", b"")
        deadline = time.monotonic() + timeout
        while True:
            if len(data) >= 2:
                n, mul, i = 0, 1, 1
                while i < len(data):
                    b = data[i]
                    n += (b & 0x7F) * mul
                    mul *= 128
                    i += 1
                    if not b & 0x80:
                        break
                if len(data) >= i + n:
                    self.mqtt_buf = data[i + n:]
                    return data[0] >> 4, data[0] & 0x0F, data[i:i + n]
            f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if f is None:
                return None
            if f[1] in (0x0, 0x2):
                data += f[2]

    def close_code(self, timeout=5.0):
        """Reads frames until the server's close frame; returns its code (or None if the
        connection ended without one), then checks the connection ends."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if f is None:
                return None
            if f[1] == 0x8:
                code = struct.unpack(">H", f[2][:2])[0] if len(f[2]) >= 2 else 1005
                return code

    def closed(self, timeout=5.0):
        """True when the hub closes the connection within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.recv_frame(max(0.01, deadline - time.monotonic())) is None:
                    return True
            except TimeoutError:
                return False
        return False

    def close(self):
        self.sock.close()
