"""baetyl-hub over TLS, under the master with the seed's chapter 7 example (example/native-tls,
certificates from scripts/gen-certs.sh): password logins on tcp and ssl, two-way TLS logins
as the password-less principal `two-way-tls`, refusals (no password on tcp, no or a foreign
client certificate), and handshakes that never hold up the event loop."""
import os
import socket
import ssl
import subprocess
import time

import pytest

from conftest import RawClient, binary, free_port, mqtt_publish, mqtt_subscribe, parse_publish, wait_for
from hub_tls_util import Chapter7, Paho, gen_certs, tls_args

HANDSHAKE_TIMEOUT = "handshake:\n  timeout: 2s\n"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # paho's ssl.PROTOCOL_TLS


@pytest.fixture(scope="module")
def ch7():
    c = Chapter7(extra=HANDSHAKE_TIMEOUT).start()
    yield c
    problems = c.stop()
    assert not problems, "\n".join(problems)


def tls_raw(port, certs, client_cert=True, cert=None, key=None):
    """A RawClient (conftest) over TLS; the hub's server certificate is checked."""
    ctx = ssl.create_default_context(cafile=certs["ca"])
    if client_cert:
        ctx.load_cert_chain(cert or certs["client"], key or certs["client_key"])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="127.0.0.1")
    c = RawClient.__new__(RawClient)
    c.sock, c.buf = s, b""
    return c


def test_example_is_chapter7():
    """The example keeps the seed's ports, principals, certificate paths and route."""
    from hub_tls_util import EXAMPLE
    conf = open(os.path.join(EXAMPLE, "var/db/baetyl/localhub-conf/service.yml")).read()
    for want in ("tcp://0.0.0.0:1883", "ssl://0.0.0.0:8883", "ws://0.0.0.0:8080/mqtt",
                 "ca: var/db/baetyl/cert/ca.pem", "cert: var/db/baetyl/cert/server.pem",
                 "key: var/db/baetyl/cert/server.key", "username: two-way-tls", "password: hahaha",
                 "permit: ['tls/#']", "topic: 't/topic'"):
        assert want in conf, want
    app = open(os.path.join(EXAMPLE, "var/db/baetyl/application.yml")).read()
    assert "path: var/db/baetyl/localhub-cert-only-for-test" in app
    assert "path: var/db/baetyl/cert" in app


def test_tcp_password_login_and_route(ch7):
    c = Paho(ch7.tcp, "test", "hahaha")
    assert c.connect() == 0
    c.subscribe("t", 1)
    c.subscribe("t/topic", 1)
    c.publish("t", b"hello", qos=1)
    got = sorted(c.wait_msgs(2)[:2])
    assert got == [("t", b"hello", 1), ("t/topic", b"hello", 0)]  # the route has source qos 0
    c.close()


def test_tcp_without_password_is_refused(ch7):
    for user in ("test", "two-way-tls"):
        c = RawClient(ch7.tcp)
        assert c.connect(client_id="nopw", username=user) == 4, user
        assert c.closed()
        c.close()
    c = RawClient(ch7.tcp)
    assert c.connect(client_id="emptypw", username="two-way-tls", password="") == 4
    c.close()


def test_ssl_password_login_without_client_certificate(ch7):
    c = Paho(ch7.ssl, "test", "hahaha", tls=tls_args(ch7.certs, client_cert=False))
    assert c.connect() == 0
    c.subscribe("ssl/x", 0)
    c.publish("ssl/x", b"over tls")
    assert c.wait_msgs(1) == [("ssl/x", b"over tls", 0)]
    c.close()


def test_ssl_two_way_tls_allowed_on_tls_topics_only(ch7):
    c = Paho(ch7.ssl, "two-way-tls", None, tls=tls_args(ch7.certs), client_id="cert-client")
    assert c.connect() == 0
    assert c.subscribe("tls/#", 1) == (1,)
    assert c.subscribe("x", 1) == (128,)  # not permitted: refused in the SUBACK
    c.publish("tls/a", b"ok", qos=1)
    assert c.wait_msgs(1) == [("tls/a", b"ok", 1)]
    c.close()
    # publishing outside tls/# closes the connection
    r = tls_raw(ch7.ssl, ch7.certs)
    assert r.connect(client_id="cert-raw", username="two-way-tls") == 0
    r.send(mqtt_publish("x", b"no"))
    assert r.closed()
    # an empty password counts as none (clients such as MQTT.fx send one)
    r = tls_raw(ch7.ssl, ch7.certs)
    assert r.connect(client_id="cert-empty", username="two-way-tls", password="") == 0
    r.close()


def test_ssl_two_way_tls_without_certificate_is_refused(ch7):
    c = Paho(ch7.ssl, "two-way-tls", None, tls=tls_args(ch7.certs, client_cert=False))
    assert c.connect() == 4
    c.close()
    # a certificate does not replace a wrong password
    r = tls_raw(ch7.ssl, ch7.certs)
    assert r.connect(client_id="certpw", username="test", password="wrong") == 4
    r.close()


def test_ssl_certificate_from_another_ca_is_refused(ch7, tmp_path):
    other = gen_certs(tmp_path / "other-ca")
    try:
        r = tls_raw(ch7.ssl, ch7.certs, cert=other["client"], key=other["client_key"])
        code = r.connect(client_id="foreign", username="two-way-tls")
    except (ssl.SSLError, ConnectionError, EOFError):
        code = None  # refused during the handshake (TLS 1.2) or right after it (TLS 1.3)
    assert code is None
    wait_for(lambda: "client certificate" in ch7.hub_log(), 10, what="the refusal in the hub log")
    # TLS 1.2 as well
    ctx = ssl.create_default_context(cafile=ch7.certs["ca"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(other["client"], other["client_key"])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(socket.create_connection(("127.0.0.1", ch7.ssl), timeout=5),
                        server_hostname="127.0.0.1")
    # and the hub's own client certificate still works
    r = tls_raw(ch7.ssl, ch7.certs)
    assert r.connect(client_id="own", username="two-way-tls") == 0
    r.close()


def client_hello():
    """The first flight of a TLS client, as bytes."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_stalled_handshakes_do_not_stop_others_and_time_out(ch7):
    silent = socket.create_connection(("127.0.0.1", ch7.ssl))
    half = socket.create_connection(("127.0.0.1", ch7.ssl))
    hello = client_hello()
    half.sendall(hello[:len(hello) // 2])
    t0 = time.monotonic()
    c = Paho(ch7.ssl, "two-way-tls", None, tls=tls_args(ch7.certs))
    assert c.connect() == 0
    c.subscribe("tls/live", 0)
    c.publish("tls/live", b"still served")
    assert c.wait_msgs(1) == [("tls/live", b"still served", 0)]
    assert time.monotonic() - t0 < 5
    c.close()
    # handshake.timeout (2s here) drops both
    for s in (silent, half):
        s.settimeout(8)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        s.close()
    assert time.monotonic() - t0 < 8
    assert "handshake timeout" in ch7.hub_log()


def test_plaintext_on_the_ssl_port_closes_only_that_connection(ch7):
    r = RawClient(ch7.ssl)
    r.send(mqtt_subscribe(1, [("a", 0)]) * 10)  # not TLS
    assert r.closed()
    r.close()
    c = tls_raw(ch7.ssl, ch7.certs, client_cert=False)
    assert c.connect(client_id="after", username="test", password="hahaha") == 0
    c.send(mqtt_subscribe(1, [("after", 0)]))
    assert c.recv()[0] == 9
    try:
        c.send(mqtt_publish("after", b"x" * 100000))  # larger than one TLS record: several reads
    except OSError:
        pass  # the hub may close while we still write
    # 100000 > message.length.max (32k): the hub closes the connection
    assert c.closed()
    c = tls_raw(ch7.ssl, ch7.certs, client_cert=False)
    assert c.connect(client_id="big", username="test", password="hahaha") == 0
    c.send(mqtt_subscribe(1, [("big", 0)]))
    assert c.recv()[0] == 9
    # many packets in one write span several TLS records and reads
    payloads = [bytes([i]) * 30000 for i in range(20)]
    c.send(b"".join(mqtt_publish("big", p) for p in payloads))
    got = [parse_publish(*c.recv()[1:])[1] for _ in payloads]
    assert got == payloads
    c.close()


def write_conf(tmp_path, text):
    p = tmp_path / "conf.yml"
    p.write_text(text)
    return str(p)


def run_hub(tmp_path, conf):
    return subprocess.run([binary("baetyl-hub"), "-c", write_conf(tmp_path, conf)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=20)


def test_ssl_listener_needs_a_certificate(tmp_path):
    port = free_port()
    r = run_hub(tmp_path, f"listen: ['ssl://127.0.0.1:{port}']\n")
    assert r.returncode == 1
    assert "certificate.cert: required by the listener ssl://" in r.stderr
    r = run_hub(tmp_path, f"listen: ['wss://127.0.0.1:{port}/mqtt']\ncertificate: {{cert: a.pem}}\n")
    assert r.returncode == 1
    assert "certificate.key: required by the listener wss://" in r.stderr


def test_certificate_files_are_checked(tmp_path):
    certs = gen_certs(tmp_path / "c")
    port = free_port()
    base = f"listen: ['ssl://127.0.0.1:{port}']\n"
    r = run_hub(tmp_path, base + "certificate: {cert: nope.pem, key: nope.key}\n")
    assert r.returncode == 1 and "certificate.cert (nope.pem): No such file or directory" in r.stderr, r.stderr
    # a key that belongs to another certificate
    r = run_hub(tmp_path, base + f"certificate: {{cert: {certs['server']}, key: {certs['client_key']}}}\n")
    assert r.returncode == 1 and "certificate.key" in r.stderr and "mismatch" in r.stderr, r.stderr
    r = run_hub(tmp_path, base + f"certificate: {{cert: {certs['server']}, key: {certs['server_key']}, "
                f"ca: {certs['client_key']}}}\n")
    assert r.returncode == 1 and "certificate.ca" in r.stderr, r.stderr


def test_slow_reader_gets_everything_in_order(ch7):
    """More than the socket buffers hold: the hub's TLS writes stop (WANT_WRITE) and resume
    from where they stopped, through a growing output buffer."""
    sub = tls_raw(ch7.ssl, ch7.certs, client_cert=False)
    assert sub.connect(client_id="slow-sub", username="test", password="hahaha") == 0
    sub.send(mqtt_subscribe(1, [("slow/ssl", 0)]))
    assert sub.recv()[0] == 9
    pub = tls_raw(ch7.ssl, ch7.certs, client_cert=False)
    assert pub.connect(client_id="slow-pub", username="test", password="hahaha") == 0
    payloads = [bytes([i % 256]) * 30000 + b"%d" % i for i in range(150)]
    for p in payloads:
        pub.send(mqtt_publish("slow/ssl", p))
    time.sleep(1.0)  # the subscriber reads nothing meanwhile
    got = [parse_publish(*sub.recv(10)[1:])[1] for _ in payloads]
    assert got == payloads
    sub.close()
    pub.close()
