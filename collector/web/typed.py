"""The exported numbers of a stored snapshot, decoded and checked by msgspec in C, in one call.

The fast path of /metrics (collector.web.exposition): every number it exports is declared with
its bounds (`Annotated[float, Meta(ge=low, le=high)]`), so msgspec refuses NaN, infinities, bools,
strings and implausible values while it decodes, and no Python runs per value. A snapshot with
anything unexpected where a number is exported (a value out of range, a null in a list, a map where
a list was expected) does not decode here at all: `numbers` returns None and the caller checks it
value by value instead (exposition.checked), which drops the bad values and keeps the others. So
this path accepts only what that one exports unchanged: its checks are never looser.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import compress, repeat
from operator import is_not
from typing import Annotated, Any

import msgspec
from msgspec import NODEFAULT, Meta
from msgspec.structs import astuple

from collector.web.exports import (
    METRIC_EXPORTS,
    PROBE_READS,
    PROBES_READ,
    SERIES_EXPORTS,
    Chunk,
    Numbers,
    ProbeField,
    ProbeRead,
    SeriesExport,
)
from osmon import catalog

EXACT = 2.0**53  # beyond, msgspec compares an integer as the float nearest to it


def plausible(low: float, high: float) -> Any:
    """A number within [low, high], as a float. msgspec compares an integer as the float it rounds
    to (2**60 + 1 as 2**60), where the exact check refuses it: a bound beyond exact integers is
    pulled in by one float step, and the rare value on it takes the exact path."""
    if abs(high) >= EXACT:
        high = math.nextafter(high, -math.inf)
    if abs(low) >= EXACT:
        low = math.nextafter(low, math.inf)
    return Annotated[float, Meta(ge=low, le=high)]


def _struct(name: str, fields: Sequence[tuple[str, Any, Any]]) -> Any:
    """A struct of `fields` (name on the wire, type, default), its attributes f0, f1 ... in that order."""
    return msgspec.defstruct(
        name,
        [(f"f{i}", kind, msgspec.field(default=d, name=wire)) for i, (wire, kind, d) in enumerate(fields)],
        gc=False,  # numbers and strings only: no cycle to collect, and a scrape makes ~1,000 of them
    )


def _optional(fields: Sequence[ProbeField]) -> list[tuple[str, Any, Any]]:
    return [(f.field, plausible(f.low, f.high) | None, None) for f in fields]


def _probe_type(read: ProbeRead) -> Any:
    """The type of a probe's results as `read` reads them."""
    name = read.probe.title()
    if read.kind is catalog.One:
        return _struct(name, _optional(read.fields)) | None
    if read.kind is catalog.Rows:  # a list of items named by `key`: an item without a name is refused
        return list[_struct(name, [(read.key, str, NODEFAULT), *_optional(read.fields)])] | None  # type: ignore[misc]
    entity = _struct(f"{name}Entity", _optional(read.fields))
    return _struct(name, [(read.key, dict[str, entity] | None, None)]) | None  # type: ignore[valid-type]


# Each probe is read one way: its results are a map (One, Each) or a list (Rows), never both.
if len({r.probe for r in PROBE_READS}) != len(PROBE_READS):
    raise ValueError("catalog.PROBED: a probe is read by one kind of reader (One, Rows or Each of one key)")


def _series_type(s: SeriesExport) -> Any:
    number = plausible(s.bounds.low, s.bounds.high)
    return (list[number] if s.shape == "list" else dict[str, number]) | None  # type: ignore[valid-type]


Metrics = _struct(
    "Metrics", [(m.key, plausible(m.bounds.low, m.bounds.high) | None, None) for m in METRIC_EXPORTS]
)
Series = _struct("Series", [(s.key, _series_type(s), None) for s in SERIES_EXPORTS])
Probes = msgspec.defstruct("Probes", [(r.probe, _probe_type(r), None) for r in PROBE_READS], gc=False)
if not set(PROBES_READ) <= {r.probe for r in PROBE_READS}:
    raise ValueError("every probe read has its type")


class Stored(msgspec.Struct, gc=False):
    metrics: Metrics | None = None  # type: ignore[valid-type]
    series: Series | None = None  # type: ignore[valid-type]
    probes: Any = None  # msgpack bytes, decoded as Probes


_stored = msgspec.msgpack.Decoder(Stored)
_probes = msgspec.msgpack.Decoder(Probes)
_NO_METRICS = (None,) * len(METRIC_EXPORTS)
_NO_PROBES = Probes()


def numbers(snapshot: bytes) -> Numbers | None:
    """The exported numbers of a snapshot, or None if any is not a plausible number where expected."""
    try:
        message = _stored.decode(snapshot)
        probes = _probes.decode(message.probes) if isinstance(message.probes, bytes) else _NO_PROBES
    except (msgspec.DecodeError, ValueError, TypeError):  # msgspec.ValidationError is a DecodeError
        return None
    wide: tuple[float | None, ...] = _NO_METRICS if message.metrics is None else astuple(message.metrics)
    chunks: list[Chunk] = []
    for found in _NO_SERIES if message.series is None else astuple(message.series):
        if type(found) is list:
            chunks.append((range(len(found)), found))
        elif found:
            chunks.append((tuple(found), tuple(found.values())))
        else:
            chunks.append(_EMPTY)
    for (kind, width), section in zip(_READS, astuple(probes), strict=True):
        if kind is catalog.One:
            wide += (None,) * width if section is None else astuple(section)
            continue
        if kind is catalog.Each:
            section = section.f0 if section is not None else None  # its table: {entity: {field: ...}}
            names = tuple(section) if section else ()
            section = section.values() if section else None
        if not section:
            chunks += (_EMPTY,) * width
            continue
        columns = zip(*map(astuple, section), strict=True)
        if kind is catalog.Rows:  # the items' names first
            names = next(columns)
        for column in columns:
            chunks.append(_present(names, column) if None in column else (names, column))
    return Numbers(wide, tuple(chunks))


_READS = [(r.kind, len(r.fields)) for r in PROBE_READS]  # in the order of Probes' fields
_NO_SERIES = (None,) * len(SERIES_EXPORTS)
_EMPTY: Chunk = ((), ())


def _present(names: Sequence[Any], values: Sequence[Any]) -> Chunk:
    """(names, values) of the entities whose value is present (a field a probe may leave out)."""
    if None not in values:
        return names, values
    keep = list(map(is_not, values, repeat(None)))
    return tuple(compress(names, keep)), tuple(compress(values, keep))
