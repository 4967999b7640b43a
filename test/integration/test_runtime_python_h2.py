"""baetyl-function-python's own HTTP/2 server (baetyl_runtime/h2grpc.py) against hostile and
odd peers: raw frames on a socket, then a real gRPC call on a new connection to show the
runtime still serves. Calls that block do not hold up the others on the same connection."""
import json
import os
import socket
import ssl
import struct
import time

import grpc
import hpack
import pytest

from runtime_harness import FUNCTIONS, Runtime, make_certs, message_class, tls_credentials

PY = os.path.join(FUNCTIONS, "python3")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7


@pytest.fixture
def rt(procs, tmp_path):
    r = Runtime(procs, "python", tmp_path / "rt",
                [("sayhi", "index.handler", PY), ("p-sleep", "probe.sleep", PY),
                 ("p-echo", "probe.echo", PY)],
                server_extra="  message:\n    length:\n      max: 1k\n")
    r.start()
    yield r
    assert r.stop() == 0, r.output()


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes((ftype, flags)) + \
        struct.pack(">I", sid) + payload


class Peer:
    """A raw HTTP/2 client: frames out, frames in."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()

    def send(self, data):
        self.s.sendall(data)

    def start(self):
        self.send(PREFACE + frame(SETTINGS, 0, 0))

    def headers(self, sid, path="/baetyl.Function/Call", end=False, extra=()):
        block = self.enc.encode([(":method", "POST"), (":scheme", "http"), (":path", path),
                                 (":authority", "x"), ("content-type", "application/grpc"),
                                 ("te", "trailers"), *extra])
        return frame(HEADERS, 0x4 | (1 if end else 0), sid, block)

    def message(self, sid, payload, end=True):
        body = b"\0" + struct.pack(">I", len(payload)) + payload
        return frame(DATA, 1 if end else 0, sid, body)

    def read_frame(self):
        """(type, flags, sid, payload), or None once the server closed the connection."""
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            try:
                data = self.s.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self.buf += data
        n = int.from_bytes(self.buf[:3], "big")
        f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big"), self.buf[9:9 + n])
        self.buf = self.buf[9 + n:]
        return f

    def frames_until_closed(self):
        out = []
        while (f := self.read_frame()) is not None:
            out.append(f)
        return out

    def status_of(self, sid):
        """The grpc-status and grpc-message the server answers on stream sid."""
        while (f := self.read_frame()) is not None:
            if f[0] == HEADERS and f[2] == sid:
                h = dict(self.dec.decode(f[3]))
                if "grpc-status" in h:
                    return int(h["grpc-status"]), h.get("grpc-message", "")
        raise AssertionError("connection closed without a status")

    def close(self):
        self.s.close()


def still_serves(rt):
    out = rt.call("sayhi", b'{"id":5}', timeout=5)
    assert json.loads(out.Payload)["id"] == 5


def goaway_code(frames):
    codes = [struct.unpack(">II", f[3][:8])[1] for f in frames if f[0] == GOAWAY]
    assert codes, frames
    return codes[-1]


def test_not_http2_is_closed(rt):
    p = Peer(rt.port)
    p.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert all(f[0] != HEADERS for f in p.frames_until_closed())
    p.close()
    still_serves(rt)


def connection_error(rt, data):
    """The GOAWAY code the runtime answers data with (after a valid preface)."""
    p = Peer(rt.port)
    p.start()
    p.send(data)
    code = goaway_code(p.frames_until_closed())
    p.close()
    return code


def test_connection_errors(rt):
    assert connection_error(rt, frame(HEADERS, 0x4, 1, b"\0" * 20000)) == 6  # FRAME_SIZE
    # a header block indexing past any table: COMPRESSION_ERROR
    assert connection_error(rt, frame(HEADERS, 0x5, 1, b"\xff\xff\xff\xff\x0f")) == 9
    for bad in (frame(HEADERS, 0x4, 2, b""),  # even: a server's id
                frame(SETTINGS, 0, 0, b"\0\0\0"),  # not a multiple of 6
                frame(PING, 0, 1, b"\0" * 8),  # PING on a stream
                frame(DATA, 1, 7, b"\0\0\0\0\0"),  # DATA on an idle stream
                frame(HEADERS, 0x0, 1, b"") + frame(PING, 0, 0, b"\0" * 8)):  # no CONTINUATION
        assert connection_error(rt, bad) == 1  # PROTOCOL_ERROR
    still_serves(rt)


def test_ping_is_answered(rt):
    p = Peer(rt.port)
    p.start()
    p.send(frame(PING, 0, 0, b"12345678"))
    while (f := p.read_frame()) is not None and f[0] != PING:
        pass
    assert f == (PING, 1, 0, b"12345678")
    p.close()


def test_raw_call_and_errors(rt):
    M = message_class()
    p = Peer(rt.port)
    p.start()
    p.send(p.headers(1) + p.message(1, M(FunctionName="sayhi", Payload=b'{"id":1}')
                                     .SerializeToString()))
    assert p.status_of(1) == (0, "")
    # No message, two messages, a message that is not a FunctionMessage, a compressed one,
    # an unknown method: each one its gRPC status, the connection goes on.
    p.send(p.headers(3, end=True))
    assert p.status_of(3)[0] == 12  # UNIMPLEMENTED
    p.send(p.headers(5) + p.message(5, b"", end=False) + p.message(5, b""))
    assert p.status_of(5)[0] == 12
    p.send(p.headers(7) + p.message(7, b"\xff\xff\xff"))
    assert p.status_of(7) == (13, "Exception deserializing request!")
    p.send(p.headers(9) + frame(DATA, 1, 9, b"\x01\0\0\0\0"))
    assert p.status_of(9)[0] == 12
    p.send(p.headers(11, path="/baetyl.Function/Other") + p.message(11, b""))
    assert p.status_of(11) == (12, "Method not found!")
    # A user error's text comes back percent-encoded where it is not printable ASCII.
    p.send(p.headers(13) + p.message(13, M(FunctionName="sayhi", Payload=b'{"err":"\xc3\xa9%"}')
                                     .SerializeToString()))
    code, text = p.status_of(13)
    assert code == 2 and text == "[UserCodeInvoke] TypeError: %C3%A9%25"
    p.close()
    still_serves(rt)


def test_request_over_the_limit_is_refused_early(rt):
    p = Peer(rt.port)
    p.start()
    # 1 KiB limit: the status comes before the request's end, then the stream is reset.
    p.send(p.headers(1) + frame(DATA, 0, 1, b"\0\0\0\x10\0" + b"a" * 2000))
    code, text = p.status_of(1)
    assert code == 8 and "larger than max" in text
    p.send(frame(DATA, 1, 1, b"b" * 100))  # the rest of it is dropped
    p.send(frame(PING, 0, 0, b"abcdefgh"))
    while (f := p.read_frame()) is not None and f[0] != PING:
        pass
    assert f is not None
    p.close()
    still_serves(rt)


def test_peer_reset_and_vanishing_peers(rt):
    M = message_class()
    slow = M(FunctionName="p-sleep", Payload=b'{"seconds": 0.5}').SerializeToString()
    p = Peer(rt.port)
    p.start()
    p.send(p.headers(1) + p.message(1, slow) + frame(RST_STREAM, 0, 1, b"\0\0\0\x08"))
    p.send(p.headers(3) + p.message(3, slow))
    p.close()  # gone with a call in flight
    for _ in range(20):  # and peers that connect and leave at once
        socket.create_connection(("127.0.0.1", rt.port)).close()
    time.sleep(0.7)
    still_serves(rt)


def test_blocking_call_does_not_hold_up_others_on_its_connection(rt):
    c = rt.connect()
    slow = c.future("p-sleep", b'{"seconds": 2}', timeout=10)
    time.sleep(0.2)
    for i in range(3):  # the same channel: one HTTP/2 connection
        assert json.loads(c.call("sayhi", json.dumps({"id": i}).encode()).Payload)["id"] == i
    assert not slow.done()
    assert json.loads(slow.result().Payload)["slept"] == 2


def test_reply_larger_than_the_peer_window(procs, tmp_path):
    """A reply bigger than the client's flow-control window waits for WINDOW_UPDATEs."""
    r = Runtime(procs, "python", tmp_path / "rt", [("p-big", "probe.big", PY)])
    r.start()
    c = r.connect()
    for size in (70000, 1 << 20, 3 << 20):
        assert len(c.call("p-big", json.dumps({"size": size}).encode(), timeout=30).Payload) == size
    assert r.stop() == 0


def test_many_streams_at_once(rt):
    c = rt.connect()
    futs = [c.future("p-echo", json.dumps({"n": i}).encode()) for i in range(300)]
    assert [json.loads(f.result().Payload)["n"] for f in futs] == list(range(300))


def test_stop_lets_calls_in_flight_finish(procs, tmp_path):
    r = Runtime(procs, "python", tmp_path / "rt", [("p-sleep", "probe.sleep", PY)])
    r.start()
    c = r.connect()
    slow = c.future("p-sleep", b'{"seconds": 1}', timeout=10)
    time.sleep(0.2)
    r.proc.send_signal(15)
    assert json.loads(slow.result().Payload)["slept"] == 1  # finished within the grace
    assert r.wait_exit() == 0
    with pytest.raises(grpc.RpcError):
        c.call("p-sleep", b"{}", timeout=2)
    c.close()


def test_calls_beyond_workers_wait_their_turn(procs, tmp_path):
    r = Runtime(procs, "python", tmp_path / "rt", [("p-sleep", "probe.sleep", PY)],
                server_extra="  workers:\n    max: 1\n")
    r.start()
    c = r.connect()
    t0 = time.monotonic()
    futs = [c.future("p-sleep", json.dumps({"seconds": 0.2, "n": i}).encode())
            for i in range(5)]
    assert sorted(json.loads(f.result().Payload)["n"] for f in futs) == list(range(5))
    assert time.monotonic() - t0 >= 1.0  # one at a time: workers.max 1
    assert r.stop() == 0


def test_tls_peers_that_are_not_tls_or_not_h2(procs, tmp_path):
    certs = make_certs(tmp_path)
    r = Runtime(procs, "python", tmp_path / "rt", [("sayhi", "index.handler", PY)],
                server_extra=f"  cert: {certs['server.pem']}\n  key: {certs['server.key']}\n")
    r.start()
    p = Peer(r.port)  # plaintext HTTP/2 to a TLS port
    p.start()
    assert p.frames_until_closed() == []
    p.close()
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    ctx.set_alpn_protocols(["http/1.1"])  # TLS, but not offering h2
    with socket.create_connection(("127.0.0.1", r.port), timeout=5) as s, \
            ctx.wrap_socket(s, server_hostname="localhost") as t:
        t.sendall(PREFACE + frame(SETTINGS, 0, 0))
        try:
            data = t.recv(100)
        except (ssl.SSLError, OSError):
            data = b""
        assert data == b""  # closed without a frame
    c = r.connect(credentials=tls_credentials(certs, client_cert=False))
    assert json.loads(c.call("sayhi", b'{"id":4}').Payload)["id"] == 4
    assert r.stop() == 0
