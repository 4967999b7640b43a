'use strict';
// HPACK (RFC 7541) as the runtime's HTTP/2 server needs it: a whole decoder of request header
// blocks (static and dynamic table, Huffman strings) and literal fields for its replies
// (never indexed by us, so the client's table size setting does not concern the encoder).

const STATIC = [null,
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'],
  [':path', '/index.html'], [':scheme', 'http'], [':scheme', 'https'], [':status', '200'],
  [':status', '204'], [':status', '206'], [':status', '304'], [':status', '400'],
  [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''],
  ['accept', ''], ['access-control-allow-origin', ''], ['age', ''], ['allow', ''],
  ['authorization', ''], ['cache-control', ''], ['content-disposition', ''],
  ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''],
  ['date', ''], ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''],
  ['if-match', ''], ['if-modified-since', ''], ['if-none-match', ''], ['if-range', ''],
  ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''], ['location', ''],
  ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''],
  ['via', ''], ['www-authenticate', ''],
];

// Huffman code lengths of symbols 0..256 (RFC 7541 Appendix B); the code is canonical, so the
// codes follow from the lengths.
const HUFFMAN_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
  28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
  5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
  6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
  23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
  21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
  22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
  21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
  22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

// canonical decoding: for each length, the first code and where its symbols start
const FIRST = new Array(31).fill(0);
const COUNT = new Array(31).fill(0);
const START = new Array(31).fill(0);
const SYMBOLS = [];
(function build() {
  for (let n = 1; n <= 30; n++) {
    START[n] = SYMBOLS.length;
    HUFFMAN_LENGTHS.forEach((len, sym) => { if (len === n) SYMBOLS.push(sym); });
    COUNT[n] = SYMBOLS.length - START[n];
  }
  let code = 0;
  for (let n = 1; n <= 30; n++) {
    FIRST[n] = code;
    code = (code + COUNT[n]) * 2;
  }
}());

class HpackError extends Error {}

function huffmanDecode(buf, start, end) {
  const out = [];
  let code = 0;
  let n = 0;
  for (let i = start; i < end; i++) {
    const byte = buf[i];
    for (let b = 7; b >= 0; b--) {
      code = code * 2 + ((byte >> b) & 1);
      n++;
      if (code - FIRST[n] < COUNT[n]) {
        const sym = SYMBOLS[START[n] + code - FIRST[n]];
        if (sym === 256) throw new HpackError('EOS in a Huffman string');
        out.push(sym);
        code = 0;
        n = 0;
      } else if (n === 30) throw new HpackError('bad Huffman code');
    }
  }
  // what is left must be the start of EOS (all ones), shorter than a byte
  if (n > 7 || code !== (1 << n) - 1) throw new HpackError('bad Huffman padding');
  return Buffer.from(out).toString('latin1');
}

/** The header blocks of one connection, in order. */
class Decoder {
  constructor(maxTableSize, maxListSize) {
    this.table = []; // newest first
    this.size = 0;
    this.max = maxTableSize;
    this.limit = maxTableSize; // what SETTINGS allows
    this.maxList = maxListSize;
  }

  int(buf, state, prefix) {
    const mask = (1 << prefix) - 1;
    let v = buf[state.pos++] & mask;
    if (v < mask) return v;
    let m = 1;
    for (;;) {
      if (state.pos >= buf.length) throw new HpackError('integer cut short');
      const b = buf[state.pos++];
      v += (b & 0x7f) * m;
      m *= 128;
      if (v > 0x7fffffff) throw new HpackError('integer too large');
      if (b < 0x80) return v;
    }
  }

  str(buf, state) {
    if (state.pos >= buf.length) throw new HpackError('string cut short');
    const huff = buf[state.pos] & 0x80;
    const len = this.int(buf, state, 7);
    if (len > buf.length - state.pos) throw new HpackError('string cut short');
    const start = state.pos;
    state.pos += len;
    return huff ? huffmanDecode(buf, start, state.pos) : buf.toString('latin1', start, state.pos);
  }

  field(index) {
    if (index === 0) throw new HpackError('index 0');
    if (index < STATIC.length) return STATIC[index];
    const e = this.table[index - STATIC.length];
    if (e === undefined) throw new HpackError(`index ${index} out of the table`);
    return e;
  }

  add(name, value) {
    const size = name.length + value.length + 32;
    this.table.unshift([name, value]);
    this.size += size;
    this.evict();
  }

  evict() {
    while (this.size > this.max && this.table.length > 0) {
      const [n, v] = this.table.pop();
      this.size -= n.length + v.length + 32;
    }
  }

  /** A header block -> [[name, value], ...] (names and values as latin1 strings). */
  decode(buf) {
    const state = { pos: 0 };
    const out = [];
    let listSize = 0;
    while (state.pos < buf.length) {
      const b = buf[state.pos];
      let name;
      let value;
      if (b & 0x80) {
        [name, value] = this.field(this.int(buf, state, 7));
      } else if ((b & 0xe0) === 0x20) {
        const size = this.int(buf, state, 5);
        if (size > this.limit) throw new HpackError('table size over the limit');
        this.max = size;
        this.evict();
        continue;
      } else {
        const indexing = (b & 0xc0) === 0x40;
        const index = this.int(buf, state, indexing ? 6 : 4);
        name = index === 0 ? this.str(buf, state) : this.field(index)[0];
        value = this.str(buf, state);
        if (indexing) this.add(name, value);
      }
      listSize += name.length + value.length + 32;
      if (listSize > this.maxList) throw new HpackError('header list too large');
      out.push([name, value]);
    }
    return out;
  }
}

function intBytes(v, prefix, first, out) {
  const mask = (1 << prefix) - 1;
  if (v < mask) {
    out.push(first | v);
    return;
  }
  out.push(first | mask);
  v -= mask;
  while (v >= 128) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

/** Header fields ([[name, value], ...], ASCII) as a block of literals without indexing
 * (':status' and 'content-type' by their static index). */
function encode(fields) {
  const out = [];
  for (const [name, value] of fields) {
    if (name === ':status' && value === '200') {
      out.push(0x88);
      continue;
    }
    const index = name === ':status' ? 8 : name === 'content-type' ? 31 : 0;
    intBytes(index, 4, 0, out);
    if (index === 0) {
      intBytes(name.length, 7, 0, out);
      for (let i = 0; i < name.length; i++) out.push(name.charCodeAt(i) & 0xff);
    }
    intBytes(value.length, 7, 0, out);
    for (let i = 0; i < value.length; i++) out.push(value.charCodeAt(i) & 0xff);
  }
  return Buffer.from(out);
}

module.exports = { Decoder, HpackError, encode, huffmanDecode };
