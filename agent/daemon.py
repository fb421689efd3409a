"""The agent's loop: a snapshot every interval into the spool, the spool out to the collector.

Snapshots leave the spool only when the collector acks them. Up to
`in_flight` are on the wire at once; one not acked within `ack_timeout`, or
still unacked when a connection reopens, is sent again (the collector keeps
each (host, seq) once, so a resend is harmless).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import zmq

from agent import kernel
from agent.ackwatch import AckWatch
from agent.config import AgentConfig
from agent.failover import Failover
from agent.link import Link
from agent.pace import Pace
from agent.spool import Spool
from osmon import __version__, wire
from osmon.shutdown import Shutdown
from osmon.timing import replay_jitter
from osmon.words import plural

log = logging.getLogger("osmon.agent")

STOP_GRACE = 1.0  # seconds to wait for acks of what is in flight when stopping
# Snapshots per message when catching up after an outage: one frame each, so the
# collector's per-snapshot size cap still applies, with one receive per batch.
SEND_BATCH = 64


class Agent:
    """Collects on a fixed cadence and keeps the collector up to date with the spool."""

    def __init__(self, config: AgentConfig, sampler: Any, spool: Spool, link: Link) -> None:
        self.config, self.sampler, self.spool, self.link = config, sampler, spool, link
        self.in_flight: dict[int, float] = {}  # seq -> when it was last sent
        self.highest_sent = 0
        # Three missed acks, or two intervals for a slow agent: long enough not to cry wolf at a restart.
        after = max(3 * config.ack_timeout, 2 * config.interval)
        now = time.monotonic()
        self.watch = AckWatch(link.endpoint, after, spool.pending_count, now)
        self.failover = Failover(link, config.collectors, config.ack_timeout, spool.pending_count, now)
        # The backlog shrinks by replay_rate a second, whatever the agent's own cadence.
        self.pace = Pace(config.replay_rate + 1 / config.interval)
        self.poller = zmq.Poller()

    def collect(self) -> int:
        """Take a snapshot and spool it; returns its sequence number."""
        probes, errors = self.sampler.sample()
        seq = self.spool.append(
            lambda seq: wire.encode_snapshot(
                self.config.host,
                seq,
                time.time(),
                self.config.interval,
                __version__,
                probes,
                errors,
                epoch=self.spool.epoch,
            )
        )
        log.debug("snapshot %d spooled (%d probes, %d errors)", seq, len(probes), len(errors))
        return seq

    def transmit(self, now: float) -> None:
        """Resend what timed out, then send new snapshots while the window (and the pace) has room."""
        if not self.link.connected:
            return  # nothing can go out; the reconnect event sends everything in flight again
        budget = self.pace.budget(now, self.spool.size > 0)
        due = []
        for seq in [s for s, sent in self.in_flight.items() if now - sent >= self.config.ack_timeout]:
            body = self.spool.get(seq)
            if body is None:  # acked meanwhile, or dropped from a full spool
                del self.in_flight[seq]
            else:
                due.append((seq, body))
        due = due[:budget]
        sent = self._send(due, now)
        self.pace.spend(len(due))
        room = min(self.config.in_flight - len(self.in_flight), budget - len(due))
        # Most wake-ups (an ack, a tick of the pace) find nothing newer than what went out: no query.
        if sent and room > 0 and self.highest_sent < self.spool.last_seq:
            fresh = self.spool.after(self.highest_sent, room)
            if self._send(fresh, now) and fresh:
                self.highest_sent = fresh[-1][0]
            self.pace.spend(len(fresh))

    def move(self, endpoint: str, now: float) -> None:
        """Leave the current collector for `endpoint`: one connection, to one collector, at a time."""
        self.poller.unregister(self.link.socket)
        self.poller.unregister(self.link.monitor)
        self.link.move(endpoint)
        self.poller.register(self.link.socket, zmq.POLLIN)
        self.poller.register(self.link.monitor, zmq.POLLIN)
        # What the old collector did not ack goes again, from the spool, to the new one (it may
        # have been stored there already: storage keeps each (host, seq) once).
        self.in_flight.clear()
        self.highest_sent = 0
        pause = 0.0
        if self.spool.size > 0:
            # The dead collector's other agents arrive now too: a random pause, then a paced replay.
            pause = random.uniform(0, replay_jitter(self.config.ack_timeout))
            self.pace.restart(now, pause)
        self.failover.moved(now, pause)
        self.watch.moved(endpoint, now + pause)

    def _send(self, snapshots: list[tuple[int, bytes]], now: float) -> bool:
        """Send in messages of up to SEND_BATCH snapshots; False once the link takes no more."""
        for i in range(0, len(snapshots), SEND_BATCH):
            chunk = snapshots[i : i + SEND_BATCH]
            if not self.link.send([body for _, body in chunk]):
                # Whatever was due waits a full ack_timeout again: no busy retry loop.
                for seq, _ in snapshots[i:]:
                    if seq in self.in_flight:
                        self.in_flight[seq] = now
                return False
            for seq, _ in chunk:
                self.in_flight[seq] = now
                self.highest_sent = max(self.highest_sent, seq)
        return True

    def receive(self) -> None:
        """Apply acks and connection events."""
        acked = self.link.acks()
        if acked:
            self.spool.ack(acked)
            for seq in acked:
                self.in_flight.pop(seq, None)
            now = time.monotonic()
            self.watch.acked(now)
            self.failover.acked(now)
        if self.link.connection_events():
            # Whatever was on the old connection may be gone with it: send it again now.
            self.in_flight = dict.fromkeys(self.in_flight, float("-inf"))

    def next_resend(self, now: float) -> float:
        if not self.in_flight or not self.link.connected:
            return float("inf")
        # While a replay is paced, what is due waits for the pace (no busy loop meanwhile).
        return max(min(self.in_flight.values()) + self.config.ack_timeout, self.pace.next_send(now, 0.0))

    def run(self, shutdown: Shutdown) -> None:
        """Serve until SIGTERM/SIGINT."""
        self.highest_sent = 0
        poller = self.poller
        poller.register(self.link.socket, zmq.POLLIN)
        poller.register(self.link.monitor, zmq.POLLIN)
        poller.register(shutdown.fd, zmq.POLLIN)
        next_tick = time.monotonic()
        first = True
        while not shutdown.requested:
            now = time.monotonic()
            if now >= next_tick:
                self.collect()
                if first:  # everything start-up allocates is in place, or freed: hand the holes back
                    first = False
                    kernel.trim_heap()
                # Keep a fixed cadence; after a stall (suspend), skip rather than burst.
                next_tick = max(next_tick + self.config.interval, now)
            self.link.retry(now)
            if self.link.connected and self.spool.size == 0:
                self.failover.good(now)
            if (endpoint := self.failover.target(now)) is not None:
                self.move(endpoint, now)
            self.transmit(now)
            self.watch.check(now)
            wake = min(
                next_tick,
                self.next_resend(now),
                self.link.retry_at or now + 1.0,
                self.failover.next_check(),
                self.pace.next_send(now),
                now + 1.0,
            )
            wait = wake - time.monotonic()
            events = dict(poller.poll(round(max(0.0, wait) * 1000)))
            if shutdown.fd in events:
                shutdown.drain()
            self.receive()
        self._finish()
        self.failover.close()
        waiting = plural(self.spool.pending_count(), "snapshot")
        log.info("stopped on %s; %s wait in the spool", shutdown.signal_name, waiting)

    def _finish(self) -> None:
        """Give acks of in-flight snapshots a moment; the spool keeps the rest for next time."""
        deadline = time.monotonic() + STOP_GRACE
        while self.in_flight and self.link.connected and time.monotonic() < deadline:
            if self.link.socket.poll(50, zmq.POLLIN):
                self.receive()
