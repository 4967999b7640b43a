"""Application OTA (SPEC §9): an unchanged service keeps its process, a changed one
restarts, a bad app is rolled back while the old one keeps serving, ota.log records every
step, and an update interrupted by a crash is finished at boot."""
import json
import os
import shutil
import time

import pytest

from conftest import wait_for
from master_harness import (app_yaml, env_file, marked_pids, master, pkg_svc,  # noqa: F401
                              proc_alive, PY_API, rfc3339_ns, SLEEPER,
                              SORTED_ENV_DUMPER, svc, vols)

V1 = app_yaml([svc("keep", "pkg"), svc("change", "pkg", env={"V": "1"}), svc("gone", "pkg")],
              vols("pkg"), version="v1")
V2 = app_yaml([svc("keep", "pkg"), svc("change", "pkg", env={"V": "2"}), svc("new", "pkg")],
              vols("pkg"), version="v2")


def steps(m, trace):
    return [line["step"] for line in m.ota_log() if line.get("trace") == trace]


@pytest.fixture
def v1(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(V1)
    m.start()
    m.pids = {s: m.wait_running(s) for s in ("keep", "change", "gone")}
    return m


def test_update_keeps_unchanged_and_restarts_changed(v1):
    m = v1
    m.app(V2, rel="var/db/baetyl/ota/v2/application.yml")
    st, body = m.update(m.path("var/db/baetyl/ota/v2"), trace="tr-ok")
    assert (st, body) == (200, "")
    m.wait_ota_step("tr-ok", ["UPDATED", "ROLLEDBACK", "FAILURE"])
    assert steps(m, "tr-ok") == ["UPDATING", "UPDATED"]
    line = m.ota_log()[-1]
    assert line["type"] == "APP" and line["level"] == "info" and line["msg"] == "app is updated"
    assert list(line) == sorted(line), "keys sorted like logrus"
    j = m.inspect()
    assert j["software"]["conf_version"] == "v2" and j["error"] == ""
    assert [s["name"] for s in j["services"]] == ["keep", "change", "new"]
    assert m.running_pid("keep") == m.pids["keep"], "unchanged service keeps its process"
    new_change = m.wait_running("change")
    assert new_change != m.pids["change"] and not proc_alive(m.pids["change"])
    assert not proc_alive(m.pids["gone"])
    m.wait_running("new")
    assert m.read("var/db/baetyl/application.yml") == V2
    assert not os.path.exists(m.path("var/db/baetyl/application.yml.old"))
    assert "app version (v2) committed" in m.log()
    assert "service (gone) stopped" in m.log()


def test_update_to_a_file_path(v1):
    m = v1
    m.app(V2, rel="var/db/baetyl/ota/v2.yml")
    assert m.update("var/db/baetyl/ota/v2.yml", trace="tr-file")[0] == 200  # relative to the work dir
    m.wait_ota_step("tr-file", ["UPDATED", "ROLLEDBACK", "FAILURE"])
    assert steps(m, "tr-file")[-1] == "UPDATED"
    assert m.inspect()["software"]["conf_version"] == "v2"


BAD = {
    "no-package-yml": (app_yaml([svc("keep", "pkg"), svc("change", "pkg", env={"V": "2"}), svc("x", "nopkg")],
                                vols("pkg", "nopkg"), version="v2"),
                       "failed to start app: failed to start service (x)",
                       "lib/baetyl/nopkg/package.yml: No such file or directory"),
    "unknown-volume": (app_yaml([svc("keep", "pkg"), svc("x", "pkg", mounts=[{"name": "nope", "path": "d"}])],
                                vols("pkg"), version="v2"),
                       "failed to start app", "volume (nope) not found"),
    "malformed": ("services:\n  - name: [\n", "failed to reload config", "yaml:"),
    "escaping-volume": (app_yaml([svc("keep", "pkg")], [{"name": "pkg", "path": "../../etc"},
                                                        {"name": "data", "path": "var/db/data"}], version="v2"),
                        "failed to reload config", "escapes the work dir"),
    "duplicate": (app_yaml([svc("keep", "pkg"), svc("keep", "pkg")], vols("pkg"), version="v2"),
                  "failed to reload config", "is duplicated"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_update_rolls_back_while_old_app_serves(v1, case):
    m = v1
    text, what, detail = BAD[case]
    os.makedirs(m.path("var/db/baetyl/nopkg"), exist_ok=True)
    m.app(text, rel="var/db/baetyl/ota/bad/application.yml")
    assert m.update(m.path("var/db/baetyl/ota/bad"), trace="tr-bad")[0] == 200
    m.wait_ota_step("tr-bad", ["ROLLEDBACK", "FAILURE", "UPDATED"])
    assert steps(m, "tr-bad") == ["UPDATING", "ROLLINGBACK", "ROLLEDBACK"]
    rb = [line for line in m.ota_log() if line.get("step") == "ROLLINGBACK"][0]
    assert rb["level"] == "error" and detail in rb["error"]
    j = m.inspect()
    assert j["error"].startswith("failed to update system: " + what), j["error"]
    assert detail in j["error"]
    assert j["software"]["conf_version"] == "v1"
    assert m.read("var/db/baetyl/application.yml") == V1
    assert not os.path.exists(m.path("var/db/baetyl/application.yml.old"))
    # the service identical in both apps never stopped; the old app runs whole again
    assert m.running_pid("keep") == m.pids["keep"]
    for s in ("change", "gone"):
        m.wait_running(s)
    assert m.service("x") is None
    assert not os.path.exists(m.path("var/run/baetyl/services/x"))
    # a later good update clears the error
    m.app(V2, rel="var/db/baetyl/ota/v2/application.yml")
    m.update(m.path("var/db/baetyl/ota/v2"), trace="tr-good")
    m.wait_ota_step("tr-good", ["UPDATED", "ROLLEDBACK", "FAILURE"])
    assert m.inspect()["error"] == ""


def test_update_without_application_yml(v1):
    m = v1
    os.makedirs(m.path("var/db/baetyl/ota/empty"))
    m.update(m.path("var/db/baetyl/ota/empty"), trace="tr-missing")
    m.wait_ota_step("tr-missing", ["ROLLEDBACK", "FAILURE", "UPDATED"])
    assert steps(m, "tr-missing") == ["UPDATING", "ROLLINGBACK", "ROLLEDBACK"]
    err = m.inspect()["error"]
    assert err.startswith("failed to update system: failed to reload config: open ")
    assert "ota/empty/application.yml: No such file or directory" in err
    assert m.read("var/db/baetyl/application.yml") == V1
    assert all(m.running_pid(s) == p for s, p in m.pids.items())


def test_first_update_without_previous_app(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.start()
    m.app(V1, rel="var/db/baetyl/ota/v1/application.yml")
    m.update(m.path("var/db/baetyl/ota/v1"), trace="tr-first")
    m.wait_ota_step("tr-first", ["UPDATED", "ROLLEDBACK", "FAILURE"])
    assert steps(m, "tr-first")[-1] == "UPDATED"
    m.wait_running("gone")
    assert m.inspect()["software"]["conf_version"] == "v1"


def test_interrupted_update_is_finished_at_boot(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(V2)
    m.app(V1, rel="var/db/baetyl/application.yml.old")
    m.write("var/db/baetyl/ota.log", json.dumps({"step": "UPDATING", "trace": "tr-crash", "type": "APP"}) + "\n")
    m.start()
    m.wait_ota_step("tr-crash", ["UPDATED"])
    assert m.inspect()["software"]["conf_version"] == "v2"
    assert not os.path.exists(m.path("var/db/baetyl/application.yml.old"))
    m.wait_running("new")


def test_interrupted_bad_update_rolls_back_at_boot(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app("services: [\n")
    m.app(V1, rel="var/db/baetyl/application.yml.old")
    m.start()
    wait_for(lambda: any(line["step"] == "ROLLEDBACK" for line in m.ota_log()), what="rolled back")
    j = m.inspect()
    assert j["software"]["conf_version"] == "v1"
    assert j["error"].startswith("failed to update system: failed to reload config: yaml:")
    assert m.read("var/db/baetyl/application.yml") == V1
    m.wait_running("keep")


def test_backup_without_application_at_boot(master):
    """A crash between moving application.yml away and copying the new one in."""
    m = master()
    m.package("pkg", SLEEPER)
    m.app(V1, rel="var/db/baetyl/application.yml.old")
    m.start()
    m.wait_running("keep")
    j = m.inspect()
    assert j["software"]["conf_version"] == "v1"
    assert "application.yml: No such file or directory" in j["error"]


def test_sigterm_during_updates_leaves_nothing(v1):
    m = v1
    m.app(V2, rel="var/db/baetyl/ota/v2/application.yml")
    m.update(m.path("var/db/baetyl/ota/v2"), trace="tr-term")
    assert m.stop() == 0
    assert marked_pids(m.marker) == []


# Like baetyl-function-manager: starts an instance of another service through the API, and
# stops it through the API when it is itself stopped.
MANAGER = PY_API + """
def on_term(sig, frame):
    t = time.time()
    st, _ = call("PUT", "/v1/services/rt/instances/rt.x/stop")
    save("mgr-stop-" + env["V"], {"status": st, "took": time.time() - t})
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
save("mgr-start-" + env["V"], {"status": call("PUT", "/v1/services/rt/instances/rt.x/start", {})[0]})
while True:
    time.sleep(0.2)
"""


def test_service_stopped_by_an_update_can_still_use_the_api(master):
    m = master(grace="5s")
    m.package("pkg", SLEEPER)
    m.package("mgr", MANAGER)
    # mgr acts on rt's instances: its config names rt as a function service (issue 12.12)
    m.write("var/db/baetyl/mgr-conf/service.yml", '{"functions": [{"name": "f", "service": "rt"}]}')
    mounts = [{"name": "mgr", "path": "lib/baetyl/mgr", "readonly": True},
              {"name": "data", "path": "data"}, {"name": "mgr-conf", "path": "etc/baetyl"}]
    conf_vol = [{"name": "mgr-conf", "path": "var/db/baetyl/mgr-conf"}]
    apps = {v: app_yaml([svc("rt", "pkg", replica=0), svc("mgr", "mgr", env={"V": v}, mounts=mounts)],
                        vols("pkg", "mgr") + conf_vol, version=v) for v in ("1", "2")}
    m.app(apps["1"])
    m.start()
    wait_for(lambda: m.read("var/db/data/mgr-start-1"), what="manager started its instance")
    assert json.loads(m.read("var/db/data/mgr-start-1"))["status"] == 200
    first = m.wait_running("rt", "rt.x")
    m.app(apps["2"], rel="var/db/baetyl/ota/2/application.yml")
    m.update(m.path("var/db/baetyl/ota/2"), trace="tr-mgr")
    m.wait_ota_step("tr-mgr", ["UPDATED", "ROLLEDBACK", "FAILURE"])
    # the old manager's stop call was served during the update, not after a grace period
    stop = json.loads(wait_for(lambda: m.read("var/db/data/mgr-stop-1"), what="manager stop call"))
    assert stop["status"] == 200 and stop["took"] < 2.0, stop
    assert not proc_alive(first)
    wait_for(lambda: m.read("var/db/data/mgr-start-2"), what="new manager")
    assert m.wait_running("rt", "rt.x") != first
    assert "did not stop within grace" not in m.log()


# ---- where an update may come from (issue 12.4, SPEC §19) -----------------------------------

@pytest.mark.parametrize("target,why", [
    ("/etc/shadow", "resolves outside the work dir"),
    ("/etc", "resolves outside the work dir"),
    ("link-out", "resolves outside the work dir"),
    ("var/db/baetyl/ota/linkdir", "resolves outside the work dir"),
    ("/dev/null", "resolves outside the work dir"),
    ("var/db/baetyl/ota/fifo", "want a regular file or a directory"),
])
def test_update_from_outside_the_work_dir_is_refused(v1, target, why):
    m = v1
    outside = m.dir + "-outside"
    os.makedirs(outside, exist_ok=True)
    try:
        with open(os.path.join(outside, "application.yml"), "w") as f:
            f.write("services: []\n")
        os.symlink(os.path.join(outside, "application.yml"), m.path("link-out"))
        os.makedirs(m.path("var/db/baetyl/ota/linkdir"))
        os.symlink(os.path.join(outside, "application.yml"),
                   m.path("var/db/baetyl/ota/linkdir/application.yml"))
        os.mkfifo(m.path("var/db/baetyl/ota/fifo"))
        st, body = m.update(target, trace="tr-evil")
        assert st == 400 and why in body, (st, body)
    finally:
        shutil.rmtree(outside, ignore_errors=True)
    assert steps(m, "tr-evil") == []
    assert m.read("var/db/baetyl/application.yml") == V1
    assert all(m.running_pid(s) == p for s, p in m.pids.items()), "nothing was stopped"
    assert "UPDATED" not in [line["step"] for line in m.ota_log()]


def test_update_file_of_another_user_is_refused(v1):
    m = v1
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file away")
    p = m.app(V2, rel="var/db/baetyl/ota/other.yml")
    os.chown(p, 65534, 65534)
    st, body = m.update(p, trace="tr-other")
    assert st == 400 and "not owned by the master's user" in body, (st, body)
    assert m.read("var/db/baetyl/application.yml") == V1


def test_updated_application_yml_is_private(v1):
    m = v1
    m.write("var/db/baetyl/ota/v2/application.yml", V2, mode=0o644)
    assert m.update(m.path("var/db/baetyl/ota/v2"), trace="tr-mode")[0] == 200
    m.wait_ota_step("tr-mode", ["UPDATED", "ROLLEDBACK", "FAILURE"])
    assert steps(m, "tr-mode") == ["UPDATING", "UPDATED"]
    assert os.stat(m.path("var/db/baetyl/application.yml")).st_mode & 0o777 == 0o600


def log_steps(lines, trace):
    return [ln["step"] for ln in lines if ln.get("trace") == trace]


def test_ota_log_fields_custom_paths_and_json_logger(master):
    m = master(conf_extra="  format: json\notalog:\n  path: var/log/custom/ota.jsonl\n")
    m.package("pkg", SLEEPER)
    m.app(app_yaml([pkg_svc("a")], vols("pkg"), version="v1"))
    m.app(app_yaml([pkg_svc("a"), pkg_svc("b")], vols("pkg"), version="v2"), rel="var/db/baetyl/ota/v2.yml")
    m.app("services: [\n", rel="var/db/baetyl/ota/bad.yml")
    m.start()

    def ota():
        text = m.read("var/log/custom/ota.jsonl", "")
        return [json.loads(ln) for ln in text.splitlines() if ln.strip()]

    assert m.update(m.path("var/db/baetyl/ota/v2.yml"), trace="tr-ok")[0] == 200
    wait_for(lambda: "UPDATED" in log_steps(ota(), "tr-ok"), what="UPDATED in the custom ota log")
    assert m.update(m.path("var/db/baetyl/ota/bad.yml"), trace="tr-bad")[0] == 200
    wait_for(lambda: "ROLLEDBACK" in log_steps(ota(), "tr-bad"), what="ROLLEDBACK in the custom ota log")
    assert not os.path.exists(m.path("var/db/baetyl/ota.log")), "otalog.path moves ota.log"
    lines = ota()
    assert log_steps(lines, "tr-ok") == ["UPDATING", "UPDATED"]
    assert log_steps(lines, "tr-bad") == ["UPDATING", "ROLLINGBACK", "ROLLEDBACK"]
    base = {"level", "msg", "step", "time", "trace", "type"}
    for ln in lines:
        assert ln["type"] == "APP"
        rfc3339_ns(ln["time"])
        assert abs(rfc3339_ns(ln["time"]) / 1e9 - time.time()) < 120
        if ln["step"] == "ROLLINGBACK":
            assert set(ln) == base | {"error"} and ln["level"] == "error" and "yaml" in ln["error"], ln
        else:
            assert set(ln) == base, ln
    upd = [ln for ln in lines if ln["step"] == "UPDATING"][0]
    assert upd["level"] == "info" and upd["msg"] == "app is updating" and upd["trace"] == "tr-ok"
    # logger.format json: every line of the master log is a JSON object with level and msg
    log = [ln for ln in m.log().splitlines() if ln.strip()]
    assert log
    for ln in log:
        o = json.loads(ln)
        assert "level" in o and "msg" in o and "time" in o, o
    assert m.stop() == 0


def test_update_restarts_services_whose_volume_path_changed(master):
    m = master()
    m.package("pkg", SLEEPER)
    only_pkg = [{"name": "pkg", "path": "lib/baetyl/pkg", "readonly": True}]
    with_cfg = [{"name": "dump", "path": "lib/baetyl/dump", "readonly": True}, {"name": "cfg", "path": "cfg"}]

    def app(data_path, version, extra=()):
        return app_yaml([pkg_svc("uses-data"), pkg_svc("no-data", mounts=only_pkg),
                         svc("cfg-user", "dump", mounts=with_cfg),
                         *extra],
                        vols("pkg", "dump", data=data_path) + [{"name": "cfg", "path": "var/db/cfg"}],
                        version=version)

    m.package("dump", SORTED_ENV_DUMPER)
    m.app(app("var/db/data", "v1"))
    m.start()
    before = {s: m.wait_running(s) for s in ("uses-data", "no-data", "cfg-user")}
    # cfg-user dumps its env into its own service dir (it mounts no data volume)
    dump = "var/run/baetyl/services/cfg-user/data/env-cfg-user"
    text = wait_for(lambda: m.read(dump), what="cfg-user env")
    token = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)["BAETYL_SERVICE_TOKEN"]
    v2 = app("var/db/data2", "v2", extra=[pkg_svc("zz", mounts=only_pkg), pkg_svc("aa", mounts=only_pkg)])
    m.app(v2, rel="var/db/baetyl/ota/v2/application.yml")
    m.update(m.path("var/db/baetyl/ota/v2"), trace="tr-vol")
    assert m.wait_ota_step("tr-vol", ["UPDATED", "ROLLEDBACK", "FAILURE"])["step"] == "UPDATED", m.ota_log()
    after = m.wait_running("uses-data")
    assert after != before["uses-data"] and not proc_alive(before["uses-data"]), \
        "same config but another volume path: restarted"
    assert m.running_pid("no-data") == before["no-data"], "unchanged service untouched"
    assert m.running_pid("cfg-user") == before["cfg-user"], "unchanged service untouched"
    assert m.request("GET", "/v1/system/inspect", user="cfg-user", password=token)[0] == 200, \
        "an untouched service keeps its account"
    link = m.path("var/run/baetyl/services/uses-data/data")
    assert os.path.realpath(link) == os.path.realpath(m.path("var/db/data2"))
    m.wait_running("zz")
    m.wait_running("aa")
    j = m.inspect()
    # (SPEC §10 does not order the services list after an update: compared as a set)
    assert sorted(s["name"] for s in j["services"]) == ["aa", "cfg-user", "no-data", "uses-data", "zz"]
    zz, aa = (rfc3339_ns(m.instance(s, s)["start_time"]) for s in ("zz", "aa"))
    assert zz < aa, "new services start in list order"
    assert m.stop() == 0


def test_failed_rollback_is_a_failure(master):
    """The new app fails to start and the old app cannot start again either."""
    m = master()
    m.package("pkg", SLEEPER)
    m.package("oldpkg", SLEEPER)
    v1 = app_yaml([pkg_svc("keep"), svc("change", "oldpkg")], vols("pkg", "oldpkg"), version="v1")
    v2 = app_yaml([pkg_svc("keep"), svc("change", "pkg"), svc("x", "nopkg")], vols("pkg", "oldpkg", "nopkg"),
                  version="v2")
    m.app(v1)
    m.start()
    keep = m.wait_running("keep")
    m.wait_running("change")
    os.makedirs(m.path("var/db/baetyl/nopkg"))
    os.unlink(m.path("var/db/baetyl/oldpkg/package.yml"))  # the old package is gone meanwhile
    m.app(v2, rel="var/db/baetyl/ota/v2/application.yml")
    m.update(m.path("var/db/baetyl/ota/v2"), trace="tr-fail")
    m.wait_ota_step("tr-fail", ["FAILURE", "ROLLEDBACK", "UPDATED"])
    assert log_steps(m.ota_log(), "tr-fail") == ["UPDATING", "ROLLINGBACK", "FAILURE"], m.ota_log()
    # ota.log's FAILURE may be written a moment before inspect's error is set
    err = wait_for(lambda: m.inspect()["error"], 10, what="inspect's error after the failure")
    assert err.startswith("failed to update system: failed to restart old app: "), err
    assert "failed to roll back: " in err, err
    assert "nopkg" in err and "oldpkg" in err, "both failures are named"
    assert m.running_pid("keep") == keep, "the identical service kept running"
    assert m.proc.poll() is None, "the master itself keeps serving"
    assert m.stop() == 0


def test_update_accepts_a_file_with_another_name_and_drops_removed_accounts(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.package("dump", SORTED_ENV_DUMPER)
    m.app(app_yaml([svc("a", "dump")], vols("pkg", "dump"), version="v1"))
    m.app(app_yaml([pkg_svc("b")], vols("pkg"), version="v2"), rel="var/db/baetyl/ota/new-app.yml")
    m.start()
    token = wait_for(lambda: env_file(m, "a").get("BAETYL_SERVICE_TOKEN"), what="token of a")
    assert m.request("GET", "/v1/system/inspect", user="a", password=token)[0] == 200
    m.update(m.path("var/db/baetyl/ota/new-app.yml"), trace="tr-named")
    assert m.wait_ota_step("tr-named", ["UPDATED", "ROLLEDBACK", "FAILURE"])["step"] == "UPDATED"
    assert m.read("var/db/baetyl/application.yml") == m.read("var/db/baetyl/ota/new-app.yml")
    assert m.inspect()["software"]["conf_version"] == "v2"
    m.wait_running("b")
    assert m.service("a") is None
    assert not os.path.exists(m.path("var/run/baetyl/services/a")), "a removed service's dir is removed"
    assert m.request("GET", "/v1/system/inspect", user="a", password=token)[0] == 401, \
        "the account of a removed service is gone"
    assert m.stop() == 0


STUBBORN = """#!/bin/sh
mkdir -p data
echo "$$ $(date +%s.%N)" >> data/starts-$BAETYL_SERVICE_INSTANCE_NAME
trap '' TERM
while :; do sleep 0.1; done
"""


def test_update_answers_at_once_and_keeps_unchanged_dynamic_instances(master):
    m = master(grace="2s")
    m.package("stub", STUBBORN)
    m.package("pkg", SLEEPER)
    apps = {v: app_yaml([svc("stub", "stub", env={"V": v}), svc("rt", "pkg", replica=0)], vols("stub", "pkg"),
                        version=v) for v in ("v1", "v2")}
    m.app(apps["v1"])
    m.app(apps["v2"], rel="var/db/baetyl/ota/v2/application.yml")
    m.start()
    m.wait_running("stub")
    assert m.request("PUT", "/v1/services/rt/instances/rt.x/start", {"BAETYL_SERVICE_INSTANCE_ADDRESS": "x"})[0] == 200
    dyn = m.wait_running("rt", "rt.x")
    t0 = time.monotonic()
    st, body = m.update(m.path("var/db/baetyl/ota/v2"), trace="tr-slow")
    took = time.monotonic() - t0
    assert (st, body) == (200, ""), body
    assert took < 1.0, f"the update runs in the background: PUT took {took:.1f}s"
    assert m.wait_ota_step("tr-slow", ["UPDATED", "ROLLEDBACK", "FAILURE"])["step"] == "UPDATED"
    assert time.monotonic() - t0 >= 1.8, "the stubborn instance had its grace period"
    assert m.running_pid("rt", "rt.x") == dyn, "a dynamic instance of an unchanged service keeps running"
    assert m.stop() == 0


def test_interrupted_update_whose_start_fails_rolls_back_at_boot(master):
    m = master()
    m.package("pkg", SLEEPER)
    os.makedirs(m.path("var/db/baetyl/nopkg"))
    v1 = app_yaml([pkg_svc("keep")], vols("pkg"), version="v1")
    v2 = app_yaml([pkg_svc("keep"), svc("x", "nopkg")], vols("pkg", "nopkg"), version="v2")
    m.app(v2)
    m.app(v1, rel="var/db/baetyl/application.yml.old")
    m.write("var/db/baetyl/ota.log", json.dumps({"level": "info", "msg": "app is updating", "step": "UPDATING",
                                                 "time": "2020-01-01T00:00:00Z", "trace": "tr-boot",
                                                 "type": "APP"}) + "\n")
    m.start()
    m.wait_ota_step("tr-boot", ["ROLLEDBACK", "FAILURE", "UPDATED"])
    st = log_steps(m.ota_log(), "tr-boot")
    assert st[-2:] == ["ROLLINGBACK", "ROLLEDBACK"], st
    j = m.inspect()
    assert j["error"].startswith("failed to update system: failed to start app: "), j["error"]
    assert j["software"]["conf_version"] == "v1"
    assert m.read("var/db/baetyl/application.yml") == v1
    assert not os.path.exists(m.path("var/db/baetyl/application.yml.old"))
    m.wait_running("keep")
    assert m.service("x") is None
    assert m.stop() == 0
