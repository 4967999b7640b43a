"""Log lines like every other Baetyl module (SPEC §18, the C SDK's log.c): logrus text
`time="…" level=info msg="…" key=value` or JSON lines, to stderr or to a file rotated by
size, with old backups removed by count and age."""
import datetime
import glob
import json
import os
import sys
import threading
import time

LEVELS = {"debug": 0, "info": 1, "warn": 2, "warning": 2, "error": 3}
NAMES = ["debug", "info", "warning", "error"]  # logrus spells warn "warning"
MAX_TEXT = 65536
_BARE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._/@^+")


def _quote(s):
    """Go's %q closely enough for log readers: printable text kept, the rest escaped."""
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif c < 0x20 or c == 0x7F:
            out.append(f"\\x{c:02x}")
        elif 0xD800 <= c <= 0xDFFF:  # lone surrogates from undecodable bytes
            out.append("\\ufffd")
        elif not ch.isprintable() and ch != " ":
            out.append(f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _text(s):
    s = str(s)
    if len(s) > MAX_TEXT:
        return _quote(s[:MAX_TEXT] + "...(truncated)")
    if all(ch in _BARE for ch in s):
        return s
    return _quote(s)


def _now():
    t = datetime.datetime.now().astimezone()
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    off = t.utcoffset().total_seconds()
    if off == 0:
        return s + "Z"
    sign = "+" if off > 0 else "-"
    off = abs(int(off))
    return f"{s}{sign}{off // 3600:02d}:{off // 60 % 60:02d}"


class Logger:
    """Thread-safe; each line is written with one write() call."""

    def __init__(self):
        self.level = LEVELS["info"]
        self.json = False
        self.fields = {}
        self.fd = 2
        self.path = None
        self.size_max = 0
        self.backup_max = 0
        self.age_max = 0
        self.lock = threading.Lock()

    def configure(self, c):
        """Applies a checked `logger:` section (see config.check); raises OSError."""
        with self.lock:
            self.level = LEVELS[c["level"]]
            self.json = c["format"] == "json"
            self.size_max = c["size_max"] * 1024 * 1024
            self.backup_max = c["backup_max"]
            self.age_max = c["age_max"]
            if c["path"]:
                d = os.path.dirname(c["path"])
                if d:
                    os.makedirs(d, exist_ok=True)
                fd = os.open(c["path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                self._close()
                self.fd, self.path = fd, c["path"]
                self._prune()
            else:
                self._close()

    def is_file(self):
        return self.path is not None

    def set_field(self, key, value):
        self.fields[key] = value

    def enabled(self, level):
        return LEVELS[level] >= self.level

    def log(self, level, msg, **kv):
        lv = LEVELS[level]
        if lv < self.level:
            return
        fields = dict(self.fields)
        fields.update({k: str(v) for k, v in kv.items()})
        for k in ("time", "level", "msg"):  # logrus moves clashing fields aside
            if k in fields:
                fields["fields." + k] = fields.pop(k)
        msg = str(msg).rstrip("\n")
        ts = _now()
        if self.json:
            obj = {k: v[:MAX_TEXT] for k, v in fields.items()}
            obj.update(level=NAMES[lv], msg=msg[:MAX_TEXT], time=ts)
            line = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        else:
            parts = [f"time={_text(ts)}", f"level={NAMES[lv]}"]
            if msg:
                parts.append(f"msg={_text(msg)}")
            parts += [f"{_text(k)}={_text(v)}" for k, v in sorted(fields.items())]
            line = " ".join(parts)
        data = (line + "\n").encode("utf-8", "replace")
        with self.lock:
            self._rotate(len(data))
            try:
                os.write(self.fd, data)
            except OSError:
                pass  # a full disk must not take the service down

    def debug(self, msg, **kv):
        self.log("debug", msg, **kv)

    def info(self, msg, **kv):
        self.log("info", msg, **kv)

    def warn(self, msg, **kv):
        self.log("warn", msg, **kv)

    def error(self, msg, **kv):
        self.log("error", msg, **kv)

    # ---- file output ---------------------------------------------------------------

    def _close(self):
        if self.path is not None:
            os.close(self.fd)
        self.fd, self.path = 2, None

    def _rotate(self, incoming):
        """Renames path -> path.1 -> path.2 … when the next line would pass size.max."""
        if self.path is None or self.size_max <= 0:
            return
        try:
            size = os.fstat(self.fd).st_size
        except OSError:
            return
        if size == 0 or size + incoming <= self.size_max:
            return
        n = 1
        while os.path.exists(f"{self.path}.{n}"):
            n += 1
        for i in range(n, 1, -1):
            try:
                os.replace(f"{self.path}.{i - 1}", f"{self.path}.{i}")
            except OSError:
                pass
        try:
            os.replace(self.path, self.path + ".1")
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError:
            return
        os.close(self.fd)
        self.fd = fd
        self._prune()

    def _prune(self):
        """Deletes backups beyond backup.max and older than age.max days."""
        backups = []
        for p in glob.glob(glob.escape(self.path) + ".*"):
            suffix = p[len(self.path) + 1:]
            if suffix.isdigit():
                backups.append((int(suffix), p))
        backups.sort()
        now = time.time()
        for i, (_, p) in enumerate(backups):
            try:
                old = self.age_max > 0 and now - os.stat(p).st_mtime > self.age_max * 86400
                if (self.backup_max > 0 and i >= self.backup_max) or old:
                    os.remove(p)
            except OSError:
                pass


log = Logger()


def fatal(msg, **kv):
    """Logs an error and, when the log goes to a file, also prints it to stderr so that
    whoever started the process sees why it stopped."""
    log.error(msg, **kv)
    if log.is_file():
        extra = "".join(f" {k}={v}" for k, v in kv.items())
        sys.stderr.write(f"{msg}{extra}\n")
        sys.stderr.flush()
