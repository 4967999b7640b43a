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
