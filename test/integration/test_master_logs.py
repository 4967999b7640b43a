"""Instance output (issue 15, issue 14.4): native instances write their stdout and stderr
into var/log/baetyl/<service>/<instance>.log themselves (capped, one older file), the API's
GET /v1/services/{s}/instances/{i}/logs returns the last lines of a running or exited
instance, and `baetyl logs` prints them (-n, -f, [instance] prefixes)."""
import json
import os
import subprocess

from conftest import binary, wait_for
from master_harness import MARKER, app_yaml, master, svc, vols  # noqa: F401

TALKER = """#!/bin/sh
echo "out line 1 of $BAETYL_SERVICE_INSTANCE_NAME"
echo "err line 2 of $BAETYL_SERVICE_INSTANCE_NAME" >&2
printf 'bad \\377 utf8\\n'
i=0
while :; do i=$((i+1)); echo "tick $i $BAETYL_SERVICE_INSTANCE_NAME"; sleep ${TICK:-0.2}; done
"""

DIER = """#!/bin/sh
echo "starting"
echo "ImportError: no module named nope" >&2
exit 7
"""

FLOOD = """#!/usr/bin/python3
import sys, time
line = "x" * 99 + "\\n"
for i in range(30000):  # 3 MB
    sys.stdout.write(line)
sys.stdout.write("last line\\n")
sys.stdout.flush()
time.sleep(300)
"""


def logs(m, s, i, q=""):
    st, body = m.request("GET", f"/v1/services/{s}/instances/{i}/logs{q}")
    return st, json.loads(body) if body.startswith("{") else body


def cli(m, *args, timeout=30):
    return m.cmd("logs", *args, timeout=timeout)


def test_logs_of_running_and_exited_instances(master):
    m = master()
    m.package("talk", TALKER)
    m.package("die", DIER)
    m.app(app_yaml([svc("t", "talk"), svc("d", "die", restart={"policy": "no"})],
                   vols("talk", "die")))
    m.start()
    m.wait_running("t")
    wait_for(lambda: "tick 3 t" in m.services_out(), 10, what="ticks")
    st, j = logs(m, "t", "t")
    assert st == 200, j
    assert j["state"] == "running" and j["exit_code"] is None
    lines = j["lines"]
    assert lines[:3] == ["out line 1 of t", "err line 2 of t", "bad \ufffd utf8"], lines
    assert lines[3].startswith("tick 1 ")
    # the instance writes its file itself: nothing reaches the master's own output
    assert "tick 1" not in m.read("master.out", "")
    assert os.path.exists(m.path("var/log/baetyl/t/t.log"))
    st, j = logs(m, "t", "t", "?lines=2")
    assert st == 200 and len(j["lines"]) == 2 and j["lines"][-1].startswith("tick "), j

    # an instance that died: its exit code and why, for the function-manager
    wait_for(lambda: (m.instance("d", "d") or {}).get("status") == "exited"
             or "exited (code 7)" in m.log(), 10, what="d exited")
    st, j = logs(m, "d", "d")
    assert st == 200, j
    assert j == {"state": "exited", "exit_code": 7,
                 "lines": ["starting", "ImportError: no module named nope"]}, j
    r = cli(m, "d")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "starting\nImportError: no module named nope\n"
    m.stop()


def test_logs_api_errors(master):
    m = master()
    m.package("talk", TALKER)
    m.app(app_yaml([svc("t", "talk")], vols("talk")))
    m.start()
    m.wait_running("t")
    for path, want in (("/v1/services/nope/instances/t/logs", "service (nope) not found"),
                       ("/v1/services/t/instances/nope/logs",
                        "instance (nope) of service (t) not found")):
        st, body = m.request("GET", path)
        assert st == 404, body
        assert json.loads(body) == {"error": want}
    for bad in ("abc", "-1", "", "1e3"):
        st, body = m.request("GET", f"/v1/services/t/instances/t/logs?lines={bad}")
        assert st == 400 and "lines" in body, (bad, body)
    wait_for(lambda: m.services_out().count("tick") >= 3, 10, what="ticks")
    st, j = logs(m, "t", "t", "?lines=5000")  # capped at 1000
    assert st == 200 and 3 <= len(j["lines"]) <= 1000
    st, j = logs(m, "t", "t", "?lines=0")
    assert st == 200 and j["lines"] == []
    # another service's account may not read it
    st, body = m.request("GET", "/v1/services/t/instances/t/logs", user="x", password="y")
    assert st == 401
    m.stop()


def test_output_file_is_capped(master):
    m = master()
    m.package("flood", FLOOD)
    m.app(app_yaml([svc("f", "flood")], vols("flood")))
    m.start()
    m.wait_running("f")
    path = m.path("var/log/baetyl/f/f.log")
    wait_for(lambda: os.path.exists(path + ".1") and os.path.getsize(path) < (1 << 20), 15,
             what="the file rotated")
    assert os.path.getsize(path + ".1") <= (1 << 19)
    st, j = logs(m, "f", "f", "?lines=3")
    assert st == 200 and j["lines"][-1] == "last line", j["lines"]
    m.stop()


def test_cli_many_instances_and_follow(master, procs):
    m = master()
    m.package("talk", TALKER)
    m.app(app_yaml([svc("t", "talk", replica=2, env={"TICK": "0.3"})], vols("talk")))
    m.start()
    m.wait_running("t", "t.i1")
    wait_for(lambda: m.services_out().count("tick 2 ") >= 2, 10, what="ticks")
    r = cli(m, "t", "-n", "2")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert len(out) == 4, out
    assert all(line.startswith("[t] tick ") for line in out[:2]), out
    assert all(line.startswith("[t.i1] tick ") for line in out[2:]), out

    env = dict(os.environ, **{MARKER: m.marker})
    f = open(m.path("follow.out"), "w")
    p = procs.start([binary("baetyl"), "logs", "t", "-f", "-n", "1", "-w", m.dir], stdout=f,
                    stderr=subprocess.STDOUT, env=env)

    def ticks(inst):
        text = m.read("follow.out", "")
        return [int(line.split()[2]) for line in text.splitlines()
                if line.startswith(f"[{inst}] tick ")]
    wait_for(lambda: len(ticks("t")) >= 8 and len(ticks("t.i1")) >= 8, 20, what="followed ticks")
    procs.stop(p)
    f.close()
    for inst in ("t", "t.i1"):
        got = ticks(inst)
        assert got == list(range(got[0], got[0] + len(got))), (inst, got)  # none lost, none twice
    m.stop()


def test_cli_usage_and_errors(master):
    m = master()
    r = subprocess.run([binary("baetyl"), "logs", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Usage: baetyl logs <service>" in r.stdout
    r = subprocess.run([binary("baetyl"), "logs", "-w", m.dir], capture_output=True, text=True)
    assert r.returncode == 2 and "logs needs a service name" in r.stderr
    r = cli(m, "t", "-n", "x")
    assert r.returncode == 2 and "-n (x) must be a number" in r.stderr
    r = cli(m, "t")
    assert r.returncode == 3 and "not running" in r.stderr
    m.package("talk", TALKER)
    m.app(app_yaml([svc("t", "talk")], vols("talk")))
    m.start()
    r = cli(m, "nope")
    assert r.returncode == 1 and "service (nope) not found" in r.stderr
    m.stop()
