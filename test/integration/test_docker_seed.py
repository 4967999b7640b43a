"""The seed's chapter 8 (the hub's message routing), chapter 9 (hub + function-manager + Python 2.7/3.6, Node 8.5 and SQL functions)
and chapter 10 (hub + remote-mqtt bridging a cloud broker over two-way TLS)
in docker mode with its files copied verbatim: the application names the images
hub.baidubce.com/baetyl/baetyl-hub, -function-manager, -function-python27, -python36,
-node85 and -function-sql, which docker/build-images.sh gives the images it builds (the
python27/python36 names on this project's Python 3 runtime, node85 on its Node runtime).
Only the published port moves to a free one on 127.0.0.1 and chapter 10's cloud broker is a
mosquitto on this machine; the run's own engine is used."""
import json
import os
import re
import shutil
import subprocess
import textwrap

import pytest

from conftest import SRC, free_port, procs, wait_for  # noqa: F401
from test_docker_examples import Client
from test_master_docker import (TAG, dinspect, dmaster, docker_engine, images,  # noqa: F401
                                labelled, master_id, no_leftovers)
from master_harness import master  # noqa: F401

# /usr/local/var/db/baetyl/application.yml of the seed's section 9.2
APPLICATION = """
version: v0
services:
  - name: localhub
    image: hub.baidubce.com/baetyl/baetyl-hub
    replica: 1
    ports:
      - 1883:1883
    mounts:
      - name: localhub-conf
        path: etc/baetyl
        readonly: true
      - name: localhub-data
        path: var/db/baetyl/data
      - name: localhub-log
        path: var/log/baetyl
  - name: function-manager
    image: hub.baidubce.com/baetyl/baetyl-function-manager
    replica: 1
    mounts:
      - name: function-manager-conf
        path: etc/baetyl
        readonly: true
      - name: function-manager-log
        path: var/log/baetyl
  - name: function-python27-sayhi
    image: hub.baidubce.com/baetyl/baetyl-function-python27
    replica: 0
    mounts:
      - name: function-sayhi-conf
        path: etc/baetyl
        readonly: true
      - name: function-sayhi-code
        path: var/db/baetyl/function-sayhi
        readonly: true
  - name: function-python36-sayhi
    image: hub.baidubce.com/baetyl/baetyl-function-python36
    replica: 0
    mounts:
      - name: function-sayhi-conf
        path: etc/baetyl
        readonly: true
      - name: function-sayhi-code
        path: var/db/baetyl/function-sayhi
        readonly: true
  - name: function-node85-sayhi
    image: hub.baidubce.com/baetyl/baetyl-function-node85
    replica: 0
    mounts:
      - name: function-sayjs-conf
        path: etc/baetyl
        readonly: true
      - name: function-sayjs-code
        path: var/db/baetyl/function-sayhi
        readonly: true
  - name: function-sql-filter
    image: hub.baidubce.com/baetyl/baetyl-function-sql
    replica: 0
    mounts:
      - name: function-filter-conf
        path: etc/baetyl
        readonly: true
volumes:
  # hub
  - name: localhub-conf
    path: var/db/baetyl/localhub-conf
  - name: localhub-data
    path: var/db/baetyl/localhub-data
  - name: localhub-cert
    path: var/db/baetyl/localhub-cert-only-for-test
  - name: localhub-log
    path: var/db/baetyl/localhub-log
  # function
  - name: function-manager-conf
    path: var/db/baetyl/function-manager-conf
  - name: function-manager-log
    path: var/db/baetyl/function-manager-log
  - name: function-sayhi-conf
    path: var/db/baetyl/function-sayhi-conf
  - name: function-sayhi-code
    path: var/db/baetyl/function-sayhi-code
  - name: function-sayjs-conf
    path: var/db/baetyl/function-sayjs-conf
  - name: function-sayjs-code
    path: var/db/baetyl/function-sayjs-code
  - name: function-filter-conf
    path: var/db/baetyl/function-filter-conf
"""

FUNCTION_MANAGER = """
hub:
  address: tcp://localhub:1883
  username: test
  password: hahaha
rules:
  - clientid: func-python27-sayhi-1
    subscribe:
      topic: t
    function:
      name: python27-sayhi
    publish:
      topic: t/py2hi
  - clientid: func-sql-filter-1
    subscribe:
      topic: t
      qos: 1
    function:
      name: sql-filter
    publish:
      topic: t/sqlfilter
      qos: 1
  - clientid: func-python36-sayhi-1
    subscribe:
      topic: t
    function:
      name: python36-sayhi
    publish:
      topic: t/py3hi
  - clientid: func-node85-sayhi-1
    subscribe:
      topic: t
    function:
      name: node85-sayhi
    publish:
      topic: t/node8hi
functions:
  - name: python27-sayhi
    service: function-python27-sayhi
    instance:
      min: 0
      max: 10
  - name: sql-filter
    service: function-sql-filter
  - name: python36-sayhi
    service: function-python36-sayhi
  - name: node85-sayhi
    service: function-node85-sayhi
logger:
  path: var/log/baetyl/service.log
  level: "debug"
"""

FILTER = """
functions:
  - name: sql-filter
    handler: 'select qos() as qos, topic() as topic, * where id < 10'
"""

SAYHI = """
functions:
  - name: 'python27-sayhi'
    handler: 'index.handler'
    codedir: 'var/db/baetyl/function-sayhi'
  - name: 'python36-sayhi'
    handler: 'index.handler'
    codedir: 'var/db/baetyl/function-sayhi'
"""

SAYJS = """
functions:
  - name: 'node85-sayhi'
    handler: 'index.handler'
    codedir: 'var/db/baetyl/function-sayhi'
"""


@pytest.fixture(scope="session")
def chapter9_images(images):  # noqa: F811
    images.build_images("baetyl-function-manager", "baetyl-function-sql", "baetyl-function-python",
                        "baetyl-function-node", tag=TAG)
    return images


def test_seed_chapter9_verbatim(dmaster, chapter9_images):
    m = dmaster()
    port = free_port()
    db = "var/db/baetyl"
    m.app(textwrap.dedent(APPLICATION).replace("- 1883:1883", f"- 127.0.0.1:{port}:1883"))
    for rel, text in (("function-manager-conf", FUNCTION_MANAGER), ("function-filter-conf", FILTER),
                      ("function-sayhi-conf", SAYHI), ("function-sayjs-conf", SAYJS)):
        m.write(f"{db}/{rel}/service.yml", text)
    # The hub config and the functions' code of the seed, which example/docker ships as they are.
    for d in ("localhub-conf", "function-sayhi-code", "function-sayjs-code"):
        shutil.copytree(os.path.join(SRC, "example", "docker", db, d), m.path(f"{db}/{d}"))
    r = m.cmd("check")
    assert r.returncode == 0 and "OK!" in r.stdout, r.stdout + r.stderr
    m.start()
    fm_log = f"{db}/function-manager-log/service.log"
    wait_for(lambda: m.read(fm_log, "").count("rule connected to the hub") == 4, 60,
             what="the function-manager's four rules connected to localhub")
    c = Client(port, "test", "hahaha")
    try:
        c.sub("t/#")
        c.pub("t", b'{"id":1}', qos=0)
        want = {"t/topic", "t/py2hi", "t/py3hi", "t/node8hi", "t/sqlfilter"}
        wait_for(lambda: want <= set(c.got), 60, 0.2, what=f"answers on {sorted(want)}")
    finally:
        c.close()
    assert json.loads(c.got["t/sqlfilter"][0]) == {"qos": 0, "topic": "t", "id": 1}
    for topic, name in (("t/py2hi", "python27-sayhi"), ("t/py3hi", "python36-sayhi"),
                        ("t/node8hi", "node85-sayhi")):
        out = json.loads(c.got[topic][0])
        assert out["Say"] == "Hello Baetyl" and out["functionName"] == name, out
    assert dinspect("localhub")["Config"]["Image"] == "hub.baidubce.com/baetyl/baetyl-hub"
    py27 = labelled("service=function-python27-sayhi")
    assert len(py27) == 1 and dinspect(py27[0])["Config"]["Image"] == \
        "hub.baidubce.com/baetyl/baetyl-function-python27"
    assert m.stop() == 0
    assert labelled(f"baetyl-master={master_id(m.dir)}") == []


# ---- chapter 8: message routing --------------------------------------------------------------

# /usr/local/var/db/baetyl/application.yml of the seed's section 8.2
APPLICATION_8 = """
version: V2
services:
  - name: hub
    image: 'hub.baidubce.com/baetyl/baetyl-hub'
    replica: 1
    ports:
      - '1883:1883'
    mounts:
      - name: localhub-conf
        path: etc/baetyl
        readonly: true
      - name: localhub_data
        path: var/db/baetyl/data
      - name: log-V1
        path: var/log/baetyl
volumes:
  - name: localhub-conf
    path: var/db/baetyl/localhub-conf/V1
  - name: log-V1
    path: var/db/baetyl/log
  - name: localhub_data
    path: var/db/baetyl/localhub_data
"""

HUB_8 = """
listen:
  - tcp://0.0.0.0:1883
principals:
  - username: 'test'
    password: 'hahaha'
    permissions:
      - action: 'pub'
        permit: ['#']
      - action: 'sub'
        permit: ['#']
subscriptions:
  - source:
      topic: 't'
    target:
      topic: 't/topic'
logger:
  path: var/log/baetyl/service.log
  level: 'debug'
"""


def test_seed_chapter8_verbatim(dmaster):
    """A message published to t also reaches the subscribers of t/topic. The seed names the
    hub config localhub-conf/service.yml but mounts localhub-conf/V1: the file goes where
    the application's volume points."""
    m = dmaster()
    port = free_port()
    m.app(textwrap.dedent(APPLICATION_8).replace("- '1883:1883'", f"- '127.0.0.1:{port}:1883'"))
    m.write("var/db/baetyl/localhub-conf/V1/service.yml", HUB_8)
    r = m.cmd("check")
    assert r.returncode == 0 and "OK!" in r.stdout, r.stdout + r.stderr
    m.start()
    c = Client(port, "test", "hahaha")
    try:
        c.sub("t/topic")
        c.pub("t", b"routed")
        assert c.wait("t/topic", 30) == b"routed"
    finally:
        c.close()
    # the hub's log, through the volume log-V1
    assert os.path.getsize(m.path("var/db/baetyl/log/service.log")) > 0
    assert dinspect("hub")["Config"]["Image"] == "hub.baidubce.com/baetyl/baetyl-hub"
    assert m.stop() == 0
    assert labelled(f"baetyl-master={master_id(m.dir)}") == []


# ---- chapter 10: remote-mqtt ----------------------------------------------------------------

# var/db/baetyl/application.yml of the seed's section 10.2
APPLICATION_10 = """
version: v0
services:
  - name: localhub
    image: hub.baidubce.com/baetyl/baetyl-hub:latest
    replica: 1
    ports:
      - 1883:1883
    mounts:
      - name: localhub-conf
        path: etc/baetyl
        readonly: true
      - name: localhub-data
        path: var/db/baetyl/data
      - name: localhub-log
        path: var/log/baetyl
  - name: remote-iothub
    image: hub.baidubce.com/baetyl/baetyl-remote-mqtt:latest
    replica: 1
    mounts:
      - name: remote-iothub-conf
        path: etc/baetyl
        readonly: true
      - name: remote-iothub-cert
        path: var/db/baetyl/cert
        readonly: true
      - name: remote-iothub-log
        path: var/log/baetyl
volumes:
  # hub
  - name: localhub-conf
    path: var/db/baetyl/localhub-conf
  - name: localhub-data
    path: var/db/baetyl/localhub-data
  - name: localhub-log
    path: var/db/baetyl/localhub-log
  # remote mqtt
  - name: remote-iothub-conf
    path: var/db/baetyl/remote-iothub-conf
  - name: remote-iothub-cert
    path: var/db/baetyl/remote-iothub-cert
  - name: remote-iothub-log
    path: var/db/baetyl/remote-iothub-log
"""

HUB_10 = """
listen:
  - tcp://0.0.0.0:1883
principals:
  - username: test
    password: hahaha
    permissions:
      - action: 'pub'
        permit: ['#']
      - action: 'sub'
        permit: ['#']
logger:
  path: var/log/baetyl/localhub-service.log
  level: "debug"
"""

# The seed's remote config; the PDF text breaks the indentation of `rules` (its `remote:`
# and `qos: 1` lines), which is restored here as test_remote_mqtt_acceptance.py does. The
# endpoint is the broker below; the user name is the seed's example of one.
REMOTE_10 = """
name: remote-iothub
hub:
  address: tcp://localhub:1883
  username: test
  password: hahaha
remotes:
  - name: iothub
    address: 'ssl://host.docker.internal:{port}'
    clientid: remote-iothub-1
    username: 'xxxxxx/test'
    ca: var/db/baetyl/cert/ca.pem
    cert: var/db/baetyl/cert/client.pem
    key: var/db/baetyl/cert/client.key
rules:
  - hub:
      subscriptions:
        - topic: t1
    remote:
      name: iothub
      subscriptions:
        - topic: t2
          qos: 1
logger:
  path: var/log/baetyl/remote-service.log
  level: 'debug'
"""

CLOUD_CONF = """per_listener_settings false
allow_anonymous true
persistence false
user root
log_dest file {dir}/mosquitto.log
log_type all
listener {tls} 0.0.0.0
cafile {certs}/ca.pem
certfile {certs}/server.pem
keyfile {certs}/server.key
require_certificate true
listener {plain} 127.0.0.1
"""


@pytest.fixture(scope="session")
def chapter10_images(images):  # noqa: F811
    images.build_images("baetyl-remote-mqtt", tag=TAG)
    return images


@pytest.fixture
def cloud(procs, tmp_path):
    """Baidu IoT Hub's stand-in: a mosquitto on this machine requiring a client certificate
    on a TLS port of every address (containers reach it as host.docker.internal, which its
    certificate names), and a plain port on 127.0.0.1 for the test's MQTT.fx."""
    certs = tmp_path / "certs"
    r = subprocess.run([os.path.join(SRC, "scripts", "gen-certs.sh"), str(certs),
                        "host.docker.internal"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    tls, plain = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(CLOUD_CONF.format(tls=tls, plain=plain, certs=certs, dir=tmp_path))
    procs.start(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT)
    log = tmp_path / "mosquitto.log"
    wait_for(lambda: log.exists() and log.read_text().count("listen socket on port") >= 2, 10,
             what="mosquitto listening")
    return {"tls": tls, "plain": plain, "certs": certs, "log": log}


def test_seed_chapter10_verbatim(dmaster, chapter10_images, cloud):
    """MQTTBox on the local hub publishes to t1, which reaches MQTT.fx on the cloud broker;
    MQTT.fx publishes to t2 (QoS 1), which reaches MQTTBox, through remote-iothub in its
    container over two-way TLS with the certificates of its cert volume."""
    m = dmaster()
    port = free_port()
    db = "var/db/baetyl"
    m.app(textwrap.dedent(APPLICATION_10).replace("- 1883:1883", f"- 127.0.0.1:{port}:1883"))
    m.write(f"{db}/localhub-conf/service.yml", HUB_10)
    m.write(f"{db}/remote-iothub-conf/service.yml", REMOTE_10.format(port=cloud["tls"]))
    os.makedirs(m.path(f"{db}/remote-iothub-cert"))
    for name in ("ca.pem", "client.pem", "client.key"):
        shutil.copy(cloud["certs"] / name, m.path(f"{db}/remote-iothub-cert/{name}"))
    r = m.cmd("check")
    assert r.returncode == 0 and "OK!" in r.stdout, r.stdout + r.stderr
    m.start()
    wait_for(lambda: "remote-iothub-1" in cloud["log"].read_text(), 30, 0.3,
             what="remote-iothub connected to the cloud broker")
    box = Client(port, "test", "hahaha")  # MQTTBox
    fx = Client(cloud["plain"])  # MQTT.fx
    try:
        fx.sub("t1")
        box.sub("t2")
        box.pub("t1", b"This message is from MQTTBox.")
        assert fx.wait("t1", 30) == b"This message is from MQTTBox."
        fx.pub("t2", b"This message is from MQTT.fx.")
        assert box.wait("t2", 30) == b"This message is from MQTT.fx."
    finally:
        box.close()
        fx.close()
    # the remote's login: its client id and the seed's user name, over TLS
    assert re.search(r"New client connected from \S+ as remote-iothub-1 .*u'xxxxxx/test'",
                     cloud["log"].read_text()), cloud["log"].read_text()[-2000:]
    rlog = m.read(f"{db}/remote-iothub-log/remote-service.log", "")
    assert 'msg="rule started"' in rlog, rlog[-2000:]
    assert dinspect("remote-iothub")["Config"]["Image"] == \
        "hub.baidubce.com/baetyl/baetyl-remote-mqtt:latest"
    assert m.stop() == 0
    assert labelled(f"baetyl-master={master_id(m.dir)}") == []
