// Handlers the runtime tests call to see what a function receives and what the runtime
// does with what it returns.
exports.context = (event, ctx, cb) => cb(null, ctx);

exports.env = (event, ctx, cb) => {
  const out = {};
  for (const n of event.names) out[n] = process.env[n] === undefined ? null : process.env[n];
  cb(null, out);
};

exports.event_type = (event, ctx, cb) => {
  if (Buffer.isBuffer(event)) return cb(null, { type: 'Buffer', hex: event.toString('hex') });
  return cb(null, { type: Array.isArray(event) ? 'array' : typeof event, event });
};

exports.echo = (event, ctx, cb) => cb(null, event);
exports.none = (event, ctx, cb) => cb(null, null);
exports.undef = (event, ctx, cb) => cb();
exports.empty = (event, ctx, cb) => cb(null, '');
exports.raw = (event, ctx, cb) => cb(null, Buffer.from([0x00, 0xff, 0x72, 0x61, 0x77]));
exports.text = (event, ctx, cb) => cb(null, 'plain text');
exports.zero = (event, ctx, cb) => cb(null, 0);
exports.big = (event, ctx, cb) => cb(null, Buffer.alloc(event.size, 'x'));
exports.sleep = (event, ctx, cb) => {
  setTimeout(() => cb(null, { slept: event.seconds, n: event.n }), event.seconds * 1000);
};
exports.throws = () => { throw new RangeError('thrown ' + 'here'); };
exports.cb_string = (event, ctx, cb) => cb('plain failure');
exports.twice = (event, ctx, cb) => { cb(null, { first: true }); cb(null, { second: true }); };
exports.cyclic = (event, ctx, cb) => { const o = {}; o.self = o; cb(null, o); };
exports.async_value = async (event) => ({ async: true, got: event });
exports.async_reject = async () => { throw new Error('async failure'); };
exports.async_later = async (event, ctx, cb) => { setTimeout(() => cb(null, { later: true }), 50); };
exports.throw_later = (event, ctx, cb) => {
  setTimeout(() => { throw new Error('thrown from a timer'); }, 0);
  setTimeout(() => cb(null, { alive: true }), 50);
};
exports.hang = () => {};
exports.not_a_function = 42;
