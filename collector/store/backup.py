"""The SQL of backup and restore: an online copy of a live database, and checks of a copy."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from collector.store.connected import Connected
from collector.store.records import CopyInfo
from collector.store.sqlite_errors import translated

# (pages copied, pages in all) after each step of the copy.
Progress = Callable[[int, int], None]


class BackupQueries(Connected):
    """Mixin of SQLiteStore: consistent online copies and their verification."""

    def backup_to(self, target: str | Path, step_pages: int, progress: Progress) -> None:
        """Copy the database as of now into `target` (a new file), `step_pages` pages at a time.

        The ingesting writer keeps committing meanwhile. A paged copy restarts whenever
        another connection writes the source, so under steady ingest it would never
        finish; a read transaction held on the source for the whole copy pins one WAL
        snapshot instead, which the backup reads from start to end. In WAL mode a reader
        never blocks the writer; the WAL just cannot be checkpointed past the snapshot
        until the copy ends.
        """
        source = self.db
        dest = sqlite3.connect(target, isolation_level=None)
        try:
            source.execute("BEGIN")
            try:
                source.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts here
                source.backup(
                    dest,
                    pages=step_pages,
                    progress=lambda status, remaining, total: progress(total - remaining, total),
                )
            finally:
                source.execute("COMMIT")
            # The archive holds one self-contained file: no -wal beside it to forget.
            dest.execute("PRAGMA journal_mode=DELETE")
        finally:
            dest.close()


def inspect_copy(path: str | Path) -> CopyInfo:
    """Schema version and integrity of a database copy that no one else has open."""
    with translated(path, "check the copy"):
        db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, isolation_level=None)
        try:
            schema = db.execute("PRAGMA user_version").fetchone()[0]
            problems = [row[0] for row in db.execute("PRAGMA integrity_check(20)")]
        finally:
            db.close()
    return CopyInfo(schema, [] if problems == ["ok"] else problems)
