"""Acceptance tests of the docker engine (SPEC §5, seed chapter 11 in docker mode), written from SPEC.md and the seed only, for what
test_master_docker.py leaves out (its harness is reused)."""
import base64
import json
import os
import re
import subprocess
import time
import uuid

import pytest

from conftest import wait_for
from test_agent import (AGENT_SVC, AGENT_VOLS, CLIENT_ID, DESIRE, V1, agent_conf, app,  # noqa: F401
                        certs, env, make_zip, md5_b64)
from test_master_docker import (DATA, box, dinspect, dmaster, docker, docker_engine,  # noqa: F401
                                images, labelled, master_id, no_leftovers)
from master_harness import SLEEPER, master  # noqa: F401
from test_video_infer import (HEIGHT, WIDTH, Sub, VideoInfer, media, rfc3339_to_unix,  # noqa: F401
                              stack, vi_conf)

from test_video_infer_acceptance import SEED_FUNCTION  # noqa: E402


# =========================================================================================
# docker engine (SPEC §5)
# =========================================================================================

def container_ip(name):
    c = dinspect(name)
    return c and c["NetworkSettings"]["Networks"]["baetyl"]["IPAddress"]


def test_docker_replicas_names_labels_network_binds(dmaster):
    """Replica i is the container <service>.i<i>; every container, dynamic ones too, has the
    labels, the network baetyl where the others find it by service and instance name,
    restart policy no, the read-only binds really read-only and the API socket bound
    read-only."""
    m = dmaster()
    m.write("var/db/baetyl/conf-ro/file", "x")
    rw = ("(touch /conf/w 2>/dev/null && echo yes || echo no) > /data/ro-$BAETYL_SERVICE_INSTANCE_NAME; "
          "echo hi > /data/rw-$BAETYL_SERVICE_INSTANCE_NAME; ")
    probe = ("while :; do for n in drep drep.i1 drep.fn.1; do nslookup $n > /data/dns-$n.tmp 2>&1; "
             "mv /data/dns-$n.tmp /data/dns-$n; done; sleep 0.3; done")
    mounts = [{"name": "data", "path": "data"}, {"name": "conf-ro", "path": "conf", "readonly": True}]
    m.app(json.dumps({"version": "v1", "services": [
        box("drep", rw + "trap 'exit 0' TERM; while :; do sleep 0.2; done", replica=2, mounts=mounts),
        box("dprobe", probe)], "volumes": DATA + [{"name": "conf-ro", "path": "var/db/baetyl/conf-ro"}]}))
    m.start()
    st, body = m.request("PUT", "/v1/services/drep/instances/drep.fn.1/start", {"X": "1"})
    assert st == 200, body
    for inst in ("drep", "drep.i1", "drep.fn.1"):
        wait_for(lambda: m.read(f"var/db/data/rw-{inst}"), 20, what=f"{inst} wrote its data")
        assert m.read(f"var/db/data/ro-{inst}").strip() == "no", "a readonly mount was writable"
        assert not os.path.exists(m.path("var/db/baetyl/conf-ro/w"))
        c = dinspect(inst)
        assert c and c["Name"] == "/" + inst
        assert c["Config"]["Labels"] == {"baetyl": "baetyl", "service": "drep",
                                         "baetyl-master": master_id(m.dir)}
        hc = c["HostConfig"]
        assert hc["RestartPolicy"]["Name"] == "no"
        assert hc["NetworkMode"] == "baetyl" and list(c["NetworkSettings"]["Networks"]) == ["baetyl"]
        mounts_rw = {x["Destination"]: x["RW"] for x in c["Mounts"]}
        assert mounts_rw == {"/data": True, "/conf": False, "/var/run/baetyl.sock": False}, mounts_rw
        ip = container_ip(inst)
        wait_for(lambda: ip in (m.read(f"var/db/data/dns-{inst}") or ""), 15,
                 what=f"{inst} resolved by name from another container")
    # the service name leads to its instances
    answer = m.read("var/db/data/dns-drep").split("Name:", 1)[-1]
    addrs = set(re.findall(r"\d+\.\d+\.\d+\.\d+", answer))
    assert addrs and addrs <= {container_ip(i) for i in ("drep", "drep.i1", "drep.fn.1")}, answer
    assert sorted(labelled("service=drep")) == ["drep", "drep.fn.1", "drep.i1"]
    assert m.stop() == 0
    assert labelled() == []


def test_docker_stop_kills_after_grace(dmaster):
    """Stop = docker stop with the grace period (a container ignoring SIGTERM is killed
    when it ends), then the container is removed."""
    m = dmaster(grace="2s")
    m.app(json.dumps({"version": "v1", "services": [
        box("dstub", "trap 'echo TERM ignored' TERM; echo started; while :; do sleep 0.2; done")],
        "volumes": DATA}))
    m.start()
    wait_for(lambda: (dinspect("dstub") or {}).get("State", {}).get("Running"), 15, what="dstub running")
    t = time.monotonic()
    assert m.stop() == 0
    took = time.monotonic() - t
    assert 1.8 <= took <= 10, took
    assert dinspect("dstub") is None and labelled() == []
    assert "TERM ignored" in m.log()


def test_docker_update_keeps_identical_containers(dmaster):
    """An application update in docker mode (SPEC §9 on §5): the identical service keeps
    its container, the changed one gets a new container with the new config, the removed
    one's container is gone, the new one runs; each with the labels and network."""
    m = dmaster()
    sleeper = "trap 'exit 0' TERM; while :; do sleep 0.2; done"
    v1 = [box("dkeep", sleeper), box("dchange", sleeper, env={"V": "1"}), box("dgone", sleeper)]
    v2 = [box("dkeep", sleeper), box("dchange", sleeper, env={"V": "2"}), box("dnew", sleeper)]
    m.app(json.dumps({"version": "v1", "services": v1, "volumes": DATA}))
    m.write("var/db/baetyl/app2/application.yml", json.dumps({"version": "v2", "services": v2, "volumes": DATA}))
    m.start()
    before = {n: wait_for(lambda: (dinspect(n) or {}).get("Id"), 15, what=n) for n in ("dkeep", "dchange", "dgone")}
    st, body = m.update(m.path("var/db/baetyl/app2"), trace="tr-docker")
    assert st == 200, body
    m.wait_ota_step("tr-docker", ["UPDATED", "ROLLEDBACK", "FAILURE"], timeout=60)
    assert [x["step"] for x in m.ota_log() if x.get("trace") == "tr-docker"] == ["UPDATING", "UPDATED"], m.ota_log()
    assert m.inspect()["software"]["conf_version"] == "v2"
    assert dinspect("dkeep")["Id"] == before["dkeep"], "an identical service was restarted"
    c = dinspect("dchange")
    assert c["Id"] != before["dchange"] and "V=2" in c["Config"]["Env"]
    assert dinspect("dgone") is None
    new = wait_for(lambda: dinspect("dnew"), 15, what="dnew")
    assert new["Config"]["Labels"] == {"baetyl": "baetyl", "service": "dnew",
                                       "baetyl-master": master_id(m.dir)}
    assert new["HostConfig"]["NetworkMode"] == "baetyl"
    assert sorted(labelled()) == ["dchange", "dkeep", "dnew"]
    assert m.stop() == 0
    assert labelled() == []


# ---- the seed's chapter 11 in docker mode: hub, Python runtime and video-infer images -------

ARRAY_FUNCTION = SEED_FUNCTION.replace("import numpy as np\n", "import array\n").replace(
    "    data = np.frombuffer(event, np.float32)\n    score = float(data.mean())\n",
    "    data = array.array('f')\n    data.frombytes(event)\n    score = sum(data) / len(data)\n")


@pytest.fixture(scope="module")
def chapter11_images(images):  # noqa: F811
    """The video-infer and Python runtime images built by docker/build-images.sh from the
    binaries under test, once per run (other tests use them too: they go with the engine)."""
    from test_master_docker import TAG
    names = ["baetyl-video-infer", "baetyl-function-python"]
    images.build_images(*names, tag=TAG)
    return {n: f"{n}:{TAG}" for n in names}


def test_chapter11_video_infer_in_docker(dmaster, chapter11_images, media):
    """Seed chapter 11 in docker mode, with the images of this build: video-infer reads a
    video file from a volume, calls the Python runtime by its service name on the network
    baetyl, saves the frames the function keeps into the shared image volume and publishes
    to the hub container, whose published port a subscriber uses."""
    import shutil
    from conftest import free_port
    from test_master_docker import HUB_CONF, HUB_IMAGE
    assert "import array" in ARRAY_FUNCTION and "np." not in ARRAY_FUNCTION
    m = dmaster(grace="5s")
    port = free_port()
    db = m.path("var/db/baetyl")
    m.write("var/db/baetyl/localhub-conf/service.yml", HUB_CONF)
    m.write("var/db/baetyl/function-python-code/analyse.py", ARRAY_FUNCTION)
    m.write("var/db/baetyl/function-python-conf/service.yml",
            "server:\n  address: 0.0.0.0:50051\nfunctions:\n  - name: analyse\n"
            "    handler: analyse.handler\n    codedir: var/db/baetyl/code\n")
    os.makedirs(os.path.join(db, "infer-model"))
    for k in ("cfg", "weights"):
        shutil.copy(media[k], os.path.join(db, "infer-model"))
    os.makedirs(os.path.join(db, "video"))
    shutil.copy(media["alternating"], os.path.join(db, "video", "v.avi"))
    m.write("var/db/baetyl/video-infer-conf/service.yml", f"""hub:
  address: tcp://localhub:1883
  username: test
  password: hahaha
video:
  uri: var/db/baetyl/video/v.avi
  limit:
    fps: 10
infer:
  model: var/db/baetyl/model/tiny.weights
  config: var/db/baetyl/model/tiny.cfg
process:
  before:
    scale: {1 / 255!r}
    swaprb: true
    width: 4
    hight: 4
  after:
    function:
      name: analyse
functions:
  - name: analyse
    address: function-python:50051
logger:
  path: var/log/baetyl/infer-service.log
  level: debug
""")

    def mount(name, path, ro=False):
        return {"name": name, "path": path, "readonly": ro}
    services = [
        {"name": "localhub", "image": HUB_IMAGE, "replica": 1, "ports": [f"127.0.0.1:{port}:1883"],
         "mounts": [mount("localhub-conf", "etc/baetyl", True)]},
        {"name": "function-python", "image": chapter11_images["baetyl-function-python"], "replica": 1,
         "mounts": [mount("function-python-conf", "etc/baetyl", True),
                    mount("function-python-code", "var/db/baetyl/code", True),
                    mount("image-data", "var/db/baetyl/image")]},
        {"name": "video-infer", "image": chapter11_images["baetyl-video-infer"], "replica": 1,
         "mounts": [mount("infer-model", "var/db/baetyl/model", True), mount("image-data", "var/db/baetyl/image"),
                    mount("demo-log", "var/log/baetyl"), mount("video-infer-conf", "etc/baetyl", True),
                    mount("video", "var/db/baetyl/video", True)]}]
    volumes = [{"name": n, "path": f"var/db/baetyl/{n}"} for n in
               ("localhub-conf", "function-python-conf", "function-python-code", "image-data", "demo-log",
                "infer-model", "video-infer-conf", "video")]
    m.app(json.dumps({"version": "V0", "services": services, "volumes": volumes}))
    m.start()
    wait_for(lambda: labelled("service=video-infer"), 20, what="video-infer container")
    sub = None
    try:
        def connect():
            try:
                return Sub(port, "video/infer/result")
            except Exception:  # the engine's proxy accepts before the hub listens
                return None
        sub = wait_for(connect, 30, 0.5, what="subscriber on the hub container")
        msgs = sub.collect(4, timeout=60)
    except AssertionError as err:
        logs = m.read("var/db/baetyl/demo-log/infer-service.log", "")[-3000:] + m.log()[-3000:]
        raise AssertionError(f"{err}\n{logs}") from err
    finally:
        if sub:
            sub.close()
    bodies = [json.loads(p) for _, _, p, _ in msgs]
    assert {b["imageDiscard"] for b in bodies} == {True, False}, bodies
    for b in bodies:
        assert (b["imageWidth"], b["imageHight"]) == (WIDTH, HEIGHT)
        if not b["imageDiscard"]:
            # saved by video-infer at /var/db/baetyl/image/… in its container: the volume
            name = os.path.basename(b["imageLocation"])
            path = os.path.join(db, "image-data", name)
            wait_for(lambda: os.path.exists(path), 5, what=path)
            with open(path, "rb") as f:
                assert f.read(3) == b"\xff\xd8\xff"
    assert m.stop() == 0
    assert labelled() == []
    log = m.read("var/db/baetyl/demo-log/infer-service.log", "")
    assert 'msg="service stopped"' in log, log[-2000:]
