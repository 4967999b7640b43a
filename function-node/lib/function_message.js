'use strict';
// baetyl.FunctionMessage (proto/function.proto, SPEC §12) read and written by hand for Call:
// protobufjs's generic decode + toObject + fromObject + encode was a fifth of a call's cost
// while V8 still interprets it (a fresh instance's first thousand calls).
//
// A decoded message keeps ID and Timestamp as their 64-bit halves (idLo/idHi, tsLo/tsHi,
// Timestamp's zigzag undone) so they go back out exactly; Timestamp is also given as a
// Number (rounded as Number() of its decimal text would be) for the handler's context.
// Unknown fields are skipped, a known field sent with another wire type is skipped as
// unknown (as Google's parsers do), the last occurrence of a field wins.

const TWO32 = 4294967296;

class Reader {
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
    this.hi = 0; // the high half of the last varint64
  }

  fail(what) {
    throw new Error(`${what} at offset ${this.pos}`);
  }

  /** A varint's low 32 bits (unsigned); its high 32 in this.hi. */
  varint() {
    const b = this.buf;
    let lo = 0;
    let hi = 0;
    let i = 0;
    for (; i < 10; i++) {
      if (this.pos >= b.length) this.fail('index out of range');
      const c = b[this.pos++];
      if (i < 4) lo |= (c & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (c & 0x0f) << 28;
        hi = (c & 0x7f) >>> 4;
      } else hi |= (c & 0x7f) << (7 * i - 32);
      if (c < 0x80) break;
    }
    if (i === 10) this.fail('invalid varint encoding');
    this.hi = hi >>> 0;
    return lo >>> 0;
  }

  /** [start, end) of a length-delimited field's bytes. */
  bytes() {
    const len = this.varint();
    if (this.hi !== 0 || len > this.buf.length - this.pos) this.fail('index out of range');
    const start = this.pos;
    this.pos += len;
    return start;
  }

  skip(wire) {
    if (wire === 0) this.varint();
    else if (wire === 1) this.advance(8);
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.advance(4);
    else this.fail(`invalid wire type ${wire}`);
  }

  advance(n) {
    if (n > this.buf.length - this.pos) this.fail('index out of range');
    this.pos += n;
  }
}

/** An int64's halves (two's complement) as the nearest Number. */
function int64Number(lo, hi) {
  if ((hi >= 0 && hi < 0x200000) || (hi < 0 && hi >= -0x200000)) return hi * TWO32 + lo;
  return Number((BigInt(hi) << 32n) | BigInt(lo));
}

/** A FunctionMessage's bytes (a Buffer) -> the message; throws on malformed input. */
function decode(buf) {
  const r = new Reader(buf);
  const m = {
    idLo: 0, idHi: 0, QOS: 0, Topic: '', Payload: buf.subarray(0, 0),
    tsLo: 0, tsHi: 0, Timestamp: 0, FunctionName: '', FunctionInvokeID: '',
  };
  while (r.pos < buf.length) {
    const tag = r.varint();
    if (r.hi !== 0 || tag >>> 3 === 0) r.fail('invalid tag');
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire === 0 && (field === 1 || field === 2 || field === 10)) {
      const lo = r.varint();
      if (field === 1) {
        m.idLo = lo;
        m.idHi = r.hi;
      } else if (field === 2) {
        m.QOS = lo;
      } else {
        // zigzag: (n >>> 1) ^ -(n & 1) on 64 bits
        const neg = -(lo & 1);
        m.tsLo = (((lo >>> 1) | (r.hi << 31)) ^ neg) >>> 0;
        m.tsHi = (r.hi >>> 1) ^ neg;
        m.Timestamp = int64Number(m.tsLo, m.tsHi);
      }
    } else if (wire === 2 && (field === 3 || field === 4 || field === 11 || field === 12)) {
      const start = r.bytes();
      if (field === 4) m.Payload = buf.subarray(start, r.pos);
      else {
        const s = buf.toString('utf8', start, r.pos);
        if (field === 3) m.Topic = s;
        else if (field === 11) m.FunctionName = s;
        else m.FunctionInvokeID = s;
      }
    } else {
      r.skip(wire);
    }
  }
  return m;
}

function varintSize(lo, hi) {
  if (hi === 0) {
    if (lo < 0x80) return 1;
    if (lo < 0x4000) return 2;
    if (lo < 0x200000) return 3;
    if (lo < 0x10000000) return 4;
    return 5;
  }
  let n = 5;
  for (let h = hi >>> 3; h !== 0; h >>>= 7) n++;
  return n;
}

function writeVarint(out, pos, lo, hi) {
  let l = lo >>> 0;
  let h = hi >>> 0;
  while (h !== 0 || l >= 0x80) {
    out[pos++] = (l & 0x7f) | 0x80;
    l = ((l >>> 7) | (h << 25)) >>> 0;
    h >>>= 7;
  }
  out[pos++] = l;
  return pos;
}

/** A string field (tag, then its UTF-8 length and bytes) at p; returns the end. */
function writeString(out, p, tag, s, len) {
  out[p++] = tag;
  const q = writeVarint(out, p, len, 0);
  return q + out.write(s, q, len, 'utf8');
}

/** A message (as decode returns, with any Payload Buffer) -> its bytes after `prefix` free
 * bytes at the start of the returned Buffer. Fields at their default value are left out. */
function encode(m, prefix = 0) {
  const topic = m.Topic ? Buffer.byteLength(m.Topic) : 0;
  const name = m.FunctionName ? Buffer.byteLength(m.FunctionName) : 0;
  const invoke = m.FunctionInvokeID ? Buffer.byteLength(m.FunctionInvokeID) : 0;
  const payload = m.Payload.length;
  // zigzag: (n << 1) ^ (n >> 63) on 64 bits
  const sign = m.tsHi >> 31;
  const zLo = ((m.tsLo << 1) ^ sign) >>> 0;
  const zHi = (((m.tsHi << 1) | (m.tsLo >>> 31)) ^ sign) >>> 0;
  let size = 0;
  if (m.idLo !== 0 || m.idHi !== 0) size += 1 + varintSize(m.idLo, m.idHi);
  if (m.QOS !== 0) size += 1 + varintSize(m.QOS, 0);
  if (topic) size += 1 + varintSize(topic, 0) + topic;
  if (payload) size += 1 + varintSize(payload, 0) + payload;
  if (zLo !== 0 || zHi !== 0) size += 1 + varintSize(zLo, zHi);
  if (name) size += 1 + varintSize(name, 0) + name;
  if (invoke) size += 1 + varintSize(invoke, 0) + invoke;
  const out = Buffer.allocUnsafe(prefix + size);
  let p = prefix;
  if (m.idLo !== 0 || m.idHi !== 0) {
    out[p++] = 0x08;
    p = writeVarint(out, p, m.idLo, m.idHi);
  }
  if (m.QOS !== 0) {
    out[p++] = 0x10;
    p = writeVarint(out, p, m.QOS, 0);
  }
  if (topic) p = writeString(out, p, 0x1a, m.Topic, topic);
  if (payload) {
    out[p++] = 0x22;
    p = writeVarint(out, p, payload, 0);
    out.set(m.Payload, p);
    p += payload;
  }
  if (zLo !== 0 || zHi !== 0) {
    out[p++] = 0x50;
    p = writeVarint(out, p, zLo, zHi);
  }
  if (name) p = writeString(out, p, 0x5a, m.FunctionName, name);
  if (invoke) writeString(out, p, 0x62, m.FunctionInvokeID, invoke);
  return out;
}

module.exports = { decode, encode };
