"""Master binary OTA (issue 15.1, type MST) with two real builds of the master: the one under
test and the same source built again with another version string. The master re-executes
itself in place (same pid, its services taken over), keeps the old binary until the new one
started its application, and a kill at any step leaves a startable master (each step
boundary is set up as the files a kill there leaves, then the master is started)."""
import filecmp
import json
import os
import shutil
import subprocess

import pytest

from conftest import binary, wait_for
from master_harness import (NEW_VERSION, app_yaml, master, new_build, proc_alive,  # noqa: F401
                            SLEEPER, svc, vols)

def version_of(exe):
    r = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=30)
    return r.stdout.split("\n")[0].split()[-1]


def mst_master(master, new_build):
    """A master started from <work dir>/bin/baetyl (a copy of the build under test) running a
    sleeper, and the new build in the volume var/db/baetyl/mst/bin/baetyl."""
    m = master()
    m.exe = m.path("bin/baetyl")
    os.makedirs(m.path("bin"))
    shutil.copy(binary("baetyl"), m.exe)
    os.makedirs(m.path("var/db/baetyl/mst/bin"))
    shutil.copy(new_build, m.path("var/db/baetyl/mst/bin/baetyl"))
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg")], vols("pkg")))
    return m


def steps(m, trace):
    return [(r["type"], r["step"]) for r in m.ota_log() if r.get("trace") == trace]


def test_mst_update_in_place(master, new_build):
    m = mst_master(master, new_build)
    old_version = version_of(m.exe)
    assert old_version != NEW_VERSION
    m.start()
    a = m.wait_running("a")
    st, body = m.request("PUT", "/v1/system/update",
                         {"type": "MST", "path": "var/db/baetyl/mst", "trace": "m1"})
    assert st == 200, body
    m.wait_ota_step("m1", ("UPDATED", "FAILURE", "ROLLEDBACK"), timeout=60)
    want = [("MST", "UPDATING"), ("MST", "RESTARTING"), ("MST", "UPDATED")]
    assert steps(m, "m1") == want, m.ota_log()
    assert m.proc.poll() is None, "the same process re-executed itself"
    wait_for(lambda: m.inspect()["software"]["bin_version"] == NEW_VERSION, 30, what="new version")
    assert version_of(m.exe) == NEW_VERSION
    assert not os.path.exists(m.exe + ".old")
    assert m.wait_running("a") == a, "its services were taken over"
    # the guardian the old binary left saw the update succeed and went away, reaped
    wait_for(lambda: not guardians(m), 10, what="the MST guardian gone")
    assert not zombie_children(m.proc.pid)
    assert m.stop() == 0


def guardians(m):
    found = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 5 and argv[1] == b"__mst-guard" and argv[5] == m.dir.encode():
            found.append(int(d))
    return found


def zombie_children(pid):
    found = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rindex(")") + 2:].split()
        if rest[0] == "Z" and int(rest[1]) == pid:
            found.append(int(d))
    return found


def test_mst_failing_check_changes_nothing(master, new_build):
    m = mst_master(master, new_build)
    m.write("var/db/baetyl/bad/bin/baetyl", "#!/bin/sh\necho 'conf.yml: broken'\nexit 1\n", 0o755)
    m.start()
    a = m.wait_running("a")
    st, body = m.request("PUT", "/v1/system/update",
                         {"type": "MST", "path": "var/db/baetyl/bad", "trace": "m2"})
    assert st == 200, body
    line = m.wait_ota_step("m2", ("FAILURE",))
    assert line["msg"] == "failed to check master" and "conf.yml: broken" in line["error"]
    assert line["type"] == "MST"
    assert version_of(m.exe) != NEW_VERSION and m.wait_running("a") == a
    # outside the work dir: refused
    st, body = m.request("PUT", "/v1/system/update",
                         {"type": "MST", "path": "/bin/true", "trace": "m3"})
    assert "outside the work dir" in m.wait_ota_step("m3", ("FAILURE",))["error"]
    assert m.stop() == 0


def marker(m, state, ino, trace="k"):
    m.write("var/run/baetyl/mst.json", json.dumps({"state": state, "trace": trace, "ino": ino}))


def test_kill_at_each_step_leaves_a_startable_master(master, new_build):
    m = mst_master(master, new_build)
    old = m.exe + ".old"
    # killed after the old binary was kept and the marker written, before the rename:
    # the old binary runs on, the update is reported failed
    shutil.copy(m.exe, old)
    shutil.copy(new_build, m.exe + ".new")
    marker(m, "UPDATING", os.stat(m.exe + ".new").st_ino, "k1")
    m.start()
    assert m.inspect()["software"]["bin_version"] != NEW_VERSION
    assert steps(m, "k1") == [("MST", "FAILURE")]
    assert not os.path.exists(m.path("var/run/baetyl/mst.json"))
    assert not os.path.exists(m.exe + ".new")
    m.stop()

    # killed after the rename (UPDATING) or before the re-exec (RESTARTING): the new binary
    # starts and finishes the update
    for state, trace in (("UPDATING", "k2"), ("RESTARTING", "k3")):
        shutil.copy(m.exe, old)
        os.replace(m.exe, m.exe + ".tmp")
        shutil.copy(new_build, m.exe)
        marker(m, state, os.stat(m.exe).st_ino, trace)
        m.start_again()
        assert m.inspect()["software"]["bin_version"] == NEW_VERSION
        assert steps(m, trace) == [("MST", "UPDATED")]
        assert not os.path.exists(old)
        m.stop()
        os.replace(m.exe + ".tmp", m.exe)  # the build under test again

    # killed during a rollback, before the old binary was back: the new one puts it back
    # and executes it (same process), which reports ROLLEDBACK
    shutil.copy(m.exe, old)
    old_ino = os.stat(old).st_ino
    os.replace(m.exe, m.exe + ".tmp")
    shutil.copy(new_build, m.exe)
    marker(m, "ROLLINGBACK", old_ino, "k4")
    m.start(wait=False)
    m.wait_ota_step("k4", ("ROLLEDBACK", "FAILURE"), timeout=60)
    assert steps(m, "k4") == [("MST", "ROLLINGBACK"), ("MST", "ROLLEDBACK")]
    assert m.proc.poll() is None
    wait_for(lambda: m.inspect()["software"]["bin_version"] != NEW_VERSION, 30, what="old back")
    assert version_of(m.exe) != NEW_VERSION and not os.path.exists(old)
    assert m.stop() == 0


# Broken new binaries: each passes `check` (prints OK!) and then fails at `start`. Shell
# scripts, as a user who ships the wrong file would: a binary that dies or hangs before it
# could roll itself back in place, so only the guardian the old master left behind (mst.h)
# can. The old master then runs in the guardian's process (a new pid, in the pid file) and
# adopts the services, which keep their pids.
BROKEN = {
    "exits": "exit 1",
    "crashes": "kill -SEGV $$",
    "hangs": "exec sleep 60",  # never answers its API nor starts its application
}


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_new_binary_that_fails_to_start_is_rolled_back(master, how):
    m = master(conf_extra="ota:\n  timeout: 3s\n")
    m.exe = m.path("bin/baetyl")
    os.makedirs(m.path("bin"))
    shutil.copy(binary("baetyl"), m.exe)
    m.write("var/db/baetyl/broken/bin/baetyl",
            f'#!/bin/sh\n[ "$1" = check ] && {{ echo OK!; exit 0; }}\n{BROKEN[how]}\n', 0o755)
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg")], vols("pkg")))
    m.start()
    a = m.wait_running("a")
    st, body = m.request("PUT", "/v1/system/update",
                         {"type": "MST", "path": "var/db/baetyl/broken", "trace": how})
    assert st == 200, body
    if how == "hangs":
        wait_for(lambda: guardians(m), 10, what="the MST guardian watching the new binary")
    m.wait_ota_step(how, ("ROLLEDBACK", "FAILURE"), timeout=60)
    assert steps(m, how) == [("MST", "UPDATING"), ("MST", "RESTARTING"), ("MST", "ROLLINGBACK"),
                             ("MST", "ROLLEDBACK")], m.ota_log()
    why = next(r for r in m.ota_log() if r.get("step") == "ROLLINGBACK")["error"]
    assert ("ota.timeout" if how == "hangs" else "exited") in why
    m.proc.wait(10)  # the broken binary's process is gone; the old master runs in another
    pid = int(m.read("var/run/baetyl.pid").strip())
    assert pid != m.proc.pid and proc_alive(pid)
    assert filecmp.cmp(m.exe, binary("baetyl"), shallow=False)
    assert not os.path.exists(m.exe + ".old")
    assert not os.path.exists(m.path("var/run/baetyl/mst.json"))
    assert m.wait_running("a") == a, "the old master adopted the running service"
    r = m.cmd("status")
    assert r.returncode == 0 and "a" in r.stdout, r.stdout + r.stderr
    r = m.cmd("stop")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not proc_alive(pid)
    assert "master stopped" in m.log().rsplit("services started", 1)[-1]
