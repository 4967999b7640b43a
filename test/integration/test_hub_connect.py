"""CONNECT (SPEC §11 Connect): every CONNACK code, MQTT 3.1 and 3.1.1, client ids,
credentials, takeover by the same client id, keep-alive."""

import time

import paho.mqtt.client as mqtt
import pytest

from conftest import RawClient, mqtt_connect, mqtt_publish, mqtt_subscribe, parse_publish
from hub_util import Paho, conn, get, ping, subscribe
from hub_util import shub  # noqa: F401 (the module's shared hub, a fixture)


def test_mqtt31_paho_client_full_exchange(shub):
    """A paho client speaking MQTT 3.1 connects, subscribes, publishes QoS 0 and 1, and
    keeps a persistent session like a 3.1.1 client."""
    s = Paho(shub.port, "v31sub", protocol=mqtt.MQTTv31, clean=False)
    assert s.connack[0] == 0
    assert s.sub("v31/#", 1) == (1,)
    p = Paho(shub.port, "v31pub", protocol=mqtt.MQTTv31)
    p.pub("v31/a", b"zero", 0)
    p.pub("v31/b", b"one", 1)
    got = sorted((m.topic, m.payload, m.qos) for m in (s.get(), s.get()))
    assert got == [("v31/a", b"zero", 0), ("v31/b", b"one", 1)]
    s.close()
    time.sleep(0.2)
    p.pub("v31/c", b"while away", 1)
    s2 = Paho(shub.port, "v31sub", protocol=mqtt.MQTTv31, clean=False)
    m = s2.get()
    assert (m.topic, m.payload) == ("v31/c", b"while away")
    s2.close()
    p.close()


def test_mqtt31_raw_connect_long_client_id_and_will(shub):
    """SPEC's client id rule holds for level 3 too (not MQTT 3.1's 23 characters)."""
    w = conn(shub, "v31watch")
    assert subscribe(w, [("v31w/#", 0)]) == [0]
    c = RawClient(shub.port)
    assert c.connect(client_id="L" * 100, username="test", password="hahaha", level=3,
                     will=("v31w/gone", b"bye", 0, False)) == 0
    c.close()
    assert get(w)[:2] == ("v31w/gone", b"bye")


def test_mqtt31_bad_client_id_and_credentials(shub):
    c = RawClient(shub.port)
    assert c.connect(client_id="bad id", username="test", password="hahaha", level=3) == 2
    assert c.closed()
    c = RawClient(shub.port)
    assert c.connect(client_id="v31x", username="test", password="nope", level=3) == 4
    assert c.closed()


@pytest.mark.parametrize("cid", ["a b", "a/b", "a+b", "a#", "é", "a.b", "a:b", "x" * 129])
def test_client_id_rejected(shub, cid):
    c = RawClient(shub.port)
    assert c.connect(client_id=cid, username="test", password="hahaha") == 2, repr(cid)
    assert c.closed()


def test_client_id_with_nul_refused(shub):
    """U+0000 in a string: CONNACK 2 or a plain close (MQTT 1.5.3) are both refusals."""
    c = RawClient(shub.port)
    assert c.connect(client_id="\u0000a", username="test", password="hahaha") in (2, None)
    assert c.closed()


@pytest.mark.parametrize("cid", ["0", "Az09_-", "_", "-", "x" * 128])
def test_client_id_accepted(shub, cid):
    c = RawClient(shub.port)
    assert c.connect(client_id=cid, username="test", password="hahaha") == 0, repr(cid)
    assert ping(c)
    c.send(bytes([0xE0, 0]))


def test_empty_client_id_needs_clean_session(shub):
    c = RawClient(shub.port)
    assert c.connect(client_id="", username="test", password="hahaha", clean=False) == 2
    assert c.closed()


def test_two_empty_client_ids_get_distinct_sessions(shub):
    """Empty id + clean session: a random id each, so they do not take each other over."""
    a = conn(shub, "")
    b = conn(shub, "")
    assert subscribe(a, [("anon/x", 0)]) == [0]
    assert subscribe(b, [("anon/x", 0)]) == [0]
    p = conn(shub, "anonpub")
    p.send(mqtt_publish("anon/x", b"both"))
    assert get(a)[:2] == ("anon/x", b"both")
    assert get(b)[:2] == ("anon/x", b"both")
    assert ping(a) and ping(b)


@pytest.mark.parametrize("kw", [
    dict(),                                               # no username
    dict(username=""),                                    # empty username
    dict(username="", password="hahaha"),
    dict(username="test"),                                # principal has a password, none sent
    dict(username="nobody", password="hahaha"),           # password without a matching principal
    dict(username="limited", password="hahaha"),          # another principal's password
    dict(username="two-way-tls", password="anything"),    # principal without password + a password
    dict(username="two-way-tls"),                         # no password, but no verified cert (tcp)
    dict(username="TEST", password="hahaha"),             # usernames are exact
    dict(username="test", password="hahaha "),
])
def test_bad_credentials_connack_4(shub, kw):
    c = RawClient(shub.port)
    assert c.connect(client_id="cred", **kw) == 4, kw
    assert c.closed()


def test_connack_session_present_is_0(shub):
    c = RawClient(shub.port)
    c.send(mqtt_connect(client_id="sp", username="test", password="hahaha", clean=False))
    p = c.recv()
    assert p[0] == 2 and p[2] == b"\x00\x00"
    assert subscribe(c, [("sp/x", 1)]) == [1]
    c.close()
    time.sleep(0.1)
    c = RawClient(shub.port)
    c.send(mqtt_connect(client_id="sp", username="test", password="hahaha", clean=False))
    p = c.recv()
    assert p[0] == 2 and p[2] == b"\x00\x00", "CONNACK session-present must be 0 (SPEC §11)"
    c.send(mqtt_connect(client_id="sp", username="test", password="hahaha", clean=True))  # 2nd CONNECT
    assert c.closed()
    c = conn(shub, "sp", clean=True)  # drop the persistent session


@pytest.mark.parametrize("kw", [dict(password="wrong"), dict(will=("forbidden/x", b"w", 0, False), user="limited",
                                                              pw="secret")])
def test_refused_connect_does_not_take_over(shub, kw):
    """Only an accepted CONNECT takes a session over: a refused one leaves the first alone."""
    first = conn(shub, "nt")
    c = RawClient(shub.port)
    kw = dict(kw)
    user, pw = kw.pop("user", "test"), kw.pop("password", kw.pop("pw", "hahaha"))
    assert c.connect(client_id="nt", username=user, password=pw, **kw) in (4, 5)
    assert ping(first), "a refused CONNECT closed the connection it would have taken over"
    first.send(bytes([0xE0, 0]))


def test_nul_in_username_is_not_the_principal(shub):
    c = RawClient(shub.port)
    assert c.connect(client_id="nu", username="test\u0000evil", password="hahaha") in (4, None)
    assert c.closed()


def test_keepalive_0_means_no_timeout(shub):
    c = conn(shub, "ka0", keepalive=0)
    c2 = conn(shub, "ka1", keepalive=1)
    time.sleep(2.8)
    assert c2.closed(0.1), "keepalive 1 s is enforced at 1.5 s"
    assert ping(c), "keepalive 0 must never time out"


def test_connack_accepted(hub):
    c = RawClient(hub.port)
    assert c.connect(client_id="c1", username="test", password="hahaha") == 0
    c.send(bytes([0xC0, 0]))  # PINGREQ
    assert c.recv()[0] == 13  # PINGRESP


def test_connack_1_bad_protocol_level(hub):
    c = RawClient(hub.port)
    # level 6 with the MQTT name: CONNACK 1, then closed (5 is MQTT 5.0: test_hub_mqtt5.py)
    pkt = bytearray(mqtt_connect(client_id="c1", username="test", password="hahaha"))
    pkt[8] = 6
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
