"""The inspect document (SPEC §10): every key, times, host and GPU stats."""
import json
import os
import re
import shutil
import time


from master_harness import (app_yaml, master, pkg_svc, RFC3339, rfc3339_ns,  # noqa: F401
                              SLEEPER, vols)


def test_inspect_has_every_key(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([pkg_svc("a"), pkg_svc("rt", replica=0)], vols("pkg"), version="v9"))
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
