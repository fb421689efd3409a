"""Trends at a glance: each host's recent CPU, memory and fullest disk as tiny lines, and the fleet's
states hour by hour over the last day.

Pure functions of what the store returns and the current time. A trend line is
an SVG drawn here and handed to the page as a data: URL for an <img> (no markup
from a host, no script: an image cannot run one), so the overview's script puts
it in place as it does any other value.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from collector.detection import DOWN
from collector.liveness import down_window
from collector.store import AlertChange, Bucket, HostSummary
from collector.web.fleet import STATUSES, URGENCY

SPAN = 6 * 3600  # seconds of a host's trend lines
BUCKET = 900  # one point per 15 minutes (24 points), from the minute tier's maxima
# (overview row key, stored column, what a person calls it)
LINES = (("cpu", "cpu", "CPU"), ("mem", "mem", "Memory"), ("disk", "disk_max", "Fullest disk"))
COLUMNS = tuple(column for _, column, _ in LINES)
WIDTH, HEIGHT = 64, 18  # CSS pixels; the page draws them at this size
HOURS = 24  # of the fleet strip
HOUR = 3600


def window(now: float) -> tuple[float, float]:
    """(start, end) of the trend lines: the last SPAN seconds, on whole buckets (the current one last)."""
    end = (math.floor(now / BUCKET) + 1) * BUCKET
    return end - SPAN, end


def host_trends(buckets: Sequence[Bucket], start: float, end: float) -> dict[str, Any]:
    """{row key: {"src": data: URL of its line, "text": its words}} of one host; {} without data."""
    if not buckets:
        return {}
    result = {}
    for i, (key, _, title) in enumerate(LINES):
        points = [(b.t, peak) for b in buckets if (peak := b.stats[i][2]) is not None]
        if points:
            values = [v for _, v in points]
            result[key] = {
                "src": data_url(sparkline(points, start, end)),
                "text": f"{title}, last {SPAN // 3600} h: peaks {min(values):.0f} to {max(values):.0f} %",
            }
    return result


def sparkline(points: Sequence[tuple[float, float]], start: float, end: float) -> str:
    """An SVG of percentages (0 to 100) over start..end: a line through consecutive buckets, a gap where a
    bucket is missing, a dot for a lone point; coloured by the highest value (80 %, 95 %)."""
    highest = max(v for _, v in points)
    colour = "#c62828" if highest >= 95 else "#e08600" if highest >= 80 else "#3567b0"
    runs: list[list[tuple[float, float]]] = []
    last = None
    for t, v in points:
        xy = (
            round((t + BUCKET / 2 - start) / (end - start) * WIDTH, 1),
            round(1 + (1 - min(max(v, 0.0), 100.0) / 100) * (HEIGHT - 2), 1),
        )
        if last is not None and t - last <= BUCKET * 1.5:
            runs[-1].append(xy)
        else:
            runs.append([xy])
        last = t
    shapes = "".join(
        f'<polyline points="{" ".join(f"{x:g},{y:g}" for x, y in run)}"/>'
        if len(run) > 1
        else f'<circle cx="{run[0][0]:g}" cy="{run[0][1]:g}" r="1.5" fill="{colour}"/>'
        for run in runs
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}"><rect width="{WIDTH}" height="{HEIGHT}" fill="#8881"/>'
        f'<g fill="none" stroke="{colour}" stroke-width="1.5" stroke-linejoin="round">{shapes}</g></svg>'
    )


def data_url(svg: str) -> str:
    """An SVG as a data: URL an <img> shows (the page's policy allows data: images)."""
    return "data:image/svg+xml," + quote(svg, safe="/=:,.")  # a "#" would end the URL


def strip_start(now: float) -> float:
    """The start of the fleet strip's first hour."""
    return (math.floor(now / HOUR) - HOURS + 1) * HOUR


def fleet_strip(
    hosts: Sequence[HostSummary], changes: Sequence[AlertChange], down_after: int, now: float
) -> list[dict[str, Any]]:
    """Hosts in each state, hour by hour over the last HOURS hours (the current hour last).

    In an hour, a host counts once, in the worst state it was in at any time of it: down if
    a host-down alert was active then or if its last snapshot is older than the down delay
    at some time of the hour (so a fleet whose detection is not running still shows its
    silent hosts); else critical or warning if an alert of that severity was active then
    (each escalation and de-escalation at its time); else ok. A host counts from the hour
    it first reported in. A silence changes nothing: a silenced host is what it is.
    """
    first = strip_start(now)
    starts = [first + i * HOUR for i in range(HOURS)]
    worst: dict[str, list[int]] = {}

    def mark(host: str, state: str, a: float, b: float) -> None:
        """`host` was in `state` from a to b."""
        rank = URGENCY[state]
        slots = worst.setdefault(host, [len(STATUSES) - 1] * HOURS)
        low = max(0, int((a - first) // HOUR))
        # [a, b): an alert resolved as an hour begins leaves that hour alone; a lone instant counts.
        high = min(HOURS - 1, int((b - first) // HOUR) if b <= a else math.ceil((b - first) / HOUR) - 1)
        for i in range(low, high + 1):
            slots[i] = min(slots[i], rank)

    by_alert: dict[int, list[AlertChange]] = {}
    for c in changes:
        by_alert.setdefault(c.alert_id, []).append(c)
    for steps in by_alert.values():
        end = steps[0].ended if steps[0].ended is not None else now
        for step, following in zip(steps, [*steps[1:], None], strict=True):
            until = following.ts if following is not None else end
            state = "down" if step.rule == DOWN else step.severity
            if state in URGENCY and until >= first:
                mark(step.host, state, max(step.ts, first), until)
    for h in hosts:
        silent = h.last_seen + down_window(h.interval, down_after)
        if silent < now:
            mark(h.name, "down", max(silent, first), now)
    born = sorted(h.first_seen for h in hosts)
    strip = []
    for i, t in enumerate(starts):
        total = bisect.bisect_left(born, t + HOUR)
        counts = dict.fromkeys(STATUSES, 0)
        for slots in worst.values():
            counts[STATUSES[slots[i]]] += 1
        counts["ok"] = max(0, total - counts["down"] - counts["critical"] - counts["warning"])
        strip.append({"t": t, **counts})
    return strip
