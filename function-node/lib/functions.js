'use strict';
// User functions: loading `file.func` handlers from their codedir with require (so a
// node_modules in codedir works, seed chapter 15), and one call with Baetyl's conventions
// for event, context, callback and result (SPEC §12, seed chapter 13).
const fs = require('fs');
const path = require('path');
const util = require('util');

class LoadError extends Error {}

/** An error inside user code; .message is the text for the caller. */
class UserError extends Error {}

/** Loads the handler of one configured function ({name, handler, codedir}). */
function load(fc) {
  const { name, handler, codedir } = fc;
  const dot = handler.lastIndexOf('.');
  const file = dot > 0 ? handler.slice(0, dot) : '';
  const func = dot > 0 ? handler.slice(dot + 1) : '';
  if (!file || !func || !/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(func)) {
    throw new LoadError(`function (${name}): handler (${handler}) must be <file>.<function>, e.g. index.handler`);
  }
  let st;
  try { st = fs.statSync(codedir); } catch (e) { st = null; }
  if (!st || !st.isDirectory()) {
    throw new LoadError(`function (${name}): codedir (${codedir}) is not a directory`);
  }
  const dir = fs.realpathSync(codedir);
  const modpath = path.resolve(dir, file);
  if (path.relative(dir, modpath).startsWith('..')) {
    throw new LoadError(`function (${name}): handler (${handler}) points outside codedir`);
  }
  let mod;
  try {
    mod = require(modpath);
  } catch (e) {
    const why = e instanceof Error ? `${e.name}: ${e.message.split('\n')[0]}` : util.inspect(e);
    throw new LoadError(`function (${name}): cannot load (${file}) from codedir (${codedir}): ${why}`);
  }
  const fn = mod === null || mod === undefined ? undefined : mod[func];
  if (fn === undefined) {
    throw new LoadError(`function (${name}): (${file}) exports no function (${func})`);
  }
  if (typeof fn !== 'function') throw new LoadError(`function (${name}): ${handler} is not a function`);
  return fn;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The event a handler receives: {} for an empty payload, the parsed JSON value when the
 * payload is JSON (in valid UTF-8), else the raw Buffer. */
function eventOf(payload) {
  if (!payload || payload.length === 0) return {};
  try {
    return JSON.parse(utf8.decode(payload));
  } catch (e) {
    return Buffer.from(payload);
  }
}

/** The context of seed chapter 13 (invokeid is the CFC spelling). */
function contextOf(req) {
  return {
    messageQOS: req.QOS,
    messageTopic: req.Topic,
    messageTimestamp: Number(req.Timestamp),
    functionName: req.FunctionName,
    functionInvokeID: req.FunctionInvokeID,
    invokeid: req.FunctionInvokeID,
  };
}

/** The reply payload: undefined/null/"" -> empty, Buffer -> raw, else JSON.stringify. */
function payloadOf(result) {
  if (result === undefined || result === null || result === '') return Buffer.alloc(0);
  if (Buffer.isBuffer(result)) return result;
  if (result instanceof Uint8Array) return Buffer.from(result);
  let s;
  try {
    s = JSON.stringify(result);
  } catch (e) {
    throw new UserError(`[UserCodeReturn] the result is not JSON serialisable: ${e}`);
  }
  return Buffer.from(s === undefined ? '' : s, 'utf8');
}

function describe(err) {
  if (err instanceof Error) return err.toString();
  if (typeof err === 'string') return err;
  return util.inspect(err, { depth: 2, breakLength: Infinity });
}

/** Runs a handler; done(err, payload) is called exactly once. The first of callback,
 * a thrown exception or a rejected promise decides; an async handler that declares no
 * callback answers with the value its promise resolves to. */
function invoke(fn, req, done) {
  let finished = false;
  const finish = (err, result) => {
    if (finished) return;
    finished = true;
    if (err !== null && err !== undefined) {
      done(new UserError(`[UserCodeInvoke] ${describe(err)}`));
      return;
    }
    let payload;
    try {
      payload = payloadOf(result);
    } catch (e) {
      done(e);
      return;
    }
    done(null, payload);
  };
  let ret;
  try {
    ret = fn(eventOf(req.Payload), contextOf(req), finish);
  } catch (e) {
    finish(e === null || e === undefined ? new Error(String(e)) : e);
    return;
  }
  if (ret && typeof ret.then === 'function') {
    try {
      ret.then((v) => { if (fn.length < 3) finish(null, v); },
        (e) => finish(e === null || e === undefined ? new Error('promise rejected') : e));
    } catch (e) {
      finish(e);
    }
  }
}

module.exports = { LoadError, UserError, load, eventOf, contextOf, payloadOf, invoke };
