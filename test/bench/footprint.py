#!/usr/bin/python3
"""The native stack's footprint (issue #18; a measurement, not a test): master, hub,
function-manager, the SQL runtime, timer and remote-mqtt (to a local mosquitto), started
from an installed tree of the release build, at idle and under a light load (LOAD_RATE
msg/s, default 100, through the hub and the SQL function). Per process and summed: PSS, RSS
and private dirty memory from /proc/<pid>/smaps_rollup (the largest of the samples taken
after a warm-up), threads; the installed size of the C modules (stripped) and the cold start
(`baetyl start` to the first SQL output). Targets from the issue are printed as pass/short.

    BAETYL_BUILD=build /usr/bin/python3 test/bench/footprint.py [seconds per phase]
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import free_port, wait_port  # noqa: E402 (the hub bench's helpers)

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("BAETYL_BUILD", os.path.join(SRC, "build")))
BIN = os.path.join(BUILD, "bin")
C_MODULES = ["baetyl-hub", "baetyl-function-manager", "baetyl-function-sql", "baetyl-timer",
             "baetyl-remote-mqtt"]
TARGETS = {"idle_pss_mb": 15.0, "load_pss_mb": 18.0, "installed_mb": 3.0, "cold_start_s": 1.0}


def smaps(pid):
    out = {"Pss": 0, "Rss": 0, "Private_Dirty": 0}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k = line.split(":", 1)[0]
            if k in out:
                out[k] = int(line.split()[1])
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                out["Threads"] = int(line.split()[1])
    return out


def descendants(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
                ppid = int(st[st.rindex(")") + 2:].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def name_of(pid):
    """The program's file name (comm is cut at 15 characters: baetyl-function-…)."""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None


def sample(master_pid):
    rows = {}
    for pid in descendants(master_pid):
        n = name_of(pid)
        if n is None or n.startswith(("mosquitto", "python", "node")):
            continue
        try:
            rows[n] = smaps(pid)
        except OSError:
            pass
    return rows


def build_tree(d, port, remote_port):
    shutil.copytree(os.path.join(SRC, "example/native/etc"), os.path.join(d, "etc"))
    db = os.path.join(d, "var/db/baetyl")
    os.makedirs(db)
    for m in C_MODULES:
        os.makedirs(os.path.join(db, m, "bin"))
        dst = os.path.join(db, m, "bin", m)
        shutil.copy(os.path.join(BIN, m), dst)
        subprocess.run(["strip", "--strip-unneeded", dst], check=True)
        with open(os.path.join(db, m, "package.yml"), "w") as f:
            f.write(f"entry: bin/{m}\n")
    shutil.copy(os.path.join(BIN, "baetyl"), os.path.join(d, "baetyl"))
    subprocess.run(["strip", "--strip-unneeded", os.path.join(d, "baetyl")], check=True)

    def conf(name, text):
        os.makedirs(os.path.join(db, name), exist_ok=True)
        with open(os.path.join(db, name, "service.yml"), "w") as f:
            f.write(text)
    hub_auth = "username: test, password: hahaha"
    conf("hub-conf", f"""listen: ['tcp://127.0.0.1:{port}']
principals:
  - {{{hub_auth}, permissions: [{{action: pub, permit: ['#']}}, {{action: sub, permit: ['#']}}]}}
logger: {{level: warn}}
""")
    conf("fm-conf", f"""hub: {{address: 'tcp://127.0.0.1:{port}', {hub_auth}}}
rules:
  - {{clientid: sql-1, subscribe: {{topic: t, qos: 1}}, function: {{name: filter}},
     publish: {{topic: t/sql, qos: 1}}}}
functions:
  - {{name: filter, service: function-sql}}
logger: {{level: warn}}
""")
    conf("sql-conf", "functions:\n  - name: filter\n    handler: 'select *, qos() as qos where id < 100000000'\n")
    conf("timer-conf", f"""hub: {{address: 'tcp://127.0.0.1:{port}', clientid: timer, {hub_auth}}}
timer: {{interval: 1s}}
publish: {{topic: timer/t, payload: {{k: v}}}}
logger: {{level: warn}}
""")
    conf("remote-conf", f"""hub: {{address: 'tcp://127.0.0.1:{port}', {hub_auth}}}
remotes:
  - {{name: cloud, address: 'tcp://127.0.0.1:{remote_port}', clientid: rm}}
rules:
  - hub: {{subscriptions: [{{topic: t/sql, qos: 1}}]}}
    remote: {{name: cloud}}
logger: {{level: warn}}
""")

    def svc(name, image, confvol, replica=1):
        return (f"  - name: {name}\n    image: {image}\n    replica: {replica}\n    mounts:\n"
                f"      - {{name: {confvol}, path: etc/baetyl, readonly: true}}\n"
                f"      - {{name: {image}-bin, path: lib/baetyl/{image}, readonly: true}}\n")
    app = "version: fp\nservices:\n" + svc("hub", "baetyl-hub", "hub-conf") + \
        svc("function-manager", "baetyl-function-manager", "fm-conf") + \
        svc("function-sql", "baetyl-function-sql", "sql-conf", replica=0) + \
        svc("timer", "baetyl-timer", "timer-conf") + \
        svc("remote-mqtt", "baetyl-remote-mqtt", "remote-conf") + "volumes:\n"
    for v in ("hub-conf", "fm-conf", "sql-conf", "timer-conf", "remote-conf"):
        app += f"  - {{name: {v}, path: var/db/baetyl/{v}}}\n"
    for m in C_MODULES:
        app += f"  - {{name: {m}-bin, path: var/db/baetyl/{m}}}\n"
    with open(os.path.join(db, "application.yml"), "w") as f:
        f.write(app)


def installed_kb(d):
    files = [os.path.join(d, "baetyl")] + [
        os.path.join(d, "var/db/baetyl", m, "bin", m) for m in C_MODULES]
    return sum(os.path.getsize(f) for f in files) / 1024


def main():
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 20
    rate = float(os.environ.get("LOAD_RATE", "100"))
    import paho.mqtt.client as mqtt
    d = tempfile.mkdtemp(prefix="bt-fp-")
    port, remote_port = free_port(), free_port()
    mos = subprocess.Popen(["mosquitto", "-p", str(remote_port)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    master = None
    try:
        build_tree(d, port, remote_port)
        wait_port(remote_port, timeout=20)
        got = threading.Event()
        sub = mqtt.Client(client_id="fp-sub")
        sub.username_pw_set("test", "hahaha")
        sub.on_message = lambda c, u, m: got.set()
        sub.on_connect = lambda c, u, f, rc: c.subscribe("t/sql", 1)
        t0 = time.monotonic()
        master = subprocess.Popen([os.path.join(d, "baetyl"), "start", "-w", d],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, timeout=20)
        sub.connect_async("127.0.0.1", port)
        sub.loop_start()
        pub = mqtt.Client(client_id="fp-pub")
        pub.username_pw_set("test", "hahaha")
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        while not got.is_set() and time.monotonic() - t0 < 30:
            pub.publish("t", b'{"id":1}', 1)
            got.wait(0.05)
        cold = time.monotonic() - t0
        time.sleep(3)  # warm-up

        def phase(load):
            stop = time.monotonic() + secs
            worst, n = {}, 0
            nxt = time.monotonic()
            last_sample = 0
            while time.monotonic() < stop:
                if load:
                    pub.publish("t", f'{{"id":{n}}}'.encode(), 1)
                    n += 1
                    nxt += 1 / rate
                    time.sleep(max(0, nxt - time.monotonic()))
                else:
                    time.sleep(0.2)
                if time.monotonic() - last_sample > 2:
                    last_sample = time.monotonic()
                    for k, v in sample(master.pid).items():
                        w = worst.setdefault(k, dict(v))
                        for f in ("Pss", "Rss", "Private_Dirty", "Threads"):
                            w[f] = max(w[f], v.get(f, 0))
            return worst

        idle = phase(False)
        load = phase(True)
    finally:
        if master:
            master.send_signal(signal.SIGTERM)
            master.wait(60)
        mos.terminate()
        mos.wait()
    inst = installed_kb(d)
    shutil.rmtree(d, ignore_errors=True)

    print(f"footprint of the native C stack (release build, stripped; {secs:.0f} s per phase, "
          f"load {rate:.0f} msg/s through hub and SQL function)")
    print(f"{'process':<28}{'idle PSS':>10}{'RSS':>8}{'priv.dirty':>11}{'threads':>8}"
          f"{'load PSS':>10}{'RSS':>8}{'priv.dirty':>11}")
    tot_i = tot_l = 0
    for k in sorted(set(idle) | set(load)):
        i, l = idle.get(k, {}), load.get(k, {})
        tot_i += i.get("Pss", 0)
        tot_l += l.get("Pss", 0)
        print(f"{k:<28}{i.get('Pss', 0) / 1024:>9.1f}M{i.get('Rss', 0) / 1024:>7.1f}M"
              f"{i.get('Private_Dirty', 0) / 1024:>10.1f}M{i.get('Threads', 0):>8}"
              f"{l.get('Pss', 0) / 1024:>9.1f}M{l.get('Rss', 0) / 1024:>7.1f}M"
              f"{l.get('Private_Dirty', 0) / 1024:>10.1f}M")
    res = {"idle_pss_mb": tot_i / 1024, "load_pss_mb": tot_l / 1024,
           "installed_mb": inst / 1024, "cold_start_s": cold}
    print(f"{'sum':<28}{tot_i / 1024:>9.1f}M{'':>27}{tot_l / 1024:>9.1f}M")
    for k, v in res.items():
        print(f"{k:<16} {v:8.2f}  target {TARGETS[k]:5.1f}  "
              f"{'pass' if v <= TARGETS[k] else 'short'}")


if __name__ == "__main__":
    main()
