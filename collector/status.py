"""Per-host status: up or down, and how complete each host's stored sequence is."""

from __future__ import annotations

import time
from collections.abc import Iterable

from collector.liveness import is_down
from collector.store import HostInfo
from collector.timefmt import iso

MAX_LISTED = 10_000  # missing numbers listed one by one; the count is always exact


def expand(ranges: list[tuple[int, int]], limit: int = MAX_LISTED) -> list[int]:
    """[(3, 5), (9, 9)] -> [3, 4, 5, 9], at most `limit` numbers (a gap may span billions)."""
    numbers: list[int] = []
    for first, last in ranges:
        numbers.extend(range(first, min(last, first + limit - len(numbers) - 1) + 1))
        if len(numbers) >= limit:
            break
    return numbers


def rows(hosts: list[HostInfo], down_after: int, now: float | None = None) -> list[dict]:
    """One dict per host with the keys `status --json` promises."""
    now = time.time() if now is None else now
    return [
        {
            "host": h.name,
            "status": "down" if is_down(h.last_seen, h.interval, down_after, now) else "up",
            "last_seen": iso(h.last_seen),
            "snapshots": h.snapshots,
            "first_seq": h.first_seq,
            "last_seq": h.last_seq,
            "missing": expand(h.missing),
            "missing_count": (count := sum(b - a + 1 for a, b in h.missing)),
            "missing_truncated": count > MAX_LISTED,
            "interval": h.interval,
            "last_seen_ago": round(now - h.last_seen, 1),
        }
        for h in hosts
    ]


def table(status_rows: list[dict]) -> str:
    """A fixed-width text table for terminals."""
    header = (
        "HOST",
        "STATUS",
        "LAST SEEN",
        "SNAPSHOTS",
        "FIRST SEQ",
        "LAST SEQ",
        "MISSING",
        "SILENCED UNTIL",
    )
    lines = []
    for r in status_rows:
        missing = r["missing"]
        shown = ",".join(map(str, missing[:8])) + (
            f",… ({r['missing_count']})" if r["missing_count"] > 8 else ""
        )
        silenced = r.get("silenced_until")
        lines.append(
            [
                r["host"],
                r["status"],
                r["last_seen"],
                str(r["snapshots"]),
                str(r["first_seq"]),
                str(r["last_seq"]),
                shown or "-",
                f"{silenced} ({r['silence_reason']})" if silenced else "-",
            ]
        )
    return columns(header, lines)


def columns(header: Iterable[str], rows: list[list[str]]) -> str:
    """Rows under a header row, each column as wide as its widest cell."""
    lines = [list(header), *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
