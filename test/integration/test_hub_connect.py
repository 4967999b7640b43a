"""baetyl-hub CONNECT rules (SPEC §11 Connect): every CONNACK code, takeover, keep-alive."""
import time

from conftest import RawClient, mqtt_connect, mqtt_publish, mqtt_subscribe, parse_publish


def test_connack_accepted(hub):
    c = RawClient(hub.port)
    assert c.connect(client_id="c1", username="test", password="hahaha") == 0
    c.send(bytes([0xC0, 0]))  # PINGREQ
    assert c.recv()[0] == 13  # PINGRESP


def test_connack_1_bad_protocol_level(hub):
    c = RawClient(hub.port)
    # level 5 with the MQTT name: CONNACK 1, then closed
    pkt = bytearray(mqtt_connect(client_id="c1", username="test", password="hahaha"))
    pkt[8] = 5
    c.send(bytes(pkt))
    p = c.recv()
    assert p is not None and p[0] == 2 and p[2][1] == 1
    assert c.closed()


def test_mqtt31_accepted(hub):
    c = RawClient(hub.port)
    assert c.connect(client_id="old", username="test", password="hahaha", level=3) == 0


def test_connack_2_client_id(hub):
    for cid, clean in [("bad id", True), ("x" * 129, True), ("a.b", True), ("", False)]:
        c = RawClient(hub.port)
        assert c.connect(client_id=cid, username="test", password="hahaha", clean=clean) == 2, cid
        assert c.closed()
    c = RawClient(hub.port)
    assert c.connect(client_id="x" * 128, username="test", password="hahaha") == 0
    c = RawClient(hub.port)
    assert c.connect(client_id="", username="test", password="hahaha", clean=True) == 0


def test_connack_4_credentials(hub):
    for kw in [dict(), dict(username="test"), dict(username="test", password="wrong"),
               dict(username="nobody", password="hahaha"), dict(username="test", password="")]:
        c = RawClient(hub.port)
        assert c.connect(client_id="c4", **kw) == 4, kw
        assert c.closed()


def test_connack_5_will_not_permitted(hub):
    c = RawClient(hub.port)
    assert c.connect(client_id="w", username="limited", password="secret",
                     will=("forbidden/topic", b"x", 0, False)) == 5
    assert c.closed()
    c = RawClient(hub.port)
    assert c.connect(client_id="w", username="limited", password="secret",
                     will=("will/ok", b"x", 0, False)) == 0


def test_first_packet_must_be_connect(hub):
    c = RawClient(hub.port)
    c.send(mqtt_publish("a", b"x"))
    assert c.closed()
    assert "first packet is not CONNECT" in hub.read_log()


def test_second_connect_closes(hub):
    c = RawClient(hub.port)
    assert c.connect(client_id="c2", username="test", password="hahaha") == 0
    c.send(mqtt_connect(client_id="c2", username="test", password="hahaha"))
    assert c.closed()


def test_takeover_closes_first_and_fires_its_will(hub):
    watcher = RawClient(hub.port)
    assert watcher.connect(client_id="watch", username="test", password="hahaha") == 0
    watcher.send(mqtt_subscribe(1, [("will/#", 0)]))
    assert watcher.recv()[0] == 9
    first = RawClient(hub.port)
    assert first.connect(client_id="same", username="test", password="hahaha",
                         will=("will/same", b"gone", 0, False)) == 0
    second = RawClient(hub.port)
    assert second.connect(client_id="same", username="test", password="hahaha") == 0
    assert first.closed()
    p = watcher.recv()
    assert p[0] == 3
    assert parse_publish(p[1], p[2])[:2] == ("will/same", b"gone")
    # the new connection works
    second.send(bytes([0xC0, 0]))
    assert second.recv()[0] == 13


def test_keepalive_enforced(hub):
    c = RawClient(hub.port, timeout=10)
    assert c.connect(client_id="ka", username="test", password="hahaha", keepalive=1) == 0
    t0 = time.monotonic()
    assert c.closed(timeout=6)
    dt = time.monotonic() - t0
    assert 1.2 <= dt <= 3.5, dt
    assert "keepalive timeout" in hub.read_log()


def test_keepalive_kept_by_pings(hub):
    c = RawClient(hub.port, timeout=10)
    assert c.connect(client_id="ka2", username="test", password="hahaha", keepalive=1) == 0
    for _ in range(5):
        time.sleep(0.5)
        c.send(bytes([0xC0, 0]))
        assert c.recv()[0] == 13


# ---- a client id belongs to the username that uses it (issue 12.1) ------------------------

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


class PahoSession:
    """A paho client (MQTT 3.1.1) with a chosen client id and clean-session flag."""

    def __init__(self, port, client_id, user, password, clean):
        import threading
        import paho.mqtt.client as mqtt
        self.c = mqtt.Client(client_id=client_id, clean_session=clean)
        self.c.username_pw_set(user, password)
        self.rc = None
        self.msgs = []
        self.gone = threading.Event()
        self.c.on_connect = lambda c, u, f, rc: setattr(self, "rc", rc)
        self.c.on_message = lambda c, u, m: self.msgs.append((m.topic, m.payload))
        self.c.on_disconnect = lambda c, u, rc: self.gone.set()
        self.port = port

    def connect(self):
        from conftest import wait_for
        self.c.connect("127.0.0.1", self.port, keepalive=30)
        self.c.loop_start()
        wait_for(lambda: self.rc is not None or self.gone.is_set(), 10, what="CONNACK")
        return self.rc

    def subscribe(self, topic, qos=1):
        from conftest import wait_for
        done = []
        self.c.on_subscribe = lambda c, u, mid, granted: done.append(granted)
        self.c.subscribe(topic, qos)
        return wait_for(lambda: done, 10, what="SUBACK")[0]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_other_username_cannot_take_a_persistent_session(hub_factory):
    """Another principal using a persistent session's client id gets CONNACK 5: it neither
    reads the queued messages nor disconnects the owner."""
    from conftest import wait_for
    hub = hub_factory(principals=OWNER_PRINCIPALS)
    v = PahoSession(hub.port, "shared", "victim", "v", clean=False)
    assert v.connect() == 0
    assert v.subscribe("secret/#") == (1,)
    v.close()
    pub = PahoSession(hub.port, "pub", "victim", "v", clean=True)
    assert pub.connect() == 0
    pub.c.publish("secret/x", b"for the victim", 1).wait_for_publish(10)
    for clean in (False, True):  # a clean session would also have wiped the victim's session
        a = PahoSession(hub.port, "shared", "attacker", "a", clean=clean)
        assert a.connect() == 5
        time.sleep(0.3)
        assert a.msgs == []
        a.close()
    v = PahoSession(hub.port, "shared", "victim", "v", clean=False)
    assert v.connect() == 0
    wait_for(lambda: v.msgs, 10, what="the queued message")
    assert v.msgs[0] == ("secret/x", b"for the victim")
    # online: the attacker is refused and the victim stays connected
    a = PahoSession(hub.port, "shared", "attacker", "a", clean=True)
    assert a.connect() == 5
    a.close()
    pub.c.publish("secret/y", b"still here", 1).wait_for_publish(10)
    wait_for(lambda: len(v.msgs) >= 2, 10, what="a live message")
    assert not v.gone.is_set()
    assert "client id in use by another username" in hub.read_log()
    v.close()
    pub.close()


def test_owner_survives_restart_and_clean_ids_are_bound_while_connected(hub_factory):
    hub = hub_factory(principals=OWNER_PRINCIPALS)
    v = PahoSession(hub.port, "keep", "victim", "v", clean=False)
    assert v.connect() == 0
    v.close()
    hub.stop()
    hub.start()
    a = PahoSession(hub.port, "keep", "attacker", "a", clean=False)
    assert a.connect() == 5  # the owner was stored with the session
    a.close()
    # a clean session's id is only bound while its client is connected
    c = PahoSession(hub.port, "tmp", "victim", "v", clean=True)
    assert c.connect() == 0
    a = PahoSession(hub.port, "tmp", "attacker", "a", clean=True)
    assert a.connect() == 5
    a.close()
    c.close()
    time.sleep(0.3)
    a = PahoSession(hub.port, "tmp", "attacker", "a", clean=True)
    assert a.connect() == 0
    a.close()


def test_restored_subscriptions_are_checked_against_current_permits(hub_factory):
    """Permits shrink across a restart: a restored subscription no longer permitted is
    dropped (and logged), so nothing on it is delivered."""
    from conftest import wait_for
    hub = hub_factory(principals=OWNER_PRINCIPALS)
    v = PahoSession(hub.port, "s1", "victim", "v", clean=False)
    assert v.connect() == 0
    assert v.subscribe("a/b") == (1,)
    assert v.subscribe("x/y") == (1,)
    v.close()
    hub.stop()
    with open(hub.conf) as f:
        conf = f.read()
    with open(hub.conf, "w") as f:
        f.write(conf.replace("- {action: sub, permit: ['#']}", "- {action: sub, permit: ['a/#']}"))
    hub.start()
    v = PahoSession(hub.port, "s1", "victim", "v", clean=False)
    assert v.connect() == 0
    pub = PahoSession(hub.port, "p", "victim", "v", clean=True)
    assert pub.connect() == 0
    pub.c.publish("x/y", b"no longer permitted", 1).wait_for_publish(10)
    pub.c.publish("a/b", b"still permitted", 1).wait_for_publish(10)
    wait_for(lambda: v.msgs, 10, what="the permitted message")
    time.sleep(0.3)
    assert v.msgs == [("a/b", b"still permitted")]
    log = hub.read_log()
    assert "subscription no longer permitted, dropped" in log and "x/y" in log
    v.close()
    pub.close()
