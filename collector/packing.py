"""The thread that packs closed hours of samples (PostgreSQL: collector.store.pg_packed), off the ingest path.

Packing an hour is a thousand small moves for a thousand hosts, followed by a vacuum of
the day's partition, and the day's last step vacuums and drops it: done by
ingest's housekeeping it would hold up acks. Here it runs on a connection of its own,
only while retention is this collector's duty (one collector of a cluster packs). On
SQLite there is nothing to pack and a round costs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from collector.store import Store, StoreError
from collector.worker import Worker

log = logging.getLogger("osmon.packing")

MOVES_PER_CALL = 10  # host-hours per call, so a stop request is seen between calls


class Packer(Worker):
    """Packs what is closed, every `period` seconds while `active()` (the upkeep duty is held)."""

    name = "packer"

    def __init__(self, store: Store, active: Callable[[], bool], period: float = 60.0) -> None:
        super().__init__(store, period)
        self.active = active
        self._last_error: str | None = None  # a persisting error is logged once, not every round

    def round(self) -> None:
        """Pack until nothing is left, this collector loses the duty, or the thread is stopped."""
        moved = 0
        try:
            while (
                self.active()
                and not self.stopping()
                and (done := self.worker_store.pack(time.time(), MOVES_PER_CALL))
            ):
                moved += done
        except StoreError as e:
            if str(e) != self._last_error:
                log.error("packing closed hours: %s", e)
            self._last_error = str(e)
            return
        self._last_error = None
        if moved:
            log.info("packed %d closed host-hours", moved)
