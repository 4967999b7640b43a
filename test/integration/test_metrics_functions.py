"""Function-manager metrics (issue 19): invocations by result, retries, the latency
histogram and live instances reach the master's /metrics through the report route."""
from conftest import wait_for
from master_harness import master  # noqa: F401  (fixture)
from test_function_manager import app, fn, rule  # noqa: F401  (fixture)
from test_metrics import sample


def test_invocations_errors_retries_and_instances(app):  # noqa: F811
    a = app({"sql": ("sql", [("pass", "select *")])},
            [fn("pass", "sql"), fn("ghost", "sql")],
            [rule("p", "pass", "p/out"), rule("g", "ghost", "g/out", retry=3)],
            fm_extra={"status": {"report": {"interval": "300ms"}}})
    w = a.w
    for i in range(3):
        w.publish("p", b'{"id":%d}' % i)
    w.publish("g", b'{"id":1}')
    w.wait("p/out", 3)
    w.wait("g/out", 1)

    def text():
        st, body = a.m.request("GET", "/metrics")
        assert st == 200
        return body

    fm = {"service": "function-manager"}
    def counted():
        t = text()
        ok = sample(t, "baetyl_function_invocations_total", function="pass", result="ok", **fm)
        bad = sample(t, "baetyl_function_invocations_total", function="ghost", result="error")
        return t if (ok, bad) == (3, 1) else None
    t = wait_for(counted, 15, what="3 invocations and a failure counted")
    assert sample(t, "baetyl_function_retries_total", function="ghost") == 2
    assert sample(t, "baetyl_function_retries_total", function="pass") == 0
    assert sample(t, "baetyl_function_invocation_duration_seconds_count", function="pass") == 3
    assert sample(t, "baetyl_function_invocation_duration_seconds_bucket", function="pass",
                  le="+Inf") == 3
    assert sample(t, "baetyl_function_instances", function="pass") >= 1
    assert sample(t, "baetyl_function_instances_starting", function="pass") == 0
