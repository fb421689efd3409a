"""A latency histogram kept in the collector's counters, so that /metrics (another process) can read it.

The writer counts each observation in the first bucket that holds it (counter
`<name>:le=<bound>`), with `<name>:count` and the sum in microseconds
(`<name>:sum_us`): integers, as every counter. `buckets` turns them back into
Prometheus' cumulative buckets.
"""

from __future__ import annotations

from collections import Counter

# Upper bounds, seconds: a batch commits in a few milliseconds, a slow disk takes a second.
BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def observe(counts: Counter[str], name: str, seconds: float) -> None:
    """Count one observation of `seconds` under `name`."""
    bound = next((b for b in BOUNDS if seconds <= b), None)
    counts[f"{name}:le={'+Inf' if bound is None else bound}"] += 1
    counts[f"{name}:count"] += 1
    counts[f"{name}:sum_us"] += round(seconds * 1e6)


def buckets(counters: dict[str, int], name: str) -> tuple[list[tuple[str, int]], int, float]:
    """([(le, cumulative count)], count, sum in seconds) of `name` from the stored counters."""
    running, result = 0, []
    for bound in (*BOUNDS, None):
        le = "+Inf" if bound is None else str(bound)
        running += counters.get(f"{name}:le={le}", 0)
        result.append((le, running))
    return result, counters.get(f"{name}:count", 0), counters.get(f"{name}:sum_us", 0) / 1e6


def is_part(counter: str) -> bool:
    """True for the counters a histogram is stored in (kept out of the generic event family)."""
    return ":" in counter
