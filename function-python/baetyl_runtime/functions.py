"""User functions: loading `module.func` handlers from their codedir, and one call with
Baetyl's conventions for event, context and result (SPEC §12, seed chapter 12)."""
import importlib
import json
import os
import sys
import traceback


class LoadError(Exception):
    """A function that cannot be loaded; the message names the function."""


class UserError(Exception):
    """A failure inside user code; str() is the text for the caller."""


def _under(path, directory):
    try:
        return os.path.commonpath([os.path.realpath(path), directory]) == directory
    except ValueError:
        return False


def _forget(modname):
    """Drops a module (and its submodules) from the import cache."""
    top = modname.split(".")[0]
    for name in list(sys.modules):
        if name == top or name.startswith(top + "."):
            del sys.modules[name]


def load(fc):
    """Imports the handler of one configured function ({name, handler, codedir}).
    The codedir goes first on sys.path, so packages shipped in it win over the system's."""
    name, handler, codedir = fc["name"], fc["handler"], fc["codedir"]
    modname, _, funcname = handler.rpartition(".")
    if not modname or not funcname or any(not p.isidentifier() for p in handler.split(".")):
        raise LoadError(f"function ({name}): handler ({handler}) must be <module>.<function>, "
                        "e.g. index.handler")
    if not os.path.isdir(codedir):
        raise LoadError(f"function ({name}): codedir ({codedir}) is not a directory")
    real = os.path.realpath(codedir)
    if real not in sys.path:
        sys.path.insert(0, real)
    # Two functions may each have an index.py in different codedirs: import afresh when the
    # cached module comes from elsewhere (the first function keeps its own module object).
    cached = sys.modules.get(modname)
    if cached is not None and not _under(getattr(cached, "__file__", None) or "", real):
        _forget(modname)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(modname)
    except BaseException as e:  # SyntaxError, ImportError, anything the module raises
        raise LoadError(f"function ({name}): cannot import module ({modname}) from codedir "
                        f"({codedir}): {type(e).__name__}: {e}") from None
    fn = getattr(module, funcname, None)
    if fn is None:
        raise LoadError(f"function ({name}): module ({modname}) has no function ({funcname})")
    if not callable(fn):
        raise LoadError(f"function ({name}): {handler} is not callable")
    return fn


def event_of(payload):
    """The event a handler receives: {} for an empty payload, the decoded JSON value when
    the payload is JSON, else the raw bytes."""
    if not payload:
        return {}
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deeply
        return bytes(payload)


def context_of(msg):
    """The context dict of seed chapter 12 (invokeid is the CFC spelling)."""
    return {
        "messageQOS": msg.QOS,
        "messageTopic": msg.Topic,
        "messageTimestamp": msg.Timestamp,
        "functionName": msg.FunctionName,
        "functionInvokeID": msg.FunctionInvokeID,
        "invokeid": msg.FunctionInvokeID,
    }


def payload_of(result):
    """The reply payload: None -> empty, bytes -> as is, anything else -> JSON."""
    if result is None:
        return b""
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result)
    try:
        return json.dumps(result).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        raise UserError(f"[UserCodeReturn] the result is not JSON serialisable: "
                        f"{type(e).__name__}: {e}") from None


def invoke(fn, msg):
    """Runs a handler on a request message; returns the reply payload or raises UserError
    (the traceback is kept in .trace for the log)."""
    event = event_of(msg.Payload)
    try:
        result = fn(event, context_of(msg))
    except BaseException as e:  # SystemExit from user code must not stop the service
        err = UserError(f"[UserCodeInvoke] {type(e).__name__}: {e}")
        err.trace = traceback.format_exc()
        raise err from None
    return payload_of(result)
