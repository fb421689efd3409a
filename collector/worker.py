"""A daemon thread that does one round of work every `period` seconds, or at once when woken.

The mail sender and the Alertmanager pusher are both this: woken by `notify()` when
there is news, else on their period; `stop()` ends the thread after the round
under way. A round runs on the thread's own connection to the store, closed when
the thread ends.
"""

from __future__ import annotations

import threading

from collector.store import Store


class Worker:
    """Runs `round()` in a thread of its own until `stop()`; subclasses say what a round does."""

    name = "worker"

    def __init__(self, store: Store, period: float) -> None:
        self.worker_store, self.period = store, period
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def round(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Start the rounds in a background thread."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """There is news: do a round now rather than at the end of the period."""
        self._wake.set()

    def stopping(self) -> bool:
        """Whether `stop()` was called: a long round checks it between steps."""
        return self._stopping.is_set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the round under way, if any; waits for the thread up to `timeout`."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._wake.clear()  # before the round: a notify() during it wakes the next one
                self.round()
                self._wake.wait(self.period)
        finally:
            self.worker_store.close()  # this thread's connection
