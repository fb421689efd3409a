"""Storage behind a small interface, so that another backend (PostgreSQL) can be added.

`open_store` picks the backend; callers use only the methods of `Store` and
the records below, never SQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol

from collector.samples import Sample


class StoreError(Exception):
    """The database cannot be used (missing, unreadable, newer schema ...)."""


class Received(NamedTuple):
    """A validated snapshot as it reaches storage."""

    sample: Sample
    raw: bytes  # the message as received: the latest one per host is kept whole
    interval: float | None
    received: float  # collector clock


class IngestResult(NamedTuple):
    fresh: list[Received]  # stored by this batch, in arrival order
    duplicates: int  # already stored before: acked again, not stored twice


class HostInfo(NamedTuple):
    name: str
    first_seen: float
    last_seen: float
    interval: float | None
    latest_ts: float | None
    snapshots: int
    first_seq: int | None
    last_seq: int | None
    missing: list[tuple[int, int]]  # inclusive ranges


class Store(Protocol):
    def ingest(self, batch: list[Received]) -> IngestResult: ...
    def hosts(self) -> list[HostInfo]: ...
    def latest(self, host: str) -> bytes | None: ...
    def seqs(self, host: str) -> list[int]: ...
    def samples(self, host: str, start: float, end: float) -> list[Sample]: ...
    def prune(self, before: float, limit: int = 2000) -> int: ...
    def add_counters(self, increments: dict[str, int]) -> None: ...
    def counters(self) -> dict[str, int]: ...
    def close(self) -> None: ...


def open_store(database: str | Path, readonly: bool = False) -> Store:
    """The store for `database` (a SQLite file path)."""
    from collector.store.sqlite import SQLiteStore

    return SQLiteStore(database, readonly=readonly)
