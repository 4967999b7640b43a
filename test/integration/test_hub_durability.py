"""baetyl-hub durability (SPEC §11 Durability): kill -9 under QoS 1 load, restart, and every
PUBACKed message reaches the persistent subscriber (sequence numbers in the payloads)."""
import os
import signal
import threading
import time

from conftest import RawClient, free_port, mqtt_publish, mqtt_puback, mqtt_subscribe, parse_publish
from hub_util import run_hub


def publisher(port, cid, acked, stop, window=32):
    c = RawClient(port)
    assert c.connect(client_id=cid, username="test", password="hahaha") == 0
    inflight = {}
    seq = 0
    try:
        while not stop.is_set():
            while len(inflight) < window:
                seq += 1
                pid = (seq % 65535) + 1
                inflight[pid] = seq
                c.send(mqtt_publish("load/" + cid, b"%s:%d" % (cid.encode(), seq), qos=1, pid=pid))
            p = c.recv(timeout=5)
            if p is None:
                return
            if p[0] == 4:
                pid = int.from_bytes(p[2][:2], "big")
                if pid in inflight:
                    acked.add(b"%s:%d" % (cid.encode(), inflight.pop(pid)))
    except (OSError, TimeoutError):
        return


def subscriber(port, received, stop):
    """Receives and acknowledges until the hub goes away or stop is set."""
    c = RawClient(port)
    assert c.connect(client_id="durable", username="test", password="hahaha", clean=False) == 0
    c.send(mqtt_subscribe(1, [("load/#", 1)]))
    try:
        while not stop.is_set():
            try:
                p = c.recv(timeout=0.5)
            except TimeoutError:
                continue
            if p is None:
                return
            if p[0] == 3:
                t, pl, q, r, dup, pid = parse_publish(p[1], p[2])
                received.add(pl)
                c.send(mqtt_puback(pid))
    except OSError:
        return
    finally:
        c.close()


def killed_under_load(hub, cid, pcid):
    """A persistent session cid on load/# goes away, publisher pcid sends QoS 1 for a second,
    then the hub is killed -9: what it PUBACKed."""
    s = RawClient(hub.port)
    assert s.connect(client_id=cid, username="test", password="hahaha", clean=False) == 0
    s.send(mqtt_subscribe(1, [("load/#", 1)]))
    assert s.recv()[0] == 9
    s.close()
    acked = set()
    stop = threading.Event()
    t = threading.Thread(target=publisher, args=(hub.port, pcid, acked, stop), daemon=True)
    t.start()
    time.sleep(1.0)
    hub.stop(signal.SIGKILL)
    t.join(10)
    assert acked
    return acked


def assert_session_gets(port, cid, acked):
    """The persistent session cid receives every acknowledged payload (acking each)."""
    s = RawClient(port)
    assert s.connect(client_id=cid, username="test", password="hahaha", clean=False) == 0
    got = set()
    try:
        while not acked <= got:
            p = s.recv(timeout=5)
            assert p is not None
            if p[0] == 3:
                tp, pl, q, r, dup, pid = parse_publish(p[1], p[2])
                got.add(pl)
                s.send(mqtt_puback(pid))
    except TimeoutError:
        pass
    assert not acked - got, f"{len(acked - got)} lost"


def test_kill9_under_qos1_load_loses_no_acked_message(hub):
    received = set()
    acked = set()
    stop = threading.Event()
    st = threading.Thread(target=subscriber, args=(hub.port, received, stop), daemon=True)
    st.start()
    time.sleep(0.3)
    pubs = [threading.Thread(target=publisher, args=(hub.port, f"p{i}", acked, stop), daemon=True)
            for i in range(3)]
    for t in pubs:
        t.start()
    time.sleep(2.0)
    hub.stop(signal.SIGKILL)
    for t in pubs:
        t.join(10)
    st.join(10)
    assert len(acked) > 100, "the load did not run"
    stop.clear()
    hub.start()
    # The persistent session resumes from its stored offset.
    st = threading.Thread(target=subscriber, args=(hub.port, received, stop), daemon=True)
    st.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not acked <= received:
        time.sleep(0.2)
    stop.set()
    st.join(10)
    missing = acked - received
    assert not missing, f"{len(missing)} PUBACKed messages lost, e.g. {sorted(missing)[:5]}"


def test_kill9_with_subscriber_offline(hub):
    acked = killed_under_load(hub, "off", "px")
    hub.start()
    assert_session_gets(hub.port, "off", acked)


def test_will_of_a_crashed_hub_is_published_at_restart(hub):
    w = RawClient(hub.port)
    assert w.connect(client_id="watch", username="test", password="hahaha", clean=False) == 0
    w.send(mqtt_subscribe(1, [("crash/#", 1)]))
    assert w.recv()[0] == 9
    w.close()
    a = RawClient(hub.port)
    assert a.connect(client_id="a", username="test", password="hahaha",
                     will=("crash/a", b"hub died", 1, True)) == 0
    time.sleep(0.3)
    hub.stop(signal.SIGKILL)
    hub.start()
    w = RawClient(hub.port)
    assert w.connect(client_id="watch", username="test", password="hahaha", clean=False) == 0
    m = w.recv()
    assert parse_publish(m[1], m[2])[:2] == ("crash/a", b"hub died")
    # retained too
    r = RawClient(hub.port)
    assert r.connect(client_id="late", username="test", password="hahaha") == 0
    r.send(mqtt_subscribe(1, [("crash/a", 0)]))
    assert r.recv()[0] == 9
    m = r.recv()
    assert parse_publish(m[1], m[2])[:4] == ("crash/a", b"hub died", 0, True)


def test_publishers_gone_while_their_commit_is_on_disk(hub):
    """Publishers that send a burst of QoS 1 publishes and close at once, many times: their
    publishes are committed (no PUBACK goes anywhere) and all reach a persistent subscriber,
    and the hub stops cleanly (no leak, no use after free of the closed connections)."""
    received = set()
    stop = threading.Event()
    st = threading.Thread(target=subscriber, args=(hub.port, received, stop), daemon=True)
    st.start()
    time.sleep(0.3)
    sent = set()
    for round_ in range(20):
        c = RawClient(hub.port)
        assert c.connect(client_id=f"burst{round_}", username="test", password="hahaha") == 0
        data = b""
        for i in range(300):
            pl = b"b%d:%d" % (round_, i)
            sent.add(pl)
            data += mqtt_publish("load/burst", pl, qos=1, pid=i + 1)
        c.send(data)
        c.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not sent <= received:
        time.sleep(0.2)
    stop.set()
    st.join(10)
    missing = sent - received
    assert not missing, f"{len(missing)} of {len(sent)} publishes lost, e.g. {sorted(missing)[:5]}"


def test_a_second_hub_on_the_same_store_is_refused(hub, tmp_path):
    """The store's write-ahead log is locked by the hub that has it open: a second hub given
    the same storage directory stops at once with an error naming it, instead of sharing
    (and rolling back) a store in use."""
    store = os.path.join(hub.dir, "data")
    rc, out = run_hub(f"listen: ['tcp://127.0.0.1:{free_port()}']\nstorage: {{dir: {store}}}\n",
                      tmp_path)
    assert rc != 0, out
    assert "is in use by another process" in out and store in out, out
    # the first hub goes on
    c = RawClient(hub.port)
    assert c.connect(client_id="still", username="test", password="hahaha") == 0
    c.close()


def test_sync_off_after_a_crash_with_sync_on_recovers_then_drops_the_log(hub):
    """A hub killed while running with storage.sync true, started again with sync false:
    it recovers through the write-ahead log (nothing acknowledged lost), then deletes the
    log; started with sync true once more, it makes a new one and still loses nothing."""
    acked = killed_under_load(hub, "sw", "psw")
    wal = os.path.join(hub.dir, "data", "wal")
    assert os.path.exists(wal)
    with open(hub.conf) as f:
        conf = f.read()
    with open(hub.conf, "w") as f:
        f.write(conf.replace("storage: {dir: data}", "storage: {dir: data, sync: false}"))
    hub.start()
    assert not os.path.exists(wal), hub.read_log()[-2000:]
    hub.stop()
    with open(hub.conf, "w") as f:
        f.write(conf)
    hub.start()
    assert os.path.exists(wal)
    assert_session_gets(hub.port, "sw", acked)
