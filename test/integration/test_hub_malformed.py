"""baetyl-hub against malformed input: each bad packet closes that connection only, with its
reason logged, and other clients keep being served."""
import struct

import pytest

from conftest import RawClient, mqtt_packet, mqtt_publish, mqtt_str, mqtt_subscribe, parse_publish

BAD = {
    "puback_flags": mqtt_packet(0x42, struct.pack(">H", 1)),
    "subscribe_flags": mqtt_packet(0x80, struct.pack(">H", 1) + mqtt_str("a") + b"\x00"),
    "length_5_bytes": bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
    "truncated_topic": mqtt_packet(0x30, struct.pack(">H", 50) + b"abc"),
    "qos3": mqtt_packet(0x36, mqtt_str("a") + struct.pack(">H", 1) + b"x"),
    "pid_zero_publish_qos2": mqtt_publish("a", b"x", qos=2, pid=0),
    "pid_zero_publish": mqtt_publish("a", b"x", qos=1, pid=0),
    "pid_zero_subscribe": mqtt_subscribe(0, [("a", 0)]),
    "empty_subscribe": mqtt_packet(0x82, struct.pack(">H", 1)),
    "subscribe_qos3": mqtt_packet(0x82, struct.pack(">H", 1) + mqtt_str("a") + b"\x03"),
    "too_long": mqtt_publish("a", b"x" * 2048),
    "bad_utf8_topic": mqtt_packet(0x30, struct.pack(">H", 2) + b"\xc3\x28" + b"x"),
    "wildcard_topic": mqtt_publish("a/+", b"x"),
    "dollar_topic": mqtt_publish("$SYS/x", b"x"),
    "reserved_type_0": bytes([0x00, 0x00]),
    "reserved_type_15": bytes([0xF0, 0x00]),
    "pubrel_flags": mqtt_packet(0x60, struct.pack(">H", 1)),
    "pubrec_long": mqtt_packet(0x50, struct.pack(">H", 1) + b"\x00"),
    "connack_from_client": bytes([0x20, 0x02, 0x00, 0x00]),
    "pingreq_with_body": bytes([0xC0, 0x01, 0x00]),
}


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory):
    from conftest import Hub, Procs
    ps = Procs()
    h = Hub(ps, tmp_path_factory.mktemp("hubm"), "message: {length: {max: 1k}}\n").start()
    yield h
    rc = h.stop()
    log = h.read_log()
    ps.cleanup()
    assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]
    assert rc == 0


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_closes_only_that_connection(shared_hub, name):
    hub = shared_hub
    sub = RawClient(hub.port)
    assert sub.connect(client_id="sub-" + name, username="test", password="hahaha") == 0
    sub.send(mqtt_subscribe(1, [("ok/#", 0)]))
    assert sub.recv()[0] == 9
    bad = RawClient(hub.port)
    assert bad.connect(client_id="bad-" + name, username="test", password="hahaha") == 0
    bad.send(BAD[name])
    assert bad.closed(), name
    pub = RawClient(hub.port)
    assert pub.connect(client_id="pub-" + name, username="test", password="hahaha") == 0
    pub.send(mqtt_publish("ok/" + name, b"still served"))
    m = sub.recv()
    assert parse_publish(m[1], m[2])[:2] == ("ok/" + name, b"still served")


def test_garbage_before_connect(shared_hub):
    c = RawClient(shared_hub.port)
    c.send(b"GET / HTTP/1.1\r\n\r\n")
    assert c.closed()
    assert "malformed packet" in shared_hub.read_log() or "first packet" in shared_hub.read_log()


def test_reasons_logged(shared_hub):
    log = shared_hub.read_log()
    assert "PUBREL flags must be 0x2" in log
    assert "malformed packet" in log
    assert "too large" in log or "length" in log
