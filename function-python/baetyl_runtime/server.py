"""The runtime process: command line, config, the gRPC server of baetyl.Function/Call (and
CallBatch), and a graceful stop on SIGTERM/SIGINT (SPEC §12 "Runtimes", seed chapter 16)."""
import argparse
import os
import signal
import ssl
import sys
import time

from google.protobuf.message import DecodeError

from . import config as cfg
from . import functions, h2grpc, protofile
from .logger import fatal, log

PROGRAM = "baetyl-function-python"
STOP_GRACE = 5.0  # seconds running calls get to finish after SIGTERM
# Set to 1 to serve Call only, as Baetyl 1.0's runtime did (the function-manager then falls
# back to one message per call): for tests of that path.
NO_BATCH_ENV = "BAETYL_RUNTIME_NO_CALLBATCH"
# In a batch's reply a failure's text is cut to this, and room for one (BATCH_ERR_COST
# bytes) is kept for each message still to come, so the reply stays within the limit.
BATCH_ERR_TEXT_MAX = 512
BATCH_ERR_COST = BATCH_ERR_TEXT_MAX + 16
NOT_FOUND, ABORTED = 5, 10  # gRPC status codes (with those of h2grpc)


def find_proto(root):
    """function.proto inside the package (installed) or in the source tree."""
    for p in (os.path.join(root, "proto", "function.proto"),
              os.path.join(root, "..", "proto", "function.proto")):
        if os.path.isfile(p):
            return os.path.normpath(p)
    return None


def listen_address(server_conf):
    """BAETYL_SERVICE_INSTANCE_ADDRESS (a dynamic instance) wins over server.address."""
    for var in ("BAETYL_SERVICE_INSTANCE_ADDRESS", "OPENEDGE_SERVICE_INSTANCE_ADDRESS"):
        if os.environ.get(var):
            return os.environ[var]
    return server_conf["address"]


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise cfg.ConfigError(f"server.{what}: cannot read {path}: {e.strerror}") from None


def _tls_context(sc):
    """The server's TLS context (ALPN h2, as gRPC needs); a ca means client certificates
    are required and checked against it."""
    _read(sc["key"], "key")
    _read(sc["cert"], "cert")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    try:
        ctx.load_cert_chain(sc["cert"], sc["key"])
    except ssl.SSLError as e:
        raise cfg.ConfigError(f"server.cert/key: {sc['cert']}, {sc['key']}: {e}") from None
    if sc["ca"]:
        _read(sc["ca"], "ca")
        try:
            ctx.load_verify_locations(cafile=sc["ca"])
        except ssl.SSLError as e:
            raise cfg.ConfigError(f"server.ca: {sc['ca']}: {e}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Runtime:
    """Serves the loaded functions: Call (one message) and CallBatch (several, in turn, each
    with its own result), each call on the thread that read it (h2grpc), at most
    workers.max at once."""

    def __init__(self, service, fns, server_conf, batch=None):
        self.service = service
        self.fns = fns
        sc = server_conf
        handlers = {service.path: self.call}
        if batch is not None:
            handlers[batch.path] = self.call_batch
        self.batch = batch
        self.message_max = sc["message_max"]
        address = listen_address(sc)
        if not address:
            raise cfg.ConfigError("server.address: required "
                                  "(or set BAETYL_SERVICE_INSTANCE_ADDRESS)")
        if address.startswith("tcp://"):
            address = address[len("tcp://"):]
        tls = _tls_context(sc) if sc["cert"] else None
        try:
            self.server = h2grpc.Server(address, handlers, sc["message_max"], sc["workers"],
                                        sc["concurrent"], tls)
        except (OSError, ValueError) as e:
            raise cfg.ConfigError(f"cannot listen on {address}: {e}") from None
        self.address = address

    def run(self, req):
        """One message: its reply payload, or raises h2grpc.Status(code, text)."""
        fn = self.fns.get(req.FunctionName)
        if fn is None:
            log.warn("function not found", function=req.FunctionName)
            raise h2grpc.Status(NOT_FOUND, f"function not found: ({req.FunctionName})")
        debug = log.enabled("debug")
        start = time.monotonic() if debug else 0
        try:
            payload = functions.invoke(fn, req)
        except functions.UserError as e:
            log.error("function failed", function=req.FunctionName,
                      invokeid=req.FunctionInvokeID, error=str(e))
            if getattr(e, "trace", None):
                log.debug("traceback", function=req.FunctionName, trace=e.trace)
            raise h2grpc.Status(h2grpc.UNKNOWN, str(e)) from None
        if debug:
            log.debug("function called", function=req.FunctionName, invokeid=req.FunctionInvokeID,
                      bytes_in=len(req.Payload), bytes_out=len(payload),
                      ms=f"{(time.monotonic() - start) * 1000:.3f}")
        return payload

    def _parse(self, cls, body):
        try:
            return cls.FromString(body)
        except (DecodeError, RuntimeWarning):
            raise h2grpc.Status(h2grpc.INTERNAL, "Exception deserializing request!") from None

    def call(self, body):
        req = self._parse(self.service.request, body)
        payload = self.run(req)
        # The reply echoes the request (ID, QOS, Topic… as Baetyl 1.0) with the result.
        return self.service.response(
            ID=req.ID, QOS=req.QOS, Topic=req.Topic, Payload=payload, Timestamp=req.Timestamp,
            FunctionName=req.FunctionName, FunctionInvokeID=req.FunctionInvokeID
        ).SerializeToString()

    def call_batch(self, body):
        """Each message as Call would run it; a failure is that message's result only. A
        reply that would take the batch's reply over the limit is left out: Aborted, the
        caller calls that message again (the first one is always kept)."""
        req = self._parse(self.batch.request, body)
        out = self.batch.response()
        n, size = len(req.Messages), 0
        for i, m in enumerate(req.Messages):
            r = out.Results.add()
            try:
                payload = self.run(m)
            except h2grpc.Status as f:
                r.Code = f.code
                r.Error = f.text[:BATCH_ERR_TEXT_MAX]
                size += len(r.Error) + 16
                continue
            add = m.ByteSize() - len(m.Payload) + len(payload) + 16
            if i > 0 and size + add + (n - i - 1) * BATCH_ERR_COST > self.message_max:
                r.Code = ABORTED
                r.Error = "the batch's reply is full: call again"
                size += 64
                continue
            size += add
            r.Message.CopyFrom(m)
            r.Message.Payload = payload
        return out.SerializeToString()

    def start(self):
        self.server.start()

    def stop(self):
        self.server.stop(STOP_GRACE)


def _args(argv):
    p = argparse.ArgumentParser(prog=PROGRAM, description="Baetyl Python 3 function runtime: "
                                "serves baetyl.Function/Call (and CallBatch) with the handlers of "
                                "its config.")
    p.add_argument("-c", "--config", help=f"config file (default {cfg.DEFAULT_PATH})")
    return p.parse_args(argv)


def main(root, argv=None):
    """Runs the runtime until SIGTERM/SIGINT; returns the exit code."""
    args = _args(sys.argv[1:] if argv is None else argv)
    # SIGTERM/SIGINT are blocked before gRPC starts its threads (they inherit the mask) and
    # taken with sigwait below: a Python handler only runs when the main thread wakes up,
    # and a signal delivered to a gRPC thread would not wake it.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    name = os.environ.get("BAETYL_SERVICE_NAME") or os.environ.get("OPENEDGE_SERVICE_NAME")
    if name:
        log.set_field("service", name)
        inst = (os.environ.get("BAETYL_SERVICE_INSTANCE_NAME")
                or os.environ.get("OPENEDGE_SERVICE_INSTANCE_NAME"))
        if inst:
            log.set_field("instance", inst)

    try:
        conf, path = cfg.load(args.config, warn=lambda v: log.warn(
            f"config: environment variable {v} is not set"))
        log.configure(conf["logger"])
    except cfg.ConfigError as e:
        fatal("failed to load config", error=str(e))
        return 1
    except OSError as e:
        fatal("failed to open log file", error=f"{e.filename}: {e.strerror}")
        return 1
    log.info("service starting", program=PROGRAM, config=path or cfg.DEFAULT_PATH)
    if path is None:
        log.info("no config file, using defaults", file=args.config or cfg.DEFAULT_PATH)

    proto = find_proto(root)
    if proto is None:
        fatal("function.proto not found", package=root)
        return 1
    try:
        methods = protofile.load_methods(proto, "Function", ("Call", "CallBatch"))
    except (OSError, protofile.ProtoError) as e:
        fatal("cannot read function.proto", file=proto, error=str(e))
        return 1
    service = methods["Call"]
    batch = None if os.environ.get(NO_BATCH_ENV) == "1" else methods.get("CallBatch")

    fns = {}
    try:
        for fc in conf["functions"]:
            fns[fc["name"]] = functions.load(fc)
            log.info("function loaded", function=fc["name"], handler=fc["handler"],
                     codedir=fc["codedir"])
        rt = Runtime(service, fns, conf["server"], batch)
        rt.start()
    except (functions.LoadError, cfg.ConfigError) as e:
        fatal(str(e))
        return 1
    if not fns:
        log.warn("no functions configured")
    log.info("server started", address=rt.address, functions=len(fns),
             message_max=conf["server"]["message_max"], callbatch=batch is not None)

    signal.sigwait(stop_signals)
    rt.stop()
    log.info("service closed")
    return 0


def run(root):
    """Entry point of the bin script. Exits with os._exit: a user handler stuck in a
    worker thread must not keep the process alive after a stop (the pool joins its
    threads at interpreter exit)."""
    try:
        code = main(root)
    except SystemExit as e:  # argparse: --help, bad options
        code = e.code if isinstance(e.code, int) else 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
