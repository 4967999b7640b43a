"""Application OTA (SPEC §9): an unchanged service keeps its process, a changed one
restarts, a bad app is rolled back while the old one keeps serving, ota.log records every
step, and an update interrupted by a crash is finished at boot."""
import json
import os
import shutil

import pytest

from conftest import wait_for
from test_master_util import PY_API, SLEEPER, app_yaml, marked_pids, master, proc_alive, svc, vols  # noqa: F401

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
