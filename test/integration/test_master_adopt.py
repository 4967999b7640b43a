"""Adoption (issue 15.2, SPEC §19 "Recovery"): a master killed with SIGKILL leaves its
native instances running, and the next master takes them over (same pid, watched through a
pidfd, their exit handled by the restart policy) instead of killing them; an instance whose
service changed in application.yml while no master ran is started again."""
import json
import os
import shutil
import signal
import threading
import time
import types

import paho.mqtt.client as mqtt

from conftest import HUB_PRINCIPALS, binary, free_port, wait_for
from fm_harness import App, Watcher, install_package
from master_harness import (NEW_VERSION, app_yaml, marked_pids, master,  # noqa: F401
                            new_build, proc_alive, SLEEPER, svc, vols)


def restart(m):
    """kill -9 the master, start it again, wait until its services started."""
    m.kill9()
    m.start_again()


def test_changed_service_restarts_the_rest_is_taken_over(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg"), svc("b", "pkg")], vols("pkg")))
    m.start()
    a, b = m.wait_running("a"), m.wait_running("b")
    m.app(app_yaml([svc("a", "pkg"), svc("b", "pkg", env={"NEW": "1"})], vols("pkg")))
    restart(m)
    assert m.wait_running("a") == a
    nb = m.wait_running("b")
    assert nb != b and not proc_alive(b)
    assert "reason=\"its service changed\"" in m.log() or "its service changed" in m.log()
    # the taken-over instance's exit goes through the restart policy (always)
    os.kill(a, signal.SIGKILL)
    na = wait_for(lambda: (p := m.running_pid("a")) and p != a and p, 15, what="a restarted")
    assert proc_alive(na)
    assert m.stop() == 0
    assert marked_pids(m.marker) == []


def test_output_and_api_of_a_taken_over_instance(master):
    m = master()
    m.package("pkg", "#!/bin/sh\ni=0\nwhile :; do i=$((i+1)); echo tick $i; sleep 0.2; done\n")
    m.app(app_yaml([svc("a", "pkg")], vols("pkg")))
    m.start()
    a = m.wait_running("a")
    # a dynamic instance, started through the API with its own env, is taken over too
    st, body = m.request("PUT", "/v1/services/a/instances/dyn/start", {"K": "v"})
    assert st == 200, body
    d = m.wait_running("a", "dyn")
    restart(m)
    assert m.wait_running("a") == a and m.wait_running("a", "dyn") == d
    assert m.log().count("instance taken over") == 2
    with open(f"/proc/{d}/environ", "rb") as f:
        assert b"K=v" in f.read().split(b"\0")
    # it still writes its own file, which the logs API reads
    st, body = m.request("GET", "/v1/services/a/instances/a/logs?lines=1")
    first = json.loads(body)["lines"][0]
    wait_for(lambda: json.loads(m.request("GET", "/v1/services/a/instances/a/logs?lines=1")[1])
             ["lines"][0] != first, 5, what="new output")
    assert m.stop() == 0
    assert marked_pids(m.marker) == []


HUB_CONF = "listen: ['tcp://127.0.0.1:{port}']\nstorage: {{dir: data}}\n" + HUB_PRINCIPALS.replace(
    "{", "{{").replace("}", "}}")


def hub_app(master, kills=3):
    """The hub, the function-manager and a Python runtime, all run by one master."""
    port = free_port()
    a = App(master, types.SimpleNamespace(port=port),
            {"rt": ("python", [("sayhi", "index.handler")])},
            [{"name": "sayhi", "service": "rt"}],
            [{"clientid": "r-sayhi", "subscribe": {"topic": "in/#", "qos": 1},
              "function": {"name": "sayhi"}, "publish": {"topic": "out", "qos": 1}}])
    install_package(a.m, "baetyl-hub")
    a.m.write("var/db/baetyl/hub-conf/service.yml", HUB_CONF.format(port=port))
    a.services.insert(0, {"name": "hub", "image": "baetyl-hub", "replica": 1,
                          "mounts": [{"name": "hub-pkg", "path": "lib/baetyl/baetyl-hub",
                                      "readonly": True},
                                     {"name": "hub-conf", "path": "etc/baetyl", "readonly": True}]})
    a.volumes += [{"name": "hub-pkg", "path": "var/db/baetyl/baetyl-hub"},
                  {"name": "hub-conf", "path": "var/db/baetyl/hub-conf"}]
    a.m.app(json.dumps({"version": "v1", "services": a.services, "volumes": a.volumes}))
    return a, port


def mst(m, version_dir, trace):
    """A master binary update from var/db/baetyl/<version_dir>; waits for UPDATED."""
    st, body = m.request("PUT", "/v1/system/update",
                         {"type": "MST", "path": f"var/db/baetyl/{version_dir}", "trace": trace})
    assert st == 200, body
    line = m.wait_ota_step(trace, ("UPDATED", "FAILURE", "ROLLEDBACK"), timeout=60)
    assert line["step"] == "UPDATED", m.ota_log()
    wait_for(lambda: m.log().count("services started") and m.inspect(), 30, what="api back")


def test_hub_and_function_outlive_master_kills_and_upgrades(master, new_build):
    a, port = hub_app(master)
    m = a.m
    # the master runs from the work dir, so it can replace itself (MST)
    m.exe = m.path("bin/baetyl")
    for rel, exe in (("bin/baetyl", binary("baetyl")), ("var/db/baetyl/new/bin/baetyl", new_build),
                     ("var/db/baetyl/back/bin/baetyl", binary("baetyl"))):
        os.makedirs(os.path.dirname(m.path(rel)), exist_ok=True)
        shutil.copy(exe, m.path(rel))
    a.start()
    hub = m.wait_running("hub")
    w = Watcher(port, ("out",))
    drops = []
    pub = mqtt.Client(client_id="adopt-pub", clean_session=True, protocol=mqtt.MQTTv311)
    pub.username_pw_set("test", "hahaha")
    pub.on_disconnect = lambda c, u, rc: drops.append(("pub", rc))
    w.c.on_disconnect = lambda c, u, rc: drops.append(("watcher", rc))
    pub.connect("127.0.0.1", port, keepalive=30)
    pub.loop_start()
    sent = []
    stop = threading.Event()

    def traffic():
        i = 0
        while not stop.is_set():
            i += 1
            info = pub.publish(f"in/{i}", json.dumps({"n": i}), qos=1)
            info.wait_for_publish(10)
            sent.append(i)
            time.sleep(0.02)
    t = threading.Thread(target=traffic)
    t.start()
    try:
        rt = wait_for(lambda: a.running("rt"), 20, what="runtime started")
        for _ in range(3):
            time.sleep(1)
            restart(m)
            assert m.wait_running("hub") == hub
        # upgraded twice in place (the new build, then the first one again)
        for version_dir, trace in (("new", "u1"), ("back", "u2")):
            time.sleep(1)
            mst(m, version_dir, trace)
            assert m.proc.poll() is None and m.wait_running("hub") == hub
            if trace == "u1":
                assert m.inspect()["software"]["bin_version"] == NEW_VERSION
        time.sleep(1)
    finally:
        stop.set()
        t.join(30)
    assert len(sent) >= 20, "traffic ran throughout"
    got = {json.loads(p)["n"] for _, p, _ in w.wait("out", len(sent), timeout=30)}
    assert got >= set(sent), sorted(set(sent) - got)[:20]
    assert drops == [], drops
    assert m.running_pid("hub") == hub and proc_alive(hub)
    assert a.running("rt") == rt, "the runtime was taken over, not started again"
    assert m.log().count("instance taken over") >= 15  # hub, function-manager, runtime x 5
    pub.loop_stop()
    pub.disconnect()
    w.close()
    assert m.stop() == 0


def test_unrecorded_instance_is_stopped_and_started_again(master):
    """An instance whose record never got written (its master killed as it started it) is
    found by its working dir and stopped; its service starts it again."""
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg"), svc("b", "pkg")], vols("pkg")))
    m.start()
    a, b = m.wait_running("a"), m.wait_running("b")
    m.kill9()
    os.unlink(m.path("var/run/baetyl/instances/a/a.json"))
    os.unlink(m.path("var/db/baetyl/application.stats"))
    m.start_again()
    assert m.wait_running("b") == b
    na = m.wait_running("a")
    assert na != a and not proc_alive(a)
    assert "not recorded" in m.log()
    assert m.stop() == 0
    assert marked_pids(m.marker) == []
