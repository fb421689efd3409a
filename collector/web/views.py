"""What each page shows, read from the store: the HTML pages and the JSON API call the same functions,
so what a person sees and what a script reads never differ."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collector.web import fleet, hostinfo, series
from collector.web.context import chart_cache, config, store
from collector.web.errors import NotFound

HISTORY_LIMIT = 200


def overview(now: float) -> dict[str, Any]:
    """Every host with its status, counts per status, active alerts, the latest CERT-FR alert."""
    s = store()
    active = s.alerts_active()
    rows = fleet.overview(s.web_hosts(), active, s.silences(now), config().down_after, now)
    return {
        "now": now,
        "refresh": config().web_refresh,
        "counts": fleet.counts(rows),
        "hosts": rows,
        "alerts": [fleet.alert_dict(a, now) for a in active],
        "certfr": fleet.certfr_dict(s.certfr_latest()),
    }


def host(name: str, now: float) -> dict[str, Any]:
    """One host: its overview row, facts, filesystems, processes, users, alerts, silence."""
    s = store()
    found = s.web_host(name)
    if found is None:
        raise NotFound(f"no host named {name[:100]!r} has reported to this collector")
    active = [a for a in s.alerts_active() if a.host == name]
    silence = next((x for x in s.silences(now) if x.host == name), None)
    latest = fleet.decode_latest(found)
    return {
        "now": now,
        "refresh": config().web_refresh,
        "host": fleet.host_row(found, latest, active, silence, config().down_after, now),
        **hostinfo.detail(latest),
        "silence": fleet.silence_dict(silence) if silence else None,
        "alerts": [fleet.alert_dict(a, now) for a in s.alerts_history(name, limit=50)],
    }


def charts(
    name: str, range_name: str | None, now: float, js: Sequence[str], fresh: bool = False
) -> dict[str, Any]:
    """Every chart of a host's page over a range: SVG strings, and the numbers their tooltips show.

    A chart whose numbers were drawn already is not drawn again, unless `fresh`
    (collector.web.chartcache)."""
    s = store()
    found = s.web_host(name)
    if found is None:
        raise NotFound(f"no host named {name[:100]!r} has reported to this collector")
    range_name, span = series.parse_range(range_name)
    window = series.Window.of(span, now)
    drawn = series.host_charts(s, name, window, found.interval, js, chart_cache(), fresh)
    return {
        "now": now,
        "range": range_name,
        "bucket": window.width,
        "bucket_name": series.describe(window.width),  # '15 s', '3 h'
        # Redrawing more often than a bucket fills would redraw the same picture.
        "refresh": max(config().web_refresh, window.width),
        "charts": {chart_id: chart.svg for chart_id, chart in drawn.items()},
        "points": {chart_id: chart.points for chart_id, chart in drawn.items()},
    }


def metric_series(name: str, metric: str, range_name: str | None, points: int, now: float) -> dict[str, Any]:
    """One metric of one host over a range, downsampled in SQL."""
    s = store()
    if s.web_host(name) is None:
        raise NotFound(f"no host named {name[:100]!r} has reported to this collector")
    range_name, span = series.parse_range(range_name)
    window = series.Window.of(span, now, points)
    return {
        "host": name,
        "metric": metric,
        "range": range_name,
        "start": window.start,
        "end": window.end,
        "bucket": window.width,
        "series": series.metric_series(s, name, metric, window),
    }


def alerts(now: float) -> dict[str, Any]:
    """Active alerts, recent history, silences in force."""
    s = store()
    return {
        "now": now,
        "refresh": config().web_refresh,
        "active": [fleet.alert_dict(a, now) for a in s.alerts_active()],
        "history": [fleet.alert_dict(a, now) for a in s.alerts_history(limit=HISTORY_LIMIT)],
        "silences": [fleet.silence_dict(x) for x in s.silences(now)],
        "hosts": [h.name for h in s.web_hosts()],
    }


def certfr(limit: int = 20) -> dict[str, Any]:
    """The latest CERT-FR alerts, newest first."""
    items = store().certfr_items(limit=limit)
    return {
        "latest": fleet.certfr_dict(items[0]) if items else None,
        "items": [fleet.certfr_dict(i) for i in items],
    }
