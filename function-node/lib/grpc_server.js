'use strict';
// A small gRPC server of unary methods on the runtime's own HTTP/2 server (http2_server.js):
// a call's response headers, message and trailers leave in one write.
const http2 = require('./http2_server');

const status = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, RESOURCE_EXHAUSTED: 8,
  ABORTED: 10, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
};

const PREFIX = 5; // compressed flag (1 byte) + message length (4 bytes, big-endian)
const TIMEOUT_UNIT_MS = { H: 3600e3, M: 60e3, S: 1e3, m: 1, u: 1e-3, n: 1e-6 };

/** grpc-message: bytes outside printable ASCII and '%' percent-encoded (gRPC's HTTP/2 spec). */
function encodeMessage(text) {
  const b = Buffer.from(String(text), 'utf8');
  let out = '';
  for (const c of b) {
    out += c >= 0x20 && c <= 0x7e && c !== 0x25 ? String.fromCharCode(c)
      : `%${c.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** grpc-timeout (1-8 digits and a unit) in ms, or null when absent or malformed. */
function timeoutMs(v) {
  const m = typeof v === 'string' ? /^(\d{1,8})([HMSmun])$/.exec(v) : null;
  return m ? Number(m[1]) * TIMEOUT_UNIT_MS[m[2]] : null;
}

/** host:port, [v6]:port or unix:path -> the options of net's listen(). */
function listenOptions(address) {
  if (address.startsWith('unix:')) {
    let p = address.slice('unix:'.length);
    if (p.startsWith('//')) p = p.slice(2);
    return { path: p };
  }
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d{1,5})$/.exec(address);
  if (!m || Number(m[3]) > 65535) throw new Error(`bad address (want host:port or unix:path)`);
  const host = m[1] !== undefined ? m[1] : m[2];
  return { host: host === '' ? undefined : host, port: Number(m[3]) };
}

const RESPONSE_HEADERS = [[':status', '200'], ['content-type', 'application/grpc']];
const OK_TRAILERS = [['grpc-status', '0']];

/** One stream's call: collects the request, runs the method, answers once. */
function serveStream(stream, headers, methods, messageMax) {
  let answered = false;
  let timer = null;
  const fail = (code, details) => {
    if (answered) return;
    answered = true;
    if (timer) clearTimeout(timer);
    if (stream.closed || stream.headersSent) return;
    stream.respond([...RESPONSE_HEADERS, ['grpc-status', String(code)],
      ['grpc-message', encodeMessage(details)]], null, null);
    // Refused before the request's end: reset the rest of it (as gRPC servers do) rather
    // than read what the client still sends.
    if (!stream.ended) stream.reset(http2.E.NO_ERROR);
  };
  const reply = (buf) => {
    if (answered) return;
    answered = true;
    if (timer) clearTimeout(timer);
    if (stream.closed || stream.headersSent) return;
    const frame = Buffer.allocUnsafe(PREFIX + buf.length);
    frame[0] = 0;
    frame.writeUInt32BE(buf.length, 1);
    frame.set(buf, PREFIX);
    stream.respond(RESPONSE_HEADERS, frame, OK_TRAILERS);
  };

  const path = headers[':path'];
  const method = methods.get(path);
  if (headers[':method'] !== 'POST' || !method) {
    fail(status.UNIMPLEMENTED, `The server does not implement the method ${path}`);
    return;
  }
  const ct = headers['content-type'];
  if (typeof ct !== 'string' || !ct.startsWith('application/grpc')) {
    answered = true;
    stream.respond([[':status', '415']], null, null);
    return;
  }
  const ms = timeoutMs(headers['grpc-timeout']);
  if (ms !== null) {
    timer = setTimeout(() => fail(status.DEADLINE_EXCEEDED, 'Deadline exceeded'), ms);
  }
  stream.onclose = () => {
    answered = true; // nobody left to answer
    if (timer) clearTimeout(timer);
  };

  const chunks = [];
  let have = 0;
  let want = -1; // the whole frame's size once the prefix is in
  stream.ondata = (chunk) => {
    if (answered) return; // refused already: what is left is dropped, not kept
    chunks.push(chunk);
    have += chunk.length;
    if (want < 0 && have >= PREFIX) {
      const head = chunks.length === 1 ? chunk : Buffer.concat(chunks, have);
      if (head[0] !== 0) {
        fail(status.UNIMPLEMENTED, 'compressed messages are not supported');
        return;
      }
      const len = head.readUInt32BE(1);
      if (len > messageMax) {
        fail(status.RESOURCE_EXHAUSTED,
          `Received message larger than max (${len} vs. ${messageMax})`);
        return;
      }
      want = PREFIX + len;
    }
    if (want >= 0 && have > want) fail(status.INTERNAL, 'more than one request message');
    else if (want < 0 && have > PREFIX) fail(status.INTERNAL, 'bad message prefix');
  };
  stream.onend = () => {
    if (answered) return;
    if (want < 0 || have !== want) {
      fail(status.INTERNAL, want < 0 && have === 0 ? 'no request message'
        : 'the request message is cut short');
      return;
    }
    const frame = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, have);
    chunks.length = 0;
    let req;
    try {
      req = method.decode(frame.subarray(PREFIX));
    } catch (e) {
      fail(status.INTERNAL, `Error deserializing request: ${e.message}`);
      return;
    }
    method.handler(req, (err, res) => {
      if (answered) return;
      if (err) {
        fail(err.code, err.details);
        return;
      }
      let buf;
      try {
        buf = method.encode(res);
      } catch (e) {
        fail(status.INTERNAL, `Error serializing response: ${e.message}`);
        return;
      }
      if (buf.length > messageMax) {
        fail(status.RESOURCE_EXHAUSTED,
          `Sent message larger than max (${buf.length} vs. ${messageMax})`);
        return;
      }
      reply(buf);
    });
  };
}

/** methods: Map of '/pkg.Service/Method' -> {decode(buf), encode(obj), handler(req, cb)};
 * tls: null or {key, cert, ca}. Returns {listen(address, cb(err)), shutdown(graceMs, cb)}. */
function createServer(methods, { messageMax, tls }) {
  // request bytes one connection may hold: room for a few messages
  const memoryMax = Math.max(64 << 20, 4 * messageMax + (16 << 20));
  const { server, sessions } = http2.createServer({
    tls, memoryMax,
    onStream: (stream, headers) => serveStream(stream, headers, methods, messageMax),
  });

  return {
    listen(address, cb) {
      let lo;
      try {
        lo = listenOptions(address);
      } catch (e) {
        cb(e);
        return;
      }
      const onError = (e) => cb(e);
      server.once('error', onError);
      server.listen(lo, () => {
        server.removeListener('error', onError);
        server.on('error', () => {});
        cb(null);
      });
    },
    /** Stops accepting, lets running calls finish for graceMs, then closes every session. */
    shutdown(graceMs, cb) {
      let finished = false;
      const done = () => {
        if (finished) return;
        finished = true;
        clearTimeout(force);
        cb();
      };
      const force = setTimeout(() => {
        for (const s of sessions) s.destroy();
        done();
      }, graceMs);
      server.close(done);
      for (const s of sessions) s.goaway(http2.E.NO_ERROR);
    },
  };
}

module.exports = { status, createServer, encodeMessage, timeoutMs, listenOptions };
