"""Time series of one host, reduced to a few hundred points in SQL, and the charts drawn from them.

Downsampling: a range (1h ... 30d) is cut into at most POINTS buckets of a
round width (15 s, 2 min, 5 min, 1 h, 3 h ...); SQLite groups the samples by
CAST(ts / width AS INTEGER) and returns min, avg and max of each bucket, so
Python only ever sees a few hundred rows. Charts draw the max, so a spike
shorter than a bucket still shows at its full height.

Ranges of a few hours and more read the rollup tiers (one row per minute or
per hour, collector.store.rollups), never every sample.

Per-core and per-mount numbers live in msgpack `detail` blobs, which SQLite
cannot read: for those, Python merges the rows of each bucket (rollup rows
already hold each entity's maximum), so the per-core line shows each core's
own peak in the bucket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from collector.liveness import DEFAULT_INTERVAL
from collector.store import Bucket, DetailBucket, Store
from collector.store.rollups import MINUTE
from collector.store.web import DETAIL_KEYS, ROLLUP_ONLY
from collector.web.chartcache import ChartCache
from collector.web.charts import NO_MARKS, Marks, Serie, chart_points, time_chart
from collector.web.errors import BadRequest
from osmon import catalog
from osmon.limits import MAX_ENTITY_NAME

RANGES: dict[str, float] = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
DEFAULT_RANGE = "6h"
POINTS = 300  # buckets per series, at most
MAX_POINTS = 2000  # what the API lets a client ask for
MAX_ENTITIES = 32  # cores or mounts per chart: the busiest/fullest ones
# Bucket widths, seconds: round ones make "max per 5 min" readable and stable.
_SECONDS = (1, 2, 5, 10, 15, 20, 30)
_MINUTES = (1, 2, 5, 10, 15, 20, 30)
_HOURS = (1, 2, 3, 6, 12, 24)
_WIDTHS = (*_SECONDS, *(m * 60 for m in _MINUTES), *(h * 3600 for h in _HOURS))


MIN_SPAN = 300.0  # the narrowest zoom: 5 minutes
MAX_SPAN = 400 * 86400.0


def parse_range(name: str | None) -> tuple[str, float]:
    """(name, seconds) of a range given as ?range=; BadRequest for an unknown one."""
    name = name or DEFAULT_RANGE
    if name not in RANGES:
        raise BadRequest(f"unknown range {name[:20]!r}: one of {', '.join(RANGES)}")
    return name, RANGES[name]


def _instant(name: str, value: str) -> float:
    """Unix seconds, or an ISO 8601 date and time (without a zone: the server's, as the page shows)."""
    try:
        t = float(value)
    except ValueError:
        try:
            t = datetime.fromisoformat(value.strip()).timestamp()
        except (ValueError, OverflowError, OSError):
            raise BadRequest(f"?{name}= must be a date and time (2026-12-03T14:00) or Unix seconds") from None
    if not 0 <= t <= catalog.MAX_TS:
        raise BadRequest(f"?{name}= is not a plausible instant")
    return t


def zoomed(view: View, factor: float, now: float) -> tuple[float, float]:
    """(from, to) of `view` zoomed by `factor` (0.5: in, 2: out) around its middle, never past now."""
    span = min(MAX_SPAN, max(MIN_SPAN, (view.end - view.start) * factor))
    middle = (view.start + view.end) / 2
    end = min(now, middle + span / 2)
    return end - span, end


class View(NamedTuple):
    """What a host page shows: a live range ending now, or a fixed span (zoomed, or around an alert)."""

    range: str  # '6h' ..., or 'custom'
    start: float
    end: float
    live: bool
    at: float | None  # the moment asked for (?at=), e.g. an alert's start

    def window(self, points: int = POINTS) -> Window:
        return Window.between(self.start, self.end, points)


def parse_view(args: dict[str, str], now: float) -> View:
    """The time a page or API call asks for: ?range=, or ?from=&to= (a zoom), or ?at= (a moment,
    shown in the middle of ?range=, 1h by default); BadRequest for anything else."""
    given = {k: args[k] for k in ("from", "to", "at") if args.get(k)}
    if "at" in given:
        at = _instant("at", given["at"])
        _, span = parse_range(args.get("range") or "1h")
        start = min(at - span / 2, now - span)  # around the moment, never into the future
        return View("custom", start, start + span, False, at)
    if given:
        if set(given) != {"from", "to"}:
            raise BadRequest("?from= and ?to= go together")
        start, end = _instant("from", given["from"]), _instant("to", given["to"])
        if not MIN_SPAN <= end - start <= MAX_SPAN:
            raise BadRequest("?to= must be 5 minutes to 400 days after ?from=")
        return View("custom", start, end, False, None)
    name, span = parse_range(args.get("range"))
    return View(name, now - span, now, True, None)


def bucket_width(span: float, points: int = POINTS) -> float:
    """The smallest round width that cuts `span` seconds into at most `points` buckets.

    A window of `span` seconds touches at most ceil(span / width) + 1 aligned
    buckets, hence span / (points - 1).
    """
    exact = span / max(1, points - 1)
    return float(next((w for w in _WIDTHS if w >= exact), math.ceil(exact)))


def describe(width: float) -> str:
    """'15 s', '5 min', '3 h' ..."""
    if width < 60:
        return f"{width:g} s"
    if width < 3600:
        return f"{width / 60:g} min"
    return f"{width / 3600:g} h"


class Window(NamedTuple):
    """What to read: [start, end) in `width`-second buckets."""

    start: float
    end: float
    width: float

    @classmethod
    def of(cls, span: float, now: float, points: int = POINTS) -> Window:
        """The buckets that hold the last `span` seconds up to `now`: at most `points` of them.

        Aligned on whole buckets, so that a chart redrawn within the same
        bucket covers the same time and groups the same samples.
        """
        return cls.between(now - span, now, points)

    @classmethod
    def between(cls, start: float, end: float, points: int = POINTS) -> Window:
        """The aligned buckets that hold [start, end]: at most `points` of them."""
        width = bucket_width(end - start, points)
        return cls(math.floor(start / width) * width, (math.floor(end / width) + 1) * width, width)


class ChartSpec(NamedTuple):
    """One chart of the host page: stored columns (column, label), or per-entity numbers of `detail`."""

    id: str
    title: str
    unit: str
    columns: tuple[tuple[str, str], ...] = ()
    detail: str | None = None  # per-entity numbers: collector.store.web.DETAIL_KEYS
    of: str | None = None  # the columns are percentages of this metric of the latest snapshot (catalog.Chart)
    rest: str | None = None  # the label of one more line: `of` minus the first column's line
    entities: str | None = None  # per-entity pairs one entity of which may be picked (PICKS)
    entity: str | None = None  # the entity picked: its pair is drawn instead of the columns


def _columns(chart: catalog.Chart) -> tuple[tuple[str, str], ...]:
    """(column, label) of the lines of `chart`: the metrics it borrows first, then its own."""
    borrowed = [(catalog.BY_NAME[name], label) for name, label in chart.also]
    own = [(m, m.label) for m in catalog.STORED if m.chart == chart.id]
    return tuple((m.column, label) for m, label in (*borrowed, *own) if m.column is not None)


# The host page's charts, in the catalog's order: its metrics drawn in each, or its per-entity series.
CHARTS: tuple[ChartSpec, ...] = tuple(
    ChartSpec(
        chart.id,
        chart.title,
        chart.unit.symbol,
        columns=_columns(chart),
        detail=next((s.name for s in catalog.SERIES if s.chart == chart.id), None),
        of=chart.of or None,
        rest=chart.rest or None,
        entities=chart.entities or None,
    )
    for chart in catalog.CHARTS
)


class Pick(NamedTuple):
    """What a URL parameter such as ?device= picks one entity of."""

    chart: str  # the chart's id
    series: str  # the per-entity series of pairs drawn for that entity


# The URL's parameters picking one entity of a chart: {"device": ("diskio", "disk.io"), "interface": ...}.
PICKS: dict[str, Pick] = {
    catalog.SERIES_BY_NAME[spec.entities].entity: Pick(spec.id, spec.entities)
    for spec in CHARTS
    if spec.entities is not None
}


def parse_picks(args: Mapping[str, str]) -> dict[str, str]:
    """{parameter: entity} of the entities a page or API call picks (?device=vda&interface=eth0);
    an empty one picks none (the host's totals); BadRequest for a name longer than any entity's."""
    picks = {}
    for param in PICKS:
        value = args.get(param) or ""
        if len(value) > MAX_ENTITY_NAME:
            raise BadRequest(f"?{param}= is longer than any {param} name")
        if value:
            picks[param] = value
    return picks


def picked(specs: Sequence[ChartSpec], picks: Mapping[str, str]) -> list[ChartSpec]:
    """`specs` with the entities of `picks` chosen, each named in its chart's title."""
    chosen = {PICKS[param].chart: entity for param, entity in picks.items()}
    return [
        spec._replace(entity=chosen[spec.id], title=f"{spec.title}: {chosen[spec.id]}")
        if spec.id in chosen
        else spec
        for spec in specs
    ]


# The API's ?metric= names: the catalog's stored metrics (by column), plus the per-entity series.
METRICS: dict[str, str] = {m.name: m.column for m in catalog.STORED if m.column is not None}
DETAIL_METRICS = DETAIL_KEYS


# Per-device rates come as [a, b] pairs per device (osmon.wire): one line each, named so.
PAIRS = {s.name: s.pair for s in catalog.SERIES if s.shape == "pairs"}


def entities(key: str, detail: dict[str, Any]) -> dict[str, float | None]:
    """Per-entity numbers of one sample: {'cpu0': 12.0, ...}, {'/var': 71.0, ...} or
    {'vda read': 1e6, 'vda write': 2e6, ...}."""
    value = detail.get(key)
    if isinstance(value, list):
        return {f"cpu{i}": v for i, v in enumerate(value)}
    if not isinstance(value, dict):
        return {}
    if key not in PAIRS:
        return dict(value)
    return {
        f"{device} {name}": number
        for device, pair in value.items()
        if isinstance(pair, list)
        for name, number in zip(PAIRS[key], pair, strict=False)
    }


def detail_series(key: str, buckets: Sequence[DetailBucket]) -> dict[str, list[tuple[float, float | None]]]:
    """{entity: [(t, value)]} of each bucket's maxima, the MAX_ENTITIES highest entities."""
    series: dict[str, list[tuple[float, float | None]]] = {}
    for b in buckets:
        for name, value in entities(key, b.detail).items():
            series.setdefault(str(name), []).append((b.t, value))
    highest = sorted(series, key=lambda n: -max((v for _, v in series[n] if v is not None), default=-1.0))
    return {name: series[name] for name in sorted(highest[:MAX_ENTITIES], key=_natural)}


def _natural(name: str) -> tuple:
    """cpu2 before cpu10."""
    digits = name.rstrip("0123456789")
    return (digits, int(name[len(digits) :]) if name[len(digits) :] else -1)


def column_points(buckets: Sequence[Bucket], index: int, stat: int = 2) -> list[tuple[float, float | None]]:
    """(t, value) of one column of `web_series` buckets; stat 0 min, 1 avg, 2 max."""
    return [(b.t, b.stats[index][stat]) for b in buckets]


def with_gaps(points: list[tuple[float, float | None]], max_gap: float) -> list[tuple[float, float | None]]:
    """Insert a None where consecutive points are further apart than `max_gap`, so the line breaks."""
    result: list[tuple[float, float | None]] = []
    for point in points:
        if result and point[0] - result[-1][0] > max_gap:
            result.append(((point[0] + result[-1][0]) / 2, None))
        result.append(point)
    return result


def max_gap(width: float, interval: float | None) -> float:
    """Buckets further apart than this mean the host sent nothing in between."""
    return 2.5 * max(width, interval or DEFAULT_INTERVAL)


def detail_gap(key: str, width: float, interval: float | None) -> float:
    """max_gap of a per-entity series: those kept by the tiers only have one value a minute at best."""
    return max_gap(max(width, MINUTE.width) if key in ROLLUP_ONLY else width, interval)


def pair_series(
    key: str, entity: str, buckets: Sequence[DetailBucket]
) -> dict[str, list[tuple[float, float | None]]]:
    """{'read': [(t, value)], 'write': [...]} of one entity of per-entity pairs; {} if it has none."""
    labels = PAIRS[key]
    found: dict[str, list[tuple[float, float | None]]] = {label: [] for label in labels}
    seen = False
    for b in buckets:
        pair = (b.detail.get(key) or {}).get(entity)
        if isinstance(pair, list):
            seen = True
            for label, value in zip(labels, pair, strict=False):
                found[label].append((b.t, value))
    return found if seen else {}


def natural_order(names: Iterable[str]) -> list[str]:
    """Entity names as people count them: sdb before sdb2, eth2 before eth10."""
    return sorted(names, key=_natural)


def shares(lines: Sequence[Serie], total: float | None, rest: str | None) -> list[Serie]:
    """Lines of percentages of `total`, in its unit, and `rest` (total minus the first line); none
    without a total (an agent that does not send it)."""
    if total is None or total <= 0:
        return []
    scaled = [
        Serie(line.label, [(t, None if v is None else v * total / 100) for t, v in line.points])
        for line in lines
    ]
    if rest and scaled:
        scaled.append(Serie(rest, [(t, None if v is None else total - v) for t, v in scaled[0].points]))
    return scaled


def all_chart_series(
    store: Store,
    host: str,
    specs: Sequence[ChartSpec],
    window: Window,
    interval: float | None,
    totals: Mapping[str, float] | None = None,
) -> dict[str, list[Serie]]:
    """{chart id: lines} of `specs`, in two reads: one for every column, one for every per-entity key
    (an entity's pair only where one is picked). `totals`: what the `of` charts are percentages of."""
    start, end, width = window
    gap = max_gap(width, interval)
    columns = [c for spec in specs if spec.entity is None for c, _ in spec.columns]
    picked_keys = (spec.entities if spec.entity is not None else None for spec in specs)
    keys = list(dict.fromkeys(k for k in (*(spec.detail for spec in specs), *picked_keys) if k is not None))
    buckets = store.web_series(host, columns, start, end, width) if columns else []
    details = store.web_series_details(host, keys, start, end, width) if keys else {}
    result: dict[str, list[Serie]] = {}
    first = 0  # index of the spec's first column in `columns`
    for spec in specs:
        if spec.detail is not None:
            lines = detail_series(spec.detail, details[spec.detail])
            spaced = detail_gap(spec.detail, width, interval)
            result[spec.id] = [Serie(name, with_gaps(points, spaced)) for name, points in lines.items()]
        elif spec.entity is not None and spec.entities is not None:
            pairs = pair_series(spec.entities, spec.entity, details[spec.entities])
            spaced = detail_gap(spec.entities, width, interval)
            result[spec.id] = [Serie(label, with_gaps(points, spaced)) for label, points in pairs.items()]
        else:
            drawn = [
                Serie(label, with_gaps(column_points(buckets, first + i), gap))
                for i, (_, label) in enumerate(spec.columns)
            ]
            first += len(spec.columns)
            result[spec.id] = (
                drawn if spec.of is None else shares(drawn, (totals or {}).get(spec.of), spec.rest)
            )
    return result


class Chart(NamedTuple):
    """One drawn chart: its SVG, and its numbers for the tooltip (charts.chart_points)."""

    svg: str
    points: dict[str, Any]


def note(lines: Sequence[Serie], window: Window) -> str:
    """Under a chart: the time zone of its axis, and since when there is data if not from the start."""
    zone = time.strftime("%Z")
    first = min((t for line in lines for t, v in line.points if v is not None), default=None)
    if first is None or first - window.start < 0.1 * (window.end - window.start):
        return f"times {zone}"
    shown = time.strftime("%H:%M" if window.end - first < 86400 else "%Y-%m-%d %H:%M", time.localtime(first))
    return f"data since {shown} {zone}"


def draw_chart(
    spec: ChartSpec, lines: Sequence[Serie], window: Window, js: Sequence[str], marks: Marks = NO_MARKS
) -> Chart:
    """One chart of the host page, drawn from its lines."""
    svg = time_chart(
        spec.title,
        lines,
        unit=spec.unit,
        start=window.start,
        end=window.end,
        note=note(lines, window),
        js=js,
        marks=marks,
    )
    return Chart(svg, chart_points(lines, window.start, window.width, spec.unit))


def host_charts(
    store: Store,
    host: str,
    window: Window,
    interval: float | None,
    js: Sequence[str],
    cache: ChartCache | None = None,
    fresh: bool = False,
    marks: dict[str, Marks] | None = None,
    totals: Mapping[str, float] | None = None,
    picks: Mapping[str, str] | None = None,
) -> dict[str, Chart]:
    """{chart id: Chart} of every chart of the host page: the lines read from the store, drawn
    unless `cache` holds a drawing of these very lines (collector.web.chartcache). `totals`: see
    all_chart_series; `picks`: the entities picked (parse_picks)."""
    charts = {}
    specs = picked(CHARTS, picks or {})
    every_line = all_chart_series(store, host, specs, window, interval, totals)
    for spec in specs:
        lines = every_line[spec.id]
        chart_marks = (marks or {}).get(spec.id, NO_MARKS)

        def draw(
            spec: ChartSpec = spec, lines: list[Serie] = lines, chart_marks: Marks = chart_marks
        ) -> Chart:
            return draw_chart(spec, lines, window, js, chart_marks)

        if cache is None:
            charts[spec.id] = draw()
        else:
            drawn_from = tuple((line.label, tuple(line.points)) for line in lines)
            key = (host, spec.id, spec.title, window, tuple(js), drawn_from, chart_marks, time.strftime("%Z"))
            charts[spec.id] = cache.get(key, draw, fresh)
    return charts


def metric_series(store: Store, host: str, metric: str, window: Window) -> list[dict[str, Any]]:
    """The API's series of one metric: [{name, columns, data}]; BadRequest for an unknown metric."""
    start, end, width = window
    if metric in METRICS:
        buckets = store.web_series(host, [METRICS[metric]], start, end, width)
        data = [[b.t, *b.stats[0]] for b in buckets]
        return [{"name": metric, "columns": ["t", "min", "avg", "max"], "data": data}]
    if metric in DETAIL_METRICS:
        details = store.web_series_detail(host, metric, start, end, width)
        return [
            {"name": f"{metric}:{entity}", "columns": ["t", "value"], "data": [list(p) for p in points]}
            for entity, points in detail_series(metric, details).items()
        ]
    known = ", ".join([*METRICS, *DETAIL_METRICS])
    raise BadRequest(f"unknown metric {metric[:40]!r}: one of {known}")
