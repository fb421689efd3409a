"""The agent's on-disk spool: the sequence counter and every snapshot not yet acked.

A snapshot is numbered and written in one SQLite transaction, so a crash
either loses the snapshot before it was ever numbered or keeps both; after a
restart the agent resumes the sequence and resends what is still here. The
spool is bounded in bytes: past `max_bytes` the oldest snapshots are dropped
(and counted) so that a long outage cannot fill the host's disk.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("osmon.spool")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
"""


def random_epoch() -> int:
    """A uniform random number in 1..2**53 from the kernel's generator.

    Not secrets.randbelow: `secrets` imports hashlib, which maps OpenSSL's libcrypto
    (3.5 MB of the agent's resident memory) for nothing else.
    """
    return (int.from_bytes(os.urandom(8), "big") >> 11) + 1


class SpoolError(Exception):
    """The spool file cannot be opened or written."""


class SpoolLocked(SpoolError):
    """Another agent uses this spool."""


class SpoolLock:
    """An flock on `<spool>.lock` for the agent's whole life: one agent per spool.

    Two agents on one spool would hand out the same sequence numbers and ack each
    other's snapshots. The lock vanishes with the process, so a crash leaves none.
    """

    def __init__(self, spool: str | Path) -> None:
        self.path = Path(f"{spool}.lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise SpoolError(f"cannot create the spool lock {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 100, 0).decode(errors="replace").strip() or "another agent"
            os.close(self.fd)
            raise SpoolLocked(f"spool {spool} is in use by {holder}: one agent per spool") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"osmon-agent (pid {os.getpid()})\n".encode(), 0)

    def __enter__(self) -> SpoolLock:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class Spool:
    """Unacked snapshots by sequence number, in a SQLite file."""

    def __init__(self, path: str | Path, max_bytes: int) -> None:
        self.path, self.max_bytes = str(path), max_bytes
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # FULL: a power loss must not roll back last_seq after those numbers were
            # sent and stored, or the next snapshots would reuse them (and be dropped
            # as duplicates). One fsync per interval is cheap.
            self.db.execute("PRAGMA synchronous=FULL")
            # The loop touches the newest few pages only; SQLite's default 2 MB page cache
            # would grow into the agent's resident memory during a long outage.
            self.db.execute("PRAGMA cache_size=-256")
            self.db.executescript(_SCHEMA)
            self.size = self.db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM pending").fetchone()[0]
            self.epoch = self._epoch()
            # Kept here as well as on disk: the SpoolLock makes this process its only writer.
            self._last_seq = self._meta("last_seq")
        except (sqlite3.Error, OSError) as e:
            raise SpoolError(f"cannot open spool {self.path}: {e}") from None

    def _meta(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else 0

    def _epoch(self) -> int:
        """This spool's random id, chosen when it is created: a new spool restarts the sequence at 1,
        and the epoch tells the collector that these are new snapshots, not resends of stored ones."""
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('epoch', ?) ON CONFLICT(key) DO NOTHING",
            (random_epoch(),),
        )
        return self._meta("epoch")

    @property
    def last_seq(self) -> int:
        """The last sequence number handed out (0 before the first snapshot)."""
        return self._last_seq

    @property
    def dropped(self) -> int:
        """Snapshots dropped unsent because the spool was full, over its lifetime."""
        return self._meta("dropped")

    def append(self, build: Callable[[int], bytes]) -> int:
        """Number the next snapshot, store `build(seq)`, and return seq."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            seq = self._last_seq + 1
            body = build(seq)
            self.db.execute("INSERT INTO pending (seq, body) VALUES (?, ?)", (seq, body))
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES ('last_seq', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (seq,),
            )
            dropped = self._enforce_bound(len(body))
            self.db.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            raise SpoolError(f"cannot write spool {self.path}: {e}") from None
        except BaseException:
            self._rollback()
            raise
        self._last_seq = seq
        self.size += len(body) - dropped
        return seq

    def _enforce_bound(self, incoming: int) -> int:
        """Drop the oldest snapshots until the spool fits; returns the bytes freed."""
        excess = self.size + incoming - self.max_bytes
        freed = count = 0
        if excess <= 0:
            return 0
        for seq, length in self.db.execute("SELECT seq, LENGTH(body) FROM pending ORDER BY seq").fetchall():
            if freed >= excess:
                break
            self.db.execute("DELETE FROM pending WHERE seq = ?", (seq,))
            freed, count = freed + length, count + 1
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('dropped', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
            (count,),
        )
        log.warning("spool full (%d bytes): dropped the %d oldest unsent snapshots", self.max_bytes, count)
        return freed

    def after(self, seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` pending snapshots with a sequence number above `seq`, oldest first."""
        return self.db.execute(
            "SELECT seq, body FROM pending WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()

    def get(self, seq: int) -> bytes | None:
        row = self.db.execute("SELECT body FROM pending WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def ack(self, seqs: list[int]) -> None:
        """Forget snapshots the collector has committed."""
        if not seqs:
            return
        try:
            # No fsync for forgetting: a power loss may bring back acked snapshots, which are
            # sent again and dropped by the collector as duplicates; the next append's fsync
            # covers this commit too (WAL). A SIGKILL loses nothing committed either way.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN IMMEDIATE")
            freed = 0
            for seq in seqs:
                row = self.db.execute("DELETE FROM pending WHERE seq = ? RETURNING LENGTH(body)", (seq,))
                freed += sum(length for (length,) in row)
            self.db.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            raise SpoolError(f"cannot write spool {self.path}: {e}") from None
        except BaseException:
            self._rollback()
            raise
        finally:
            self._durable()
        self.size -= freed

    def _durable(self) -> None:
        """Back to an fsync per commit, for what numbers and keeps snapshots."""
        try:
            self.db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as e:
            raise SpoolError(f"cannot write spool {self.path}: {e}") from None

    def _rollback(self) -> None:
        try:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection is unusable; the error being raised says why

    def pending_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]

    def close(self) -> None:
        self.db.close()
