"""baetyl-agent, the cloud link (SPEC §15), end to end: the real master `baetyl` runs the
agent as a native service with the mounts of the seed's chapter 18; a fake cloud made of
an HTTPS server written here (it decrypts each report with the agent's public key and
serves volume zips) and a real mosquitto with TLS and client certificates (the cloud's
MQTT broker, where the test publishes events on the desire topic)."""
import base64
import getpass
import hashlib
import http.server
import io
import json
import os
import ssl
import struct
import subprocess
import threading
import time
import zipfile
import zlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import padding as sympad
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from conftest import binary, free_port, wait_for, wait_port
from master_harness import SLEEPER, marked_pids, master, proc_alive  # noqa: F401

CLIENT_ID = "edge-node-7"
DESIRE = f"$baidu/iot/edge/{CLIENT_ID}/core/backward"
SERIAL = 123456789012345678901234567  # more than 64 bits: the header carries it in decimal


# ---- certificates (RSA: the report key is RSA-encrypted) -------------------------------

def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("agentcerts"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=cloud-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)

    def issue(name, cn, ext, serial):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial",
                 str(serial), "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    issue("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost", 2)
    issue("client", CLIENT_ID, "extendedKeyUsage=clientAuth", SERIAL)
    issue("cloud", "cloud-console", "extendedKeyUsage=clientAuth", 3)
    return d


# ---- the fake cloud: HTTPS ----------------------------------------------------------------

class Cloud:
    """HTTPS on a free port: POST <report url> is decrypted and kept, GET /files/<name>
    serves the zips of self.files."""

    def __init__(self, certs):
        self.certs = certs
        self.port = free_port()
        self.reports = []   # {"path", "headers", "json"}
        self.bad = []       # reports that did not decrypt: (headers, reason)
        self.gets = []
        self.files = {}
        self.lock = threading.Lock()
        with open(os.path.join(certs, "client.pem"), "rb") as f:
            self.pub = x509.load_pem_x509_certificate(f.read()).public_key()
        self.srv = None

    def decrypt(self, headers, body):
        key = self.pub.recover_data_from_signature(base64.b64decode(headers["x-iot-edge-key"]),
                                                   padding.PKCS1v15(), None)
        assert len(key) == 32
        dec = Cipher(algorithms.AES(key), modes.CBC(b"\0" * 16)).decryptor()
        padded = dec.update(base64.b64decode(body)) + dec.finalize()
        unpad = sympad.PKCS7(128).unpadder()
        return json.loads(unpad.update(padded) + unpad.finalize())

    def start(self):
        cloud = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    doc = cloud.decrypt(headers, body)
                    with cloud.lock:
                        cloud.reports.append({"path": self.path, "headers": headers, "json": doc})
                except Exception as e:  # noqa: BLE001 - kept for the assertion message
                    with cloud.lock:
                        cloud.bad.append((headers, repr(e)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                with cloud.lock:
                    cloud.gets.append(self.path)
                    data = cloud.files.get(name)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(self.certs, "server.pem"), os.path.join(self.certs, "server.key"))
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.srv:
            self.srv.shutdown()
            self.srv.server_close()
            self.srv = None

    def url(self, name):
        return f"https://127.0.0.1:{self.port}/files/{name}"

    def last_report(self):
        with self.lock:
            return self.reports[-1] if self.reports else None

    def ota_steps(self, trace):
        """Steps of trace in the latest report that carries it."""
        with self.lock:
            for r in reversed(self.reports):
                ota = r["json"].get("ota") or {}
                if trace in ota:
                    return [rec["step"] for rec in ota[trace]]
        return None


# ---- the fake cloud: MQTT (mosquitto, TLS, client certificates required) -----------------

class Broker:
    def __init__(self, procs, d, certs):
        self.procs, self.certs, self.p = procs, certs, None
        self.port = free_port()
        self.conf = os.path.join(d, "mosquitto.conf")
        self.log = os.path.join(d, "mosquitto.log")  # a file: stdout would be buffered
        with open(self.conf, "w") as f:
            f.write(f"""user {getpass.getuser()}
persistence false
log_dest file {self.log}
log_type all
listener {self.port} 127.0.0.1
cafile {certs}/ca.pem
certfile {certs}/server.pem
keyfile {certs}/server.key
require_certificate true
use_identity_as_username true
""")

    def start(self):
        self.p = self.procs.start(["mosquitto", "-c", self.conf], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_subscribed(self, timeout=30):
        wait_for(lambda: f"Sending SUBACK to {CLIENT_ID}" in self.read_log(), timeout,
                 what="agent subscribed on the cloud broker")

    def publish(self, payload, topic=DESIRE):
        c = self.certs
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "--cafile", f"{c}/ca.pem",
                        "--cert", f"{c}/cloud.pem", "--key", f"{c}/cloud.key", "-q", "1", "-t", topic,
                        "-m", payload], check=True, timeout=20, capture_output=True)


# ---- zips and apps -------------------------------------------------------------------------

def make_zip(entries):
    """entries: (name, bytes, unix mode) -> zip bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in entries:
            zi = zipfile.ZipInfo(name)
            zi.create_system = 3
            zi.external_attr = (mode & 0xFFFF) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return buf.getvalue()


def zip_bomb(entries, size):
    """An honest zip bomb: entries files of size zero bytes each, every one declaring its true
    size; the deflate stream is made once and shared, so a few MB stand for GiBs."""
    comp, crc, chunk = zlib.compressobj(9, zlib.DEFLATED, -15), 0, b"\0" * (1 << 20)
    parts = []
    for _ in range(size // len(chunk)):
        parts.append(comp.compress(chunk))
        crc = zlib.crc32(chunk, crc)
    data = b"".join(parts) + comp.flush()
    out, central = io.BytesIO(), io.BytesIO()
    for i in range(entries):
        name = f"zeros{i}".encode()
        off = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size,
                              len(name), 0) + name + data)
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 20, 0, 8, 0, 0x21,
                                  crc, len(data), size, len(name), 0, 0, 0, 0, 0o100644 << 16,
                                  off) + name)
    cd, start = central.getvalue(), out.tell()
    out.write(cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, entries, entries, len(cd), start, 0))
    return out.getvalue()


def lying_zip(entries, liar, real, declared):
    """make_zip(entries) plus the file liar of real zero bytes whose headers declare only
    declared bytes (libarchive itself only warns once it has unpacked all of it)."""
    data = bytearray(make_zip(entries + [(liar, b"\0" * real, 0o644)]))
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = data.find(sig)
        while i >= 0:
            if struct.unpack_from("<I", data, i + off)[0] == real:
                struct.pack_into("<I", data, i + off, declared)
            i = data.find(sig, i + 4)
    return bytes(data)


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


AGENT_SVC = {
    "name": "agent", "image": "baetyl-agent", "replica": 1,
    "mounts": [{"name": "agent-conf", "path": "etc/baetyl", "readonly": True},
               {"name": "agent-cert", "path": "var/db/baetyl/cert", "readonly": True},
               {"name": "agent-volumes", "path": "var/db/baetyl/volumes"},
               {"name": "agent-log", "path": "var/log/baetyl"},
               {"name": "baetyl-agent", "path": "lib/baetyl/baetyl-agent", "readonly": True}]}
AGENT_VOLS = [{"name": "agent-conf", "path": "var/db/baetyl/agent-conf"},
              {"name": "agent-cert", "path": "var/db/baetyl/agent-cert"},
              {"name": "agent-volumes", "path": "var/db/baetyl"},
              {"name": "agent-log", "path": "var/db/baetyl/agent-log"},
              {"name": "baetyl-agent", "path": "var/db/baetyl/baetyl-agent"}]


def app(services, volumes, version):
    return json.dumps({"version": version, "services": services, "volumes": volumes}, indent=1)


V1 = app([AGENT_SVC,
          {"name": "old", "image": "pkg", "replica": 1,
           "mounts": [{"name": "pkg", "path": "lib/baetyl/pkg", "readonly": True},
                      {"name": "old-stuff", "path": "data"}]}],
         AGENT_VOLS + [{"name": "pkg", "path": "var/db/baetyl/pkg"},
                       {"name": "old-stuff", "path": "var/db/baetyl/old-stuff"}], "v1")


def agent_conf(broker_port, cloud_port, ota_timeout="30s"):
    return f"""remote:
  mqtt:
    address: ssl://127.0.0.1:{broker_port}
    clientid: {CLIENT_ID}
    ca: var/db/baetyl/cert/ca.pem
    cert: var/db/baetyl/cert/client.pem
    key: var/db/baetyl/cert/client.key
    interval: 1s
  http:
    address: https://127.0.0.1:{cloud_port}
    ca: var/db/baetyl/cert/ca.pem
    timeout: 5s
  report:
    interval: 1s
ota:
  timeout: {ota_timeout}
logger:
  path: var/log/baetyl/agent.log
  level: debug
"""


class Env:
    """A work dir with the master, the agent service and the fake cloud."""

    def __init__(self, master, procs, tmp_path, certs, ota_timeout="30s"):
        self.cloud = Cloud(certs)
        self.broker = Broker(procs, str(tmp_path), certs)
        self.m = m = master(grace="10s")
        m.write("var/db/baetyl/agent-conf/service.yml", agent_conf(self.broker.port, self.cloud.port, ota_timeout))
        for f in ("ca.pem", "client.pem", "client.key"):
            with open(os.path.join(certs, f)) as src:
                m.write(f"var/db/baetyl/agent-cert/{f}", src.read())
        m.write("var/db/baetyl/baetyl-agent/package.yml", "entry: bin/baetyl-agent\n")
        os.makedirs(m.path("var/db/baetyl/baetyl-agent/bin"))
        os.symlink(binary("baetyl-agent"), m.path("var/db/baetyl/baetyl-agent/bin/baetyl-agent"))
        m.package("pkg", SLEEPER)
        os.makedirs(m.path("var/db/baetyl/old-stuff/nested"))
        m.write("var/db/baetyl/old-stuff/nested/file", "x")
        m.app(V1)

    def start(self, cloud=True, broker=True):
        if cloud:
            self.cloud.start()
        if broker:
            self.broker.start()
        self.m.start()
        self.agent_pid = self.m.wait_running("agent", timeout=30)
        self.m.wait_running("old", timeout=30)
        return self

    def agent_log(self):
        return self.m.read("var/db/baetyl/agent-log/agent.log", "")

    def steps(self, trace):
        return [line["step"] for line in self.m.ota_log() if line.get("trace") == trace]

    def failed_ota(self, trace, name, path, data):
        """Serves data as <name>.zip, sends its OTA and returns the FAILURE line of ota.log,
        checking that nothing came between RECEIVED and FAILURE."""
        self.cloud.files = {f"{name}.zip": data}
        self.ota_event(trace, name, path, data)
        line = self.m.wait_ota_step(trace, ["FAILURE", "UPDATED"], timeout=60)
        assert self.steps(trace) == ["RECEIVED", "FAILURE"], self.m.ota_log()
        return line

    def ota_event(self, trace, name, path, data_or_md5, version="v2", old_form=False):
        md5 = data_or_md5 if isinstance(data_or_md5, str) else md5_b64(data_or_md5)
        vol = {"name": name, "path": path, "meta": {"url": self.cloud.url(f"{name}.zip"), "md5": md5,
                                                     "version": version}}
        if old_form:
            ev = {"time": "2019-09-23T17:55:42Z", "event": "UPDATE",
                  "content": {"version": version, "trace": trace, "config": vol}}
        else:
            ev = {"time": "2019-09-23T17:55:42Z", "event": "OTA",
                  "content": {"type": "APP", "trace": trace, "version": version, "volume": vol}}
        self.broker.publish(json.dumps(ev))


@pytest.fixture
def env(master, procs, tmp_path, certs):  # noqa: F811 - master is a fixture
    made = []

    def make(**kw):
        e = Env(master, procs, tmp_path, certs, **kw)
        made.append(e)
        return e
    yield make
    for e in made:
        e.cloud.stop()
        log = e.agent_log()
        assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]


# ---- tests -------------------------------------------------------------------------------

def test_report_decrypts_to_inspect_with_headers(env):
    e = env().start()
    # The agent reports at once; a report taken while the master still starts its services
    # carries no conf_version yet (it is set when the application is committed): wait for one
    # taken after the commit.
    def committed_report():
        r = e.cloud.last_report()
        return r if r and r["json"].get("software", {}).get("conf_version") else None
    r = wait_for(committed_report, 20, what="a report after the application's commit")
    assert not e.cloud.bad, e.cloud.bad
    assert r["path"] == "/v3/edge/info"
    h = r["headers"]
    assert h["x-iot-edge-sn"] == str(SERIAL)
    assert h["x-iot-edge-clientid"] == CLIENT_ID
    assert h["content-type"] == "application/x-www-form-urlencoded"
    doc = r["json"]
    ins = e.m.inspect()
    assert set(doc) == set(ins), "the report is the master's inspect, nothing added without an OTA"
    assert doc["software"] == ins["software"] and doc["software"]["conf_version"] == "v1"
    assert doc["error"] == ""
    names = {s["name"]: s for s in doc["services"]}
    assert set(names) == {"agent", "old"}
    assert names["agent"]["instances"][0]["process"]["id"] == e.agent_pid
    # every interval (1s): more reports come
    n = len(e.cloud.reports)
    wait_for(lambda: len(e.cloud.reports) >= n + 2, 10, what="periodic reports")


def test_ota_end_to_end(env):
    e = env().start()
    m = e.m
    e.broker.wait_subscribed()
    pkg2 = make_zip([("package.yml", b"entry: bin/prog\n", 0o644), ("bin/", b"", 0o40755),
                     ("bin/prog", SLEEPER.encode(), 0o755)])
    v2 = app([AGENT_SVC,
              {"name": "new", "image": "pkg2", "replica": 1,
               "mounts": [{"name": "pkg2", "path": "lib/baetyl/pkg2", "readonly": True},
                          {"name": "data", "path": "data"}]}],
             AGENT_VOLS + [{"name": "pkg2", "path": "var/db/baetyl/pkg2",
                            "meta": {"url": e.cloud.url("pkg2.zip"), "md5": md5_b64(pkg2), "version": "1"}},
                           {"name": "data", "path": "var/db/data"}], "v2")
    appzip = make_zip([("application.yml", v2.encode(), 0o644)])
    e.cloud.files = {"app-v2.zip": appzip, "pkg2.zip": pkg2}

    e.ota_event("tr-1", "app-v2", "var/db/baetyl/app-v2", appzip)
    m.wait_ota_step("tr-1", ["UPDATED", "ROLLEDBACK", "FAILURE", "TIMEOUT"], timeout=60)
    assert e.steps("tr-1") == ["RECEIVED", "UPDATING", "UPDATED"], m.ota_log()
    assert "/files/app-v2.zip" in e.cloud.gets and "/files/pkg2.zip" in e.cloud.gets
    # the volumes are where the master reads them: the host's var/db/baetyl
    assert os.path.exists(m.path("var/db/baetyl/pkg2/bin/prog"))
    ins = m.inspect()
    assert ins["software"]["conf_version"] == "v2" and ins["error"] == ""
    assert [s["name"] for s in ins["services"]] == ["agent", "new"]
    m.wait_running("new", timeout=30)
    assert m.running_pid("agent") == e.agent_pid, "the agent is unchanged and keeps running"
    # the report shows the steps, at once
    wait_for(lambda: e.cloud.ota_steps("tr-1") == ["RECEIVED", "UPDATING", "UPDATED"], 20,
             what="report with the OTA steps")
    rec = [r for r in e.cloud.reports if "tr-1" in (r["json"].get("ota") or {})][-1]["json"]["ota"]["tr-1"]
    assert all(x["trace"] == "tr-1" and x["time"] for x in rec)
    # cleanup: directories no volume of the running app uses are gone, the rest stays
    wait_for(lambda: "old volumes cleaned" in e.agent_log(), 20, what="cleanup done")
    assert 'removed=3' in e.agent_log()
    for gone in ("old-stuff", "pkg", "app-v2"):
        assert not os.path.exists(m.path(f"var/db/baetyl/{gone}")), gone
    for kept in ("agent-conf", "agent-cert", "agent-log", "baetyl-agent", "pkg2", "application.yml", "ota.log"):
        assert os.path.exists(m.path(f"var/db/baetyl/{kept}")), kept
    assert os.path.exists(m.path("var/db/data")), "volumes outside var/db/baetyl are not touched"
    # after the OTA, reports carry no ota any more
    n = len(e.cloud.reports)
    wait_for(lambda: len(e.cloud.reports) >= n + 2, 10, what="later reports")
    assert "ota" not in e.cloud.last_report()["json"]


def test_old_update_event_means_the_same(env):
    e = env().start()
    e.broker.wait_subscribed()
    v2 = app([AGENT_SVC], AGENT_VOLS, "v2")
    appzip = make_zip([("application.yml", v2.encode(), 0o644)])
    e.cloud.files = {"cfg.zip": appzip}
    e.ota_event("tr-old", "cfg", "var/db/baetyl/cfg/v2", appzip, old_form=True)
    e.m.wait_ota_step("tr-old", ["UPDATED", "ROLLEDBACK", "FAILURE", "TIMEOUT"], timeout=60)
    assert e.steps("tr-old") == ["RECEIVED", "UPDATING", "UPDATED"]
    assert e.m.inspect()["software"]["conf_version"] == "v2"


def test_md5_mismatch_is_a_failure(env):
    e = env().start()
    m = e.m
    e.broker.wait_subscribed()
    appzip = make_zip([("application.yml", app([AGENT_SVC], AGENT_VOLS, "v2").encode(), 0o644)])
    e.cloud.files = {"app-v2.zip": appzip}
    e.ota_event("tr-md5", "app-v2", "var/db/baetyl/app-v2", md5_b64(b"something else"))
    line = m.wait_ota_step("tr-md5", ["FAILURE", "UPDATED"], timeout=60)
    assert e.steps("tr-md5") == ["RECEIVED", "FAILURE"]
    assert "MD5 of volume (app-v2) invalid" in line["error"], line
    assert not os.path.exists(m.path("var/db/baetyl/app-v2/app-v2.zip")), "the bad download is removed"
    assert not os.path.exists(m.path("var/db/baetyl/app-v2/application.yml"))
    assert m.inspect()["software"]["conf_version"] == "v1"
    # the download was tried (and the cloud sees the failure in the report)
    assert "/files/app-v2.zip" in e.cloud.gets
    wait_for(lambda: e.cloud.ota_steps("tr-md5") == ["RECEIVED", "FAILURE"], 20, what="failure reported")
    assert m.running_pid("agent") == e.agent_pid


def test_zip_slip_is_refused(env):
    e = env().start()
    m = e.m
    e.broker.wait_subscribed()
    evil = make_zip([("application.yml", app([AGENT_SVC], AGENT_VOLS, "v2").encode(), 0o644),
                     ("../evil", b"owned", 0o644)])
    e.cloud.files = {"app-v2.zip": evil}
    e.ota_event("tr-slip", "app-v2", "var/db/baetyl/app-v2", evil)
    line = m.wait_ota_step("tr-slip", ["FAILURE", "UPDATED"], timeout=60)
    assert e.steps("tr-slip") == ["RECEIVED", "FAILURE"]
    assert "entry (../evil) escapes the volume directory" in line["error"], line
    assert not os.path.exists(m.path("var/db/baetyl/evil"))
    assert not os.path.exists(m.path("var/db/baetyl/app-v2/application.yml")), "nothing is extracted"
    assert m.inspect()["software"]["conf_version"] == "v1"

    # a link pointing out of the volume is refused the same way
    link = make_zip([("application.yml", app([AGENT_SVC], AGENT_VOLS, "v2").encode(), 0o644),
                     ("out", b"../../../../etc", 0o120777)])
    e.cloud.files = {"app-v3.zip": link}
    e.ota_event("tr-link", "app-v3", "var/db/baetyl/app-v3", link)
    line = m.wait_ota_step("tr-link", ["FAILURE", "UPDATED"], timeout=60)
    assert "entry (out) links outside the volume directory" in line["error"], line
    assert not os.path.lexists(m.path("var/db/baetyl/app-v3/out"))


def test_zip_bomb_leaves_nothing_on_disk(env):
    """#12.9: archives that unpack to too much fail the OTA, and nothing of them stays: the
    volume is unpacked next to its place and only moved there once it is whole."""
    e = env().start()
    m = e.m
    e.broker.wait_subscribed()
    top = m.path("var/db/baetyl")
    before = set(os.listdir(top))
    bomb = zip_bomb(5, 1 << 30)  # 5 GiB of zeros in about 5 MB: over the 4 GiB cap
    line = e.failed_ota("tr-bomb", "bomb", "var/db/baetyl/bomb", bomb)
    want = "failed to unzip volume (bomb): entries declare more than 4294967296 bytes"
    assert want in line["error"], line
    assert set(os.listdir(top)) - {"ota.log"} == before, "nothing of the bomb is left"

    # A bomb lying about its size is stopped once an entry passes what it declares; what it
    # wrote until then goes, and the directory it aimed at (a volume of the running app)
    # stays as it was.
    old = m.path("var/db/baetyl/old-stuff")
    old_files = sorted(os.listdir(old))
    liar = lying_zip([("application.yml", app([AGENT_SVC], AGENT_VOLS, "v2").encode(), 0o644)],
                     "big", 64 << 20, 1 << 20)
    line = e.failed_ota("tr-liar", "old-stuff", "var/db/baetyl/old-stuff", liar)
    assert "entry (big) holds more than the 1048576 bytes it declares" in line["error"], line
    assert set(os.listdir(top)) - {"ota.log"} == before, "nothing of the unpacked part is left"
    assert sorted(os.listdir(old)) == old_files
    assert os.listdir(os.path.join(old, "nested")) == ["file"]
    assert m.inspect()["software"]["conf_version"] == "v1"

    # a good volume at the same path replaces the directory whole
    v2 = make_zip([("application.yml", app([AGENT_SVC], AGENT_VOLS, "v2").encode(), 0o644)])
    e.cloud.files = {"old-stuff.zip": v2}
    e.ota_event("tr-good", "old-stuff", "var/db/baetyl/old-stuff", v2)
    m.wait_ota_step("tr-good", ["FAILURE", "UPDATED", "ROLLEDBACK"], timeout=60)
    assert e.steps("tr-good") == ["RECEIVED", "UPDATING", "UPDATED"], m.ota_log()
    now = set(os.listdir(old))  # + term-old, which the old service writes when it stops
    assert {"application.yml", "old-stuff.zip"} <= now and "nested" not in now, now
    assert m.running_pid("agent") == e.agent_pid


def test_unknown_and_malformed_events_are_logged(env):
    e = env().start()
    e.broker.wait_subscribed()
    e.broker.publish(json.dumps({"time": "2019-09-23T17:55:42Z", "event": "REBOOT", "content": {}}))
    e.broker.publish("this is not json")
    e.broker.publish(json.dumps({"event": "OTA", "content": {"type": "APP", "trace": "t", "volume": 7}}))
    wait_for(lambda: "event type (REBOOT) unexpected" in e.agent_log(), 20, what="unknown event logged")
    wait_for(lambda: "event invalid" in e.agent_log(), 20, what="malformed event logged")
    wait_for(lambda: "volume is not an object" in e.agent_log(), 20, what="bad content logged")
    log = [line for line in e.agent_log().splitlines() if "REBOOT" in line]
    assert "level=error" in log[0]
    # only the OTA event that names its trace ("t") goes to ota.log (#12.13): as a FAILURE
    line = e.m.wait_ota_step("t", ["FAILURE"], timeout=20)
    assert "event content invalid: volume is not an object" in line["error"], line
    assert [x["trace"] for x in e.m.ota_log()] == ["t", "t"], "nothing for the other events"
    assert e.m.running_pid("agent") == e.agent_pid


def test_ota_event_without_md5_is_a_failure_the_cloud_sees(env):
    """#12.13: an OTA event without meta.md5 is not applied; ota.log says FAILURE with the
    reason, and the report carries it at once."""
    e = env().start()
    m = e.m
    e.broker.wait_subscribed()
    appzip = make_zip([("application.yml", app([AGENT_SVC], AGENT_VOLS, "v2").encode(), 0o644)])
    e.cloud.files = {"app-v2.zip": appzip}
    vol = {"name": "app-v2", "path": "var/db/baetyl/app-v2",
           "meta": {"url": e.cloud.url("app-v2.zip")}}
    e.broker.publish(json.dumps({"event": "OTA", "content": {"type": "APP", "trace": "tr-nomd5",
                                                             "version": "v2", "volume": vol}}))
    line = m.wait_ota_step("tr-nomd5", ["FAILURE", "UPDATED"], timeout=30)
    assert e.steps("tr-nomd5") == ["RECEIVED", "FAILURE"]
    assert line["error"] == "event content invalid: volume.meta needs a url and an md5", line
    assert line["level"] == "error" and line["type"] == "APP"
    wait_for(lambda: e.cloud.ota_steps("tr-nomd5") == ["RECEIVED", "FAILURE"], 20,
             what="failure reported")
    rec = [r for r in e.cloud.reports if "tr-nomd5" in (r["json"].get("ota") or {})][-1]
    assert rec["json"]["ota"]["tr-nomd5"][-1]["error"] == line["error"]
    assert e.cloud.gets == [], "nothing is downloaded"
    assert m.inspect()["software"]["conf_version"] == "v1"
    # the old form without md5 fails the same way, its version standing for the trace
    old = {"name": "cfg", "path": "var/db/baetyl/cfg", "meta": {"url": e.cloud.url("cfg.zip")}}
    e.broker.publish(json.dumps({"event": "UPDATE", "content": {"version": "v9", "config": old}}))
    line = m.wait_ota_step("v9", ["FAILURE", "UPDATED"], timeout=30)
    assert "config.meta needs a url and an md5" in line["error"], line
    assert m.running_pid("agent") == e.agent_pid


def test_agent_keeps_running_while_the_cloud_is_down(env):
    e = env().start(cloud=False, broker=False)
    m = e.m
    wait_for(lambda: "failed to report stats by https" in e.agent_log(), 20, what="report failure logged")
    time.sleep(3)  # a few more intervals and reconnect attempts
    assert m.running_pid("agent") == e.agent_pid and proc_alive(e.agent_pid)
    # the cloud comes back: reports arrive, the MQTT link connects, events work
    e.cloud.start()
    wait_for(e.cloud.last_report, 20, what="a report once the cloud is up")
    e.broker.start()
    e.broker.wait_subscribed(timeout=30)
    wait_for(lambda: "connected to the cloud" in e.agent_log(), 20, what="mqtt connected")
    e.broker.publish(json.dumps({"event": "NOPE", "content": {}}))
    wait_for(lambda: "event type (NOPE) unexpected" in e.agent_log(), 20, what="event after reconnect")
    # and down again: still running
    e.cloud.stop()
    n = e.agent_log().count("failed to report stats by https")
    wait_for(lambda: e.agent_log().count("failed to report stats by https") > n, 20, what="failures again")
    assert m.running_pid("agent") == e.agent_pid


def test_ota_timeout(env):
    """An OTA whose end never comes: the agent (restarted in the middle of it, as an OTA
    that changes the agent itself does) follows it from ota.log and writes TIMEOUT after
    ota.timeout."""
    e = env(ota_timeout="3s").start()
    m = e.m
    wait_for(e.cloud.last_report, 20, what="a report")
    m.write("var/db/baetyl/ota.log", json.dumps({"level": "info", "msg": "ota event is received",
                                                 "step": "RECEIVED", "time": "2019-09-23T17:55:42Z",
                                                 "trace": "tr-hang", "type": "APP"}) + "\n")
    os.kill(e.agent_pid, 15)  # the master restarts it (policy always)
    wait_for(lambda: (m.running_pid("agent") or e.agent_pid) != e.agent_pid, 30, what="agent restarted")
    wait_for(lambda: e.cloud.ota_steps("tr-hang") == ["RECEIVED"], 20, what="progress reported while waiting")
    m.wait_ota_step("tr-hang", ["TIMEOUT"], timeout=30)
    assert e.steps("tr-hang") == ["RECEIVED", "TIMEOUT"]
    wait_for(lambda: e.cloud.ota_steps("tr-hang") == ["RECEIVED", "TIMEOUT"], 20, what="timeout reported")


def test_example_native_agent(tmp_path):
    """example/native-agent: the master accepts its application once the user has put the
    certificates in place (`baetyl check` names the first missing one), and the agent's config
    loads (without them the agent stops at the missing certificates, naming them)."""
    from conftest import SRC
    import shutil
    work = tmp_path / "w"
    shutil.copytree(os.path.join(SRC, "example", "native-agent"), work)
    for mod in ("baetyl-agent", "baetyl-hub"):  # what `make install MODE=native` adds
        pkg = work / "var/db/baetyl" / mod
        os.makedirs(pkg / "bin")
        (pkg / "package.yml").write_text(f"entry: bin/{mod}\n")
        os.symlink(binary(mod), pkg / "bin" / mod)
    check = [binary("baetyl"), "check", "-w", str(work)]
    r = subprocess.run(check, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "service (agent): ca file var/db/baetyl/cert/ca.pem not found" in r.stderr, r.stderr
    certs = work / "var/db/baetyl/agent-cert"
    for name in ("ca.pem", "client.pem", "client.key"):
        (certs / name).write_text("placeholder\n")
    r = subprocess.run(check, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "OK!" in r.stdout, r.stdout + r.stderr
    for name in ("ca.pem", "client.pem", "client.key"):
        (certs / name).unlink()
    svc = work / "svc"
    os.makedirs(svc / "etc")
    os.symlink(work / "var/db/baetyl/agent-conf", svc / "etc/baetyl")
    r = subprocess.run([binary("baetyl-agent")], cwd=svc, capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, BAETYL_MASTER_API_ADDRESS="unix:///nonexistent.sock"))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    log = (svc / "var/log/baetyl/service.log").read_text()
    assert "remote.mqtt.key: open var/db/baetyl/cert/client.key: No such file or directory" in log, log + out
    assert "Sanitizer" not in out and "runtime error" not in out, out


def test_bad_config_is_refused_with_the_field(tmp_path):
    conf = tmp_path / "service.yml"
    cases = {
        "remote: {mqtt: {address: 'tcp://127.0.0.1:1883', clientid: a, cert: c, key: k}}":
            "remote.mqtt.address: must be ssl:// or wss://",
        "remote: {mqtt: {address: 'ssl://127.0.0.1:1884', clientid: a}}":
            "remote.mqtt.cert and remote.mqtt.key: required",
        "remote: {mqtt: {address: 'ssl://127.0.0.1:1884', cert: c, key: k}}":
            "remote.mqtt.clientid: required",
        "remote: {mqtt: {address: 'ssl://127.0.0.1:1884', clientid: a, cert: c, key: k}}":
            "remote.http.address: required",
        "remote: {mqtt: {address: 'ssl://x:1', clientid: a, cert: c, key: k}, http: {address: 'http://x'}}":
            "remote.http.address: must be https://",
        "remote: {mqtt: {address: 'ssl://x:1', clientid: a, cert: c, key: k}, http: {address: 'https://x'},"
        " report: {interval: 1ms}}": "remote.report.interval",
    }
    for text, want in cases.items():
        conf.write_text(text + "\n")
        r = subprocess.run([binary("baetyl-agent"), "-c", str(conf)], cwd=tmp_path, capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1 and want in r.stderr, (text, r.stderr)
        assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
