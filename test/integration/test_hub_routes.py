"""baetyl-hub static routes (SPEC §11 Routes) and config errors that refuse to start."""
import subprocess
import time

import pytest

from conftest import RawClient, binary, mqtt_publish, mqtt_puback, mqtt_subscribe, parse_publish

ROUTES = """
subscriptions:
  - source: {topic: t}
    target: {topic: t/topic}
  - source: {topic: 'chain/a', qos: 1}
    target: {topic: 'chain/b', qos: 1}
  - source: {topic: 'chain/b', qos: 1}
    target: {topic: 'chain/c', qos: 0}
  - source: {topic: 'qi/+', qos: 1}
    target: {topic: 'q/out', qos: 1}
"""


def client(hub, cid):
    c = RawClient(hub.port)
    assert c.connect(client_id=cid, username="test", password="hahaha") == 0
    return c


def collect(c, n):
    out = []
    for _ in range(n):
        m = c.recv()
        t, pl, q, r, dup, pid = parse_publish(m[1], m[2])
        if q:
            c.send(mqtt_puback(pid))
        out.append((t, pl, q))
    return sorted(out)


def test_route_seed_example(hub_factory):
    hub = hub_factory(ROUTES)
    s = client(hub, "s")
    s.send(mqtt_subscribe(1, [("t", 1), ("t/topic", 1)]))
    s.recv()
    p = client(hub, "p")
    p.send(mqtt_publish("t", b"This is a new message.", qos=0))
    assert collect(s, 2) == [("t", b"This is a new message.", 0), ("t/topic", b"This is a new message.", 0)]


def test_route_chain_and_qos(hub_factory):
    hub = hub_factory(ROUTES)
    s = client(hub, "s")
    s.send(mqtt_subscribe(1, [("chain/#", 1), ("q/out", 1)]))
    s.recv()
    p = client(hub, "p")
    p.send(mqtt_publish("chain/a", b"x", qos=1, pid=3))
    assert p.recv()[0] == 4
    # a (QoS 1) -> b (target qos 1) -> c (target qos 0)
    assert collect(s, 3) == [("chain/a", b"x", 1), ("chain/b", b"x", 1), ("chain/c", b"x", 0)]
    # QoS 0 in: the routed copy is QoS 0 whatever the target says
    p.send(mqtt_publish("qi/in", b"y", qos=0))
    assert collect(s, 1) == [("q/out", b"y", 0)]
    p.send(mqtt_publish("qi/in", b"z", qos=1, pid=4))
    p.recv()
    assert collect(s, 1) == [("q/out", b"z", 1)]


def test_routed_qos1_copy_is_durable(hub_factory):
    hub = hub_factory(ROUTES)
    s = RawClient(hub.port)
    assert s.connect(client_id="dur", username="test", password="hahaha", clean=False) == 0
    s.send(mqtt_subscribe(1, [("q/out", 1)]))
    s.recv()
    s.close()
    time.sleep(0.2)
    p = client(hub, "p")
    p.send(mqtt_publish("qi/in", b"offline", qos=1, pid=9))
    assert p.recv()[0] == 4
    s = RawClient(hub.port)
    assert s.connect(client_id="dur", username="test", password="hahaha", clean=False) == 0
    assert collect(s, 1) == [("q/out", b"offline", 1)]


BAD = [
    ("subscriptions:\n  - source: {topic: 'a/#/b'}\n    target: {topic: x}\n", "source.topic"),
    ("subscriptions:\n  - source: {topic: a}\n    target: {topic: 'x/+'}\n", "target.topic"),
    ("subscriptions:\n  - source: {topic: a}\n    target: {topic: b}\n"
     "  - source: {topic: a}\n    target: {topic: b}\n", "duplicate route"),
    ("subscriptions:\n  - source: {topic: a}\n    target: {topic: b}\n"
     "  - source: {topic: 'b'}\n    target: {topic: c}\n"
     "  - source: {topic: '+'}\n    target: {topic: a}\n", "cycle"),
    ("subscriptions:\n  - source: {topic: 'x/#'}\n    target: {topic: x/y}\n", "cycle"),
    ("subscriptions:\n  - source: {topic: a, qos: 2}\n    target: {topic: b}\n", "qos"),
]


@pytest.mark.parametrize("extra,why", BAD)
def test_route_config_errors_refuse_to_start(hub_factory, extra, why):
    hub = hub_factory(extra, start=False)
    r = subprocess.run([binary("baetyl-hub"), "-c", hub.conf], cwd=hub.dir, capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0
    assert why in r.stderr, r.stderr


PRINCIPAL_ERRORS = [
    ("principals:\n  - username: u\n    password: p\n  - username: u\n    password: q\n", "duplicate username"),
    ("principals:\n  - username: u\n    password: p\n    permissions:\n"
     "      - {action: pub, permit: ['a/#/b']}\n", "pub topic(a/#/b) invalid"),
    ("principals:\n  - username: u\n    permissions:\n      - {action: fly, permit: ['a']}\n", "action"),
    ("message: {length: {max: 300m}}\n", "message.length.max"),
]


@pytest.mark.parametrize("principals,why", PRINCIPAL_ERRORS)
def test_principal_config_errors(hub_factory, principals, why):
    hub = hub_factory(principals=principals, start=False)
    r = subprocess.run([binary("baetyl-hub"), "-c", hub.conf], cwd=hub.dir, capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0
    assert why in r.stderr, r.stderr


def test_unsupported_listener_refused(hub_factory):
    hub = hub_factory(start=False)
    text = open(hub.conf).read().replace("listen: ['tcp://", "listen: ['udp://")
    open(hub.conf, "w").write(text)
    r = subprocess.run([binary("baetyl-hub"), "-c", hub.conf], cwd=hub.dir, capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0 and "listen" in r.stderr
