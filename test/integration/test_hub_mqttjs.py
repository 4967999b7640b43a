"""MQTT.js 5 (npm, installed by scripts/deps.sh into test/integration/peers/mqttjs) against
baetyl-hub, with the SDK client speaking 5.0 beside it (issue 20): QoS 2 both ways, and the
5.0 properties MQTT.js sets (user properties, content type, response topic, correlation
data) passed through the hub unchanged."""
import json
import os
import subprocess
import threading
import time

from conftest import SRC
from test_mqtt_client import driver  # noqa: F401 (fixture)

PEER = os.path.join(SRC, "test", "integration", "peers", "mqttjs")


def test_mqttjs5_and_sdk_client_qos2(hub, driver, procs):  # noqa: F811
    assert os.path.isdir(os.path.join(PEER, "node_modules", "mqtt")), \
        "MQTT.js missing: run scripts/deps.sh"
    d = driver("--address", f"tcp://127.0.0.1:{hub.port}", "--username", "test", "--password",
               "hahaha", "--protocol", "5", "--clientid", "sdk-js", "--clean", "1")
    d.event("connected")
    d.cmd("sub js/# 2")
    assert d.event("sub")[0]["rc"] == 0

    js = procs.start(["node", os.path.join(PEER, "peer.js"), f"mqtt://127.0.0.1:{hub.port}",
                      "test", "hahaha", "js/#", "3", "js/from-js", "2"],
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    ready = threading.Event()

    def read():
        for line in js.stdout:
            lines.append(line)
            if '"ready"' in line:
                ready.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(15), "".join(lines)
    d.cmd("pub js/from-sdk 2 hello-from-sdk")
    assert d.event("complete")[0]["status"] == 0
    assert js.wait(20) == 0, "".join(lines)
    reader.join(5)
    events = [json.loads(x) for x in lines if x.startswith("{")]
    assert events[0] == {"event": "ready", "granted": [2]}
    msgs = {m["payload"]: m for m in events if m["event"] == "message"}
    assert set(msgs) == {"js0", "js1", "hello-from-sdk"}
    for i in range(2):
        m = msgs[f"js{i}"]
        assert m["qos"] == 2 and m["topic"] == "js/from-js"
        assert m["userProperties"] == {"origin": "mqttjs", "n": str(i)}
        assert m["contentType"] == "text/plain" and m["responseTopic"] == "js/reply"
        assert m["correlationData"] == f"corr{i}"
    assert msgs["hello-from-sdk"]["qos"] == 2 and msgs["hello-from-sdk"]["userProperties"] is None

    got = d.wait(lambda e: e["event"] == "message" and e["topic"] == "js/from-js", count=2)
    assert sorted((g["payload"], g["qos"]) for g in got) == [("js0", 2), ("js1", 2)]
    time.sleep(0.2)
    d.quit()


def test_topic_aliases_from_the_hub_resolved_by_mqttjs(hub, driver, procs):  # noqa: F811
    """A subscriber that accepts 2 aliases gets the first two topics with aliases, later
    publishes to them with the alias alone (MQTT.js puts the topic back), and a third topic
    in full."""
    d = driver("--address", f"tcp://127.0.0.1:{hub.port}", "--username", "test", "--password",
               "hahaha", "--clientid", "sdk-alias", "--clean", "1")
    d.event("connected")
    js = procs.start(["node", os.path.join(PEER, "peer.js"), f"mqtt://127.0.0.1:{hub.port}",
                      "test", "hahaha", "al/#", "6"],
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                     env=dict(os.environ, PEER_ALIAS_MAX="2"))
    first = js.stdout.readline()
    assert '"ready"' in first, first
    for i, t in enumerate(["al/a", "al/b", "al/a", "al/b", "al/c", "al/c"]):
        d.cmd(f"pub {t} 1 m{i}")
        assert d.event("complete")[0]["status"] == 0
    out, _ = js.communicate(timeout=20)
    assert js.returncode == 0, first + out
    msgs = [json.loads(x) for x in out.splitlines() if x.startswith('{"event":"message"')]
    assert [(m["topic"], m["payload"]) for m in msgs] == [
        ("al/a", "m0"), ("al/b", "m1"), ("al/a", "m2"), ("al/b", "m3"), ("al/c", "m4"), ("al/c", "m5")]
    assert [m["topicAlias"] for m in msgs] == [1, 2, 1, 2, None, None]
    d.quit()
