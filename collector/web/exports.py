"""What each host exports on /metrics, from the metric catalog: the families and how to read them.

In catalog order: host-wide numbers, then the series, then the numbers of the probes. A scrape
at 100 hosts renders ~7,000 lines: so each kind has its table of what a line needs, precomputed
(family name, label name, bounds, divisor to the base unit). The families are of two shapes:
host-wide (one number a host: WIDE) and per entity (a number per core, mount, device: ENTITY).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from osmon import catalog


class Family(NamedTuple):
    name: str
    kind: str  # gauge | counter | histogram
    help: str
    unit: str  # Prometheus base unit, or ""


def _help(text: str, unit: catalog.Unit) -> str:
    base = {"ratio": ", 0-1", "bytes": ", bytes", "seconds": ", Unix time in seconds"}.get(unit.base, "")
    return f"{text[0].upper()}{text[1:]}{base}, latest snapshot."


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
    shape: str  # catalog.Series.shape: "list" (by index) or "map" (name -> number)
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
    SeriesExport(len(METRIC_EXPORTS) + i, str(s.export), s.name, s.shape, s.entity, _bounds(s.unit))
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


class Wide(NamedTuple):
    """A host-wide family: one number a host, its line start `name{host="web-01"} `."""

    at: int
    name: str
    divisor: float


class Entity(NamedTuple):
    """A per-entity family: a number per core, mount, device or interface, labelled `label`."""

    at: int
    name: str
    label: str
    divisor: float


# The host-wide families: the exported metrics, then the fields of catalog.One probe reads.
WIDE: tuple[Wide, ...] = (
    *(Wide(m.at, m.name, m.bounds.divisor) for m in METRIC_EXPORTS),
    *(Wide(f.at, f.name, f.divisor) for r in PROBE_READS if r.kind is catalog.One for f in r.fields),
)
# The per-entity families: the exported series, then the fields of Rows and Each probe reads.
ENTITY: tuple[Entity, ...] = (
    *(Entity(s.at, s.name, s.entity, s.bounds.divisor) for s in SERIES_EXPORTS),
    *(
        Entity(f.at, f.name, f.entity, f.divisor)
        for r in PROBE_READS
        if r.kind is not catalog.One
        for f in r.fields
    ),
)
# Each read's shape decides where its numbers go: a host-wide number has no entity label.
if any(bool(f.entity) != (r.kind is not catalog.One) for r in PROBE_READS for f in r.fields):
    raise ValueError("catalog.PROBED: One reads are host-wide, Rows and Each reads need an entity label")
if any(s.shape not in ("list", "map") for s in SERIES_EXPORTS):
    raise ValueError("catalog.SERIES: only list and map series can be exported")
if sorted({*(e.at for e in WIDE), *(e.at for e in ENTITY)}) != list(range(len(HOST_FAMILIES))):
    raise ValueError("every exported family is host-wide or per entity")


# One family's numbers of one host: (entities, values), of the same length, every value plausible.
Chunk = tuple[Sequence[object], Sequence[float]]


class Numbers(NamedTuple):
    """What one host exports, read from its latest snapshot, every value checked, in its catalog unit."""

    wide: tuple[float | None, ...]  # by WIDE position; None: absent or no plausible number
    entities: tuple[Chunk, ...]  # by ENTITY position
