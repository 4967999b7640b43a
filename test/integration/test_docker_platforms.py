"""Images for another platform (issue #13): the arm64 cross build's hub as a FROM-scratch
image (`make image PLATFORM=linux/arm64`, i.e. docker/build-platform-images.sh), run on the
test's own Docker engine under qemu-user emulation (binfmt_misc, registered by
`scripts/deps.sh --platforms all`), and a client of this machine connects to it."""
import os
import subprocess

import paho.mqtt.client as mqtt
import pytest

from conftest import SRC, free_port, wait_for, wait_port

QEMU = "/proc/sys/fs/binfmt_misc/qemu-aarch64"


def test_arm64_hub_image_runs_under_emulation(docker_engine, tmp_path):
    if not os.path.exists(QEMU):
        pytest.fail(f"{QEMU} is missing: run scripts/deps.sh --platforms all")
    # a make of its own: not the SAN=1 BUILD=build/san of the `make test` that runs this test
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL", "SAN", "BUILD")}
    r = subprocess.run(["make", "--no-print-directory", "PLATFORM=linux/arm64", "all"], cwd=SRC,
                       capture_output=True, text=True, timeout=900, env=clean)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    env = dict(os.environ, DOCKER_HOST=docker_engine.host)
    r = subprocess.run([os.path.join(SRC, "docker/build-platform-images.sh"), "-p", "linux/arm64",
                        "-t", "test", "baetyl-hub"], capture_output=True, text=True,
                       timeout=900, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    arch = docker_engine.docker("image", "inspect", "-f", "{{.Architecture}}/{{.Os}}",
                                "baetyl-hub:test-linux-arm64").stdout.strip()
    assert arch == "arm64/linux", arch
    port = free_port()
    conf = tmp_path / "service.yml"
    conf.write_text(f"""listen: ['tcp://127.0.0.1:{port}']
principals:
  - {{username: test, password: hahaha, permissions: [{{action: pub, permit: ['#']}}, {{action: sub, permit: ['#']}}]}}
""")
    name = f"bt-arm64-hub-{port}"
    run = docker_engine.docker("run", "-d", "--rm", "--name", name, "--platform", "linux/arm64",
                               "--network", "host", "-v", f"{tmp_path}:/etc/baetyl:ro",
                               "baetyl-hub:test-linux-arm64", "-c", "/etc/baetyl/service.yml")
    assert run.returncode == 0, run.stderr
    try:
        wait_port(port, timeout=60)
        got = []
        c = mqtt.Client(client_id="arm64-check")
        c.username_pw_set("test", "hahaha")
        c.on_message = lambda cl, u, m: got.append((m.topic, m.payload))
        c.connect("127.0.0.1", port)
        c.loop_start()
        c.subscribe("a/b", 1)
        wait_for(lambda: c.publish("a/b", b"from x86", 1) and got, 30, what="the echo")
        c.loop_stop()
        c.disconnect()
        assert got[0] == ("a/b", b"from x86"), got
        # the process in the container is an aarch64 program (emulated)
        top = docker_engine.docker("exec", name, "/bin/baetyl-hub", "--version")
        assert "baetyl-hub version" in top.stdout, top.stdout + top.stderr
    finally:
        docker_engine.docker("rm", "-f", name)
