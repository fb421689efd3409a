"""Closed days of raw samples and minute rows, packed: one row per host and hour, each column an array.

A PostgreSQL row costs some 28 bytes of header and line pointer before its first
value, and its index entry about as much again: 8,640 raw rows and 1,440 minute
rows made a host-day 5 MB. Once a day is over (PACK_AFTER past its end, so the
last batches and short resends are in), the packer (collector.packing, the thread
of the collector holding the upkeep duty) moves its rows host-hour by
host-hour into `samples_packed` and `rollup_minute_packed`, one row of arrays
per host-hour, which TOAST compresses: about a third of the bytes.

Each move is one small transaction (`DELETE ... RETURNING` feeding the INSERT),
so a reader sees a host-hour raw or packed, never both nor neither, and ingest
never waits for more than one host-hour. Once every host-hour of a day has
moved, its emptied partition is vacuumed (which truncates it to nothing) and
dropped: no dead rows stay behind. The packed tables are partitioned by day
too, so retention drops them whole as it drops live partitions.

Readers see both through `readable`: the live table UNION ALL the packed rows
unnested (only the columns asked for, so TOAST reads only those), the packed
rows bounded by hour.

A late snapshot of a packed hour (an agent resending a spool kept through a
long outage) is a duplicate if the host's sequence ranges hold it (hosts and
gaps, exact under the host's row lock: collector.store.sequences); otherwise it
is stored raw, in the day's partition created again, and folded into a new
minute row beside the packed one: readers add up the rows of one minute as they
add up the minutes of a bucket. The next pass appends both to their host-hour's
packed row. A move bumps the host's `writes`, so every writer reads the host's
ranges and current rollup rows again rather than trusting its memory.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

import psycopg

from collector.store import pg_schema
from collector.store.compact import COLUMNS
from collector.store.pg_base import PgBase
from collector.store.pg_schema import DAY, HOUR, PACKED, partition_ddl, partition_name
from collector.store.rollups import ROLLUP_COLUMNS

PACK_AFTER = 3600  # seconds after a day's end before it is packed
DROP_LOCK_WAIT = "1s"  # dropping an emptied partition waits this long for ingest and readers, else later


class Layout(NamedTuple):
    time: str  # the live table's time column
    order: str  # the order of a host's rows in the arrays
    arrays: tuple[str, ...]  # the columns moved, in order; the same names in both tables


LAYOUTS = {
    "samples": Layout("ts", "ts, seq", ("seq", "ts", *COLUMNS, "detail")),
    "rollup_minute": Layout("t", "t", ("t", "n", *ROLLUP_COLUMNS, "detail")),
}


def readable(table: str, columns: Sequence[str], hosts: str) -> str:
    """A FROM item holding the rows of `table` ("samples", "rollup_minute"), live and packed, named `table`.

    Gives host_id, the time column and `columns`, of the hosts whose id is `hosts` (SQL such as
    "= (SELECT id FROM hosts WHERE name = %(host)s)") between %(start)s and %(end)s.
    """
    if table not in PACKED:
        return table
    time = LAYOUTS[table].time
    # Once each: a column named twice in the unnest's aliases would be ambiguous (a page may chart a
    # number twice: memory as a percentage and in bytes).
    wanted = list(dict.fromkeys([time, *columns]))
    names = ", ".join(wanted)
    return (
        f"(SELECT host_id, {names} FROM {table} WHERE host_id {hosts} "
        f"AND {time} >= %(start)s AND {time} < %(end)s "
        f"UNION ALL SELECT p.host_id, u.* FROM {PACKED[table]} p, "
        f"unnest({', '.join(f'p.{c}' for c in wanted)}) AS u({names}) "
        f"WHERE p.host_id {hosts} AND p.hour > %(start)s - {HOUR} AND p.hour < %(end)s "
        f"AND u.{time} >= %(start)s AND u.{time} < %(end)s) AS {table}"
    )


@functools.cache  # a statement per table and day
def _move(table: str, day: int) -> str:
    """The statement moving the rows of host %(host)s and hour %(hour)s of `table`'s partition of `day`."""
    time, order, arrays = LAYOUTS[table]
    kinds = {c: k for c, k, _ in pg_schema.wanted_columns()[table]}
    first = arrays[0]

    def appended(c: str) -> str:
        # A catalog column added after the packed row was written has no array there: NULLs keep
        # its values beside their samples.
        mine = (
            f"p.{c}"
            if c not in kinds
            else f"coalesce(p.{c}, array_fill(NULL::{kinds[c]}, ARRAY[cardinality(p.{first})]))"
        )
        return f"{c} = {mine} || EXCLUDED.{c}"

    return (
        f"WITH moved AS (DELETE FROM {partition_name(table, day)} WHERE host_id = %(host)s "
        f"AND {time} >= %(hour)s AND {time} < %(hour)s + {HOUR} RETURNING *) "
        f"INSERT INTO {PACKED[table]} AS p (host_id, hour, {', '.join(arrays)}) "
        f"SELECT %(host)s, %(hour)s, {', '.join(f'array_agg({c} ORDER BY {order})' for c in arrays)} "
        f"FROM moved HAVING count(*) > 0 "
        f"ON CONFLICT (host_id, hour) DO UPDATE SET {', '.join(appended(c) for c in arrays)} RETURNING 1"
    )


class PgPacking(PgBase):
    """Mixin of PostgresStore: packing closed days (collector.packing's thread, under the upkeep duty)."""

    _local: threading.local
    _days: set[int]
    _partitions: Callable[[str], list[int]]  # PostgresStore's
    _connect: Callable[..., psycopg.Connection]

    def _init_packing(self) -> None:
        self._todo: list[tuple[str, int, int, int]] = []  # (table, day, host_id, hour) to move, next last

    def pack(self, now: float, limit: int = 100) -> int:
        """Move up to `limit` host-hours of closed days into the packed tables, each in its own
        transaction; returns how many it went through (0: nothing left to pack)."""
        if not self._todo:
            self._plan(now)
        done = 0
        while self._todo and done < limit:
            table, day, host_id, hour = self._todo.pop()
            self._move_one(table, day, host_id, hour)
            done += 1
            if not self._todo or self._todo[-1][:2] != (table, day):
                self._finish(table, day)
                break
        return done

    def _plan(self, now: float) -> None:
        """Every host-hour of the oldest closed day not packed yet, if any."""
        for table in PACKED:
            closed = [day for day in self._partitions(table) if day + DAY + PACK_AFTER <= now]
            if closed:
                day = closed[0]
                self.db.execute(partition_ddl(PACKED[table], day))
                self.db.commit()
                hosts = [
                    host_id for (host_id,) in self.db.execute("SELECT id FROM hosts ORDER BY id").fetchall()
                ]
                # Hosts the day did not hear from cost one lookup each: cheaper than reading the day to know.
                self._todo = [(table, day, h, t) for h in hosts for t in range(day, day + DAY, HOUR)][::-1]
                if not self._todo:  # no host at all: nothing to move
                    self._finish(table, day)
                return

    def _move_one(self, table: str, day: int, host_id: int, hour: int) -> None:
        """One host-hour, in its own transaction."""
        db = self.db
        try:
            # First, the host's row lock: ingest of this host waits for the move, never the other way.
            db.execute("UPDATE hosts SET writes = writes + 1 WHERE id = %s", (host_id,))
            moved = db.execute(_move(table, day), {"host": host_id, "hour": hour}).fetchone()
        except psycopg.errors.UndefinedTable:  # retention dropped the day meanwhile
            db.rollback()
            self._todo = [item for item in self._todo if item[:2] != (table, day)]
            return
        if moved is None:
            db.rollback()  # nothing moved: every writer's memory of the host stays valid
        else:
            db.commit()

    def _finish(self, table: str, day: int) -> None:
        """Drop the emptied partition of `table` for `day`; if late rows came meanwhile, or ingest and readers
        hold it, it stays, and the next pass plans it again."""
        part = partition_name(table, day)
        db = self.db
        db.commit()
        try:
            with self._connect(autocommit=True) as conn:
                conn.execute(f"VACUUM {part}")  # truncates the emptied table: the check below reads nothing
            db.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_WAIT}'")
            db.execute(f"LOCK TABLE {table}, {part} IN ACCESS EXCLUSIVE MODE")  # ingest's order: parent first
            if db.execute(f"SELECT 1 FROM {part} LIMIT 1").fetchone() is None:
                db.execute(f"DROP TABLE {part}")
                self._days.discard(day)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.UndefinedTable):
            db.rollback()
            return
        db.commit()
