"""baetyl-function-sql (SPEC §12 "Runtimes", SQL; seed chapters 9 and 18): the real runtime
on a free port, called over gRPC with a client built by protoc from proto/function.proto:
the process, its config, the gRPC surface, the seed's statements end to end, the dialect
operator by operator and statements refused at startup (test/unit/function-sql/test_sql.c
covers the dialect from inside)."""
import concurrent.futures
import json
import os
import re
import signal

import grpc
import pytest

from conftest import Procs, binary, free_port, wait_for, wait_port
from runtime_harness import (INVOKE_ID, Client, Rt, assert_clean_exit, assert_json, parse,
                             refused, same, yaml_of)
from runtime_harness import rt  # noqa: F401  (fixture)

FILTER = "select qos() as qos, topic() as topic, * where id < 10"
TEMPERATURE = "SELECT temperature, ts, unit WHERE temperature > 50"


class SqlRuntime:
    """One baetyl-function-sql in a work dir with etc/baetyl/service.yml; output in
    output.log. functions: [(name, statement)]."""

    def __init__(self, procs, workdir, functions, server_extra="", env=None, address=True):
        self.procs = procs
        self.dir = str(workdir)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        os.makedirs(os.path.join(self.dir, "etc", "baetyl"), exist_ok=True)
        text = "server:\n"
        if address:
            text += f"  address: 'tcp://{self.address}'\n"
        text += server_extra + "functions:\n"
        for name, statement in functions:
            # JSON strings are YAML double-quoted scalars: quotes in SQL need no care.
            text += f"  - name: {json.dumps(name)}\n    handler: {json.dumps(statement)}\n"
        with open(os.path.join(self.dir, "etc", "baetyl", "service.yml"), "w") as f:
            f.write(text)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("BAETYL_", "OPENEDGE_"))}
        self.env.update(env or {})
        self.out = os.path.join(self.dir, "output.log")
        self.client = None

    def start(self, wait=True):
        self.outf = open(self.out, "ab")
        self.proc = self.procs.start([binary("baetyl-function-sql")], cwd=self.dir,
                                     env=self.env, stdout=self.outf, stderr=self.outf)
        if wait:
            try:
                wait_port(self.port, timeout=20)
            except AssertionError:
                raise AssertionError(f"runtime did not listen: {self.output()}") from None
        return self

    def call(self, function, payload=b"", **kw):
        if self.client is None:
            self.client = Client(self.address)
        return self.client.call(function, payload, **kw)

    def stop(self):
        if self.client:
            self.client.close()
        rc = self.procs.stop(self.proc, signal.SIGTERM)
        self.outf.close()
        return rc

    def wait_exit(self, timeout=20):
        try:
            return self.proc.wait(timeout)
        finally:
            self.outf.close()

    def output(self):
        with open(self.out, errors="replace") as f:
            return f.read()


@pytest.fixture
def sql(procs, tmp_path):
    """make(functions, **kw) -> a started SqlRuntime; a clean stop is checked at teardown."""
    made = []

    def make(functions=(("filter", FILTER), ("temperature", TEMPERATURE)), start=True, **kw):
        r = SqlRuntime(procs, tmp_path / f"rt{len(made)}", list(functions), **kw)
        made.append(r)
        return r.start() if start else r
    yield make
    for r in made:
        if getattr(r, "proc", None) is not None and r.proc.poll() is None:
            assert r.stop() == 0, r.output()
            assert "service closed" in r.output()


def test_seed_chapter9_filter(sql):
    r = sql()
    out = r.call("filter", b'{"id":1}', ID=7, QOS=1, Topic="t", Timestamp=1569247749,
                 FunctionInvokeID="50f8f102-2b8c-4904-86df-0728811a5a4b")
    assert out.Payload == b'{"qos":1,"topic":"t","id":1}'
    # The reply echoes the request's fields, with the result as Payload.
    assert (out.ID, out.QOS, out.Topic, out.FunctionName) == (7, 1, "t", "filter")
    assert r.call("filter", b'{"id":10}', Topic="t").Payload == b""
    out = r.call("filter", b'{"id":3,"qos":2,"v":[1.5,"x"]}', QOS=0, Topic="a/b")
    assert out.Payload == b'{"qos":0,"topic":"a/b","id":3,"v":[1.5,"x"]}'


def test_seed_chapter18_temperature(sql):
    r = sql()
    out = r.call("temperature", b'{"temperature":60.5,"ts":1573000000,"unit":"C","dev":"d"}')
    assert out.Payload == b'{"temperature":60.5,"ts":1573000000,"unit":"C"}'
    assert r.call("temperature", b'{"temperature":50}').Payload == b""
    assert r.call("temperature", b'{"unit":"C"}').Payload == b""


def test_non_object_payloads_publish_nothing(sql):
    r = sql([("all", "SELECT qos() AS q")])
    assert r.call("all", b"{}").Payload == b'{"q":0}'
    for payload in (b"", b"[1,2]", b"12", b'"s"', b"null", b"not json", b"\x00\xff\xfe",
                    b'{"a":', b"[" * 100000 + b"]" * 100000):
        assert r.call("all", payload).Payload == b"", payload[:20]


def test_context_functions(sql):
    r = sql([("ctx", "SELECT qos(), topic(), topic(2) AS second, timestamp() AS ts, "
                     "invokeid() AS id, concat(upper(topic(1)), '-', n * 2) AS c")])
    out = r.call("ctx", b'{"n":21}', QOS=1, Topic="dev/temp/x", Timestamp=1700000000,
                 FunctionInvokeID="7c9e6679-7425-40de-944b-e07fc1f90ae7")
    assert json.loads(out.Payload) == {
        "qos()": 1, "topic()": "dev/temp/x", "second": "temp", "ts": 1700000000,
        "id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "c": "DEV-42"}


def test_unknown_function(sql):
    r = sql()
    with pytest.raises(grpc.RpcError) as e:
        r.call("nope", b'{"id":1}')
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert "function not found: (nope)" in e.value.details()
    # The server keeps serving.
    assert r.call("filter", b'{"id":1}', Topic="t").Payload.startswith(b'{"qos":0')


def test_statement_that_does_not_parse_refuses_start(sql):
    r = sql([("good", FILTER), ("bad", "SELECT temperature, ts unit WHERE temperature > 50")],
            start=False)
    r.start(wait=False)
    assert r.wait_exit() == 1
    out = r.output()
    assert "function (bad): syntax error at position 24: unexpected 'unit'" in out, out
    assert "server started" not in out


def test_config_errors(sql):
    r = sql([("f", FILTER)], address=False, start=False)
    r.start(wait=False)
    assert r.wait_exit() == 1
    assert "server.address: required (or set BAETYL_SERVICE_INSTANCE_ADDRESS)" in r.output()

    r = sql([("f", FILTER), ("f", TEMPERATURE)], start=False)
    r.start(wait=False)
    assert r.wait_exit() == 1
    assert "function (f) is declared twice" in r.output()

    r = sql([("f", "")], start=False)
    r.start(wait=False)
    assert r.wait_exit() == 1
    assert "handler" in r.output() and "required" in r.output()


def test_instance_address_from_environment(sql):
    port = free_port()
    r = sql(start=False, env={"BAETYL_SERVICE_INSTANCE_ADDRESS": f"127.0.0.1:{port}"})
    r.address, r.port = f"127.0.0.1:{port}", port
    r.start()
    assert r.call("filter", b'{"id":2}', Topic="t").Payload == b'{"qos":0,"topic":"t","id":2}'


def test_message_size_limit_and_eval_error(sql):
    r = sql([("echo", "SELECT *"), ("big", "SELECT concat(s, s, s, s, s, s) AS c")],
            server_extra="  message:\n    length:\n      max: 8m\n")
    s = "x" * (3 << 20)
    payload = json.dumps({"s": s}, separators=(",", ":")).encode()
    assert r.call("echo", payload).Payload == payload
    # 6 x 3 MiB is past the engine's 16 MiB string limit: an error, the server survives.
    with pytest.raises(grpc.RpcError) as e:
        r.call("big", payload)
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert "function (big): string result too long" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        r.call("echo", b'{"s":"' + b"y" * (9 << 20) + b'"}')
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert r.call("echo", b'{"a":1}').Payload == b'{"a":1}'


def test_concurrent_calls(sql):
    r = sql([("double", "SELECT n * 2 AS d WHERE n % 3 != 0")])
    r.call("double", b'{"n":1}')
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futs = {n: pool.submit(r.call, "double", json.dumps({"n": n}).encode())
                for n in range(400)}
        for n, f in futs.items():
            want = b"" if n % 3 == 0 else json.dumps({"d": n * 2}, separators=(",", ":")).encode()
            assert f.result().Payload == want


def test_sigterm_stops_cleanly(sql):
    r = sql()
    assert r.call("filter", b'{"id":1}').Payload
    assert r.stop() == 0
    out = r.output()
    assert "service starting" in out and "service closed" in out
    wait_for(lambda: r.proc.poll() is not None, what="exit")


# ---- the SQL dialect, operator by operator (one runtime serves every statement) --------------

MSG = dict(QOS=1, Topic="dev/temp/x", Timestamp=1569247749, FunctionInvokeID=INVOKE_ID)

# (id, statement, payload, expected JSON text or b"" for no result, call fields)
SQL_CASES = [
    # SELECT <list> [WHERE <cond>], no FROM, keywords in any case.
    ("lowercase", "select a as x where a = 1", b'{"a":1}', '{"x":1}', {}),
    ("mixedcase", "SeLeCt a As x WhErE a Is NoT NuLl AnD NoT (a In (2)) Or FaLsE",
     b'{"a":1}', '{"x":1}', {}),
    # * = every field of the payload, in the payload's order; combined with expressions.
    ("star", "SELECT *", b'{"z":1,"a":{"n":[1,2]},"m":"s","b":null}',
     '{"z":1,"a":{"n":[1,2]},"m":"s","b":null}', {}),
    ("expr-then-star", "SELECT 'x' AS first, *", b'{"z":1,"a":2}', '{"first":"x","z":1,"a":2}', {}),
    ("star-then-expr", "SELECT *, 1 AS last", b'{"z":1,"a":2}', '{"z":1,"a":2,"last":1}', {}),
    ("star-empty-object", "SELECT *", b"{}", "{}", {}),
    ("list-order", "SELECT b, a", b'{"a":1,"b":2,"c":3}', '{"b":2,"a":1}', {}),
    ("function-names-any-case", "SELECT QOS() AS q, Upper(s) AS u, TOPIC(2) AS t, LENGTH(s) AS n",
     b'{"s":"x"}', '{"q":1,"u":"X","t":"temp","n":1}', MSG),
    ("spread-over-lines", "SELECT\n  a,\n\tb AS c\nWHERE\n  a = 1", b'{"a":1,"b":2}',
     '{"a":1,"c":2}', {}),
    # Literals.
    ("literals", "SELECT 1 AS i, 2.5 AS f, 'str' AS s, true AS t, false AS f2, null AS n",
     b"{}", '{"i":1,"f":2.5,"s":"str","t":true,"f2":false,"n":null}', {}),
    ("negative-number", "SELECT -3 AS m, -a AS n", b'{"a":4}', '{"m":-3,"n":-4}', {}),
    ("quote-in-string", "SELECT 'it''s' AS s", b"{}", '{"s":"it\'s"}', {}),
    # Field paths; a path's default name is its last segment.
    ("paths", "SELECT a, a.b, a.c[1] AS c1, arr[0] AS first, items[1].name AS n",
     b'{"a":{"b":"B","c":[10,20]},"arr":["x","y"],"items":[{"name":"p"},{"name":"q"}]}',
     '{"a":{"b":"B","c":[10,20]},"b":"B","c1":20,"first":"x","n":"q"}', {}),
    ("deep-path-name", "SELECT d.e.f", b'{"d":{"e":{"f":5}}}', '{"f":5}', {}),
    # Arithmetic.
    ("arith", "SELECT a + b AS add, a - b AS sub, a * b AS mul, a / 4 AS div, x / 2 AS fdiv, "
              "a % b AS mod", b'{"a":12,"b":5,"x":5.0}',
     '{"add":17,"sub":7,"mul":60,"div":3,"fdiv":2.5,"mod":2}', {}),
    ("precedence", "SELECT 2 + 3 * 4 AS p, (2 + 3) * 4 AS q, 10 - 4 - 3 AS l, 2 * (a - 1) AS r",
     b'{"a":4}', '{"p":14,"q":20,"l":3,"r":6}', {}),
    ("celsius-to-f", "SELECT t * 1.8 + 32 AS f", b'{"t":25}', '{"f":77}', {}),
    # Comparisons.
    ("compare", "SELECT a = 1 AS eq, a != 1 AS ne, a <> 2 AS ne2, a < 2 AS lt, a <= 1 AS le, "
                "a > 1 AS gt, a >= 1 AS ge, s = 'abc' AS seq, s != 'abc' AS sne",
     b'{"a":1,"s":"abc"}',
     '{"eq":true,"ne":false,"ne2":true,"lt":true,"le":true,"gt":false,"ge":true,'
     '"seq":true,"sne":false}', {}),
    ("compare-float", "SELECT t > 50 AS hot, t >= 67.5 AS ge, t < 67.5 AS lt", b'{"t":67.5}',
     '{"hot":true,"ge":true,"lt":false}', {}),
    # AND OR NOT, with SQL precedence (NOT > AND > OR).
    ("logic", "SELECT t AND f AS a, t OR f AS o, NOT f AS n, NOT t AS nt, "
              "true OR false AND false AS prec, (true OR false) AND false AS paren",
     b'{"t":true,"f":false}',
     '{"a":false,"o":true,"n":true,"nt":false,"prec":true,"paren":false}', {}),
    ("where-and-or", "SELECT id WHERE a > 1 AND (b = 'x' OR c = 'y')",
     b'{"id":5,"a":2,"b":"q","c":"y"}', '{"id":5}', {}),
    ("where-and-or-false", "SELECT id WHERE a > 1 AND (b = 'x' OR c = 'y')",
     b'{"id":5,"a":2,"b":"q","c":"z"}', b"", {}),
    # LIKE with % and _.
    ("like", "SELECT s LIKE 'he%' AS p, s LIKE 'h_llo' AS u, s LIKE '%lo' AS e, "
             "s LIKE 'hell' AS x, s LIKE '%' AS all, s LIKE '_' AS one",
     b'{"s":"hello"}', '{"p":true,"u":true,"e":true,"x":false,"all":true,"one":false}', {}),
    ("like-where", "SELECT deviceid WHERE deviceid LIKE 'dev0%'", b'{"deviceid":"dev001"}',
     '{"deviceid":"dev001"}', {}),
    ("like-where-false", "SELECT deviceid WHERE deviceid LIKE 'dev0%'", b'{"deviceid":"cam001"}',
     b"", {}),
    # IN (…).
    ("in", "SELECT a IN (1, 2, 3) AS i, a IN (4, 5) AS n, s IN ('x', 'y') AS s",
     b'{"a":2,"s":"y"}', '{"i":true,"n":false,"s":true}', {}),
    # IS [NOT] NULL (missing and JSON null are both null).
    ("is-null", "SELECT missing IS NULL AS m, n IS NULL AS n, a IS NULL AS a, "
                "a IS NOT NULL AS b, missing IS NOT NULL AS c",
     b'{"a":1,"n":null}', '{"m":true,"n":true,"a":false,"b":true,"c":false}', {}),
    # Message functions.
    ("message-functions", "SELECT qos() AS q, topic() AS t, topic(1) AS t1, topic(3) AS t3, "
                          "timestamp() AS ts, invokeid() AS id", b"{}",
     '{"q":1,"t":"dev/temp/x","t1":"dev","t3":"x","ts":1569247749,"id":"%s"}' % INVOKE_ID, MSG),
    ("message-functions-defaults", "SELECT qos() AS q, topic() AS t, timestamp() AS ts",
     b"{}", '{"q":0,"t":"","ts":0}', {}),
    ("topic-level-where", "SELECT v WHERE topic(2) = 'temp'", b'{"v":1}', '{"v":1}', MSG),
    # Number functions.
    ("numbers", "SELECT abs(i) AS a1, abs(n) AS a2, abs(3) AS a3, round(p) AS r1, round(q) AS r2, "
                "round(-2.6) AS r3, floor(2.7) AS f1, floor(-2.1) AS f2, ceil(2.1) AS c1, "
                "ceil(-2.7) AS c2, floor(5) AS f3",
     b'{"i":-7,"n":-2.5,"p":2.4,"q":2.6}',
     '{"a1":7,"a2":2.5,"a3":3,"r1":2,"r2":3,"r3":-3,"f1":2,"f2":-3,"c1":3,"c2":-2,"f3":5}', {}),
    # String functions.
    ("strings", "SELECT lower(s) AS l, upper(s) AS u, length(s) AS n, concat(s, '!', '?') AS c, "
                "substring(s, 1, 5) AS sub, substring(s, 7, 5) AS sub2",
     b'{"s":"Hello World"}',
     '{"l":"hello world","u":"HELLO WORLD","n":11,"c":"Hello World!?","sub":"Hello",'
     '"sub2":"World"}', {}),
    ("substring-2-args", "SELECT substring(s, 7) AS tail", b'{"s":"Hello World"}',
     '{"tail":"World"}', {}),
    ("length-counts-characters", "SELECT length(u) AS n", '{"u":"温度℃"}'.encode(),
     '{"n":3}', {}),
    ("concat-number", "SELECT concat(deviceid, '-', n) AS k", b'{"deviceid":"dev","n":7}',
     '{"k":"dev-7"}', {}),
    ("nested-functions", "SELECT upper(concat(topic(1), '/', lower(s))) AS k", b'{"s":"AbC"}',
     '{"k":"DEV/ABC"}', MSG),
    # Names of expressions without AS: the expression text as written.
    ("default-names", "SELECT a + 1, upper(s), qos(), temperature * 2",
     b'{"a":1,"s":"x","temperature":20}',
     '{"a + 1":2,"upper(s)":"X","qos()":0,"temperature * 2":40}', {}),
    # WHERE false -> no result.
    ("where-false", "SELECT * WHERE a > 5", b'{"a":1}', b"", {}),
    ("where-literal-false", "SELECT * WHERE false", b'{"a":1}', b"", {}),
    ("where-literal-true", "SELECT * WHERE true", b'{"a":1}', '{"a":1}', {}),
    ("where-missing-field", "SELECT * WHERE nope = 1", b'{"a":1}', b"", {}),
    ("where-not-missing", "SELECT * WHERE nope IS NULL", b'{"a":1}', '{"a":1}', {}),
]

def test_sql_star_passes_values_through_exactly(sql_dialect):
    """Big integers, floats and text of the payload come out of `SELECT *` unchanged."""
    r, c = sql_dialect
    payload = (b'{"id":9007199254740993,"v":20.1,"w":1e-07,"x":-0.5,"t":"a\\"b","n":null,'
               b'"o":{"k":[1,2.25,true]}}')
    out = c.call("not-object-star", payload).Payload
    assert same(parse(out), parse(payload)), out
    out = c.call("not-object-star", '{"unit":"℃","设备":"温度"}'.encode()).Payload
    assert_json(out, '{"unit":"℃","设备":"温度"}')


NOT_OBJECTS = [b"", b"[1,2]", b"[]", b"12", b"1.5", b'"text"', b"true", b"null", b"not json",
               b'{"a":', b"\xff\xfe"]


@pytest.fixture(scope="module")
def sql_dialect(tmp_path_factory):
    """One baetyl-function-sql serving every statement of SQL_CASES (function = case id)."""
    ps = Procs()
    port = free_port()
    fns = [{"name": cid, "handler": stmt} for cid, stmt, _, _, _ in SQL_CASES]
    fns.append({"name": "not-object", "handler": "SELECT 1 AS one"})
    fns.append({"name": "not-object-star", "handler": "SELECT *"})
    r = Rt(ps, "sql", tmp_path_factory.mktemp("sql-dialect"),
           yaml_of({"server": {"address": f"127.0.0.1:{port}"}, "functions": fns}))
    try:
        r.start(port=port)
        c = Client(f"127.0.0.1:{port}")
        yield r, c
        c.close()
        assert_clean_exit(r)
    finally:
        ps.cleanup()


@pytest.mark.parametrize("cid,stmt,payload,expected,fields", SQL_CASES,
                         ids=[c[0] for c in SQL_CASES])
def test_sql_dialect(sql_dialect, cid, stmt, payload, expected, fields):
    r, c = sql_dialect
    try:
        out = c.call(cid, payload, **fields).Payload
    except grpc.RpcError as e:
        raise AssertionError(f"{stmt!r} on {payload!r}: {e.code()} {e.details()}") from None
    if expected == b"":
        assert out == b"", f"{stmt!r} on {payload!r} gave {out!r}, expected no result"
    else:
        assert_json(out, expected)


def test_sql_payload_not_a_json_object_gives_no_result(sql_dialect):
    r, c = sql_dialect
    assert c.call("not-object", b"{}").Payload == b'{"one":1}'
    for payload in NOT_OBJECTS:
        for fn in ("not-object", "not-object-star"):
            assert c.call(fn, payload).Payload == b"", (fn, payload)


# ---- SQL statements that do not parse: refused at startup, with the position ---------------

BAD_STATEMENTS = [
    # (statement, 1-based position of the offending token)
    ("SELECT a,, b", 10),
    ("SELEC a", 1),
    ("SELECT a FROM t", 10),
    ("SELECT 'abc", 8),
    ("SELECT a WHERE a >", None),
    ("SELECT a b", 10),
    ("temperature > 50", 1),
    ("SELECT (a + 1 AS x", 15),
    ("SELECT foo(a)", 8),  # an unknown function is found at startup, not per message
    ("SELECT", 7),
    ("SELECT 温度 AS t,, x", 16),  # characters, not bytes
    ("SELECT a; SELECT b", 9),  # one statement per function
]


@pytest.mark.parametrize("stmt,pos", BAD_STATEMENTS, ids=[s for s, _ in BAD_STATEMENTS])
def test_sql_statement_that_does_not_parse_is_refused(rt, stmt, pos):
    port = free_port()
    r = rt("sql", yaml_of({"server": {"address": f"127.0.0.1:{port}"},
                           "functions": [{"name": "good", "handler": FILTER},
                                         {"name": "broken", "handler": stmt}]}))
    assert r.wait_exit() == 1
    out = r.output()
    assert "broken" in out, out
    m = re.search(r"position (\d+)", out)
    assert m, f"no position in: {out}"
    if pos is not None:
        assert int(m.group(1)) == pos, out
    assert refused(port)
