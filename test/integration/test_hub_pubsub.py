"""baetyl-hub SUBSCRIBE/PUBLISH (SPEC §11): SUBACK codes, permissions, the QoS matrix,
retained messages, wills, DUP redelivery, persistent and clean sessions."""
import queue
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import RawClient, mqtt_publish, mqtt_puback, mqtt_subscribe, parse_publish


class Paho:
    """A paho client that records what it receives."""

    def __init__(self, port, cid, user="test", pw="hahaha", clean=True, will=None):
        self.msgs = queue.Queue()
        self.c = mqtt.Client(client_id=cid, clean_session=clean)
        self.c.username_pw_set(user, pw)
        if will:
            self.c.will_set(*will)
        self.rc = queue.Queue()
        self.c.on_connect = lambda c, u, f, rc: self.rc.put(rc)
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        assert self.rc.get(timeout=5) == 0

    def sub(self, topic, qos=0):
        r, mid = self.c.subscribe(topic, qos)
        assert r == 0
        time.sleep(0.2)

    def pub(self, topic, payload, qos=0, retain=False):
        info = self.c.publish(topic, payload, qos, retain)
        info.wait_for_publish()

    def get(self, timeout=5):
        return self.msgs.get(timeout=timeout)

    def none(self, wait=0.5):
        try:
            m = self.msgs.get(timeout=wait)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected message {m.topic} {m.payload}")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def raw(hub, cid="raw", **kw):
    c = RawClient(hub.port)
    assert c.connect(client_id=cid, username=kw.pop("user", "test"), password=kw.pop("pw", "hahaha"), **kw) == 0
    return c


def test_suback_codes(hub):
    c = raw(hub, user="limited", pw="secret")
    c.send(mqtt_subscribe(7, [("a/b", 0), ("a/+", 1), ("x/y", 0), ("a/c", 2), ("a/#/b", 0),
                              ("test/+", 1), ("$SYS/x", 0), ("a/" + "l/" * 9, 0)]))
    p = c.recv()
    assert p[0] == 9
    assert p[2][:2] == b"\x00\x07"
    assert list(p[2][2:]) == [0, 1, 0x80, 0x80, 0x80, 1, 0x80, 0x80]


def test_publish_forbidden_closes(hub):
    c = raw(hub, user="limited", pw="secret")
    c.send(mqtt_publish("a/ok", b"1"))
    c.send(bytes([0xC0, 0]))
    assert c.recv()[0] == 13
    c.send(mqtt_publish("b/forbidden", b"1"))
    assert c.closed()
    assert "not permitted" in hub.read_log()


@pytest.mark.parametrize("pq,sq", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_qos_matrix(hub, pq, sq):
    s = raw(hub, "s")
    s.send(mqtt_subscribe(1, [("m/t", sq)]))
    assert s.recv()[2][2] == sq
    p = raw(hub, "p")
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
    s = raw(hub, "s")
    s.send(mqtt_subscribe(1, [("o/#", 0), ("o/+", 1), ("o/x", 0)]))
    s.recv()
    p = raw(hub, "p")
    p.send(mqtt_publish("o/x", b"1", qos=1, pid=1))
    p.recv()
    m = s.recv()
    assert parse_publish(m[1], m[2])[2] == 1
    with pytest.raises(TimeoutError):
        s.recv(timeout=0.5)


def test_retained_set_replace_clear(hub):
    p = Paho(hub.port, "pub")
    p.pub("r/a", b"one", 1, retain=True)
    p.pub("r/a", b"two", 1, retain=True)
    p.pub("r/b", b"bee", 0, retain=True)
    s = raw(hub, "s1")
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
    s2 = raw(hub, "s2")
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


def test_will_on_abnormal_close_not_after_disconnect(hub):
    w = Paho(hub.port, "watch")
    w.sub("will/#", 1)
    a = raw(hub, "dies", will=("will/a", b"died", 1, False))
    a.close()  # no DISCONNECT
    m = w.get()
    assert (m.topic, m.payload, m.qos) == ("will/a", b"died", 1)
    b = raw(hub, "leaves", will=("will/b", b"never", 0, False))
    b.send(bytes([0xE0, 0]))  # DISCONNECT
    assert b.closed()
    w.none()


def test_retained_will(hub):
    a = raw(hub, "dies", will=("will/r", b"last", 0, True))
    a.close()
    time.sleep(0.3)
    s = Paho(hub.port, "late")
    s.sub("will/r")
    m = s.get()
    assert (m.topic, m.payload, m.retain) == ("will/r", b"last", True)


def test_will_on_keepalive_timeout(hub):
    w = Paho(hub.port, "watch")
    w.sub("will/#")
    a = raw(hub, "silent", will=("will/silent", b"timeout", 0, False), keepalive=1)
    m = w.get(timeout=6)
    assert m.payload == b"timeout"
    a.close()


def test_dup_redelivery(hub_factory):
    hub = hub_factory("message: {egress: {qos1: {retry: {interval: 1s}}}}\n")
    s = raw(hub, "slow")
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


def test_persistent_session_gets_offline_messages(hub):
    s = Paho(hub.port, "durable", clean=False)
    s.sub("p/#", 1)
    s.close()
    time.sleep(0.2)
    p = Paho(hub.port, "p")
    for i in range(20):
        p.pub("p/x", str(i).encode(), 1)
    p.pub("p/y", b"q0", 0)  # QoS 0 is not kept for absent sessions
    s2 = Paho(hub.port, "durable", clean=False)
    got = [s2.get().payload for _ in range(20)]
    assert got == [str(i).encode() for i in range(20)]
    s2.none()
    # the subscription is still there, live too
    p.pub("p/z", b"live", 1)
    assert s2.get().payload == b"live"


def test_persistent_session_survives_restart(hub):
    s = Paho(hub.port, "durable", clean=False)
    s.sub("p/#", 1)
    s.close()
    p = Paho(hub.port, "p")
    for i in range(5):
        p.pub("p/x", str(i).encode(), 1)
    p.close()
    hub.stop()
    hub.start()
    s2 = Paho(hub.port, "durable", clean=False)
    got = [s2.get().payload for _ in range(5)]
    assert got == [str(i).encode() for i in range(5)]


def test_clean_session_drops_subscriptions(hub):
    s = Paho(hub.port, "c", clean=False)
    s.sub("c/#", 1)
    s.close()
    s2 = Paho(hub.port, "c", clean=True)
    p = Paho(hub.port, "p")
    p.pub("c/x", b"1", 1)
    s2.none()
    s2.close()
    s3 = Paho(hub.port, "c", clean=False)
    p.pub("c/x", b"2", 1)
    s3.none()


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
    s = raw(hub, "w")
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
