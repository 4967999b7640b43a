"""The HTTP layer of the master's API socket and metrics listener (the SDK's server,
baetyl/http_server.h; issue 18) against hostile and unusual clients: every bad request gets
its status and a closed connection, slow and surplus clients are cut off, and the server
keeps serving everyone else meanwhile."""
import select
import socket
import time

import pytest

from conftest import free_port, wait_for, wait_port
from master_harness import master  # noqa: F401


@pytest.fixture
def api(master):
    """A master with no services, its API on a unix socket and metrics on a tcp port."""
    port = free_port()
    m = master(conf_extra=f"metrics:\n  address: tcp://127.0.0.1:{port}\n")
    m.metrics_port = port
    m.start()
    wait_port(port)
    return m


def unix(m):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(m.sock)
    return s


def tcp(m):
    return socket.create_connection(("127.0.0.1", m.metrics_port), timeout=20)


def auth(m):
    return f"x-openedge-username: baetyl.cli\r\nx-openedge-password: {m.cli_token()}\r\n"


def read_to_end(s):
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d


def read_response(s, buf=b"", head_only=False):
    """(status, {header: value}, body, rest) of one response read from s."""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        assert d, f"closed in the head: {buf!r}"
        buf += d
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), lines[0]
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    n = 0 if head_only else int(headers.get("content-length", "0"))
    while len(buf) < n:
        d = s.recv(65536)
        assert d, "closed in the body"
        buf += d
    return int(lines[0].split()[1]), headers, buf[:n].decode(), buf[n:]


def closed_by_server(s, timeout=0.0):
    """True when the server has closed s (readable, and at its end)."""
    if not select.select([s], [], [], timeout)[0]:
        return False
    try:
        return s.recv(65536, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


def still_serving(m):
    assert m.request("GET", "/v1/system/inspect")[0] == 200
    with tcp(m) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_response(s)[0] == 200


def test_malformed_requests_get_their_status_and_a_close(api):
    m = api
    cases = [
        (b"garbage\r\n\r\n", 400, "bad request line"),
        (b"GET /v1/system/inspect\r\n\r\n", 400, "version missing"),
        (b"GET /v1/system/inspect HTTP/2.0\r\n\r\n", 505, "not supported"),
        (b"GET /v1/system/inspect HTTP/1.1\r\nBad Header\r\n\r\n", 400, "bad header line"),
        (b"GET /v1/system/%zz HTTP/1.1\r\n\r\n", 400, "percent-encoding"),
        (b"\x16\x03\x01\x02\x05\x01\x03\x01\xfc\x03\x03\r\n\r\n", 400, "bad request line"),
        (b"\x00" * 64 + b"\r\n\r\n", 400, "stray CR or NUL"),
        (b"PUT /v1/system/update HTTP/1.1\r\nContent-Length: 1\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n", 400, "both"),
        (b"PUT /v1/system/update HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "gzip"),
        (b"PUT /v1/system/update HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 400,
         "chunk size"),
        (b"PUT /v1/system/update HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 417, "Expect"),
    ]
    for data, status, why in cases:
        with unix(m) as s:
            s.sendall(data)
            st, headers, body, _ = read_response(s)
            assert (st, headers.get("connection")) == (status, "close"), (data, st, body)
            assert why in body and headers["content-type"].startswith("text/plain"), body
            assert closed_by_server(s, 5), data
    still_serving(m)


def test_oversized_heads_are_refused(api):
    m = api
    cases = [
        (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /v1/system/inspect HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET /v1/system/inspect HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(100))
         + b"\r\n", 431),
    ]
    for data, status in cases:
        for conn in (unix, tcp):  # tcp: the answer is not lost to a reset
            with conn(m) as s:
                s.sendall(data)
                st, _, body, _ = read_response(s)
                assert st == status, (conn.__name__, data[:40], st, body)
                assert closed_by_server(s, 5)
    still_serving(m)


def test_slow_client_is_cut_off_while_others_are_served(api):
    m = api
    s = unix(m)
    s.sendall(b"GET /v1/system/inspect HTTP/1.1\r\n")
    end = time.monotonic() + 30
    closed = False
    while time.monotonic() < end and not closed:
        try:
            s.sendall(b"X")  # one byte of a header now and then: the head never ends
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        closed = closed_by_server(s, 0.5)
        still_serving(m)
    assert closed, "a client dribbling its head was never cut off"
    s.close()
    # a body that stops coming, or dribbles in, for an account refused: cut off as well
    s = unix(m)
    s.sendall(b"PUT /v1/system/update HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    assert wait_for(lambda: closed_by_server(s, 0.2), 30, what="stalled body cut off")
    s.close()
    s = unix(m)
    s.sendall(b"PUT /v1/system/update HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{")
    closed = False
    for _ in range(60):  # at most 30 s, one byte each half second
        try:
            s.sendall(b" ")
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if closed_by_server(s, 0.5):
            closed = True
            break
    assert closed, "a refused body dribbling in was never cut off"
    s.close()
    still_serving(m)


def test_surplus_connections_are_closed_at_once(api):
    m = api
    held = [tcp(m) for _ in range(80)]  # the metrics listener takes 64
    try:
        over = wait_for(lambda: [s for s in held if closed_by_server(s)] if sum(
            closed_by_server(s) for s in held) >= 16 else None, 10, what="surplus closed")
        assert len(over) == 16, len(over)
        # the API socket is another server: unaffected
        assert m.request("GET", "/v1/system/inspect")[0] == 200
    finally:
        for s in held:
            s.close()
    wait_for(lambda: scrape_ok(m), 10, what="metrics served again")
    assert m.stop() == 0


def scrape_ok(m):
    try:
        with tcp(m) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            return read_response(s)[0] == 200
    except (AssertionError, OSError):
        return False


def test_bodies_chunked_expect_and_limits(api):
    m = api
    # Expect: 100-continue, then the body
    with unix(m) as s:
        s.sendall(b"PUT /v1/system/update HTTP/1.1\r\n" + auth(m).encode() +
                  b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        st, _, _, rest = read_response(s)
        assert st == 100
        s.sendall(b"{}")
        st, _, body, _ = read_response(s, rest)
        assert st == 400 and "path: required" in body
    # a chunked body over the limit: read and dropped, then 413
    with unix(m) as s:
        s.sendall(b"PUT /v1/system/update HTTP/1.1\r\n" + auth(m).encode() +
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(80):  # 5 MiB
            s.sendall(b"10000\r\n" + chunk + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        st, _, body, _ = read_response(s)
        assert st == 413 and "request body too large (max 4194304 bytes)" in body
    # a declared length far over the limit: refused unread, and the connection closed
    with unix(m) as s:
        s.sendall(b"PUT /v1/system/update HTTP/1.1\r\n" + auth(m).encode() +
                  b"Content-Length: 1000000000000\r\n\r\n")
        st, headers, body, _ = read_response(s)
        assert (st, headers["connection"]) == (413, "close") and "too large" in body
    # nesting as deep as the JSON parser allows: a clear 400, no crash
    deep = '{"a":' * 2000 + "1" + "}" * 2000
    st, body = m.request("PUT", "/v1/services/x/instances/x/report", deep)
    assert st == 400 and "too deeply nested" in body
    still_serving(m)
    assert m.stop() == 0
    assert "AddressSanitizer" not in m.read("master.out", "")


def test_keep_alive_pipelining_http10_and_head(api):
    m = api
    a = auth(m).encode()
    # two requests in one write: two answers, in order, on a connection kept open
    with unix(m) as s:
        s.sendall(b"GET /v1/ports/available HTTP/1.1\r\n" + a + b"\r\n"
                  b"GET /v1/nothing HTTP/1.1\r\n" + a + b"\r\n")
        st, h, body, rest = read_response(s)
        assert st == 200 and h["content-type"] == "application/json" and "port" in body
        st, h, body, rest = read_response(s, rest)
        assert (st, body, h["content-type"]) == (404, "404 page not found\n",
                                                  "text/plain; charset=utf-8")
        assert "connection" not in h and not closed_by_server(s, 0.2)
    # HTTP/1.0: closed after the answer, unless it asks to keep the connection
    with unix(m) as s:
        s.sendall(b"GET /v1/system/inspect HTTP/1.0\r\n" + a + b"\r\n")
        text = read_to_end(s)
        assert text.startswith(b"HTTP/1.1 200 ") and b"Connection: close\r\n" in text
    with unix(m) as s:
        for _ in range(2):
            s.sendall(b"GET /v1/ports/available HTTP/1.0\r\nConnection: keep-alive\r\n" + a +
                      b"\r\n")
            st, h, _, _ = read_response(s)
            assert (st, h["connection"]) == (200, "keep-alive")
    # HEAD on the metrics listener: the headers of a GET, no body
    with tcp(m) as s:
        s.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, _, rest = read_response(s, head_only=True)
        assert st == 200 and int(h["content-length"]) > 0 and rest == b""
        assert h["cache-control"] == "no-store" and h["content-type"].startswith("text/plain")
        s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        st, h, body, _ = read_response(s)
        assert (st, body, h["cache-control"]) == (405, "method not allowed\n", "no-store")
