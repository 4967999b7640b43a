"""The native engine (SPEC §1, §3, §4): the work dir layout, service dirs and their mounts,
argv[0], process groups, what instances inherit, stats from /proc and recovery after a crash."""
import os
import re
import signal
import time

import pytest
import yaml

from conftest import wait_for
from master_harness import (app_yaml, combined, marked_pids, master, pkg_svc,  # noqa: F401
                              proc_alive, rfc3339_ns, SLEEPER, starts, svc, vols)


def bash_package(m, name):
    """A package whose entry is bash itself: with args ['-c', script], bash's $0 is the
    argv[0] the master gave, which a script file could never show."""
    base = f"var/db/baetyl/{name}"
    m.write(f"{base}/package.yml", "entry: bin/prog\n")
    os.makedirs(m.path(f"{base}/bin"), exist_ok=True)
    os.symlink("/bin/bash", m.path(f"{base}/bin/prog"))
    return base


def test_layout_order_replicas_and_stats_file(master):
    m = master()
    m.package("pkg", SLEEPER)
    lazy = {"name": "lazy", "image": "pkg", "mounts": [{"name": "pkg", "path": "lib/baetyl/pkg"}]}  # no replica
    m.app(app_yaml([pkg_svc("z", replica=3), pkg_svc("a"), pkg_svc("m"), lazy], vols("pkg")))
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
    m.app(app_yaml([pkg_svc("a")], vols("pkg")))
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
    # its output goes to its own file, not to a pipe of the dead master
    assert os.readlink(f"/proc/{pid}/fd/1").endswith("var/log/baetyl/a/a.log")
    # issue 15.2: the next master takes it over (it was killed at the next start before)
    m.start_again()
    assert m.wait_running("a") == pid
    assert m.stop() == 0
    assert not proc_alive(pid)


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
    m.app(app_yaml([pkg_svc("a")], vols("pkg")))
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
