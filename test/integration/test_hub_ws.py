"""baetyl-hub over WebSocket (ws) and WebSocket over TLS (wss), under the master with the
seed's chapter 7 example plus a wss listener: paho's websockets transport, the upgrade
(subprotocol `mqtt` answered), fragmentation, ping/pong, the close handshake, and malformed
handshakes and frames, each of which closes only its own connection."""
import socket
import ssl
import struct
import time

import pytest

from conftest import mqtt_connect, mqtt_packet, mqtt_publish, mqtt_puback, mqtt_subscribe, parse_publish
from hub_tls_util import Chapter7, Paho, WsRaw, tls_args, ws_accept, ws_frame

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # paho's ssl.PROTOCOL_TLS


@pytest.fixture(scope="module")
def ch7():
    c = Chapter7(extra="handshake:\n  timeout: 2s\n").start()
    yield c
    problems = c.stop()
    assert not problems, "\n".join(problems)


@pytest.fixture
def watcher(ch7):
    """A ws client that must keep working while other connections misbehave."""
    c = Paho(ch7.ws, "test", "hahaha", transport="websockets", client_id="watcher")
    assert c.connect() == 0
    c.subscribe("watch", 0)
    yield c
    n = len(c.msgs)
    c.publish("watch", b"still here")
    assert c.wait_msgs(n + 1)[-1] == ("watch", b"still here", 0)
    c.close()


def tls_ctx(certs):
    return ssl.create_default_context(cafile=certs["ca"])


def ws_open(ch7, port=None, tls=False, client_id="raw", user="test", password="hahaha"):
    """A raw ws client after a good upgrade and CONNECT."""
    w = WsRaw(port or (ch7.wss if tls else ch7.ws), tls_ctx(ch7.certs) if tls else None)
    status, headers, _ = w.handshake()
    assert status == "HTTP/1.1 101 Switching Protocols", status
    w.send_mqtt(mqtt_connect(client_id=client_id, username=user, password=password))
    p = w.recv_mqtt()
    assert p[0] == 2 and p[2][1] == 0, p
    return w


def test_ws_paho_password_login_and_route(ch7):
    c = Paho(ch7.ws, "test", "hahaha", transport="websockets")
    assert c.connect() == 0
    c.subscribe("t/topic", 1)
    c.publish("t", b"This is a new message.", qos=1)
    assert c.wait_msgs(1) == [("t/topic", b"This is a new message.", 0)]
    # larger than one read and than the 16-bit frame length: a 64-bit frame length
    c.subscribe("big", 1)
    c.publish("big", b"z" * 30000, qos=1)
    assert c.wait_msgs(2)[1] == ("big", b"z" * 30000, 1)
    c.close()


def test_ws_without_password_is_refused(ch7):
    c = Paho(ch7.ws, "test", None, transport="websockets")
    assert c.connect() == 4
    c.close()


def test_wss_paho_password_and_certificate(ch7):
    c = Paho(ch7.wss, "test", "hahaha", transport="websockets", tls=tls_args(ch7.certs, client_cert=False))
    assert c.connect() == 0
    c.subscribe("wss/x", 1)
    c.publish("wss/x", b"secure", qos=1)
    assert c.wait_msgs(1) == [("wss/x", b"secure", 1)]
    c.close()
    c = Paho(ch7.wss, "two-way-tls", None, transport="websockets", tls=tls_args(ch7.certs))
    assert c.connect() == 0
    assert c.subscribe("tls/#", 1) == (1,)
    assert c.subscribe("nope", 0) == (128,)
    c.publish("tls/w", b"cert over wss", qos=1)
    assert c.wait_msgs(1) == [("tls/w", b"cert over wss", 1)]
    c.close()
    # the certificate login needs TLS: not on plain ws
    c = Paho(ch7.ws, "two-way-tls", None, transport="websockets")
    assert c.connect() == 4
    c.close()


def test_upgrade_answer(ch7):
    w = WsRaw(ch7.ws)
    status, h, _ = w.handshake()
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert h["upgrade"].lower() == "websocket"
    assert h["sec-websocket-accept"] == ws_accept(w.key)
    assert h["sec-websocket-protocol"] == "mqtt"
    w.close()
    # no subprotocol asked: none answered, MQTT still flows
    w = WsRaw(ch7.ws)
    status, h, _ = w.handshake(protocol=None)
    assert status.startswith("HTTP/1.1 101") and "sec-websocket-protocol" not in h
    w.send_mqtt(mqtt_connect(client_id="noproto", username="test", password="hahaha"))
    assert w.recv_mqtt()[0] == 2
    w.close()


BAD_UPGRADES = {
    "no_upgrade_header": b"GET /mqtt HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "version_8": b"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    "no_key": b"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n",
    "post": b"POST /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "http_1_0": b"GET /mqtt HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "mqtt_not_http": mqtt_connect(client_id="x", username="test", password="hahaha"),
    "binary_garbage": bytes(range(256)) * 4,
    "header_flood": b"GET /mqtt HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 400 + b"\r\n" * 1 + (b"X: y\r\n" * 2000),
}


@pytest.mark.parametrize("name", sorted(BAD_UPGRADES))
def test_bad_upgrade_closes_only_that_connection(ch7, watcher, name):
    w = WsRaw(ch7.ws)
    status, _, _ = w.handshake(request=BAD_UPGRADES[name])
    assert status is None or status.startswith("HTTP/1.1 400"), status
    assert w.closed()
    w.close()


# (name, frames after a good CONNECT, close code the hub must answer with)
BAD_FRAMES = {
    "unmasked": (ws_frame(0x2, mqtt_publish("a", b"x"), mask=False), 1002),
    "oversized": (ws_frame(0x2, b"", length=1 << 40), 1009),
    "just_over_the_limit": (ws_frame(0x2, b"", length=32 * 1024 + 5 + 64 * 1024 + 1), 1009),
    "text_frame": (ws_frame(0x1, b"hello"), 1003),
    "opcode_3": (ws_frame(0x3, b"x"), 1002),
    "opcode_11": (ws_frame(0xB, b""), 1002),
    "reserved_bits": (ws_frame(0x2, mqtt_publish("a", b"x"), rsv=4), 1002),
    "fragmented_ping": (ws_frame(0x9, b"p", fin=False), 1002),
    "long_ping": (ws_frame(0x9, b"p" * 126), 1002),
    "stray_continuation": (ws_frame(0x0, b"x"), 1002),
    "binary_inside_fragments": (ws_frame(0x2, b"\x30", fin=False) + ws_frame(0x2, b"\x00"), 1002),
    "close_code_bad": (ws_frame(0x8, struct.pack(">H", 999)), 1002),
    "close_one_byte": (ws_frame(0x8, b"\x03"), 1002),
    "mqtt_malformed_inside": (ws_frame(0x2, bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])), None),
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_bad_frame_closes_only_that_connection(ch7, watcher, name, tls):
    data, code = BAD_FRAMES[name]
    w = ws_open(ch7, tls=tls, client_id=f"bad-{name}")
    w.send(data)
    got = w.close_code()
    if code is not None:
        assert got == code
    assert w.closed()
    w.close()


def test_fragments_and_ping_pong(ch7):
    w = WsRaw(ch7.ws)
    assert w.handshake()[0].startswith("HTTP/1.1 101")
    connect = mqtt_connect(client_id="frag", username="test", password="hahaha")
    # CONNECT in three fragments with a ping between them (control frames may interleave)
    w.send(ws_frame(0x2, connect[:3], fin=False) + ws_frame(0x9, b"ping-1") +
           ws_frame(0x0, connect[3:10], fin=False) + ws_frame(0x0, connect[10:]))
    f = w.recv_frame()
    assert f == (True, 0xA, b"ping-1")  # the pong echoes the ping's payload
    p = w.recv_mqtt()
    assert p[0] == 2 and p[2][1] == 0
    # two MQTT packets in one WebSocket message, then one packet across two messages
    w.send_mqtt(mqtt_subscribe(1, [("frag/t", 1)]) + mqtt_publish("frag/t", b"one", qos=1, pid=7))
    kinds = sorted(w.recv_mqtt()[0] for _ in range(3))  # SUBACK, PUBACK, PUBLISH
    assert kinds == [3, 4, 9]
    pub = mqtt_publish("frag/t", b"two" * 1000)
    w.send(ws_frame(0x2, pub[:1000]) + ws_frame(0x2, pub[1000:]))
    p = w.recv_mqtt()
    assert parse_publish(p[1], p[2])[:2] == ("frag/t", b"two" * 1000)
    # an empty binary frame and a pong are ignored
    w.send(ws_frame(0x2, b"") + ws_frame(0xA, b"unsolicited") + ws_frame(0x9, b""))
    assert w.recv_frame() == (True, 0xA, b"")
    w.close()


def test_close_handshake(ch7):
    w = ws_open(ch7, client_id="closer")
    w.send(ws_frame(0x8, struct.pack(">H", 1000) + b"bye"))
    assert w.close_code() == 1000  # echoed
    assert w.closed()
    w.close()
    # a packet and the close in one read: the hub still closes at once (we keep the socket)
    w = ws_open(ch7, client_id="closer2")
    w.send(ws_frame(0x2, mqtt_packet(0xC0, b"")) + ws_frame(0x8, struct.pack(">H", 1001)))
    assert w.close_code(timeout=2) == 1001
    assert w.closed(timeout=2)
    w.close()
    # the hub closing (a refused login) sends a close frame after the CONNACK
    w = WsRaw(ch7.ws)
    assert w.handshake()[0].startswith("HTTP/1.1 101")
    w.send_mqtt(mqtt_connect(client_id="refused", username="test", password="wrong"))
    p = w.recv_mqtt()
    assert p[0] == 2 and p[2][1] == 4
    assert w.close_code() == 1000
    assert w.closed()
    w.close()


def test_qos1_flow_over_raw_wss(ch7):
    w = ws_open(ch7, tls=True, client_id="rawwss")
    w.send_mqtt(mqtt_subscribe(1, [("rw", 1)]))
    assert w.recv_mqtt()[0] == 9
    # 200 packets in 20 frames, each frame a batch: all come back, acknowledged
    for i in range(20):
        w.send_mqtt(b"".join(mqtt_publish("rw", b"%d" % (i * 10 + k), qos=1, pid=i * 10 + k + 1)
                             for k in range(10)))
    got, acks = [], 0
    while len(got) < 200 or acks < 200:
        t, fl, body = w.recv_mqtt()
        if t == 4:
            acks += 1
        elif t == 3:
            topic, payload, qos, _, _, pid = parse_publish(fl, body)
            got.append(int(payload))
            w.send_mqtt(mqtt_puback(pid))
    assert sorted(got) == list(range(200))
    w.close()


def test_stalled_upgrade_times_out(ch7, watcher):
    s = socket.create_connection(("127.0.0.1", ch7.ws))
    s.sendall(b"GET /mqtt HTTP/1.1\r\nHost: h\r\n")  # and nothing more
    t0 = time.monotonic()
    s.settimeout(8)
    assert s.recv(100) == b""
    assert time.monotonic() - t0 < 6
    s.close()


def test_ws_path_is_not_enforced(ch7):
    c = Paho(ch7.ws, "test", "hahaha", transport="websockets", path="/anything")
    assert c.connect() == 0
    c.close()


def test_keepalive_ping_over_ws(ch7):
    w = ws_open(ch7, client_id="pinger")
    w.send_mqtt(mqtt_packet(0xC0, b""))
    assert w.recv_mqtt()[0] == 13  # PINGRESP
    w.close()


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_slow_reader_gets_everything_in_order(ch7, tls):
    """More than the socket buffers hold: frames resume where the socket stopped, whole."""
    sub = ws_open(ch7, tls=tls, client_id="slow-sub")
    sub.send_mqtt(mqtt_subscribe(1, [("slow/ws", 0)]))
    assert sub.recv_mqtt()[0] == 9
    pub = ws_open(ch7, tls=tls, client_id="slow-pub")
    payloads = [bytes([i % 256]) * 30000 + b"%d" % i for i in range(150)]
    for p in payloads:
        pub.send_mqtt(mqtt_publish("slow/ws", p))
    time.sleep(1.0)  # the subscriber reads nothing meanwhile
    got = []
    for _ in payloads:
        t, fl, body = sub.recv_mqtt(10)
        got.append(parse_publish(fl, body)[1])
    assert got == payloads
    sub.close()
    pub.close()
