"""Two masters on one Docker engine (SPEC §19 on §5): each labels its containers with its
own id (baetyl-master=<sha256 of its real work dir>, 12 hex digits) and recovers and cleans
only those. Both run on the run's own engine for the test's whole length while the other
starts, stops, restarts and is killed."""
from conftest import wait_for
from test_master_docker import (DATA, SLEEPER, box, container_of, dinspect, dmaster,  # noqa: F401
                                docker_engine, images, labelled, master_id, no_leftovers)
from master_harness import app_yaml, master  # noqa: F401


def ids(m, *svcs):
    """Container id of each service's (single) instance, once all run."""
    def all_running():
        got = {s: container_of(m, s) for s in svcs}
        return got if all(got.values()) else None
    return {s: c["id"] for s, c in wait_for(all_running, 20, 0.2, what=f"{svcs} running").items()}


def running(cid):
    c = dinspect(cid)
    return bool(c and c["State"]["Running"])


def test_two_masters_keep_their_containers(dmaster):
    a, b = dmaster(), dmaster()
    ida, idb = master_id(a.dir), master_id(b.dir)
    assert ida != idb
    a.app(app_yaml([box("ma-one", SLEEPER), box("ma-two", SLEEPER)], DATA))
    b.app(app_yaml([box("mb-one", SLEEPER)], DATA))
    a.start()
    first = ids(a, "ma-one", "ma-two")
    assert labelled(f"baetyl-master={ida}") == ["ma-one", "ma-two"]

    # B starts (its recovery runs), stops, starts again: A's containers are the same ones.
    b.start()
    theirs = ids(b, "mb-one")
    assert labelled(f"baetyl-master={idb}") == ["mb-one"]
    assert b.stop() == 0
    assert dinspect(theirs["mb-one"]) is None and labelled(f"baetyl-master={idb}") == []
    b.start_again()
    theirs = ids(b, "mb-one")
    assert ids(a, "ma-one", "ma-two") == first and all(running(c) for c in first.values())

    # A is killed: its containers keep running and it takes them over when it comes back
    # (issue 15.2); B's keeps running through all of it.
    a.kill9()
    assert all(running(c) for c in first.values())
    a.start_again()
    assert ids(a, "ma-one", "ma-two") == first and all(running(c) for c in first.values())
    assert ids(b, "mb-one") == theirs and running(theirs["mb-one"])
    log_a = a.log()
    assert "mb-one" not in log_a and "not managed by baetyl" not in log_a

    # A service name that B already uses: A's start of it fails, naming the owner; B's
    # container is untouched.
    a.app(app_yaml([box("ma-one", SLEEPER), box("mb-one", SLEEPER)], DATA))
    assert a.stop() == 0
    assert a.start(expect_fail=True) == 1
    out = a.read("master.out")
    assert (f"container name (mb-one) is taken by a container of another baetyl master "
            f"(baetyl-master={idb}; this master is {ida})") in out, out
    assert running(theirs["mb-one"]) and labelled(f"baetyl-master={ida}") == []

    assert b.stop() == 0
    assert labelled() == []
    for m in (a, b):
        log = m.log()
        assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]
