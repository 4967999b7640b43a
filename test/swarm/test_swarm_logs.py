"""The output of a swarm service that ended for good: logged by the master (at warn, it
failed), kept for `baetyl logs` after the swarm service is removed."""
import time

from test_swarm_engine import SwarmMaster

APP = """version: V1
services:
  - name: once
    image: local/busybox:1
    replica: 1
    restart: {policy: 'no'}
    args: ['/bin/busybox', 'sh', '-c', 'echo hello-from-once; echo oops >&2; exit 3']
    placement: {constraints: ['node.role==worker']}
"""


def test_ended_service_output_is_kept(make_swarm):
    s = make_swarm(2)
    s.import_busybox()
    m = SwarmMaster(s.leader)
    try:
        open(m.path("var/db/baetyl/application.yml"), "w").write(APP)
        m.start()
        deadline = time.monotonic() + 60
        while "swarm service (once) ended" not in m.log() or s.services():
            assert time.monotonic() < deadline, (s.tasks("once"), m.logs())
            time.sleep(1)
        warn = [ln for ln in m.log().splitlines() if "level=warning" in ln]
        assert any("hello-from-once" in ln for ln in warn), m.logs()
        r = m.cli("logs", "once", "-n", "10")
        assert r.returncode == 0, r.stderr
        assert "hello-from-once" in r.stdout and "oops" in r.stdout, r.stdout
    finally:
        m.cleanup()
