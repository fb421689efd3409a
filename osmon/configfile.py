"""Reading TOML config files against a declared schema.

Both the agent and the collector describe their keys as `Key` entries; this
module turns a file into a dict of checked values, or raises a ConfigError
that names the file, the key and the reason in one line.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A config file that cannot be used: which file, which key, why."""

    def __init__(self, path: str | Path, key: str, reason: str) -> None:
        self.path, self.key, self.reason = str(path), key, reason
        where = f"{self.path}: " + (f"key '{key}': " if key else "")
        super().__init__(where + reason)


class ConfigErrors(ConfigError):
    """Every problem found in one file, one per line: a user fixes them in one go."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.path, first.key, first.reason)
        self.errors = errors
        self.args = ("\n".join(str(e) for e in errors),)

    def __str__(self) -> str:
        return self.args[0]


class Problems:
    """Collects the ConfigErrors of one file instead of stopping at the first."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.errors: list[ConfigError] = []

    def add(self, key: str, reason: str) -> None:
        self.errors.append(ConfigError(self.path, key, reason))

    def bad(self, *keys: str) -> bool:
        """True if any of `keys` already has a problem: checks built on it would only add noise."""
        return any(e.key in keys for e in self.errors)

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Record a ConfigError raised in the block, and go on."""
        try:
            yield
        except ConfigErrors as e:
            self.errors += e.errors
        except ConfigError as e:
            self.errors.append(e)

    def raise_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*$")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like `30s`, `5m`, `4h`, `7d`."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, '30s', '5m', '4h' or '7d'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        number, unit = match.groups()
        seconds = float(number) / 1000 if unit == "ms" else float(number) * _UNITS[unit or "s"]
    else:
        raise ValueError(f"expected a duration such as 30, '30s', '5m', '4h' or '7d', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from an integer or a string like `64MiB`, `512k`."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)) and match[2].lower() in _SIZE_UNITS:
        return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])
    raise ValueError(f"expected a size such as 1048576, '512KiB' or '64MiB', got {value!r}")


def _typed(kind: type, label: str) -> Callable[[object], Any]:
    def check(value: object) -> Any:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ValueError(f"expected {label}, got {type(value).__name__} {value!r}")
        return value

    return check


string = _typed(str, "a string")
integer = _typed(int, "an integer")
boolean = _typed(bool, "true or false")


def number(value: object) -> float:
    """A finite number."""
    result = _typed(float, "a number")(value)
    if not math.isfinite(result):
        raise ValueError(f"expected a finite number, got {value!r}")
    return result


def string_list(value: object) -> list[str]:
    """A list of strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return value


def one_of(*choices: str) -> Callable[[object], str]:
    """A string among `choices`."""

    def check(value: object) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return check


def at_least(minimum: float, parse: Callable[[object], Any]) -> Callable[[object], Any]:
    """Wrap a parser to refuse values below `minimum`."""

    def check(value: object) -> Any:
        result = parse(value)
        if result < minimum:
            raise ValueError(f"must be at least {minimum}, got {value!r}")
        return result

    return check


def zmq_endpoint(value: object) -> str:
    """A ZeroMQ TCP or IPC endpoint such as tcp://host:5555."""
    text = string(value)
    if not re.match(r"^(tcp://[^\s:]+:(\d+|\*)|ipc://\S+|inproc://\S+)$", text):
        raise ValueError(f"expected an endpoint like tcp://198.51.100.5:5555, got {text!r}")
    port = text.rpartition(":")[2]
    if text.startswith("tcp://") and port != "*" and not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} is out of range (1-65535) in {text!r}")
    return text


def port(value: object) -> int:
    """A TCP port number."""
    number = integer(value)
    if not 1 <= number <= 65535:
        raise ValueError(f"expected a port number 1-65535, got {number}")
    return number


def email_address(value: object) -> str:
    """A bare address such as ops@example.org, or 'Name <ops@example.org>'."""
    from email.utils import parseaddr  # the collector's mail settings only: not in the agent's memory

    text = string(value)
    address = parseaddr(text)[1]
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        raise ValueError(f"expected an e-mail address such as ops@example.org, got {text!r}")
    return text


def address_list(value: object) -> list[str]:
    """A list of e-mail addresses."""
    return [email_address(v) for v in string_list(value)]


def loopback(endpoint: str) -> bool:
    """True for ipc:// and inproc:// endpoints, and tcp:// ones on a loopback address."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_url(value: object) -> str:
    """An http:// or https:// URL."""
    text = string(value)
    parsed = urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text


# A NamedTuple, not a dataclass: dataclasses imports inspect, a megabyte of each agent's memory.
class Key(NamedTuple):
    """One config key: its dotted name, parser and default (`REQUIRED` if none)."""

    name: str
    parse: Callable[[object], Any]
    default: Any
    help: str = ""


REQUIRED = object()


def load_toml(path: str | Path) -> dict[str, Any]:
    """The raw TOML document, or a ConfigError for a missing or malformed file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except PermissionError:
        raise ConfigError(path, "", "permission denied") from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a directory, not a file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "", f"invalid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(path, "", f"not UTF-8 text: {e}") from None
    except OSError as e:  # /proc files, a broken disk, a name too long ...
        raise ConfigError(path, "", f"cannot read: {e.strerror or e}") from None


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in doc.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def apply_schema(
    doc: dict[str, Any],
    keys: list[Key],
    path: str | Path,
    free_tables: tuple[str, ...] = (),
    problems: Problems | None = None,
) -> dict[str, Any]:
    """Check every key of `doc` against `keys`; return {name: value} with defaults filled.

    Keys under a prefix in `free_tables` are left for the caller to check
    (tables keyed by the user, such as thresholds per metric). With `problems`,
    every bad key is recorded there (and gets its default); without, they are raised together.
    """
    found = Problems(path) if problems is None else problems
    known = {key.name: key for key in keys}
    free = {name: doc_value for name, doc_value in doc.items() if name in free_tables}
    settings: dict[str, Any] = {}
    for name, value in _flatten({k: v for k, v in doc.items() if k not in free_tables}).items():
        if name not in known:
            found.add(name, "unknown key" + _suggest(name, known))
            continue
        try:
            settings[name] = known[name].parse(value)
        except ValueError as e:
            found.add(name, str(e))
    for key in keys:
        if key.name not in settings:
            if key.default is REQUIRED and not found.bad(key.name):
                found.add(key.name, "is required")
            settings[key.name] = None if key.default is REQUIRED else key.default
    settings.update(free)
    if problems is None:
        found.raise_any()
    return settings


def _suggest(name: str, known: dict[str, Key]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def all_or_none(settings: dict[str, Any], names: list[str], path: str | Path) -> None:
    """Refuse a table where only some of `names` are set (e.g. the [curve] keys)."""
    present = [n for n in names if settings.get(n) is not None]
    if present and len(present) != len(names):
        missing = next(n for n in names if settings.get(n) is None)
        raise ConfigError(path, missing, f"is required when {present[0]} is set (all keys or none)")
