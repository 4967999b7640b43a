"""Acceptance tests of remote-mqtt (SPEC §13), the hub client settings (§17) and logging
(§18), written from SPEC and the seed (6.4.3, chapter 10) only. They cover what
test_remote_mqtt.py and test_mqtt_client.py do not: the seed's configs exactly as written,
the bytes of forwarded PUBLISH packets and the end-to-end PUBACK seen on the wire (two fake
brokers), CONNECT fields and reconnect timing of §17's defaults, validatesubs false,
persistent sessions across a restart of remote-mqtt and of the remote, `insecure`, and the
logger's file/level/format. The timer's share of the same pass is in test_timer.py; the
peers both use are in mqtt_peers.py."""
import json
import os
import re
import time

import pytest

from conftest import mqtt_str, wait_for
from mqtt_peers import (FakeBroker, flowing, gaps, hub_clients, hub_yaml, make_certs,
                        publish_packet, run_once)
from mqtt_peers import fake, module, mosq, paho  # noqa: F401  (fixtures)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # paho's ssl.PROTOCOL_TLS


# ---- remote-mqtt: the seed's configs as written ---------------------------------------------

def test_seed_chapter10_config_as_written(hub_factory, mosq, module, paho, tmp_path):
    """Chapter 10's remote config, keys and values as the seed writes them (a top-level
    `name`, a remote over ssl with clientid, a username and no password, ca/cert/key; the hub
    subscription t1 without qos; the remote subscription t2 with qos 1; logger path relative
    to the work dir, level 'debug')."""
    hub = hub_factory(extra="logger: {level: debug}\n")
    certs = make_certs(tmp_path / "certs")
    cloud = mosq(certs=certs)
    conf = f"""name: remote-iothub
hub:
  address: tcp://127.0.0.1:{hub.port}
  username: test
  password: hahaha
remotes:
  - name: iothub
    address: 'ssl://127.0.0.1:{cloud.ssl_port}'
    clientid: remote-iothub-1
    username: 'xxxxxx/test'
    ca: var/db/baetyl/cert/ca.pem
    cert: var/db/baetyl/cert/client.pem
    key: var/db/baetyl/cert/client.key
rules:
  - hub:
      subscriptions:
        - topic: t1
    remote:
      name: iothub
      subscriptions:
        - topic: t2
          qos: 1
logger:
  path: var/log/baetyl/remote-service.log
  level: 'debug'
"""
    r = module("baetyl-remote-mqtt", conf, start=False)
    # the certificates where the relative paths of the config point, from the work dir
    cert_dir = os.path.join(r.dir, "var", "db", "baetyl", "cert")
    os.makedirs(cert_dir)
    for src, dst in ((certs["ca"], "ca.pem"), (certs["client"], "client.pem"),
                     (certs["client_key"], "client.key")):
        with open(src, "rb") as f, open(os.path.join(cert_dir, dst), "wb") as g:
            g.write(f.read())
    r.start()

    box = paho(hub.port, [("t2", 1)], user="test", password="hahaha")      # MQTTBox
    fx = paho(cloud.port, [("t1", 1)])                                      # MQTT.fx
    flowing(box, fx, "t1")
    flowing(fx, box, "t2")
    box.pub("t1", b"This message is from MQTTBox.", 1)
    fx.pub("t2", b"This message is from MQTT.fx.", 1)
    wait_for(lambda: fx.got("t1") and box.got("t2"), 20, what="both directions")
    time.sleep(0.3)
    # t1 is subscribed at the hub with the default qos 0: the copy is QoS 0
    assert fx.got("t1") == [("t1", b"This message is from MQTTBox.", 0, False)]
    assert box.got("t2") == [("t2", b"This message is from MQTT.fx.", 1, False)]

    # §13/§17: remote client id from remotes[].clientid, the username, cleansession false,
    # keepalive 10m; at the hub the same client id (no rules[].hub.clientid)
    assert ("remote-iothub-1", False, 600, "xxxxxx/test") in cloud.connects(), cloud.connects()
    assert "remote-iothub-1" in hub_clients(hub)
    # §18: the log file at its relative path, text lines like logrus
    lines = r.log("var/log/baetyl/remote-service.log").splitlines()
    assert any('msg="rule started"' in ln for ln in lines), lines
    for ln in lines:
        assert re.match(r'time="\d{4}-\d\d-\d\dT[^"]+" level=(debug|info|warning|error) '
                        r'msg=', ln), ln


def test_seed_6_4_3_qos_per_subscription(hub, mosq, module, paho):
    """6.4.3's rule example: hub subscriptions say (qos 1) and hi (qos 0), remote
    subscriptions remote/say and remote/hi (qos 0). Delivered QoS is min(publish, subscription):
    a QoS 1 message on hi or remote/* arrives as QoS 0, a QoS 0 message on say stays QoS 0."""
    cloud = mosq()
    module("baetyl-remote-mqtt", hub_yaml(hub) + f"""remotes:
  - name: cloud
    address: tcp://127.0.0.1:{cloud.port}
    interval: 1s
rules:
  - hub:
      subscriptions:
        - topic: say
          qos: 1
        - topic: hi
          qos: 0
    remote:
      name: cloud
      subscriptions:
        - topic: remote/say
          qos: 0
        - topic: remote/hi
          qos: 0
""")
    at_hub = paho(hub.port, [("remote/#", 1)], user="test", password="hahaha")
    at_cloud = paho(cloud.port, [("say", 1), ("hi", 1)])
    for t in ("say", "hi"):
        flowing(at_hub, at_cloud, t)
    for t in ("remote/say", "remote/hi"):
        flowing(at_cloud, at_hub, t)
    for q in (1, 0):
        at_hub.pub("say", f"say q{q}".encode(), q)
        at_hub.pub("hi", f"hi q{q}".encode(), q)
        at_cloud.pub("remote/say", f"rsay q{q}".encode(), q)
        at_cloud.pub("remote/hi", f"rhi q{q}".encode(), q)
    wait_for(lambda: len(at_cloud.got()) >= 4 and len(at_hub.got()) >= 4, 20, what="8 messages")
    time.sleep(0.3)
    assert sorted(at_cloud.got()) == sorted([
        ("say", b"say q1", 1, False), ("say", b"say q0", 0, False),
        ("hi", b"hi q1", 0, False), ("hi", b"hi q0", 0, False)])
    assert sorted(at_hub.got()) == sorted([
        ("remote/say", b"rsay q1", 0, False), ("remote/say", b"rsay q0", 0, False),
        ("remote/hi", b"rhi q1", 0, False), ("remote/hi", b"rhi q0", 0, False)])


def test_messages_unchanged_both_ways(hub, mosq, module, paho):
    """Topic (UTF-8, spaces, deep levels), payload bytes (empty, every byte value, NUL, 30 KB)
    and QoS (0 stays 0, 1 stays 1) unchanged in both directions, in publish order per QoS
    (MQTT orders messages of one QoS only: the hub delivers QoS 1 after its log commit)."""
    cloud = mosq()
    module("baetyl-remote-mqtt", hub_yaml(hub) + f"""remotes:
  - {{name: cloud, address: 'tcp://127.0.0.1:{cloud.port}', interval: 1s}}
rules:
  - hub: {{subscriptions: [{{topic: 'up/#', qos: 1}}]}}
    remote: {{name: cloud, subscriptions: [{{topic: 'down/#', qos: 1}}]}}
""")
    at_hub = paho(hub.port, [("down/#", 1)], user="test", password="hahaha")
    at_cloud = paho(cloud.port, [("up/#", 1)])
    flowing(at_hub, at_cloud, "up/p")
    flowing(at_cloud, at_hub, "down/p")
    cases = [("x", b"", 1), ("x", b"", 0), ("bytes", bytes(range(256)), 1),
             ("bytes", bytes(range(255, -1, -1)), 0), ("nul", b"\x00\x00a\x00", 1),
             ("big", os.urandom(30000), 1), ("ü é/日本/a b/c/d/e", "héllo ✓".encode(), 1),
             ("x", b"last", 0)]
    for src, dst, pre in ((at_hub, at_cloud, "up/"), (at_cloud, at_hub, "down/")):
        for sub, payload, q in cases:
            src.pub(pre + sub, payload, q)
        want = [(pre + sub, payload, q, False) for sub, payload, q in cases]
        wait_for(lambda: len(dst.got()) >= len(want), 20, what=f"{len(want)} on {pre}")
        time.sleep(0.3)
        got = [m for m in dst.got() if m[0] != pre + "p"]
        for q in (0, 1):
            assert [m for m in got if m[2] == q] == [m for m in want if m[2] == q], \
                [(m[0], m[1][:20], m[2], m[3]) for m in got]
        assert len(got) == len(want)


def test_forwarded_packets_and_end_to_end_ack_on_the_wire(fake, module):
    """Two fake brokers: the CONNECT fields each side gets (§17 defaults: cleansession false,
    keepalive 10m, MQTT 3.1.1; client id precedence), the exact PUBLISH forwarded (topic,
    payload, QoS, retain; DUP 0) and a QoS 1 PUBACK given to its source only after the other
    side acknowledged the copy, both ways."""
    hub = fake(auto_puback=False)
    cloud = fake(auto_puback=False)
    module("baetyl-remote-mqtt", f"""hub:
  address: {hub.address}
  username: test
  password: hahaha
remotes:
  - name: cloud
    address: {cloud.address}
    clientid: remote-level-id
    username: cloud-user
rules:
  - hub: {{subscriptions: [{{topic: t1, qos: 1}}]}}
    remote: {{name: cloud, clientid: rule-level-id, subscriptions: [{{topic: t2, qos: 1}}]}}
""")
    h, c = hub.wait_conn(), cloud.wait_conn()
    assert h.connect == {"protocol": "MQTT", "level": 4, "clean": False, "keepalive": 600,
                         "clientid": "rule-level-id", "username": "test",
                         "password": b"hahaha"}, h.connect
    assert c.connect == {"protocol": "MQTT", "level": 4, "clean": False, "keepalive": 600,
                         "clientid": "rule-level-id", "username": "cloud-user",
                         "password": None}, c.connect
    wait_for(lambda: h.of_type(8) and c.of_type(8), 10, what="SUBSCRIBE on both sides")
    assert h.of_type(8)[0][3][2:] == mqtt_str("t1") + b"\x01"
    assert c.of_type(8)[0][3][2:] == mqtt_str("t2") + b"\x01"

    # hub -> remote, QoS 1 retained with binary payload
    h.send(publish_packet("t1", b"\x00\x01bin\xff", qos=1, retain=True, pid=9))
    wait_for(c.publishes, 10, what="copy at the remote")
    p = c.publishes()[0]
    assert (p["topic"], p["payload"], p["qos"], p["retain"], p["dup"]) == \
        ("t1", b"\x00\x01bin\xff", 1, True, False)
    time.sleep(1.0)
    assert h.pubacks() == [], "hub message acknowledged before the remote acknowledged it"
    c.send(FakeBroker.puback(p["pid"]))
    wait_for(lambda: h.pubacks() == [9], 10, what="PUBACK 9 at the hub")

    # remote -> hub, QoS 1 with an empty payload
    c.send(publish_packet("t2", b"", qos=1, pid=7))
    wait_for(h.publishes, 10, what="copy at the hub")
    p = h.publishes()[0]
    assert (p["topic"], p["payload"], p["qos"], p["retain"], p["dup"]) == \
        ("t2", b"", 1, False, False)
    time.sleep(1.0)
    assert c.pubacks() == [], "remote message acknowledged before the hub acknowledged it"
    h.send(FakeBroker.puback(p["pid"]))
    wait_for(lambda: c.pubacks() == [7], 10, what="PUBACK 7 at the remote")

    # QoS 0 keeps its retain flag, both ways
    h.send(publish_packet("t1", b"q0 retained", qos=0, retain=True))
    c.send(publish_packet("t2", b"q0 plain", qos=0))
    wait_for(lambda: len(c.publishes()) >= 2 and len(h.publishes()) >= 2, 10, what="QoS 0 copies")
    p, q = c.publishes()[1], h.publishes()[1]
    assert (p["topic"], p["payload"], p["qos"], p["retain"]) == ("t1", b"q0 retained", 0, True)
    assert (q["topic"], q["payload"], q["qos"], q["retain"]) == ("t2", b"q0 plain", 0, False)


def test_client_id_precedence(fake, module):
    """§13: remote client id = rules[].remote.clientid, else remotes[].clientid, else the
    remote's name; hub client id = rules[].hub.clientid, else the remote client id."""
    hub = fake()
    r1, r2, r3 = fake(), fake(), fake()
    module("baetyl-remote-mqtt", f"""hub: {{address: '{hub.address}', username: test}}
remotes:
  - {{name: one, address: '{r1.address}', clientid: one-remote}}
  - {{name: two, address: '{r2.address}', clientid: two-remote}}
  - {{name: three, address: '{r3.address}'}}
rules:
  - hub: {{clientid: rule1-hub}}
    remote: {{name: one, clientid: rule1-remote}}
  - remote: {{name: two}}
  - hub: {{subscriptions: [{{topic: a}}]}}
    remote: {{name: three}}
""")
    assert r1.wait_conn().connect["clientid"] == "rule1-remote"
    assert r2.wait_conn().connect["clientid"] == "two-remote"
    assert r3.wait_conn().connect["clientid"] == "three"
    hub.wait_conn(3)
    assert sorted(c.connect["clientid"] for c in hub.conns) == ["rule1-hub", "three", "two-remote"]


def test_seed_camelcase_clientid_keys(fake, module):
    """6.4.3 spells the key `clientId` (rules[].hub, rules[].remote, remotes[]). SPEC §17 says
    `clientid`; a user copying the seed expects the id to be used, not silently ignored."""
    hub, cloud = fake(), fake()
    module("baetyl-remote-mqtt", f"""hub: {{address: '{hub.address}', username: test}}
remotes:
  - {{name: cloud, address: '{cloud.address}', clientId: camel-remote}}
rules:
  - hub: {{clientId: camel-hub}}
    remote: {{name: cloud}}
""")
    assert cloud.wait_conn().connect["clientid"] == "camel-remote"
    assert hub.wait_conn().connect["clientid"] == "camel-hub"


# ---- §17 settings: backoff, timeout, keepalive, cleansession ------------------------------

def test_reconnect_backoff_timeout_keepalive(fake, module):
    """interval: reconnect waits 500ms and doubles up to `interval` (2s here; the default 1m
    lets it reach 4s); timeout: a broker that never answers CONNECT is given up after
    `timeout` (1s here; nothing within 8s with the default 30s); keepalive 2s and
    cleansession true reach the CONNECT, and a PINGREQ follows ~2s of silence."""
    hub = fake()
    capped, default, silent, silent_def, custom = (fake("refuse"), fake("refuse"),
                                                   fake("silent"), fake("silent"), fake())
    t0 = time.monotonic()
    module("baetyl-remote-mqtt", f"""hub: {{address: '{hub.address}', username: test}}
remotes:
  - {{name: capped, address: '{capped.address}', interval: 2s}}
  - {{name: default, address: '{default.address}'}}
  - {{name: silent, address: '{silent.address}', timeout: 1s, interval: 1s}}
  - {{name: silentdef, address: '{silent_def.address}'}}
  - {{name: custom, address: '{custom.address}', clientid: custom-id, cleansession: true,
      keepalive: 2s}}
rules:
  - remote: {{name: capped}}
  - remote: {{name: default}}
  - remote: {{name: silent}}
  - remote: {{name: silentdef}}
  - remote: {{name: custom, subscriptions: [{{topic: x}}]}}
""")
    wait_for(lambda: len(default.attempts) >= 5, 15, what="5 attempts with the default interval")
    assert len(silent_def.attempts) == 1 and time.monotonic() - t0 > 7, silent_def.attempts
    g = gaps(capped.attempts[:5])
    assert 0.3 <= g[0] <= 0.9 and 0.8 <= g[1] <= 1.5 and 1.7 <= g[2] <= 2.6 and \
        1.7 <= g[3] <= 2.6, g
    g = gaps(default.attempts[:5])
    assert 0.3 <= g[0] <= 0.9 and 0.8 <= g[1] <= 1.5 and 1.7 <= g[2] <= 2.6 and \
        3.6 <= g[3] <= 4.8, g
    g = gaps(silent.attempts[:3])
    assert 1.3 <= g[0] <= 2.0 and 1.8 <= g[1] <= 2.7, g   # 1s timeout + 0.5s, 1s + 1s
    c = custom.conn(0)
    assert c.connect["clean"] is True and c.connect["keepalive"] == 2 and \
        c.connect["clientid"] == "custom-id", c.connect
    pings = c.of_type(12)
    assert pings, "no PINGREQ with keepalive 2s"
    first = pings[0][0] - c.packets[0][0]
    assert 1.5 <= first <= 3.5, first
    assert len(custom.attempts) == 1  # answered pings keep the link up


def test_validatesubs_default_false_keeps_running(hub, mosq, module, paho):
    """§17 validatesubs false: a subscription the hub refuses is not fatal; the others work."""
    cloud = mosq()
    r = module("baetyl-remote-mqtt", f"""hub:
  address: tcp://127.0.0.1:{hub.port}
  username: limited
  password: secret
remotes: [{{name: cloud, address: 'tcp://127.0.0.1:{cloud.port}', interval: 1s}}]
rules:
  - hub: {{subscriptions: [{{topic: forbidden, qos: 1}}, {{topic: a/ok, qos: 1}}]}}
    remote: {{name: cloud}}
""")
    src = paho(hub.port, user="test", password="hahaha")
    dst = paho(cloud.port, [("#", 1)])
    flowing(src, dst, "a/ok")
    src.pub("a/ok", b"allowed", 1)
    wait_for(lambda: dst.got("a/ok"), 10, what="a/ok at the remote")
    assert r.proc.poll() is None
    assert "forbidden" in r.log()  # the refusal is reported


# ---- QoS 1 end to end across restarts --------------------------------------------------------

def persistent_conf(hub, cloud):
    return hub_yaml(hub) + f"""remotes:
  - name: iothub
    address: tcp://127.0.0.1:{cloud.port}
    clientid: remote-iothub-1
    interval: 1s
rules:
  - hub: {{subscriptions: [{{topic: t1, qos: 1}}]}}
    remote: {{name: iothub, subscriptions: [{{topic: t2, qos: 1}}]}}
"""


def test_qos1_published_while_remote_mqtt_is_down(hub, mosq, module, paho):
    """cleansession false (the default) on both sides: QoS 1 messages published on either
    broker while remote-mqtt is stopped are delivered once it is back."""
    cloud = mosq()
    r = module("baetyl-remote-mqtt", persistent_conf(hub, cloud))
    at_hub = paho(hub.port, [("t2", 1)], user="test", password="hahaha")
    at_cloud = paho(cloud.port, [("t1", 1)])
    flowing(at_hub, at_cloud, "t1")
    flowing(at_cloud, at_hub, "t2")
    assert r.stop() == 0
    for i in range(20):
        at_hub.pub("t1", b"h%d" % i, 1)
        at_cloud.pub("t2", b"c%d" % i, 1)
    r.start()
    wait_for(lambda: {m[1] for m in at_cloud.got("t1")} >= {b"h%d" % i for i in range(20)}
             and {m[1] for m in at_hub.got("t2")} >= {b"c%d" % i for i in range(20)}, 30,
             what="40 messages after the restart")
    assert all(m[2] == 1 for m in at_cloud.got("t1") + at_hub.got("t2"))


def test_qos1_remote_to_hub_while_the_remote_restarts(hub, mosq, module, paho):
    """remote -> hub QoS 1 while the remote broker restarts mid-stream: nothing is lost."""
    cloud = mosq()
    module("baetyl-remote-mqtt", persistent_conf(hub, cloud))
    at_hub = paho(hub.port, [("t2", 1)], user="test", password="hahaha", client_id="w-hub",
                  clean=False)
    pub = paho(cloud.port, client_id="pub-cloud", clean=False)
    flowing(pub, at_hub, "t2")
    n = 100
    for i in range(n):
        if i == 40:
            cloud.stop()
            time.sleep(0.3)
            cloud.start()
            wait_for(pub.up.is_set, 15, what="publisher back")
        pub.pub("t2", str(i).encode(), 1)
    wait_for(lambda: {int(m[1]) for m in at_hub.got("t2")} >= set(range(n)), 40,
             what=f"all {n} at the hub")


# ---- TLS: insecure, client certificates towards the hub -------------------------------------

def test_ssl_remote_name_check_and_insecure(hub, mosq, module, paho, tmp_path):
    """The remote's certificate is for 127.0.0.1/localhost and it is dialled as 127.0.0.2:
    without `insecure` the name check fails and nothing is forwarded; with `insecure: true`
    (same ca/cert/key) it connects and forwards."""
    certs = make_certs(tmp_path / "certs")
    cloud = mosq(certs=certs, ssl_host="127.0.0.2")
    tls = f"ca: {certs['ca']}, cert: {certs['client']}, key: {certs['client_key']}"
    r = module("baetyl-remote-mqtt", hub_yaml(hub) + f"""remotes:
  - {{name: strict, address: 'ssl://127.0.0.2:{cloud.ssl_port}', {tls}, interval: 1s}}
  - {{name: lax, address: 'ssl://127.0.0.2:{cloud.ssl_port}', {tls}, insecure: true, interval: 1s}}
rules:
  - hub: {{subscriptions: [{{topic: up/strict, qos: 1}}]}}
    remote: {{name: strict}}
  - hub: {{subscriptions: [{{topic: up/lax, qos: 1}}]}}
    remote: {{name: lax}}
""")
    src = paho(hub.port, user="test", password="hahaha")
    dst = paho(cloud.port, [("up/#", 1)])
    flowing(src, dst, "up/lax")
    src.pub("up/strict", b"must not pass", 1)
    src.pub("up/lax", b"passes", 1)
    wait_for(lambda: dst.got("up/lax"), 10, what="up/lax")
    time.sleep(1.0)
    assert dst.got("up/strict") == []
    assert "strict" not in [c[0] for c in cloud.connects()]
    assert "lax" in [c[0] for c in cloud.connects()]
    assert re.search(r"mqtt client cannot connect.*127\.0\.0\.2", r.log()), r.log()[-2000:]


# ---- §18 logging ------------------------------------------------------------------------------

def json_lines(text):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return [json.loads(ln) for ln in lines]


def test_logger_json_file_and_level(hub, module, paho):
    """logger {path (relative to the work dir), level, format json}: every line is a JSON
    object with level, msg and time; lines below the level are left out. The timer without
    timer.interval (default 1m) publishes nothing within a few seconds."""
    w = paho(hub.port, [("#", 1)], user="test", password="hahaha")
    t = module("baetyl-timer", hub_yaml(hub, "  clientid: log-timer\n") +
               "logger: {path: var/log/baetyl/timer.log, level: info, format: json}\n")
    r = module("baetyl-remote-mqtt", hub_yaml(hub) + """remotes:
  - {name: gone, address: 'tcp://127.0.0.1:1', interval: 1s}
rules:
  - remote: {name: gone}
logger:
  path: logs/remote.log
  level: warn
  format: json
""")
    wait_for(lambda: "cannot connect" in r.log("logs/remote.log"), 10, what="a warning")
    time.sleep(2.5)
    assert w.got() == [], "a tick before the default interval of 1m"
    lines = json_lines(r.log("logs/remote.log"))
    assert lines and all({"level", "msg", "time"} <= set(x) for x in lines), lines[:5]
    assert {x["level"] for x in lines} <= {"warning", "error"}, lines
    assert any(x["msg"] == "mqtt client cannot connect" for x in lines)
    lines = json_lines(t.log("var/log/baetyl/timer.log"))
    assert any(x["msg"] == "mqtt client connected" and x["level"] == "info" for x in lines), lines
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", lines[0]["time"]), lines[0]


# ---- config errors name the field ----------------------------------------------------------

@pytest.mark.parametrize("conf,want", [
    # chapter 10's config with the rule naming a remote that is not declared
    ("""name: remote-iothub
hub: {address: 'tcp://127.0.0.1:1', username: test, password: hahaha}
remotes:
  - {name: iothub, address: 'ssl://127.0.0.1:2', clientid: remote-iothub-1}
rules:
  - hub: {subscriptions: [{topic: t1}]}
    remote: {name: IoTHub, subscriptions: [{topic: t2, qos: 1}]}
""", ["rules[0].remote.name", "IoTHub"]),
    ("""hub: {address: 'tcp://127.0.0.1:1'}
remotes: [{name: a, address: 'tcp://127.0.0.1:2'}]
rules: [{hub: {subscriptions: [{topic: t1}]}, remote: {subscriptions: [{topic: t2}]}}]
""", ["rules[0].remote.name", "required"]),
    ("""hub: {address: 'tcp://127.0.0.1:1'}
remotes: [{address: 'tcp://127.0.0.1:2'}]
""", ["remotes[0].name", "required"]),
    ("""hub: {address: 'tcp://127.0.0.1:1'}
remotes: [{name: a}]
""", ["remotes[0].address", "required"]),
    ("""hub: {address: 'tcp://127.0.0.1:1'}
remotes: [{name: a, address: 'tcp://127.0.0.1:2'}]
rules: [{hub: {subscriptions: [{topic: t1, qos: 2}]}, remote: {name: a}}]
""", ["rules[0].hub.subscriptions[0].qos"]),
    ("""hub: {address: 'tcp://127.0.0.1:1'}
remotes: [{name: a, address: 'tcp://127.0.0.1:2', keepalive: soon}]
""", ["remotes[0].keepalive"]),
])
def test_remote_mqtt_config_errors_name_the_field(tmp_path, conf, want):
    rc, out = run_once(tmp_path, "baetyl-remote-mqtt", conf)
    assert rc == 1, out
    for w in want:
        assert w in out, out
    assert "Sanitizer" not in out
