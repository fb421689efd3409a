"""Holding back a backlog after moving to another collector.

When a collector dies, all its agents arrive at the survivors within seconds of
each other, each with what it could not send meanwhile. Each waits a random
moment first, then replays at most `rate` snapshots a second (a token bucket
holding one second's worth), until its spool is empty; after that, snapshots
go out at once again.
"""

from __future__ import annotations

import sys

UNBOUNDED = sys.maxsize
MIN_WAIT = 0.1  # seconds between paced sends at least: a few snapshots per message, not one per wake-up


class Pace:
    """How many snapshots may go out now; unbounded unless a catch-up is being paced."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.active = False
        self.tokens = 0.0
        self.stamp = 0.0  # when the tokens were counted (in the future during the initial pause)

    def restart(self, now: float, pause: float) -> None:
        """A move with a backlog: nothing for `pause` seconds, then `rate` a second."""
        self.active, self.tokens, self.stamp = True, 0.0, now + pause

    def budget(self, now: float, backlog: bool) -> int:
        """Snapshots that may be sent now; pacing ends once nothing waits in the spool."""
        if self.active and not backlog:
            self.active = False
        if not self.active:
            return UNBOUNDED
        if now > self.stamp:
            self.tokens = min(self.tokens + (now - self.stamp) * self.rate, max(self.rate, 1.0))
            self.stamp = now
        return int(self.tokens)

    def spend(self, count: int) -> None:
        if self.active:
            self.tokens = max(0.0, self.tokens - count)

    def next_send(self, now: float, idle: float = float("inf")) -> float:
        """When the next snapshot may go (`idle` when not pacing)."""
        if not self.active:
            return idle
        start = max(now, self.stamp)
        return max(start + (1.0 - self.tokens) / self.rate, now + MIN_WAIT)
