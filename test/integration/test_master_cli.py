"""The master's command line and lifecycle (SPEC §1-4): version/help, check and its errors,
start and stop, what a program sees (env, args, mounts, cwd), grace then SIGKILL, recovery
after kill -9, status."""
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import binary, wait_for
from master_harness import (app_yaml, combined, CRASHER, marked_pids, MARKER,  # noqa: F401
                              master, pkg_svc, proc_alive, SLEEPER, starts, svc,
                              vols)

ENV_DUMPER = """#!/bin/sh
mkdir -p data
env | sort > data/env-$BAETYL_SERVICE_INSTANCE_NAME
pwd > data/cwd-$BAETYL_SERVICE_INSTANCE_NAME
echo "$0|$*" > data/argv-$BAETYL_SERVICE_INSTANCE_NAME
cat conf/settings.txt > data/conf-$BAETYL_SERVICE_INSTANCE_NAME
trap 'exit 0' TERM
while :; do sleep 0.2; done
"""


def env_of(m, inst):
    text = m.read(f"var/db/data/env-{inst}", "")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_version_and_help(master):
    m = master()
    r = m.cmd("version")
    assert r.returncode == 0
    for key in ("Version:", "Git revision:", "Compiler:", "Platform:     linux/"):
        assert key in r.stdout
    for cmd in ("start", "check", "stop", "status"):
        r = m.cmd(cmd, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"Usage: baetyl {cmd}"), r
    r = m.cmd("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr


def test_check_ok(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg")], vols("pkg")))
    r = m.cmd("check")
    assert r.returncode == 0 and r.stdout.strip() == "OK!", r


def test_check_accepts_docker_mode(master):
    m = master(conf_extra="")
    conf = m.read("etc/baetyl/conf.yml").replace("mode: native", "mode: docker")
    m.write("etc/baetyl/conf.yml", conf)
    r = m.cmd("check")
    assert r.returncode == 0 and "OK!" in r.stdout


BAD_APPS = [
    ("services: [\n  - name: a\n", "yaml:"),
    (app_yaml([svc("a", "pkg", mounts=[{"name": "nope", "path": "x"}])], vols("pkg")), "volume (nope) not found"),
    (app_yaml([svc("a", "pkg")], [{"name": "pkg", "path": "../../etc"}, {"name": "data", "path": "d"}]),
     "volumes[0].path: path (../../etc) escapes the work dir"),
    (app_yaml([svc("a", "pkg"), svc("a", "pkg")], vols("pkg")), "services[1].name: service name (a) is duplicated"),
    (app_yaml([svc("a", "pkg", restart={"policy": "sometimes"})], vols("pkg")), "restart.policy"),
    (app_yaml([svc("bad name", "pkg")], vols("pkg")), "services[0].name"),
    (app_yaml([svc("a", "")], vols("pkg")), "services[0].image: required"),
    (app_yaml([svc("a", "pkg", mounts=[{"name": "pkg", "path": "../../x"}])], vols("pkg")), "escapes the service dir"),
    (app_yaml([svc("a", "pkg")], vols("pkg")), "var/db/baetyl/pkg/package.yml: No such file or directory"),
    (app_yaml([svc("a", "pkg", mounts=[])], vols("pkg")), "services[0]: no mount provides the package (lib/baetyl/pkg)"),
]


@pytest.mark.parametrize("text,want", BAD_APPS, ids=[
    "malformed-yaml", "unknown-volume", "volume-escapes", "duplicate-service", "bad-policy", "bad-name",
    "no-image", "mount-escapes", "no-package", "no-package-mount"])
def test_check_bad_application(master, text, want):
    m = master()
    m.app(text)
    r = m.cmd("check")
    assert r.returncode == 1, r
    assert want in r.stderr, r.stderr
    assert "application.yml" in r.stderr


def test_check_names_missing_certificate(master):
    """A TLS block in a service's config (any mapping with ca/cert) names files that must exist
    in the volumes mounted into the service; a file inside the image is not checked."""
    m = master()
    m.package("pkg", SLEEPER)
    mounts = [{"name": "pkg", "path": "lib/baetyl/pkg"},
              {"name": "conf", "path": "etc/baetyl"}, {"name": "cert", "path": "var/db/baetyl/cert"}]
    volumes = vols("pkg") + [{"name": "conf", "path": "var/db/baetyl/conf"},
                             {"name": "cert", "path": "var/db/baetyl/certs"}]
    m.app(app_yaml([svc("hub", "pkg", mounts=mounts)], volumes))
    m.write("var/db/baetyl/conf/service.yml",
            "listen: [ssl://0.0.0.0:8883]\ncertificate:\n  ca: var/db/baetyl/cert/ca.pem\n"
            "  cert: /var/db/baetyl/cert/server.pem\n  key: var/db/baetyl/cert/server.key\n"
            "other:\n  ca: /usr/share/ca.pem\n")
    m.write("var/db/baetyl/certs/ca.pem", "x")
    m.write("var/db/baetyl/certs/server.pem", "x")
    r = m.cmd("check")
    assert r.returncode == 1, r
    assert "service (hub): key file var/db/baetyl/cert/server.key not found" in r.stderr, r.stderr
    assert "var/db/baetyl/certs/server.key" in r.stderr, r.stderr
    m.write("var/db/baetyl/certs/server.key", "x")
    r = m.cmd("check")
    assert r.returncode == 0 and r.stdout.strip() == "OK!", r


@pytest.mark.parametrize("conf,want", [
    ("mode: native\nserver:\n  address: http://127.0.0.1:80\n", "server.address"),
    ("mode: native\nserver:\n  address: tcp://127.0.0.1\n", "server.address"),
    ("mode: kubernetes\n", "mode"),
    ("mode: native\ngrace: soon\n", "grace"),
    ("mode: [native\n", "yaml"),
], ids=["scheme", "no-port", "mode", "grace", "malformed-yaml"])
def test_check_bad_conf(master, conf, want):
    m = master()
    m.write("etc/baetyl/conf.yml", conf)
    r = m.cmd("check")
    assert r.returncode == 1 and want in r.stderr, r


def test_start_env_args_mounts_and_stop(master):
    m = master(conf_extra="snfile: etc/baetyl/sn\n")
    m.write("etc/baetyl/sn", "  SN-123\n")
    m.package("pkg", ENV_DUMPER)
    m.write("var/db/conf/settings.txt", "hello from a volume\n")
    mounts = [{"name": "pkg", "path": "lib/baetyl/pkg", "readonly": True},
              {"name": "data", "path": "data"}, {"name": "conf", "path": "conf"}]
    m.app(app_yaml([svc("dumper", "pkg", replica=2, mounts=mounts, args=["-c", "conf/conf.yml"],
                        env={"FOO": "bar", "BAETYL_SERVICE_NAME": "forged"})],
                   vols("pkg") + [{"name": "conf", "path": "var/db/conf"}]))
    m.start()
    wait_for(lambda: m.read("var/db/data/conf-dumper.i1"), what="second replica output")
    sdir = m.path("var/run/baetyl/services/dumper")
    for inst in ("dumper", "dumper.i1"):
        env = env_of(m, inst)
        assert env["FOO"] == "bar"
        assert env["BAETYL_SERVICE_NAME"] == "dumper" and env["OPENEDGE_SERVICE_NAME"] == "dumper"
        assert env["BAETYL_SERVICE_INSTANCE_NAME"] == inst
        assert env["BAETYL_SERVICE_MODE"] == "native"
        assert env["BAETYL_MASTER_API_VERSION"] == "v1"
        assert env["BAETYL_MASTER_API_ADDRESS"] == "unix://var/run/baetyl.sock"
        assert env["BAETYL_MASTER_API_SOCKET"] == m.sock
        assert env["BAETYL_HOST_OS"] == "linux" and env["BAETYL_HOST_ID"]
        assert env["BAETYL_HOST_SN"] == "SN-123" and env["OPENEDGE_HOST_SN"] == "SN-123"
        assert len(env["BAETYL_SERVICE_TOKEN"]) >= 32
        assert env[MARKER] == m.marker  # the master's own environment is passed on
        assert m.read(f"var/db/data/cwd-{inst}").strip() == sdir
        assert m.read(f"var/db/data/argv-{inst}").strip().endswith("|-c conf/conf.yml")
        assert m.read(f"var/db/data/conf-{inst}") == "hello from a volume\n"
    # one token per service, shared by its replicas
    assert env_of(m, "dumper")["BAETYL_SERVICE_TOKEN"] == env_of(m, "dumper.i1")["BAETYL_SERVICE_TOKEN"]
    # mounts are symlinks; the API socket is linked in; the socket is 0660
    assert os.readlink(os.path.join(sdir, "conf")) == m.path("var/db/conf")
    assert os.readlink(os.path.join(sdir, "var/run/baetyl.sock")) == m.sock
    assert stat.S_IMODE(os.stat(m.sock).st_mode) == 0o660
    pids = [m.running_pid("dumper", i) for i in ("dumper", "dumper.i1")]
    assert all(pids) and pids[0] != pids[1]
    # each instance leads its own process group
    assert all(os.getpgid(p) == p for p in pids)
    log = m.log()
    assert "mode: native; grace: 2s; pwd: " + m.dir in log
    for line in ("service (dumper) started", "instance started", "app version (v1) committed", "services started"):
        assert line in log
    assert os.path.exists(m.path("var/run/baetyl.pid"))

    r = m.cmd("stop")
    assert r.returncode == 0 and "baetyl stopped" in r.stdout, r
    m.proc.wait(10)
    assert m.proc.returncode == 0
    assert not any(proc_alive(p) for p in pids)
    assert not os.path.exists(m.sock), "socket removed at exit"
    assert not os.path.exists(m.path("var/run/baetyl.pid"))
    assert not os.path.exists(sdir), "service dir removed at stop"
    assert os.path.exists(m.path("var/db/conf/settings.txt")), "volumes untouched"
    assert marked_pids(m.marker) == []


def test_sigterm_stops_within_grace_and_kills_stubborn(master):
    m = master(grace="1s")
    m.package("polite", SLEEPER)
    m.package("stubborn", "#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.1; done\n")
    m.app(app_yaml([svc("polite", "polite"), svc("stubborn", "stubborn")], vols("polite", "stubborn")))
    m.start()
    pids = [m.wait_running("polite"), m.wait_running("stubborn")]
    t0 = time.monotonic()
    assert m.stop() == 0
    took = time.monotonic() - t0
    assert took < 1.0 + 2.5, f"stop took {took:.1f}s with grace 1s"
    assert took >= 0.9, "the stubborn program had its grace period"
    assert not any(proc_alive(p) for p in pids)
    assert m.read("var/db/data/term-polite"), "SIGTERM reached the polite program"
    assert "instance did not stop within grace, killing it" in m.log()
    assert marked_pids(m.marker) == []


def test_kill9_then_start_takes_instances_over(master):
    """Issue 15.2 changed this: a restarted master takes over the instances a killed one left
    running (they were killed and started again before)."""
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg", replica=2), svc("b", "pkg")], vols("pkg")))
    m.start()
    old = [m.wait_running("a"), m.wait_running("a", "a.i1"), m.wait_running("b")]
    m.kill9()
    assert all(proc_alive(p) for p in old), "instances outlive a killed master"
    assert "process:" in m.read("var/db/baetyl/application.stats")
    m.start_again()
    new = [m.wait_running("a"), m.wait_running("a", "a.i1"), m.wait_running("b")]
    assert new == old and all(proc_alive(p) for p in old)
    assert m.log().count("instance taken over") == 3
    assert "old instance stopped" not in m.log()
    assert m.stop() == 0
    assert marked_pids(m.marker) == []


def test_second_start_refused_and_status(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg")], vols("pkg")))
    m.start()
    pid = m.wait_running("a")
    r = m.cmd("start", timeout=30)
    assert r.returncode == 1 and "already running" in r.stderr
    assert m.proc.poll() is None and proc_alive(pid)
    r = m.cmd("status")
    assert r.returncode == 0, r
    assert "running" in r.stdout and str(pid) in r.stdout and "app version: v1" in r.stdout
    r = m.cmd("status", "--json")
    j = json.loads(r.stdout)
    assert j["services"][0]["instances"][0]["process"]["id"] == pid
    m.stop()
    r = m.cmd("status")
    assert r.returncode == 3 and "not running" in r.stderr
    r = m.cmd("stop")
    assert r.returncode == 0 and "not running" in r.stdout


def test_boot_failure_is_clear(master):
    m = master()
    os.makedirs(m.path("var/db/baetyl/nopkg"))  # a package dir without package.yml
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("good", "pkg"), svc("a", "nopkg")], vols("pkg", "nopkg")))
    rc = m.start(expect_fail=True)
    assert rc == 1
    out = m.read("master.out")
    assert "failed to start service (a)" in out
    assert "var/run/baetyl/services/a/lib/baetyl/nopkg/package.yml: No such file or directory" in out
    # what started before the failure was stopped again
    assert marked_pids(m.marker) == []


def test_malformed_application_at_boot(master):
    m = master()
    m.app("services:\n  - name: [x\n")
    assert m.start(expect_fail=True) == 1
    assert "failed to reload config: yaml:" in m.read("master.out")


def test_no_application_runs_nothing(master):
    m = master()
    m.start()
    j = m.inspect()
    assert j["services"] == [] and j["software"]["conf_version"] == "" and j["error"] == ""
    assert "no service to start" in m.log()
    assert m.stop() == 0


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


# application.yml texts `check` must refuse (native mode, the package exists), and the text
# the error must hold.
BAD_APP_CASES = {
    "name-underscore-first": (app_yaml([pkg_svc("_a")], vols("pkg")), "services[0].name"),
    "name-dot": (app_yaml([pkg_svc("a.b")], vols("pkg")), "services[0].name"),
    "name-65-chars": (app_yaml([pkg_svc("a" * 65)], vols("pkg")), "services[0].name"),
    "name-missing": (app_yaml([{"image": "pkg", "replica": 1}], vols("pkg")), "services[0].name"),
    "image-missing": (app_yaml([{"name": "a", "replica": 1}], vols("pkg")), "services[0].image"),
    "duplicate-service": (app_yaml([pkg_svc("a"), pkg_svc("b"), pkg_svc("a")], vols("pkg")), "services[2].name"),
    "duplicate-volume": (app_yaml([pkg_svc("a")], vols("pkg") + [{"name": "pkg", "path": "var/x"}]), "volumes[2].name"),
    "volume-name-pattern": (app_yaml([pkg_svc("a")], vols("pkg") + [{"name": "bad name", "path": "x"}]),
                            "volumes[2].name"),
    "volume-path-missing": (app_yaml([pkg_svc("a")], vols("pkg") + [{"name": "v"}]), "volumes[2].path"),
    "unknown-volume": (app_yaml([pkg_svc("a", mounts=[{"name": "pkg", "path": "lib/baetyl/pkg"},
                                                   {"name": "ghost", "path": "x"}])], vols("pkg")),
                       "volume (ghost) not found"),
    "volume-escapes": (app_yaml([pkg_svc("a")], vols("pkg") + [{"name": "v", "path": "var/../../x"}]), "escapes"),
    "volume-escapes-dotdot": (app_yaml([pkg_svc("a")], vols("pkg") + [{"name": "v", "path": ".."}]), "escapes"),
    "backoff-min": (app_yaml([pkg_svc("a", restart={"backoff": {"min": "soon"}})], vols("pkg")), "backoff.min"),
    "backoff-max": (app_yaml([pkg_svc("a", restart={"backoff": {"max": "5 minutes"}})], vols("pkg")), "backoff.max"),
    "policy": (app_yaml([pkg_svc("a", restart={"policy": "sometimes"})], vols("pkg")), "policy"),
    "replica-negative": (app_yaml([pkg_svc("a", replica=-1)], vols("pkg")), "services[0].replica"),
    "replica-text": (app_yaml([pkg_svc("a", replica="many")], vols("pkg")), "services[0].replica"),
    "retry-max-text": (app_yaml([pkg_svc("a", restart={"retry": {"max": "x"}})], vols("pkg")), "retry.max"),
    "services-map": ("services: {a: 1}\n", "services"),
    "env-list": (app_yaml([pkg_svc("a", env=["A=1"])], vols("pkg")), "services[0].env"),
    "top-level-list": ("- a\n- b\n", "application.yml"),
    "scalar": ("hello\n", "application.yml"),
    "binary": ("\x00\xff\xfe garbage", "application.yml"),
}


@pytest.mark.parametrize("case", sorted(BAD_APP_CASES))
def test_check_refuses_bad_application(master, case):
    text, want = BAD_APP_CASES[case]
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
    m.app(app_yaml([pkg_svc("a" * 64), pkg_svc("0_x-Y", restart=restart), pkg_svc("rt", replica=0, **docker_only)],
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


def test_boot_with_unknown_volume_fails_clearly(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([pkg_svc("good"), pkg_svc("bad", mounts=[{"name": "pkg", "path": "lib/baetyl/pkg"},
                                                      {"name": "nope", "path": "x"}])], vols("pkg")))
    assert m.start(expect_fail=True) == 1
    out = m.read("master.out") + m.log()
    assert "volume (nope) not found" in out
    assert marked_pids(m.marker) == [], "what started before the failure is stopped"
    assert not os.path.exists(m.sock)


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
