"""example/docker-agent (the seed's chapter 18 in docker mode) on the run's own Docker
engine: the agent in its container reaches the master through the API socket bound into it,
reports the master's inspect to the cloud over HTTPS and takes an OTA from the cloud's MQTT
broker, both on this machine (the fake cloud of test_agent.py, listening on every address
so that containers reach it as host.docker.internal, which its certificate names). The
application names the images as the seed does; only the hub's published port moves."""
import http.server
import json
import os
import shutil
import subprocess

import pytest

from conftest import SRC, free_port, procs, wait_for  # noqa: F401
from master_harness import master  # noqa: F401
from test_agent import CLIENT_ID, DESIRE, SERIAL, Broker, Cloud, make_zip, md5_b64
from test_docker_examples import install
from test_master_docker import (BOX_IMAGE, TAG, box, dinspect, dmaster, docker_engine,  # noqa: F401
                                images, labelled, master_id, no_leftovers)

HOST = "host.docker.internal"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def cloud_certs(tmp_path_factory):
    """The certificates of test_agent.py (RSA, the device's serial), the cloud's naming
    host.docker.internal too."""
    d = str(tmp_path_factory.mktemp("dockeragentcerts"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=cloud-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name, cn, ext, serial in (
            ("server", "localhost", f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{HOST}", 2),
            ("client", CLIENT_ID, "extendedKeyUsage=clientAuth", SERIAL),
            ("cloud", "cloud-console", "extendedKeyUsage=clientAuth", 3)):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-set_serial", str(serial), "-out", f"{name}.pem", "-days", "2", "-extfile",
                 f"{name}.ext", cwd=d)
    return d


class _EveryAddress(http.server.ThreadingHTTPServer):
    def __init__(self, address, handler):
        super().__init__(("0.0.0.0", address[1]), handler)


@pytest.fixture
def cloud(procs, tmp_path, cloud_certs, monkeypatch):  # noqa: F811
    """The fake cloud's HTTPS server and MQTT broker, on every address of this machine."""
    monkeypatch.setattr(http.server, "ThreadingHTTPServer", _EveryAddress)
    web = Cloud(cloud_certs).start()
    broker = Broker(procs, str(tmp_path), cloud_certs)
    with open(broker.conf) as f:
        conf = f.read()
    with open(broker.conf, "w") as f:
        f.write(conf.replace(f"listener {broker.port} 127.0.0.1", f"listener {broker.port} 0.0.0.0"))
    broker.start()
    yield web, broker
    web.stop()


@pytest.fixture(scope="session")
def agent_image(images):  # noqa: F811
    images.build_images("baetyl-agent", tag=TAG)
    return images


def test_docker_agent_example(dmaster, agent_image, cloud, cloud_certs):
    web, broker = cloud
    m = dmaster(grace="5s")
    hub = free_port()
    install(m, "docker-agent", {1883: hub})
    conf = "var/db/baetyl/agent-conf/service.yml"
    text = m.read(conf)
    for old, new in (
            ("ssl://your-endpoint.mqtt.iot.gz.baidubce.com:1884", f"ssl://{HOST}:{broker.port}"),
            ("clientid: your-core-device-id", f"clientid: {CLIENT_ID}"),
            ("  http:\n", f"  http:\n    address: https://{HOST}:{web.port}\n"
                          "    ca: var/db/baetyl/cert/ca.pem\n"),
            ("interval: 20s", "interval: 1s"), ("level: info", "level: debug")):
        assert old in text, old
        text = text.replace(old, new)
    m.write(conf, text)
    for f in ("ca.pem", "client.pem", "client.key"):
        shutil.copy(os.path.join(cloud_certs, f), m.path(f"var/db/baetyl/agent-cert/{f}"))
    m.start()
    try:
        # the agent may report before the master has started localhub: wait for a report
        # that lists both services
        def both():
            r = web.last_report()
            names = {s["name"] for s in r["json"]["services"]} if r else set()
            return r if names == {"agent", "localhub"} else None
        r = wait_for(both, 30, what="a report from the agent's container listing both services")
        broker.wait_subscribed()
    except AssertionError as err:
        raise AssertionError(f"{err}\n{m.read('var/db/baetyl/agent-log/service.log', '')[-3000:]}"
                             f"\n{m.log()[-3000:]}") from err
    assert not web.bad, web.bad
    assert r["headers"]["x-iot-edge-clientid"] == CLIENT_ID
    services = {s["name"]: s for s in r["json"]["services"]}
    assert set(services) == {"agent", "localhub"}
    assert services["agent"]["instances"][0]["container"]["name"] == "agent"
    assert dinspect("agent")["Config"]["Image"] == "hub.baidubce.com/baetyl/baetyl-agent:latest"

    # an OTA from the cloud: the application gains a service; its volume, downloaded by the
    # agent into the host's var/db/baetyl, is where the master's container reads it
    app = _yaml(m.read("var/db/baetyl/application.yml"))
    app["version"] = "v2"
    app["services"].append(box("ota-new", "cat /data/hello; while :; do sleep 1; done",
                               mounts=[{"name": "ota-data", "path": "data", "readonly": True}]))
    data = make_zip([("hello", b"from the cloud\n", 0o644)])
    app["volumes"].append({"name": "ota-data", "path": "var/db/baetyl/ota-data", "meta": {
        "url": f"https://{HOST}:{web.port}/files/data.zip", "md5": md5_b64(data), "version": "1"}})
    appzip = make_zip([("application.yml", json.dumps(app).encode(), 0o644)])
    web.files = {"app-v2.zip": appzip, "data.zip": data}
    event = {"time": "2019-09-23T17:55:42Z", "event": "OTA", "content": {
        "type": "APP", "trace": "tr-docker", "version": "v2", "volume": {
            "name": "app-v2", "path": "var/db/baetyl/app-v2", "meta": {
                "url": f"https://{HOST}:{web.port}/files/app-v2.zip", "md5": md5_b64(appzip),
                "version": "v2"}}}}
    broker.publish(json.dumps(event), topic=DESIRE)
    m.wait_ota_step("tr-docker", ["UPDATED", "ROLLEDBACK", "FAILURE", "TIMEOUT"], timeout=60)
    steps = [x["step"] for x in m.ota_log() if x.get("trace") == "tr-docker"]
    assert steps == ["RECEIVED", "UPDATING", "UPDATED"], m.ota_log()
    assert m.read("var/db/baetyl/ota-data/hello") == "from the cloud\n"
    wait_for(lambda: (dinspect("ota-new") or {}).get("State", {}).get("Running"), 30,
             what="the OTA's new container")
    assert dinspect("ota-new")["Config"]["Image"] == BOX_IMAGE
    wait_for(lambda: web.ota_steps("tr-docker") == ["RECEIVED", "UPDATING", "UPDATED"], 20,
             what="a report with the OTA steps")
    assert m.stop() == 0
    assert labelled(f"baetyl-master={master_id(m.dir)}") == []


def _yaml(text):
    import yaml
    return yaml.safe_load(text)
