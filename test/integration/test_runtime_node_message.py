"""The Node runtime's hand-written baetyl.FunctionMessage codec (function-node/lib/
function_message.js, used for Call) against protobufjs reading proto/function.proto: the
same fields both ways for edge and random values, truncated input refused (at least) where
protobufjs refuses it, unknown fields and garbage handled without a crash."""
import os
import subprocess

from conftest import SRC

CHECK = r"""
'use strict';
const assert = require('assert');
const path = require('path');
const [root, proto] = process.argv.slice(1);
const pb = require(path.join(root, 'node_modules', 'protobufjs'));
const fm = require(path.join(root, 'lib', 'function_message.js'));
const T = pb.loadSync(proto).lookupType('baetyl.FunctionMessage');

let seed = 12345;
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
const big32 = () => BigInt(Math.floor(rnd() * 2 ** 32));
const U64 = [0n, 1n, 127n, 128n, 16383n, 16384n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n,
  2n ** 53n - 1n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n];
const I64 = [0n, 1n, -1n, 63n, -64n, 64n, 2n ** 31n, -(2n ** 31n), 2n ** 53n - 1n,
  -(2n ** 53n), 2n ** 53n + 3n, -(2n ** 62n), 2n ** 63n - 1n, -(2n ** 63n), 1569247749n];
const u64 = () => (rnd() < 0.5 ? pick(U64) : (big32() << 32n | big32()) >> BigInt(pick([0, 11, 32, 40])));
const i64 = () => (rnd() < 0.5 ? pick(I64) : BigInt.asIntN(64, big32() << 32n | big32()));
const str = () => pick(['', 't', 'a/b/c', 'héllo wörld ✓ 😀', 'x'.repeat(200), String(rnd())]);
const bytes = () => Buffer.from(Array.from({ length: pick([0, 1, 9, 130, 20000]) },
  () => Math.floor(rnd() * 256)));

function sample() {
  return {
    ID: u64(), QOS: pick([0, 1, 2, 300, 2 ** 32 - 1]), Topic: str(), Payload: bytes(),
    Timestamp: i64(), FunctionName: str(), FunctionInvokeID: str(),
  };
}

const pbEncode = (s) => Buffer.from(T.encode(T.fromObject({
  ...s, ID: s.ID.toString(), Timestamp: s.Timestamp.toString(),
})).finish());

function same(m, s) {
  assert.strictEqual(BigInt.asUintN(64, BigInt(m.idHi) << 32n | BigInt(m.idLo)), s.ID);
  assert.strictEqual(BigInt.asIntN(64, BigInt(m.tsHi) << 32n | BigInt(m.tsLo)), s.Timestamp);
  assert.strictEqual(m.Timestamp, Number(s.Timestamp.toString()));
  for (const k of ['QOS', 'Topic', 'FunctionName', 'FunctionInvokeID']) {
    assert.strictEqual(m[k], s[k], k);
  }
  assert.ok(Buffer.from(m.Payload).equals(s.Payload), 'Payload');
}

const throws = (f) => { try { f(); return false; } catch (e) { assert.ok(e instanceof Error); return true; } };
let n = 0;
for (let i = 0; i < 600; i++) {
  const s = sample();
  const wire = pbEncode(s);
  const m = fm.decode(wire);
  same(m, s);
  // ours written, protobufjs read back
  const back = T.toObject(T.decode(fm.encode(m)), { longs: String, defaults: true });
  assert.strictEqual(back.ID, s.ID.toString());
  assert.strictEqual(back.Timestamp, s.Timestamp.toString());
  same(fm.decode(fm.encode(m)), s);
  const framed = fm.encode(m, 5);
  assert.ok(framed.subarray(5).equals(fm.encode(m)));
  // the reply of Call: the request with another payload
  same(fm.decode(fm.encode({ ...m, Payload: Buffer.from('r') })), { ...s, Payload: Buffer.from('r') });
  // unknown fields (varint, fixed64, bytes, fixed32) and a known field with another wire
  // type are skipped; the last occurrence of a field wins
  const extra = Buffer.from([0xa8, 0x06, 0x96, 0x01, 0x31, 1, 2, 3, 4, 5, 6, 7, 8,
    0x3a, 0x02, 0x68, 0x69, 0x2d, 9, 9, 9, 9, 0x18, 0x05, 0x10, 0x07]);
  const m2 = fm.decode(Buffer.concat([wire, extra]));
  same(m2, { ...s, QOS: 7 });
  // cut short: refused where protobufjs refuses it (and where protobufjs's reader cuts a
  // string short without a word); read as protobufjs reads it otherwise
  if (wire.length < 400) {
    for (let cut = 0; cut < wire.length; cut++) {
      const part = wire.subarray(0, cut);
      let ours = null;
      try { ours = fm.decode(part); } catch (e) { assert.ok(e instanceof Error); }
      if (throws(() => T.decode(part))) assert.strictEqual(ours, null, `cut ${cut}`);
      else if (ours !== null) {
        const o = T.toObject(T.decode(part), { longs: String, defaults: true });
        same(ours, { ...o, ID: BigInt(o.ID), Timestamp: BigInt(o.Timestamp) });
      }
    }
  }
  n++;
}
// garbage: a message or an Error, never anything else
for (let i = 0; i < 5000; i++) {
  const g = Buffer.from(Array.from({ length: Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 256)));
  throws(() => fm.decode(g));
}
assert.ok(throws(() => fm.decode(Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))));
assert.ok(throws(() => fm.decode(Buffer.from([0x0e]))));    // wire type 6
assert.ok(throws(() => fm.decode(Buffer.from([0x22, 0x10, 0x61]))));    // bytes cut short
console.log(`ok ${n}`);
"""


def test_function_message_codec_matches_protobufjs():
    root = os.path.join(SRC, "function-node")
    p = subprocess.run(["node", "-e", CHECK, root, os.path.join(SRC, "proto", "function.proto")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ok 600", p.stdout
