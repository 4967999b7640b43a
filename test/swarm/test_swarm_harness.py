"""The harness itself: nodes join, images reach every node, nothing is left behind."""
import os
import time

from swarm_harness import Swarm


def cmdline(pid):
    """The command line of a live process (b"" when gone, or a zombie)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_two_nodes_join_and_leave_nothing(make_swarm):
    s = make_swarm(2)
    r = s.leader.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}", check=True)
    assert r.stdout.count("Ready") == 2, r.stdout
    s.stop()
    assert s.leftovers() == []


def test_killed_worker_leaves_nothing(make_swarm):
    """kill -9 of a worker's dockerd and shims leaves its container running (reparented, in
    its own pid namespace); stop() still ends it and leaves no process, netns, mount or
    cgroup."""
    s = make_swarm(2)
    ref = s.import_busybox()
    worker = s.nodes[1]
    s.leader.docker("service", "create", "-d", "--name", "sleeper", "--constraint",
                    f"node.id=={worker.node_id}", ref, "/bin/busybox", "sleep", "3600",
                    check=True)
    def sleepers():  # the container's own process (not runc's, while it starts)
        return [p for p in worker.container_procs() if b"sleep" in cmdline(p)]

    deadline = time.monotonic() + 60
    while not sleepers():
        assert time.monotonic() < deadline, s.tasks("sleeper")
        time.sleep(0.5)
    pids = sleepers()
    worker.kill_dockerd()
    alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
    assert alive, "the container outlives its killed shim (what stop() must end)"
    s.stop()
    assert s.leftovers() == []
    assert not any(cmdline(p) for p in pids)


def test_runs_do_not_collide(swarm_ok):
    a, b = Swarm(1), Swarm(1)
    assert a.prefix != b.prefix and a.root != b.root
    a.stop()
    b.stop()


def test_three_managers_survive_the_loss_of_one(make_swarm):
    """Raft keeps a quorum with 2 of 3 managers: the survivors still answer and schedule."""
    s = make_swarm(3, managers=3)
    s.nodes[0].kill_dockerd()
    deadline = time.monotonic() + 60
    while True:
        r = s.nodes[1].docker("node", "ls", "--format", "{{.Status}} {{.ManagerStatus}}")
        if r.returncode == 0 and "Down" in r.stdout:
            break
        assert time.monotonic() < deadline, r.stdout + r.stderr
        time.sleep(1)
    r = s.nodes[1].docker("network", "create", "-d", "overlay", "after-loss")
    assert r.returncode == 0, r.stderr
    assert "after-loss" in s.nodes[2].docker("network", "ls").stdout
