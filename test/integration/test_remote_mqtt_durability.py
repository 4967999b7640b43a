"""remote-mqtt's store-and-forward against the failures peers shipped (issue 16), through the
real hub, the real remote-mqtt and a real mosquitto as the cloud: a bridge that stalls after
reconnects (NanoMQ #2423), cached messages deleted before the remote's PUBACK (NanoMQ #2432),
QoS 1 dropped when a buffer fills (eKuiper #4023), and a long outage during which everything
else restarts. Every message is numbered; the assertions are on the numbers that arrive."""
import os
import re
import signal
import threading
import time

import paho.mqtt.client as mqtt

from conftest import wait_for
from test_remote_mqtt import (Client, bridge_factory, chapter10_conf, clients,  # noqa: F401
                              mosquitto_factory, numbers, stream, wait_flowing)

# the long outage's length in seconds; `make soak` sets 600 (the 10-minute version)
OUTAGE_S = int(os.environ.get("BAETYL_REMOTE_OUTAGE_S", "60"))


def totals(r):
    """(dropped, forwarded, received) hub -> remote, from the totals logged at a clean stop."""
    m = re.findall(r'msg="rule totals" direction="hub -> remote" dropped=(\d+) duplicates=\d+ '
                   r'forwarded=(\d+) received=(\d+)', r.log())
    assert m, r.log()[-2000:]
    return tuple(int(x) for x in m[-1])


def chapter10_rig(hub, mosquitto_factory, bridge_factory, clients, extra=""):
    """The chapter 10 rule (t1 hub -> remote, QoS 1) with a persistent watcher at the remote
    and a publisher at the hub; returns (cloud, bridge, publisher, watcher)."""
    cloud = mosquitto_factory()
    r = bridge_factory(chapter10_conf(hub, f"tcp://127.0.0.1:{cloud.port}", extra))
    pub = clients(hub.port, user="test", password="hahaha")
    watcher = clients(cloud.port, [("t1", 1)], client_id="watcher", clean=False)
    wait_flowing(pub, watcher, "t1")
    return cloud, r, pub, watcher


class Streamer:
    """Publishes str(i) on t1 with QoS 1 in a thread, each PUBACKed by the hub before the
    next; `acked` is how many the hub acknowledged."""

    def __init__(self, pub, pause=0.005):
        self.pub, self.pause = pub, pause
        self.acked = 0
        self.halt = threading.Event()
        self.error = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            while not self.halt.is_set():
                self.pub.publish("t1", str(self.acked).encode(), 1)
                self.acked += 1
                time.sleep(self.pause)
        except Exception as e:  # reported by stop()
            self.error = e

    def stop(self):
        self.halt.set()
        self.t.join(60)
        assert self.error is None, self.error
        return self.acked


def test_bridge_reconnect_does_not_stall_nanomq_2423(hub, mosquitto_factory, bridge_factory,
                                                      clients):
    """The remote restarts 20 times under a steady QoS 1 load: after each restart messages
    published after it flow again (the bridge never stalls), and every message arrives."""
    cloud, r, pub, watcher = chapter10_rig(hub, mosquitto_factory, bridge_factory, clients)
    s = Streamer(pub)
    try:
        for i in range(20):
            cloud.stop()
            time.sleep(0.3)
            cloud.start()
            mark = s.acked
            wait_for(lambda: any(n >= mark for n in numbers(watcher.got(), "t1")), 30,
                     what=f"flow after restart {i + 1} (messages from {mark} on)")
    finally:
        n = s.stop()
    watcher.wait(lambda ms: numbers(ms, "t1") >= set(range(n)), timeout=60,
                 what=f"all {n} messages at the remote")
    assert r.log().count("connection lost") >= 20
    assert r.stop() == 0
    dropped, forwarded, received = totals(r)
    assert dropped == 0 and forwarded >= n


def test_cached_messages_deleted_only_after_remote_puback_nanomq_2432(
        hub, mosquitto_factory, bridge_factory, clients):
    """The remote is frozen (it receives but never PUBACKs) while the hub acknowledges 200
    more messages to their publisher; then remote-mqtt and the remote are both killed (-9)
    and restarted: every message the hub acknowledged reaches the remote at least once, so
    nothing was let go before the remote's PUBACK."""
    cloud, r, pub, watcher = chapter10_rig(hub, mosquitto_factory, bridge_factory, clients)
    stream(pub, "t1", 100)
    watcher.wait(lambda ms: numbers(ms, "t1") >= set(range(100)), what="the first 100")
    os.kill(cloud.proc.pid, signal.SIGSTOP)
    try:
        for i in range(100, 300):
            pub.publish("t1", str(i).encode(), 1)  # PUBACKed by the hub
        time.sleep(1)  # remote-mqtt takes what the hub gives it and sends it on
        assert r.stop(signal.SIGKILL) == -signal.SIGKILL
        assert cloud.procs.stop(cloud.proc, signal.SIGKILL) == -signal.SIGKILL
    finally:
        if cloud.proc.poll() is None:
            os.kill(cloud.proc.pid, signal.SIGCONT)
    assert not numbers(watcher.got(), "t1") >= set(range(300)), "the remote was not frozen"
    subs = watcher.subacks
    cloud.start()
    # the remote lost its sessions with its memory: the watcher subscribes again first
    wait_for(lambda: watcher.subacks > subs, 20, what="the watcher subscribed again")
    r.start()
    watcher.wait(lambda ms: numbers(ms, "t1") >= set(range(300)), timeout=60,
                 what="all 300 messages at the remote")


def test_full_buffer_backpressures_instead_of_dropping_ekuiper_4023(
        hub, mosquitto_factory, bridge_factory, clients):
    """A slow remote (frozen and thawed in turns) behind remote-mqtt with buffersize 2, and a
    publisher sending QoS 1 as fast as the hub takes it: no message is dropped; while the
    remote is frozen the hub holds the backlog (remote-mqtt takes no more than its window
    from the hub), and everything arrives."""
    cloud, r, pub, watcher = chapter10_rig(hub, mosquitto_factory, bridge_factory, clients,
                                   "    buffersize: 2\n")
    fast = mqtt.Client(client_id="fast", clean_session=True)
    fast.username_pw_set("test", "hahaha")
    fast.max_inflight_messages_set(200)
    fast.max_queued_messages_set(0)
    fast.connect("127.0.0.1", hub.port, keepalive=30)
    fast.loop_start()
    n = 5000
    try:
        infos = []
        held = 0
        for cycle in range(10):
            os.kill(cloud.proc.pid, signal.SIGSTOP)
            try:
                for i in range(cycle * n // 10, (cycle + 1) * n // 10):
                    infos.append(fast.publish("t1", str(i).encode(), 1))
                for info in infos:
                    info.wait_for_publish(30)
                    assert info.is_published()
                # every message so far is PUBACKed by the hub, and the remote has few
                held = max(held, len(infos) - len(numbers(watcher.got(), "t1")))
            finally:
                os.kill(cloud.proc.pid, signal.SIGCONT)
            time.sleep(0.2)
    finally:
        fast.disconnect()
        fast.loop_stop()
    watcher.wait(lambda ms: numbers(ms, "t1") >= set(range(n)), timeout=120,
                 what=f"all {n} messages at the remote")
    # the hub held hundreds of messages at once; remote-mqtt's own window is 2 (plus the
    # hub's delivery window of 100 it may take in)
    assert held > 300, held
    log = r.log()
    assert "message not forwarded" not in log, log[-2000:]
    assert r.stop() == 0
    dropped, forwarded, received = totals(r)
    assert dropped == 0 and forwarded >= n


def test_long_outage_with_restarts_loses_nothing(hub, mosquitto_factory, bridge_factory,
                                                 clients):
    """The remote is down for OUTAGE_S seconds (60; 600 under `make soak`) while messages keep
    coming; during it the hub is restarted, then remote-mqtt is killed (-9) and restarted:
    when the remote returns, every message the hub acknowledged arrives."""
    cloud, r, pub, watcher = chapter10_rig(hub, mosquitto_factory, bridge_factory, clients)
    cloud.stop()
    sent = 0

    def phase(seconds):
        nonlocal sent
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pub.publish("t1", str(sent).encode(), 1)
            sent += 1
            time.sleep(0.02)

    phase(OUTAGE_S / 3)
    hub.stop()
    wait_for(lambda: not pub.connected.is_set(), 20, what="the publisher saw the hub go")
    hub.start()
    wait_for(pub.connected.is_set, 20, what="the publisher back at the hub")
    phase(OUTAGE_S / 3)
    assert r.stop(signal.SIGKILL) == -signal.SIGKILL
    r.start()
    phase(OUTAGE_S / 3)
    cloud.start()
    watcher.wait(lambda ms: numbers(ms, "t1") >= set(range(sent)), timeout=120,
                 what=f"all {sent} messages at the remote")
