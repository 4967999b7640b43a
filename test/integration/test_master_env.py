"""The environment of an instance (SPEC §8): the BAETYL_/OPENEDGE_ twins, reserved names,
tokens, service and dynamic env, and scalars kept as text."""
import os


from conftest import wait_for
from master_harness import (app_yaml, env_file, master, SORTED_ENV_DUMPER, svc,  # noqa: F401
                              vols)


# §8: the names the master sets (BAETYL_HOST_SN only with snfile, the socket only with unix).
SECTION8 = ["HOST_OS", "HOST_ID", "MASTER_API_ADDRESS", "MASTER_API_SOCKET", "MASTER_API_VERSION",
            "SERVICE_MODE", "SERVICE_NAME", "SERVICE_TOKEN", "SERVICE_INSTANCE_NAME"]


def test_environment_twins_reserved_names_and_tokens(master, monkeypatch):
    # a master started from inside another service's instance must not pass that on
    monkeypatch.setenv("BAETYL_SERVICE_NAME", "leaked")
    monkeypatch.setenv("OPENEDGE_SERVICE_TOKEN", "leaked")
    monkeypatch.setenv("BAETYL_SERVICE_INSTANCE_NAME", "leaked")
    monkeypatch.setenv("MY_VAR", "from-master")
    monkeypatch.setenv("MASTER_ONLY", "passed-on")
    m = master()
    m.package("dump", SORTED_ENV_DUMPER)
    forged = {k: "forged" for k in ("BAETYL_SERVICE_TOKEN", "BAETYL_MASTER_API_ADDRESS", "BAETYL_HOST_ID",
                                    "BAETYL_HOST_OS", "BAETYL_SERVICE_MODE", "BAETYL_MASTER_API_VERSION",
                                    "BAETYL_SERVICE_INSTANCE_NAME", "BAETYL_MASTER_API_SOCKET",
                                    "OPENEDGE_SERVICE_NAME", "OPENEDGE_SERVICE_TOKEN")}
    forged["MY_VAR"] = "mine"
    m.app(app_yaml([svc("one", "dump", env=forged), svc("two", "dump")], vols("dump")))
    m.start()
    wait_for(lambda: env_file(m, "one") and env_file(m, "two"), what="env dumps")
    e1, e2 = env_file(m, "one"), env_file(m, "two")
    assert e1["MY_VAR"] == "mine", "a service's env overrides the master's environment"
    assert e1["MASTER_ONLY"] == "passed-on" and e2["MY_VAR"] == "from-master"
    for env, name in ((e1, "one"), (e2, "two")):
        assert env["BAETYL_SERVICE_NAME"] == name and env["BAETYL_SERVICE_INSTANCE_NAME"] == name
        assert env["BAETYL_HOST_OS"] == "linux" and env["BAETYL_SERVICE_MODE"] == "native"
        assert env["BAETYL_MASTER_API_VERSION"] == "v1"
        assert env["BAETYL_MASTER_API_ADDRESS"] == "unix://var/run/baetyl.sock"
        assert env["BAETYL_MASTER_API_SOCKET"] == m.sock
        assert env["BAETYL_HOST_ID"] not in ("", "forged")
        assert env["BAETYL_SERVICE_TOKEN"] not in ("", "forged")
        assert "BAETYL_HOST_SN" not in env and "OPENEDGE_HOST_SN" not in env, "no snfile, no SN"
        for n in SECTION8:
            assert env.get("OPENEDGE_" + n) == env["BAETYL_" + n], f"OPENEDGE_{n} twins BAETYL_{n}"
    assert e1["BAETYL_SERVICE_TOKEN"] != e2["BAETYL_SERVICE_TOKEN"], "one token per service"
    host_id = m.inspect()["hardware"]["host_stats"]["host_id"]
    assert e1["BAETYL_HOST_ID"] == e2["BAETYL_HOST_ID"] == host_id
    # a restart: the host id is stable, the tokens are new
    assert m.stop() == 0
    for inst in ("one", "two"):
        os.unlink(m.path(f"var/db/data/env-{inst}"))
    m.start()
    wait_for(lambda: env_file(m, "one"), what="env dump after restart")
    again = env_file(m, "one")
    assert again["BAETYL_HOST_ID"] == e1["BAETYL_HOST_ID"]
    assert again["BAETYL_SERVICE_TOKEN"] != e1["BAETYL_SERVICE_TOKEN"]
    # the old token is worthless now, the new one works
    assert m.request("GET", "/v1/system/inspect", user="one", password=e1["BAETYL_SERVICE_TOKEN"])[0] == 401
    assert m.request("GET", "/v1/system/inspect", user="one", password=again["BAETYL_SERVICE_TOKEN"])[0] == 200


def test_dynamic_env_overrides_service_env(master):
    m = master()
    m.package("dump", SORTED_ENV_DUMPER)
    m.app(app_yaml([svc("rt", "dump", replica=0, env={"MODE": "static", "KEEP": "k"})], vols("dump")))
    m.start()
    body = {"MODE": "dynamic", "BAETYL_SERVICE_INSTANCE_ADDRESS": "127.0.0.1:50051"}
    assert m.request("PUT", "/v1/services/rt/instances/rt.fn.1/start", body)[0] == 200
    env = wait_for(lambda: env_file(m, "rt.fn.1"), what="dynamic env")
    assert env["MODE"] == "dynamic" and env["KEEP"] == "k"
    assert env["BAETYL_SERVICE_INSTANCE_ADDRESS"] == "127.0.0.1:50051"
    assert env["BAETYL_SERVICE_NAME"] == "rt" and env["BAETYL_SERVICE_INSTANCE_NAME"] == "rt.fn.1"
    assert "BAETYL_SERVICE_TOKEN" not in env
    assert m.stop() == 0


def test_env_and_version_scalars_are_text(master):
    """YAML scalars that are not strings (numbers, booleans) in `env` and `version` are
    taken as their text, as Baetyl 1.0 (Go yaml) did: users write `PORT: 8080`."""
    m = master()
    m.package("dump", SORTED_ENV_DUMPER)
    m.write("var/db/baetyl/application.yml", """version: 12
services:
  - name: a
    image: dump
    replica: 1
    env: {PORT: 8080, DEBUG: true, RATIO: 1.5, NAME: plain}
    mounts:
      - {name: dump, path: lib/baetyl/dump, readonly: true}
      - {name: data, path: data}
volumes:
  - {name: dump, path: var/db/baetyl/dump}
  - {name: data, path: var/db/data}
""")
    m.start()
    env = wait_for(lambda: env_file(m, "a"), what="env dump")
    assert env["PORT"] == "8080" and env["DEBUG"] == "true" and env["NAME"] == "plain"
    assert float(env["RATIO"]) == 1.5
    assert m.inspect()["software"]["conf_version"] == "12"
    assert m.stop() == 0
