"""Libraries loaded on first use (issue #18). OpenSSL: a module without TLS in its config does
not map libssl/libcrypto (their relocated data costs ~0.6 MB per process), and a TLS setting
on a box without OpenSSL fails with an error naming the setting and the library. libarchive:
the agent maps it only to unzip a volume (test_agent.py unzips them).

The missing library is made by bind-mounting /dev/null over libssl.so.3 in a private mount
namespace of the test's own (unshare -rm): nothing outside the test sees it."""
import ctypes
import os
import shutil
import subprocess

import pytest

from conftest import Hub, Procs, binary, free_port
from hub_tls_util import gen_certs


def maps_openssl(pid):
    with open(f"/proc/{pid}/maps") as f:
        return sorted({os.path.basename(line.split()[-1]) for line in f
                       if "libssl" in line or "libcrypto" in line})


def test_plain_hub_maps_no_openssl(tmp_path):
    procs = Procs()
    h = Hub(procs, tmp_path).start()
    try:
        assert maps_openssl(h.proc.pid) == []
    finally:
        h.stop()
        procs.cleanup()


@pytest.mark.parametrize("name", ["baetyl", "baetyl-hub", "baetyl-timer", "baetyl-remote-mqtt"])
def test_binary_does_not_link_openssl(name):
    out = subprocess.run(["readelf", "-d", binary(name)], check=True, capture_output=True,
                         text=True).stdout
    assert "libssl" not in out and "libcrypto" not in out, out


def test_agent_does_not_link_libarchive():
    out = subprocess.run(["readelf", "-d", binary("baetyl-agent")], check=True,
                         capture_output=True, text=True).stdout
    assert "libarchive" not in out, out


def libssl_path():
    """The libssl.so.3 the dynamic loader picks on this machine (the one the test's Python
    loads too)."""
    ctypes.CDLL("libssl.so.3")
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip().endswith("/libssl.so.3"):
                return os.path.realpath(line.split()[-1])
    pytest.fail("libssl.so.3 not found")


def without_libssl(args, cwd):
    """Runs args where libssl.so.3 cannot be loaded; returns (rc, stdout+stderr)."""
    if not shutil.which("unshare"):
        pytest.fail("unshare (util-linux) is needed")
    script = 'mount --bind /dev/null "$0" && exec "$@"'
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script, libssl_path(), *args], cwd=cwd,
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def test_hub_tls_listener_without_openssl(tmp_path):
    certs = gen_certs(tmp_path / "certs")
    conf = tmp_path / "conf.yml"
    conf.write_text(f"listen: ['ssl://127.0.0.1:{free_port()}']\n"
                    f"certificate: {{cert: {certs['server']}, key: {certs['server_key']}}}\n"
                    "storage: {dir: data}\n"
                    "principals: [{username: u, password: p, permissions: []}]\n")
    rc, out = without_libssl([binary("baetyl-hub"), "-c", str(conf)], tmp_path)
    assert rc != 0, out
    assert "certificate: TLS needs OpenSSL 3" in out and "libssl.so.3" in out, out


def test_client_tls_address_without_openssl(tmp_path):
    conf = tmp_path / "conf.yml"
    conf.write_text(f"hub: {{address: 'ssl://127.0.0.1:{free_port()}', clientid: t}}\n"
                    "timer: {interval: 1s}\npublish: {topic: x}\n")
    rc, out = without_libssl([binary("baetyl-timer"), "-c", str(conf)], tmp_path)
    assert rc != 0, out
    assert "address (ssl://): TLS needs OpenSSL 3" in out and "libssl.so.3" in out, out
