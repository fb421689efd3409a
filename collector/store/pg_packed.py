"""Closed hours of raw samples and minute rows, packed: one row per host and hour, each column an array.

A PostgreSQL row costs some 28 bytes of header and line pointer before its first
value, and its index entry about as much again: 8,640 raw rows and 1,440 minute
rows made a host-day 5 MB. Once an hour is over (PACK_AFTER past its end, so the
last batches and short resends are in), the packer (collector.packing, the thread
of the collector holding the upkeep duty) moves its rows host by host into
`samples_packed` and `rollup_minute_packed`, one row of arrays per host-hour,
which TOAST compresses: about a third of the bytes. The current day is packed
as it goes, so it costs little more than a closed one: only its last hour or so
is kept one row per sample.

Each move is one small transaction (`DELETE ... RETURNING` feeding the INSERT),
so a reader sees a host-hour raw or packed, never both nor neither, and ingest
never waits for more than one host-hour. After each pass the day's partition is
vacuumed, so the next hours' rows reuse the room of the moved ones: it stays
about the size of the hours not packed yet. What is left to move is read from
the partition itself (each host's oldest row of a closed hour, one index probe
per host), so a restart forgets nothing and re-plans nothing. Once the day is
over and every host-hour has moved, its emptied partition is vacuumed (which
truncates it to nothing) and dropped: no dead rows stay behind. The packed
tables are partitioned by day too, so retention drops them whole as it drops
live partitions.

Readers see both through `readable`: the live table UNION ALL the packed rows
unnested (only the columns asked for, so TOAST reads only those), the packed
rows bounded by hour.

A late snapshot of a packed hour (an agent resending a spool kept through a
long outage) is a duplicate if the host's sequence ranges hold it (hosts and
gaps, exact under the host's row lock: collector.store.sequences); otherwise it
is stored raw, in the day's partition (created again if the day was dropped), and folded into a new
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

# Seconds after an hour's end before it is packed. Batches commit within a second and agents resend
# after ack timeouts of seconds; 15 minutes also covers an agent's clock a few minutes behind or a
# short network cut, whose snapshots would otherwise come as late ones (stored raw, moved at the next
# pass: correct, but a second move of the host-hour). The hours kept raw are this plus the open one.
PACK_AFTER = 900
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
    """Mixin of PostgresStore: packing closed hours (collector.packing's thread, under the upkeep duty)."""

    _local: threading.local
    _days: set[int]
    _partitions: Callable[[str], list[int]]  # PostgresStore's
    _connect: Callable[..., psycopg.Connection]

    def _init_packing(self) -> None:
        self._todo: list[tuple[str, int, int, int]] = []  # (table, day, host_id, hour) to move, next last
        self._closed = 0  # the end of the closed hours when the plan was made

    def pack(self, now: float, limit: int = 100) -> int:
        """Move up to `limit` closed host-hours into the packed tables, each in its own transaction;
        returns how many it went through (0: nothing left to pack)."""
        if not self._todo:
            self._plan(now)
        done = 0
        while self._todo and done < limit:
            table, day, host_id, hour = self._todo.pop()
            self._move_one(table, day, host_id, hour)
            done += 1
            if not self._todo or self._todo[-1][:2] != (table, day):
                self._finish(table, day, dropped=day + DAY <= self._closed)
                break
        return done

    def _plan(self, now: float) -> None:
        """The host-hours of the oldest day holding rows of closed hours, if any; a closed day found
        empty is finished (vacuumed, dropped) on the way."""
        self._closed = closed = _hour(now - PACK_AFTER)  # hours ending by then are closed
        for table in PACKED:
            for day in self._partitions(table):
                if day >= closed:
                    break
                upto = min(day + DAY, closed)
                firsts = self._firsts(table, day, upto)
                if firsts:
                    self.db.execute(partition_ddl(PACKED[table], day))
                    self.db.commit()
                    todo = [
                        (table, day, h, t) for h, first in firsts for t in range(_hour(first), upto, HOUR)
                    ]
                    self._todo = todo[::-1]
                    return
                if day + DAY <= closed:  # emptied, its late rows moved too: only the drop is left
                    self._finish(table, day, dropped=True)

    def _firsts(self, table: str, day: int, upto: float) -> list[tuple[int, float]]:
        """(host id, time of its oldest row before `upto`) of every host with such rows in `table`'s
        partition of `day`: what is left to move, read from the rows themselves, so neither a
        restart nor a late snapshot makes the packer forget or re-plan an hour (one index probe per host)."""
        time = LAYOUTS[table].time
        try:
            return self.db.execute(
                f"SELECT h.id, f.t FROM hosts h CROSS JOIN LATERAL (SELECT {time} AS t "
                f"FROM {partition_name(table, day)} WHERE host_id = h.id AND {time} < %s "
                f"ORDER BY {time} LIMIT 1) f ORDER BY h.id",
                (upto,),
            ).fetchall()
        except psycopg.errors.UndefinedTable:  # retention dropped the day meanwhile
            self.db.rollback()
            return []
        finally:
            self.db.commit()

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

    def _finish(self, table: str, day: int, dropped: bool) -> None:
        """Vacuum `table`'s partition of `day` after its moves, so the next hours' rows reuse the space of
        the moved ones; if the day is over (`dropped`), drop the emptied partition: if late rows came
        meanwhile, or ingest and readers hold it, it stays, and the next pass plans it again."""
        part = partition_name(table, day)
        db = self.db
        db.commit()
        try:
            with self._connect(autocommit=True) as conn:
                # Not left to autovacuum: its thresholds and cost delay would let the partition grow by
                # hours of dead rows; emptied, the table is truncated and the check below reads nothing.
                conn.execute(f"VACUUM {part}")
            if not dropped:
                return
            db.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_WAIT}'")
            db.execute(f"LOCK TABLE {table}, {part} IN ACCESS EXCLUSIVE MODE")  # ingest's order: parent first
            if db.execute(f"SELECT 1 FROM {part} LIMIT 1").fetchone() is None:
                db.execute(f"DROP TABLE {part}")
                self._days.discard(day)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.UndefinedTable):
            db.rollback()
            return
        db.commit()


def _hour(t: float) -> int:
    """The start of the hour holding `t`."""
    return int(t // HOUR * HOUR)
