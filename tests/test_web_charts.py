"""The dashboard's pure parts: chart functions (series in, SVG out), downsampling arithmetic, statuses."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pygal
import pytest

from collector.store import Alert, DetailBucket, Silence, WebHost, open_store
from collector.web import exposition, fleet, pygal_lookup, series
from collector.web.chartcache import ChartCache
from collector.web.charts import (
    Serie,
    chart_points,
    decimal_ticks,
    legend_columns,
    rate,
    rate_label,
    rate_ticks,
    time_chart,
    time_ticks,
)
from tests.test_web import HOSTILE, received

T0 = 1_764_000_000.0


def points(n: int, step: float = 15.0, value: float = 10.0) -> list[tuple[float, float | None]]:
    return [(T0 + i * step, value) for i in range(n)]


# -- charts -------------------------------------------------------------------------------------


def test_a_chart_is_an_svg_with_a_line_and_no_dots() -> None:
    svg = time_chart(
        "CPU",
        [Serie("total", points(100))],
        unit="%",
        start=T0,
        end=T0 + 1500,
        js=["/static/pygal-tooltips.js"],
    )
    assert svg.startswith("<svg") and 'class="pygal-chart chart"' in svg
    [line] = re.findall(r'<path d="M([^"]+)" class="line reactive nofill"', svg)
    assert len(re.findall(r"[\d.]+ [\d.]+", line)) == 100  # one vertex per point: the tooltip relies on it
    assert "tooltip-trigger" not in svg and "<circle" not in svg  # no per-point dots
    assert [int(t) for t in re.findall(r"<text [^>]*>(\d+) %</text>", svg)] == [
        0,
        20,
        40,
        60,
        80,
        100,
    ]  # always 0-100 %


def test_chart_points_hold_each_value_at_its_bucket() -> None:
    values = points(10, step=15.0)
    values[3] = (values[3][0], None)
    gapped = series.with_gaps([(T0 + 300, 99.5)], 1)
    data = chart_points([Serie("a", values), Serie("b", gapped)], T0, 15.0, "%")
    assert (data["start"], data["width"], data["unit"]) == (T0, 15.0, "%")
    a, b = data["series"]
    assert a == {"label": "a", "values": [10.0, 10.0, 10.0, None, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0]}
    assert b["values"] == [None] * 20 + [99.5]
    rates = chart_points([Serie("r", [(T0, 1234.56)])], T0, 15.0, "B/s")
    assert rates["series"][0]["values"] == [1235]  # whole bytes: what the tooltip can show


def test_a_chart_links_only_the_given_script_and_has_no_inline_script() -> None:
    svg = time_chart(
        "x", [Serie("a", points(3))], unit="", start=T0, end=T0 + 60, js=["/static/pygal-tooltips.js"]
    )
    assert re.findall(r"<script[^>]*>", svg) == [
        '<script type="text/javascript" xlink:href="/static/pygal-tooltips.js" />'
    ]
    assert "kozea" not in svg and "window.pygal" not in svg
    assert "<script" not in time_chart("x", [Serie("a", points(3))], unit="", start=T0, end=T0 + 60)


def test_a_gap_breaks_the_line() -> None:
    values = points(10)
    values[5] = (values[5][0], None)
    svg = time_chart("x", [Serie("a", values)], unit="%", start=T0, end=T0 + 150)
    lines = re.findall(r'<path d="M([^"]+)" class="line reactive nofill"', svg)
    assert [len(re.findall(r"[\d.]+ [\d.]+", d)) for d in lines] == [5, 4]


def test_labels_and_titles_are_escaped_in_the_svg() -> None:
    svg = time_chart(
        f"Disk {HOSTILE}", [Serie(f'/mnt/"{HOSTILE}', points(3))], unit="%", start=T0, end=T0 + 60
    )
    assert "<script>" not in svg
    assert "Disk &lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert '/mnt/"&lt;script&gt;alert(1)&lt;/script&gt;' in svg


def test_an_empty_chart_says_no_data() -> None:
    assert "No data" in time_chart("x", [], unit="%", start=T0, end=T0 + 3600)
    assert "No data" in time_chart("x", [Serie("a", [])], unit="B/s", start=T0, end=T0 + 3600)


def test_a_chart_cache_draws_each_set_of_numbers_once_and_again_on_a_hard_reload() -> None:
    cache = ChartCache(max_entries=2)
    drawn: list[str] = []

    def draw(name: str) -> Callable[[], str]:
        return lambda: drawn.append(name) or f"{name}{len(drawn)}"

    assert cache.get("a", draw("a")) == "a1"
    assert cache.get("a", draw("a")) == "a1"  # the same numbers: not drawn again
    assert cache.get("a", draw("a"), fresh=True) == "a2"  # a hard reload draws again
    assert cache.get("a", draw("a")) == "a2"
    cache.get("b", draw("b"))
    cache.get("c", draw("c"))
    assert cache.get("a", draw("a")) == "a5"  # the least recently used went first
    assert drawn == ["a", "a", "b", "c", "a"]


def test_plain_axes_step_in_a_few_round_decimal_steps() -> None:
    assert decimal_ticks(1.6) == [0.0, 0.5, 1.0, 1.5, 2.0]  # a load of 1.6: five labels, not seventeen
    assert decimal_ticks(7.9) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert decimal_ticks(0.0) == [0.0, 1.0]  # an idle host still gets an axis
    svg = time_chart("Load average", [Serie("1 min", points(10, value=1.6))], unit="", start=T0, end=T0 + 150)
    assert ">1.5<" in svg and ">0.1<" not in svg


def test_rate_axes_step_in_round_binary_units() -> None:
    assert [rate_label(t) for t in rate_ticks(12.4 * 1024**2)] == ["0", "5 MiB/s", "10 MiB/s", "15 MiB/s"]
    assert [rate_label(t) for t in rate_ticks(1500)] == ["0", "1 KiB/s", "2 KiB/s"]
    svg = time_chart(
        "Disk I/O", [Serie("read", points(10, value=3.5 * 1024**2))], unit="B/s", start=T0, end=T0 + 150
    )
    assert re.findall(r'class="(?:major)?">([^<]+ MiB/s)<', svg) == [
        "1 MiB/s",
        "2 MiB/s",
        "3 MiB/s",
        "4 MiB/s",
    ]


def test_legends_take_one_row_when_they_fit_and_never_a_partial_row() -> None:
    assert legend_columns(["1 min", "5 min", "15 min"]) == 3  # pygal alone wrapped the third
    assert legend_columns([f"cpu{i}" for i in range(8)]) == 8
    assert legend_columns([f"cpu{i}" for i in range(32)]) == 8  # 4 full rows
    assert legend_columns([f"/srv/data/volume-{i}" for i in range(7)]) is None  # pygal's own layout
    svg = time_chart(
        "Load", [Serie(n, points(3)) for n in ("1 min", "5 min", "15 min")], unit="", start=T0, end=T0 + 60
    )
    legend_y = {float(y) for y in re.findall(r'<rect x="[\d.]+" y="([\d.]+)" width="12" height="12"', svg)}
    assert len(legend_y) == 1  # one row


def test_rates_and_time_ticks() -> None:
    assert [rate(v) for v in (512, 2048, 5 * 1024**2, 3 * 1024**4)] == [
        "512 B/s",
        "2.0 KiB/s",
        "5.0 MiB/s",
        "3.0 TiB/s",
    ]
    ticks = time_ticks(T0, T0 + 86400)
    assert 4 <= len(ticks) <= 6 and all(T0 <= t < T0 + 86400 for t in ticks)
    assert all((t + time.localtime(t).tm_gmtoff) % 3600 == 0 for t in ticks)  # on the hour, local time


# -- downsampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("range_name", list(series.RANGES))
def test_every_range_is_cut_into_at_most_the_wanted_number_of_round_buckets(range_name: str) -> None:
    span = series.RANGES[range_name]
    for points_wanted in (3, 50, series.POINTS, series.MAX_POINTS):
        window = series.Window.of(span, T0 + 123.4, points_wanted)
        buckets = round((window.end - window.start) / window.width)
        assert buckets <= points_wanted and window.end - window.start >= span
        assert window.start <= T0 + 123.4 - span and window.end > T0 + 123.4  # the whole range, up to now
        assert window.start % window.width == 0  # aligned: the same buckets on every refresh
    assert series.bucket_width(span) in (15.0, 120.0, 300.0, 3600.0, 10800.0)


def test_sql_buckets_never_exceed_the_window_and_keep_min_avg_max(tmp_path: Path) -> None:
    store = open_store(tmp_path / "osmon.db")
    store.ingest([received("web-01", i + 1, T0 + i, 1.0, cpu=float(i % 7)) for i in range(3600)])
    window = series.Window.of(3600, T0 + 3599, points=13)
    buckets = store.web_series("web-01", ["cpu", "mem"], *window)
    assert 1 < len(buckets) <= 13
    assert all(window.start <= b.t < window.end for b in buckets)
    full = buckets[1]
    assert full.stats[0][0] == 0.0 and full.stats[0][2] == 6.0 and 2.9 < full.stats[0][1] < 3.1
    assert full.stats[1] == (40.0, 40.0, 40.0)
    with pytest.raises(ValueError):
        store.web_series("web-01", ["cpu; DROP TABLE samples"], *window)


def test_detail_series_pick_the_busiest_entities_in_natural_order() -> None:
    buckets = [
        DetailBucket(T0, {"cpu.core": [float(i) for i in range(40)]}),
        DetailBucket(T0 + 60, {"cpu.core": [None] * 40}),
    ]
    lines = series.detail_series("cpu.core", buckets)
    assert len(lines) == series.MAX_ENTITIES
    assert list(lines)[:3] == ["cpu8", "cpu9", "cpu10"]  # the 8 idlest dropped; cpu9 before cpu10
    assert lines["cpu39"] == [(T0, 39.0), (T0 + 60, None)]
    mounts = series.detail_series("disk.percent", [DetailBucket(T0, {"disk.percent": {"/": 5.0, "/a": 9.0}})])
    assert mounts == {"/": [(T0, 5.0)], "/a": [(T0, 9.0)]}


def test_with_gaps_marks_silences_longer_than_a_few_intervals() -> None:
    assert series.with_gaps([(0, 1.0), (10, 2.0), (100, 3.0)], max_gap=25) == [
        (0, 1.0),
        (10, 2.0),
        (55, None),
        (100, 3.0),
    ]
    assert series.max_gap(15, 10) == 37.5 and series.max_gap(300, None) == 750


# -- statuses -------------------------------------------------------------------------------------


def alert(severity: str, host: str = "h") -> Alert:
    return Alert(1, host, "mem.percent", severity, T0, None, 90.0, 90.0, 80.0, T0)


@pytest.mark.parametrize(
    ("down", "severities", "expected"),
    [
        (False, [], "ok"),
        (False, ["warning"], "warning"),
        (False, ["warning", "critical"], "critical"),
        (True, ["warning"], "down"),
        (True, ["critical"], "down"),
    ],
)
def test_status_precedence(down: bool, severities: list[str], expected: str) -> None:
    assert fleet.status(down, [alert(s) for s in severities]) == expected


def test_a_host_without_a_decodable_snapshot_still_has_a_row() -> None:
    host = WebHost("h", T0, T0, 10.0, None, b"\xc1 not msgpack")
    assert fleet.decode_latest(host) is None and fleet.read_latest(host) is None
    row = fleet.host_row(host, None, [], Silence("h", T0 + 60, "x", T0), down_after=3, now=T0 + 100)
    assert (row["status"], row["down"], row["cpu"], row["uptime"]) == ("down", True, None, None)
    assert row["silenced"] is True  # a mark over its status, not a status


def test_metrics_escape_label_values() -> None:
    host = exposition.HostState('a"b\\c\nd', True, T0, received("web-01", 1, T0).raw)
    text = "\n".join(exposition.hosts_text([host]))
    assert 'osmon_host_up{host="a\\"b\\\\c\\nd"} 1.0' in text
    assert 'osmon_host_cpu_busy_ratio{host="a\\"b\\\\c\\nd"} 0.1' in text


def test_the_faster_pygal_lookup_draws_the_very_same_charts() -> None:
    """collector.web.pygal_lookup replaces pygal's attribute lookup: every kind of chart here must come
    out byte for byte as pygal draws it alone (but for the random id pygal gives each chart)."""
    cases = [
        ("CPU", [Serie("total", points(300, value=40.0)), Serie("iowait", points(300, value=2.5))], "%"),
        ("Per core", [Serie(f"cpu{i}", points(240, value=float(i))) for i in range(12)], "%"),
        ("Network", [Serie("received", [(T0, 3.0e6), (T0 + 10, None), (T0 + 500, 1.2e7)])], "B/s"),
        ("Load", [Serie("1 min", points(50, value=1.6)), Serie("5 min", points(50, value=0.9))], ""),
        ("Empty", [], "%"),
        (HOSTILE, [Serie(HOSTILE, points(5, value=1.0))], ""),
    ]

    def draw_all() -> list[str]:
        drawn = []
        for title, lines, unit in cases:
            svg = time_chart(
                title, lines, unit=unit, start=T0, end=T0 + 3600, note="max per 15 s", js=["/t.js"]
            )
            chart_id = re.search(r'id="chart-([0-9a-f-]+)"', svg)[1]
            drawn.append(svg.replace(chart_id, "ID"))
        return drawn

    assert pygal_lookup.install(), (
        f"pygal {pygal.__version__} is not a release the lookup was checked against"
    )
    faster = draw_all()
    pygal_lookup.uninstall()
    try:
        assert draw_all() == faster
    finally:
        pygal_lookup.install()


def test_percentages_of_memory_become_bytes_and_what_is_left_is_available() -> None:
    used = Serie("used", [(T0, 25.0), (T0 + 60, None), (T0 + 120, 50.0)])
    cached = Serie("cached", [(T0, 10.0)])
    lines = series.shares([used, cached], 8 * 2**30, "available")
    assert [(line.label, line.points) for line in lines] == [
        ("used", [(T0, 2 * 2**30), (T0 + 60, None), (T0 + 120, 4 * 2**30)]),
        ("cached", [(T0, 0.8 * 2**30)]),
        ("available", [(T0, 6 * 2**30), (T0 + 60, None), (T0 + 120, 4 * 2**30)]),
    ]
    assert series.shares([used], None, "available") == []  # no total known: nothing to draw


def test_sizes_read_in_binary_units_on_the_axis() -> None:
    svg = time_chart("Memory", [Serie("used", [(T0, 3 * 2**30), (T0 + 60, 5 * 2**30)])], unit="B",
                            start=T0, end=T0 + 120)  # fmt: skip
    assert ">1 GiB<" in svg and ">5 GiB<" in svg
