"""The Node runtime's own HTTP/2 server (function-node/lib/http2_server.js, hpack.js) seen
from a raw HTTP/2 client on a socket: a reply held back by a small client window and resumed
by WINDOW_UPDATE, a request split into HEADERS + CONTINUATION with padded DATA, a failure
text longer than one frame sent in CONTINUATION frames, PING and SETTINGS acknowledged, a
protocol error or a bad header block answered with GOAWAY, and the calls of grpcio still served
afterwards."""
import json
import socket
import struct
import time

from runtime_harness import message_class
from test_function_grpc import PREFACE, frame, request_headers
from test_runtime_node import JS, runtime  # noqa: F401 (the fixture)

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0, 1, 3, 4, 6, 7, 8, 9
STATIC = {8: (":status", "200")}


def call_body(function, payload):
    m = message_class()(FunctionName=function, Payload=payload, Topic="t", QOS=1, ID=9)
    b = m.SerializeToString()
    return b"\x00" + len(b).to_bytes(4, "big") + b


def settings(**kv):
    keys = {"INITIAL_WINDOW_SIZE": 4, "MAX_FRAME_SIZE": 5}
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", keys[k], v) for k, v in kv.items()))


def hpack_fields(block):
    """The fields of a reply block: static indexed or literal, not Huffman (as the runtime
    writes them)."""
    names = {8: ":status", 31: "content-type"}
    out, i = [], 0

    def integer(prefix):
        nonlocal i
        top = (1 << prefix) - 1
        v = block[i] & top
        i += 1
        if v == top:
            m = 0
            while True:
                b = block[i]
                i += 1
                v += (b & 0x7f) << m
                m += 7
                if b < 0x80:
                    break
        return v

    def string():
        nonlocal i
        assert not block[i] & 0x80, "Huffman"
        n = integer(7)
        s = block[i:i + n].decode("latin1")
        i += n
        return s
    while i < len(block):
        if block[i] & 0x80:
            out.append(STATIC[integer(7)])
        else:
            assert block[i] & 0xf0 in (0x00, 0x10), hex(block[i])
            idx = integer(4)
            name = names[idx] if idx else string()
            out.append((name, string()))
    return out


class Conn:
    def __init__(self, port, extra=b""):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.s.sendall(PREFACE + extra)

    def send(self, data):
        self.s.sendall(data)

    def frames(self, until, timeout=5):
        """Frames read until until(frames) holds."""
        got, end = [], time.monotonic() + timeout
        while not until(got):
            while len(self.buf) >= 9 and len(self.buf) >= 9 + int.from_bytes(self.buf[:3], "big"):
                n = int.from_bytes(self.buf[:3], "big")
                sid = int.from_bytes(self.buf[5:9], "big") & 0x7fffffff
                got.append((self.buf[3], self.buf[4], sid, self.buf[9:9 + n]))
                self.buf = self.buf[9 + n:]
                if until(got):
                    return got
            left = end - time.monotonic()
            assert left > 0, f"timed out with {[(t, f, i, len(p)) for t, f, i, p in got]}"
            self.s.settimeout(left)
            b = self.s.recv(65536)
            if not b:
                return got
            self.buf += b
        return got

    def drain(self, wait):
        """The frames that arrive within wait seconds."""
        end = time.monotonic() + wait
        while time.monotonic() < end:
            self.s.settimeout(max(0.01, end - time.monotonic()))
            try:
                b = self.s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            self.buf += b
        return self.frames(lambda fs: len(self.buf) < 9 or
                           len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"))

    def close(self):
        self.s.close()


def stream_end(stream):
    return lambda fs: any(t == HEADERS and f & 1 and i == stream for t, f, i, _ in fs) or \
        any(t in (GOAWAY, RST_STREAM) for t, _, _, _ in fs)


def test_small_client_window_holds_the_reply_until_window_update(runtime):
    r = runtime([("p-big", "probe.big", JS)])
    c = Conn(r.port, settings(INITIAL_WINDOW_SIZE=100))
    c.send(frame(HEADERS, 4, 1, request_headers()) +
           frame(DATA, 1, 1, call_body("p-big", b'{"size": 50000}')))
    got = c.frames(lambda fs: sum(len(p) for t, _, i, p in fs if t == DATA and i == 1) >= 100)
    got += c.drain(0.3)
    assert sum(len(p) for t, _, i, p in got if t == DATA and i == 1) == 100
    assert not any(t == HEADERS and f & 1 for t, f, _, _ in got)  # no trailers yet
    c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1 << 20)) +
           frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 20)))
    got += c.frames(stream_end(1))
    data = b"".join(p for t, _, i, p in got if t == DATA and i == 1)
    assert all(len(p) <= 16384 for t, _, _, p in got if t == DATA)
    reply = message_class().FromString(data[5:])
    assert reply.Payload == b"x" * 50000 and reply.ID == 9
    trailers = [hpack_fields(p) for t, f, i, p in got if t == HEADERS and f & 1]
    assert trailers == [[("grpc-status", "0")]]
    c.close()


def test_continuation_padding_ping_and_settings(runtime):
    r = runtime()
    c = Conn(r.port, settings(MAX_FRAME_SIZE=20000))
    block = request_headers()
    body = call_body("sayhi", b'{"id": 3}')
    padded = bytes([7]) + body + b"\x00" * 7
    c.send(frame(PING, 0, 0, b"12345678") +
           frame(HEADERS, 0, 1, block[:10]) + frame(CONTINUATION, 0, 1, block[10:20]) +
           frame(CONTINUATION, 4, 1, block[20:]) + frame(DATA, 8 | 1, 1, padded))
    got = c.frames(stream_end(1))
    assert (PING, 1, 0, b"12345678") in got
    assert any(t == SETTINGS and f & 1 for t, f, _, _ in got)  # our ack of the client's
    data = b"".join(p for t, _, i, p in got if t == DATA and i == 1)
    out = json.loads(message_class().FromString(data[5:]).Payload)
    assert out["id"] == 3 and out["Say"] == "Hello Baetyl"
    heads = [hpack_fields(p) for t, f, i, p in got if t == HEADERS]
    assert heads[0] == [(":status", "200"), ("content-type", "application/grpc")]
    c.close()


def test_failure_text_longer_than_a_frame(runtime, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "long.js").write_text("exports.fail = (e, c, cb) => cb('y'.repeat(e.n));\n")
    r = runtime([("long", "long.fail", str(code))])
    c = Conn(r.port)
    c.send(frame(HEADERS, 4, 1, request_headers()) +
           frame(DATA, 1, 1, call_body("long", b'{"n": 40000}')))
    got = c.frames(lambda fs: any(t in (HEADERS, CONTINUATION) and f & 4 for t, f, _, _ in fs))
    parts = [(t, f, p) for t, f, i, p in got if t in (HEADERS, CONTINUATION) and i == 1]
    assert parts[0][0] == HEADERS and parts[0][1] & 1 and not parts[0][1] & 4
    assert [t for t, _, _ in parts[1:]] == [CONTINUATION] * (len(parts) - 1) and len(parts) >= 3
    fields = dict(hpack_fields(b"".join(p for _, _, p in parts)))
    assert fields["grpc-status"] == "2"
    assert fields["grpc-message"].endswith("y" * 30000), len(fields["grpc-message"])
    c.close()


def test_protocol_error_is_goaway_and_others_are_served(runtime):
    r = runtime()
    c = Conn(r.port)
    # a call on stream 5, then DATA on stream 7, which was never opened
    c.send(frame(HEADERS, 4, 5, request_headers()) +
           frame(DATA, 1, 5, call_body("sayhi", b"{}")) + frame(DATA, 1, 7, b"x"))
    got = c.frames(lambda fs: any(t == GOAWAY for t, _, _, _ in fs))
    goaway = [p for t, _, _, p in got if t == GOAWAY][0]
    assert struct.unpack(">II", goaway[:8]) == (5, 1)  # last stream 5, PROTOCOL_ERROR
    c.close()
    assert json.loads(r.call("sayhi", b'{"id":8}').Payload)["id"] == 8


def test_bad_header_blocks_are_compression_errors(runtime):
    r = runtime()
    # an index past both tables; a Huffman string with a bad padding; a size update too large
    for block in (b"\xff\x10", b"\x00\x81\x00\x01x", b"\x3f\xe1\x7f"):
        c = Conn(r.port)
        c.send(frame(HEADERS, 4, 1, block))
        got = c.frames(lambda fs: any(t == GOAWAY for t, _, _, _ in fs))
        goaway = [p for t, _, _, p in got if t == GOAWAY][0]
        assert struct.unpack(">II", goaway[:8]) == (0, 9), block  # COMPRESSION_ERROR
        c.close()
    assert json.loads(r.call("sayhi", b'{"id":2}').Payload)["id"] == 2
