"""What every backend's writer keeps the same way: hosts and their sequences, the rows of samples with
their lists of entity names, and reading both back.

Each host's stored sequence numbers are first..last minus gaps (SeqRanges), kept
in memory by the writer and in the `hosts` and `gaps` tables, so that a
duplicate is recognised without an index lookup per snapshot. An agent whose
spool was deleted starts again at seq 1 under a new epoch: its numbering
restarts here instead of being taken for resends. A host's latest snapshot is
the newest by time, so neither a resend nor a wild seq can freeze it.

SQL here is written with `?` placeholders and portable statements; a backend
sets PARAM to its own placeholder ("%s" for psycopg).
"""

from __future__ import annotations

import logging
from typing import Any

from collector.samples import Sample
from collector.store.compact import (
    COLUMNS,
    pack_detail,
    pack_names,
    pack_row,
    stored_detail,
    unpack_detail,
    unpack_names,
    unpack_value,
)
from collector.store.records import HostInfo, Received
from collector.store.seqranges import SeqRanges
from osmon.limits import MAX_GAPS

log = logging.getLogger("osmon.store")

# (received, first_seq, last_seq, added, interval, latest_seq, latest_ts, host_id) for each host of a batch.
HostUpdate = tuple[float, int | None, int | None, int, float | None, int | None, float | None, int]


class SequenceBook:
    """Mixin of a store's writer; needs `db` (a DB-API connection) and PARAM."""

    PARAM = "?"
    db: Any

    def _init_book(self) -> None:
        self._host_ids: dict[str, int] = {}
        self._ranges: dict[int, SeqRanges] = {}  # hosts.first_seq/last_seq + gaps
        self._epochs: dict[int, int | None] = {}  # hosts.epoch, loaded with _ranges
        self._latest_ts: dict[int, float | None] = {}  # and hosts.latest_ts
        self._reset_logged: set[str] = set()  # hosts whose epoch-less sequence reset was logged
        self._trimmed: set[str] = set()  # hosts whose oldest gaps were forgotten (logged once)
        self._name_ids: dict[tuple[str, ...], int] = {}  # lists of entity names (compact.pack_detail) -> id
        self._names_by_id: dict[int, list[str]] = {}  # and back; rows of `names` never change

    def _forget_book(self) -> None:
        """After a rolled-back transaction: what is in memory may not be in the database."""
        self._name_ids.clear()
        self._host_ids.clear()
        self._ranges.clear()
        self._epochs.clear()
        self._latest_ts.clear()

    def _sql(self, statement: str) -> str:
        return statement if self.PARAM == "?" else statement.replace("?", self.PARAM)

    def _host_id(self, name: str, now: float) -> int:
        host_id = self._host_ids.get(name)
        if host_id is None:
            # Read first, insert only a new host: an upsert would lock the row, and wait for
            # another collector storing the host now (collectors sharing a PostgreSQL database).
            select = self._sql("SELECT id FROM hosts WHERE name = ?")
            row = (
                self.db.execute(select, (name,)).fetchone()
                or self.db.execute(
                    self._sql(
                        "INSERT INTO hosts (name, first_seen, last_seen) VALUES (?, ?, ?) "
                        "ON CONFLICT (name) DO NOTHING RETURNING id"
                    ),
                    (name, now, now),
                ).fetchone()
            )
            if row is None:  # inserted by another collector between the two statements
                row = self.db.execute(select, (name,)).fetchone()
            host_id = self._host_ids[name] = row[0]
        return host_id

    def _seq_ranges(self, host_id: int) -> SeqRanges:
        ranges = self._ranges.get(host_id)
        if ranges is None:
            first, last, self._epochs[host_id], self._latest_ts[host_id] = self.db.execute(
                self._sql("SELECT first_seq, last_seq, epoch, latest_ts FROM hosts WHERE id = ?"), (host_id,)
            ).fetchone()
            gaps = self.db.execute(
                self._sql("SELECT first, last FROM gaps WHERE host_id = ? ORDER BY first"), (host_id,)
            ).fetchall()
            ranges = self._ranges[host_id] = SeqRanges(first, last, [tuple(g) for g in gaps])
        return ranges

    def _without_duplicates(self, batch: list[Received]) -> tuple[list[Received], dict[int, list]]:
        """The snapshots not stored yet, and {host_id: [gaps before, count added]} of hosts touched."""
        fresh = []
        touched: dict[int, list] = {}
        for r in batch:
            host_id = self._host_id(r.sample.host, r.received)
            ranges = self._seq_ranges(host_id)
            if r.epoch is not None and r.epoch != self._epochs[host_id]:
                ranges = self._new_epoch(host_id, r)
                if host_id in touched:
                    touched[host_id][0] = []  # _new_epoch deleted the gap rows
            if r.sample.seq in ranges:
                self._check_silent_reset(host_id, r)
                continue
            state = touched.get(host_id)
            if state is None:
                state = touched[host_id] = [[g[:] for g in ranges.gaps], 0]
            ranges.add(r.sample.seq)
            if ranges.trim(MAX_GAPS) and r.sample.host not in self._trimmed:
                self._trimmed.add(r.sample.host)
                log.warning(
                    "host %s: more than %d ranges of missing sequence numbers, the oldest are forgotten",
                    r.sample.host,
                    MAX_GAPS,
                )
            state[1] += 1
            fresh.append(r)
        return fresh, touched

    def _check_silent_reset(self, host_id: int, r: Received) -> None:
        """Log (once per host) a stored seq arriving with a time after the host's latest snapshot: not a
        resend but an agent without an epoch (older than this version) whose spool was lost."""
        latest = self._latest_ts[host_id]
        if (
            r.epoch is None
            and latest is not None
            and r.sample.ts > latest
            and r.sample.host not in self._reset_logged
        ):
            self._reset_logged.add(r.sample.host)
            log.warning(
                "host %s: seq %d is already stored but is newer than the host's latest snapshot: its agent "
                "probably lost its spool and restarted its sequence; these snapshots are taken for "
                "duplicates until it passes seq %s (agents of this version send an epoch and are stored)",
                r.sample.host,
                r.sample.seq,
                self._ranges[host_id].last,
            )

    def _new_epoch(self, host_id: int, r: Received) -> SeqRanges:
        """A snapshot from a new agent spool: recorded, and, after another epoch, the sequence restarts.

        The agent lost its spool (reinstall, re-image) and numbers from 1 again: without this, its
        snapshots were acked and dropped as duplicates until the count passed the old maximum.
        """
        previous, ranges = self._epochs[host_id], self._ranges[host_id]
        self.db.execute(
            self._sql(
                "INSERT INTO epochs (host_id, epoch, since, first_seq, previous_last_seq) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (host_id, epoch) DO UPDATE SET since = excluded.since"
            ),
            (host_id, r.epoch, r.received, r.sample.seq, ranges.last),
        )
        self.db.execute(self._sql("UPDATE hosts SET epoch = ? WHERE id = ?"), (r.epoch, host_id))
        self._epochs[host_id] = r.epoch
        if previous is None:  # the first epoch heard of (a new host, an upgraded agent): numbering goes on
            return ranges
        log.warning(
            "host %s: sequence reset, its agent has a new spool (epoch %d); seq restarts at %d after %s; "
            "its snapshots are stored",
            r.sample.host,
            r.epoch,
            r.sample.seq,
            ranges.last,
        )
        self.db.execute(self._sql("DELETE FROM gaps WHERE host_id = ?"), (host_id,))
        ranges = self._ranges[host_id] = SeqRanges()
        return ranges

    def _sample_rows(self, fresh: list[Received]) -> list[tuple[tuple, dict]]:
        """The rows of `samples` for a batch's fresh snapshots, each with its stored detail."""
        return [self._sample_row(r) for r in fresh]

    def _sample_row(self, r: Received) -> tuple[tuple, dict]:
        """The row of `samples` for a snapshot, and its stored detail for the rollups."""
        s = r.sample
        detail = stored_detail(s.detail)
        blob = pack_detail(detail, self._names_id)
        return (self._host_ids[s.host], s.seq, s.ts, *pack_row(s), blob), detail

    def _names_id(self, names: tuple[str, ...]) -> int:
        """The id of a list of entity names, stored the first time it is seen (packed only then)."""
        name_id = self._name_ids.get(names)
        if name_id is None:
            blob = pack_names(names)
            self.db.execute(
                self._sql("INSERT INTO names (names) VALUES (?) ON CONFLICT (names) DO NOTHING"), (blob,)
            )
            name_id = self.db.execute(self._sql("SELECT id FROM names WHERE names = ?"), (blob,)).fetchone()[
                0
            ]
            self._name_ids[names] = name_id
        return name_id

    def _names(self, name_id: int) -> list[str]:
        """The list of entity names of an id (reader side)."""
        names = self._names_by_id.get(name_id)
        if names is None:
            row = self.db.execute(self._sql("SELECT names FROM names WHERE id = ?"), (name_id,)).fetchone()
            names = self._names_by_id[name_id] = unpack_names(row[0]) if row else []
        return names

    def _save_gaps(self, host_id: int, ranges: SeqRanges, before: list[list[int]]) -> None:
        """Write only the gap rows that changed since `before`: a batch usually touches one or two."""
        old, new = {tuple(g) for g in before}, {tuple(g) for g in ranges.gaps}
        cursor = self.db.cursor()
        gone = [(host_id, a) for a, _ in old - new]
        if gone:
            cursor.executemany(self._sql("DELETE FROM gaps WHERE host_id = ? AND first = ?"), gone)
        added = [(host_id, a, b) for a, b in new - old]
        if added:
            cursor.executemany(self._sql("INSERT INTO gaps (host_id, first, last) VALUES (?, ?, ?)"), added)

    def _host_updates(
        self, batch: list[Received], fresh: list[Received], touched: dict[int, list]
    ) -> tuple[list[HostUpdate], dict[int, Received]]:
        """Each host's bookkeeping row for the UPDATE of `hosts`, and its new latest snapshot; saves gaps."""
        seen: dict[int, Received] = {}
        for r in batch:
            host_id = self._host_ids[r.sample.host]
            if host_id not in seen or r.received >= seen[host_id].received:
                seen[host_id] = r
        newest: dict[int, Received] = {}
        for r in fresh:
            host_id = self._host_ids[r.sample.host]
            # By time, not seq: a resend of old data is never "latest", and neither a seq of 2**63-1
            # nor a sequence reset can freeze it (ingest keeps ts within reach of the collector's clock).
            best = newest.get(host_id)
            if (best is None or r.sample.ts >= best.sample.ts) and r.sample.ts >= (
                self._latest_ts[host_id] or 0.0
            ):
                newest[host_id] = r
        for host_id, r in newest.items():
            self._latest_ts[host_id] = r.sample.ts
        rows: list[HostUpdate] = []
        for host_id, r in seen.items():
            ranges, added = self._ranges[host_id], touched.get(host_id, (None, 0))[1]
            latest = newest.get(host_id)
            rows.append(
                (
                    r.received,
                    ranges.first,
                    ranges.last,
                    added,
                    r.interval,
                    latest.sample.seq if latest else None,
                    latest.sample.ts if latest else None,
                    host_id,
                )
            )
        for host_id, (gaps_before, _) in touched.items():
            if self._ranges[host_id].gaps != gaps_before:
                self._save_gaps(host_id, self._ranges[host_id], gaps_before)
        return rows, newest

    # -- reading back ------------------------------------------------------------------------

    def hosts(self) -> list[HostInfo]:
        """Every host with its sequence bookkeeping, by name."""
        rows = self.db.execute(
            "SELECT id, name, first_seen, last_seen, interval, latest_ts, stored, first_seq, last_seq "
            "FROM hosts ORDER BY name"
        ).fetchall()
        gaps: dict[int, list[tuple[int, int]]] = {}
        for host_id, first, last in self.db.execute(
            "SELECT host_id, first, last FROM gaps ORDER BY host_id, first"
        ):
            gaps.setdefault(host_id, []).append((first, last))
        return [
            HostInfo(
                name, first_seen, last_seen, interval, latest_ts, stored, first, last, gaps.get(host_id, [])
            )
            for host_id, name, first_seen, last_seen, interval, latest_ts, stored, first, last in rows
        ]

    def latest(self, host: str) -> bytes | None:
        """The latest full snapshot of `host`, msgpack as received."""
        row = self.db.execute(
            self._sql("SELECT snapshot FROM latest JOIN hosts ON hosts.id = host_id WHERE name = ?"), (host,)
        ).fetchone()
        return row[0] if row else None

    def seqs(self, host: str) -> list[int]:
        """Every stored sequence number of `host`, ascending."""
        return [
            seq
            for (seq,) in self.db.execute(
                self._sql(
                    "SELECT seq FROM samples JOIN hosts ON hosts.id = host_id WHERE name = ? ORDER BY seq"
                ),
                (host,),
            ).fetchall()
        ]

    def samples(self, host: str, start: float, end: float) -> list[Sample]:
        """Stored samples of `host` with start <= ts < end, oldest first."""
        rows = self.db.execute(
            self._sql(
                f"SELECT seq, ts, {', '.join(COLUMNS)}, detail FROM samples "
                "WHERE host_id = (SELECT id FROM hosts WHERE name = ?) AND ts >= ? AND ts < ? ORDER BY ts"
            ),
            (host, start, end),
        ).fetchall()
        return [
            Sample(
                host,
                row[0],
                row[1],
                tuple(unpack_value(c, v) for c, v in zip(COLUMNS, row[2:-1], strict=True)),
                unpack_detail(row[-1], self._names),
            )
            for row in rows
        ]
