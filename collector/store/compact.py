"""How numbers are laid out on disk: scaled integers, so a host-day stays small.

SQLite stores an integer in 1 to 8 bytes by its size and a non-integral REAL
in 8 bytes always. Percentages kept to 0.01 and rates to whole bytes per
second fit in 2 to 4 bytes, which is what keeps a host-day of raw samples
and rollups under 2 MB. The resolution kept is far finer than any chart or
threshold needs; what is stored is exactly what rollups sum, so a rollup
equals the aggregate of its raw rows.

The per-entity numbers (per core, per mount, per disk, per interface) go in
one msgpack blob per row, with short keys and the same scaling. A host's mount
points are the same in nearly every row and can be long (/var/lib/docker/...):
a raw row holds the id of its list of mount names (table `names`, written once)
and the values in that order. Rows written before this layout hold the agent's
floats under the wire's names; `unpack_detail` reads both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import msgspec

from collector.samples import Sample
from osmon import catalog

# Column -> factor: the stored integer is round(value * factor).
SCALE: dict[str, int] = {m.column: m.scale for m in catalog.STORED if m.column is not None}
COLUMNS = catalog.COLUMNS
_FACTORS = tuple(SCALE.values())

# Stored detail key -> (wire key, factor).
_DETAIL = {s.key: (s.name, s.scale) for s in catalog.SERIES if s.stored}
_BY_WIRE = {wire: (short, factor) for short, (wire, factor) in _DETAIL.items()}
# What a raw sample keeps; the rollups keep each entity's maximum of the others per minute and hour.
RAW_DETAIL = tuple(s.key for s in catalog.SERIES if s.raw)


def scaled(value: float | None, factor: int) -> int | None:
    return None if value is None else round(value * factor)


# round() of a float without round's lookup of __round__: a third of the time, on every number of
# every snapshot. A TypeError for an integer (a series' value is kept as sent: disk.max).
_round = float.__round__


def pack_row(sample: Sample) -> tuple[int | None, ...]:
    """The stored integers of a sample's host-wide numbers, in COLUMNS order."""
    # scaled() written out: this runs for every column of every snapshot.
    values = sample.values
    try:
        return tuple([None if v is None else _round(v * f) for v, f in zip(values, _FACTORS, strict=True)])
    except TypeError:
        return tuple([None if v is None else round(v * f) for v, f in zip(values, _FACTORS, strict=True)])


def unpack_value(column: str, stored: float | None) -> float | None:
    return None if stored is None else stored / SCALE[column]


def stored_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """The per-entity numbers of a sample as stored: short keys, scaled integers.

    `detail` has the shapes osmon.wire checked (a list, or a map of numbers or of pairs, each
    number finite or None); anything else is scaled as _scale_tree does, which leaves out what
    is no number. An empty series is left out unless the raw row keeps it (RAW_DETAIL): it adds
    nothing to the rollups' maxima, which store no empty series either.
    """
    stored: dict[str, Any] = {}
    for wire_key, value in detail.items():
        found = _STORED_SERIES.get(wire_key)
        if found is None:
            continue
        short, factor, scale, kind = found
        if not value and type(value) is kind:
            # Most series of most snapshots are empty (no failed unit, no link down, no read-only
            # mount): no call to scale nothing, and no key for the rollups to merge for nothing.
            if short in RAW_DETAIL:
                stored[short] = value  # never changed in place
            continue
        try:
            stored[short] = scale(value, factor)
        except (TypeError, AttributeError):
            stored[short] = _scale_tree(value, factor)
    return stored


# Floats only (_round): an integer among them takes _scale_tree's way, to the same numbers.
def _scale_list(values: list[float | None], factor: int) -> list[int | None]:
    return [None if v is None else _round(v * factor) for v in values]


def _scale_map(values: dict[str, float | None], factor: int) -> dict[str, int | None]:
    return {k: None if v is None else _round(v * factor) for k, v in values.items()}


def _scale_pairs(pairs: dict[str, list[float | None]], factor: int) -> dict[str, list[int | None]]:
    return {k: [None if v is None else _round(v * factor) for v in pair] for k, pair in pairs.items()}


# A shape's scaling, on what wire checked (a TypeError or AttributeError on anything else), and
# the type it gives: an empty value of that type is stored as it is.
_SCALE_SHAPE: dict[str, tuple[Callable[[Any, int], Any], type]] = {
    "list": (_scale_list, list),
    "map": (_scale_map, dict),
    "pairs": (_scale_pairs, dict),
}
# Wire key -> (stored key, factor, scaling, type) of the series stored.
_STORED_SERIES = {s.name: (s.key, s.scale, *_SCALE_SHAPE[s.shape]) for s in catalog.SERIES if s.stored}
# msgspec's encoder writes the bytes msgpack.packb(use_bin_type=True) writes for what is stored
# here (maps with text keys, lists, integers in their smallest form, None), without making a
# Packer per call (tests/test_compact.py checks the bytes).
pack = msgspec.msgpack.Encoder().encode


def pack_detail(stored: dict[str, Any], names_id: Callable[[tuple[str, ...]], int]) -> bytes:
    """The blob of a raw sample: RAW_DETAIL only, mounts as [names id, value, ...].

    `names_id` gives the id of a list of names, storing it (`pack_names`) the first time.
    """
    packed = {k: stored[k] for k in RAW_DETAIL if k in stored}
    mounts = packed.get("d")
    if isinstance(mounts, dict) and mounts:
        packed["d"] = [names_id(tuple(mounts)), *mounts.values()]
    return pack(packed)


def pack_names(names: tuple[str, ...]) -> bytes:
    return msgpack.packb(list(names), use_bin_type=True)


def unpack_names(blob: bytes) -> list[str]:
    names = msgpack.unpackb(blob)
    return names if isinstance(names, list) else []


def highest(a: Any, b: Any) -> Any:
    """Entity by entity, the higher of two per-entity values (lists by index, maps by name)."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, list) and isinstance(b, list):
        if len(a) == len(b):
            # The usual case, on every row a chart merges: lists of numbers (cores, a device's
            # pair of rates) of one length. A None among them (a gap) takes the general path.
            try:
                return list(map(max, a, b))
            except TypeError:
                pass
        longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
        return [highest(x, shorter[i] if i < len(shorter) else None) for i, x in enumerate(longer)]
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: highest(a.get(k), b.get(k)) for k in a.keys() | b.keys()}
    if isinstance(a, int | float) and isinstance(b, int | float):
        return max(a, b)
    return a  # shapes that differ: only a damaged or foreign blob has them


def read_stored(blob: bytes | None, names: Callable[[int], list[str]] | None = None) -> dict[str, Any]:
    """A detail blob as stored: short keys, scaled numbers, mounts by name; {} if missing or damaged.

    `names` gives the list of names of an id (raw rows); rollup rows name their mounts.
    Rows written before the compact layout hold the agent's floats: scaled here, not rounded.
    """
    if blob is None:
        return {}
    try:
        stored = msgpack.unpackb(blob)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return {}  # written by the collector itself: only a damaged file gets here
    if not isinstance(stored, dict):
        return {}
    if any(key in _BY_WIRE for key in stored):
        return {
            _BY_WIRE[k][0]: _scale_tree(v, _BY_WIRE[k][1], exact=True)
            for k, v in stored.items()
            if k in _BY_WIRE
        }
    mounts = stored.get("d")
    if isinstance(mounts, list) and mounts and names is not None:
        stored["d"] = dict(zip(names(mounts[0]), mounts[1:], strict=False))
    return stored


def short_key(wire_key: str) -> str:
    """The stored key of a per-entity series ("cpu.core" -> "c")."""
    return _BY_WIRE[wire_key][0]


def unscaled(short: str, value: Any) -> Any:
    """Stored per-entity numbers of key `short` as the agent sent them."""
    return _unscale_tree(value, _DETAIL[short][1])


def unpack_detail(blob: bytes | None, names: Callable[[int], list[str]] | None = None) -> dict[str, Any]:
    """The per-entity numbers under the wire's names, as floats; {} for a missing or damaged blob."""
    return {_DETAIL[k][0]: unscaled(k, v) for k, v in read_stored(blob, names).items() if k in _DETAIL}


def _scale_tree(value: Any, factor: int, exact: bool = False) -> Any:
    if isinstance(value, dict):
        return {k: _scale_tree(v, factor, exact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scale_tree(v, factor, exact) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value * factor if exact else round(value * factor)
    return None


def _unscale_tree(value: Any, factor: int) -> Any:
    if isinstance(value, dict):
        return {k: _unscale_tree(v, factor) for k, v in value.items()}
    if isinstance(value, list):
        return [_unscale_tree(v, factor) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / factor
    return None
