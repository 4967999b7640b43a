"""Retained messages (SPEC §11 Delivery): set, replace, clear, delivery after SUBACK at the
minimum QoS, redelivery when unacknowledged, survival across restarts."""

import time

import pytest

from conftest import mqtt_puback, mqtt_publish, mqtt_subscribe, parse_publish
from hub_util import Paho, conn, get, nothing, ping, publish_acked, subscribe
from hub_util import shub  # noqa: F401 (the module's shared hub, a fixture)


def test_retained_delivered_after_suback_at_min_qos(shub):
    p = conn(shub, "rq-p")
    publish_acked(p, "ret/q1", b"R1", retain=True)
    p.send(mqtt_publish("ret/q0", b"R0", qos=0, retain=True))
    assert ping(p)
    for sq, want in [(0, {"ret/q1": 0, "ret/q0": 0}), (1, {"ret/q1": 1, "ret/q0": 0})]:
        s = conn(shub, f"rq-s{sq}")
        s.send(mqtt_subscribe(5, [("ret/+", sq)]))
        first = s.recv()
        assert first[0] == 9, "retained messages must come after the SUBACK"
        got = {}
        for _ in range(2):
            t, pl, q, retain, dup, pid = get(s)
            assert retain, "a retained message is sent with RETAIN=1"
            got[t] = q
        assert got == want
        nothing(s, 0.3)
    # a live delivery of a RETAIN=1 publish carries RETAIN=0
    p.send(mqtt_publish("ret/q0", b"R0b", qos=0, retain=True))
    m = get(s)
    assert m[:4] == ("ret/q0", b"R0b", 0, False)
    # empty payload deletes
    p.send(mqtt_publish("ret/q0", b"", retain=True))
    publish_acked(p, "ret/q1", b"", pid=3, retain=True)
    time.sleep(0.1)
    s = conn(shub, "rq-s2")
    assert subscribe(s, [("ret/#", 1)]) == [1]
    nothing(s, 0.5)


def test_retained_qos1_unacked_resent_on_reconnect(shub):
    """SPEC: unacknowledged QoS 1 deliveries are resent until PUBACK or session end; a
    persistent session does not end with its connection (MQTT 4.4 too)."""
    p = conn(shub, "rz-p")
    publish_acked(p, "rz/x", b"retained one", retain=True)
    s = conn(shub, "rz", clean=False)
    assert subscribe(s, [("rz/#", 1)]) == [1]
    assert get(s, ack=False)[:4] == ("rz/x", b"retained one", 1, True)
    s.close()
    time.sleep(0.3)
    s = conn(shub, "rz", clean=False)
    try:
        m = get(s)
        assert m[:3] == ("rz/x", b"retained one", 1)
    finally:
        s.send(bytes([0xE0, 0]))
        conn(shub, "rz", clean=True).send(bytes([0xE0, 0]))
        p.send(mqtt_publish("rz/x", b"", retain=True))


def test_retained_set_replace_clear(hub):
    p = Paho(hub.port, "pub")
    p.pub("r/a", b"one", 1, retain=True)
    p.pub("r/a", b"two", 1, retain=True)
    p.pub("r/b", b"bee", 0, retain=True)
    s = conn(hub, "s1")
    s.send(mqtt_subscribe(3, [("r/#", 1)]))
    assert s.recv()[0] == 9  # SUBACK first
    got = {}
    for _ in range(2):
        m = s.recv()
        t, pl, q, retain, dup, pid = parse_publish(m[1], m[2])
        assert retain
        got[t] = (pl, q)
        if q:
            s.send(mqtt_puback(pid))
    assert got == {"r/a": (b"two", 1), "r/b": (b"bee", 0)}
    # live deliveries carry RETAIN=0
    p.pub("r/a", b"three", 0, retain=True)
    m = s.recv()
    assert parse_publish(m[1], m[2])[:4] == ("r/a", b"three", 0, False)
    # clear
    p.pub("r/a", b"", 0, retain=True)
    p.pub("r/b", b"", 0, retain=True)
    time.sleep(0.2)
    s2 = conn(hub, "s2")
    s2.send(mqtt_subscribe(3, [("r/#", 1)]))
    assert s2.recv()[0] == 9
    with pytest.raises(TimeoutError):
        s2.recv(timeout=0.5)


def test_retained_survives_restart(hub):
    p = Paho(hub.port, "pub")
    p.pub("keep/me", b"kept", 1, retain=True)
    p.close()
    hub.stop()
    hub.start()
    s = Paho(hub.port, "s")
    s.sub("keep/#", 1)
    m = s.get()
    assert (m.topic, m.payload, m.retain) == ("keep/me", b"kept", True)
