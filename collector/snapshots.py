"""The collector's decoder of snapshot messages: osmon.wire's rules, checked in one typed pass in C.

`osmon.wire.decode_snapshot` defines a valid snapshot, and is the agent's side of the
format too (which must not need msgspec). Its checks, in Python, cost three times
msgpack's own decoding of a message; msgspec decodes the same msgpack straight into
typed structures and checks every type, range and length in that one pass, in a tenth
of the time (benchmarks/ingest.py prints both).

What msgspec accepts here, `wire.decode_snapshot` accepts with an equal result
(tests/test_snapshots.py checks it on valid messages and on garbage), because every
type here is at least as strict as wire's rule for it, and no part of a message goes
unchecked: a key this version does not know, anywhere (which wire ignores once msgpack
has checked that it is well formed), is refused here. Whatever is refused here goes to
`wire.decode_snapshot`, which accepts it (a newer agent's metric, a key given twice in a
map) or raises its WireError naming the field and the reason. A message that is valid but
unusual costs the Python checks; a hostile one costs them once, then is dropped.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Annotated, Any, Literal

import msgspec

from collector.samples import POSITION, Sample, extract
from collector.store.records import Received
from osmon import catalog, numbers, wire
from osmon.catalog import MAX_TS
from osmon.limits import MAX_CORES, MAX_ENTITIES, MAX_ENTITY_NAME


def _number(name: str) -> Any:
    """A finite number within the bounds of `name`'s unit (never beyond what wire takes of an integer)."""
    low, high = wire.BOUNDS[name]
    # wire takes integers only within +-numbers.MAX_INT, floats up to the unit's bounds: msgspec
    # reads both as float, so it stops short of the narrower of the two and leaves the rest to wire.
    # Strictly short of MAX_INT: the integer 2**53 + 1 reads as the float 2**53, which wire takes
    # as a float but refuses as the integer it was.
    low_side = {"ge": low} if low > -numbers.MAX_INT else {"gt": -numbers.MAX_INT}
    high_side = {"le": high} if high < numbers.MAX_INT else {"lt": numbers.MAX_INT}
    return Annotated[float, msgspec.Meta(**low_side, **high_side)]


def _series(declared: catalog.Series) -> Any:
    value = _number(declared.name) | None
    name = Annotated[str, msgspec.Meta(max_length=MAX_ENTITY_NAME)]
    if declared.shape == "list":
        return Annotated[list[value], msgspec.Meta(max_length=MAX_CORES)]  # type: ignore[valid-type]
    if declared.shape == "map":
        return Annotated[dict[name, value], msgspec.Meta(max_length=MAX_ENTITIES)]  # type: ignore[valid-type]
    pair = Annotated[list[value], msgspec.Meta(min_length=2, max_length=2)]  # type: ignore[valid-type]
    return Annotated[dict[name, pair], msgspec.Meta(max_length=MAX_ENTITIES)]


_METRICS = tuple(wire.METRICS)
_SERIES = tuple(s.name for s in catalog.SERIES)
# Fields by position (f0, f1 ...) under their wire names, which have dots in them. A metric is a
# number or absent, never nil: its type takes no nil, and None is only the default of one absent
# (left out of to_builtins by omit_defaults). A series part may be nil (wire skips it).
Metrics = msgspec.defstruct(
    "Metrics",
    [(f"f{i}", _number(name), msgspec.field(name=name, default=None)) for i, name in enumerate(_METRICS)],
    forbid_unknown_fields=True,
    omit_defaults=True,
)
Series = msgspec.defstruct(
    "Series",
    [
        (f"f{i}", _series(declared) | None, msgspec.field(name=declared.name, default=None))
        for i, declared in enumerate(catalog.SERIES)
    ],
    forbid_unknown_fields=True,
)


class Message(msgspec.Struct, forbid_unknown_fields=True):
    """A snapshot message as this version knows it, every field typed."""

    v: Literal[1]
    host: str
    seq: Annotated[int, msgspec.Meta(ge=0, le=wire.MAX_SEQ)]
    ts: Annotated[float, msgspec.Meta(gt=0, lt=MAX_TS)]
    probes: bytes
    metrics: Metrics  # type: ignore[valid-type]
    interval: Annotated[float, msgspec.Meta(ge=0.01, le=wire.MAX_INTERVAL)] | None = None
    series: Series | None = None  # type: ignore[valid-type]
    agent: str | None = None
    errors: dict[str, str] | None = None
    epoch: Annotated[int, msgspec.Meta(gt=0, le=numbers.MAX_INT)] | None = None


_decoder = msgspec.msgpack.Decoder(Message)
_astuple = msgspec.structs.astuple


def decode(data: bytes) -> wire.Snapshot:
    """Parse and validate one snapshot message exactly as `wire.decode_snapshot` does, or raise WireError."""
    try:
        m = _decoder.decode(data)
    # msgspec's DecodeError and ValidationError; a UnicodeDecodeError (a ValueError) for text
    # that is no UTF-8. Then wire says why, or takes what is only unusual.
    except (msgspec.DecodeError, ValueError):
        return wire.decode_snapshot(data)
    if not wire.valid_host(m.host):
        return wire.decode_snapshot(data)
    metrics = msgspec.to_builtins(m.metrics)  # under the wire's names, without those absent (omit_defaults)
    series: dict[str, Any] = (
        {}
        if m.series is None
        else {name: v for name, v in zip(_SERIES, _astuple(m.series), strict=True) if v is not None}
    )
    return wire.Snapshot(m.host, m.seq, m.ts, m.interval, metrics, series, m.probes, data, m.epoch)


# The metrics of a Sample's columns, by their place in Metrics (a derived one, disk.max, takes
# the place of any field: it is computed and set after).
_COLUMN_FIELDS = itemgetter(*(_METRICS.index(m.name) if m.name in _METRICS else 0 for m in catalog.STORED))
_DISK_MAX = POSITION["disk.max"]
_DISK_PERCENT = _SERIES.index("disk.percent")
_BOOT = _METRICS.index("boot.time")


def decode_received(data: bytes, now: float) -> Received:
    """The record ingest stores of a snapshot message received at `now`, equal to the one made of
    `wire.decode_snapshot(data)` (`received`), or WireError: the same checks, without the
    snapshot's dict of metrics between the message and the sample's columns."""
    try:
        m = _decoder.decode(data)
    except (msgspec.DecodeError, ValueError):
        return received(wire.decode_snapshot(data), now)
    if not wire.valid_host(m.host):
        return received(wire.decode_snapshot(data), now)
    metrics = _astuple(m.metrics)
    values = list(_COLUMN_FIELDS(metrics))
    if m.series is None:
        values[_DISK_MAX] = None
        sample = Sample(m.host, m.seq, m.ts, tuple(values), {})
        return Received(sample, data, m.interval, now, m.epoch, metrics[_BOOT])
    parts = _astuple(m.series)
    usage = [v for v in (parts[_DISK_PERCENT] or {}).values() if v is not None]
    values[_DISK_MAX] = max(usage) if usage else None
    series = {name: v for name, v in zip(_SERIES, parts, strict=True) if v is not None}
    sample = Sample(m.host, m.seq, m.ts, tuple(values), series)
    return Received(sample, data, m.interval, now, m.epoch, metrics[_BOOT])


def received(snapshot: wire.Snapshot, now: float) -> Received:
    """The record ingest stores of a validated snapshot received at `now`."""
    boot = snapshot.metrics.get("boot.time")
    return Received(extract(snapshot), snapshot.raw, snapshot.interval, now, snapshot.epoch, boot)
