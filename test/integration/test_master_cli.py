"""The master's command line and lifecycle (SPEC §1-4): version/help, check and its errors,
start and stop, what a program sees (env, args, mounts, cwd), grace then SIGKILL, recovery
after kill -9, status."""
import json
import os
import signal
import stat
import time

import pytest

from conftest import wait_for
from test_master_util import (CRASHER, MARKER, SLEEPER, app_yaml, marked_pids, master,  # noqa: F401
                              proc_alive, starts, svc, vols)

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


def test_kill9_then_start_leaves_no_stray(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg", replica=2), svc("b", "pkg")], vols("pkg")))
    m.start()
    old = [m.wait_running("a"), m.wait_running("a", "a.i1"), m.wait_running("b")]
    m.kill9()
    assert all(proc_alive(p) for p in old), "instances outlive a killed master"
    assert "process:" in m.read("var/db/baetyl/application.stats")
    m.start()
    wait_for(lambda: not any(proc_alive(p) for p in old), 10, what="old instances killed")
    new = [m.wait_running("a"), m.wait_running("a", "a.i1"), m.wait_running("b")]
    assert not set(new) & set(old)
    assert "old instance stopped" in m.log()
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
