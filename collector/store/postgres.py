"""The PostgreSQL backend: the same contract as collector.store.sqlite, built for a database server.

Every public method is one transaction on a connection of its thread (`_call`):
the writer (`run`) keeps one connection per thread, and a broken one is
dropped and opened again at the next call, so a database that went away and
came back is used again without a restart; readers opened with
`readonly=True` (the dashboard, `status`) borrow connections from a small
psycopg_pool pool. Under MVCC a reader never blocks the writer.

Ingest sends a batch's raw rows by binary COPY into a temporary table, then
`INSERT ... ON CONFLICT DO NOTHING RETURNING`: only the rows the database
actually inserted are folded into the rollup tiers (collector.store.pg_rollups)
and reported fresh, so a resend never counts twice; the batch commits once,
and `ingest` returns (so the collector acks) only after that commit.
"""

from __future__ import annotations

import calendar
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from collector.samples import Sample
from collector.store import pg_schema
from collector.store.compact import COLUMNS, unpack_detail, unpack_value
from collector.store.pg_alerts import PgAlertQueries
from collector.store.pg_base import one
from collector.store.pg_certfr import PgCertfrQueries
from collector.store.pg_errors import error, message, translate_errors, translated
from collector.store.pg_outbox import PgOutboxQueries
from collector.store.pg_packed import PgPacking, readable
from collector.store.pg_rollups import PgRollupWriter
from collector.store.pg_schema import DAY, HOUR, MIGRATIONS, PACKED, day_of, partition_ddl, partition_name
from collector.store.pg_tokens import PgTokenQueries
from collector.store.pg_url import mask
from collector.store.pg_web import PgWebQueries
from collector.store.records import IngestResult, Leases, Received, StoreError, StoreUnreachable
from collector.store.seqranges import SeqRanges
from collector.store.sequences import SequenceBook
from collector.store.summaries import SummaryWriter

CONNECT_TIMEOUT = 5  # seconds: an unreachable server is reported, not waited for
POOL_SIZE = 4  # the dashboard's connections at most (waitress serves with 4 threads)
STATEMENT_TIMEOUT = "30s"  # for readers: no dashboard query may run away
AHEAD = 2  # days of partitions created ahead of today
# The writer never waits inside a transaction: one that froze (SIGSTOP, a paused VM) is cut off,
# its locks released. Generous: a batch on a starved machine computes for seconds between statements.
IDLE_IN_TRANSACTION = "60s"
LEASE_LOCK_WAIT = "2s"  # how long taking leases waits for a row another collector's write holds

_RAW = ("host_id", "seq", "ts", *COLUMNS, "detail")
_HOST = "= (SELECT id FROM hosts WHERE name = %(host)s)"  # a host by name, for `readable`
_FOREVER = 2.0**62  # a bound past any timestamp


def read_password(password_file: str | Path | None) -> str | None:
    """The password in `password_file` (first line), or None to let libpq find one (PGPASSFILE, ~/.pgpass)."""
    if password_file is None:
        return None
    try:
        lines = Path(password_file).read_text().splitlines()
    except OSError as e:
        raise StoreError(f"cannot read the database password file {password_file}: {e.strerror}") from None
    return lines[0].strip() if lines else ""


@translate_errors
class PostgresStore(
    SequenceBook,
    SummaryWriter,
    PgAlertQueries,
    PgOutboxQueries,
    PgCertfrQueries,
    PgWebQueries,
    PgTokenQueries,
    PgPacking,
):
    """Storage in a PostgreSQL database."""

    prune_granularity = float(DAY)  # retention drops whole day partitions
    PARAM = "%s"  # psycopg's placeholder, for the shared sequence bookkeeping and leases
    NOW = "extract(epoch from clock_timestamp())"  # the database's clock: the one lease expiry follows
    LOCK_LEASES = " FOR SHARE"  # a lease checked by a write cannot change owner before it commits

    def __init__(
        self,
        url: str,
        readonly: bool = False,
        password_file: str | Path | None = None,
        application_name: str = "osmon-collector",
    ) -> None:
        self.url = url
        self.path = mask(url)  # what messages name
        self._connect_args: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": application_name,
        }
        if (password := read_password(password_file)) is not None:
            self._connect_args["password"] = password
        if not readonly:
            # A writer frozen (SIGSTOP) inside a transaction would hold the leases its writes checked:
            # the server ends such a session, so another collector can take them over.
            self._connect_args["options"] = f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION}"
        self._local = threading.local()
        self._pool: ConnectionPool | None = None
        self._init_book()
        self._rollups = PgRollupWriter()
        self._init_packing()
        self._days: set[int] = set()  # days whose partitions exist
        self._writes: dict[int, int] = {}  # host id -> hosts.writes after this writer's last write
        self._ahead_done = 0
        with self._connect() as conn:
            if readonly:
                self._check_schema(conn)
            else:
                self._migrate(conn)
        if readonly:
            self._pool = ConnectionPool(
                url,
                min_size=1,
                max_size=POOL_SIZE,
                kwargs={**self._connect_args, "options": f"-c statement_timeout={STATEMENT_TIMEOUT}"},
                open=True,
                name="osmon-web",
            )

    # -- connections and transactions ----------------------------------------------

    def _connect(self, autocommit: bool = False) -> psycopg.Connection:
        """A new connection to the database (the caller closes it)."""
        return psycopg.connect(self.url, autocommit=autocommit, **self._connect_args)

    def _call(self, doing: str, method: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """Run a public method in one transaction of this thread's connection; errors become StoreError."""
        local = self._local
        if getattr(local, "conn", None) is not None:  # a method calling another: same transaction
            return method(self, *args, **kwargs)
        try:
            conn = self._checkout()
        except (psycopg.Error, PoolTimeout, OSError) as e:
            raise StoreUnreachable(message(self.url, "connect to database", e)) from None
        local.conn = conn
        try:
            conn.read_only = getattr(local, "read_only", False)
            result = method(self, *args, **kwargs)
            conn.commit()
            return result
        except psycopg.Error as e:
            self._failed(conn)
            raise error(self.url, doing, e) from None
        except BaseException:
            self._failed(conn)
            raise
        finally:
            local.conn = None
            if self._pool is not None:
                self._pool.putconn(conn)

    def _checkout(self) -> psycopg.Connection:
        if self._pool is not None:
            return self._pool.getconn(timeout=CONNECT_TIMEOUT)
        conn = getattr(self._local, "own", None)
        if conn is None or conn.closed:
            conn = self._local.own = self._connect()
        return conn

    def _failed(self, conn: psycopg.Connection) -> None:
        """After an error: roll back, and forget what memory says about the rolled-back transaction."""
        self._forget_book()
        self._rollups.forget()
        self._writes.clear()
        self._days.clear()
        if conn.broken or conn.closed:
            conn.close()
            if self._pool is None:
                self._local.own = None  # opened again at the next call: the server may be back by then
            return
        try:
            conn.rollback()
        except psycopg.Error:
            conn.close()

    def close(self) -> None:
        """Close this thread's connection (and the readers' pool)."""
        conn = getattr(self._local, "own", None)
        if conn is not None:
            conn.close()
            self._local.own = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # -- schema ----------------------------------------------------------------------

    def schema_version(self) -> int:
        return self._version(self.db)

    @staticmethod
    def _version(conn: psycopg.Connection) -> int:
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (pg_schema.SCHEMA_VERSION_TABLE,)
        ).fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute(f"SELECT max(version) FROM {pg_schema.SCHEMA_VERSION_TABLE}").fetchone()
        return row[0] or 0 if row else 0

    def _migrate(self, conn: psycopg.Connection) -> None:
        """Apply the missing migrations and catalog columns, once, whoever else starts now."""
        conn.execute("SELECT pg_advisory_lock(%s)", (pg_schema.MIGRATION_LOCK,))
        try:
            conn.commit()
            version = self._version(conn)
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"database {self.path} has schema {version}, newer than this version's {len(MIGRATIONS)}"
                )
            if version == 0:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {pg_schema.SCHEMA_VERSION_TABLE} (version integer NOT NULL)"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                conn.execute(script)
                conn.execute(f"INSERT INTO {pg_schema.SCHEMA_VERSION_TABLE} VALUES (%s)", (number,))
                conn.commit()
            for statement in pg_schema.catalog_columns(self._table_columns(conn)):
                conn.execute(statement)
            conn.commit()
            today = day_of(time.time())
            for day in range(today - DAY, today + (AHEAD + 1) * DAY, DAY):
                self._create_partitions(conn, day)
            conn.commit()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (pg_schema.MIGRATION_LOCK,))
            conn.commit()

    @staticmethod
    def _table_columns(conn: psycopg.Connection) -> dict[str, set[str]]:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
            (list(pg_schema.METRIC_TABLES),),
        ).fetchall()
        columns: dict[str, set[str]] = {}
        for table, column in rows:
            columns.setdefault(table, set()).add(column)
        return columns

    def _check_schema(self, conn: psycopg.Connection) -> None:
        """A reader's checks: the writer has created, upgraded and completed the schema."""
        version = self._version(conn)
        conn.rollback()
        if version > len(MIGRATIONS):
            raise StoreError(f"database {self.path} has a newer schema than this version understands")
        if version == 0:
            raise StoreError(f"database {self.path} holds no osMonitoring data (has the collector run yet?)")
        if version < len(MIGRATIONS):
            raise StoreError(
                f"database {self.path} has schema {version}, older than this version's {len(MIGRATIONS)}: "
                "start `osmon-collector run` once to upgrade it"
            )
        if pg_schema.catalog_columns(self._table_columns(conn)):
            raise StoreError(
                f"database {self.path} lacks the columns of metrics this version stores: "
                "start `osmon-collector run` once to add them"
            )
        conn.rollback()

    def _create_partitions(self, conn: psycopg.Connection, day: int) -> None:
        if day in self._days:
            return
        for table in pg_schema.PARTITIONED:
            conn.execute(partition_ddl(table, day))
        self._days.add(day)

    # -- ingest ------------------------------------------------------------------------

    def ingest(self, batch: list[Received]) -> IngestResult:
        """Store a batch in one transaction; (host, seq) already stored are skipped."""
        db = self.db
        deferred = self._lock_hosts(batch)
        if deferred:
            batch = [r for r in batch if r.sample.host not in deferred]
        fresh, touched = self._without_duplicates(batch)
        for day in {day_of(r.sample.ts) for r in fresh}:
            self._create_partitions(db, day)
        rows = self._sample_rows(fresh)
        inserted = self._insert_samples([row for row, _ in rows])
        if len(inserted) < len(fresh):
            # Stored meanwhile by another writer of this database: not ours to fold or report.
            kept = [
                (r, row) for r, row in zip(fresh, rows, strict=True) if (row[0][0], r.sample.seq) in inserted
            ]
            fresh, rows = [r for r, _ in kept], [row for _, row in kept]
        self._rollups.fold(db, ((row[0], row[2], row[3:-1], detail) for row, detail in rows))
        self._update_hosts(batch, fresh, touched)
        return IngestResult(fresh=fresh, duplicates=len(batch) - len(fresh), deferred=deferred)

    def _lock_hosts(self, batch: list[Received]) -> frozenset[str]:
        """Lock the batch's hosts until commit, and forget what memory holds of those another
        collector wrote since this one last did (sequence ranges, the tiers' current rows).
        Returns the hosts another writer holds now: they wait for a later batch.

        Collectors sharing the database may both receive a host (its agent moved). Waiting for
        its row would stall this collector's whole ingest behind the other's transaction (or,
        if that collector froze mid-batch, until the server cuts it off): skipped instead.
        """
        ids = {self._host_id(r.sample.host, r.received): r.sample.host for r in batch}
        rows = self.db.execute(
            "SELECT id, writes FROM hosts WHERE id = ANY(%s) ORDER BY id FOR UPDATE SKIP LOCKED",
            (sorted(ids),),
        ).fetchall()
        stale = [host_id for host_id, writes in rows if self._writes.get(host_id) != writes]
        for host_id, writes in rows:
            self._writes[host_id] = writes + 1  # _update_hosts counts this batch's write
        for host_id in stale:
            self._ranges.pop(host_id, None)
            self._epochs.pop(host_id, None)
            self._latest_ts.pop(host_id, None)
        self._rollups.forget(stale)
        locked = {host_id for host_id, _ in rows}
        return frozenset(host for host_id, host in ids.items() if host_id not in locked)

    def _insert_samples(self, rows: list[tuple]) -> set[tuple[int, int]]:
        """Binary COPY into a temporary table, then the rows not stored yet; returns (host_id, seq) inserted."""
        if not rows:
            return set()
        db = self.db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS incoming_samples (LIKE samples) ON COMMIT DELETE ROWS")
        with db.cursor() as cur:
            with cur.copy(f"COPY incoming_samples ({', '.join(_RAW)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_raw_types())
                # By the index key alone (rows may share it; comparing the rest compares None with numbers).
                for row in sorted(rows, key=lambda row: (row[0], row[2])):
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO samples ({', '.join(_RAW)}) SELECT {', '.join(_RAW)} FROM incoming_samples "
                "ON CONFLICT (host_id, ts, seq) DO NOTHING RETURNING host_id, seq"
            )
            return {(host_id, seq) for host_id, seq in cur.fetchall()}

    def _update_hosts(self, batch: list[Received], fresh: list[Received], touched: dict[int, list]) -> None:
        """One UPDATE per host of the batch (last seen, sequence bookkeeping), then the latest snapshots."""
        rows, newest = self._host_updates(batch, fresh, touched)
        with self.db.cursor() as cur:
            cur.executemany(
                "UPDATE hosts SET last_seen = GREATEST(last_seen, %s), first_seq = %s, last_seq = %s, "
                "stored = stored + %s, interval = COALESCE(%s, interval), writes = writes + 1, "
                "latest_seq = COALESCE(%s, latest_seq), latest_ts = COALESCE(%s, latest_ts) WHERE id = %s",
                rows,
            )
            if newest:
                cur.executemany(
                    "INSERT INTO latest (host_id, snapshot) VALUES (%s, %s) "
                    "ON CONFLICT (host_id) DO UPDATE SET snapshot = EXCLUDED.snapshot",
                    [(host_id, r.raw) for host_id, r in newest.items()],
                )
        self._save_summaries(newest)

    def database_size(self) -> int:
        """Bytes the database takes on the server (tables, indexes, partitions)."""
        return one(self.db.execute("SELECT pg_database_size(current_database())").fetchone())

    def add_counters(self, increments: dict[str, int]) -> None:
        """Add to the collector's persistent self-metrics."""
        rows = [(k, v) for k, v in increments.items() if v]
        if rows:
            with self.db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO counters (name, value) VALUES (%s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET value = counters.value + EXCLUDED.value",
                    rows,
                )

    def counters(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, value FROM counters").fetchall())

    # -- reading back, live and packed ----------------------------------------------------

    def seqs(self, host: str) -> list[int]:
        """Every stored sequence number of `host`, ascending."""
        source = readable("samples", ["seq"], _HOST)
        rows = self.db.execute(
            f"SELECT seq FROM {source} ORDER BY seq", {"host": host, "start": -_FOREVER, "end": _FOREVER}
        ).fetchall()
        return [seq for (seq,) in rows]

    def samples(self, host: str, start: float, end: float) -> list[Sample]:
        """Stored samples of `host` with start <= ts < end, oldest first."""
        source = readable("samples", ["seq", *COLUMNS, "detail"], _HOST)
        rows = self.db.execute(
            f"SELECT seq, ts, {', '.join(COLUMNS)}, detail FROM {source} ORDER BY ts, seq",
            {"host": host, "start": start, "end": end},
        ).fetchall()
        return [
            Sample(
                host,
                row[0],
                row[1],
                tuple(unpack_value(c, v) for c, v in zip(COLUMNS, row[2:-1], strict=True)),
                unpack_detail(row[-1], self._names),
            )
            for row in rows
        ]

    # -- leases ------------------------------------------------------------------------------

    def lease_take(self, owner: str, subjects: Sequence[str], ttl: float) -> Leases:
        """As ClusterBook.lease_take, in one statement: thousands of hosts renew every few seconds."""
        names = sorted(set(subjects))
        now = self.NOW
        try:
            # A lease row locked by a write of a collector that froze mid-transaction is not worth
            # waiting for (the server ends that session after IDLE_IN_TRANSACTION): try it later.
            with self.db.transaction():
                self.db.execute(f"SET LOCAL lock_timeout = '{LEASE_LOCK_WAIT}'")
                rows = self.db.execute(
                    "INSERT INTO leases AS l (subject, owner, epoch, expires) "
                    f"SELECT s, %(owner)s, 1, {now} + %(ttl)s FROM unnest(%(subjects)s::text[]) AS s "
                    "ORDER BY s ON CONFLICT (subject) DO UPDATE SET owner = EXCLUDED.owner, "
                    "expires = EXCLUDED.expires, "
                    "epoch = CASE WHEN l.owner = EXCLUDED.owner THEN l.epoch ELSE l.epoch + 1 END "
                    f"WHERE l.owner = EXCLUDED.owner OR l.expires <= {now} RETURNING subject, epoch",
                    {"owner": owner, "ttl": ttl, "subjects": names},
                ).fetchall()
                self.db.execute("SET LOCAL lock_timeout = 0")
        except psycopg.errors.LockNotAvailable:
            return Leases({}, {})
        held = dict(rows)
        missing = [name for name in names if name not in held]
        others: dict[str, float] = {}
        if missing:
            others = {
                subject: max(0.0, left)
                for subject, left in self.db.execute(
                    f"SELECT subject, expires - {now} FROM leases WHERE subject = ANY(%s)", (missing,)
                ).fetchall()
            }
        return Leases(held, others)

    # -- backup ----------------------------------------------------------------------------

    def backup_to(self, target: str | Path, step_pages: int, progress: Callable[[int, int], None]) -> None:
        """Not on PostgreSQL: `backup` runs pg_dump (collector.store.pg_dump) instead of a paged copy."""
        raise StoreError(
            f"{self.path}: a PostgreSQL database is backed up with pg_dump, not copied page by page"
        )

    # -- retention -------------------------------------------------------------------------

    def prune(self, before: float, limit: int = 2000) -> int:
        """Forget samples older than `before`: whole days by dropping their partitions (live and packed),
        then up to `limit` rows (packed ones a whole host-hour at a time, if it ended before `before`)."""
        self._create_ahead()
        deleted = 0
        for table in ("samples", "samples_packed"):
            for day in self._partitions(table):
                if day + DAY <= before:
                    deleted += self._drop_samples(table, day)
                    self.db.commit()
        for host_id in self._hosts_with_older("samples", "ts", before):
            if deleted >= limit:
                break
            seqs = [
                seq
                for (seq,) in self.db.execute(
                    "DELETE FROM samples WHERE (host_id, ts, seq) IN (SELECT host_id, ts, seq FROM samples "
                    "WHERE host_id = %s AND ts < %s ORDER BY ts LIMIT %s) RETURNING seq",
                    (host_id, before, limit - deleted),
                ).fetchall()
            ]
            deleted += self._forget_seqs(host_id, seqs)
        for host_id in self._hosts_with_older("samples_packed", "hour", before - HOUR + 1):
            if deleted >= limit:
                break
            seqs = [
                seq
                for (seq,) in self.db.execute(
                    "WITH gone AS (DELETE FROM samples_packed WHERE host_id = %s AND hour + %s <= %s "
                    "RETURNING seq) SELECT unnest(seq) FROM gone",
                    (host_id, HOUR, before),
                ).fetchall()
            ]
            deleted += self._forget_seqs(host_id, seqs)
        return deleted

    def _forget_seqs(self, host_id: int, seqs: list[int]) -> int:
        """The host's bookkeeping after retention deleted `seqs`, committed (small transactions)."""
        if seqs:
            ranges = self._seq_ranges(host_id)
            before_gaps = [g[:] for g in ranges.gaps]
            ranges.discard(seqs)
            self._save_ranges(host_id, ranges, before_gaps, len(seqs))
        self.db.commit()
        return len(seqs)

    def _drop_samples(self, table: str, day: int) -> int:
        """Drop a day's partition of raw samples (live or packed), with the hosts' sequence bookkeeping;
        returns its samples."""
        part = partition_name(table, day)
        rows = (
            part
            if table == "samples"
            else f"(SELECT host_id, u.seq FROM {part}, unnest(seq) AS u(seq)) AS rows"
        )
        total = 0
        for host_id, low, high, count in self.db.execute(
            f"SELECT host_id, min(seq), max(seq), count(*) FROM {rows} GROUP BY host_id"
        ).fetchall():
            ranges = self._seq_ranges(host_id)
            before_gaps = [g[:] for g in ranges.gaps]
            if low == ranges.first and count == _stored_between(ranges, low, high):
                ranges.drop_below(high + 1)  # the usual case: the oldest numbers, all of them
            else:  # an agent's clock stepped back: numbers from the middle go too
                seqs = self.db.execute(f"SELECT seq FROM {rows} WHERE host_id = %s", (host_id,)).fetchall()
                ranges.discard([s for (s,) in seqs])
            self._save_ranges(host_id, ranges, before_gaps, count)
            total += count
        self.db.execute(f"DROP TABLE {part}")
        self._days.discard(day)
        return total

    def _save_ranges(self, host_id: int, ranges: SeqRanges, before: list[list[int]], removed: int) -> None:
        self.db.execute(
            "UPDATE hosts SET first_seq = %s, last_seq = %s, stored = GREATEST(0, stored - %s) WHERE id = %s",
            (ranges.first, ranges.last, removed, host_id),
        )
        self._save_gaps(host_id, ranges, before)

    def prune_rollups(self, tier: str, before: float, limit: int = 2000) -> int:
        """Forget rows of tier `tier` ("minute", "hour") for periods starting before `before`."""
        table = {"minute": "rollup_minute", "hour": "rollup_hour"}[tier]
        deleted = 0
        if table in pg_schema.PARTITIONED:
            for part_of, rows in ((table, "count(*)"), (PACKED[table], "coalesce(sum(cardinality(t)), 0)")):
                for day in self._partitions(part_of):
                    if day + DAY <= before:
                        part = partition_name(part_of, day)
                        row = self.db.execute(f"SELECT {rows} FROM {part}").fetchone()
                        self.db.execute(f"DROP TABLE {part}")
                        self._days.discard(day)
                        self.db.commit()
                        deleted += row[0] if row else 0
        for host_id in self._hosts_with_older(table, "t", before):
            if deleted >= limit:
                break
            cur = self.db.execute(
                f"DELETE FROM {table} WHERE host_id = %s AND t IN "
                f"(SELECT t FROM {table} WHERE host_id = %s AND t < %s ORDER BY t LIMIT %s)",
                (host_id, host_id, before, limit - deleted),
            )
            deleted += cur.rowcount
            self.db.commit()
        if table in PACKED:  # packed minutes: a whole host-hour once it ended before `before`
            for host_id in self._hosts_with_older(PACKED[table], "hour", before - HOUR + 1):
                if deleted >= limit:
                    break
                row = self.db.execute(
                    f"WITH gone AS (DELETE FROM {PACKED[table]} WHERE host_id = %s AND hour + %s <= %s "
                    "RETURNING t) SELECT coalesce(sum(cardinality(t)), 0) FROM gone",
                    (host_id, HOUR, before),
                ).fetchone()
                deleted += row[0] if row else 0
                self.db.commit()
        return deleted

    def _partitions(self, table: str) -> list[int]:
        """The days of `table`'s partitions, oldest first."""
        rows = self.db.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            (table,),
        ).fetchall()
        days = []
        for (name,) in rows:
            stamp = name.rpartition("_")[2]
            try:
                days.append(calendar.timegm(time.strptime(stamp, "%Y%m%d")))
            except ValueError:
                continue  # not one of ours
        return sorted(days)

    def _create_ahead(self) -> None:
        """Today's partitions and the next days', created before data needs them (once a day or so)."""
        today = day_of(time.time())
        if self._ahead_done != today:
            for day in range(today, today + (AHEAD + 1) * DAY, DAY):
                self._create_partitions(self.db, day)
            self.db.commit()
            self._ahead_done = today

    def _hosts_with_older(self, table: str, column: str, before: float) -> list[int]:
        return [
            host_id
            for (host_id,) in self.db.execute(
                f"SELECT id FROM hosts WHERE (SELECT min({column}) FROM {table} WHERE host_id = hosts.id) < %s",
                (before,),
            )
        ]


def _stored_between(ranges: SeqRanges, low: int, high: int) -> int:
    """How many numbers from low to high (inclusive) `ranges` holds."""
    missing = sum(max(0, min(b, high) - max(a, low) + 1) for a, b in ranges.gaps)
    return high - low + 1 - missing


def _raw_types() -> list[str]:
    types = {name: kind for name, kind, _ in pg_schema.wanted_columns()["samples"]}
    return ["int4", "int8", "float8", *(_PG_BINARY[types[c]] for c in COLUMNS), "bytea"]


_PG_BINARY = {"smallint": "int2", "integer": "int4", "bigint": "int8"}


def open_postgres(
    url: str,
    readonly: bool = False,
    password_file: str | Path | None = None,
    application_name: str = "osmon-collector",
) -> PostgresStore:
    with translated(url, "open database"):
        return PostgresStore(
            url, readonly=readonly, password_file=password_file, application_name=application_name
        )


def ping(url: str, password_file: str | Path | None = None) -> str:
    """Connect once and return the server's version: whether the database answers (check-config --connect)."""
    args: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": "osmon-collector check-config",
    }
    if (password := read_password(password_file)) is not None:
        args["password"] = password
    with translated(url, "connect to database"), psycopg.connect(url, **args) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
