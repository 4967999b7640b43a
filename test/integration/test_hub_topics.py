"""Topic names and filters (SPEC §11 Topics) and permits (Authorisation): limits in bytes and
levels, wildcard rules, per-filter SUBACK codes, forbidden publishes."""

import pytest

from conftest import mqtt_publish, mqtt_subscribe
from hub_util import conn, get, nothing, ping, publish_acked, subscribe
from hub_util import shub  # noqa: F401 (the module's shared hub, a fixture)


def test_topic_255_bytes_ok_256_closes(shub):
    t255 = "T/" + "x" * 253
    u255 = "U/" + "é" * 126 + "z"  # 2 + 252 + 1 bytes: the limit counts bytes
    assert len(t255.encode()) == 255 and len(u255.encode()) == 255
    s = conn(shub, "tl-s")
    assert subscribe(s, [(t255, 0), (u255, 0), (t255 + "x", 0), ("U/" + "é" * 127, 0)]) == [0, 0, 0x80, 0x80]
    p = conn(shub, "tl-p")
    p.send(mqtt_publish(t255, b"255"))
    p.send(mqtt_publish(u255, b"utf8"))
    assert get(s)[:2] == (t255, b"255")
    assert get(s)[:2] == (u255, b"utf8")
    p.send(mqtt_publish(t255 + "x", b"256"))
    assert p.closed()
    p = conn(shub, "tl-p")
    p.send(mqtt_publish("U/" + "é" * 127, b"256 bytes in 129 characters"))
    assert p.closed()
    nothing(s, 0.3)


def test_topic_8_separators_ok_9_closes(shub):
    t8 = "S/" + "/".join("abcdefgh")     # 8 separators
    t9 = t8 + "/h"
    assert t8.count("/") == 8 and t9.count("/") == 9
    s = conn(shub, "sep-s")
    assert subscribe(s, [(t8, 0), ("S/+/+/+/+/+/+/+/#", 1), (t9, 0), ("S/+/+/+/+/+/+/+/+/#", 0)]) == [0, 1, 0x80, 0x80]
    p = conn(shub, "sep-p")
    p.send(mqtt_publish(t8, b"8"))
    assert get(s)[:3] == (t8, b"8", 0)
    p.send(mqtt_publish(t9, b"9"))
    assert p.closed()
    nothing(s, 0.3)


@pytest.mark.parametrize("topic", ["$SYS/x", "$x", "a/+", "+", "#", "a/#", "a#", "a+/b"])
def test_publish_invalid_topic_closes(shub, topic):
    s = conn(shub, "it-s")
    assert subscribe(s, [("a/#", 0)]) == [0]
    p = conn(shub, "it-p")
    p.send(mqtt_publish(topic, b"x"))
    assert p.closed(), topic
    nothing(s, 0.2)


def test_publish_nul_in_topic_closes(shub):
    p = conn(shub, "nul-p")
    p.send(mqtt_publish("a/\u0000b", b"x"))
    assert p.closed()


@pytest.mark.parametrize("filt,ok", [
    ("$SYS/#", False), ("$SYS/x", False), ("$", False), ("a+", False), ("a/b#", False), ("#/a", False),
    ("a/#/b", False), ("+a/b", False), ("#", True), ("+", True), ("+/+", True), ("/", True), ("a//b", True),
    ("+/#", True),
])
def test_subscribe_filter_validity(shub, filt, ok):
    c = conn(shub, "fv")
    assert subscribe(c, [(filt, 1)]) == [1 if ok else 0x80], filt
    assert ping(c)
    c.send(bytes([0xE0, 0]))


@pytest.mark.parametrize("filt", ["", "a/\u0000"])
def test_subscribe_empty_or_nul_filter_not_granted(shub, filt):
    """MQTT allows closing the connection instead of 0x80 for these: either is fine, a
    grant is not."""
    c = conn(shub, "fe")
    codes = subscribe(c, [(filt, 0)])
    assert codes is None or codes == [0x80], codes


def test_wildcard_matching_rules(shub):
    s = conn(shub, "wm-s")
    assert subscribe(s, [("mw/#", 0), ("pl/+", 0), ("pm/+/c", 0), ("+/lead", 0)]) == [0] * 4
    p = conn(shub, "wm-p")
    cases = [("mw", True), ("mw/a/b/c", True), ("mwx", False),          # a/# matches a
             ("pl/x", True), ("pl/", True), ("pl", False), ("pl/x/y", False),
             ("pm//c", True), ("pm/b/c", True), ("pm/b/c/d", False),    # + matches an empty level
             ("/lead", True), ("x/lead", True), ("lead", False)]
    for t, _ in cases:
        p.send(mqtt_publish(t, t.encode()))
    want = [t for t, ok in cases if ok]
    got = [get(s)[0] for _ in want]
    assert sorted(got) == sorted(want)
    nothing(s, 0.4)


def test_permit_wildcards_only_cover_wildcards(shub):
    c = conn(shub, "pe", user="exact", pw="pw")
    # permit test/a does not allow test/+ nor test/#
    assert subscribe(c, [("test/a", 1), ("test/+", 0), ("test/#", 0), ("test/b", 0), ("#", 0)]) == [1] + [0x80] * 4
    c = conn(shub, "pl", user="limited", pw="secret")
    # permit test/# allows test/+, test/#, test and deeper; '+' at a literal permit level is refused
    assert subscribe(c, [("test/+", 0), ("test/#", 1), ("test", 0), ("test/x/+/y", 0), ("+/x", 0), ("#", 0),
                         ("b/x", 0)]) == [0, 1, 0, 0, 0x80, 0x80, 0x80]
    c = conn(shub, "pp", user="plus", pw="pw")
    # permit test/+ allows test/x and test/+, not test/# nor test/x/y; permit + allows one level
    assert subscribe(c, [("test/x", 0), ("test/+", 0), ("test/#", 0), ("test/x/y", 0), ("top", 0), ("+", 0),
                         ("#", 0), ("top/x", 0)]) == [0, 0, 0x80, 0x80, 0, 0, 0x80, 0x80]


def test_suback_per_filter_and_only_granted_filters_deliver(shub):
    c = conn(shub, "mf", user="limited", pw="secret")
    assert subscribe(c, [("a/mf", 1), ("b/mf", 0), ("test/mf", 0), ("a/mf2", 2)], pid=0x1234) == [1, 0x80, 0, 2]
    p = conn(shub, "mf-p")
    for t in ("b/mf", "a/mf2", "a/mf", "test/mf"):
        p.send(mqtt_publish(t, t.encode(), qos=1, pid=7))
        assert p.recv()[0] == 4
    got = sorted(get(c)[:3] for _ in range(3))
    assert got == [("a/mf", b"a/mf", 1), ("a/mf2", b"a/mf2", 1), ("test/mf", b"test/mf", 0)]
    nothing(c, 0.4)


def test_publish_permit_with_wildcards_and_forbidden_closes(shub):
    s = conn(shub, "pw-s")
    assert subscribe(s, [("dev/#", 1)]) == [1]
    p = conn(shub, "pw-p", user="plus", pw="pw")
    publish_acked(p, "dev/7/data", b"ok")
    assert get(s)[:2] == ("dev/7/data", b"ok")
    p.send(mqtt_publish("dev/7/other", b"no", qos=1, pid=2))
    assert p.closed()
    nothing(s, 0.4)
    p = conn(shub, "pw-p", user="plus", pw="pw")
    p.send(mqtt_publish("dev/7/data/x", b"no"))
    assert p.closed()
    nothing(s, 0.3)


def test_principal_without_permissions_can_connect_but_not_act(hub_factory):
    hub = hub_factory(principals="principals:\n  - {username: bare, password: pw}\n"
                                 "  - username: test\n    password: hahaha\n    permissions:\n"
                                 "      - {action: sub, permit: ['#']}\n")
    c = conn(hub, "bare", user="bare", pw="pw")
    assert subscribe(c, [("x", 0)]) == [0x80]
    c.send(mqtt_publish("x", b"no"))
    assert c.closed()
    t = conn(hub, "t")   # sub-only principal: publishing closes as well
    t.send(mqtt_publish("x", b"no"))
    assert t.closed()


def test_suback_codes(hub):
    c = conn(hub, "raw", user="limited", pw="secret")
    c.send(mqtt_subscribe(7, [("a/b", 0), ("a/+", 1), ("x/y", 0), ("a/c", 2), ("a/#/b", 0),
                              ("test/+", 1), ("$SYS/x", 0), ("a/" + "l/" * 9, 0)]))
    p = c.recv()
    assert p[0] == 9
    assert p[2][:2] == b"\x00\x07"
    assert list(p[2][2:]) == [0, 1, 0x80, 2, 0x80, 1, 0x80, 0x80]


def test_publish_forbidden_closes(hub):
    c = conn(hub, "raw", user="limited", pw="secret")
    c.send(mqtt_publish("a/ok", b"1"))
    c.send(bytes([0xC0, 0]))
    assert c.recv()[0] == 13
    c.send(mqtt_publish("b/forbidden", b"1"))
    assert c.closed()
    assert "not permitted" in hub.read_log()
