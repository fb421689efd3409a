"""The SQL of the outbox (mail and webhook deliveries) on PostgreSQL: mail waits here until an SMTP server has accepted it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from collector.store.pg_base import PgBase, one
from collector.store.records import GAVE_UP, OutboxMessage

if TYPE_CHECKING:
    from collector.mail import Mail


_NOW = "extract(epoch from clock_timestamp())"  # the database's clock, Unix seconds
_COLUMNS = (
    "id, created, message_id, recipients, subject, text, html, attempts, next_attempt, last_error, sent, "
    "channel, payload"
)


def _message(row: tuple) -> OutboxMessage:
    return OutboxMessage._make((*row[:3], json.loads(row[3]), *row[4:]))


class PgOutboxQueries(PgBase):
    """Mixin of PostgresStore: every statement about the outbox."""

    path: str

    def outbox_add(self, mail: Mail, message_id: str, now: float, key: str | None = None) -> int:
        """Store a mail to send, due at once; returns its id. With a `key` (the event it reports),
        a mail of the same key already queued is kept instead, and its id returned."""
        row = self.db.execute(
            "INSERT INTO outbox (created, message_id, recipients, subject, text, html, next_attempt, event_key) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_key) DO NOTHING RETURNING id",
            (
                now,
                message_id,
                json.dumps(list(mail.recipients)),
                mail.subject,
                mail.text,
                mail.html,
                now,
                key,
            ),
        ).fetchone()
        if row is None:
            row = self.db.execute("SELECT id FROM outbox WHERE event_key = %s", (key,)).fetchone()
        return one(row)

    def outbox_get(self, message: int) -> OutboxMessage | None:
        """One mail by id, sent or not."""
        row = self.db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = %s", (message,)).fetchone()
        return None if row is None else _message(row)

    def outbox_due(self, now: float, limit: int = 100) -> list[OutboxMessage]:
        """Unsent mail whose next attempt is due, longest waiting first."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE sent IS NULL AND next_attempt <= %s "
            "ORDER BY next_attempt, id LIMIT %s",
            (now, limit),
        ).fetchall()
        return [_message(row) for row in rows]

    def outbox_claim(
        self, owner: str, now: float, hold: float, limit: int = 100, channels: Sequence[str] | None = None
    ) -> list[OutboxMessage]:
        """Claim up to `limit` due mails for `hold` seconds (the database's clock) and return them.

        Another sender skips claimed mail, so each goes out once; a sender that died with a claim
        leaves the mail to the others once the claim lapses (sent again under the same Message-ID),
        and to itself at once when it starts again under the same name: its one sender is not
        sending anything now.
        With `channels`, only messages of those channels (a sender claims what it can deliver).
        """
        only, args = "", ()  # type: tuple[str, tuple[str, ...]]
        if channels is not None:
            if not channels:
                return []
            only, args = f" AND channel IN ({', '.join(['%s'] * len(channels))})", tuple(channels)
        rows = self.db.execute(
            f"UPDATE outbox SET claimed_by = %s, claim_until = {_NOW} + %s WHERE id IN ("
            f"SELECT id FROM outbox WHERE sent IS NULL AND next_attempt <= %s "
            f"AND (claim_until IS NULL OR claim_until <= {_NOW} OR claimed_by = %s){only} "
            f"ORDER BY next_attempt, id LIMIT %s FOR UPDATE SKIP LOCKED"
            f") RETURNING {_COLUMNS}",
            (owner, hold, now, owner, *args, limit),
        ).fetchall()
        return sorted((_message(row) for row in rows), key=lambda m: (m.next_attempt, m.id))

    def outbox_sent(self, message: int, now: float, note: str | None = None) -> None:
        """Record that a server accepted the mail (`note`: recipients it refused, if any)."""
        self.db.execute(
            "UPDATE outbox SET sent = %s, attempts = attempts + 1, last_error = coalesce(%s, last_error), claim_until = NULL "
            "WHERE id = %s",
            (now, note, message),
        )

    def outbox_failed(self, message: int, error: str, next_attempt: float | None) -> None:
        """Record a failed attempt; `next_attempt` None gives the mail up."""
        self.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = %s, next_attempt = %s, claim_until = NULL "
            "WHERE id = %s",
            (error, GAVE_UP if next_attempt is None else next_attempt, message),
        )

    def outbox_recent(self, limit: int = 50) -> list[OutboxMessage]:
        """The latest mail, sent, waiting or given up on, newest first (the dashboard's outbox)."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM outbox ORDER BY id DESC LIMIT %s", (limit,)
        ).fetchall()
        return [_message(row) for row in rows]

    def outbox_size(self) -> int:
        """Mail still waiting to be sent (not counting mail given up on)."""
        return one(
            self.db.execute(
                "SELECT count(*) FROM outbox WHERE sent IS NULL AND next_attempt < %s", (GAVE_UP,)
            ).fetchone()
        )

    def outbox_states(self) -> dict[str, int]:
        """Messages per state: queued (waiting or retrying), sent, gave_up (every state present)."""
        row = self.db.execute(
            "SELECT count(*) FILTER (WHERE sent IS NULL AND next_attempt < %(gave_up)s), "
            "count(*) FILTER (WHERE sent IS NOT NULL), "
            "count(*) FILTER (WHERE sent IS NULL AND next_attempt = %(gave_up)s) FROM outbox",
            {"gave_up": GAVE_UP},
        ).fetchone()
        assert row is not None
        return {"queued": row[0], "sent": row[1], "gave_up": row[2]}

    def outbox_prune(self, before: float) -> int:
        """Forget mail sent, or given up on, before `before`; returns how many rows went."""
        return self.db.execute(
            "DELETE FROM outbox WHERE sent < %s OR (sent IS NULL AND next_attempt = %s AND created < %s)",
            (before, GAVE_UP, before),
        ).rowcount

    def outbox_waiting(self) -> dict[str, int]:
        """Messages waiting to be delivered, per channel (only the channels that have some)."""
        rows = self.db.execute(
            "SELECT channel, count(*) FROM outbox WHERE sent IS NULL AND next_attempt < %s GROUP BY channel",
            (GAVE_UP,),
        ).fetchall()
        return {channel: count for channel, count in rows}

    def outbox_expire(self, created_before: float, reason: str) -> dict[str, int]:
        """Give up the messages queued before `created_before` that no sender holds; per channel, how many.

        The last error of an attempt, if any, stays: it says more than `reason`. Rows a sender has
        claimed are skipped, not waited for.
        """
        rows = self.db.execute(
            "WITH old AS (SELECT id FROM outbox WHERE sent IS NULL AND next_attempt < %(gave_up)s "
            f"AND created < %(before)s AND (claim_until IS NULL OR claim_until <= {_NOW}) FOR UPDATE SKIP LOCKED) "
            "UPDATE outbox SET next_attempt = %(gave_up)s, last_error = coalesce(last_error, %(reason)s) "
            "FROM old WHERE outbox.id = old.id RETURNING outbox.channel",
            {"gave_up": GAVE_UP, "before": created_before, "reason": reason},
        ).fetchall()
        return dict(Counter(row[0] for row in rows))
