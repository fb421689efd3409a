"""The Prometheus text format (0.0.4) of the fleet, derived from the metric catalog.

Pure functions of what the store returns and the current time. Every value is
in its base unit (Unit.base: 0-1 ratios, bytes, seconds), each family has HELP,
TYPE and UNIT lines (UNIT is a comment to 0.0.4 parsers and tells humans the
unit), and per-entity numbers carry their entity's label (cpu, mount, device,
interface). A down host exports only `osmon_host_up 0` and when it was last
seen: its last values are no measurement of now, and a rule on them would keep
firing for a host that is gone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import msgspec

from osmon import catalog

Labels = dict[str, str]


class Family(NamedTuple):
    name: str
    kind: str  # gauge | counter | histogram
    help: str
    unit: str  # Prometheus base unit, or ""


def escape(value: str) -> str:
    """A label value: backslash, double quote and newline escaped, as the format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def sample(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def header(f: Family) -> list[str]:
    lines = [f"# HELP {f.name} {f.help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}"]
    lines.append(f"# TYPE {f.name} {f.kind}")
    if f.unit:
        lines.append(f"# UNIT {f.name} {f.unit}")
    return lines


def line(name: str, labels: Labels, value: float) -> str:
    if not labels:
        return f"{name} {sample(value)}"
    text = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
    return f"{name}{{{text}}} {sample(value)}"


def family(f: Family, samples: Iterable[tuple[Labels, float]]) -> list[str]:
    """The lines of one metric family: HELP, TYPE, UNIT, then one line per (labels, value)."""
    return header(f) + [line(f.name, labels, value) for labels, value in samples]


def _help(text: str, unit: catalog.Unit) -> str:
    base = {"ratio": ", 0-1", "bytes": ", bytes", "seconds": ", Unix time in seconds"}.get(unit.base, "")
    return f"{text[0].upper()}{text[1:]}{base}, latest snapshot."


# What each host exports, from the catalog, in catalog order: host-wide numbers, then the
# series, then the numbers of the probes. A scrape at 100 hosts renders ~7,000 lines, at a
# few hundred nanoseconds each: so each kind has its table of what a line needs, precomputed
# (family name, label name, bounds, divisor to the base unit), and each line is one f-string.


class Bounds(NamedTuple):
    """The plausible range of a value (catalog.Unit low, high) and what divides it into base units."""

    low: float
    high: float
    divisor: float  # 1 / Unit.to_base: 70 % is 70 / 100 = 0.7 exactly, where 70 * 0.01 is 0.7000000000000001


def _bounds(unit: catalog.Unit) -> Bounds:
    return Bounds(unit.low, unit.high, 1 / unit.to_base)


class MetricExport(NamedTuple):
    at: int  # its family's position in HOST_FAMILIES
    name: str
    key: str  # in the snapshot's metrics
    bounds: Bounds


class SeriesExport(NamedTuple):
    at: int
    name: str
    key: str  # in the snapshot's series
    entity: str  # label name
    bounds: Bounds


class ProbedExport(NamedTuple):
    at: int
    name: str
    probe: str
    read: Callable[[Any], catalog.Samples]
    entity: str  # label name, or "" for a host-wide number
    bounds: Bounds


_EXPORTED_METRICS = [m for m in catalog.METRICS if m.export is not None]
_EXPORTED_SERIES = [s for s in catalog.SERIES if s.export is not None]
METRIC_EXPORTS = tuple(
    MetricExport(i, str(m.export), m.name, _bounds(m.unit)) for i, m in enumerate(_EXPORTED_METRICS)
)
SERIES_EXPORTS = tuple(
    SeriesExport(len(METRIC_EXPORTS) + i, str(s.export), s.name, s.entity, _bounds(s.unit))
    for i, s in enumerate(_EXPORTED_SERIES)
)
PROBED_EXPORTS = tuple(
    ProbedExport(
        len(METRIC_EXPORTS) + len(SERIES_EXPORTS) + i, p.export, p.probe, p.read, p.entity, _bounds(p.unit)
    )
    for i, p in enumerate(catalog.PROBED)
)
HOST_FAMILIES: tuple[Family, ...] = (
    *(Family(str(m.export), "gauge", _help(m.help, m.unit), m.unit.base) for m in _EXPORTED_METRICS),
    *(Family(str(s.export), "gauge", _help(s.help, s.unit), s.unit.base) for s in _EXPORTED_SERIES),
    *(Family(p.export, p.kind, _help(p.help, p.unit), p.unit.base) for p in catalog.PROBED),
)
PROBES_READ = tuple(sorted({p.probe for p in catalog.PROBED}))
UP = Family(
    "osmon_host_up",
    "gauge",
    "1 if the host sent a snapshot within alerts.down_after of its intervals, else 0.",
    "",
)
LAST_SEEN = Family(
    "osmon_host_last_seen_timestamp_seconds",
    "gauge",
    "When the collector last received a snapshot from the host, Unix time in seconds.",
    "seconds",
)


# What /metrics reads of a stored snapshot, decoded by msgspec in C: every other key, and every
# probe but those exported (processes are most of the bytes), is skipped undecoded. The parts
# are left untyped (Any): a value that is no plausible number is dropped when read, not the host.
class Stored(msgspec.Struct):
    metrics: Any = None
    series: Any = None
    probes: Any = None


Probes = msgspec.defstruct("Probes", [(name, Any, None) for name in PROBES_READ])
_stored = msgspec.msgpack.Decoder(Stored)
_probes = msgspec.msgpack.Decoder(Probes)
_NO_PROBES = Probes()


class Decoded(NamedTuple):
    metrics: dict[Any, Any]
    series: dict[Any, Any]
    probes: Any  # a Probes struct: an attribute per probe PROBES_READ names, None if absent


def decode(snapshot: bytes | None) -> Decoded | None:
    """The numbers of a stored snapshot, or None if it does not decode (values are checked when read)."""
    if snapshot is None:
        return None
    try:
        message = _stored.decode(snapshot)
        probes = _probes.decode(message.probes) if isinstance(message.probes, bytes) else _NO_PROBES
    except (msgspec.DecodeError, ValueError, TypeError):  # damaged or hostile bytes
        return None
    return Decoded(_table(message.metrics), _table(message.series), probes)


def _table(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def host_lines(host: str, d: Decoded, out: list[list[str]]) -> None:
    """Append the lines of one host that is up to `out`, a list of lines per HOST_FAMILIES entry.

    A value is exported if it is a finite plausible number (the unit's bounds: NaN fails both
    comparisons, infinities the range; hostile data too), in base units: repr is its shortest
    exact form.
    """
    h = f'{{host="{escape(host)}"'
    metrics = d.metrics
    for i, name, key, (low, high, divisor) in METRIC_EXPORTS:
        v = metrics.get(key)
        if (type(v) is float or type(v) is int) and low <= v <= high:
            out[i].append(f"{name}{h}}} {v / divisor!r}")
    series = d.series
    for i, name, key, label, (low, high, divisor) in SERIES_EXPORTS:
        values = series.get(key)
        if isinstance(values, list):
            items: Iterable[tuple[object, object]] = enumerate(values)
        elif isinstance(values, dict):
            items = values.items()
        else:
            continue
        lines = out[i]
        for entity, v in items:
            if (type(v) is float or type(v) is int) and low <= v <= high and isinstance(entity, int | str):
                lines.append(f'{name}{h},{label}="{escape(str(entity))}"}} {v / divisor!r}')
    for i, name, probe, read, label, (low, high, divisor) in PROBED_EXPORTS:
        lines = out[i]
        for entity, v in read(getattr(d.probes, probe)):
            if (type(v) is float or type(v) is int) and low <= v <= high:
                labels = f',{label}="{escape(entity)}"' if label else ""
                lines.append(f"{name}{h}{labels}}} {v / divisor!r}")


class HostState(NamedTuple):
    """What the exposition needs of one host."""

    name: str
    up: bool
    last_seen: float
    snapshot: bytes | None


def hosts_text(hosts: Iterable[HostState]) -> list[str]:
    """The per-host families: up and last seen for every host, the numbers of hosts that are up."""
    up: list[tuple[Labels, float]] = []
    seen: list[tuple[Labels, float]] = []
    samples: list[list[str]] = [[] for _ in HOST_FAMILIES]
    for h in hosts:
        up.append(({"host": h.name}, 1.0 if h.up else 0.0))
        seen.append(({"host": h.name}, h.last_seen))
        decoded = decode(h.snapshot) if h.up else None
        if decoded is not None:
            host_lines(h.name, decoded, samples)
    lines = family(UP, up) + family(LAST_SEEN, seen)
    for f, found in zip(HOST_FAMILIES, samples, strict=True):
        if found:
            lines += header(f) + found
    return lines
