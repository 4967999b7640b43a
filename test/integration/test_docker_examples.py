"""The docker examples of the seed's chapters that had only native ones, installed as
`make install MODE=docker EXAMPLE=<name>` copies them and run on the run's own Docker engine
(conftest.docker_engine): docker-tls (chapter 7: tcp, ssl with a client certificate, ws),
docker-remote (chapter 10: remote-mqtt in a container bridging the hub with a mosquitto on
the host), docker-timer and docker-video (chapter 11: video-infer, function-manager and the
Python runtime as containers). Their application.yml files name the images as the seed does
(hub.baidubce.com/baetyl/...), names docker/build-images.sh gives the images it builds; only
the published host ports are moved to free ones on 127.0.0.1."""
import json
import os
import re
import shutil
import ssl
import subprocess
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from conftest import BUILD, SRC, free_port, wait_for
from test_master_docker import (TAG, dinspect, dmaster, docker_engine, images,  # noqa: F401
                                labelled, master_id, no_leftovers)
from master_harness import master  # noqa: F401


@pytest.fixture(scope="session")
def example_images(images):  # noqa: F811
    images.build_images("baetyl-remote-mqtt", "baetyl-timer", tag=TAG)
    return images


def install(m, name, ports):
    """example/<name> into m's work dir (etc/ and var/, certificates as `make install` makes
    them), the API address of the test's master, a debug log, and each published port
    `<p>:<p>` of the application moved to 127.0.0.1:<ports[p]>."""
    src = os.path.join(SRC, "example", name)
    shutil.copytree(os.path.join(src, "var"), m.path("var"), dirs_exist_ok=True)
    conf = open(os.path.join(src, "etc", "baetyl", "conf.yml")).read()
    assert "mode: docker" in conf and "address: unix:///var/run/baetyl.sock" in conf
    m.write("etc/baetyl/conf.yml", conf.replace("unix:///var/run/baetyl.sock", m.address)
            .replace("level: info", "level: debug").replace("grace: 30s", "grace: 5s"))
    app = m.read("var/db/baetyl/application.yml")
    assert "hub.baidubce.com/baetyl/baetyl-hub" in app  # the seed's names, unchanged
    for cport, hport in ports.items():
        assert f"- {cport}:{cport}\n" in app, cport
        app = app.replace(f"- {cport}:{cport}\n", f"- 127.0.0.1:{hport}:{cport}\n")
    m.app(app)
    if "localhub-cert-only-for-test" in app:
        r = subprocess.run([os.path.join(SRC, "scripts", "gen-certs.sh"),
                            m.path("var/db/baetyl/localhub-cert-only-for-test")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr


class Client:
    """A paho client that keeps what it receives: got[topic] -> [payload, ...]."""

    def __init__(self, port, username=None, password=None, tls=None, transport="tcp"):
        self.got = {}
        self.c = mqtt.Client(client_id=f"t-{uuid.uuid4().hex[:8]}", transport=transport)
        if transport == "websockets":
            self.c.ws_set_options(path="/mqtt")
        if username:
            self.c.username_pw_set(username, password)
        if tls:
            self.c.tls_set(ca_certs=tls["ca"], certfile=tls.get("cert"), keyfile=tls.get("key"),
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.c.on_message = lambda _c, _u, m: self.got.setdefault(m.topic, []).append(m.payload)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.c.connect("127.0.0.1", port, keepalive=10)
                break
            except (OSError, ssl.SSLError):
                # The engine's proxy accepts before the hub listens: try again.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        self.c.loop_start()
        wait_for(lambda: self.c.is_connected(), 10, what=f"MQTT connected on {port}")

    def sub(self, topic, qos=1):
        r, _ = self.c.subscribe(topic, qos=qos)
        assert r == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.3)

    def pub(self, topic, payload, qos=1):
        self.c.publish(topic, payload, qos=qos).wait_for_publish()

    def wait(self, topic, timeout=20):
        return wait_for(lambda: self.got.get(topic), timeout, what=f"a message on {topic}")[0]

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_docker_tls_example(dmaster):
    """Chapter 7 in docker mode: the hub's tcp, ssl (two-way TLS, the certificate made at
    install) and ws listeners, published on the host."""
    m = dmaster()
    tcp, tls, ws = free_port(), free_port(), free_port()
    install(m, "docker-tls", {1883: tcp, 8883: tls, 8080: ws})
    m.start()
    certs = m.path("var/db/baetyl/localhub-cert-only-for-test")
    clients = []
    try:
        plain = Client(tcp, "test", "hahaha")
        clients.append(plain)
        plain.sub("t/#")
        plain.pub("t", b"over tcp")
        assert plain.wait("t/topic") == b"over tcp"  # the hub's route, as in the seed

        files = {"ca": f"{certs}/ca.pem", "key": f"{certs}/client.key",
                 "cert": f"{certs}/client.pem"}
        two_way = Client(tls, "two-way-tls", tls=files)
        clients.append(two_way)
        two_way.sub("tls/#")
        two_way.pub("tls/a", b"over tls")
        assert two_way.wait("tls/a") == b"over tls"

        web = Client(ws, "test", "hahaha", transport="websockets")
        clients.append(web)
        web.sub("w/#")
        web.pub("w/1", b"over ws")
        assert web.wait("w/1") == b"over ws"
    finally:
        for c in clients:
            c.close()
    c = dinspect("localhub")
    assert c["Config"]["Image"] == "hub.baidubce.com/baetyl/baetyl-hub"
    assert f"{certs}:/var/db/baetyl/cert:ro" in c["HostConfig"]["Binds"]
    assert m.stop() == 0
    assert labelled(f"baetyl-master={master_id(m.dir)}") == []


MOSQUITTO_CONF = """listener {port} 0.0.0.0
allow_anonymous true
persistence false
log_dest file {dir}/mosquitto.log
"""


@pytest.fixture
def host_broker(procs, tmp_path):
    """A mosquitto on this machine (the seed's cloud broker), on a free port of every
    address, so that containers reach it through host.docker.internal."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(port=port, dir=tmp_path) + "user root\n")
    procs.start(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for(lambda: "listen socket on port" in (tmp_path / "mosquitto.log").read_text()
             if (tmp_path / "mosquitto.log").exists() else False, 10, what="mosquitto listening")
    return port


def test_docker_remote_example(dmaster, example_images, host_broker):
    """Chapter 10 in docker mode: remote-iothub (remote-mqtt in its container) bridges the
    hub (by service name) and a mosquitto on the host (host.docker.internal): t1 from the hub
    reaches the broker, t2 from the broker reaches the hub, QoS 1."""
    m = dmaster()
    hub = free_port()
    install(m, "docker-remote", {1883: hub})
    rconf = "var/db/baetyl/remote-iothub-conf/service.yml"
    text = m.read(rconf)
    assert "address: tcp://host.docker.internal:1884" in text
    m.write(rconf, text.replace("host.docker.internal:1884", f"host.docker.internal:{host_broker}"))
    m.start()
    rlog = "var/db/baetyl/remote-iothub-log/remote-service.log"
    wait_for(lambda: re.search(r"connected.*iothub|iothub.*connected", m.read(rlog, "")), 30, 0.3,
             what="remote-iothub connected to the broker on the host")
    local = Client(hub, "test", "hahaha")
    cloud = Client(host_broker)
    try:
        cloud.sub("t1")
        local.sub("t2")
        local.pub("t1", b"This message is from MQTTBox.")
        assert cloud.wait("t1", 30) == b"This message is from MQTTBox."
        cloud.pub("t2", b"This message is from MQTT.fx.")
        assert local.wait("t2", 30) == b"This message is from MQTT.fx."
    finally:
        local.close()
        cloud.close()
    image = dinspect("remote-iothub")["Config"]["Image"]
    assert image == "hub.baidubce.com/baetyl/baetyl-remote-mqtt:latest"
    assert m.stop() == 0


def test_docker_timer_example(dmaster, example_images):
    """The timer in docker mode: it reaches the hub by its service name and publishes
    {"id": 1, "time": …} to timer1 every second."""
    run_timer_example(dmaster)


def test_own_module_image(dmaster, example_images, tmp_path):
    """A module of one's own (the SDK's timer example, built outside the image list) made an
    image by `docker/build-images.sh -x PROGRAM -f DOCKERFILE NAME` and run in place of the
    timer."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM scratch\nCOPY rootfs/ /\nLABEL made-by=me\n'
                          'ENTRYPOINT ["/bin/baetyl-timer"]\n')
    r = subprocess.run([os.path.join(SRC, "docker", "build-images.sh"), "-x",
                        os.path.join(BUILD, "bin", "baetyl-timer"), "-f", str(dockerfile),
                        "my-timer:1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "[1/1] my-timer:1: " in r.stdout, r.stdout + r.stderr
    labels = json.loads(example_images.docker("image", "inspect", "-f", "{{json .Config.Labels}}",
                                              "my-timer:1").stdout)
    assert labels == {"made-by": "me"}
    run_timer_example(dmaster, timer_image="my-timer:1")


def run_timer_example(dmaster, timer_image=None):
    m = dmaster()
    hub = free_port()
    install(m, "docker-timer", {1883: hub})
    if timer_image:
        app = m.read("var/db/baetyl/application.yml")
        m.app(app.replace("hub.baidubce.com/baetyl/baetyl-timer:latest", timer_image))
    m.start()
    c = Client(hub, "test", "hahaha")
    try:
        c.sub("timer1", qos=0)
        msg = json.loads(c.wait("timer1", 30))
        assert msg["id"] == 1 and abs(msg["time"] - time.time()) < 60, msg
        wait_for(lambda: len(c.got["timer1"]) >= 2, 10, what="a second tick")
    finally:
        c.close()
    if timer_image:
        assert dinspect("timer")["Config"]["Image"] == timer_image
    assert m.stop() == 0
    log = m.log()
    assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]


@pytest.fixture(scope="session")
def video_images(images):  # noqa: F811
    images.build_images("baetyl-function-manager", "baetyl-function-python", "baetyl-video-infer",
                        tag=TAG)
    return images


def test_docker_video_example(dmaster, video_images):
    """Chapter 11 in docker mode: video-infer (in its container) reads the demo video of
    example/native-video/make-media.py, calls `analyse` through the function-manager by its
    service name, which starts the Python runtime's container; the answers reach a
    subscriber on the hub's published port and the kept frames the host's image-data."""
    from test_video_infer import Sub
    m = dmaster()
    hub = free_port()
    install(m, "docker-video", {1883: hub})
    r = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "example", "native-video",
                                                         "make-media.py"), m.dir],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m.start()
    sub = None
    try:
        sub = wait_for(lambda: _sub_or_none(Sub, hub), 30, 0.5, what="a subscriber on the hub")
        msgs = sub.collect(4, timeout=90)
    except AssertionError as err:
        logs = m.read("var/db/baetyl/demo-log/infer-service.log", "")[-3000:] + m.log()[-3000:]
        raise AssertionError(f"{err}\n{logs}") from err
    finally:
        if sub:
            sub.close()
    bodies = [json.loads(p) for _, _, p, _ in msgs]
    assert {b["imageDiscard"] for b in bodies} == {True, False}, bodies
    for b in bodies:
        assert (b["imageWidth"], b["imageHight"]) == (320, 240)
        assert b["imageDiscard"] == (b["brightness"] < 0.5)
        if not b["imageDiscard"]:
            path = m.path(f"var/db/baetyl/image-data/{os.path.basename(b['imageLocation'])}")
            wait_for(lambda: os.path.exists(path), 5, what=path)
            with open(path, "rb") as f:
                assert f.read(3) == b"\xff\xd8\xff"
    assert dinspect("video-infer")["Config"]["Image"] == \
        "hub.baidubce.com/baetyl-beta/baetyl-video-infer:latest"
    assert [dinspect(n)["Config"]["Image"] for n in labelled("service=function-python")] == \
        ["hub.baidubce.com/baetyl/baetyl-function-python36:0.1.6-opencv41"]
    assert m.stop() == 0
    assert labelled(f"baetyl-master={master_id(m.dir)}") == []


def _sub_or_none(sub_class, port):
    try:
        return sub_class(port, "video/infer/result")
    except Exception:  # the engine's proxy accepts before the hub listens
        return None
