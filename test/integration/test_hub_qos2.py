"""baetyl-hub QoS 2 (SPEC §11 as changed by issue 20): PUBREC/PUBREL/PUBCOMP both ways,
exactly once towards the subscriber, a resent PUBLISH not published twice, delivered QoS =
min(publish, subscription), routes to QoS 2, persistent sessions across reconnects and a
hub killed (kill -9) in the middle of either handshake; with raw sockets, paho and mosquitto
clients."""
import signal
import struct
import subprocess

import paho.mqtt.client as mqtt

from conftest import RawClient, mqtt_packet, mqtt_publish, parse_publish
from hub_util import Paho, conn, get, nothing, ping, subscribe


def ack(c, kind, pid):
    """Sends PUBREC (5), PUBREL (6) or PUBCOMP (7) for pid."""
    c.send(mqtt_packet((kind << 4) | (2 if kind == 6 else 0), struct.pack(">H", pid)))


def expect(c, kind, pid, timeout=5.0):
    p = c.recv(timeout=timeout)
    assert p is not None, f"closed while waiting for packet type {kind}"
    assert p[0] == kind and p[2] == struct.pack(">H", pid), p
    return p


def complete(c, pid):
    """The receiver's side of a QoS 2 delivery: PUBREC, the hub's PUBREL, PUBCOMP."""
    ack(c, 5, pid)
    expect(c, 6, pid)
    ack(c, 7, pid)


def publish2(c, topic, payload, pid, dup=False):
    """QoS 2 PUBLISH up to its PUBREC."""
    c.send(mqtt_publish(topic, payload, qos=2, pid=pid, dup=dup))
    expect(c, 5, pid)


def test_qos2_both_ways_with_raw_clients(hub):
    s = conn(hub, "q2-sub")
    assert subscribe(s, [("q2/#", 2)]) == [2]
    p = conn(hub, "q2-pub")
    publish2(p, "q2/a", b"once", pid=7)
    # the same packet id again (a resend) is acknowledged, not published again
    publish2(p, "q2/a", b"once", pid=7, dup=True)
    ack(p, 6, 7)
    expect(p, 7, 7)
    m = get(s, ack=False)
    assert m[:3] == ("q2/a", b"once", 2) and not m[4]
    pid = m[5]
    complete(s, pid)
    nothing(s)
    # after PUBCOMP the publisher may use the packet id again: a new message
    publish2(p, "q2/a", b"twice", pid=7)
    ack(p, 6, 7)
    expect(p, 7, 7)
    m = get(s, ack=False)
    assert m[:3] == ("q2/a", b"twice", 2)
    complete(s, m[5])
    # a PUBREL of an unknown packet id is still completed
    ack(p, 6, 99)
    expect(p, 7, 99)


def test_unacknowledged_qos2_is_resent_with_dup_then_pubrel(hub_factory):
    hub = hub_factory("message: {egress: {qos1: {retry: {interval: 1s}}}}\n")
    s = conn(hub, "rs-sub")
    assert subscribe(s, [("rs", 2)]) == [2]
    p = conn(hub, "rs-pub")
    publish2(p, "rs", b"x", pid=1)
    first = get(s, ack=False)
    again = get(s, ack=False, timeout=5)
    assert again[:3] == ("rs", b"x", 2) and again[4] and again[5] == first[5]
    ack(s, 5, first[5])
    expect(s, 6, first[5])
    expect(s, 6, first[5], timeout=5)  # PUBREL resent until PUBCOMP
    ack(s, 7, first[5])
    nothing(s, 1.5)


def test_delivered_qos_is_the_minimum(hub):
    subs = {q: conn(hub, f"min-{q}") for q in (0, 1, 2)}
    for q, c in subs.items():
        assert subscribe(c, [("min/t", q)]) == [q]
    p = conn(hub, "min-pub")
    for pq, pid in ((0, 0), (1, 3), (2, 4)):
        if pq == 2:
            publish2(p, "min/t", b"q2", pid)
            ack(p, 6, pid)
            expect(p, 7, pid)
        else:
            p.send(mqtt_publish("min/t", f"q{pq}".encode(), qos=pq, pid=pid or 1))
            if pq:
                expect(p, 4, pid)
        for sq, c in subs.items():
            m = get(c, ack=False)
            assert m[2] == min(pq, sq), (pq, sq, m)
            if m[2] == 1:
                c.send(mqtt_packet(0x40, struct.pack(">H", m[5])))
            elif m[2] == 2:
                complete(c, m[5])


def test_route_to_qos2_target(hub_factory):
    hub = hub_factory("subscriptions:\n  - source: {topic: r/in, qos: 1}\n"
                      "    target: {topic: r/out, qos: 2}\n")
    s = conn(hub, "rt-sub")
    assert subscribe(s, [("r/out", 2)]) == [2]
    p = conn(hub, "rt-pub")
    p.send(mqtt_publish("r/in", b"routed", qos=1, pid=2))
    expect(p, 4, 2)
    m = get(s, ack=False)
    assert m[:3] == ("r/out", b"routed", 2)


def test_paho_and_mosquitto_qos2(hub):
    sub = Paho(hub.port, "pm-sub")
    assert sub.sub("pm/#", 2) == (2,)
    pub = Paho(hub.port, "pm-pub", protocol=mqtt.MQTTv31)
    for i in range(20):
        pub.pub("pm/paho", f"m{i}".encode(), qos=2)
    got = [sub.get() for _ in range(20)]
    assert [(m.payload, m.qos) for m in got] == [(f"m{i}".encode(), 2) for i in range(20)]
    subprocess.run(["mosquitto_pub", "-p", str(hub.port), "-u", "test", "-P", "hahaha", "-q", "2",
                    "-t", "pm/mosq", "-m", "from mosquitto"], check=True, timeout=10)
    m = sub.get()
    assert (m.topic, m.payload, m.qos) == ("pm/mosq", b"from mosquitto", 2)
    ms = subprocess.Popen(["mosquitto_sub", "-p", str(hub.port), "-u", "test", "-P", "hahaha",
                           "-q", "2", "-t", "pm/to-mosq", "-C", "3", "-v"],
                          stdout=subprocess.PIPE, text=True)
    try:
        sub.none(1.0)  # mosquitto_sub has subscribed meanwhile
        for i in range(3):
            pub.pub("pm/to-mosq", f"x{i}".encode(), qos=2)
        out, _ = ms.communicate(timeout=10)
    finally:
        ms.kill()
        ms.wait()
    assert out.split("\n")[:3] == [f"pm/to-mosq x{i}" for i in range(3)]
    assert [sub.get().payload for _ in range(3)] == [b"x0", b"x1", b"x2"]
    sub.none()
    sub.close()
    pub.close()


def persistent(hub, cid, filt=None):
    """A persistent session's connection, subscribed to filt at QoS 2 when given."""
    c = RawClient(hub.port)
    assert c.connect(client_id=cid, username="test", password="hahaha", clean=False) == 0
    if filt:
        assert subscribe(c, [(filt, 2)]) == [2]
    return c


def test_persistent_session_keeps_the_handshake_across_reconnects(hub):
    s = persistent(hub, "ps2", "ps2/#")
    p = conn(hub, "ps2-pub")
    publish2(p, "ps2/a", b"one", pid=1)
    m = get(s, ack=False)
    s.close()
    # away before PUBREC: the PUBLISH comes again (from the log), same packet id
    s = persistent(hub, "ps2")
    again = get(s, ack=False)
    assert again[:3] == ("ps2/a", b"one", 2) and again[5] == m[5]
    ack(s, 5, m[5])
    expect(s, 6, m[5])
    s.close()
    # away after PUBREL: only the PUBREL comes again, never the message
    s = persistent(hub, "ps2")
    expect(s, 6, m[5])
    ack(s, 7, m[5])
    nothing(s)
    s.close()
    s = persistent(hub, "ps2")
    nothing(s)


def test_kill9_mid_handshake_towards_the_subscriber(hub):
    s = persistent(hub, "k9s", "k9/#")
    p = conn(hub, "k9-pub")
    for i, pid in enumerate((1, 2)):
        publish2(p, f"k9/{i}", b"m%d" % i, pid)
        ack(p, 6, pid)
        expect(p, 7, pid)
    a, b = get(s, ack=False), get(s, ack=False)
    # the first is released (PUBREL received), the second only delivered
    ack(s, 5, a[5])
    expect(s, 6, a[5])
    hub.stop(signal.SIGKILL)
    hub.start()
    s = persistent(hub, "k9s")
    seen = []
    for _ in range(2):
        pk = s.recv()
        assert pk is not None
        seen.append(pk)
    kinds = sorted(pk[0] for pk in seen)
    assert kinds == [3, 6], seen  # the PUBLISH of the second, the PUBREL of the first
    rel = next(pk for pk in seen if pk[0] == 6)
    assert rel[2] == struct.pack(">H", a[5])
    pub = next(pk for pk in seen if pk[0] == 3)
    m = parse_publish(pub[1], pub[2])
    assert m[:3] == ("k9/1", b"m1", 2) and m[5] == b[5]  # same packet id: taken once
    ack(s, 7, a[5])
    complete(s, m[5])
    nothing(s)


def test_kill9_mid_handshake_from_the_publisher(hub):
    s = persistent(hub, "k9p-sub", "k9p")
    p = persistent(hub, "k9p-pub")
    publish2(p, "k9p", b"only once", pid=11)
    m = get(s, ack=False)
    complete(s, m[5])
    assert ping(s)  # the PUBCOMP was handled (and its packet id cleared)
    hub.stop(signal.SIGKILL)
    hub.start()
    s = persistent(hub, "k9p-sub")
    p = persistent(hub, "k9p-pub")
    # the publisher did not see PUBCOMP: it resends the PUBLISH, then PUBREL
    publish2(p, "k9p", b"only once", pid=11, dup=True)
    ack(p, 6, 11)
    expect(p, 7, 11)
    nothing(s, 1.0)


def test_out_of_order_completion_is_not_sent_again(hub):
    """A subscriber completes later deliveries while an earlier one is pending: after a
    reconnect, and after a hub kill -9, only the pending ones come again."""
    s = persistent(hub, "ooo", "ooo/#")
    p = conn(hub, "ooo-pub")
    for i, pid in enumerate((1, 2, 3)):
        publish2(p, f"ooo/{i}", b"m%d" % i, pid)
        ack(p, 6, pid)
        expect(p, 7, pid)
    p.send(mqtt_publish("ooo/q1", b"q1", qos=1, pid=4))
    expect(p, 4, 4)
    got = [get(s, ack=False) for _ in range(4)]
    assert [m[0] for m in got] == ["ooo/0", "ooo/1", "ooo/2", "ooo/q1"]
    complete(s, got[1][5])  # the second completed, the first and third pending
    ack(s, 4, got[3][5])  # the QoS 1 one acknowledged
    assert ping(s)
    s.close()
    for restart in (False, True):
        if restart:
            hub.stop(signal.SIGKILL)
            hub.start()
        s = persistent(hub, "ooo")
        again = [get(s, ack=False) for _ in range(2)]
        # read back from the log, same packet ids
        assert [(m[0], m[5]) for m in again] == [("ooo/0", got[0][5]), ("ooo/2", got[2][5])]
        nothing(s)
        s.close()
    s = persistent(hub, "ooo")
    for m in (get(s, ack=False), get(s, ack=False)):
        complete(s, m[5])
    nothing(s)
    s.close()
    s = persistent(hub, "ooo")  # all done: nothing comes again
    nothing(s)
    s.close()
