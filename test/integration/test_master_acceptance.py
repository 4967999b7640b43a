"""Acceptance tests of the master `baetyl` against SPEC §1-10, written from the SPEC and
the seed docs only (chapters 2.3, 6.1, 6.2, 17), through the real binary: the CLI and its
work dir, config validation, the native engine's service dirs, environment, process groups
and stats, supervision defaults, the API's exact answers, application OTA and its ota.log,
and the inspect document. Complements test_master_{cli,api,ota,restart}.py."""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid

import pytest
import yaml

from conftest import binary, wait_for
from test_master_util import (CRASHER, MARKER, SLEEPER, UnixHTTPConnection, app_yaml,  # noqa: F401
                              marked_pids, master, proc_alive, starts, svc, vols)

# ---- helpers -------------------------------------------------------------------------------

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


def bash_package(m, name):
    """A package whose entry is bash itself: with args ['-c', script], bash's $0 is the
    argv[0] the master gave, which a script file could never show."""
    base = f"var/db/baetyl/{name}"
    m.write(f"{base}/package.yml", "entry: bin/prog\n")
    os.makedirs(m.path(f"{base}/bin"), exist_ok=True)
    os.symlink("/bin/bash", m.path(f"{base}/bin/prog"))
    return base


def combined(r):
    return r.stdout + r.stderr


ENV_DUMPER = """#!/bin/sh
mkdir -p data
env | sort > data/env-$BAETYL_SERVICE_INSTANCE_NAME.tmp
mv data/env-$BAETYL_SERVICE_INSTANCE_NAME.tmp data/env-$BAETYL_SERVICE_INSTANCE_NAME
trap 'exit 0' TERM
while :; do sleep 0.2; done
"""

# §8: the names the master sets (BAETYL_HOST_SN only with snfile, the socket only with unix).
SECTION8 = ["HOST_OS", "HOST_ID", "MASTER_API_ADDRESS", "MASTER_API_SOCKET", "MASTER_API_VERSION",
            "SERVICE_MODE", "SERVICE_NAME", "SERVICE_TOKEN", "SERVICE_INSTANCE_NAME"]


# ---- §1 CLI ----------------------------------------------------------------------------------

def run(args, **kw):
    return subprocess.run([binary("baetyl"), *args], capture_output=True, text=True, timeout=60, **kw)


def test_help_on_every_command_and_no_command():
    tmp = tempfile.mkdtemp(prefix="btacc")
    try:
        r = run(["--help"], cwd=tmp)
        assert r.returncode == 0, r
        for cmd in ("start", "check", "version", "stop", "status"):
            assert cmd in r.stdout, f"--help lists {cmd}: {r.stdout}"
        for cmd in ("start", "check", "stop", "status", "version"):
            r = run([cmd, "--help"], cwd=tmp)
            assert r.returncode == 0, (cmd, r)
            assert f"baetyl {cmd}" in r.stdout, (cmd, r.stdout)
            if cmd in ("start", "check"):
                assert "-w" in r.stdout and "-c" in r.stdout, (cmd, r.stdout)
        # `start --help` only prints: nothing is started, no file is made in the work dir
        r = run(["start", "--help", "-w", tmp])
        assert r.returncode == 0
        assert os.listdir(tmp) == []
        r = run([], cwd=tmp)
        assert r.returncode != 0 and "start" in combined(r), r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_version_prints_four_facts():
    r = run(["version"])
    assert r.returncode == 0, r
    out = r.stdout
    for key in ("ersion", "evision", "ompiler", "latform"):
        assert key in out, out
    assert "linux/" in out


def test_check_with_missing_conf_uses_defaults(master):
    m = master()
    os.unlink(m.path("etc/baetyl/conf.yml"))
    r = m.cmd("check")
    assert r.returncode == 0 and r.stdout.strip() == "OK!", r


def test_check_c_option_picks_another_conf(master):
    m = master()
    m.write("etc/baetyl/bad.yml", "mode: kubernetes\n")
    m.write("etc/baetyl/good.yml", "mode: native\n")
    r = m.cmd("check", "-c", "etc/baetyl/bad.yml")
    assert r.returncode == 1 and "mode" in combined(r) and "OK!" not in r.stdout, r
    r = m.cmd("check", "-c", m.path("etc/baetyl/bad.yml"))
    assert r.returncode == 1, "an absolute -c path works too"
    r = m.cmd("check", "-c", "etc/baetyl/good.yml")
    assert r.returncode == 0 and r.stdout.strip() == "OK!", r
    r = m.cmd("check")
    assert r.returncode == 0, "the default conf.yml is still the one used without -c"


def test_relative_w_option(master):
    m = master()
    m.write("etc/baetyl/conf.yml", "mode: kubernetes\n")
    r = subprocess.run([binary("baetyl"), "check", "-w", "."], cwd=m.dir, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "mode" in combined(r), r


# conf.yml texts that `check` must refuse, and a word of the field the error names.
BAD_CONFS = {
    "mode": ("mode: kubernetes\n", "mode"),
    "scheme-http": ("mode: native\nserver:\n  address: http://127.0.0.1:50050\n", "server.address"),
    "scheme-udp": ("mode: native\nserver:\n  address: udp://127.0.0.1:50050\n", "server.address"),
    "no-scheme": ("mode: native\nserver:\n  address: 127.0.0.1:50050\n", "server.address"),
    "grace": ("mode: native\ngrace: 5 parsecs\n", "grace"),
    "server-timeout": ("mode: native\nserver:\n  timeout: forever\n", "server.timeout"),
    "top-level-list": ("- mode\n- native\n", "conf.yml"),
    "server-scalar": ("mode: native\nserver: 5\n", "server"),
    "binary": ("\x00\x01\x02\xff", "conf.yml"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFS))
def test_check_refuses_bad_conf(master, case):
    text, field = BAD_CONFS[case]
    m = master()
    with open(m.path("etc/baetyl/conf.yml"), "w", encoding="latin-1") as f:
        f.write(text)
    r = m.cmd("check")
    assert r.returncode == 1, r
    assert "OK!" not in r.stdout
    assert field in combined(r), r
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr


def _svc(name="a", **kw):
    return svc(name, "pkg", **kw)


# application.yml texts `check` must refuse (native mode, the package exists), and the text
# the error must hold.
BAD_APPS = {
    "name-underscore-first": (app_yaml([_svc("_a")], vols("pkg")), "services[0].name"),
    "name-dot": (app_yaml([_svc("a.b")], vols("pkg")), "services[0].name"),
    "name-65-chars": (app_yaml([_svc("a" * 65)], vols("pkg")), "services[0].name"),
    "name-missing": (app_yaml([{"image": "pkg", "replica": 1}], vols("pkg")), "services[0].name"),
    "image-missing": (app_yaml([{"name": "a", "replica": 1}], vols("pkg")), "services[0].image"),
    "duplicate-service": (app_yaml([_svc("a"), _svc("b"), _svc("a")], vols("pkg")), "services[2].name"),
    "duplicate-volume": (app_yaml([_svc("a")], vols("pkg") + [{"name": "pkg", "path": "var/x"}]), "volumes[2].name"),
    "volume-name-pattern": (app_yaml([_svc("a")], vols("pkg") + [{"name": "bad name", "path": "x"}]),
                            "volumes[2].name"),
    "volume-path-missing": (app_yaml([_svc("a")], vols("pkg") + [{"name": "v"}]), "volumes[2].path"),
    "unknown-volume": (app_yaml([_svc("a", mounts=[{"name": "pkg", "path": "lib/baetyl/pkg"},
                                                   {"name": "ghost", "path": "x"}])], vols("pkg")),
                       "volume (ghost) not found"),
    "volume-escapes": (app_yaml([_svc("a")], vols("pkg") + [{"name": "v", "path": "var/../../x"}]), "escapes"),
    "volume-escapes-dotdot": (app_yaml([_svc("a")], vols("pkg") + [{"name": "v", "path": ".."}]), "escapes"),
    "backoff-min": (app_yaml([_svc("a", restart={"backoff": {"min": "soon"}})], vols("pkg")), "backoff.min"),
    "backoff-max": (app_yaml([_svc("a", restart={"backoff": {"max": "5 minutes"}})], vols("pkg")), "backoff.max"),
    "policy": (app_yaml([_svc("a", restart={"policy": "sometimes"})], vols("pkg")), "policy"),
    "replica-negative": (app_yaml([_svc("a", replica=-1)], vols("pkg")), "services[0].replica"),
    "replica-text": (app_yaml([_svc("a", replica="many")], vols("pkg")), "services[0].replica"),
    "retry-max-text": (app_yaml([_svc("a", restart={"retry": {"max": "x"}})], vols("pkg")), "retry.max"),
    "services-map": ("services: {a: 1}\n", "services"),
    "env-list": (app_yaml([_svc("a", env=["A=1"])], vols("pkg")), "services[0].env"),
    "top-level-list": ("- a\n- b\n", "application.yml"),
    "scalar": ("hello\n", "application.yml"),
    "binary": ("\x00\xff\xfe garbage", "application.yml"),
}


@pytest.mark.parametrize("case", sorted(BAD_APPS))
def test_check_refuses_bad_application(master, case):
    text, want = BAD_APPS[case]
    m = master()
    m.package("pkg", SLEEPER)
    with open(m.path("var/db/baetyl/application.yml"), "w", encoding="latin-1") as f:
        f.write(text)
    r = m.cmd("check")
    assert r.returncode == 1, r
    assert "OK!" not in r.stdout
    assert want in combined(r), r
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr


def test_check_accepts_edge_names_and_durations(master):
    m = master()
    m.package("pkg", SLEEPER)
    restart = {"policy": "on-failure", "retry": {"max": 3},
               "backoff": {"min": "500ms", "max": "1m", "factor": 1.5}}
    docker_only = {"ports": ["1883:1883", "0.0.0.0:8883:8883/tcp"], "devices": ["/dev/video0", "/dev/sda:/dev/xvdc:r"],
                   "resources": {"cpu": {"cpus": 1.5, "setcpus": "0-2"}, "memory": {"limit": "500m", "swap": "1g"},
                                 "pids": {"limit": 100}}}
    # docker-only fields are accepted (and ignored) in native mode
    m.app(app_yaml([_svc("a" * 64), _svc("0_x-Y", restart=restart), _svc("rt", replica=0, **docker_only)],
                   vols("pkg"), version="v7"))
    r = m.cmd("check")
    assert r.returncode == 0 and r.stdout.strip() == "OK!", r


def test_default_work_dir_is_parent_of_binary_dir(procs):
    """A copy of the binary in <tmp>/bin finds <tmp>/etc/baetyl/conf.yml and runs in <tmp>
    without -w, whatever the current directory."""
    root = tempfile.mkdtemp(prefix="btw", dir="/tmp")
    marker = uuid.uuid4().hex
    env = dict(os.environ, **{MARKER: marker})
    try:
        os.makedirs(os.path.join(root, "bin"))
        exe = os.path.join(root, "bin", "baetyl")
        shutil.copy2(binary("baetyl"), exe)
        os.makedirs(os.path.join(root, "etc/baetyl"))
        conf = os.path.join(root, "etc/baetyl/conf.yml")
        with open(conf, "w") as f:
            f.write("mode: kubernetes\n")
        r = subprocess.run([exe, "check"], cwd="/", capture_output=True, text=True, timeout=30, env=env)
        assert r.returncode == 1 and "mode" in combined(r), f"the conf of <tmp> was read: {r}"
        sock = os.path.join(root, "b.sock")
        with open(conf, "w") as f:
            f.write(f"mode: native\ngrace: 2s\nserver:\n  address: unix://{sock}\n")
        pkg = os.path.join(root, "var/db/baetyl/pkg")
        os.makedirs(os.path.join(pkg, "bin"))
        with open(os.path.join(pkg, "package.yml"), "w") as f:
            f.write("entry: bin/prog\n")
        with open(os.path.join(pkg, "bin/prog"), "w") as f:
            f.write(SLEEPER)
        os.chmod(os.path.join(pkg, "bin/prog"), 0o755)
        with open(os.path.join(root, "var/db/baetyl/application.yml"), "w") as f:
            f.write(app_yaml([svc("a", "pkg")], vols("pkg"), version="vdef"))
        r = subprocess.run([exe, "check"], cwd="/", capture_output=True, text=True, timeout=30, env=env)
        assert r.returncode == 0 and r.stdout.strip() == "OK!", r
        out = open(os.path.join(root, "master.out"), "w")
        p = procs.start([exe, "start"], cwd="/", env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(os.path.join(root, "var/db/data/starts-a")) or p.poll() is not None,
                 30, what="the service of the default work dir")
        assert p.poll() is None, open(os.path.join(root, "master.out")).read()
        assert os.path.exists(os.path.join(root, "var/log/baetyl/baetyl.log")), "default log path"
        r = subprocess.run([exe, "status", "--json"], cwd="/", capture_output=True, text=True, timeout=30,
                           env=env)
        assert r.returncode == 0, r
        j = json.loads(r.stdout)
        assert j["software"]["pwd"] == root
        assert j["software"]["conf_version"] == "vdef"
        r = subprocess.run([exe, "stop"], cwd="/", capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r
        p.wait(10)
        out.close()
        assert p.returncode == 0
        text = open(os.path.join(root, "master.out")).read()
        assert "Sanitizer" not in text and "runtime error" not in text, text
        assert not os.path.exists(sock)
        assert marked_pids(marker) == []
    finally:
        for pid in marked_pids(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(root, ignore_errors=True)


# ---- §1/§3/§4 layout and the native engine ------------------------------------------------

def test_layout_order_replicas_and_stats_file(master):
    m = master()
    m.package("pkg", SLEEPER)
    lazy = {"name": "lazy", "image": "pkg", "mounts": [{"name": "pkg", "path": "lib/baetyl/pkg"}]}  # no replica
    m.app(app_yaml([_svc("z", replica=3), _svc("a"), _svc("m"), lazy], vols("pkg")))
    m.start()
    for inst in ("z", "z.i1", "z.i2", "a", "m"):
        m.wait_running(inst.split(".")[0], inst)
    j = m.inspect()
    assert [s["name"] for s in j["services"]] == ["z", "a", "m", "lazy"]
    z = j["services"][0]
    assert [i["name"] for i in z["instances"]] == ["z", "z.i1", "z.i2"]
    # replica defaults to 0: defined, not started
    assert j["services"][3]["instances"] == []
    assert not starts(m, "lazy")
    # services start in list order
    first = {s["name"]: min(rfc3339_ns(i["start_time"]) for i in s["instances"])
             for s in j["services"] if s["instances"]}
    assert first["z"] < first["a"] < first["m"], first
    # var/db/baetyl/application.stats: YAML, service -> instance -> stats
    doc = yaml.safe_load(m.read("var/db/baetyl/application.stats"))
    assert isinstance(doc, dict) and set(["z", "a", "m"]) <= set(doc), doc
    assert set(doc["z"]) == {"z", "z.i1", "z.i2"}, doc["z"]
    pids = {i["name"]: i["process"]["id"] for s in j["services"] for i in s["instances"]}
    for s in ("z", "a", "m"):
        for inst, st in doc[s].items():
            assert st["process"]["id"] == pids[inst], (inst, st)
    # the master log is logrus text
    lines = [ln for ln in m.log().splitlines() if ln.strip()]
    assert lines
    for ln in lines[:20]:
        assert re.match(r'^time="[^"]+" level=(debug|info|warning|warn|error) msg=', ln), ln
    assert m.stop() == 0
    assert not os.path.exists(m.path("var/run/baetyl/services/z"))


def test_native_service_dir_mounts_package_and_argv0(master):
    m = master()
    bash_package(m, "acme/v2")
    # a stale file from an earlier run is wiped at start
    m.write("var/run/baetyl/services/s/stale", "old")
    script = ('mkdir -p data; echo "$0" > data/argv0-$BAETYL_SERVICE_INSTANCE_NAME; '
              'pwd > data/cwd-$BAETYL_SERVICE_INSTANCE_NAME; trap "exit 0" TERM; while :; do sleep 0.2; done')
    mounts = [{"name": "acme", "path": "lib/baetyl/acme/v2", "readonly": True},
              {"name": "data", "path": "data"},
              {"name": "conf", "path": "etc/baetyl"},           # nested mount path
              {"name": "fresh", "path": "var/db/baetyl/store"}]  # its source does not exist yet
    volumes = [{"name": "acme", "path": "var/db/baetyl/acme/v2"}, {"name": "data", "path": "var/db/data"},
               {"name": "conf", "path": "var/db/baetyl/s-conf"}, {"name": "fresh", "path": "var/db/baetyl/new/vol"}]
    m.write("var/db/baetyl/s-conf/service.yml", "hello: world\n")
    m.app(app_yaml([svc("s", "acme:v2", replica=2, mounts=mounts, args=["-c", script])], volumes))
    r = m.cmd("check")
    assert r.returncode == 0, f"image acme:v2 names the package acme/v2: {r}"
    m.start()
    wait_for(lambda: m.read("var/db/data/argv0-s.i1"), what="second replica")
    sdir = m.path("var/run/baetyl/services/s")
    assert not os.path.exists(os.path.join(sdir, "stale")), "the service dir is wiped at start"
    for inst in ("s", "s.i1"):
        assert m.read(f"var/db/data/argv0-{inst}").strip() == inst, "argv[0] is the instance name"
        assert m.read(f"var/db/data/cwd-{inst}").strip() == sdir, "cwd is the service dir"
    for rel, vol in [("lib/baetyl/acme/v2", "var/db/baetyl/acme/v2"), ("data", "var/db/data"),
                     ("etc/baetyl", "var/db/baetyl/s-conf"), ("var/db/baetyl/store", "var/db/baetyl/new/vol")]:
        link = os.path.join(sdir, rel)
        assert os.path.islink(link), f"{rel} is a symlink"
        assert os.path.realpath(link) == os.path.realpath(m.path(vol)), rel
    assert os.path.isdir(m.path("var/db/baetyl/new/vol")), "a missing volume source is created as a directory"
    with open(os.path.join(sdir, "etc/baetyl/service.yml")) as f:
        assert f.read() == "hello: world\n"
    link = os.path.join(sdir, "var/run/baetyl.sock")
    assert os.path.islink(link) and os.path.realpath(link) == os.path.realpath(m.sock)
    assert m.stop() == 0
    assert not os.path.exists(sdir), "the service dir is removed at stop"
    assert os.path.exists(m.path("var/db/baetyl/s-conf/service.yml")), "volume contents survive"


# Starts a child in the background (same process group), records its pid, and waits.
GROUP_LEADER = """#!/bin/sh
mkdir -p data
sleep 300 &
echo $! > data/child-$BAETYL_SERVICE_INSTANCE_NAME.tmp
mv data/child-$BAETYL_SERVICE_INSTANCE_NAME.tmp data/child-$BAETYL_SERVICE_INSTANCE_NAME
while :; do sleep 0.2; done
"""


def test_stop_reaches_the_whole_process_group_and_sigint_stops_gracefully(master):
    m = master(grace="3s")
    m.package("grp", GROUP_LEADER)
    m.app(app_yaml([svc("g", "grp"), svc("rt", "grp", replica=0)], vols("grp")))
    m.start()
    leader = m.wait_running("g")
    child = int(wait_for(lambda: m.read("var/db/data/child-g"), what="child pid"))
    assert os.getpgid(child) == leader, "the child is in the instance's process group"
    # the API stop route stops the group of a dynamic instance too
    assert m.request("PUT", "/v1/services/rt/instances/rt.d/start", {})[0] == 200
    dleader = m.wait_running("rt", "rt.d")
    dchild = int(wait_for(lambda: m.read("var/db/data/child-rt.d"), what="dynamic child pid"))
    assert m.request("PUT", "/v1/services/rt/instances/rt.d/stop")[0] == 200
    wait_for(lambda: not proc_alive(dleader) and not proc_alive(dchild), 5, what="dynamic group gone")
    # SIGINT stops the master like SIGTERM: every group, the socket, exit 0
    t0 = time.monotonic()
    rc = m.procs.stop(m.proc, signal.SIGINT, 30)
    m.out.close()
    assert rc == 0, m.read("master.out")
    assert time.monotonic() - t0 < 3 + 2.5
    assert not proc_alive(leader) and not proc_alive(child), "the whole group was stopped"
    assert not os.path.exists(m.sock), "the socket is removed at exit"
    assert marked_pids(m.marker) == []


def test_instances_hold_none_of_the_masters_files(master):
    """An instance inherits no descriptor of the master (API socket, log, pid file lock):
    after a kill -9 of the master, `status` and `stop` see no master although its
    instances live on."""
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([_svc("a")], vols("pkg")))
    m.start()
    pid = m.wait_running("a")
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if int(fd) > 2:
            assert not target.startswith("socket:"), f"fd {fd} -> {target}"
        for name in ("baetyl.log", "baetyl.pid", "ota.log", "application.stats", "cli.token"):
            assert not target.endswith(name), f"fd {fd} -> {target}"
    m.kill9()
    assert proc_alive(pid)
    r = m.cmd("status")
    assert r.returncode != 0 and "not running" in combined(r), r
    r = m.cmd("stop")
    assert r.returncode == 0 and "not running" in combined(r), r
    assert proc_alive(pid), "stop has no master to ask; the orphan waits for the next start"
    m.start()
    wait_for(lambda: not proc_alive(pid), 10, what="orphan recovered at start")
    assert m.stop() == 0


BUSY = """#!/bin/sh
while :; do :; done
"""


def test_instance_stats_come_from_proc(master):
    m = master(grace="1s")
    m.package("busy", BUSY)
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("busy", "busy"), svc("idle", "pkg")], vols("busy", "pkg")))
    m.start()
    bpid, ipid = m.wait_running("busy"), m.wait_running("idle")
    time.sleep(1.0)
    cpu_busy, cpu_idle = [], []
    for _ in range(3):
        b, i = m.instance("busy", "busy"), m.instance("idle", "idle")
        cpu_busy.append(b["cpu_stats"]["used_percent"])
        cpu_idle.append(i["cpu_stats"]["used_percent"])
        time.sleep(0.4)
    assert max(cpu_busy) > 10, f"a busy loop uses CPU: {cpu_busy}"
    assert min(cpu_idle) < 15, f"a sleeper hardly does: {cpu_idle}"
    for pid, name in ((bpid, "busy"), (ipid, "idle")):
        inst = m.instance(name, name)
        with open(f"/proc/{pid}/comm") as f:
            assert inst["process"] == {"id": pid, "name": f.read().strip()}
        with open(f"/proc/{pid}/status") as f:
            vmrss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024
        rss = inst["mem_stats"]["rss"]
        assert vmrss / 2 <= rss <= vmrss * 2, f"rss in bytes like /proc: {rss} vs {vmrss}"
        assert 0 <= inst["mem_stats"]["used_percent"] < 100
    m.stop()


@pytest.mark.parametrize("text", ["::: [[[\n", "\x00\xff", "- a\n- b\n", "a: {b: {process: {id: x, name: 5}}}\n"],
                         ids=["malformed", "binary", "list", "wrong-types"])
def test_hostile_stats_file_does_not_stop_a_start(master, text):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([_svc("a")], vols("pkg")))
    with open(m.path("var/db/baetyl/application.stats"), "w", encoding="latin-1") as f:
        f.write(text)
    m.start()
    m.wait_running("a")
    assert m.stop() == 0


def test_recovery_kills_only_the_same_program(master, procs):
    m = master()
    same = procs.start(["sleep", "300"])
    other = procs.start(["sleep", "300"])
    wait_for(lambda: all(open(f"/proc/{p.pid}/comm").read().strip() == "sleep" for p in (same, other)),
             what="sleepers exec'd")
    stats = {"old": {"old": {"name": "old", "status": "running", "process": {"id": same.pid, "name": "sleep"}},
                     "old.i1": {"name": "old.i1", "status": "running",
                                "process": {"id": other.pid, "name": "prog"}},
                     "old.i2": {"name": "old.i2", "status": "running",
                                "process": {"id": 4000000, "name": "prog"}}}}
    m.write("var/db/baetyl/application.stats", yaml.safe_dump(stats))
    m.start()
    wait_for(lambda: same.poll() is not None, 10, what="the recorded program killed")
    time.sleep(0.3)
    assert other.poll() is None, "a pid now running another program is left alone"
    assert m.stop() == 0


# ---- §8 environment ------------------------------------------------------------------------

def test_environment_twins_reserved_names_and_tokens(master, monkeypatch):
    # a master started from inside another service's instance must not pass that on
    monkeypatch.setenv("BAETYL_SERVICE_NAME", "leaked")
    monkeypatch.setenv("OPENEDGE_SERVICE_TOKEN", "leaked")
    monkeypatch.setenv("BAETYL_SERVICE_INSTANCE_NAME", "leaked")
    monkeypatch.setenv("MY_VAR", "from-master")
    monkeypatch.setenv("MASTER_ONLY", "passed-on")
    m = master()
    m.package("dump", ENV_DUMPER)
    forged = {k: "forged" for k in ("BAETYL_SERVICE_TOKEN", "BAETYL_MASTER_API_ADDRESS", "BAETYL_HOST_ID",
                                    "BAETYL_HOST_OS", "BAETYL_SERVICE_MODE", "BAETYL_MASTER_API_VERSION",
                                    "BAETYL_SERVICE_INSTANCE_NAME", "BAETYL_MASTER_API_SOCKET",
                                    "OPENEDGE_SERVICE_NAME", "OPENEDGE_SERVICE_TOKEN")}
    forged["MY_VAR"] = "mine"
    m.app(app_yaml([svc("one", "dump", env=forged), svc("two", "dump")], vols("dump")))
    m.start()
    wait_for(lambda: env_file(m, "one") and env_file(m, "two"), what="env dumps")
    e1, e2 = env_file(m, "one"), env_file(m, "two")
    assert e1["MY_VAR"] == "mine", "a service's env overrides the master's environment"
    assert e1["MASTER_ONLY"] == "passed-on" and e2["MY_VAR"] == "from-master"
    for env, name in ((e1, "one"), (e2, "two")):
        assert env["BAETYL_SERVICE_NAME"] == name and env["BAETYL_SERVICE_INSTANCE_NAME"] == name
        assert env["BAETYL_HOST_OS"] == "linux" and env["BAETYL_SERVICE_MODE"] == "native"
        assert env["BAETYL_MASTER_API_VERSION"] == "v1"
        assert env["BAETYL_MASTER_API_ADDRESS"] == "unix://var/run/baetyl.sock"
        assert env["BAETYL_MASTER_API_SOCKET"] == m.sock
        assert env["BAETYL_HOST_ID"] not in ("", "forged")
        assert env["BAETYL_SERVICE_TOKEN"] not in ("", "forged")
        assert "BAETYL_HOST_SN" not in env and "OPENEDGE_HOST_SN" not in env, "no snfile, no SN"
        for n in SECTION8:
            assert env.get("OPENEDGE_" + n) == env["BAETYL_" + n], f"OPENEDGE_{n} twins BAETYL_{n}"
    assert e1["BAETYL_SERVICE_TOKEN"] != e2["BAETYL_SERVICE_TOKEN"], "one token per service"
    host_id = m.inspect()["hardware"]["host_stats"]["host_id"]
    assert e1["BAETYL_HOST_ID"] == e2["BAETYL_HOST_ID"] == host_id
    # a restart: the host id is stable, the tokens are new
    assert m.stop() == 0
    for inst in ("one", "two"):
        os.unlink(m.path(f"var/db/data/env-{inst}"))
    m.start()
    wait_for(lambda: env_file(m, "one"), what="env dump after restart")
    again = env_file(m, "one")
    assert again["BAETYL_HOST_ID"] == e1["BAETYL_HOST_ID"]
    assert again["BAETYL_SERVICE_TOKEN"] != e1["BAETYL_SERVICE_TOKEN"]
    # the old token is worthless now, the new one works
    assert m.request("GET", "/v1/system/inspect", user="one", password=e1["BAETYL_SERVICE_TOKEN"])[0] == 401
    assert m.request("GET", "/v1/system/inspect", user="one", password=again["BAETYL_SERVICE_TOKEN"])[0] == 200


# ---- §7 API --------------------------------------------------------------------------------

def test_dynamic_env_overrides_service_env(master):
    m = master()
    m.package("dump", ENV_DUMPER)
    m.app(app_yaml([svc("rt", "dump", replica=0, env={"MODE": "static", "KEEP": "k"})], vols("dump")))
    m.start()
    body = {"MODE": "dynamic", "BAETYL_SERVICE_INSTANCE_ADDRESS": "127.0.0.1:50051"}
    assert m.request("PUT", "/v1/services/rt/instances/rt.fn.1/start", body)[0] == 200
    env = wait_for(lambda: env_file(m, "rt.fn.1"), what="dynamic env")
    assert env["MODE"] == "dynamic" and env["KEEP"] == "k"
    assert env["BAETYL_SERVICE_INSTANCE_ADDRESS"] == "127.0.0.1:50051"
    assert env["BAETYL_SERVICE_NAME"] == "rt" and env["BAETYL_SERVICE_INSTANCE_NAME"] == "rt.fn.1"
    assert "BAETYL_SERVICE_TOKEN" not in env
    assert m.stop() == 0


def test_api_answers_and_update_body_variants(master):
    m = master()
    m.package("dump", ENV_DUMPER)
    v = {n: app_yaml([svc("a", "dump", env={"V": n})], vols("dump"), version=n) for n in ("v1", "v2", "v3")}
    m.app(v["v1"])
    m.app(v["v2"], rel="var/db/baetyl/ota/v2/application.yml")
    m.app(v["v3"], rel="var/db/baetyl/ota/v3/application.yml")
    m.start()
    token = wait_for(lambda: env_file(m, "a").get("BAETYL_SERVICE_TOKEN"), what="token")
    # HTTP header names are case-insensitive: Go clients send X-Openedge-Username
    canon = {"X-Openedge-Username": "a", "X-Openedge-Password": token}
    st, body = m.request("GET", "/v1/ports/available", user=False, headers=canon)
    assert st == 200, body
    j = json.loads(body)
    assert list(j) == ["port"] and isinstance(j["port"], str) and j["port"].isdigit(), body
    # `file` is accepted for `path`, and a missing type means APP
    st, body = m.request("PUT", "/v1/system/update", {"file": m.path("var/db/baetyl/ota/v2"), "trace": "tr-file"},
                         user=False, headers=canon)
    assert st == 200, body
    line = m.wait_ota_step("tr-file", ["UPDATED", "ROLLEDBACK", "FAILURE"])
    assert line["step"] == "UPDATED", m.ota_log()
    assert line["type"] == "APP"
    assert m.inspect()["software"]["conf_version"] == "v2"
    # a directory path relative to the work dir (the token changed with the restarted service)
    st, body = m.request("PUT", "/v1/system/update", {"type": "APP", "path": "var/db/baetyl/ota/v3",
                                                      "trace": "tr-rel"})
    assert st == 200, body
    assert m.wait_ota_step("tr-rel", ["UPDATED", "ROLLEDBACK", "FAILURE"])["step"] == "UPDATED", m.ota_log()
    assert m.inspect()["software"]["conf_version"] == "v3"
    # the instance routes answer 200 (no JSON needed)
    assert m.request("PUT", "/v1/services/a/instances/a/report", {"k": 1})[0] == 200
    assert m.instance("a", "a")["k"] == 1
    # 401 for a wrong password whatever the case of the header names
    st, body = m.request("GET", "/v1/system/inspect", user=False,
                         headers={"X-OPENEDGE-USERNAME": "a", "X-OPENEDGE-PASSWORD": "nope"})
    assert (st, body.strip()) == (401, "account unauthorized")
    st, _ = m.request("GET", "/v1/system/nothing")
    assert st == 404


def test_api_keep_alive_and_chunked_bodies(master):
    """What Go's http client does: several requests on one connection, and bodies of
    unknown length sent chunked."""
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([_svc("a")], vols("pkg")))
    m.start()
    m.wait_running("a")
    h = {"x-openedge-username": "baetyl.cli", "x-openedge-password": m.cli_token()}
    c = UnixHTTPConnection(m.sock)
    try:
        for _ in range(3):
            c.request("GET", "/v1/ports/available", headers=h)
            r = c.getresponse()
            assert r.status == 200 and "port" in json.loads(r.read())
        c.request("PUT", "/v1/services/a/instances/a/report", body=iter([b'{"chunk', b'ed": {"n": ', b'7}}']),
                  headers=h, encode_chunked=True)
        r = c.getresponse()
        assert r.status == 200, r.read()
        r.read()
        c.request("GET", "/v1/system/inspect", headers=h)
        r = c.getresponse()
        assert r.status == 200
        j = json.loads(r.read())
    finally:
        c.close()
    inst = [i for s in j["services"] for i in s["instances"] if i["name"] == "a"][0]
    assert inst["chunked"] == {"n": 7}
    assert m.stop() == 0


def test_socket_mode_and_token_file_kept_private(master):
    m = master()
    m.start()
    assert stat.S_ISSOCK(os.stat(m.sock).st_mode)
    assert stat.S_IMODE(os.stat(m.sock).st_mode) == 0o660
    assert m.stop() == 0
    assert not os.path.exists(m.sock)


# ---- §6 supervision defaults ---------------------------------------------------------------

def test_default_restart_is_always_with_1s_backoff_doubling(master):
    m = master()
    m.package("crash", CRASHER)
    # exit code 0 and no restart section: the default policy `always` restarts it anyway
    m.app(app_yaml([svc("c", "crash", env={"EXIT_CODE": "0"})], vols("crash")))
    m.start()
    wait_for(lambda: len(starts(m, "c")) >= 3, 15, what="3 starts")
    t = [float(line.split()[-1]) for line in starts(m, "c")]
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert 0.9 <= gaps[0] <= 2.0, f"first delay is backoff.min 1s: {gaps}"
    assert 1.8 <= gaps[1] <= 3.5 and gaps[1] > gaps[0] * 1.4, f"then doubled (factor 2): {gaps}"
    m.stop()


def test_retry_max_counts_restarts_with_on_failure(master):
    m = master()
    m.package("crash", CRASHER)
    restart = {"policy": "on-failure", "retry": {"max": 1}, "backoff": {"min": "100ms", "max": "100ms"}}
    m.app(app_yaml([svc("r", "crash", restart=restart)], vols("crash")))
    m.start()
    wait_for(lambda: len(starts(m, "r")) >= 2, 10, what="one restart")
    time.sleep(1.0)
    assert len(starts(m, "r")) == 2, "the first run and retry.max=1 restart"
    m.stop()


# ---- §3/§4 boot failures -------------------------------------------------------------------

def test_boot_with_unknown_volume_fails_clearly(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([_svc("good"), _svc("bad", mounts=[{"name": "pkg", "path": "lib/baetyl/pkg"},
                                                      {"name": "nope", "path": "x"}])], vols("pkg")))
    assert m.start(expect_fail=True) == 1
    out = m.read("master.out") + m.log()
    assert "volume (nope) not found" in out
    assert marked_pids(m.marker) == [], "what started before the failure is stopped"
    assert not os.path.exists(m.sock)


# ---- §9 OTA --------------------------------------------------------------------------------

def steps(lines, trace):
    return [ln["step"] for ln in lines if ln.get("trace") == trace]


def test_ota_log_fields_custom_paths_and_json_logger(master):
    m = master(conf_extra="  format: json\notalog:\n  path: var/log/custom/ota.jsonl\n")
    m.package("pkg", SLEEPER)
    m.app(app_yaml([_svc("a")], vols("pkg"), version="v1"))
    m.app(app_yaml([_svc("a"), _svc("b")], vols("pkg"), version="v2"), rel="var/db/baetyl/ota/v2.yml")
    m.app("services: [\n", rel="var/db/baetyl/ota/bad.yml")
    m.start()

    def ota():
        text = m.read("var/log/custom/ota.jsonl", "")
        return [json.loads(ln) for ln in text.splitlines() if ln.strip()]

    assert m.update(m.path("var/db/baetyl/ota/v2.yml"), trace="tr-ok")[0] == 200
    wait_for(lambda: "UPDATED" in steps(ota(), "tr-ok"), what="UPDATED in the custom ota log")
    assert m.update(m.path("var/db/baetyl/ota/bad.yml"), trace="tr-bad")[0] == 200
    wait_for(lambda: "ROLLEDBACK" in steps(ota(), "tr-bad"), what="ROLLEDBACK in the custom ota log")
    assert not os.path.exists(m.path("var/db/baetyl/ota.log")), "otalog.path moves ota.log"
    lines = ota()
    assert steps(lines, "tr-ok") == ["UPDATING", "UPDATED"]
    assert steps(lines, "tr-bad") == ["UPDATING", "ROLLINGBACK", "ROLLEDBACK"]
    base = {"level", "msg", "step", "time", "trace", "type"}
    for ln in lines:
        assert ln["type"] == "APP"
        rfc3339_ns(ln["time"])
        assert abs(rfc3339_ns(ln["time"]) / 1e9 - time.time()) < 120
        if ln["step"] == "ROLLINGBACK":
            assert set(ln) == base | {"error"} and ln["level"] == "error" and "yaml" in ln["error"], ln
        else:
            assert set(ln) == base, ln
    upd = [ln for ln in lines if ln["step"] == "UPDATING"][0]
    assert upd["level"] == "info" and upd["msg"] == "app is updating" and upd["trace"] == "tr-ok"
    # logger.format json: every line of the master log is a JSON object with level and msg
    log = [ln for ln in m.log().splitlines() if ln.strip()]
    assert log
    for ln in log:
        o = json.loads(ln)
        assert "level" in o and "msg" in o and "time" in o, o
    assert m.stop() == 0


def test_update_restarts_services_whose_volume_path_changed(master):
    m = master()
    m.package("pkg", SLEEPER)
    only_pkg = [{"name": "pkg", "path": "lib/baetyl/pkg", "readonly": True}]
    with_cfg = [{"name": "dump", "path": "lib/baetyl/dump", "readonly": True}, {"name": "cfg", "path": "cfg"}]

    def app(data_path, version, extra=()):
        return app_yaml([_svc("uses-data"), _svc("no-data", mounts=only_pkg),
                         svc("cfg-user", "dump", mounts=with_cfg),
                         *extra],
                        vols("pkg", "dump", data=data_path) + [{"name": "cfg", "path": "var/db/cfg"}],
                        version=version)

    m.package("dump", ENV_DUMPER)
    m.app(app("var/db/data", "v1"))
    m.start()
    before = {s: m.wait_running(s) for s in ("uses-data", "no-data", "cfg-user")}
    # cfg-user dumps its env into its own service dir (it mounts no data volume)
    dump = "var/run/baetyl/services/cfg-user/data/env-cfg-user"
    text = wait_for(lambda: m.read(dump), what="cfg-user env")
    token = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)["BAETYL_SERVICE_TOKEN"]
    v2 = app("var/db/data2", "v2", extra=[_svc("zz", mounts=only_pkg), _svc("aa", mounts=only_pkg)])
    m.app(v2, rel="var/db/baetyl/ota/v2/application.yml")
    m.update(m.path("var/db/baetyl/ota/v2"), trace="tr-vol")
    assert m.wait_ota_step("tr-vol", ["UPDATED", "ROLLEDBACK", "FAILURE"])["step"] == "UPDATED", m.ota_log()
    after = m.wait_running("uses-data")
    assert after != before["uses-data"] and not proc_alive(before["uses-data"]), \
        "same config but another volume path: restarted"
    assert m.running_pid("no-data") == before["no-data"], "unchanged service untouched"
    assert m.running_pid("cfg-user") == before["cfg-user"], "unchanged service untouched"
    assert m.request("GET", "/v1/system/inspect", user="cfg-user", password=token)[0] == 200, \
        "an untouched service keeps its account"
    link = m.path("var/run/baetyl/services/uses-data/data")
    assert os.path.realpath(link) == os.path.realpath(m.path("var/db/data2"))
    m.wait_running("zz")
    m.wait_running("aa")
    j = m.inspect()
    # (SPEC §10 does not order the services list after an update: compared as a set)
    assert sorted(s["name"] for s in j["services"]) == ["aa", "cfg-user", "no-data", "uses-data", "zz"]
    zz, aa = (rfc3339_ns(m.instance(s, s)["start_time"]) for s in ("zz", "aa"))
    assert zz < aa, "new services start in list order"
    assert m.stop() == 0


def test_failed_rollback_is_a_failure(master):
    """The new app fails to start and the old app cannot start again either."""
    m = master()
    m.package("pkg", SLEEPER)
    m.package("oldpkg", SLEEPER)
    v1 = app_yaml([_svc("keep"), svc("change", "oldpkg")], vols("pkg", "oldpkg"), version="v1")
    v2 = app_yaml([_svc("keep"), svc("change", "pkg"), svc("x", "nopkg")], vols("pkg", "oldpkg", "nopkg"),
                  version="v2")
    m.app(v1)
    m.start()
    keep = m.wait_running("keep")
    m.wait_running("change")
    os.makedirs(m.path("var/db/baetyl/nopkg"))
    os.unlink(m.path("var/db/baetyl/oldpkg/package.yml"))  # the old package is gone meanwhile
    m.app(v2, rel="var/db/baetyl/ota/v2/application.yml")
    m.update(m.path("var/db/baetyl/ota/v2"), trace="tr-fail")
    m.wait_ota_step("tr-fail", ["FAILURE", "ROLLEDBACK", "UPDATED"])
    assert steps(m.ota_log(), "tr-fail") == ["UPDATING", "ROLLINGBACK", "FAILURE"], m.ota_log()
    err = m.inspect()["error"]
    assert err.startswith("failed to update system: failed to restart old app: "), err
    assert "failed to roll back: " in err, err
    assert "nopkg" in err and "oldpkg" in err, "both failures are named"
    assert m.running_pid("keep") == keep, "the identical service kept running"
    assert m.proc.poll() is None, "the master itself keeps serving"
    assert m.stop() == 0


def test_update_accepts_a_file_with_another_name_and_drops_removed_accounts(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.package("dump", ENV_DUMPER)
    m.app(app_yaml([svc("a", "dump")], vols("pkg", "dump"), version="v1"))
    m.app(app_yaml([_svc("b")], vols("pkg"), version="v2"), rel="var/db/baetyl/ota/new-app.yml")
    m.start()
    token = wait_for(lambda: env_file(m, "a").get("BAETYL_SERVICE_TOKEN"), what="token of a")
    assert m.request("GET", "/v1/system/inspect", user="a", password=token)[0] == 200
    m.update(m.path("var/db/baetyl/ota/new-app.yml"), trace="tr-named")
    assert m.wait_ota_step("tr-named", ["UPDATED", "ROLLEDBACK", "FAILURE"])["step"] == "UPDATED"
    assert m.read("var/db/baetyl/application.yml") == m.read("var/db/baetyl/ota/new-app.yml")
    assert m.inspect()["software"]["conf_version"] == "v2"
    m.wait_running("b")
    assert m.service("a") is None
    assert not os.path.exists(m.path("var/run/baetyl/services/a")), "a removed service's dir is removed"
    assert m.request("GET", "/v1/system/inspect", user="a", password=token)[0] == 401, \
        "the account of a removed service is gone"
    assert m.stop() == 0


# ---- §10 inspect ---------------------------------------------------------------------------

def test_inspect_has_every_key(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([_svc("a"), _svc("rt", replica=0)], vols("pkg"), version="v9"))
    m.start()
    pid = m.wait_running("a")
    t0 = time.time()
    j = m.inspect()
    assert j["error"] == ""
    assert RFC3339.match(j["time"]) and j["time"].endswith("Z"), j["time"]
    assert abs(rfc3339_ns(j["time"]) / 1e9 - t0) < 5, "time is now, in UTC"
    sw = j["software"]
    for k in ("os", "arch", "pwd", "mode", "bin_version", "git_revision", "conf_version"):
        assert k in sw, k
    assert sw["conf_version"] == "v9" and sw["mode"] == "native" and sw["pwd"] == m.dir
    hw = j["hardware"]
    hs = hw["host_stats"]
    for k in ("hostname", "uptime", "boot_time", "os", "kernel_version", "host_id"):
        assert k in hs, k
    assert hs["hostname"] == os.uname().nodename and hs["kernel_version"] == os.uname().release
    assert hs["uptime"] > 0 and abs(hs["boot_time"] + hs["uptime"] - time.time()) < 10
    ms = hw["mem_stats"]
    for k in ("total", "free", "used", "used_percent", "swap_total", "swap_free"):
        assert isinstance(ms[k], (int, float)), k
    with open("/proc/meminfo") as f:
        total = int(re.search(r"MemTotal:\s+(\d+) kB", f.read()).group(1)) * 1024
    assert ms["total"] == total, "memory in bytes"
    cs = hw["cpu_stats"]
    assert cs["cores"] in (os.cpu_count(), len(os.sched_getaffinity(0)))
    assert 0 <= cs["used_percent"] <= 100
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    mt = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    if mt:
        assert cs["model_name"] == mt.group(1).strip()
    ds = hw["disk_stats"]
    for k in ("path", "total", "free", "used", "used_percent"):
        assert k in ds, k
    ifs = hw["net_stats"]["interfaces"]
    assert ifs and all({"name", "mac", "addrs"} <= set(i) for i in ifs), ifs
    if not shutil.which("nvidia-smi"):
        assert "gpu_stats" not in hw, "no nvidia-smi, no gpu_stats"
    assert [s["name"] for s in j["services"]] == ["a", "rt"]
    inst = j["services"][0]["instances"][0]
    for k in ("name", "status", "start_time", "process", "cpu_stats", "mem_stats"):
        assert k in inst, k
    assert inst["name"] == "a" and inst["status"] == "running" and inst["process"]["id"] == pid
    assert RFC3339.match(inst["start_time"]) and inst["start_time"].endswith("Z")
    assert abs(rfc3339_ns(inst["start_time"]) / 1e9 - t0) < 30
    assert j["services"][1]["instances"] == []
    # `status --json` prints the same document; `status` a readable table of it
    r = m.cmd("status", "--json")
    assert r.returncode == 0, r
    sj = json.loads(r.stdout)
    assert set(sj) == set(j) and sj["software"]["conf_version"] == "v9"
    assert sj["services"][0]["instances"][0]["process"]["id"] == pid
    r = m.cmd("status")
    assert r.returncode == 0 and "a" in r.stdout and "running" in r.stdout and str(pid) in r.stdout, r
    assert m.stop() == 0


FAKE_NVSMI = """#!/bin/sh
echo "$@" > "$(dirname "$0")/args"
echo "0, Tesla T4, 15109, 15000, 1, 3"
echo "1, Tesla V100, 16160, 8080, 50, 97"
"""


def test_inspect_gpu_stats_from_nvidia_smi(master, monkeypatch):
    m = master()
    fake = m.path("fakebin")
    os.makedirs(fake)
    with open(os.path.join(fake, "nvidia-smi"), "w") as f:
        f.write(FAKE_NVSMI)
    os.chmod(os.path.join(fake, "nvidia-smi"), 0o755)
    monkeypatch.setenv("PATH", fake + os.pathsep + os.environ.get("PATH", ""))
    m.start()
    j = m.inspect()
    gpus = j["hardware"]["gpu_stats"]["gpus"]
    assert len(gpus) == 2, gpus
    want = [(0, "Tesla T4", 15109, 15000, 1, 3), (1, "Tesla V100", 16160, 8080, 50, 97)]
    for g, w in zip(gpus, want):
        assert int(g["index"]) == w[0] and g["model"] == w[1]
        assert g["mem_total"] == w[2] and g["mem_free"] == w[3]
        assert g["mem_used_percent"] == w[4] and g["gpu_used_percent"] == w[5]
    args = open(os.path.join(fake, "args")).read().split()
    assert args == ["--query-gpu=index,name,memory.total,memory.free,utilization.memory,utilization.gpu",
                    "--format=csv,noheader,nounits"], args
    assert m.stop() == 0


# ---- more §1/§4/§6/§9 ----------------------------------------------------------------------

def test_stale_pid_file_never_signals_a_stranger(master, procs):
    m = master()
    stranger = procs.start(["sleep", "300"])
    m.write("var/run/baetyl.pid", f"{stranger.pid}\n")
    r = m.cmd("stop")
    assert r.returncode == 0 and "not running" in combined(r), r
    r = m.cmd("status")
    assert r.returncode != 0 and "not running" in combined(r), r
    time.sleep(0.2)
    assert stranger.poll() is None, "a pid from a stale pid file is not a master"
    m.start()  # a stale pid file does not block a start either
    assert m.stop() == 0
    assert stranger.poll() is None


BOOT_PACKAGES = {
    "no-entry": ("name: pkg\n", "entry"),
    "missing-program": ("entry: bin/nothere\n", "bin/nothere"),
    "malformed": ("entry: [bin/prog\n", "yaml"),
}


@pytest.mark.parametrize("case", sorted(BOOT_PACKAGES))
def test_boot_with_a_bad_package_fails_clearly(master, case):
    text, want = BOOT_PACKAGES[case]
    m = master()
    m.package("pkg", SLEEPER)
    m.package("bad", SLEEPER)
    m.write("var/db/baetyl/bad/package.yml", text)
    m.app(app_yaml([svc("good", "pkg"), svc("b", "bad")], vols("pkg", "bad")))
    assert m.start(expect_fail=True) == 1
    out = m.read("master.out") + m.log()
    assert "failed to start service (b)" in out and want in out, out[-2000:]
    assert marked_pids(m.marker) == []


def test_sigterm_during_backoff_is_prompt(master):
    m = master(grace="5s")
    m.package("crash", CRASHER)
    m.app(app_yaml([svc("c", "crash", restart={"backoff": {"min": "30s", "max": "1m"}})], vols("crash")))
    m.start()
    wait_for(lambda: (m.instance("c", "c") or {}).get("status") == "restarting", 10, what="restarting")
    t0 = time.monotonic()
    assert m.stop() == 0
    assert time.monotonic() - t0 < 3, "a stop does not wait for a pending restart"
    assert len(starts(m, "c")) == 1


def test_on_failure_restarts_a_killed_instance(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg", restart={"policy": "on-failure", "backoff": {"min": "100ms"}})], vols("pkg")))
    m.start()
    pid = m.wait_running("a")
    os.kill(pid, signal.SIGKILL)
    new = wait_for(lambda: (lambda p: p if p and p != pid else None)(m.running_pid("a")), 10,
                   what="restart after SIGKILL")
    assert new != pid
    wait_for(lambda: len(starts(m, "a")) == 2, 5, what="second start recorded")
    assert m.stop() == 0


STUBBORN = """#!/bin/sh
mkdir -p data
echo "$$ $(date +%s.%N)" >> data/starts-$BAETYL_SERVICE_INSTANCE_NAME
trap '' TERM
while :; do sleep 0.1; done
"""


def test_update_answers_at_once_and_keeps_unchanged_dynamic_instances(master):
    m = master(grace="2s")
    m.package("stub", STUBBORN)
    m.package("pkg", SLEEPER)
    apps = {v: app_yaml([svc("stub", "stub", env={"V": v}), svc("rt", "pkg", replica=0)], vols("stub", "pkg"),
                        version=v) for v in ("v1", "v2")}
    m.app(apps["v1"])
    m.app(apps["v2"], rel="var/db/baetyl/ota/v2/application.yml")
    m.start()
    m.wait_running("stub")
    assert m.request("PUT", "/v1/services/rt/instances/rt.x/start", {"BAETYL_SERVICE_INSTANCE_ADDRESS": "x"})[0] == 200
    dyn = m.wait_running("rt", "rt.x")
    t0 = time.monotonic()
    st, body = m.update(m.path("var/db/baetyl/ota/v2"), trace="tr-slow")
    took = time.monotonic() - t0
    assert (st, body) == (200, ""), body
    assert took < 1.0, f"the update runs in the background: PUT took {took:.1f}s"
    assert m.wait_ota_step("tr-slow", ["UPDATED", "ROLLEDBACK", "FAILURE"])["step"] == "UPDATED"
    assert time.monotonic() - t0 >= 1.8, "the stubborn instance had its grace period"
    assert m.running_pid("rt", "rt.x") == dyn, "a dynamic instance of an unchanged service keeps running"
    assert m.stop() == 0


def test_interrupted_update_whose_start_fails_rolls_back_at_boot(master):
    m = master()
    m.package("pkg", SLEEPER)
    os.makedirs(m.path("var/db/baetyl/nopkg"))
    v1 = app_yaml([_svc("keep")], vols("pkg"), version="v1")
    v2 = app_yaml([_svc("keep"), svc("x", "nopkg")], vols("pkg", "nopkg"), version="v2")
    m.app(v2)
    m.app(v1, rel="var/db/baetyl/application.yml.old")
    m.write("var/db/baetyl/ota.log", json.dumps({"level": "info", "msg": "app is updating", "step": "UPDATING",
                                                 "time": "2020-01-01T00:00:00Z", "trace": "tr-boot",
                                                 "type": "APP"}) + "\n")
    m.start()
    m.wait_ota_step("tr-boot", ["ROLLEDBACK", "FAILURE", "UPDATED"])
    st = steps(m.ota_log(), "tr-boot")
    assert st[-2:] == ["ROLLINGBACK", "ROLLEDBACK"], st
    j = m.inspect()
    assert j["error"].startswith("failed to update system: failed to start app: "), j["error"]
    assert j["software"]["conf_version"] == "v1"
    assert m.read("var/db/baetyl/application.yml") == v1
    assert not os.path.exists(m.path("var/db/baetyl/application.yml.old"))
    m.wait_running("keep")
    assert m.service("x") is None
    assert m.stop() == 0


def test_env_and_version_scalars_are_text(master):
    """YAML scalars that are not strings (numbers, booleans) in `env` and `version` are
    taken as their text, as Baetyl 1.0 (Go yaml) did: users write `PORT: 8080`."""
    m = master()
    m.package("dump", ENV_DUMPER)
    m.write("var/db/baetyl/application.yml", """version: 12
services:
  - name: a
    image: dump
    replica: 1
    env: {PORT: 8080, DEBUG: true, RATIO: 1.5, NAME: plain}
    mounts:
      - {name: dump, path: lib/baetyl/dump, readonly: true}
      - {name: data, path: data}
volumes:
  - {name: dump, path: var/db/baetyl/dump}
  - {name: data, path: var/db/data}
""")
    m.start()
    env = wait_for(lambda: env_file(m, "a"), what="env dump")
    assert env["PORT"] == "8080" and env["DEBUG"] == "true" and env["NAME"] == "plain"
    assert float(env["RATIO"]) == 1.5
    assert m.inspect()["software"]["conf_version"] == "12"
    assert m.stop() == 0
