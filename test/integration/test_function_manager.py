"""baetyl-function-manager (SPEC §12; seed chapters 9, 12, 13): the real master starts the
function-manager and, on demand, the real Python, Node and SQL runtimes; a standalone hub
carries the messages; a paho client publishes and watches. Also the seed's chapter 9
example (example/native) end to end."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import grpc
import pytest

from conftest import SRC, binary, free_port, wait_for, wait_port
from fm_harness import App, Watcher, error_of, install_package, is_uuid4, numbered, publish_all
from runtime_harness import Client
from master_harness import master  # noqa: F401  (fixture)


@pytest.fixture
def app(master, hub_factory):  # noqa: F811
    """make(runtimes, functions, rules, hub_extra='', **App kw) -> a started App; its watcher
    (subscribed to '#') is app.w."""
    made = []

    def make(runtimes, functions, rules, hub_extra="", start=True, **kw):
        h = hub_factory(hub_extra)
        a = App(master, h, runtimes, functions, rules, **kw)
        made.append(a)
        a.w = Watcher(h.port)
        return a.start() if start else a
    yield make
    for a in made:
        a.w.close()


def fn(name, service, **kw):
    d = {"name": name, "service": service}
    d.update(kw)
    return d


def rule(sub, function, pub, qos_in=0, qos_out=0, retry=None, clientid=None, deadletter=None):
    r = {"clientid": clientid or f"r-{function}-{sub.replace('/', '_')}",
         "subscribe": {"topic": sub, "qos": qos_in}, "function": {"name": function},
         "publish": {"topic": pub, "qos": qos_out}}
    if retry is not None:
        r["retry"] = {"max": retry}
    if deadletter is not None:
        r["deadletter"] = deadletter
    return r


# ---- per runtime: payloads, errors, context, environment -----------------------------------

@pytest.mark.parametrize("kind", ["python", "node"])
def test_runtime_calls(app, kind):
    a = app({"rt": (kind, [("sayhi", "index.handler"), ("ctx", "probe.context"), ("env", "probe.env")],
                    {"env": {"FOO": "bar"}})},
            [fn("sayhi", "rt"), fn("ctx", "rt"), fn("env", "rt"), fn("ghost", "rt")],
            [rule("t", "sayhi", "t/out"), rule("c", "ctx", "c/out", qos_in=1, qos_out=1),
             rule("e", "env", "e/out"), rule("g", "ghost", "g/out", retry=1)])
    w = a.w
    assert a.instances("rt") == [], "no instance before the first message"
    now = time.time()
    # JSON payload (the seed's chapter 9 function)
    w.publish("t", b'{"id":1}', qos=1)
    out = w.wait_json("t/out")[0]
    assert out["id"] == 1 and out["Say"] == "Hello Baetyl"
    assert out["messageQOS"] == 0 and out["messageTopic"] == "t" and out["functionName"] == "sayhi"
    assert is_uuid4(out["functionInvokeID"])
    assert abs(out["messageTimestamp"] - now) < 10
    assert a.instances("rt") == ["rt.sayhi.1"]
    # binary, then empty payload
    w.publish("t", b"hello, not json")
    assert w.wait_json("t/out", 2)[1]["bytes"] == "hello, not json"
    w.publish("t", b"")
    third = w.wait_json("t/out", 3)[2]
    assert third["Say"] == "Hello Baetyl" and third["messageTopic"] == "t"
    # an exception in the handler: the error JSON, on the same output topic
    w.publish("t", b'{"err":"boom"}')
    e = error_of(w.wait("t/out", 4)[3][1])
    assert "[UserCodeInvoke]" in e["errorMessage"] and "boom" in e["errorMessage"], e
    assert e["errorType"] == "*errors.Err"
    fm = e["functionMessage"]
    assert fm["Payload"] == b'{"err":"boom"}' and fm["Topic"] == "t" and fm["QOS"] == 0
    assert fm["FunctionName"] == "sayhi" and is_uuid4(fm["FunctionInvokeID"]) and fm["ID"] == 0
    assert abs(fm["Timestamp"] - now) < 30
    # the context keys, with a QoS 1 input (QoS 1 output, the input's packet id as ID)
    w.publish("c", b'{"a":1}', qos=1)
    topic, payload, qos = w.wait("c/out")[0]
    ctx = json.loads(payload)
    assert qos == 1
    assert ctx["messageQOS"] == 1 and ctx["messageTopic"] == "c" and ctx["functionName"] == "ctx"
    assert is_uuid4(ctx["functionInvokeID"]) and ctx["invokeid"] == ctx["functionInvokeID"]
    assert isinstance(ctx["messageTimestamp"], int)
    # the environment of the instance
    names = ["FOO", "BAETYL_SERVICE_NAME", "BAETYL_SERVICE_INSTANCE_NAME", "BAETYL_SERVICE_INSTANCE_ADDRESS"]
    w.publish("e", json.dumps({"names": names}).encode())
    env = w.wait_json("e/out")[0]
    assert env["FOO"] == "bar" and env["BAETYL_SERVICE_NAME"] == "rt"
    assert env["BAETYL_SERVICE_INSTANCE_NAME"] == "rt.env.1"
    assert env["BAETYL_SERVICE_INSTANCE_ADDRESS"].startswith("127.0.0.1:")
    # a function the runtime does not have: a failed call, so the error JSON
    w.publish("g", b'{"x":1}')
    e = error_of(w.wait("g/out")[0][1])
    assert "function not found" in e["errorMessage"] and "NotFound" in e["errorMessage"], e
    assert e["functionMessage"]["FunctionName"] == "ghost"


def test_sql_runtime(app):
    a = app({"sql": ("sql", [("filter", "select qos() as qos, topic() as topic, * where id < 10"),
                             ("temp", "SELECT temperature, ts, unit WHERE temperature > 50")])},
            [fn("filter", "sql"), fn("temp", "sql"), fn("ghost", "sql")],
            [rule("t", "filter", "t/sqlfilter", qos_in=1, qos_out=1), rule("s", "temp", "s/out"),
             rule("g", "ghost", "g/out", retry=2)])
    w = a.w
    w.publish("t", b'{"id":1,"name":"a"}', qos=1)
    w.publish("t", b'{"id":20}', qos=1)     # WHERE false: nothing
    w.publish("t", b"not json", qos=1)      # not a JSON object: nothing
    w.publish("t", b"", qos=1)              # empty: nothing
    w.publish("t", b'{"id":2}', qos=0)
    # MQTT orders messages per QoS only: the QoS 0 output may overtake the QoS 1 one (whose
    # input waits for the hub's group commit), so they are compared by id.
    got = sorted(w.wait("t/sqlfilter", 2), key=lambda m: json.loads(m[1])["id"])
    assert [json.loads(p) for _, p, _ in got] == [{"qos": 1, "topic": "t", "id": 1, "name": "a"},
                                                {"qos": 0, "topic": "t", "id": 2}]
    assert [q for _, _, q in got] == [1, 0]  # min(input QoS, publish.qos)
    w.publish("s", b'{"temperature":60,"ts":1,"unit":"C","x":1}')
    w.publish("s", b'{"temperature":40,"ts":2,"unit":"C"}')
    w.publish("s", b'{"temperature":70.5,"ts":3}')
    assert w.wait_json("s/out", 2) == [{"temperature": 60, "ts": 1, "unit": "C"},
                                       {"temperature": 70.5, "ts": 3, "unit": None}]
    w.publish("g", b'{"id":1}')
    e = error_of(w.wait("g/out")[0][1])
    assert "function not found: (ghost)" in e["errorMessage"] and "Unknown" in e["errorMessage"], e
    time.sleep(0.5)
    assert len(w.on("t/sqlfilter")) == 2 and len(w.on("s/out")) == 2 and len(w.on("g/out")) == 1
    failed = [l for l in a.fm_log().splitlines()
              if 'msg="call failed"' in l and "service=function-manager" in l]
    assert len(failed) == 2, failed  # retry.max 2: two attempts in all


# ---- instances: on demand, max, idle, min, replaced ----------------------------------------

def test_instances_on_demand_bounded_and_evicted(app):
    a = app({"rt": ("python", [("sleep", "probe.sleep"), ("warm", "probe.echo")])},
            # concurrent 1: one call per instance, so six calls need both instances
            [fn("sleep", "rt", instance={"max": 2, "concurrent": 1, "idletime": "2s",
                                         "evicttime": "300ms"}),
             fn("warm", "rt", instance={"min": 1, "max": 3, "idletime": "1s", "evicttime": "300ms"})],
            [rule("s", "sleep", "s/out"), rule("w", "warm", "w/out")])
    w = a.w
    # min 1: started without any message and kept
    wait_for(lambda: "rt.warm.1" in a.running("rt"), 20, what="the min instance")
    assert a.instances("rt") == ["rt.warm.1"]
    seen, peak = set(), [0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            names = [n for n in a.instances("rt") if n.startswith("rt.sleep.")]
            seen.update(names)
            peak[0] = max(peak[0], len(names))
            time.sleep(0.05)
    t = threading.Thread(target=watch)
    t.start()
    try:
        t0 = time.monotonic()
        for i in range(6):
            w.publish("s", json.dumps({"seconds": 1, "n": i}).encode())
        outs = w.wait_json("s/out", 6, timeout=60)
        took = time.monotonic() - t0
    finally:
        stop.set()
        t.join()
    assert sorted(o["n"] for o in outs) == list(range(6))
    assert peak[0] == 2 and seen == {"rt.sleep.1", "rt.sleep.2"}, (peak, seen)
    assert took >= 2.9, "two instances, six calls of one second: at least three seconds"
    # idle for idletime: destroyed (checked every evicttime); the min instance stays
    wait_for(lambda: not any(n.startswith("rt.sleep.") for n in a.instances("rt")), 10,
             what="idle instances destroyed")
    assert a.instances("rt") == ["rt.warm.1"]
    wait_for(lambda: a.fm_log().count("reason=idle") == 2, 5, what="two idle instances stopped")
    w.publish("w", b'{"k":"v"}')
    assert w.wait_json("w/out")[0] == {"k": "v"}
    time.sleep(1.6)
    assert a.instances("rt") == ["rt.warm.1"]


def test_killed_instance_is_replaced_and_the_message_retried(app):
    a = app({"rt": ("python", [("sayhi", "index.handler")])}, [fn("sayhi", "rt")],
            [rule("t", "sayhi", "t/out", qos_in=1, qos_out=1)])
    w = a.w
    w.publish("t", b'{"id":1}', qos=1)
    w.wait("t/out")
    pid = a.running("rt")["rt.sayhi.1"]
    os.kill(pid, signal.SIGKILL)
    w.publish("t", b'{"id":2}', qos=1)
    second = w.wait_json("t/out", 2)[1]
    assert second["id"] == 2 and "errorMessage" not in second
    log = a.fm_log()
    assert any('msg="call failed"' in l and "service=function-manager" in l and "Unavailable" in l
               for l in log.splitlines()), log
    assert 'reason="call failed"' in log
    new = wait_for(lambda: a.running("rt").get("rt.sayhi.1"), 10, what="the new instance")
    assert new != pid


def test_hanging_runtime_times_out_and_is_replaced(app):
    a = app({"rt": ("python", [("sleep", "probe.sleep")])},
            [fn("sleep", "rt", timeout="1s")], [rule("s", "sleep", "s/out", retry=2)])
    w = a.w
    w.publish("s", b'{"seconds": 60}')
    e = error_of(w.wait("s/out", timeout=40)[0][1])
    assert "DeadlineExceeded" in e["errorMessage"], e
    assert a.fm_log().count('reason="call failed"') == 2
    w.publish("s", b'{"seconds": 0, "n": 7}')
    assert w.wait_json("s/out", 2)[1] == {"slept": 0, "n": 7}


CRASHER = """#!/bin/sh
mkdir -p data
echo "$BAETYL_SERVICE_INSTANCE_NAME $(date +%s.%N)" >> data/starts
echo "crasher: cannot start" >&2
exit 1
"""


def test_runtime_crashing_at_start_backs_off(app):
    a = app({"crash": ("script", [], {"image": "crasher", "script": CRASHER})},
            [fn("boom", "crash", timeout="1s", backoff={"max": "2s"})],
            [rule("b", "boom", "b/out", retry=2)])
    w = a.w
    t0 = time.monotonic()
    w.publish("b", b'{"n":1}')
    w.publish("b", b'{"n":2}')
    errs = [error_of(p) for _, p, _ in w.wait("b/out", 2, timeout=60)]
    took = time.monotonic() - t0
    for e, n in zip(errs, (1, 2)):
        assert "failed to connect to instance (crash.boom.1)" in e["errorMessage"], e
        assert json.loads(e["functionMessage"]["Payload"]) == {"n": n}
    log = a.fm_log()
    # four failed starts, waiting 0.5, 1, 2 s (capped) between them
    assert [l.split("backoff_ms=")[1].split()[0] for l in log.splitlines()
            if "instance failed to start" in l] == ["500", "1000", "2000", "2000"]
    # the waits between starts (each start also waits out the 1 s timeout, unless the
    # master reports the exit first: issue 14, point 4)
    assert took >= 0.5 + 1 + 2
    starts = a.m.read("var/db/data/starts", "").splitlines()
    assert 4 <= len(starts) <= 12, starts
    # nothing more is started while no message comes
    time.sleep(3)
    assert len(a.m.read("var/db/data/starts", "").splitlines()) <= len(starts) + 2


def test_runtime_failing_at_import_is_explained(app):
    """An instance that exits before serving: the manager says why (exit code, last output)
    as soon as the master reports the exit, not after the 30 s call timeout, and backs off."""
    a = app({"rt": ("python", [("broken", "broken.handler")])},
            [fn("broken", "rt", backoff={"max": "2s"})], [rule("b", "broken", "b/out", retry=1)])
    w = a.w
    w.publish("b", b'{"n":1}')

    def explained():
        return [ln for ln in a.fm_log().splitlines() if "instance exited before serving" in ln]
    try:
        # well within the call timeout (30 s): only the exit report can say it this soon
        lines = wait_for(explained, 15, what="the exit explained in the manager's log")
    except Exception:
        st, _ = a.m.request("GET", "/v1/services/rt/instances/rt.broken.1/logs?lines=5")
        if st == 404:
            pytest.skip("this master has no instance logs route yet (issue 14, point 4)")
        raise
    ln = lines[0]
    assert "level=error" in ln and "instance=rt.broken.1" in ln and "exit_code=1" in ln, ln
    assert "numpy_for_test" in ln and "ImportError" in ln, ln
    e = error_of(w.wait("b/out", timeout=20)[0][1])
    assert "exited (exit code 1) before serving" in e["errorMessage"], e
    assert "numpy_for_test" in e["errorMessage"], e
    # a second message waits out the backoff instead of starting an instance per message
    w.publish("b", b'{"n":2}')
    w.wait("b/out", 2, timeout=20)
    backoffs = [ln.split("backoff_ms=")[1].split()[0] for ln in a.fm_log().splitlines()
                if "instance failed to start" in ln]
    assert backoffs[:2] == ["500", "1000"], backoffs


# ---- order under concurrency (issue 17) ------------------------------------------------------

@pytest.mark.parametrize("qos", [0, 1])
def test_outputs_leave_in_input_order_with_calls_in_flight_and_retries(app, qos):
    """Two instances serving four calls each: calls end out of order, and every tenth input
    fails once (its instance is replaced, the input retried); outputs still leave in input
    order, each once, and at QoS 1 every input is acknowledged."""
    a = app({"rt": ("python", [("jitter", "probe.jitter")])},
            [fn("jitter", "rt", instance={"max": 2, "concurrent": 4})],
            [rule("j", "jitter", "j/out", qos_in=qos, qos_out=qos, retry=3)])
    w = a.w
    n = 40
    for i in range(n):
        w.publish("j", json.dumps({"n": i, "fail": i % 10 == 3}).encode(), qos=qos)
    outs = w.wait_json("j/out", n, timeout=90)
    assert [o.get("n") for o in outs] == list(range(n)), outs
    log = a.fm_log()
    assert log.count('msg="call failed"') >= 4, log  # the retries happened
    time.sleep(0.5)
    assert len(w.on("j/out")) == n  # nothing more: each output once


def test_sql_outputs_in_order_at_qos1_under_load(app):
    a = app({"rt": ("sql", [("pick", "select n")])},
            [fn("pick", "rt", instance={"max": 2})],
            [rule("p", "pick", "p/out", qos_in=1, qos_out=1)])
    w = a.w
    n = 500
    publish_all(w, "p", numbered(n), qos=1)
    outs = w.wait_json("p/out", n, timeout=90)
    assert [o["n"] for o in outs] == list(range(n))



@pytest.mark.parametrize("buffersize", [1, 100])
def test_sequential_then_burst_in_order_whichever_thread_publishes(app, buffersize):
    """One input at a time, a sequential caller's pattern (each completion then runs on the
    gRPC client's thread, which publishes the result itself when the rule's hub connection
    has room; with hub.buffersize 1 it never has, and hands the result to the completer),
    then a burst with calls in flight: every output once and in input order, at QoS 1."""
    a = app({"rt": ("sql", [("pick", "select n")])}, [fn("pick", "rt")],
            [rule("s", "pick", "s/out", qos_in=1, qos_out=1)], fm_hub={"buffersize": buffersize})
    w = a.w
    seq, n = 30, 300
    for i in range(seq):
        w.publish("s", json.dumps({"n": i}).encode(), qos=1)
        w.wait("s/out", i + 1, timeout=20)
    publish_all(w, "s", [json.dumps({"n": i}).encode() for i in range(seq, n)], qos=1)
    outs = w.wait_json("s/out", n, timeout=90)
    assert [o["n"] for o in outs] == list(range(n))
    time.sleep(0.5)
    assert len(w.on("s/out")) == n  # each output once

# ---- QoS 1: no loss across a function-manager crash -------------------------------------------

def test_qos1_survives_a_function_manager_kill(app):
    # A function slower than the publisher, so that many inputs are received and not yet
    # answered when the function-manager dies.
    a = app({"rt": ("python", [("slow", "probe.sleep")])}, [fn("slow", "rt")],
            [rule("in", "slow", "out", qos_in=1, qos_out=1)],
            fm_service={"restart": {"policy": "always", "backoff": {"min": "500ms", "max": "1s"}}})
    w = a.w
    n = 300
    w.publish("in", json.dumps({"seconds": 0, "n": -1}).encode(), qos=1)
    w.wait("out")  # the instance is up
    fm_pid = a.m.running_pid("function-manager")
    for i in range(n):
        w.publish("in", json.dumps({"seconds": 0.005, "n": i}).encode(), qos=1)
        if i == 150:
            os.kill(fm_pid, signal.SIGKILL)
        time.sleep(0.003)
    wait_for(lambda: a.m.running_pid("function-manager") not in (None, fm_pid), 20,
             what="the function-manager restarted")

    def complete():
        got = {json.loads(p)["n"] for _, p, _ in w.on("out")}
        return got >= set(range(n))
    wait_for(complete, 60, interval=0.2, what="every input's output")
    assert all(q == 1 for _, _, q in w.on("out"))
    assert "leftover instance stopped" in a.fm_log()


# ---- bad input ------------------------------------------------------------------------------

def test_bad_payloads(app):
    a = app({"rt": ("python", [("sayhi", "index.handler")])},
            [fn("sayhi", "rt", message={"length": {"max": "16k"}})],
            [rule("t", "sayhi", "t/out")], hub_extra="message: {length: {max: 1m}}\n")
    w = a.w
    # larger than the function's message.length.max: refused without an instance
    w.publish("t", b'{"k":"' + b"x" * 17000 + b'"}')
    e = error_of(w.wait("t/out")[0][1])
    assert "message too large" in e["errorMessage"] and len(e["functionMessage"]["Payload"]) == 17008
    assert a.instances("rt") == []
    # invalid UTF-8: the seed's handler decodes it and fails
    w.publish("t", b"\xff\xfe{bad")
    e = error_of(w.wait("t/out", 2)[1][1])
    assert "[UserCodeInvoke]" in e["errorMessage"] and e["functionMessage"]["Payload"] == b"\xff\xfe{bad"
    # deeply nested JSON: handled (as bytes or as a list), no harm done
    w.publish("t", b"[" * 5000 + b"]" * 5000)
    w.wait("t/out", 3)
    w.publish("t", b'{"id":9}')
    assert w.wait_json("t/out", 4)[3]["id"] == 9


# ---- results and errors over the hub's message.length.max -----------------------------------

def test_oversized_result_does_not_jam_the_rule(app):
    """A QoS 1 input whose result is larger than the hub takes (the hub would close the
    connection, the input would come back forever): a short error takes the result's place,
    the input is parked on the dead-letter topic and acknowledged, and the rule goes on. A
    failed call's error JSON is cut to the limit too; a QoS 0 rule reports its oversized
    result the same way."""
    a = app({"rt": ("python", [("big", "probe.big"), ("sayhi", "index.handler")])},
            [fn("big", "rt"), fn("sayhi", "rt")],
            [rule("in", "big", "out", qos_in=1, qos_out=1, deadletter="dead"),
             rule("in0", "big", "out0"),
             rule("e", "sayhi", "e/out", qos_in=1, qos_out=1, retry=1)],
            hub_extra="message: {length: {max: 4k}}\n",
            fm_hub={"message": {"length": {"max": "4k"}}})
    w = a.w
    w.publish("in", json.dumps({"size": 10000, "n": -1}).encode(), qos=1)
    e = error_of(w.wait("out")[0][1])
    assert "result too large: 10000 bytes" in e["errorMessage"], e
    assert "hub.message.length.max" in e["errorMessage"]
    fm = e["functionMessage"]
    assert fm["Payload"] == b'{"size": 10000, "n": -1}' and fm["Topic"] == "in"
    assert is_uuid4(fm["FunctionInvokeID"])
    parked = w.wait("dead")[0]
    assert parked[1] == b'{"size": 10000, "n": -1}' and parked[2] == 1
    for i in range(5):
        w.publish("in", json.dumps({"size": 10, "n": i}).encode(), qos=1)
    got = w.wait("out", 6)[1:]
    assert [p for _, p, _ in got] == [b"x" * 10] * 5
    # the input was acknowledged: nothing comes again
    time.sleep(1)
    assert len(w.on("out")) == 6 and len(w.on("dead")) == 1

    # QoS 0: not lost silently either
    w.publish("in0", json.dumps({"size": 5000}).encode())
    e = error_of(w.wait("out0")[0][1])
    assert "result too large: 5000 bytes" in e["errorMessage"]

    # a failed call quoting a large input: its error JSON stays within the limit
    w.publish("e", json.dumps({"err": "e" * 3500}).encode(), qos=1)
    payload = w.wait("e/out")[0][1]
    assert len(payload) <= 4096
    e = error_of(payload)
    assert "[UserCodeInvoke]" in e["errorMessage"]
    assert e["functionMessage"]["PayloadTruncated"] is True
    assert e["functionMessage"]["PayloadSize"] == len(json.dumps({"err": "e" * 3500}))
    w.publish("e", b'{"id":3}', qos=1)
    assert json.loads(w.wait("e/out", 2)[1][1])["id"] == 3

    lines = a.fm_log().splitlines()
    big = [ln for ln in lines if 'msg="function result too large"' in ln]
    assert len(big) == 2 and all("total=1" in ln for ln in big), big
    assert sum('msg="input parked on the dead-letter topic"' in ln for ln in lines) == 1
    a.m.stop()
    totals = [ln for ln in a.fm_log().splitlines() if 'msg="rule totals"' in ln]
    assert any("rule=r-big-in " in ln and "oversized=1 parked=1" in ln for ln in totals), totals
    assert any("rule=r-big-in0 " in ln and "oversized=1 parked=0" in ln for ln in totals), totals
    fn_totals = [ln for ln in a.fm_log().splitlines() if 'msg="function totals"' in ln]
    assert any("function=big " in ln and "peak=1" in ln for ln in fn_totals), fn_totals


def test_oversized_result_with_the_hubs_default_limit(app):
    """Nothing configured: the function-manager assumes the hub's default 32k."""
    a = app({"rt": ("python", [("big", "probe.big")])}, [fn("big", "rt")],
            [rule("in", "big", "out", qos_in=1, qos_out=1)])
    w = a.w
    w.publish("in", json.dumps({"size": 40000}).encode(), qos=1)
    e = error_of(w.wait("out")[0][1])
    assert "result too large: 40000 bytes, the hub takes at most 32761" in e["errorMessage"], e
    for i in range(5):
        w.publish("in", json.dumps({"size": 20000 + i}).encode(), qos=1)
    got = w.wait("out", 6)[1:]
    assert sorted(len(p) for _, p, _ in got) == [20000 + i for i in range(5)]


# ---- the gRPC server ------------------------------------------------------------------------

def test_grpc_server_routes_by_function_name(app):
    port = free_port()
    a = app({"rt": ("python", [("sayhi", "index.handler")])}, [fn("sayhi", "rt")], [],
            fm_extra={"server": {"address": f"127.0.0.1:{port}"}})
    wait_port(port)
    c = Client(f"127.0.0.1:{port}")
    try:
        out = c.call("sayhi", b'{"id":5}', Topic="x", QOS=1, FunctionInvokeID="abc")
        res = json.loads(out.Payload)
        assert res["id"] == 5 and res["functionName"] == "sayhi" and res["messageTopic"] == "x"
        assert res["functionInvokeID"] == "abc" and out.FunctionInvokeID == "abc"
        # no invoke id: one is made
        res = json.loads(c.call("sayhi", b'{}').Payload)
        assert is_uuid4(res["functionInvokeID"])
        with pytest.raises(grpc.RpcError) as ei:
            c.call("nope", b"{}")
        assert ei.value.code() == grpc.StatusCode.UNKNOWN
        assert ei.value.details() == "function (nope) not found"
        assert a.instances("rt") == ["rt.sayhi.1"]
        # one attempt; a failed call destroys the instance, the next call starts another
        with pytest.raises(grpc.RpcError) as ei:
            c.call("sayhi", b'{"err":"bad"}')
        assert "[UserCodeInvoke]" in ei.value.details()
        assert a.instances("rt") == []
        assert json.loads(c.call("sayhi", b'{"id":6}').Payload)["id"] == 6
        assert a.instances("rt") == ["rt.sayhi.1"]
    finally:
        c.close()


# ---- config and environment errors (standalone) -----------------------------------------------

@pytest.mark.parametrize("conf,want", [
    ("hub: {address: 'tcp://127.0.0.1:1'}\nfunctions: [{name: f, service: s}]\n"
     "rules: [{subscribe: {topic: t}, function: {name: g}, publish: {topic: o}}]\n",
     "rules[0].function.name: function (g) not found"),
    ("hub: {address: 'tcp://127.0.0.1:1'}\nfunctions: [{name: f, service: s, instance: {max: 0}}]\n",
     "functions[0].instance.max"),
    ("functions: []\n", "hub.address: required"),
    ("hub: {address: 'tcp://127.0.0.1:1'}\nfunctions: [{name: f, service: s}]\n"
     "rules: [{subscribe: {topic: t}, function: {name: f}, publish: {topic: o}, deadletter: 'd/#'}]\n",
     "rules[0].deadletter: topic (d/#) invalid"),
    ("hub: {address: 'tcp://127.0.0.1:1'}\nfunctions: [{name: f, service: s}]\n",
     "the master API is needed to start function instances"),
])
def test_refused_at_start(tmp_path, conf, want):
    p = tmp_path / "service.yml"
    p.write_text(conf)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAETYL_", "OPENEDGE_"))}
    r = subprocess.run([binary("baetyl-function-manager"), "-c", str(p)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r
    assert want in r.stderr, r.stderr
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr


# ---- the seed's chapter 9 example, as `make install MODE=native` lays it out ------------------

def test_chapter9_example(master):  # noqa: F811
    m = master()
    src = os.path.join(SRC, "example", "native", "var")
    shutil.copytree(src, m.path("var"), dirs_exist_ok=True)
    port = free_port()
    for rel, old, new in [("var/db/baetyl/localhub-conf/service.yml", "tcp://0.0.0.0:1883", f"tcp://127.0.0.1:{port}"),
                          ("var/db/baetyl/function-manager-conf/service.yml", "tcp://127.0.0.1:1883", f"tcp://127.0.0.1:{port}")]:
        text = m.read(rel)
        assert old in text, rel
        m.write(rel, text.replace(old, new))
    for image in ("baetyl-hub", "baetyl-function-manager", "baetyl-function-sql",
                  "baetyl-function-python", "baetyl-function-node"):
        install_package(m, image)
    m.start()
    wait_port(port, timeout=20)
    w = Watcher(port)
    try:
        wait_for(lambda: "rule connected" in m.read("var/db/baetyl/function-manager-log/service.log", ""),
                 20, what="function-manager connected")
        time.sleep(0.5)
        w.publish("t", b'{"id":1}', qos=1)
        topic = w.wait_json("t/topic")[0]
        py = w.wait_json("t/py3hi")[0]
        node = w.wait_json("t/node8hi")[0]
        sql = w.wait_json("t/sqlfilter")[0]
    finally:
        w.close()
    assert topic == {"id": 1}
    for out, name in ((py, "python36-sayhi"), (node, "node85-sayhi")):
        assert out["id"] == 1 and out["Say"] == "Hello Baetyl" and out["functionName"] == name
        assert out["messageTopic"] == "t" and out["messageQOS"] == 0 and is_uuid4(out["functionInvokeID"])
    assert sql == {"qos": 1, "topic": "t", "id": 1}
    assert sorted(i["name"] for s in m.inspect()["services"] for i in s.get("instances", [])) == [
        "function-manager", "function-node85-sayhi.node85-sayhi.1",
        "function-python36-sayhi.python36-sayhi.1", "function-sql-filter.sql-filter.1", "localhub"]


# ---- instance addressing and leftovers, against a fake master API ----------------------------

class FakeMaster:
    """A master API on tcp that records the calls (no instance really starts)."""

    def __init__(self):
        import http.server
        calls = self.calls = []
        inspect = {"services": [
            {"name": "rt", "instances": [{"name": "rt.f.3"}, {"name": "rt.f.x"}, {"name": "rt.g.1"},
                                         {"name": "rt.f.12"}]},
            {"name": "other", "instances": [{"name": "other.f.1"}]}]}

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self, body):
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                calls.append(("GET", self.path, self.headers.get("x-openedge-username"), None))
                self.answer(inspect if self.path == "/v1/system/inspect" else {"port": "45678"})

            def do_PUT(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"null")
                calls.append(("PUT", self.path, self.headers.get("x-openedge-username"), body))
                self.answer({})
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.mark.parametrize("mode", ["native", "docker"])
def test_instance_addresses_and_leftovers(tmp_path, procs, hub, mode):
    api = FakeMaster()
    try:
        conf = {"hub": {"address": f"tcp://127.0.0.1:{hub.port}", "username": "test", "password": "hahaha"},
                "functions": [{"name": "f", "service": "rt", "timeout": "500ms", "backoff": {"max": "500ms"}}],
                "rules": [{"clientid": "r1", "subscribe": {"topic": "t"}, "function": {"name": "f"},
                           "publish": {"topic": "t/out"}, "retry": {"max": 1}}]}
        (tmp_path / "service.yml").write_text(json.dumps(conf))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BAETYL_", "OPENEDGE_"))}
        env.update(BAETYL_MASTER_API_ADDRESS=f"tcp://127.0.0.1:{api.port}", BAETYL_SERVICE_NAME="fm",
                   BAETYL_SERVICE_TOKEN="tok", BAETYL_SERVICE_MODE=mode)
        log = tmp_path / "fm.log"
        with open(log, "wb") as out:
            p = procs.start([binary("baetyl-function-manager"), "-c", str(tmp_path / "service.yml")],
                            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
            w = Watcher(hub.port)
            try:
                wait_for(lambda: "rule connected" in log.read_text(), 20, what="rule connected")
                # leftovers of a crashed run: rt.f.<n> only
                stops = [c[1] for c in api.calls if c[1].endswith("/stop")]
                assert stops == ["/v1/services/rt/instances/rt.f.3/stop",
                                 "/v1/services/rt/instances/rt.f.12/stop"], api.calls
                w.publish("t", b"{}")
                e = error_of(w.wait("t/out")[0][1])
            finally:
                w.close()
            assert procs.stop(p) == 0
        text = log.read_text()
        assert "Sanitizer" not in text and "runtime error" not in text, text
        starts = [c for c in api.calls if c[1].endswith("/start")]
        assert starts and all(c[2] == "fm" for c in api.calls)
        assert starts[0][1] == "/v1/services/rt/instances/rt.f.1/start"
        if mode == "native":
            assert ("GET", "/v1/ports/available", "fm", None) in api.calls
            assert starts[0][3] == {"BAETYL_SERVICE_INSTANCE_ADDRESS": "127.0.0.1:45678"}
            assert "failed to connect to instance (rt.f.1): connect to 127.0.0.1:45678 timed out" in e["errorMessage"]
        else:
            assert not any(c[1] == "/v1/ports/available" for c in api.calls)
            assert starts[0][3] == {"BAETYL_SERVICE_INSTANCE_ADDRESS": "0.0.0.0:50051"}
            assert "failed to connect to instance (rt.f.1): connect to rt.f.1:50051 timed out" in e["errorMessage"]
        # a failed start is cleaned up
        assert "/v1/services/rt/instances/rt.f.1/stop" in [c[1] for c in api.calls]
    finally:
        api.close()


def test_refused_subscription_with_validatesubs_exits(tmp_path, procs, hub):
    """validatesubs: a subscription the hub refuses is fatal: exit 1, the master restarts."""
    api = FakeMaster()
    try:
        conf = {"hub": {"address": f"tcp://127.0.0.1:{hub.port}", "username": "limited",
                        "password": "secret", "validatesubs": True},
                "functions": [{"name": "f", "service": "rt"}],
                "rules": [{"clientid": "ok", "subscribe": {"topic": "a/b"}, "function": {"name": "f"},
                           "publish": {"topic": "a/out"}},
                          {"clientid": "refused", "subscribe": {"topic": "secret/x"},
                           "function": {"name": "f"}, "publish": {"topic": "a/out2"}}]}
        (tmp_path / "service.yml").write_text(json.dumps(conf))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BAETYL_", "OPENEDGE_"))}
        env.update(BAETYL_MASTER_API_ADDRESS=f"tcp://127.0.0.1:{api.port}", BAETYL_SERVICE_NAME="fm")
        r = subprocess.run([binary("baetyl-function-manager"), "-c", str(tmp_path / "service.yml")],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, r
        assert 'msg="rule stopped"' in r.stderr and "rule=refused" in r.stderr, r.stderr
        assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    finally:
        api.close()
