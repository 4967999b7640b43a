"""Docker mode (SPEC §5) against a real Docker engine: the hub image serving MQTT through a
published port, container name/labels/network/binds/env, stop removes containers, the
master's restart policy when a container is killed, stale containers of this master removed
at start (another master's left alone), ports/devices/resources in HostConfig, dynamic
instances through the API, the tcp API address, the docker example (hub and Python/Node/SQL
functions), and the errors of a missing image, an unreachable engine or an unsupported API
version.

The engine is the run's own dockerd (conftest.docker_engine: its own data root and socket,
DOCKER_HOST pointing at it); the machine's engine, if any, is never used. Images are built
once per run, FROM scratch: the hub by docker/build-images.sh from the binaries under test,
and a test image holding a static busybox for small shell programs."""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import SRC, docker_engine, free_port, wait_for  # noqa: F401
from master_harness import app_yaml, master  # noqa: F401

DOCKER = shutil.which("docker")
TAG = "test"
HUB_IMAGE = f"baetyl-hub:{TAG}"
BOX_IMAGE = f"baetyl-test-busybox:{TAG}"


def docker(*args, timeout=120):
    """The docker client, talking to the run's engine (DOCKER_HOST, set by docker_engine)."""
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)


def master_id(workdir):
    """The master's label value: the first 12 hex digits of sha256(realpath(work dir))."""
    return hashlib.sha256(os.path.realpath(workdir).encode()).hexdigest()[:12]


def build_box(engine):
    """The busybox test image (once per run)."""
    if ("busybox", TAG) in engine.built:
        return
    busybox = shutil.which("busybox") or "/bin/busybox"
    assert os.path.exists(busybox), "busybox is not installed (apt-get install busybox-static)"
    ctx = tempfile.mkdtemp(prefix="baetyl-box-")
    try:
        shutil.copy(busybox, os.path.join(ctx, "busybox"))
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write('FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\n')
        r = docker("build", "-q", "-t", BOX_IMAGE, ctx, timeout=300)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    engine.built.add(("busybox", TAG))


@pytest.fixture(scope="session")
def images(docker_engine):  # noqa: F811
    """The hub image from the binaries under test and the busybox test image."""
    docker_engine.build_images("baetyl-hub", tag=TAG)
    build_box(docker_engine)
    return docker_engine


def labelled(label="baetyl=baetyl"):
    """Names of the containers (any state) carrying label."""
    r = docker("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}")
    assert r.returncode == 0, r.stderr
    return sorted(n for n in r.stdout.split() if n)


def dinspect(name):
    """docker inspect of a container, or None when there is none of that name."""
    r = docker("inspect", "--type", "container", name)
    return json.loads(r.stdout)[0] if r.returncode == 0 else None


@pytest.fixture
def no_leftovers(docker_engine):  # noqa: F811
    """The ids of the test's masters; what they left (after they stopped) is removed, and
    only that."""
    ids = []
    yield ids
    for i in ids:
        left = labelled(f"baetyl-master={i}")
        if left:
            docker("rm", "-f", *left)


@pytest.fixture
def dmaster(no_leftovers, master, images):  # noqa: F811
    """master(...) in docker mode."""
    def make(**kw):
        m = master(**kw)
        m.write("etc/baetyl/conf.yml", m.read("etc/baetyl/conf.yml").replace("mode: native", "mode: docker"))
        no_leftovers.append(master_id(m.dir))
        return m
    return make


def box(name, script, replica=1, mounts=None, **kw):
    """A service of the busybox image running `sh -c script`, with the data volume at /data."""
    d = {"name": name, "image": BOX_IMAGE, "replica": replica, "args": ["sh", "-c", script],
         "mounts": mounts if mounts is not None else [{"name": "data", "path": "data"}]}
    d.update(kw)
    return d


DATA = [{"name": "data", "path": "var/db/data"}]

SLEEPER = ("echo started $BAETYL_SERVICE_INSTANCE_NAME; trap 'echo got TERM; exit 0' TERM; "
           "while :; do sleep 0.2; done")
DUMPER = ("env | sort > /data/env-$BAETYL_SERVICE_INSTANCE_NAME.tmp; "
          "cat /etc/hosts > /data/hosts-$BAETYL_SERVICE_INSTANCE_NAME; "
          "[ -S /var/run/baetyl.sock ] && echo yes > /data/sock-$BAETYL_SERVICE_INSTANCE_NAME; "
          "echo \"$0|$*\" > /data/argv-$BAETYL_SERVICE_INSTANCE_NAME; "
          "mv /data/env-$BAETYL_SERVICE_INSTANCE_NAME.tmp /data/env-$BAETYL_SERVICE_INSTANCE_NAME; "
          "trap 'exit 0' TERM; while :; do sleep 0.2; done")


def env_file(m, inst):
    text = m.read(f"var/db/data/env-{inst}")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line) if text else None


def container_of(m, svc, inst=None):
    i = m.instance(svc, inst or svc)
    if i and i["status"] == "running" and "container" in i:
        return i["container"]
    return None


# ---- the hub image --------------------------------------------------------------------------

HUB_CONF = """listen: ['tcp://0.0.0.0:1883']
principals:
  - username: test
    password: hahaha
    permissions:
      - {action: pub, permit: ['#']}
      - {action: sub, permit: ['#']}
status: {report: {interval: 1s}}
"""


def mqtt_roundtrip(port, timeout=20):
    """Publishes through the hub on port and receives it back (paho, QoS 1)."""
    import paho.mqtt.client as mqtt
    got = []
    deadline = time.monotonic() + timeout
    while True:
        c = mqtt.Client(client_id=f"t-{uuid.uuid4().hex[:8]}")
        c.username_pw_set("test", "hahaha")
        c.on_message = lambda _c, _u, msg: got.append((msg.topic, msg.payload))
        try:
            c.connect("127.0.0.1", port, keepalive=10)
            break
        except OSError:
            # The engine's proxy accepts before the hub listens: try again.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    c.loop_start()
    try:
        wait_for(lambda: c.is_connected(), 10, what="MQTT connected")
        r, _ = c.subscribe("t/#", qos=1)
        assert r == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.3)
        c.publish("t/1", b"hello docker", qos=1).wait_for_publish()
        wait_for(lambda: got, 10, what="message back from the hub")
        return got[0]
    finally:
        c.loop_stop()
        c.disconnect()


def test_hub_in_docker(dmaster):
    m = dmaster()
    port = free_port()
    m.write("var/db/baetyl/hub-conf/service.yml", HUB_CONF)
    m.app(app_yaml([{"name": "dhub", "image": HUB_IMAGE, "replica": 1, "ports": [f"127.0.0.1:{port}:1883"],
                     "mounts": [{"name": "hub-conf", "path": "etc/baetyl", "readonly": True},
                                {"name": "hub-data", "path": "var/db/baetyl/data"}]}],
                   [{"name": "hub-conf", "path": "var/db/baetyl/hub-conf"},
                    {"name": "hub-data", "path": "var/db/baetyl/hub-data"}]))
    m.start()
    assert mqtt_roundtrip(port) == ("t/1", b"hello docker")

    c = dinspect("dhub")
    assert c and c["State"]["Running"]
    assert c["Name"] == "/dhub"
    assert c["Config"]["Labels"] == {"baetyl": "baetyl", "service": "dhub",
                                     "baetyl-master": master_id(m.dir)}
    hc = c["HostConfig"]
    assert hc["NetworkMode"] == "baetyl"
    assert "dhub" in (c["NetworkSettings"]["Networks"]["baetyl"]["Aliases"] or [])
    assert hc["Binds"] == [f"{m.dir}/var/db/baetyl/hub-conf:/etc/baetyl:ro",
                           f"{m.dir}/var/db/baetyl/hub-data:/var/db/baetyl/data",
                           f"{m.sock}:/var/run/baetyl.sock:ro"]
    assert hc["RestartPolicy"]["Name"] == "no"
    assert hc["PortBindings"] == {"1883/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    env = dict(e.split("=", 1) for e in c["Config"]["Env"])
    assert env["BAETYL_MASTER_API_ADDRESS"] == "unix:///var/run/baetyl.sock"
    assert env["BAETYL_SERVICE_MODE"] == "docker" and env["BAETYL_SERVICE_NAME"] == "dhub"
    assert env["BAETYL_SERVICE_TOKEN"]
    assert "BAETYL_TEST_MARKER" not in env and "HOME" not in env  # not the master's environment
    net = json.loads(docker("network", "inspect", "baetyl").stdout)[0]
    assert net["Driver"] == "bridge" and net["Labels"].get("baetyl") == "baetyl"

    # inspect: the container, its stats, and what the hub reported through the bound socket
    # with the token it was given.
    def reported():
        i = m.instance("dhub", "dhub")
        return i if i and "hub" in i and "cpu_stats" in i and "mem_stats" in i else None
    i = wait_for(reported, 20, 0.5, what="hub report and container stats in inspect")
    assert i["container"] == {"id": c["Id"], "name": "dhub"}
    assert i["mem_stats"]["usage"] > 0 and i["cpu_stats"]["used_percent"] >= 0
    assert os.listdir(m.path("var/db/baetyl/hub-data")), "the hub's storage is not in its volume"

    assert m.stop() == 0
    assert dinspect("dhub") is None and labelled() == []
    log = m.log()
    assert "hub stopped" in log and "instance=dhub stream=stderr" in log  # its output, kept
    assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]


# ---- supervision ----------------------------------------------------------------------------

def test_killed_container_is_restarted_and_exit_output_kept(dmaster):
    m = dmaster()
    fast = {"policy": "always", "backoff": {"min": "200ms", "max": "1s"}}
    m.app(app_yaml([box("dsleep", SLEEPER, restart=fast),
                    box("dcrash", "echo crash output $BAETYL_SERVICE_INSTANCE_NAME; exit 3",
                        restart={"policy": "no"})], DATA))
    m.start()
    first = wait_for(lambda: container_of(m, "dsleep"), 15, what="dsleep running")
    assert docker("kill", "dsleep").returncode == 0
    second = wait_for(lambda: (c := container_of(m, "dsleep")) and c["id"] != first["id"] and c, 20,
                      what="dsleep restarted in a new container")
    c = dinspect("dsleep")
    assert c["Id"] == second["id"] and c["State"]["Running"]
    assert dinspect(first["id"]) is None  # the killed one is removed
    wait_for(lambda: "instance (dsleep) exited (code 137), restarting" in m.log(), 5, what="restart log")

    # policy no: the exit is final, the container goes, its output stays in the log.
    wait_for(lambda: "instance (dcrash) exited (code 3)" in m.log(), 15, what="dcrash exit")
    assert "crash output dcrash" in m.log()
    assert dinspect("dcrash") is None
    time.sleep(1)
    assert m.log().count(":dcrash) started") == 1  # not restarted
    # the logs API (issue 14.4): a running container's log, and a removed one's last output
    st, body = m.request("GET", "/v1/services/dsleep/instances/dsleep/logs")
    assert st == 200 and json.loads(body)["state"] == "running", body
    assert json.loads(body)["lines"] == ["started dsleep"], body
    st, body = m.request("GET", "/v1/services/dcrash/instances/dcrash/logs?lines=5")
    assert st == 200, body
    assert json.loads(body) == {"state": "exited", "exit_code": 3, "lines": ["crash output dcrash"]}
    r = m.cmd("logs", "dcrash")
    assert r.returncode == 0 and r.stdout == "crash output dcrash\n", (r.stdout, r.stderr)

    assert m.stop() == 0
    assert labelled() == []
    assert "got TERM" in m.log()  # docker stop gave the sleeper its SIGTERM first


def test_stale_containers_removed_at_start(dmaster):
    """Recovery removes what this master left (its label), never another master's
    containers nor anyone else's."""
    m = dmaster()
    tag = uuid.uuid4().hex[:8]
    stale, theirs, other = f"bt-stale-{tag}", f"bt-theirs-{tag}", f"bt-other-{tag}"
    try:
        mine = f"baetyl-master={master_id(m.dir)}"
        assert docker("run", "-d", "--name", stale, "--label", "baetyl=baetyl", "--label", mine,
                      BOX_IMAGE, "sleep", "600").returncode == 0
        assert docker("run", "-d", "--name", theirs, "--label", "baetyl=baetyl", "--label",
                      "baetyl-master=0123456789ab", BOX_IMAGE, "sleep", "600").returncode == 0
        assert docker("create", "--name", other, BOX_IMAGE, "true").returncode == 0
        m.start()  # no application: only the recovery runs
        assert dinspect(stale) is None
        assert dinspect(theirs)["State"]["Running"]  # another master's: left alone
        assert dinspect(other) is not None  # not baetyl's: left alone
        assert f"container={stale}" in m.log() and "old container removed" in m.log()
        assert theirs not in m.log()
    finally:
        docker("rm", "-f", stale, theirs, other)


def test_containers_taken_over_after_a_master_kill(dmaster):
    """Issue 15.2: a master killed with SIGKILL leaves its containers running; the next one
    takes them over (same container), except those whose service changed meanwhile."""
    m = dmaster()
    m.app(app_yaml([box("dkeep", SLEEPER), box("dchange", SLEEPER)], DATA))
    m.start()
    keep = wait_for(lambda: container_of(m, "dkeep"), 15, what="dkeep running")
    change = wait_for(lambda: container_of(m, "dchange"), 15, what="dchange running")
    m.kill9()
    m.app(app_yaml([box("dkeep", SLEEPER), box("dchange", SLEEPER, env={"NEW": "1"})], DATA))
    m.start_again()
    assert wait_for(lambda: container_of(m, "dkeep"), 15)["id"] == keep["id"]
    assert dinspect(keep["id"])["State"]["Running"]
    new = wait_for(lambda: container_of(m, "dchange"), 15, what="dchange running")
    assert new["id"] != change["id"] and dinspect(change["id"]) is None
    assert "instance taken over" in m.log()
    # its exit is handled by the restart policy, as for a container it started
    assert docker("kill", "dkeep").returncode == 0
    wait_for(lambda: (c := container_of(m, "dkeep")) and c["id"] != keep["id"], 20,
             what="dkeep restarted")
    assert m.stop() == 0
    assert labelled() == []


def test_name_taken_by_a_foreign_container_fails_clearly(dmaster):
    m = dmaster()
    name = f"bt-taken-{uuid.uuid4().hex[:8]}"
    try:
        assert docker("create", "--name", name, BOX_IMAGE, "true").returncode == 0
        m.app(app_yaml([box(name, SLEEPER)], DATA))
        assert m.start(expect_fail=True) == 1
        assert f"container name ({name}) is taken by a container not managed by baetyl" in m.read("master.out")
        assert dinspect(name)["Config"]["Labels"] in (None, {})  # untouched
    finally:
        docker("rm", "-f", name)


# ---- HostConfig ------------------------------------------------------------------------------

def test_ports_devices_resources_mapped(dmaster):
    m = dmaster()
    p = free_port()
    res = {"cpu": {"cpus": 0.5, "setcpus": "0"}, "memory": {"limit": "64m", "swap": "128m"}, "pids": {"limit": 32}}
    m.app(app_yaml([box("dres", "ls -l /dev/xzero > /data/dev; " + SLEEPER, resources=res,
                        devices=["/dev/zero:/dev/xzero:r"], ports=[f"127.0.0.1:{p}:8080/udp", "9000"])], DATA))
    m.start()
    wait_for(lambda: m.read("var/db/data/dev"), 15, what="device listing")
    assert "/dev/xzero" in m.read("var/db/data/dev")
    c = dinspect("dres")
    hc = c["HostConfig"]
    assert hc["NanoCpus"] == 500_000_000
    assert hc["CpusetCpus"] == "0"
    assert hc["Memory"] == 64 << 20
    assert hc["MemorySwap"] in (128 << 20, -1)  # -1: a kernel without swap accounting
    assert hc["PidsLimit"] == 32
    assert hc["Devices"] == [{"PathOnHost": "/dev/zero", "PathInContainer": "/dev/xzero", "CgroupPermissions": "r"}]
    assert hc["PortBindings"] == {"8080/udp": [{"HostIp": "127.0.0.1", "HostPort": str(p)}],
                                  "9000/tcp": [{"HostIp": "", "HostPort": ""}]}
    assert set(c["Config"]["ExposedPorts"]) == {"8080/udp", "9000/tcp"}
    assert m.stop() == 0


# ---- environment and the API -------------------------------------------------------------------

def test_env_args_and_dynamic_instances(dmaster):
    m = dmaster()
    # dpeer starts first (list order): denv finds it by its service name on the network.
    m.app(app_yaml([box("dpeer", SLEEPER),
                    box("denv", "nslookup dpeer > /data/dns; " + DUMPER,
                        env={"FOO": "bar", "BAETYL_SERVICE_NAME": "forged"})], DATA))
    m.start()
    env = wait_for(lambda: env_file(m, "denv"), 15, what="env dump")
    peer_ip = dinspect("dpeer")["NetworkSettings"]["Networks"]["baetyl"]["IPAddress"]
    assert peer_ip and peer_ip in m.read("var/db/data/dns"), m.read("var/db/data/dns")
    assert env["FOO"] == "bar"
    assert env["BAETYL_SERVICE_NAME"] == "denv" and env["OPENEDGE_SERVICE_NAME"] == "denv"
    assert env["BAETYL_SERVICE_INSTANCE_NAME"] == "denv"
    assert env["BAETYL_MASTER_API_ADDRESS"] == "unix:///var/run/baetyl.sock"
    assert env["BAETYL_MASTER_API_SOCKET"] == "/var/run/baetyl.sock"
    assert env["BAETYL_SERVICE_MODE"] == "docker" and env["BAETYL_SERVICE_TOKEN"]
    assert "BAETYL_TEST_MARKER" not in env
    assert m.read("var/db/data/sock-denv").strip() == "yes"
    assert m.read("var/db/data/argv-denv").startswith("sh|")  # args became the container's Cmd

    st, body = m.request("PUT", "/v1/services/denv/instances/denv-x/start",
                         {"BAETYL_SERVICE_INSTANCE_ADDRESS": "denv-x:50051"})
    assert st == 200, body
    dyn = wait_for(lambda: env_file(m, "denv-x"), 15, what="dynamic instance env")
    assert dyn["BAETYL_SERVICE_INSTANCE_ADDRESS"] == "denv-x:50051"
    assert "BAETYL_SERVICE_TOKEN" not in dyn
    c = dinspect("denv-x")
    assert c["Config"]["Labels"] == {"baetyl": "baetyl", "service": "denv",
                                     "baetyl-master": master_id(m.dir)}
    st, body = m.request("PUT", "/v1/services/denv/instances/denv-x/stop")
    assert st == 200, body
    assert dinspect("denv-x") is None
    assert m.stop() == 0
    assert labelled() == []


def test_tcp_api_address(dmaster):
    m = dmaster(api="tcp")
    m.app(app_yaml([box("dtcp", DUMPER)], DATA))
    m.start()
    env = wait_for(lambda: env_file(m, "dtcp"), 15, what="env dump")
    assert env["BAETYL_MASTER_API_ADDRESS"] == f"tcp://host.docker.internal:{m.port}"
    assert "BAETYL_MASTER_API_SOCKET" not in env
    assert "host.docker.internal" in m.read("var/db/data/hosts-dtcp")
    hc = dinspect("dtcp")["HostConfig"]
    assert hc["ExtraHosts"] == ["host.docker.internal:host-gateway"]
    assert not any(b.endswith(":/var/run/baetyl.sock:ro") for b in hc["Binds"] or [])
    assert m.stop() == 0


# ---- the function runtime images ------------------------------------------------------------

@pytest.fixture(scope="session")
def runtime_images(images):
    """The Python and Node runtime images (Debian minbase root + runtime)."""
    images.build_images("baetyl-function-python", "baetyl-function-node", tag=TAG)
    return images


@pytest.mark.parametrize("kind", ["python", "node"])
def test_function_runtime_image(dmaster, runtime_images, kind):
    from runtime_harness import FUNCTIONS, Client, functions_yaml
    m = dmaster()
    p = free_port()
    code = {"python": "python3", "node": "node8"}[kind]
    shutil.copytree(os.path.join(FUNCTIONS, code), m.path("var/db/baetyl/code"))
    m.write("var/db/baetyl/fn-conf/service.yml", "server:\n  address: '0.0.0.0:50051'\n" +
            functions_yaml([("sayhi", "index.handler", "var/db/baetyl/code")]))
    svc = f"dfn-{kind}"
    m.app(app_yaml([{"name": svc, "image": f"baetyl-function-{kind}:{TAG}", "replica": 1,
                     "ports": [f"127.0.0.1:{p}:50051"],
                     "mounts": [{"name": "fn-conf", "path": "etc/baetyl", "readonly": True},
                                {"name": "code", "path": "var/db/baetyl/code", "readonly": True}]}],
                   [{"name": "fn-conf", "path": "var/db/baetyl/fn-conf"},
                    {"name": "code", "path": "var/db/baetyl/code"}]))
    m.start()
    client = Client(f"127.0.0.1:{p}")
    try:
        def answer():
            try:
                return client.call("sayhi", b'{"id":1}', timeout=2)
            except Exception:  # not listening yet
                return None
        out = wait_for(answer, 30, 0.5, what=f"{kind} runtime answering in its container")
        assert json.loads(out.Payload)["Say"] == "Hello Baetyl"
    finally:
        client.close()
    assert m.stop() == 0
    assert dinspect(svc) is None


# ---- the docker example: hub and functions ----------------------------------------------------

@pytest.fixture(scope="session")
def example_images(runtime_images):
    """The function-manager and SQL runtime images (the runtimes' come from runtime_images)."""
    runtime_images.build_images("baetyl-function-manager", "baetyl-function-sql", tag=TAG)
    return runtime_images


def install_example(m, name, port):
    """example/<name> into m's work dir as `make install` copies it, with the master's API
    address and a debug log, the hub's port published on 127.0.0.1:port and the test's
    image tag."""
    shutil.copytree(os.path.join(SRC, "example", name, "var"), m.path("var"), dirs_exist_ok=True)
    conf = open(os.path.join(SRC, "example", name, "etc", "baetyl", "conf.yml")).read()
    assert "address: unix:///var/run/baetyl.sock" in conf and "level: info" in conf
    m.write("etc/baetyl/conf.yml", conf.replace("unix:///var/run/baetyl.sock", m.address)
            .replace("level: info", "level: debug").replace("grace: 30s", "grace: 5s"))
    app = m.read("var/db/baetyl/application.yml")
    assert "- 1883:1883" in app
    app = app.replace("- 1883:1883", f"- 127.0.0.1:{port}:1883")
    for img in ("baetyl-hub", "baetyl-function-manager", "baetyl-function-python", "baetyl-function-node",
                "baetyl-function-sql"):
        assert f"image: {img}\n" in app, img
        app = app.replace(f"image: {img}\n", f"image: {img}:{TAG}\n")
    m.app(app)


def test_docker_example_hub_and_functions(dmaster, example_images):
    """example/docker (seed chapters 4, 8 and 9 in docker mode): {"id":1} on t comes back on
    t/topic (the hub's route) and from the Python, Node and SQL functions, whose instances
    the function-manager starts as containers on the baetyl network; the master logs each
    API call at debug; `baetyl status` keeps its columns aligned with the long instance
    names."""
    import paho.mqtt.client as mqtt
    m = dmaster()
    port = free_port()
    install_example(m, "docker", port)
    m.start()
    fm_log = "var/db/baetyl/function-manager-log/service.log"
    wait_for(lambda: m.read(fm_log, "").count("rule connected to the hub") == 3, 30,
             what="the function-manager's three rules connected to localhub")

    got = {}
    c = mqtt.Client(client_id=f"t-{uuid.uuid4().hex[:8]}")
    c.username_pw_set("test", "hahaha")
    c.on_message = lambda _c, _u, msg: got.setdefault(msg.topic, []).append(msg.payload)
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    try:
        wait_for(lambda: c.is_connected(), 10, what="MQTT connected")
        c.subscribe("t/#", qos=1)
        time.sleep(0.5)
        c.publish("t", b'{"id":1}', qos=0)
        want = {"t/topic", "t/py3hi", "t/node8hi", "t/sqlfilter"}
        wait_for(lambda: want <= set(got), 45, 0.2, what=f"answers on {sorted(want)}")
    finally:
        c.loop_stop()
        c.disconnect()
    assert got["t/topic"][0] == b'{"id":1}', got
    assert json.loads(got["t/sqlfilter"][0]) == {"qos": 0, "topic": "t", "id": 1}, got
    for topic, name in (("t/py3hi", "python36-sayhi"), ("t/node8hi", "node85-sayhi")):
        out = json.loads(got[topic][0])
        assert out["id"] == 1 and out["Say"] == "Hello Baetyl" and out["functionName"] == name, out
        assert out["messageTopic"] == "t" and out["messageQOS"] == 0, out

    # The runtimes' instances: containers named <service>.<function>.<n>, started through the API.
    insts = {}
    for svc in ("function-python36-sayhi", "function-node85-sayhi", "function-sql-filter"):
        names = labelled(f"service={svc}")
        assert len(names) == 1 and names[0].startswith(svc + "."), (svc, names)
        insts[svc] = names[0]
        assert dinspect(names[0])["HostConfig"]["NetworkMode"] == "baetyl"
        assert f'msg="[PUT] /v1/services/{svc}/instances/{names[0]}/start"' in m.log()
    assert dinspect("function-manager")["State"]["Running"]

    # status: every row's cells start where their header does, long names included.
    r = m.cmd("status")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("SERVICE "))
    assert " PID " not in lines[head], r.stdout  # docker: the id column holds container ids
    cols = [lines[head].index(h) for h in ("INSTANCE", "STATUS", "CONTAINER ID")]
    rows = [ln for ln in lines[head + 1:] if ln.strip()]
    assert len(rows) == 5, r.stdout
    for svc, inst in [("localhub", "localhub"), ("function-manager", "function-manager"), *insts.items()]:
        row = next(ln for ln in rows if ln.startswith(svc + " "))
        assert row[cols[0]:].startswith(inst + " "), r.stdout
        assert row[cols[1]:].startswith("running "), r.stdout
        assert row[cols[2] - 1] == " " and row[cols[2]] != " ", r.stdout

    assert m.stop() == 0
    assert labelled() == []
    log = m.log()
    assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]


# ---- errors ---------------------------------------------------------------------------------

def test_missing_image_fails_the_start(dmaster):
    m = dmaster()
    m.app(app_yaml([{"name": "dmiss", "image": "baetyl-test-missing:v0", "replica": 1}], []))
    assert m.start(expect_fail=True) == 1
    out, log = m.read("master.out"), m.log()
    assert "failed to start service (dmiss): image (baetyl-test-missing:v0) not found" in out
    assert "build the images with `make image`" in out
    assert "failed to pull image" in log and "baetyl-test-missing:v0" in log
    assert labelled() == []


def test_unsupported_api_version_fails_clearly(dmaster):
    m = dmaster(conf_extra="docker:\n  api_version: '9.99'\n")
    assert m.start(expect_fail=True) == 1
    assert "docker.api_version (9.99) is newer than the engine supports" in m.read("master.out")


def test_engine_unreachable_fails_clearly(master, monkeypatch):  # noqa: F811  (no engine needed)
    """One line naming the socket and how to start the engine, at start and at check (was:
    curl's words about "localhost port 80", said twice)."""
    m = master()
    m.write("etc/baetyl/conf.yml", m.read("etc/baetyl/conf.yml").replace("mode: native", "mode: docker"))
    m.app(app_yaml([{"name": "a", "image": "x"}], []))
    sock = f"{m.dir}/no-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    assert m.start(expect_fail=True) == 1
    out = m.read("master.out")
    want = f"docker engine not reachable at unix://{sock} (No such file or directory): start it"
    assert want in out and "`systemctl start docker`" in out, out
    assert "port 80" not in out and out.count(sock) == 2, out  # in the message and the hint
    r = m.cmd("check")
    assert r.returncode == 1 and want in r.stderr and "port 80" not in r.stderr, r
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_check_docker_ports_devices_and_images(dmaster):
    m = dmaster()
    m.app(app_yaml([{"name": "a", "image": BOX_IMAGE, "ports": ["1883:1883", "1:2:3:4"]}], []))
    r = m.cmd("check")
    assert r.returncode == 1 and "services[0].ports[1]: port (1:2:3:4)" in r.stderr, r
    m.app(app_yaml([{"name": "a", "image": BOX_IMAGE, "devices": ["/dev/a:/dev/b:rx"]}], []))
    r = m.cmd("check")
    assert r.returncode == 1 and "services[0].devices[0]" in r.stderr, r
    m.app(app_yaml([{"name": "a", "image": BOX_IMAGE, "ports": ["1883:1883"],
                     "devices": ["/dev/video0"]}, {"name": "b", "image": HUB_IMAGE}], []))
    r = m.cmd("check")
    assert r.returncode == 0 and "OK!" in r.stdout, r
    # every missing image is named, once, with its service and what builds it
    m.app(app_yaml([{"name": "a", "image": BOX_IMAGE},
                    {"name": "b", "image": "hub.baidubce.com/baetyl/baetyl-nothing:0.1.6"},
                    {"name": "c", "image": "baetyl-test-missing:v1"},
                    {"name": "d", "image": "baetyl-test-missing:v1"}], []))
    r = m.cmd("check")
    assert r.returncode == 1 and "OK!" not in r.stdout, r
    assert ("images not found on the docker engine (" + os.environ["DOCKER_HOST"] + "): "
            "hub.baidubce.com/baetyl/baetyl-nothing:0.1.6 (service b), "
            "baetyl-test-missing:v1 (service c); build them with `make image`") in r.stderr, r
