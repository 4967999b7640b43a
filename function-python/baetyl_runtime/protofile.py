"""Message classes built at startup from proto/function.proto, so that the .proto file stays
the single source of truth without a protoc Python plugin.

Reads the subset of proto3 that a service definition file uses: syntax, package, option,
messages of scalar (or message) fields, `repeated`, `reserved`, and services of unary rpcs.
Anything else (imports, enums, oneofs, maps, streams) is refused with its line number."""
import re

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "double": _F.TYPE_DOUBLE, "float": _F.TYPE_FLOAT, "int64": _F.TYPE_INT64,
    "uint64": _F.TYPE_UINT64, "int32": _F.TYPE_INT32, "fixed64": _F.TYPE_FIXED64,
    "fixed32": _F.TYPE_FIXED32, "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES, "uint32": _F.TYPE_UINT32, "sfixed32": _F.TYPE_SFIXED32,
    "sfixed64": _F.TYPE_SFIXED64, "sint32": _F.TYPE_SINT32, "sint64": _F.TYPE_SINT64,
}

_TOKEN = re.compile(r"""
    (?P<space>\s+) | (?P<line>//[^\n]*) | (?P<block>/\*.*?\*/) |
    (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<ident>[A-Za-z_][A-Za-z0-9_.]*) | (?P<num>[0-9]+) | (?P<sym>[{}()\[\];=,<>])
""", re.S | re.X)


class ProtoError(ValueError):
    """A .proto text this reader does not accept; the message names the line."""


def _tokens(text):
    pos, line = 0, 1
    out = []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ProtoError(f"line {line}: unexpected character {text[pos]!r}")
        kind = m.lastgroup
        if kind not in ("space", "line", "block"):
            out.append((kind, m.group(), line))
        line += m.group().count("\n")
        pos = m.end()
    return out


class _Reader:
    def __init__(self, text):
        self.toks = _tokens(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def line(self):
        return self.toks[min(self.i, len(self.toks) - 1)][2] if self.toks else 1

    def next(self, kind=None):
        if self.i >= len(self.toks):
            raise ProtoError(f"line {self.line()}: unexpected end of file")
        k, v, ln = self.toks[self.i]
        if kind and k != kind:
            raise ProtoError(f"line {ln}: expected {kind}, found {v!r}")
        self.i += 1
        return v

    def expect(self, value):
        v = self.next()
        if v != value:
            raise ProtoError(f"line {self.toks[self.i - 1][2]}: expected {value!r}, found {v!r}")

    def skip_statement(self):
        """Skips an `option …;` or `reserved …;` statement."""
        while self.next() != ";":
            pass


def _json_name(name):
    """protoc's ToJsonName: underscores removed, the letter after each one capitalised."""
    out, upper = [], False
    for c in name:
        if c == "_":
            upper = True
        else:
            out.append(c.upper() if upper else c)
            upper = False
    return "".join(out)


def _message(r, fdp_msg):
    fdp_msg.name = r.next("ident")
    r.expect("{")
    while r.peek() != "}":
        word = r.peek()
        if word in ("option", "reserved"):
            r.skip_statement()
            continue
        if word == ";":
            r.next()
            continue
        f = fdp_msg.field.add()
        f.label = _F.LABEL_OPTIONAL
        if word == "repeated":
            r.next()
            f.label = _F.LABEL_REPEATED
        line = r.line()
        typ = r.next("ident")
        if typ in ("message", "enum", "oneof", "map", "optional", "group", "extend"):
            raise ProtoError(f"line {line}: {typ!r} is not supported here")
        if typ in SCALARS:
            f.type = SCALARS[typ]
        else:
            f.type = _F.TYPE_MESSAGE
            f.type_name = typ  # resolved once the package is known
        f.name = r.next("ident")
        f.json_name = _json_name(f.name)
        r.expect("=")
        f.number = int(r.next("num"))
        if r.peek() == "[":
            while r.next() != "]":
                pass
        r.expect(";")
    r.expect("}")


def _service(r, fdp_svc):
    fdp_svc.name = r.next("ident")
    r.expect("{")
    while r.peek() != "}":
        word = r.next()
        if word == "option":
            r.skip_statement()
            continue
        if word == ";":
            continue
        if word != "rpc":
            raise ProtoError(f"line {r.toks[r.i - 1][2]}: expected rpc, found {word!r}")
        m = fdp_svc.method.add()
        m.name = r.next("ident")
        r.expect("(")
        if r.peek() == "stream":
            raise ProtoError(f"line {r.line()}: streaming rpcs are not supported")
        m.input_type = r.next("ident")
        r.expect(")")
        r.expect("returns")
        r.expect("(")
        if r.peek() == "stream":
            raise ProtoError(f"line {r.line()}: streaming rpcs are not supported")
        m.output_type = r.next("ident")
        r.expect(")")
        if r.peek() == "{":
            r.next()
            m.options.SetInParent()  # protoc records an (empty) options block here
            while r.peek() != "}":
                if r.next() == "option":
                    r.skip_statement()
            r.next()
        else:
            r.expect(";")
    r.expect("}")


def parse(text, filename="function.proto"):
    """Returns the FileDescriptorProto of a .proto text (the subset above)."""
    fdp = descriptor_pb2.FileDescriptorProto(name=filename)
    r = _Reader(text)
    while r.peek() is not None:
        word = r.next()
        if word == "syntax":
            r.expect("=")
            s = r.next("str")[1:-1]
            if s != "proto3":
                raise ProtoError(f"line {r.line()}: only proto3 is supported, not {s!r}")
            fdp.syntax = s
            r.expect(";")
        elif word == "package":
            fdp.package = r.next("ident")
            r.expect(";")
        elif word == "option":
            r.skip_statement()
        elif word == "message":
            _message(r, fdp.message_type.add())
        elif word == "service":
            _service(r, fdp.service.add())
        elif word == ";":
            continue
        else:
            raise ProtoError(f"line {r.toks[r.i - 1][2]}: {word!r} is not supported here")
    if fdp.syntax != "proto3":
        raise ProtoError("missing syntax = \"proto3\"")
    names = {m.name for m in fdp.message_type}
    prefix = "." + fdp.package if fdp.package else ""

    def full(name):
        short = name[len(fdp.package) + 1:] if fdp.package and name.startswith(fdp.package + ".") else name
        if short not in names:
            raise ProtoError(f"unknown message type {name!r}")
        return f"{prefix}.{short}"
    for m in fdp.message_type:
        for f in m.field:
            if f.type == _F.TYPE_MESSAGE:
                f.type_name = full(f.type_name)
    for s in fdp.service:
        for m in s.method:
            m.input_type = full(m.input_type)
            m.output_type = full(m.output_type)
    return fdp


class Service:
    """The message classes and method names of one service of a .proto file."""

    def __init__(self, fdp, service_name, method_name):
        svc = next((s for s in fdp.service if s.name == service_name), None)
        if svc is None:
            raise ProtoError(f"no service {service_name!r} in {fdp.name}")
        meth = next((m for m in svc.method if m.name == method_name), None)
        if meth is None:
            raise ProtoError(f"no rpc {method_name!r} in service {service_name!r}")
        pool = descriptor_pool.DescriptorPool()
        pool.Add(fdp)
        self.full_service = f"{fdp.package}.{svc.name}" if fdp.package else svc.name
        self.method = meth.name
        self.path = f"/{self.full_service}/{meth.name}"
        self.request = _message_class(pool, meth.input_type.lstrip("."))
        self.response = _message_class(pool, meth.output_type.lstrip("."))


def _message_class(pool, name):
    desc = pool.FindMessageTypeByName(name)
    get = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if get:
        return get(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def load(path, service_name="Function", method_name="Call"):
    """Reads a .proto file and returns the Service for service_name/method_name."""
    return load_methods(path, service_name, (method_name,))[method_name]


def load_methods(path, service_name, method_names):
    """Reads a .proto file once; returns {method: Service} for those of method_names that
    service_name has (the first one is required)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    fdp = parse(text, filename=path.rsplit("/", 1)[-1])
    svc = next((s for s in fdp.service if s.name == service_name), None)
    have = {m.name for m in svc.method} if svc else set()
    out = {}
    for i, name in enumerate(method_names):
        if i == 0 or name in have:
            out[name] = Service(fdp, service_name, name)
    return out
