"""Shared by the runtime tests (test_runtime_python.py, test_runtime_node.py): a gRPC client
of baetyl.Function/Call built from proto/function.proto by protoc (not by the runtimes' own
.proto reader, so the two check each other), and a runtime process in a temp work dir."""
import os
import signal
import subprocess
import tempfile

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from conftest import SRC, free_port, wait_for, wait_port

PROTO = os.path.join(SRC, "proto", "function.proto")
FUNCTIONS = os.path.join(SRC, "test", "integration", "functions")
RUNTIMES = {
    "python": os.path.join(SRC, "function-python", "bin", "baetyl-function-python"),
    "node": os.path.join(SRC, "function-node", "bin", "baetyl-function-node"),
}
CALL = "/baetyl.Function/Call"

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


class Runtime:
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
        self.outf = open(self.out, "ab")
        self.proc = self.procs.start([RUNTIMES[self.kind], *args], cwd=self.dir, env=self.env,
                                     stdout=self.outf, stderr=subprocess.STDOUT)
        if wait:
            try:
                wait_port(port or self.port, timeout=20)
            except AssertionError:
                raise AssertionError(f"runtime did not listen: {self.output()}") from None
        return self

    def connect(self, address=None, **kw):
        self.client = Client(address or self.address, **kw)
        return self.client

    def call(self, function, payload=b"", **kw):
        if self.client is None:
            self.connect()
        return self.client.call(function, payload, **kw)

    def wait_exit(self, timeout=20):
        """Exit code of a runtime expected to stop by itself (e.g. a config error)."""
        try:
            return self.proc.wait(timeout)
        finally:
            self.outf.close()

    def stop(self, sig=signal.SIGTERM):
        if self.client:
            self.client.close()
        rc = self.procs.stop(self.proc, sig)
        self.outf.close()
        return rc

    def output(self):
        with open(self.out, errors="replace") as f:
            return f.read()

    def wait_output(self, text, timeout=10):
        return wait_for(lambda: text in self.output(), timeout, what=repr(text))
