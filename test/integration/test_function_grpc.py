"""The SDK's gRPC function client and server (sdk/src/function_*.c and grpc_*.c on
libnghttp2, driven through test/tools/function_tool) against Python grpcio, the library the
Python runtime uses: Python client -> C server and C client -> Python server, with TLS, size
limits, errors, deadlines, concurrency and a server stopped with calls in flight; a
@grpc/grpc-js client (the Node runtime's library); and hostile peers on both sides (raw
HTTP/2 frames and garbage).

The Python side builds FunctionMessage from proto/function.proto itself (no generated code:
the fields are read from the file), so a drift between the proto and SPEC §12 fails here."""
import os
import re
import signal
import subprocess
import threading
import time
from concurrent import futures

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from conftest import BUILD, SRC, free_port, wait_for

METHOD = "/baetyl.Function/Call"
MiB = 1 << 20

# ---- FunctionMessage from proto/function.proto ------------------------------------------

SPEC_FIELDS = [("uint64", "ID", 1), ("uint32", "QOS", 2), ("string", "Topic", 3),
               ("bytes", "Payload", 4), ("sint64", "Timestamp", 10),
               ("string", "FunctionName", 11), ("string", "FunctionInvokeID", 12)]
TYPES = {"uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
         "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
         "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
         "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
         "sint64": descriptor_pb2.FieldDescriptorProto.TYPE_SINT64}


def read_proto():
    with open(os.path.join(SRC, "proto", "function.proto")) as f:
        text = re.sub(r"//[^\n]*", "", f.read())
    package = re.search(r"\bpackage\s+([\w.]+)\s*;", text).group(1)
    service = re.search(r"\bservice\s+(\w+)\s*\{\s*rpc\s+(\w+)\s*\(\s*(\w+)\s*\)\s*returns\s*"
                        r"\(\s*(\w+)\s*\)", text)
    body = re.search(r"\bmessage\s+FunctionMessage\s*\{(.*?)\}", text, re.S).group(1)
    fields = [(t, n, int(i)) for t, n, i in re.findall(r"(\w+)\s+(\w+)\s*=\s*(\d+)\s*;", body)]
    return package, service.groups(), fields


def function_message_class():
    package, _, fields = read_proto()
    fdp = descriptor_pb2.FileDescriptorProto(name="function.proto", package=package,
                                             syntax="proto3")
    m = fdp.message_type.add(name="FunctionMessage")
    for typ, name, num in fields:
        m.field.add(name=name, number=num, type=TYPES[typ],
                    label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    desc = pool.FindMessageTypeByName(f"{package}.FunctionMessage")
    get = getattr(message_factory, "GetMessageClass", None)
    return get(desc) if get else message_factory.MessageFactory(pool).GetPrototype(desc)


FM = function_message_class()
NO_PROXY = [("grpc.enable_http_proxy", 0)]


def test_proto_is_spec():
    package, service, fields = read_proto()
    assert package == "baetyl"
    assert service == ("Function", "Call", "FunctionMessage", "FunctionMessage")
    assert f"/{package}.{service[0]}/{service[1]}" == METHOD
    assert fields == SPEC_FIELDS


def test_proto_adds_callbatch_after_call():
    """Baetyl 1.0's Call stays first and unchanged; CallBatch (issue 17) comes with its own
    messages, FunctionMessage reused inside them."""
    with open(os.path.join(SRC, "proto", "function.proto")) as f:
        text = re.sub(r"//[^\n]*", "", f.read())
    rpcs = re.findall(r"\brpc\s+(\w+)\s*\(\s*(\w+)\s*\)\s*returns\s*\(\s*(\w+)\s*\)", text)
    assert rpcs == [("Call", "FunctionMessage", "FunctionMessage"),
                    ("CallBatch", "FunctionMessages", "FunctionResults")]
    assert re.search(r"message\s+FunctionMessages\s*\{\s*repeated\s+FunctionMessage\s+Messages"
                     r"\s*=\s*1\s*;\s*\}", text)
    assert re.search(r"message\s+FunctionResults\s*\{\s*repeated\s+FunctionResult\s+Results"
                     r"\s*=\s*1\s*;\s*\}", text)


# ---- the C side: function_tool --------------------------------------------------------

def tool():
    path = os.path.join(BUILD, "tools", "function_tool")
    assert os.path.exists(path), f"{path} not built"
    return path


def assert_clean(stderr):
    assert "Sanitizer" not in stderr and "runtime error" not in stderr, stderr[-3000:]


class CServer:
    """function_tool serve on a free port; stop() checks a clean exit."""

    def __init__(self, procs, tmp_path, *args):
        self.procs = procs
        self.out = tmp_path / f"serve-{time.monotonic_ns()}.out"
        self.err = tmp_path / f"serve-{time.monotonic_ns()}.err"
        self.outf, self.errf = open(self.out, "w"), open(self.err, "w")
        self.proc = procs.start([tool(), "serve", "--address", "127.0.0.1:0", *args],
                                stdout=self.outf, stderr=self.errf)
        m = wait_for(lambda: self.proc.poll() is None and
                     re.search(r"port (\d+)", self.out.read_text()) or
                     (self.proc.poll() is not None and "exited"), what="function_tool serve")
        assert m != "exited", self.err.read_text()
        self.port = int(m.group(1))
        self.addr = f"127.0.0.1:{self.port}"

    def stop(self, sig=signal.SIGTERM):
        rc = self.procs.stop(self.proc, sig)
        self.outf.close()
        self.errf.close()
        err = self.err.read_text()
        assert_clean(err)
        assert rc == 0, err[-2000:]
        assert "stopped" in err
        return err


def c_call(addr, *args, timeout=60):
    """function_tool call: (returncode, reply dict or None, stderr)."""
    p = subprocess.run([tool(), "call", "--address", addr, *args], capture_output=True,
                       text=True, timeout=timeout)
    assert_clean(p.stderr)
    reply = None
    if p.returncode == 0 and p.stdout.startswith("{"):
        import json
        reply = json.loads(p.stdout)
    return p.returncode, reply, p.stderr


def b64(data):
    import base64
    return base64.b64encode(data).decode()


# ---- the Python side: grpcio ----------------------------------------------------------

class PyServer:
    """A grpcio server of baetyl.Function on a free port; fn(request, context) answers."""

    def __init__(self, fn, max_size=None, creds=None, workers=8):
        opts = [("grpc.so_reuseport", 0)]
        if max_size:
            opts += [("grpc.max_receive_message_length", max_size),
                     ("grpc.max_send_message_length", max_size)]
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=opts)
        handler = grpc.method_handlers_generic_handler("baetyl.Function", {
            "Call": grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=FM.FromString, response_serializer=FM.SerializeToString)})
        self.server.add_generic_rpc_handlers((handler,))
        if creds:
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = f"127.0.0.1:{self.port}"
        self.server.start()

    def stop(self):
        self.server.stop(None).wait()


@pytest.fixture
def py_servers():
    made = []

    def make(*a, **kw):
        s = PyServer(*a, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


def py_echo(prefix=b"py:"):
    def fn(req, context):
        r = FM()
        r.CopyFrom(req)
        r.Payload = prefix + req.Payload
        return r
    return fn


def py_stub(addr, creds=None, options=()):
    opts = NO_PROXY + list(options)
    ch = grpc.secure_channel(addr, creds, options=opts) if creds else \
        grpc.insecure_channel(addr, options=opts)
    return ch, ch.unary_unary(METHOD, request_serializer=FM.SerializeToString,
                              response_deserializer=FM.FromString)


def full_msg(payload):
    return FM(ID=2**64 - 1, QOS=1, Topic="t/中文", Payload=payload, Timestamp=-(2**62),
              FunctionName="sayhi", FunctionInvokeID="50f8f102-2b8c-4904-86df-0728811a5a4b")


# ---- Python client -> C server ----------------------------------------------------------

def test_python_client_to_c_server(procs, tmp_path):
    srv = CServer(procs, tmp_path, "--prefix", "c:")
    ch, call = py_stub(srv.addr)
    try:
        for payload in [b'{"id":1}', b"", bytes(range(256)) * 3, os.urandom(MiB)]:
            req = full_msg(payload)
            r = call(req, timeout=10)
            assert r.Payload == b"c:" + payload
            for f in ("ID", "QOS", "Topic", "Timestamp", "FunctionName", "FunctionInvokeID"):
                assert getattr(r, f) == getattr(req, f), f
        # An all-default message: every field absent on the wire.
        r = call(FM(), timeout=10)
        assert r == FM(Payload=b"c:")
    finally:
        ch.close()
    srv.stop()


def test_c_server_refusals(procs, tmp_path):
    srv = CServer(procs, tmp_path, "--max-size", str(MiB))
    ch, call = py_stub(srv.addr, options=[("grpc.max_send_message_length", 8 * MiB)])
    try:
        with pytest.raises(grpc.RpcError) as e:
            call(FM(Payload=b"x" * (MiB + 1)), timeout=10)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in e.value.details()

        other = ch.unary_unary("/baetyl.Function/Other", request_serializer=FM.SerializeToString,
                               response_deserializer=FM.FromString)
        with pytest.raises(grpc.RpcError) as e:
            other(FM(), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "/baetyl.Function/Other" in e.value.details()

        raw = ch.unary_unary(METHOD)  # bytes in, bytes out: a request that is no protobuf
        for garbage in [b"\x1a\x64x", b"\xff" * 11, b"\x0f", b"\x1a\x02\xff\xfe"]:
            with pytest.raises(grpc.RpcError) as e:
                raw(garbage, timeout=10)
            assert e.value.code() == grpc.StatusCode.INTERNAL
            assert "invalid FunctionMessage" in e.value.details()
        # Still serving after all that.
        assert call(FM(Payload=b"ok"), timeout=10).Payload == b"ok"
    finally:
        ch.close()
    srv.stop()

    srv = CServer(procs, tmp_path, "--fail", "[UserCodeInvoke] KeyError: 'x'")
    ch, call = py_stub(srv.addr)
    try:
        with pytest.raises(grpc.RpcError) as e:
            call(FM(Payload=b"{}"), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNKNOWN
        assert e.value.details() == "[UserCodeInvoke] KeyError: 'x'"
    finally:
        ch.close()
    srv.stop()


def test_python_clients_concurrent_to_c_server(procs, tmp_path):
    srv = CServer(procs, tmp_path, "--sleep", "50", "--workers", "8")
    ch, call = py_stub(srv.addr)
    results, errors = [], []

    def run(t):
        try:
            for i in range(5):
                p = f'{{"t":{t},"i":{i}}}'.encode()
                results.append(call(FM(ID=i, Payload=p), timeout=20).Payload == p)
        except grpc.RpcError as e:  # pragma: no cover - reported below
            errors.append(e)
    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    ch.close()
    assert not errors and len(results) == 40 and all(results)
    assert took < 1.6, took  # 40 x 50 ms in a row would take 2 s
    srv.stop()



NODE_CLIENT = r"""
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const [proto, addr] = process.argv.slice(2);
const def = loader.loadSync(proto, {keepCase: true, longs: String, bytes: Buffer});
const c = new (grpc.loadPackageDefinition(def).baetyl.Function)(addr,
    grpc.credentials.createInsecure());
const out = [];
const call = (m) => new Promise((ok) => c.Call(m, {deadline: Date.now() + 10000},
    (e, r) => ok(e ? `${e.code} ${e.details}` : r.Payload.toString())));
Promise.all([...Array(20).keys()].map((i) => call({ID: i, Payload: Buffer.from(`js${i}`)})))
  .then((rs) => { out.push(...rs); return call({Payload: Buffer.alloc(2 << 20)}); })
  .then((r) => { out.push(r); console.log(JSON.stringify(out)); process.exit(0); });
"""


def test_node_client_to_c_server(procs, tmp_path):
    """@grpc/grpc-js (the Node runtime's library) as the client: 20 calls at once on one
    connection, then one over the server's limit."""
    srv = CServer(procs, tmp_path, "--prefix", "c:", "--max-size", str(MiB))
    script = tmp_path / "client.js"
    script.write_text(NODE_CLIENT)
    env = dict(os.environ, NODE_PATH=os.path.join(SRC, "function-node", "node_modules"))
    p = subprocess.run(["node", str(script), os.path.join(SRC, "proto", "function.proto"),
                        srv.addr], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    import json
    out = json.loads(p.stdout)
    assert out[:20] == [f"c:js{i}" for i in range(20)]
    assert out[20].startswith("8 ") and "larger than max" in out[20]  # ResourceExhausted
    srv.stop()


# ---- C client -> Python server ------------------------------------------------------------

def test_c_client_to_python_server(py_servers, tmp_path):
    srv = py_servers(py_echo())
    rc, r, err = c_call(srv.addr, "--payload", '{"id":1}', "--id", str(2**64 - 1), "--qos", "1",
                        "--topic", "t/中文", "--timestamp", str(-(2**62)), "--name", "sayhi",
                        "--invoke-id", "abc")
    assert rc == 0, err
    assert r == {"ID": str(2**64 - 1), "QOS": 1, "Topic": "t/中文",
                 "Payload": b64(b'py:{"id":1}'), "Timestamp": -(2**62),
                 "FunctionName": "sayhi", "FunctionInvokeID": "abc"}
    rc, r, err = c_call(srv.addr)
    assert rc == 0, err
    assert r["Payload"] == b64(b"py:") and r["Topic"] == "" and r["ID"] == "0"

    big = tmp_path / "big.bin"
    data = os.urandom(MiB)
    big.write_bytes(data)
    rc, r, err = c_call(srv.addr, "--payload-file", str(big))
    assert rc == 0, err
    assert r["Payload"] == b64(b"py:" + data)


def test_c_client_python_errors(py_servers, tmp_path):
    def boom(req, context):
        raise ValueError("boom")
    srv = py_servers(boom)
    rc, _, err = c_call(srv.addr, "--payload", "x")
    assert rc == 1
    # The text Baetyl 1.0 users see in the error JSON (the seed's example).
    assert "code=2 rpc error: code = Unknown desc = Exception calling application: boom" in err

    def user(req, context):
        context.abort(grpc.StatusCode.UNKNOWN, "[UserCodeInvoke] division by zero")
    srv = py_servers(user)
    rc, _, err = c_call(srv.addr)
    assert rc == 1 and "desc = [UserCodeInvoke] division by zero" in err

    srv = py_servers(py_echo(), max_size=MiB)
    rc, _, err = c_call(srv.addr, "--payload-size", str(2 * MiB))
    assert rc == 1 and "code=8 rpc error: code = ResourceExhausted" in err
    # The C client's own default limit (4 MiB) applies before anything is sent.
    rc, _, err = c_call(srv.addr, "--payload-size", str(5 * MiB))
    assert rc == 1 and "code=8 " in err

    def slow(req, context):
        time.sleep(1.0)
        return req
    srv = py_servers(slow)
    t0 = time.monotonic()
    rc, _, err = c_call(srv.addr, "--timeout", "200")
    assert rc == 2 and "code=4 rpc error: code = DeadlineExceeded" in err
    assert time.monotonic() - t0 < 5

    rc, _, err = c_call(f"127.0.0.1:{free_port()}")
    assert rc == 2 and "code=14 rpc error: code = Unavailable" in err


def test_c_client_threads_to_python_server(py_servers):
    seen = set()
    lock = threading.Lock()

    def fn(req, context):
        with lock:
            seen.add(threading.get_ident())
        time.sleep(0.02)
        return req
    srv = py_servers(fn, workers=8)
    p = subprocess.run([tool(), "call", "--address", srv.addr, "--threads", "8", "--count", "10"],
                       capture_output=True, text=True, timeout=120)
    assert_clean(p.stderr)
    assert p.returncode == 0 and p.stdout.strip() == "ok=80 failed=0", p.stdout + p.stderr
    assert len(seen) > 1  # the calls overlapped on the server


# ---- TLS ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, plus
    an unrelated CA."""
    d = tmp_path_factory.mktemp("certs")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        run("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN=baetyl test {ca}")
    for name, ext in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                 "extendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (d / f"{name}.ext").write_text(ext)
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return {k: str(d / k) for k in ("ca.pem", "other-ca.pem", "server.pem", "server.key",
                                     "client.pem", "client.key")}


def test_tls(procs, tmp_path, certs, py_servers):
    srv = CServer(procs, tmp_path, "--cert", certs["server.pem"], "--key", certs["server.key"])
    rc, r, err = c_call(srv.addr, "--ca", certs["ca.pem"], "--payload", "secret")
    assert rc == 0, err
    assert r["Payload"] == b64(b"secret")
    rc, r, err = c_call(f"localhost:{srv.port}", "--ca", certs["ca.pem"],
                        "--server-name", "localhost")
    assert rc == 0, err
    # Plaintext to a TLS server, and TLS with a CA that did not sign the server: refused.
    rc, _, err = c_call(srv.addr, "--timeout", "3000")
    assert rc == 2 and "Unavailable" in err
    rc, _, err = c_call(srv.addr, "--ca", certs["other-ca.pem"], "--timeout", "3000")
    assert rc == 2 and "Unavailable" in err
    # A Python TLS client.
    with open(certs["ca.pem"], "rb") as f:
        ca = f.read()
    ch, call = py_stub(srv.addr, grpc.ssl_channel_credentials(root_certificates=ca))
    assert call(FM(Payload=b"py"), timeout=10).Payload == b"py"
    ch.close()
    srv.stop()

    # Mutual TLS: the C server requires a client certificate signed by the CA.
    srv = CServer(procs, tmp_path, "--cert", certs["server.pem"], "--key", certs["server.key"],
                  "--ca", certs["ca.pem"])
    rc, _, err = c_call(srv.addr, "--ca", certs["ca.pem"], "--timeout", "3000")
    assert rc != 0
    rc, r, err = c_call(srv.addr, "--ca", certs["ca.pem"], "--cert", certs["client.pem"],
                        "--key", certs["client.key"], "--payload", "mutual")
    assert rc == 0, err
    assert r["Payload"] == b64(b"mutual")
    with open(certs["client.pem"], "rb") as f, open(certs["client.key"], "rb") as k:
        creds = grpc.ssl_channel_credentials(root_certificates=ca, certificate_chain=f.read(),
                                             private_key=k.read())
    ch, call = py_stub(srv.addr, creds)
    assert call(FM(Payload=b"py-mutual"), timeout=10).Payload == b"py-mutual"
    ch.close()
    srv.stop()

    # The C client with TLS against a Python TLS server.
    with open(certs["server.pem"], "rb") as f, open(certs["server.key"], "rb") as k:
        screds = grpc.ssl_server_credentials([(k.read(), f.read())])
    psrv = py_servers(py_echo(), creds=screds)
    rc, r, err = c_call(psrv.addr, "--ca", certs["ca.pem"], "--payload", "to-python")
    assert rc == 0, err
    assert r["Payload"] == b64(b"py:to-python")


# ---- stopping the C server with calls in flight ------------------------------------------

def test_c_server_stop_with_calls_in_flight(procs, tmp_path):
    srv = CServer(procs, tmp_path, "--sleep", "700")
    ch, call = py_stub(srv.addr)
    pending = [call.future(FM(ID=i, Payload=b"%d" % i), timeout=20) for i in range(4)]
    time.sleep(0.3)  # the four handlers are running
    t0 = time.monotonic()
    srv.stop()  # graceful: returns once they have answered
    assert time.monotonic() - t0 >= 0.2
    assert [f.result().Payload for f in pending] == [b"0", b"1", b"2", b"3"]
    with pytest.raises(grpc.RpcError) as e:
        call(FM(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    ch.close()


def test_c_server_stop_cancels_after_grace(procs, tmp_path):
    srv = CServer(procs, tmp_path, "--sleep", "2500", "--grace", "200")
    ch, call = py_stub(srv.addr)
    fut = call.future(FM(Payload=b"x"), timeout=20)
    time.sleep(0.3)
    t0 = time.monotonic()
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    with pytest.raises(grpc.RpcError) as e:
        fut.result()
    # The client hears about it at the end of the grace, not when the handler returns.
    assert time.monotonic() - t0 < 1.5
    assert e.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    stopper.join()
    ch.close()


# ---- hostile peers -----------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(typ, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([typ, flags]) + \
        stream.to_bytes(4, "big") + payload


def hpack_int(v, prefix_bits, first=0):
    top = (1 << prefix_bits) - 1
    if v < top:
        return bytes([first | v])
    out, v = [first | top], v - top
    while v >= 128:
        out.append(v % 128 + 128)
        v //= 128
    return bytes(out + [v])


def hpack(headers):
    """Literal header fields without indexing, new names, no Huffman."""
    out = b""
    for name, value in headers:
        out += b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value
    return out


def request_headers(path=b"/baetyl.Function/Call", extra=()):
    return hpack([(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
                  (b":authority", b"x"), (b"content-type", b"application/grpc"),
                  (b"te", b"trailers"), *extra])


def raw_session(port, data, read_for=0.5):
    """Sends data on a new connection and reads until the server closes or read_for passes."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(data)
        s.settimeout(read_for)
        got = b""
        end = time.monotonic() + read_for
        while time.monotonic() < end:
            try:
                b = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            got += b
        return got
    finally:
        s.close()


def test_c_server_survives_hostile_peers(procs, tmp_path):
    import random
    srv = CServer(procs, tmp_path, "--max-size", str(MiB))
    settings = frame(4, 0, 0, b"")
    # not HTTP/2 at all, and frames that break the protocol: the connection is closed
    raw_session(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    raw_session(srv.port, PREFACE + settings + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01")
    raw_session(srv.port, PREFACE + settings + frame(0, 1, 1, b"data without headers"))
    # a message whose prefix announces 4 GiB, a compressed one, a cut one, a bad timeout
    for data, extra in ((b"\x00\xff\xff\xff\xff", ()), (b"\x01\x00\x00\x00\x01x", ()),
                        (b"\x00\x00\x00\x00\x09abc", ()),
                        (b"\x00\x00\x00\x00\x00", ((b"grpc-timeout", b"99999999999H"),))):
        raw_session(srv.port, PREFACE + settings + frame(1, 4, 1, request_headers(extra=extra)) +
                    frame(0, 1, 1, data))
    # streams over MAX_CONCURRENT_STREAMS, a header list of 60 KB, then random frames
    many = b"".join(frame(1, 4, 2 * i + 1, request_headers()) for i in range(300))
    raw_session(srv.port, PREFACE + settings + many)
    big = request_headers(extra=((b"x-big", b"v" * 60000),))
    raw_session(srv.port, PREFACE + settings + frame(1, 0, 1, big[:16000]) +
                b"".join(frame(9, 0, 1, big[i:i + 16000]) for i in range(16000, len(big), 16000)))
    rnd = random.Random(18)
    for _ in range(30):
        junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 400)))
        raw_session(srv.port, PREFACE + settings + junk, read_for=0.1)
    # still serving, and it stops cleanly (no sanitizer report, no leak)
    ch, call = py_stub(srv.addr)
    try:
        assert call(FM(Payload=b"still"), timeout=10).Payload == b"still"
    finally:
        ch.close()
    srv.stop()


class RawServer:
    """A TCP server answering each connection with fixed bytes (after reading what the client
    sends first), then closing it."""

    def __init__(self, reply):
        import socket
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)  # the preface, SETTINGS and the request
                    conn.sendall(self.reply)
                    time.sleep(0.2)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def test_c_client_survives_hostile_servers():
    settings = frame(4, 0, 0, b"")
    ok_headers = hpack([(b":status", b"200"), (b"content-type", b"application/grpc")])
    cases = [
        (b"", "Unavailable"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "Unavailable"),
        (settings + frame(1, 4, 1, ok_headers) + frame(0, 0, 1, b"\x00\xff\xff\xff\xff"),
         "ResourceExhausted"),
        (settings + frame(1, 4, 1, ok_headers) + frame(0, 0, 1, b"\x01\x00\x00\x00\x01x"),
         "Internal"),
        (settings + frame(1, 5, 1, hpack([(b":status", b"404")])), "Unimplemented"),
        (settings + frame(1, 5, 1, ok_headers + hpack([(b"grpc-status", b"3"),
                                                       (b"grpc-message", b"bad%20arg%")])),
         "code = InvalidArgument desc = bad arg%"),
        (settings + frame(1, 4, 1, ok_headers) + frame(0, 1, 1, b"\x00\x00\x00\x00\x02\x08"),
         "code = Internal"),
        (settings + b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + b"\x00" * 8, "Unavailable"),
    ]
    import random
    rnd = random.Random(17)
    cases += [(settings + bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 300))), "")
              for _ in range(10)]
    for reply, want in cases:
        srv = RawServer(reply)
        try:
            rc, _, err = c_call(srv.addr, "--timeout", "2000", timeout=20)
        finally:
            srv.close()
        assert rc != 0, (reply[:40], err)
        assert want in err, (reply[:40], err)
