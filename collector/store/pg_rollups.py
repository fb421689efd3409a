"""The writer's rollup tiers on PostgreSQL: the same Rollup arithmetic as collector.store.rollups, sent in bulk.

Per batch and tier, the rows it touches that the writer does not hold in memory
are read in one query, the folded rows go back by binary COPY into a temporary
table, and one `INSERT ... ON CONFLICT DO UPDATE` writes them. Rows only change
while their period is current, and the tiers' tables keep free room in each page
(fillfactor), so these updates stay on their page (HOT) and the tables do not bloat.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from collector.store import pg_schema
from collector.store.rollups import ROLLUP_COLUMNS, TIERS, Rollup, StoredRow, Tier, by_tier, summaries

_COLUMNS = ("host_id", "t", "n", *ROLLUP_COLUMNS, "detail")
_BINARY = {"smallint": "int2", "integer": "int4", "bigint": "int8"}


def _types() -> list[str]:
    kinds = {name: kind for name, kind, _ in pg_schema.wanted_columns()["rollup_minute"]}
    return ["int4", "int8", "int4", *(_BINARY[kinds[c]] for c in ROLLUP_COLUMNS), "bytea"]


class PgRollupWriter:
    """Fold each batch of inserted samples into every tier, inside the batch's transaction."""

    def __init__(self) -> None:
        self._newest: dict[tuple[str, int], Rollup] = {}  # (tier, host_id) -> its newest row

    def forget(self, host_ids: Iterable[int] | None = None) -> None:
        """Forget the rows held in memory: all, or those of `host_ids` (another writer changed them)."""
        if host_ids is None:
            self._newest.clear()
            return
        gone = set(host_ids)
        for key in [k for k in self._newest if k[1] in gone]:
            del self._newest[key]

    def fold(self, db: psycopg.Connection, rows: Iterable[StoredRow]) -> None:
        minutes = summaries(rows)
        if not minutes:
            return
        for tier in TIERS:
            parts = by_tier(minutes, tier)
            touched: dict[tuple[int, int], Rollup | None] = {}
            for host_id, t in parts:
                newest = self._newest.get((tier.name, host_id))
                touched[(host_id, t)] = newest if newest is not None and newest.t == t else None
            self._read_missing(db, tier, touched)
            folded: dict[tuple[int, int], Rollup] = {k: v or Rollup(k[1]) for k, v in touched.items()}
            for key, rollup in folded.items():
                for part in parts[key]:
                    rollup.merge(part)
            for (host_id, t), rollup in folded.items():
                newest = self._newest.get((tier.name, host_id))
                if newest is None or t >= newest.t:
                    self._newest[(tier.name, host_id)] = rollup
            self._write(db, tier, [r.row(host_id) for (host_id, _), r in folded.items()])

    def _read_missing(
        self, db: psycopg.Connection, tier: Tier, touched: dict[tuple[int, int], Rollup | None]
    ) -> None:
        """Rows of the tier that exist in the database but not in memory (a restart, a late resend)."""
        wanted = [key for key, rollup in touched.items() if rollup is None]
        if not wanted:
            return
        found = db.execute(
            f"SELECT host_id, t, n, {', '.join(ROLLUP_COLUMNS)}, detail FROM {tier.table} "
            "WHERE (host_id, t) IN (SELECT * FROM unnest(%s::integer[], %s::bigint[]))",
            ([h for h, _ in wanted], [t for _, t in wanted]),
        ).fetchall()
        for row in found:
            touched[(row[0], row[1])] = Rollup.from_row(row[1:])

    def _write(self, db: psycopg.Connection, tier: Tier, rows: list[tuple]) -> None:
        temp = f"incoming_{tier.table}"
        db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {temp} (LIKE {tier.table}) ON COMMIT DELETE ROWS")
        with db.cursor() as cur:
            with cur.copy(f"COPY {temp} ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_types())
                for row in sorted(rows, key=lambda r: (r[0], r[1])):
                    copy.write_row(row)
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[2:])
            cur.execute(
                f"INSERT INTO {tier.table} ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} FROM {temp} "
                f"ON CONFLICT (host_id, t) DO UPDATE SET {updates}"
            )
