"""Agent metrics (issue 19): the last report to the cloud, reports by result, the OTA state
and the client certificate's expiry reach the master's /metrics."""
from conftest import wait_for
from master_harness import master  # noqa: F401  (fixture)
from test_agent import certs, env  # noqa: F401  (fixtures)
from test_metrics import sample


def test_agent_reports_its_last_report_and_certificate(env):  # noqa: F811
    e = env().start()
    wait_for(e.cloud.last_report, 20, what="a report")

    def text():
        st, body = e.m.request("GET", "/metrics")
        assert st == 200
        return body
    ag = {"service": "agent"}
    wait_for(lambda: (sample(text(), "baetyl_agent_reports_total", result="ok", **ag) or 0) >= 1,
             20, what="a successful report counted")
    t = text()
    assert sample(t, "baetyl_agent_last_report_success", **ag) == 1
    assert sample(t, "baetyl_agent_last_report_timestamp_seconds", **ag) > 1.6e9
    assert sample(t, "baetyl_agent_ota_in_progress", **ag) == 0
    assert sample(t, "baetyl_tls_cert_expires_in_seconds", use="remote.mqtt", **ag) > 86400
