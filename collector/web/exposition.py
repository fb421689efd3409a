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

import msgpack

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


# What each host exports, from the catalog: (family, reader of a decoded snapshot), in catalog order.
# A reader gives (labels after `host`, rendered as `,mount="/var"`, value in base units) pairs: a scrape
# renders thousands of lines, so each is one f-string.
Found = list[tuple[str, float]]
Reader = Callable[["Decoded"], Found]


class Decoded(NamedTuple):
    metrics: dict[str, Any]
    series: dict[str, Any]
    probes: dict[str, Any]  # only the probes PROBED reads


def _bounded(value: object, unit: catalog.Unit) -> float | None:
    """`value` in the unit's base, or None if it is no plausible measurement (hostile data too)."""
    # NaN fails both comparisons, infinities the range: what is left is a finite plausible number.
    # A division: 70 % is 70 / 100 = 0.7 exactly, where 70 * 0.01 is 0.7000000000000001.
    if (type(value) is float or type(value) is int) and unit.low <= value <= unit.high:
        return float(value) if unit.to_base == 1.0 else value / (1 / unit.to_base)
    return None


def _labels(labels: Labels) -> str:
    return "".join(f',{k}="{escape(v)}"' for k, v in labels.items())


def _metric_reader(m: catalog.Metric) -> Reader:
    def read(d: Decoded) -> Found:
        value = _bounded(d.metrics.get(m.name), m.unit)
        return [] if value is None else [("", value)]

    return read


def _series_reader(s: catalog.Series) -> Reader:
    def read(d: Decoded) -> Found:
        values = d.series.get(s.name)
        if isinstance(values, list):
            items: Iterable[tuple[object, object]] = enumerate(values)
        elif isinstance(values, dict):
            items = values.items()
        else:
            return []
        found = []
        for entity, raw in items:
            value = _bounded(raw, s.unit)
            if value is not None and isinstance(entity, int | str):
                found.append((f',{s.entity}="{escape(str(entity))}"', value))
        return found

    return read


def _probed_reader(p: catalog.Probed) -> Reader:
    def read(d: Decoded) -> Found:
        found = []
        for labels, raw in p.read(d.probes.get(p.probe)):
            value = _bounded(raw, p.unit)
            if value is not None:
                found.append((_labels(labels), value))
        return found

    return read


HOST_FAMILIES: tuple[tuple[Family, Reader], ...] = (
    *(
        (Family(m.export, "gauge", _help(m.help, m.unit), m.unit.base), _metric_reader(m))
        for m in catalog.METRICS
        if m.export is not None
    ),
    *(
        (Family(s.export, "gauge", _help(s.help, s.unit), s.unit.base), _series_reader(s))
        for s in catalog.SERIES
        if s.export is not None
    ),
    *(
        (Family(p.export, p.kind, _help(p.help, p.unit), p.unit.base), _probed_reader(p))
        for p in catalog.PROBED
    ),
)
PROBES_READ = frozenset(p.probe for p in catalog.PROBED)
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


def decode(snapshot: bytes | None) -> Decoded | None:
    """The numbers of a stored snapshot, or None if it does not decode (values are checked when read)."""
    if snapshot is None:
        return None
    try:
        message = msgpack.unpackb(snapshot, raw=False)
        if not isinstance(message, dict):
            return None
        probes = message.get("probes")
        sections = _sections(probes) if isinstance(probes, bytes) else {}
    except (ValueError, TypeError, msgpack.UnpackException, StopIteration):  # damaged or hostile bytes
        return None
    return Decoded(_table(message.get("metrics")), _table(message.get("series")), sections)


def _sections(probes: bytes) -> dict[str, Any]:
    """The probes /metrics reads, the rest skipped undecoded (processes are most of the bytes)."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(probes) + 1)
    unpacker.feed(probes)
    sections = {}
    for _ in range(unpacker.read_map_header()):
        key = unpacker.unpack()
        if isinstance(key, str) and key in PROBES_READ:
            sections[key] = unpacker.unpack()
        else:
            unpacker.skip()
    return sections


def _table(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


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
        if decoded is None:
            continue
        host = f'{{host="{escape(h.name)}"'
        for i, (f, read) in enumerate(HOST_FAMILIES):
            # Values are finite (checked by _bounded): repr is the shortest exact form.
            samples[i].extend(f"{f.name}{host}{labels}}} {value!r}" for labels, value in read(decoded))
    lines = family(UP, up) + family(LAST_SEEN, seen)
    for (f, _), found in zip(HOST_FAMILIES, samples, strict=True):
        if found:
            lines += header(f) + found
    return lines
