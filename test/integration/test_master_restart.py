"""Supervision (SPEC §6): restart policies, backoff growing in time and capped, its reset
after a long run, retry.max, and the statuses inspect shows."""
import os
import signal
import time


from conftest import wait_for
from master_harness import (app_yaml, CRASHER, master, SLEEPER, starts, svc, vols)  # noqa: F401


def start_times(m, inst):
    return [float(line.split()[-1]) for line in starts(m, inst)]


def test_backoff_grows_and_is_capped(master):
    m = master()
    m.package("crash", CRASHER)
    restart = {"policy": "always", "backoff": {"min": "200ms", "max": "1s", "factor": 2}}
    m.app(app_yaml([svc("c", "crash", restart=restart)], vols("crash")))
    m.start()
    wait_for(lambda: len(starts(m, "c")) >= 6, 20, what="6 starts")
    t = start_times(m, "c")
    gaps = [b - a for a, b in zip(t, t[1:])]
    # 200ms, 400ms, 800ms, then capped at 1s
    want = [0.2, 0.4, 0.8, 1.0, 1.0]
    for g, w in zip(gaps, want):
        assert w * 0.9 <= g <= w + 1.0, f"gaps {gaps}"
    assert gaps[0] < gaps[1] < gaps[2]
    log = m.log()
    assert "instance (c) exited (code 3), restarting in 200ms" in log
    assert "instance (c) exited (code 3), restarting in 400ms" in log
    assert "instance (c) exited (code 3), restarting in 800ms" in log
    assert "restarting in 1s" in log and "restarting in 1.6s" not in log
    # between runs inspect says restarting (the program lives a few ms of each second)
    wait_for(lambda: (m.instance("c", "c") or {}).get("status") == "restarting", 5, what="restarting status")
    m.stop()


def test_backoff_resets_after_a_long_run(master):
    m = master()
    m.package("slow", "#!/bin/sh\nmkdir -p data\necho \"$(date +%s.%N)\" >> data/starts-s\nsleep 0.6\nexit 1\n")
    restart = {"policy": "always", "backoff": {"min": "100ms", "max": "500ms", "factor": 4}}
    m.app(app_yaml([svc("s", "slow", restart=restart)], vols("slow")))
    m.start()
    wait_for(lambda: len(starts(m, "s")) >= 4, 20, what="4 starts")
    log = m.log()
    # every run lasts longer than backoff.max, so every delay is backoff.min again
    assert log.count("instance (s) exited (code 1), restarting in 100ms") >= 3
    assert "restarting in 400ms" not in log
    m.stop()


def test_on_failure_policy(master):
    m = master()
    m.package("crash", CRASHER)
    restart = {"policy": "on-failure", "backoff": {"min": "100ms"}}
    m.app(app_yaml([svc("ok", "crash", restart=restart, env={"EXIT_CODE": "0"}),
                    svc("bad", "crash", restart=restart, env={"EXIT_CODE": "5"})], vols("crash")))
    m.start()
    wait_for(lambda: len(starts(m, "bad")) >= 3, 10, what="bad restarted")
    assert len(starts(m, "ok")) == 1, "a clean exit is not restarted"
    assert "instance (ok) exited (code 0)" in m.log()
    assert m.instance("ok", "ok") is None, "a finished instance leaves inspect"
    assert m.service("ok") is not None
    m.stop()


def test_no_policy(master):
    m = master()
    m.package("crash", CRASHER)
    m.app(app_yaml([svc("once", "crash", restart={"policy": "no", "backoff": {"min": "100ms"}})], vols("crash")))
    m.start()
    wait_for(lambda: "instance (once) exited (code 3)" in m.log(), 10, what="exit logged")
    time.sleep(0.5)
    assert len(starts(m, "once")) == 1
    assert "restarting" not in m.log()
    m.stop()


def crashing_with_retries(master, policy, retries):
    """A started master whose service r crashes at once, with that policy and retry.max."""
    m = master()
    m.package("crash", CRASHER)
    restart = {"policy": policy, "retry": {"max": retries},
               "backoff": {"min": "100ms", "max": "100ms"}}
    m.app(app_yaml([svc("r", "crash", restart=restart)], vols("crash")))
    m.start()
    return m


def test_retry_max(master):
    m = crashing_with_retries(master, "always", 2)
    wait_for(lambda: "retried too many times" in m.log(), 10, what="give up")
    time.sleep(0.5)
    assert len(starts(m, "r")) == 3, "the first run and 2 restarts"
    assert m.instance("r", "r") is None
    m.stop()


def test_status_running_with_start_time(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg")], vols("pkg")))
    m.start()
    m.wait_running("a")
    i = m.instance("a", "a")
    assert i["status"] == "running"
    assert i["start_time"].endswith("Z") and i["start_time"][:2] == "20"
    assert i["process"]["name"] == "prog"
    assert i["mem_stats"]["rss"] > 0 and "used_percent" in i["cpu_stats"]
    m.stop()


def test_default_restart_is_always_with_1s_backoff_doubling(master):
    m = master()
    m.package("crash", CRASHER)
    # exit code 0 and no restart section: the default policy `always` restarts it anyway
    m.app(app_yaml([svc("c", "crash", env={"EXIT_CODE": "0"})], vols("crash")))
    m.start()
    wait_for(lambda: len(starts(m, "c")) >= 3, 15, what="3 starts")
    t = [float(line.split()[-1]) for line in starts(m, "c")]
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert 0.9 <= gaps[0] <= 2.0, f"first delay is backoff.min 1s: {gaps}"
    assert 1.8 <= gaps[1] <= 3.5 and gaps[1] > gaps[0] * 1.4, f"then doubled (factor 2): {gaps}"
    m.stop()


def test_retry_max_counts_restarts_with_on_failure(master):
    m = crashing_with_retries(master, "on-failure", 1)
    wait_for(lambda: len(starts(m, "r")) >= 2, 10, what="one restart")
    time.sleep(1.0)
    assert len(starts(m, "r")) == 2, "the first run and retry.max=1 restart"
    m.stop()


def test_sigterm_during_backoff_is_prompt(master):
    m = master(grace="5s")
    m.package("crash", CRASHER)
    m.app(app_yaml([svc("c", "crash", restart={"backoff": {"min": "30s", "max": "1m"}})], vols("crash")))
    m.start()
    wait_for(lambda: (m.instance("c", "c") or {}).get("status") == "restarting", 10, what="restarting")
    t0 = time.monotonic()
    assert m.stop() == 0
    assert time.monotonic() - t0 < 3, "a stop does not wait for a pending restart"
    assert len(starts(m, "c")) == 1


def test_on_failure_restarts_a_killed_instance(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg", restart={"policy": "on-failure", "backoff": {"min": "100ms"}})], vols("pkg")))
    m.start()
    pid = m.wait_running("a")
    os.kill(pid, signal.SIGKILL)
    new = wait_for(lambda: (lambda p: p if p and p != pid else None)(m.running_pid("a")), 10,
                   what="restart after SIGKILL")
    assert new != pid
    wait_for(lambda: len(starts(m, "a")) == 2, 5, what="second start recorded")
    assert m.stop() == 0
