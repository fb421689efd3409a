"""Trend lines and the fleet strip (collector/web/trends.py), from exact inputs."""

from __future__ import annotations

import re
from urllib.parse import unquote

from collector.store import AlertChange, Bucket, HostSummary
from collector.web import trends

NOW = 1_764_000_000.0 + 1800  # half past a whole hour
HOUR = 3600


def summary(name: str, first_seen: float, last_seen: float) -> HostSummary:
    return HostSummary(name, first_seen, last_seen, 10.0, last_seen, last_seen, 1.0, 1.0, 1.0, 0.1, None)


def bucket(t: float, cpu: float | None, mem: float | None = 40.0, disk: float | None = 50.0) -> Bucket:
    return Bucket(t, ((cpu, cpu, cpu), (mem, mem, mem), (disk, disk, disk)))


def test_a_trend_is_a_line_with_gaps_and_dots_drawn_as_an_image() -> None:
    start, end = trends.window(NOW)
    assert end - start == trends.SPAN and start <= NOW - trends.SPAN + trends.BUCKET and end > NOW
    b = trends.BUCKET
    # Three consecutive buckets, a missing one, then a lone bucket: a line and a dot.
    lines = trends.host_trends([bucket(start, 10), bucket(start + b, 20), bucket(start + 2 * b, 97),
                                bucket(start + 5 * b, 30, mem=None)], start, end)  # fmt: skip
    assert set(lines) == {"cpu", "mem", "disk"}
    svg = unquote(lines["cpu"]["src"].removeprefix("data:image/svg+xml,"))
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 1
    assert 'width="64" height="18"' in svg and "#c62828" in svg  # 97 %: coloured critical
    assert "<script" not in svg and not re.search(r"\son\w+=", svg)
    assert lines["cpu"]["text"] == "CPU, last 6 h: peaks 10 to 97 %"
    assert unquote(lines["mem"]["src"]).count("<polyline") == 1  # memory missing in the last bucket only
    assert trends.host_trends([], start, end) == {}
    # Values outside 0..100 stay inside the picture.
    y = [
        float(v)
        for v in re.findall(
            r'cy="([\d.]+)"', unquote(trends.data_url(trends.sparkline([(start, 250.0)], start, end)))
        )
    ]
    assert y == [1.0]


def test_the_fleet_strip_counts_each_host_once_an_hour_in_its_worst_state() -> None:
    first = trends.strip_start(NOW)
    assert first == NOW - 1800 - 23 * HOUR
    hosts = [
        summary("calm", first - 86400, NOW),
        summary("flappy", first - 86400, NOW),
        summary("gone", first - 86400, NOW - 3 * HOUR),  # silent for 3 hours, no alert stored
        summary("new", NOW - 1000, NOW),  # first reported in the current hour
    ]
    changes = [
        # flappy: warning in hour 20, critical a minute later, back to warning in hour 21, resolved at 22
        AlertChange(1, "flappy", "cpu.percent", first + 20 * HOUR + 60, first + 22 * HOUR, first + 20 * HOUR + 60, "fired", "warning"),
        AlertChange(1, "flappy", "cpu.percent", first + 20 * HOUR + 60, first + 22 * HOUR, first + 20 * HOUR + 120, "escalated", "critical"),
        AlertChange(1, "flappy", "cpu.percent", first + 20 * HOUR + 60, first + 22 * HOUR, first + 21 * HOUR + 10, "deescalated", "warning"),
        # calm: a host-down alert an hour long, from before the strip to its second hour
        AlertChange(2, "calm", "host.down", first - 1800, first + HOUR + 5, first - 1800, "fired", "critical"),
    ]  # fmt: skip
    strip = trends.fleet_strip(hosts, changes, down_after=3, now=NOW)
    assert len(strip) == trends.HOURS and [h["t"] for h in strip] == [first + i * HOUR for i in range(24)]
    by_hour = [(h["down"], h["critical"], h["warning"], h["ok"]) for h in strip]
    assert by_hour[0] == (1, 0, 0, 2) and by_hour[1] == (1, 0, 0, 2)  # calm down into its second hour
    assert by_hour[2] == (0, 0, 0, 3)
    assert by_hour[20] == (1, 1, 0, 1)  # gone: silent past 3 intervals since NOW - 3 h
    assert by_hour[21] == (1, 1, 0, 1)  # critical for its first 10 s
    assert by_hour[22] == (1, 0, 0, 2)  # resolved as the hour began
    assert by_hour[23] == (1, 0, 0, 3)  # the new host counts from its first hour
    assert trends.fleet_strip([], [], 3, NOW)[0] == {
        "t": first,
        "down": 0,
        "critical": 0,
        "warning": 0,
        "ok": 0,
    }
