"""Fixtures of the swarm engine's tests (see swarm_harness.py): a session's 2-node swarm with
the main example's images, and a factory for swarms of other shapes."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from swarm_harness import Swarm, why_not  # noqa: E402

SRC = os.environ.get("BAETYL_SRC", os.path.abspath(os.path.join(HERE, "..", "..")))
BUILD = os.environ.get("BAETYL_BUILD", os.path.join(SRC, "build"))
IMAGES = ("baetyl-hub", "baetyl-function-manager", "baetyl-function-python",
          "baetyl-function-sql")


@pytest.fixture(scope="session")
def swarm_ok():
    why = why_not()
    if why:
        pytest.skip(why)


@pytest.fixture
def make_swarm(swarm_ok):
    """make(n, managers=1) -> a started Swarm, torn down after the test."""
    made = []

    def make(n, managers=1):
        s = Swarm(n, managers)
        made.append(s)
        s.start()
        return s

    yield make
    for s in made:
        s.stop()
    for s in made:
        assert s.leftovers() == [], "the swarm's teardown left these behind"


@pytest.fixture(scope="module")
def swarm2(swarm_ok):
    """Two nodes (node 1 the manager, labelled line=1; node 2 a worker, line=2) with the main
    example's images on both."""
    s = Swarm(2)
    try:
        s.start()
        s.label(s.nodes[0], "line", "1")
        s.label(s.nodes[1], "line", "2")
        s.load_images(BUILD, SRC, IMAGES)
        yield s
    finally:
        s.stop()
    assert s.leftovers() == [], "the swarm's teardown left these behind"
