"""Resource limits of native services through cgroups (issue #15 part 3; SPEC §3 resources in
native mode). This machine has cgroup v1 controllers: the limits are enforced for real — a
memory hog is OOM-killed inside its cgroup and restarted while the master and the other
services live on, a fork bomb stops at pids.limit, a busy loop with cpus 0.5 gets about half
a core — and inspect shows each instance's limits, memory peak and OOM kills. The v2 file
writes are unit-tested against a temporary directory (test/unit/master/test_cgroup.c), as
no v2 hierarchy with controllers can be mounted beside the v1 one here."""
import os
import time

import pytest

from conftest import wait_for
from master_harness import app_yaml, master, svc, vols, SLEEPER  # noqa: F401

CG = "/sys/fs/cgroup"
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.isdir(f"{CG}/memory") or not os.path.isdir(f"{CG}/pids"),
    reason="needs root and cgroup v1 memory, pids and cpu controllers")

HOG = """#!/bin/sh
mkdir -p data
echo start >> data/hog-starts
exec /usr/bin/python3 -c 'import time; b = bytearray(256 << 20); time.sleep(60)'
"""

BOMB = """#!/usr/bin/python3
import os, time
made = failed = 0
for _ in range(60):
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        made += 1
    except OSError:
        failed += 1
os.makedirs("data", exist_ok=True)
with open("data/bomb", "w") as f:
    f.write(f"{made} {failed}")
time.sleep(60)
"""

BUSY = """#!/bin/sh
while :; do :; done
"""


def cgroup_dirs(m, service):
    """The service's cgroup in each v1 controller (the master id is a hash of its work dir)."""
    found = []
    for ctrl in ("cpu", "memory", "pids", "cpuset"):
        base = f"{CG}/{ctrl}/baetyl"
        if os.path.isdir(base):
            for mid in os.listdir(base):
                d = f"{base}/{mid}/{service}"
                if os.path.isdir(d) and m.running_pid(service) and \
                        str(m.running_pid(service)) in open(f"{d}/cgroup.procs").read().split():
                    found.append(d)
    return found


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        st = f.read()
    fields = st[st.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_memory_hog_is_oom_killed_inside_its_cgroup_and_restarted(master):
    m = master()
    m.package("hog", HOG)
    m.package("calm", SLEEPER)
    hog = svc("hog", "hog", resources={"memory": {"limit": "64m"}},
              restart={"policy": "always", "backoff": {"min": "200ms", "max": "1s"}})
    m.app(app_yaml([hog, svc("calm", "calm")], vols("hog", "calm")))
    m.start()
    m.wait_running("calm")
    calm_pid = m.running_pid("calm")
    wait_for(lambda: (m.read("var/db/data/hog-starts") or "").count("start") >= 3, 30,
             what="the hog killed and restarted twice")
    i = m.instance("hog", "hog")
    assert i["limits"]["memory"] == 64 << 20, i
    assert i["cgroup"]["version"] == 1 and i["cgroup"]["oom_kills"] >= 1, i
    assert i["cgroup"]["memory_peak"] <= 64 << 20, i
    # and while it waits out its backoff, which is when a user looks for them
    w = wait_for(lambda: (lambda x: x if x.get("status") == "restarting" else None)(
        m.instance("hog", "hog")), 20, interval=0.01, what="the hog waiting to restart")
    assert w["limits"]["memory"] == 64 << 20 and w["cgroup"]["oom_kills"] >= 1, w
    # the master and the other service lived through it
    assert m.running_pid("calm") == calm_pid
    assert "instance (hog) exited (code 137)" in m.log(), m.log()[-3000:]
    dirs = cgroup_dirs(m, "hog")
    assert m.stop() == 0
    # the cgroup goes with the service
    for d in dirs:
        assert not os.path.exists(d), d


def test_fork_bomb_stops_at_pids_limit(master):
    m = master()
    m.package("bomb", BOMB)
    m.app(app_yaml([svc("bomb", "bomb", resources={"pids": {"limit": 12}})], vols("bomb")))
    m.start()
    m.wait_running("bomb")
    made, failed = map(int, wait_for(lambda: m.read("var/db/data/bomb"), 15,
                                     what="the bomb's count").split())
    assert made <= 11 and failed >= 49, (made, failed)  # 12 with the bomb itself
    i = m.instance("bomb", "bomb")
    assert i["limits"]["pids"] == 12, i
    assert 2 <= i["cgroup"]["pids_current"] <= 12, i
    pids_dir = [d for d in cgroup_dirs(m, "bomb") if "/pids/" in d]
    assert pids_dir and open(f"{pids_dir[0]}/pids.max").read().strip() == "12"
    assert m.stop() == 0


def test_busy_loop_with_half_a_cpu(master):
    m = master()
    m.package("busy", BUSY)
    m.app(app_yaml([svc("busy", "busy", resources={"cpu": {"cpus": 0.5}})], vols("busy")))
    m.start()
    m.wait_running("busy")
    pid = m.running_pid("busy")
    time.sleep(0.5)
    a, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(3)
    used = (cpu_seconds(pid) - a) / (time.monotonic() - t0)
    # the quota allows at most half a core (the machine may give it less when busy)
    assert used < 0.65, f"{used:.2f} cores with cpus 0.5"
    cpu_dir = [d for d in cgroup_dirs(m, "busy") if "/cpu/" in d]
    assert cpu_dir and open(f"{cpu_dir[0]}/cpu.cfs_quota_us").read().strip() == "50000"
    assert m.instance("busy", "busy")["limits"]["cpus"] == 0.5
    assert m.stop() == 0


def test_limits_that_cannot_be_applied_warn_and_run_unlimited(master):
    m = master()
    m.package("s", SLEEPER)
    # cpu 63 does not exist on this machine: the cpuset write fails
    m.app(app_yaml([svc("s", "s", resources={"cpu": {"setcpus": "63"}})], vols("s")))
    m.start()
    m.wait_running("s")
    assert "resources not applied: the service runs unlimited" in m.log(), m.log()[-2000:]
    assert "limits" not in m.instance("s", "s")
    assert m.stop() == 0
