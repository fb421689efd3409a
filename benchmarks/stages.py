"""Where the collector's CPU goes per snapshot, stage by stage, with references measured in the same run.

benchmarks/ingest.py measures the real `osmon-collector run` from outside. This runs the
same code in this process on the same messages: the real `Ingest.receive_batch` (receive,
decode and validate, extract, store with the rollup tiers, ack, detection) reading from an
in-process ZeroMQ socket, with a CPU timer (time.process_time: the kernel's accounting of
this process) around each stage. The timers sit on calls made once per batch or per
message of up to SEND_BATCH snapshots, never per snapshot, so they cost next to nothing;
the per-snapshot steps (decode and validate, compaction) are timed in loops of their own
over the same data.

References, timed in the same run on the same data, so the figures mean the same on a
faster or slower machine: `msgpack.unpackb` of each message (decoding only), and, for
SQLite, a bare `executemany` of the same stored rows into a table of the same shape.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import zmq

from agent.daemon import SEND_BATCH
from collector import config as collector_config
from collector import snapshots
from collector.detection import Detector
from collector.gctune import tune_garbage_collector
from collector.ingest import Ingest
from collector.store import open_store
from collector.store.compact import COLUMNS
from osmon import wire

# (label, what the stage covers), in the order of the path.
STAGES = (
    ("receive", "socket reads, message limits, byte budget (Ingest.read_message)"),
    ("decode+validate", "decode, every check of the wire format, numbers in column order (decode_received)"),
    ("extract", "the rest of Ingest.accept: clock and access checks"),
    ("dedup", "sequence bookkeeping, (host, seq) duplicates (_without_duplicates)"),
    ("compact", "scaled integers and detail blobs of the rows (_sample_rows)"),
    ("insert", "INSERT of the raw rows (_insert_samples)"),
    ("fold", "minute and hour rollup tiers (RollupWriter.fold)"),
    ("hosts", "hosts, gaps and latest snapshot rows (_update_hosts)"),
    ("begin/commit", "the transaction around it (the rest of store.ingest)"),
    ("ack", "acks encoded and sent (the rest of store_and_ack)"),
    ("detection", "thresholds on the stored batch (on_batch: Detector.process)"),
    ("loop", "the rest of receive_batch"),
)


class Timers:
    """CPU seconds per stage, from timers wrapped around methods of live objects."""

    def __init__(self) -> None:
        self.cpu: defaultdict[str, float] = defaultdict(float)

    def wrap(self, owner: object, method: str, stage: str) -> None:
        inner = getattr(owner, method)
        clock, cpu = time.process_time, self.cpu

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return inner(*args, **kwargs)
            finally:
                cpu[stage] += clock() - started

        setattr(owner, method, timed)


def messages(
    hosts: int, count: int, metrics: dict, series: dict, probes: bytes, prefix: str
) -> Iterator[tuple[int, bytes]]:
    """(agent index, snapshot) as the simulated agents send them: hosts in turn, seq from 1."""
    for n in range(count):
        i = n % hosts
        yield (
            i,
            wire.encode(
                {
                    "v": 1,
                    "host": f"{prefix}-{i:04d}",
                    "seq": n // hosts + 1,
                    "ts": time.time(),
                    "interval": 10.0,
                    "agent": "bench",
                    "metrics": metrics,
                    "series": series,
                    "probes": probes,
                }
            ),
        )


def profile(
    workdir: Path,
    probes: dict,
    database: str | None = None,
    hosts: int = 200,
    batches: int = 10,
    batch_size: int = 2000,
) -> dict[str, float]:
    """CPU seconds per snapshot of each stage, the in-process total and the references."""
    metrics, series = wire.metrics_from_probes(probes)
    blob = wire.encode(probes)
    prefix = f"stage{int(time.time()) % 100000}"  # a PostgreSQL database may hold an earlier run's hosts
    sent = list(messages(hosts, (batches + 1) * batch_size, metrics, series, blob, prefix))
    config_file = workdir / "stages.toml"
    config_file.write_text(
        f'listen = "tcp://127.0.0.1:1"\ndatabase = "{database or workdir / "stages.db"}"\n'
        f"batch_size = {batch_size}\npeer_rate = {2**40}\ncertfr.enabled = false\n"
    )
    config = collector_config.load(config_file)
    store: Any = open_store(config.database)
    detector = Detector(store, config.thresholds, config.down_after)
    context = zmq.Context()
    try:
        router = context.socket(zmq.ROUTER)
        router.setsockopt(zmq.RCVHWM, 0)
        router.bind("inproc://stages")
        dealers = []
        for _ in range(min(hosts, 200)):  # sockets, each sending for hosts in turn
            dealer = context.socket(zmq.DEALER)
            dealer.setsockopt(zmq.SNDHWM, 0)
            dealer.setsockopt(zmq.RCVHWM, 0)
            dealer.connect("inproc://stages")
            dealers.append(dealer)
        ingest = Ingest(config, store, router, on_batch=detector.process)
        tune_garbage_collector()  # as `osmon-collector run` does
        timers = Timers()
        for method, stage in (
            ("receive_batch", "batch"),
            ("read_message", "receive"),
            ("accept", "accept"),
            ("store_and_ack", "store_and_ack"),
            ("on_batch", "detection"),
        ):
            timers.wrap(ingest, method, stage)
        for method, stage in (
            ("ingest", "store"),
            ("_without_duplicates", "dedup"),
            ("_sample_rows", "compact"),
            ("_insert_samples", "insert"),
            ("_update_hosts", "hosts"),
        ):
            timers.wrap(store, method, stage)
        timers.wrap(store._rollups, "fold", "fold")
        if hasattr(store, "_create_partitions"):  # PostgreSQL: counted with the insert
            timers.wrap(store, "_create_partitions", "partitions")
        for b in range(batches + 1):
            if b == 1:  # the first batch creates the hosts and warms the caches: not counted
                timers.cpu.clear()
            chunk = sent[b * batch_size : (b + 1) * batch_size]
            per_agent: defaultdict[int, list[bytes]] = defaultdict(list)
            for i, data in chunk:
                per_agent[i % len(dealers)].append(data)
            for i, bodies in per_agent.items():
                for j in range(0, len(bodies), SEND_BATCH):
                    dealers[i].send_multipart(bodies[j : j + SEND_BATCH])
            stored = 0
            while stored < len(chunk):
                got = ingest.receive_batch()
                if not got:
                    time.sleep(0.001)  # inproc delivery is asynchronous; rarely needed
                stored += got
            for dealer in dealers:  # the acks, read and let go
                while dealer.poll(0):
                    dealer.recv()
        counted = [data for _, data in sent[batch_size:]]
        cpu = dict(timers.cpu)
        per = {k: v / len(counted) for k, v in cpu.items()}
        stage = {
            "receive": per["receive"],
            "dedup": per["dedup"],
            "compact": per["compact"],
            "insert": per["insert"] + per.get("partitions", 0.0),
            "fold": per["fold"],
            "hosts": per["hosts"],
        }
        stage["begin/commit"] = per["store"] - sum(
            per[k] for k in ("dedup", "compact", "insert", "fold", "hosts")
        )
        stage["begin/commit"] -= per.get("partitions", 0.0)
        stage["ack"] = per["store_and_ack"] - per["store"] - per["detection"]
        stage["detection"] = per["detection"]
        stage["loop"] = per["batch"] - per["receive"] - per["accept"] - per["store_and_ack"]
        # accept = decode and validate + the rest: split by timing the decoder alone over the same data.
        decode = _per_snapshot(counted, lambda data: snapshots.decode_received(data, 0.0))
        stage["decode+validate"] = decode
        stage["extract"] = per["accept"] - decode
        result = {name: stage[name] for name, _ in STAGES}
        result["total"] = per["batch"]
        result["unpackb"] = _per_snapshot(
            counted, lambda data: msgpack.unpackb(data, raw=False, strict_map_key=True)
        )
        if database is None:
            result["bare insert"] = _bare_insert(workdir / "bare.db", store, counted, batch_size)
    finally:
        context.destroy(linger=0)
        store.close()
    return result


def _per_snapshot(data: list[bytes], decode: Callable[[bytes], object]) -> float:
    """CPU seconds per call of `decode` over `data`, the best of three passes."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for d in data:
            decode(d)
        best = min(best, time.process_time() - started)
    return best / len(data)


def _bare_insert(path: Path, store: Any, data: list[bytes], batch_size: int) -> float:
    """CPU seconds per row of a bare executemany of the same stored rows into a table of the same
    shape (its index included), committed per batch with the store's settings."""
    rows = [row for row, _ in store._sample_rows([_received(d) for d in data])]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        f"CREATE TABLE bare (host_id INTEGER, seq INTEGER, ts REAL, {', '.join(COLUMNS)}, detail BLOB)"
    )
    db.execute("CREATE INDEX bare_host_ts ON bare (host_id, ts)")
    insert = f"INSERT INTO bare VALUES ({', '.join('?' * (len(COLUMNS) + 4))})"
    started = time.process_time()
    for i in range(0, len(rows), batch_size):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(insert, rows[i : i + batch_size])
        db.execute("COMMIT")
    spent = time.process_time() - started
    db.close()
    return spent / len(rows)


def _received(data: bytes) -> Any:
    from collector.samples import extract
    from collector.store import Received

    snapshot = wire.decode_snapshot(data)
    return Received(extract(snapshot), data, snapshot.interval, time.time(), snapshot.epoch)


def report(result: dict[str, float], end_to_end: float | None) -> None:
    """One line per stage (us per snapshot, share of the in-process total), then the references."""
    total = result["total"]
    print(f"ingest stages (in process, CPU per snapshot, same messages): total {total * 1e6:.1f} us")
    for name, what in STAGES:
        value = result[name]
        print(f"ingest stage {name:>15}: {value * 1e6:6.1f} us  {value / total * 100:4.0f} %  {what}")
    if end_to_end is not None:
        rest = end_to_end - total
        print(
            f"ingest stage {'outside':>15}: {rest * 1e6:6.1f} us  (end-to-end minus in-process: "
            "ZeroMQ's I/O thread, TCP, polling, housekeeping; within the noise of two runs, "
            "so it can come out below 0)"
        )
    unpackb = result["unpackb"]
    print(f"ingest reference msgpack.unpackb: {unpackb * 1e6:.1f} us per snapshot")
    if end_to_end is not None:
        print(f"ingest ratio end-to-end / unpackb: {end_to_end / unpackb:.1f} (target <= 6)")
        # Detection's cost depends on how many alerts fire or are pending (all hosts here send
        # the same snapshot: one level crossed is crossed by every host); the rest does not.
        rest = end_to_end - result["detection"]
        print(
            f"ingest collector cpu without detection: {rest * 1e6:.1f} us per snapshot "
            f"({1 / rest:.0f} snapshots/s on one core), ratio to unpackb {rest / unpackb:.1f}"
        )
    print(f"ingest ratio in-process / unpackb: {total / unpackb:.1f}")
    if "bare insert" in result:
        bare = result["bare insert"]
        stored = sum(result[k] for k in ("dedup", "compact", "insert", "fold", "hosts", "begin/commit"))
        print(
            f"ingest reference SQLite bare insert: {bare * 1e6:.1f} us per row; "
            f"store.ingest {stored * 1e6:.1f} us, ratio {stored / bare:.1f}"
        )
