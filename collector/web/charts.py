"""pygal charts as pure functions: series in, SVG out (no Flask, no store).

The SVG is meant to be inlined in a page. pygal escapes every label and value
as XML text; what it does not do well offline is scripting: by default it
links its tooltip script from a CDN and writes an inline config script. Here
the script URLs are the caller's (the app's own static file) and the inline
script is dropped, so a Content-Security-Policy of `script-src 'self'` holds.

Lines are drawn without pygal's per-point dots: a dot is an SVG group with a
circle and its tooltip text, and drawing them was ~70 % of a host page's time
(and most of its bytes). The tooltip is a crosshair instead (static/
pygal-tooltips.js): it reads the chart's numbers from `chart_points` (JSON in
a data attribute beside the SVG) and shows every line's value at the hovered
time, which says more than one dot's value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import pygal
from pygal.style import Style

from collector.units import binary


class Serie(NamedTuple):
    """One line: a label and (unix time, value or None for a gap) points, oldest first."""

    label: str
    points: list[tuple[float, float | None]]


class Level(NamedTuple):
    """A threshold drawn across a chart: a dashed line at `value`, named e.g. 'memory warning 80 %'."""

    value: float
    severity: str  # 'warning' or 'critical': its colour (style.css)
    label: str


class Band(NamedTuple):
    """A period shaded on a chart (an alert): from `start` to `end` (None: still going), linking to `href`."""

    start: float
    end: float | None
    severity: str
    title: str
    href: str


class Marks(NamedTuple):
    """What a chart shows besides its lines: its thresholds and the alert periods it covers."""

    levels: tuple[Level, ...] = ()
    bands: tuple[Band, ...] = ()


NO_MARKS = Marks()


STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#334155",
    foreground_strong="#0f172a",
    foreground_subtle="#94a3b8",
    opacity=".35",
    opacity_hover=".6",
    stroke_opacity="1",
    stroke_width="1.6",
    guide_stroke_color="#e2e8f0",
    guide_stroke_dasharray="0",  # solid, light guides
    major_guide_stroke_color="#cbd5e1",
    major_guide_stroke_dasharray="0",
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=13,
    title_font_size=15,
    colors=("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"),
)


def rate(value: float) -> str:
    """Bytes per second, in binary units."""
    return binary(value, "/s")


def rate_label(value: float, suffix: str = "/s") -> str:
    """A rate (or with suffix "", a size) on the axis, where ticks are round numbers of one unit:
    '0', '512 KiB/s', '2 MiB/s'."""
    if value == 0:
        return "0"
    for prefix in ("", "Ki", "Mi", "Gi"):
        if abs(value) < 1024:
            return f"{value:g} {prefix}B{suffix}"
        value /= 1024
    return f"{value:g} TiB{suffix}"


def rate_ticks(top: float, most: int = 5) -> list[float]:
    """Round binary steps (1, 2, 5 ... of B/s, KiB/s, MiB/s ..., or of bytes) from 0 up past `top`, at most `most` steps.

    pygal's own ticks are decimal (976.6 KiB/s, 1.9 MiB/s ...): unreadable in binary units.
    """
    unit = 1.0
    while top / unit >= 1024 and unit < 1024**4:
        unit *= 1024
    step = next(
        (m * unit for m in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if math.ceil(top / (m * unit)) <= most),
        1024 * unit,
    )
    return [i * step for i in range(max(1, math.ceil(top / step)) + 1)]


def decimal_ticks(top: float, most: int = 5) -> list[float]:
    """Round decimal steps (0.1, 0.2, 0.5, 1, 2, 5 ...) from 0 up past `top`, at most `most` steps.

    pygal picks ticks from the values alone, which for a load of 1.6 is seventeen labels.
    """
    magnitude = 10.0 ** math.floor(math.log10(top / most)) if top > 0 else 1.0
    step = next(m * magnitude for m in (1, 2, 5, 10) if math.ceil(top / (m * magnitude)) <= most)
    return [round(i * step, 10) for i in range(max(1, math.ceil(top / step)) + 1)]


# How each unit's axis reads, and its ticks (None: pygal's, from the values).
AXIS_LABELS: dict[str, Callable[[float], str]] = {
    "%": lambda v: f"{v:g} %",
    "B/s": rate_label,
    "B": lambda v: rate_label(v, ""),
    "": lambda v: f"{v:g}",
    "/s": lambda v: f"{v:g}/s",
    "s": lambda v: f"{v * 1000:g} ms",  # disk latency: milliseconds are what people compare
}
PERCENT_TICKS: list[float] = [0, 20, 40, 60, 80, 100]

WIDTH, HEIGHT = 660, 300  # about the size a chart is shown on a laptop: its text is read at ~1:1
LEGEND_CHARS = 24  # longer labels are cut short in the legend (the tooltip shows them whole)


def legend_columns(labels: Sequence[str], width: int = WIDTH) -> int | None:
    """Legend entries per row under the chart: as many as fit, in rows of equal length.

    pygal (3.1) reserves n // columns rows for the legend, one too few when the
    columns do not divide n: only divisors of n are used, else pygal's own
    choice (None), which it sizes right.
    """
    n = len(labels)
    if n < 2:
        return None
    longest = min(LEGEND_CHARS, max(len(label) for label in labels))
    fit = max(1, int((width - 40) // (longest * 0.6 * STYLE.legend_font_size + 36)))
    best = next(c for c in range(min(n, fit), 0, -1) if n % c == 0)
    return best if best >= min(fit, math.ceil(math.sqrt(n))) else None


# Tick spacing candidates for the time axis, seconds.
_TICKS = (60, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)


def time_ticks(start: float, end: float, target: int = 6) -> list[float]:
    """Round instants (on the local clock) between start and end, about `target` of them."""
    step = next((s for s in _TICKS if (end - start) / s <= target), _TICKS[-1])
    offset = time.localtime(start).tm_gmtoff  # ticks fall on local hours and midnights
    first = ((start + offset) // step + 1) * step - offset
    ticks = []
    t = first
    while t < end:
        ticks.append(t)
        t += step
    return ticks


def time_label(span: float) -> Callable[[float], str]:
    """A formatter of instants suited to a chart spanning `span` seconds: the tables' format
    (2026-12-03 14:39, collector.web.filters.clock) without what the span makes obvious."""
    pattern = "%H:%M" if span <= 86400 else "%m-%d %H:%M"
    return lambda t: time.strftime(pattern, time.localtime(t))


def isolated(points: Sequence[tuple[float, float | None]]) -> bool:
    """Whether a line has a value with no value on either side: pygal would draw it as nothing."""
    for i, (_, v) in enumerate(points):
        if v is None:
            continue
        before = i > 0 and points[i - 1][1] is not None
        after = i + 1 < len(points) and points[i + 1][1] is not None
        if not (before or after):
            return True
    return False


def _timeline(chart: Any) -> Callable[[Any], Any]:
    """An xml_filter telling the page's script where time runs on the plot: x = 0 at data-t0,
    x = data-w at data-t1 (zoom by selection and the shared crosshair map pointer and time)."""

    def mark(root: Any) -> Any:
        view, plot = chart.view, chart.nodes["plot"]
        plot.set("data-t0", f"{view.box.xmin:.3f}")
        plot.set("data-t1", f"{view.box.xmax:.3f}")
        plot.set("data-w", f"{view.width:.2f}")
        return root

    return mark


def _marks(chart: Any, marks: Marks, start: float, end: float) -> Callable[[Any], Any]:
    """An xml_filter drawing `marks` under the lines, in the plot's coordinates (pygal's view)."""

    def draw(root: Any) -> Any:
        view, plot, svg = chart.view, chart.nodes["plot"], chart.svg
        group = svg.node(plot, "g", class_="marks")
        plot.remove(group)
        plot.insert(1, group)  # after the background: under the axes and the lines
        for band in marks.bands:
            left, right = max(band.start, start), min(band.end if band.end is not None else end, end)
            if right <= left:
                continue
            link = svg.node(group, "a", href=band.href, class_=f"band band-{band.severity}")
            x = view.x(left)
            svg.node(link, "rect", x=f"{x:.1f}", y="0", width=f"{max(2.0, view.x(right) - x):.1f}",
                     height=f"{view.height:.1f}")  # fmt: skip
            svg.node(link, "title").text = band.title
        for level in marks.levels:
            y = view.y(level.value)
            if y is None or not 0 <= y <= view.height:
                continue  # above the axis: the values are far below it
            line = svg.node(group, "g", class_=f"level level-{level.severity}")
            svg.node(line, "line", x1="0", x2=f"{view.width:.1f}", y1=f"{y:.1f}", y2=f"{y:.1f}")
            svg.node(line, "title").text = level.label
        return root

    return draw


def _trim(root: Any) -> Any:
    """An xml_filter: drop pygal's inline config <script>, keeping scripts loaded by URL."""
    defs = root.find("defs")
    for element in list(defs if defs is not None else ()):
        if element.tag == "script" and not any(str(k).endswith("href") for k in element.attrib):
            defs.remove(element)
    return root


def time_chart(
    title: str,
    series: Sequence[Serie],
    *,
    unit: str,
    start: float,
    end: float,
    note: str = "",
    js: Sequence[str] = (),
    marks: Marks = NO_MARKS,
) -> str:
    """A line chart of `series` over [start, end), as an <svg class="pygal-chart chart"> string.

    A value with no neighbour is drawn as a dot (a line needs two points), and `marks`
    (thresholds, alert periods) under the lines."""
    values = [v for serie in series for _, v in serie.points if v is not None]
    if unit == "%":
        ticks: list[float] | None = PERCENT_TICKS
    elif values:
        ticks = (rate_ticks if unit in ("B/s", "B") else decimal_ticks)(max(values))
    else:
        ticks = None
    chart = pygal.XY(
        style=STYLE,
        title=title,
        x_title=note or None,
        js=list(js),
        classes=["pygal-chart", "chart"],
        disable_xml_declaration=True,
        width=WIDTH,
        height=HEIGHT,
        margin=12,
        allow_interruptions=True,  # a None value breaks the line: gaps stay visible
        show_dots=False,  # see the module's docstring: the tooltip reads chart_points
        xrange=(start, end),
        x_labels=time_ticks(start, end),
        x_value_formatter=time_label(end - start),
        value_formatter=AXIS_LABELS[unit],  # the axis only: the tooltip formats its own values
        y_labels=ticks,
        range=(0, 100) if unit == "%" else None,
        include_x_axis=True,  # every chart here starts at zero
        show_legend=bool(series),
        legend_at_bottom=True,
        legend_at_bottom_columns=legend_columns([serie.label for serie in series]),
        truncate_legend=LEGEND_CHARS,
        show_x_guides=False,
        no_data_text="No data",
    )
    chart.add_xml_filter(_trim)
    chart.add_xml_filter(_timeline(chart))
    if values and (marks.levels or marks.bands):
        chart.add_xml_filter(_marks(chart, marks, start, end))
    # pygal's XY chart fails on no series at all: an empty one makes it say "No data".
    for serie in series or [Serie("", [])]:
        if isolated(serie.points):
            chart.add(serie.label, serie.points, show_dots=True, dots_size=2.5)
        else:
            chart.add(serie.label, serie.points)
    return chart.render(is_unicode=True)


ROUNDING = {
    "%": 2,
    "B/s": 0,
    "B": 0,
    "": 3,
    "/s": 1,
    "s": 5,
}  # decimals kept in chart_points: what the tooltip can show


def chart_points(series: Sequence[Serie], start: float, width: float, unit: str) -> dict[str, Any]:
    """The numbers of a chart for its tooltip: each line's values per bucket since `start`.

    Compact on purpose (it travels with every chart): times are implied by the
    bucket index (t = start + i * width), a missing bucket is null. Gaps that
    `with_gaps` inserted between buckets are not values and are left out.
    """
    digits = ROUNDING[unit]
    lines = []
    for serie in series:
        values: dict[int, float] = {}
        for t, v in serie.points:
            index = (t - start) / width
            if v is not None and index == int(index):
                values[int(index)] = round(v, digits) if digits else round(v)
        count = max(values, default=-1) + 1
        lines.append({"label": serie.label, "values": [values.get(i) for i in range(count)]})
    return {"start": start, "width": width, "unit": unit, "series": lines}
