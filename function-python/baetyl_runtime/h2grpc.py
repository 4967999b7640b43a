"""A gRPC server of unary methods on HTTP/2 (RFC 7540, gRPC's wire format), written for
latency: grpcio's server hands each call between its threads several times (~0.3 ms a call
on a 2-core edge box), this one runs the handler on the thread that read the request.

Each connection has a leader thread reading frames; when a request is complete, the leader
makes an idle thread of the connection (or a new one) the next leader and runs the handler
itself, so a handler that blocks never stops the connection from being read. At most
`workers` handlers run at once: a call beyond waits in a queue, taken by the next thread
that finishes a call. Replies are written by the thread that ran the handler, under the
connection's write lock. TLS goes through an ssl.SSLObject on memory buffers, so reading
and writing threads never share an OpenSSL call. Headers are decoded by python3-hpack.

Limits against hostile peers: frames of at most 16 KiB, header blocks of at most 64 KiB,
MAX_STREAMS streams per connection (MAX_STREAMS_UNACKED before the peer has our
SETTINGS), a request body of at most message_max, request bytes held per connection and
queued for a worker at most 8 messages' worth each (else GOAWAY, or RESOURCE_EXHAUSTED),
MAX_CONNS connections, and 10 s for a connection's TLS handshake and preface."""
import collections
import socket
import ssl
import struct
import threading
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_FRAME = 16384  # the default SETTINGS_MAX_FRAME_SIZE, which we keep for what we read
MAX_HEADER_BLOCK = 65536
MAX_STREAMS = 100  # SETTINGS_MAX_CONCURRENT_STREAMS per connection
# Streams a peer may open before it has our SETTINGS (grpcio's client opens as many as it
# has calls): more are refused.
MAX_STREAMS_UNACKED = 1000
MAX_CONNS = 256
HANDSHAKE_TIMEOUT = 10.0
DEFAULT_WINDOW = 65535
MAX_WINDOW = (1 << 31) - 1
CONN_WINDOW = 1 << 20  # the connection's receive window we open at the start
ENHANCE_YOUR_CALM = 11

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
FRAME_SIZE_ERROR, REFUSED_STREAM, COMPRESSION_ERROR = 6, 7, 9

# gRPC status codes used here (the numbers are gRPC's).
OK, UNKNOWN, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 0, 2, 8, 12, 13

_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")


class Status(Exception):
    """A call's failure: a gRPC status code and its text."""

    def __init__(self, code, text):
        super().__init__(text)
        self.code = code
        self.text = text


class _ConnError(Exception):
    """A connection error (RFC 7540 §5.4.1): GOAWAY with this code, then close."""

    def __init__(self, code, why):
        super().__init__(why)
        self.code = code


def _frame(ftype, flags, sid, payload=b""):
    return _U32.pack(len(payload))[1:] + bytes((ftype, flags)) + _U32.pack(sid) + payload


def _hint(value, prefix_bits, first):
    """HPACK integer (RFC 7541 §5.1) with the high bits of its first byte set to first."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes((first | value,))
    out = bytearray((first | top,))
    value -= top
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name, value):
    """A header field never indexed nor Huffman coded: no encoder state to keep."""
    return b"\x00" + _hint(len(name), 7, 0) + name + _hint(len(value), 7, 0) + value


_RESPONSE_HEADERS = b"\x88" + _literal(b"content-type", b"application/grpc")  # :status 200
_TRAILERS_OK = _literal(b"grpc-status", b"0")


def _percent(text):
    """grpc-message encoding: UTF-8, percent-encoded outside printable ASCII and '%'."""
    return b"".join(bytes((c,)) if 0x20 <= c <= 0x7E and c != 0x25 else b"%%%02X" % c
                    for c in text.encode("utf-8", "replace"))


def _status_block(code, text):
    block = _literal(b"grpc-status", str(code).encode())
    if text:
        block += _literal(b"grpc-message", _percent(text))
    return block


class _Stream:
    __slots__ = ("sid", "path", "body", "window", "done", "dispatched", "header_frags",
                 "ends", "handler", "msg")

    def __init__(self, sid, window):
        self.sid = sid
        self.path = ""
        self.body = bytearray()
        self.window = window  # what we may still send on it
        self.done = False  # the reply is sent (or the stream was reset)
        self.dispatched = False  # the request is complete (its body no longer buffered)
        self.header_frags = None  # a header block waiting for its CONTINUATION frames
        self.ends = False  # the HEADERS frame carried END_STREAM
        self.handler = None
        self.msg = b""  # the request message, once complete


class Server:
    """Serves handlers {path: fn(body bytes) -> reply bytes, or raises Status} on address
    ("host:port"); tls is an ssl.SSLContext or None. workers bounds the handlers running at
    once (more wait), concurrent (None: no bound) the calls in flight (more are refused
    with RESOURCE_EXHAUSTED, as grpcio's maximum_concurrent_rpcs)."""

    def __init__(self, address, handlers, message_max, workers, concurrent=None, tls=None):
        self.handlers = handlers
        self.message_max = message_max
        self.workers = workers
        self.running = 0  # handlers running
        self.queue = collections.deque()  # (conn, stream) waiting for a worker
        self.queued_bytes = 0
        self.concurrent = concurrent
        self.tls = tls
        self.lock = threading.Lock()
        self.active = 0  # calls in flight, all connections
        self.idle = threading.Condition(self.lock)
        self.conns = set()
        self.stopping = False
        self.socks = _listen(address)
        self.accepters = []

    def start(self):
        for s in self.socks:
            t = threading.Thread(target=self._accept, args=(s,), daemon=True)
            t.start()
            self.accepters.append(t)

    def _accept(self, ls):
        while True:
            try:
                sock, _ = ls.accept()
            except OSError:
                if self.stopping:
                    return
                time.sleep(0.1)  # out of file descriptors, say: later
                continue
            with self.lock:
                if self.stopping or len(self.conns) >= MAX_CONNS:
                    sock.close()
                    continue
                conn = _Conn(self, sock)
                self.conns.add(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def run_or_queue(self, conn, st):
        """True: the caller runs st now (a worker is free); else st waits in the queue, or
        is refused when the queue holds more than 8 messages' worth of bytes."""
        with self.lock:
            if self.running < self.workers:
                self.running += 1
                return True
            if self.queued_bytes + len(st.msg) <= 8 * self.message_max:
                self.queue.append((conn, st))
                self.queued_bytes += len(st.msg)
                return False
        conn.reply_and_end(st, RESOURCE_EXHAUSTED, "too many calls waiting for a worker")
        return False

    def next_job(self):
        """The next call waiting for a worker, or None (the worker is released)."""
        with self.lock:
            if self.queue:
                conn, st = self.queue.popleft()
                self.queued_bytes -= len(st.msg)
                return conn, st
            self.running -= 1
            return None

    def call_started(self):
        with self.lock:
            if self.concurrent is not None and self.active >= self.concurrent:
                return False
            self.active += 1
            return True

    def call_ended(self):
        with self.lock:
            self.active -= 1
            if self.active == 0:
                self.idle.notify_all()

    def forget(self, conn):
        with self.lock:
            self.conns.discard(conn)

    def stop(self, grace):
        """Stops accepting, tells every peer (GOAWAY), gives calls in flight grace seconds,
        then closes every connection."""
        self.stopping = True
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.goaway(NO_ERROR)
        with self.lock:
            self.idle.wait_for(lambda: self.active == 0, grace)
            conns = list(self.conns)
        for c in conns:
            c.close()


def _listen(address):
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"not host:port: {address}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    infos = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    socks, err = [], None
    for family, stype, proto, _, addr in infos:
        s = socket.socket(family, stype, proto)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(addr)
            s.listen(128)
        except OSError as e:
            s.close()
            err = e
            continue
        socks.append(s)
    if not socks:
        raise OSError(err.errno if err else 0, err.strerror if err else "no address")
    return socks


class _Conn:
    def __init__(self, server, sock):
        self.srv = server
        self.sock = sock
        self.ssl = None
        self.inbuf = bytearray()
        self.decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_BLOCK)
        self.path_cache = {}
        self.streams = {}
        self.last_sid = 0
        self.lock = threading.Lock()  # windows, streams, leader state
        self.window_cv = threading.Condition(self.lock)
        self.lead_cv = threading.Condition(self.lock)
        self.wlock = threading.Lock()  # one writer at a time (and TLS encryption)
        self.ssl_lock = threading.Lock()
        self.send_window = DEFAULT_WINDOW
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = MAX_FRAME
        self.recv_credit = 0  # bytes read and not yet given back to the peer's window
        self.buffered = 0  # request bytes held in unfinished bodies
        self.leader = False
        self.followers = 0
        self.closed = False
        self.going_away = False
        self.settings_acked = False

    # ---- I/O --------------------------------------------------------------------------

    def _recv(self):
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            if self.ssl is None:
                return data
            with self.ssl_lock:
                self.ssl_in.write(data)
                out = bytearray()
                try:
                    while True:
                        chunk = self.ssl.read(65536)
                        if not chunk:
                            raise EOFError  # close_notify
                        out += chunk
                except ssl.SSLWantReadError:
                    pass
                pending = self.ssl_out.pending
            if pending:
                self.send(b"")
            if out:
                return bytes(out)

    def send(self, data):
        with self.wlock:
            if self.closed:
                raise OSError("connection closed")
            if self.ssl is not None:
                with self.ssl_lock:
                    if data:
                        self.ssl.write(data)
                    data = self.ssl_out.read()
            if data:
                self.sock.sendall(data)

    def _handshake(self):
        self.ssl_in, self.ssl_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.ssl = self.srv.tls.wrap_bio(self.ssl_in, self.ssl_out, server_side=True)
        while True:
            try:
                self.ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                if self.ssl_out.pending:
                    self.sock.sendall(self.ssl_out.read())
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError
                self.ssl_in.write(data)
        if self.ssl_out.pending:
            self.sock.sendall(self.ssl_out.read())
        if self.ssl.selected_alpn_protocol() != "h2":
            raise EOFError  # gRPC needs HTTP/2; a peer without ALPN h2 is not one

    def serve(self):
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.settimeout(HANDSHAKE_TIMEOUT)
            if self.srv.tls is not None:
                self._handshake()
            settings = _SETTING.pack(3, MAX_STREAMS) + _SETTING.pack(4, MAX_WINDOW) + \
                _SETTING.pack(6, MAX_HEADER_BLOCK)
            self.send(_frame(SETTINGS, 0, 0, settings) +
                      _frame(WINDOW_UPDATE, 0, 0, _U32.pack(CONN_WINDOW - DEFAULT_WINDOW)))
            while len(self.inbuf) < len(PREFACE):
                self.inbuf += self._recv()
            if bytes(self.inbuf[:len(PREFACE)]) != PREFACE:
                raise EOFError
            del self.inbuf[:len(PREFACE)]
            self.sock.settimeout(None)
        except (OSError, EOFError, ssl.SSLError, ValueError):
            self.close()
            return
        self._worker(first=True)

    # ---- leader / followers ---------------------------------------------------------

    def _worker(self, first=False):
        """Leads (reads) until a request is complete, hands the lead on, runs the call,
        then waits to lead again."""
        while True:
            with self.lock:
                if not first:
                    self.followers += 1
                    self.lead_cv.wait_for(lambda: not self.leader or self.closed)
                    self.followers -= 1
                first = False
                if self.closed:
                    return
                self.leader = True
            try:
                stream = self._read_request()
            except _ConnError as e:
                self.goaway(e.code)
                stream = None
            except (OSError, EOFError, ssl.SSLError):
                stream = None
            except Exception:  # a bug here must cost this connection only, not the thread
                self.goaway(INTERNAL_ERROR)
                stream = None
            if stream is None:
                self.close()
                return
            if not self._admit(stream) or not self.srv.run_or_queue(self, stream):
                first = True  # answered at once, or queued: this thread reads on
                continue
            with self.lock:
                self.leader = False
                spawn = not self.followers
                if not spawn:
                    self.lead_cv.notify()
            if spawn:
                threading.Thread(target=self._worker, daemon=True).start()
            job = (self, stream)
            while job is not None:  # then the calls that waited for a worker, if any
                job[0].run(job[1])
                job = self.srv.next_job()

    def _admit(self, st):
        """Checks a complete request: False when it is answered already (an error)."""
        st.handler = self.srv.handlers.get(st.path)
        if st.handler is None:
            self._reply(st, UNIMPLEMENTED, "Method not found!")
            return False
        if not self.srv.call_started():
            self._reply(st, RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!")
            return False
        body, st.body = st.body, None
        error = None
        if len(body) < 5 or _U32.unpack_from(body, 1)[0] != len(body) - 5:
            error = f'"{st.path}" requires exactly one request message.'
        elif body[0] != 0:
            error = "compressed messages are not supported"
        if error is not None:
            self.reply_and_end(st, UNIMPLEMENTED, error)
            return False
        st.msg = bytes(body[5:])
        return True

    def reply_and_end(self, st, code, text):
        """Answers an admitted call with an error (it ends there)."""
        try:
            self._reply(st, code, text)
        finally:
            self.srv.call_ended()

    def run(self, st):
        """Runs an admitted call's handler and answers."""
        try:
            if self.closed or st.done:
                return  # the peer is gone, or reset the stream while the call waited
            try:
                reply = st.handler(st.msg)
            except Status as s:
                return self._reply(st, s.code, s.text)
            except Exception as e:  # a bug of the runtime: the call fails, not the server
                return self._reply(st, UNKNOWN, f"Exception calling application: {e}")
            if len(reply) > self.srv.message_max:
                return self._reply(st, RESOURCE_EXHAUSTED, "Sent message larger than max "
                                   f"({len(reply)} vs. {self.srv.message_max})")
            self._reply(st, OK, "", reply)
        finally:
            self.srv.call_ended()

    # ---- reading ----------------------------------------------------------------------

    def _read_request(self):
        """Handles frames until a request is complete: its stream; None when the peer has
        gone away and no call is left."""
        while True:
            buf = self.inbuf
            while len(buf) >= 9:
                length = (buf[0] << 16) | (buf[1] << 8) | buf[2]
                if length > MAX_FRAME:
                    raise _ConnError(FRAME_SIZE_ERROR, "frame too large")
                if len(buf) < 9 + length:
                    break
                ftype, flags = buf[3], buf[4]
                sid = _U32.unpack_from(buf, 5)[0] & 0x7FFFFFFF
                payload = bytes(buf[9:9 + length])
                del buf[:9 + length]
                st = self._frame(ftype, flags, sid, payload)
                if st is not None:
                    return st
            if self.going_away and not self.streams:
                return None
            buf += self._recv()

    def _frame(self, ftype, flags, sid, p):
        pending = self._pending_headers()
        if pending is not None and (ftype != CONTINUATION or sid != pending.sid):
            raise _ConnError(PROTOCOL_ERROR, "expected CONTINUATION")
        if ftype == DATA:
            return self._data(flags, sid, p)
        if ftype == HEADERS:
            return self._headers(flags, sid, p)
        if ftype == CONTINUATION:
            if pending is None:
                raise _ConnError(PROTOCOL_ERROR, "unexpected CONTINUATION")
            pending.header_frags += p
            if len(pending.header_frags) > MAX_HEADER_BLOCK:
                raise _ConnError(PROTOCOL_ERROR, "header block too large")
            if flags & END_HEADERS:
                return self._headers_done(pending, pending.header_frags)
            return None
        if ftype == SETTINGS:
            return self._settings(flags, sid, p)
        if ftype == PING:
            if sid or len(p) != 8:
                raise _ConnError(PROTOCOL_ERROR, "bad PING")
            if not flags & ACK:
                self.send(_frame(PING, ACK, 0, p))
            return None
        if ftype == WINDOW_UPDATE:
            return self._window_update(sid, p)
        if ftype == RST_STREAM:
            if not sid or len(p) != 4:
                raise _ConnError(PROTOCOL_ERROR, "bad RST_STREAM")
            with self.lock:
                st = self.streams.pop(sid, None)
                if st is not None:
                    st.done = True
                    if not st.dispatched:
                        self.buffered -= len(st.body)
                    self.window_cv.notify_all()
            return None
        if ftype == GOAWAY:
            self.going_away = True
            return None
        if ftype == PUSH_PROMISE:
            raise _ConnError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        return None  # PRIORITY and unknown frame types are ignored (RFC 7540 §4.1, §5.3)

    def _pending_headers(self):
        st = self.streams.get(self.last_sid)
        return st if st is not None and st.header_frags is not None else None

    def _strip(self, flags, p):
        if flags & PADDED:
            if not p or p[0] >= len(p):
                raise _ConnError(PROTOCOL_ERROR, "bad padding")
            p = p[1:len(p) - p[0]]
        return p

    def _headers(self, flags, sid, p):
        p = self._strip(flags, p)
        if flags & PRIO:
            p = p[5:]
        st = self.streams.get(sid)
        if st is not None:  # trailers from the client: the request's end
            if not flags & END_STREAM or not flags & END_HEADERS or st.dispatched:
                raise _ConnError(PROTOCOL_ERROR, "headers in the middle of a request")
            self._decode(p)
            return self._ended(st)
        if sid % 2 == 0 or sid <= self.last_sid:
            raise _ConnError(PROTOCOL_ERROR, "bad stream id")
        self.last_sid = sid
        st = _Stream(sid, self.peer_initial_window)
        st.ends = bool(flags & END_STREAM)
        with self.lock:
            self.streams[sid] = st
        if flags & END_HEADERS:
            return self._headers_done(st, p)
        st.header_frags = p
        return None

    def _decode(self, block):
        try:
            return self.decoder.decode(block, raw=True)
        except hpack.HPACKError:
            raise _ConnError(COMPRESSION_ERROR, "bad header block") from None

    def _table_state(self):
        t = self.decoder.header_table
        return (t.dynamic_entries[0] if t.dynamic_entries else None, len(t.dynamic_entries),
                t.maxsize)

    def _path_of(self, block):
        """The :path of a header block. A client sends the same block call after call
        (nghttp2 codes :path as a literal, Huffman-coded: ~30 us to decode in Python): a
        block that left the HPACK table as it was is remembered with that table."""
        state = self._table_state()
        hit = self.path_cache.get(block)
        if hit is not None and hit[0] == state:
            return hit[1]
        path = ""
        for name, value in self._decode(block):  # always: the HPACK table must follow
            if name == b":path":
                path = value.decode("utf-8", "replace")
        if self._table_state() == state:
            if len(self.path_cache) >= 16:
                self.path_cache.clear()
            self.path_cache[block] = (state, path)
        return path

    def _headers_done(self, st, block):
        st.header_frags = None
        st.path = self._path_of(bytes(block))
        limit = MAX_STREAMS if self.settings_acked else MAX_STREAMS_UNACKED
        if len(self.streams) > limit or self.going_away:
            with self.lock:
                del self.streams[st.sid]
            self.send(_frame(RST_STREAM, 0, st.sid, _U32.pack(REFUSED_STREAM)))
            return None
        return self._ended(st) if st.ends else None

    def _data(self, flags, sid, p):
        n = len(p)
        self._give_back(n)
        p = self._strip(flags, p)
        st = self.streams.get(sid)
        if st is None or st.done or st.dispatched:
            if sid > self.last_sid or sid == 0:
                raise _ConnError(PROTOCOL_ERROR, "DATA on an idle stream")
            return None  # a stream reset or answered: its data is dropped
        st.body += p
        self.buffered += len(p)
        if len(st.body) > self.srv.message_max + 5:
            self.buffered -= len(st.body)
            size = len(st.body) - 5
            st.dispatched = True
            self._reply(st, RESOURCE_EXHAUSTED, "Received message larger than max "
                        f"({size} vs. {self.srv.message_max})")
            self.send(_frame(RST_STREAM, 0, sid, _U32.pack(NO_ERROR)))
            return None
        if self.buffered > 8 * self.srv.message_max:
            raise _ConnError(ENHANCE_YOUR_CALM, "too much request data waiting")
        if flags & END_STREAM:
            return self._ended(st)
        return None

    def _ended(self, st):
        st.dispatched = True
        self.buffered -= len(st.body)
        return st

    def _give_back(self, n):
        """Reopens the peer's connection window for the n bytes read (in steps of 16 KiB
        or more); the bodies held are bounded by _data, not by the window."""
        self.recv_credit += n
        if self.recv_credit >= 16384:
            credit, self.recv_credit = self.recv_credit, 0
            self.send(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(credit)))

    def _settings(self, flags, sid, p):
        if sid or len(p) % 6 or (flags & ACK and p):
            raise _ConnError(PROTOCOL_ERROR, "bad SETTINGS")
        if flags & ACK:
            self.settings_acked = True
            return None
        with self.lock:
            for i in range(0, len(p), 6):
                key, value = _SETTING.unpack_from(p, i)
                if key == 4:
                    if value > MAX_WINDOW:
                        raise _ConnError(FLOW_CONTROL_ERROR, "bad initial window")
                    delta = value - self.peer_initial_window
                    self.peer_initial_window = value
                    for st in self.streams.values():
                        st.window += delta
                elif key == 5:
                    if not MAX_FRAME <= value <= (1 << 24) - 1:
                        raise _ConnError(PROTOCOL_ERROR, "bad max frame size")
                    self.peer_max_frame = value
            self.window_cv.notify_all()
        self.send(_frame(SETTINGS, ACK, 0))
        return None

    def _window_update(self, sid, p):
        if len(p) != 4:
            raise _ConnError(FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
        inc = _U32.unpack(p)[0] & 0x7FFFFFFF
        with self.lock:
            if sid == 0:
                self.send_window += inc
                if self.send_window > MAX_WINDOW:
                    raise _ConnError(FLOW_CONTROL_ERROR, "window too large")
            elif sid in self.streams:
                self.streams[sid].window += inc
            self.window_cv.notify_all()
        return None

    # ---- writing ----------------------------------------------------------------------

    def _reply(self, st, code, text, payload=None):
        try:
            if st.done:
                return  # reset by the peer: nothing to answer
            if code != OK:  # Trailers-Only
                block = _RESPONSE_HEADERS + _status_block(code, text)
                self._forget(st)
                self.send(_frame(HEADERS, END_HEADERS | END_STREAM, st.sid, block))
                return
            # One write for the whole reply when the peer's windows allow (the usual case):
            # each write costs a wake-up of the peer.
            out = [_frame(HEADERS, END_HEADERS, st.sid, _RESPONSE_HEADERS)]
            data = memoryview(b"\x00" + _U32.pack(len(payload)) + payload)
            while data:
                with self.lock:
                    ready = self.send_window > 0 and st.window > 0
                if not ready:
                    self.send(b"".join(out))
                    out = []
                with self.lock:
                    self.window_cv.wait_for(lambda: self.closed or st.done or (
                        self.send_window > 0 and st.window > 0))
                    if self.closed or st.done:
                        return
                    n = min(len(data), self.send_window, st.window, self.peer_max_frame)
                    self.send_window -= n
                    st.window -= n
                out.append(_frame(DATA, 0, st.sid, bytes(data[:n])))
                data = data[n:]
            out.append(_frame(HEADERS, END_HEADERS | END_STREAM, st.sid, _TRAILERS_OK))
            self._forget(st)
            self.send(b"".join(out))
        except (OSError, ssl.SSLError):
            self.close()
        finally:
            self._forget(st)

    def _forget(self, st):
        """The stream no longer counts against MAX_STREAMS: done before its END_STREAM goes
        out, since the peer may open a new stream the moment it reads it."""
        with self.lock:
            st.done = True
            if self.streams.get(st.sid) is st:
                del self.streams[st.sid]

    def goaway(self, code):
        try:
            self.send(_frame(GOAWAY, 0, 0, _U32.pack(self.last_sid) + _U32.pack(code)))
        except (OSError, ssl.SSLError):
            pass
        self.going_away = True

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.window_cv.notify_all()
            self.lead_cv.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self.wlock:
            self.sock.close()
        self.srv.forget(self)
