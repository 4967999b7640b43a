"""Acceptance tests of the three function runtimes (baetyl-function-python, -node, -sql)
written from SPEC §12 ("Runtimes", "SQL") and the seed's chapters 6.4, 9, 12-16 and 18
only, sentence by sentence, as a user of Baetyl 1.0 would check them. The user functions
are the seed's own code, written into temporary code dirs; every runtime is the real
process on a free port of 127.0.0.1, called over gRPC with the protoc-built client of
runtime_harness.py. What test_runtime_{python,node,sql}.py already pin is not repeated.

Readings picked where SPEC is silent (a user's expectation, said here once):
- Node, empty payload: event is {} as in Python (Baetyl 1.0's node runtime did the same).
- SQL: LIKE wildcards are SQL's % and _; substring() counts from 1 like SQL and topic(n);
  length() counts characters; concat() writes a number as its text; integer arithmetic
  compares equal to the float of the same value (3 == 3.0); the error position is the
  1-based character position of the offending token.
"""
import json
import os
import re
import textwrap

import grpc
import pytest

from conftest import free_port
from runtime_harness import (INVOKE_ID, Rt, assert_clean_exit, assert_json, make_certs, refused,
                             tls_credentials, yaml_of)
from runtime_harness import rt  # noqa: F401  (fixture)

KINDS = ("python", "node", "sql")


def write(directory, files):
    """Writes {relative path: text} under directory (dedented)."""
    for rel, text in files.items():
        p = os.path.join(str(directory), rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(textwrap.dedent(text).lstrip("\n"))


# ---- the seed's functions, verbatim ----------------------------------------------------------

SEED_CH9_INDEX_PY = '''
#!/usr/bin/env python
# -*- coding:utf-8 -*-
"""
function to say hi in python
"""

def handler(event, context):
    """
    function handler
    """
    res = {}
    if isinstance(event, dict):
        if "err" in event:
            raise TypeError(event['err'])
        res = event
    elif isinstance(event, bytes):
        res['bytes'] = event.decode("utf-8")

    if 'messageQOS' in context:
        res['messageQOS'] = context['messageQOS']
    if 'messageTopic' in context:
        res['messageTopic'] = context['messageTopic']
    if 'messageTimestamp' in context:
        res['messageTimestamp'] = context['messageTimestamp']
    if 'functionName' in context:
        res['functionName'] = context['functionName']
    if 'functionInvokeID' in context:
        res['functionInvokeID'] = context['functionInvokeID']

    res['Say'] = 'Hello Baetyl'
    return res
'''

SEED_CH9_INDEX_JS = '''
#!/usr/bin/env node

const hasAttr = (obj, attr) => {
    if (obj instanceof Object && !(obj instanceof Array)) {
        if (obj[attr] !== undefined) {
            return true;
        }
    }
    return false;
};

const passParameters = (event, context) => {
    if (hasAttr(context, 'messageQOS')) {
        event['messageQOS'] = context['messageQOS'];
    }
    if (hasAttr(context, 'messageTopic')) {
        event['messageTopic'] = context['messageTopic'];
    }
    if (hasAttr(context, 'messageTimestamp')) {
        event['messageTimestamp'] = context['messageTimestamp'];
    }
    if (hasAttr(context, 'functionName')) {
        event['functionName'] = context['functionName'];
    }
    if (hasAttr(context, 'functionInvokeID')) {
        event['functionInvokeID'] = context['functionInvokeID'];
    }
};

exports.handler = (event, context, callback) => {
    // support Buffer & json object
    if (Buffer.isBuffer(event)) {
        const message = event.toString();
        event = {}
        event["bytes"] = message;
    }
    else if("err" in event) {
        return callback(new TypeError(event['err']))
    }

    passParameters(event, context);
    event['Say'] = 'Hello Baetyl'
    callback(null, event);
};
'''

SEED_CH12_SAYHI_PY = '''
#!/usr/bin/env python3
# -*- coding: utf-8 -*-

def handler(event, context):
    result = {}
    if isinstance(event, dict):
        result['msg'] = event
        result['type'] = 'dict'
        result['say'] = 'hello world'
    else:
        result['msg'] = event.decode("utf-8")
        result['type'] = 'non-dict'
        result['say'] = 'hello world'

    return result
'''

SEED_CH13_INDEX_JS = '''
#!/usr/bin/env node

exports.handler = (event, context, callback) => {
  result = {};

  if (Buffer.isBuffer(event)) {
    const message = event.toString();
    result["msg"] = message;
    result["type"] = 'non-dict';
  } else {
    result["msg"] = event;
    result["type"] = 'dict';
  }

  result["say"] = 'hello world';
  callback(null, result);
};
'''

SEED_CH14_GET_PY = '''
#!/usr/bin/env python3
# -*- coding: utf-8 -*-

import requests

def handler(event, context):
    """
    data: {"action": "A"}
    """
    if 'action' in event:
        if event['action'] == 'A':
            r = requests.get('https://baidu.com')
            if str(r.status_code) == '200':
                event['info'] = dict(r.headers)
            else:
                event['info'] = 'exception found'
        else:
            event['info'] = 'action error'
    else:
        event['error'] = 'action not found'

    return event
'''

# A stand-in for the `requests` package of chapter 14, laid out as `pip download` + unzip
# leaves it (a package directory with relative imports), so no network is needed.
FAKE_REQUESTS = {
    "requests/__init__.py": "from .api import get  # noqa: F401\n",
    "requests/api.py": """
        from .models import Response


        def get(url):
            return Response(200, {"Server": "fake-" + url.split("//")[1], "Content-Length": "81"})
        """,
    "requests/models.py": """
        class Response:
            def __init__(self, status_code, headers):
                self.status_code = status_code
                self.headers = headers
        """,
}

SEED_CH14_CALC_PY = '''
#!/usr/bin/env python3
# -*- coding: utf-8 -*-

import torch

def handler(event, context):
    """
    data: {"action": "B"}
    """
    if 'action' in event:
        if event['action'] == 'B':
            x = torch.rand(5, 3)
            event['info'] = x.tolist()
        else:
            event['info'] = 'exception found'
    else:
        event['error'] = 'action not found'

    return event
'''

# A stand-in for chapter 14.2's Pytorch: a package beside a single-file module (six.py).
FAKE_TORCH = {
    "six.py": "PY3 = True\n",
    "torch/__init__.py": "import six\nfrom ._tensor import rand  # noqa: F401\nassert six.PY3\n",
    "torch/_tensor.py": """
        class Tensor:
            def __init__(self, rows):
                self.rows = rows

            def tolist(self):
                return [list(r) for r in self.rows]


        def rand(n, m):
            return Tensor([[0.5] * m for _ in range(n)])
        """,
}

FILTER = "select qos() as qos, topic() as topic, * where id < 10"
TEMPERATURE = "SELECT temperature, ts, unit WHERE temperature > 50"


def seed_runtime(procs, kind, tmp_path):
    """The seed's chapter 9 service: config file as printed (no server section: the
    address comes from BAETYL_SERVICE_INSTANCE_ADDRESS as for a dynamic instance), code in
    the relative codedir var/db/baetyl/function-sayhi of the service's work dir."""
    port = free_port()
    work = tmp_path / f"seed-{kind}"
    if kind == "python":
        config = """
            functions:
            - name: 'python36-sayhi'
              handler: 'index.handler'
              codedir: 'var/db/baetyl/function-sayhi'
            """
        write(work, {"var/db/baetyl/function-sayhi/index.py": SEED_CH9_INDEX_PY})
    elif kind == "node":
        config = """
            functions:
            - name: 'node85-sayhi'
              handler: 'index.handler'
              codedir: 'var/db/baetyl/function-sayhi'
            """
        write(work, {"var/db/baetyl/function-sayhi/index.js": SEED_CH9_INDEX_JS})
    else:
        config = """
            functions:
            - name: sql-filter
              handler: 'select qos() as qos, topic() as topic, * where id < 10'
            """
    write(work, {"etc/baetyl/service.yml": config})
    r = Rt(procs, kind, work, None, env={"BAETYL_SERVICE_INSTANCE_ADDRESS": f"127.0.0.1:{port}"})
    return r, port


# ---- seed chapter 9: the three runtimes of the message-processing tutorial -------------------

@pytest.mark.parametrize("kind,name", [("python", "python36-sayhi"), ("node", "node85-sayhi")])
def test_seed_chapter9_sayhi_exact_outputs(procs, tmp_path, kind, name):
    r, port = seed_runtime(procs, kind, tmp_path)
    r.start(port=port)
    c = r.client(port)
    ctx = (f'"messageQOS":1,"messageTopic":"t","messageTimestamp":1569247749,'
           f'"functionName":"{name}","functionInvokeID":"{INVOKE_ID}"')
    full = dict(QOS=1, Topic="t", Timestamp=1569247749, FunctionInvokeID=INVOKE_ID)
    # The tutorial's message {"id":1} on topic t.
    assert_json(c.call(name, b'{"id":1}', **full).Payload,
                '{"id":1,' + ctx + ',"Say":"Hello Baetyl"}')
    # Not JSON: the function receives the raw bytes / a Buffer.
    assert_json(c.call(name, "温度 high".encode(), **full).Payload,
                '{"bytes":"温度 high",' + ctx + ',"Say":"Hello Baetyl"}')
    # Empty payload: event {} (SPEC for Python; the same reading for Node).
    assert_json(c.call(name, b"", **full).Payload, "{" + ctx + ',"Say":"Hello Baetyl"}')
    # The function raises / calls back an error: a gRPC error with [UserCodeInvoke].
    with pytest.raises(grpc.RpcError) as e:
        c.call(name, b'{"err":"sensor offline"}', **full)
    assert e.value.code() != grpc.StatusCode.OK
    assert "[UserCodeInvoke]" in e.value.details(), e.value.details()
    assert "TypeError" in e.value.details() and "sensor offline" in e.value.details()
    assert "service starting" in r.output()
    out = assert_clean_exit(r)
    assert "service closed" in out


def test_seed_chapter9_sql_filter_exact_outputs(procs, tmp_path):
    r, port = seed_runtime(procs, "sql", tmp_path)
    r.start(port=port)
    c = r.client(port)
    # The function-manager's rule subscribes with QoS 1: the message arrives as QoS 1.
    assert c.call("sql-filter", b'{"id":1}', QOS=1, Topic="t").Payload == \
        b'{"qos":1,"topic":"t","id":1}'
    assert_json(c.call("sql-filter", b'{"id":9,"name":"dev"}', QOS=0, Topic="t").Payload,
                '{"qos":0,"topic":"t","id":9,"name":"dev"}')
    assert c.call("sql-filter", b'{"id":10}', QOS=1, Topic="t").Payload == b""
    assert c.call("sql-filter", b'{"name":"no id"}', QOS=1, Topic="t").Payload == b""
    assert_clean_exit(r)


def test_seed_chapter18_temperature_exact_output(rt):
    port = free_port()
    r = rt("sql", yaml_of({"server": {"address": f"127.0.0.1:{port}"},
                           "functions": [{"name": "filter", "handler": TEMPERATURE}]}),
           port=port)
    c = r.client(port)
    # The chapter's sample message (its comments removed: they are not JSON).
    msg = {"temperature": 67.5, "ts": 1568817178, "deviceid": "dev001", "factory": "shanghai",
           "type": "temperature tensor", "unit": "℃"}
    out = c.call("filter", json.dumps(msg, ensure_ascii=False).encode(), Topic="data").Payload
    assert_json(out, '{"temperature":67.5,"ts":1568817178,"unit":"℃"}')
    msg["temperature"] = 50
    assert c.call("filter", json.dumps(msg).encode(), Topic="data").Payload == b""
    msg["temperature"] = -3.5
    assert c.call("filter", json.dumps(msg).encode(), Topic="data").Payload == b""


# ---- seed chapters 12 and 13: Hello World and the documented layouts -----------------------

def test_seed_chapter12_python_hello_world(rt, tmp_path):
    """Chapter 12.1: function sayhi3, handler sayhi.handler, codedir given relative to the
    service's work dir and holding __init__.py and sayhi.py."""
    port = free_port()
    r = rt("python", None, start=False)
    write(r.dir, {"etc/baetyl/service.yml": f"""
        server:
          address: 127.0.0.1:{port}
        functions:
        - name: 'sayhi3'
          handler: 'sayhi.handler'
          codedir: 'var/db/baetyl/function-sayhi'
        """,
                  "var/db/baetyl/function-sayhi/__init__.py": "",
                  "var/db/baetyl/function-sayhi/sayhi.py": SEED_CH12_SAYHI_PY})
    r.start(port=port)
    c = r.client(port)
    assert_json(c.call("sayhi3", b'{"a":"b"}').Payload,
                '{"msg":{"a":"b"},"type":"dict","say":"hello world"}')
    assert_json(c.call("sayhi3", b"abc").Payload,
                '{"msg":"abc","type":"non-dict","say":"hello world"}')
    assert_json(c.call("sayhi3", b"").Payload, '{"msg":{},"type":"dict","say":"hello world"}')


def test_seed_chapter13_node_hello_world(rt):
    port = free_port()
    r = rt("node", None, start=False)
    write(r.dir, {"etc/baetyl/service.yml": f"""
        server:
          address: 127.0.0.1:{port}
        functions:
        - name: 'sayhi'
          handler: 'index.handler'
          codedir: 'var/db/baetyl/function-sayhi'
        """,
                  "var/db/baetyl/function-sayhi/index.js": SEED_CH13_INDEX_JS})
    r.start(port=port)
    c = r.client(port)
    assert c.call("sayhi", b'{"a":"b"}').Payload == \
        b'{"msg":{"a":"b"},"type":"dict","say":"hello world"}'
    assert c.call("sayhi", b"abc").Payload == b'{"msg":"abc","type":"non-dict","say":"hello world"}'
    assert c.call("sayhi", b"").Payload == b'{"msg":{},"type":"dict","say":"hello world"}'


# ---- seed chapters 14 and 15: third-party packages shipped in codedir ----------------------

def test_seed_chapter14_package_copied_into_codedir(rt):
    """The layout `pip download` + unzip + `touch __init__.py` leaves: package directories
    and single-file modules beside get.py and calc.py; the codedir's copy is the one
    imported (not a system requests)."""
    port = free_port()
    code_rel = "var/db/baetyl/function-sayhi"
    r = rt("python", yaml_of({"server": {"address": f"127.0.0.1:{port}"},
                              "functions": [{"name": "sayhi3", "handler": "get.handler",
                                             "codedir": code_rel},
                                            {"name": "calc", "handler": "calc.handler",
                                             "codedir": code_rel}]}),
           start=False)
    write(os.path.join(r.dir, code_rel),
          dict(FAKE_REQUESTS, **FAKE_TORCH, **{"__init__.py": "", "get.py": SEED_CH14_GET_PY,
                                               "calc.py": SEED_CH14_CALC_PY}))
    r.start(port=port)
    c = r.client(port)
    assert_json(c.call("sayhi3", b'{"action": "A"}').Payload,
                '{"action":"A","info":{"Server":"fake-baidu.com","Content-Length":"81"}}')
    assert_json(c.call("sayhi3", b'{"action": "B"}').Payload,
                '{"action":"B","info":"action error"}')
    assert_json(c.call("sayhi3", b'{}').Payload, '{"error":"action not found"}')
    assert_json(c.call("calc", b'{"action": "B"}').Payload,
                '{"action":"B","info":' + json.dumps([[0.5] * 3] * 5) + '}')


def test_seed_chapter15_node_modules_in_codedir(rt):
    """`npm install --save <pkg>` in the codedir: node_modules/<pkg> with a package.json
    whose main is not index.js, a dependency hoisted beside it, and a relative require."""
    port = free_port()
    r = rt("node", yaml_of({"server": {"address": f"127.0.0.1:{port}"},
                            "functions": [{"name": "sayhi", "handler": "index.handler",
                                           "codedir": "var/db/baetyl/function-sayhi"}]}),
           start=False)
    code = os.path.join(r.dir, "var/db/baetyl/function-sayhi")
    write(code, {
        "index.js": """
            const uniq = require('tiny-uniq');
            const { label } = require('./lib/label');
            exports.handler = (event, context, callback) => {
              callback(null, { unique_array: uniq(event['array']), label: label(context) });
            };
            """,
        "lib/label.js": "exports.label = (ctx) => `${ctx.functionName}@${ctx.messageTopic}`;\n",
        "package.json": '{"name": "sayhi", "dependencies": {"tiny-uniq": "1.0.0"}}\n',
        "node_modules/tiny-uniq/package.json": '{"name": "tiny-uniq", "main": "src/uniq.js"}\n',
        "node_modules/tiny-uniq/src/uniq.js":
            "const dedupe = require('tiny-dedupe');\nmodule.exports = (a) => dedupe(a);\n",
        "node_modules/tiny-dedupe/package.json": '{"name": "tiny-dedupe"}\n',
        "node_modules/tiny-dedupe/index.js": "module.exports = (a) => [...new Set(a)];\n",
    })
    r.start(port=port)
    out = r.client(port).call("sayhi", b'{"array": ["Jane", 1, "Jane", 1, 2]}', Topic="node")
    assert out.Payload == b'{"unique_array":["Jane",1,2],"label":"sayhi@node"}'


# ---- what a handler receives: event and context --------------------------------------------

PY_PROBES = '''
import os


def event(event, context):
    if isinstance(event, bytes):
        return {"type": "bytes", "hex": event.hex()}
    return {"type": type(event).__name__, "value": event}


def context(event, context):
    return {"isdict": isinstance(context, dict), "context": context}


def env(event, context):
    return {n: os.environ.get(n) for n in event}


def result(event, context):
    kinds = {"none": None, "bytes": b"\\x00\\x01raw\\xff", "emptybytes": b"",
             "bytearray": bytearray(b"ba"), "str": "plain text", "emptystr": "",
             "dict": {"b": 1, "a": [1, "x", None]}, "emptydict": {}, "list": [1, "x", None],
             "int": 42, "float": 1.5, "true": True, "false": False, "zero": 0,
             "unicode": {"unit": "\\u2103"}}
    return kinds[event["kind"]]


def fail(event, context):
    raise ValueError("bad value " + str(event["n"]))
'''

JS_PROBES = '''
exports.event = (event, context, callback) => {
  if (Buffer.isBuffer(event)) return callback(null, { type: 'Buffer', hex: event.toString('hex') });
  const type = event === null ? 'null' : Array.isArray(event) ? 'array' : typeof event;
  callback(null, { type, value: event });
};
exports.context = (event, context, callback) =>
  callback(null, { isobject: typeof context === 'object', context });
exports.env = (event, context, callback) => {
  const out = {};
  for (const n of event) out[n] = process.env[n] === undefined ? null : process.env[n];
  callback(null, out);
};
exports.result = (event, context, callback) => {
  const kinds = {
    undefined: undefined, null: null, emptystr: '', buffer: Buffer.from([0, 1, 0x72, 0xff]),
    str: 'plain text', object: { b: 1, a: [1, 'x', null] }, emptyobject: {}, array: [1, 'x', null],
    int: 42, float: 1.5, true: true, false: false, zero: 0, unicode: { unit: '\\u2103' },
  };
  if (event.kind === 'noarg') return callback();
  callback(null, kinds[event.kind]);
};
exports.fail = (event, context, callback) => callback(new RangeError('bad value ' + event.n));
exports.throws = (event) => { throw new Error('thrown ' + event.n); };
'''


@pytest.fixture
def probes(rt):
    """make(kind, env=None) -> (runtime, client) serving event, context, env, result, fail
    (and throws for node) from a codedir in the work dir."""
    def make(kind, env=None):
        port = free_port()
        names = ["event", "context", "env", "result", "fail"]
        if kind == "node":
            names.append("throws")
        ext = "py" if kind == "python" else "js"
        conf = {"server": {"address": f"127.0.0.1:{port}"},
                "functions": [{"name": n, "handler": f"probes.{n}", "codedir": "code"}
                              for n in names]}
        r = rt(kind, yaml_of(conf), env=env, start=False)
        write(r.dir, {f"code/probes.{ext}": PY_PROBES if kind == "python" else JS_PROBES})
        r.start(port=port)
        return r, r.client(port)
    return make


PY_EVENTS = [
    (b'{"a": 1, "b": [true, null]}', '{"type":"dict","value":{"a":1,"b":[true,null]}}'),
    (b' \n{"a":1}\n ', '{"type":"dict","value":{"a":1}}'),
    (b"[1,2]", '{"type":"list","value":[1,2]}'),
    (b"1.5", '{"type":"float","value":1.5}'),
    (b"7", '{"type":"int","value":7}'),
    (b'"s"', '{"type":"str","value":"s"}'),
    (b"true", '{"type":"bool","value":true}'),
    (b"null", '{"type":"NoneType","value":null}'),
    ('{"k":"你好"}'.encode(), '{"type":"dict","value":{"k":"你好"}}'),
    (b"hello", '{"type":"bytes","hex":"68656c6c6f"}'),
    (b"{broken", '{"type":"bytes","hex":"7b62726f6b656e"}'),
    (b"", '{"type":"dict","value":{}}'),
]

JS_EVENTS = [
    (b'{"a": 1, "b": [true, null]}', '{"type":"object","value":{"a":1,"b":[true,null]}}'),
    (b' \n{"a":1}\n ', '{"type":"object","value":{"a":1}}'),
    (b"[1,2]", '{"type":"array","value":[1,2]}'),
    (b"1.5", '{"type":"number","value":1.5}'),
    (b'"s"', '{"type":"string","value":"s"}'),
    (b"true", '{"type":"boolean","value":true}'),
    (b"null", '{"type":"null","value":null}'),
    ('{"k":"你好"}'.encode(), '{"type":"object","value":{"k":"你好"}}'),
    (b"hello", '{"type":"Buffer","hex":"68656c6c6f"}'),
    (b"{broken", '{"type":"Buffer","hex":"7b62726f6b656e"}'),
    (b"", '{"type":"object","value":{}}'),
]


@pytest.mark.parametrize("kind", ["python", "node"])
def test_event_is_parsed_json_or_raw_bytes(probes, kind):
    r, c = probes(kind)
    for payload, expected in (PY_EVENTS if kind == "python" else JS_EVENTS):
        assert_json(c.call("event", payload).Payload, expected)


@pytest.mark.parametrize("kind", ["python", "node"])
def test_context_keys_and_values(probes, kind):
    r, c = probes(kind)
    flag = "isdict" if kind == "python" else "isobject"
    out = c.call("context", b"{}", ID=99, QOS=1, Topic="dev/temp", Timestamp=1569247749,
                 FunctionInvokeID=INVOKE_ID).Payload
    got = json.loads(out)
    assert got[flag] is True
    assert got["context"] == {"messageQOS": 1, "messageTopic": "dev/temp",
                              "messageTimestamp": 1569247749, "functionName": "context",
                              "functionInvokeID": INVOKE_ID, "invokeid": INVOKE_ID}
    # A message with nothing but the function name: the proto3 defaults.
    got = json.loads(c.call("context", b"{}").Payload)
    assert got["context"] == {"messageQOS": 0, "messageTopic": "", "messageTimestamp": 0,
                              "functionName": "context", "functionInvokeID": "", "invokeid": ""}
    got = json.loads(c.call("context", b"", QOS=2, Topic="温度/a b/#x").Payload)["context"]
    assert (got["messageQOS"], got["messageTopic"]) == (2, "温度/a b/#x")


@pytest.mark.parametrize("kind", ["python", "node"])
def test_environment_variables_readable(probes, kind):
    r, c = probes(kind, env={"PLANT_ID": "shanghai-7", "EMPTY_ONE": ""})
    got = json.loads(c.call("env", b'["PLANT_ID","EMPTY_ONE","HOME_NOT_SET_XYZ"]').Payload)
    assert got == {"PLANT_ID": "shanghai-7", "EMPTY_ONE": "", "HOME_NOT_SET_XYZ": None}


# ---- what a handler returns ------------------------------------------------------------------

def test_python_results(probes):
    r, c = probes("python")

    def res(kind):
        return c.call("result", json.dumps({"kind": kind}).encode()).Payload
    # None -> empty payload; bytes -> as is.
    assert res("none") == b""
    assert res("bytes") == b"\x00\x01raw\xff"
    assert res("emptybytes") == b""
    assert res("bytearray") == b"ba"
    # Anything else -> its JSON (an empty dict or string is still a JSON value, not nothing).
    assert json.loads(res("str")) == "plain text"
    assert json.loads(res("emptystr")) == ""
    assert_json(res("dict"), '{"b":1,"a":[1,"x",null]}')
    assert json.loads(res("emptydict")) == {}
    assert_json(res("list"), '[1,"x",null]')
    assert_json(res("int"), "42")
    assert_json(res("float"), "1.5")
    assert_json(res("true"), "true")
    assert_json(res("false"), "false")
    assert_json(res("zero"), "0")
    assert_json(res("unicode"), '{"unit":"℃"}')


def test_node_results(probes):
    r, c = probes("node")

    def res(kind):
        return c.call("result", json.dumps({"kind": kind}).encode()).Payload
    # undefined / null / "" -> empty payload; Buffer -> raw.
    for kind in ("undefined", "null", "emptystr", "noarg"):
        assert res(kind) == b"", kind
    assert res("buffer") == b"\x00\x01r\xff"
    # Anything else -> JSON.stringify, byte for byte.
    assert res("str") == b'"plain text"'
    assert res("object") == b'{"b":1,"a":[1,"x",null]}'
    assert res("emptyobject") == b"{}"
    assert res("array") == b'[1,"x",null]'
    assert res("int") == b"42"
    assert res("float") == b"1.5"
    assert res("true") == b"true"
    assert res("false") == b"false"
    assert res("zero") == b"0"
    assert res("unicode") == '{"unit":"℃"}'.encode()


@pytest.mark.parametrize("kind", ["python", "node"])
def test_user_code_error_says_usercodeinvoke(probes, kind):
    r, c = probes(kind)
    with pytest.raises(grpc.RpcError) as e:
        c.call("fail", b'{"n":42}')
    assert "[UserCodeInvoke]" in e.value.details()
    assert "bad value 42" in e.value.details()
    assert ("ValueError" if kind == "python" else "RangeError") in e.value.details()
    if kind == "node":
        with pytest.raises(grpc.RpcError) as e:
            c.call("throws", b'{"n":7}')
        assert "[UserCodeInvoke]" in e.value.details() and "thrown 7" in e.value.details()
    # The instance keeps serving after a failed call.
    assert_json(c.call("event", b"[3]").Payload, '{"type":"%s","value":[3]}'
                % ("list" if kind == "python" else "array"))


# ---- the service: config file, address, start and stop ---------------------------------------

def one_function(kind, tmp_dir):
    """A function every runtime can serve, and a call that checks it: (functions, check)."""
    if kind == "sql":
        fns = [{"name": "f", "handler": "SELECT n * 2 AS double"}]
    else:
        ext = "py" if kind == "python" else "js"
        src = ("def h(event, context):\n    return {'double': event['n'] * 2}\n" if kind == "python"
               else "exports.h = (event, context, cb) => cb(null, { double: event.n * 2 });\n")
        write(tmp_dir, {f"code/m.{ext}": src})
        fns = [{"name": "f", "handler": "m.h", "codedir": os.path.join(str(tmp_dir), "code")}]

    def check(client):
        assert json.loads(client.call("f", b'{"n":21}').Payload) == {"double": 42}
    return fns, check


@pytest.mark.parametrize("kind", KINDS)
def test_config_file_option_c(rt, tmp_path, kind):
    """etc/baetyl/service.yml is the default; -c names another file, which wins."""
    fns, check = one_function(kind, tmp_path)
    default_port, other_port = free_port(), free_port()
    r = rt(kind, yaml_of({"server": {"address": f"127.0.0.1:{default_port}"}, "functions": fns}),
           start=False)
    write(r.dir, {"conf/other.yml": yaml_of({"server": {"address": f"127.0.0.1:{other_port}"},
                                             "functions": fns})})
    r.start(args=["-c", "conf/other.yml"], port=other_port)
    check(r.client(other_port))
    assert refused(default_port)
    assert_clean_exit(r)
    # Without -c: the default file.
    r2 = rt(kind, None, start=False)
    write(r2.dir, {"etc/baetyl/service.yml": yaml_of(
        {"server": {"address": f"127.0.0.1:{default_port}"}, "functions": fns})})
    r2.start(port=default_port)
    check(r2.client(default_port))


@pytest.mark.parametrize("kind", KINDS)
def test_config_file_given_with_c_but_missing(rt, kind):
    r = rt(kind, None, start=False)
    r.start(args=["-c", "conf/nowhere.yml"])
    assert r.wait_exit() != 0
    assert "nowhere.yml" in r.output()


@pytest.mark.parametrize("kind", KINDS)
def test_instance_address_env_wins_over_server_address(rt, tmp_path, kind):
    fns, check = one_function(kind, tmp_path)
    conf_port, baetyl_port, openedge_port = free_port(), free_port(), free_port()
    conf = yaml_of({"server": {"address": f"127.0.0.1:{conf_port}"}, "functions": fns})
    r = rt(kind, conf, env={"BAETYL_SERVICE_INSTANCE_ADDRESS": f"127.0.0.1:{baetyl_port}",
                            "OPENEDGE_SERVICE_INSTANCE_ADDRESS": f"127.0.0.1:{openedge_port}"},
           port=baetyl_port)
    check(r.client(baetyl_port))
    assert refused(conf_port) and refused(openedge_port)
    assert_clean_exit(r)
    # The OPENEDGE_ twin alone, for modules of Baetyl 0.x.
    r = rt(kind, yaml_of({"functions": fns}),
           env={"OPENEDGE_SERVICE_INSTANCE_ADDRESS": f"127.0.0.1:{openedge_port}"},
           port=openedge_port)
    check(r.client(openedge_port))


@pytest.mark.parametrize("kind", KINDS)
def test_no_address_at_all_is_a_clear_error(rt, tmp_path, kind):
    fns, _ = one_function(kind, tmp_path)
    r = rt(kind, yaml_of({"functions": fns}))
    assert r.wait_exit() == 1
    assert "server.address" in r.output()


@pytest.mark.parametrize("kind", KINDS)
def test_service_starting_closed_and_exit_0_on_sigterm(rt, tmp_path, kind):
    fns, check = one_function(kind, tmp_path)
    port = free_port()
    r = rt(kind, yaml_of({"server": {"address": f"127.0.0.1:{port}"}, "functions": fns}), port=port)
    check(r.client(port))
    out = assert_clean_exit(r)
    # logrus-style text lines on stderr by default (SPEC §18).
    start = re.search(r'^time="[^"]+" level=info msg="service starting"', out, re.M)
    closed = re.search(r'^time="[^"]+" level=info msg="service closed"', out, re.M)
    assert start and closed, out
    assert start.start() < closed.start()


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("kind", KINDS)
def test_logger_path_gets_starting_and_closed(rt, tmp_path, kind, fmt):
    """With logger.path, the service's log file is where its user looks: it holds the
    whole life of the service, `service starting` included, in the format asked for."""
    fns, check = one_function(kind, tmp_path)
    port = free_port()
    r = rt(kind, yaml_of({"server": {"address": f"127.0.0.1:{port}"}, "functions": fns,
                          "logger": {"path": "var/log/baetyl/service.log", "level": "debug",
                                     "format": fmt}}),
           port=port)
    check(r.client(port))
    assert_clean_exit(r)
    with open(os.path.join(r.dir, "var/log/baetyl/service.log")) as f:
        log = f.read()
    if fmt == "text":
        msgs = re.findall(r'^time="[^"]+" level=[a-z]+ msg="([^"]*)"', log, re.M)
        assert len(msgs) == len(log.splitlines()), log
    else:
        lines = [json.loads(line) for line in log.splitlines()]
        assert all({"time", "level", "msg"} <= set(line) for line in lines), log
        msgs = [line["msg"] for line in lines]
    assert "service starting" in msgs, log
    assert "service closed" in msgs, log
    assert msgs.index("service starting") < msgs.index("service closed")


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_function_name(rt, tmp_path, kind):
    fns, check = one_function(kind, tmp_path)
    port = free_port()
    r = rt(kind, yaml_of({"server": {"address": f"127.0.0.1:{port}"}, "functions": fns}), port=port)
    c = r.client(port)
    for name in ("nobody", "", "F"):  # names are exact: "F" is not "f"
        with pytest.raises(grpc.RpcError) as e:
            c.call(name, b'{"n":1}')
        assert "function not found" in e.value.details(), (name, e.value.details())
    check(c)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.mark.parametrize("kind", KINDS)
def test_server_tls_cert_and_key(rt, tmp_path, certs, kind):
    """server.cert + server.key: a TLS server; clients need no certificate of their own."""
    fns, check = one_function(kind, tmp_path)
    port = free_port()
    r = rt(kind, yaml_of({"server": {"address": f"127.0.0.1:{port}", "cert": certs["server.pem"],
                                     "key": certs["server.key"]}, "functions": fns}), port=port)
    check(r.client(port, credentials=tls_credentials(certs, client_cert=False)))
    plain = r.client(port)
    with pytest.raises(grpc.RpcError) as e:
        plain.call("f", b'{"n":1}', timeout=3)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("kind", KINDS)
def test_server_tls_with_ca_requires_client_certificates(rt, tmp_path, certs, kind):
    fns, check = one_function(kind, tmp_path)
    port = free_port()
    r = rt(kind, yaml_of({"server": {"address": f"127.0.0.1:{port}", "ca": certs["ca.pem"],
                                     "cert": certs["server.pem"], "key": certs["server.key"]},
                          "functions": fns}), port=port)
    check(r.client(port, credentials=tls_credentials(certs)))
    for creds in (tls_credentials(certs, client_cert=False), None):
        with pytest.raises(grpc.RpcError) as e:
            r.client(port, credentials=creds).call("f", b'{"n":1}', timeout=3)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


# ---- message.length.max ----------------------------------------------------------------------

def test_sql_message_length_max(rt):
    port = free_port()
    r = rt("sql", yaml_of({"server": {"address": f"127.0.0.1:{port}",
                                      "message": {"length": {"max": "1k"}}},
                           "functions": [{"name": "echo", "handler": "SELECT *"},
                                         {"name": "twice",
                                          "handler": "SELECT concat(s, s) AS c"}]}),
           port=port)
    c = r.client(port)
    ok = b'{"s":"' + b"x" * 800 + b'"}'
    assert c.call("echo", ok).Payload == ok
    with pytest.raises(grpc.RpcError) as e:
        c.call("echo", json.dumps({"s": "y" * 1100}).encode())
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The limit holds for what the instance sends too.
    with pytest.raises(grpc.RpcError) as e:
        c.call("twice", json.dumps({"s": "z" * 700}).encode())
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_json(c.call("twice", b'{"s":"ab"}').Payload, '{"c":"abab"}')


def test_sql_default_message_length_max_is_4m(rt):
    port = free_port()
    r = rt("sql", yaml_of({"server": {"address": f"127.0.0.1:{port}"},
                           "functions": [{"name": "len", "handler": "SELECT length(s) AS n"}]}),
           port=port)
    c = r.client(port)
    n = 4 * 1024 * 1024 - 200
    assert_json(c.call("len", b'{"s":"' + b"a" * n + b'"}', timeout=30).Payload, '{"n":%d}' % n)
    with pytest.raises(grpc.RpcError) as e:
        c.call("len", b'{"s":"' + b"a" * (4 * 1024 * 1024) + b'"}', timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
