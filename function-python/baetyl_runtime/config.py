"""The runtime's service.yml (SPEC §12 "Runtimes", §18 logger): read, checked and given
defaults here, so the rest of the runtime works on plain values."""
import os
import re

import yaml

DEFAULT_PATH = "etc/baetyl/service.yml"
OLD_PATH = "etc/openedge/service.yml"  # Baetyl 0.x (OpenEdge) layout
DEFAULT_MESSAGE_MAX = 4 << 20

_ACTION = re.compile(r"\{\{[ \t]*\.([A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}")
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?(?:([kmgtpKMGTP])[iI]?)?[bB]?$")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the YAML path."""


def template(text, warn=None):
    """Replaces {{.NAME}} by the environment variable NAME (as the C SDK does); an unset
    variable is left as written, and reported through warn(name)."""
    def sub(m):
        v = os.environ.get(m.group(1))
        if v is None:
            if warn:
                warn(m.group(1))
            return m.group(0)
        return v
    return _ACTION.sub(sub, text)


def parse_size(value, where):
    """Bytes from an int or a docker-style size ("4m", "512k", "1.5g": binary units)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{where}: must not be negative")
        return value
    if isinstance(value, str):
        m = _SIZE.match(value.strip())
        if m:
            mult = 1
            if m.group(2):
                mult = 1024 ** ("kmgtp".index(m.group(2).lower()) + 1)
            return int(float(m.group(1)) * mult)
    raise ConfigError(f"{where}: not a size: {value!r} (e.g. 4m, 512k, 1048576)")


def _int(value, where, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
            value = int(value)
        else:
            raise ConfigError(f"{where}: not an integer: {value!r}")
    if value < minimum:
        raise ConfigError(f"{where}: must be at least {minimum}")
    return value


def _map(value, where):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping")
    return value


def _str(value, where, required=False):
    if value is None or value == "":
        if required:
            raise ConfigError(f"{where}: required")
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string")
    return value


def _get(m, dotted):
    """m['message']['length']['max'], also accepting the flat key 'message.length.max'."""
    if dotted in m:
        return m[dotted]
    cur = m
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def check(raw):
    """Validates a parsed YAML document; returns the config with defaults filled."""
    raw = _map(raw, "config")
    srv = _map(raw.get("server"), "server")
    workers = _get(srv, "workers.max")
    concurrent = _get(srv, "concurrent.max")
    msgmax = _get(srv, "message.length.max")
    server = {
        "address": _str(srv.get("address"), "server.address"),
        "workers": _int(workers, "server.workers.max", 1) if workers is not None
        else (os.cpu_count() or 1) * 5,
        "concurrent": _int(concurrent, "server.concurrent.max", 1) if concurrent is not None
        else None,
        "message_max": parse_size(msgmax, "server.message.length.max") if msgmax is not None
        else DEFAULT_MESSAGE_MAX,
        "ca": _str(srv.get("ca"), "server.ca"),
        "cert": _str(srv.get("cert"), "server.cert"),
        "key": _str(srv.get("key"), "server.key"),
    }
    if bool(server["cert"]) != bool(server["key"]):
        raise ConfigError("server: cert and key must be given together")
    if server["ca"] and not server["cert"]:
        raise ConfigError("server: ca needs cert and key")

    fl = raw.get("functions")
    if fl is None:
        fl = []
    if not isinstance(fl, list):
        raise ConfigError("functions: must be a list")
    functions, seen = [], set()
    for i, f in enumerate(fl):
        where = f"functions[{i}]"
        f = _map(f, where)
        name = _str(f.get("name"), f"{where}.name", required=True)
        if name in seen:
            raise ConfigError(f"{where}.name: function ({name}) is declared twice")
        seen.add(name)
        functions.append({
            "name": name,
            "handler": _str(f.get("handler"), f"{where}.handler ({name})", required=True),
            "codedir": _str(f.get("codedir"), f"{where}.codedir ({name})", required=True),
        })

    lg = _map(raw.get("logger"), "logger")
    level = _str(lg.get("level"), "logger.level") or "info"
    if level.lower() not in ("debug", "info", "warn", "warning", "error"):
        raise ConfigError(f"logger.level: unknown level {level!r} (debug, info, warn, error)")
    fmt = _str(lg.get("format"), "logger.format") or "text"
    if fmt not in ("text", "json"):
        raise ConfigError(f"logger.format: must be text or json, not {fmt!r}")
    age, size, backup = _get(lg, "age.max"), _get(lg, "size.max"), _get(lg, "backup.max")
    logger = {
        "path": _str(lg.get("path"), "logger.path"),
        "level": level.lower(),
        "format": fmt,
        "age_max": _int(age, "logger.age.max", 0) if age is not None else 15,
        "size_max": _int(size, "logger.size.max", 0) if size is not None else 50,
        "backup_max": _int(backup, "logger.backup.max", 0) if backup is not None else 15,
    }
    return {"server": server, "functions": functions, "logger": logger}


def load(path, warn=None):
    """Reads, templates, parses and checks a config file. A missing file at the default
    path means all defaults (as every Baetyl module does); returns (config, path read)."""
    if path is None:
        path = DEFAULT_PATH
        if not os.path.exists(path) and os.path.exists(OLD_PATH):
            path = OLD_PATH
        if not os.path.exists(path):
            return check({}), None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        raw = yaml.safe_load(template(text, warn))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    return check(raw), path
