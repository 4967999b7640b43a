"""The master API (SPEC §7, §8): every route and its errors, tokens, dynamic instances
(which get no token), report merging, free ports, tcp and unix listeners."""
import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from conftest import wait_for
from master_harness import (app_yaml, env_file, marked_pids, master, pkg_svc,  # noqa: F401
                              proc_alive, PY_API, SLEEPER, SORTED_ENV_DUMPER, svc,
                              UnixHTTPConnection, vols)

# Calls the API from inside an instance with the account its environment gives it, and
# writes what happened to data/api-<instance>.json.
API_CALLER = PY_API + """
out = {"inspect": call("GET", "/v1/system/inspect")[0],
       "report": call("PUT", "/v1/services/%s/instances/%s/report" % (svc, inst), {"hello": inst})[0],
       "env": {k: v for k, v in env.items() if k.startswith(("BAETYL_", "OPENEDGE_")) or k == "EXTRA"}}
save("api-%s.json" % inst, out)
while True:
    time.sleep(0.2)
"""


def api_result(m, inst):
    text = m.read(f"var/db/data/api-{inst}.json")
    return json.loads(text) if text else None


@pytest.fixture
def running(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.package("caller", API_CALLER)
    m.app(app_yaml([svc("a", "pkg"), svc("api", "caller"), svc("rt", "caller", replica=0)],
                   vols("pkg", "caller")))
    m.start()
    m.wait_running("a")
    return m


def test_unknown_routes_are_404(running):
    m = running
    for method, path in [("GET", "/v1/nothing"), ("GET", "/"), ("PUT", "/v1/system/inspect"),
                         ("GET", "/v1/system/update"), ("PUT", "/v1/services/a/instances/a/restart"),
                         ("PUT", "/v1/services//instances/a/start"), ("PUT", "/v1/services/a/instances//stop"),
                         ("DELETE", "/v1/services/a/instances/a/stop"), ("GET", "/v1/system/inspect/x")]:
        st, body = m.request(method, path)
        assert st == 404, (method, path, st, body)


def test_bad_accounts_are_401(running):
    m = running
    for user, password in [(False, None), ("a", "wrong"), ("nosuch", "x"), ("baetyl.cli", "x"), ("", "")]:
        st, body = m.request("GET", "/v1/system/inspect", user=user, password=password)
        assert (st, body) == (401, "account unauthorized\n"), (user, st, body)
    wait_for(lambda: api_result(m, "api"), what="api caller")
    token = api_result(m, "api")["env"]["BAETYL_SERVICE_TOKEN"]
    assert m.request("GET", "/v1/system/inspect", user="api", password=token)[0] == 200
    # a token belongs to its service only
    assert m.request("GET", "/v1/system/inspect", user="a", password=token)[0] == 401
    # a refused request's body is read and dropped, whatever its size
    st, body = m.request("PUT", "/v1/services/a/instances/a/report", "x" * (10 << 20), user="a", password="no")
    assert st == 401


def test_bad_bodies_are_400_or_413_and_harmless(running):
    m = running
    pid = m.running_pid("a")
    cases = [
        ("PUT", "/v1/system/update", "{not json", "request body invalid"),
        ("PUT", "/v1/system/update", "[1,2]", "a JSON object is expected"),
        ("PUT", "/v1/system/update", "", "request body invalid"),
        ("PUT", "/v1/system/update", '{"type":"APP"}', "path: required"),
        ("PUT", "/v1/system/update", '{"type":"XYZ","path":"x"}', "type (XYZ) not supported: want APP or MST"),
        ("PUT", "/v1/services/a/instances/a.x/start", '{"K": 1}', "value must be a string"),
        ("PUT", "/v1/services/a/instances/a.x/start", '{"A=B": "1"}', "invalid name"),
        ("PUT", "/v1/services/a/instances/a.x/start", "nope", "request body invalid"),
        ("PUT", "/v1/services/a/instances/..x/start", "{}", "instance name (..x) invalid"),
        ("PUT", "/v1/services/a/instances/a/report", "{", "request body invalid"),
        ("PUT", "/v1/services/a/instances/a/report", '"text"', "a JSON object is expected"),
        ("PUT", "/v1/services/a/instances/a/report", "[" * 40 + "]" * 40, "request body invalid"),
        ("PUT", "/v1/services/a/instances/a/report", '{"k":' + "[" * 40 + "]" * 40 + "}", "too deeply nested"),
        ("PUT", "/v1/services/a/instances/zz/report", "{}", "instance (zz) of service (a) not found"),
        ("PUT", "/v1/services/ghost/instances/g/start", "{}", "service (ghost) not found"),
        ("PUT", "/v1/services/ghost/instances/g/stop", None, "service (ghost) not found"),
        ("PUT", "/v1/services/ghost/instances/g/report", "{}", "service (ghost) not found"),
    ]
    for method, path, body, want in cases:
        st, text = m.request(method, path, body)
        assert st == 400 and want in text, (path, body, st, text)
    big = '{"k":"' + "x" * (10 << 20) + '"}'
    st, text = m.request("PUT", "/v1/services/a/instances/a/report", big)
    assert st == 413 and "too large" in text
    st, text = m.request("PUT", "/v1/system/update", big)
    assert st == 413
    # the running app is unharmed and the server still answers
    assert m.running_pid("a") == pid
    assert m.inspect()["error"] == ""


def test_ports_available_gives_a_bindable_port(running):
    st, body = running.request("GET", "/v1/ports/available")
    assert st == 200
    port = json.loads(body)["port"]
    assert isinstance(port, str) and 0 < int(port) < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", int(port)))


def test_service_token_and_dynamic_instance_without_token(running):
    m = running
    r = wait_for(lambda: api_result(m, "api"), what="the api service's instance")
    assert r["inspect"] == 200 and r["report"] == 200, "an application instance may use the API"
    assert m.instance("api", "api")["hello"] == "api"

    body = {"BAETYL_SERVICE_INSTANCE_ADDRESS": "127.0.0.1:5555", "EXTRA": "yes",
            "BAETYL_SERVICE_TOKEN": "forged", "BAETYL_SERVICE_NAME": "forged"}
    st, text = m.request("PUT", "/v1/services/rt/instances/rt.f.1/start", body)
    assert st == 200, text
    r = wait_for(lambda: api_result(m, "rt.f.1"), what="the dynamic instance")
    env = r["env"]
    assert "BAETYL_SERVICE_TOKEN" not in env and "OPENEDGE_SERVICE_TOKEN" not in env
    assert env["BAETYL_SERVICE_NAME"] == "rt" and env["BAETYL_SERVICE_INSTANCE_NAME"] == "rt.f.1"
    assert env["BAETYL_SERVICE_INSTANCE_ADDRESS"] == "127.0.0.1:5555"
    assert env["OPENEDGE_SERVICE_INSTANCE_ADDRESS"] == "127.0.0.1:5555"
    assert env["EXTRA"] == "yes"
    assert r["inspect"] == 401 and r["report"] == 401, "a dynamic instance cannot call the API"
    pid1 = m.wait_running("rt", "rt.f.1")

    # the same name again: the old one is stopped first
    os.unlink(m.path("var/db/data/api-rt.f.1.json"))
    assert m.request("PUT", "/v1/services/rt/instances/rt.f.1/start", {})[0] == 200
    wait_for(lambda: api_result(m, "rt.f.1"), what="restarted dynamic instance")
    pid2 = m.wait_running("rt", "rt.f.1")
    assert pid2 != pid1 and not proc_alive(pid1)
    assert "EXTRA" not in api_result(m, "rt.f.1")["env"]

    # an empty body is allowed; a replica instance can be replaced by a dynamic one too
    assert m.request("PUT", "/v1/services/rt/instances/rt.f.2/start")[0] == 200
    m.wait_running("rt", "rt.f.2")
    names = [i["name"] for i in m.service("rt")["instances"]]
    assert sorted(names) == ["rt.f.1", "rt.f.2"]

    assert m.request("PUT", "/v1/services/rt/instances/rt.f.1/stop")[0] == 200
    assert not proc_alive(pid2)
    assert [i["name"] for i in m.service("rt")["instances"]] == ["rt.f.2"]
    assert m.request("PUT", "/v1/services/rt/instances/rt.f.1/stop")[0] == 200, "stopping twice is fine"
    assert m.request("PUT", "/v1/services/rt/instances/never/stop")[0] == 200


def test_report_merges_top_level_keys(running):
    m = running
    path = "/v1/services/a/instances/a/report"
    assert m.request("PUT", path, {"info": {"company": "baidu", "scope": "ai"},
                                   "stats": {"msg_count": 124, "infer_count": 120}})[0] == 200
    assert m.request("PUT", path, {"stats": {"msg_count": 344, "infer_count": 320},
                                   "status": "hacked", "process": "hacked"})[0] == 200
    i = m.instance("a", "a")
    assert i["info"] == {"company": "baidu", "scope": "ai"}
    assert i["stats"] == {"msg_count": 344, "infer_count": 320}
    assert i["status"] == "running" and isinstance(i["process"], dict), "the master's own keys win"


def test_inspect_document(running):
    j = running.inspect()
    assert j["error"] == "" and j["time"].endswith("Z")
    sw = j["software"]
    assert sw["os"] == "linux" and sw["mode"] == "native" and sw["pwd"] == running.dir
    assert sw["conf_version"] == "v1" and sw["bin_version"] and sw["git_revision"]
    hw = j["hardware"]
    assert hw["host_stats"]["hostname"] and hw["host_stats"]["kernel_version"]
    assert hw["mem_stats"]["total"] > 0 and 0 <= hw["mem_stats"]["used_percent"] <= 100
    assert hw["cpu_stats"]["cores"] >= 1 and 0 <= hw["cpu_stats"]["used_percent"] <= 100
    assert hw["disk_stats"]["total"] > 0 and hw["disk_stats"]["path"] == running.dir
    names = [i["name"] for i in hw["net_stats"]["interfaces"]]
    assert "lo" in names
    lo = [i for i in hw["net_stats"]["interfaces"] if i["name"] == "lo"][0]
    assert any(a["address"].startswith("127.0.0.1/") for a in lo["addrs"])
    assert [s["name"] for s in j["services"]] == ["a", "api", "rt"]
    assert {"name": "pkg", "path": "var/db/baetyl/pkg"} in j["volumes"]


def test_tcp_listener(master):
    m = master(api="tcp")
    m.package("caller", API_CALLER)
    m.app(app_yaml([svc("api", "caller")], vols("caller")))
    m.start()
    r = wait_for(lambda: api_result(m, "api"), what="caller over tcp")
    assert r["inspect"] == 200
    assert r["env"]["BAETYL_MASTER_API_ADDRESS"] == f"tcp://127.0.0.1:{m.port}"
    assert "BAETYL_MASTER_API_SOCKET" not in r["env"]
    assert not os.path.exists(m.path("var/run/baetyl/services/api/var/run/baetyl.sock"))
    assert m.stop() == 0


def test_concurrent_instance_calls_during_updates(master):
    """Starts, stops, reports and inspects from several threads while updates replace a
    service: every answer is 200 or a clear 400, and nothing is left behind."""
    import threading
    import time
    m = master(grace="1s")
    m.package("pkg", SLEEPER)
    apps = [app_yaml([svc("rt", "pkg", replica=0), svc("flip", "pkg", env={"V": str(v)})], vols("pkg"),
                     version=f"v{v}") for v in range(3)]
    for v, text in enumerate(apps):
        m.app(text, rel=f"var/db/baetyl/ota/{v}/application.yml")
    m.app(apps[0])
    m.start()
    bad = []
    stop = time.monotonic() + 3

    def worker(k):
        n = 0
        while time.monotonic() < stop:
            name = f"rt.w{k}.{n % 3}"
            for method, path, body in [("PUT", f"/v1/services/rt/instances/{name}/start", {"N": str(n)}),
                                       ("PUT", f"/v1/services/rt/instances/{name}/report", {"n": n}),
                                       ("GET", "/v1/system/inspect", None),
                                       ("PUT", f"/v1/services/rt/instances/{name}/stop", None)]:
                st, text = m.request(method, path, body)
                if st != 200 and not (st == 400 and "not found" in text):
                    bad.append((method, path, st, text))
            n += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for v in (1, 2):
        m.update(m.path(f"var/db/baetyl/ota/{v}"), trace=f"tr-{v}")
        m.wait_ota_step(f"tr-{v}", ["UPDATED", "ROLLEDBACK", "FAILURE"])
    for t in threads:
        t.join()
    assert not bad, bad[:5]
    assert m.inspect()["software"]["conf_version"] == "v2"
    assert m.stop() == 0
    assert marked_pids(m.marker) == []


# ---- connection lockout (issue 12.7) ---------------------------------------------------------

# Opens argv[2] connections to the unix socket argv[1] and sends nothing; prints how many the
# master kept open a moment later, then how many it closed within 60 s, one line each.
HOLDER = r"""
import select, socket, sys, time
socks = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    socks.append(s)
def open_ones():
    out = []
    for s in socks:
        if s.fileno() < 0:
            continue
        if select.select([s], [], [], 0)[0] and s.recv(1, socket.MSG_PEEK) == b"":
            s.close()
        else:
            out.append(s)
    return out
time.sleep(1)
print(len(open_ones()), flush=True)
sys.stdin.readline()
end = time.time() + 60
while open_ones() and time.time() < end:
    time.sleep(0.2)
print(len(socks) - len(open_ones()), flush=True)
"""


def holders(procs, m, n, each):
    ps = [procs.start([sys.executable, "-c", HOLDER, m.sock, str(each)], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, text=True) for _ in range(n)]
    return ps, [int(p.stdout.readline()) for p in ps]


def test_idle_connections_do_not_lock_out_services(running, procs):
    m = running
    wait_for(lambda: api_result(m, "api"), what="api caller")
    token = api_result(m, "api")["env"]["BAETYL_SERVICE_TOKEN"]
    # 300 idle connections from ten processes: more than the old limit of 256
    ps, kept = holders(procs, m, 10, 30)
    assert sum(kept) == 300, kept
    st, body = m.request("GET", "/v1/system/inspect", user="api", password=token)
    assert st == 200, body
    assert m.request("PUT", "/v1/services/api/instances/api/report", {"ok": 1}, user="api",
                     password=token)[0] == 200
    # idle connections that never sent a request are closed by the master
    for p in ps:
        p.stdin.write("\n")
        p.stdin.flush()
    closed = [int(p.stdout.readline()) for p in ps]
    assert closed == [30] * 10, closed
    assert "AddressSanitizer" not in m.read("master.out", "")


def test_one_process_cannot_hold_many_connections(running, procs):
    m = running
    ps, kept = holders(procs, m, 1, 300)
    assert 0 < kept[0] < 300, kept
    assert m.request("GET", "/v1/system/inspect")[0] == 200
    assert "too many from one process" in m.log()
    ps[0].stdin.write("\n")
    ps[0].stdin.flush()
    assert int(ps[0].stdout.readline()) == 300


# ---- what a service token may do (issue 12.12) ----------------------------------------------

# Saves its whole environment, then calls nothing.
ENV_DUMPER = PY_API + """
save("env-%s.json" % inst, dict(env))
while True:
    time.sleep(0.2)
"""


@pytest.fixture
def tokens(master):
    """Services a (sleeper), api (caller), rt (replica 0) and fm, whose config names rt as a
    function service the way the function-manager's does."""
    m = master()
    m.package("pkg", SLEEPER)
    m.package("caller", API_CALLER)
    m.package("dumper", ENV_DUMPER)
    m.write("var/db/baetyl/fm-conf/service.yml",
            json.dumps({"functions": [{"name": "f", "service": "rt"}]}))
    fm_mounts = [{"name": "caller", "path": "lib/baetyl/caller", "readonly": True},
                 {"name": "fm-conf", "path": "etc/baetyl", "readonly": True},
                 {"name": "data", "path": "data"}]
    m.app(app_yaml([svc("a", "pkg"), svc("api", "caller"), svc("rt", "dumper", replica=0),
                    svc("fm", "caller", mounts=fm_mounts)],
                   vols("pkg", "caller", "dumper") +
                   [{"name": "fm-conf", "path": "var/db/baetyl/fm-conf"}]))
    m.start()
    m.wait_running("a")
    m.tok = {s: wait_for(lambda s=s: api_result(m, s), what=s)["env"]["BAETYL_SERVICE_TOKEN"]
             for s in ("api", "fm")}
    return m


def test_service_token_acts_only_on_its_own_instances(tokens):
    m = tokens
    pid = m.running_pid("a")
    as_api = {"user": "api", "password": m.tok["api"]}
    for method, path, body in [("PUT", "/v1/services/a/instances/a/stop", None),
                               ("PUT", "/v1/services/a/instances/a.x/start", {"K": "v"}),
                               ("PUT", "/v1/services/a/instances/a/report", {"k": 1}),
                               ("PUT", "/v1/services/rt/instances/rt.x/start", {})]:
        st, text = m.request(method, path, body, **as_api)
        assert st == 403 and "may not act on the instances of service" in text, (path, st, text)
    assert m.running_pid("a") == pid, "another service's instance was not stopped"
    assert m.instance("a", "a.x") is None and m.instance("rt", "rt.x") is None
    assert "k" not in m.instance("a", "a")
    # its own instances: allowed
    st, _ = m.request("PUT", "/v1/services/api/instances/api/report", {"mine": 1}, **as_api)
    assert st == 200
    assert m.request("PUT", "/v1/services/api/instances/api.d/start", {}, **as_api)[0] == 200
    m.wait_running("api", "api.d")
    assert m.request("PUT", "/v1/services/api/instances/api.d/stop", None, **as_api)[0] == 200


def test_function_manager_is_granted_the_services_its_config_names(tokens):
    m = tokens
    as_fm = {"user": "fm", "password": m.tok["fm"]}
    env = {"EXTRA": "yes", "LD_PRELOAD": "/nonexistent/evil.so", "LD_LIBRARY_PATH": "/tmp",
           "LD_AUDIT": "/tmp/a.so", "PYTHONPATH": "/tmp/evil",
           "NODE_OPTIONS": "--require=/tmp/e.js"}
    st, text = m.request("PUT", "/v1/services/rt/instances/rt.f.1/start", env, **as_fm)
    assert st == 200, text
    got = wait_for(lambda: m.read("var/db/data/env-rt.f.1.json"), what="dynamic instance env")
    got = json.loads(got)
    assert got["EXTRA"] == "yes"
    for k in ("LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PYTHONPATH", "NODE_OPTIONS"):
        assert got.get(k) != env[k], k
    assert "dynamic env variable dropped" in m.log()
    assert m.request("PUT", "/v1/services/rt/instances/rt.f.1/stop", None, **as_fm)[0] == 200
    # the grant names rt only
    st, text = m.request("PUT", "/v1/services/a/instances/a/stop", None, **as_fm)
    assert st == 403, text


def test_api_answers_and_update_body_variants(master):
    m = master()
    m.package("dump", SORTED_ENV_DUMPER)
    v = {n: app_yaml([svc("a", "dump", env={"V": n})], vols("dump"), version=n) for n in ("v1", "v2", "v3")}
    m.app(v["v1"])
    m.app(v["v2"], rel="var/db/baetyl/ota/v2/application.yml")
    m.app(v["v3"], rel="var/db/baetyl/ota/v3/application.yml")
    m.start()
    token = wait_for(lambda: env_file(m, "a").get("BAETYL_SERVICE_TOKEN"), what="token")
    # HTTP header names are case-insensitive: Go clients send X-Openedge-Username
    canon = {"X-Openedge-Username": "a", "X-Openedge-Password": token}
    st, body = m.request("GET", "/v1/ports/available", user=False, headers=canon)
    assert st == 200, body
    j = json.loads(body)
    assert list(j) == ["port"] and isinstance(j["port"], str) and j["port"].isdigit(), body
    # `file` is accepted for `path`, and a missing type means APP
    st, body = m.request("PUT", "/v1/system/update", {"file": m.path("var/db/baetyl/ota/v2"), "trace": "tr-file"},
                         user=False, headers=canon)
    assert st == 200, body
    line = m.wait_ota_step("tr-file", ["UPDATED", "ROLLEDBACK", "FAILURE"])
    assert line["step"] == "UPDATED", m.ota_log()
    assert line["type"] == "APP"
    assert m.inspect()["software"]["conf_version"] == "v2"
    # a directory path relative to the work dir (the token changed with the restarted service)
    st, body = m.request("PUT", "/v1/system/update", {"type": "APP", "path": "var/db/baetyl/ota/v3",
                                                      "trace": "tr-rel"})
    assert st == 200, body
    assert m.wait_ota_step("tr-rel", ["UPDATED", "ROLLEDBACK", "FAILURE"])["step"] == "UPDATED", m.ota_log()
    assert m.inspect()["software"]["conf_version"] == "v3"
    # the instance routes answer 200 (no JSON needed)
    assert m.request("PUT", "/v1/services/a/instances/a/report", {"k": 1})[0] == 200
    assert m.instance("a", "a")["k"] == 1
    # 401 for a wrong password whatever the case of the header names
    st, body = m.request("GET", "/v1/system/inspect", user=False,
                         headers={"X-OPENEDGE-USERNAME": "a", "X-OPENEDGE-PASSWORD": "nope"})
    assert (st, body.strip()) == (401, "account unauthorized")
    st, _ = m.request("GET", "/v1/system/nothing")
    assert st == 404


def test_api_keep_alive_and_chunked_bodies(master):
    """What Go's http client does: several requests on one connection, and bodies of
    unknown length sent chunked."""
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([pkg_svc("a")], vols("pkg")))
    m.start()
    m.wait_running("a")
    h = {"x-openedge-username": "baetyl.cli", "x-openedge-password": m.cli_token()}
    c = UnixHTTPConnection(m.sock)
    try:
        for _ in range(3):
            c.request("GET", "/v1/ports/available", headers=h)
            r = c.getresponse()
            assert r.status == 200 and "port" in json.loads(r.read())
        c.request("PUT", "/v1/services/a/instances/a/report", body=iter([b'{"chunk', b'ed": {"n": ', b'7}}']),
                  headers=h, encode_chunked=True)
        r = c.getresponse()
        assert r.status == 200, r.read()
        r.read()
        c.request("GET", "/v1/system/inspect", headers=h)
        r = c.getresponse()
        assert r.status == 200
        j = json.loads(r.read())
    finally:
        c.close()
    inst = [i for s in j["services"] for i in s["instances"] if i["name"] == "a"][0]
    assert inst["chunked"] == {"n": 7}
    assert m.stop() == 0


def test_socket_mode_and_token_file_kept_private(master):
    m = master()
    m.start()
    assert stat.S_ISSOCK(os.stat(m.sock).st_mode)
    assert stat.S_IMODE(os.stat(m.sock).st_mode) == 0o660
    assert m.stop() == 0
    assert not os.path.exists(m.sock)
