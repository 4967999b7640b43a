"""Delivery (SPEC §11 Delivery): the QoS matrix, downgrades, overlapping subscriptions, DUP
redelivery, UNSUBSCRIBE, the QoS 1 egress window with catch-up, mosquitto clients."""

import subprocess
import time

import pytest

from conftest import mqtt_puback, mqtt_publish, mqtt_subscribe, parse_publish
from hub_util import Paho, conn, get, publish_acked, subscribe
from hub_util import shub  # noqa: F401 (the module's shared hub, a fixture)


def test_qos_downgrade_both_ways_with_paho(shub):
    s0 = Paho(shub.port, "dg0")
    s1 = Paho(shub.port, "dg1")
    assert s0.sub("dg/x", 0) == (0,)
    assert s1.sub("dg/x", 1) == (1,)
    p = Paho(shub.port, "dgp")
    p.pub("dg/x", b"q1", 1)
    assert (s0.get().qos, s1.get().qos) == (0, 1)      # a subscription lowers QoS
    p.pub("dg/x", b"q0", 0)
    assert (s0.get().qos, s1.get().qos) == (0, 0)      # ...but never raises it
    for c in (s0, s1, p):
        c.close()


def test_empty_payload_delivered(shub):
    s = conn(shub, "ep-s")
    assert subscribe(s, [("ep/x", 1)]) == [1]
    p = conn(shub, "ep-p")
    p.send(mqtt_publish("ep/x", b""))
    publish_acked(p, "ep/x", b"")
    assert get(s)[:3] == ("ep/x", b"", 0)
    assert get(s)[:3] == ("ep/x", b"", 1)


@pytest.mark.parametrize("pq,sq", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_qos_matrix(hub, pq, sq):
    s = conn(hub, "s")
    s.send(mqtt_subscribe(1, [("m/t", sq)]))
    assert s.recv()[2][2] == sq
    p = conn(hub, "p")
    p.send(mqtt_publish("m/t", b"payload", qos=pq, pid=5))
    if pq:
        ack = p.recv()
        assert ack[0] == 4 and ack[2] == b"\x00\x05"
    m = s.recv()
    assert m[0] == 3
    topic, payload, qos, retain, dup, pid = parse_publish(m[1], m[2])
    assert (topic, payload, qos, retain, dup) == ("m/t", b"payload", min(pq, sq), False, False)
    if qos:
        assert pid != 0


def test_overlapping_subscriptions_deliver_once(hub):
    s = conn(hub, "s")
    s.send(mqtt_subscribe(1, [("o/#", 0), ("o/+", 1), ("o/x", 0)]))
    s.recv()
    p = conn(hub, "p")
    p.send(mqtt_publish("o/x", b"1", qos=1, pid=1))
    p.recv()
    m = s.recv()
    assert parse_publish(m[1], m[2])[2] == 1
    with pytest.raises(TimeoutError):
        s.recv(timeout=0.5)


def test_dup_redelivery(hub_factory):
    hub = hub_factory("message: {egress: {qos1: {retry: {interval: 1s}}}}\n")
    s = conn(hub, "slow")
    s.send(mqtt_subscribe(1, [("d/#", 1)]))
    s.recv()
    p = Paho(hub.port, "p")
    p.pub("d/x", b"again", 1)
    m1 = s.recv()
    t, pl, q, r, dup, pid = parse_publish(m1[1], m1[2])
    assert (pl, q, dup) == (b"again", 1, False)
    t0 = time.monotonic()
    m2 = s.recv(timeout=4)
    t, pl2, q2, r2, dup2, pid2 = parse_publish(m2[1], m2[2])
    assert (pl2, q2, dup2, pid2) == (b"again", 1, True, pid)
    assert 0.5 <= time.monotonic() - t0 <= 3
    s.send(mqtt_puback(pid))
    with pytest.raises(TimeoutError):
        s.recv(timeout=1.8)


def test_unsubscribe(hub):
    s = Paho(hub.port, "u")
    s.sub("u/#")
    p = Paho(hub.port, "p")
    p.pub("u/1", b"1")
    assert s.get().payload == b"1"
    s.c.unsubscribe("u/#")
    time.sleep(0.2)
    p.pub("u/1", b"2")
    s.none()


def test_mosquitto_clients_interop(hub):
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(hub.port), "-u", "test",
                            "-P", "hahaha", "-t", "i/#", "-q", "1", "-C", "3", "-v"],
                           stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        for i in range(3):
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(hub.port), "-u", "test",
                            "-P", "hahaha", "-t", f"i/{i}", "-m", f"m{i}", "-q", "1"], check=True, timeout=5)
        out, _ = sub.communicate(timeout=5)
    finally:
        sub.kill()
        sub.wait()
    assert out.split("\n")[:3] == ["i/0 m0", "i/1 m1", "i/2 m2"]


def test_egress_window_catchup(hub_factory):
    """More QoS 1 messages than the window: the rest comes from the log, none lost."""
    hub = hub_factory("message: {egress: {qos1: {buffer: {size: 5}}}}\n")
    s = conn(hub, "w")
    s.send(mqtt_subscribe(1, [("w/#", 1)]))
    s.recv()
    p = Paho(hub.port, "p")
    for i in range(40):
        p.pub("w/x", b"%d" % i, 1)
    got = []
    while len(got) < 40:
        m = s.recv()
        t, pl, q, r, dup, pid = parse_publish(m[1], m[2])
        if not dup:
            got.append(int(pl))
        s.send(mqtt_puback(pid))
    assert got == list(range(40))


def test_packet_ids_unique_in_a_long_window(hub_factory):
    """A window far past the 32 entries where the hub keeps its used packet ids in a bitmap:
    acknowledged out of order (every even one), a new delivery never takes an id still
    unacknowledged, and the ids freed by PUBACK come back into use without a loss."""
    hub = hub_factory("message: {egress: {qos1: {buffer: {size: 200}}}}\n")
    s = conn(hub, "ids")
    s.send(mqtt_subscribe(1, [("ids/#", 1)]))
    s.recv()
    p = Paho(hub.port, "idp")
    for i in range(150):
        p.pub("ids/x", b"%d" % i, 1)
    held = {}
    for _ in range(150):
        t, pl, q, r, dup, pid = get(s, ack=False)
        assert pid not in held, f"packet id {pid} given twice"
        held[pid] = int(pl)
    for pid in [k for k, v in held.items() if v % 2 == 0]:
        s.send(mqtt_puback(pid))
        del held[pid]
    # 75 unacknowledged ids remain; 120 more messages: the window (200) takes 125
    for i in range(150, 270):
        p.pub("ids/x", b"%d" % i, 1)
    got = []
    for _ in range(120):
        t, pl, q, r, dup, pid = get(s, ack=False)
        assert pid not in held, f"packet id {pid} of message {held.get(pid)} still unacknowledged"
        held[pid] = int(pl)
        got.append(int(pl))
    assert got == list(range(150, 270))
    for pid in list(held):
        s.send(mqtt_puback(pid))
    publish_acked(p_raw := conn(hub, "idq"), "ids/end", b"end")
    assert get(s)[1] == b"end"
    p_raw.close()
    p.close()
