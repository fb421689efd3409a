"""The SQLite backend: the writer's ingest and retention; its parts (alerts, outbox, CERT-FR, web reads,
tokens, backup) are the mixins beside it, and the sequence bookkeeping is shared with PostgreSQL.

One writer (the `run` process) commits a batch per transaction; readers
(`status`, the dashboard) use their own connections, which WAL mode lets run
beside the writer without blocking it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

from collector.store.alerts import AlertQueries
from collector.store.backup import BackupQueries
from collector.store.certfr import CertfrQueries
from collector.store.compact import (
    COLUMNS,
)
from collector.store.outbox import OutboxQueries
from collector.store.records import IngestResult, Received, StoreError
from collector.store.rollups import TIERS_BY_NAME, RollupWriter
from collector.store.schema import METRIC_TABLES, MIGRATIONS, catalog_columns
from collector.store.sequences import SequenceBook
from collector.store.sqlite_errors import translate_errors, translated
from collector.store.summaries import SummaryWriter
from collector.store.tokens import TokenQueries
from collector.store.web import WebQueries

log = logging.getLogger("osmon.store")

WAL_SIZE_LIMIT = 64 * 2**20  # bytes

_INSERT_SAMPLE = "INSERT INTO samples (host_id, seq, ts, {cols}, detail) VALUES (?, ?, ?, {marks}, ?)".format(
    cols=", ".join(COLUMNS), marks=", ".join("?" * len(COLUMNS))
)


def _index_key(row: tuple[Any, ...]) -> tuple[int, float]:
    """(host_id, ts) of a samples row: the key of samples_host_ts."""
    return row[0], row[2]


@translate_errors
class SQLiteStore(
    SequenceBook,
    SummaryWriter,
    AlertQueries,
    OutboxQueries,
    CertfrQueries,
    WebQueries,
    BackupQueries,
    TokenQueries,
):
    """Storage in one SQLite file in WAL mode."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._init_book()
        self._rollups = RollupWriter()
        if not readonly:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot open database {self.path}: {e}") from None
            self._migrate()
        elif not Path(self.path).exists():
            raise StoreError(f"database {self.path} does not exist (has the collector run yet?)")
        elif (version := self.schema_version()) > len(MIGRATIONS):
            raise StoreError(f"database {self.path} has a newer schema than this version understands")
        elif version == 0:
            raise StoreError(f"database {self.path} holds no osMonitoring data (has the collector run yet?)")
        elif version < len(MIGRATIONS):
            raise StoreError(
                f"database {self.path} has schema {version}, older than this version's {len(MIGRATIONS)}: "
                "start `osmon-collector run` once to upgrade it"
            )
        else:
            self._check_columns()

    # -- connections -------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections must stay in their thread)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with translated(self.path, "open database"):
                conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: what is committed is acked, and acked snapshots leave the agents'
                # spools, so a commit must survive a power loss (one fsync per batch).
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                # A reader holding a snapshot (a backup) lets the WAL grow; once checkpointed,
                # it shrinks back to this instead of keeping its high-water size on disk.
                conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.schema_version()
        if version > len(MIGRATIONS):
            raise StoreError(
                f"database {self.path} has schema {version}, newer than this version's {len(MIGRATIONS)}"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits first; the BEGIN makes each migration atomic.
            self.db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        if added := catalog_columns(self._table_columns()):
            self.db.executescript("BEGIN;\n" + ";\n".join(added) + ";\nCOMMIT;")

    def _table_columns(self) -> dict[str, set[str]]:
        """{table: its column names} of the tables that hold a column per metric."""
        return {
            table: {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            for table in METRIC_TABLES
        }

    def _check_columns(self) -> None:
        """A reader's check: every metric of this version has its columns (`run` adds them)."""
        if catalog_columns(self._table_columns()):
            raise StoreError(
                f"database {self.path} lacks the columns of metrics this version stores: "
                "start `osmon-collector run` once to add them"
            )

    # -- ingest --------------------------------------------------------------

    def ingest(self, batch: list[Received]) -> IngestResult:
        """Store a batch in one transaction; duplicates of stored (host, seq) are skipped."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            fresh, touched = self._without_duplicates(batch)
            rows = self._sample_rows(fresh)
            self._insert_samples([row for row, _ in rows])
            self._rollups.fold(db, ((row[0], row[2], row[3:-1], detail) for row, detail in rows))
            self._update_hosts(batch, fresh, touched)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            # In-memory state may describe the rolled-back transaction: reload it.
            self._forget_book()
            self._rollups.forget()
            raise
        return IngestResult(fresh=fresh, duplicates=len(batch) - len(fresh))

    def _insert_samples(self, rows: list[tuple[Any, ...]]) -> None:
        # Sorted by the index key, inserts touch each index page once per batch. By the key
        # alone: two rows may share it (a sequence reset within a batch, clamped clocks), and
        # comparing the rest of them compared None with numbers (a TypeError the fuzz test found).
        ordered: list[tuple[Any, ...]] = sorted(rows, key=_index_key)
        self.db.executemany(_INSERT_SAMPLE, ordered)

    def _update_hosts(self, batch: list[Received], fresh: list[Received], touched: dict[int, list]) -> None:
        """One UPDATE per host of the batch (last seen, sequence bookkeeping), then the latest snapshots."""
        rows, newest = self._host_updates(batch, fresh, touched)
        self.db.executemany(
            "UPDATE hosts SET last_seen = MAX(last_seen, ?), first_seq = ?, last_seq = ?, "
            "stored = stored + ?, interval = COALESCE(?, interval), "
            "latest_seq = COALESCE(?, latest_seq), latest_ts = COALESCE(?, latest_ts) WHERE id = ?",
            rows,
        )
        self.db.executemany(
            "INSERT INTO latest (host_id, snapshot) VALUES (?, ?) "
            "ON CONFLICT(host_id) DO UPDATE SET snapshot = excluded.snapshot",
            [(host_id, r.raw) for host_id, r in newest.items()],
        )
        self._save_summaries(newest)

    def add_counters(self, increments: dict[str, int]) -> None:
        """Add to the collector's persistent self-metrics (snapshots received, rejected ...)."""
        self.db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            [(k, v) for k, v in increments.items() if v],
        )

    def counters(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, value FROM counters").fetchall())

    def database_size(self) -> int:
        """Bytes the database takes in its file (pages in use and free; the WAL not counted)."""
        return self.db.execute(
            "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size"
        ).fetchone()[0]

    # -- retention ---------------------------------------------------------------

    def prune(self, before: float, limit: int = 2000) -> int:
        """Delete up to `limit` samples older than `before`; small transactions keep ingest flowing."""
        deleted = 0
        for host_id in self._hosts_with_older("samples", "ts", before):
            if deleted >= limit:
                break
            self.db.execute("BEGIN IMMEDIATE")
            try:
                seqs = [
                    seq
                    for (seq,) in self.db.execute(
                        "DELETE FROM samples WHERE rowid IN (SELECT rowid FROM samples "
                        "WHERE host_id = ? AND ts < ? ORDER BY ts LIMIT ?) RETURNING seq",
                        (host_id, before, limit - deleted),
                    )
                ]
                if seqs:
                    self._forget(host_id, seqs)
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                self._ranges.clear()
                raise
            deleted += len(seqs)
        return deleted

    def pack(self, now: float, limit: int = 100) -> int:
        """Nothing to pack: SQLite stores a row's integers in 1 to 8 bytes each already (PostgreSQL packs
        closed hours, collector.store.pg_packed)."""
        return 0

    def prune_rollups(self, tier: str, before: float, limit: int = 2000) -> int:
        """Delete up to `limit` rows of tier `tier` ("minute", "hour") for periods starting before `before`."""
        table = TIERS_BY_NAME[tier].table  # KeyError for an unknown tier: a programming error
        deleted = 0
        for host_id in self._hosts_with_older(table, "t", before):
            if deleted >= limit:
                break
            deleted += self.db.execute(  # one statement: its own small transaction
                f"DELETE FROM {table} WHERE host_id = ? AND t IN "
                f"(SELECT t FROM {table} WHERE host_id = ? AND t < ? ORDER BY t LIMIT ?)",
                (host_id, host_id, before, limit - deleted),
            ).rowcount
        return deleted

    def _hosts_with_older(self, table: str, time: str, before: float) -> list[int]:
        """Hosts that have rows in `table` older than `before`: one index seek per host, no scan."""
        return [
            host_id
            for (host_id,) in self.db.execute(
                f"SELECT id FROM hosts WHERE (SELECT MIN({time}) FROM {table} WHERE host_id = hosts.id) < ?",
                (before,),
            )
        ]

    def _forget(self, host_id: int, seqs: list[int]) -> None:
        """Bookkeeping after pruning: exactly these sequence numbers are gone.

        Usually the oldest ones; after an agent's clock stepped back, others too,
        which become gaps, so a late resend of one is still known as stored.
        """
        ranges = self._seq_ranges(host_id)
        before = [g[:] for g in ranges.gaps]
        ranges.discard(seqs)
        self.db.execute(
            "UPDATE hosts SET first_seq = ?, last_seq = ?, stored = MAX(0, stored - ?) WHERE id = ?",
            (ranges.first, ranges.last, len(seqs), host_id),
        )
        self._save_gaps(host_id, ranges, before)
