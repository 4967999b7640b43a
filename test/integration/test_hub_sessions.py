"""Sessions (SPEC §11): persistent and clean sessions, offline messages, redelivery of
unacknowledged QoS 1 after a takeover or reconnect, and who a persistent session belongs to
(issue 12.1: another username is refused, restored subscriptions are re-checked)."""

import time

from conftest import mqtt_publish
from hub_util import Paho, conn, get, nothing, publish_acked, subscribe, unsubscribe
from hub_util import shub  # noqa: F401 (the module's shared hub, a fixture)


def test_takeover_keeps_persistent_session_and_fires_old_will(shub):
    w = conn(shub, "tkwatch")
    assert subscribe(w, [("tkw/#", 1)]) == [1]
    first = conn(shub, "tk", clean=False, will=("tkw/first", b"taken over", 1, False))
    assert subscribe(first, [("tk/#", 1)]) == [1]
    second = conn(shub, "tk", clean=False)
    assert first.closed()
    m = get(w)
    assert m[:3] == ("tkw/first", b"taken over", 1)
    # the session (its subscription) continues on the new connection
    p = conn(shub, "tkpub")
    publish_acked(p, "tk/x", b"to the new one")
    assert get(second)[:3] == ("tk/x", b"to the new one", 1)
    second.send(bytes([0xE0, 0]))
    conn(shub, "tk", clean=True).send(bytes([0xE0, 0]))


def test_takeover_redelivers_unacked_qos1(shub):
    first = conn(shub, "tq", clean=False)
    assert subscribe(first, [("tq/#", 1)]) == [1]
    p = conn(shub, "tq-p")
    publish_acked(p, "tq/x", b"in flight")
    assert get(first, ack=False)[:3] == ("tq/x", b"in flight", 1)
    second = conn(shub, "tq", clean=False)
    assert first.closed()
    assert get(second)[:3] == ("tq/x", b"in flight", 1)
    second.send(bytes([0xE0, 0]))
    conn(shub, "tq", clean=True).send(bytes([0xE0, 0]))


def test_persistent_session_unacked_qos1_resent_on_reconnect(shub):
    s = conn(shub, "ua", clean=False)
    assert subscribe(s, [("ua/#", 1)]) == [1]
    p = conn(shub, "ua-p")
    publish_acked(p, "ua/x", b"must come back")
    m = get(s, ack=False)
    assert m[:3] == ("ua/x", b"must come back", 1)
    s.close()
    time.sleep(0.3)
    s = conn(shub, "ua", clean=False)
    m = get(s)
    assert m[:3] == ("ua/x", b"must come back", 1)
    nothing(s, 0.4)
    s.send(bytes([0xE0, 0]))
    conn(shub, "ua", clean=True).send(bytes([0xE0, 0]))


def test_persistent_session_offline_order_and_qos0_not_kept(shub):
    s = conn(shub, "off", clean=False)
    assert subscribe(s, [("off/#", 1)]) == [1]
    s.send(bytes([0xE0, 0]))
    time.sleep(0.2)
    p = conn(shub, "off-p")
    for i in range(30):
        if i % 3 == 2:
            p.send(mqtt_publish("off/x", b"q0-%d" % i))
        else:
            publish_acked(p, "off/x", b"%d" % i, pid=i + 1)
    s = conn(shub, "off", clean=False)
    got = [get(s)[1] for _ in range(20)]
    assert got == [b"%d" % i for i in range(30) if i % 3 != 2]
    nothing(s, 0.5)
    s.send(bytes([0xE0, 0]))
    conn(shub, "off", clean=True).send(bytes([0xE0, 0]))


def test_unsubscribe_stops_delivery_and_persists(shub):
    s = conn(shub, "us", clean=False)
    assert subscribe(s, [("us/#", 1), ("us2/#", 1)]) == [1, 1]
    p = conn(shub, "us-p")
    publish_acked(p, "us/x", b"before")
    assert get(s)[:2] == ("us/x", b"before")
    unsubscribe(s, ["us/#", "never/subscribed"])
    publish_acked(p, "us/x", b"after", pid=2)
    nothing(s, 0.4)
    s.send(bytes([0xE0, 0]))
    time.sleep(0.2)
    publish_acked(p, "us/x", b"while away", pid=3)
    publish_acked(p, "us2/x", b"still subscribed", pid=4)
    s = conn(shub, "us", clean=False)
    assert get(s)[:2] == ("us2/x", b"still subscribed")
    nothing(s, 0.4)
    s.send(bytes([0xE0, 0]))
    conn(shub, "us", clean=True).send(bytes([0xE0, 0]))


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


OWNER_PRINCIPALS = """
principals:
  - username: victim
    password: v
    permissions:
      - {action: pub, permit: ['#']}
      - {action: sub, permit: ['#']}
  - username: attacker
    password: a
    permissions:
      - {action: pub, permit: ['a/b']}
      - {action: sub, permit: ['a/b']}
"""


def test_other_username_cannot_take_a_persistent_session(hub_factory):
    """Another principal using a persistent session's client id gets CONNACK 5: it neither
    reads the queued messages nor disconnects the owner."""
    hub = hub_factory(principals=OWNER_PRINCIPALS)
    v = Paho(hub.port, "shared", user="victim", pw="v", clean=False)
    assert v.connack[0] == 0
    assert v.sub("secret/#", 1) == (1,)
    v.close()
    pub = Paho(hub.port, "pub", user="victim", pw="v")
    pub.pub("secret/x", b"for the victim", 1)
    for clean in (False, True):  # a clean session would also have wiped the victim's session
        a = Paho(hub.port, "shared", user="attacker", pw="a", clean=clean)
        assert a.connack[0] == 5
        a.none(0.3)
        a.close()
    v = Paho(hub.port, "shared", user="victim", pw="v", clean=False)
    assert v.connack[0] == 0
    m = v.get()
    assert (m.topic, m.payload) == ("secret/x", b"for the victim")
    # online: the attacker is refused and the victim stays connected
    a = Paho(hub.port, "shared", user="attacker", pw="a")
    assert a.connack[0] == 5
    a.close()
    pub.pub("secret/y", b"still here", 1)
    m = v.get()
    assert (m.topic, m.payload) == ("secret/y", b"still here")
    assert v.c.is_connected()
    assert "client id in use by another username" in hub.read_log()
    v.close()
    pub.close()


def test_owner_survives_restart_and_clean_ids_are_bound_while_connected(hub_factory):
    hub = hub_factory(principals=OWNER_PRINCIPALS)
    v = Paho(hub.port, "keep", user="victim", pw="v", clean=False)
    assert v.connack[0] == 0
    v.close()
    hub.stop()
    hub.start()
    a = Paho(hub.port, "keep", user="attacker", pw="a", clean=False)
    assert a.connack[0] == 5  # the owner was stored with the session
    a.close()
    # a clean session's id is only bound while its client is connected
    c = Paho(hub.port, "tmp", user="victim", pw="v")
    assert c.connack[0] == 0
    a = Paho(hub.port, "tmp", user="attacker", pw="a")
    assert a.connack[0] == 5
    a.close()
    c.close()
    time.sleep(0.3)
    a = Paho(hub.port, "tmp", user="attacker", pw="a")
    assert a.connack[0] == 0
    a.close()


def test_restored_subscriptions_are_checked_against_current_permits(hub_factory):
    """Permits shrink across a restart: a restored subscription no longer permitted is
    dropped (and logged), so nothing on it is delivered."""
    hub = hub_factory(principals=OWNER_PRINCIPALS)
    v = Paho(hub.port, "s1", user="victim", pw="v", clean=False)
    assert v.sub("a/b", 1) == (1,)
    assert v.sub("x/y", 1) == (1,)
    v.close()
    hub.stop()
    with open(hub.conf) as f:
        conf = f.read()
    with open(hub.conf, "w") as f:
        f.write(conf.replace("- {action: sub, permit: ['#']}", "- {action: sub, permit: ['a/#']}"))
    hub.start()
    v = Paho(hub.port, "s1", user="victim", pw="v", clean=False)
    assert v.connack[0] == 0
    pub = Paho(hub.port, "p", user="victim", pw="v")
    pub.pub("x/y", b"no longer permitted", 1)
    pub.pub("a/b", b"still permitted", 1)
    m = v.get()
    assert (m.topic, m.payload) == ("a/b", b"still permitted")
    v.none(0.3)
    log = hub.read_log()
    assert "subscription no longer permitted, dropped" in log and "x/y" in log
    v.close()
    pub.close()
