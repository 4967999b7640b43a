"""Handlers the runtime tests call to see what a function receives and what the runtime
does with what it returns."""
import os
import sys
import time


def context(event, ctx):
    return ctx


def env(event, ctx):
    return {name: os.environ.get(name) for name in event["names"]}


def event_type(event, ctx):
    if isinstance(event, bytes):
        return {"type": "bytes", "hex": event.hex()}
    return {"type": type(event).__name__, "event": event}


def echo(event, ctx):
    return event


def none(event, ctx):
    return None


def raw(event, ctx):
    return b"\x00\xffraw"


def text(event, ctx):
    return "plain text"


def big(event, ctx):
    return b"x" * event["size"]


def sleep(event, ctx):
    time.sleep(event["seconds"])
    return {"slept": event["seconds"], "n": event.get("n")}


def unserialisable(event, ctx):
    return {1, 2}


def exits(event, ctx):
    sys.exit(3)


def hang(event, ctx):
    while True:
        time.sleep(1)


def third_party(event, ctx):
    import more_itertools
    return {"file": more_itertools.__file__,
            "chunks": list(more_itertools.chunked(event["items"], 2))}


def jitter(event, ctx):
    """Takes longer for some inputs than for later ones (so calls in flight side by side end
    out of order); with "fail", the first attempt of each input fails (a file in data/
    remembers it), so its retry ends later still."""
    n = event["n"]
    time.sleep((n * 7 % 5) * 0.02)
    if event.get("fail"):
        try:
            open(f"data/failed-{n}", "x").close()
        except FileExistsError:
            pass
        else:
            raise RuntimeError(f"first attempt of {n} fails")
    return {"n": n}
