"""What a host page's charts show besides their lines: the host's effective thresholds, and its alerts.

Thresholds come from the collector's rules (collector.rules: defaults, the config, per-host
overrides), so a chart draws the very levels detection compares to. An alert is shaded on the
chart of its metric (a host down on every chart) and links to the host page at its start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from collector.detection import DOWN
from collector.rules import Rules
from collector.store import Alert
from collector.web.charts import Band, Level, Marks
from collector.web.fleet import rule_title
from osmon import catalog

# The chart each alerted metric is drawn in.
CHART_OF: dict[str, str] = {e.name: e.chart for e in catalog.ENTRIES if e.levels is not None and e.chart}


def levels(rules: Rules, host: str, cpus: float | None) -> dict[str, tuple[Level, ...]]:
    """{chart id: its threshold lines} for `host`; a per-core level times `cpus` (none if unknown)."""
    found: dict[str, list[Level]] = {}
    for entry in catalog.ENTRIES:
        if entry.levels is None or not entry.chart or entry.name not in rules.base:
            continue
        per_core = isinstance(entry, catalog.Metric) and entry.per_core
        if per_core and not cpus:
            continue
        threshold, _ = rules.lookup(host, entry.name)
        unit = f" {entry.unit.symbol}" if entry.unit.symbol else ""
        for severity in ("warning", "critical"):
            value = threshold.limit(severity)
            if value is None:
                continue
            shown = value * cpus if per_core and cpus else value
            label = f"{entry.title or entry.name} {severity} {shown:g}{unit}"
            found.setdefault(entry.chart, []).append(Level(shown, severity, label))
    return {chart: tuple(lines) for chart, lines in found.items()}


def bands(alerts: Sequence[Alert], href: Callable[[Alert], str]) -> dict[str, tuple[Band, ...]]:
    """{chart id: its alert periods}; a host down shades every chart."""
    found: dict[str, list[Band]] = {}
    for a in alerts:
        metric = a.rule.partition(":")[0]
        charts = [c.id for c in catalog.CHARTS] if a.rule == DOWN else [CHART_OF.get(metric, "")]
        title = f"{a.severity}: {rule_title(a.rule)}"
        for chart in charts:
            if chart:
                found.setdefault(chart, []).append(Band(a.started, a.ended, a.severity, title, href(a)))
    return {chart: tuple(b) for chart, b in found.items()}


def chart_marks(
    rules: Rules, host: str, cpus: float | None, alerts: Sequence[Alert], href: Callable[[Alert], str]
) -> dict[str, Marks]:
    """{chart id: Marks} of every chart of `host`'s page."""
    lines, shaded = levels(rules, host, cpus), bands(alerts, href)
    return {chart: Marks(lines.get(chart, ()), shaded.get(chart, ())) for chart in {*lines, *shaded}}
