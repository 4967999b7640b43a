"""The harness itself: nodes join, images reach every node, nothing is left behind."""
import os
import subprocess

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
