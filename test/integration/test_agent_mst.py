"""The agent passes master binary OTA events (type MST) on, as Baetyl 1.0 did: the event's
volume holds bin/baetyl, the master checks it and re-executes itself into it (issue 15.1).
Uses test_agent's fake cloud, broker and work dir, and a second real build of the master."""
import json
import os
import shutil

from conftest import binary, wait_for
from master_harness import NEW_VERSION, master, new_build  # noqa: F401
from test_agent import certs, env, make_zip, md5_b64  # noqa: F401


def test_mst_event_updates_the_master(env, new_build):  # noqa: F811
    e = env()
    m = e.m
    m.exe = m.path("bin/baetyl")  # a master that may replace its own binary
    os.makedirs(m.path("bin"))
    shutil.copy(binary("baetyl"), m.exe)
    e.start()
    e.broker.wait_subscribed()
    with open(new_build, "rb") as f:
        data = make_zip([("bin/", b"", 0o40755), ("bin/baetyl", f.read(), 0o755)])
    e.cloud.files = {"master-v2.zip": data}
    vol = {"name": "master-v2", "path": "var/db/baetyl/master-v2",
           "meta": {"url": e.cloud.url("master-v2.zip"), "md5": md5_b64(data), "version": "2"}}
    e.broker.publish(json.dumps({"event": "OTA", "content": {"type": "MST", "trace": "tr-mst",
                                                            "volume": vol}}))
    m.wait_ota_step("tr-mst", ["UPDATED", "ROLLEDBACK", "FAILURE", "TIMEOUT"], timeout=90)
    lines = [x for x in m.ota_log() if x.get("trace") == "tr-mst"]
    assert [(x["type"], x["step"]) for x in lines] == [
        ("MST", "RECEIVED"), ("MST", "UPDATING"), ("MST", "RESTARTING"), ("MST", "UPDATED")], lines
    assert m.proc.poll() is None
    wait_for(lambda: m.inspect()["software"]["bin_version"] == NEW_VERSION, 30, what="new master")
    assert m.running_pid("agent") == e.agent_pid, "the agent was taken over"
    wait_for(lambda: e.cloud.ota_steps("tr-mst")[-1:] == ["UPDATED"], 30,
             what="the cloud sees UPDATED")
    assert m.stop() == 0
