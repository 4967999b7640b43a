"""Static routes (SPEC §11 Routes): the QoS rule, wildcard sources, fan-out, chains, routed
wills, RETAIN of routed copies, durable routed QoS 1 copies."""

import time

import pytest

from conftest import RawClient, mqtt_puback, mqtt_publish, mqtt_subscribe, parse_publish
from hub_util import conn, get, nothing, publish_acked, subscribe
from hub_util import shub  # noqa: F401 (the module's shared hub, a fixture)


@pytest.mark.parametrize("s", [0, 1])
@pytest.mark.parametrize("t", [0, 1])
@pytest.mark.parametrize("mq", [0, 1])
def test_route_qos_rule(shub, s, t, mq):
    """QoS = 0 if min(message QoS, source.qos) is 0, else target.qos."""
    sub = conn(shub, f"rqs{s}{t}{mq}")
    assert subscribe(sub, [(f"rq/s{s}t{t}/out", 1)]) == [1]
    p = conn(shub, f"rqp{s}{t}{mq}")
    if mq:
        publish_acked(p, f"rq/s{s}t{t}/in", b"m")
    else:
        p.send(mqtt_publish(f"rq/s{s}t{t}/in", b"m"))
    want = 0 if min(mq, s) == 0 else t
    assert get(sub)[:3] == (f"rq/s{s}t{t}/out", b"m", want)
    nothing(sub, 0.2)


def test_route_wildcard_sources(shub):
    sub = conn(shub, "rw")
    assert subscribe(sub, [("all/temp", 1), ("fanin/out", 1)]) == [1, 1]
    p = conn(shub, "rw-p")
    publish_acked(p, "sensor/1/temp", b"21")
    publish_acked(p, "sensor/1/hum", b"40", pid=2)
    publish_acked(p, "in", b"parent", pid=3)        # in/# matches in
    publish_acked(p, "in/a/b", b"deep", pid=4)
    got = sorted(get(sub)[:3] for _ in range(3))
    assert got == [("all/temp", b"21", 1), ("fanin/out", b"deep", 1), ("fanin/out", b"parent", 1)]
    nothing(sub, 0.3)


def test_route_fan_out_and_original_still_delivered(shub):
    sub = conn(shub, "rf")
    assert subscribe(sub, [("fan/#", 0)]) == [0]
    p = conn(shub, "rf-p")
    p.send(mqtt_publish("fan/src", b"f"))
    got = sorted(get(sub)[:2] for _ in range(3))
    assert got == [("fan/a", b"f"), ("fan/b", b"f"), ("fan/src", b"f")]
    nothing(sub, 0.3)


def test_route_chain_through_wildcard_source(shub):
    sub = conn(shub, "rc")
    assert subscribe(sub, [("ch/1", 1), ("ch2/+", 1), ("ch3/#", 1)]) == [1, 1, 1]
    p = conn(shub, "rc-p")
    publish_acked(p, "ch/1", b"c")
    got = sorted(get(sub)[:3] for _ in range(3))
    assert got == [("ch/1", b"c", 1), ("ch2/x", b"c", 1), ("ch3/y", b"c", 0)]
    nothing(sub, 0.3)


def test_will_is_routed_like_any_message(shub):
    sub = conn(shub, "rwill")
    assert subscribe(sub, [("t/topic", 1)]) == [1]
    a = conn(shub, "rwill-a", will=("t", b"routed will", 1, False))
    a.close()
    assert get(sub)[:2] == ("t/topic", b"routed will")


def test_routed_copy_retain_flag_is_0(shub):
    sub = conn(shub, "rr")
    assert subscribe(sub, [("fan/a", 0)]) == [0]
    p = conn(shub, "rr-p")
    p.send(mqtt_publish("fan/src", b"r", retain=True))
    assert get(sub)[:4] == ("fan/a", b"r", 0, False)
    p.send(mqtt_publish("fan/src", b"", retain=True))


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
    s = conn(hub, "s")
    s.send(mqtt_subscribe(1, [("t", 1), ("t/topic", 1)]))
    s.recv()
    p = conn(hub, "p")
    p.send(mqtt_publish("t", b"This is a new message.", qos=0))
    assert collect(s, 2) == [("t", b"This is a new message.", 0), ("t/topic", b"This is a new message.", 0)]


def test_route_chain_and_qos(hub_factory):
    hub = hub_factory(ROUTES)
    s = conn(hub, "s")
    s.send(mqtt_subscribe(1, [("chain/#", 1), ("q/out", 1)]))
    s.recv()
    p = conn(hub, "p")
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
    p = conn(hub, "p")
    p.send(mqtt_publish("qi/in", b"offline", qos=1, pid=9))
    assert p.recv()[0] == 4
    s = RawClient(hub.port)
    assert s.connect(client_id="dur", username="test", password="hahaha", clean=False) == 0
    assert collect(s, 1) == [("q/out", b"offline", 1)]
