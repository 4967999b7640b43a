"""Images from a site's registry (Debian's docker-registry) instead of `docker load` on every
node: pushed once from the manager, pulled by the worker the swarm places the service on."""
import shutil
import time

import pytest

from test_swarm_engine import SwarmMaster

APP = """version: V1
services:
  - name: a
    image: {image}
    replica: 1
    args: ['/bin/busybox', 'sleep', '3600']
    placement: {{constraints: ['node.role==worker']}}
"""


def test_worker_pulls_from_a_local_registry(make_swarm):
    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry is not installed (scripts/deps.sh)")
    s = make_swarm(2)
    reg = s.start_registry()
    image = f"{reg}/busybox:1"
    worker = s.nodes[1]
    s.import_busybox(image, nodes=[s.leader])
    s.leader.docker("push", image, check=True)
    assert worker.docker("image", "inspect", image).returncode != 0, "not there before"
    m = SwarmMaster(s.leader)
    try:
        open(m.path("var/db/baetyl/application.yml"), "w").write(APP.format(image=image))
        m.start()
        deadline = time.monotonic() + 60
        while not any(t["state"].startswith("Running") for t in s.tasks("a")):
            assert time.monotonic() < deadline, (s.tasks("a"), m.logs())
            time.sleep(1)
        assert worker.docker("image", "inspect", image).returncode == 0, "pulled by the worker"
        r = m.cli("status", "--json")
        assert r.returncode == 0 and worker.node_id in r.stdout, r.stdout
    finally:
        m.cleanup()
