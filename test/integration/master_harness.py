"""Helpers for the master's integration tests (no tests here): a temporary work dir with
conf.yml, packages made of small shell or Python scripts, the real `baetyl` started in it,
an HTTP client for its API (unix socket or tcp), and a cleanup that kills every process the
test started (found through a marker variable the master passes on to its services)."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import SRC, binary, free_port, wait_for

MARKER = "BAETYL_TEST_MARKER"
PY = "/usr/bin/python3"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def services_out(workdir):
    """The output files of every native instance of the master in workdir, as one text."""
    base = os.path.join(workdir, "var/log/baetyl")
    out = []
    for svc in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        d = os.path.join(base, svc)
        if not os.path.isdir(d):
            continue
        order = (lambda n: (n.replace(".log.1", ""), not n.endswith(".1")))
        for name in sorted(os.listdir(d), key=order):
            try:
                with open(os.path.join(d, name), errors="replace") as f:
                    out.append(f.read())
            except OSError:
                pass
    return "".join(out)


def proc_alive(pid):
    """True when pid runs (a zombie waiting for its parent does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return st[st.rindex(")") + 2] not in "ZX"


def marked_pids(marker):
    """Live processes whose environment carries this marker."""
    out = []
    needle = f"{MARKER}={marker}".encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needle in env and proc_alive(int(d)):
            out.append(int(d))
    return out


class Master:
    """One work dir and the `baetyl` started in it."""

    def __init__(self, procs, api="unix", grace="2s", conf_extra=""):
        self.procs = procs
        # Short, so the socket path stays well under 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="btm", dir="/tmp")
        self.marker = uuid.uuid4().hex
        self.proc = None
        self.exe = None  # the master binary to start; None: the one under test
        self.api_kind = api
        if api == "unix":
            self.sock = os.path.join(self.dir, "b.sock")
            address = "unix://" + self.sock
        else:
            self.port = free_port()
            address = f"tcp://127.0.0.1:{self.port}"
        self.address = address
        self.write("etc/baetyl/conf.yml",
                   f"mode: native\ngrace: {grace}\nserver:\n  address: {address}\n"
                   f"logger:\n  level: debug\n{conf_extra}")
        os.makedirs(self.path("var/db/baetyl"), exist_ok=True)

    # ---- files -------------------------------------------------------------------------
    def path(self, rel):
        return os.path.join(self.dir, rel)

    def write(self, rel, text, mode=None):
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        if mode is not None:
            os.chmod(p, mode)
        return p

    def read(self, rel, default=None):
        try:
            with open(self.path(rel)) as f:
                return f.read()
        except FileNotFoundError:
            return default

    def package(self, name, script, entry="bin/prog", where=None):
        """A native package: <where or var/db/baetyl/<name>>/package.yml + its program."""
        base = where or f"var/db/baetyl/{name}"
        self.write(f"{base}/package.yml", f"entry: {entry}\n")
        self.write(f"{base}/{entry}", script, mode=0o755)
        return base

    def app(self, text, rel="var/db/baetyl/application.yml"):
        return self.write(rel, text)

    def log(self):
        return self.read("var/log/baetyl/baetyl.log", "")

    def services_out(self):
        """What the native instances printed: their files under var/log/baetyl/<service>/
        (the older .log.1 first), as one text."""
        return services_out(self.dir)

    def ota_log(self):
        text = self.read("var/db/baetyl/ota.log", "")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # ---- process -----------------------------------------------------------------------
    def cmd(self, *args, timeout=60):
        env = dict(os.environ, **{MARKER: self.marker})
        return subprocess.run([binary("baetyl"), *args, "-w", self.dir], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def start(self, wait=True, expect_fail=False):
        env = dict(os.environ, **{MARKER: self.marker})
        self.out = open(self.path("master.out"), "w")
        self.proc = self.procs.start([self.exe or binary("baetyl"), "start", "-w", self.dir], env=env,
                                     stdout=self.out, stderr=subprocess.STDOUT)
        if expect_fail:
            self.proc.wait(30)
            return self.proc.returncode
        if wait:
            wait_for(lambda: "services started" in self.log() or self.proc.poll() is not None, 30,
                     what="master start")
            assert self.proc.poll() is None, f"master exited: {self.read('master.out')}{self.log()}"
        return self.proc

    def start_again(self):
        """Starts a master that ran before (e.g. after kill9): waits for this start's
        "services started"."""
        n = self.log().count("services started")
        self.start(wait=False)
        wait_for(lambda: self.log().count("services started") > n or self.proc.poll() is not None,
                 30, what="master start")
        assert self.proc.poll() is None, self.read("master.out")

    def stop(self, timeout=30):
        rc = self.procs.stop(self.proc, signal.SIGTERM, timeout)
        self.out.close()
        return rc

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.out.close()

    # ---- API ---------------------------------------------------------------------------
    def conn(self):
        if self.api_kind == "unix":
            return UnixHTTPConnection(self.sock)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def cli_token(self):
        return self.read("var/run/baetyl/cli.token").strip()

    def request(self, method, path, body=None, user=None, password=None, headers=None):
        """(status, body text). Default account: the CLI's."""
        if user is None:
            user, password = "baetyl.cli", self.cli_token()
        h = {}
        if user is not False:
            h["x-openedge-username"] = user
            h["x-openedge-password"] = password or ""
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, r.read().decode(errors="replace")
        finally:
            c.close()

    def inspect(self):
        st, body = self.request("GET", "/v1/system/inspect")
        assert st == 200, body
        return json.loads(body)

    def service(self, name):
        for s in self.inspect()["services"]:
            if s["name"] == name:
                return s
        return None

    def instance(self, svc, inst):
        s = self.service(svc)
        for i in (s or {}).get("instances", []):
            if i["name"] == inst:
                return i
        return None

    def running_pid(self, svc, inst=None):
        i = self.instance(svc, inst or svc)
        if i and i["status"] == "running" and "process" in i:
            return i["process"]["id"]
        return None

    def wait_running(self, svc, inst=None, timeout=15):
        return wait_for(lambda: self.running_pid(svc, inst), timeout, what=f"{inst or svc} running")

    def update(self, path, trace="t1"):
        return self.request("PUT", "/v1/system/update", {"type": "APP", "path": path, "trace": trace})

    def wait_ota_step(self, trace, steps, timeout=30):
        def done():
            for line in self.ota_log():
                if line.get("trace") == trace and line.get("step") in steps:
                    return line
            return None
        return wait_for(done, timeout, what=f"ota step {steps} of {trace}")

    # ---- cleanup -----------------------------------------------------------------------
    def sanitizer_report(self):
        """Sanitizer complaints (leaks at exit included) the master printed, or ''."""
        out = self.read("master.out", "") + self.services_out()
        for key in ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error:"):
            if key in out:
                return out
        return ""

    def finish(self):
        """Stops a master the test left running; returns its exit code (None if none ran)."""
        if self.proc and self.proc.poll() is None:
            return self.stop()
        return None

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        for pid in marked_pids(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def master(procs):
    """A factory: master(api='unix'|'tcp', grace='2s', conf_extra='') -> Master."""
    made = []

    def make(**kw):
        m = Master(procs, **kw)
        made.append(m)
        return m
    yield make
    problems = []
    for m in made:
        try:
            rc = m.finish()
            if rc not in (None, 0):
                problems.append(f"master exited with {rc} at SIGTERM")
            rep = m.sanitizer_report()
            if rep:
                problems.append(rep[-4000:])
        finally:
            m.cleanup()
    assert not problems, "\n".join(problems)


NEW_VERSION = "9.9.9-mst"


@pytest.fixture(scope="module")
def new_build(tmp_path_factory):
    """The master built again from the same source with version NEW_VERSION, for the master
    binary OTA (MST) tests."""
    d = tmp_path_factory.mktemp("mst-build")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run(["make", "-C", SRC, "-j2", f"BUILD={d}", f"VERSION={NEW_VERSION}",
                        f"{d}/bin/baetyl"], env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return str(d / "bin" / "baetyl")


# Programs the tests run as native packages. They write what they see into the `data`
# volume (mounted at `data` in the service dir), one file per instance.
SLEEPER = """#!/bin/sh
mkdir -p data
echo "$BAETYL_SERVICE_INSTANCE_NAME $$ $(date +%s.%N)" >> data/starts-$BAETYL_SERVICE_INSTANCE_NAME
trap 'echo term >> data/term-$BAETYL_SERVICE_INSTANCE_NAME; exit 0' TERM
while :; do sleep 0.2; done
"""

CRASHER = """#!/bin/sh
mkdir -p data
echo "$(date +%s.%N)" >> data/starts-$BAETYL_SERVICE_INSTANCE_NAME
exit ${EXIT_CODE:-3}
"""


# The start of a Python package program that calls the master API with the account its
# environment gives it: call(method, path, body=None) -> (status, text).
PY_API = """#!/usr/bin/python3
import http.client, json, os, signal, socket, sys, time
os.makedirs("data", exist_ok=True)
env = os.environ
inst, svc, addr = env["BAETYL_SERVICE_INSTANCE_NAME"], env["BAETYL_SERVICE_NAME"], env["BAETYL_MASTER_API_ADDRESS"]

class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(addr[len("unix://"):])

def call(method, path, body=None):
    if addr.startswith("unix://"):
        c = Unix("localhost", timeout=10)
    else:
        host, port = addr[len("tcp://"):].rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=10)
    h = {"x-openedge-username": svc, "x-openedge-password": env.get("BAETYL_SERVICE_TOKEN", "")}
    c.request(method, path, body=None if body is None else json.dumps(body), headers=h)
    r = c.getresponse()
    return r.status, r.read().decode()

def save(name, obj):
    with open("data/%s.tmp" % name, "w") as f:
        json.dump(obj, f)
    os.rename("data/%s.tmp" % name, "data/%s" % name)
"""


def app_yaml(services, volumes, version="v1"):
    """application.yml text from plain dicts (JSON is valid YAML)."""
    return json.dumps({"version": version, "services": services, "volumes": volumes}, indent=1)


def svc(name, image, replica=1, mounts=None, **kw):
    d = {"name": name, "image": image, "replica": replica,
         "mounts": mounts if mounts is not None else [
             {"name": image, "path": f"lib/baetyl/{image}", "readonly": True},
             {"name": "data", "path": "data"}]}
    d.update(kw)
    return d


def vols(*packages, data="var/db/data"):
    v = [{"name": p, "path": f"var/db/baetyl/{p}"} for p in packages]
    v.append({"name": "data", "path": data})
    return v


def starts(m, inst):
    """Start lines a program wrote for instance inst."""
    text = m.read(f"var/db/data/starts-{inst}", "")
    return [line for line in text.splitlines() if line.strip()]


def log_times(m, pattern):
    """Times (epoch seconds) of the master log lines matching pattern."""
    out = []
    for line in m.log().splitlines():
        if re.search(pattern, line):
            t = re.search(r'time="([^"]+)"', line).group(1)
            out.append(t)
    return out


# ---- from the acceptance suite ----------------------------------------------------------

RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def rfc3339_ns(s):
    """Nanoseconds since the epoch of an RFC 3339 time (fraction up to 9 digits)."""
    import calendar
    mt = RFC3339.match(s)
    assert mt, f"not RFC 3339: {s!r}"
    y, mo, d, h, mi, sec = (int(mt.group(i)) for i in range(1, 7))
    frac = (mt.group(8) or "").ljust(9, "0")
    t = calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0))
    tz = mt.group(9)
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        t -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return t * 10**9 + int(frac)


def env_file(m, inst):
    text = m.read(f"var/db/data/env-{inst}", "")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def combined(r):
    return r.stdout + r.stderr


SORTED_ENV_DUMPER = """#!/bin/sh
mkdir -p data
env | sort > data/env-$BAETYL_SERVICE_INSTANCE_NAME.tmp
mv data/env-$BAETYL_SERVICE_INSTANCE_NAME.tmp data/env-$BAETYL_SERVICE_INSTANCE_NAME
trap 'exit 0' TERM
while :; do sleep 0.2; done
"""


def pkg_svc(name="a", **kw):
    return svc(name, "pkg", **kw)
