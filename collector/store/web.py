"""The SQL of the dashboard: short reads, and the one write it makes (silences).

The dashboard runs in its own process beside the collector's writer. Every
read here is one statement in autocommit mode, so no read transaction
outlives a request and WAL checkpoints are never held back for long; the
connection is `query_only` except around a silence, so a bug in a view cannot
write. Series are reduced to time buckets inside SQLite: a 30-day chart
reads a few hundred rows into Python, not every sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from collector.store.compact import COLUMNS, SCALE, highest, read_stored, short_key, unscaled
from collector.store.connected import Connected
from collector.store.records import AlertChange, Bucket, DetailBucket, HostSummary, WebHost
from collector.store.rollups import MINUTE, tier_for
from osmon import catalog

# Columns a series may be read from: names are checked against this list before they are
# put into SQL (they cannot be bound as parameters).
SERIES_COLUMNS = COLUMNS


DETAIL_KEYS = tuple(s.name for s in catalog.SERIES if s.stored)  # per-entity numbers, by wire name
ROLLUP_ONLY = tuple(s.name for s in catalog.SERIES if not s.raw)  # kept per minute at best


_HOST_COLUMNS = "name, first_seen, last_seen, interval, latest_ts, snapshot"
# A summary describes the latest snapshot only if it was written from it (collector.store.summaries).
SUMMARY_SELECT = (
    "SELECT name, first_seen, last_seen, interval, latest_ts, s.ts, s.cpu, s.mem, s.disk, s.load1, s.boot "
    "FROM hosts LEFT JOIN host_summary s ON s.host_id = hosts.id AND s.ts = hosts.latest_ts ORDER BY name"
)


# Each severity an alert had, in order, for alerts active at some time of a period (:start, :end).
ALERT_CHANGES = (
    "SELECT a.id, a.host, a.rule, a.started, a.ended, COALESCE(e.ts, a.started), e.kind, "
    "COALESCE(e.severity, a.severity) FROM alerts a LEFT JOIN alert_events e ON e.alert_id = a.id "
    "AND e.kind IN ('fired', 'escalated', 'deescalated') "
    "WHERE a.started < :end AND (a.ended IS NULL OR a.ended >= :start) ORDER BY a.id, e.ts"
)


def tier_stats(columns: Sequence[str], tier: Any) -> tuple[str, str, str]:
    """(min, avg, max of `columns` per group as SQL, its source table, its time column): from the raw
    samples (tier None) or a rollup tier. Names are checked against SERIES_COLUMNS first."""
    unknown = set(columns) - set(SERIES_COLUMNS)
    if unknown or not columns:
        raise ValueError(f"not series columns: {sorted(unknown) or 'none given'}")
    if tier is None:
        stats = ", ".join(
            f"MIN({c}) / {SCALE[c]}.0, AVG({c}) / {SCALE[c]}, MAX({c}) / {SCALE[c]}.0" for c in columns
        )
        return stats, "samples", "ts"
    stats = ", ".join(
        f"MIN({c}_min) / {SCALE[c]}.0, SUM({c}_sum) / (SUM(COALESCE({c}_n, n)) * {SCALE[c]}.0), "
        f"MAX({c}_max) / {SCALE[c]}.0"
        for c in columns
    )
    return stats, tier.table, "t"


def buckets(rows: Iterable[Sequence[Any]], bucket: float, first: int = 1) -> list[Bucket]:
    """Bucket records from rows of (..., bucket number at `first - 1`, min, avg, max per column ...)."""
    return [
        Bucket(
            row[first - 1] * bucket,
            tuple(
                (_float(row[i]), _float(row[i + 1]), _float(row[i + 2])) for i in range(first, len(row), 3)
            ),
        )
        for row in rows
    ]


def _float(value: Any) -> float | None:
    """avg() of integers is numeric (Decimal) in PostgreSQL: the dashboard takes floats."""
    return None if value is None else float(value)


class WebQueries(Connected):
    """Mixin of SQLiteStore: every statement of the dashboard."""

    _names: Callable[[int], list[str]]  # SQLiteStore's

    def web_read_only(self) -> None:
        """Make this thread's connection refuse writes (called before each request)."""
        self.db.execute("PRAGMA query_only = ON", ())

    @contextmanager
    def _web_writable(self) -> Iterator[None]:
        """Writes allowed for the block; the connection is then as read-only as it was before."""
        before = self.db.execute("PRAGMA query_only").fetchone()[0]
        self.db.execute("PRAGMA query_only = OFF", ())
        try:
            yield
        finally:
            self.db.execute(f"PRAGMA query_only = {'ON' if before else 'OFF'}", ())

    def web_check(self) -> int:
        """Read the database once (for /healthz); returns the number of hosts."""
        return self.db.execute("SELECT count(*) FROM hosts", ()).fetchone()[0]

    def web_hosts(self) -> list[WebHost]:
        """Every host with its latest snapshot, by name."""
        rows = self.db.execute(
            f"SELECT {_HOST_COLUMNS} FROM hosts LEFT JOIN latest ON latest.host_id = hosts.id ORDER BY name",
            (),
        ).fetchall()
        return [WebHost(*row) for row in rows]

    def web_host(self, name: str) -> WebHost | None:
        """One host with its latest snapshot, or None if the collector never heard of it."""
        row = self.db.execute(
            f"SELECT {_HOST_COLUMNS} FROM hosts LEFT JOIN latest ON latest.host_id = hosts.id WHERE name = ?",
            (name,),
        ).fetchone()
        return None if row is None else WebHost(*row)

    def web_summaries(self) -> list[HostSummary]:
        """Every host with the summary of its latest snapshot, by name: what the overview ranks."""
        return [HostSummary(*row) for row in self.db.execute(SUMMARY_SELECT, ()).fetchall()]

    def web_hosts_named(self, names: Sequence[str]) -> list[WebHost]:
        """The hosts called `names` (those that exist) with their latest snapshots, by name."""
        rows: list[Any] = []
        for i in range(0, len(names), 500):  # under SQLite's limit of bound parameters
            part = names[i : i + 500]
            rows += self.db.execute(
                f"SELECT {_HOST_COLUMNS} FROM hosts LEFT JOIN latest ON latest.host_id = hosts.id "
                f"WHERE name IN ({', '.join('?' * len(part))})",
                tuple(part),
            ).fetchall()
        return sorted((WebHost(*row) for row in rows), key=lambda h: h.name)

    def web_trends(
        self, names: Sequence[str], columns: Sequence[str], start: float, end: float, bucket: float
    ) -> dict[str, list[Bucket]]:
        """web_series of several hosts at once (the overview's page of hosts), in one statement."""
        stats, source, time = tier_stats(columns, tier_for(bucket))
        result: dict[str, list[Bucket]] = {}
        for i in range(0, len(names), 500):  # under SQLite's limit of bound parameters
            part = list(names[i : i + 500])
            rows = self.db.execute(
                f"SELECT hosts.name, CAST({time} / ? AS INTEGER) AS b, {stats} FROM {source} "
                f"JOIN hosts ON hosts.id = {source}.host_id WHERE hosts.name IN ({', '.join('?' * len(part))}) "
                f"AND {time} >= ? AND {time} < ? GROUP BY hosts.name, b ORDER BY hosts.name, b",
                (bucket, *part, start, end),
            ).fetchall()
            for name, *row in rows:
                result.setdefault(name, []).extend(buckets([row], bucket))
        return result

    def web_alert_changes(self, start: float, end: float) -> list[AlertChange]:
        """Every change of severity of the alerts active at some time in start <= t < end, by alert."""
        return [
            AlertChange(*row)
            for row in self.db.execute(ALERT_CHANGES, {"start": start, "end": end}).fetchall()
        ]

    def web_series(
        self, host: str, columns: Sequence[str], start: float, end: float, bucket: float
    ) -> list[Bucket]:
        """min/avg/max of `columns` per `bucket` seconds over start <= ts < end, oldest first.

        Buckets are aligned on multiples of `bucket` since the epoch, so a chart
        refreshed a minute later groups the same samples together. Read from the
        coarsest rollup tier whose periods fit whole into a bucket (so the result
        is the same as from the raw samples), or from the samples themselves.
        """
        unknown = set(columns) - set(SERIES_COLUMNS)
        if unknown or not columns:
            raise ValueError(f"not series columns: {sorted(unknown) or 'none given'}")
        tier = tier_for(bucket)
        if tier is None:
            stats = ", ".join(
                f"MIN({c}) / {SCALE[c]}.0, AVG({c}) / {SCALE[c]}, MAX({c}) / {SCALE[c]}.0" for c in columns
            )
            source, time = "samples", "ts"
        else:
            stats = ", ".join(
                f"MIN({c}_min) / {SCALE[c]}.0, SUM({c}_sum) / (SUM(COALESCE({c}_n, n)) * {SCALE[c]}.0), "
                f"MAX({c}_max) / {SCALE[c]}.0"
                for c in columns
            )
            source, time = tier.table, "t"
        rows = self.db.execute(
            f"SELECT CAST({time} / :bucket AS INTEGER) AS b, {stats} FROM {source} "
            f"WHERE host_id = (SELECT id FROM hosts WHERE name = :host) AND {time} >= :start AND {time} < :end "
            "GROUP BY b ORDER BY b",
            {"bucket": bucket, "host": host, "start": start, "end": end},
        ).fetchall()
        return [
            Bucket(row[0] * bucket, tuple(tuple(row[i : i + 3]) for i in range(1, len(row), 3)))
            for row in rows
        ]

    def web_series_detail(
        self, host: str, key: str, start: float, end: float, bucket: float
    ) -> list[DetailBucket]:
        """Per bucket, each entity's maximum of `key` (one of DETAIL_KEYS)."""
        return self.web_series_details(host, [key], start, end, bucket)[key]

    def web_series_details(
        self, host: str, keys: Sequence[str], start: float, end: float, bucket: float
    ) -> dict[str, list[DetailBucket]]:
        """{key: per bucket, each entity's maximum} for per-entity `keys` (DETAIL_KEYS).

        SQLite cannot read inside the msgpack details, so the rows of the period
        (raw samples for buckets under a minute, else rollup rows, which hold
        each entity's maximum already) are merged here, in stored integers, and
        converted once per bucket: a few hundred to a couple of thousand small
        blobs for any range, read once for all keys from the same rows. Per-device
        rates come from the minute tier at least: buckets under a minute hold one
        value a minute.
        """
        unknown = set(keys) - set(DETAIL_KEYS)
        if unknown or not keys:
            raise ValueError(f"not per-entity series: {sorted(unknown) or 'none given'}")
        by_tier: dict[Any, list[str]] = {}
        for key in keys:
            by_tier.setdefault(tier_for(bucket) or (MINUTE if key in ROLLUP_ONLY else None), []).append(key)
        result = {}
        for tier, group in by_tier.items():
            source, time = ("samples", "ts") if tier is None else (tier.table, "t")
            rows = self.db.execute(
                f"SELECT CAST({time} / :bucket AS INTEGER) AS b, detail FROM {source} "
                f"WHERE host_id = (SELECT id FROM hosts WHERE name = :host) AND {time} >= :start "
                f"AND {time} < :end AND detail IS NOT NULL ORDER BY {time}",
                {"bucket": bucket, "host": host, "start": start, "end": end},
            )
            result.update(merge_details(rows, group, bucket, self._names))
        return result

    def web_silence(self, host: str, until: float, reason: str, now: float) -> None:
        """Silence `host` until `until` (the dashboard's only kind of write, with unsilence)."""
        with self._web_writable():
            self.silence(host, until, reason, now)  # type: ignore[attr-defined]

    def web_logout(self, user: str, now: float) -> None:
        """Revoke every session of `user` issued before `now`: a signed cookie cannot be taken back."""
        with self._web_writable():
            self.db.execute(
                "INSERT INTO web_logouts (user, at) VALUES (?, ?) "
                "ON CONFLICT (user) DO UPDATE SET at = MAX(at, excluded.at)",
                (user, now),
            )

    def web_logged_out(self, user: str) -> float | None:
        """When `user` last logged out (sessions issued before are revoked), or None."""
        row = self.db.execute("SELECT at FROM web_logouts WHERE user = ?", (user,)).fetchone()
        return row[0] if row else None

    def web_unsilence(self, host: str) -> bool:
        """Lift `host`'s silence; False if there was none."""
        with self._web_writable():
            return self.unsilence(host)  # type: ignore[attr-defined]


def merge_details(
    rows: Iterable[tuple[int, bytes]], keys: Sequence[str], bucket: float, names: Callable[[int], list[str]]
) -> dict[str, list[DetailBucket]]:
    """Per bucket, each entity's maximum of every per-entity key, from (bucket number, detail blob) rows.

    SQL cannot read inside the msgpack details: Python merges the rows of each bucket (a rollup row
    already holds each entity's maximum of its period), whatever the backend.
    """
    shorts = [short_key(key) for key in keys]
    merged: dict[int, list[Any]] = {}
    for b, blob in rows:
        stored = read_stored(blob, names)
        slot = merged.setdefault(b, [None] * len(shorts))
        for i, short in enumerate(shorts):
            slot[i] = highest(slot[i], stored.get(short))
    return {
        key: [
            DetailBucket(b * bucket, {key: unscaled(short, slot[i])})
            for b, slot in merged.items()
            if slot[i] is not None
        ]
        for i, (key, short) in enumerate(zip(keys, shorts, strict=True))
    }
