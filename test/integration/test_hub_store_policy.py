"""Bounded message store with an explicit policy (issue 16, point 3): `storage.size.max`,
`storage.count.max`, a full disk, and `storage.policy` reject-new (PUBACK withheld, the
publisher is not read, nothing lost) or drop-oldest (the oldest go, counted and logged)."""

import os
import re
import subprocess
import time

import pytest

from conftest import RawClient, binary, mqtt_puback, mqtt_publish, parse_publish, wait_for
from hub_util import conn, get, ping, subscribe


def set_storage(hub, storage):
    """Makes the (not yet started) hub's storage line `storage: {dir: data, <storage>}`."""
    with open(hub.conf) as f:
        conf = f.read()
    with open(hub.conf, "w") as f:
        f.write(conf.replace("storage: {dir: data}", "storage: {dir: data, %s}" % storage))
    return hub


def store_hub(hub_factory, storage, extra=""):
    """A started hub with set_storage(storage) and a status line every second."""
    hub = hub_factory("status: {logging: {enable: true, interval: 1s}}\n" + extra, start=False)
    return set_storage(hub, storage).start()


def away_session(hub, cid="keep", topic="data/#"):
    """A persistent session subscribed at QoS 1 that then goes away."""
    s = conn(hub, cid, clean=False)
    assert subscribe(s, [(topic, 1)]) == [1]
    s.sock.close()
    time.sleep(0.2)


def acks(c, pids, timeout):
    """Reads PUBACKs until every pid in pids came or timeout passed; the pids acknowledged."""
    got = set()
    deadline = time.monotonic() + timeout
    while got != set(pids):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            p = c.recv(timeout=left)
        except TimeoutError:
            break
        assert p is not None, "the publisher's connection was closed"
        if p[0] == 4:
            got.add(int.from_bytes(p[2][:2], "big"))
    return got


def fill(p, topic, size, limit, window=20, timeout=2.0):
    """Publishes numbered QoS 1 messages (payload = number, padded to size) in windows
    until a window is not fully acknowledged within timeout, or limit were sent. Returns
    (acknowledged numbers, numbers sent without PUBACK, pid of each number)."""
    acked, pending, pids = [], [], {}
    n = 0
    while n < limit:
        batch = list(range(n, min(n + window, limit)))
        for i in batch:
            pids[i] = i % 65535 + 1
            p.send(mqtt_publish(topic, str(i).encode().ljust(size, b"."), qos=1, pid=pids[i]))
        got = acks(p, [pids[i] for i in batch], timeout)
        acked += [i for i in batch if pids[i] in got]
        pending += [i for i in batch if pids[i] not in got]
        n += len(batch)
        if pending:
            break
    return acked, pending, pids


def drain_payloads(c, idle=2.0):
    """Reads and acknowledges publishes until none comes for idle seconds; their payloads."""
    out = []
    while True:
        try:
            p = c.recv(timeout=idle)
        except TimeoutError:
            return out
        assert p is not None
        if p[0] == 3:
            topic, payload, qos, _, _, pid = parse_publish(p[1], p[2])
            out.append(payload)
            if qos:
                c.send(mqtt_puback(pid))


def drain(c, idle=2.0):
    """drain_payloads, as the numbers fill() put in them."""
    return [int(x.rstrip(b".")) for x in drain_payloads(c, idle)]


def comes_back(hub, p, acked, pending, pids, cid="keep"):
    """The away session comes back and reads: every acknowledged and every pending publish
    arrives, and the pending ones are acknowledged to their publisher p."""
    s = conn(hub, cid, clean=False)
    got = drain(s)
    assert set(got) >= set(acked), "an acknowledged message was lost"
    assert set(got) >= set(pending), "a pending publish was lost"
    assert sorted(set(got)) == list(range(len(acked) + len(pending)))
    assert acks(p, [pids[i] for i in pending], 5) == {pids[i] for i in pending}


def assert_responsive(hub, tag):
    """Another client connects, pings, and QoS 0 goes through while the store is full."""
    a = conn(hub, f"other-{tag}")
    assert ping(a)
    assert subscribe(a, [("live/x", 0)]) == [0]
    b = conn(hub, f"other-pub-{tag}")
    b.send(mqtt_publish("live/x", b"still here"))
    assert get(a)[:2] == ("live/x", b"still here")


def dropped(log, reason):
    """The sum of `reason` over the hub's "messages dropped" lines."""
    return sum(int(m) for m in re.findall(r'msg="QoS 1 messages dropped[^\n]* %s=(\d+)' % reason,
                                          log))


def reject_new_round(hub, tag):
    """A persistent session away; a publisher fills the store: its further publishes get no
    PUBACK and are not lost; the hub answers others; when the session comes back and
    acknowledges, the pending publishes are acknowledged and everything arrives."""
    away_session(hub, f"keep-{tag}", f"{tag}/#")
    p = conn(hub, f"pub-{tag}")
    acked, pending, pids = fill(p, f"{tag}/x", 1000, 20000)
    assert acked and pending, "the store never filled"
    # Further publishes: no PUBACK either (the hub does not read them while full).
    more = list(range(acked[-1] + len(pending) + 1, acked[-1] + len(pending) + 6))
    for i in more:
        pids[i] = i % 65535 + 1
        p.send(mqtt_publish(f"{tag}/x", str(i).encode().ljust(1000, b"."), qos=1, pid=pids[i]))
    pending += more
    assert acks(p, [pids[i] for i in pending], 1.5) == set(), "a publish was acknowledged"
    assert "message store full" in hub.read_log()
    assert_responsive(hub, tag)
    comes_back(hub, p, acked, pending, pids, f"keep-{tag}")
    # and publishing goes on normally
    p.send(mqtt_publish(f"{tag}/x", b"after", qos=1, pid=60000))
    assert acks(p, [60000], 5) == {60000}
    return len(acked)


def test_reject_new_withholds_puback_and_loses_nothing(hub_factory):
    hub = store_hub(hub_factory, "size: {max: 1m}, sync: false")
    reject_new_round(hub, "rj")
    assert "message store takes messages again" in hub.read_log()
    assert dropped(hub.read_log(), "full") == 0


def test_reject_new_publisher_keepalive_is_not_its_fault(hub_factory):
    """A paused publisher whose PINGREQs wait in its socket is not closed for keepalive."""
    hub = store_hub(hub_factory, "size: {max: 1m}, sync: false")
    away_session(hub)
    p = conn(hub, "pub-ka", keepalive=1)
    acked, pending, pids = fill(p, "data/x", 1000, 20000)
    assert pending
    time.sleep(2.5)  # beyond 1.5 × keepalive without a packet read from it
    comes_back(hub, p, acked, pending, pids)


def test_reject_new_publisher_that_also_consumes(hub_factory):
    """A publisher that holds the oldest unacknowledged log delivery is still read (up to
    a bound) while its publishes wait: its PUBACK is what lets the log be trimmed."""
    hub = store_hub(hub_factory, "size: {max: 1m}, sync: false")
    away_session(hub)
    d = conn(hub, "device")
    assert subscribe(d, [("cmd/#", 1)]) == [1]
    conn(hub, "commander").send(mqtt_publish("cmd/x", b"reboot", qos=1, pid=1))
    topic, payload, qos, _, _, cmd_pid = parse_publish(*d.recv()[1:])
    assert (topic, payload, qos) == ("cmd/x", b"reboot", 1)
    # the command is not acknowledged yet: it holds the log's oldest message
    acked, pending, pids = fill(d, "data/x", 1000, 20000)
    assert pending, "the store never filled"
    d.send(mqtt_puback(cmd_pid))
    comes_back(hub, d, acked, pending, pids)


def test_drop_oldest_drops_counts_and_logs(hub_factory):
    hub = store_hub(hub_factory, "size: {max: 1m}, sync: false, policy: drop-oldest")
    away_session(hub)
    p = conn(hub, "pub")
    total = 3000  # three times the store
    acked, pending, _ = fill(p, "data/x", 1000, total, timeout=5.0)
    assert not pending and len(acked) == total, "drop-oldest must acknowledge every publish"
    s = conn(hub, "keep", clean=False)
    got = drain(s)
    assert got and got[-1] == total - 1, "the newest message must arrive"
    assert got == list(range(got[0], total)), "what arrives is the newest, in order"
    assert got[0] > 0
    hub.stop()
    log = hub.read_log()
    # every message that did not arrive was counted and logged as dropped (store full)
    assert dropped(log, "full") == got[0]
    assert dropped(log, "count") == 0 and dropped(log, "age") == 0
    assert re.search(r"hub status.* dropped_full=[1-9]", log), "the status line counts them"


def test_retention_drops_are_counted(hub_factory):
    """Messages a session has not read that pass the retention go, counted and logged."""
    hub = store_hub(hub_factory, "sync: false",
                    "message: {ingress: {qos1: {cleanup: {retention: 1s, interval: 1s}}}}\n")
    away_session(hub)
    p = conn(hub, "pub")
    acked, pending, _ = fill(p, "data/x", 10, 10, window=10)
    assert len(acked) == 10 and not pending
    wait_for(lambda: dropped(hub.read_log(), "age") == 10, timeout=10, what="age drops logged")
    s = conn(hub, "keep", clean=False)
    assert drain(s, idle=1.0) == []
    wait_for(lambda: re.search(r"hub status.* dropped_age=10", hub.read_log()), timeout=5,
             what="dropped_age in the status line")


def test_count_bound_reject_new(hub_factory):
    hub = store_hub(hub_factory, "count: {max: 100}, sync: false")
    away_session(hub)
    p = conn(hub, "pub")
    acked, pending, pids = fill(p, "data/x", 10, 1000, window=10)
    assert pending and 0 < len(acked) <= 100
    assert "storage.count.max" in hub.read_log()
    comes_back(hub, p, acked, pending, pids)


def count_drop_oldest(hub_factory, count, total, window):
    """drop-oldest with storage.count.max count: total publishes in windows, all acknowledged;
    the session that comes back gets exactly the newest count. Returns the hub."""
    hub = store_hub(hub_factory, f"count: {{max: {count}}}, sync: false, policy: drop-oldest")
    away_session(hub)
    p = conn(hub, "pub")
    acked, pending, _ = fill(p, "data/x", 10, total, window=window)
    assert not pending and len(acked) == total
    s = conn(hub, "keep", clean=False)
    assert drain(s) == list(range(total - count, total)), "exactly the newest count remain"
    return hub


def test_count_bound_drop_oldest(hub_factory):
    hub = count_drop_oldest(hub_factory, 100, 250, 10)
    hub.stop()
    assert dropped(hub.read_log(), "count") == 150


def test_count_bound_smaller_than_what_piles_up(hub_factory):
    """storage.count.max 5 under windows of 20: reject-new commits the pile in slices as the
    session reads, losing nothing; drop-oldest keeps exactly the newest 5."""
    hub = store_hub(hub_factory, "count: {max: 5}, sync: false")
    away_session(hub)
    p = conn(hub, "pub")
    acked, pending, pids = fill(p, "data/x", 10, 1000, window=20)
    assert pending and len(acked) <= 5
    comes_back(hub, p, acked, pending, pids)
    count_drop_oldest(hub_factory, 5, 100, 20)


def test_bad_policy_is_refused(hub_factory):
    hub = set_storage(hub_factory(start=False), "policy: drop-all")
    r = subprocess.run([binary("baetyl-hub"), "-c", hub.conf], cwd=hub.dir, capture_output=True,
                       text=True, timeout=10)
    assert r.returncode != 0
    assert "storage.policy" in r.stderr + r.stdout


@pytest.fixture(params=["4m", "12m"])
def small_fs(tmp_path, request):
    """A small tmpfs of the test's own (needs root); unmounted at the end. 4 MiB has no room
    for the store's write-ahead log (8 MiB), 12 MiB has: both ways of committing fill it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield str(mnt)
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("policy", ["reject-new", "drop-oldest"])
def test_full_disk(hub_factory, small_fs, policy):
    """The disk fills below storage.size.max (2g): no crash, no corruption; reject-new
    slows the publisher and loses nothing, drop-oldest keeps the newest; the store opens
    again after a restart."""
    data = os.path.join(small_fs, "data")
    hub = store_hub(hub_factory, f"policy: {policy}")
    hub.stop()
    with open(hub.conf) as f:
        conf = f.read()
    with open(hub.conf, "w") as f:
        f.write(conf.replace("dir: data,", f"dir: '{data}',"))
    hub.start()
    if policy == "reject-new":
        n = reject_new_round(hub, "disk")
        assert n > 1000
        assert "the disk is full" in hub.read_log()
    else:
        away_session(hub)
        p = conn(hub, "pub")
        acked, pending, _ = fill(p, "data/x", 1000, 12000, timeout=5.0)
        assert not pending and len(acked) == 12000
        s = conn(hub, "keep", clean=False)
        got = drain(s)
        assert got and got[-1] == 11999 and got == list(range(got[0], 12000))
        s.sock.close()
    assert hub.stop() == 0
    log = hub.read_log()
    assert "Sanitizer" not in log and "runtime error" not in log
    # the write-ahead log where it fits, LMDB's own flushes where it does not
    big = os.statvfs(small_fs).f_blocks * os.statvfs(small_fs).f_frsize > (10 << 20)
    assert os.path.exists(os.path.join(data, "wal")) == big
    assert ("no write-ahead log" in log) != big, log[-2000:]
    if policy == "drop-oldest":
        assert dropped(log, "full") == got[0] > 0
    # the store opens again on the full filesystem and takes messages
    hub.start()
    c = RawClient(hub.port)
    assert c.connect(client_id="after", username="test", password="hahaha") == 0
    away_session(hub, "keep2", "again/#")
    c.send(mqtt_publish("again/x", b"1", qos=1, pid=7))
    assert acks(c, [7], 10) == {7}
    assert hub.stop() == 0
