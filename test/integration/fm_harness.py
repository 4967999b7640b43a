"""Helpers for the function-manager tests (no tests here): a master work dir holding the
function-manager and runtime services as native packages (links to the built binaries and to
the runtimes' source trees), a standalone hub, and a paho client that records what the
functions publish."""
import base64
import json
import os
import queue
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from conftest import SRC, binary, free_port, wait_for

FUNCTIONS = os.path.join(SRC, "test", "integration", "functions")

# image -> how its package is made: ("bin", executable name) links a built binary;
# ("dir", source dir) links a runtime's source tree (its package.yml inside).
PACKAGES = {
    "baetyl-function-manager": ("bin", "baetyl-function-manager"),
    "baetyl-function-sql": ("bin", "baetyl-function-sql"),
    "baetyl-function-python": ("dir", os.path.join(SRC, "function-python")),
    "baetyl-function-node": ("dir", os.path.join(SRC, "function-node")),
    "baetyl-hub": ("bin", "baetyl-hub"),
}
RUNTIME_IMAGES = {"python": "baetyl-function-python", "node": "baetyl-function-node",
                  "sql": "baetyl-function-sql"}
CODE = {"python": os.path.join(FUNCTIONS, "python3"), "node": os.path.join(FUNCTIONS, "node8")}


def install_package(m, image):
    """The package of image under the master's var/db/baetyl/<image> (a link)."""
    dest = m.path(f"var/db/baetyl/{image}")
    if os.path.lexists(dest):
        return
    kind, what = PACKAGES[image]
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if kind == "dir":
        os.symlink(what, dest)
    else:
        os.makedirs(os.path.join(dest, "bin"))
        os.symlink(binary(what), os.path.join(dest, "bin", what))
        with open(os.path.join(dest, "package.yml"), "w") as f:
            f.write(f"entry: bin/{what}\n")


class App:
    """One application: the function-manager (service `function-manager`) and runtime
    services, run by a master in a temp work dir, on a standalone hub.

    runtimes: {service: (kind, [(function, handler)], extra service fields)}, kind python|node|
    sql|script; python/node code comes from test/integration/functions/{python3,node8};
    script: extra["image"] names a package whose program is extra["script"].
    functions, rules: the function-manager's lists (dicts); fm_extra: more of its keys;
    fm_hub: more keys of its `hub:`; fm_service: more fields of its service."""

    def __init__(self, master, hub, runtimes, functions, rules, fm_extra=None, fm_service=None,
                 fm_hub=None):
        self.m = master()
        self.hub = hub
        self.services = []
        self.volumes = []
        for svc, spec in runtimes.items():
            kind, fns = spec[0], spec[1]
            extra = spec[2] if len(spec) > 2 else {}
            self.add_runtime(svc, kind, fns, extra)
        fm = {"hub": {"address": f"tcp://127.0.0.1:{hub.port}", "username": "test",
                      "password": "hahaha", "clientid": "fm"},
              "functions": functions, "rules": rules, "logger": {"level": "debug"}}
        fm["hub"].update(fm_hub or {})
        fm.update(fm_extra or {})
        self.n_rules = len(rules)
        self.m.write("var/db/baetyl/fm-conf/service.yml", json.dumps(fm, indent=1))
        install_package(self.m, "baetyl-function-manager")
        svc = {"name": "function-manager", "image": "baetyl-function-manager", "replica": 1,
               "mounts": [{"name": "fm-pkg", "path": "lib/baetyl/baetyl-function-manager", "readonly": True},
                          {"name": "fm-conf", "path": "etc/baetyl", "readonly": True}]}
        svc.update(fm_service or {})
        self.services.append(svc)
        self.volumes += [{"name": "fm-pkg", "path": "var/db/baetyl/baetyl-function-manager"},
                         {"name": "fm-conf", "path": "var/db/baetyl/fm-conf"},
                         {"name": "data", "path": "var/db/data"}]
        self.m.app(json.dumps({"version": "v1", "services": self.services, "volumes": self.volumes},
                              indent=1))

    def add_runtime(self, svc, kind, fns, extra):
        image = extra.pop("image", None) or RUNTIME_IMAGES[kind]
        if kind == "script":  # a package made of a test's own program
            self.m.package(image, extra.pop("script"))
        elif image in PACKAGES:
            install_package(self.m, image)
        pkg_vol = f"{image}-pkg"
        if not any(v["name"] == pkg_vol for v in self.volumes):
            self.volumes.append({"name": pkg_vol, "path": f"var/db/baetyl/{image}"})
        mounts = [{"name": pkg_vol, "path": f"lib/baetyl/{image}", "readonly": True},
                  {"name": f"{svc}-conf", "path": "etc/baetyl", "readonly": True},
                  {"name": "data", "path": "data"}]
        self.volumes.append({"name": f"{svc}-conf", "path": f"var/db/baetyl/{svc}-conf"})
        conf = {"functions": []}
        if kind in CODE:
            mounts.append({"name": f"{kind}-code", "path": "var/db/baetyl/code", "readonly": True})
            if not any(v["name"] == f"{kind}-code" for v in self.volumes):
                os.symlink(CODE[kind], self.m.path(f"var/db/baetyl/{kind}-code"))
                self.volumes.append({"name": f"{kind}-code", "path": f"var/db/baetyl/{kind}-code"})
            for name, handler in fns:
                conf["functions"].append({"name": name, "handler": handler, "codedir": "var/db/baetyl/code"})
        else:
            for name, handler in fns:
                conf["functions"].append({"name": name, "handler": handler})
        self.m.write(f"var/db/baetyl/{svc}-conf/service.yml", json.dumps(conf, indent=1))
        s = {"name": svc, "image": image, "replica": 0, "mounts": mounts}
        s.update(extra)
        self.services.append(s)

    def start(self):
        self.m.start()
        self.m.wait_running("function-manager")
        wait_for(lambda: self.fm_log().count("rule connected to the hub") >= self.n_rules, 20,
                 what="every rule connected")
        return self

    def fm_log(self):
        """What the services printed (the function-manager logs to stderr here)."""
        return self.m.read("master.out", "") + self.m.services_out()

    def instances(self, svc):
        s = self.m.service(svc)
        return sorted(i["name"] for i in (s or {}).get("instances", []))

    def running(self, svc):
        s = self.m.service(svc)
        return {i["name"]: i["process"]["id"] for i in (s or {}).get("instances", [])
                if i["status"] == "running" and "process" in i}


class Watcher:
    """A paho client (clean session) subscribed at QoS 1 to filters; records every message
    as (topic, payload bytes, qos)."""

    def __init__(self, port, filters=("#",), client_id=None):
        self.msgs = []
        self.cv = threading.Condition()
        self.c = mqtt.Client(client_id=client_id or "w" + uuid.uuid4().hex[:10], clean_session=True,
                             protocol=mqtt.MQTTv311)
        self.c.username_pw_set("test", "hahaha")
        self.c.on_message = self._on_message
        subacked = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, granted: subacked.put(granted)
        self.c.connect("127.0.0.1", port, keepalive=60)
        self.c.loop_start()
        for f in filters:
            self.c.subscribe(f, qos=1)
            subacked.get(timeout=10)

    def _on_message(self, c, u, msg):
        with self.cv:
            self.msgs.append((msg.topic, bytes(msg.payload), msg.qos))
            self.cv.notify_all()

    def publish(self, topic, payload, qos=0):
        info = self.c.publish(topic, payload, qos=qos)
        info.wait_for_publish()
        return info

    def on(self, topic):
        with self.cv:
            return [m for m in self.msgs if m[0] == topic]

    def wait(self, topic, n=1, timeout=30):
        """The first n messages on topic (fails after timeout)."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                got = [m for m in self.msgs if m[0] == topic]
                if len(got) >= n:
                    return got[:n]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(got)} of {n} messages on {topic} after {timeout}s; "
                                         f"seen: {[(t, p[:80]) for t, p, q in self.msgs][-20:]}")
                self.cv.wait(left)

    def wait_json(self, topic, n=1, timeout=30):
        return [json.loads(p) for _, p, _ in self.wait(topic, n, timeout)]

    def clear(self):
        with self.cv:
            self.msgs.clear()

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def publish_all(w, topic, payloads, qos=0):
    """Publishes each payload on topic in turn (numbered floods of the order tests)."""
    for p in payloads:
        w.publish(topic, p, qos=qos)


def numbered(n, **extra):
    """The payloads {"n": 0} … {"n": n-1} (with extra keys), as JSON bytes."""
    return [json.dumps({"n": i, **extra}).encode() for i in range(n)]


def error_of(payload):
    """The error JSON as a dict, its Payload decoded."""
    e = json.loads(payload)
    e["functionMessage"]["Payload"] = base64.b64decode(e["functionMessage"]["Payload"])
    return e


def is_uuid4(s):
    try:
        return uuid.UUID(s).version == 4 and str(uuid.UUID(s)) == s
    except (TypeError, ValueError):
        return False


__all__ = ["App", "Watcher", "error_of", "is_uuid4", "install_package", "free_port"]
