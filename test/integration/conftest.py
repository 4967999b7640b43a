"""Shared fixtures for the integration tests: they drive the real binaries built by
`make test` (BAETYL_BUILD points at that build) in temporary work dirs, on free ports of
127.0.0.1, and never leave a process behind."""
import os
import signal
import socket
import subprocess
import time

import pytest

SRC = os.environ.get("BAETYL_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BAETYL_BUILD") or os.path.join(SRC, "build", "san")
BIN = os.path.join(BUILD, "bin")


def binary(name):
    """Path of a built executable (baetyl, baetyl-hub, …); skips nothing: a missing
    binary is a failure, since `make test` builds them all."""
    path = os.path.join(BIN, name)
    assert os.path.exists(path), f"{path} not built"
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Polls pred() until it returns a truthy value; fails the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_port(port, host="127.0.0.1", timeout=10.0):
    def ok():
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            return False
    wait_for(ok, timeout, what=f"port {port}")


class Procs:
    """Starts processes in their own process groups and kills every group at teardown."""

    def __init__(self):
        self.procs = []

    def start(self, args, **kw):
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(args, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=15):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        return p.returncode

    def cleanup(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def procs():
    ps = Procs()
    yield ps
    ps.cleanup()
