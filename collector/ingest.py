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

from collector.allowlist import AllowList
from collector.config import CollectorConfig
from collector.samples import extract
from collector.store import Received, Store, StoreError
from osmon import keys, wire
from osmon.shutdown import Shutdown

log = logging.getLogger("osmon.ingest")

HOUSEKEEPING_EVERY = 5.0  # seconds between counter flushes and retention passes
PRUNE_BUDGET = 0.05  # seconds of pruning per housekeeping pass, so ingest never stalls
TICK = 0.5  # seconds between host-down checks
MAX_FRAMES = 1000  # snapshots in one message, at most (agents send up to 64)
HANDSHAKE_IVL = 10_000  # ms a connection may take to finish its ZMTP/CURVE handshake before it is closed


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
    ) -> None:
        self.config, self.store, self.socket = config, store, socket
        self.access = access  # CurveZMQ allow-list: who may send for which host
        self.on_batch = on_batch  # detection, on what each batch stored
        self.on_tick = on_tick  # host-down checks, every TICK seconds
        self._next_tick = time.monotonic() + TICK
        self.counts: Counter[str] = Counter()
        self.peer_log = PeerLog()
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY

    def run(self, shutdown: Shutdown) -> None:
        """Serve until SIGTERM/SIGINT, then commit and ack what was received."""
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(shutdown.fd, zmq.POLLIN)
        while not shutdown.requested:
            timeout = max(0.0, min(self._next_housekeeping, self._next_tick) - time.monotonic())
            events = dict(poller.poll(timeout * 1000))
            if shutdown.fd in events:
                shutdown.drain()
            if shutdown.reload_requested and self.access is not None:
                shutdown.reload_requested = False
                self.access.reload()
            if self.socket in events:
                self.receive_batch()
            if time.monotonic() >= self._next_tick:
                self._next_tick = time.monotonic() + TICK
                self._guarded(self.on_tick)
            if time.monotonic() >= self._next_housekeeping:
                self._guarded(self.housekeeping)
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
            snapshots = []
            while socket.rcvmore:
                snapshots.append(socket.recv())
            identity = sender.bytes
            for received in self.accept(sender, snapshots):
                batch.append(received)
                senders.append(identity)
        if batch:
            self.store_and_ack(batch, senders)
        return len(batch)

    def accept(self, sender: zmq.Frame, snapshots: list[bytes]) -> list[Received]:
        """The valid, authorized snapshots of one message (a frame each); the rest counted and logged."""
        self.counts["received"] += len(snapshots)
        if len(snapshots) > MAX_FRAMES:
            self.reject(
                sender,
                f"{len(snapshots)} snapshots in one message, more than {MAX_FRAMES}",
                count=len(snapshots),
            )
            return []
        user = frame_property(sender, "User-Id") if self.access is not None else None
        now = time.time()
        accepted = []
        for data in snapshots:
            try:
                snapshot = wire.decode_snapshot(data)
            except wire.WireError as e:
                self.reject(sender, str(e))
                continue
            if self.access is not None and (refusal := self.access.refusal(user, snapshot.host)):
                self.reject(sender, refusal, counter="unauthorized")
                continue
            accepted.append(Received(extract(snapshot), data, snapshot.interval, now))
        return accepted

    def reject(self, frame: zmq.Frame, reason: str, counter: str = "rejected", count: int = 1) -> None:
        self.counts[counter] += count
        self.peer_log.bad(peer_name(frame), reason)

    def store_and_ack(self, batch: list[Received], senders: list[bytes]) -> None:
        try:
            result = self.store.ingest(batch)
        except StoreError as e:
            # Nothing is acked, so the agents keep these snapshots and send them again.
            self.counts["store_errors"] += 1
            self.peer_log.warn("storage", f"a batch of {len(batch)} not stored, agents will resend: {e}")
            return
        self.counts["stored"] += len(result.fresh)
        self.counts["duplicates"] += result.duplicates
        acks: defaultdict[bytes, list[int]] = defaultdict(list)
        for sender, r in zip(senders, batch, strict=True):
            acks[sender].append(r.sample.seq)
        for sender, seqs in acks.items():
            try:
                self.socket.send_multipart([sender, wire.encode_ack(seqs)], zmq.NOBLOCK)
            except zmq.Again:
                # The agent's queue is full or it went away: it resends, we dedupe.
                self.counts["acks_dropped"] += 1
        if result.fresh:
            self._guarded(self.on_batch, result.fresh)

    def _guarded(self, hook: Callable[..., object] | None, *args: object) -> None:
        """Run a hook (detection); a storage failure there is logged, never stops ingest."""
        if hook is None:
            return
        try:
            hook(*args)
        except StoreError as e:
            self.counts["hook_errors"] += 1
            self.peer_log.warn("hooks", f"{getattr(hook, '__name__', 'a hook')} failed on storage: {e}")

    def housekeeping(self) -> None:
        """Flush self-metrics, notice changed key files, prune expired samples a little at a time."""
        self.flush_counters()
        if self.access is not None:
            self.access.reload_if_changed()
        self.prune(time.time())
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY

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
        return frame.get(name) or None
    except zmq.ZMQError:
        return None


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
    socket.setsockopt(zmq.RCVHWM, 100_000)
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
