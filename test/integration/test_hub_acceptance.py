"""Acceptance tests of baetyl-hub written from SPEC §11 (and §18 for logs) and the seed's
chapters 6.3.2, 7 and 8, as an outside tester would: only real clients (raw sockets, paho-mqtt
1.6, mosquitto_pub/mosquitto_sub), only behaviour a user can see. They complement
test_hub_*.py: MQTT 3.1 clients, client id and credential corner cases, topic limits in bytes
and separators, permit semantics, per-filter SUBACK effects, retained QoS, routes' QoS rule,
config refusals, length limit boundary, keep-alive 0, logs, SIGTERM, 1000 connections and the
seed's chapter 8 walk-through with mosquitto clients.

Most tests share one hub (module scope) and use their own topics and client ids."""
import json
import os
import queue
import re
import signal
import struct
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import (Hub, Procs, RawClient, binary, free_port, mqtt_connect, mqtt_packet, mqtt_puback,
                      mqtt_publish, mqtt_str, mqtt_subscribe, parse_publish, wait_for, wait_port)

PRINCIPALS = """
principals:
  - username: test
    password: hahaha
    permissions:
      - {action: pub, permit: ['#']}
      - {action: sub, permit: ['#']}
  - username: limited
    password: secret
    permissions:
      - {action: pub, permit: ['a/#', 'will/ok']}
      - {action: sub, permit: ['a/#', 'test/#']}
  - username: exact
    password: pw
    permissions:
      - {action: pub, permit: ['test/a']}
      - {action: sub, permit: ['test/a']}
  - username: plus
    password: pw
    permissions:
      - {action: pub, permit: ['dev/+/data']}
      - {action: sub, permit: ['test/+', '+']}
  - username: two-way-tls
    permissions:
      - {action: pub, permit: ['tls/#']}
      - {action: sub, permit: ['tls/#']}
"""

# Routes of the shared hub: the seed's example, the QoS rule matrix (source qos s, target
# qos t), wildcard sources, a fan-out and a chain through a wildcard source.
ROUTES = "subscriptions:\n" + "".join(
    f"  - source: {{topic: 'rq/s{s}t{t}/in', qos: {s}}}\n    target: {{topic: 'rq/s{s}t{t}/out', qos: {t}}}\n"
    for s in (0, 1) for t in (0, 1)) + """
  - source: {topic: t}
    target: {topic: t/topic}
  - source: {topic: 'sensor/+/temp', qos: 1}
    target: {topic: 'all/temp', qos: 1}
  - source: {topic: 'in/#', qos: 1}
    target: {topic: 'fanin/out', qos: 1}
  - source: {topic: 'fan/src'}
    target: {topic: 'fan/a'}
  - source: {topic: 'fan/src'}
    target: {topic: 'fan/b'}
  - source: {topic: 'ch/1', qos: 1}
    target: {topic: 'ch2/x', qos: 1}
  - source: {topic: 'ch2/+', qos: 1}
    target: {topic: 'ch3/y', qos: 0}
"""


@pytest.fixture(scope="module")
def shub(tmp_path_factory):
    """The shared hub: default limits, the principals and routes above."""
    ps = Procs()
    h = Hub(ps, tmp_path_factory.mktemp("acc"), ROUTES, principals=PRINCIPALS).start()
    yield h
    rc = h.stop()
    log = h.read_log()
    ps.cleanup()
    assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]
    assert rc == 0, log[-2000:]


# ---- helpers ----------------------------------------------------------------------------

def conn(hub, cid, user="test", pw="hahaha", **kw):
    c = RawClient(hub.port)
    assert c.connect(client_id=cid, username=user, password=pw, **kw) == 0
    return c


def subscribe(c, filters, pid=1):
    """Sends one SUBSCRIBE and returns the SUBACK return codes (None when closed)."""
    c.send(mqtt_subscribe(pid, filters))
    p = c.recv()
    if p is None:
        return None
    assert p[0] == 9, p
    assert p[2][:2] == struct.pack(">H", pid)
    return list(p[2][2:])


def unsubscribe(c, filters, pid=2):
    body = struct.pack(">H", pid) + b"".join(mqtt_str(f) for f in filters)
    c.send(mqtt_packet(0xA2, body))
    p = c.recv()
    assert p is not None and p[0] == 11 and p[2] == struct.pack(">H", pid), p


def ping(c):
    """True when the connection still answers PINGREQ."""
    try:
        c.send(bytes([0xC0, 0]))
        while True:
            p = c.recv(timeout=3)
            if p is None:
                return False
            if p[0] == 13:
                return True
    except (OSError, TimeoutError):
        return False


def get(c, ack=True, timeout=5.0):
    """Next PUBLISH as (topic, payload, qos, retain, dup, pid); PUBACKs QoS 1."""
    p = c.recv(timeout=timeout)
    assert p is not None, "connection closed while waiting for a PUBLISH"
    assert p[0] == 3, f"expected PUBLISH, got packet type {p[0]}"
    m = parse_publish(p[1], p[2])
    if ack and m[2]:
        c.send(mqtt_puback(m[5]))
    return m


def nothing(c, wait=0.6):
    """Asserts no packet arrives within wait seconds."""
    try:
        p = c.recv(timeout=wait)
    except TimeoutError:
        return
    if p is None:
        raise AssertionError("connection closed unexpectedly")
    raise AssertionError(f"unexpected packet type {p[0]}: {parse_publish(p[1], p[2]) if p[0] == 3 else p}")


def publish_acked(c, topic, payload, pid=1, retain=False):
    c.send(mqtt_publish(topic, payload, qos=1, pid=pid, retain=retain))
    p = c.recv()
    assert p is not None and p[0] == 4 and p[2] == struct.pack(">H", pid), p


def run_hub(conf_text, cwd, timeout=10):
    """Runs the hub on a config that should be refused; returns (rc, stdout+stderr)."""
    path = os.path.join(str(cwd), "conf.yml")
    with open(path, "w") as f:
        f.write(conf_text)
    try:
        r = subprocess.run([binary("baetyl-hub"), "-c", path], cwd=str(cwd), capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("the hub started with a config it must refuse")
    return r.returncode, r.stdout + r.stderr


class Paho:
    def __init__(self, port, cid, protocol=mqtt.MQTTv311, clean=True, user="test", pw="hahaha", will=None):
        self.msgs = queue.Queue()
        self.rc = queue.Queue()
        self.c = mqtt.Client(client_id=cid, clean_session=clean, protocol=protocol)
        self.c.username_pw_set(user, pw)
        if will:
            self.c.will_set(*will)
        self.c.on_connect = lambda c, u, f, rc: self.rc.put((rc, f.get("session present", 0)))
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        self.subacks = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, granted: self.subacks.put(granted)
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        self.connack = self.rc.get(timeout=5)

    def sub(self, topic, qos=0):
        r, _ = self.c.subscribe(topic, qos)
        assert r == 0
        return self.subacks.get(timeout=5)

    def pub(self, topic, payload, qos=0, retain=False):
        info = self.c.publish(topic, payload, qos, retain)
        info.wait_for_publish()

    def get(self, timeout=5):
        return self.msgs.get(timeout=timeout)

    def none(self, wait=0.5):
        try:
            m = self.msgs.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {m.topic} {m.payload}")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


# ---- Protocol: MQTT 3.1 (level 3, "MQIsdp") and 3.1.1 ------------------------------------

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


# ---- Connect -----------------------------------------------------------------------------

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


# ---- Topics ------------------------------------------------------------------------------

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


# ---- Authorisation -----------------------------------------------------------------------

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
    assert subscribe(c, [("a/mf", 1), ("b/mf", 0), ("test/mf", 0), ("a/mf2", 2)], pid=0x1234) == [1, 0x80, 0, 0x80]
    p = conn(shub, "mf-p")
    for t in ("b/mf", "a/mf2", "a/mf", "test/mf"):
        p.send(mqtt_publish(t, t.encode(), qos=1, pid=7))
        assert p.recv()[0] == 4
    got = sorted(get(c)[:3] for _ in range(2))
    assert got == [("a/mf", b"a/mf", 1), ("test/mf", b"test/mf", 0)]
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


# ---- Delivery ----------------------------------------------------------------------------

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


def test_retained_delivered_after_suback_at_min_qos(shub):
    p = conn(shub, "rq-p")
    publish_acked(p, "ret/q1", b"R1", retain=True)
    p.send(mqtt_publish("ret/q0", b"R0", qos=0, retain=True))
    assert ping(p)
    for sq, want in [(0, {"ret/q1": 0, "ret/q0": 0}), (1, {"ret/q1": 1, "ret/q0": 0})]:
        s = conn(shub, f"rq-s{sq}")
        s.send(mqtt_subscribe(5, [("ret/+", sq)]))
        first = s.recv()
        assert first[0] == 9, "retained messages must come after the SUBACK"
        got = {}
        for _ in range(2):
            t, pl, q, retain, dup, pid = get(s)
            assert retain, "a retained message is sent with RETAIN=1"
            got[t] = q
        assert got == want
        nothing(s, 0.3)
    # a live delivery of a RETAIN=1 publish carries RETAIN=0
    p.send(mqtt_publish("ret/q0", b"R0b", qos=0, retain=True))
    m = get(s)
    assert m[:4] == ("ret/q0", b"R0b", 0, False)
    # empty payload deletes
    p.send(mqtt_publish("ret/q0", b"", retain=True))
    publish_acked(p, "ret/q1", b"", pid=3, retain=True)
    time.sleep(0.1)
    s = conn(shub, "rq-s2")
    assert subscribe(s, [("ret/#", 1)]) == [1]
    nothing(s, 0.5)


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


def test_retained_qos1_unacked_resent_on_reconnect(shub):
    """SPEC: unacknowledged QoS 1 deliveries are resent until PUBACK or session end; a
    persistent session does not end with its connection (MQTT 4.4 too)."""
    p = conn(shub, "rz-p")
    publish_acked(p, "rz/x", b"retained one", retain=True)
    s = conn(shub, "rz", clean=False)
    assert subscribe(s, [("rz/#", 1)]) == [1]
    assert get(s, ack=False)[:4] == ("rz/x", b"retained one", 1, True)
    s.close()
    time.sleep(0.3)
    s = conn(shub, "rz", clean=False)
    try:
        m = get(s)
        assert m[:3] == ("rz/x", b"retained one", 1)
    finally:
        s.send(bytes([0xE0, 0]))
        conn(shub, "rz", clean=True).send(bytes([0xE0, 0]))
        p.send(mqtt_publish("rz/x", b"", retain=True))


def test_empty_payload_delivered(shub):
    s = conn(shub, "ep-s")
    assert subscribe(s, [("ep/x", 1)]) == [1]
    p = conn(shub, "ep-p")
    p.send(mqtt_publish("ep/x", b""))
    publish_acked(p, "ep/x", b"")
    assert get(s)[:3] == ("ep/x", b"", 0)
    assert get(s)[:3] == ("ep/x", b"", 1)


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


def test_two_listeners(procs, tmp_path):
    p1, p2 = free_port(), free_port()
    (tmp_path / "c.yml").write_text(f"listen: ['tcp://127.0.0.1:{p1}', 'tcp://127.0.0.1:{p2}']\n"
                                    "storage: {dir: data}\n" + PRINCIPALS)
    h = procs.start([binary("baetyl-hub"), "-c", str(tmp_path / "c.yml")], cwd=str(tmp_path))
    wait_port(p1)
    wait_port(p2)
    a = RawClient(p1)
    assert a.connect(client_id="on1", username="test", password="hahaha") == 0
    assert subscribe(a, [("two/x", 0)]) == [0]
    b = RawClient(p2)
    assert b.connect(client_id="on2", username="test", password="hahaha") == 0
    b.send(mqtt_publish("two/x", b"across listeners"))
    assert get(a)[:2] == ("two/x", b"across listeners")
    assert procs.stop(h) == 0


# ---- Routes ------------------------------------------------------------------------------

@pytest.mark.parametrize("s", [0, 1])
@pytest.mark.parametrize("t", [0, 1])
@pytest.mark.parametrize("mq", [0, 1])
def test_route_qos_rule(shub, s, t, mq):
    """QoS = 0 if min(message QoS, source.qos) is 0, else target.qos."""
    sub = conn(shub, f"rqs{s}{t}{mq}")
    assert subscribe(sub, [(f"rq/s{s}t{t}/out", 1)]) == [1]
    p = conn(shub, f"rqp{s}{t}{mq}")
    if mq:
        publish_acked(p, f"rq/s{s}t{t}/in", b"m")
    else:
        p.send(mqtt_publish(f"rq/s{s}t{t}/in", b"m"))
    want = 0 if min(mq, s) == 0 else t
    assert get(sub)[:3] == (f"rq/s{s}t{t}/out", b"m", want)
    nothing(sub, 0.2)


def test_route_wildcard_sources(shub):
    sub = conn(shub, "rw")
    assert subscribe(sub, [("all/temp", 1), ("fanin/out", 1)]) == [1, 1]
    p = conn(shub, "rw-p")
    publish_acked(p, "sensor/1/temp", b"21")
    publish_acked(p, "sensor/1/hum", b"40", pid=2)
    publish_acked(p, "in", b"parent", pid=3)        # in/# matches in
    publish_acked(p, "in/a/b", b"deep", pid=4)
    got = sorted(get(sub)[:3] for _ in range(3))
    assert got == [("all/temp", b"21", 1), ("fanin/out", b"deep", 1), ("fanin/out", b"parent", 1)]
    nothing(sub, 0.3)


def test_route_fan_out_and_original_still_delivered(shub):
    sub = conn(shub, "rf")
    assert subscribe(sub, [("fan/#", 0)]) == [0]
    p = conn(shub, "rf-p")
    p.send(mqtt_publish("fan/src", b"f"))
    got = sorted(get(sub)[:2] for _ in range(3))
    assert got == [("fan/a", b"f"), ("fan/b", b"f"), ("fan/src", b"f")]
    nothing(sub, 0.3)


def test_route_chain_through_wildcard_source(shub):
    sub = conn(shub, "rc")
    assert subscribe(sub, [("ch/1", 1), ("ch2/+", 1), ("ch3/#", 1)]) == [1, 1, 1]
    p = conn(shub, "rc-p")
    publish_acked(p, "ch/1", b"c")
    got = sorted(get(sub)[:3] for _ in range(3))
    assert got == [("ch/1", b"c", 1), ("ch2/x", b"c", 1), ("ch3/y", b"c", 0)]
    nothing(sub, 0.3)


def test_will_is_routed_like_any_message(shub):
    sub = conn(shub, "rwill")
    assert subscribe(sub, [("t/topic", 1)]) == [1]
    a = conn(shub, "rwill-a", will=("t", b"routed will", 1, False))
    a.close()
    assert get(sub)[:2] == ("t/topic", b"routed will")


def test_routed_copy_retain_flag_is_0(shub):
    sub = conn(shub, "rr")
    assert subscribe(sub, [("fan/a", 0)]) == [0]
    p = conn(shub, "rr-p")
    p.send(mqtt_publish("fan/src", b"r", retain=True))
    assert get(sub)[:4] == ("fan/a", b"r", 0, False)
    p.send(mqtt_publish("fan/src", b"", retain=True))


# ---- Config errors refuse to start, naming the field ------------------------------------

LISTEN = "listen: ['tcp://127.0.0.1:{port}']\nstorage: {{dir: data}}\n"

CONFIG_ERRORS = [
    ("dup_user", "principals:\n  - {username: u, password: p}\n  - {username: v, password: q}\n"
                 "  - {username: u, password: r}\n", ["username", "duplicate"]),
    ("bad_pub_permit", "principals:\n  - username: u\n    password: p\n    permissions:\n"
                       "      - {action: pub, permit: ['ok/#', 'x/#/y']}\n", ["pub topic(x/#/y) invalid"]),
    ("bad_sub_permit", "principals:\n  - username: u\n    password: p\n    permissions:\n"
                       "      - {action: sub, permit: ['a+']}\n", ["sub topic(a+) invalid"]),
    ("dollar_permit", "principals:\n  - username: u\n    password: p\n    permissions:\n"
                      "      - {action: sub, permit: ['$SYS/#']}\n", ["sub topic($SYS/#) invalid"]),
    ("deep_permit", "principals:\n  - username: u\n    password: p\n    permissions:\n"
                    "      - {action: pub, permit: ['1/2/3/4/5/6/7/8/9/10']}\n", ["pub topic(1/2/3/4/5/6/7/8/9/10) invalid"]),
    ("bad_source", "subscriptions:\n  - source: {topic: '$SYS/x'}\n    target: {topic: b}\n", ["source.topic"]),
    ("bad_target", "subscriptions:\n  - source: {topic: a}\n    target: {topic: 'b/#'}\n", ["target.topic"]),
    ("no_target", "subscriptions:\n  - source: {topic: a}\n", ["target"]),
    ("dup_route", "subscriptions:\n  - source: {topic: 'a/+'}\n    target: {topic: b}\n"
                  "  - source: {topic: c}\n    target: {topic: d}\n"
                  "  - source: {topic: 'a/+'}\n    target: {topic: b}\n", ["subscriptions", "duplicate"]),
    ("cycle2", "subscriptions:\n  - source: {topic: a}\n    target: {topic: b}\n"
               "  - source: {topic: b}\n    target: {topic: a}\n", ["cycle"]),
    ("cycle_wild", "subscriptions:\n  - source: {topic: 'a/+'}\n    target: {topic: 'b/x'}\n"
                   "  - source: {topic: 'b/#'}\n    target: {topic: 'a/z'}\n", ["cycle"]),
    ("cycle_self", "subscriptions:\n  - source: {topic: '#'}\n    target: {topic: 'x'}\n", ["cycle"]),
    ("bad_length", "message: {length: {max: 268435456}}\n", ["message.length.max"]),
    ("length_type", "message: {length: {max: lots}}\n", ["message.length.max"]),
    ("no_username", "principals:\n  - {password: p}\n", ["username"]),
    ("bad_action", "principals:\n  - username: u\n    password: p\n    permissions:\n"
                   "      - {action: publish, permit: ['a']}\n", ["action"]),
    ("route_qos2", "subscriptions:\n  - source: {topic: a}\n    target: {topic: b, qos: 2}\n", ["qos"]),
]


@pytest.mark.parametrize("name,extra,words", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors_refuse_to_start(tmp_path, name, extra, words):
    port = free_port()
    rc, out = run_hub(LISTEN.format(port=port) + extra, tmp_path)
    assert rc != 0
    for w in words:
        assert w in out, f"{w!r} not in {out!r}"


def test_routes_without_cycle_start(hub_factory):
    """A diamond and a chain through wildcards are not cycles."""
    hub = hub_factory("subscriptions:\n"
                      "  - source: {topic: a}\n    target: {topic: b}\n"
                      "  - source: {topic: c}\n    target: {topic: b}\n"
                      "  - source: {topic: 'x/+'}\n    target: {topic: 'y/1'}\n"
                      "  - source: {topic: 'y/+'}\n    target: {topic: z}\n")
    s = conn(hub, "s")
    assert subscribe(s, [("z", 0)]) == [0]
    conn(hub, "p").send(mqtt_publish("x/1", b"two hops"))
    assert get(s)[:2] == ("z", b"two hops")


def test_config_without_listen_refused(tmp_path):
    """The seed marks listen as required ([必须]): a config of principals only is refused,
    naming listen, and nothing is bound."""
    rc, out = run_hub(PRINCIPALS, tmp_path)
    assert rc != 0
    assert "listen" in out, out
    rc, out = run_hub("{}\n", tmp_path)
    assert rc != 0 and "listen" in out, out


def test_missing_and_broken_config_refused(tmp_path):
    r = subprocess.run([binary("baetyl-hub"), "-c", str(tmp_path / "nope.yml")], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "nope.yml" in r.stdout + r.stderr
    rc, out = run_hub("listen: [tcp://127.0.0.1:1\nprincipals: {{{\n", tmp_path)
    assert rc != 0 and out.strip()


# ---- Limits ------------------------------------------------------------------------------

def test_message_length_max_boundary(hub_factory):
    """message.length.max 1k: a 1024-byte packet passes; a packet whose remaining length
    alone is 1025 bytes closes the connection. (SPEC: 'a packet longer than
    message.length.max'; whether the fixed header counts is not said, so both ends are
    chosen to hold under either reading.)"""
    hub = hub_factory("message: {length: {max: 1k}}\n")
    s = conn(hub, "s")
    assert subscribe(s, [("L", 0)]) == [0]
    p = conn(hub, "p")
    ok = mqtt_publish("L", b"o" * 1018)            # 1 + 2 + (3 + 1018) = 1024 bytes
    assert len(ok) == 1024
    p.send(ok)
    assert get(s)[:2] == ("L", b"o" * 1018)
    big = mqtt_publish("L", b"b" * 1022)            # remaining length 1025
    assert len(big) - 3 == 1025
    p.send(big)
    assert p.closed(), "a packet longer than message.length.max must close the connection"
    nothing(s, 0.3)


def test_message_length_default_32k(shub):
    s = conn(shub, "len-s")
    assert subscribe(s, [("len/x", 0)]) == [0]
    p = conn(shub, "len-p")
    payload = b"p" * (32 * 1024 - 20)
    p.send(mqtt_publish("len/x", payload))
    assert get(s)[1] == payload
    p.send(mqtt_publish("len/x", b"p" * (32 * 1024 + 1)))
    assert p.closed()


def test_keepalive_0_means_no_timeout(shub):
    c = conn(shub, "ka0", keepalive=0)
    c2 = conn(shub, "ka1", keepalive=1)
    time.sleep(2.8)
    assert c2.closed(0.1), "keepalive 1 s is enforced at 1.5 s"
    assert ping(c), "keepalive 0 must never time out"


# ---- Logs, signals, load -----------------------------------------------------------------

# logrus quotes a value only when it needs quotes (msg=listening, msg="client connected")
LOGRUS = re.compile(r'^time="[^"]+" level=(debug|info|warn|warning|error|fatal) msg=("([^"\\]|\\.)*"|[^\s"]+)( |$)')


def test_log_lines_are_logrus_text(hub_factory):
    hub = hub_factory("logger: {level: debug}\n")
    c = conn(hub, "logme")
    c.send(bytes([0xE0, 0]))
    wait_for(lambda: "logme" in hub.read_log(), timeout=5, what="a log line naming the client")
    hub.stop()
    lines = [ln for ln in hub.read_log().splitlines() if ln.strip()]
    assert lines
    bad = [ln for ln in lines if not LOGRUS.match(ln)]
    assert not bad, bad[:5]
    assert any("level=debug" in ln for ln in lines)


def test_log_json_file_and_level(hub_factory, tmp_path):
    hub = hub_factory("logger: {path: var/log/hub.log, format: json, level: warn}\n")
    c = RawClient(hub.port)
    assert c.connect(client_id="lj", username="test", password="bad") == 4
    ok = conn(hub, "lj2")
    ok.send(bytes([0xE0, 0]))
    assert hub.stop() == 0
    path = os.path.join(hub.dir, "var", "log", "hub.log")
    assert os.path.exists(path), "logger.path must be written"
    lines = [ln for ln in open(path).read().splitlines() if ln.strip()]
    assert lines, "a refused connection is worth a warning"
    for ln in lines:
        d = json.loads(ln)
        assert d["level"] in ("warn", "warning", "error"), d
        assert "msg" in d and "time" in d


def test_sigterm_exits_0_promptly_with_busy_clients(hub_factory):
    hub = hub_factory()
    s = conn(hub, "st-s", clean=False)
    assert subscribe(s, [("st/#", 1)]) == [1]
    p = conn(hub, "st-p")
    for i in range(20):
        p.send(mqtt_publish("st/x", b"%d" % i, qos=1, pid=i + 1))   # never PUBACKed by s
    idle = conn(hub, "st-idle", keepalive=0)
    half = RawClient(hub.port)
    half.send(mqtt_connect(client_id="half", username="test", password="hahaha")[:7])
    time.sleep(0.3)
    t0 = time.monotonic()
    assert hub.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 3, "SIGTERM must stop the hub promptly"
    assert s.closed(1) and idle.closed(1)


def test_1000_connections_at_once(shub):
    n = 1000
    clients = []
    try:
        for i in range(n):
            c = RawClient(shub.port, timeout=20)
            c.send(mqtt_connect(client_id=f"k{i}", username="test", password="hahaha", keepalive=0)
                   + mqtt_subscribe(1, [("k/all", 0)]))
            clients.append(c)
        for c in clients:
            p = c.recv(timeout=20)
            assert p is not None and p[0] == 2 and p[2][1] == 0
            p = c.recv(timeout=20)
            assert p is not None and p[0] == 9 and p[2][2] == 0
        pub = conn(shub, "k-pub")
        pub.send(mqtt_publish("k/all", b"to everyone"))
        for c in clients:
            m = get(c, timeout=20)
            assert m[:2] == ("k/all", b"to everyone")
    finally:
        for c in clients:
            c.close()
    assert ping(conn(shub, "k-after"))


# ---- The seed's chapters 7 and 8 with mosquitto clients ----------------------------------

SEED_CH8 = """listen:
  - tcp://0.0.0.0:1883
principals:
  - username: 'test'
    password: 'hahaha'
    permissions:
      - action: 'pub'
        permit: ['#']
      - action: 'sub'
        permit: ['#']
subscriptions:
  - source:
      topic: 't'
    target:
      topic: 't/topic'
logger:
  path: var/log/baetyl/service.log
  level: 'debug'
"""


def test_seed_chapter8_with_mosquitto_clients(procs, tmp_path):
    port = free_port()
    (tmp_path / "etc" / "baetyl").mkdir(parents=True)
    (tmp_path / "etc" / "baetyl" / "service.yml").write_text(SEED_CH8.replace("0.0.0.0:1883", f"127.0.0.1:{port}"))
    out = open(tmp_path / "stderr.txt", "wb")
    hub = procs.start([binary("baetyl-hub")], cwd=str(tmp_path), stdout=out, stderr=subprocess.STDOUT)
    wait_port(port)
    common = ["-h", "127.0.0.1", "-p", str(port), "-u", "test", "-P", "hahaha"]
    # client2 subscribes t, client3 subscribes t/topic, the merged client both
    subs = [subprocess.Popen(["mosquitto_sub", *common, "-v", "-C", str(n), "-W", "10", *sum((["-t", t] for t in ts), [])],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for ts, n in ((["t"], 1), (["t/topic"], 1), (["t", "t/topic"], 2))]
    try:
        time.sleep(0.5)
        r = subprocess.run(["mosquitto_pub", *common, "-t", "t", "-m", "This is a new message."],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        outs = [s.communicate(timeout=10)[0] for s in subs]
    finally:
        for s in subs:
            s.kill()
            s.wait()
    assert outs[0].splitlines() == ["t This is a new message."]
    assert outs[1].splitlines() == ["t/topic This is a new message."]
    assert sorted(outs[2].splitlines()) == ["t This is a new message.", "t/topic This is a new message."]
    # chapter 7: a wrong password is refused
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", "test", "-P", "wrong",
                        "-t", "t", "-m", "x"], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert procs.stop(hub) == 0
    out.close()
    log = (tmp_path / "var" / "log" / "baetyl" / "service.log").read_text()
    log += (tmp_path / "stderr.txt").read_text(errors="replace")
    assert "Sanitizer" not in log and "runtime error" not in log
    assert "client connected" in log  # level debug from the seed's config
    assert (tmp_path / "var" / "db" / "baetyl" / "data").is_dir()
