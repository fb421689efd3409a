"""The SQL of the dashboard on PostgreSQL: short reads through the pool, and silences.

Reads run in READ ONLY transactions once `web_read_only` was called on the
thread (every request), so a bug in a view cannot write; a silence lifts that
for its own transaction. Series are reduced to buckets inside PostgreSQL; the
per-entity details are merged in Python as on SQLite (collector.store.web).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from collector.store.compact import SCALE
from collector.store.pg_base import PgBase
from collector.store.pg_packed import readable
from collector.store.pg_schema import STATS
from collector.store.records import AlertChange, Bucket, DetailBucket, HostSummary, WebHost
from collector.store.rollups import MINUTE, tier_for
from collector.store.web import (
    ALERT_CHANGES,
    DETAIL_KEYS,
    ROLLUP_ONLY,
    SERIES_COLUMNS,
    SUMMARY_SELECT,
    buckets,
    merge_details,
    tier_stats,
)

_HOST_COLUMNS = "name, first_seen, last_seen, interval, latest_ts, snapshot"
_HOST = "= (SELECT id FROM hosts WHERE name = %(host)s)"  # the host of a series


def _read(columns: Sequence[str], tier: Any) -> list[str]:
    """The stored columns a series of `columns` reads from a tier (None: raw samples)."""
    if tier is None:
        return list(columns)
    return ["n", *(f"{c}_{stat}" for c in columns for stat in STATS)]


class PgWebQueries(PgBase):
    """Mixin of PostgresStore: every statement of the dashboard."""

    _names: Callable[[int], list[str]]

    def web_read_only(self) -> None:
        """This thread's transactions refuse writes from now on (called before each request)."""
        self._local.read_only = True

    @contextmanager
    def _web_writable(self) -> Iterator[None]:
        before = getattr(self._local, "read_only", False)
        self.db.read_only = False  # before the transaction's first statement
        try:
            yield
        finally:
            self._local.read_only = before

    def web_check(self) -> int:
        row = self.db.execute("SELECT count(*) FROM hosts").fetchone()
        return row[0] if row else 0

    def web_hosts(self) -> list[WebHost]:
        rows = self.db.execute(
            f"SELECT {_HOST_COLUMNS} FROM hosts LEFT JOIN latest ON latest.host_id = hosts.id ORDER BY name"
        ).fetchall()
        return [WebHost(*row) for row in rows]

    def web_host(self, name: str) -> WebHost | None:
        row = self.db.execute(
            f"SELECT {_HOST_COLUMNS} FROM hosts LEFT JOIN latest ON latest.host_id = hosts.id WHERE name = %s",
            (name,),
        ).fetchone()
        return None if row is None else WebHost(*row)

    def web_summaries(self) -> list[HostSummary]:
        return [HostSummary(*row) for row in self.db.execute(SUMMARY_SELECT).fetchall()]

    def web_hosts_named(self, names: Sequence[str]) -> list[WebHost]:
        rows = self.db.execute(
            f"SELECT {_HOST_COLUMNS} FROM hosts LEFT JOIN latest ON latest.host_id = hosts.id "
            "WHERE name = ANY(%s)",
            (list(names),),
        ).fetchall()
        return sorted((WebHost(*row) for row in rows), key=lambda h: h.name)

    def web_trends(
        self, names: Sequence[str], columns: Sequence[str], start: float, end: float, bucket: float
    ) -> dict[str, list[Bucket]]:
        tier = tier_for(bucket)
        stats, source, time = tier_stats(columns, tier)
        hosts = "IN (SELECT id FROM hosts WHERE name = ANY(%(names)s))"
        rows = self.db.execute(
            f"SELECT hosts.name, floor({time} / %(bucket)s)::bigint AS b, {stats} "
            f"FROM {readable(source, _read(columns, tier), hosts)} "
            f"JOIN hosts ON hosts.id = {source}.host_id WHERE hosts.name = ANY(%(names)s) "
            f"AND {time} >= %(start)s AND {time} < %(end)s GROUP BY hosts.name, b",
            {"bucket": float(bucket), "names": list(names), "start": start, "end": end},
        ).fetchall()
        result: dict[str, list[Bucket]] = {}
        for name, *row in sorted(rows, key=lambda r: (r[0], r[1])):
            result.setdefault(name, []).extend(buckets([row], bucket))
        return result

    def web_alert_changes(self, start: float, end: float) -> list[AlertChange]:
        sql = ALERT_CHANGES.replace(":start", "%(start)s").replace(":end", "%(end)s")
        return [AlertChange(*row) for row in self.db.execute(sql, {"start": start, "end": end}).fetchall()]

    def web_series(
        self, host: str, columns: Sequence[str], start: float, end: float, bucket: float
    ) -> list[Bucket]:
        """min/avg/max of `columns` per `bucket` seconds, from the coarsest tier that fits (as on SQLite)."""
        unknown = set(columns) - set(SERIES_COLUMNS)
        if unknown or not columns:
            raise ValueError(f"not series columns: {sorted(unknown) or 'none given'}")
        tier = tier_for(bucket)
        if tier is None:
            stats = ", ".join(
                f"min({c}) / {SCALE[c]}.0, avg({c}) / {SCALE[c]}, max({c}) / {SCALE[c]}.0" for c in columns
            )
            source, time = "samples", "ts"
        else:
            stats = ", ".join(
                # NULLIF: a number the host never sent in the bucket has no average (0 / 0 is
                # an error in PostgreSQL, NULL in SQLite).
                f"min({c}_min) / {SCALE[c]}.0, sum({c}_sum) / (NULLIF(sum(COALESCE({c}_n, n)), 0) * {SCALE[c]}.0), "
                f"max({c}_max) / {SCALE[c]}.0"
                for c in columns
            )
            source, time = tier.table, "t"
        rows = self.db.execute(
            f"SELECT floor({time} / %(bucket)s)::bigint AS b, {stats} "
            f"FROM {readable(source, _read(columns, tier), _HOST)} "
            f"WHERE host_id {_HOST} AND {time} >= %(start)s "
            f"AND {time} < %(end)s GROUP BY b ORDER BY b",
            {"bucket": float(bucket), "host": host, "start": start, "end": end},
        ).fetchall()
        return [
            Bucket(
                row[0] * bucket,
                tuple(tuple(_number(v) for v in row[i : i + 3]) for i in range(1, len(row), 3)),  # type: ignore[misc]
            )
            for row in rows
        ]

    def web_series_detail(
        self, host: str, key: str, start: float, end: float, bucket: float
    ) -> list[DetailBucket]:
        return self.web_series_details(host, [key], start, end, bucket)[key]

    def web_series_details(
        self, host: str, keys: Sequence[str], start: float, end: float, bucket: float
    ) -> dict[str, list[DetailBucket]]:
        """{key: per bucket, each entity's maximum} for per-entity `keys` (see collector.store.web)."""
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
                f"SELECT floor({time} / %(bucket)s)::bigint AS b, detail FROM {readable(source, ['detail'], _HOST)} "
                f"WHERE host_id {_HOST} AND {time} >= %(start)s "
                f"AND {time} < %(end)s AND detail IS NOT NULL ORDER BY {time}",
                {"bucket": float(bucket), "host": host, "start": start, "end": end},
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
                'INSERT INTO web_logouts ("user", at) VALUES (%s, %s) '
                'ON CONFLICT ("user") DO UPDATE SET at = GREATEST(web_logouts.at, EXCLUDED.at)',
                (user, now),
            )

    def web_logged_out(self, user: str) -> float | None:
        """When `user` last logged out (sessions issued before are revoked), or None."""
        row = self.db.execute('SELECT at FROM web_logouts WHERE "user" = %s', (user,)).fetchone()
        return row[0] if row else None

    def web_unsilence(self, host: str) -> bool:
        with self._web_writable():
            return self.unsilence(host)  # type: ignore[attr-defined]


def _number(value: Any) -> float | None:
    """avg() of integers is numeric (Decimal) in PostgreSQL: the dashboard takes floats."""
    return None if value is None else float(value)
