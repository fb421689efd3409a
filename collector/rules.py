"""Alert thresholds: defaults per metric, `[thresholds."<metric>"]`, and per-host overrides by glob.

[thresholds."mem.percent"]
warning = 80
critical = 95
for = "1m"          # how long a breach must last before the alert fires
hysteresis = 5      # an alert clears only once the value is this far below its level

[[thresholds.override]]
hosts = "build-*"
metric = "cpu.percent"
warning = 95
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, NamedTuple

from osmon import catalog
from osmon.configfile import ConfigError, number, parse_duration, string


class Threshold(NamedTuple):
    """Levels of one metric for one host; a level of None never fires."""

    warning: float | None
    critical: float | None
    for_: float  # seconds
    hysteresis: float

    def level(self, value: float) -> str | None:
        """'critical', 'warning' or None for `value`."""
        if self.critical is not None and value >= self.critical:
            return "critical"
        if self.warning is not None and value >= self.warning:
            return "warning"
        return None

    def floor(self) -> float:
        """The lowest level: values below it can neither fire nor keep anything pending."""
        levels = [v for v in (self.warning, self.critical) if v is not None]
        return min(levels) if levels else float("inf")

    def limit(self, severity: str) -> float | None:
        return self.critical if severity == "critical" else self.warning


# The catalog's default levels (osmon.catalog): CPU and memory keep the seed's 80 %.
DEFAULTS: dict[str, Threshold] = {
    entry.name: Threshold(*entry.levels) for entry in catalog.ENTRIES if entry.levels is not None
}

_FIELDS = {"warning": "warning", "critical": "critical", "for": "for_", "hysteresis": "hysteresis"}


class Override(NamedTuple):
    hosts: str
    metric: str
    changes: dict[str, Any]


class Rules:
    """Thresholds for every (host, metric), from defaults, the config and overrides."""

    def __init__(self, base: dict[str, Threshold], overrides: list[Override]) -> None:
        self.base, self.overrides = base, overrides
        self._cache: dict[tuple[str, str], tuple[Threshold, float]] = {}

    def lookup(self, host: str, metric: str) -> tuple[Threshold, float]:
        """(threshold, its floor), cached: detection asks for every reading of every snapshot."""
        key = (host, metric)
        found = self._cache.get(key)
        if found is None:
            threshold = self.base[metric]
            for o in self.overrides:
                if o.metric == metric and fnmatchcase(host, o.hosts):
                    threshold = threshold._replace(**o.changes)
            if len(self._cache) > 100_000:
                self._cache.clear()
            found = self._cache[key] = (threshold, threshold.floor())
        return found


def _fields(table: dict[str, Any], where: str, path: str | Path) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name, value in table.items():
        if name not in _FIELDS:
            raise ConfigError(path, f"{where}.{name}", f"unknown key; expected {', '.join(_FIELDS)}")
        try:
            if name == "for":
                changes["for_"] = parse_duration(value)
            elif value is False:  # `critical = false` switches a level off
                changes[_FIELDS[name]] = None
            else:
                changes[_FIELDS[name]] = number(value)
        except ValueError as e:
            raise ConfigError(path, f"{where}.{name}", str(e)) from None
    return changes


def _check_order(t: Threshold, where: str, path: str | Path) -> None:
    if t.warning is not None and t.critical is not None and t.warning > t.critical:
        raise ConfigError(path, where, f"warning ({t.warning:g}) is above critical ({t.critical:g})")
    if t.hysteresis < 0:
        raise ConfigError(path, f"{where}.hysteresis", "must be >= 0")


def parse(table: object, path: str | Path) -> Rules:
    """The [thresholds] table of a collector config, checked; ConfigError names the key."""
    if not isinstance(table, dict):
        raise ConfigError(path, "thresholds", "expected a table")
    base = dict(DEFAULTS)
    overrides = []
    for name, value in table.items():
        if name == "override":
            overrides = _overrides(value, path)
        elif name in DEFAULTS:
            if not isinstance(value, dict):
                raise ConfigError(path, f"thresholds.{name}", "expected a table")
            base[name] = base[name]._replace(**_fields(value, f"thresholds.{name}", path))
            _check_order(base[name], f"thresholds.{name}", path)
        else:
            raise ConfigError(
                path, f"thresholds.{name}", f"unknown metric; expected one of {', '.join(DEFAULTS)}"
            )
    return Rules(base, overrides)


def _overrides(value: object, path: str | Path) -> list[Override]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError(path, "thresholds.override", "expected [[thresholds.override]] tables")
    overrides = []
    for i, table in enumerate(value, start=1):
        where = f"thresholds.override[{i}]"
        rest = dict(table)
        try:
            hosts, metric = string(rest.pop("hosts", None)), string(rest.pop("metric", None))
        except ValueError:
            raise ConfigError(path, where, "needs hosts (a glob) and metric") from None
        if metric not in DEFAULTS:
            raise ConfigError(path, f"{where}.metric", f"unknown metric {metric!r}")
        changes = _fields(rest, where, path)
        _check_order(DEFAULTS[metric]._replace(**changes), where, path)
        overrides.append(Override(hosts, metric, changes))
    return overrides
