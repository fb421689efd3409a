"""The stored layout of per-entity numbers: the bytes written are msgpack of the scaled integers,
whatever shortcut the writer takes to them (empty series kept as they are, msgspec's encoder)."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.samples import Sample
from collector.store.compact import RAW_DETAIL, SCALE, pack_detail, pack_row, stored_detail
from osmon import catalog

NAMES_ID = 7


def scaled(value: Any, factor: int) -> Any:
    """What a stored number is, written plainly: round(value * factor), nested as sent."""
    if isinstance(value, dict):
        return {k: scaled(v, factor) for k, v in value.items()}
    if isinstance(value, list):
        return [scaled(v, factor) for v in value]
    return None if value is None else round(value * factor)


def expected_blob(detail: dict[str, Any]) -> bytes:
    stored = {s.key: scaled(detail[s.name], s.scale) for s in catalog.SERIES if s.stored and s.name in detail}
    raw = {k: stored[k] for k in RAW_DETAIL if k in stored}
    if raw.get("d"):
        raw["d"] = [NAMES_ID, *raw["d"].values()]
    return msgpack.packb(raw, use_bin_type=True)


numbers = st.none() | st.floats(-1e12, 1e12) | st.integers(-(2**40), 2**40)
names = st.text(max_size=12)


def series_value(shape: str) -> st.SearchStrategy[Any]:
    if shape == "list":
        return st.lists(numbers, max_size=8)
    if shape == "map":
        return st.dictionaries(names, numbers, max_size=6)
    return st.dictionaries(names, st.lists(numbers, min_size=2, max_size=2), max_size=6)


details = st.fixed_dictionaries({}, optional={s.name: series_value(s.shape) for s in catalog.SERIES})


@settings(max_examples=500, deadline=None)
@given(details)
def test_a_raw_rows_blob_is_msgpack_of_the_scaled_numbers(detail: dict[str, Any]) -> None:
    assert pack_detail(stored_detail(detail), lambda _: NAMES_ID) == expected_blob(detail)


@settings(max_examples=300, deadline=None)
@given(details)
def test_the_rollups_get_every_stored_series_scaled_but_empty_ones(detail: dict[str, Any]) -> None:
    """An empty series raises no maximum: only the raw row keeps it (its bytes are as before)."""
    expected = {
        s.key: scaled(detail[s.name], s.scale)
        for s in catalog.SERIES
        if s.stored and s.name in detail and (detail[s.name] or s.key in RAW_DETAIL)
    }
    assert stored_detail(detail) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(numbers, min_size=len(SCALE), max_size=len(SCALE)))
def test_a_raw_rows_columns_are_the_numbers_scaled(values: list[Any]) -> None:
    """Floats as decoded, and an integer now and then (disk.max is a series' value, kept as sent)."""
    sample = Sample("web-01", 1, 1.0, tuple(values), {})
    assert pack_row(sample) == tuple(
        scaled(v, factor) for v, factor in zip(values, SCALE.values(), strict=True)
    )


def test_empty_series_are_stored_empty_in_raw_rows_only() -> None:
    # cpu.core and disk.io are kept by the rollup tiers only; disk.percent by raw rows too.
    detail: dict[str, Any] = {"cpu.core": [], "disk.percent": {}, "net.down": {}, "disk.io": {}}
    stored = stored_detail(detail)
    assert stored == {"d": {}}
    assert pack_detail(stored, lambda _: NAMES_ID) == msgpack.packb({"d": {}})
