'use strict';
// The server side of HTTP/2 (RFC 9113) that a unary gRPC server needs, on a net or tls
// socket. Node's http2 module cost a fresh runtime ~0.3 ms per call (most of a Call) while
// V8 still interprets its JavaScript, and always sent a reply's trailers in a second write one
// event-loop turn after its headers and message (the client woke twice); here a reply's
// HEADERS, DATA and trailing HEADERS leave in one write, with whatever else the same read
// produced (SETTINGS and PING acks, WINDOW_UPDATEs).
const net = require('net');
const tls = require('tls');
const hpack = require('./hpack');

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const T = {
  DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6,
  GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9,
};
const F = { END_STREAM: 1, ACK: 1, END_HEADERS: 4, PADDED: 8, PRIORITY: 0x20 };
const E = {
  NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, FLOW_CONTROL_ERROR: 3, STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6, REFUSED_STREAM: 7, COMPRESSION_ERROR: 9, ENHANCE_YOUR_CALM: 11,
};
const FRAME_MAX = 16384; // what we receive (the default: never raised by our SETTINGS)
const HEADER_LIST_MAX = 64 * 1024;
const STREAMS_MAX = 10000; // open streams of one connection; more are refused
const WINDOW_INIT = 65535;
const WINDOW_MAX = 0x7fffffff;
const UPDATE_AT = 32768; // received bytes acknowledged (WINDOW_UPDATE) in steps of this

class ConnectionError extends Error {
  constructor(code, text) {
    super(text);
    this.code = code;
  }
}

function frameHead(type, flags, id, length) {
  const h = Buffer.allocUnsafe(9);
  h[0] = length >>> 16;
  h[1] = (length >>> 8) & 0xff;
  h[2] = length & 0xff;
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(id, 5);
  return h;
}

function u32Frame(type, id, value) {
  const f = frameHead(type, 0, id, 4);
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(value, 0);
  return [f, b];
}

/** One request stream. The gRPC layer sets ondata(chunk), onend() and onclose(). */
class Stream {
  constructor(session, id, headers) {
    this.session = session;
    this.id = id;
    this.headers = headers;
    this.ended = false; // the client sent END_STREAM
    this.closed = false; // no more frames either way (answered and ended, reset, or lost)
    this.headersSent = false;
    this.answeredEarly = false; // our side ended before the client's
    this.buffered = 0; // request bytes received
    this.sendWindow = session.peerWindow;
    this.pending = null; // {data, off, trailers} held back by flow control
    this.ondata = null;
    this.onend = null;
    this.onclose = null;
  }

  /** Answers: the response headers, then (if data is not null) one DATA payload and the
   * trailers; with data null the headers end the stream (a Trailers-Only reply). */
  respond(fields, data, trailers) {
    if (this.closed || this.headersSent) return;
    this.headersSent = true;
    const s = this.session;
    s.headerBlock(this.id, fields, data === null);
    if (data === null) this.finish();
    else {
      this.pending = { data, off: 0, trailers };
      s.sendPending(this);
    }
    s.flush();
  }

  /** RST_STREAM with code; the stream closes. */
  reset(code) {
    if (this.closed) return;
    this.session.out.push(...u32Frame(T.RST_STREAM, this.id, code));
    this.session.flush();
    this.close();
  }

  /** Our side ended: the stream closes once the client's side has too (or we reset it). */
  finish() {
    this.pending = null;
    if (this.ended) this.close();
    else this.answeredEarly = true;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.pending = null;
    this.session.streams.delete(this.id);
    this.session.buffered -= this.buffered;
    if (this.onclose) this.onclose();
    this.session.maybeDone();
  }
}

class Session {
  constructor(socket, opts) {
    this.socket = socket;
    this.opts = opts;
    this.streams = new Map();
    this.lastId = 0;
    this.in = null; // bytes not yet parsed
    this.prefaced = false;
    this.decoder = new hpack.Decoder(4096, HEADER_LIST_MAX);
    this.block = null; // a header block waiting for CONTINUATION: {id, flags, parts, size}
    this.peerWindow = WINDOW_INIT; // SETTINGS_INITIAL_WINDOW_SIZE of the client
    this.peerFrameMax = 16384;
    this.sendWindow = WINDOW_INIT; // the connection's
    this.unacked = 0; // received bytes not yet given back by WINDOW_UPDATE
    this.buffered = 0; // request bytes held by open streams
    this.out = [];
    this.inRead = false;
    this.closing = false; // GOAWAY sent
    this.dead = false;
    socket.setNoDelay(true);
    socket.on('data', (d) => this.read(d));
    socket.on('error', () => {});
    socket.on('close', () => this.lost());
    // our SETTINGS: the defaults but no server push
    this.out.push(frameHead(T.SETTINGS, 0, 0, 6), Buffer.from([0, 2, 0, 0, 0, 0]));
    this.flush();
  }

  read(d) {
    if (this.dead) return;
    this.in = this.in === null ? d : Buffer.concat([this.in, d]);
    this.inRead = true;
    try {
      this.parse();
    } catch (e) {
      this.inRead = false;
      if (!(e instanceof ConnectionError)) {
        this.fail(E.INTERNAL_ERROR);
        throw e;
      }
      this.fail(e.code);
      return;
    }
    this.inRead = false;
    if (this.unacked >= UPDATE_AT) {
      this.out.push(...u32Frame(T.WINDOW_UPDATE, 0, this.unacked));
      this.unacked = 0;
    }
    this.flush();
  }

  parse() {
    let buf = this.in;
    let pos = 0;
    if (!this.prefaced) {
      const n = Math.min(buf.length, PREFACE.length);
      if (!buf.subarray(0, n).equals(PREFACE.subarray(0, n))) {
        throw new ConnectionError(E.PROTOCOL_ERROR, 'not an HTTP/2 client');
      }
      if (n < PREFACE.length) return;
      pos = PREFACE.length;
      this.prefaced = true;
    }
    while (!this.dead && buf.length - pos >= 9) {
      const len = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2];
      if (len > FRAME_MAX) throw new ConnectionError(E.FRAME_SIZE_ERROR, 'frame too large');
      if (buf.length - pos < 9 + len) break;
      const type = buf[pos + 3];
      const flags = buf[pos + 4];
      const id = buf.readUInt32BE(pos + 5) & 0x7fffffff;
      const payload = buf.subarray(pos + 9, pos + 9 + len);
      pos += 9 + len;
      this.frame(type, flags, id, payload);
    }
    this.in = pos >= buf.length ? null : buf.subarray(pos);
    if (this.in !== null && pos > 0) this.in = Buffer.from(this.in); // release the rest
  }

  frame(type, flags, id, p) {
    if (this.block !== null && type !== T.CONTINUATION) {
      throw new ConnectionError(E.PROTOCOL_ERROR, 'a header block was cut by another frame');
    }
    switch (type) {
      case T.DATA: return this.onData(flags, id, p);
      case T.HEADERS: return this.onHeaders(flags, id, p);
      case T.CONTINUATION: return this.onContinuation(flags, id, p);
      case T.PRIORITY:
        if (id === 0) throw new ConnectionError(E.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (p.length !== 5) throw new ConnectionError(E.FRAME_SIZE_ERROR, 'bad PRIORITY');
        return undefined;
      case T.RST_STREAM: {
        if (id === 0) throw new ConnectionError(E.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        if (p.length !== 4) throw new ConnectionError(E.FRAME_SIZE_ERROR, 'bad RST_STREAM');
        if (id > this.lastId) throw new ConnectionError(E.PROTOCOL_ERROR, 'RST_STREAM on idle');
        const s = this.streams.get(id);
        if (s) s.close();
        return undefined;
      }
      case T.SETTINGS: return this.onSettings(flags, id, p);
      case T.PUSH_PROMISE: throw new ConnectionError(E.PROTOCOL_ERROR, 'PUSH_PROMISE from a peer');
      case T.PING:
        if (id !== 0) throw new ConnectionError(E.PROTOCOL_ERROR, 'PING on a stream');
        if (p.length !== 8) throw new ConnectionError(E.FRAME_SIZE_ERROR, 'bad PING');
        if (!(flags & F.ACK)) this.out.push(frameHead(T.PING, F.ACK, 0, 8), Buffer.from(p));
        return undefined;
      case T.GOAWAY:
        if (id !== 0) throw new ConnectionError(E.PROTOCOL_ERROR, 'GOAWAY on a stream');
        this.goaway(E.NO_ERROR);
        return undefined;
      case T.WINDOW_UPDATE: return this.onWindowUpdate(id, p);
      default: return undefined; // unknown frame types are ignored
    }
  }

  /** The payload without its padding (PADDED flag). */
  unpad(flags, p, extra) {
    if (!(flags & F.PADDED)) return p.subarray(extra);
    if (p.length < 1) throw new ConnectionError(E.FRAME_SIZE_ERROR, 'bad padding');
    const pad = p[0];
    if (1 + extra + pad > p.length) throw new ConnectionError(E.PROTOCOL_ERROR, 'bad padding');
    return p.subarray(1 + extra, p.length - pad);
  }

  onData(flags, id, p) {
    if (id === 0) throw new ConnectionError(E.PROTOCOL_ERROR, 'DATA on stream 0');
    this.unacked += p.length; // counted whatever becomes of it
    const s = this.streams.get(id);
    if (s === undefined || s.ended) {
      if (id > this.lastId) throw new ConnectionError(E.PROTOCOL_ERROR, 'DATA on an idle stream');
      if (s !== undefined) s.reset(E.STREAM_CLOSED);
      else this.out.push(...u32Frame(T.RST_STREAM, id, E.STREAM_CLOSED));
      return;
    }
    const data = this.unpad(flags, p, 0);
    if (p.length > 0 && !(flags & F.END_STREAM)) {
      this.out.push(...u32Frame(T.WINDOW_UPDATE, id, p.length));
    }
    if (data.length > 0 && !s.closed && s.ondata) {
      s.buffered += data.length;
      this.buffered += data.length;
      if (this.buffered > this.opts.memoryMax) {
        throw new ConnectionError(E.ENHANCE_YOUR_CALM, 'too much request data held');
      }
      s.ondata(data);
    }
    if (flags & F.END_STREAM) this.endOf(s);
  }

  endOf(s) {
    s.ended = true;
    if (s.answeredEarly) s.close();
    else if (!s.closed && s.onend) s.onend();
  }

  onHeaders(flags, id, p) {
    if (id === 0) throw new ConnectionError(E.PROTOCOL_ERROR, 'HEADERS on stream 0');
    const block = this.unpad(flags, p, flags & F.PRIORITY ? 5 : 0);
    this.block = { id, flags, parts: [block], size: block.length };
    if (flags & F.END_HEADERS) this.endBlock();
  }

  onContinuation(flags, id, p) {
    if (this.block === null || this.block.id !== id) {
      throw new ConnectionError(E.PROTOCOL_ERROR, 'CONTINUATION out of place');
    }
    this.block.parts.push(p);
    this.block.size += p.length;
    if (this.block.size > HEADER_LIST_MAX) {
      throw new ConnectionError(E.ENHANCE_YOUR_CALM, 'header block too large');
    }
    if (flags & F.END_HEADERS) this.endBlock();
  }

  endBlock() {
    const { id, flags, parts } = this.block;
    this.block = null;
    let fields;
    try {
      fields = this.decoder.decode(parts.length === 1 ? parts[0] : Buffer.concat(parts));
    } catch (e) {
      if (!(e instanceof hpack.HpackError)) throw e;
      throw new ConnectionError(E.COMPRESSION_ERROR, e.message);
    }
    const s = this.streams.get(id);
    if (s !== undefined) { // trailers of the request
      if (!(flags & F.END_STREAM)) {
        throw new ConnectionError(E.PROTOCOL_ERROR, 'HEADERS mid-stream');
      }
      if (!s.ended) this.endOf(s);
      return;
    }
    if (id <= this.lastId) {
      this.out.push(...u32Frame(T.RST_STREAM, id, E.STREAM_CLOSED));
      return;
    }
    if (id % 2 === 0) throw new ConnectionError(E.PROTOCOL_ERROR, 'even stream id from a client');
    this.lastId = id;
    if (this.closing || this.streams.size >= STREAMS_MAX) {
      this.out.push(...u32Frame(T.RST_STREAM, id, E.REFUSED_STREAM));
      return;
    }
    const headers = Object.create(null);
    for (const [name, value] of fields) {
      if (headers[name] === undefined) headers[name] = value;
      else headers[name] += `, ${value}`;
    }
    const st = new Stream(this, id, headers);
    this.streams.set(id, st);
    this.opts.onStream(st, headers);
    if (flags & F.END_STREAM) this.endOf(st);
  }

  onSettings(flags, id, p) {
    if (id !== 0) throw new ConnectionError(E.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & F.ACK) {
      if (p.length !== 0) throw new ConnectionError(E.FRAME_SIZE_ERROR, 'SETTINGS ack with data');
      return;
    }
    if (p.length % 6 !== 0) throw new ConnectionError(E.FRAME_SIZE_ERROR, 'bad SETTINGS');
    for (let i = 0; i < p.length; i += 6) {
      const key = p.readUInt16BE(i);
      const v = p.readUInt32BE(i + 2);
      if (key === 4) { // INITIAL_WINDOW_SIZE: moves every stream's window
        if (v > WINDOW_MAX) throw new ConnectionError(E.FLOW_CONTROL_ERROR, 'window too large');
        const delta = v - this.peerWindow;
        this.peerWindow = v;
        for (const s of this.streams.values()) s.sendWindow += delta;
      } else if (key === 5) {
        if (v < 16384 || v > 16777215) {
          throw new ConnectionError(E.PROTOCOL_ERROR, 'bad MAX_FRAME_SIZE');
        }
        this.peerFrameMax = v;
      } else if (key === 2 && v > 1) {
        throw new ConnectionError(E.PROTOCOL_ERROR, 'bad ENABLE_PUSH');
      }
    }
    this.out.push(frameHead(T.SETTINGS, F.ACK, 0, 0));
    this.sendAllPending();
  }

  onWindowUpdate(id, p) {
    if (p.length !== 4) throw new ConnectionError(E.FRAME_SIZE_ERROR, 'bad WINDOW_UPDATE');
    const inc = p.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) throw new ConnectionError(E.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.sendWindow += inc;
      if (this.sendWindow > WINDOW_MAX) {
        throw new ConnectionError(E.FLOW_CONTROL_ERROR, 'window too large');
      }
      this.sendAllPending();
      return;
    }
    const s = this.streams.get(id);
    if (s === undefined) return; // closed meanwhile
    if (inc === 0) {
      s.reset(E.PROTOCOL_ERROR);
      return;
    }
    s.sendWindow += inc;
    if (s.sendWindow > WINDOW_MAX) s.reset(E.FLOW_CONTROL_ERROR);
    else this.sendPending(s);
  }

  /** A header block as HEADERS (+ CONTINUATION) frames. */
  headerBlock(id, fields, endStream) {
    const block = hpack.encode(fields);
    const es = endStream ? F.END_STREAM : 0;
    let off = Math.min(block.length, this.peerFrameMax);
    this.out.push(frameHead(T.HEADERS, es | (off === block.length ? F.END_HEADERS : 0), id, off),
      block.subarray(0, off));
    while (off < block.length) {
      const n = Math.min(block.length - off, this.peerFrameMax);
      this.out.push(frameHead(T.CONTINUATION, off + n === block.length ? F.END_HEADERS : 0, id, n),
        block.subarray(off, off + n));
      off += n;
    }
  }

  /** As much of a stream's reply as the windows let through; the trailers after the rest. */
  sendPending(s) {
    const p = s.pending;
    if (p === null || s.closed) return;
    while (p.off < p.data.length) {
      const n = Math.min(p.data.length - p.off, this.peerFrameMax, this.sendWindow, s.sendWindow);
      if (n <= 0) return;
      this.out.push(frameHead(T.DATA, 0, s.id, n), p.data.subarray(p.off, p.off + n));
      p.off += n;
      this.sendWindow -= n;
      s.sendWindow -= n;
    }
    this.headerBlock(s.id, p.trailers, true);
    s.finish();
  }

  sendAllPending() {
    for (const s of this.streams.values()) {
      if (s.pending !== null) this.sendPending(s);
    }
  }

  /** Everything queued, in one write (at the end of a read: the read's work included). */
  flush() {
    if (!this.inRead) this.flushNow();
  }

  flushNow() {
    if (this.out.length === 0 || this.dead) return;
    const out = this.out;
    this.out = [];
    this.socket.write(out.length === 1 ? out[0] : Buffer.concat(out));
    // a peer that does not read what it asks for (PING or SETTINGS floods) is cut off
    if (this.socket.writableLength > this.opts.memoryMax) this.destroy();
  }

  goawayFrame(code) {
    const p = Buffer.allocUnsafe(8);
    p.writeUInt32BE(this.lastId, 0);
    p.writeUInt32BE(code, 4);
    return [frameHead(T.GOAWAY, 0, 0, 8), p];
  }

  /** Sends GOAWAY: no new streams; the connection ends when the open ones have. */
  goaway(code) {
    if (!this.closing && !this.dead) {
      this.closing = true;
      this.out.push(...this.goawayFrame(code));
      this.flush();
    }
    this.maybeDone();
  }

  maybeDone() {
    if (this.closing && !this.dead && this.streams.size === 0) {
      this.flushNow();
      this.dead = true;
      this.end();
    }
  }

  /** A connection error: GOAWAY with code, then the connection ends. */
  fail(code) {
    if (this.dead) return;
    this.out.push(...this.goawayFrame(code));
    this.flushNow();
    this.dead = true;
    this.end();
    this.lost();
  }

  /** Ends the connection; a peer that does not close its side is cut off soon after. */
  end() {
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  lost() {
    this.dead = true;
    for (const s of [...this.streams.values()]) s.close();
    if (this.opts.onClose) this.opts.onClose(this);
  }

  destroy() {
    this.dead = true;
    this.socket.destroy();
    this.lost();
  }
}

/** opts: {tls: null or {key, cert, ca}, memoryMax, onStream(stream, headers)}. Returns the
 * net/tls server and the set of live sessions. */
function createServer(opts) {
  const sessions = new Set();
  const sopts = { ...opts, onClose: (s) => sessions.delete(s) };
  const start = (socket) => {
    const s = new Session(socket, sopts);
    if (!s.dead) sessions.add(s);
  };
  let server;
  if (opts.tls) {
    const t = opts.tls;
    server = tls.createServer({
      key: t.key, cert: t.cert, ca: t.ca || undefined, ALPNProtocols: ['h2'],
      requestCert: !!t.ca, rejectUnauthorized: !!t.ca,
    }, (socket) => {
      if (socket.alpnProtocol !== 'h2') {
        socket.destroy();
        return;
      }
      start(socket);
    });
    server.on('tlsClientError', () => {}); // a client refused in the handshake is not our error
  } else {
    server = net.createServer(start);
  }
  return { server, sessions };
}

module.exports = { createServer, E };
