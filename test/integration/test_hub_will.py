"""Wills (SPEC §11 Delivery): topic checks, abnormal close, keep-alive timeout, DISCONNECT,
retained wills."""

import time

from conftest import RawClient, mqtt_publish
from hub_util import Paho, conn, get, nothing, subscribe
from hub_util import shub  # noqa: F401 (the module's shared hub, a fixture)


def test_will_topic_checks(shub):
    for will in [("forbidden/x", b"w", 0, False), ("a/+", b"w", 0, False), ("$SYS/w", b"w", 0, False)]:
        c = RawClient(shub.port)
        rc = c.connect(client_id="wl", username="limited", password="secret", will=will)
        assert rc != 0, (will, rc)
        assert c.closed()
    c = RawClient(shub.port)
    assert c.connect(client_id="wl", username="limited", password="secret",
                     will=("forbidden/x", b"w", 0, False)) == 5
    c = RawClient(shub.port)
    assert c.connect(client_id="wl", username="limited", password="secret", will=("a/will", b"w", 1, True)) == 0
    c.send(bytes([0xE0, 0]))


def test_will_live_retain_0_late_retain_1(shub):
    w = conn(shub, "wr-watch")
    assert subscribe(w, [("wr/#", 1)]) == [1]
    a = conn(shub, "wr-a", will=("wr/a", b"last words", 1, True))
    a.close()
    assert get(w)[:4] == ("wr/a", b"last words", 1, False)
    late = conn(shub, "wr-late")
    assert subscribe(late, [("wr/+", 1)]) == [1]
    assert get(late)[:4] == ("wr/a", b"last words", 1, True)
    p = conn(shub, "wr-p")
    p.send(mqtt_publish("wr/a", b"", retain=True))


def test_disconnect_discards_retained_will(shub):
    w = conn(shub, "wd-watch")
    assert subscribe(w, [("wd/#", 1)]) == [1]
    a = conn(shub, "wd-a", will=("wd/a", b"never", 1, True))
    a.send(bytes([0xE0, 0]))
    assert a.closed()
    nothing(w, 0.5)
    late = conn(shub, "wd-late")
    assert subscribe(late, [("wd/#", 1)]) == [1]
    nothing(late, 0.4)


def test_will_on_abnormal_close_not_after_disconnect(hub):
    w = Paho(hub.port, "watch")
    w.sub("will/#", 1)
    a = conn(hub, "dies", will=("will/a", b"died", 1, False))
    a.close()  # no DISCONNECT
    m = w.get()
    assert (m.topic, m.payload, m.qos) == ("will/a", b"died", 1)
    b = conn(hub, "leaves", will=("will/b", b"never", 0, False))
    b.send(bytes([0xE0, 0]))  # DISCONNECT
    assert b.closed()
    w.none()


def test_retained_will(hub):
    a = conn(hub, "dies", will=("will/r", b"last", 0, True))
    a.close()
    time.sleep(0.3)
    s = Paho(hub.port, "late")
    s.sub("will/r")
    m = s.get()
    assert (m.topic, m.payload, m.retain) == ("will/r", b"last", True)


def test_will_on_keepalive_timeout(hub):
    w = Paho(hub.port, "watch")
    w.sub("will/#")
    a = conn(hub, "silent", will=("will/silent", b"timeout", 0, False), keepalive=1)
    m = w.get(timeout=6)
    assert m.payload == b"timeout"
    a.close()
