"""SQLite storage: dedupe on (host, seq), migrations, gaps, retention, WAL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from collector.samples import extract
from collector.store import Received, StoreError, open_store
from collector.store.schema import MIGRATIONS
from osmon import wire

T0 = 1_764_000_000.0


def received(host: str, seq: int, ts: float | None = None, cpu: float = 10.0) -> Received:
    probes = {
        "cpu": {"percent": cpu, "per_core": [cpu, cpu]},
        "memory": {"percent": 50.0},
        "filesystems": [{"mount": "/", "percent": 70.0}],
    }
    raw = wire.encode_snapshot(host, seq, ts or T0 + seq, 10.0, "test", probes)
    return Received(extract(wire.decode_snapshot(raw)), raw, 10.0, T0 + seq + 0.5)


def test_each_host_seq_is_stored_once(tmp_path: Path) -> None:
    store = open_store(tmp_path / "osmon.db")
    first = store.ingest([received("a", 1), received("a", 2), received("b", 1)])
    assert len(first.fresh) == 3 and first.duplicates == 0
    again = store.ingest([received("a", 2), received("a", 3), received("a", 3)])
    assert [r.sample.seq for r in again.fresh] == [3]
    assert again.duplicates == 2
    assert store.seqs("a") == [1, 2, 3] and store.seqs("b") == [1]


def test_hosts_report_counts_and_gaps(tmp_path: Path) -> None:
    store = open_store(tmp_path / "osmon.db")
    store.ingest([received("a", s) for s in (1, 2, 5, 6, 9)])
    [host] = store.hosts()
    assert (host.name, host.snapshots, host.first_seq, host.last_seq) == ("a", 5, 1, 9)
    assert host.missing == [(3, 4), (7, 8)]
    assert host.interval == 10.0
    assert host.last_seen == T0 + 9.5


def test_latest_snapshot_is_the_highest_seq_even_when_older_ones_arrive_late(tmp_path: Path) -> None:
    store = open_store(tmp_path / "osmon.db")
    newest = received("a", 10, cpu=99.0)
    store.ingest([newest])
    store.ingest([received("a", 3, cpu=1.0)])  # a resend from the spool, after an outage
    assert store.web_host("a").snapshot == newest.raw


def test_samples_read_back_exactly(tmp_path: Path) -> None:
    store = open_store(tmp_path / "osmon.db")
    store.ingest([received("a", s, cpu=float(s)) for s in range(1, 6)])
    samples = store.samples("a", T0 + 2, T0 + 5)
    assert [
        (s.seq, s.value("cpu.percent"), s.value("mem.percent"), s.value("disk.max")) for s in samples
    ] == [
        (2, 2.0, 50.0, 70.0),
        (3, 3.0, 50.0, 70.0),
        (4, 4.0, 50.0, 70.0),
    ]
    # Per-core and per-device numbers are kept by the rollups only (collector.store.compact.RAW_DETAIL).
    assert samples[0].detail == {"disk.percent": {"/": 70.0}}


def test_prune_deletes_only_what_is_older_than_the_cutoff(tmp_path: Path) -> None:
    store = open_store(tmp_path / "osmon.db")
    store.ingest([received(h, s) for h in ("a", "b") for s in range(1, 101)])
    deleted = 0
    while (n := store.prune(T0 + 41, limit=7)) > 0:
        assert n <= 7  # small batches
        deleted += n
    assert deleted == 80
    assert store.seqs("a") == list(range(41, 101)) and store.seqs("b") == list(range(41, 101))
    a = store.hosts()[0]
    assert (a.first_seq, a.last_seq, a.snapshots, a.missing) == (41, 100, 60, [])


def test_bookkeeping_survives_a_restart_of_the_writer(tmp_path: Path) -> None:
    """A new process (collector restart) still recognises what is stored and what is missing."""
    open_store(tmp_path / "osmon.db").ingest([received("a", s) for s in (1, 2, 5)])
    store = open_store(tmp_path / "osmon.db")
    result = store.ingest([received("a", s) for s in (2, 3, 5, 6)])
    assert sorted(r.sample.seq for r in result.fresh) == [3, 6]
    [host] = store.hosts()
    assert (host.snapshots, host.missing) == (5, [(4, 4)])
    assert store.seqs("a") == [1, 2, 3, 5, 6]


def test_database_is_in_wal_mode_and_migrated(tmp_path: Path) -> None:
    open_store(tmp_path / "osmon.db").ingest([received("a", 1)])
    conn = sqlite3.connect(tmp_path / "osmon.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_reopening_keeps_data_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "osmon.db"
    open_store(path).ingest([received("a", 1)])
    assert open_store(path).seqs("a") == [1]
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        open_store(path)
    with pytest.raises(StoreError, match="newer"):
        open_store(path, readonly=True)


def test_reading_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nope.db", readonly=True)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "osmon.db"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreError):
        open_store(path)


def test_counters_accumulate(tmp_path: Path) -> None:
    store = open_store(tmp_path / "osmon.db")
    store.add_counters({"received": 3, "rejected": 1, "stored": 0})
    store.add_counters({"received": 2})
    assert store.counters() == {"received": 5, "rejected": 1}


def test_status_lists_missing_numbers_but_never_expands_a_huge_gap(tmp_path: Path) -> None:
    from collector import status

    store = open_store(tmp_path / "osmon.db")
    store.ingest(
        [received("a", 1), received("a", 3), received("a", 2**62, ts=T0 + 4)._replace(received=T0 + 5)]
    )
    [row] = status.rows(store.hosts(), down_after=3, now=T0)
    assert row["missing"][:3] == [2, 4, 5]
    assert len(row["missing"]) == status.MAX_LISTED and row["missing_truncated"]
    assert row["missing_count"] == 2**62 - 3
    assert "…" in status.table([row])


def test_an_older_schema_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "osmon.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(f"BEGIN; {MIGRATIONS[0]} PRAGMA user_version = 1; COMMIT;")
    conn.execute(
        "INSERT INTO hosts (name, first_seen, last_seen, first_seq, last_seq, stored) VALUES ('old', 1, 2, 1, 1, 1)"
    )
    conn.execute("INSERT INTO samples (host_id, seq, ts, cpu) VALUES (1, 1, 1.0, 55.0)")
    conn.close()
    store = open_store(path)
    assert store.schema_version() == len(MIGRATIONS)
    assert store.seqs("old") == [1]
    assert store.hosts()[0].snapshots == 1


def test_pruning_after_an_agent_clock_step_never_lets_a_resend_be_stored_twice(tmp_path: Path) -> None:
    store = open_store(tmp_path / "osmon.db")
    store.ingest([received("a", s) for s in range(1, 6)] + [received("a", 6, ts=T0 - 10 * 86400)])
    assert store.prune(T0 - 86400) == 1  # only seq 6, whose clock said ten days ago
    store.ingest([received("a", 3)])  # a late resend
    assert store.seqs("a") == [1, 2, 3, 4, 5]
    [host] = store.hosts()
    assert (host.first_seq, host.last_seq, host.snapshots) == (1, 5, 5)


def test_every_store_method_reports_database_trouble_as_store_error(tmp_path: Path) -> None:
    store = open_store(tmp_path / "osmon.db")
    store.db.execute("DROP TABLE alerts")
    with pytest.raises(StoreError, match="no such table"):
        store.alerts_active()
    with pytest.raises(StoreError):
        store.alerts_apply([], [("a", "mem.percent", 1.0, 1.0, 1.0)])


def test_a_metric_new_to_the_catalog_gets_its_columns_when_the_writer_opens(tmp_path: Path) -> None:
    """A database of a version without `processes.running`: readers say what to do, the writer upgrades."""
    path = tmp_path / "osmon.db"
    store = open_store(path)
    store.ingest([received("a", 1)])
    store.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE samples DROP COLUMN procs_running")
    for tier in ("rollup_minute", "rollup_hour"):
        for stat in ("min", "sum", "max", "n"):
            db.execute(f"ALTER TABLE {tier} DROP COLUMN procs_running_{stat}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="start `osmon-collector run` once"):
        open_store(path, readonly=True)
    store = open_store(path)  # the writer adds the columns, keeping every row
    store.ingest([received("a", 2)])
    assert store.seqs("a") == [1, 2]
    reader = open_store(path, readonly=True)
    assert [s.value("processes.running") for s in reader.samples("a", 0, T0 + 10)] == [None, None]
