"""Shared by the hub's integration tests: a module-scoped hub with many principals and
routes (`shub`, each test uses its own topics and client ids), raw-socket helpers and a
paho client that records what it receives."""

import os
import queue
import struct
import subprocess

import paho.mqtt.client as mqtt
import pytest

from conftest import (HUB_PRINCIPALS, Hub, Procs, RawClient, binary, mqtt_packet, mqtt_puback,
                      mqtt_publish, mqtt_str, mqtt_subscribe, parse_publish)


# conftest's principals (test, limited) and more.
PRINCIPALS = HUB_PRINCIPALS + """
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
