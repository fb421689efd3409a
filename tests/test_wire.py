"""The wire format: what the collector accepts, and that no bytes can make it fail otherwise."""

from __future__ import annotations

import contextlib
import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.samples import extract
from osmon import wire

PROBES = {
    "cpu": {"percent": 12.5, "iowait": 1.5, "per_core": [10.0, 15.0], "count": 2},
    "memory": {"percent": 37.5},
    "swap": {"percent": 0.0},
    "load": {"avg1": 0.5, "avg5": 0.25, "avg15": 0.125},
    "filesystems": [{"mount": "/", "percent": 41.0}, {"mount": "/var", "percent": 88.5}],
    "disk_io": {
        "read_bps": 100.0,
        "write_bps": 2048.0,
        "devices": {"vda": {"read_bps": 100.0, "write_bps": 2048.0}},
    },
    "net_io": {"rx_bps": 5.0, "tx_bps": 6.0, "interfaces": {"eth0": {"rx_bps": 5.0, "tx_bps": 6.0}}},
    "processes": {"count": 104, "top_cpu": [{"pid": 1, "name": "init"}], "top_mem": []},
    "users": [{"name": "root", "terminal": "pts/0", "host": "10.0.0.1", "since": 1764000000.0}],
}


def message(**changes: object) -> dict:
    """A snapshot as a map, as the agent builds it, with `changes` applied."""
    base = msgpack.unpackb(wire.encode_snapshot("web-01", 7, 1764000000.5, 10.0, "0.1.0", PROBES))
    base.update(changes)
    return base


def test_a_valid_snapshot_round_trips() -> None:
    raw = wire.encode(message())
    snapshot = wire.decode_snapshot(raw)
    assert (snapshot.host, snapshot.seq, snapshot.ts, snapshot.interval) == ("web-01", 7, 1764000000.5, 10.0)
    assert snapshot.metrics["mem.percent"] == 37.5
    assert snapshot.probes() == PROBES
    assert snapshot.raw == raw


def test_unknown_keys_are_ignored_for_forward_compatibility() -> None:
    snapshot = wire.decode_snapshot(
        wire.encode(message(future_field={"x": 1}, metrics={"cpu.percent": 3.0, "gpu.future": "x"}))
    )
    assert snapshot.metrics == {"cpu.percent": 3.0}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"v": 2}, "schema version"),
        ({"v": None}, "schema version"),
        ({"host": None}, "host"),
        ({"host": "../etc/passwd"}, "host"),
        ({"host": "<script>alert(1)</script>"}, "host"),
        ({"host": "a" * 300}, "host"),
        ({"host": "web 01"}, "host"),
        ({"host": ""}, "host"),
        ({"host": []}, "host"),
        ({"host": {"a": 1}}, "host"),
        ({"host": "web-01\n"}, "host"),
        ({"interval": 1e-300}, "interval"),
        ({"interval": 1e308}, "interval"),
        ({"series": {"disk.percent": {"/": 2**64 - 1}}}, "disk.percent"),
        ({"metrics": {"mem.percent": 2**60}}, "mem.percent"),
        ({"seq": -1}, "seq"),
        ({"seq": "7"}, "seq"),
        ({"seq": True}, "seq"),
        ({"seq": 2**64 - 1}, "seq"),
        ({"ts": math.nan}, "ts"),
        ({"ts": math.inf}, "ts"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": 1e300}, "ts"),
        ({"ts": 0}, "ts"),
        ({"interval": -5}, "interval"),
        ({"interval": math.nan}, "interval"),
        ({"probes": [1, 2]}, "probes"),
        ({"probes": {"cpu": {}}}, "probes"),
        ({"metrics": [1]}, "metrics"),
        ({"metrics": {"mem.percent": math.nan}}, "mem.percent"),
        ({"metrics": {"cpu.percent": math.inf}}, "cpu.percent"),
        ({"metrics": {"load.1": -math.inf}}, "load.1"),
        ({"metrics": {"mem.percent": "12%"}}, "mem.percent"),
        ({"metrics": {"mem.percent": True}}, "mem.percent"),
        ({"series": {"cpu.core": [1.0, math.nan]}}, "cpu.core"),
        ({"series": {"cpu.core": "1,2"}}, "cpu.core"),
        ({"series": {"disk.percent": {"/": math.inf}}}, "disk.percent"),
        ({"series": {"net.io": {"eth0": [1.0]}}}, "net.io"),
        ({"series": {"disk.io": {"vda": [math.nan, 1.0]}}}, "disk.io"),
    ],
)
def test_bad_fields_reject_the_message_with_the_reason(changes: dict, reason: str) -> None:
    with pytest.raises(wire.WireError, match=reason):
        wire.decode_snapshot(wire.encode(message(**changes)))


def test_missing_required_keys_reject_the_message() -> None:
    for key in ("v", "host", "seq", "ts", "probes", "metrics"):
        body = message()
        del body[key]
        with pytest.raises(wire.WireError):
            wire.decode_snapshot(wire.encode(body))


def test_metrics_are_extracted_exactly() -> None:
    sample = extract(wire.decode_snapshot(wire.encode(message())))
    assert (
        sample.value("cpu.percent") == 12.5
        and sample.value("cpu.iowait") == 1.5
        and sample.value("mem.percent") == 37.5
        and sample.value("swap.percent") == 0.0
    )
    assert (sample.value("load.1"), sample.value("load.5"), sample.value("load.15")) == (0.5, 0.25, 0.125)
    assert sample.value("disk.max") == 88.5
    assert (
        sample.value("disk.read_bps"),
        sample.value("disk.write_bps"),
        sample.value("net.rx_bps"),
        sample.value("net.tx_bps"),
    ) == (100.0, 2048.0, 5.0, 6.0)
    assert (sample.value("processes.count"), sample.value("users.count")) == (104.0, 1.0)
    assert sample.detail == {
        "cpu.core": [10.0, 15.0],
        "disk.percent": {"/": 41.0, "/var": 88.5},
        "disk.io": {"vda": [100.0, 2048.0]},
        "net.io": {"eth0": [5.0, 6.0]},
        # Listed only when something is wrong: here nothing is (no inode figures were sent).
        "disk.inodes": {},
        "disk.readonly": {},
        "net.down": {},
    }


def test_the_boot_time_travels_as_a_metric_and_an_older_collector_ignores_it() -> None:
    probes = {**PROBES, "uptime": {"boot_time": 1763000000.0, "seconds": 1000000.5}}
    raw = wire.encode_snapshot("web-01", 7, 1764000000.5, 10.0, "0.1.0", probes)
    assert wire.decode_snapshot(raw).metrics["boot.time"] == 1763000000.0
    # A collector that knows only the metrics it had before drops it and keeps the rest.
    older = dict(wire.METRICS)
    del older["boot.time"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wire, "METRICS", older)
        metrics = wire.decode_snapshot(raw).metrics
    assert "boot.time" not in metrics and metrics["cpu.percent"] == 12.5
    # An agent without the uptime probe's answer sends no boot time at all.
    assert "boot.time" not in wire.decode_snapshot(wire.encode(message())).metrics


def test_probes_with_missing_or_odd_values_give_gaps_not_errors() -> None:
    """The agent side leaves out what a probe could not measure; the snapshot still goes."""
    probes = {
        "cpu": {"percent": None, "per_core": [1.0, math.nan]},
        "memory": "oops",
        "disk_io": {"devices": []},
    }
    sample = extract(wire.decode_snapshot(wire.encode_snapshot("h", 1, 1.0, None, "x", probes)))
    assert (
        sample.value("cpu.percent") is None
        and sample.value("mem.percent") is None
        and sample.value("disk.max") is None
        and sample.value("users.count") is None
    )
    assert sample.detail["cpu.core"] == [1.0, None]


def test_acks_round_trip_and_bad_acks_are_refused() -> None:
    assert wire.decode_ack(wire.encode_ack([1, 2, 3])) == [1, 2, 3]
    for bad in (
        b"\xc1",
        wire.encode({"v": 1, "ack": ["1"]}),
        wire.encode([1, 2]),
        wire.encode({"v": 1, "ack": [2**64 - 1]}),
        wire.encode({"v": 1, "ack": [-1]}),
    ):
        with pytest.raises(wire.WireError):
            wire.decode_ack(bad)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_wire_errors(data: bytes) -> None:
    with contextlib.suppress(wire.WireError):
        extract(wire.decode_snapshot(data))


msgpack_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_like = st.recursive(
    st.none() | st.booleans() | msgpack_ints | st.floats() | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=2000, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "v": st.sampled_from([1, 1, 1, 2, "1", None]),
            "host": st.sampled_from(["web-01", "", "../x", "a b", "x\n"]) | st.text(max_size=30) | json_like,
            "seq": st.integers(min_value=-5, max_value=2**64 - 1) | json_like,
            "ts": st.floats() | msgpack_ints | json_like,
            "interval": st.floats() | json_like,
            "probes": st.binary(max_size=64) | json_like,
            "metrics": st.dictionaries(st.sampled_from(sorted(wire.METRICS)), json_like) | json_like,
            "series": st.dictionaries(
                st.sampled_from(["cpu.core", "disk.percent", "disk.io", "net.io"]), json_like
            )
            | json_like,
        },
    )
)
def test_structured_garbage_raises_only_wire_errors(body: dict) -> None:
    """Maps that look almost right, with any value where a number is expected."""
    with contextlib.suppress(wire.WireError):
        extract(wire.decode_snapshot(msgpack.packb(body, use_bin_type=True)))


def test_entity_names_of_a_stored_snapshot_are_what_its_series_list() -> None:
    probes = {
        "disk_io": {"devices": {"vda": {"read_bps": 1.0, "write_bps": 2.0}, "nvme0n1": {"read_bps": 3.0}}},
        "net_io": {"interfaces": {"eth0": {"rx_bps": 5.0, "tx_bps": 6.0}}},
    }
    raw = wire.encode_snapshot("web-01", 1, 1_764_000_000.0, 10.0, "test", probes)
    assert wire.entity_names(raw, ["disk.io", "net.io", "cpu.core"]) == {
        "disk.io": ["vda", "nvme0n1"],
        "net.io": ["eth0"],
        "cpu.core": [],  # a list, not a map: no names
    }
    assert wire.entity_names(b"\xc1 not msgpack", ["disk.io"]) == {}
    odd = wire.encode({"series": {"disk.io": [1.0, 2.0], "net.io": {"eth0": None}}})
    assert wire.entity_names(odd, ["disk.io", "net.io"]) == {"disk.io": [], "net.io": ["eth0"]}
    assert wire.entity_names(wire.encode([1, 2]), ["disk.io"]) == {"disk.io": []}
