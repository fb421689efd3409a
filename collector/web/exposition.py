"""The Prometheus text format (0.0.4) of the fleet, derived from the metric catalog.

Functions of what the store returns and the current time (and of LineStarts, the
labels of each host's lines kept between scrapes, which only saves work). Every value is
in its base unit (Unit.base: 0-1 ratios, bytes, seconds), each family has HELP,
TYPE and UNIT lines (UNIT is a comment to 0.0.4 parsers and tells humans the
unit), and per-entity numbers carry their entity's label (cpu, mount, device,
interface). A down host exports only `osmon_host_up 0` and when it was last
seen: its last values are no measurement of now, and a rule on them would keep
firing for a host that is gone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
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
    read: catalog.Reader
    entity: str  # label name, or "" for a host-wide number
    bounds: Bounds


class ProbeField(NamedTuple):
    """One exported field of a probe's entities: its family, line start parts and bounds."""

    at: int
    name: str
    field: str
    entity: str
    low: float
    high: float
    divisor: float


class ProbeRead(NamedTuple):
    """The exported fields of one probe read the same way (catalog.One, Rows or Each of one key),
    read in one pass over its entities instead of one pass per family."""

    probe: str
    kind: type  # catalog.One, Rows or Each
    key: str  # Rows: the item's name key; Each: the table of entities; One: ""
    fields: tuple[ProbeField, ...]


def _probe_reads(exports: tuple[ProbedExport, ...]) -> tuple[ProbeRead, ...]:
    groups: dict[tuple[str, type, str], list[ProbeField]] = {}
    for e in exports:
        r = e.read
        key = r.name if isinstance(r, catalog.Rows) else r.table if isinstance(r, catalog.Each) else ""
        groups.setdefault((e.probe, type(r), key), []).append(
            ProbeField(e.at, e.name, r.field, e.entity, *e.bounds)
        )
    return tuple(ProbeRead(probe, kind, key, tuple(fields)) for (probe, kind, key), fields in groups.items())


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
PROBE_READS = _probe_reads(PROBED_EXPORTS)
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


# Entities of one family of one host whose line starts are kept: beyond, a host inventing names
# (a mount per snapshot) has its extra lines formatted in full at each scrape, and costs no memory.
MAX_KEPT = 1024


class HostStarts(NamedTuple):
    """The start of each line one host exports, `name{host="web-01",mount="/var"} `, up to the number."""

    host: str  # the host's label, `{host="web-01"`, for the starts not kept yet
    up: str
    seen: str
    metrics: tuple[str, ...]  # in METRIC_EXPORTS order
    entities: tuple[dict[object, str], ...]  # by family position: entity -> start, "" for a host-wide number


def host_starts(name: str) -> HostStarts:
    h = f'{{host="{escape(name)}"'
    return HostStarts(
        h,
        f"{UP.name}{h}}} ",
        f"{LAST_SEEN.name}{h}}} ",
        tuple(f"{m.name}{h}}} " for m in METRIC_EXPORTS),
        tuple({} for _ in HOST_FAMILIES),
    )


class LineStarts:
    """Each host's line starts, kept from one scrape to the next.

    Formatting the labels of a line (escapes, an f-string of five parts) cost /metrics twice as
    much as formatting its number, and hosts, cores, mounts, devices and interfaces seldom change:
    so a scrape looks the start of each line up, and formats only the numbers, which change at
    every snapshot. Kept for the hosts of the latest scrape only. Safe across threads: each
    operation is one dict lookup or store, and two scrapes missing the same start both format it.

    Each host's latest snapshot is kept decoded too, with its bytes: a scrape of the same snapshot
    again (the second Prometheus of an HA pair, a scrape interval shorter than the agents') skips
    decoding it, a third of what its lines cost. Compared by value, so only identical bytes match.
    """

    def __init__(self) -> None:
        self._hosts: dict[str, HostStarts] = {}
        self._decoded: dict[str, tuple[bytes, Decoded | None]] = {}

    def of(self, name: str) -> HostStarts:
        starts = self._hosts.get(name)
        if starts is None:
            starts = self._hosts[name] = host_starts(name)
        return starts

    def decoded(self, name: str, snapshot: bytes | None) -> Decoded | None:
        """decode(snapshot), from the previous scrape if the host's snapshot is the same bytes."""
        if snapshot is None:
            return None
        kept = self._decoded.get(name)
        if kept is not None and kept[0] == snapshot:
            return kept[1]
        decoded = decode(snapshot)
        self._decoded[name] = (snapshot, decoded)
        return decoded

    def keep(self, names: Iterable[str]) -> None:
        """Forget the hosts not in `names` (the hosts of the latest scrape)."""
        names = list(names)
        self._hosts = {n: s for n in names if (s := self._hosts.get(n)) is not None}
        self._decoded = {n: d for n in names if (d := self._decoded.get(n)) is not None}


def _start(kept: dict[object, str], entity: object, start: str) -> str:
    if len(kept) < MAX_KEPT:
        kept[entity] = start
    return start


class Pending(NamedTuple):
    """The lines of one family being rendered: each one's start, and its number, all formatted at once."""

    starts: list[str]
    values: list[float]


_json = msgspec.json.Encoder()


def numbers(values: list[float]) -> list[str]:
    """The text of each finite value: its shortest exact form, as repr writes it but for exponents.

    msgspec's encoder writes a list of floats in C five times as fast as repr writes each, the
    most of what a scrape costs. Its exponents are `1e-05` as `0.00005`, `1e+16` as `1e16`: the
    same number to Prometheus (Go's ParseFloat), which is what the text format asks.
    """
    return _json.encode(values).decode("ascii")[1:-1].split(",") if values else []


def host_lines(s: HostStarts, d: Decoded, out: list[Pending]) -> None:
    """Add the lines of one host that is up to `out`, the lines pending per HOST_FAMILIES entry.

    A value is exported if it is a finite plausible number (the unit's bounds: NaN fails both
    comparisons, infinities the range; hostile data too), in base units.
    """
    metrics = d.metrics
    for (at, _, key, (low, high, divisor)), start in zip(METRIC_EXPORTS, s.metrics, strict=True):
        v = metrics.get(key)
        if (type(v) is float or type(v) is int) and low <= v <= high:
            starts, values = out[at]
            starts.append(start)
            values.append(v / divisor)
    series = d.series
    for at, name, key, label, (low, high, divisor) in SERIES_EXPORTS:
        found = series.get(key)
        if isinstance(found, list):
            items: Iterable[tuple[object, object]] = enumerate(found)
        elif isinstance(found, dict):
            items = found.items()
        else:
            continue
        (starts, values), kept = out[at], s.entities[at]
        for entity, v in items:
            if (type(v) is float or type(v) is int) and low <= v <= high and isinstance(entity, int | str):
                starts.append(
                    kept.get(entity)
                    or _start(kept, entity, f'{name}{s.host},{label}="{escape(str(entity))}"}} ')
                )
                values.append(v / divisor)
    probes = d.probes
    for probe, kind, key, fields in PROBE_READS:
        for entity, read in _entities(getattr(probes, probe), kind, key):
            for at, name, field, label, low, high, divisor in fields:
                v = read.get(field)
                if (type(v) is float or type(v) is int) and low <= v <= high:
                    starts, values = out[at]
                    kept = s.entities[at]
                    starts.append(
                        kept.get(entity)
                        or _start(
                            kept,
                            entity,
                            f'{name}{s.host},{label}="{escape(entity)}"}} '
                            if label
                            else f"{name}{s.host}}} ",
                        )
                    )
                    values.append(v / divisor)


def _entities(section: Any, kind: type, key: str) -> Iterable[tuple[str, dict[Any, Any]]]:
    """(entity, its map of fields) of a probe's results, read as catalog.One, Rows or Each read them."""
    if kind is catalog.One:
        return (("", section),) if isinstance(section, dict) else ()
    if kind is catalog.Rows:
        if not isinstance(section, list):
            return ()
        return [
            (item[key], item) for item in section if isinstance(item, dict) and isinstance(item.get(key), str)
        ]
    table = section.get(key) if isinstance(section, dict) else None
    if not isinstance(table, dict):
        return ()
    return [(e, values) for e, values in table.items() if isinstance(e, str) and isinstance(values, dict)]


class HostState(NamedTuple):
    """What the exposition needs of one host."""

    name: str
    up: bool
    last_seen: float
    snapshot: bytes | None


def hosts_text(hosts: Iterable[HostState], starts: LineStarts | None = None) -> list[str]:
    """The per-host families: up and last seen for every host, the numbers of hosts that are up.

    `starts`: the line starts kept by the previous scrapes (and kept for the next), if any.
    """
    if starts is None:
        starts = LineStarts()
    up: list[str] = []
    seen: list[str] = []
    pending = [Pending([], []) for _ in HOST_FAMILIES]
    names = []
    for h in hosts:
        s = starts.of(h.name)
        names.append(h.name)
        up.append(f"{s.up}{1.0 if h.up else 0.0}")
        seen.append(f"{s.seen}{sample(h.last_seen)}")
        decoded = starts.decoded(h.name, h.snapshot) if h.up else None
        if decoded is not None:
            host_lines(s, decoded, pending)
    starts.keep(names)
    lines = header(UP) + up + header(LAST_SEEN) + seen
    for f, (starts_of, values) in zip(HOST_FAMILIES, pending, strict=True):
        if starts_of:
            lines += header(f)
            lines += map(str.__add__, starts_of, numbers(values))
    return lines
