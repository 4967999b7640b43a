"""baetyl-hub shared subscriptions `$share/<group>/<filter>` (issue 20, MQTT 5.0 §4.8.2):
round robin among the group's members, 5.0 and 3.1.1 clients alike; QoS 1 deliveries a
member leaves unacknowledged go to another member; permissions on the filter; no retained
messages. Peers: paho in MQTT 5 mode, mosquitto_sub -V mqttv5, raw 3.1.1 sockets."""
import subprocess
import time

from conftest import mqtt_packet, mqtt_str, parse_publish
from hub_util import conn, get, nothing, subscribe
from test_hub_mqtt5 import Paho5, props, raw5, u16, u32


def test_round_robin_across_versions(hub):
    a = Paho5(hub.port, "sh-a")
    assert a.props.SharedSubscriptionAvailable == 1
    assert a.sub("$share/g/sh/#", 1, sub_id=5) == [1]
    b = conn(hub, "sh-b")  # a 3.1.1 member
    assert subscribe(b, [("$share/g/sh/#", 1)]) == [1]
    other = conn(hub, "sh-other")  # another group gets every message too
    assert subscribe(other, [("$share/h/sh/+", 0)]) == [0]
    p = Paho5(hub.port, "sh-p")
    for i in range(6):
        p.pub("sh/t", str(i).encode(), qos=1)
    to_b = [get(b)[1] for _ in range(3)]
    got_a = [a.get() for _ in range(3)]
    assert all(m.properties.SubscriptionIdentifier == [5] for m in got_a)
    to_a = [m.payload for m in got_a]
    assert sorted(to_a + to_b) == [str(i).encode() for i in range(6)]
    assert to_a == [b"0", b"2", b"4"] or to_a == [b"1", b"3", b"5"]
    assert [get(other)[1] for _ in range(6)] == [str(i).encode() for i in range(6)]
    a.none()
    nothing(b)
    a.c.unsubscribe("$share/g/sh/#")
    time.sleep(0.3)
    p.pub("sh/t", b"b only", qos=1)
    assert get(b)[1] == b"b only"
    for c in (a, p):
        c.close()


def test_unacked_go_to_another_member(hub):
    lazy = conn(hub, "sh-lazy")
    assert subscribe(lazy, [("$share/w/work", 1)]) == [1]
    busy = Paho5(hub.port, "sh-busy")
    assert busy.sub("$share/w/work", 1) == [1]
    p = Paho5(hub.port, "sh-wp")
    for i in range(4):
        p.pub("work", str(i).encode(), qos=1)
    kept = [get(lazy, ack=False)[1] for _ in range(2)]  # never acknowledged
    done = [busy.get().payload for _ in range(2)]
    lazy.sock.close()
    again = [busy.get().payload for _ in range(2)]
    assert sorted(again) == sorted(kept)
    assert sorted(done + again) == [b"0", b"1", b"2", b"3"]
    busy.none()
    busy.close()
    p.close()


def test_permissions_and_retained(hub):
    lim = conn(hub, "sh-lim", user="limited", pw="secret")
    assert subscribe(lim, [("$share/any/a/x", 1), ("$share/g/b/x", 1), ("$share/g", 0),
                           ("$share//a/x", 0), ("$share/g+/a/x", 0)]) == [1, 0x80, 0x80, 0x80, 0x80]
    p = Paho5(hub.port, "sh-rp")
    p.pub("a/x", b"kept", qos=1, retain=True)
    m = get(lim)
    assert m[1] == b"kept" and not m[3]  # live, so not flagged retained
    s = Paho5(hub.port, "sh-rs")
    assert s.sub("$share/r/a/x", 1) == [1]
    s.none()  # no retained message on a shared subscription
    sub = subprocess.Popen(["mosquitto_sub", "-V", "mqttv5", "-p", str(hub.port), "-u", "test",
                            "-P", "hahaha", "-t", "$share/m/a/#", "-q", "1", "-C", "1", "-W", "10",
                            "-F", "%t %p"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    p.pub("a/x", b"live", qos=1)
    assert sub.communicate(timeout=15)[0].strip() == "a/x live"
    assert s.get().payload == b"live" and get(lim)[1] == b"live"
    s.close()
    p.close()


def test_persistent_member_keeps_its_group(hub):
    m = conn(hub, "sh-ps", clean=False)
    assert subscribe(m, [("$share/ps/job", 1)]) == [1]
    p = Paho5(hub.port, "sh-pp")
    p.pub("job", b"1", qos=1)
    assert get(m, ack=False)[1] == b"1"
    m.sock.close()  # no other member: its session keeps the delivery for its return
    time.sleep(0.3)
    p.pub("job", b"away", qos=1)  # nobody in the group is connected: the group holds it
    p.pub("job", b"dropped", qos=0)  # QoS 0 is not held
    m = conn(hub, "sh-ps", clean=False)
    t = get(m)
    assert t[1] == b"1" and t[4]  # sent again, DUP
    t = get(m)
    assert t[1] == b"away" and not t[4]
    nothing(m)
    p.pub("job", b"2", qos=1)  # back in its group
    assert get(m)[1] == b"2"
    p.close()


def test_group_holds_for_a_member_away_across_restarts(hub):
    """The group of a persistent member outlives a hub restart: what is published while
    the member is away waits in the group for its return (a 5.0 session with an expiry)."""
    keep = props((0x11, u32(300)))
    m, _ = raw5(hub, "sh-ar", clean=False, p=keep)
    m.send(mqtt_packet(0x82, u16(1) + props() + mqtt_str("$share/ar/task") + b"\x01"))
    assert m.recv()[0] == 9
    m.sock.close()
    hub.stop()
    hub.start()
    p = Paho5(hub.port, "sh-arp")
    for i in range(3):
        p.pub("task", b"t%d" % i, qos=1)
    m, present = raw5(hub, "sh-ar", clean=False, p=keep)
    assert present[0] == 1  # session present
    got = []
    for _ in range(3):
        pk = m.recv()
        assert pk is not None and pk[0] == 3
        t, body, qos, _, _, pid = parse_publish(pk[1], pk[2])
        got.append((t, body[1:], qos))  # body[0]: no properties
        m.send(mqtt_packet(0x40, u16(pid)))
    assert got == [("task", b"t%d" % i, 1) for i in range(3)]
    nothing(m)
    p.close()


def test_qos2_shared_delivery_moves_once(hub):
    lazy = conn(hub, "sh2-lazy")
    assert subscribe(lazy, [("$share/q2/e", 2)]) == [2]
    p = Paho5(hub.port, "sh2-p")
    p.pub("e", b"x", qos=2)  # one member only: lazy gets it and sends no PUBREC
    m = get(lazy, ack=False)
    assert m[1] == b"x" and m[2] == 2
    busy = Paho5(hub.port, "sh2-busy")
    assert busy.sub("$share/q2/e", 2) == [2]
    lazy.sock.close()
    got = busy.get()
    assert got.payload == b"x" and got.qos == 2
    busy.none()
    busy.close()
    p.close()


def test_group_holds_what_no_window_takes(hub):
    """A member with receive maximum 1 gets the group's QoS 1 messages one at a time, in
    order, none lost: the others wait in the group until it acknowledges."""
    m, _ = raw5(hub, "sh-rm", p=props((0x21, u16(1))))
    m.send(mqtt_packet(0x82, u16(1) + props() + mqtt_str("$share/rm/jobs") + b"\x01"))
    assert m.recv()[0] == 9
    p = Paho5(hub.port, "sh-rmp")
    for i in range(3):
        p.pub("jobs", str(i).encode(), qos=1)
    for i in range(3):
        pk = m.recv()
        assert pk[0] == 3
        t, body, qos, _, _, pid = parse_publish(pk[1], pk[2])
        assert (t, body[1:], qos) == ("jobs", str(i).encode(), 1)  # body[0]: no properties
        nothing(m, 0.4)  # nothing more until the PUBACK
        m.send(mqtt_packet(0x40, u16(pid)))
    p.close()
