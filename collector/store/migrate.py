"""`osmon-collector migrate-store`: a SQLite history copied into an empty PostgreSQL database, then verified.

Every table is copied with its ids (raw samples refer to lists of names by id,
alert events to alerts), in steps that each commit with a record in
`osmon_migration`: the raw samples host by host, every other table whole. Run
again after an interruption, the steps done are skipped and the one cut off is
done again from its start; run again after it completed, it only verifies. A
target holding data that did not come from this source is refused. The check
at the end compares, per table, the rows, and per host the number of raw
samples and their first and last sequence numbers.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import IO

import psycopg

from collector.store import pg_schema
from collector.store.pg_errors import translated
from collector.store.pg_url import mask
from collector.store.postgres import CONNECT_TIMEOUT, PostgresStore, read_password
from collector.store.records import StoreError
from collector.store.schema import MIGRATIONS as SQLITE_MIGRATIONS

# In dependency order; raw samples go host by host after these.
TABLES = (
    "names",
    "hosts",
    "epochs",
    "latest",
    "host_summary",
    "gaps",
    "counters",
    "certfr_items",
    "alerts",
    "alert_events",
    "silences",
    "pending",
    "outbox",
    "tokens",
    "web_logouts",
    "rollup_hour",
    "rollup_minute",
)
WITHOUT_ROWID = ("gaps", "epochs", "pending", "rollup_minute", "rollup_hour")
IDENTITIES = ("names", "hosts", "alerts", "alert_events", "outbox")  # ids copied: sequences moved past them
OTHER_DATA = ("hosts", "alerts", "outbox", "certfr_items", "silences")


class MigrationError(StoreError):
    """The copy cannot be made or does not match its source."""


def run(source: str | Path, url: str, password_file: str | None, out: IO[str]) -> None:
    """Copy `source` (SQLite) into `url` (PostgreSQL), resumably, and verify the copy."""
    src = _open_source(source)
    label = str(Path(source).resolve())
    PostgresStore(url, password_file=password_file, application_name="osmon-collector migrate-store").close()
    args: dict = {"connect_timeout": CONNECT_TIMEOUT, "application_name": "osmon-collector migrate-store"}
    if (password := read_password(password_file)) is not None:
        args["password"] = password
    with translated(url, "migrate into database"), psycopg.connect(url, **args) as dst:
        done = _steps_done(dst, label)
        if "finished" in done:
            out.write(f"{mask(url)} already holds a completed copy of {label}: verifying it\n")
        else:
            if done:
                out.write(f"resuming the copy of {label}: {len(done)} steps were done\n")
            _copy(src, dst, label, done, out)
        _verify(src, dst, out)
        dst.execute(
            "INSERT INTO osmon_migration VALUES ('finished', %s, %s) ON CONFLICT DO NOTHING",
            (label, time.time()),
        )
        dst.commit()
    src.close()
    out.write(f"{label} -> {mask(url)}: copied and verified\n")


def _open_source(source: str | Path) -> sqlite3.Connection:
    path = Path(source)
    if not path.is_file():
        raise MigrationError(f"--from {source}: no such SQLite database")
    try:
        src = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        version = src.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as e:
        raise MigrationError(f"--from {source}: {e}") from None
    if version != len(SQLITE_MIGRATIONS):
        raise MigrationError(
            f"--from {source}: schema {version}, not this version's {len(SQLITE_MIGRATIONS)}: "
            "run this version's `osmon-collector run` on it once first"
        )
    return src


def _steps_done(dst: psycopg.Connection, label: str) -> set[str]:
    """Steps already done for this source; refuses a target with other data or another source's copy."""
    dst.execute(
        "CREATE TABLE IF NOT EXISTS osmon_migration (step text PRIMARY KEY, source text NOT NULL, done double precision)"
    )
    rows = dst.execute("SELECT step, source FROM osmon_migration").fetchall()
    dst.commit()
    sources = {s for _, s in rows}
    if sources - {label}:
        raise MigrationError(
            f"the target database holds a copy of {sorted(sources - {label})[0]}, not of {label}"
        )
    if not rows:
        for table in OTHER_DATA:
            row = dst.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()
            if row and row[0]:
                raise MigrationError(
                    f"the target database already holds data (table {table}): give an empty one"
                )
    return {step for step, _ in rows}


def _columns(src: sqlite3.Connection, dst: psycopg.Connection, table: str) -> list[str]:
    source = [row[1] for row in src.execute(f"PRAGMA table_info({table})")]
    target = {
        r[0]
        for r in dst.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
    }
    return [c for c in source if c in target]


def _copy_rows(
    src: sqlite3.Connection, dst: psycopg.Connection, table: str, where: str = "", args: tuple = ()
) -> int:
    # Quoted: web_logouts has a column named `user`, a keyword of PostgreSQL's.
    columns = ", ".join(f'"{c}"' for c in _columns(src, dst, table))
    order = "" if table in WITHOUT_ROWID else " ORDER BY rowid"
    rows = src.execute(f"SELECT {columns} FROM {table} {where}{order}", args)
    count = 0
    with dst.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _copy(src: sqlite3.Connection, dst: psycopg.Connection, label: str, done: set[str], out: IO[str]) -> None:
    for day in _days(src):
        for table in pg_schema.PARTITIONED:
            dst.execute(pg_schema.partition_ddl(table, day))
    dst.commit()
    for table in TABLES:
        if table in done:
            continue
        dst.execute(f"DELETE FROM {table}")  # a step cut off is done again whole
        count = _copy_rows(src, dst, table)
        if table in IDENTITIES:
            dst.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT max(id) FROM {table}), 1))"
            )
        _done(dst, table, label)
        out.write(f"{table}: {count} rows\n")
    hosts = src.execute("SELECT id, name FROM hosts ORDER BY id").fetchall()
    for i, (host_id, name) in enumerate(hosts, start=1):
        step = f"samples:{host_id}"
        if step in done:
            continue
        dst.execute("DELETE FROM samples WHERE host_id = %s", (host_id,))
        count = _copy_rows(src, dst, "samples", "WHERE host_id = ?", (host_id,))
        _done(dst, step, label)
        out.write(f"samples: host {i}/{len(hosts)} {name}: {count} rows\n")
        out.flush()


def _done(dst: psycopg.Connection, step: str, label: str) -> None:
    dst.execute("INSERT INTO osmon_migration VALUES (%s, %s, %s)", (step, label, time.time()))
    dst.commit()


def _days(src: sqlite3.Connection) -> list[int]:
    days = {row[0] for row in src.execute("SELECT DISTINCT CAST(ts / 86400 AS INTEGER) * 86400 FROM samples")}
    days |= {
        row[0] for row in src.execute("SELECT DISTINCT CAST(t / 86400 AS INTEGER) * 86400 FROM rollup_minute")
    }
    return sorted(d for d in days if d is not None)


def _verify(src: sqlite3.Connection, dst: psycopg.Connection, out: IO[str]) -> None:
    problems = []
    for table in (*TABLES, "samples"):
        a = src.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        row = dst.execute(pg_schema.count_rows(table)).fetchone()  # packed rows one by one
        b = row[0] if row else None
        if a != b:
            problems.append(f"{table}: {a} rows in the source, {b} in the target")
    query = "SELECT host_id, count(*), min(seq), max(seq) FROM {} AS s GROUP BY host_id ORDER BY host_id"
    source = [tuple(r) for r in src.execute(query.format("samples"))]
    target = [tuple(r) for r in dst.execute(query.format(pg_schema.ALL_SEQS)).fetchall()]
    dst.commit()
    if source != target:
        differ = sorted(set(source) ^ set(target))[:3]
        problems.append(f"per host (id, samples, first seq, last seq) differ: {differ}")
    if problems:
        raise MigrationError("the copy does not match its source: " + "; ".join(problems))
    out.write(f"verified: every table's rows, and samples and sequence ranges of {len(source)} hosts\n")
