"""The collector's decoder gives what osmon.wire.decode_snapshot gives, for every input: the same
snapshot, or the same WireError with the same reason."""

from __future__ import annotations

import math
import random
import time
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import snapshots
from collector.samples import extract
from collector.store import Received
from osmon import catalog, wire
from osmon.limits import MAX_CORES, MAX_ENTITIES, MAX_ENTITY_NAME
from tests.test_fuzz import extreme_snapshot
from tests.test_wire import PROBES, json_like, message

T0 = 1_764_000_000.0  # when a message is received


def outcome(decode: Any, data: bytes) -> Any:
    """A decoder's answer, comparable: the snapshot (an integer equals its float), or the error's text."""
    try:
        return decode(data)
    except wire.WireError as e:
        return ("error", str(e))


def from_wire(data: bytes) -> Received:
    snapshot = wire.decode_snapshot(data)
    boot = snapshot.metrics.get("boot.time")
    return Received(extract(snapshot), data, snapshot.interval, T0, snapshot.epoch, boot)


def same(data: bytes) -> None:
    """Both of the collector's decoders answer as wire does: the snapshot, and ingest's sample of it."""
    assert outcome(snapshots.decode, data) == outcome(wire.decode_snapshot, data)
    assert outcome(lambda d: snapshots.decode_received(d, T0), data) == outcome(from_wire, data)


def test_a_real_snapshot_takes_the_fast_path_and_decodes_the_same() -> None:
    probes = {**PROBES, "uptime": {"boot_time": 1763000000.0, "seconds": 1000.5}, "units": {"failed": []}}
    raw = wire.encode_snapshot("web-01", 7, 1764000000.5, 10.0, "0.1.0", probes, {"gpus": "none"}, epoch=9)
    snapshots._decoder.decode(raw)  # msgspec alone accepts it: no detour through wire
    same(raw)
    assert snapshots.decode(raw).probes() == probes


@pytest.mark.parametrize(
    "changes",
    [
        {"v": True},  # True == 1 in Python: wire takes it, msgspec does not, so wire decides
        {"v": 1.0},
        {"metrics": {"cpu.percent": 3.0, "gpu.future": "x"}},  # a newer agent's metric
        {"series": {"disk.percent": {"/": 5}, "gpu.future": [1]}},
        {"future_field": {"x": 1}},
        {"future_field": {1: 2}},  # not msgpack for wire (an integer key): refused
        {"agent": 5},
        {"errors": {"cpu": 1}},
        {"errors": ["x"]},
        {"metrics": {"mem.percent": 50}},  # an integer: a float, as wire gives it
        {"metrics": {"mem.percent": 2**53 + 1}},
        {"metrics": {"boot.time": float(2**53) + 2}},
        {"series": {"disk.percent": {"/": 41}}},  # wire keeps an integer as sent
        {"series": {"disk.io": {"vda": [1, None]}}},
        {"series": {"disk.percent": {b"/": 41.0}}},
        {"series": None},
        {"interval": None},
        {"epoch": 2**53},
        {"epoch": 2**53 + 1},
        {"epoch": True},
        {"host": "web-01..x"},
        {"host": "é"},
        {"probes": "not bytes"},
        {"ts": 5},
        {"seq": 2**63},
        {"seq": 7.0},
    ],
    ids=repr,
)
def test_unusual_and_bad_messages_get_wires_answer(changes: dict) -> None:
    body = message()
    body.update(changes)
    same(msgpack.packb(body, use_bin_type=True))


def test_a_key_given_twice_counts_once_as_wire_counts_it() -> None:
    body = message()
    metrics = body.pop("metrics")
    head = msgpack.packb(body, use_bin_type=True)
    # One more key in the map's header, then "metrics" twice: the second wins in both decoders.
    bad, good = {"mem.percent": math.nan}, metrics
    for first, second in ((bad, good), (good, bad)):
        data = bytes([head[0] + 2]) + head[1:] + msgpack.packb("metrics") + msgpack.packb(first)
        same(data + msgpack.packb("metrics") + msgpack.packb(second))
    mounts = {f"/m{i % 3}": 1.0 for i in range(MAX_ENTITIES + 1)}
    same(wire.encode(message(series={"disk.percent": mounts})))


def test_limits_and_bounds_are_the_same() -> None:
    for name, (low, high) in wire.BOUNDS.items():
        if name in wire.METRICS:
            for value in (low, high, low - 1e-9, high * 1.000001, -0.0, 5e-324, math.nan, math.inf):
                same(wire.encode(message(metrics={name: value})))
    for cores in (MAX_CORES, MAX_CORES + 1):
        same(wire.encode(message(series={"cpu.core": [1.0] * cores})))
    for series in (s.name for s in catalog.SERIES if s.shape != "list"):
        for count, length in (
            (MAX_ENTITIES, MAX_ENTITY_NAME),
            (MAX_ENTITIES + 1, 3),
            (1, MAX_ENTITY_NAME + 1),
        ):
            value: Any = [1.0, 2.0] if catalog.SERIES_BY_NAME[series].shape == "pairs" else 1.0
            entities = {f"{i:0{length}d}": value for i in range(count)}
            same(wire.encode(message(series={series: entities})))
        same(wire.encode(message(series={series: {"é" * MAX_ENTITY_NAME: 1.0}})))


def test_extreme_snapshots_of_the_fuzz_test_are_decoded_the_same() -> None:
    rng = random.Random(15)
    for seq in range(300):
        same(extreme_snapshot(rng, seq))


def test_integers_at_the_edge_of_exact_floats_are_decoded_the_same() -> None:
    """2**53 + 1 reads as the float 2**53 in a typed decoder: it must still be refused as wire refuses it."""
    edges = [2**53 - 1, 2**53, 2**53 + 1, float(2**53), -(2**53), -(2**53) - 1, float(-(2**53))]
    for name in sorted(wire.METRICS):
        for value in edges:
            same(wire.encode(message(metrics={name: value})))
    for value in edges:
        same(wire.encode(message(series={"cpu.core": [value], "disk.percent": {"sda": value}})))


numbers = (
    st.floats()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.sampled_from([0, 1, 100, 100.0, 2**32, 2**40, 2**53, 2**53 + 1, -0.0, True, None])
)


@settings(max_examples=1500, deadline=None)
@given(
    st.dictionaries(st.sampled_from(sorted(wire.METRICS)), numbers),
    st.fixed_dictionaries(
        {},
        optional={
            "cpu.core": st.lists(numbers | st.none(), max_size=6) | json_like,
            "disk.percent": st.dictionaries(st.text(max_size=4), numbers | st.none(), max_size=4) | json_like,
            "disk.io": st.dictionaries(st.text(max_size=4), st.lists(numbers, max_size=3), max_size=3),
            "net.down": st.dictionaries(st.text(max_size=4), numbers, max_size=3),
        },
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "ts": numbers,
            "interval": numbers,
            "seq": numbers,
            "epoch": numbers,
            "v": st.sampled_from([1, 1.0, True, 2]),
            "agent": json_like,
            "errors": json_like,
        },
    ),
)
def test_nearly_valid_messages_are_decoded_the_same(metrics: dict, series: dict, header: dict) -> None:
    same(wire.encode(message(metrics=metrics, series=series, **header)))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_are_refused_the_same(data: bytes) -> None:
    same(data)


def test_a_valid_message_does_not_fall_back_to_wire() -> None:
    """What makes the decoder fast: a snapshot as agents send it is checked by msgspec alone."""
    raw = wire.encode_snapshot("web-01", 1, time.time(), 10.0, "0.1.0", PROBES)
    calls = []
    original = wire.decode_snapshot
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wire, "decode_snapshot", lambda data: calls.append(data) or original(data))
        snapshots.decode(raw)
        snapshots.decode_received(raw, T0)
    assert calls == []
