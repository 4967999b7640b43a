#!/usr/bin/python3
"""Measures the master (not a test): RSS with N native services running, the time from
`baetyl start` until all N report running, and inspect requests per second.

    /usr/bin/python3 test/bench/master_bench.py build/bin/baetyl [N] [seconds]
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path_)


def rss_kb(pid):
    """(RSS, private part) in kB: shared library pages count in RSS but are not ours."""
    rss = priv = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, v = line.split(":", 1) if ":" in line else ("", "")
            if k == "Rss":
                rss = int(v.split()[0])
            elif k in ("Private_Clean", "Private_Dirty"):
                priv += int(v.split()[0])
    return rss, priv


def main():
    binary = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    secs = float(sys.argv[3]) if len(sys.argv) > 3 else 3
    d = tempfile.mkdtemp(prefix="btmeas", dir="/tmp")
    try:
        sock = os.path.join(d, "b.sock")
        os.makedirs(f"{d}/etc/baetyl")
        with open(f"{d}/etc/baetyl/conf.yml", "w") as f:
            f.write(f"mode: native\ngrace: 5s\nserver:\n  address: unix://{sock}\n")
        os.makedirs(f"{d}/var/db/baetyl/pkg/bin")
        with open(f"{d}/var/db/baetyl/pkg/package.yml", "w") as f:
            f.write("entry: bin/prog\n")
        with open(f"{d}/var/db/baetyl/pkg/bin/prog", "w") as f:
            f.write("#!/bin/sh\nexec sleep 100000\n")
        os.chmod(f"{d}/var/db/baetyl/pkg/bin/prog", 0o755)
        services = [{"name": f"s{i}", "image": "pkg", "replica": 1,
                     "mounts": [{"name": "pkg", "path": "lib/baetyl/pkg"}]} for i in range(n)]
        with open(f"{d}/var/db/baetyl/application.yml", "w") as f:
            json.dump({"version": "m", "services": services,
                       "volumes": [{"name": "pkg", "path": "var/db/baetyl/pkg"}]}, f)

        t0 = time.monotonic()
        p = subprocess.Popen([binary, "start", "-w", d], start_new_session=True)
        token = None
        while True:
            try:
                if token is None:
                    with open(f"{d}/var/run/baetyl/cli.token") as f:
                        token = f.read().strip()
                c = Unix(sock)
                c.request("GET", "/v1/system/inspect",
                          headers={"x-openedge-username": "baetyl.cli", "x-openedge-password": token})
                j = json.loads(c.getresponse().read())
                c.close()
                running = sum(1 for s in j["services"] for i in s["instances"] if i["status"] == "running")
                if running == n:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.002)
        t_all = time.monotonic() - t0
        time.sleep(1)
        rss = rss_kb(p.pid)

        h = {"x-openedge-username": "baetyl.cli", "x-openedge-password": token}
        c = Unix(sock)
        count, t1 = 0, time.monotonic()
        while time.monotonic() - t1 < secs:
            c.request("GET", "/v1/system/inspect", headers=h)
            c.getresponse().read()
            count += 1
        rps = count / (time.monotonic() - t1)
        c.close()
        count, t1 = 0, time.monotonic()
        while time.monotonic() - t1 < secs:
            c = Unix(sock)
            c.request("GET", "/v1/system/inspect", headers=h)
            c.getresponse().read()
            c.close()
            count += 1
        rps_new = count / (time.monotonic() - t1)

        t2 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        t_stop = time.monotonic() - t2
        print(f"services: {n}")
        print(f"start -> all running: {t_all * 1000:.0f} ms")
        print(f"master RSS with {n} services running: {rss[0]} kB ({rss[1]} kB private)")
        print(f"inspect: {rps:.0f} req/s (one keep-alive connection), {rps_new:.0f} req/s (a connection each)")
        print(f"SIGTERM -> exited: {t_stop * 1000:.0f} ms")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
