"""The SQL of alerts: their rows, their history of severity changes, and silences."""

from __future__ import annotations

from collections.abc import Sequence

from collector.store.cluster import ClusterBook
from collector.store.connected import Connected
from collector.store.records import Alert, AlertEvent, AlertUpdate, Fence, OutboxMail, Pending, Silence

_ALERT_COLUMNS = "id, host, rule, severity, started, ended, value, peak, threshold, updated"


class AlertQueries(ClusterBook, Connected):
    """Mixin of SQLiteStore: every statement about alerts and silences."""

    def alerts_active(self) -> list[Alert]:
        """Alerts that have not ended, by host then rule."""
        rows = self.db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE ended IS NULL ORDER BY host, rule"
        ).fetchall()
        return [Alert(*row) for row in rows]

    def alerts_since(self, ended_after: float) -> list[Alert]:
        """Active alerts, and those that ended at or after `ended_after`, by host then rule (what
        Alertmanager is told: it keeps a resolution only if told it again for a while)."""
        rows = self.db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE ended IS NULL OR ended >= ? ORDER BY host, rule, id",
            (ended_after,),
        ).fetchall()
        return [Alert(*row) for row in rows]

    def alerts_history(self, host: str | None = None, limit: int = 100) -> list[Alert]:
        """The most recent alerts, active or not, newest first."""
        where, args = ("WHERE host = ?", (host, limit)) if host else ("", (limit,))
        rows = self.db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts {where} ORDER BY started DESC, id DESC LIMIT ?", args
        ).fetchall()
        return [Alert(*row) for row in rows]

    def alert_events(self, alert_id: int) -> list[tuple[float, str, str, float | None]]:
        """(ts, kind, severity, value) of one alert, oldest first."""
        return self.db.execute(
            "SELECT ts, kind, severity, value FROM alert_events WHERE alert_id = ? ORDER BY ts, rowid",
            (alert_id,),
        ).fetchall()

    def alerts_apply(
        self,
        events: list[AlertEvent],
        updates: list[AlertUpdate],
        pending: Sequence[Pending] = (),
        mails: Sequence[OutboxMail] = (),
        fence: Fence | None = None,
    ) -> set[str]:
        """Record events, refreshes of active alerts, pending breaches and the mails telling of
        them, in one transaction; with a `fence`, only for hosts whose lease it still holds.
        Returns the hosts fenced out (nothing of theirs written)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            fenced = self._alerts_write(events, updates, pending, mails, fence)
            self.db.execute("COMMIT")
        except BaseException:
            # Only if still open: a failed COMMIT (disk full) may have ended it, and an unconditional
            # ROLLBACK then raised "no transaction is active", hiding the real error.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        return fenced

    def _apply(self, e: AlertEvent) -> None:
        if e.kind == "fired":
            row = self.db.execute(
                "INSERT INTO alerts (host, rule, severity, started, value, peak, threshold, updated, processes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    e.host,
                    e.rule,
                    e.severity,
                    e.started or e.ts,
                    e.value,
                    e.value,
                    e.threshold,
                    e.ts,
                    e.processes,
                ),
            ).fetchone()
            alert_id = row[0]
        else:
            row = self.db.execute(
                "SELECT id FROM alerts WHERE host = ? AND rule = ? AND ended IS NULL", (e.host, e.rule)
            ).fetchone()
            if row is None:
                return  # nothing active to change (e.g. resolved by another path)
            alert_id = row[0]
            if e.kind == "resolved":
                self.db.execute(
                    "UPDATE alerts SET ended = ?, updated = ? WHERE id = ?", (e.ts, e.ts, alert_id)
                )
            elif e.kind in ("escalated", "deescalated"):
                self.db.execute(
                    "UPDATE alerts SET severity = ?, threshold = ?, updated = ? WHERE id = ?",
                    (e.severity, e.threshold, e.ts, alert_id),
                )
        self.db.execute(
            "INSERT INTO alert_events (alert_id, ts, kind, severity, value) VALUES (?, ?, ?, ?, ?)",
            (alert_id, e.ts, e.kind, e.severity, e.value),
        )

    def alert_notified(self, host: str, rule: str, when: float) -> None:
        """Record that the active alert (host, rule) was just mailed."""
        self.db.execute(
            "UPDATE alerts SET notified = ? WHERE host = ? AND rule = ? AND ended IS NULL", (when, host, rule)
        )

    def alert_was_notified(self, host: str, rule: str) -> bool:
        """Whether the latest alert (host, rule) was ever mailed."""
        row = self.db.execute(
            "SELECT notified FROM alerts WHERE host = ? AND rule = ? ORDER BY id DESC LIMIT 1", (host, rule)
        ).fetchone()
        return bool(row and row[0] is not None)

    def alerts_due_reminder(self, now: float, repeat: float) -> list[Alert]:
        """Active, already mailed alerts whose last mail is older than `repeat`."""
        rows = self.db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE ended IS NULL AND notified IS NOT NULL "
            "AND notified <= ? ORDER BY host, rule",
            (now - repeat,),
        ).fetchall()
        return [Alert(*row) for row in rows]

    def silence(self, host: str, until: float, reason: str, now: float) -> None:
        """Silence `host`'s mail until `until` (alerts are still recorded)."""
        self.db.execute(
            "INSERT INTO silences (host, until, reason, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(host) DO UPDATE SET until = excluded.until, reason = excluded.reason, created = excluded.created",
            (host, until, reason, now),
        )

    def unsilence(self, host: str) -> bool:
        """Lift a silence; False if there was none."""
        return self.db.execute("DELETE FROM silences WHERE host = ?", (host,)).rowcount > 0

    def silences(self, now: float) -> list[Silence]:
        """Silences still in force."""
        rows = self.db.execute(
            "SELECT host, until, reason, created FROM silences WHERE until > ? ORDER BY host", (now,)
        ).fetchall()
        return [Silence(*row) for row in rows]

    def alert_processes(self, host: str, at: float) -> tuple[str, float, str] | None:
        """(rule, when it fired, top processes JSON) of `host`'s alert going on at `at` that kept them
        (the latest such alert to have started by then)."""
        row = self.db.execute(
            "SELECT rule, started, processes FROM alerts WHERE host = ? AND started <= ? "
            "AND (ended IS NULL OR ended >= ?) AND processes IS NOT NULL ORDER BY started DESC, id DESC LIMIT 1",
            (host, at, at),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])
