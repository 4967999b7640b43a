'use strict';
// Log lines like every other Baetyl module (SPEC §18, the C SDK's log.c): logrus text
// `time="…" level=info msg="…" key=value` or JSON lines, to stderr or to a file rotated by
// size, with old backups removed by count and age. Writes are synchronous, so nothing is
// lost when the process exits right after a line.
const fs = require('fs');
const path = require('path');

const LEVELS = { debug: 0, info: 1, warn: 2, warning: 2, error: 3 };
const NAMES = ['debug', 'info', 'warning', 'error']; // logrus spells warn "warning"
const MAX_TEXT = 65536;
const BARE = /^[A-Za-z0-9\-._/@^+]*$/;

/** Go's %q closely enough for log readers: printable text kept, the rest escaped. */
function quote(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
    else if ((c >= 0x80 && c < 0xa0) || (c >= 0xd800 && c <= 0xdfff) || c === 0xfeff ||
             (c >= 0x2028 && c <= 0x202f) || (c >= 0x200b && c <= 0x200f)) {
      out += c < 0x10000 ? '\\u' + c.toString(16).padStart(4, '0') : '\\U' + c.toString(16).padStart(8, '0');
    } else out += ch;
  }
  return out + '"';
}

function text(v) {
  let s = String(v);
  if (s.length > MAX_TEXT) return quote(s.slice(0, MAX_TEXT) + '...(truncated)');
  return BARE.test(s) ? s : quote(s);
}

function now() {
  const d = new Date();
  const p = (n, w = 2) => String(n).padStart(w, '0');
  const s = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:` +
    `${p(d.getMinutes())}:${p(d.getSeconds())}`;
  const off = -d.getTimezoneOffset();
  if (off === 0) return s + 'Z';
  const a = Math.abs(off);
  return `${s}${off > 0 ? '+' : '-'}${p(Math.floor(a / 60))}:${p(a % 60)}`;
}

class Logger {
  constructor() {
    this.level = LEVELS.info;
    this.json = false;
    this.fields = {};
    this.fd = 2;
    this.path = null;
    this.sizeMax = 0;
    this.backupMax = 0;
    this.ageMax = 0;
  }

  /** Applies a checked `logger:` section (see config.check); throws on a file error. */
  configure(c) {
    this.level = LEVELS[c.level];
    this.json = c.format === 'json';
    this.sizeMax = c.sizeMax * 1024 * 1024;
    this.backupMax = c.backupMax;
    this.ageMax = c.ageMax;
    if (c.path) {
      const dir = path.dirname(c.path);
      if (dir) fs.mkdirSync(dir, { recursive: true });
      const fd = fs.openSync(c.path, 'a', 0o644);
      this.close();
      this.fd = fd;
      this.path = c.path;
      this.prune();
    } else {
      this.close();
    }
  }

  isFile() { return this.path !== null; }

  setField(k, v) { this.fields[k] = String(v); }

  enabled(level) { return LEVELS[level] >= this.level; }

  log(level, msgIn, kv = {}) {
    const lv = LEVELS[level];
    if (lv < this.level) return;
    const fields = { ...this.fields };
    for (const [k, v] of Object.entries(kv)) fields[k] = String(v);
    for (const k of ['time', 'level', 'msg']) { // logrus moves clashing fields aside
      if (k in fields) { fields[`fields.${k}`] = fields[k]; delete fields[k]; }
    }
    const msg = String(msgIn).replace(/\n+$/, '');
    const ts = now();
    let line;
    if (this.json) {
      const obj = {};
      for (const k of Object.keys(fields)) obj[k] = fields[k].slice(0, MAX_TEXT);
      Object.assign(obj, { level: NAMES[lv], msg: msg.slice(0, MAX_TEXT), time: ts });
      const sorted = {};
      for (const k of Object.keys(obj).sort()) sorted[k] = obj[k];
      line = JSON.stringify(sorted);
    } else {
      const parts = [`time=${text(ts)}`, `level=${NAMES[lv]}`];
      if (msg) parts.push(`msg=${text(msg)}`);
      for (const k of Object.keys(fields).sort()) parts.push(`${text(k)}=${text(fields[k])}`);
      line = parts.join(' ');
    }
    const data = Buffer.from(line + '\n', 'utf8');
    this.rotate(data.length);
    try {
      fs.writeSync(this.fd, data);
    } catch (e) {
      // a full disk must not take the service down
    }
  }

  debug(msg, kv) { this.log('debug', msg, kv); }
  info(msg, kv) { this.log('info', msg, kv); }
  warn(msg, kv) { this.log('warn', msg, kv); }
  error(msg, kv) { this.log('error', msg, kv); }

  close() {
    if (this.path !== null) fs.closeSync(this.fd);
    this.fd = 2;
    this.path = null;
  }

  /** Renames path -> path.1 -> path.2 … when the next line would pass size.max. */
  rotate(incoming) {
    if (this.path === null || this.sizeMax <= 0) return;
    let size;
    try { size = fs.fstatSync(this.fd).size; } catch (e) { return; }
    if (size === 0 || size + incoming <= this.sizeMax) return;
    let n = 1;
    while (fs.existsSync(`${this.path}.${n}`)) n++;
    for (let i = n; i > 1; i--) {
      try { fs.renameSync(`${this.path}.${i - 1}`, `${this.path}.${i}`); } catch (e) { /* raced */ }
    }
    let fd;
    try {
      fs.renameSync(this.path, `${this.path}.1`);
      fd = fs.openSync(this.path, 'a', 0o644);
    } catch (e) {
      return;
    }
    fs.closeSync(this.fd);
    this.fd = fd;
    this.prune();
  }

  /** Deletes backups beyond backup.max and older than age.max days. */
  prune() {
    const dir = path.dirname(this.path);
    const base = path.basename(this.path);
    let names;
    try { names = fs.readdirSync(dir); } catch (e) { return; }
    const backups = names
      .filter((n) => n.startsWith(base + '.') && /^[0-9]+$/.test(n.slice(base.length + 1)))
      .map((n) => [parseInt(n.slice(base.length + 1), 10), path.join(dir, n)])
      .sort((a, b) => a[0] - b[0]);
    const t = Date.now();
    backups.forEach(([, p], i) => {
      try {
        const old = this.ageMax > 0 && t - fs.statSync(p).mtimeMs > this.ageMax * 86400000;
        if ((this.backupMax > 0 && i >= this.backupMax) || old) fs.unlinkSync(p);
      } catch (e) { /* already gone */ }
    });
  }
}

const log = new Logger();

/** Logs an error and, when the log goes to a file, also prints it to stderr so that
 * whoever started the process sees why it stopped. */
function fatal(msg, kv = {}) {
  log.error(msg, kv);
  if (log.isFile()) {
    const extra = Object.entries(kv).map(([k, v]) => ` ${k}=${v}`).join('');
    fs.writeSync(2, `${msg}${extra}\n`);
  }
}

module.exports = { log, fatal, Logger };
