"""baetyl-function-sql (SPEC §12 "Runtimes", SQL; seed chapters 9 and 18): the real runtime
on a free port, called over gRPC with a client built by protoc from proto/function.proto.
The dialect itself is covered by test/unit/function-sql/test_sql.c; here: the process,
its config, the gRPC surface and the seed's statements end to end."""
import concurrent.futures
import json
import os
import signal

import grpc
import pytest

from conftest import binary, free_port, wait_for, wait_port
from runtime_harness import Client

FILTER = "select qos() as qos, topic() as topic, * where id < 10"
TEMPERATURE = "SELECT temperature, ts, unit WHERE temperature > 50"


class SqlRuntime:
    """One baetyl-function-sql in a work dir with etc/baetyl/service.yml; output in
    output.log. functions: [(name, statement)]."""

    def __init__(self, procs, workdir, functions, server_extra="", env=None, address=True):
        self.procs = procs
        self.dir = str(workdir)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        os.makedirs(os.path.join(self.dir, "etc", "baetyl"), exist_ok=True)
        text = "server:\n"
        if address:
            text += f"  address: 'tcp://{self.address}'\n"
        text += server_extra + "functions:\n"
        for name, statement in functions:
            # JSON strings are YAML double-quoted scalars: quotes in SQL need no care.
            text += f"  - name: {json.dumps(name)}\n    handler: {json.dumps(statement)}\n"
        with open(os.path.join(self.dir, "etc", "baetyl", "service.yml"), "w") as f:
            f.write(text)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("BAETYL_", "OPENEDGE_"))}
        self.env.update(env or {})
        self.out = os.path.join(self.dir, "output.log")
        self.client = None

    def start(self, wait=True):
        self.outf = open(self.out, "ab")
        self.proc = self.procs.start([binary("baetyl-function-sql")], cwd=self.dir,
                                     env=self.env, stdout=self.outf, stderr=self.outf)
        if wait:
            try:
                wait_port(self.port, timeout=20)
            except AssertionError:
                raise AssertionError(f"runtime did not listen: {self.output()}") from None
        return self

    def call(self, function, payload=b"", **kw):
        if self.client is None:
            self.client = Client(self.address)
        return self.client.call(function, payload, **kw)

    def stop(self):
        if self.client:
            self.client.close()
        rc = self.procs.stop(self.proc, signal.SIGTERM)
        self.outf.close()
        return rc

    def wait_exit(self, timeout=20):
        try:
            return self.proc.wait(timeout)
        finally:
            self.outf.close()

    def output(self):
        with open(self.out, errors="replace") as f:
            return f.read()


@pytest.fixture
def sql(procs, tmp_path):
    """make(functions, **kw) -> a started SqlRuntime; a clean stop is checked at teardown."""
    made = []

    def make(functions=(("filter", FILTER), ("temperature", TEMPERATURE)), start=True, **kw):
        r = SqlRuntime(procs, tmp_path / f"rt{len(made)}", list(functions), **kw)
        made.append(r)
        return r.start() if start else r
    yield make
    for r in made:
        if getattr(r, "proc", None) is not None and r.proc.poll() is None:
            assert r.stop() == 0, r.output()
            assert "service closed" in r.output()


def test_seed_chapter9_filter(sql):
    r = sql()
    out = r.call("filter", b'{"id":1}', ID=7, QOS=1, Topic="t", Timestamp=1569247749,
                 FunctionInvokeID="50f8f102-2b8c-4904-86df-0728811a5a4b")
    assert out.Payload == b'{"qos":1,"topic":"t","id":1}'
    # The reply echoes the request's fields, with the result as Payload.
    assert (out.ID, out.QOS, out.Topic, out.FunctionName) == (7, 1, "t", "filter")
    assert r.call("filter", b'{"id":10}', Topic="t").Payload == b""
    out = r.call("filter", b'{"id":3,"qos":2,"v":[1.5,"x"]}', QOS=0, Topic="a/b")
    assert out.Payload == b'{"qos":0,"topic":"a/b","id":3,"v":[1.5,"x"]}'


def test_seed_chapter18_temperature(sql):
    r = sql()
    out = r.call("temperature", b'{"temperature":60.5,"ts":1573000000,"unit":"C","dev":"d"}')
    assert out.Payload == b'{"temperature":60.5,"ts":1573000000,"unit":"C"}'
    assert r.call("temperature", b'{"temperature":50}').Payload == b""
    assert r.call("temperature", b'{"unit":"C"}').Payload == b""


def test_non_object_payloads_publish_nothing(sql):
    r = sql([("all", "SELECT qos() AS q")])
    assert r.call("all", b"{}").Payload == b'{"q":0}'
    for payload in (b"", b"[1,2]", b"12", b'"s"', b"null", b"not json", b"\x00\xff\xfe",
                    b'{"a":', b"[" * 100000 + b"]" * 100000):
        assert r.call("all", payload).Payload == b"", payload[:20]


def test_context_functions(sql):
    r = sql([("ctx", "SELECT qos(), topic(), topic(2) AS second, timestamp() AS ts, "
                     "invokeid() AS id, concat(upper(topic(1)), '-', n * 2) AS c")])
    out = r.call("ctx", b'{"n":21}', QOS=1, Topic="dev/temp/x", Timestamp=1700000000,
                 FunctionInvokeID="7c9e6679-7425-40de-944b-e07fc1f90ae7")
    assert json.loads(out.Payload) == {
        "qos()": 1, "topic()": "dev/temp/x", "second": "temp", "ts": 1700000000,
        "id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "c": "DEV-42"}


def test_unknown_function(sql):
    r = sql()
    with pytest.raises(grpc.RpcError) as e:
        r.call("nope", b'{"id":1}')
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert "function not found: (nope)" in e.value.details()
    # The server keeps serving.
    assert r.call("filter", b'{"id":1}', Topic="t").Payload.startswith(b'{"qos":0')


def test_statement_that_does_not_parse_refuses_start(sql):
    r = sql([("good", FILTER), ("bad", "SELECT temperature, ts unit WHERE temperature > 50")],
            start=False)
    r.start(wait=False)
    assert r.wait_exit() == 1
    out = r.output()
    assert "function (bad): syntax error at position 24: unexpected 'unit'" in out, out
    assert "server started" not in out


def test_config_errors(sql):
    r = sql([("f", FILTER)], address=False, start=False)
    r.start(wait=False)
    assert r.wait_exit() == 1
    assert "server.address: required (or set BAETYL_SERVICE_INSTANCE_ADDRESS)" in r.output()

    r = sql([("f", FILTER), ("f", TEMPERATURE)], start=False)
    r.start(wait=False)
    assert r.wait_exit() == 1
    assert "function (f) is declared twice" in r.output()

    r = sql([("f", "")], start=False)
    r.start(wait=False)
    assert r.wait_exit() == 1
    assert "handler" in r.output() and "required" in r.output()


def test_instance_address_from_environment(sql):
    port = free_port()
    r = sql(start=False, env={"BAETYL_SERVICE_INSTANCE_ADDRESS": f"127.0.0.1:{port}"})
    r.address, r.port = f"127.0.0.1:{port}", port
    r.start()
    assert r.call("filter", b'{"id":2}', Topic="t").Payload == b'{"qos":0,"topic":"t","id":2}'


def test_message_size_limit_and_eval_error(sql):
    r = sql([("echo", "SELECT *"), ("big", "SELECT concat(s, s, s, s, s, s) AS c")],
            server_extra="  message:\n    length:\n      max: 8m\n")
    s = "x" * (3 << 20)
    payload = json.dumps({"s": s}, separators=(",", ":")).encode()
    assert r.call("echo", payload).Payload == payload
    # 6 x 3 MiB is past the engine's 16 MiB string limit: an error, the server survives.
    with pytest.raises(grpc.RpcError) as e:
        r.call("big", payload)
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert "function (big): string result too long" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        r.call("echo", b'{"s":"' + b"y" * (9 << 20) + b'"}')
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert r.call("echo", b'{"a":1}').Payload == b'{"a":1}'


def test_concurrent_calls(sql):
    r = sql([("double", "SELECT n * 2 AS d WHERE n % 3 != 0")])
    r.call("double", b'{"n":1}')
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futs = {n: pool.submit(r.call, "double", json.dumps({"n": n}).encode())
                for n in range(400)}
        for n, f in futs.items():
            want = b"" if n % 3 == 0 else json.dumps({"d": n * 2}, separators=(",", ":")).encode()
            assert f.result().Payload == want


def test_sigterm_stops_cleanly(sql):
    r = sql()
    assert r.call("filter", b'{"id":1}').Payload
    assert r.stop() == 0
    out = r.output()
    assert "service starting" in out and "service closed" in out
    wait_for(lambda: r.proc.poll() is not None, what="exit")
