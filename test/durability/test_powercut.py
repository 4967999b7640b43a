"""Power cuts under QoS 1 load (issue #16). The hub's store lives on cutfs
(test/tools/cutfs.c), a filesystem that keeps every write not yet fsynced in memory; a cut
kills the hub and cutfs together, so whatever was not durable is gone, then the hub starts
again on what survived. A publisher sends numbered QoS 1 messages to `pc`; the hub routes
each to `rt`; a persistent subscriber (clean session 0, QoS 1 on both) comes and goes. After
the cuts, every message the hub PUBACKed must reach the subscriber on `pc` (its session) and
on `rt` (the route), and the store must open after every cut.

storage.sync true: nothing PUBACKed is lost. storage.sync false (PUBACK after the commit, no
fsync): the same rig must lose messages, which proves it can see a loss.
CUTS (default 50) and CUT_SEED pick the run."""
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import struct

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from conftest import (BUILD, RawClient, binary, free_port, mqtt_publish,  # noqa: E402
                      mqtt_puback, mqtt_subscribe, parse_publish, wait_port)

CUTFS = os.path.join(BUILD, "tools", "cutfs")
CUTS = int(os.environ.get("CUTS", "50"))


class Rig:
    def __init__(self, tmp, sync, leak=0, direct=""):
        self.tmp = str(tmp)
        self.leak = leak
        self.direct = direct
        self.backing = os.path.join(self.tmp, "backing")
        self.mnt = os.path.join(self.tmp, "mnt")
        os.makedirs(self.backing)
        os.makedirs(self.mnt)
        self.port = free_port()
        self.conf = os.path.join(self.tmp, "hub.yml")
        with open(self.conf, "w") as f:
            f.write(f"""listen: ['tcp://127.0.0.1:{self.port}']
storage: {{dir: {self.mnt}/data, sync: {'true' if sync else 'false'}}}
principals:
  - username: test
    password: hahaha
    permissions:
      - {{action: pub, permit: ['#']}}
      - {{action: sub, permit: ['#']}}
subscriptions:
  - {{source: {{topic: pc, qos: 1}}, target: {{topic: rt, qos: 1}}}}
logger: {{level: info}}
""")
        self.fs = self.hub = None
        self.log = open(os.path.join(self.tmp, "hub.log"), "ab")
        self.starts = 0

    def mount(self):
        env = dict(os.environ, CUTFS_LEAK=str(self.leak), CUTFS_DIRECT=self.direct)
        self.fs = subprocess.Popen([CUTFS, self.backing, self.mnt], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True, env=env)
        end = time.time() + 10
        while not os.path.ismount(self.mnt):
            assert self.fs.poll() is None and time.time() < end, "cutfs did not mount"
            time.sleep(0.02)

    def start_hub(self):
        self.hub = subprocess.Popen([binary("baetyl-hub"), "-c", self.conf], cwd=self.tmp,
                                    stdout=self.log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.starts += 1
        try:
            wait_port(self.port, timeout=20)
        except AssertionError:
            raise AssertionError(f"the hub did not start after cut {self.starts - 1}:\n"
                                 + self.read_log()[-3000:])

    def cut(self):
        """The power goes: the hub and everything not durable with it."""
        for p in (self.hub, self.fs):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        subprocess.run(["fusermount3", "-u", "-z", self.mnt], capture_output=True)

    def read_log(self):
        with open(os.path.join(self.tmp, "hub.log"), errors="replace") as f:
            return f.read()

    def close(self):
        for p in (self.hub, self.fs):
            if p and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        subprocess.run(["fusermount3", "-u", "-z", self.mnt], capture_output=True)
        self.log.close()


class Publisher:
    """Numbered QoS 1 messages on `pc`, up to 100 in flight, on raw MQTT (no library resends
    anything behind the test's back). A number counts as acknowledged only when its PUBACK
    arrived; what was in flight when the hub died is simply not counted."""

    def __init__(self, port):
        self.port = port
        self.acked = set()
        self.next = 0
        self.run = True
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def session(self):
        c = RawClient(self.port, timeout=1.0)
        try:
            if c.connect(client_id="pc-pub", username="test", password="hahaha") != 0:
                return
            inflight, pid = {}, 0
            while self.run:
                while len(inflight) < 100:
                    pid = pid % 65535 + 1
                    inflight[pid] = self.next
                    c.send(mqtt_publish("pc", str(self.next).encode(), qos=1, pid=pid))
                    self.next += 1
                try:
                    p = c.recv(0.5)
                except TimeoutError:
                    continue
                if p is None:
                    return
                if p[0] == 4:
                    seq = inflight.pop(struct.unpack(">H", p[2][:2])[0], None)
                    if seq is not None:
                        self.acked.add(seq)
        finally:
            c.close()

    def loop(self):
        while self.run:
            try:
                self.session()
            except (OSError, EOFError, AssertionError, TimeoutError):
                pass
            time.sleep(0.02)

    def stop(self):
        self.run = False
        self.t.join()


class Subscriber:
    """The persistent session pc-sub (clean session 0, QoS 1 on pc and rt), online or away,
    on raw MQTT: every QoS 1 message it records is PUBACKed."""

    def __init__(self, port):
        self.port = port
        self.got = {"pc": set(), "rt": set()}
        self.want_online = False
        self.run = True
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def session(self):
        c = RawClient(self.port, timeout=1.0)
        try:
            if c.connect(client_id="pc-sub", username="test", password="hahaha",
                         clean=False) != 0:
                return
            c.send(mqtt_subscribe(1, [("pc", 1), ("rt", 1)]))
            while self.run and self.want_online:
                try:
                    p = c.recv(0.2)
                except TimeoutError:
                    continue
                if p is None:
                    return
                if p[0] == 3:
                    topic, payload, qos, _, _, pid = parse_publish(p[1], p[2])
                    self.got[topic].add(int(payload))
                    if qos:
                        c.send(mqtt_puback(pid))
            c.send(b"\xe0\x00")  # DISCONNECT: away, the session stays
        finally:
            c.close()

    def loop(self):
        while self.run:
            if self.want_online:
                try:
                    self.session()
                except (OSError, EOFError, AssertionError, TimeoutError):
                    pass
            time.sleep(0.02)

    def online(self):
        self.want_online = True

    def away(self):
        self.want_online = False

    def stop(self):
        self.run = False
        self.t.join()


def run_rig(tmp_path, sync, cuts, seed, leak=0, direct=""):
    assert os.path.exists(CUTFS), f"{CUTFS} not built (make tools)"
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        pytest.fail("cutfs needs /dev/fuse and fusermount3 (scripts/deps.sh installs fuse3)")
    rnd = random.Random(seed)
    rig = Rig(tmp_path, sync, leak, direct)
    try:
        rig.mount()
        rig.start_hub()
        sub = Subscriber(rig.port)
        sub.online()
        end = time.time() + 10  # the session and its subscriptions exist before any message
        while "pc-sub" not in rig.read_log() and time.time() < end:
            time.sleep(0.05)
        time.sleep(0.3)
        pub = Publisher(rig.port)
        for _ in range(cuts):
            if rnd.random() < 0.5:
                sub.away()
            else:
                sub.online()
            time.sleep(rnd.uniform(0.05, 0.6))  # the cut lands anywhere, mid-commit too
            rig.cut()
            rig.mount()
            rig.start_hub()
        pub.stop()
        sub.online()
        want = set(pub.acked)
        # until everything arrived, or nothing more arrives for 3 s (a loss), at most 60 s
        end, last, quiet_since = time.time() + 60, -1, time.time()
        while time.time() < end and not (want <= sub.got["pc"] and want <= sub.got["rt"]):
            n = len(sub.got["pc"]) + len(sub.got["rt"])
            if n != last:
                last, quiet_since = n, time.time()
            elif time.time() - quiet_since > 3:
                break
            time.sleep(0.2)
        sub.away()
        sub.stop()
        lost = {t: sorted(want - got) for t, got in sub.got.items()}
        print(f"storage.sync {sync}, leak {leak}%: {cuts} cuts, {len(want)} acknowledged, "
              f"lost on pc {len(lost['pc'])}, on the route {len(lost['rt'])} (seed {seed})")
        return len(want), lost, rig.read_log()
    finally:
        rig.close()


def cut_sync_true(tmp_path, cuts, least, **rig):
    """A sync run of the rig that must lose nothing: its hub log."""
    seed = int(os.environ.get("CUT_SEED", str(int(time.time()))))
    acked, lost, log = run_rig(tmp_path, sync=True, cuts=cuts, seed=seed, **rig)
    assert acked > least, f"too little load to judge ({acked} acknowledged)"
    assert not lost["pc"] and not lost["rt"], \
        f"seed {seed}: {acked} acknowledged; lost on pc {lost['pc'][:20]} " \
        f"({len(lost['pc'])}), on the route {lost['rt'][:20]} ({len(lost['rt'])})"
    assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]
    return log


def test_sync_true_loses_nothing_acknowledged_across_cuts(tmp_path):
    log = cut_sync_true(tmp_path, CUTS, 1000)
    # the cuts found acknowledged messages in the write-ahead log only, and it brought them back
    assert "replayed the write-ahead log" in log, log[-3000:]


def test_sync_true_loses_nothing_when_the_disk_kept_any_unsynced_writes(tmp_path):
    """cutfs writes a random 30 % of the written pages through at once, as the kernel's
    writeback may: the disk then holds any subset of the unsynced writes, in any order (a
    meta page newer than the pages it points to). Nothing PUBACKed is lost, the store opens."""
    cut_sync_true(tmp_path, max(10, CUTS // 2), 500, leak=30)


@pytest.mark.parametrize("direct", ["refuse", "einval"])
def test_sync_true_loses_nothing_without_direct_writes(tmp_path, direct):
    """The write-ahead log on a filesystem that refuses O_DIRECT at open (refuse), or takes
    the open and fails the writes with EINVAL (einval, as another alignment would): records
    go through the page cache and a flush instead, and still nothing PUBACKed is lost."""
    log = cut_sync_true(tmp_path, max(5, CUTS // 10), 200, direct=direct)
    assert "refuses direct writes to the write-ahead log" in log, log[-3000:]
    assert "replayed the write-ahead log" in log, log[-3000:]


def test_sync_false_loses_messages_so_the_rig_can_see_a_loss(tmp_path):
    seed = int(os.environ.get("CUT_SEED", str(int(time.time()))))
    acked, lost, _ = run_rig(tmp_path, sync=False, cuts=max(5, CUTS // 5), seed=seed)
    assert acked > 100
    assert lost["pc"] or lost["rt"], \
        f"seed {seed}: no loss with storage.sync false: the rig cannot tell a loss"
