"""SIGTERM/SIGINT handling that wakes a ZeroMQ poll loop at once."""

from __future__ import annotations

import signal
import socket
from types import FrameType


class Shutdown:
    """Turns SIGTERM and SIGINT (and SIGHUP) into flags and a readable socket for zmq.Poller.

    Python runs signal handlers between bytecodes, so a process blocked in
    zmq_poll would only notice after its timeout; signal.set_wakeup_fd writes a
    byte to `fd` instead, which ends the poll immediately.
    """

    def __init__(
        self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT), reload: bool = False
    ) -> None:
        self.requested = False
        self.reload_requested = False  # SIGHUP, when `reload` is set
        self.signal_name = ""
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, self._handle) for sig in signals}
        if reload:
            self._previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._handle_reload)

    @property
    def fd(self) -> int:
        return self._reader.fileno()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def _handle_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload_requested = True

    def drain(self) -> None:
        """Empty the wakeup socket after a poll reported it readable."""
        try:
            while self._reader.recv(512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Restore the previous handlers."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()
