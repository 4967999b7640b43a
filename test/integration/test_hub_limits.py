"""Limits and resources under attack (SPEC §11, issue 12): message length, many connections,
pending output per connection (`message.egress.buffer.max`), the descriptor limit (EMFILE),
a full message store."""

import os
import resource
import socket
import subprocess
import time

from conftest import (RawClient, binary, mqtt_connect, mqtt_puback, mqtt_publish, mqtt_subscribe,
                      wait_for, wait_port)
from hub_util import conn, get, nothing, ping, subscribe
from hub_util import shub  # noqa: F401 (the module's shared hub, a fixture)
from test_hub_store_policy import drain_payloads, set_storage


def test_message_length_max_boundary(hub_factory):
    """message.length.max 1k: a 1024-byte packet passes; a packet whose remaining length
    alone is 1025 bytes closes the connection. (SPEC: 'a packet longer than
    message.length.max'; whether the fixed header counts is not said, so both ends are
    chosen to hold under either reading.)"""
    hub = hub_factory("message: {length: {max: 1k}}\n")
    s = conn(hub, "s")
    assert subscribe(s, [("L", 0)]) == [0]
    p = conn(hub, "p")
    ok = mqtt_publish("L", b"o" * 1018)            # 1 + 2 + (3 + 1018) = 1024 bytes
    assert len(ok) == 1024
    p.send(ok)
    assert get(s)[:2] == ("L", b"o" * 1018)
    big = mqtt_publish("L", b"b" * 1022)            # remaining length 1025
    assert len(big) - 3 == 1025
    p.send(big)
    assert p.closed(), "a packet longer than message.length.max must close the connection"
    nothing(s, 0.3)


def test_message_length_default_32k(shub):
    s = conn(shub, "len-s")
    assert subscribe(s, [("len/x", 0)]) == [0]
    p = conn(shub, "len-p")
    payload = b"p" * (32 * 1024 - 20)
    p.send(mqtt_publish("len/x", payload))
    assert get(s)[1] == payload
    p.send(mqtt_publish("len/x", b"p" * (32 * 1024 + 1)))
    assert p.closed()


def test_1000_connections_at_once(shub):
    n = 1000
    clients = []
    try:
        for i in range(n):
            c = RawClient(shub.port, timeout=20)
            c.send(mqtt_connect(client_id=f"k{i}", username="test", password="hahaha", keepalive=0)
                   + mqtt_subscribe(1, [("k/all", 0)]))
            clients.append(c)
        for c in clients:
            p = c.recv(timeout=20)
            assert p is not None and p[0] == 2 and p[2][1] == 0
            p = c.recv(timeout=20)
            assert p is not None and p[0] == 9 and p[2][2] == 0
        pub = conn(shub, "k-pub")
        pub.send(mqtt_publish("k/all", b"to everyone"))
        for c in clients:
            m = get(c, timeout=20)
            assert m[:2] == ("k/all", b"to everyone")
    finally:
        for c in clients:
            c.close()
    assert ping(conn(shub, "k-after"))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def non_reader(port, client_id, clean=True):
    """A connected client whose socket takes as little as possible and is never read."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    c = RawClient.__new__(RawClient)
    c.sock, c.buf = s, b""
    s.settimeout(5)
    assert c.connect(client_id=client_id, username="test", password="hahaha", clean=clean) == 0
    return c


def send_until_closed(c, packet, times):
    """Sends packet up to times times; True when the hub closed the connection meanwhile."""
    try:
        for _ in range(times):
            c.sock.sendall(packet)
    except OSError:
        return True
    return False


def assert_responsive(hub):
    p = RawClient(hub.port)
    assert p.connect(client_id="probe", username="test", password="hahaha") == 0
    p.send(bytes([0xC0, 0]))
    assert p.recv()[0] == 13
    p.sock.close()


def test_retained_qos1_to_a_client_that_never_reads(hub_factory):
    """Each SUBSCRIBE queues every matching retained QoS 1 message: the hub closes the
    client when its pending output passes the bound, counts it and stays responsive."""
    hub = hub_factory("message: {egress: {buffer: {max: 1m}}}\n"
                      "status: {logging: {enable: true, interval: 1s}}\n")
    pub = RawClient(hub.port)
    assert pub.connect(client_id="pub", username="test", password="hahaha") == 0
    payload = b"r" * 30000
    for i in range(200):
        pub.send(mqtt_publish(f"ret/{i}", payload, qos=1, retain=True, pid=i + 1))
        assert pub.recv()[0] == 4
    before = rss_kb(hub.proc.pid)
    c = non_reader(hub.port, "slow", clean=False)
    send_until_closed(c, mqtt_subscribe(1, [("ret/#", 1)]), 60)
    wait_for(lambda: "client not reading" in hub.read_log(), 10, what="the slow client closed")
    after = rss_kb(hub.proc.pid)
    print(f"\nhub RSS before {before} kB, after 60 SUBSCRIBEs of 200 x 30 KB retained: {after} kB")
    assert c.closed(10)
    assert_responsive(hub)
    wait_for(lambda: "slow_closed=1" in hub.read_log(), 5, what="the counter in the status line")
    # the persistent session is kept: its subscription still gets messages after a reconnect
    s = RawClient(hub.port)
    assert s.connect(client_id="slow", username="test", password="hahaha", clean=False) == 0
    pub.send(mqtt_publish("ret/new", b"x", qos=1, pid=999))
    got = None
    for _ in range(400):
        p = s.recv(timeout=10)
        assert p is not None
        if p[0] == 3:
            t = p[2][2:2 + int.from_bytes(p[2][:2], "big")]
            if p[1] & 2:
                s.send(mqtt_puback(int.from_bytes(p[2][2 + len(t):4 + len(t)], "big")))
            if t == b"ret/new":
                got = t
                break
    assert got == b"ret/new"


def test_pingreq_flood_without_reading(hub_factory):
    """PINGREQs from a client that never reads grow its output 1:1 until the bound."""
    hub = hub_factory("message: {egress: {buffer: {max: 1m}}}\n")
    before = rss_kb(hub.proc.pid)
    c = non_reader(hub.port, "pinger")
    send_until_closed(c, bytes([0xC0, 0]) * 65536, 40)  # 40 x 64 Ki PINGREQs
    wait_for(lambda: "client not reading" in hub.read_log(), 10, what="the pinger closed")
    after = rss_kb(hub.proc.pid)
    print(f"\nhub RSS before {before} kB, after the PINGREQ flood: {after} kB")
    assert c.closed(10)
    assert_responsive(hub)


def test_descriptor_limit_does_not_spin(procs, hub_factory):
    """At the descriptor limit (EMFILE) the hub neither spins nor floods its log, and a
    client connects again once others have gone."""
    hub = hub_factory(start=False)
    limit = 64

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    hub.logf = open(hub.log, "ab")
    hub.proc = procs.start([binary("baetyl-hub"), "-c", hub.conf], cwd=hub.dir, stdout=hub.logf,
                           stderr=subprocess.STDOUT, preexec_fn=low_limit)
    wait_port(hub.port)
    socks = []
    for _ in range(limit + 40):  # well past the limit: the last ones meet EMFILE
        try:
            socks.append(socket.create_connection(("127.0.0.1", hub.port), timeout=2))
        except OSError:
            break
    time.sleep(0.5)
    t0 = cpu_s(hub.proc.pid)
    for _ in range(10):  # keep knocking for a few seconds
        try:
            socks.append(socket.create_connection(("127.0.0.1", hub.port), timeout=1))
        except OSError:
            pass
        time.sleep(0.3)
    used = cpu_s(hub.proc.pid) - t0
    print(f"\nhub CPU time over ~3 s at the descriptor limit: {used:.2f} s")
    assert used < 1.0, f"the hub used {used:.2f} s of CPU in ~3 s at EMFILE"
    log = hub.read_log()
    assert "connections refused" in log
    assert log.count("connections refused") <= 5
    for s in socks:
        s.close()
    time.sleep(0.5)
    c = RawClient(hub.port)
    assert c.connect(client_id="legit", username="test", password="hahaha") == 0
    assert c.sock.getpeername()


def small_store_hub(hub_factory):
    return set_storage(hub_factory(start=False), "size: {max: 1m}").start()


def drain(c, idle=1.5):
    """Reads and acknowledges publishes until none comes for idle seconds; their count."""
    return len(drain_payloads(c, idle))


def test_messages_nobody_needs_are_not_logged(hub_factory):
    """QoS 1 publishes to a topic no session or route subscribes to fill nothing: all are
    acknowledged and the store stays small."""
    hub = small_store_hub(hub_factory)
    p = RawClient(hub.port)
    assert p.connect(client_id="junk", username="test", password="hahaha") == 0
    for i in range(3000):  # 3 MB, three times the store
        p.send(mqtt_publish("junk/x", b"j" * 1000, qos=1, pid=i % 65535 + 1))
        assert p.recv()[0] == 4, f"publish {i} not acknowledged"
    # a sync store keeps its file zero-filled ahead of LMDB's pages (README, durability):
    # what LMDB wrote ends at the last non-zero byte
    with open(os.path.join(hub.dir, "data", "data.mdb"), "rb") as f:
        size = len(f.read().rstrip(b"\0"))
    assert size < 1 << 19, f"the store grew to {size} bytes for messages nobody reads"


def test_full_store_takes_messages_again_after_restart(hub_factory):
    """A store filled for a persistent session that then read everything is trimmed at
    start: QoS 1 publishing works again (it used to fail until the messages aged out).
    (storage.policy reject-new: the publish that found the store full is not acknowledged
    and waits; it is committed once the session reads.)"""
    hub = small_store_hub(hub_factory)
    s = RawClient(hub.port)
    assert s.connect(client_id="keep", username="test", password="hahaha", clean=False) == 0
    s.send(mqtt_subscribe(1, [("data/#", 1)]))
    assert s.recv()[0] == 9
    s.sock.close()
    p = RawClient(hub.port)
    assert p.connect(client_id="pub", username="test", password="hahaha") == 0
    sent = 0
    try:
        for i in range(3000):
            p.send(mqtt_publish("data/x", b"d" * 1000, qos=1, pid=i % 65535 + 1))
            r = p.recv(timeout=2)
            assert r is not None, "the publisher must not be disconnected"
            sent += 1
    except TimeoutError:
        pass
    assert 0 < sent < 3000, "the store never filled"
    assert "store full" in hub.read_log()
    s = RawClient(hub.port)
    assert s.connect(client_id="keep", username="test", password="hahaha", clean=False) == 0
    assert drain(s) >= sent
    s.sock.close()
    time.sleep(0.5)
    hub.stop()
    hub.start()
    p = RawClient(hub.port)
    assert p.connect(client_id="pub", username="test", password="hahaha") == 0
    for i in range(200):
        p.send(mqtt_publish("data/x", b"again", qos=1, pid=i + 1))
        r = p.recv()
        assert r is not None and r[0] == 4, f"publish {i} after the restart refused"
    s = RawClient(hub.port)
    assert s.connect(client_id="keep", username="test", password="hahaha", clean=False) == 0
    assert drain(s) == 200


def test_full_store_stops_reading_the_publisher(hub_factory):
    """storage.policy reject-new: a publisher that keeps sending into a full store is no
    longer read, so what it can send is bounded by the socket buffers (TCP pushes back), the
    hub's memory and CPU stay flat, and other clients are served."""
    from test_hub_store_policy import away_session, fill
    hub = small_store_hub(hub_factory)
    away_session(hub)
    p = conn(hub, "blaster")
    acked, pending, _ = fill(p, "data/x", 1000, 20000)
    assert pending, "the store never filled"
    rss0, cpu0 = rss_kb(hub.proc.pid), cpu_s(hub.proc.pid)
    packet = mqtt_publish("data/x", b"b" * 1000, qos=1, pid=9)
    p.sock.setblocking(False)
    sent = 0
    for _ in range(50000):  # 50 MB offered; the socket buffers take about 5
        try:
            sent += p.sock.send(packet)
        except BlockingIOError:
            time.sleep(0.05)
            try:
                sent += p.sock.send(packet)
            except BlockingIOError:
                break
    assert sent < 16 << 20, f"the hub kept reading a paused publisher ({sent} bytes taken)"
    time.sleep(1.0)
    assert rss_kb(hub.proc.pid) - rss0 < 16 << 10, "the hub buffered what it did not commit"
    assert cpu_s(hub.proc.pid) - cpu0 < 1.5, "the hub spins while the store is full"
    assert_responsive(hub)
