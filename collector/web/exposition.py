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
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, compress, repeat
from operator import attrgetter, is_not, itemgetter, truediv
from typing import Any, NamedTuple

import msgspec

from collector.web import typed
from collector.web.exports import (
    ENTITY,
    HOST_FAMILIES,
    METRIC_EXPORTS,
    PROBE_READS,
    PROBES_READ,
    SERIES_EXPORTS,
    WIDE,
    Chunk,
    Family,
    Numbers,
)
from osmon import catalog

Labels = dict[str, str]


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
# probe but those exported (processes are most of the bytes), is skipped undecoded. The exact path,
# for the snapshots collector.web.typed refuses: the parts are left untyped (Any), and a value that
# is no plausible number is dropped when read (`checked`), not the host.
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


def checked(d: Decoded) -> Numbers:
    """The exported numbers of a decoded snapshot, each checked: a value is kept if it is a finite
    plausible number (the unit's bounds: NaN fails both comparisons, infinities the range; hostile
    data too), as a float (as msgspec gives them). collector.web.typed reads the same numbers of a
    well-formed snapshot in C."""
    metrics = d.metrics
    wide: list[float | None] = []
    for _, _, key, (low, high, _) in METRIC_EXPORTS:
        v = metrics.get(key)
        wide.append(float(v) if (type(v) is float or type(v) is int) and low <= v <= high else None)
    chunks: list[Chunk] = []
    for _, _, key, _, _, (low, high, _) in SERIES_EXPORTS:
        found = d.series.get(key)
        items: Iterable[tuple[object, object]] = (
            enumerate(found) if isinstance(found, list) else found.items() if isinstance(found, dict) else ()
        )
        names: list[object] = []
        values: list[float] = []
        for entity, v in items:
            if (type(v) is float or type(v) is int) and low <= v <= high and isinstance(entity, int | str):
                names.append(entity)
                values.append(float(v))
        chunks.append((tuple(names), values))
    for probe, kind, key, fields in PROBE_READS:
        read = _entities(getattr(d.probes, probe), kind, key)
        for _, _, field, _, low, high, _ in fields:
            found = [(e, v) for e, r in read if (type(v := r.get(field)) is float or type(v) is int)]
            kept = [(e, float(v)) for e, v in found if low <= v <= high]
            if kind is catalog.One:
                wide.append(kept[0][1] if kept else None)
            else:
                chunks.append((tuple(e for e, _ in kept), [v for _, v in kept]))
    return Numbers(tuple(wide), tuple(chunks))


def _entities(section: Any, kind: type, key: str) -> list[tuple[str, dict[Any, Any]]]:
    """(entity, its map of fields) of a probe's results, read as catalog.One, Rows or Each read them."""
    if kind is catalog.One:
        return [("", section)] if isinstance(section, dict) else []
    if kind is catalog.Rows:
        if not isinstance(section, list):
            return []
        return [
            (item[key], item) for item in section if isinstance(item, dict) and isinstance(item.get(key), str)
        ]
    table = section.get(key) if isinstance(section, dict) else None
    if not isinstance(table, dict):
        return []
    return [(e, values) for e, values in table.items() if isinstance(e, str) and isinstance(values, dict)]


def checked_numbers(snapshot: bytes) -> Numbers | None:
    """The exported numbers of a stored snapshot, checked value by value (None if it does not decode)."""
    decoded = decode(snapshot)
    return None if decoded is None else checked(decoded)


def host_numbers(snapshot: bytes) -> Numbers | None:
    """The exported numbers of a stored snapshot: read in C if it is well formed, else value by
    value (the same numbers, less the implausible ones); None if it does not decode at all."""
    found = typed.numbers(snapshot)
    return checked_numbers(snapshot) if found is None else found


# Entities of one family of one host whose line starts are kept: beyond, a host inventing names
# (a mount per snapshot) has its extra lines formatted in full at each scrape, and costs no memory.
MAX_KEPT = 1024


class HostStarts(NamedTuple):
    """The start of each line one host exports, `name{host="web-01",mount="/var"} `, up to the number."""

    host: str  # the host's label, `{host="web-01"`, for the starts not kept yet
    up: str
    seen: str
    wide: tuple[str, ...]  # by WIDE position
    entities: tuple[dict[object, str], ...]  # by ENTITY position: entity -> start
    # [(the entities of each ENTITY family, their starts)] of the host's latest snapshot: the next
    # one names the same cores, mounts and devices, and reuses them after one comparison.
    last: list[tuple[tuple[Sequence[object], ...], tuple[list[str], ...]]]


def host_starts(name: str) -> HostStarts:
    h = f'{{host="{escape(name)}"'
    return HostStarts(
        h,
        f"{UP.name}{h}}} ",
        f"{LAST_SEEN.name}{h}}} ",
        tuple(f"{w.name}{h}}} " for w in WIDE),
        tuple({} for _ in ENTITY),
        [((), ())],
    )


class HostLines(NamedTuple):
    """What one host that is up adds to each family: line starts, and numbers in catalog units."""

    wide: tuple[float | None, ...]  # by WIDE position, None for no line
    wide_starts: tuple[str, ...]
    starts: tuple[list[str], ...]  # by ENTITY position
    values: tuple[Sequence[float], ...]


class LineStarts:
    """Each host's line starts, kept from one scrape to the next.

    Formatting the labels of a line (escapes, an f-string of five parts) cost /metrics twice as
    much as formatting its number, and hosts, cores, mounts, devices and interfaces seldom change:
    so a scrape looks the start of each line up, and formats only the numbers, which change at
    every snapshot. Kept for the hosts of the latest scrape only. Safe across threads: each
    operation is one dict lookup or store, and two scrapes missing the same start both format it.

    Each host's latest snapshot is kept read too, with its bytes and its lines' starts: a scrape of
    the same snapshot again (the second Prometheus of an HA pair, a scrape interval shorter than the
    agents') skips reading it. Compared by value, so only identical bytes match.
    """

    def __init__(self, read: Callable[[bytes], Numbers | None] | None = None) -> None:
        """`read`: how a snapshot's numbers are read (host_numbers; the tests compare the two paths)."""
        self._read_numbers = read or host_numbers
        self._hosts: dict[str, HostStarts] = {}
        self._read: dict[str, tuple[bytes, HostLines | None]] = {}

    def of(self, name: str) -> HostStarts:
        starts = self._hosts.get(name)
        if starts is None:
            starts = self._hosts[name] = host_starts(name)
        return starts

    def lines(self, name: str, snapshot: bytes | None) -> HostLines | None:
        """What the host's snapshot adds to each family, from the previous scrape if it is the same bytes."""
        if snapshot is None:
            return None
        kept = self._read.get(name)
        if kept is not None and kept[0] == snapshot:
            return kept[1]
        found = self._read_numbers(snapshot)
        lines = None if found is None else host_lines(self.of(name), found)
        self._read[name] = (snapshot, lines)
        return lines

    def keep(self, names: Iterable[str]) -> None:
        """Forget the hosts not in `names` (the hosts of the latest scrape)."""
        names = list(names)
        self._hosts = {n: s for n in names if (s := self._hosts.get(n)) is not None}
        self._read = {n: d for n in names if (d := self._read.get(n)) is not None}


def host_lines(s: HostStarts, found: Numbers) -> HostLines:
    names = tuple(map(_FIRST, found.entities))
    last_names, starts = s.last[0]
    if names != last_names:
        starts = tuple(entity_starts(s, at, of) for at, of in enumerate(names))
        s.last[0] = (names, starts)  # one store: another thread sees the old pair or the new one
    return HostLines(found.wide, s.wide, starts, tuple(map(_SECOND, found.entities)))


_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def entity_starts(s: HostStarts, at: int, names: Iterable[object]) -> list[str]:
    """The line starts of the entities `names` of ENTITY[at] of a host, kept ones looked up in C."""
    kept = s.entities[at]
    starts = list(map(kept.get, names))
    if None not in starts:
        return starts  # type: ignore[return-value]
    name, label = ENTITY[at].name, ENTITY[at].label
    found = []
    for entity, start in zip(names, starts, strict=True):
        if start is None:
            start = f'{name}{s.host},{label}="{escape(str(entity))}"}} '
            if len(kept) < MAX_KEPT:
                kept[entity] = start
        found.append(start)
    return found


_json = msgspec.json.Encoder()


def numbers(values: list[float]) -> list[str]:
    """The text of each finite value: its shortest exact form, as repr writes it but for exponents.

    msgspec's encoder writes a list of floats in C five times as fast as repr writes each, the
    most of what a scrape costs. Its exponents are `1e-05` as `0.00005`, `1e+16` as `1e16`: the
    same number to Prometheus (Go's ParseFloat), which is what the text format asks.
    """
    return _json.encode(values).decode("ascii")[1:-1].split(",") if values else []


def _lines(f: Family, starts: Iterable[str], values: Sequence[float], divisor: float) -> list[str]:
    """A family's header and its lines as one text (none if it has no values), in base units.

    The numbers are written by one call (`numbers`), each followed by a newline, and zipped with
    the starts into one join: no Python step per line.
    """
    if not values:
        return []
    if divisor != 1.0:  # the numbers are floats already: dividing by 1 changes none
        values = list(map(truediv, values, repeat(divisor)))
    texts = _json.encode(values)[1:-1].replace(b",", b"\n,").decode("ascii").split(",")
    return [*header(f), "".join(chain.from_iterable(zip(starts, texts, strict=True)))]


_WIDE, _WIDE_STARTS, _STARTS, _VALUES = (attrgetter(f) for f in HostLines._fields)


class HostState(NamedTuple):
    """What the exposition needs of one host."""

    name: str
    up: bool
    last_seen: float
    snapshot: bytes | None


def hosts_text(hosts: Iterable[HostState], starts: LineStarts | None = None) -> list[str]:
    """The per-host families: up and last seen for every host, the numbers of hosts that are up.

    `starts`: the line starts kept by the previous scrapes (and kept for the next), if any. The
    text of a family can hold several lines. Built a family at a time, over all hosts, with
    operations that run in C (zip, compress, map, chain): a Python step per line cost a scrape
    more than formatting its number.
    """
    if starts is None:
        starts = LineStarts()
    up: list[str] = []
    seen: list[str] = []
    names = []
    rows: list[HostLines] = []
    for h in hosts:
        s = starts.of(h.name)
        names.append(h.name)
        up.append(f"{s.up}{1.0 if h.up else 0.0}")
        seen.append(f"{s.seen}{sample(h.last_seen)}")
        found = starts.lines(h.name, h.snapshot) if h.up else None
        if found is not None:
            rows.append(found)
    starts.keep(names)
    by_family: list[list[str]] = [[] for _ in HOST_FAMILIES]
    wide = zip(
        WIDE, zip(*map(_WIDE, rows), strict=True), zip(*map(_WIDE_STARTS, rows), strict=True), strict=True
    )
    for w, values, line_starts in wide if rows else ():
        if None in values:
            present = list(map(is_not, values, repeat(None)))
            values, line_starts = tuple(compress(values, present)), tuple(compress(line_starts, present))
        by_family[w.at] = _lines(HOST_FAMILIES[w.at], line_starts, values, w.divisor)
    entity = zip(
        ENTITY, zip(*map(_STARTS, rows), strict=True), zip(*map(_VALUES, rows), strict=True), strict=True
    )
    for e, of_starts, of_values in entity if rows else ():
        by_family[e.at] = _lines(
            HOST_FAMILIES[e.at],
            chain.from_iterable(of_starts),
            list(chain.from_iterable(of_values)),
            e.divisor,
        )
    return header(UP) + up + header(LAST_SEEN) + seen + list(chain.from_iterable(by_family))
