"""baetyl-remote-mqtt (SPEC §13) against the real hub and a real mosquitto standing in for the
cloud broker: the seed's chapter 10 both ways (tcp, ssl with client certificates, ws, wss),
end-to-end QoS 1 through a remote outage, a hub outage and a kill -9 of remote-mqtt, several
remotes and rules, client id precedence, config errors, the chapter 10 example run by the
master, and a remote over MQTT 5.0 (issue 20)."""
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import SRC, binary, free_port, wait_for, wait_port
from mqtt_peers import Mosquitto, closing, hub_yaml, make_certs
from master_harness import master  # noqa: F401 (fixture)


# ---- peers -------------------------------------------------------------------------------

class Client:
    """A paho client (MQTT 3.1.1) that subscribes again at every (re)connect and collects
    what it receives as (topic, payload, qos, retain)."""

    def __init__(self, port, subs=(), user=None, password=None, client_id="", clean=True,
                 tls=None):
        self.c = mqtt.Client(client_id=client_id, clean_session=clean)
        self.c.reconnect_delay_set(min_delay=1, max_delay=1)
        self.c.max_queued_messages_set(0)
        if user:
            self.c.username_pw_set(user, password)
        if tls:
            self.c.tls_set(**tls)
        self.subs = list(subs)
        self.msgs = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.subacks = 0
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda c, u, rc: self.connected.clear()
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        wait_for(self.connected.is_set, 10, what=f"paho connected to {port}")
        if self.subs:
            wait_for(lambda: self.subacks > 0, 10, what="suback")

    def _on_connect(self, c, u, flags, rc):
        if rc == 0:
            for t, q in self.subs:
                c.subscribe(t, q)
            self.connected.set()

    def _on_subscribe(self, c, u, mid, granted):
        self.subacks += 1

    def _on_message(self, c, u, m):
        with self.lock:
            self.msgs.append((m.topic, m.payload, m.qos, bool(m.retain)))

    def publish(self, topic, payload, qos=0, retain=False):
        info = self.c.publish(topic, payload, qos, retain)
        if qos:
            info.wait_for_publish(30)
            assert info.is_published(), f"publish {topic} not acknowledged"
        return info

    def got(self, topic=None):
        with self.lock:
            return [m for m in self.msgs if topic is None or m[0] == topic]

    def wait(self, pred, timeout=20, what="messages"):
        return wait_for(lambda: pred(self.got()), timeout, what=what)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class RemoteMqtt:
    """baetyl-remote-mqtt run standalone in its own directory (config service.yml, output in
    remote-mqtt.log)."""

    def __init__(self, procs, workdir, conf):
        self.procs = procs
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "service.yml")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.logpath = os.path.join(self.dir, "remote-mqtt.log")
        self.proc = None

    def start(self):
        self.logf = open(self.logpath, "ab")
        self.proc = self.procs.start([binary("baetyl-remote-mqtt"), "-c", self.conf], cwd=self.dir,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        return self

    def stop(self, sig=signal.SIGTERM):
        rc = self.procs.stop(self.proc, sig)
        self.logf.close()
        return rc

    def log(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def wait_connected(self, n):
        wait_for(lambda: self.log().count('msg="mqtt client connected"') >= n, 20,
                 what=f"{n} remote-mqtt connections")


@pytest.fixture
def mosquitto_factory(procs, tmp_path):
    n = [0]

    def make(certs=None, start=True):
        n[0] += 1
        m = Mosquitto(procs, tmp_path / f"mosquitto{n[0]}", certs)
        return m.start() if start else m
    return make


@pytest.fixture
def bridge_factory(procs, tmp_path):
    """make(conf, start=True) -> RemoteMqtt; at teardown a clean SIGTERM stop: exit code 0 and
    no sanitizer report."""
    made = []

    def make(conf, start=True):
        r = RemoteMqtt(procs, tmp_path / f"remote-mqtt{len(made) + 1}", conf)
        made.append(r)
        return r.start() if start else r
    yield make
    for r in made:
        if r.proc is not None and r.proc.poll() is None:
            rc = r.stop()
            log = r.log()
            assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]
            assert rc == 0, f"remote-mqtt exited with {rc}: {log[-2000:]}"


@pytest.fixture
def clients():
    yield from closing(Client)


def chapter10_conf(hub, remote_address, remote_extra="", rule_qos=1, hub_extra=""):
    """The seed's chapter 10 rule: t1 hub -> remote, t2 remote -> hub."""
    return hub_yaml(hub, hub_extra) + f"""remotes:
  - name: iothub
    address: {remote_address}
    clientid: remote-iothub-1
    interval: 1s
{remote_extra}rules:
  - hub:
      subscriptions:
        - topic: t1
          qos: {rule_qos}
    remote:
      name: iothub
      subscriptions:
        - topic: t2
          qos: {rule_qos}
logger:
  level: debug
"""


def wait_flowing(pub, sub, topic, timeout=20):
    """Publishes probes on pub until one arrives at sub: the bridge's subscriptions are in
    place (probes carry payload b'probe')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish(topic, b"probe", 0)
        t = time.monotonic() + 0.5
        while time.monotonic() < t:
            if any(m[0] == topic and m[1] == b"probe" for m in sub.got()):
                return
            time.sleep(0.02)
    raise AssertionError(f"nothing flows on {topic}")


def real(msgs, topic):
    return [m for m in msgs if m[0] == topic and m[1] != b"probe"]


def numbers(msgs, topic):
    return {int(m[1]) for m in real(msgs, topic)}


# ---- chapter 10, both ways -------------------------------------------------------------

def check_both_ways(hub_c, cloud_c):
    """hub_c: a client of the hub subscribed to t2; cloud_c: of the remote, subscribed to t1.
    Messages that were retained before they subscribed are left out."""
    def live(c, topic):
        return [m for m in real(c.got(), topic) if not m[1].startswith(b"retained")]
    wait_flowing(hub_c, cloud_c, "t1")
    wait_flowing(cloud_c, hub_c, "t2")
    hub_c.publish("t1", b"This message is from MQTTBox.", 1)
    cloud_c.publish("t2", b"This message is from MQTT.fx.", 1)
    hub_c.publish("t1", b"\x00\xffbinary", 0)
    wait_for(lambda: len(live(cloud_c, "t1")) >= 2, 20, what="t1 at the remote")
    wait_for(lambda: len(live(hub_c, "t2")) >= 1, 20, what="t2 at the hub")
    assert live(cloud_c, "t1") == [("t1", b"This message is from MQTTBox.", 1, False),
                                   ("t1", b"\x00\xffbinary", 0, False)]
    assert live(hub_c, "t2") == [("t2", b"This message is from MQTT.fx.", 1, False)]


def test_chapter10_tcp_both_ways_unchanged(hub, mosquitto_factory, bridge_factory, clients):
    cloud = mosquitto_factory()
    # retained messages present before remote-mqtt subscribes reach it with RETAIN=1 and must
    # be stored as retained on the other side too
    pre_hub = clients(hub.port, user="test", password="hahaha")
    pre_hub.publish("t1", b"retained on the hub", 1, retain=True)
    pre_cloud = clients(cloud.port)
    pre_cloud.publish("t2", b"retained in the cloud", 1, retain=True)

    bridge_factory(chapter10_conf(hub, f"tcp://127.0.0.1:{cloud.port}"))
    hub_c = clients(hub.port, [("t2", 1)], user="test", password="hahaha")
    cloud_c = clients(cloud.port, [("t1", 1)])
    check_both_ways(hub_c, cloud_c)

    # a late subscriber gets the forwarded copies as retained messages
    late_cloud = clients(cloud.port, [("t1", 1)])
    late_cloud.wait(lambda ms: ("t1", b"retained on the hub", 1, True) in ms, what="retained t1")
    late_hub = clients(hub.port, [("t2", 1)], user="test", password="hahaha")
    late_hub.wait(lambda ms: ("t2", b"retained in the cloud", 1, True) in ms, what="retained t2")


def test_chapter10_over_mqtt5(hub, mosquitto_factory, bridge_factory, clients):
    """`protocol: 5` in a remote's settings: remote-mqtt speaks MQTT 5.0 to a real mosquitto
    (which logs the level as p5) and chapter 10 flows both ways, QoS 1 and 0, as over 3.1.1;
    its persistent session (cleansession false) is kept by the broker over 5.0 as well. The
    link to the hub speaks 5.0 too."""
    cloud = mosquitto_factory()
    r = bridge_factory(chapter10_conf(hub, f"tcp://127.0.0.1:{cloud.port}",
                                      remote_extra="    protocol: 5\n",
                                      hub_extra="  protocol: 5\n"))
    hub_c = clients(hub.port, [("t2", 1)], user="test", password="hahaha")
    cloud_c = clients(cloud.port, [("t1", 1)])
    check_both_ways(hub_c, cloud_c)
    wait_for(lambda: "as remote-iothub-1 (p5, c0" in cloud.log(), 10, what="a 5.0 connection")
    # the session outlives the connection: t2 published while remote-mqtt is away arrives
    assert r.stop() == 0
    cloud_c.publish("t2", b"while away", 1)
    time.sleep(0.3)
    r.start()
    hub_c.wait(lambda ms: ("t2", b"while away", 1, False) in ms, what="t2 kept by the session")


def test_chapter10_qos0_rule(hub, mosquitto_factory, bridge_factory, clients):
    cloud = mosquitto_factory()
    bridge_factory(chapter10_conf(hub, f"tcp://127.0.0.1:{cloud.port}", rule_qos=0))
    hub_c = clients(hub.port, [("t2", 1)], user="test", password="hahaha")
    cloud_c = clients(cloud.port, [("t1", 1)])
    wait_flowing(hub_c, cloud_c, "t1")
    wait_flowing(cloud_c, hub_c, "t2")
    hub_c.publish("t1", b"q1 to a q0 rule", 1)
    cloud_c.wait(lambda ms: len(real(ms, "t1")) >= 1)
    assert real(cloud_c.got(), "t1") == [("t1", b"q1 to a q0 rule", 0, False)]


def test_chapter10_ssl_client_certificate(hub, mosquitto_factory, bridge_factory, clients,
                                          tmp_path):
    certs = make_certs(tmp_path / "certs")
    cloud = mosquitto_factory(certs=certs)
    extra = (f"    ca: {certs['ca']}\n    cert: {certs['client']}\n"
             f"    key: {certs['client_key']}\n")
    r = bridge_factory(chapter10_conf(hub, f"ssl://127.0.0.1:{cloud.ssl_port}", extra))
    hub_c = clients(hub.port, [("t2", 1)], user="test", password="hahaha")
    cloud_c = clients(cloud.ssl_port, [("t1", 1)],
                      tls={"ca_certs": certs["ca"], "certfile": certs["client"],
                           "keyfile": certs["client_key"]})
    check_both_ways(hub_c, cloud_c)
    assert "ssl://127.0.0.1" in r.log()


def test_ssl_remote_without_client_certificate_does_not_connect(hub, mosquitto_factory,
                                                                 bridge_factory, tmp_path):
    certs = make_certs(tmp_path / "certs")
    cloud = mosquitto_factory(certs=certs)
    r = bridge_factory(chapter10_conf(hub, f"ssl://127.0.0.1:{cloud.ssl_port}",
                                      f"    ca: {certs['ca']}\n"))
    # the hub side connects; the remote refuses the handshake, and the client keeps trying
    wait_for(lambda: r.log().count("mqtt client cannot connect") + r.log().count(
        "mqtt client connection lost") >= 2, 20, what="refused attempts")
    assert f"tcp://127.0.0.1:{hub.port}" in r.log()
    assert r.proc.poll() is None


def test_ws_and_wss_remotes(hub_factory, bridge_factory, clients, tmp_path):
    """Two remotes reached over WebSocket and secure WebSocket (a second baetyl-hub plays the
    cloud: Debian's mosquitto has no WebSocket listener), one rule each."""
    certs = make_certs(tmp_path / "certs")
    hub = hub_factory()
    ws, wss = free_port(), free_port()
    cloud = hub_factory(start=False)
    with open(cloud.conf) as f:
        text = f.read()
    text = text.replace(f"listen: ['tcp://127.0.0.1:{cloud.port}']",
                        f"listen: ['tcp://127.0.0.1:{cloud.port}', 'ws://127.0.0.1:{ws}/mqtt', "
                        f"'wss://127.0.0.1:{wss}/mqtt']")
    text += (f"certificate: {{ca: {certs['ca']}, cert: {certs['server']}, "
             f"key: {certs['server_key']}}}\n")
    with open(cloud.conf, "w") as f:
        f.write(text)
    cloud.start()
    wait_port(ws)
    wait_port(wss)
    conf = hub_yaml(hub) + f"""remotes:
  - name: overws
    address: ws://127.0.0.1:{ws}/mqtt
    username: test
    password: hahaha
    interval: 1s
  - name: overwss
    address: wss://127.0.0.1:{wss}/mqtt
    username: test
    password: hahaha
    ca: {certs['ca']}
    interval: 1s
rules:
  - hub: {{subscriptions: [{{topic: up/ws, qos: 1}}]}}
    remote: {{name: overws, subscriptions: [{{topic: down/ws, qos: 1}}]}}
  - hub: {{subscriptions: [{{topic: up/wss, qos: 1}}]}}
    remote: {{name: overwss, subscriptions: [{{topic: down/wss, qos: 1}}]}}
"""
    bridge_factory(conf)
    hub_c = clients(hub.port, [("down/#", 1)], user="test", password="hahaha")
    cloud_c = clients(cloud.port, [("up/#", 1)], user="test", password="hahaha")
    for kind in ("ws", "wss"):
        wait_flowing(hub_c, cloud_c, f"up/{kind}")
        wait_flowing(cloud_c, hub_c, f"down/{kind}")
        hub_c.publish(f"up/{kind}", f"up over {kind}".encode(), 1)
        cloud_c.publish(f"down/{kind}", f"down over {kind}".encode(), 1)
        cloud_c.wait(lambda ms, k=kind: real(ms, f"up/{k}"), what=f"up/{kind}")
        hub_c.wait(lambda ms, k=kind: real(ms, f"down/{k}"), what=f"down/{kind}")
        assert real(cloud_c.got(), f"up/{kind}") == [(f"up/{kind}", f"up over {kind}".encode(), 1, False)]
        assert real(hub_c.got(), f"down/{kind}") == [(f"down/{kind}", f"down over {kind}".encode(), 1, False)]


# ---- QoS 1 end to end -----------------------------------------------------------------

def stream(pub, topic, n, at=None, pause=0.005):
    """Publishes str(i) for i in range(n) with QoS 1 (each acknowledged by its broker);
    at = {i: action} runs action() before message i."""
    for i in range(n):
        if at and i in at:
            at[i]()
        pub.publish(topic, str(i).encode(), 1)
        time.sleep(pause)


def test_qos1_remote_stopped_during_stream(hub, mosquitto_factory, bridge_factory, clients):
    """hub -> remote while the remote is down: the messages stay unacknowledged at the hub and
    flow when the remote is back; every one arrives."""
    cloud = mosquitto_factory()
    r = bridge_factory(chapter10_conf(hub, f"tcp://127.0.0.1:{cloud.port}"))
    hub_c = clients(hub.port, [("t2", 1)], user="test", password="hahaha")
    watcher = clients(cloud.port, [("t1", 1)], client_id="watcher", clean=False)
    wait_flowing(hub_c, watcher, "t1")
    n = 300

    def down():
        cloud.stop()
        time.sleep(0.3)

    def up():
        cloud.start()

    # the remote is gone for messages 80..219 (about 1.5 s): far more than buffersize (10)
    stream(hub_c, "t1", n, at={80: down, 220: up})
    watcher.wait(lambda ms: numbers(ms, "t1") >= set(range(n)), timeout=60,
                 what=f"all {n} messages at the remote")
    assert all(m[2] == 1 for m in real(watcher.got(), "t1"))
    assert "connection lost" in r.log()
    # the totals logged at a clean stop: nothing dropped, everything forwarded
    assert r.stop() == 0
    tot = re.search(r'msg="rule totals" direction="hub -> remote" dropped=(\d+) duplicates=\d+ '
                    r'forwarded=(\d+) received=(\d+)', r.log())
    assert tot, r.log()[-2000:]
    assert int(tot.group(1)) == 0 and int(tot.group(2)) >= n and int(tot.group(3)) >= n


def test_long_outage_drains_as_soon_as_the_remote_returns(hub, mosquitto_factory,
                                                         bridge_factory, clients):
    """Issue #16 (Azure IoT Edge took up to 53 s to drain after a 120 s outage): with the
    default reconnect backoff (interval 1m), messages that waited through a 20 s outage flow
    within about reconnectinterval (1s) of the remote's return; the backoff alone would try
    at 15.5 s and next at 31.5 s, some 11 s after the return."""
    cloud = mosquitto_factory()
    conf = chapter10_conf(hub, f"tcp://127.0.0.1:{cloud.port}").replace("    interval: 1s\n", "")
    r = bridge_factory(conf)
    hub_c = clients(hub.port, [("t2", 1)], user="test", password="hahaha")
    watcher = clients(cloud.port, [("t1", 1)], client_id="watcher", clean=False)
    wait_flowing(hub_c, watcher, "t1")
    cloud.stop()
    stream(hub_c, "t1", 50)
    time.sleep(20)
    cloud.start()
    back = time.monotonic()
    watcher.wait(lambda ms: numbers(ms, "t1"), timeout=60, what="the first waiting message")
    first = time.monotonic() - back
    watcher.wait(lambda ms: numbers(ms, "t1") >= set(range(50)), timeout=60,
                 what="all 50 messages at the remote")
    print(f"drain started {first:.2f} s after the remote returned")
    # attempts every second while messages wait (the backoff alone: 5 in 20 s)
    assert first < 5, f"drain started {first:.1f} s after the remote returned"
    assert r.log().count("mqtt client cannot connect") >= 12, r.log()[-2000:]


def test_qos1_hub_stopped_during_stream(hub, mosquitto_factory, bridge_factory, clients):
    """remote -> hub while the hub is down: the remote keeps what remote-mqtt did not
    acknowledge; every message arrives at the hub once it is back (its session and the
    messages are durable)."""
    cloud = mosquitto_factory()
    bridge_factory(chapter10_conf(hub, f"tcp://127.0.0.1:{cloud.port}"))
    cloud_c = clients(cloud.port, [("t1", 1)])
    watcher = clients(hub.port, [("t2", 1)], user="test", password="hahaha", client_id="watcher",
                      clean=False)
    wait_flowing(cloud_c, watcher, "t2")
    n = 300

    def down():
        hub.stop()
        time.sleep(0.3)

    def up():
        hub.start()

    stream(cloud_c, "t2", n, at={80: down, 220: up})
    watcher.wait(lambda ms: numbers(ms, "t2") >= set(range(n)), timeout=60,
                 what=f"all {n} messages at the hub")


def kill9_midstream(r, src_pub, watcher, topic, frozen_pid, n=300):
    """Streams n numbered QoS 1 messages from src_pub; from message 100 the destination
    broker (frozen_pid) is frozen, so that remote-mqtt holds messages it forwarded or queued
    but could not have acknowledged; at message 200 remote-mqtt is killed (-9), the broker
    thawed and remote-mqtt started again. Every message must reach watcher."""
    def freeze():
        os.kill(frozen_pid, signal.SIGSTOP)

    def kill():
        time.sleep(0.3)  # let the bridge take what the source sends it
        held = r.log()
        assert r.stop(signal.SIGKILL) == -signal.SIGKILL, held[-2000:]
        os.kill(frozen_pid, signal.SIGCONT)
        r.start()

    try:
        stream(src_pub, topic, n, at={100: freeze, 200: kill})
    finally:
        os.kill(frozen_pid, signal.SIGCONT)
    watcher.wait(lambda ms: numbers(ms, topic) >= set(range(n)), timeout=60,
                 what=f"all {n} messages on {topic}")


def test_qos1_kill9_midstream_hub_to_remote(hub, mosquitto_factory, bridge_factory, clients):
    """remote-mqtt killed (-9) while it holds hub messages the remote has not acknowledged:
    the hub resends them to the restarted bridge; nothing is lost."""
    cloud = mosquitto_factory()
    r = bridge_factory(chapter10_conf(hub, f"tcp://127.0.0.1:{cloud.port}"))
    watcher = clients(cloud.port, [("t1", 1)], client_id="w1", clean=False)
    pub = clients(hub.port, user="test", password="hahaha")
    wait_flowing(pub, watcher, "t1")
    kill9_midstream(r, pub, watcher, "t1", cloud.proc.pid)


def test_qos1_kill9_midstream_remote_to_hub(hub, mosquitto_factory, bridge_factory, clients):
    """The same the other way: the remote resends to the restarted bridge."""
    cloud = mosquitto_factory()
    r = bridge_factory(chapter10_conf(hub, f"tcp://127.0.0.1:{cloud.port}"))
    watcher = clients(hub.port, [("t2", 1)], user="test", password="hahaha", client_id="w2",
                      clean=False)
    pub = clients(cloud.port)
    wait_flowing(pub, watcher, "t2")
    kill9_midstream(r, pub, watcher, "t2", hub.proc.pid)


def test_slow_remote_slows_the_source_and_stop_still_works(hub, mosquitto_factory,
                                                           bridge_factory, clients):
    """A remote that stops reading (frozen) while a QoS 0 flood arrives from the hub: once
    its queue is full remote-mqtt stops reading from the hub instead of dropping messages
    itself, and SIGTERM still stops it promptly and cleanly while it waits."""
    cloud = mosquitto_factory()
    r = bridge_factory(chapter10_conf(hub, f"tcp://127.0.0.1:{cloud.port}", rule_qos=0))
    pub = clients(hub.port, user="test", password="hahaha")
    watcher = clients(cloud.port, [("t1", 0)])
    wait_flowing(pub, watcher, "t1")
    os.kill(cloud.proc.pid, signal.SIGSTOP)
    try:
        payload = b"x" * 1024
        # far more than the socket buffers, the client's output and the queue (10000) hold
        for _ in range(40000):
            pub.c.publish("t1", payload, 0)
        wait_for(lambda: "the source waits for the destination" in r.log(), 30,
                 what="remote-mqtt waiting for room")
        assert "message not forwarded" not in r.log()
        t0 = time.monotonic()
        assert r.stop() == 0
        assert time.monotonic() - t0 < 10
        log = r.log()
        assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]
    finally:
        os.kill(cloud.proc.pid, signal.SIGCONT)


# ---- several remotes and rules, client ids ----------------------------------------------

def connected_ids_mosquitto(m):
    """Client ids mosquitto logged as connected, with their clean-session flag."""
    out = set()
    for line in m.log().splitlines():
        if "New client connected" in line and " as " in line:
            cid = line.split(" as ", 1)[1].split(" ")[0]
            out.add((cid, "c0" in line))
    return out


def test_two_remotes_rules_and_client_ids(hub_factory, mosquitto_factory, bridge_factory,
                                          clients):
    hub = hub_factory(extra="logger: {level: debug}\n")
    m1, m2 = mosquitto_factory(), mosquitto_factory()
    conf = hub_yaml(hub) + f"""remotes:
  - name: m1
    address: tcp://127.0.0.1:{m1.port}
    clientid: m1-id
    interval: 1s
  - name: m2
    address: tcp://127.0.0.1:{m2.port}
    interval: 1s
rules:
  - hub: {{subscriptions: [{{topic: a/#, qos: 1}}]}}
    remote: {{name: m1, subscriptions: [{{topic: x/#, qos: 1}}]}}
  - hub: {{clientid: r2-hub, subscriptions: [{{topic: b/#, qos: 1}}]}}
    remote: {{name: m2, clientid: r2-remote, subscriptions: [{{topic: y/#, qos: 1}}]}}
  - hub: {{subscriptions: [{{topic: c/#, qos: 0}}]}}
    remote: {{name: m2}}
"""
    r = bridge_factory(conf)
    r.wait_connected(6)
    at_hub = clients(hub.port, [("x/#", 1), ("y/#", 1)], user="test", password="hahaha")
    at_m1 = clients(m1.port, [("#", 1)])
    at_m2 = clients(m2.port, [("#", 1)])
    wait_flowing(at_hub, at_m1, "a/p")
    wait_flowing(at_hub, at_m2, "b/p")
    wait_flowing(at_hub, at_m2, "c/p")
    wait_flowing(at_m1, at_hub, "x/p")
    wait_flowing(at_m2, at_hub, "y/p")
    at_hub.publish("a/1", b"to m1", 1)
    at_hub.publish("b/1", b"to m2", 1)
    at_hub.publish("c/1", b"to m2 by rule 3", 1)
    at_m1.publish("x/1", b"from m1", 1)
    at_m2.publish("y/1", b"from m2", 1)
    at_hub.wait(lambda ms: real(ms, "x/1") and real(ms, "y/1"))
    at_m1.wait(lambda ms: real(ms, "a/1"))
    at_m2.wait(lambda ms: real(ms, "b/1") and real(ms, "c/1"))
    time.sleep(0.5)  # anything misrouted would have arrived by now
    assert [m[0] for m in at_m1.got() if m[1] != b"probe"] == ["a/1", "x/1"]
    assert sorted(m[0] for m in at_m2.got() if m[1] != b"probe") == ["b/1", "c/1", "y/1"]
    assert real(at_m2.got(), "c/1") == [("c/1", b"to m2 by rule 3", 0, False)]
    assert sorted(m[0] for m in at_hub.got() if m[1] != b"probe") == ["x/1", "y/1"]

    # client ids: rule.remote.clientid, else remotes[].clientid, else the remote's name; at
    # the hub rule.hub.clientid, else the remote client id. Sessions are persistent (c0).
    assert ("m1-id", True) in connected_ids_mosquitto(m1)
    assert {("r2-remote", True), ("m2", True)} <= connected_ids_mosquitto(m2)
    hub_log = hub.read_log()
    for cid in ("m1-id", "r2-hub", "m2"):
        assert f"client={cid} " in hub_log or f"client={cid}\n" in hub_log, cid


# ---- config errors ----------------------------------------------------------------------

def run_refused(tmp_path, conf):
    path = tmp_path / "bad.yml"
    path.write_text(conf)
    p = subprocess.run([binary("baetyl-remote-mqtt"), "-c", str(path)], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr + p.stdout


def test_unknown_remote_refuses_to_start(tmp_path):
    rc, out = run_refused(tmp_path, """hub: {address: 'tcp://127.0.0.1:1', username: test}
remotes: [{name: iothub, address: 'tcp://127.0.0.1:2'}]
rules:
  - hub: {subscriptions: [{topic: t1}]}
    remote: {name: nope}
""")
    assert rc == 1, out
    assert "rules[0].remote.name: remote (nope) not found" in out


@pytest.mark.parametrize("conf,want", [
    ("remotes: [{name: a, address: 'tcp://h:1'}]\n", "hub.address: required"),
    ("hub: {address: 'tcp://h:1'}\nremotes: [{name: a, address: 'mqtt://h:1'}]\n",
     "remotes[0].address: address (mqtt://h:1) has an unsupported scheme"),
    ("hub: {address: 'tcp://h:1'}\nremotes: [{name: a, address: 'tcp://h:1'}, "
     "{name: a, address: 'tcp://h:2'}]\n", "remotes[1].name: remote name (a) is duplicated"),
    ("hub: {address: 'tcp://h:1'}\nremotes: [{name: a, address: 'tcp://h:1'}]\n"
     "rules: [{remote: {name: a}}, {remote: {name: a}}]\n",
     "rules[1].hub.clientid: client id (a) is also used by rules[0] at the hub"),
    ("hub: {address: 'tcp://h:1'}\nremotes: [{name: a, address: 'tcp://h:1'}]\n"
     "rules: [{remote: {name: a, subscriptions: [{topic: 'a/#/b'}]}}]\n",
     "rules[0].remote.subscriptions[0].topic: invalid topic filter (a/#/b)"),
])
def test_bad_config_refused(tmp_path, conf, want):
    rc, out = run_refused(tmp_path, conf)
    assert rc == 1, out
    assert want in out


def test_bad_certificate_refuses_to_start(tmp_path):
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    rc, out = run_refused(tmp_path, f"""hub: {{address: 'tcp://127.0.0.1:1'}}
remotes: [{{name: a, address: 'ssl://127.0.0.1:2', ca: {tmp_path}/junk.pem}}]
rules: [{{remote: {{name: a}}}}]
""")
    assert rc == 1, out
    assert "cannot start rule" in out and "rules[0] (a)" in out


def test_rejected_subscription_with_validatesubs_stops(hub, mosquitto_factory, tmp_path):
    """validatesubs: a subscription the hub refuses (user `limited` may not subscribe to x)
    stops remote-mqtt with an error, so its supervisor sees it."""
    cloud = mosquitto_factory()
    path = tmp_path / "service.yml"
    path.write_text(f"""hub:
  address: tcp://127.0.0.1:{hub.port}
  username: limited
  password: secret
  validatesubs: true
remotes: [{{name: c, address: 'tcp://127.0.0.1:{cloud.port}'}}]
rules: [{{hub: {{subscriptions: [{{topic: x, qos: 1}}]}}, remote: {{name: c}}}}]
""")
    p = subprocess.run([binary("baetyl-remote-mqtt"), "-c", str(path)], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=30)
    out = p.stderr + p.stdout
    assert p.returncode == 1, out
    assert "subscribe topic (x) rejected by broker" in out
    assert "Sanitizer" not in out


# ---- the chapter 10 example under the master -------------------------------------------

EXAMPLE = os.path.join(SRC, "example", "native-remote")


def test_chapter10_example_under_master(master, mosquitto_factory, clients):
    """example/native-remote as `make install` lays it out, run by the real master, with a
    mosquitto on a free port as the cloud: both directions of chapter 10."""
    cloud = mosquitto_factory()
    m = master(grace="5s")
    shutil.copytree(os.path.join(EXAMPLE, "var"), m.path("var"), dirs_exist_ok=True)
    port = free_port()
    for rel, old, new in (
            ("var/db/baetyl/localhub-conf/service.yml", "tcp://0.0.0.0:1883",
             f"tcp://127.0.0.1:{port}"),
            ("var/db/baetyl/remote-mqtt-conf/service.yml", "tcp://127.0.0.1:1883",
             f"tcp://127.0.0.1:{port}"),
            ("var/db/baetyl/remote-mqtt-conf/service.yml", "tcp://127.0.0.1:1884",
             f"tcp://127.0.0.1:{cloud.port}")):
        text = m.read(rel)
        assert old in text, (rel, old)
        m.write(rel, text.replace(old, new))
    for mod, src_dir in (("baetyl-hub", "hub"), ("baetyl-remote-mqtt", "remote-mqtt")):
        pkg = m.path(f"var/db/baetyl/{mod}")
        os.makedirs(os.path.join(pkg, "bin"))
        shutil.copy(binary(mod), os.path.join(pkg, "bin", mod))
        shutil.copy(os.path.join(SRC, src_dir, "package.yml"), os.path.join(pkg, "package.yml"))
    m.start()
    wait_port(port, timeout=20)
    hub_c = clients(port, [("t2", 1)], user="test", password="hahaha")
    cloud_c = clients(cloud.port, [("t1", 1)])
    check_both_ways(hub_c, cloud_c)
    assert m.stop() == 0
    log = m.read("var/db/baetyl/remote-mqtt-log/service.log", "")
    assert 'msg="rule started"' in log and "remote-iothub-1" in log
    assert 'msg="service stopped"' in log
