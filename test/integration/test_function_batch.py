"""Several messages per gRPC call (CallBatch, issue 17): the function-manager sends an
instance what is queued for it in one call when the runtime serves CallBatch, and one
message per Call to a runtime that does not (Baetyl 1.0's); each message keeps its own
result or error, outputs leave in input order and failed messages are retried alone.
Real master, hub, function-manager and runtimes, as in test_function_manager.py."""
import json
import re
import time

import pytest

from test_function_manager import app, fn, rule  # noqa: F401  (fixture, helpers)
from master_harness import master  # noqa: F401  (fixture)
from fm_harness import error_of, numbered, publish_all

NO_BATCH = {"env": {"BAETYL_RUNTIME_NO_CALLBATCH": "1"}}


def batch_sizes(log):
    return [int(n) for n in re.findall(r'msg="batch called".*?messages=(\d+)', log)]


@pytest.mark.parametrize("kind", ["python", "node"])
def test_batches_keep_each_messages_result_and_error(app, kind):  # noqa: F811
    """Inputs queued while the one instance starts go in batches; two bad inputs among them
    get their own error JSON (after their retry), every other input its own result, all in
    input order, each once, and the QoS 1 inputs are acknowledged."""
    a = app({"rt": (kind, [("sayhi", "index.handler")])},
            [fn("sayhi", "rt", instance={"max": 1, "concurrent": 1})],
            [rule("t", "sayhi", "t/out", qos_in=1, qos_out=1, retry=2)])
    w = a.w
    n, bad = 120, {7, 90}
    publish_all(w, "t", [json.dumps({"err": f"boom {i}"}).encode() if i in bad else p
                         for i, p in enumerate(numbered(n))], qos=1)
    outs = w.wait("t/out", n, timeout=90)
    for i, (_, payload, qos) in enumerate(outs):
        assert qos == 1
        if i in bad:
            e = error_of(payload)
            assert "[UserCodeInvoke]" in e["errorMessage"] and f"boom {i}" in e["errorMessage"], e
            assert "code = Unknown" in e["errorMessage"] and e["errorType"] == "*errors.Err", e
            assert json.loads(e["functionMessage"]["Payload"]) == {"err": f"boom {i}"}
        else:
            out = json.loads(payload)
            assert out["n"] == i and out["Say"] == "Hello Baetyl", out
    log = a.fm_log()
    assert max(batch_sizes(log), default=0) > 1, "no batch of several messages"
    assert "instance has no CallBatch" not in log
    # each bad input failed twice (retry 2), alone: nobody else's attempt failed
    failed = re.findall(r'msg="call failed".*', log)
    assert len(failed) == 2 * len(bad), failed
    assert all("boom" in ln for ln in failed), failed
    time.sleep(0.5)
    assert len(w.on("t/out")) == n  # each output once


@pytest.mark.parametrize("kind", ["python", "node"])
def test_runtime_without_callbatch_gets_one_message_per_call(app, kind):  # noqa: F811
    """A runtime that serves Call only (Baetyl 1.0's): its Unimplemented answer is
    remembered for the instance, whose inputs then go one per Call, none lost or
    reordered, none counted as a failure."""
    a = app({"rt": (kind, [("sayhi", "index.handler")], dict(NO_BATCH))},
            [fn("sayhi", "rt", instance={"max": 1, "concurrent": 2})],
            [rule("t", "sayhi", "t/out", qos_in=1, qos_out=1, retry=1)])
    w = a.w
    n = 80
    publish_all(w, "t", numbered(n), qos=1)
    outs = w.wait_json("t/out", n, timeout=90)
    assert [o["n"] for o in outs] == list(range(n))
    log = a.fm_log()
    assert log.count("instance has no CallBatch") == 1, log
    assert batch_sizes(log) == []
    assert 'msg="call failed"' not in log
    assert a.instances("rt") == ["rt.sayhi.1"]  # not replaced


def test_order_with_batches_in_flight_and_retries(app):  # noqa: F811
    """Two instances with two calls each, batches of inputs that take different times,
    every seventh input failing on its first attempt (its instance replaced, the input
    retried on its own): outputs leave in input order, each once."""
    a = app({"rt": ("python", [("jitter", "probe.jitter")])},
            [fn("jitter", "rt", instance={"max": 2, "concurrent": 2})],
            [rule("j", "jitter", "j/out", qos_in=1, qos_out=1, retry=3)])
    w = a.w
    n = 60
    publish_all(w, "j", [json.dumps({"n": i, "fail": i % 7 == 3}).encode() for i in range(n)],
                qos=1)
    outs = w.wait_json("j/out", n, timeout=90)
    assert [o.get("n") for o in outs] == list(range(n)), outs
    log = a.fm_log()
    assert max(batch_sizes(log), default=0) > 1, "no batch of several messages"
    assert log.count('msg="call failed"') >= n // 7, log
    time.sleep(0.5)
    assert len(w.on("j/out")) == n


def test_sql_batches(app):  # noqa: F811
    """The SQL runtime (the C SDK's server) serves CallBatch; an input that gives no result
    (not JSON) publishes nothing and holds nothing back."""
    a = app({"rt": ("sql", [("pick", "select n")])},
            [fn("pick", "rt", instance={"max": 1, "concurrent": 1})],
            [rule("p", "pick", "p/out", qos_in=1, qos_out=1, retry=1)])
    w = a.w
    n = 300
    payloads = numbered(n)
    payloads[150] = b"not json"
    # a burst (PUBACKs awaited after the last publish, not one by one): inputs queue up while
    # the instance starts and a call is in flight, as batching needs
    infos = [w.c.publish("p", p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)
    outs = w.wait_json("p/out", n - 1, timeout=90)
    assert [o["n"] for o in outs] == [i for i in range(n) if i != 150]
    assert max(batch_sizes(a.fm_log()), default=0) > 1
