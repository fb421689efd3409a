"""Garbage-collector settings for the long-running processes (`run`, `web`).

Once a process has started, what exists lives as long as it: frozen out of the collector's
sight. Each snapshot ingested or page served makes thousands of short-lived objects without
cycles; collecting every 700 allocations then costs more than it finds.
"""

from __future__ import annotations

import gc

# Container objects allocated (net of those freed) before Python's cyclic garbage collector runs.
# An ingest batch holds ~25 per snapshot until it is stored, then frees them by reference counting;
# at the default (700) collections ran dozens of times per batch and took ~10 % of ingest's CPU
# (benchmarks/ingest.py), finding nothing; a /metrics scrape makes ~100,000 and collected for
# ~0.3 ms of its 5. Garbage in cycles still goes, after at most this many objects (a few MB).
GC_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """For a long-running process, once started: freeze what exists, collect less often."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
