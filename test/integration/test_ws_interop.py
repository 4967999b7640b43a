"""MQTT over WebSocket against real peers, for the SDK's WebSocket layer (sdk/src/ws_*.c):
- our client side (test/tools/ws_probe) against mosquitto's own websockets listener;
- our server side (test/tools/ws_bridge, in front of mosquitto's TCP listener) against the
  paho Python client's websockets transport, and against our client side over real sockets.
"""
import os
import shutil
import subprocess
import threading

import paho.mqtt.client as mqtt

from conftest import BUILD, free_port, wait_for, wait_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def tool(name):
    path = os.path.join(BUILD, "tools", name)
    assert os.path.exists(path), f"{path} not built"
    return path


def start_mosquitto(procs, tmp_path, ws_port=None):
    """mosquitto with a TCP listener (2.0.11 refuses to start with a websockets listener
    alone) and, when asked, a websockets listener bound to the loopback interface."""
    tcp_port = free_port()
    conf = [f"listener {tcp_port} 127.0.0.1", "allow_anonymous true"]
    if ws_port:
        conf += [f"listener {ws_port} lo", "protocol websockets"]
    path = tmp_path / "mosquitto.conf"
    path.write_text("\n".join(conf) + "\n")
    log = open(tmp_path / "mosquitto.log", "w")
    procs.start([MOSQUITTO, "-c", str(path)], stdout=log, stderr=subprocess.STDOUT)
    wait_port(tcp_port)
    if ws_port:
        wait_port(ws_port)
    return tcp_port


def start_bridge(procs, tmp_path, broker_port):
    port = free_port()
    out = open(tmp_path / "bridge.out", "w")
    procs.start([tool("ws_bridge"), str(port), str(broker_port)], stdout=out,
                stderr=subprocess.STDOUT)
    wait_port(port)  # the probe connection shows up as "connection lost during the handshake"
    return port, tmp_path / "bridge.out"


def run_probe(port, path="/mqtt", size=100000):
    r = subprocess.run([tool("ws_probe"), "127.0.0.1", str(port), path, str(size)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"ws_probe failed: {r.stdout}{r.stderr}"
    return r.stdout.splitlines()


def test_our_client_against_mosquitto_websockets(procs, tmp_path):
    ws_port = free_port()
    start_mosquitto(procs, tmp_path, ws_port)
    lines = run_probe(ws_port)
    assert lines == ["handshake ok protocol=mqtt", "connack ok", "suback ok",
                     "publish ok 100000 bytes", "close ok code=1000"]


def test_our_client_against_our_server(procs, tmp_path):
    broker = start_mosquitto(procs, tmp_path)
    port, out = start_bridge(procs, tmp_path, broker)
    lines = run_probe(port, "/any/path", 300000)
    assert lines[-2:] == ["publish ok 300000 bytes", "close ok code=1000"]
    wait_for(lambda: "closed code=1000" in out.read_text(), what="bridge saw the close")
    assert "path=/any/path protocol=mqtt" in out.read_text()


def test_paho_websockets_against_our_server(procs, tmp_path):
    broker = start_mosquitto(procs, tmp_path)
    port, out = start_bridge(procs, tmp_path, broker)

    got = []
    done = threading.Event()
    connected = threading.Event()
    subscribed = threading.Event()

    def on_connect(c, userdata, flags, rc):
        assert rc == 0
        connected.set()

    def on_subscribe(c, userdata, mid, granted):
        subscribed.set()

    def on_message(c, userdata, msg):
        got.append((msg.topic, msg.payload))
        if len(got) == 2:
            done.set()

    c = mqtt.Client(client_id="paho-ws", transport="websockets")
    c.ws_set_options(path="/mqtt")
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    try:
        assert connected.wait(10), "no CONNACK over websockets"
        c.subscribe("ws/paho", qos=1)
        assert subscribed.wait(10), "no SUBACK"
        big = bytes(range(256)) * 300  # 76800 bytes: a frame with a 64-bit length
        c.publish("ws/paho", b"hello", qos=0)
        c.publish("ws/paho", big, qos=1).wait_for_publish()
        assert done.wait(10), f"got {len(got)} messages"
        assert got == [("ws/paho", b"hello"), ("ws/paho", big)]
    finally:
        c.disconnect()
        c.loop_stop()
    wait_for(lambda: "protocol=mqtt" in out.read_text(), what="bridge handshake line")
    assert "path=/mqtt protocol=mqtt" in out.read_text()


def test_bad_upgrade_gets_400(procs, tmp_path):
    import socket
    broker = start_mosquitto(procs, tmp_path)
    port, out = start_bridge(procs, tmp_path, broker)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
        answer = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"missing Sec-WebSocket-Key" in answer
    wait_for(lambda: "refused: websocket handshake: missing Sec-WebSocket-Key" in out.read_text(),
             what="bridge refusal line")
