"""The storage contract: every method the collector's processes call, and the records they exchange.

`open_store` picks the backend; callers use only the methods of `Store` and
the records of collector.store.records, never SQL. A backend implements all
of it, and tests/test_store_contract.py checks that through this protocol alone.
Every method raises StoreError, and only StoreError, when the database fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from collector.store.records import (
    GAVE_UP,
    Alert,
    AlertChange,
    AlertEvent,
    AlertUpdate,
    Bucket,
    CertfrAdded,
    CertfrItem,
    CollectorInfo,
    CopyInfo,
    DetailBucket,
    FeedItem,
    Fence,
    HostInfo,
    HostSummary,
    IngestResult,
    Leases,
    OutboxMail,
    OutboxMessage,
    Pending,
    Received,
    Silence,
    StoreError,
    StoreUnreachable,
    Token,
    WebHost,
)

if TYPE_CHECKING:
    from collector.mail import Mail
    from collector.samples import Sample

__all__ = [
    "GAVE_UP",
    "Alert",
    "AlertChange",
    "AlertEvent",
    "AlertUpdate",
    "Bucket",
    "CertfrAdded",
    "CertfrItem",
    "CollectorInfo",
    "CopyInfo",
    "DetailBucket",
    "FeedItem",
    "Fence",
    "HostInfo",
    "HostSummary",
    "IngestResult",
    "Leases",
    "OutboxMail",
    "OutboxMessage",
    "Pending",
    "Received",
    "Silence",
    "Store",
    "StoreError",
    "StoreUnreachable",
    "Token",
    "WebHost",
    "open_store",
]

# (pages copied, pages in all) after each step of a backup copy.
Progress = Callable[[int, int], None]


class Store(Protocol):
    # -- ingest and retention (`run`) -------------------------------------------
    def ingest(self, batch: list[Received]) -> IngestResult: ...
    def prune(self, before: float, limit: int = 2000) -> int: ...
    def prune_rollups(self, tier: str, before: float, limit: int = 2000) -> int: ...
    def pack(self, now: float, limit: int = 100) -> int: ...
    def add_counters(self, increments: dict[str, int]) -> None: ...
    def counters(self) -> dict[str, int]: ...
    def database_size(self) -> int: ...
    def hosts(self) -> list[HostInfo]: ...
    def latest(self, host: str) -> bytes | None: ...
    def samples(self, host: str, start: float, end: float) -> list[Sample]: ...

    # -- alerts and silences (detection, notify, `alerts`, `silence`) --------------
    def alerts_apply(
        self,
        events: list[AlertEvent],
        updates: list[AlertUpdate],
        pending: Sequence[Pending] = (),
        mails: Sequence[OutboxMail] = (),
        fence: Fence | None = None,
    ) -> set[str]: ...
    def alerts_active(self) -> list[Alert]: ...
    def alerts_since(self, ended_after: float) -> list[Alert]: ...
    def alerts_history(self, host: str | None = None, limit: int = 100) -> list[Alert]: ...
    def alerts_due_reminder(self, now: float, repeat: float) -> list[Alert]: ...
    def alert_notified(self, host: str, rule: str, when: float) -> None: ...
    def alert_was_notified(self, host: str, rule: str) -> bool: ...
    def alert_processes(self, host: str, at: float) -> tuple[str, float, str] | None: ...
    def silence(self, host: str, until: float, reason: str, now: float) -> None: ...
    def unsilence(self, host: str) -> bool: ...
    def silences(self, now: float) -> list[Silence]: ...

    # -- the outbox: mail and webhook deliveries -------------------------------------------------------
    def outbox_add(self, mail: Mail, message_id: str, now: float, key: str | None = None) -> int: ...
    def outbox_due(self, now: float, limit: int = 100) -> list[OutboxMessage]: ...
    def outbox_claim(
        self, owner: str, now: float, hold: float, limit: int = 100, channels: Sequence[str] | None = None
    ) -> list[OutboxMessage]: ...
    def outbox_sent(self, message: int, now: float, note: str | None = None) -> None: ...
    def outbox_failed(self, message: int, error: str, next_attempt: float | None) -> None: ...
    def outbox_recent(self, limit: int = 50) -> list[OutboxMessage]: ...
    def outbox_size(self) -> int: ...
    def outbox_states(self) -> dict[str, int]: ...
    def outbox_prune(self, before: float) -> int: ...
    def outbox_waiting(self) -> dict[str, int]: ...
    def outbox_expire(self, created_before: float, reason: str) -> dict[str, int]: ...

    # -- several collectors on one database (collector.leases) -----------------------------
    def lease_take(self, owner: str, subjects: Sequence[str], ttl: float) -> Leases: ...
    def lease_release(self, owner: str) -> int: ...
    def detection_state(self, hosts: Sequence[str]) -> tuple[list[Alert], list[Pending]]: ...
    def heartbeat(
        self,
        name: str,
        address: str,
        pid: int,
        version: str,
        started: float,
        received: int,
        rate: float,
        stopped: bool = False,
    ) -> None: ...
    def collectors(self) -> list[CollectorInfo]: ...

    # -- CERT-FR --------------------------------------------------------------------
    def certfr_add(self, items: Sequence[FeedItem], mail: bool, now: float | None = None) -> CertfrAdded: ...
    def certfr_latest(self) -> CertfrItem | None: ...
    def certfr_items(self, limit: int = 20) -> list[CertfrItem]: ...
    def certfr_pending_mail(self) -> list[CertfrItem]: ...
    def certfr_mark_mailed(self, guids: Sequence[str]) -> None: ...

    # -- the dashboard (`web`): short reads, and silences -------------------------------
    def web_read_only(self) -> None: ...
    def web_check(self) -> int: ...
    def web_hosts(self) -> list[WebHost]: ...
    def web_host(self, name: str) -> WebHost | None: ...
    def web_summaries(self) -> list[HostSummary]: ...
    def web_hosts_named(self, names: Sequence[str]) -> list[WebHost]: ...
    def web_trends(
        self, names: Sequence[str], columns: Sequence[str], start: float, end: float, bucket: float
    ) -> dict[str, list[Bucket]]: ...
    def web_alert_changes(self, start: float, end: float) -> list[AlertChange]: ...
    def web_series(
        self, host: str, columns: Sequence[str], start: float, end: float, bucket: float
    ) -> list[Bucket]: ...
    def web_series_detail(
        self, host: str, key: str, start: float, end: float, bucket: float
    ) -> list[DetailBucket]: ...
    def web_series_details(
        self, host: str, keys: Sequence[str], start: float, end: float, bucket: float
    ) -> dict[str, list[DetailBucket]]: ...
    def web_silence(self, host: str, until: float, reason: str, now: float) -> None: ...
    def web_unsilence(self, host: str) -> bool: ...
    def web_logout(self, user: str, now: float) -> None: ...
    def web_logged_out(self, user: str) -> float | None: ...

    # -- scraper tokens (`token`, and the dashboard's bearer authentication) ----------------
    def token_add(self, name: str, digest: str, now: float) -> None: ...
    def token_revoke(self, name: str) -> bool: ...
    def tokens(self) -> list[Token]: ...
    def token_name(self, digest: str) -> str | None: ...

    # -- backup (`backup`, `restore`) ---------------------------------------------------
    def backup_to(self, target: str | Path, step_pages: int, progress: Progress) -> None: ...

    # -- reading back what was stored, exactly: what the conformance suite checks any
    # backend with, without SQL (and what verification of a moved history reads) --------
    def seqs(self, host: str) -> list[int]: ...
    def alert_events(self, alert_id: int) -> list[tuple[float, str, str, float | None]]: ...
    def outbox_get(self, message: int) -> OutboxMessage | None: ...

    def close(self) -> None: ...


def open_store(
    database: str | Path,
    readonly: bool = False,
    password_file: str | Path | None = None,
    application_name: str = "osmon-collector",
) -> Store:
    """The store for `database`: a postgresql:// URL (psycopg 3, the `postgresql` extra) or a SQLite file path.

    `password_file` and `application_name` concern PostgreSQL only (without a password
    file, libpq's own means apply: PGPASSFILE, ~/.pgpass, the URL).
    """
    from collector.store.pg_url import is_postgresql

    if is_postgresql(str(database)):
        try:
            from collector.store.postgres import open_postgres
        except ImportError as e:
            raise StoreError(
                f"{e.name or 'psycopg'} is not installed: a PostgreSQL database needs the `postgresql` extra "
                "(pip install 'osmonitoring[collector,postgresql]')"
            ) from None
        return open_postgres(
            str(database), readonly=readonly, password_file=password_file, application_name=application_name
        )
    from collector.store.sqlite import SQLiteStore

    return SQLiteStore(database, readonly=readonly)


def check_connection(database: str | Path, password_file: str | Path | None = None) -> str:
    """Whether the database answers, in a few words; StoreError (StoreUnreachable) when it does not."""
    from collector.store.pg_url import is_postgresql

    if is_postgresql(str(database)):
        try:
            from collector.store.postgres import ping
        except ImportError as e:
            raise StoreError(
                f"{e.name or 'psycopg'} is not installed: a PostgreSQL database needs the `postgresql` extra"
            ) from None
        return f"PostgreSQL {ping(str(database), password_file)} answers"
    if not Path(database).exists():
        return "SQLite file not created yet (`run` creates it)"
    open_store(database, readonly=True).close()
    return "SQLite file opens"
