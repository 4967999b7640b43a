'use strict';
// The runtime process: command line, config, the gRPC server of baetyl.Function/Call (and
// CallBatch), and a graceful stop on SIGTERM/SIGINT (SPEC §12 "Runtimes", seed chapter 16).
const fs = require('fs');
const path = require('path');
const util = require('util');
const protoLoader = require('@grpc/proto-loader');

const cfg = require('./config');
const { status, createServer } = require('./grpc_server');
const functions = require('./functions');
const functionMessage = require('./function_message');
const { log, fatal } = require('./logger');

const PROGRAM = 'baetyl-function-node';
const STOP_GRACE_MS = 5000; // running calls get this long to finish after SIGTERM
// Set to 1 to serve Call only, as Baetyl 1.0's runtime did (the function-manager then falls
// back to one message per call): for tests of that path.
const NO_BATCH_ENV = 'BAETYL_RUNTIME_NO_CALLBATCH';
// In a batch's reply a failure's text is cut to this, and room for one (BATCH_ERR_COST
// bytes) is kept for each message still to come, so the reply stays within the limit.
const BATCH_ERR_TEXT_MAX = 512;
const BATCH_ERR_COST = BATCH_ERR_TEXT_MAX + 16;

/** function.proto inside the package (installed) or in the source tree. */
function findProto(root) {
  for (const p of [path.join(root, 'proto', 'function.proto'),
    path.join(root, '..', 'proto', 'function.proto')]) {
    if (fs.existsSync(p)) return path.normalize(p);
  }
  return null;
}

/** BAETYL_SERVICE_INSTANCE_ADDRESS (a dynamic instance) wins over server.address. */
function listenAddress(sc) {
  for (const v of ['BAETYL_SERVICE_INSTANCE_ADDRESS', 'OPENEDGE_SERVICE_INSTANCE_ADDRESS']) {
    if (process.env[v]) return process.env[v];
  }
  return sc.address;
}

function readFile(p, what) {
  try {
    return fs.readFileSync(p);
  } catch (e) {
    throw new cfg.ConfigError(`server.${what}: cannot read ${p}: ${e.code || e.message}`);
  }
}

/** null (h2c) or the key pair, and the ca that client certificates must be signed by. */
function tlsOptions(sc) {
  if (!sc.cert) return null;
  return {
    key: readFile(sc.key, 'key'), cert: readFile(sc.cert, 'cert'),
    ca: sc.ca ? readFile(sc.ca, 'ca') : null,
  };
}

function usage(out) {
  out.write(`Usage: ${PROGRAM} [-c FILE]\n` +
    'Baetyl Node.js function runtime: serves baetyl.Function/Call (and CallBatch) with the\n' +
    'handlers of its config.\n' +
    `  -c, --config FILE   config file (default ${cfg.DEFAULT_PATH})\n` +
    '  -h, --help          this help\n');
}

/** Returns {config} or {exit}. */
function parseArgs(argv) {
  let config = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      usage(process.stdout);
      return { exit: 0 };
    } else if (a === '-c' || a === '--config') {
      if (i + 1 >= argv.length) {
        process.stderr.write(`${PROGRAM}: option ${a} needs a file name\n`);
        return { exit: 2 };
      }
      config = argv[++i];
    } else if (a.startsWith('--config=')) {
      config = a.slice('--config='.length);
    } else {
      process.stderr.write(`${PROGRAM}: unknown argument ${a}\n`);
      usage(process.stderr);
      return { exit: 2 };
    }
  }
  return { config };
}

function setLogFields() {
  const env = process.env;
  const name = env.BAETYL_SERVICE_NAME || env.OPENEDGE_SERVICE_NAME;
  if (name) {
    log.setField('service', name);
    const inst = env.BAETYL_SERVICE_INSTANCE_NAME || env.OPENEDGE_SERVICE_INSTANCE_NAME;
    if (inst) log.setField('instance', inst);
  }
}

/** Runs one message: done({code, details}) on failure, else done(null, payload). */
function runOne(fns, req, done) {
  const fn = fns.get(req.FunctionName);
  if (fn === undefined) {
    log.warn('function not found', { function: req.FunctionName });
    done({ code: status.NOT_FOUND, details: `function not found: (${req.FunctionName})` });
    return;
  }
  const start = log.enabled('debug') ? process.hrtime.bigint() : 0n;
  functions.invoke(fn, req, (err, payload) => {
    if (err) {
      log.error('function failed', {
        function: req.FunctionName, invokeid: req.FunctionInvokeID, error: err.message,
      });
      done({ code: status.UNKNOWN, details: err.message });
      return;
    }
    if (start) {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      log.debug('function called', {
        function: req.FunctionName, invokeid: req.FunctionInvokeID,
        bytes_in: req.Payload.length, bytes_out: payload.length, ms: ms.toFixed(3),
      });
    }
    done(null, payload);
  });
}

/** The Call and CallBatch handlers: user function calls answered asynchronously (a slow
 * or async handler does not hold the others back), at most sc.concurrent RPCs at once. A
 * batch runs its messages side by side and answers once each has its result: the reply
 * (which echoes the request, ID, QOS, Topic… as Baetyl 1.0, with the result as Payload)
 * or the code and text Call would have failed with. */
function makeHandlers(fns, sc) {
  let inflight = 0;
  const busy = (callback) => {
    if (sc.concurrent > 0 && inflight >= sc.concurrent) {
      callback({ code: status.RESOURCE_EXHAUSTED, details: 'too many concurrent calls' });
      return true;
    }
    inflight++;
    return false;
  };
  const Call = (req, callback) => {
    if (busy(callback)) return;
    runOne(fns, req, (err, payload) => {
      inflight--;
      if (err) callback(err);
      else callback(null, { ...req, Payload: payload });
    });
  };
  const CallBatch = (req, callback) => {
    if (busy(callback)) return;
    const msgs = req.Messages || [];
    const results = new Array(msgs.length);
    let left = msgs.length;
    // Sizes are counted in message order once every result is in: a reply that would
    // take the batch's reply over the limit is left out (Aborted: the caller calls that
    // message again); the first one is always kept.
    const finish = () => {
      inflight--;
      let size = 0;
      results.forEach((r, i) => {
        if (!r.Message) {
          r.Error = r.Error.slice(0, BATCH_ERR_TEXT_MAX);
          size += r.Error.length + 16;
          return;
        }
        const m = r.Message;
        const add = m.Payload.length + m.Topic.length + m.FunctionName.length
          + m.FunctionInvokeID.length + 48;
        if (i > 0 && size + add + (msgs.length - i - 1) * BATCH_ERR_COST > sc.messageMax) {
          results[i] = {
            Code: status.ABORTED, Error: "the batch's reply is full: call again",
          };
          size += 64;
          return;
        }
        size += add;
      });
      callback(null, { Results: results });
    };
    if (left === 0) {
      finish();
      return;
    }
    msgs.forEach((req, i) => {
      runOne(fns, req, (err, payload) => {
        results[i] = err ? { Code: err.code, Error: err.details }
          : { Message: { ...req, Payload: payload } };
        if (--left === 0) finish();
      });
    });
  };
  return { Call, CallBatch };
}

/** Runs the runtime until SIGTERM/SIGINT. */
function main(root, argv) {
  const args = parseArgs(argv);
  if (args.exit !== undefined) return process.exit(args.exit);
  setLogFields();

  let loaded;
  try {
    loaded = cfg.load(args.config, (v) => log.warn(`config: environment variable ${v} is not set`));
    log.configure(loaded.config.logger);
  } catch (e) {
    if (e instanceof cfg.ConfigError) fatal('failed to load config', { error: e.message });
    else fatal('failed to open log file', { error: e.message });
    return process.exit(1);
  }
  const conf = loaded.config;
  log.info('service starting', { program: PROGRAM, config: loaded.path || cfg.DEFAULT_PATH });
  if (loaded.path === null) log.info('no config file, using defaults', { file: args.config || cfg.DEFAULT_PATH });

  // User code runs in this process: an exception it throws outside a call (a timer, an
  // event) is logged, not fatal to the calls of other messages.
  process.on('uncaughtException', (e) => log.error('uncaught exception in user code', { error: util.inspect(e) }));
  process.on('unhandledRejection', (e) => log.error('unhandled promise rejection in user code', { error: util.inspect(e) }));

  const protoPath = findProto(root);
  if (!protoPath) {
    fatal('function.proto not found', { package: root });
    return process.exit(1);
  }
  let service;
  try {
    const def = protoLoader.loadSync(protoPath, { keepCase: true, longs: String, defaults: true });
    service = def['baetyl.Function'];
    if (!service || !service.Call) throw new Error('no service baetyl.Function with rpc Call');
  } catch (e) {
    fatal('cannot read function.proto', { file: protoPath, error: e.message });
    return process.exit(1);
  }

  const fns = new Map();
  let address;
  let tls;
  try {
    for (const fc of conf.functions) {
      fns.set(fc.name, functions.load(fc));
      log.info('function loaded', { function: fc.name, handler: fc.handler, codedir: fc.codedir });
    }
    address = listenAddress(conf.server);
    if (!address) throw new cfg.ConfigError('server.address: required (or set BAETYL_SERVICE_INSTANCE_ADDRESS)');
    if (address.startsWith('tcp://')) address = address.slice('tcp://'.length);
    tls = tlsOptions(conf.server);
  } catch (e) {
    if (!(e instanceof functions.LoadError) && !(e instanceof cfg.ConfigError)) throw e;
    fatal(e.message);
    return process.exit(1);
  }
  if (fns.size === 0) log.warn('no functions configured');

  const handlers = makeHandlers(fns, conf.server);
  const batch = process.env[NO_BATCH_ENV] !== '1' && service.CallBatch !== undefined;
  const methods = new Map();
  for (const [name, handler] of Object.entries(handlers)) {
    if (name === 'CallBatch' && !batch) continue; // answered Unimplemented then
    const m = service[name];
    // Call's message by hand (function_message.js); CallBatch's through protobufjs
    const codec = name === 'Call' ? functionMessage
      : { decode: m.requestDeserialize, encode: m.responseSerialize };
    methods.set(m.path, { decode: codec.decode, encode: codec.encode, handler });
  }
  const server = createServer(methods, { messageMax: conf.server.messageMax, tls });

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    const done = () => {
      log.info('service closed');
      process.exit(0);
    };
    server.shutdown(STOP_GRACE_MS, done);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  server.listen(address, (err) => {
    if (err) {
      fatal(`cannot listen on ${address}: ${err.message}`);
      process.exit(1);
      return;
    }
    log.info('server started', {
      address, functions: fns.size, message_max: conf.server.messageMax, callbatch: batch,
    });
  });
  return undefined;
}

module.exports = { main, findProto, listenAddress };
