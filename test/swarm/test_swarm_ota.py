"""Application OTA in mode swarm: a changed service is updated in place (same swarm service,
its task replaced as UpdateConfig says), an unchanged one is not touched at all, and an update
whose new task the swarm rejects is rolled back by the swarm and then, as SPEC §9 says, the
whole application by the master (ota.log UPDATING, ROLLINGBACK, ROLLEDBACK), every service
in place again. Runs on the busybox image (swarm_harness.busybox_tar): seconds to load."""
import json
import os
import subprocess
import time

from test_swarm_engine import API_PORT, SwarmMaster

APP = """version: {version}
services:
  - name: a
    image: {image}
    replica: 1
    args: ['/bin/busybox', 'sleep', '{a}']
  - name: b
    image: local/busybox:1
    replica: 1
    args: ['/bin/busybox', 'sleep', '{b}']
"""


def ota(m, node, name, text, trace):
    """Puts text as application.yml of an update named name and asks the master for it."""
    d = m.path(f"var/db/baetyl/ota/{name}")
    os.makedirs(d)
    open(os.path.join(d, "application.yml"), "w").write(text)
    token = open(m.path("var/run/baetyl/cli.token")).read().strip()
    body = json.dumps({"type": "APP", "path": d, "trace": trace})
    r = subprocess.run(node.in_ns(
        "curl", "-sS", "-X", "PUT", "-H", "x-openedge-username: baetyl.cli", "-H",
        f"x-openedge-password: {token}", "--data", body,
        f"http://{node.addr}:{API_PORT}/v1/system/update"),
        capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def steps(m, trace):
    try:
        lines = open(m.path("var/db/baetyl/ota.log")).read().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(ln)["step"] for ln in lines
            if ln.strip() and json.loads(ln).get("trace") == trace]


def wait_steps(m, trace):
    deadline = time.monotonic() + 240  # an update may take UPDATE_MS (90 s) to count as failed
    while not any(x in steps(m, trace) for x in ("ROLLEDBACK", "FAILURE", "UPDATED")):
        assert time.monotonic() < deadline, (steps(m, trace), m.logs())
        time.sleep(1)
    return steps(m, trace)


def service(s, name):
    """{id, version, args, image} of a swarm service."""
    r = s.leader.docker("service", "inspect", name, check=True)
    j = json.loads(r.stdout)[0]
    cs = j["Spec"]["TaskTemplate"]["ContainerSpec"]
    return {"id": j["ID"], "version": j["Version"]["Index"], "args": cs.get("Args"),
            "image": cs["Image"]}


def running(s, name):
    return any(t["desired"] == "Running" and t["state"].startswith("Running")
               for t in s.tasks(name))


def test_ota_updates_in_place_and_rolls_back(make_swarm):
    s = make_swarm(2)
    s.import_busybox()
    m = SwarmMaster(s.leader)
    try:
        open(m.path("var/db/baetyl/application.yml"), "w").write(
            APP.format(version="V1", image="local/busybox:1", a=3600, b=3601))
        m.start()
        a1, b1 = service(s, "a"), service(s, "b")

        ota(m, s.leader, "v2", APP.format(version="V2", image="local/busybox:1", a=3602,
                                          b=3601), "tr-v2")
        assert wait_steps(m, "tr-v2") == ["UPDATING", "UPDATED"], m.logs()
        a2, b2 = service(s, "a"), service(s, "b")
        assert a2["id"] == a1["id"] and a2["version"] > a1["version"], (a1, a2)
        assert a2["args"][-1] == "3602", a2
        assert b2 == b1, "an unchanged service is not touched"
        assert "swarm service (a) updated" in m.log(), m.logs()
        deadline = time.monotonic() + 60
        while not running(s, "a"):
            assert time.monotonic() < deadline, s.tasks("a")
            time.sleep(1)
        time.sleep(2)  # the master looks at the tasks every second
        r = m.cli("status", "--json")
        assert r.returncode == 0, r.stderr
        insts = {i["name"]: i for sv in json.loads(r.stdout)["services"]
                 for i in sv["instances"]}
        assert insts["a"]["swarm"]["restarts"] == 0, "the replaced task is no restart"
        assert insts["a"]["swarm"]["service_id"] == a1["id"], insts["a"]

        # a's new image is on no node: its task is rejected, the swarm rolls a back, the
        # master rolls the application back (b too, changed as well)
        ota(m, s.leader, "v3", APP.format(version="V3", image="local/no-such:1", a=3602,
                                          b=3603), "tr-v3")
        assert wait_steps(m, "tr-v3") == ["UPDATING", "ROLLINGBACK", "ROLLEDBACK"], m.logs()
        a3, b3 = service(s, "a"), service(s, "b")
        assert a3["id"] == a1["id"] and b3["id"] == b1["id"], "rolled back in place"
        assert (a3["image"], a3["args"][-1]) == ("local/busybox:1", "3602"), a3
        assert b3["args"][-1] == "3601", b3
        assert "the swarm rejected its task" in m.log(), m.logs()
        assert sorted(s.services()) == ["a", "b"]
        deadline = time.monotonic() + 60
        while not (running(s, "a") and running(s, "b")):
            assert time.monotonic() < deadline, (s.tasks("a"), s.tasks("b"))
            time.sleep(1)
        r = m.cli("status", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["software"]["conf_version"] == "V2", r.stdout
    finally:
        m.cleanup()
