"""The main example on another platform, under emulation (issue #13): the master, the hub, the
function-manager and the SQL runtime built for BAETYL_PLATFORM (linux/arm64, linux/arm/v7) run
through qemu-user (binfmt_misc, registered by `scripts/deps.sh --platforms all`); a QoS 1
message in, the hub's routed copy and the SQL function's output out. The MQTT peers are the
machine's own mosquitto clients. Run by `make test-platforms`."""
import os
import subprocess
import sys
import time

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from conftest import BIN, free_port, procs, wait_for  # noqa: E402,F401 (fixtures)
from test_tutorials import install  # noqa: E402,F401 (a fixture)

PLATFORM = os.environ.get("BAETYL_PLATFORM", "")
# ELF e_machine of each platform's binaries: proves the test runs what it claims to.
MACHINE = {"linux/arm64": 0xB7, "linux/arm/v7": 0x28, "linux/amd64": 0x3E}
QEMU = {"linux/arm64": "qemu-aarch64", "linux/arm/v7": "qemu-arm"}


def elf_machine(path):
    with open(path, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF", path
    return int.from_bytes(head[18:20], "little")


def test_binaries_are_for_the_platform_and_emulation_is_registered():
    assert PLATFORM in MACHINE, f"BAETYL_PLATFORM={PLATFORM!r}"
    for name in ("baetyl", "baetyl-hub", "baetyl-function-manager", "baetyl-function-sql"):
        assert elf_machine(os.path.join(BIN, name)) == MACHINE[PLATFORM], name
    if PLATFORM in QEMU:
        reg = f"/proc/sys/fs/binfmt_misc/{QEMU[PLATFORM]}"
        assert os.path.exists(reg) and "enabled" in open(reg).read(), \
            f"{reg}: run scripts/deps.sh --platforms all (registers qemu-user-static)"
    out = subprocess.run([os.path.join(BIN, "baetyl"), "version"], capture_output=True,
                         text=True, timeout=60).stdout
    assert f"Platform:     {PLATFORM}\n" in out, out


def test_main_example_qos1_through_hub_and_sql_function(install):
    i = install("native")
    # Only the SQL function: the Python and Node runtimes are the machine's interpreters,
    # not built for the platform.
    app_path = i.path("var/db/baetyl/application.yml")
    app = yaml.safe_load(open(app_path))
    app["services"] = [s for s in app["services"]
                       if s["name"] in ("localhub", "function-manager", "function-sql-filter")]
    yaml.safe_dump(app, open(app_path, "w"))
    fm_path = i.path("var/db/baetyl/function-manager-conf/service.yml")
    fm = yaml.safe_load(open(fm_path))
    fm["rules"] = [r for r in fm["rules"] if r["function"]["name"] == "sql-filter"]
    fm["functions"] = [f for f in fm["functions"] if f["name"] == "sql-filter"]
    yaml.safe_dump(fm, open(fm_path, "w"))
    port = free_port()
    i.repoint({1883: port})
    r = i.baetyl("check", timeout=120)
    assert r.returncode == 0 and "OK!" in r.stdout, r.stdout + r.stderr
    i.start()
    wait_for(lambda: "rule connected to the hub" in
             i.read("var/db/baetyl/function-manager-log/service.log"), 60,
             what="function-manager rule connected")
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-u", "test",
                            "-P", "hahaha", "-q", "1", "-t", "t/#", "-v", "-C", "3", "-W", "120"],
                           stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # the subscription is in place (emulation is slow)
        pub = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", "test",
                              "-P", "hahaha", "-q", "1", "-t", "t", "-m", '{"id":1}'],
                             capture_output=True, text=True, timeout=60)
        assert pub.returncode == 0, pub.stderr
        out, _ = sub.communicate(timeout=150)
    finally:
        if sub.poll() is None:
            sub.kill()
    lines = sorted(out.splitlines())
    # t/# also matches t itself: the message, the route's copy, the SQL function's output
    assert lines == ['t {"id":1}', 't/sqlfilter {"qos":1,"topic":"t","id":1}',
                     't/topic {"id":1}'], out
    i.stop()
