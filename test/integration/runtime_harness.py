"""Shared by the runtime tests (test_runtime_*.py): a gRPC client of baetyl.Function/Call
built from proto/function.proto by protoc (not by the runtimes' own .proto reader, so the two
check each other), runtime processes in temp work dirs (`Runtime` for python/node, `Rt` and
its fixture `rt` for any of the three), and JSON compared field by field, in order."""
import json
import os
import signal
import socket
import subprocess
import tempfile

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from conftest import SRC, binary, free_port, wait_for, wait_port

PROTO = os.path.join(SRC, "proto", "function.proto")
FUNCTIONS = os.path.join(SRC, "test", "integration", "functions")
RUNTIMES = {
    "python": os.path.join(SRC, "function-python", "bin", "baetyl-function-python"),
    "node": os.path.join(SRC, "function-node", "bin", "baetyl-function-node"),
}
CALL = "/baetyl.Function/Call"
INVOKE_ID = "50f8f102-2b8c-4904-86df-0728811a5a4b"

_message_class = None


def message_class():
    """The FunctionMessage class, compiled once by protoc-c from proto/function.proto."""
    global _message_class
    if _message_class is None:
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "fn.pb")
            subprocess.run(["protoc-c", "--proto_path", os.path.dirname(PROTO),
                            f"--descriptor_set_out={out}", PROTO], check=True)
            fds = descriptor_pb2.FileDescriptorSet()
            with open(out, "rb") as f:
                fds.ParseFromString(f.read())
        pool = descriptor_pool.DescriptorPool()
        for fdp in fds.file:
            pool.Add(fdp)
        desc = pool.FindMessageTypeByName("baetyl.FunctionMessage")
        get = getattr(message_factory, "GetMessageClass", None)
        _message_class = get(desc) if get else message_factory.MessageFactory(pool).GetPrototype(desc)
    return _message_class


def protoc_descriptor():
    """protoc's FileDescriptorProto of proto/function.proto."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "fn.pb")
        subprocess.run(["protoc-c", "--proto_path", os.path.dirname(PROTO),
                        f"--descriptor_set_out={out}", PROTO], check=True)
        fds = descriptor_pb2.FileDescriptorSet()
        with open(out, "rb") as f:
            fds.ParseFromString(f.read())
    return fds.file[0]


def make_certs(d):
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made
    with the openssl command in directory d. Returns {name: path}."""
    d = str(d)
    p = {n: os.path.join(d, n) for n in ("ca.key", "ca.pem", "server.key", "server.csr",
                                         "server.pem", "client.key", "client.csr",
                                         "client.pem", "ext.cnf")}

    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", p["ca.key"], "-out", p["ca.pem"])
    with open(p["ext.cnf"], "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
            "-keyout", p[f"{who}.key"], "-out", p[f"{who}.csr"])
        ssl("x509", "-req", "-in", p[f"{who}.csr"], "-CA", p["ca.pem"], "-CAkey", p["ca.key"],
            "-CAcreateserial", "-days", "2", "-extfile", p["ext.cnf"], "-out", p[f"{who}.pem"])
    return p


def tls_credentials(certs, client_cert=True):
    def rd(n):
        with open(certs[n], "rb") as f:
            return f.read()
    if client_cert:
        return grpc.ssl_channel_credentials(rd("ca.pem"), rd("client.key"), rd("client.pem"))
    return grpc.ssl_channel_credentials(rd("ca.pem"))


class Client:
    """Calls one runtime instance; call() returns the reply or raises grpc.RpcError."""

    def __init__(self, address, max_message=64 << 20, credentials=None):
        self.msg = message_class()
        opts = [("grpc.max_send_message_length", max_message),
                ("grpc.max_receive_message_length", max_message)]
        if credentials is not None:
            self.channel = grpc.secure_channel(address, credentials, options=opts)
        else:
            self.channel = grpc.insecure_channel(address, options=opts)
        self.stub = self.channel.unary_unary(CALL, request_serializer=self.msg.SerializeToString,
                                             response_deserializer=self.msg.FromString)

    def call(self, function, payload=b"", timeout=10, **fields):
        req = self.msg(FunctionName=function, Payload=payload, **fields)
        return self.stub(req, timeout=timeout)

    def raw(self, data, timeout=10):
        """Sends bytes as the request message, as they are (for malformed input)."""
        stub = self.channel.unary_unary(CALL, request_serializer=None,
                                        response_deserializer=None)
        return stub(data, timeout=timeout)

    def future(self, function, payload=b"", timeout=10, **fields):
        return self.stub.future(self.msg(FunctionName=function, Payload=payload, **fields),
                                timeout=timeout)

    def close(self):
        self.channel.close()


def functions_yaml(functions):
    """functions: [(name, handler, codedir)] -> YAML text (nothing for an empty list)."""
    if not functions:
        return ""
    out = ["functions:"]
    for name, handler, codedir in functions:
        out += [f"  - name: '{name}'", f"    handler: '{handler}'", f"    codedir: '{codedir}'"]
    return "\n".join(out) + "\n"


class _Process:
    """What the runtime classes share: a process whose stdout+stderr go to self.out."""

    def _launch(self, cmd, port=None, what="runtime did not listen"):
        self.outf = open(self.out, "ab")
        self.proc = self.procs.start(cmd, cwd=self.dir, env=self.env, stdout=self.outf,
                                     stderr=subprocess.STDOUT)
        if port is not None:
            try:
                wait_port(port, timeout=20)
            except AssertionError:
                raise AssertionError(f"{what}: {self.output()}") from None
        return self

    def wait_exit(self, timeout=20):
        """Exit code of a runtime expected to stop by itself (e.g. a config error)."""
        try:
            return self.proc.wait(timeout)
        finally:
            self.outf.close()

    def _stop(self, sig):
        rc = self.procs.stop(self.proc, sig)
        self.outf.close()
        return rc

    def output(self):
        with open(self.out, errors="replace") as f:
            return f.read()


class Runtime(_Process):
    """One runtime process (python|node) run from the source tree, with cwd = a work dir
    holding etc/baetyl/service.yml; its stdout+stderr go to output.log there."""

    def __init__(self, procs, kind, workdir, functions, server_extra="", extra="", env=None,
                 address=True):
        self.procs = procs
        self.kind = kind
        self.dir = str(workdir)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        os.makedirs(os.path.join(self.dir, "etc", "baetyl"), exist_ok=True)
        self.conf = os.path.join(self.dir, "etc", "baetyl", "service.yml")
        text = "server:\n"
        if address:
            text += f"  address: '{self.address}'\n"
        text += server_extra
        text += functions_yaml(functions) + extra
        with open(self.conf, "w") as f:
            f.write(text)
        self.env = dict(os.environ)
        for k in ("BAETYL_SERVICE_INSTANCE_ADDRESS", "OPENEDGE_SERVICE_INSTANCE_ADDRESS"):
            self.env.pop(k, None)
        self.env.update(env or {})
        self.out = os.path.join(self.dir, "output.log")
        self.proc = None
        self.client = None

    def start(self, args=(), wait=True, port=None):
        return self._launch([RUNTIMES[self.kind], *args], (port or self.port) if wait else None)

    def connect(self, address=None, **kw):
        self.client = Client(address or self.address, **kw)
        return self.client

    def call(self, function, payload=b"", **kw):
        if self.client is None:
            self.connect()
        return self.client.call(function, payload, **kw)

    def stop(self, sig=signal.SIGTERM):
        if self.client:
            self.client.close()
        return self._stop(sig)

    def wait_output(self, text, timeout=10):
        return wait_for(lambda: text in self.output(), timeout, what=repr(text))


# ---- any runtime as a process: Rt and the rt fixture --------------------------------------

def command(kind):
    return [binary("baetyl-function-sql")] if kind == "sql" else [RUNTIMES[kind]]


def clean_env(extra=None):
    """The test's environment without the variables a master would give an instance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAETYL_", "OPENEDGE_"))}
    env.update(extra or {})
    return env


def yaml_of(conf):
    """A config dict as YAML text: JSON is YAML, and quotes in SQL need no care."""
    return json.dumps(conf, indent=1, ensure_ascii=False) + "\n"


class Rt(_Process):
    """One runtime process (python|node|sql) with cwd = its work dir; stdout+stderr in
    output.log there."""

    def __init__(self, procs, kind, workdir, config_text, env=None,
                 conf_rel=os.path.join("etc", "baetyl", "service.yml")):
        self.procs, self.kind, self.dir = procs, kind, str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        if config_text is not None:
            path = os.path.join(self.dir, conf_rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(config_text)
        self.env = clean_env(env)
        self.out = os.path.join(self.dir, "output.log")
        self.proc = None
        self.clients = []

    def start(self, args=(), port=None):
        """Starts the process; with port, waits until it listens there."""
        return self._launch(command(self.kind) + list(args), port,
                            f"{self.kind} did not listen on {port}")

    def client(self, port, **kw):
        c = Client(f"127.0.0.1:{port}", **kw)
        self.clients.append(c)
        return c

    def stop(self, sig=signal.SIGTERM):
        for c in self.clients:
            c.close()
        self.clients = []
        return self._stop(sig)


def assert_clean_exit(r):
    """SIGTERM: exit code 0, and no sanitizer report (the SQL runtime is built with SAN=1)."""
    rc = r.stop()
    out = r.output()
    assert "Sanitizer" not in out and "runtime error:" not in out, out[-3000:]
    assert rc == 0, f"{r.kind} exited with {rc}: {out[-2000:]}"
    return out


@pytest.fixture
def rt(procs, tmp_path):
    """make(kind, config_text, env=None, start=True, args=(), port=None, conf_rel=…) -> Rt.
    Each runtime still running at the end must stop cleanly on SIGTERM."""
    made = []

    def make(kind, config_text, env=None, start=True, args=(), port=None, **kw):
        r = Rt(procs, kind, tmp_path / f"{kind}{len(made)}", config_text, env, **kw)
        made.append(r)
        return r.start(args, port) if start else r
    yield make
    for r in made:
        if r.proc is not None and r.proc.poll() is None:
            assert_clean_exit(r)


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


# ---- JSON compared field by field, in order ------------------------------------------------

class Obj(list):
    """A JSON object as its (key, value) pairs in order."""


def parse(text):
    return json.loads(text, object_pairs_hook=Obj)


def same(a, b):
    """Equal as JSON with object keys in the same order; numbers compare by value (3 and
    3.0 are the same number), but true is not 1 and null is not absent."""
    if isinstance(a, Obj) or isinstance(b, Obj):
        return (isinstance(a, Obj) and isinstance(b, Obj) and len(a) == len(b)
                and all(ka == kb and same(va, vb) for (ka, va), (kb, vb) in zip(a, b)))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_json(payload, expected):
    """payload (bytes) is the JSON text expected (a str), fields in the same order."""
    assert payload, f"empty payload, expected {expected}"
    try:
        got = parse(payload)
    except ValueError:
        raise AssertionError(f"not JSON: {payload[:200]!r}") from None
    assert same(got, parse(expected)), \
        f"got {payload.decode(errors='replace')}, expected {expected}"
