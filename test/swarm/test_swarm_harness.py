"""The harness itself: nodes join, images reach every node, nothing is left behind."""
import os
import subprocess
import time

from swarm_harness import Swarm


def test_two_nodes_join_and_leave_nothing(make_swarm):
    s = make_swarm(2)
    r = s.leader.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}", check=True)
    assert r.stdout.count("Ready") == 2, r.stdout
    root, netns = s.root, [n.netns for n in s.nodes]
    s.stop()
    assert not os.path.exists(root)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in left for n in netns), left
    with open("/proc/self/mounts") as f:
        assert root not in f.read()


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
