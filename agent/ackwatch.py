"""Telling the operator when the collector stops acknowledging, once, and when it is back.

An agent whose collector is down keeps working (the spool holds everything);
what it must not do is stay silent about it for minutes. One warning when no
ack came for `after` seconds while snapshots wait, one line when acks resume.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from osmon.words import plural

log = logging.getLogger("osmon.agent")


def human(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class AckWatch:
    """Watches the time since the last ack; `pending` counts the snapshots in the spool."""

    def __init__(self, endpoint: str, after: float, pending: Callable[[], int], now: float) -> None:
        self.endpoint, self.after, self.pending = endpoint, after, pending
        self.last_ack = now  # the start counts as an ack: a fresh agent gets the full delay
        self.warned = False

    def acked(self, now: float) -> None:
        """An ack arrived."""
        if self.warned:
            log.info(
                "collector %s acknowledges again after %s; %s still to send",
                self.endpoint,
                human(now - self.last_ack),
                plural(self.pending(), "snapshot"),
            )
            self.warned = False
        self.last_ack = now

    def moved(self, endpoint: str, now: float) -> None:
        """The agent talks to another collector now: it gets the full delay, as at the start.

        With several collectors, a move comes before this warning would (osmon.timing), and
        agent.failover says when none of them acknowledges.
        """
        self.endpoint = endpoint
        if not self.warned:
            self.last_ack = max(self.last_ack, now)

    def check(self, now: float) -> None:
        """Warn once when nothing was acked for `after` seconds and snapshots wait."""
        if self.warned or now - self.last_ack < self.after:
            return
        waiting = self.pending()
        if waiting == 0:
            return  # nothing sent, nothing to ack (an agent whose every snapshot was acked)
        log.warning(
            "collector %s has acknowledged nothing for %s; %s wait in the spool (kept until it is back)",
            self.endpoint,
            human(now - self.last_ack),
            plural(waiting, "snapshot"),
        )
        self.warned = True
