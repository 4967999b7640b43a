"""Runtime failures in docker mode are visible and bounded (issue 14, point 4, master side):
a container that exits with an error the master did not ask for is logged at warn level
with its exit code and its last lines (the rest of its output, bounded, at info); after two
instances of a service in a row failed within seconds of their start, further starts are
refused for a delay that doubles, with an error naming the exit code, instead of making a
container per request."""
from conftest import wait_for
from test_master_docker import (DATA, SLEEPER, box, dinspect, dmaster, docker_engine,  # noqa: F401
                                images, labelled, master_id, no_leftovers)
from master_harness import app_yaml, master  # noqa: F401

# The engine orders stdout and stderr lines only by their time: the pause keeps the error last.
BROKEN = ("i=0; while [ $i -lt 30 ]; do echo noise $i; i=$((i+1)); done; sleep 0.3; "
          "echo 'ImportError: No module named nothing' >&2; exit 3")


def test_failed_start_is_logged_at_warn_and_backs_off(dmaster):
    m = dmaster()
    m.app(app_yaml([box("dfail", BROKEN, replica=0, restart={"policy": "no"}),
                    box("dok", SLEEPER, replica=0, restart={"policy": "no"})], DATA))
    m.start()
    for n in (1, 2):
        st, body = m.request("PUT", f"/v1/services/dfail/instances/dfail-{n}/start")
        assert st == 200, body
        wait_for(lambda: f":dfail-{n}) exited (code 3)" in m.log(), 20, what=f"dfail-{n} exit")
        wait_for(lambda: dinspect(f"dfail-{n}") is None, 10, what=f"dfail-{n} removed")
    log = m.log()
    lines = log.splitlines()
    exit_line = next(ln for ln in lines if ":dfail-1) exited (code 3)" in ln)
    assert "level=warning" in exit_line, exit_line
    err_line = next(ln for ln in lines if "ImportError: No module named nothing" in ln
                    and "instance=dfail-1" in ln)
    assert "level=warning" in err_line and "stream=stderr" in err_line, err_line
    # the last 20 lines at warn, the ones before at info, in their order
    def line_of(text):
        return next(i for i, ln in enumerate(lines)
                    if f'msg="{text}"' in ln and "instance=dfail-1" in ln)
    assert "level=info" in lines[line_of("noise 10")]
    assert "level=warning" in lines[line_of("noise 11")]
    assert line_of("noise 0") < line_of("noise 10") < line_of("noise 11") < line_of("noise 29")

    # the third start is refused: no container, and the caller learns why
    st, body = m.request("PUT", "/v1/services/dfail/instances/dfail-3/start")
    assert st != 200, body
    want = "service (dfail): its last 2 instances failed at their start (last exit code 3"
    assert want in body, body
    assert dinspect("dfail-3") is None
    assert "dfail-3" not in labelled(f"baetyl-master={master_id(m.dir)}")
    # another service is not held back
    st, body = m.request("PUT", "/v1/services/dok/instances/dok-1/start")
    assert st == 200, body
    wait_for(lambda: (c := dinspect("dok-1")) and c["State"]["Running"], 15, what="dok-1 running")

    # after the delay, starts are allowed again
    def started():
        st, body = m.request("PUT", "/v1/services/dfail/instances/dfail-4/start")
        return st == 200
    wait_for(started, 20, 0.5, what="a start of dfail allowed again")
    wait_for(lambda: ":dfail-4) exited (code 3)" in m.log(), 20, what="dfail-4 exit")

    # a stop the master asked for is no failure: the sleeper's exit stays at info
    st, body = m.request("PUT", "/v1/services/dok/instances/dok-1/stop")
    assert st == 200, body
    stop_line = next(ln for ln in m.log().splitlines() if ":dok-1) exited (code" in ln)
    assert "level=info" in stop_line, stop_line
    assert m.stop() == 0
