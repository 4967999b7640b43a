"""The Debian packages (`make deb`, issue #13), as a user meets them.

test_packages_are_lintian_clean: every .deb of BAETYL_DIST passes lintian (what the packages
flag on purpose is in their lintian overrides, with the reason).

test_install_run_remove_in_fresh_debian: a fresh Debian 12 root made with debootstrap (cached
under build/debootstrap, copied per run); `apt-get install ./baetyl_<v>_<arch>.deb` pulls the
dependencies from the Debian archive; the master starts from the package exactly as installed
(its work dir is /) inside a network namespace of the test's own, so port 1883 of the machine
is never touched; the seed's chapter 9 message goes through the hub and the Python, Node and
SQL functions; `apt-get remove` stops everything and leaves only the conffiles and the data
the services wrote; `apt-get purge` leaves nothing. Needs root, debootstrap and the network
to the Debian archive."""
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

SRC = os.environ.get("BAETYL_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
DIST = os.environ.get("BAETYL_DIST", os.path.join(SRC, "build", "dist"))
ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
CACHE = os.path.join(SRC, "build", "debootstrap")
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")


def run(cmd, timeout=600, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def debs(pattern):
    found = sorted(glob.glob(os.path.join(DIST, pattern)))
    assert found, f"no {pattern} in {DIST}: run make deb"
    return found


def test_packages_are_lintian_clean():
    r = run(["lintian", "--fail-on", "error,warning", *debs("*.deb")], check=False)
    bad = [l for l in r.stdout.splitlines() if l[:2] in ("E:", "W:")]
    assert r.returncode == 0 and not bad, r.stdout + r.stderr


def base_root():
    """A debootstrap'ed Debian 12 (minbase) as a tarball, made once."""
    tar = os.path.join(CACHE, f"bookworm-{ARCH}.tar")
    if not os.path.exists(tar):
        os.makedirs(CACHE, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="debootstrap-", dir=CACHE)
        try:
            run(["debootstrap", "--variant=minbase", "bookworm", tmp, MIRROR], timeout=1200)
            run(["tar", "-C", tmp, "-cf", tar + ".part", "."])
            os.rename(tar + ".part", tar)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return tar


class Chroot:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bt-deb-")
        self.ns = f"btdeb{uuid.uuid4().hex[:8]}"
        self.mounted = []
        run(["tar", "-C", self.dir, "-xf", base_root()])
        for fs, where in (("proc", "proc"), ("sysfs", "sys")):
            os.makedirs(os.path.join(self.dir, where), exist_ok=True)
            run(["mount", "-t", fs, fs, os.path.join(self.dir, where)])
            self.mounted.append(os.path.join(self.dir, where))
        shutil.copy("/etc/resolv.conf", os.path.join(self.dir, "etc/resolv.conf"))
        run(["ip", "netns", "add", self.ns])
        run(["ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up"])

    def sh(self, script, timeout=600, check=True, net=True):
        """A shell script inside the root; net=False: in the test's namespace (only lo)."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
               "LC_ALL": "C"}
        cmd = ["chroot", self.dir, "/bin/sh", "-ec", script]
        if not net:
            cmd = ["ip", "netns", "exec", self.ns] + cmd
        return run(cmd, timeout=timeout, check=check, env=env)

    def host(self, cmd, **kw):
        """A program of this machine (mosquitto clients) in the namespace of the root's master."""
        return ["ip", "netns", "exec", self.ns] + cmd

    def pids(self):
        """Processes whose root is this root: the master and its services."""
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.readlink(f"/proc/{d}/root") == self.dir:
                        out.append(int(d))
                except OSError:
                    pass
        return out

    def files(self, top):
        base = os.path.join(self.dir, top.lstrip("/"))
        res = set()
        for dirpath, dirnames, filenames in os.walk(base):
            for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                res.add("/" + os.path.relpath(os.path.join(dirpath, n), self.dir))
        return res

    def close(self):
        for pid in self.pids():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        for m in reversed(self.mounted):
            subprocess.run(["umount", "-l", m], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot, mount and ip netns need root")
def test_install_run_remove_in_fresh_debian():
    deb = [d for d in debs(f"baetyl_*_{ARCH}.deb")][-1]
    c = Chroot()
    try:
        shutil.copy(deb, os.path.join(c.dir, "tmp"))
        c.sh("apt-get update -q", timeout=600)
        r = c.sh(f"apt-get install -y -q --no-install-recommends ./tmp/{os.path.basename(deb)}",
                 timeout=1200)
        assert "Setting up baetyl" in r.stdout, r.stdout[-3000:]
        conffiles = set(c.sh("cat /var/lib/dpkg/info/baetyl.conffiles").stdout.split())
        assert "/etc/baetyl/conf.yml" in conffiles and "/etc/baetyl/application.yml" in conffiles
        r = c.sh("baetyl check", net=False)
        assert "OK!" in r.stdout, r.stdout + r.stderr
        assert "Platform:     linux/" in c.sh("baetyl version").stdout

        master = subprocess.Popen(
            ["ip", "netns", "exec", c.ns, "chroot", c.dir, "/usr/bin/baetyl", "start"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
        log = os.path.join(c.dir, "var/log/baetyl/baetyl.log")
        fmlog = os.path.join(c.dir, "var/db/baetyl/function-manager-log/service.log")
        wait(lambda: os.path.exists(log) and "services started" in open(log).read()
             or master.poll() is not None, 60, "master start")
        assert master.poll() is None, master.stdout.read()
        wait(lambda: os.path.exists(fmlog) and open(fmlog).read().count("rule connected to the hub") >= 3,
             60, "function-manager rules connected")
        sub = subprocess.Popen(c.host(["mosquitto_sub", "-h", "127.0.0.1", "-p", "1883", "-u", "test",
                                       "-P", "hahaha", "-t", "t/#", "-v", "-C", "5", "-W", "120"]),
                               stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        run(c.host(["mosquitto_pub", "-h", "127.0.0.1", "-p", "1883", "-u", "test", "-P", "hahaha",
                    "-q", "1", "-t", "t", "-m", '{"id":1}']), timeout=60)
        out, _ = sub.communicate(timeout=150)
        topics = sorted(l.split(" ", 1)[0] for l in out.splitlines())
        assert topics == ["t", "t/node8hi", "t/py3hi", "t/sqlfilter", "t/topic"], out
        assert "Hello Baetyl" in out, out

        # remove: the package's prerm stops the master and its services
        r = c.sh("apt-get remove -y -q baetyl", timeout=300)
        master.wait(60)
        wait(lambda: not c.pids(), 30, "every process of the package gone")
        assert not os.path.exists(os.path.join(c.dir, "usr/bin/baetyl"))
        assert not os.path.exists(os.path.join(c.dir, "usr/lib/baetyl"))
        left_etc = c.files("/etc/baetyl")
        assert left_etc <= conffiles, sorted(left_etc - conffiles)
        # what remains under /var is only what the services wrote (hub store, logs), no file
        # of the package; /var/run holds nothing of the master
        left_var = c.files("/var/db/baetyl") | c.files("/var/log/baetyl")
        shipped = {"/var/db/baetyl/application.yml", "/var/db/baetyl/baetyl-hub"}
        assert not (left_var & shipped), sorted(left_var & shipped)
        assert not glob.glob(os.path.join(c.dir, "var/run/baetyl*")) and \
            not glob.glob(os.path.join(c.dir, "run/baetyl*"))
        # purge: nothing at all
        c.sh("apt-get purge -y -q baetyl", timeout=300)
        for d in ("etc/baetyl", "var/db/baetyl", "var/log/baetyl"):
            assert not os.path.exists(os.path.join(c.dir, d)), d
    finally:
        c.close()
