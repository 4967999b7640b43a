"""Shared fixtures for the integration tests: they drive the real binaries built by
`make test` (BAETYL_BUILD points at that build) in temporary work dirs, on free ports of
127.0.0.1, and never leave a process behind."""
import os
import signal
import socket
import subprocess
import time

import pytest

SRC = os.environ.get("BAETYL_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BAETYL_BUILD") or os.path.join(SRC, "build", "san")
BIN = os.path.join(BUILD, "bin")


def binary(name):
    """Path of a built executable (baetyl, baetyl-hub, …); skips nothing: a missing
    binary is a failure, since `make test` builds them all."""
    path = os.path.join(BIN, name)
    assert os.path.exists(path), f"{path} not built"
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Polls pred() until it returns a truthy value; fails the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_port(port, host="127.0.0.1", timeout=10.0):
    def ok():
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            return False
    wait_for(ok, timeout, what=f"port {port}")


class Procs:
    """Starts processes in their own process groups and kills every group at teardown."""

    def __init__(self):
        self.procs = []

    def start(self, args, **kw):
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(args, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=15):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        return p.returncode

    def cleanup(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def procs():
    ps = Procs()
    yield ps
    ps.cleanup()


# ---- the hub (baetyl-hub) run standalone -------------------------------------------------

HUB_PRINCIPALS = """
principals:
  - username: test
    password: hahaha
    permissions:
      - {action: pub, permit: ['#']}
      - {action: sub, permit: ['#']}
  - username: limited
    password: secret
    permissions:
      - {action: pub, permit: ['a/#', 'will/ok']}
      - {action: sub, permit: ['a/#', 'test/#']}
"""


class Hub:
    """One baetyl-hub process on a free port in its own directory (config conf.yml,
    storage under data/, log in hub.log)."""

    def __init__(self, procs, workdir, extra="", principals=HUB_PRINCIPALS):
        self.procs = procs
        self.dir = str(workdir)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "conf.yml")
        self.log = os.path.join(self.dir, "hub.log")
        with open(self.conf, "w") as f:
            f.write(f"listen: ['tcp://127.0.0.1:{self.port}']\nstorage: {{dir: data}}\n")
            f.write(principals)
            f.write(extra)
        self.proc = None

    def start(self, wait=True):
        self.logf = open(self.log, "ab")
        self.proc = self.procs.start([binary("baetyl-hub"), "-c", self.conf], cwd=self.dir,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        if wait:
            wait_port(self.port)
        return self

    def stop(self, sig=signal.SIGTERM):
        rc = self.procs.stop(self.proc, sig)
        self.logf.close()
        return rc

    def read_log(self):
        with open(self.log, errors="replace") as f:
            return f.read()


@pytest.fixture
def hub_factory(procs, tmp_path):
    """make(extra_yaml="", principals=HUB_PRINCIPALS, start=True) -> a running Hub."""
    n = [0]

    hubs = []

    def make(extra="", principals=HUB_PRINCIPALS, start=True):
        n[0] += 1
        d = tmp_path / f"hub{n[0]}"
        d.mkdir()
        h = Hub(procs, d, extra, principals)
        hubs.append(h)
        return h.start() if start else h
    yield make
    # A clean stop: exit code 0 and no sanitizer report (leaks, UB) in the log.
    for h in hubs:
        if h.proc is not None and h.proc.poll() is None:
            rc = h.stop()
            log = h.read_log()
            assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]
            assert rc == 0, f"hub exited with {rc}: {log[-2000:]}"


@pytest.fixture
def hub(hub_factory):
    """A hub with the default principals and no routes."""
    return hub_factory()


# ---- raw MQTT 3.1.1 over a socket: malformed packets, exact flags, no automatic acks ------

import struct  # noqa: E402


def mqtt_len(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack(">H", len(b)) + b


def mqtt_packet(first, body):
    return bytes([first]) + mqtt_len(len(body)) + body


def mqtt_connect(client_id="", username=None, password=None, clean=True, keepalive=60,
                 will=None, level=4):
    """will = (topic, payload, qos, retain)."""
    flags = 0x02 if clean else 0
    payload = mqtt_str(client_id)
    if will:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
        payload += mqtt_str(will[0]) + mqtt_str(will[1])
    if username is not None:
        flags |= 0x80
        payload += mqtt_str(username)
    if password is not None:
        flags |= 0x40
        payload += mqtt_str(password)
    name = b"MQTT" if level == 4 else b"MQIsdp"
    body = mqtt_str(name) + bytes([level, flags]) + struct.pack(">H", keepalive) + payload
    return mqtt_packet(0x10, body)


def mqtt_publish(topic, payload=b"", qos=0, retain=False, pid=1, dup=False):
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = mqtt_str(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return mqtt_packet(first, body)


def mqtt_subscribe(pid, filters):
    body = struct.pack(">H", pid) + b"".join(mqtt_str(t) + bytes([q]) for t, q in filters)
    return mqtt_packet(0x82, body)


def mqtt_puback(pid):
    return mqtt_packet(0x40, struct.pack(">H", pid))


class RawClient:
    """A socket speaking raw MQTT: recv() returns (type, flags, body) or None on close."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return False
        except OSError:
            d = b""
        if not d:
            raise EOFError
        self.buf += d
        return True

    def recv(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        try:
            while True:
                if len(self.buf) >= 2:
                    n, mul, i = 0, 1, 1
                    while i < len(self.buf):
                        b = self.buf[i]
                        n += (b & 0x7F) * mul
                        mul *= 128
                        i += 1
                        if not b & 0x80:
                            break
                    else:
                        i = None
                    if i is not None and len(self.buf) >= i + n:
                        first = self.buf[0]
                        body = self.buf[i:i + n]
                        self.buf = self.buf[i + n:]
                        return (first >> 4, first & 0x0F, body)
                if time.monotonic() > deadline:
                    raise TimeoutError("no packet in time")
                self._fill(deadline)
        except EOFError:
            return None

    def connect(self, **kw):
        """Sends CONNECT, returns the CONNACK return code (or None when closed)."""
        self.send(mqtt_connect(**kw))
        p = self.recv()
        if p is None:
            return None
        assert p[0] == 2, p
        return p[2][1]

    def closed(self, timeout=5.0):
        """True when the hub closes the connection within timeout (other packets skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.recv(max(0.01, deadline - time.monotonic())) is None:
                    return True
            except TimeoutError:
                return False
        return False

    def close(self):
        self.sock.close()


def parse_publish(flags, body):
    """(topic, payload, qos, retain, dup, pid) of a received PUBLISH."""
    tl = struct.unpack(">H", body[:2])[0]
    topic = body[2:2 + tl].decode()
    qos = (flags >> 1) & 3
    pos = 2 + tl
    pid = 0
    if qos:
        pid = struct.unpack(">H", body[pos:pos + 2])[0]
        pos += 2
    return topic, body[pos:], qos, bool(flags & 1), bool(flags & 8), pid


# ---- the tests' own Docker engine ---------------------------------------------------------
# Docker tests never use the machine's engine: one dockerd per test run, with its data,
# exec state, containerd and socket under a temp dir, no default bridge and no iptables
# rules, so it coexists with any other engine. Images built for a test stay in its data root
# for the other tests of the run; everything goes with the engine at the end of the run.

class DockerEngine:
    def __init__(self, root):
        self.root = root
        self.host = f"unix://{root}/docker.sock"
        self.proc = None
        self.built = set()  # (image, tag) built by build_images in this run

    def docker(self, *args, timeout=120):
        return subprocess.run(["docker", "-H", self.host, *args], capture_output=True, text=True,
                              timeout=timeout)

    def ok(self):
        try:
            return self.docker("info", timeout=20).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def build_images(self, *names, tag="test"):
        """Builds the images of this build (docker/build-images.sh) that are not built yet in
        this run; returns the seconds it took."""
        want = [n for n in names if (n, tag) not in self.built]
        if not want:
            return 0.0
        t0 = time.monotonic()
        env = dict(os.environ, DOCKER_HOST=self.host)
        script = os.path.join(SRC, "docker", "build-images.sh")
        r = subprocess.run([script, "-b", BUILD, "-t", tag, *want], capture_output=True, text=True,
                           timeout=900, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        self.built.update((n, tag) for n in want)
        return time.monotonic() - t0


_DOCKER = {}  # "engine": the run's DockerEngine, or "skip": why there is none


def _start_docker_engine():
    import shutil
    import tempfile
    if not shutil.which("docker"):
        return "docker cannot run here: no docker client (apt-get install docker.io)"
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not os.path.exists(dockerd):
        return "docker cannot run here: dockerd is not installed (apt-get install docker.io)"
    if os.geteuid() != 0:
        return "docker cannot run here: dockerd needs root"
    # Without a default bridge, host-gateway (host.docker.internal) needs an address of the
    # host that containers reach: the one of the default route.
    gw = []
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: only the route is looked up
        gw = [f"--host-gateway-ip={probe.getsockname()[0]}"]
    except OSError:
        pass
    finally:
        probe.close()
    root = tempfile.mkdtemp(prefix="bt-dockerd-", dir="/tmp")  # short: socket paths
    e = DockerEngine(root)
    # containerd namespaces allow [A-Za-z0-9] runs joined by single . _ or -; mkdtemp's
    # random part may hold "__", so the namespace gets its own hex id
    import uuid
    ns = f"bt-dockerd-{uuid.uuid4().hex[:12]}"
    log = open(os.path.join(root, "dockerd.log"), "wb")
    e.proc = subprocess.Popen(
        [dockerd, "--data-root", f"{root}/data", "--exec-root", f"{root}/exec", "-H", e.host,
         "--pidfile", f"{root}/dockerd.pid", "--bridge=none", "--iptables=false", "--ip-masq=false",
         "--containerd-namespace", ns, "--containerd-plugins-namespace", f"{ns}-plugins", *gw],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 60
    while not e.ok():
        if e.proc.poll() is not None or time.monotonic() > deadline:
            _stop_docker_engine(e)
            return "docker cannot run here: dockerd did not start"
        time.sleep(0.5)
    _DOCKER["old_host"] = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = e.host  # the masters and the docker client of the tests
    return e


def _stop_docker_engine(e):
    import shutil
    bridges = []
    if e.proc and e.proc.poll() is None:
        if e.ok():
            ids = e.docker("ps", "-aq").stdout.split()
            if ids:
                e.docker("rm", "-f", *ids)
            # A network's bridge can outlive the engine: pruned here, deleted below if not.
            nets = e.docker("network", "ls", "-q", "--no-trunc", "--filter", "driver=bridge")
            bridges = [f"br-{n[:12]}" for n in nets.stdout.split()]
            e.docker("network", "prune", "-f")
        e.proc.terminate()
        try:
            e.proc.wait(60)
        except subprocess.TimeoutExpired:
            e.proc.kill()
            e.proc.wait()
    for br in bridges:
        if os.path.exists(f"/sys/class/net/{br}"):
            subprocess.run(["ip", "link", "del", br], capture_output=True)
    with open("/proc/self/mounts") as f:  # never delete through a mount left behind
        mounts = [ln.split()[1] for ln in f if ln.split()[1].startswith(e.root + "/")]
    for mnt in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", mnt], capture_output=True)
    shutil.rmtree(e.root, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_engine():
    """The run's own Docker engine (see above), started at first use, stopped at the end of
    the run; DOCKER_HOST points at it meanwhile."""
    if "engine" not in _DOCKER and "skip" not in _DOCKER:
        r = _start_docker_engine()
        _DOCKER["skip" if isinstance(r, str) else "engine"] = r
    if "skip" in _DOCKER:
        pytest.skip(_DOCKER["skip"])
    return _DOCKER["engine"]


def pytest_sessionfinish(session, exitstatus):
    e = _DOCKER.pop("engine", None)
    if e:
        _stop_docker_engine(e)
        old = _DOCKER.pop("old_host", None)
        if old is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = old


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """For a parallel run (`-n N --dist loadgroup`, pytest-xdist): the tests of one file stay
    on one worker (their module fixtures are made once), and every test that uses the Docker
    engine shares one worker, so one dockerd builds each image once."""
    for item in items:
        group = "docker" if "docker_engine" in item.fixturenames else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))
