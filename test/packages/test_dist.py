"""The release archive (`make dist`, issue #13) as the README tells users to install it:
unpacked into a prefix, the master checks and starts the example found there, and the SDK's
pkg-config file names that prefix."""
import glob
import os
import subprocess
import tarfile
import tempfile

import pytest

SRC = os.environ.get("BAETYL_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
DIST = os.environ.get("BAETYL_DIST", os.path.join(SRC, "build", "dist"))
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


@pytest.fixture
def unpacked():
    found = sorted(glob.glob(os.path.join(DIST, f"baetyl-*-linux-{ARCH}.tar.gz")))
    assert found, f"no release archive for {ARCH} in {DIST}: run make dist"
    d = tempfile.mkdtemp(prefix="bt-dist-")
    with tarfile.open(found[-1]) as t:
        names = t.getnames()
        assert not [n for n in names if n.startswith("/") or ".." in n.split("/")], names
        t.extractall(d)
    yield d
    subprocess.run(["rm", "-rf", d])


def test_archive_holds_master_modules_sdk_and_examples(unpacked):
    for rel in ("bin/baetyl", "etc/baetyl/conf.yml", "var/db/baetyl/application.yml",
                "var/db/baetyl/baetyl-hub/bin/baetyl-hub", "var/db/baetyl/baetyl-hub/package.yml",
                "var/db/baetyl/baetyl-function-sql/bin/baetyl-function-sql",
                "var/db/baetyl/baetyl-function-python/package.yml",
                "var/db/baetyl/baetyl-function-node/node_modules/@grpc/grpc-js/package.json",
                "include/baetyl/mqtt_client.h", "lib/libbaetyl-sdk.a",
                "lib/systemd/system/baetyl.service", "share/baetyl/example/docker"):
        assert os.path.exists(os.path.join(unpacked, rel)), rel
    unit = open(os.path.join(unpacked, "lib/systemd/system/baetyl.service")).read()
    assert "ExecStart=/usr/local/bin/baetyl start -w /usr/local" in unit, unit
    pc = open(os.path.join(unpacked, "lib/pkgconfig/baetyl-sdk.pc")).read()
    assert "prefix=/usr/local\n" in pc, pc
    # programs are stripped: a release, not a debug build
    out = subprocess.run(["file", os.path.join(unpacked, "bin/baetyl")], capture_output=True,
                         text=True).stdout
    assert "stripped" in out and "not stripped" not in out, out


def test_unpacked_master_checks_the_example(unpacked):
    # -w: the archive is meant for /usr/local; anywhere else the work dir is named
    r = subprocess.run([os.path.join(unpacked, "bin/baetyl"), "check", "-w", unpacked],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "OK!" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([os.path.join(unpacked, "bin/baetyl"), "version"], capture_output=True,
                       text=True, timeout=60)
    assert f"Platform:     linux/{ARCH}\n" in r.stdout, r.stdout
