"""The runtime process: command line, config, the gRPC server of baetyl.Function/Call (and
CallBatch), and a graceful stop on SIGTERM/SIGINT (SPEC §12 "Runtimes", seed chapter 16)."""
import argparse
import os
import signal
import sys
import time
from concurrent import futures

import grpc

from . import config as cfg
from . import functions, protofile
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


class Runtime:
    """Serves the loaded functions: Call (one message) and CallBatch (several, in turn, each
    with its own result), concurrently on a thread pool."""

    def __init__(self, service, fns, server_conf, batch=None):
        self.service = service
        self.fns = fns
        sc = server_conf
        self.pool = futures.ThreadPoolExecutor(max_workers=sc["workers"])
        opts = [("grpc.max_receive_message_length", sc["message_max"]),
                ("grpc.max_send_message_length", sc["message_max"]),
                ("grpc.so_reuseport", 0)]
        self.server = grpc.server(self.pool, options=opts,
                                  maximum_concurrent_rpcs=sc["concurrent"])
        handler = grpc.unary_unary_rpc_method_handler(
            self.call, request_deserializer=service.request.FromString,
            response_serializer=service.response.SerializeToString)
        handlers = {service.method: handler}
        if batch is not None:
            handlers[batch.method] = grpc.unary_unary_rpc_method_handler(
                self.call_batch, request_deserializer=batch.request.FromString,
                response_serializer=batch.response.SerializeToString)
        self.batch = batch
        self.message_max = sc["message_max"]
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.full_service, handlers),))
        address = listen_address(sc)
        if not address:
            raise cfg.ConfigError("server.address: required (or set BAETYL_SERVICE_INSTANCE_ADDRESS)")
        if address.startswith("tcp://"):
            address = address[len("tcp://"):]
        try:
            if sc["cert"]:
                pairs = [(_read(sc["key"], "key"), _read(sc["cert"], "cert"))]
                ca = _read(sc["ca"], "ca") if sc["ca"] else None
                creds = grpc.ssl_server_credentials(pairs, root_certificates=ca,
                                                    require_client_auth=ca is not None)
                port = self.server.add_secure_port(address, creds)
            else:
                port = self.server.add_insecure_port(address)
        except RuntimeError as e:
            raise cfg.ConfigError(f"cannot listen on {address}: {e}") from None
        if not port:
            raise cfg.ConfigError(f"cannot listen on {address}")
        self.address = address

    def run(self, req):
        """One message: its reply payload, or raises _Failed(code, text)."""
        fn = self.fns.get(req.FunctionName)
        if fn is None:
            log.warn("function not found", function=req.FunctionName)
            raise _Failed(grpc.StatusCode.NOT_FOUND, f"function not found: ({req.FunctionName})")
        debug = log.enabled("debug")
        start = time.monotonic() if debug else 0
        try:
            payload = functions.invoke(fn, req)
        except functions.UserError as e:
            log.error("function failed", function=req.FunctionName,
                      invokeid=req.FunctionInvokeID, error=str(e))
            if getattr(e, "trace", None):
                log.debug("traceback", function=req.FunctionName, trace=e.trace)
            raise _Failed(grpc.StatusCode.UNKNOWN, str(e)) from None
        if debug:
            log.debug("function called", function=req.FunctionName, invokeid=req.FunctionInvokeID,
                      bytes_in=len(req.Payload), bytes_out=len(payload),
                      ms=f"{(time.monotonic() - start) * 1000:.3f}")
        return payload

    def call(self, req, context):
        try:
            payload = self.run(req)
        except _Failed as f:
            context.abort(f.code, f.text)
        # The reply echoes the request (ID, QOS, Topic… as Baetyl 1.0) with the result.
        return self.service.response(
            ID=req.ID, QOS=req.QOS, Topic=req.Topic, Payload=payload, Timestamp=req.Timestamp,
            FunctionName=req.FunctionName, FunctionInvokeID=req.FunctionInvokeID)

    def call_batch(self, req, context):
        """Each message as Call would run it; a failure is that message's result only. A
        reply that would take the batch's reply over the limit is left out: Aborted, the
        caller calls that message again (the first one is always kept)."""
        out = self.batch.response()
        n, size = len(req.Messages), 0
        for i, m in enumerate(req.Messages):
            r = out.Results.add()
            try:
                payload = self.run(m)
            except _Failed as f:
                r.Code = f.code.value[0]
                r.Error = f.text[:BATCH_ERR_TEXT_MAX]
                size += len(r.Error) + 16
                continue
            add = m.ByteSize() - len(m.Payload) + len(payload) + 16
            if i > 0 and size + add + (n - i - 1) * BATCH_ERR_COST > self.message_max:
                r.Code = grpc.StatusCode.ABORTED.value[0]
                r.Error = "the batch's reply is full: call again"
                size += 64
                continue
            size += add
            r.Message.CopyFrom(m)
            r.Message.Payload = payload
        return out

    def start(self):
        self.server.start()

    def stop(self):
        self.server.stop(STOP_GRACE).wait(STOP_GRACE + 1)


class _Failed(Exception):
    """A message that failed: the gRPC status code and text Call answers with."""

    def __init__(self, code, text):
        super().__init__(text)
        self.code = code
        self.text = text


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
