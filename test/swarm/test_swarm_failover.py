"""A worker dies (kill -9 of its dockerd): the swarm moves its task to the other worker and
the hub answers again there. The gap (kill to the first message through the moved hub) is
printed; it is not asserted (a shared machine's timing is noise)."""
import json
import os
import shutil
import subprocess
import time

from conftest import BUILD, SRC
from test_swarm_engine import API_PORT, SwarmMaster

HUB_APP = """version: V1
services:
  - name: localhub
    image: baetyl-hub
    replica: 1
    ports: ['1883:1883']
    placement: {constraints: ['node.role==worker']}
    mounts:
      - {name: localhub-conf, path: etc/baetyl, readonly: true}
volumes:
  - {name: localhub-conf, path: var/db/baetyl/localhub-conf}
"""


def hub_answers(node):
    """One message through the hub published on node's address, or False."""
    sub = subprocess.Popen(node.in_ns("mosquitto_sub", "-h", node.addr, "-p", "1883", "-u", "test",
                                      "-P", "hahaha", "-t", "t/topic", "-C", "1", "-W", "4"),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.5)
    subprocess.run(node.in_ns("mosquitto_pub", "-h", node.addr, "-p", "1883", "-u", "test", "-P",
                              "hahaha", "-t", "t", "-m", "ping"), capture_output=True, timeout=10)
    out, _ = sub.communicate(timeout=10)
    return out.strip() == "ping"


def hub_master(s):
    """The hub image loaded on every node of swarm s, and a master on its leader whose
    application is the hub alone, started."""
    s.load_images(BUILD, SRC, ("baetyl-hub",))
    m = SwarmMaster(s.leader)
    try:
        open(m.path("var/db/baetyl/application.yml"), "w").write(HUB_APP)
        m.start()
    except BaseException:
        m.cleanup()
        raise
    return m


def test_worker_loss_moves_the_hub(make_swarm):
    s = make_swarm(3)
    m = hub_master(s)
    try:
        first = None
        deadline = time.monotonic() + 60
        while first is None:
            first = next((nd for nd in s.nodes[1:] if hub_answers(nd)), None)
            assert first or time.monotonic() < deadline, m.logs()
        other = s.nodes[2] if first is s.nodes[1] else s.nodes[1]
        t0 = time.monotonic()
        first.kill_dockerd()
        deadline = t0 + 120
        while not hub_answers(other):
            assert time.monotonic() < deadline, (s.tasks("localhub"), m.logs())
            time.sleep(1)
        gap = time.monotonic() - t0
        print(f"\nworker killed: the hub answered again on the other worker after {gap:.1f} s")
        r = m.cli("status", "--json")
        assert r.returncode == 0, r.stderr
        assert other.node_id in r.stdout
    finally:
        m.cleanup()


def service_version(s, name):
    r = s.leader.docker("service", "inspect", "--format", "{{.Version.Index}}", name)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip())


def test_master_killed_and_restarted_adopts_its_services(make_swarm):
    """kill -9 of the master leaves its services running; the master started again takes the
    same services (same swarm service id, spec untouched) instead of making new ones, also
    when its run directory is gone (a master started on another manager node): the service's
    token is read back from the swarm, so its spec is the same."""
    s = make_swarm(2)
    m = hub_master(s)
    try:
        ids = s.leader.docker("service", "ls", "-q", "--filter", "label=baetyl=baetyl").stdout
        assert len(ids.split()) == 1, ids
        for run_dir_kept in (True, False):
            version = service_version(s, "localhub")
            m.stop(sig=9)
            assert s.services() == ["localhub"], "a killed master leaves its services running"
            if not run_dir_kept:
                shutil.rmtree(m.path("var/run/baetyl"))
            open(m.path("var/log/baetyl/baetyl.log"), "w").close()
            m.start()
            assert "swarm service (localhub) adopted" in m.log(), (run_dir_kept, m.logs())
            assert "swarm service (localhub) updated" not in m.log(), m.logs()
            assert service_version(s, "localhub") == version
        again = s.leader.docker("service", "ls", "-q", "--filter", "label=baetyl=baetyl").stdout
        assert again.split() == ids.split()
        deadline = time.monotonic() + 60
        while not hub_answers(s.nodes[1]):
            assert time.monotonic() < deadline, (s.tasks("localhub"), m.logs())
            time.sleep(1)
    finally:
        m.cleanup()


def test_failed_update_rolls_back(make_swarm):
    """An OTA to an image no node has: the swarm rejects the new task, the master rolls the
    application back (ota.log UPDATING, ROLLINGBACK, ROLLEDBACK) and the old hub serves."""
    s = make_swarm(2)
    m = hub_master(s)
    try:
        bad = m.path("var/db/baetyl/ota/bad")
        os.makedirs(bad)
        open(os.path.join(bad, "application.yml"), "w").write(
            HUB_APP.replace("V1", "V2").replace("image: baetyl-hub", "image: baetyl-no-such"))
        token = open(m.path("var/run/baetyl/cli.token")).read().strip()
        body = json.dumps({"type": "APP", "path": bad, "trace": "tr-bad"})
        r = subprocess.run(s.leader.in_ns(
            "curl", "-sS", "-X", "PUT", "-H", "x-openedge-username: baetyl.cli", "-H",
            f"x-openedge-password: {token}", "--data", body,
            f"http://{s.leader.addr}:{API_PORT}/v1/system/update"),
            capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr

        def steps():
            try:
                lines = open(m.path("var/db/baetyl/ota.log")).read().splitlines()
            except FileNotFoundError:
                return []
            return [json.loads(ln)["step"] for ln in lines
                    if ln.strip() and json.loads(ln).get("trace") == "tr-bad"]

        deadline = time.monotonic() + 240  # an update may take UPDATE_MS (90 s) to count as failed
        while not any(x in steps() for x in ("ROLLEDBACK", "FAILURE", "UPDATED")):
            assert time.monotonic() < deadline, (steps(), m.logs())
            time.sleep(1)
        assert steps() == ["UPDATING", "ROLLINGBACK", "ROLLEDBACK"], (steps(), m.logs())
        deadline = time.monotonic() + 60
        while not hub_answers(s.nodes[1]):
            assert time.monotonic() < deadline, (s.tasks("localhub"), m.logs())
            time.sleep(1)
        assert "the swarm rejected its task" in m.log(), m.logs()
    finally:
        m.cleanup()
