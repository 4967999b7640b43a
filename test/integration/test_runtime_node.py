"""baetyl-function-node (SPEC §12 "Runtimes", seed chapters 9, 13, 15, 16): the real
runtime process on a free port, called over gRPC with a client built by protoc from
proto/function.proto."""
import json
import os
import signal
import socket
import subprocess
import time

import grpc
import pytest

from conftest import SRC, free_port, wait_port
from runtime_harness import FUNCTIONS, Client, Runtime, make_certs, tls_credentials

JS = os.path.join(FUNCTIONS, "node8")
JS_OTHER = os.path.join(FUNCTIONS, "node8-other")
LODASH = os.path.join(FUNCTIONS, "node-lodash")


@pytest.fixture
def runtime(procs, tmp_path):
    """make(functions, **kw) -> a started Runtime; a clean stop is checked at teardown."""
    made = []

    def make(functions=(("sayhi", "index.handler", JS), ("probe-context", "probe.context", JS)),
             start=True, **kw):
        r = Runtime(procs, "node", tmp_path / f"rt{len(made)}", list(functions), **kw)
        made.append(r)
        return r.start() if start else r
    yield make
    for r in made:
        if r.proc is not None and r.proc.poll() is None:
            assert r.stop() == 0, r.output()


def probes(*names):
    return [(f"p-{n}", f"probe.{n}", JS) for n in names]


def test_seed_chapter9_json_payload(runtime):
    r = runtime()
    out = r.call("sayhi", b'{"id":1}', ID=7, QOS=1, Topic="t", Timestamp=1569247749,
                 FunctionInvokeID="50f8f102-2b8c-4904-86df-0728811a5a4b")
    assert json.loads(out.Payload) == {
        "id": 1, "messageQOS": 1, "messageTopic": "t", "messageTimestamp": 1569247749,
        "functionName": "sayhi", "functionInvokeID": "50f8f102-2b8c-4904-86df-0728811a5a4b",
        "Say": "Hello Baetyl"}
    assert (out.ID, out.QOS, out.Topic, out.FunctionName) == (7, 1, "t", "sayhi")


def test_large_ids_round_trip(runtime):
    r = runtime()
    out = r.call("sayhi", b"{}", ID=2**64 - 1, Timestamp=-(2**62))
    assert out.ID == 2**64 - 1 and out.Timestamp == -(2**62)


def test_seed_chapter9_binary_payload(runtime):
    r = runtime()
    out = json.loads(r.call("sayhi", b"hello, not json", Topic="t").Payload)
    assert out["bytes"] == "hello, not json"
    assert out["Say"] == "Hello Baetyl"


def test_seed_chapter13_hello_world(runtime):
    r = runtime([("hello", "hello.handler", JS)])
    assert json.loads(r.call("hello", b'{"a":"b"}').Payload) == {
        "msg": {"a": "b"}, "type": "dict", "say": "hello world"}
    assert json.loads(r.call("hello", b"abc").Payload) == {
        "msg": "abc", "type": "non-dict", "say": "hello world"}


def test_event_conversions(runtime):
    r = runtime(probes("event_type"))

    def ev(payload):
        return json.loads(r.call("p-event_type", payload).Payload)
    assert ev(b"") == {"type": "object", "event": {}}
    assert ev(b'{"x":[1,2]}') == {"type": "object", "event": {"x": [1, 2]}}
    assert ev(b"[1,2]") == {"type": "array", "event": [1, 2]}
    assert ev(b"12") == {"type": "number", "event": 12}
    # Not JSON: a Buffer, including invalid UTF-8 (even when it would decode to a JSON string).
    assert ev(b"\x00\xff\xfe") == {"type": "Buffer", "hex": "00fffe"}
    assert ev(b'"\xff"') == {"type": "Buffer", "hex": "22ff22"}
    # Deeply nested JSON neither crashes nor hangs the runtime.
    deep = b"[" * 100000 + b"]" * 100000
    try:
        r.call("p-event_type", deep)
    except grpc.RpcError as e:
        assert "[UserCode" in e.details()
    assert ev(b"{}") == {"type": "object", "event": {}}


def test_results(runtime):
    r = runtime(probes("echo", "none", "undef", "empty", "raw", "text", "zero", "cyclic"))
    assert r.call("p-none", b'{"a":1}').Payload == b""
    assert r.call("p-undef").Payload == b""
    assert r.call("p-empty").Payload == b""
    assert r.call("p-raw").Payload == b"\x00\xffraw"
    assert r.call("p-echo", b"\x01\x02binary").Payload == b"\x01\x02binary"
    assert json.loads(r.call("p-text").Payload) == "plain text"
    assert r.call("p-zero").Payload == b"0"
    assert json.loads(r.call("p-echo", "{\"k\":\"你好\"}".encode()).Payload) == {"k": "你好"}
    with pytest.raises(grpc.RpcError) as e:
        r.call("p-cyclic")
    assert "[UserCodeReturn]" in e.value.details()


def test_callback_error(runtime):
    r = runtime([("sayhi", "index.handler", JS)] + probes("cb_string"))
    with pytest.raises(grpc.RpcError) as e:
        r.call("sayhi", b'{"err":"something is wrong"}')
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert "[UserCodeInvoke]" in e.value.details()
    assert "TypeError: something is wrong" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        r.call("p-cb_string")
    assert e.value.details() == "[UserCodeInvoke] plain failure"
    assert json.loads(r.call("sayhi", b'{"id":2}').Payload)["id"] == 2
    assert "function failed" in r.output()


def test_thrown_exception(runtime):
    r = runtime(probes("throws", "async_reject"))
    with pytest.raises(grpc.RpcError) as e:
        r.call("p-throws")
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert e.value.details() == "[UserCodeInvoke] RangeError: thrown here"
    with pytest.raises(grpc.RpcError) as e:
        r.call("p-async_reject")
    assert "[UserCodeInvoke] Error: async failure" in e.value.details()


def test_async_handlers_and_double_callback(runtime):
    r = runtime(probes("async_value", "async_later", "twice"))
    assert json.loads(r.call("p-async_value", b'{"a":1}').Payload) == {"async": True, "got": {"a": 1}}
    assert json.loads(r.call("p-async_later").Payload) == {"later": True}
    assert json.loads(r.call("p-twice").Payload) == {"first": True}


def test_exception_outside_a_call_is_logged_not_fatal(runtime):
    r = runtime(probes("throw_later"))
    assert json.loads(r.call("p-throw_later").Payload) == {"alive": True}
    r.wait_output("thrown from a timer")
    assert r.proc.poll() is None
    assert json.loads(r.call("p-throw_later").Payload) == {"alive": True}


def test_unknown_function(runtime):
    r = runtime()
    with pytest.raises(grpc.RpcError) as e:
        r.call("nobody", b"{}")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "function not found" in e.value.details()
    assert "nobody" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        r.call("__proto__", b"{}")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


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
    r = runtime(probes("env"), env={"MY_FUNC_SETTING": "42 apples", "BAETYL_SERVICE_NAME": "fjs"})
    out = json.loads(r.call("p-env", b'{"names":["MY_FUNC_SETTING","PATH","UNSET_X"]}').Payload)
    assert out["MY_FUNC_SETTING"] == "42 apples"
    assert out["PATH"] == os.environ["PATH"]
    assert out["UNSET_X"] is None
    assert "service=fjs" in r.output()


def test_lodash_in_codedir_node_modules(runtime):
    """Seed chapter 15: lodash installed by npm into the codedir's node_modules."""
    assert os.path.isdir(os.path.join(LODASH, "node_modules", "lodash")), \
        "test/integration/functions/node-lodash/node_modules missing: run scripts/deps.sh"
    r = runtime([("sayhi", "index.handler", LODASH)])
    event = {"array": ["Jane", 1, "Jane", 1, 2],
             "users": [{"user": "barney", "age": 36, "active": True},
                       {"user": "fred", "age": 40, "active": False},
                       {"user": "Jane", "age": 32, "active": True}]}
    out = json.loads(r.call("sayhi", json.dumps(event).encode()).Payload)
    assert out == {
        "unique_array": ["Jane", 1, 2],
        "sorted_users": [{"user": "Jane", "age": 32, "active": True},
                         {"user": "barney", "age": 36, "active": True},
                         {"user": "fred", "age": 40, "active": False}],
        "filtered_users": [{"user": "fred", "age": 40, "active": False}]}


def test_same_file_name_in_two_codedirs(runtime):
    r = runtime([("a", "index.handler", JS), ("b", "index.handler", JS_OTHER)])
    assert json.loads(r.call("a", b'{"id":1}').Payload)["Say"] == "Hello Baetyl"
    assert json.loads(r.call("b", b"{}").Payload) == {"from": "node8-other"}


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
    r = runtime(probes("sleep"))
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


def test_log_file_and_json_format(runtime):
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


def test_env_template_in_config(runtime):
    r = runtime([("sayhi", "index.handler", "{{.MY_CODEDIR}}")], env={"MY_CODEDIR": JS})
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
    rc, out = config_error(runtime, [("f", "index.handler", JS)],
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


def test_load_errors(runtime, tmp_path):
    code = tmp_path / "broken"
    code.mkdir()
    (code / "bad.js").write_text("require('no_such_module_anywhere');\n")
    rc, out = config_error(runtime, [("f3", "bad.handler", str(code))])
    assert rc == 1
    assert "function (f3)" in out and "no_such_module_anywhere" in out
    (code / "syn.js").write_text("exports.handler = (=> {};\n")
    rc, out = config_error(runtime, [("f4", "syn.handler", str(code))])
    assert rc == 1 and "function (f4)" in out and "SyntaxError" in out
    rc, out = config_error(runtime, [("f5", "index.nothere", JS)])
    assert rc == 1 and "function (f5): (index) exports no function (nothere)" in out
    rc, out = config_error(runtime, [("f6", "probe.not_a_function", JS)])
    assert rc == 1 and "function (f6)" in out and "not a function" in out
    rc, out = config_error(runtime, [("f7", "../node8-other/index.handler", JS)])
    assert rc == 1 and "function (f7)" in out and "outside codedir" in out


def test_bad_yaml_and_types(runtime):
    r = runtime([], start=False)
    with open(r.conf, "w") as f:
        f.write("functions: [\n")
    r.start(wait=False)
    assert r.wait_exit() == 1
    assert "invalid YAML" in r.output()
    rc, out = config_error(runtime, [("f6", "index.handler", JS)],
                           server_extra="  message:\n    length:\n      max: lots\n")
    assert rc == 1 and "server.message.length.max" in out


def test_duplicate_function_names(runtime):
    rc, out = config_error(runtime, [("dup", "index.handler", JS), ("dup", "hello.handler", JS)])
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


def test_installed_package_runs(tmp_path, procs):
    """scripts/install-extra.sh lays the package out as the master expects (node_modules and
    proto inside), and the installed copy runs through a symlink, as the native engine
    reaches packages via lib/baetyl/<image>."""
    prefix = tmp_path / "prefix"
    subprocess.run([os.path.join(SRC, "scripts", "install-extra.sh"), str(prefix), "build"],
                   check=True, cwd=SRC, stdout=subprocess.DEVNULL)
    pkg = prefix / "var/db/baetyl/baetyl-function-node"
    with open(pkg / "package.yml") as f:
        assert f.read().strip() == "entry: bin/baetyl-function-node"
    assert (pkg / "proto/function.proto").is_file()
    assert (pkg / "node_modules/@grpc/grpc-js/package.json").is_file()
    work = tmp_path / "work"
    (work / "etc/baetyl").mkdir(parents=True)
    port = free_port()
    (work / "etc/baetyl/service.yml").write_text(
        f"server: {{address: '127.0.0.1:{port}'}}\n"
        f"functions: [{{name: sayhi, handler: index.handler, codedir: '{JS}'}}]\n")
    (work / "lib").mkdir()
    os.symlink(pkg, work / "lib" / "pkg")
    p = procs.start([str(work / "lib/pkg/bin/baetyl-function-node")], cwd=work,
                    stdout=open(work / "out.log", "wb"), stderr=subprocess.STDOUT)
    wait_port(port, timeout=20)
    c = Client(f"127.0.0.1:{port}")
    assert json.loads(c.call("sayhi", b'{"id":1}').Payload)["Say"] == "Hello Baetyl"
    c.close()
    assert procs.stop(p, signal.SIGTERM) == 0


# ---- the gRPC server on Node's http2 module: refusals, hostile peers, other clients -------

def test_unknown_method_and_callbatch_off(runtime):
    r = runtime()
    r.connect()
    nope = r.client.channel.unary_unary("/baetyl.Function/Nope")
    with pytest.raises(grpc.RpcError) as e:
        nope(b"", timeout=5)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "/baetyl.Function/Nope" in e.value.details()
    off = runtime(env={"BAETYL_RUNTIME_NO_CALLBATCH": "1"})
    off.connect()
    batch = off.client.channel.unary_unary("/baetyl.Function/CallBatch")
    with pytest.raises(grpc.RpcError) as e:
        batch(b"", timeout=5)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "callbatch=false" in off.output()
    assert off.call("sayhi", b'{"id":1}').Payload


def test_garbage_body_is_internal(runtime):
    r = runtime()
    r.connect()
    with pytest.raises(grpc.RpcError) as e:
        r.client.raw(b"\xff\xff\xff\xff")
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert json.loads(r.call("sayhi", b'{"id":5}').Payload)["id"] == 5


NODE_RAW_CLIENT = r"""
// Sends the request headers and the frame bytes of argv[2] (hex) without ending the
// stream, and prints the response's headers and trailers as JSON.
const http2 = require('http2');
const s = http2.connect('http://' + process.argv[1]);
const req = s.request({ ':method': 'POST', ':path': '/baetyl.Function/Call',
  'content-type': 'application/grpc', te: 'trailers' }, { endStream: false });
const out = {};
req.on('response', (h) => Object.assign(out, h));
req.on('trailers', (h) => Object.assign(out, h));
req.on('error', (e) => { out.error = e.code; });
req.on('data', () => {});
req.on('close', () => { console.log(JSON.stringify(out)); s.close(); });
req.write(Buffer.from(process.argv[2], 'hex'));
setTimeout(() => { out.timeout = true; req.close(); }, 5000);
"""


def raw_node_call(address, data):
    p = subprocess.run(["node", "-e", NODE_RAW_CLIENT, address, data.hex()],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_oversized_prefix_refused_before_the_body(runtime):
    r = runtime(server_extra="  message:\n    length:\n      max: 1k\n")
    # only the prefix of a 4 GiB message: refused at once, nothing more is waited for
    got = raw_node_call(r.address, b"\x00\xff\xff\xff\xff")
    assert got.get("grpc-status") == "8" and "timeout" not in got, got
    assert "larger than max" in got.get("grpc-message", ""), got
    got = raw_node_call(r.address, b"\x01\x00\x00\x00\x01x")
    assert got.get("grpc-status") not in (None, "0"), got
    assert json.loads(r.call("sayhi", b'{"id":6}').Payload)["id"] == 6


def test_survives_hostile_peers_and_resets(runtime):
    from test_function_grpc import PREFACE, frame, raw_session, request_headers
    import random
    r = runtime(probes("sleep"))
    port = int(r.address.rsplit(":", 1)[1])
    settings = frame(4, 0, 0, b"")
    raw_session(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    raw_session(port, PREFACE + settings + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01")
    raw_session(port, PREFACE + settings + frame(0, 1, 1, b"data without headers"))
    for data in (b"\x00\x00\x00\x00\x09abc", b"\x00\x00", b"\x00\x00\x00\x00\x01xy"):
        raw_session(port, PREFACE + settings + frame(1, 4, 1, request_headers()) +
                    frame(0, 1, 1, data))
    rnd = random.Random(17)
    for _ in range(20):
        junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 400)))
        raw_session(port, PREFACE + settings + junk, read_for=0.1)
    # a call cancelled (RST_STREAM) while its handler runs, and one past its deadline
    r.connect()
    fut = r.client.future("p-sleep", b'{"seconds": 0.5}')
    time.sleep(0.2)
    fut.cancel()
    with pytest.raises(grpc.RpcError) as e:
        r.call("p-sleep", b'{"seconds": 1}', timeout=0.3)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(1)
    assert json.loads(r.call("p-sleep", b'{"seconds": 0}').Payload)["slept"] == 0


def test_sdk_client_calls_the_runtime(runtime):
    """The C SDK's gRPC client (test/tools/function_tool), as the function-manager calls."""
    from test_function_grpc import b64, c_call
    r = runtime(probes("echo", "sleep", "throws"))
    rc, reply, err = c_call(r.address, "--name", "p-echo", "--payload", '{"a":1}',
                            "--id", "18446744073709551615", "--topic", "t/1")
    assert rc == 0, err
    assert reply["Payload"] == b64(b'{"a":1}') and reply["ID"] == "18446744073709551615"
    assert reply["Topic"] == "t/1"
    rc, _, err = c_call(r.address, "--name", "p-throws")
    assert rc == 1 and "code=2" in err and "[UserCodeInvoke] RangeError: thrown here" in err
    rc, _, err = c_call(r.address, "--name", "nobody")
    assert rc == 1 and "code=5" in err and "function not found: (nobody)" in err
    rc, _, err = c_call(r.address, "--name", "p-sleep", "--payload", '{"seconds": 1}',
                        "--timeout", "200")
    assert rc == 2, err


def test_unix_socket_address(runtime, tmp_path):
    sock = tmp_path / "rt.sock"
    r = runtime(start=False, env={"BAETYL_SERVICE_INSTANCE_ADDRESS": f"unix:{sock}"})
    r.start(wait=False)
    r.wait_output("server started")
    c = r.connect(f"unix:{sock}")
    assert json.loads(c.call("sayhi", b'{"id":7}').Payload)["id"] == 7
