"""An N-node Docker Swarm on this one machine, for the swarm engine's tests.

Each node is a network namespace with its own dockerd (own data root, exec root, containerd
namespace and socket under one temp dir, own cgroup parent); the nodes reach each other
through a bridge that lives in one more namespace, so nothing is added to the machine's own
network. Names carry
a random run id, so two runs never collide. Images built on node 1 reach the others through
`docker save | docker load` (no registry). stop() removes everything even after a failure:
containers, dockerds and the containerd shims of killed ones, the container processes a killed
node's shims leave (found by the node's cgroup parent), mounts, namespaces, cgroups, the dir;
leftovers() lists what would remain. The system dockerd is never used: every docker call
names a node's socket."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

SUBNET = "10.210.0"  # node n is SUBNET.n inside the run's own namespaces
REGISTRY = f"{SUBNET}.100:5000"  # start_registry(): on the switch, plain HTTP


def _run(*args, timeout=60, check=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stdout}{r.stderr}")
    return r


def why_not():
    """Why a swarm cannot be built here, or None."""
    if os.geteuid() != 0:
        return "swarm tests need root (network namespaces, dockerd)"
    for tool in ("docker", "ip", "nsenter"):
        if not shutil.which(tool):
            return f"swarm tests need {tool}"
    if not (shutil.which("dockerd") or os.path.exists("/usr/sbin/dockerd")):
        return "swarm tests need dockerd (apt-get install docker.io)"
    name = f"bswprobe{uuid.uuid4().hex[:6]}"
    if _run("ip", "netns", "add", name, check=False).returncode != 0:
        return "network namespaces are not available here"
    _run("ip", "netns", "del", name, check=False)
    return None


class Node:
    def __init__(self, swarm, n):
        self.swarm, self.n = swarm, n
        self.netns = f"{swarm.prefix}{n}"
        self.root = os.path.join(swarm.root, f"n{n}")
        self.sock = os.path.join(self.root, "docker.sock")
        self.host = f"unix://{self.sock}"
        self.addr = f"{SUBNET}.{n}"
        self.cns = f"{swarm.prefix}{n}-{swarm.run}"  # containerd namespace
        self.cgroup = f"{swarm.prefix}{n}"  # cgroup parent of its containers (cgroupfs driver)
        self.proc = None
        self.node_id = None

    def docker(self, *args, timeout=120, check=False, **kw):
        return _run("docker", "-H", self.host, *args, timeout=timeout, check=check, **kw)

    def in_ns(self, *args):
        """A command line that runs args in this node's network namespace."""
        return ["nsenter", f"--net=/var/run/netns/{self.netns}", *args]

    def ok(self, timeout=20):
        try:
            return self.docker("info", "--format", "{{.ID}}", timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def start_dockerd(self):
        os.makedirs(self.root, exist_ok=True)
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        log = open(os.path.join(self.root, "dockerd.log"), "ab")
        # nsenter --net, not `ip netns exec` (which remounts /sys and hides the cgroups)
        self.proc = subprocess.Popen(
            self.in_ns(dockerd, "--data-root", f"{self.root}/data", "--exec-root",
                       f"{self.root}/exec", "--pidfile", f"{self.root}/dockerd.pid", "-H",
                       self.host, f"--bip=172.31.{self.n}.1/24", "--containerd-namespace",
                       self.cns, "--containerd-plugins-namespace", f"{self.cns}-plugins",
                       "--cgroup-parent", f"/{self.cgroup}", "--insecure-registry", REGISTRY),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while not self.ok():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd of node {self.n} did not start: " + self.log()[-2000:])
            time.sleep(0.5)

    def log(self):
        try:
            with open(os.path.join(self.root, "dockerd.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def kill_dockerd(self):
        """kill -9 of the node's dockerd (and its containerd): the node dies for the swarm."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in self.shims():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def shims(self):
        """Pids of the containerd processes and shims of this node (found by its namespace,
        or its exec root)."""
        return [pid for pid, cmd, _ in _procs()
                if "containerd" in cmd and (f" {self.cns} " in f"{cmd} " or self.root + "/" in cmd)]

    def cgroup_dirs(self):
        """The node's cgroup parent in every hierarchy (cgroup v1 controllers, or v2)."""
        base = "/sys/fs/cgroup"
        dirs = [os.path.join(base, c, self.cgroup) for c in os.listdir(base)
                if os.path.isdir(os.path.join(base, c, self.cgroup))]
        if os.path.isdir(os.path.join(base, self.cgroup)):
            dirs.append(os.path.join(base, self.cgroup))
        return dirs

    def container_procs(self):
        """Pids of the processes in the node's containers: in its cgroup parent, or in a
        cgroup named after one of its containers (all pid namespaces: /proc shows them)."""
        try:
            ids = os.listdir(os.path.join(self.root, "data", "containers"))
        except OSError:
            ids = []
        out = []
        for pid, _, cg in _procs():
            paths = [ln.split(":", 2)[-1] for ln in cg.splitlines()]
            if any(p.startswith(f"/{self.cgroup}/") or p == f"/{self.cgroup}" or
                   any(i in p for i in ids) for p in paths):
                out.append(pid)
        return out

    def reap(self):
        """Kills what a dead dockerd left: containerd, shims, the containers' processes (a
        killed shim's container runs on, reparented), then removes the node's cgroups."""
        for _ in range(50):
            pids = self.shims() + self.container_procs()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for top in self.cgroup_dirs():
            for d, _, _ in sorted(os.walk(top), key=lambda x: -len(x[0])):
                for _ in range(20):
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)  # its last process is still being freed

    def stop_begin(self):
        """Removes the containers and asks dockerd to stop (stop_end waits: the nodes of a
        swarm stop side by side, one that lost its quorum takes many seconds)."""
        if self.proc and self.proc.poll() is None:
            try:  # a node in the middle of an election may not answer: reap() ends the rest
                if self.ok(timeout=5):
                    ids = self.docker("ps", "-aq", timeout=10).stdout.split()
                    if ids:
                        self.docker("rm", "-f", *ids, timeout=20)
            except subprocess.TimeoutExpired:
                pass
            self.proc.terminate()

    def stop_end(self, deadline):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # reap() ends what it leaves
                self.proc.wait()
        self.kill_dockerd()
        self.reap()


def _procs():
    """(pid, command line, /proc/pid/cgroup) of every process (zombies have no command)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{d}/cgroup") as f:
                cg = f.read()
        except OSError:
            continue
        if cmd:
            out.append((int(d), cmd, cg))
    return out


def busybox_tar(dest):
    """A one-file image (Debian's busybox-static) as a tar for `docker import`: seconds to
    load on every node, where the project's images take minutes to build."""
    tree = os.path.join(os.path.dirname(dest), "busybox-img")
    os.makedirs(os.path.join(tree, "bin"), exist_ok=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", os.path.join(tree, "bin", "busybox"))
    os.symlink("busybox", os.path.join(tree, "bin", "sh"))
    _run("tar", "-C", tree, "-cf", dest, ".")
    shutil.rmtree(tree)
    return dest


class Swarm:
    """n nodes; managers of them are managers (node 1 inits the swarm)."""

    def __init__(self, n, managers=1):
        self.run = uuid.uuid4().hex[:8]
        self.prefix = f"bsw{self.run}-"
        self.root = tempfile.mkdtemp(prefix="bsw-", dir="/tmp")  # short: socket paths
        self.switch = f"{self.prefix}sw"
        self.nodes = [Node(self, i + 1) for i in range(n)]
        self.managers = managers
        self.extra_procs = []

    @property
    def leader(self):
        return self.nodes[0]

    def start(self):
        _run("ip", "netns", "add", self.switch)
        _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for nd in self.nodes:
            _run("ip", "netns", "add", nd.netns)
            a, b = f"bs{self.run[:6]}{nd.n}a", f"bs{self.run[:6]}{nd.n}b"
            _run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            _run("ip", "link", "set", a, "netns", nd.netns)
            _run("ip", "link", "set", b, "netns", self.switch)
            _run("ip", "-n", self.switch, "link", "set", b, "master", "br0", "up")
            _run("ip", "-n", nd.netns, "addr", "add", f"{nd.addr}/24", "dev", a)
            _run("ip", "-n", nd.netns, "link", "set", a, "up")
            _run("ip", "-n", nd.netns, "link", "set", "lo", "up")
        for nd in self.nodes:
            nd.start_dockerd()
        ld = self.leader
        ld.docker("swarm", "init", "--advertise-addr", ld.addr, "--default-addr-pool",
                  "10.211.0.0/16", check=True)
        wtok = ld.docker("swarm", "join-token", "-q", "worker", check=True).stdout.strip()
        mtok = ld.docker("swarm", "join-token", "-q", "manager", check=True).stdout.strip()
        for i, nd in enumerate(self.nodes[1:], start=1):
            tok = mtok if i < self.managers else wtok
            nd.docker("swarm", "join", "--advertise-addr", nd.addr, "--token", tok,
                      f"{ld.addr}:2377", check=True)
        for nd in self.nodes:
            nd.node_id = nd.docker("info", "--format", "{{.Swarm.NodeID}}",
                                   check=True).stdout.strip()
        return self

    def label(self, node, key, value):
        self.leader.docker("node", "update", "--label-add", f"{key}={value}", node.node_id,
                           check=True)

    def load_images(self, build, src, names, tag="latest"):
        """Builds the images of build on node 1 (docker/build-images.sh) and loads them on
        every other node with docker save | docker load."""
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
        env["DOCKER_HOST"] = self.leader.host
        r = _run(os.path.join(src, "docker", "build-images.sh"), "-n", "-b", build, "-t", tag,
                 *names, timeout=900, check=False, env=env)
        if r.returncode != 0:
            raise RuntimeError(r.stdout + r.stderr)
        refs = [f"{n}:{tag}" for n in names]
        missing = [x for x in refs if self.leader.docker("image", "inspect", x).returncode]
        if missing:
            raise RuntimeError(f"images not built: {missing}: {r.stdout}{r.stderr}")
        for nd in self.nodes[1:]:
            save = subprocess.Popen(["docker", "-H", self.leader.host, "save", *refs],
                                    stdout=subprocess.PIPE)
            load = subprocess.run(["docker", "-H", nd.host, "load"], stdin=save.stdout,
                                  capture_output=True, text=True, timeout=600)
            save.stdout.close()
            if save.wait(600) != 0 or load.returncode != 0:
                raise RuntimeError(f"loading images on node {nd.n}: {load.stderr}")

    def import_busybox(self, ref="local/busybox:1", nodes=None):
        """The busybox image (busybox_tar) on every node (or those of nodes) as ref."""
        tar = busybox_tar(os.path.join(self.root, "busybox.tar"))
        for nd in nodes or self.nodes:
            nd.docker("import", "--change", "CMD [\"/bin/sh\"]", tar, ref, check=True)
        return ref

    def start_registry(self):
        """Debian's docker-registry on the switch (REGISTRY, storage in the run's dir), as a
        site's registry on its LAN; the nodes' dockerds trust it without TLS. Returns its
        address."""
        exe = shutil.which("docker-registry")
        if not exe:
            raise RuntimeError("docker-registry is not installed (scripts/deps.sh)")
        d = os.path.join(self.root, "registry")
        os.makedirs(d)
        host = REGISTRY.split(":")[0]
        _run("ip", "-n", self.switch, "addr", "add", f"{host}/24", "dev", "br0")
        _run("ip", "-n", self.switch, "link", "set", "lo", "up")  # its own address is local
        conf = os.path.join(d, "config.yml")
        with open(conf, "w") as f:
            f.write("version: 0.1\nlog: {level: warn}\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {d}/data\nhttp:\n  addr: {REGISTRY}\n")
        log = open(os.path.join(d, "registry.log"), "ab")
        p = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{self.switch}", exe, "serve",
                              conf], stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        log.close()
        self.extra_procs.append(p)
        deadline = time.monotonic() + 30
        while _run("nsenter", f"--net=/var/run/netns/{self.switch}", "curl", "-sf", "-m", "2",
                   f"http://{REGISTRY}/v2/", check=False).returncode != 0:
            if p.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(d, "registry.log"), errors="replace") as f:
                    raise RuntimeError("docker-registry did not start: " + f.read()[-2000:])
            time.sleep(0.3)
        return REGISTRY

    def leftovers(self):
        """What of this run is still on the machine: processes (any pid namespace), network
        namespaces, mounts, cgroups, the dir. Empty after stop()."""
        left = [f"process {pid}: {cmd[:200]}" for pid, cmd, _ in _procs()
                if self.root + "/" in cmd or self.prefix in cmd]
        for nd in self.nodes:
            left += [f"container process {pid}" for pid in nd.container_procs()]
            left += [f"cgroup {d}" for d in nd.cgroup_dirs()]
        r = _run("ip", "netns", "list", check=False)
        left += [f"netns {ln}" for ln in r.stdout.splitlines() if self.prefix in ln]
        with open("/proc/self/mounts") as f:
            left += [f"mount {ln.split()[1]}" for ln in f if self.root in ln.split()[1]]
        if os.path.exists(self.root):
            left.append(f"dir {self.root}")
        return left

    def manager(self):
        """A node whose dockerd answers as a manager (the leader first)."""
        for nd in self.nodes:
            if nd.proc and nd.proc.poll() is None and nd.ok():
                r = nd.docker("node", "ls", "-q")
                if r.returncode == 0:
                    return nd
        raise RuntimeError("no manager answers")

    def services(self, label="baetyl=baetyl"):
        r = self.manager().docker("service", "ls", "--filter", f"label={label}", "--format",
                                  "{{.Name}}", check=True)
        return sorted(r.stdout.split())

    def tasks(self, service):
        """The tasks of a service: [{node, state, desired, id}], newest first."""
        m = self.manager()
        r = m.docker("service", "ps", "--no-trunc", "--format", "{{json .}}", service)
        out = []
        for ln in r.stdout.splitlines():
            j = json.loads(ln)
            out.append({"node": j.get("Node"), "state": j.get("CurrentState", ""),
                        "desired": j.get("DesiredState"), "id": j.get("ID")})
        return out

    def stop(self):
        for p in self.extra_procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for nd in self.nodes:
            try:
                nd.stop_begin()
            except Exception:  # noqa: BLE001 - tear down the rest whatever happened
                nd.kill_dockerd()
        deadline = time.monotonic() + 10  # a node without quorum would take far longer
        for nd in self.nodes:
            try:
                nd.stop_end(deadline)
            except Exception:  # noqa: BLE001
                nd.kill_dockerd()
                nd.reap()
        with open("/proc/self/mounts") as f:  # never delete through a mount left behind
            mounts = [ln.split()[1] for ln in f if ln.split()[1].startswith(self.root + "/")]
        for mnt in sorted(mounts, reverse=True):
            _run("umount", "-l", mnt, check=False)
        # the containers' netns mounts live under /run/docker/netns of the nodes' exec roots
        for nd in self.nodes + [None]:
            name = nd.netns if nd else self.switch
            _run("ip", "netns", "del", name, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
