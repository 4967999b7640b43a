"""mode swarm on a real 2-node swarm (conftest.swarm2): the main example (hub, function-manager,
Python and SQL runtimes) with the hub pinned by a node label to node 1 and the functions to
node 2; a message published to the hub makes the function-manager start its runtimes there.
The master runs in node 1's namespace (its API on node 1's address, which the instances on
node 2 call); the test's MQTT clients run there too, where the hub's port is published."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BUILD, SRC

API_PORT = 18080  # inside the run's own namespace: no clash with anything else
METRICS_PORT = 18081  # the master's /metrics, same namespace


def binary(name):
    return os.path.join(BUILD, "bin", name)


APP = """version: V2
services:
  - name: localhub
    image: baetyl-hub
    replica: 1
    ports:
      - 1883:1883
    placement:
      constraints: ['node.labels.line==1']
    mounts:
      - {name: localhub-conf, path: etc/baetyl, readonly: true}
      - {name: localhub-data, path: var/db/baetyl/data}
      - {name: localhub-log, path: var/log/baetyl}
  - name: function-manager
    image: baetyl-function-manager
    replica: 1
    placement:
      constraints: ['node.labels.line==2']
    mounts:
      - {name: function-manager-conf, path: etc/baetyl, readonly: true}
      - {name: function-manager-log, path: var/log/baetyl}
  - name: function-python36-sayhi
    image: baetyl-function-python
    replica: 0
    placement:
      constraints: ['node.labels.line==2']
    mounts:
      - {name: function-sayhi-conf, path: etc/baetyl, readonly: true}
      - {name: function-sayhi-code, path: var/db/baetyl/function-sayhi, readonly: true}
  - name: function-sql-filter
    image: baetyl-function-sql
    replica: 0
    placement:
      constraints: ['node.labels.line==2']
    mounts:
      - {name: function-filter-conf, path: etc/baetyl, readonly: true}
volumes:
"""
VOLUMES = ("localhub-conf", "localhub-data", "localhub-log", "function-manager-conf",
           "function-manager-log", "function-sayhi-conf", "function-sayhi-code",
           "function-filter-conf")


class SwarmMaster:
    """A master in mode swarm in node's namespace, its work dir a temp dir of the example."""

    def __init__(self, node):
        self.node = node
        self.dir = tempfile.mkdtemp(prefix="bsw-master-", dir="/tmp")
        self.proc = None
        src = os.path.join(SRC, "example", "docker", "var")
        shutil.copytree(src, os.path.join(self.dir, "var"))
        fm = self.path("var/db/baetyl/function-manager-conf/service.yml")
        text = open(fm).read()
        # the Node runtime is not part of this example: its rule and function go
        text = text.split("  - clientid: func-node85-sayhi-1")[0] + "functions:" + \
            text.split("functions:")[1].split("  - name: node85-sayhi")[0]
        open(fm, "w").write(text)
        app = APP + "".join(f"  - name: {v}\n    path: var/db/baetyl/{v}\n" for v in VOLUMES)
        open(self.path("var/db/baetyl/application.yml"), "w").write(app)
        os.makedirs(self.path("etc/baetyl"), exist_ok=True)
        open(self.path("etc/baetyl/conf.yml"), "w").write(
            f"mode: swarm\ngrace: 5s\nserver:\n  address: tcp://{node.addr}:{API_PORT}\n"
            f"metrics:\n  address: tcp://{node.addr}:{METRICS_PORT}\n"
            "docker:\n  api_version: '1.38'\nlogger:\n  path: var/log/baetyl/baetyl.log\n"
            "  level: debug\n")

    def path(self, rel):
        return os.path.join(self.dir, rel)

    def env(self):
        return dict(os.environ, DOCKER_HOST=self.node.host)

    def log(self):
        try:
            return open(self.path("var/log/baetyl/baetyl.log"), errors="replace").read()
        except OSError:
            return ""

    def logs(self):
        """The master's log and the function-manager's, for a failure's message."""
        fm = self.path("var/db/baetyl/function-manager-log/service.log")
        fm = open(fm, errors="replace").read() if os.path.exists(fm) else ""
        return f"master:\n{self.log()[-6000:]}\nfunction-manager:\n{fm[-4000:]}"

    def start(self):
        self.out = open(self.path("master.out"), "w")
        self.proc = subprocess.Popen(self.node.in_ns(binary("baetyl"), "start", "-w", self.dir),
                                     env=self.env(), stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while "services started" not in self.log():
            assert self.proc.poll() is None, open(self.path("master.out")).read() + self.log()
            assert time.monotonic() < deadline, self.log()[-4000:]
            time.sleep(0.5)

    def cli(self, *args):
        return subprocess.run(self.node.in_ns(binary("baetyl"), *args, "-w", self.dir),
                              capture_output=True, text=True, timeout=60, env=self.env())

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            self.out.close()
            out = open(self.path("master.out"), errors="replace").read()
            assert "Sanitizer" not in out, out[-4000:]  # the sanitizer build stays silent

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def master(swarm2):
    m = SwarmMaster(swarm2.leader)
    yield m
    m.stop()
    # whatever the master left (a killed master leaves its services running) goes
    mgr = swarm2.manager()
    names = swarm2.services()
    if names:
        mgr.docker("service", "rm", *names)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
            nd.docker("ps", "-q", "--filter", "label=baetyl=baetyl").stdout.strip()
            for nd in swarm2.nodes if nd.proc and nd.proc.poll() is None):
        time.sleep(1)
    m.cleanup()


def round_trip(node, timeout=120):
    """Publishes {"id": 1} to t on the hub (through node's namespace) until answers come back
    on t/py3hi and t/sqlfilter (the first call may find the runtimes still starting); returns
    {topic: payload}. mosquitto_sub gives up when its first connection fails (the hub's task
    runs before the hub listens): a subscriber that ended is started again."""
    got, subs = {}, []

    def read(sub):
        for ln in sub.stdout:
            if " " in ln:
                t, payload = ln.rstrip("\n").split(" ", 1)
                got.setdefault(t, json.loads(payload))

    def subscribe():
        # line-buffered: mosquitto_sub's output into a pipe is otherwise held until it exits
        sub = subprocess.Popen(node.in_ns("stdbuf", "-oL", "mosquitto_sub", "-h", node.addr,
                                          "-p", "1883", "-u", "test", "-P", "hahaha", "-v",
                                          "-q", "1", "-t", "t/py3hi", "-t", "t/sqlfilter"),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        reader = threading.Thread(target=read, args=(sub,), daemon=True)
        reader.start()
        subs.append((sub, reader))
        time.sleep(0.5)  # subscribed before the first publish, when the hub is up

    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(got) < 2:
            if not subs or subs[-1][0].poll() is not None:
                subscribe()
            subprocess.run(node.in_ns("mosquitto_pub", "-h", node.addr, "-p", "1883", "-u",
                                      "test", "-P", "hahaha", "-q", "1", "-t", "t", "-m",
                                      '{"id": 1}'), capture_output=True, timeout=30)
            time.sleep(2)
        return dict(got)
    finally:
        for sub, reader in subs:
            sub.kill()
            sub.wait()
            reader.join(5)


def node_of(swarm, service):
    """The node id of the running task of a swarm service."""
    r = swarm.manager().docker("service", "ps", "--filter", "desired-state=running",
                               "--format", "{{.Node}} {{.CurrentState}}", "--no-trunc", service)
    lines = [ln for ln in r.stdout.splitlines() if "Running" in ln]
    if not lines:
        return None
    host = lines[0].split()[0]
    # every node has the machine's hostname: tell them apart by the task's node id
    t = swarm.manager().docker("service", "ps", "--filter", "desired-state=running", "-q",
                               "--no-trunc", service).stdout.split()
    return swarm.manager().docker("inspect", "--format", "{{.NodeID}}", t[0]).stdout.strip() \
        if t and host else None


def test_main_example_placed_across_two_nodes(swarm2, master):
    """The hub runs on node 1, the function-manager on node 2; a message on t makes the
    function-manager (node 2) ask the master (node 1) for its runtimes, which start as swarm
    services on node 2, and answers come back through them; `baetyl logs` shows the output of
    a service on node 2; inspect shows each instance's node; a stopped master removes them."""
    master.start()
    n1, n2 = swarm2.nodes[0].node_id, swarm2.nodes[1].node_id
    for svc, want in (("localhub", n1), ("function-manager", n2)):
        deadline = time.monotonic() + 60
        while node_of(swarm2, svc) is None:  # its task may still be starting
            assert time.monotonic() < deadline, (svc, swarm2.tasks(svc), master.logs())
            time.sleep(1)
        assert node_of(swarm2, svc) == want, svc
    # a message makes the function-manager (node 2) ask the master (node 1) for its
    # runtimes; answers come back through them: hub (node 1) -> function-manager -> runtimes
    t0 = time.monotonic()
    got = round_trip(swarm2.leader, timeout=120)
    print(f"\nfirst answers through the runtimes {time.monotonic() - t0:.1f} s after the "
          "hub and function-manager ran")
    assert got.get("t/py3hi", {}).get("Say") == "Hello Baetyl", (got, master.logs())
    assert got.get("t/sqlfilter") == {"qos": 1, "topic": "t", "id": 1}, (got, master.logs())

    def runtimes():
        return [s for s in swarm2.services() if s.startswith("function-python36-sayhi-") or
                s.startswith("function-sql-filter-")]

    assert len(runtimes()) == 2, swarm2.services()
    assert all(node_of(swarm2, s) == n2 for s in runtimes()), runtimes()
    # `baetyl logs` reads a service's output on the node that runs it (node 2) through the
    # manager (GET /services/{id}/logs)
    r = master.cli("logs", "function-manager", "-n", "50")
    assert r.returncode == 0, r.stderr
    assert "instance started" in r.stdout and "function-sql-filter.sql-filter.1" in r.stdout, \
        r.stdout
    # its first report reached the master although its task ran before the master listed it
    assert "report to the master failed" not in r.stdout, r.stdout
    r = master.cli("logs", "function-manager", "-n", "1")
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 1, r.stdout
    r = master.cli("status", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    insts = {i["name"]: i for s in info["services"] for i in s["instances"]}
    assert insts["localhub"]["swarm"]["node_id"] == n1, insts["localhub"]
    assert insts["localhub"]["swarm"]["restarts"] == 0, insts["localhub"]
    assert insts["function-sql-filter.sql-filter.1"]["swarm"]["node_id"] == n2, insts
    # and the metrics say it too: which node runs each instance, the swarm's restarts
    r = subprocess.run(master.node.in_ns("curl", "-sf", f"http://{master.node.addr}:{METRICS_PORT}/metrics"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    hub_line = [ln for ln in r.stdout.splitlines()
                if ln.startswith('baetyl_instance_node{') and 'instance_name="localhub"' in ln]
    assert len(hub_line) == 1 and f'node="{insts["localhub"]["swarm"]["node"]}"' in hub_line[0] \
        and hub_line[0].endswith(" 1"), hub_line
    assert 'baetyl_instance_swarm_restarts_total{service="localhub",instance_name="localhub"} 0' \
        in r.stdout, r.stdout[-3000:]
    master.stop()
    assert swarm2.services() == [], "a stopped master removes its services"
