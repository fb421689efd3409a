"""The agent's ZeroMQ DEALER connection to the collector."""

from __future__ import annotations

import logging
import struct
import time

import zmq

from agent.config import AgentConfig
from osmon import keys, wire

log = logging.getLogger("osmon.link")

MIN_RETRY, MAX_RETRY = 2.0, 30.0  # seconds between reconnects after a refused handshake

_HANDSHAKE_FAILURES: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "no detail",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol error",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "authentication refused",
}


def monitor_event(frames: list[bytes]) -> int:
    """The event number of a ZeroMQ monitor message: 16-bit event, 32-bit value, then the endpoint.

    pyzmq's zmq.utils.monitor does the same but imports zmq.asyncio (asyncio and ssl): 8 MB of
    the agent's resident memory for six bytes.
    """
    if len(frames) != 2 or len(frames[0]) != 6:
        raise zmq.ZMQError(msg=f"malformed ZeroMQ monitor event: {frames!r}")
    return int(struct.unpack("=Hi", frames[0])[0])


def readable(socket: zmq.Socket) -> bool:
    """Whether a message waits on `socket`: asking costs a fifth of a receive that finds none
    (pyzmq raises zmq.Again, with its message, for each), and the loop asks twice per wake-up."""
    return bool(int(socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN)


class Link:
    """Sends snapshots and receives acks; reports (re)connections so the agent can resend."""

    def __init__(self, context: zmq.Context, config: AgentConfig, endpoint: str | None = None) -> None:
        self.context, self.in_flight = context, config.in_flight
        self.curve_keys: tuple[bytes, bytes, bytes] | None = None
        if config.curve_secret_key and config.curve_server_key:  # all keys or none (agent.config)
            public, secret = keys.load_pair(config.curve_secret_key)
            self.curve_keys = (public, secret, keys.load_public(config.curve_server_key))
        self.curve = bool(config.curve_secret_key)
        self.several = len(config.collectors) > 1  # a lost connection is then agent.failover's concern
        self._backoff = MIN_RETRY
        self._last_failure_log = -60.0
        self._open(endpoint or config.collector)

    def dealer(self) -> zmq.Socket:
        """A DEALER socket with this agent's options and CurveZMQ keys, not yet connected."""
        socket = self.context.socket(zmq.DEALER)
        # Queue nothing on a connection that is not up: an unsent snapshot stays in
        # the spool, where it survives a restart, instead of in ZeroMQ's memory.
        socket.setsockopt(zmq.IMMEDIATE, 1)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, max(1000, self.in_flight * 2))
        socket.setsockopt(zmq.RECONNECT_IVL, 500)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        # Heartbeats notice a collector that vanished without closing TCP (power loss, partition).
        socket.setsockopt(zmq.HEARTBEAT_IVL, 5000)
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15000)
        if self.curve_keys:
            socket.curve_publickey, socket.curve_secretkey, socket.curve_serverkey = self.curve_keys
        return socket

    def _open(self, endpoint: str) -> None:
        # One endpoint per socket, always: a DEALER connected to several would deal
        # snapshots round-robin among them.
        self.endpoint = endpoint
        self.socket = self.dealer()
        self.monitor = self.socket.get_monitor_socket(
            zmq.EVENT_CONNECTED
            | zmq.EVENT_DISCONNECTED
            | zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        )
        self.connected = self._tcp_up = self.handshaken = False
        self.retry_at: float | None = None  # when to reconnect after a refused handshake
        self.socket.connect(self.endpoint)

    def move(self, endpoint: str) -> None:
        """Close the connection and open one to `endpoint`; whatever was queued on the old one is gone."""
        self.close()
        self._open(endpoint)

    def send(self, bodies: list[bytes]) -> bool:
        """Queue one message of snapshots (a frame each); False when no connection can take it now."""
        try:
            self.socket.send_multipart(bodies, zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def acks(self) -> list[int]:
        """Sequence numbers acked by the collector since the last call."""
        seqs: list[int] = []
        while readable(self.socket):
            try:
                message = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                seqs.extend(wire.decode_ack(message))
            except wire.WireError as e:
                log.warning("ignored a malformed ack from %s: %s", self.endpoint, e)
        return seqs

    def connection_events(self) -> bool:
        """Drain monitor events; True if a connection (re)opened and unacked snapshots should go again."""
        reopened = False
        while readable(self.monitor):
            try:
                event = monitor_event(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
            # A connection is usable only once the ZMTP handshake succeeded (TCP alone
            # connects even to a stopped, SIGSTOPped collector).
            ready = zmq.EVENT_HANDSHAKE_SUCCEEDED
            if event == zmq.EVENT_CONNECTED:
                self._tcp_up = True
            if event == ready:
                self.connected = self.handshaken = reopened = True
                self._backoff = MIN_RETRY
                log.info("connected to collector %s", self.endpoint)
            elif event == zmq.EVENT_DISCONNECTED and self.connected:
                self.connected = self._tcp_up = False
                if self.several:
                    log.info("lost the connection to collector %s", self.endpoint)
                else:
                    log.warning(
                        "lost the connection to collector %s; spooling until it is back", self.endpoint
                    )
            elif event == zmq.EVENT_DISCONNECTED and self._tcp_up and self.curve:
                # A collector that cannot decrypt our HELLO (wrong server key) or whose
                # allow-list lacks our key just closes the connection mid-handshake.
                self._tcp_up = False
                self._handshake_failed("closed by the collector during the handshake")
            elif event in _HANDSHAKE_FAILURES:
                self._tcp_up = False  # the DISCONNECTED that follows is the same failure
                self._handshake_failed(_HANDSHAKE_FAILURES[event])
        return reopened

    def _handshake_failed(self, detail: str) -> None:
        now = time.monotonic()
        # libzmq gives up on a peer whose ZAP handler refused us; we try again later
        # ourselves, since the collector's allow-list may gain our key meanwhile.
        self.retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, MAX_RETRY)
        if now - self._last_failure_log >= 60:
            self._last_failure_log = now
            log.error(
                "CurveZMQ handshake with %s failed (%s): check that curve.server_key is the "
                "collector's public key and that this agent's public key is in the collector's "
                "allow-list; snapshots stay in the spool meanwhile",
                self.endpoint,
                detail,
            )

    def retry(self, now: float) -> None:
        """Reconnect if a refused handshake's backoff has passed."""
        if self.retry_at is not None and now >= self.retry_at:
            self.retry_at = None
            self.socket.disconnect(self.endpoint)
            self.socket.connect(self.endpoint)

    def close(self) -> None:
        self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)
