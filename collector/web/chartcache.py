"""Drawn charts kept for a short while, so that a page opened again, or by a second person, is not
drawn again.

pygal needs ~25 ms per chart of a few hundred points, most of a host page's
time; the numbers behind a chart only change when a bucket fills. An entry
lives for at most its bucket width and never more than MAX_AGE seconds: a
3-hour-bucket chart is not redrawn for every visitor, and the last (partial)
bucket of any chart is at most a minute behind. A request that says
`Cache-Control: no-cache` (a browser's hard reload) draws afresh.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

MAX_AGE = 60.0  # seconds: the most a chart shown can lag behind the database
MAX_ENTRIES = 512  # charts (~10-30 KiB of SVG each): a few dozen host pages over every range


class ChartCache:
    """A small LRU of rendered charts with a time to live per entry; safe across waitress's threads."""

    def __init__(self, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable, ttl: float, draw: Callable[[], Any], fresh: bool = False) -> Any:
        """The value kept under `key` if younger than `ttl` seconds, else `draw()` (kept for next time).

        `fresh` skips the lookup (and still keeps the new drawing). Two threads
        missing the same key at once both draw: cheaper than making one wait.
        """
        now = self.clock()
        ttl = min(ttl, MAX_AGE)
        if not fresh:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry[0] > now:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return entry[1]
        value = draw()
        with self._lock:
            self.misses += 1
            self._entries[key] = (now + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value
