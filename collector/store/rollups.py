"""Rollup tiers: min/sum/max/count of every column per minute and per hour, kept as data arrives.

A chart of 30 days reads 720 hourly rows instead of 259,200 samples, and each
tier has its own retention (`[retention]` raw / minute / hour), as Netdata's
tiers do. Rollups are built from the stored (scaled integer) numbers, so a
rollup row equals what its raw rows give, exactly: min and max of each
column, a sum and a count for the average (a count per column, because a
sample may lack a number, such as the first rates after an agent starts).

Per-entity numbers are rolled up as each entity's own maximum over the
period: each core, each mount, and each disk's and interface's rates (which
raw samples do not keep, see collector.store.compact.RAW_DETAIL).

The writer keeps the newest row of each host and tier in memory and rewrites
it with each batch; a row it does not hold (a restart, a late resend of old
data) is read back from the database first, so no sample is counted twice or
lost from a rollup.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import msgpack

from collector.store.compact import COLUMNS, highest
from collector.store.schema import STATS


class Tier(NamedTuple):
    name: str  # as in [retention]
    table: str
    width: int  # seconds


MINUTE = Tier("minute", "rollup_minute", 60)
HOUR = Tier("hour", "rollup_hour", 3600)
TIERS = (MINUTE, HOUR)
TIERS_BY_NAME = {tier.name: tier for tier in TIERS}

ROLLUP_COLUMNS = tuple(f"{c}_{s}" for c in COLUMNS for s in STATS)


def tier_for(width: float) -> Tier | None:
    """The coarsest tier whose rows fit whole into buckets of `width` seconds; None: raw samples."""
    for tier in reversed(TIERS):
        if width >= tier.width and width % tier.width == 0:
            return tier
    return None


class Rollup:
    """The aggregate of one host over one period, in stored (scaled) units."""

    __slots__ = ("detail", "n", "stats", "t")

    def __init__(self, t: int) -> None:
        self.t = t
        self.n = 0
        # Per column [min, sum, max, count]; min and max are None until a value comes.
        self.stats: list[list[Any]] = [[None, 0, None, 0] for _ in COLUMNS]
        self.detail: dict[str, Any] = {}  # stored detail keys -> each entity's maximum

    def add(self, values: Sequence[int | None], detail: dict[str, Any]) -> None:
        """One sample: its stored column values and its stored (short-keyed) detail."""
        self.n += 1
        for stat, value in zip(self.stats, values, strict=True):
            if value is not None:
                stat[0] = value if stat[0] is None else min(stat[0], value)
                stat[1] += value
                stat[2] = value if stat[2] is None else max(stat[2], value)
                stat[3] += 1
        for key, value in detail.items():
            self.detail[key] = highest(self.detail.get(key), value)

    def row(self, host_id: int) -> tuple:
        detail = {k: v for k, v in self.detail.items() if v}
        flat: list[int | None] = []
        for low, total, high, count in self.stats:
            # A column's count is nearly always n: NULL, which takes no room on disk, says so.
            flat += (low, total, high, None if count == self.n else count)
        return (host_id, self.t, self.n, *flat, msgpack.packb(detail, use_bin_type=True) if detail else None)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Rollup:
        """From (t, n, *ROLLUP_COLUMNS, detail) as stored."""
        rollup = cls(row[0])
        rollup.n = row[1]
        values = row[2:-1]
        rollup.stats = [list(values[i : i + len(STATS)]) for i in range(0, len(values), len(STATS))]
        for stat in rollup.stats:
            if stat[3] is None:
                stat[3] = rollup.n
        if row[-1] is not None:
            rollup.detail = msgpack.unpackb(row[-1])
        return rollup


class RollupWriter:
    """The writer's side: fold each batch of stored samples into the tiers, inside its transaction."""

    def __init__(self) -> None:
        self._newest: dict[tuple[str, int], Rollup] = {}  # (tier, host_id) -> its newest row

    def forget(self) -> None:
        """After a rolled-back transaction: what is in memory may not be in the database."""
        self._newest.clear()

    def fold(
        self, db: sqlite3.Connection, rows: Iterable[tuple[int, float, Sequence[int | None], dict]]
    ) -> None:
        """Add samples (host_id, ts, stored values, stored detail) to every tier."""
        rows = list(rows)
        for tier in TIERS:
            touched: dict[tuple[int, int], Rollup] = {}
            for host_id, ts, values, detail in rows:
                t = int(ts // tier.width) * tier.width
                rollup = touched.get((host_id, t))
                if rollup is None:
                    rollup = touched[(host_id, t)] = self._rollup(db, tier, host_id, t)
                rollup.add(values, detail)
            db.executemany(_upsert(tier), [r.row(host_id) for (host_id, _), r in touched.items()])

    def _rollup(self, db: sqlite3.Connection, tier: Tier, host_id: int, t: int) -> Rollup:
        newest = self._newest.get((tier.name, host_id))
        if newest is not None and newest.t == t:
            return newest
        row = db.execute(
            f"SELECT t, n, {', '.join(ROLLUP_COLUMNS)}, detail FROM {tier.table} WHERE host_id = ? AND t = ?",
            (host_id, t),
        ).fetchone()
        rollup = Rollup.from_row(row) if row else Rollup(t)
        if newest is None or t > newest.t:
            self._newest[(tier.name, host_id)] = rollup
        return rollup


def _upsert(tier: Tier) -> str:
    columns = ("host_id", "t", "n", *ROLLUP_COLUMNS, "detail")
    return (
        f"INSERT OR REPLACE INTO {tier.table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )
