"""Valid-shaped but extreme snapshots through the real ingest path: the collector survives, and
another agent's data stays complete (issue 19)."""

from __future__ import annotations

import math
import random
import time
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.store import open_store
from osmon import wire
from osmon.limits import MAX_CLOCK_AHEAD, MAX_CORES, MAX_ENTITIES
from tests.conftest import Cluster
from tests.test_ingest import Peer, snapshot

SEED = 19
MESSAGES = 300

# Values no unit accepts: each must cost only its own snapshot.
INVALID: list[Any] = [-1.0, 1e19, 1.7e308, 2**53 + 1, math.nan, math.inf, -math.inf, True, "12", b"\x00"]
EXTREME_NAMES = ["/", "", "\n", "\x1b[31mred", "../../etc", "<script>", "é" * 300, "x" * 1020, "/a\x00b"]


class Extremes:
    """Values at the edges of each unit's range; in a hostile snapshot, now and then one past them."""

    def __init__(self, rng: random.Random, hostile: bool) -> None:
        self.rng, self.hostile = rng, hostile

    def value(self, bounds: tuple[float, float]) -> Any:
        rng, (low, high) = self.rng, bounds
        if self.hostile and rng.random() < 0.05:
            return rng.choice(INVALID)
        edges = [low, high, -0.0 if low == 0 else low, 5e-324, high - high * 1e-16, int(high)]
        return rng.choice(edges) if rng.random() < 0.7 else rng.uniform(low, high)

    def names(self, count: int) -> list[str]:
        rng = self.rng
        odd = EXTREME_NAMES + (["x" * 1025] if self.hostile else [])
        return [rng.choice(odd) + str(i) if rng.random() < 0.3 else f"/m{i}" for i in range(count)]

    def count(self, limit: int) -> int:
        choices = [0, 1, 2, limit - 1, limit] + ([limit + 1, 3 * limit] if self.hostile else [])
        return self.rng.choice(choices)


def extreme_snapshot(rng: random.Random, seq: int) -> bytes:
    """One snapshot of the right shape: edge values, counts, names, seq, ts and epoch; three in
    ten also carry values, counts or names past the limits."""
    x = Extremes(rng, hostile=rng.random() < 0.3)
    series: dict[str, Any] = {
        "cpu.core": [x.value(wire.BOUNDS["cpu.core"]) for _ in range(x.count(MAX_CORES))],
        "disk.percent": {n: x.value(wire.BOUNDS["disk.percent"]) for n in x.names(x.count(MAX_ENTITIES))},
        "net.io": {
            n: [x.value(wire.BOUNDS["net.io"]), x.value(wire.BOUNDS["net.io"])]
            for n in x.names(x.count(MAX_ENTITIES))
        },
    }
    metrics = {name: x.value(wire.BOUNDS[name]) for name in wire.METRICS}
    changes: dict[str, Any] = {
        "metrics": {k: v for k, v in metrics.items() if rng.random() < 0.8},
        "series": {k: v for k, v in series.items() if rng.random() < 0.8},
        "ts": rng.choice([time.time(), time.time(), 1e-3, wire.MAX_TS - 1, time.time() + 3 * 365 * 86400]),
        "interval": rng.choice([10.0, 0.01, wire.MAX_INTERVAL, None]),
        "epoch": rng.choice([None, 1, 2**53, rng.randrange(1, 2**53)]),
        "unknown": rng.choice([None, "x" * 1000, {"nested": [1, 2]}]),
    }
    return snapshot(f"fuzz-{rng.randrange(3)}", rng.choice([seq, seq, 0, 2**63 - 1, 2**53]), **changes)


def decoded(data: bytes) -> wire.Snapshot | None:
    try:
        return wire.decode_snapshot(data)
    except wire.WireError:
        return None


def test_extreme_snapshots_never_stop_the_collector_nor_cost_another_agent_data(
    cluster: Cluster, context: zmq.Context
) -> None:
    rng = random.Random(SEED)
    collector = cluster.collector()
    fuzz, good = Peer(context, cluster.port), Peer(context, cluster.port)
    sent: dict[int, bytes] = {}
    for seq in range(1, MESSAGES + 1):
        sent[seq] = extreme_snapshot(rng, seq)
        fuzz.send(sent[seq])
        if seq % 3 == 0:
            good.send(snapshot("good-01", seq // 3))
    expected = set(range(1, MESSAGES // 3 + 1))
    assert good.wait_acks(expected, timeout=60) == expected
    acked = fuzz.acks(1.0)
    assert collector.alive(), collector.output()
    assert collector.terminate() == 0
    assert "Traceback" not in collector.output()
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    assert store.seqs("good-01") == sorted(expected)
    stored = {(h.name, s) for h in store.hosts() for s in store.seqs(h.name)}
    assert len(acked) >= MESSAGES // 2  # most were valid, if extreme: the test is not all refusals
    # Housekeeping may already have pruned what was stamped beyond retention.raw (1970): not those.
    kept_since = time.time() - 7 * 86400
    recent = {s.seq for s in map(decoded, sent.values()) if s is not None and s.ts >= kept_since}
    for seq in set(acked) & recent:  # whatever was acked is stored (under the seq the peer gave it)
        assert any(host.startswith("fuzz-") and s == seq for host, s in stored), seq
    for host in store.hosts():  # and every stored number is within its unit's range, at a sane time
        assert host.latest_ts is None or host.latest_ts <= time.time() + MAX_CLOCK_AHEAD
        for sample in store.samples(host.name, 0, wire.MAX_TS):
            assert sample.ts <= time.time() + MAX_CLOCK_AHEAD
            cpu, rx = sample.value("cpu.percent"), sample.value("net.rx_bps")
            assert cpu is None or 0 <= cpu <= 100
            assert rx is None or 0 <= rx <= wire.BOUNDS["net.rx_bps"][1]


@given(
    st.dictionaries(
        st.sampled_from(sorted(wire.METRICS)),
        st.one_of(
            st.floats(), st.integers(-(2**63), 2**64 - 1), st.none(), st.booleans(), st.text(max_size=3)
        ),
    ),
    st.lists(st.one_of(st.floats(), st.none(), st.integers(-(2**63), 2**64 - 1)), max_size=20),
)
@settings(max_examples=300, deadline=None)
def test_decoding_either_refuses_or_returns_numbers_within_their_range(metrics: dict, cores: list) -> None:
    raw = snapshot("h", 1, metrics=metrics, series={"cpu.core": cores})
    try:
        snap = wire.decode_snapshot(raw)
    except wire.WireError:
        return
    for name, value in snap.metrics.items():
        low, high = wire.BOUNDS[name]
        assert math.isfinite(value) and low <= value <= high
    assert all(c is None or 0 <= c <= 100 for c in snap.series.get("cpu.core", []))
    assert msgpack.unpackb(raw)["seq"] == snap.seq


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)
