'use strict';
// The runtime's service.yml (SPEC §12 "Runtimes", §18 logger): read, checked and given
// defaults here, so the rest of the runtime works on plain values.
const fs = require('fs');
const os = require('os');
const yaml = require('js-yaml');

const DEFAULT_PATH = 'etc/baetyl/service.yml';
const OLD_PATH = 'etc/openedge/service.yml'; // Baetyl 0.x (OpenEdge) layout
const DEFAULT_MESSAGE_MAX = 4 * 1024 * 1024;

class ConfigError extends Error {}

/** Replaces {{.NAME}} by the environment variable NAME (as the C SDK does); an unset
 * variable is left as written and reported through warn(name). */
function template(text, warn) {
  return text.replace(/\{\{[ \t]*\.([A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}/g, (whole, name) => {
    if (process.env[name] === undefined) {
      if (warn) warn(name);
      return whole;
    }
    return process.env[name];
  });
}

/** Bytes from an integer or a docker-style size ("4m", "512k", "1.5g": binary units). */
function parseSize(value, where) {
  if (typeof value === 'number' && Number.isInteger(value)) {
    if (value < 0) throw new ConfigError(`${where}: must not be negative`);
    return value;
  }
  if (typeof value === 'string') {
    const m = /^([0-9]+(?:\.[0-9]+)?) ?(?:([kmgtpKMGTP])[iI]?)?[bB]?$/.exec(value.trim());
    if (m) {
      const mult = m[2] ? 1024 ** ('kmgtp'.indexOf(m[2].toLowerCase()) + 1) : 1;
      return Math.floor(parseFloat(m[1]) * mult);
    }
  }
  throw new ConfigError(`${where}: not a size: ${JSON.stringify(value)} (e.g. 4m, 512k, 1048576)`);
}

function int(value, where, minimum) {
  let v = value;
  if (typeof v === 'string' && /^[0-9]+$/.test(v.trim())) v = parseInt(v, 10);
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new ConfigError(`${where}: not an integer: ${JSON.stringify(value)}`);
  }
  if (v < minimum) throw new ConfigError(`${where}: must be at least ${minimum}`);
  return v;
}

function map(value, where) {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(`${where}: must be a mapping`);
  }
  return value;
}

function str(value, where, required) {
  if (value === undefined || value === null || value === '') {
    if (required) throw new ConfigError(`${where}: required`);
    return '';
  }
  if (typeof value === 'number') return String(value);
  if (typeof value !== 'string') throw new ConfigError(`${where}: must be a string`);
  return value;
}

/** m.message.length.max, also accepting the flat key 'message.length.max'. */
function get(m, dotted) {
  if (Object.prototype.hasOwnProperty.call(m, dotted)) return m[dotted];
  let cur = m;
  for (const part of dotted.split('.')) {
    if (cur === null || typeof cur !== 'object' || !Object.prototype.hasOwnProperty.call(cur, part)) {
      return undefined;
    }
    cur = cur[part];
  }
  return cur;
}

const given = (v) => v !== undefined && v !== null;

/** Validates a parsed YAML document; returns the config with defaults filled. */
function check(rawIn) {
  const raw = map(rawIn, 'config');
  const srv = map(raw.server, 'server');
  const workers = get(srv, 'workers.max');
  const concurrent = get(srv, 'concurrent.max');
  const msgmax = get(srv, 'message.length.max');
  const server = {
    address: str(srv.address, 'server.address'),
    // Node runs handlers on one thread: workers.max is accepted for config compatibility.
    workers: given(workers) ? int(workers, 'server.workers.max', 1) : os.cpus().length * 5,
    concurrent: given(concurrent) ? int(concurrent, 'server.concurrent.max', 1) : 0,
    messageMax: given(msgmax) ? parseSize(msgmax, 'server.message.length.max') : DEFAULT_MESSAGE_MAX,
    ca: str(srv.ca, 'server.ca'),
    cert: str(srv.cert, 'server.cert'),
    key: str(srv.key, 'server.key'),
  };
  if (!!server.cert !== !!server.key) throw new ConfigError('server: cert and key must be given together');
  if (server.ca && !server.cert) throw new ConfigError('server: ca needs cert and key');

  let fl = raw.functions;
  if (!given(fl)) fl = [];
  if (!Array.isArray(fl)) throw new ConfigError('functions: must be a list');
  const functions = [];
  const seen = new Set();
  fl.forEach((fIn, i) => {
    const where = `functions[${i}]`;
    const f = map(fIn, where);
    const name = str(f.name, `${where}.name`, true);
    if (seen.has(name)) throw new ConfigError(`${where}.name: function (${name}) is declared twice`);
    seen.add(name);
    functions.push({
      name,
      handler: str(f.handler, `${where}.handler (${name})`, true),
      codedir: str(f.codedir, `${where}.codedir (${name})`, true),
    });
  });

  const lg = map(raw.logger, 'logger');
  const level = (str(lg.level, 'logger.level') || 'info').toLowerCase();
  if (!['debug', 'info', 'warn', 'warning', 'error'].includes(level)) {
    throw new ConfigError(`logger.level: unknown level ${JSON.stringify(level)} (debug, info, warn, error)`);
  }
  const format = str(lg.format, 'logger.format') || 'text';
  if (format !== 'text' && format !== 'json') {
    throw new ConfigError(`logger.format: must be text or json, not ${JSON.stringify(format)}`);
  }
  const age = get(lg, 'age.max');
  const size = get(lg, 'size.max');
  const backup = get(lg, 'backup.max');
  const logger = {
    path: str(lg.path, 'logger.path'),
    level,
    format,
    ageMax: given(age) ? int(age, 'logger.age.max', 0) : 15,
    sizeMax: given(size) ? int(size, 'logger.size.max', 0) : 50,
    backupMax: given(backup) ? int(backup, 'logger.backup.max', 0) : 15,
  };
  return { server, functions, logger };
}

/** Reads, templates, parses and checks a config file. A missing file at the default path
 * means all defaults (as every Baetyl module does). Returns {config, path}. */
function load(pathIn, warn) {
  let path = pathIn;
  if (!path) {
    path = DEFAULT_PATH;
    if (!fs.existsSync(path) && fs.existsSync(OLD_PATH)) path = OLD_PATH;
    if (!fs.existsSync(path)) return { config: check({}), path: null };
  }
  let data;
  try {
    data = fs.readFileSync(path);
  } catch (e) {
    throw new ConfigError(`cannot read ${path}: ${e.code || e.message}`);
  }
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch (e) {
    throw new ConfigError(`${path}: not UTF-8 text`);
  }
  let raw;
  try {
    raw = yaml.load(template(text, warn), { filename: path });
  } catch (e) {
    if (e instanceof yaml.YAMLException) {
      const where = e.mark ? ` at line ${e.mark.line + 1}, column ${e.mark.column + 1}` : '';
      throw new ConfigError(`${path}: invalid YAML${where}: ${e.reason}`);
    }
    throw new ConfigError(`${path}: ${e.message}`);
  }
  return { config: check(raw), path };
}

module.exports = { ConfigError, DEFAULT_PATH, template, parseSize, check, load };
