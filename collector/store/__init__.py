"""Storage behind a small interface, so that another backend (PostgreSQL) can be added.

`open_store` picks the backend; callers use only the methods of `Store` and
the records below, never SQL.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import NamedTuple, Protocol

from collector.samples import Sample

if typing.TYPE_CHECKING:  # annotations only: collector.store.outbox imports StoreError from here
    from collector.mail import Mail
    from collector.store.outbox import OutboxMessage

if typing.TYPE_CHECKING:  # annotations only: collector.store.certfr imports StoreError from here
    from collections.abc import Sequence

    from collector.store.certfr import CertfrAdded, CertfrItem, FeedItem


class StoreError(Exception):
    """The database cannot be used (missing, unreadable, newer schema ...)."""


class Received(NamedTuple):
    """A validated snapshot as it reaches storage."""

    sample: Sample
    raw: bytes  # the message as received: the latest one per host is kept whole
    interval: float | None
    received: float  # collector clock
    epoch: int | None = None  # the agent's spool id (wire "epoch"); a new one restarts seq at 1


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
    def prune_rollups(self, tier: str, before: float, limit: int = 2000) -> int: ...
    def add_counters(self, increments: dict[str, int]) -> None: ...
    def counters(self) -> dict[str, int]: ...
    def certfr_add(self, items: Sequence[FeedItem], mail: bool, now: float | None = None) -> CertfrAdded: ...
    def certfr_latest(self) -> CertfrItem | None: ...
    def certfr_items(self, limit: int = 20) -> list[CertfrItem]: ...
    def certfr_pending_mail(self) -> list[CertfrItem]: ...
    def certfr_mark_mailed(self, guids: Sequence[str]) -> None: ...
    def certfr_has_items(self) -> bool: ...
    def outbox_add(self, mail: Mail, message_id: str, now: float) -> int: ...
    def outbox_get(self, message: int) -> OutboxMessage | None: ...
    def outbox_due(self, now: float, limit: int = 100) -> list[OutboxMessage]: ...
    def outbox_sent(self, message: int, now: float, note: str | None = None) -> None: ...
    def outbox_failed(self, message: int, error: str, next_attempt: float | None) -> None: ...
    def outbox_size(self) -> int: ...
    def outbox_prune(self, before: float) -> int: ...
    def close(self) -> None: ...


def open_store(database: str | Path, readonly: bool = False) -> Store:
    """The store for `database` (a SQLite file path)."""
    from collector.store.sqlite import SQLiteStore

    return SQLiteStore(database, readonly=readonly)
