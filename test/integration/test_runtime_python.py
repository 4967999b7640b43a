"""baetyl-function-python (SPEC §12 "Runtimes", seed chapters 9, 12, 14, 16): the real
runtime process on a free port, called over gRPC with a client built by protoc from
proto/function.proto."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest

from conftest import SRC, free_port, wait_port
from runtime_harness import (FUNCTIONS, Client, Runtime, make_certs, protoc_descriptor,
                             tls_credentials)

PY = os.path.join(FUNCTIONS, "python3")
PY_OTHER = os.path.join(FUNCTIONS, "python3-other")


@pytest.fixture
def runtime(procs, tmp_path):
    """make(functions, **kw) -> a started Runtime; a clean stop is checked at teardown."""
    made = []

    def make(functions=(("sayhi", "index.handler", PY), ("probe-context", "probe.context", PY)),
             start=True, **kw):
        r = Runtime(procs, "python", tmp_path / f"rt{len(made)}", list(functions), **kw)
        made.append(r)
        return r.start() if start else r
    yield make
    for r in made:
        if r.proc is not None and r.proc.poll() is None:
            assert r.stop() == 0, r.output()


def probes(*names):
    return [(f"p-{n}", f"probe.{n}", PY) for n in names]


def test_seed_chapter9_json_payload(runtime):
    r = runtime()
    out = r.call("sayhi", b'{"id":1}', ID=7, QOS=1, Topic="t", Timestamp=1569247749,
                 FunctionInvokeID="50f8f102-2b8c-4904-86df-0728811a5a4b")
    assert json.loads(out.Payload) == {
        "id": 1, "messageQOS": 1, "messageTopic": "t", "messageTimestamp": 1569247749,
        "functionName": "sayhi", "functionInvokeID": "50f8f102-2b8c-4904-86df-0728811a5a4b",
        "Say": "Hello Baetyl"}
    # The reply echoes the request's fields, with the result as Payload.
    assert (out.ID, out.QOS, out.Topic, out.FunctionName) == (7, 1, "t", "sayhi")


def test_seed_chapter9_binary_payload(runtime):
    r = runtime()
    out = json.loads(r.call("sayhi", b"hello, not json", Topic="t").Payload)
    assert out["bytes"] == "hello, not json"
    assert out["Say"] == "Hello Baetyl"


def test_seed_chapter12_hello_world(runtime):
    r = runtime([("hello", "hello.handler", PY)])
    assert json.loads(r.call("hello", b'{"a":"b"}').Payload) == {
        "msg": {"a": "b"}, "type": "dict", "say": "hello world"}
    assert json.loads(r.call("hello", b"abc").Payload) == {
        "msg": "abc", "type": "non-dict", "say": "hello world"}


def test_event_conversions(runtime):
    r = runtime(probes("event_type"))

    def ev(payload):
        return json.loads(r.call("p-event_type", payload).Payload)
    assert ev(b"") == {"type": "dict", "event": {}}
    assert ev(b'{"x":[1,2]}') == {"type": "dict", "event": {"x": [1, 2]}}
    assert ev(b"[1,2]") == {"type": "list", "event": [1, 2]}
    assert ev(b"12") == {"type": "int", "event": 12}
    assert ev(b'"s"') == {"type": "str", "event": "s"}
    # Not JSON: raw bytes, including invalid UTF-8 and JSON nested deeper than Python parses.
    assert ev(b"\x00\xff\xfe") == {"type": "bytes", "hex": "00fffe"}
    assert ev(b'"\xff"') == {"type": "bytes", "hex": '"\xff"'.encode("latin-1").hex()}
    deep = b"[" * 100000 + b"]" * 100000
    assert ev(deep)["type"] == "bytes"


def test_results(runtime):
    r = runtime(probes("echo", "none", "raw", "text", "unserialisable"))
    assert r.call("p-none", b'{"a":1}').Payload == b""
    assert r.call("p-raw").Payload == b"\x00\xffraw"
    assert r.call("p-echo", b"\x01\x02binary").Payload == b"\x01\x02binary"
    assert json.loads(r.call("p-text").Payload) == "plain text"
    assert json.loads(r.call("p-echo", "{\"k\":\"你好\"}".encode()).Payload) == {"k": "你好"}
    with pytest.raises(grpc.RpcError) as e:
        r.call("p-unserialisable")
    assert "[UserCodeReturn]" in e.value.details()


def test_handler_exception(runtime):
    r = runtime()
    with pytest.raises(grpc.RpcError) as e:
        r.call("sayhi", b'{"err":"something is wrong"}')
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert "[UserCodeInvoke]" in e.value.details()
    assert "TypeError" in e.value.details() and "something is wrong" in e.value.details()
    # The instance keeps serving.
    assert json.loads(r.call("sayhi", b'{"id":2}').Payload)["id"] == 2
    assert "function failed" in r.output()


def test_sys_exit_in_handler_is_an_error_not_a_stop(runtime):
    r = runtime(probes("exits"))
    with pytest.raises(grpc.RpcError) as e:
        r.call("p-exits")
    assert "[UserCodeInvoke] SystemExit" in e.value.details()
    assert r.proc.poll() is None


def test_unknown_function(runtime):
    r = runtime()
    with pytest.raises(grpc.RpcError) as e:
        r.call("nobody", b"{}")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "function not found" in e.value.details()
    assert "nobody" in e.value.details()


def test_malformed_request_messages(runtime):
    r = runtime()
    r.connect()
    for data in (b"\xff\xff\xff\xff", b"\x22\x10abc", b"\x5a\x01\xff", b"\x08" + b"\xff" * 11):
        with pytest.raises(grpc.RpcError) as e:
            r.client.raw(data)
        assert e.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.NOT_FOUND,
                                  grpc.StatusCode.UNKNOWN), e.value
    assert json.loads(r.call("sayhi", b'{"id":4}').Payload)["id"] == 4


def test_context_keys(runtime):
    r = runtime()
    ctx = json.loads(r.call("probe-context", b"{}", QOS=1, Topic="a/b", Timestamp=1700000123,
                            FunctionInvokeID="inv-1").Payload)
    assert ctx == {"messageQOS": 1, "messageTopic": "a/b", "messageTimestamp": 1700000123,
                   "functionName": "probe-context", "functionInvokeID": "inv-1",
                   "invokeid": "inv-1"}


def test_environment_visible(runtime):
    r = runtime(probes("env"), env={"MY_FUNC_SETTING": "42 apples", "BAETYL_SERVICE_NAME": "fpy"})
    out = json.loads(r.call("p-env", b'{"names":["MY_FUNC_SETTING","PATH","UNSET_X"]}').Payload)
    assert out["MY_FUNC_SETTING"] == "42 apples"
    assert out["PATH"] == os.environ["PATH"]
    assert out["UNSET_X"] is None
    assert "service=fpy" in r.output()


def test_third_party_package_in_codedir(runtime, tmp_path):
    """Seed chapter 14: a pure-Python package copied into codedir is importable, and the
    codedir's copy wins over the system's."""
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(os.path.join(PY, "probe.py"), code / "probe.py")
    import more_itertools
    shutil.copytree(os.path.dirname(more_itertools.__file__), code / "more_itertools",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (code / "__init__.py").write_text("")
    r = runtime([("tp", "probe.third_party", str(code))])
    out = json.loads(r.call("tp", b'{"items":[1,2,3,4,5]}').Payload)
    assert out["chunks"] == [[1, 2], [3, 4], [5]]
    assert out["file"].startswith(os.path.realpath(code)), out["file"]


def test_same_module_name_in_two_codedirs(runtime):
    r = runtime([("a", "index.handler", PY), ("b", "index.handler", PY_OTHER)])
    assert json.loads(r.call("a", b'{"id":1}').Payload)["Say"] == "Hello Baetyl"
    assert json.loads(r.call("b", b"{}").Payload) == {"from": "python3-other"}


def test_sigterm_closes_cleanly(runtime):
    r = runtime()
    r.call("sayhi", b"{}")
    assert "service starting" in r.output()
    assert r.stop() == 0
    assert "service closed" in r.output()


def test_sigterm_with_a_hung_handler_still_exits(runtime):
    r = runtime(probes("hang"))
    r.connect()
    fut = r.client.future("p-hang", b"{}", timeout=30)
    time.sleep(0.5)
    t0 = time.monotonic()
    assert r.stop() == 0
    assert time.monotonic() - t0 < 12
    assert "service closed" in r.output()
    with pytest.raises(grpc.RpcError):
        fut.result()


def test_instance_address_env_overrides_server_address(runtime):
    other = free_port()
    r = runtime(start=False, env={"BAETYL_SERVICE_INSTANCE_ADDRESS": f"127.0.0.1:{other}"})
    r.start(port=other)
    assert json.loads(r.connect(f"127.0.0.1:{other}").call("sayhi", b'{"id":3}').Payload)["id"] == 3
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", r.port), timeout=0.5).close()


def test_openedge_instance_address_env(runtime):
    other = free_port()
    r = runtime(start=False, address=False,
                env={"OPENEDGE_SERVICE_INSTANCE_ADDRESS": f"127.0.0.1:{other}"})
    r.start(port=other)
    assert r.connect(f"127.0.0.1:{other}").call("sayhi", b"{}").Payload


def test_message_size_limit(runtime):
    r = runtime(probes("echo", "big"), server_extra="  message:\n    length:\n      max: 1k\n")
    ok = b"y" * 900
    assert r.call("p-echo", ok).Payload == ok
    with pytest.raises(grpc.RpcError) as e:
        r.call("p-echo", b"z" * 1025)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The reply is bounded too.
    with pytest.raises(grpc.RpcError) as e:
        r.call("p-big", b'{"size":2000}')
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert r.call("p-big", b'{"size":500}').Payload == b"x" * 500


def test_default_size_limit_is_4m(runtime):
    r = runtime(probes("echo"))
    just = b"a" * (4 * 1024 * 1024 - 64)
    assert len(r.call("p-echo", just, timeout=30).Payload) == len(just)
    with pytest.raises(grpc.RpcError) as e:
        r.call("p-echo", b"a" * (4 * 1024 * 1024 + 1), timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_concurrent_calls(runtime):
    r = runtime(probes("sleep"), server_extra="  workers:\n    max: 8\n")
    r.connect()
    t0 = time.monotonic()
    futs = [r.client.future("p-sleep", json.dumps({"seconds": 0.5, "n": i}).encode())
            for i in range(8)]
    got = sorted(json.loads(f.result().Payload)["n"] for f in futs)
    elapsed = time.monotonic() - t0
    assert got == list(range(8))
    assert elapsed < 2.5, f"8 calls of 0.5s took {elapsed:.2f}s: not concurrent"


def test_concurrent_max_rejects_extra_calls(runtime):
    r = runtime(probes("sleep"), server_extra="  concurrent:\n    max: 1\n")
    r.connect()
    slow = r.client.future("p-sleep", b'{"seconds": 1}')
    time.sleep(0.3)
    with pytest.raises(grpc.RpcError) as e:
        r.call("p-sleep", b'{"seconds": 0}')
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert json.loads(slow.result().Payload)["slept"] == 1


def test_log_file_and_json_format(runtime, tmp_path):
    r = runtime(extra="logger:\n  path: var/log/baetyl/service.log\n  format: json\n  level: debug\n")
    r.call("sayhi", b"{}")
    rc = r.stop()
    with open(os.path.join(r.dir, "var/log/baetyl/service.log")) as f:
        text = f.read()
    assert rc == 0, text + r.output()
    lines = [json.loads(line) for line in text.splitlines()]
    msgs = [line["msg"] for line in lines]
    assert msgs[0] == "service starting" and msgs[-1] == "service closed", text
    assert "function called" in msgs, text
    assert all({"time", "level", "msg"} <= set(line) for line in lines)


def test_env_template_in_config(runtime, tmp_path):
    r = runtime([("sayhi", "index.handler", "{{.MY_CODEDIR}}")], env={"MY_CODEDIR": PY})
    assert json.loads(r.call("sayhi", b"{}").Payload)["Say"] == "Hello Baetyl"


# ---- config errors: one clear line naming the function and the problem, exit 1 -----------

def config_error(runtime, functions, **kw):
    r = runtime(functions, start=False, **kw)
    r.start(wait=False)
    rc = r.wait_exit()
    return rc, r.output()


def test_tls_with_client_certificates(runtime, tmp_path):
    certs = make_certs(tmp_path)
    r = runtime(server_extra=f"  ca: {certs['ca.pem']}\n  cert: {certs['server.pem']}\n"
                             f"  key: {certs['server.key']}\n")
    c = r.connect(credentials=tls_credentials(certs))
    assert json.loads(c.call("sayhi", b'{"id":9}').Payload)["id"] == 9
    # A ca in the config means client certificates are required.
    for creds in (tls_credentials(certs, client_cert=False), None):
        other = Client(r.address, credentials=creds)
        with pytest.raises(grpc.RpcError) as e:
            other.call("sayhi", b"{}", timeout=3)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        other.close()
    rc, out = config_error(runtime, [("f", "index.handler", PY)],
                           server_extra=f"  cert: {certs['server.pem']}\n")
    assert rc == 1 and "cert and key" in out


def test_missing_handler(runtime):
    rc, out = config_error(runtime, [], extra="functions:\n  - name: f1\n    codedir: x\n")
    assert rc == 1
    assert "f1" in out and "handler" in out and "required" in out


def test_bad_codedir(runtime):
    rc, out = config_error(runtime, [("f2", "index.handler", "/nonexistent/dir")])
    assert rc == 1
    assert "function (f2)" in out and "codedir (/nonexistent/dir) is not a directory" in out


def test_import_error(runtime, tmp_path):
    code = tmp_path / "broken"
    code.mkdir()
    (code / "bad.py").write_text("import no_such_module_anywhere\n")
    rc, out = config_error(runtime, [("f3", "bad.handler", str(code))])
    assert rc == 1
    assert "function (f3)" in out and "no_such_module_anywhere" in out
    (code / "syn.py").write_text("def handler(:\n")
    rc, out = config_error(runtime, [("f4", "syn.handler", str(code))])
    assert rc == 1 and "function (f4)" in out and "SyntaxError" in out


def test_missing_handler_function(runtime):
    rc, out = config_error(runtime, [("f5", "index.nothere", PY)])
    assert rc == 1
    assert "function (f5): module (index) has no function (nothere)" in out


def test_bad_yaml_and_types(runtime, tmp_path):
    r = runtime([], start=False)
    with open(r.conf, "w") as f:
        f.write("functions: [\n")
    r.start(wait=False)
    assert r.wait_exit() == 1
    assert "invalid YAML" in r.output()
    rc, out = config_error(runtime, [("f6", "index.handler", PY)],
                           server_extra="  message:\n    length:\n      max: lots\n")
    assert rc == 1 and "server.message.length.max" in out


def test_duplicate_function_names(runtime):
    rc, out = config_error(runtime, [("dup", "index.handler", PY), ("dup", "hello.handler", PY)])
    assert rc == 1 and "dup" in out and "twice" in out


def test_address_in_use(runtime):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = runtime(start=False, env={"BAETYL_SERVICE_INSTANCE_ADDRESS": f"127.0.0.1:{port}"})
        r.start(wait=False)
        assert r.wait_exit() == 1
        assert f"cannot listen on 127.0.0.1:{port}" in r.output()


def test_help(runtime):
    r = runtime(start=False)
    r.start(args=["--help"], wait=False)
    assert r.wait_exit() == 0
    assert "-c" in r.output()


def test_proto_reader_matches_protoc():
    """The runtime builds its messages from proto/function.proto with its own reader; it
    must give exactly what protoc gives."""
    sys.path.insert(0, os.path.join(SRC, "function-python"))
    try:
        from baetyl_runtime import protofile
    finally:
        sys.path.pop(0)
    with open(os.path.join(SRC, "proto", "function.proto")) as f:
        mine = protofile.parse(f.read(), filename="function.proto")
    assert mine == protoc_descriptor()
    with pytest.raises(protofile.ProtoError, match="line 3"):
        protofile.parse('syntax = "proto3";\nmessage A {\n  map<string,int32> m = 1;\n}\n')


def test_installed_package_runs(tmp_path, procs):
    """scripts/install-extra.sh lays the package out as the master expects, and the
    installed copy runs on its own (proto shipped inside)."""
    prefix = tmp_path / "prefix"
    subprocess.run([os.path.join(SRC, "scripts", "install-extra.sh"), str(prefix), "build"],
                   check=True, cwd=SRC, stdout=subprocess.DEVNULL)
    pkg = prefix / "var/db/baetyl/baetyl-function-python"
    with open(pkg / "package.yml") as f:
        assert f.read().strip() == "entry: bin/baetyl-function-python"
    assert (pkg / "proto/function.proto").is_file()
    work = tmp_path / "work"
    (work / "etc/baetyl").mkdir(parents=True)
    port = free_port()
    (work / "etc/baetyl/service.yml").write_text(
        f"server: {{address: '127.0.0.1:{port}'}}\n"
        f"functions: [{{name: sayhi, handler: index.handler, codedir: '{PY}'}}]\n")
    # Run through a symlink, as the native engine reaches packages via lib/baetyl/<image>.
    (work / "lib").mkdir()
    os.symlink(pkg, work / "lib" / "pkg")
    p = procs.start([str(work / "lib/pkg/bin/baetyl-function-python")], cwd=work,
                    stdout=open(work / "out.log", "wb"), stderr=subprocess.STDOUT)
    wait_port(port, timeout=20)
    c = Client(f"127.0.0.1:{port}")
    assert json.loads(c.call("sayhi", b'{"id":1}').Payload)["Say"] == "Hello Baetyl"
    c.close()
    assert procs.stop(p, signal.SIGTERM) == 0
