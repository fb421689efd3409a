"""The collector's ingest loop against real ZeroMQ peers: acks, bad input, oversized messages."""

from __future__ import annotations

import math
import sqlite3
import time

import msgpack
import pytest
import zmq

from collector.ingest import PeerLog
from collector.store import open_store
from osmon import wire
from tests.conftest import BIN, Cluster, wait_for


def snapshot(host: str, seq: int, **changes: object) -> bytes:
    raw = wire.encode_snapshot(
        host, seq, time.time(), 10.0, "test", {"cpu": {"percent": 5.0}, "memory": {"percent": 40.0}}
    )
    return wire.encode({**msgpack.unpackb(raw), **changes})


class Peer:
    """A raw DEALER, as an agent (or an attacker) would open."""

    def __init__(self, context: zmq.Context, port: int) -> None:
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(f"tcp://127.0.0.1:{port}")

    def send(self, *frames: bytes) -> None:
        self.socket.send_multipart(list(frames))

    def acks(self, timeout: float) -> list[int]:
        seqs: list[int] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and self.socket.poll(left * 1000):
            seqs.extend(wire.decode_ack(self.socket.recv()))
        return seqs

    def wait_acks(self, expected: set[int], timeout: float = 10.0) -> set[int]:
        got: set[int] = set()
        deadline = time.monotonic() + timeout
        while not expected <= got and time.monotonic() < deadline:
            got.update(self.acks(0.2))
        return got


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def test_valid_snapshots_are_acked_after_they_are_stored(cluster: Cluster, context: zmq.Context) -> None:
    collector = cluster.collector()
    peer = Peer(context, cluster.port)
    for seq in (1, 2, 3):
        peer.send(snapshot("web-01", seq))
    assert peer.wait_acks({1, 2, 3}) >= {1, 2, 3}
    assert open_store(cluster.dir / "osmon.db", readonly=True).seqs("web-01") == [1, 2, 3]
    peer.send(snapshot("web-01", 2))  # a resend: acked again, stored once
    assert peer.wait_acks({2}) == {2}
    collector.terminate()
    assert open_store(cluster.dir / "osmon.db", readonly=True).seqs("web-01") == [1, 2, 3]


def test_nothing_is_acked_while_storage_cannot_commit(cluster: Cluster, context: zmq.Context) -> None:
    collector = cluster.collector()
    peer = Peer(context, cluster.port)
    peer.send(snapshot("web-01", 1))
    assert peer.wait_acks({1}) == {1}

    blocker = sqlite3.connect(cluster.dir / "osmon.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # e.g. a backup or an admin holding the write lock
    peer.send(snapshot("web-01", 2))
    assert peer.acks(timeout=1.5) == []  # not committed, so not acked
    blocker.execute("COMMIT")
    blocker.close()
    assert peer.wait_acks({2}) == {2}
    collector.terminate()
    assert open_store(cluster.dir / "osmon.db", readonly=True).seqs("web-01") == [1, 2]


BAD_MESSAGES = [
    b"\xc1\xc1\xc1",  # not msgpack
    msgpack.packb([1, 2, 3]),  # not a map
    msgpack.packb({"v": 1, "host": "x", "seq": 1}),  # missing ts and probes
    msgpack.packb({"v": 1, "host": "x", "seq": "one", "ts": 1.0, "probes": {}}),  # wrong type
    snapshot("web-02", 1, metrics={"mem.percent": math.nan}),  # NaN
    snapshot("web-02", 2, metrics={"cpu.percent": math.inf}),  # infinity
    snapshot("<img src=x onerror=alert(1)>", 1),
    snapshot("../../etc/passwd", 1),
    b"",
]


def test_bad_messages_are_dropped_counted_and_logged_without_flooding(
    cluster: Cluster, context: zmq.Context
) -> None:
    collector = cluster.collector()
    good, bad = Peer(context, cluster.port), Peer(context, cluster.port)
    for round_ in range(20):
        for message in BAD_MESSAGES:
            bad.send(message)
        bad.send(b"two", b"frames")  # two bad snapshots in one message
        good.send(snapshot("web-01", round_ + 1))
    assert good.wait_acks(set(range(1, 21))) == set(range(1, 21))
    assert bad.acks(0.5) == []
    assert collector.alive()
    assert collector.terminate() == 0

    store = open_store(cluster.dir / "osmon.db", readonly=True)
    assert store.seqs("web-01") == list(range(1, 21))
    assert [h.name for h in store.hosts()] == ["web-01"]  # nothing of the bad peer was stored
    counters = store.counters()
    assert counters["rejected"] == 20 * (len(BAD_MESSAGES) + 2)
    assert counters["stored"] == 20
    # One report for the bad peer, not 200 lines.
    assert collector.output().count("dropped a message from") == 1


def test_a_message_may_carry_many_snapshots_and_each_is_judged_alone(
    cluster: Cluster, context: zmq.Context
) -> None:
    collector = cluster.collector()
    peer = Peer(context, cluster.port)
    peer.send(snapshot("web-01", 1), b"garbage", snapshot("web-01", 2), snapshot("web-01", 1))
    assert peer.wait_acks({1, 2}) >= {1, 2}
    peer.send(*[snapshot("web-01", 3)] * 1001)  # more frames than any agent sends: refused whole
    peer.send(snapshot("web-01", 4))
    assert peer.wait_acks({4}) == {4}
    collector.terminate()
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    assert store.seqs("web-01") == [1, 2, 4]
    assert store.counters()["rejected"] == 1 + 1001


def test_an_oversized_message_costs_only_its_sender(cluster: Cluster, context: zmq.Context) -> None:
    cluster.write_collector_config('max_message_size = "64KiB"')
    collector = cluster.collector()
    good, big = Peer(context, cluster.port), Peer(context, cluster.port)
    good.send(snapshot("web-01", 1))
    assert good.wait_acks({1}) == {1}
    big.send(snapshot("web-02", 1, blob="A" * (8 * 1024 * 1024)))  # 8 MiB
    big.send(snapshot("web-02", 2))
    for seq in range(2, 12):
        good.send(snapshot("web-01", seq))
    assert good.wait_acks(set(range(2, 12))) == set(range(2, 12))
    assert collector.alive()
    collector.terminate()
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    assert store.seqs("web-01") == list(range(1, 12))
    assert 1 not in store.seqs("web-02")  # the oversized one never got in


def test_peer_log_reports_once_per_period_with_the_count_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = PeerLog(period=60, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="osmon.ingest"):
        for _ in range(5):
            log.bad("10.0.0.9", "not msgpack")
        log.bad("10.0.0.8", "not msgpack")
        now[0] = 61
        log.bad("10.0.0.9", "not msgpack")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[2] == "dropped a message from 10.0.0.9: not msgpack (4 more since the last report)"


def test_a_collector_that_cannot_bind_says_why(cluster: Cluster) -> None:
    first = cluster.collector()
    wait_for(lambda: (cluster.dir / "osmon.db").exists(), what="first collector")
    time.sleep(0.3)
    # Its own database: a second `run` on the same one is refused earlier, by the database lock.
    other = cluster.dir / "other.toml"
    other.write_text(cluster.collector_config.read_text().replace("osmon.db", "other.db"))
    second = cluster.start([str(BIN / "osmon-collector"), "run", "--config", str(other)], "second")
    assert second.proc.wait(10) == 2
    output = second.output()
    assert "listen" in output and "Address already in use" in output and "Traceback" not in output
    first.terminate()
