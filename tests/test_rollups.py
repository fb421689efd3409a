"""Rollup tiers: they equal what the raw rows give, survive restarts and late data, and prune exactly."""

from __future__ import annotations

import random
import sqlite3
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgpack
import psycopg
import pytest

from collector import config as collector_config
from collector.ingest import Ingest
from collector.packing import Packer
from collector.samples import extract
from collector.store import Received, open_store
from collector.store.rollups import HOUR, MINUTE
from collector.store.schema import MIGRATIONS
from osmon import wire

T0 = 1_764_000_000.0  # a whole hour
MOUNTS = ("/", "/var")


def snapshot(
    host: str, seq: int, ts: float, rng: random.Random, mounts: tuple[str, ...] = MOUNTS
) -> Received:
    """A snapshot with moving numbers; now and then without rates, as after an agent restart."""
    cpu = rng.uniform(0, 100)
    probes: dict[str, Any] = {
        "cpu": {"percent": cpu, "per_core": [rng.uniform(0, 100) for _ in range(3)]},
        "memory": {"percent": rng.uniform(20, 90)},
        "filesystems": [{"mount": m, "percent": rng.uniform(10, 95)} for m in mounts],
    }
    if rng.random() > 0.1:
        nics = {
            nic: {"rx_bps": rng.uniform(0, 1e8), "tx_bps": rng.uniform(0, 1e6)} for nic in ("eth0", "eth1")
        }
        probes["net_io"] = {
            "rx_bps": sum(n["rx_bps"] for n in nics.values()),
            "tx_bps": 0.0,
            "interfaces": nics,
        }
    raw = wire.encode_snapshot(host, seq, ts, 7.0, "test", probes)
    return Received(extract(wire.decode_snapshot(raw)), raw, 7.0, ts + 0.3)


def expected(samples: list[Received], width: int) -> dict[float, dict[str, tuple]]:
    """Per period of `width` s: (min, avg, max) of cpu and rx_bps, each core's and each interface's max,
    at stored precision."""
    periods: dict[float, list[Received]] = defaultdict(list)
    for r in samples:
        periods[(r.sample.ts // width) * width].append(r)
    result = {}
    for t, group in periods.items():
        cpu = [round(r.sample.value("cpu.percent") * 100) for r in group]
        rx = [round(r.sample.value("net.rx_bps")) for r in group if r.sample.value("net.rx_bps") is not None]
        cores = [max(round(r.sample.detail["cpu.core"][i]) for r in group) for i in range(3)]
        nics = [r.sample.detail["net.io"] for r in group if r.sample.detail["net.io"]]
        eth1 = [max(round(n["eth1"][i]) for n in nics) for i in (0, 1)] if nics else None
        result[t] = {
            "cpu": (min(cpu) / 100, sum(cpu) / len(cpu) / 100, max(cpu) / 100),
            "rx_bps": (min(rx), sum(rx) / len(rx), max(rx)) if rx else (None, None, None),
            "cores": tuple(float(c) for c in cores),
            "eth1": eth1,
        }
    return result


def read_tier(store: Any, host: str, width: int, start: float, end: float) -> dict[float, dict[str, tuple]]:
    buckets = store.web_series(host, ["cpu", "rx_bps"], start, end, width)
    cores = {
        b.t: tuple(b.detail["cpu.core"]) for b in store.web_series_detail(host, "cpu.core", start, end, width)
    }
    nics = {
        b.t: b.detail["net.io"]["eth1"] for b in store.web_series_detail(host, "net.io", start, end, width)
    }
    return {
        b.t: {"cpu": b.stats[0], "rx_bps": b.stats[1], "cores": cores[b.t], "eth1": nics.get(b.t)}
        for b in buckets
    }


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for t in want:
        for key in ("cpu", "rx_bps", "cores", "eth1"):
            assert got[t][key] == pytest.approx(want[t][key], rel=1e-12, abs=1e-9), (t, key)


def test_rollups_equal_the_raw_rows_whatever_the_order_batches_and_restarts(tmp_path: Path) -> None:
    rng = random.Random(5)
    sent = {host: [snapshot(host, i + 1, T0 + i * 7.0, rng) for i in range(2000)] for host in ("a", "b")}
    # Arrival: mostly in order in uneven batches, some late resends of old data, some duplicates.
    arrivals = sent["a"] + sent["b"]
    rng.shuffle(arrivals)
    arrivals.sort(key=lambda r: r.sample.ts + (rng.uniform(0, 4000) if rng.random() < 0.05 else 0))
    arrivals += rng.sample(arrivals, 300)
    path = tmp_path / "osmon.db"
    store = open_store(path)
    i = 0
    while i < len(arrivals):
        size = rng.randint(1, 200)
        store.ingest(arrivals[i : i + size])
        i += size
        if rng.random() < 0.1:  # the writer restarts: its in-memory newest rows are gone
            store.close()
            store = open_store(path)
    end = T0 + 2000 * 7.0 + 3600
    for host, samples in sent.items():
        for tier in (MINUTE, HOUR):
            assert_same(read_tier(store, host, tier.width, T0, end), expected(samples, tier.width))
        # A chart bucket of several tier periods gives what the raw rows of the whole bucket give.
        assert_same(read_tier(store, host, 300, T0, end), expected(samples, 300))
        assert_same(read_tier(store, host, 7200, T0, end), expected(samples, 7200))


def test_a_rolled_back_batch_leaves_no_trace_in_the_rollups(tmp_path: Path) -> None:
    rng = random.Random(1)
    store = open_store(tmp_path / "osmon.db")
    first = [snapshot("a", i + 1, T0 + i * 7.0, rng) for i in range(5)]
    store.ingest(first)
    store.db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON samples WHEN NEW.seq = 7 BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    grown = (*MOUNTS, "/srv")  # a mount appears in the batch that fails: its list of names is rolled back too
    with pytest.raises(Exception, match="no"):
        store.ingest([snapshot("a", 6, T0 + 35.0, rng, grown), snapshot("a", 7, T0 + 42.0, rng, grown)])
    store.db.execute("DROP TRIGGER refuse")
    later = [snapshot("a", 8, T0 + 49.0, rng, grown)]
    store.ingest(later)
    assert_same(read_tier(store, "a", 60, T0, T0 + 3600), expected(first + later, 60))
    [stored] = store.samples("a", T0 + 49.0, T0 + 50.0)
    assert list(stored.detail["disk.percent"]) == list(grown)


def test_a_column_added_within_a_period_takes_its_first_values_there(tmp_path: Path) -> None:
    """A collector upgraded to a version storing a new number, while agents already send it: the
    current period's rows were stored without the column (a NULL sum), and fold its first values."""
    path = tmp_path / "osmon.db"
    rng = random.Random(2)
    store = open_store(path)
    store.ingest([snapshot("a", 1, T0 + 1.0, rng)])  # without processes.running
    store.close()
    db = sqlite3.connect(path)
    for tier in ("rollup_minute", "rollup_hour"):
        for stat in ("min", "sum", "max", "n"):
            db.execute(f"ALTER TABLE {tier} DROP COLUMN procs_running_{stat}")
    db.commit()
    db.close()
    store = open_store(path)  # adds the columns back, NULL in the rows stored
    for seq, running in ((2, 3), (3, 5)):
        raw = wire.encode_snapshot("a", seq, T0 + seq, 7.0, "test", {"processes": {"running": running}})
        store.ingest([Received(extract(wire.decode_snapshot(raw)), raw, 7.0, T0 + seq)])
    for tier in (MINUTE, HOUR):
        [bucket] = store.web_series("a", ["procs_running", "cpu"], T0, T0 + 3600, tier.width)
        assert bucket.stats[0] == (3.0, 4.0, 5.0)  # the two values it has, not an average over three
        assert bucket.stats[1][1] is not None


def test_mount_names_are_stored_once_per_list_and_read_back_in_order(tmp_path: Path) -> None:
    rng = random.Random(3)
    path = tmp_path / "osmon.db"
    store = open_store(path)
    docker = tuple(f"/var/lib/docker/overlay2/{i:064x}/merged" for i in range(3))
    sent = [snapshot("a", i + 1, T0 + i * 7.0, rng, (*MOUNTS, *docker[: i // 10])) for i in range(40)]
    store.ingest(sent[:25])
    store.close()
    store = open_store(path)  # the writer's cache of ids is gone: the stored lists are found again
    store.ingest(sent[25:])
    assert store.db.execute("SELECT count(*) FROM names").fetchone()[0] == 4
    reader = open_store(path, readonly=True)
    for want, got in zip(sent, reader.samples("a", 0, T0 + 3600), strict=True):
        assert got.detail["disk.percent"] == {
            m: round(v, 1) for m, v in want.sample.detail["disk.percent"].items()
        }
        assert list(got.detail["disk.percent"]) == list(want.sample.detail["disk.percent"])


def test_pruning_keeps_exactly_each_tiers_window(tmp_path: Path) -> None:
    rng = random.Random(2)
    store = open_store(tmp_path / "osmon.db")
    samples = [snapshot("a", i + 1, T0 + i * 170.0, rng) for i in range(1500)]  # about three days
    for i in range(0, len(samples), 500):
        store.ingest(samples[i : i + 500])
    now = T0 + 3 * 86400
    config = _config(tmp_path, raw="1d", minute="2d", hour="40d")
    ingest = Ingest(config, store, socket=None)  # type: ignore[arg-type]  # prune needs no socket
    for _ in range(20):  # PRUNE_BUDGET bounds each pass: call it like housekeeping does
        ingest.prune(now)
    end = now + 3600
    assert [s.ts for s in store.samples("a", 0, end)] == [
        s.sample.ts for s in samples if s.sample.ts >= now - 86400
    ]
    minutes = {b.t for b in store.web_series("a", ["cpu"], 0, end, 60)}
    assert minutes == {t for t in expected(samples, 60) if t >= now - 2 * 86400}
    hours = {b.t for b in store.web_series("a", ["cpu"], 0, end, 3600)}
    assert hours == set(expected(samples, 3600))  # 40 days: nothing is old enough
    assert store.prune_rollups("hour", now - 86400, limit=10) == 10  # and small batches are small


def test_the_packer_packs_closed_days_under_the_duty_and_every_tier_reads_the_same(
    tmp_path: Path, pg_url: str
) -> None:
    rng = random.Random(3)
    store = open_store(pg_url)
    samples = [snapshot("a", i + 1, T0 + i * 37.0, rng) for i in range(3000)]  # about 31 hours
    for i in range(0, len(samples), 500):
        store.ingest(samples[i : i + 500])
    end = T0 + 2 * 86400

    def seen() -> list:
        return [store.samples("a", 0, end)] + [
            (
                store.web_series("a", ["cpu", "rx_bps"], T0, end, w),
                store.web_series_details("a", ["net.io"], T0, end, w),
            )
            for w in (30, 60, 3600)
        ]

    before = seen()
    duty = False
    packer = Packer(store, active=lambda: duty)  # the thread's round, run here

    def packed() -> int:
        with psycopg.connect(pg_url) as db:
            return db.execute("SELECT count(*) FROM samples_packed").fetchone()[0]  # type: ignore[index]

    packer.round()
    assert packed() == 0  # another collector has the duty
    duty = True
    packer.round()
    assert packed() > 0 and store.pack(time.time()) == 0  # the round packed it all
    assert seen() == before
    store.close()


def test_each_hour_of_the_current_day_is_packed_once_closed_and_a_restart_replans_nothing(
    pg_url: str,
) -> None:
    H = 3600.0
    rng = random.Random(5)
    store = open_store(pg_url)
    store.ingest([snapshot("a", i + 1, T0 + i * 10.0, rng) for i in range(3 * 360)])  # 16:00 to 19:00
    end = T0 + 3 * H

    def seen() -> list:
        return [store.samples("a", 0, end)] + [
            (
                store.web_series("a", ["cpu"], T0, end, w),
                store.web_series_details("a", ["net.io"], T0, end, w),
            )
            for w in (10, 60, 900)
        ]

    def rows() -> dict[str, list]:
        with psycopg.connect(pg_url) as db:
            return {
                table: db.execute(f"SELECT {query} FROM {table} {rest}").fetchall()
                for table, query, rest in (
                    ("samples", "min(ts), count(*)", ""),
                    ("rollup_minute", "min(t), count(*)", ""),
                    ("samples_packed", "hour, cardinality(seq)", "ORDER BY hour"),
                    ("rollup_minute_packed", "hour, cardinality(t)", "ORDER BY hour"),
                )
            }

    before = seen()
    assert store.pack(T0 + H + 60) == 0  # 16:00-17:00 is over, but resends may still come
    while store.pack(T0 + 2 * H + 1800):  # 18:30: two hours closed, the third one open
        pass
    assert rows() == {
        "samples": [(T0 + 2 * H, 360)],
        "rollup_minute": [(T0 + 2 * H, 60)],
        "samples_packed": [(T0, 360), (T0 + H, 360)],
        "rollup_minute_packed": [(T0, 60), (T0 + H, 60)],
    }
    assert seen() == before
    store.close()
    store = open_store(pg_url)  # a restart: what is left is read from the rows, nothing done again
    assert store.pack(T0 + 2 * H + 1800) == 0
    store.close()


def _config(tmp_path: Path, raw: str, minute: str, hour: str) -> collector_config.CollectorConfig:
    path = tmp_path / "collector.toml"
    path.write_text(
        f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{tmp_path / "osmon.db"}"\n'
        f'[retention]\nraw = "{raw}"\nminute = "{minute}"\nhour = "{hour}"\n'
    )
    return collector_config.load(path)


def test_retention_tiers_must_not_be_shorter_than_finer_ones(tmp_path: Path) -> None:
    with pytest.raises(collector_config.ConfigError, match=r"retention.minute.*at least retention.raw"):
        _config(tmp_path, raw="30d", minute="7d", hour="2y")
    with pytest.raises(collector_config.ConfigError, match=r"retention.hour.*at least retention.minute"):
        _config(tmp_path, raw="1d", minute="90d", hour="60d")
    with pytest.raises(collector_config.ConfigError, match=r"retention\.raw"):
        _config(tmp_path, raw="10m", minute="1d", hour="60d")


def test_a_schema_4_database_is_compacted_and_rolled_up_on_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "osmon.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:4], start=1):
        conn.executescript(f"BEGIN; {script} PRAGMA user_version = {number}; COMMIT;")
    conn.execute(
        "INSERT INTO hosts (name, first_seen, last_seen, first_seq, last_seq, stored) VALUES ('old', 1, 2, 1, 3, 3)"
    )
    old_detail = msgpack.packb({"cpu.core": [12.5, 80.25], "disk.percent": {"/": 41.5}})
    for seq, cpu in ((1, 10.126), (2, 30.0), (3, None)):
        conn.execute(
            "INSERT INTO samples (host_id, seq, ts, cpu, rx_bps, detail) VALUES (1, ?, ?, ?, 1500.4, ?)",
            (seq, T0 + seq * 10, cpu, old_detail),
        )
    conn.close()
    store = open_store(path)
    assert [
        (s.seq, s.value("cpu.percent"), s.value("net.rx_bps")) for s in store.samples("old", 0, T0 + 3600)
    ] == [
        (1, 10.13, 1500.0),
        (2, 30.0, 1500.0),
        (3, None, 1500.0),
    ]
    assert store.samples("old", 0, T0 + 3600)[0].detail == {
        "cpu.core": [12.5, 80.25],
        "disk.percent": {"/": 41.5},
    }
    [minute] = store.web_series("old", ["cpu"], T0, T0 + 3600, 60)
    assert minute.stats[0] == pytest.approx((10.13, 20.065, 30.0))
    # Raw buckets still read the old details (per-core numbers are now read from the tiers at any
    # width: the samples above still hold them, as store.samples shows).
    mounts = store.web_series_detail("old", "disk.percent", T0, T0 + 60, 15)
    assert mounts[0].detail == {"disk.percent": {"/": 41.5}}
