"""The ingest loop: receive snapshots on a ROUTER socket, store them in batches, ack what is committed.

Acks go out only after the batch's transaction has committed, so an agent
drops a snapshot from its spool only once it is on disk here. Bad messages
are dropped, counted, and logged at most once per peer per minute; they
never stop the loop or delay other agents.
"""

from __future__ import annotations

import logging
import resource
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import zmq

from collector import histogram
from collector.allowlist import AllowList
from collector.config import CollectorConfig
from collector.samples import Sample
from collector.snapshots import decode_received
from collector.store import Received, Store, StoreError
from osmon import keys, wire
from osmon.limits import (
    HANDSHAKE_IVL,
    HOOK_BACKOFF_MAX,
    MAX_CLOCK_AHEAD,
    MAX_FRAMES,
    MAX_MESSAGE_BYTES,
    PEER_BURST_SECONDS,
    PEERS_TRACKED,
    RCVHWM,
)
from osmon.shutdown import Shutdown

log = logging.getLogger("osmon.ingest")

HOUSEKEEPING_EVERY = 5.0  # seconds between counter flushes and retention passes
PRUNE_BUDGET = 0.05  # seconds of pruning per housekeeping pass, so ingest never stalls
TICK = 0.5  # seconds between host-down checks


class PeerLog:
    """Logs at most once per `period` seconds per peer, with the count of what was held back."""

    def __init__(self, period: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.period, self.clock = period, clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def bad(self, peer: str, reason: str) -> None:
        self.warn(peer, f"dropped a message from {peer}: {reason}")

    def warn(self, peer: str, message: str) -> None:
        now = self.clock()
        last = self._last.get(peer)
        if last is not None and now - last < self.period:
            self._suppressed[peer] += 1
            return
        more = self._suppressed.pop(peer, 0)
        self._last[peer] = now
        if len(self._last) > 10_000:  # forget old peers so the tables stay bounded
            self._last = {p: t for p, t in self._last.items() if now - t < self.period}
            self._suppressed = Counter({p: n for p, n in self._suppressed.items() if p in self._last})
        extra = f" ({more} more since the last report)" if more else ""
        log.warning("%s%s", message, extra)


class ByteBudget:
    """A token bucket of bytes per peer: what one peer may have decoded and stored per second.

    A message passes while the peer's bucket is not empty and may take it below zero (a debt
    repaid before its next one), so a message larger than the burst is delayed, never refused
    for ever. The table is bounded: past PEERS_TRACKED peers, those with a full bucket go.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, rate * PEER_BURST_SECONDS, clock
        self._buckets: dict[bytes, list[float]] = {}  # peer -> [tokens, when last filled]

    def take(self, peer: bytes, size: int) -> bool:
        """Charge `size` bytes to `peer`; False if it is over its budget (nothing charged)."""
        now = self.clock()
        bucket = self._buckets.get(peer)
        if bucket is None:
            self._forget_full(now)
            bucket = self._buckets[peer] = [self.burst, now]
        bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if bucket[0] <= 0:
            return False
        bucket[0] -= size
        return True

    def _forget_full(self, now: float) -> None:
        if len(self._buckets) < PEERS_TRACKED:
            return
        self._buckets = {
            p: b for p, b in self._buckets.items() if b[0] + (now - b[1]) * self.rate < self.burst
        }
        while len(self._buckets) >= PEERS_TRACKED:  # all in debt: a flood of peers; the oldest go
            del self._buckets[next(iter(self._buckets))]


class Ingest:
    """Receives, validates, stores and acks snapshots until shutdown."""

    def __init__(
        self,
        config: CollectorConfig,
        store: Store,
        socket: zmq.Socket,
        access: AllowList | None = None,
        on_batch: Callable[[list[Received]], object] | None = None,
        on_tick: Callable[[], object] | None = None,
        on_housekeeping: Callable[[], object] | None = None,
        upkeep: Callable[[], bool] | None = None,
    ) -> None:
        self.config, self.store, self.socket = config, store, socket
        self.access = access  # CurveZMQ allow-list: who may send for which host
        self.on_batch = on_batch  # detection, on what each batch stored
        self.on_tick = on_tick  # host-down checks, every TICK seconds
        self.on_housekeeping = on_housekeeping  # leases of duties, heartbeats
        self.upkeep = upkeep  # whether retention is this collector's duty (one of a cluster does it)
        self._next_tick = time.monotonic() + TICK
        self.counts: Counter[str] = Counter()
        self.peer_log = PeerLog()
        self.budget = ByteBudget(config.peer_rate)
        self._failures: dict[str, int] = {}  # failing passes in a row, per kind (tick, housekeeping)
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY

    def run(self, shutdown: Shutdown) -> None:
        """Serve until SIGTERM/SIGINT, then commit and ack what was received."""
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(shutdown.fd, zmq.POLLIN)
        while not shutdown.requested:
            timeout = max(0.0, min(self._next_housekeeping, self._next_tick) - time.monotonic())
            events = dict(poller.poll(round(timeout * 1000)))
            if shutdown.fd in events:
                shutdown.drain()
            if shutdown.reload_requested and self.access is not None:
                shutdown.reload_requested = False
                self.access.reload()
            if self.socket in events:
                self.receive_batch()
            if time.monotonic() >= self._next_tick:
                ok = self._guarded(self.on_tick)
                self._next_tick = time.monotonic() + self._pause("tick", ok, TICK)
            if time.monotonic() >= self._next_housekeeping:
                ok = self._guarded(self.housekeeping)
                self._next_housekeeping = time.monotonic() + self._pause(
                    "housekeeping", ok, HOUSEKEEPING_EVERY
                )
        # Whatever is already queued in the socket was sent by agents that will
        # resend it if unacked; taking it now just saves them the wait.
        self.receive_batch()
        self._guarded(self.flush_counters)
        log.info("stopped on %s", shutdown.signal_name or "request")

    def receive_batch(self) -> int:
        """Read what is waiting (up to batch_size snapshots), store it in one transaction, ack it."""
        batch: list[Received] = []
        senders: list[bytes] = []
        socket = self.socket
        # Bounded in messages too: a flood of invalid ones must not starve ticks or shutdown.
        for _ in range(self.config.batch_size):
            if len(batch) >= self.config.batch_size:
                break
            try:
                # The routing frame is kept as a Frame for its metadata (User-Id,
                # Peer-Address), shared by the whole message; snapshots come as bytes.
                sender = socket.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            accepted = self.accept(sender, self.read_message(sender))
            batch += accepted
            senders += [sender.bytes] * len(accepted)
        if batch:
            self.store_and_ack(batch, senders)
        return len(batch)

    def read_message(self, sender: zmq.Frame) -> list[bytes]:
        """The frames of one message, each kept only while the message is within MAX_FRAMES and
        MAX_MESSAGE_BYTES and its peer within its byte budget; the rest is read and let go."""
        frames: list[bytes] = []
        count = size = 0
        # Each frame says whether more follow (Frame.more): asking the socket (getsockopt(RCVMORE),
        # 0.6 us) cost more than a Frame does over bytes, and its bytes are what decoding needs.
        recv = self.socket.recv
        more = sender.more
        while more:
            part = recv(copy=False)
            more, frame = part.more, part.bytes
            count, size = count + 1, size + len(frame)
            if count <= MAX_FRAMES and size <= MAX_MESSAGE_BYTES:
                frames.append(frame)
            elif frames:
                frames.clear()  # over a limit: what was kept goes now, not after the last frame
        self.counts["received"] += count
        if count > MAX_FRAMES or size > MAX_MESSAGE_BYTES:
            limits = (
                f"{count} frames, {size} bytes in one message: at most {MAX_FRAMES} and {MAX_MESSAGE_BYTES}"
            )
            self.reject(sender, limits, count=count)
            return []
        if not self.budget.take(budget_key(sender), size):
            # Not acked: a real agent sends these again once its peer has its budget back.
            self.counts["throttled"] += count
            self.peer_log.warn(
                "budget " + peer_name(sender),
                f"{peer_name(sender)} sends more than peer_rate ({self.budget.rate:.0f} bytes/s): "
                "its messages are dropped unacked until it slows down",
            )
            return []
        return frames

    def accept(self, sender: zmq.Frame, snapshots: list[bytes]) -> list[Received]:
        """The valid, authorized snapshots of one message (a frame each); the rest counted and logged."""
        user = frame_property(sender, "User-Id") if self.access is not None else None
        now = time.time()
        accepted = []
        for data in snapshots:
            try:
                r = decode_received(data, now)
            except wire.WireError as e:
                self.reject(sender, str(e))
                continue
            if self.access is not None and (refusal := self.access.refusal(user, r.sample.host)):
                self.reject(sender, refusal, counter="unauthorized")
                continue
            if r.sample.ts > now + MAX_CLOCK_AHEAD:
                r = r._replace(sample=self.stamp_on_receipt(sender, r.sample, now))
            accepted.append(r)
        return accepted

    def stamp_on_receipt(self, sender: zmq.Frame, sample: Sample, now: float) -> Sample:
        """A snapshot from a clock running ahead, stored with the time it arrived instead.

        Stamped years ahead, it would stay the host's latest and hold every alert's `for` duration.
        """
        self.counts["clock_ahead"] += 1
        self.peer_log.warn(
            "clock " + sample.host,
            f"host {sample.host}: clock {sample.ts - now:.0f} s ahead of the collector's "
            f"(more than {MAX_CLOCK_AHEAD:.0f} s); its snapshots are stamped on receipt",
        )
        return sample._replace(ts=now)

    def reject(self, frame: zmq.Frame, reason: str, counter: str = "rejected", count: int = 1) -> None:
        self.counts[counter] += count
        self.peer_log.bad(peer_name(frame), reason)

    def store_and_ack(self, batch: list[Received], senders: list[bytes]) -> None:
        started = time.perf_counter()
        try:
            result = self.store.ingest(batch)
        except StoreError as e:
            # Nothing is acked, so the agents keep these snapshots and send them again.
            self.counts["store_errors"] += 1
            self.peer_log.warn("storage", f"a batch of {len(batch)} not stored, agents will resend: {e}")
            return
        histogram.observe(self.counts, "batch_seconds", time.perf_counter() - started)
        self.counts["stored"] += len(result.fresh)
        self.counts["duplicates"] += result.duplicates
        acks: defaultdict[bytes, list[int]] = defaultdict(list)
        for sender, r in zip(senders, batch, strict=True):
            if r.sample.host not in result.deferred:  # another collector stores it now: resent later
                acks[sender].append(r.sample.seq)
        for sender, seqs in acks.items():
            try:
                self.socket.send_multipart([sender, wire.encode_ack(seqs)], zmq.NOBLOCK)
            except zmq.Again:
                # The agent's queue is full or it went away: it resends, we dedupe.
                self.counts["acks_dropped"] += 1
        if result.fresh:
            self._guarded(self.on_batch, result.fresh)

    def _guarded(self, hook: Callable[..., object] | None, *args: object) -> bool:
        """Run a hook (detection); a storage failure there is logged, never stops ingest. False if it failed."""
        if hook is None:
            return True
        name = getattr(hook, "__name__", "a hook")
        try:
            hook(*args)
        except StoreError as e:
            self.counts["hook_errors"] += 1
            self.peer_log.warn(f"hooks {name}", f"{name} failed on storage: {e}")
            return False
        return True

    def _pause(self, what: str, ok: bool, every: float) -> float:
        """Seconds until `what` runs again: `every`, doubled after each failure in a row up to
        HOOK_BACKOFF_MAX. A full disk once made a failing pass retry in a busy loop (518k errors in 28 s)."""
        failures = 0 if ok else self._failures.get(what, 0) + 1
        self._failures[what] = failures
        return min(every * 2**failures, max(every, HOOK_BACKOFF_MAX))

    def housekeeping(self) -> None:
        """Flush self-metrics, notice changed key files, renew duties, prune expired samples a little at a time."""
        self.flush_counters()
        if self.access is not None:
            self.access.reload_if_changed()
        if self.on_housekeeping is not None:
            self.on_housekeeping()
        if self.upkeep is None or self.upkeep():
            self.prune(time.time())

    def prune(self, now: float) -> None:
        """Delete what is past its tier's retention, in small transactions, within PRUNE_BUDGET."""
        deadline = time.monotonic() + PRUNE_BUDGET
        # PostgreSQL drops whole day partitions: limits rounded down to one, never a mass DELETE.
        step = getattr(self.store, "prune_granularity", 0.0)

        def limit(keep: float) -> float:
            return now - keep - ((now - keep) % step if step else 0.0)

        while (
            time.monotonic() < deadline and self.store.prune(limit(self.config.retention_raw), 1000) == 1000
        ):
            pass
        for tier, keep in (("minute", self.config.retention_minute), ("hour", self.config.retention_hour)):
            while time.monotonic() < deadline and self.store.prune_rollups(tier, limit(keep), 1000) == 1000:
                pass

    def flush_counters(self) -> None:
        if self.counts:
            self.store.add_counters(dict(self.counts))
            self.counts.clear()


def frame_property(frame: zmq.Frame, name: str) -> str | None:
    """A ZeroMQ message property ("User-Id", "Peer-Address"), or None."""
    try:
        value = frame.get(name)
    except zmq.ZMQError:
        return None
    return str(value) if value else None


def budget_key(frame: zmq.Frame) -> bytes:
    """Whose byte budget a message spends: its CurveZMQ key (all its connections), else its connection."""
    user = frame_property(frame, "User-Id")
    return user.encode() if user else frame.bytes


def peer_name(frame: zmq.Frame) -> str:
    """The peer's authenticated name (CurveZMQ, host/key) or address, for logs."""
    user = frame_property(frame, "User-Id")
    address = frame_property(frame, "Peer-Address") or "unknown address"
    return f"{user.partition('/')[0]} at {address}" if user else address


def bind_socket(context: zmq.Context, config: CollectorConfig) -> zmq.Socket:
    """The ROUTER socket agents connect to, with the message size capped and CURVE if configured."""
    raise_descriptor_limit()
    socket = context.socket(zmq.ROUTER)
    if config.curve_secret_key:
        public, secret = keys.load_pair(config.curve_secret_key)
        socket.curve_secretkey, socket.curve_publickey = secret, public
        socket.curve_server = True
    socket.setsockopt(zmq.MAXMSGSIZE, config.max_message_size)
    socket.setsockopt(zmq.LINGER, 1000)
    socket.setsockopt(zmq.ROUTER_MANDATORY, 0)
    # Messages queued per connection: bounds what one peer can make ZeroMQ hold for it.
    socket.setsockopt(zmq.RCVHWM, RCVHWM)
    # A connection that never completes its handshake (a flood of idle TCP connections) is
    # closed after this, instead of libzmq's 30 s, so it holds its descriptor briefly.
    socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL)
    socket.bind(config.listen)
    return socket


def raise_descriptor_limit() -> None:
    """Raise the soft limit on open descriptors to the hard one: each agent holds a connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, e)
            return
    log.info("open-file limit: %d descriptors", hard)
