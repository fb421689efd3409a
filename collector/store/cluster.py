"""The SQL of several collectors on one database, shared by both backends: leases, fenced alert
writes, pending breaches, heartbeats.

A lease gives one collector a subject for a while: "host:NAME" (that host's
detection and mail) or "duty:NAME" (CERT-FR polling, retention). Its `epoch`
grows each time the owner changes; every alert, pending and outbox write of a
host checks, in its own transaction, that the writer still holds the host's
lease at the epoch it took, so a collector that was frozen past its lease
writes nothing. Expiry is the database's clock, never a collector's.
SQLite runs one collector (its lock file), so there the leases always go to
it; the same statements then serve both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from collector.store.records import (
    Alert,
    AlertEvent,
    AlertUpdate,
    CollectorInfo,
    Fence,
    Leases,
    OutboxMail,
    Pending,
)

HOST = "host:"  # the subject of a host's lease
DUTY = "duty:"

_ALERT_COLUMNS = "id, host, rule, severity, started, ended, value, peak, threshold, updated"


class ClusterBook:
    """Mixin of a store's writer; needs `db`, PARAM, NOW (SQL of the database's clock in Unix
    seconds) and LOCK_LEASES (the clause that keeps checked leases until commit), and `_apply`
    (one alert event, the backend's own)."""

    PARAM = "?"
    NOW = "((julianday('now') - 2440587.5) * 86400.0)"
    LOCK_LEASES = ""  # SQLite: the write transaction (BEGIN IMMEDIATE) already excludes every other
    db: Any

    def _apply(self, e: AlertEvent) -> None:
        raise NotImplementedError

    def _q(self, statement: str) -> str:
        statement = statement.replace("{now}", self.NOW)
        return statement if self.PARAM == "?" else statement.replace("?", self.PARAM)

    # -- leases -------------------------------------------------------------------------

    def lease_take(self, owner: str, subjects: Sequence[str], ttl: float) -> Leases:
        """Take or renew the leases of `subjects` for `ttl` seconds: free, expired or already
        `owner`'s ones are granted (the epoch grows when the owner changes). Subjects in order,
        so two collectors taking overlapping sets cannot deadlock."""
        held: dict[str, int] = {}
        take = self._q(
            "INSERT INTO leases (subject, owner, epoch, expires) VALUES (?, ?, 1, {now} + ?) "
            "ON CONFLICT (subject) DO UPDATE SET owner = excluded.owner, expires = excluded.expires, "
            "epoch = CASE WHEN leases.owner = excluded.owner THEN leases.epoch ELSE leases.epoch + 1 END "
            "WHERE leases.owner = excluded.owner OR leases.expires <= {now} RETURNING epoch"
        )
        for subject in sorted(set(subjects)):
            row = self.db.execute(take, (subject, owner, ttl)).fetchone()
            if row is not None:
                held[subject] = row[0]
        others: dict[str, float] = {}
        missing = [s for s in subjects if s not in held]
        for chunk in _chunks(missing, 500):
            marks = ", ".join("?" * len(chunk))
            rows = self.db.execute(
                self._q(f"SELECT subject, expires - {{now}} FROM leases WHERE subject IN ({marks})"), chunk
            ).fetchall()
            others.update((subject, max(0.0, left)) for subject, left in rows)
        return Leases(held, others)

    def lease_release(self, owner: str) -> int:
        """End every lease of `owner` now (a clean stop: the others take over at once)."""
        return self.db.execute(
            self._q("UPDATE leases SET expires = {now} WHERE owner = ? AND expires > {now}"), (owner,)
        ).rowcount

    def _fenced(self, fence: Fence | None, hosts: set[str]) -> set[str]:
        """The hosts of `hosts` whose lease `fence` no longer holds (expired, or taken at a newer epoch).

        The leases checked stay locked until commit, so none changes owner under this write.
        """
        if fence is None or not hosts:
            return set()
        valid: set[str] = set()
        names = sorted(hosts)
        for chunk in _chunks(names, 500):
            marks = ", ".join("?" * len(chunk))
            rows = self.db.execute(
                self._q(
                    f"SELECT subject, epoch FROM leases WHERE owner = ? AND expires > {{now}} "
                    f"AND subject IN ({marks}) ORDER BY subject{self.LOCK_LEASES}"
                ),
                (fence.owner, *(HOST + h for h in chunk)),
            ).fetchall()
            valid.update(s[len(HOST) :] for s, epoch in rows if fence.epochs.get(s[len(HOST) :]) == epoch)
        return hosts - valid

    # -- fenced alert writes ------------------------------------------------------------------

    def _alerts_write(
        self,
        events: list[AlertEvent],
        updates: list[AlertUpdate],
        pending: Sequence[Pending],
        mails: Sequence[OutboxMail],
        fence: Fence | None,
    ) -> set[str]:
        """The body of alerts_apply, inside the backend's transaction; returns the hosts fenced out."""
        hosts = {e.host for e in events} | {u[0] for u in updates} | {p.host for p in pending}
        hosts |= {m.host for m in mails if m.host is not None}
        fenced = self._fenced(fence, hosts)
        for e in events:
            if e.host not in fenced:
                self._apply(e)
        rows = [
            (value, peak, at, host, rule) for host, rule, value, peak, at in updates if host not in fenced
        ]
        if rows:
            self.db.cursor().executemany(  # the cursor's: psycopg's connection has no executemany
                self._q(
                    "UPDATE alerts SET value = ?, peak = ?, updated = ? "
                    "WHERE host = ? AND rule = ? AND ended IS NULL"
                ),
                rows,
            )
        self._write_pending([p for p in pending if p.host not in fenced])
        for m in mails:
            if m.host not in fenced:
                self._queue_mail(m)
        return fenced

    def _write_pending(self, pending: Iterable[Pending]) -> None:
        for p in pending:
            if p.since is None:
                self.db.execute(self._q("DELETE FROM pending WHERE host = ? AND rule = ?"), (p.host, p.rule))
            else:
                self.db.execute(
                    self._q(
                        "INSERT INTO pending (host, rule, since, level) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (host, rule) DO UPDATE SET since = excluded.since, level = excluded.level"
                    ),
                    (p.host, p.rule, p.since, p.level),
                )

    def _queue_mail(self, m: OutboxMail) -> None:
        """Queue `m` unless a mail of the same key is already there; mark what it tells as notified."""
        mail = m.mail
        self.db.execute(
            self._q(
                "INSERT INTO outbox (created, message_id, recipients, subject, text, html, next_attempt, "
                "event_key, channel, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (event_key) DO NOTHING"
            ),
            (
                m.at,
                m.message_id,
                json.dumps(list(mail.recipients)),
                mail.subject,
                mail.text,
                mail.html,
                m.at,
                m.key,
                m.channel,
                m.payload,
            ),
        )
        if m.host is not None:
            for rule in m.notified:
                self.db.execute(
                    self._q("UPDATE alerts SET notified = ? WHERE host = ? AND rule = ? AND ended IS NULL"),
                    (m.at, m.host, rule),
                )

    def detection_state(self, hosts: Sequence[str]) -> tuple[list[Alert], list[Pending]]:
        """What a new owner of `hosts` resumes from: their active alerts and pending breaches."""
        alerts: list[Alert] = []
        pending: list[Pending] = []
        for chunk in _chunks(sorted(set(hosts)), 500):
            marks = ", ".join("?" * len(chunk))
            rows = self.db.execute(
                self._q(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE ended IS NULL AND host IN ({marks})"),
                chunk,
            ).fetchall()
            alerts += [Alert(*row) for row in rows]
            rows = self.db.execute(
                self._q(f"SELECT host, rule, since, level FROM pending WHERE host IN ({marks})"), chunk
            ).fetchall()
            pending += [Pending(*row) for row in rows]
        return alerts, pending

    # -- the collectors -----------------------------------------------------------------------

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
    ) -> None:
        """Record that collector `name` is alive (or, `stopped`, that it stopped cleanly) and how busy."""
        self.db.execute(
            self._q(
                "INSERT INTO collectors (name, address, pid, version, started, heartbeat, stopped, received, rate) "
                "VALUES (?, ?, ?, ?, ?, {now}, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "address = excluded.address, pid = excluded.pid, version = excluded.version, "
                "started = excluded.started, heartbeat = excluded.heartbeat, stopped = excluded.stopped, "
                "received = excluded.received, rate = excluded.rate"
            ),
            (name, address, pid, version, started, stopped, received, rate),
        )

    def collectors(self) -> list[CollectorInfo]:
        """Every collector that ever beat, by name, with the host leases each holds now."""
        rows = self.db.execute(
            self._q(
                "SELECT c.name, c.address, c.pid, c.version, c.started, c.heartbeat, {now} - c.heartbeat, "
                "c.stopped, (SELECT count(*) FROM leases l WHERE l.owner = c.name AND l.expires > {now} "
                f"AND l.subject LIKE '{HOST}%'), c.received, c.rate FROM collectors c ORDER BY c.name"
            )
        ).fetchall()
        return [CollectorInfo._make((*row[:7], bool(row[7]), *row[8:])) for row in rows]


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
