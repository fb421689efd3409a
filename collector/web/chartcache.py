"""Drawn charts kept by the numbers they show, so that the same picture is never drawn twice.

pygal needs ~25 ms per chart of a few hundred points, most of a host page's
time, while reading the numbers from the store takes a few milliseconds. So
the numbers are always read, and a chart is drawn only if these exact numbers
(host, chart, window, every point of every line) were not drawn already: a
cached chart is never stale. Long ranges gain most: a 30-day chart changes
only when a 3-hour bucket gets a new peak, so live refreshes, reloads and a
second person mostly reuse the drawing. A request that says `Cache-Control:
no-cache` (a browser's hard reload) draws afresh anyway.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

MAX_ENTRIES = 256  # charts (SVG of 10-40 KiB each, and their numbers): ~36 host pages


class ChartCache:
    """A small LRU of drawn charts, keyed by everything the drawing depends on; safe across threads."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, draw: Callable[[], Any], fresh: bool = False) -> Any:
        """The drawing kept under `key`, else `draw()` (kept for next time); `fresh` draws anyway.

        Two threads missing the same key at once both draw: cheaper than making one wait.
        """
        if not fresh:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
                    return self._entries[key]
        value = draw()
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value
