#!/usr/bin/python3
"""The native stack's footprint (issue #18; a measurement, not a test).

Starts the installed native stack: master, hub, function-manager, the SQL runtime, timer,
remote-mqtt (bridging to a local mosquitto it starts) and agent (reporting to a fake cloud
it starts: an HTTPS server and a mosquitto with TLS client certificates, like
test/integration/test_agent.py's), then measures at idle and under a light load (--rate
msg/s through the hub and the SQL function, the remote link up):

  * per process and summed: PSS, RSS and private dirty memory from /proc/<pid>/smaps_rollup,
    sampled every --every seconds after a warm-up (the largest sample is kept), and threads;
  * the installed size (stripped, what `make install MODE=native` copies): C modules, SDK,
    Python/Node runtimes apart;
  * the cold start, from `baetyl start` to the first message out of the SQL function.

The Python and Node runtimes are measured in a second run of their own (their interpreters
are not ours, so they are not in the C stack's sum). The issue's targets are printed as
pass/short. Needs mosquitto, openssl and python3-paho-mqtt.

  test/bench/footprint.py [--seconds 20] [--rate 100]            # from a source tree
  test/bench/footprint.py --prefix /usr/local                   # an installed baetyl
"""
import argparse
import getpass
import http.server
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import free_port, wait_port  # noqa: E402 (the hub bench's helpers)

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
C_MODULES = ["baetyl-hub", "baetyl-function-manager", "baetyl-function-sql", "baetyl-timer",
             "baetyl-remote-mqtt", "baetyl-agent"]
RUNTIMES = ["baetyl-function-python", "baetyl-function-node"]
TARGETS = {"idle_pss_mb": 15.0, "load_pss_mb": 18.0, "installed_mb": 3.0, "cold_start_s": 1.0}
AUTH = "username: test, password: hahaha"
CLIENT_ID = "fp-edge"


# ---- an installed tree ---------------------------------------------------------------------

def install(build, dest):
    """`make install MODE=native` of the source tree into dest, then every ELF stripped (what
    `make dist` ships)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    subprocess.run(["make", "--no-print-directory", "-C", SRC, f"BUILD={build}",
                    f"PREFIX={dest}", "MODE=native", "install"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    for root, _, files in os.walk(dest):
        for f in files:
            p = os.path.join(root, f)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    elf = fh.read(4) == b"\x7fELF"
                if elf:
                    subprocess.run(["strip", "--strip-unneeded", p], check=True)
    # Written back before the stack maps them: a program's page-cache pages still dirty
    # would count as its private dirty memory (0.2-2 MB per process).
    os.sync()


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def installed_sizes(prefix):
    db = os.path.join(prefix, "var/db/baetyl")
    c = os.path.getsize(os.path.join(prefix, "bin/baetyl")) + sum(
        du(os.path.join(db, m)) for m in C_MODULES if os.path.isdir(os.path.join(db, m)))
    sdk = du(os.path.join(prefix, "include/baetyl")) + sum(
        os.path.getsize(os.path.join(prefix, p)) for p in ("lib/libbaetyl-sdk.a",)
        if os.path.exists(os.path.join(prefix, p)))
    rt = {m: du(os.path.join(db, m)) for m in RUNTIMES if os.path.isdir(os.path.join(db, m))}
    return c, sdk, rt


# ---- the fake cloud (agent) ---------------------------------------------------------------

def make_certs(d):
    """A CA, the cloud's server certificate and the device's client certificate (RSA: the
    agent encrypts its reports with that key)."""
    def ossl(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=fp-ca", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, cn, ext, serial in (("server", "localhost",
                                   "subjectAltName=IP:127.0.0.1,DNS:localhost", 2),
                                  ("client", CLIENT_ID, "extendedKeyUsage=clientAuth", 3)):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={cn}")
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-set_serial", str(serial), "-out", f"{name}.pem", "-days", "2", "-extfile",
             f"{name}.ext")


class Cloud:
    """HTTPS on a free port that takes the agent's reports (counted, not decrypted)."""

    def __init__(self, certs):
        self.port, self.reports = free_port(), 0
        cloud = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                cloud.reports += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"))
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def mosquitto(d, name, tls_certs=None):
    """A mosquitto on a free loopback port (TLS with client certificates when tls_certs)."""
    port = free_port()
    conf = os.path.join(d, f"{name}.conf")
    with open(conf, "w") as f:
        # user: run as root, mosquitto would switch to its own user, who cannot read the keys
        f.write(f"user {getpass.getuser()}\npersistence false\nlistener {port} 127.0.0.1\n")
        if tls_certs:
            f.write(f"cafile {tls_certs}/ca.pem\ncertfile {tls_certs}/server.pem\n"
                    f"keyfile {tls_certs}/server.key\nrequire_certificate true\n"
                    "use_identity_as_username true\n")
        else:
            f.write("allow_anonymous true\n")
    p = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_port(port, timeout=20)
    return p, port


# ---- the work dir --------------------------------------------------------------------------

def service(name, image, confvol, replica=1, extra=()):
    mounts = [(confvol, "etc/baetyl", True), *extra, (f"{image}-bin", f"lib/baetyl/{image}", True)]
    out = f"  - name: {name}\n    image: {image}\n    replica: {replica}\n    mounts:\n"
    for v, path, ro in mounts:
        out += f"      - {{name: {v}, path: {path}{', readonly: true' if ro else ''}}}\n"
    return out


def build_tree(prefix, d, ports, runtimes):
    """A work dir running the packages installed under prefix with the bench's configs:
    C stack only, or (runtimes) the hub, function-manager and the Python and Node runtimes."""
    db = os.path.join(d, "var/db/baetyl")
    os.makedirs(db)
    os.makedirs(os.path.join(d, "etc/baetyl"))
    with open(os.path.join(d, "etc/baetyl/conf.yml"), "w") as f:
        f.write("mode: native\ngrace: 10s\nserver: {address: 'unix://var/run/baetyl.sock'}\n"
                "logger: {path: var/log/baetyl/baetyl.log, level: warn}\n")
    shutil.copy(os.path.join(prefix, "bin/baetyl"), os.path.join(d, "baetyl"))
    images = ["baetyl-hub", "baetyl-function-manager"] + (
        RUNTIMES if runtimes else C_MODULES[2:])
    for m in images:
        shutil.copytree(os.path.join(prefix, "var/db/baetyl", m), os.path.join(db, m),
                        symlinks=True)

    def conf(name, text):
        os.makedirs(os.path.join(db, name), exist_ok=True)
        with open(os.path.join(db, name, "service.yml"), "w") as f:
            f.write(text)
    hub = f"address: 'tcp://127.0.0.1:{ports['hub']}', {AUTH}"
    conf("hub-conf", f"""listen: ['tcp://127.0.0.1:{ports['hub']}']
principals:
  - {{{AUTH}, permissions: [{{action: pub, permit: ['#']}}, {{action: sub, permit: ['#']}}]}}
logger: {{level: warn}}
""")
    if runtimes:
        rules = "".join(f"  - {{clientid: {n}-1, subscribe: {{topic: {n}, qos: 1}}, "
                        f"function: {{name: {n}}},\n     publish: {{topic: {n}/out, qos: 1}}}}\n"
                        for n in ("py", "js"))
        funcs = "  - {name: py, service: function-py}\n  - {name: js, service: function-js}\n"
    else:
        rules = """  - {clientid: sql-1, subscribe: {topic: t, qos: 1}, function: {name: filter},
     publish: {topic: t/sql, qos: 1}}
"""
        funcs = "  - {name: filter, service: function-sql}\n"
    conf("fm-conf", f"hub: {{{hub}}}\nrules:\n{rules}functions:\n{funcs}logger: {{level: warn}}\n")
    app = "version: fp\nservices:\n" + service("hub", "baetyl-hub", "hub-conf") + \
        service("function-manager", "baetyl-function-manager", "fm-conf")
    vols = ["hub-conf", "fm-conf"]
    if runtimes:
        code = os.path.join(SRC, "example/native/var/db/baetyl")
        for n, image, src in (("py", "baetyl-function-python", "function-sayhi-code"),
                              ("js", "baetyl-function-node", "function-sayjs-code")):
            shutil.copytree(os.path.join(code, src), os.path.join(db, f"{n}-code"))
            conf(f"{n}-conf", f"functions:\n  - {{name: {n}, handler: index.handler, "
                              f"codedir: var/db/baetyl/{n}-code}}\n")
            app += service(f"function-{n}", image, f"{n}-conf", replica=0,
                           extra=[(f"{n}-code", f"var/db/baetyl/{n}-code", True)])
            vols += [f"{n}-conf", f"{n}-code"]
    else:
        conf("sql-conf", "functions:\n  - name: filter\n"
                         "    handler: 'select *, qos() as qos where id < 100000000'\n")
        conf("timer-conf", f"""hub: {{{hub}, clientid: timer}}
timer: {{interval: 1s}}
publish: {{topic: timer/t, payload: {{k: v}}}}
logger: {{level: warn}}
""")
        conf("remote-conf", f"""hub: {{{hub}}}
remotes:
  - {{name: cloud, address: 'tcp://127.0.0.1:{ports['remote']}', clientid: rm}}
rules:
  - hub: {{subscriptions: [{{topic: t/sql, qos: 1}}]}}
    remote: {{name: cloud}}
logger: {{level: warn}}
""")
        conf("agent-conf", f"""remote:
  mqtt:
    address: ssl://127.0.0.1:{ports['cloud_mqtt']}
    clientid: {CLIENT_ID}
    ca: var/db/baetyl/cert/ca.pem
    cert: var/db/baetyl/cert/client.pem
    key: var/db/baetyl/cert/client.key
  http:
    address: https://127.0.0.1:{ports['cloud_http']}
    ca: var/db/baetyl/cert/ca.pem
  report:
    interval: 5s
logger: {{level: warn}}
""")
        certs = os.path.join(db, "agent-cert")
        os.makedirs(certs)
        for f in ("ca.pem", "client.pem", "client.key"):
            shutil.copy(os.path.join(ports["certs"], f), certs)
        os.makedirs(os.path.join(db, "agent-log"))
        app += service("function-sql", "baetyl-function-sql", "sql-conf", replica=0) + \
            service("timer", "baetyl-timer", "timer-conf") + \
            service("remote-mqtt", "baetyl-remote-mqtt", "remote-conf") + \
            service("agent", "baetyl-agent", "agent-conf", extra=[
                ("agent-cert", "var/db/baetyl/cert", True),
                ("agent-volumes", "var/db/baetyl/volumes", False),
                ("agent-log", "var/log/baetyl", False)])
        vols += ["sql-conf", "timer-conf", "remote-conf", "agent-conf", "agent-cert", "agent-log"]
    app += "volumes:\n" + "".join(f"  - {{name: {v}, path: var/db/baetyl/{v}}}\n" for v in vols)
    if not runtimes:
        app += "  - {name: agent-volumes, path: var/db/baetyl}\n"
    app += "".join(f"  - {{name: {m}-bin, path: var/db/baetyl/{m}}}\n" for m in images)
    with open(os.path.join(db, "application.yml"), "w") as f:
        f.write(app)


# ---- sampling ------------------------------------------------------------------------------

FIELDS = ("Pss", "Rss", "Private_Dirty")


def smaps(pid):
    out = dict.fromkeys(FIELDS, 0)
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
                kids.setdefault(int(st[st.rindex(")") + 2:].split()[1]), []).append(int(d))
            except (OSError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def name_of(pid, master_pid):
    """The service a process runs (BAETYL_SERVICE_NAME), the master by its own name."""
    if pid == master_pid:
        return "baetyl (master)"
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for kv in f.read().split(b"\0"):
                if kv.startswith(b"BAETYL_SERVICE_NAME="):
                    return kv.split(b"=", 1)[1].decode()
    except OSError:
        pass
    return None


def top_mappings(master_pid, n):
    """Per service, the n files (or [heap], [stack], anonymous) holding the most PSS, each as
    (name, PSS kB, private dirty kB)."""
    out = {}
    for pid in descendants(master_pid):
        name = name_of(pid, master_pid)
        if not name:
            continue
        by, cur = {}, None
        try:
            with open(f"/proc/{pid}/smaps") as f:
                for line in f:
                    head = line.split()
                    if head and "-" in head[0] and not head[0].endswith(":"):
                        cur = os.path.basename(head[5]) if len(head) > 5 else "[anon]"
                    elif head and head[0] in ("Pss:", "Private_Dirty:"):
                        w = by.setdefault(cur, [0, 0])
                        w[head[0] == "Private_Dirty:"] += int(head[1])
        except OSError:
            continue
        out[name] = sorted(((k, *v) for k, v in by.items()), key=lambda r: -r[1])[:n]
    return out


def alone_kb(master_pid, only=None):
    """What the stack would hold if no other program shared its libraries: every process's
    private pages, plus each file's shared pages once (the largest amount any of the
    processes has resident). Unlike PSS, it does not move with what else runs."""
    private, shared = 0, {}
    for pid in descendants(master_pid):
        n = name_of(pid, master_pid)
        if not n or (only and n not in only):
            continue
        cur = None
        mine = {}
        try:
            with open(f"/proc/{pid}/smaps") as f:
                for line in f:
                    head = line.split()
                    if head and "-" in head[0] and not head[0].endswith(":"):
                        cur = f"{head[3]}:{head[4]}" if head[4] != "0" else None
                    elif head and head[0] in ("Private_Clean:", "Private_Dirty:"):
                        private += int(head[1])
                    elif head and head[0] in ("Shared_Clean:", "Shared_Dirty:") and cur:
                        mine[cur] = mine.get(cur, 0) + int(head[1])
                    elif head and head[0] in ("Shared_Clean:", "Shared_Dirty:"):
                        private += int(head[1])  # anonymous shared: counted where seen
        except OSError:
            continue
        for k, v in mine.items():
            shared[k] = max(shared.get(k, 0), v)
    return private + sum(shared.values())


def sample(master_pid):
    rows = {}
    for pid in descendants(master_pid):
        n = name_of(pid, master_pid)
        if n:
            try:
                s = smaps(pid)
            except OSError:
                continue
            if n in rows:  # a second process of one service (a helper child): added up
                for k, v in s.items():
                    rows[n][k] += v
            else:
                rows[n] = s
    return rows


# ---- one run -------------------------------------------------------------------------------

def run_stack(prefix, args, runtimes, certs):
    """Starts a work dir, waits for the first function output, then samples an idle and a
    loaded phase; returns (cold start s, idle rows, load rows, notes)."""
    import paho.mqtt.client as mqtt
    d = tempfile.mkdtemp(prefix="bt-fp-")
    procs, cloud, master, clients = [], None, None, []
    ports = {"hub": free_port(), "certs": certs}
    try:
        if not runtimes:
            p, ports["remote"] = mosquitto(d, "remote")
            procs.append(p)
            p, ports["cloud_mqtt"] = mosquitto(d, "cloud", certs)
            procs.append(p)
            cloud = Cloud(certs)
            ports["cloud_http"] = cloud.port
        build_tree(prefix, d, ports, runtimes)
        os.sync()  # the copied programs too (see install)
        topics = [("py", "py/out"), ("js", "js/out")] if runtimes else [("t", "t/sql")]
        got = {out: threading.Event() for _, out in topics}
        counts = dict.fromkeys(got, 0)

        def on_message(c, u, m):
            counts[m.topic] += 1
            got[m.topic].set()
        sub = mqtt.Client(client_id="fp-sub")
        sub.username_pw_set("test", "hahaha")
        sub.on_message = on_message
        sub.on_connect = lambda c, u, f, rc: [c.subscribe(out, 1) for out in got]
        clients.append(sub)
        t0 = time.monotonic()
        master = subprocess.Popen([os.path.join(d, "baetyl"), "start", "-w", d],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(ports["hub"], timeout=30)
        sub.connect_async("127.0.0.1", ports["hub"])
        sub.loop_start()
        pub = mqtt.Client(client_id="fp-pub")
        pub.username_pw_set("test", "hahaha")
        pub.connect("127.0.0.1", ports["hub"])
        pub.loop_start()
        clients.append(pub)
        while not all(e.is_set() for e in got.values()) and time.monotonic() - t0 < 60:
            for t, out in topics:
                if not got[out].is_set():
                    pub.publish(t, b'{"id":1}', 1)
            time.sleep(0.01)
        cold = time.monotonic() - t0
        if not all(e.is_set() for e in got.values()):
            raise SystemExit("no function output within 60 s: see " + d)
        time.sleep(args.warmup)

        trend = []  # the stack's private dirty memory at each sample of the current phase
        alone = {False: 0, True: 0}  # largest alone_kb per phase (idle, load)
        only = ("function-py", "function-js") if runtimes else None

        def phase(load):
            trend.clear()
            rows = {}
            end = time.monotonic() + args.seconds
            nxt = next_sample = time.monotonic()
            n = 0
            while time.monotonic() < end:
                if load:
                    for t, _ in topics:
                        pub.publish(t, f'{{"id":{n}}}'.encode(), 1)
                    n += 1
                    nxt += 1 / args.rate
                    time.sleep(max(0, nxt - time.monotonic()))
                else:
                    time.sleep(0.1)
                if time.monotonic() >= next_sample:
                    next_sample += args.every
                    now = sample(master.pid)
                    if load:  # flatness is judged under load, once its working set is in
                        trend.append(sum(v["Private_Dirty"] for v in now.values()))
                    alone[load] = max(alone[load], alone_kb(master.pid, only))
                    for k, v in now.items():
                        w = rows.setdefault(k, dict(v))
                        for f in w:
                            w[f] = max(w[f], v.get(f, 0))
            return rows, n
        idle, _ = phase(False)
        before = dict(counts)
        load, sent = phase(True)
        growth = (trend[0], trend[len(trend) // 2], trend[-1]) if trend else (0, 0, 0)
        tops = top_mappings(master.pid, args.top) if args.top else {}
        time.sleep(1)
        notes = {"sent": sent, "through": {k: counts[k] - before[k] for k in counts},
                 "reports": cloud.reports if cloud else None, "tops": tops, "growth": growth,
                 "alone": (alone[False], alone[True])}
        return cold, idle, load, notes
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        if master:
            master.send_signal(signal.SIGTERM)
            try:
                master.wait(60)
            except subprocess.TimeoutExpired:
                master.kill()
                master.wait()
        if cloud:
            cloud.stop()
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


def table(title, idle, load):
    print(title)
    print(f"  {'process':<26}{'idle PSS':>9}{'RSS':>8}{'pr.dirty':>9}{'thr':>5}"
          f"{'load PSS':>10}{'RSS':>8}{'pr.dirty':>9}{'thr':>5}")
    tot = {"i": dict.fromkeys(FIELDS + ("Threads",), 0),
           "l": dict.fromkeys(FIELDS + ("Threads",), 0)}

    def cols(r):
        return (f"{r.get('Pss', 0) / 1024:>8.1f}M{r.get('Rss', 0) / 1024:>7.1f}M"
                f"{r.get('Private_Dirty', 0) / 1024:>8.1f}M{r.get('Threads', 0):>5}")
    for k in sorted(set(idle) | set(load)):
        i, l = idle.get(k, {}), load.get(k, {})
        for f in tot["i"]:
            tot["i"][f] += i.get(f, 0)
            tot["l"][f] += l.get(f, 0)
        print(f"  {k:<26}{cols(i)} {cols(l)}")
    print(f"  {'sum':<26}{cols(tot['i'])} {cols(tot['l'])}")
    return tot["i"]["Pss"] / 1024, tot["l"]["Pss"] / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--seconds", type=float, default=20, help="length of each phase (20)")
    ap.add_argument("--rate", type=float, default=100, help="light load, msg/s (100)")
    ap.add_argument("--every", type=float, default=2, help="sampling period, s (2)")
    ap.add_argument("--warmup", type=float, default=3, help="warm-up before sampling, s (3)")
    ap.add_argument("--prefix", help="an installed baetyl (make install MODE=native, or the "
                                     "release archive) instead of installing the source tree")
    ap.add_argument("--build", default=os.environ.get("BAETYL_BUILD", os.path.join(SRC, "build")),
                    help="the build to install when --prefix is not given ($BAETYL_BUILD)")
    ap.add_argument("--no-runtimes", action="store_true",
                    help="skip the Python and Node runtimes' run")
    ap.add_argument("--top", type=int, default=0, metavar="N",
                    help="also print each process's N largest mappings by PSS (evidence)")
    ap.add_argument("seconds_pos", nargs="?", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.seconds_pos:
        args.seconds = args.seconds_pos
    for tool in ("mosquitto", "openssl"):
        if not shutil.which(tool):
            ap.error(f"{tool} not found")
    work = tempfile.mkdtemp(prefix="bt-fp-inst-")
    try:
        prefix = args.prefix
        if not prefix:
            # `make install` of this source tree would rebuild another tree's build with this
            # tree's sources: that one is measured with its own footprint.py (or --prefix)
            build = os.path.realpath(args.build)
            if os.path.commonpath([build, os.path.realpath(SRC)]) != os.path.realpath(SRC):
                ap.error(f"--build {args.build} is not a build of this source tree ({SRC}); "
                         "run that tree's own test/bench/footprint.py, or pass --prefix")
            prefix = os.path.join(work, "prefix")
            install(os.path.abspath(args.build), prefix)
        certs = os.path.join(work, "certs")
        os.makedirs(certs)
        make_certs(certs)
        c_size, sdk_size, rt_size = installed_sizes(prefix)
        cold, idle, load, notes = run_stack(prefix, args, False, certs)
        rt = None
        if not args.no_runtimes and all(os.path.isdir(os.path.join(prefix, "var/db/baetyl", m))
                                        for m in RUNTIMES):
            rt = run_stack(prefix, args, True, certs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"footprint of the native C stack (stripped install; {args.seconds:.0f} s per phase, "
          f"largest of samples every {args.every:.0f} s; load {args.rate:.0f} msg/s QoS 1 "
          f"through hub and SQL function, forwarded by remote-mqtt)")
    idle_mb, load_mb = table("C stack", idle, load)
    print(f"  load: {notes['sent']} sent, {sum(notes['through'].values())} out of the SQL "
          f"function; agent reports received by the cloud: {notes['reports']}")
    a_idle, a_load = notes["alone"]
    print(f"  {'alone (shared once)':<26}{a_idle / 1024:>8.1f}M{'':>27}{a_load / 1024:>8.1f}M"
          "   (no other program sharing its libraries)")
    first, mid, last = notes["growth"]
    print(f"  under load the stack's private dirty memory was {first / 1024:.2f}M at the first "
          f"sample, {mid / 1024:.2f}M half way and {last / 1024:.2f}M at the last (growth "
          f"{(mid - first) / 1024:+.2f}M in the first half, {(last - mid) / 1024:+.2f}M in the "
          "second); PSS shares each library among every "
          "process of the machine that maps it, private dirty is this stack's alone")
    if notes["tops"]:
        print("  largest mappings, PSS/private dirty:")
    for name, rows in sorted(notes["tops"].items()):
        print(f"  {name}: " + ", ".join(f"{m} {kb / 1024:.1f}/{pd / 1024:.1f}M"
                                        for m, kb, pd in rows))
    if rt:
        r_cold, r_idle, r_load, r_notes = rt
        print()
        table("Python and Node runtimes (their own run with hub + function-manager; "
              f"first output {r_cold:.2f} s after start)",
              {k: v for k, v in r_idle.items() if k in ("function-py", "function-js")},
              {k: v for k, v in r_load.items() if k in ("function-py", "function-js")})
    print()
    parts = [f"C modules {c_size / 1024:.0f} KiB"]
    if sdk_size:
        parts.append(f"SDK (headers + static lib) {sdk_size / 1024:.0f} KiB")
    parts += [f"{m[len('baetyl-function-'):]} runtime {v / 1024:.0f} KiB"
              for m, v in rt_size.items()]
    print("installed (stripped): " + ", ".join(parts))
    res = {"idle_pss_mb": idle_mb, "load_pss_mb": load_mb, "installed_mb": c_size / 2**20,
           "cold_start_s": cold}
    for k, v in res.items():
        print(f"{k:<16} {v:8.2f}  target {TARGETS[k]:5.1f}  "
              f"{'pass' if v <= TARGETS[k] else 'short'}")


if __name__ == "__main__":
    main()
