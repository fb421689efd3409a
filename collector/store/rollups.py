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
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from operator import add, is_not
from typing import Any, NamedTuple

import msgpack

from collector.store.compact import COLUMNS, highest, pack
from collector.store.schema import STATS
from osmon import catalog


class Tier(NamedTuple):
    name: str  # as in [retention]
    table: str
    width: int  # seconds


MINUTE = Tier("minute", "rollup_minute", 60)
HOUR = Tier("hour", "rollup_hour", 3600)
TIERS = (MINUTE, HOUR)
TIERS_BY_NAME = {tier.name: tier for tier in TIERS}
# A batch is summed up per host and minute once, and each tier adds those sums up.
assert all(tier.width % MINUTE.width == 0 for tier in TIERS)

ROLLUP_COLUMNS = tuple(f"{c}_{s}" for c in COLUMNS for s in STATS)

# A stored sample: (host_id, ts, stored column values, stored detail).
StoredRow = tuple[int, float, Sequence[int | None], dict[str, Any]]

_present = partial(filter, partial(is_not, None))  # the values of a column that are not None


def tier_for(width: float) -> Tier | None:
    """The coarsest tier whose rows fit whole into buckets of `width` seconds; None: raw samples."""
    for tier in reversed(TIERS):
        if width >= tier.width and width % tier.width == 0:
            return tier
    return None


# Inside a Rollup, a column without values has _TOP as its minimum and -_TOP as its maximum (beyond
# any integer SQLite stores), so that whole rows combine without a test for None; they are None
# again in the row stored. Each map turns one into the other element by element (dict.get(x, x):
# x itself unless it is a key).
_TOP = 2**63
_Map = Callable[[Any, Any], Any]
_LOW: _Map = {None: _TOP}.get
_HIGH: _Map = {None: -_TOP}.get
_NONE: _Map = {_TOP: None, -_TOP: None}.get
_SUM: _Map = {None: 0}.get
_COUNT: _Map = {None: 0}.get  # _COUNT(x, 1): 0 for None, 1 for a number
_ONES = (1,) * len(COLUMNS)
assert STATS == ("min", "sum", "max", "n")  # the order of a row's columns (Rollup.row, from_row)


class Rollup:
    """The aggregate of one host over one period, in stored (scaled) units.

    Per column, in lists by column (so that whole rows are combined by builtins, in C): the
    minimum and maximum (_TOP and -_TOP until a value comes), the sum, and the count of values.
    Lists and the detail's values are replaced, never changed in place: rollups may share them.
    """

    __slots__ = ("counts", "detail", "maxs", "mins", "n", "sums", "t")

    def __init__(self, t: int) -> None:
        self.t = t
        self.n = 0
        self.mins: list[Any] = [_TOP] * len(COLUMNS)
        self.sums: list[Any] = [0] * len(COLUMNS)
        self.maxs: list[Any] = [-_TOP] * len(COLUMNS)
        self.counts: list[int] = [0] * len(COLUMNS)
        self.detail: dict[str, Any] = {}  # stored detail keys -> each entity's maximum

    @classmethod
    def of(cls, t: int, values: list[Sequence[int | None]], details: Iterable[dict[str, Any]]) -> Rollup:
        """The aggregate of samples (their stored column values and stored, short-keyed detail)."""
        rollup = cls(t)
        rollup.n = len(values)
        if len(values) == 1:  # one sample of the host in the batch's minute: a large fleet's batches
            [row] = values
            rollup.mins, rollup.maxs = list(map(_LOW, row, row)), list(map(_HIGH, row, row))
            rollup.sums, rollup.counts = list(map(_SUM, row, row)), list(map(_COUNT, row, _ONES))
        else:
            rollup._add_columns(values)
        details = iter(details)
        rollup.detail = dict(next(details))
        for detail in details:
            _merge_detail(rollup.detail, detail)
        return rollup

    def _add_columns(self, values: list[Sequence[int | None]]) -> None:
        columns: list[Any] = list(zip(*values, strict=True))
        # The numbers a host lacks are missing from its every sample: those of the first sample
        # are left out here, and if another sample lacks another, sum() says so.
        for i in [i for i, value in enumerate(values[0]) if value is None]:
            columns[i] = [v for v in columns[i] if v is not None]
        try:
            self.sums = list(map(sum, columns))
        except TypeError:
            columns = [[v for v in column if v is not None] for column in columns]
            self.sums = list(map(sum, columns))
        self.counts = list(map(len, columns))
        if all(self.counts):
            self.mins, self.maxs = list(map(min, columns)), list(map(max, columns))
        else:  # a number no sample of the period had (a probe this host lacks)
            self.mins = [min(c) if c else _TOP for c in columns]
            self.maxs = [max(c) if c else -_TOP for c in columns]

    def merge(self, other: Rollup) -> None:
        """Add the samples `other` aggregates (of a period within this one)."""
        if not self.n:
            self.mins, self.sums, self.maxs, self.counts = other.mins, other.sums, other.maxs, other.counts
            self.detail = dict(other.detail)
        else:
            if None in self.sums:
                self._add_new_columns(other)
            else:
                self.sums = list(map(add, self.sums, other.sums))
                self.counts = list(map(add, self.counts, other.counts))
            # Comparisons written out: three times faster than map(min, ...) (no call per column).
            self.mins = [a if a <= b else b for a, b in zip(self.mins, other.mins, strict=True)]
            self.maxs = [a if a >= b else b for a, b in zip(self.maxs, other.maxs, strict=True)]
            _merge_detail(self.detail, other.detail)
        self.n += other.n

    def _add_new_columns(self, other: Rollup) -> None:
        """Sums and counts where this row was stored before some columns were added to the tables
        (their sum is NULL, their count n): it had none of their values, so theirs are other's."""
        sums, counts = [], []
        for total, count, more, more_count in zip(
            self.sums, self.counts, other.sums, other.counts, strict=True
        ):
            if total is not None:
                sums.append(total + more)
                counts.append(count + more_count)
            elif more_count:
                sums.append(more)
                counts.append(more_count)
            else:  # still none: the row stays as it was stored
                sums.append(None)
                counts.append(count + other.n)
        self.sums, self.counts = sums, counts

    def row(self, host_id: int) -> tuple:
        detail = {k: v for k, v in self.detail.items() if v}
        n = self.n
        # (min, sum, max, count) of each column in turn, filled a statistic at a time.
        flat: list[Any] = [None] * (len(STATS) * len(COLUMNS))
        flat[0::4] = map(_NONE, self.mins, self.mins)
        flat[1::4] = self.sums
        flat[2::4] = map(_NONE, self.maxs, self.maxs)
        # A column's count is nearly always n: NULL, which takes no room on disk, says so.
        flat[3::4] = [None if count == n else count for count in self.counts]
        return (host_id, self.t, n, *flat, pack(detail) if detail else None)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Rollup:
        """From (t, n, *ROLLUP_COLUMNS, detail) as stored."""
        rollup = cls(row[0])
        n = rollup.n = row[1]
        values = row[2:-1]
        step = len(STATS)
        mins, maxs = values[0::step], values[2::step]
        rollup.mins, rollup.maxs = list(map(_LOW, mins, mins)), list(map(_HIGH, maxs, maxs))
        rollup.sums = list(values[1::step])
        rollup.counts = [n if count is None else count for count in values[3::step]]
        if row[-1] is not None:
            rollup.detail = msgpack.unpackb(row[-1])
        return rollup


_MAPS = frozenset(s.key for s in catalog.SERIES if s.stored and s.shape == "map")


def _merge_detail(into: dict[str, Any], detail: dict[str, Any]) -> None:
    """Each entity's maximum of `into` and `detail`, into `into` (whose values are replaced, not changed)."""
    for key, value in detail.items():
        current = into.get(key)
        if current is None:
            into[key] = value
            continue
        if not value:
            continue  # an empty list or map (no failed unit, no link down): nothing to raise
        kind = type(value)
        if kind is type(current):
            # The usual cases, before the general way: the same cores, or the same mounts, as before.
            # max() written out, as in Rollup.merge (the same result: the first of equals).
            try:
                if kind is list and len(value) == len(current):
                    into[key] = [a if a >= b else b for a, b in zip(current, value, strict=True)]
                    continue
                if kind is dict and key in _MAPS and current.keys() == value.keys():
                    into[key] = {k: a if a >= (b := value[k]) else b for k, a in current.items()}
                    continue
            except TypeError:  # a gap (None) among them
                pass
        into[key] = highest(current, value)


def summaries(rows: Iterable[StoredRow]) -> dict[tuple[int, int], Rollup]:
    """A batch's samples aggregated per host and minute: what it adds to the rows of every tier."""
    minutes: dict[tuple[int, int], tuple[list, list]] = {}
    for host_id, ts, values, detail in rows:
        key = (host_id, int(ts // MINUTE.width) * MINUTE.width)
        group = minutes.get(key)
        if group is None:
            minutes[key] = ([values], [detail])
        else:
            group[0].append(values)
            group[1].append(detail)
    return {key: Rollup.of(key[1], values, details) for key, (values, details) in minutes.items()}


def by_tier(minutes: dict[tuple[int, int], Rollup], tier: Tier) -> dict[tuple[int, int], list[Rollup]]:
    """The batch's minute aggregates under the row of `tier` they add to: (host_id, t) -> aggregates."""
    rows: dict[tuple[int, int], list[Rollup]] = {}
    for (host_id, minute), summary in minutes.items():
        rows.setdefault((host_id, minute - minute % tier.width), []).append(summary)
    return rows


class RollupWriter:
    """The writer's side: fold each batch of stored samples into the tiers, inside its transaction."""

    def __init__(self) -> None:
        self._newest: dict[tuple[str, int], Rollup] = {}  # (tier, host_id) -> its newest row

    def forget(self) -> None:
        """After a rolled-back transaction: what is in memory may not be in the database."""
        self._newest.clear()

    def fold(self, db: sqlite3.Connection, rows: Iterable[StoredRow]) -> None:
        """Add samples (host_id, ts, stored values, stored detail) to every tier."""
        minutes = summaries(rows)
        for tier in TIERS:
            written = []
            for (host_id, t), parts in by_tier(minutes, tier).items():
                rollup = self._rollup(db, tier, host_id, t)
                for part in parts:
                    rollup.merge(part)
                written.append(rollup.row(host_id))
            db.executemany(_upsert(tier), written)

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
