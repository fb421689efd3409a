"""Backups of a PostgreSQL database: pg_dump of one snapshot, pg_restore into an empty database, and their checks.

`dump` exports a snapshot from a REPEATABLE READ transaction, has pg_dump
(custom format) write that very snapshot, and counts, in the same snapshot,
the rows of every table and each host's samples and sequence range: the
`Contents` the archive's manifest records. `restore` refuses a database that
holds any table, runs pg_restore in one transaction (all or nothing), and the
caller compares `contents` of the result with the manifest's.

pg_dump and pg_restore are the distribution's (the newest under
/usr/lib/postgresql/*/bin, else on PATH). They get the URL without its
password; the password (from `database_password_file`, or written in the URL)
reaches them as PGPASSWORD in their environment only, never on a command line.
Their failures become one StoreError line: the first error line of their stderr.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import IsolationLevel, sql

from collector.store import pg_schema
from collector.store.pg_base import one
from collector.store.pg_errors import translated
from collector.store.pg_url import host, mask
from collector.store.postgres import CONNECT_TIMEOUT, read_password
from collector.store.records import StoreError

DISTRIBUTION = Path("/usr/lib/postgresql")  # Debian's <major>/bin/ directories
DUMP_HEADER = b"PGDMP"  # the first bytes of a custom-format archive
LOCK_WAIT = "60s"  # pg_dump gives up rather than wait longer for a table's lock

# What a backup records to check a restore by: row counts of every table, and per host
# [samples, first seq, last seq].
Contents = dict[str, dict[str, Any]]


def binary(name: str) -> str:
    """The newest installed `name` (pg_dump, pg_restore): a newer one reads older servers, not the reverse."""

    def major(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name)) or (0,)

    installed = sorted(DISTRIBUTION.glob(f"*/bin/{name}"), key=major, reverse=True)
    if installed:
        return str(installed[0])
    found = shutil.which(name)
    if found is None:
        raise StoreError(
            f"{name} not found in {DISTRIBUTION}/*/bin or on PATH: install the distribution's "
            "PostgreSQL client (Debian: postgresql-client)"
        )
    return found


def child(url: str, password_file: str | Path | None, command: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that carries the password to pg_dump/pg_restore."""
    parts = urlsplit(url)
    password = read_password(password_file)
    if password is None and parts.password is not None:
        password = unquote(parts.password)
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username is not None:
        netloc = f"{parts.netloc.rpartition('@')[0].partition(':')[0]}@{netloc}"
    bare = urlunsplit(SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    env = {**os.environ, "PGAPPNAME": f"osmon-collector {command}", "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT)}
    env.pop("PGPASSWORD", None)
    if password is not None:
        env["PGPASSWORD"] = password
    return bare, env


def failure(program: str, stderr: str) -> str:
    """The first meaningful line of a pg_dump/pg_restore error, with its detail line if one follows."""
    lines = [" ".join(line.split()) for line in stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith(f"{program}: error:")]
    if not lines:
        return "no message"
    first = errors[0] if errors else 0
    text = lines[first].removeprefix(f"{program}: error: ")
    following = lines[first + 1] if first + 1 < len(lines) else ""
    if following.startswith(f"{program}: detail: "):
        text += f" ({following.removeprefix(f'{program}: detail: ')})"
    return text


def _run(program: str, args: list[str], env: dict[str, str], url: str) -> None:
    """Run pg_dump or pg_restore; StoreError with one line when it fails."""
    try:
        done = subprocess.run([binary(program), *args], env=env, capture_output=True, text=True)
    except OSError as e:
        raise StoreError(f"cannot run {program}: {e.strerror or e}") from None
    if done.returncode != 0:
        detail = failure(program, done.stderr)
        raise StoreError(f"{program} failed on {host(url)}: {detail}".replace(url, mask(url)))


def _connect(url: str, password_file: str | Path | None, command: str) -> psycopg.Connection:
    args: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": f"osmon-collector {command}",
    }
    if (password := read_password(password_file)) is not None:
        args["password"] = password
    return psycopg.connect(url, **args)


def _has_schema(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (pg_schema.SCHEMA_VERSION_TABLE,)).fetchone()
    return bool(one(row))


def schema_version(conn: psycopg.Connection) -> int:
    """The osMonitoring schema the database holds; 0 when it holds none."""
    if not _has_schema(conn):
        return 0
    return one(
        conn.execute(f"SELECT coalesce(max(version), 0) FROM {pg_schema.SCHEMA_VERSION_TABLE}").fetchone()
    )


def contents(conn: psycopg.Connection) -> Contents:
    """Rows of every table of the schema, and per host its samples and first and last sequence numbers."""
    tables = [
        name
        for (name,) in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
            "AND relkind IN ('r', 'p') AND NOT relispartition ORDER BY relname"
        ).fetchall()
    ]
    counts = {
        table: one(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone())
        for table in tables
    }
    # Samples of closed days are packed (collector.store.pg_packed), from schema 7 on: counted one by one.
    packed = one(conn.execute("SELECT to_regclass('samples_packed') IS NOT NULL").fetchone())
    samples = pg_schema.ALL_SEQS if packed else "samples"
    hosts = {
        name: [count, first, last]
        for name, count, first, last in conn.execute(
            "SELECT h.name, count(s.seq), min(s.seq), max(s.seq) FROM hosts h "
            f"LEFT JOIN {samples} s ON s.host_id = h.id GROUP BY h.name ORDER BY h.name"
        ).fetchall()
    }
    return {"tables": counts, "hosts": hosts}


def dump(url: str, password_file: str | Path | None, target: Path) -> tuple[int, Contents]:
    """pg_dump of the database as of now into `target`; returns its schema and what it holds."""
    bare, env = child(url, password_file, "backup")
    with translated(url, "back up database"), _connect(url, password_file, "backup") as conn:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot = one(conn.execute("SELECT pg_export_snapshot()").fetchone())
        if not _has_schema(conn):
            raise StoreError(f"database {mask(url)} holds no osMonitoring data (has the collector run yet?)")
        # The snapshot stays valid while this transaction is open: pg_dump reads exactly what we count.
        _run(
            "pg_dump",
            [
                "--format=custom",
                f"--snapshot={snapshot}",
                f"--lock-wait-timeout={LOCK_WAIT}",
                f"--file={target}",
                f"--dbname={bare}",
            ],
            env,
            url,
        )
        # Counted after pg_dump ran, so that a role that may not read the tables hears it from pg_dump.
        schema, held = schema_version(conn), contents(conn)
        conn.rollback()
    return schema, held


def check_dump(path: Path) -> None:
    """pg_restore can read the dump's table of contents (a dump of a newer pg_dump may not be)."""
    try:
        done = subprocess.run(
            [binary("pg_restore"), "--list", str(path)], capture_output=True, text=True, env=dict(os.environ)
        )
    except OSError as e:
        raise StoreError(f"cannot run pg_restore: {e.strerror or e}") from None
    if done.returncode != 0:
        raise StoreError(f"pg_restore cannot read the dump: {failure('pg_restore', done.stderr)}")


def ensure_empty(url: str, password_file: str | Path | None) -> None:
    """StoreError unless the database holds no table, view or sequence of anyone's: restore never merges."""
    with translated(url, "check database"), _connect(url, password_file, "restore") as conn:
        names = [
            f"{schema}.{name}" if schema != "public" else name
            for schema, name in conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname <> 'information_schema' "
                "AND n.nspname NOT LIKE 'pg\\_%' ORDER BY c.relkind <> 'r', n.nspname, c.relname LIMIT 3"
            ).fetchall()
        ]
    if names:
        database = url.rpartition("/")[2].partition("?")[0]
        raise StoreError(
            f"database {database} on {host(url)} is not empty (it holds {', '.join(names)}"
            f"{' ...' if len(names) == 3 else ''}): restore needs an empty database "
            f"(createdb a new one, or dropdb and createdb {database})"
        )


def restore(url: str, password_file: str | Path | None, path: Path) -> None:
    """pg_restore the dump at `path` into the (empty) database, in one transaction, owned by the URL's user."""
    bare, env = child(url, password_file, "restore")
    _run(
        "pg_restore",
        [
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            "--no-privileges",
            f"--dbname={bare}",
            str(path),
        ],
        env,
        url,
    )


def restored(url: str, password_file: str | Path | None) -> tuple[int, Contents]:
    """The schema and contents of the database after a restore, to compare with the manifest's."""
    with translated(url, "check the restored database"), _connect(url, password_file, "restore") as conn:
        schema = schema_version(conn)
        held = contents(conn) if schema else {}
        conn.rollback()
    return schema, held
