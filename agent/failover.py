"""Which collector the agent talks to now: home while it answers, the next one when it stops.

The agent has one connection at a time, to one endpoint of its preference order
(agent.rendezvous: home first). It moves to the next endpoint when the current one
makes no progress for `failover_after(ack_timeout)` (osmon.timing): snapshots wait
and no ack comes, or no ZMTP handshake succeeds. Away from home, it asks every
HOME_CHECK seconds whether home answers again, with a probe socket of its own that
only shakes hands (with CurveZMQ when configured, so success means the collector
process itself is alive and accepts this agent), and goes back when it does.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import zmq

from agent.ackwatch import human
from agent.link import Link, monitor_event
from osmon.timing import failover_after
from osmon.words import plural

log = logging.getLogger("osmon.agent")

HOME_CHECK = 30.0  # seconds between probes of the home collector while away from it (+-25 %)
# A home that shakes hands but acks nothing (its database is down, say) is left again after
# each return; each such return doubles the probe period, up to this, until home acks again.
HOME_CHECK_MAX = 300.0

_PROBE_EVENTS: dict[int, bool] = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED: True,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: False,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: False,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: False,
}


class HomeProbe:
    """A short-lived DEALER to the home collector that sends nothing: does its handshake succeed?"""

    def __init__(self, link: Link, endpoint: str, deadline: float) -> None:
        self.deadline = deadline
        self.socket = link.dealer()
        mask = 0
        for event in _PROBE_EVENTS:
            mask |= event
        self.monitor = self.socket.get_monitor_socket(mask)
        self.socket.connect(endpoint)

    def answered(self, now: float) -> bool | None:
        """True once the handshake succeeded, False if it failed or took too long, None meanwhile."""
        while True:
            try:
                event = monitor_event(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return False if now >= self.deadline else None
            if event in _PROBE_EVENTS:
                return _PROBE_EVENTS[event]

    def close(self) -> None:
        self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)


class Failover:
    """Decides when to leave the current collector and where to go; the agent does the moving."""

    def __init__(
        self, link: Link, order: tuple[str, ...], ack_timeout: float, pending: Callable[[], int], now: float
    ) -> None:
        self.link, self.order, self.pending = link, order, pending
        self.after = failover_after(ack_timeout)
        self.since = now  # the last moment the connection was known good (or the start)
        self.last_ack = now
        self.probe: HomeProbe | None = None
        self.next_probe = float("inf")
        self.tried: set[str] = set()  # endpoints left since the last ack
        self.quiet = False  # every endpoint tried without an ack: moves are logged at debug level
        self.period = HOME_CHECK  # read here, not at import: a test may shorten it
        self.returned = False  # back home through a probe, and no ack from home since

    @property
    def home(self) -> str:
        return self.order[0]

    def good(self, now: float) -> None:
        """The connection made progress (an ack; or it is up and nothing waits)."""
        self.since = max(self.since, now)

    def acked(self, now: float) -> None:
        if self.quiet:
            log.info(
                "collector %s acknowledges, after %s without an ack from any; %s still to send",
                self.link.endpoint,
                human(now - self.last_ack),
                plural(self.pending(), "snapshot"),
            )
        self.good(now)
        self.last_ack = now
        self.tried.clear()
        self.quiet = False
        if self.link.endpoint == self.home:
            self.period, self.returned = HOME_CHECK, False

    def target(self, now: float) -> str | None:
        """The endpoint to move to now, if any (and logs why)."""
        if len(self.order) == 1:
            return None  # nowhere else to go: ZeroMQ reconnects by itself, the spool keeps everything
        current = self.link.endpoint
        if now - self.since >= self.after:
            if self.returned:  # home answered the probe, then acked nothing: wait longer next time
                self.period, self.returned = min(2 * self.period, HOME_CHECK_MAX), False
            following = self.order[(self.order.index(current) + 1) % len(self.order)]
            self._log_failover(current, following, self._why(now))
            return following
        if self.probe is None and now >= self.next_probe:
            self.probe = HomeProbe(self.link, self.home, now + self.after)
        if self.probe is not None and (answered := self.probe.answered(now)) is not None:
            self._close_probe(now)
            if answered:
                log.info("home collector %s answers again: moving back from %s", self.home, current)
                self.returned = True
                return self.home
        return None

    def _why(self, now: float) -> str:
        silent = human(now - self.since)
        if not self.link.handshaken:
            return f"no handshake within {silent}"
        if not self.link.connected:
            return f"connection lost for {silent}"
        return f"no ack for {silent} while {plural(self.pending(), 'snapshot')} wait"

    def _log_failover(self, current: str, following: str, why: str) -> None:
        self.tried.add(current)
        if self.quiet:
            log.debug("collector %s: %s; trying %s", current, why, following)
            return
        if len(self.tried) >= len(self.order):
            self.quiet = True
            log.warning(
                "no collector acknowledges (%s, last %s: %s); trying them in turn, %s each; "
                "snapshots stay in the spool",
                ", ".join(self.order),
                current,
                why,
                human(self.after),
            )
            return
        rank = self.order.index(following) + 1
        log.warning(
            "collector %s: %s; failing over to %s (%d of %d in this host's order)",
            current,
            why,
            following,
            rank,
            len(self.order),
        )

    def moved(self, now: float, pause: float) -> None:
        """The link now goes to another endpoint; its clock starts once the paced replay may begin."""
        self.since = now + pause
        self._close_probe(now)

    def _close_probe(self, now: float) -> None:
        if self.probe is not None:
            self.probe.close()
            self.probe = None
        away = self.link.endpoint != self.home
        self.next_probe = now + self.period * random.uniform(0.75, 1.25) if away else float("inf")

    def next_check(self) -> float:
        """When `target` has something to decide next (monotonic time)."""
        if len(self.order) == 1:
            return float("inf")
        probe = self.probe.deadline if self.probe is not None else self.next_probe
        return min(self.since + self.after, probe)

    def close(self) -> None:
        if self.probe is not None:
            self.probe.close()
            self.probe = None
