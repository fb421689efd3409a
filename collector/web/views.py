"""What each page shows, read from the store: the HTML pages and the JSON API call the same functions,
so what a person sees and what a script reads never differ."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from flask import url_for

from collector.store import Alert, Store, WebHost
from collector.web import fleet, hostinfo, series, trends
from collector.web.context import chart_cache, config, store
from collector.web.errors import NotFound
from collector.web.marks import chart_marks
from osmon import catalog, wire

HISTORY_LIMIT = 200
HOST_ALERTS = 50  # the alert history of a host page
ALERTS_ON_CHARTS = 200  # a host's latest alerts, the ones a chart can shade


def overview(now: float, args: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Hosts of the fleet one page at a time (fleet.Query: filtered and sorted here, so a browser
    never holds 10,000 rows), counts per status of all of them, active alerts, the latest CERT-FR alert.

    Every host is ranked on its summary (a few numbers the collector keeps per host); only the
    page's hosts have their latest snapshots read and decoded for their rows."""
    s = store()
    active, silences = s.alerts_active(), s.silences(now)
    down_after = config().down_after
    query = fleet.Query.parse(args or {})
    summaries = s.web_summaries()
    if unsummarised := [h.name for h in summaries if h.ts is None and h.latest_ts is not None]:
        found = {h.name: fleet.summarised(h) for h in s.web_hosts_named(unsummarised)}
        summaries = [found.get(h.name, h) if h.ts is None else h for h in summaries]
    ranks = fleet.ranked(summaries, active, silences, down_after, now)
    urgent = fleet.most_urgent(active)
    alerting = {a.host for a in urgent}
    seen = {h.name: h.last_seen for h in summaries if h.name in alerting}
    shown, matching = query.apply(ranks)
    names = [r["name"] for r in shown]
    full = {r["name"]: r for r in fleet.overview(s.web_hosts_named(names), active, silences, down_after, now)}
    start, end = trends.window(now)
    lines = s.web_trends(names, trends.COLUMNS, start, end, trends.BUCKET) if names else {}
    for name, row in full.items():
        row["trends"] = trends.host_trends(lines.get(name, []), start, end)
    changes = s.web_alert_changes(trends.strip_start(now), now + 1)
    return {
        "now": now,
        "refresh": config().web_refresh,
        "counts": fleet.counts(ranks),
        "silenced": fleet.silenced_count(ranks),
        "total": len(ranks),
        "matching": matching,
        "query": query._asdict(),
        "hosts": [full[r["name"]] for r in shown if r["name"] in full],
        "alerts": [fleet.alert_dict(a, now, seen.get(a.host)) for a in urgent],
        "alerts_total": len(active),
        "certfr": fleet.certfr_dict(s.certfr_latest()),
        "strip": trends.fleet_strip(summaries, changes, down_after, now),
    }


def host(name: str, now: float, at: float | None = None) -> dict[str, Any]:
    """One host: its overview row, facts, filesystems, processes, users, alerts with each change of
    their severity, silence."""
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
        "alerts": [
            {**fleet.alert_dict(a, now, found.last_seen), "events": alert_events(s, a)}
            for a in s.alerts_history(name, limit=HOST_ALERTS)
        ],
        "processes_at": processes_at(s, name, at) if at is not None else None,
    }


def processes_at(s: Store, name: str, at: float) -> dict[str, Any] | None:
    """The top processes kept by the alert of `name` going on at `at` (the page opened at an alert)."""
    found = s.alert_processes(name, at)
    if found is None:
        return None
    rule, fired, text = found
    try:
        kept = json.loads(text)
    except ValueError:
        return None
    if not isinstance(kept, dict):
        return None
    when = fleet.number(kept.get("ts"))
    return {"rule": fleet.rule_title(rule), "fired": fired, "ts": when, **hostinfo.top_lists(kept)}


def charts(
    name: str, args: Mapping[str, str], now: float, js: Sequence[str], fresh: bool = False
) -> dict[str, Any]:
    """Every chart of a host's page over the time `args` ask for (series.parse_view): SVG strings,
    the numbers their tooltips show, the host's thresholds and its alert periods on them.

    A chart whose numbers were drawn already is not drawn again, unless `fresh`
    (collector.web.chartcache)."""
    s = store()
    found = s.web_host(name)
    if found is None:
        raise NotFound(f"no host named {name[:100]!r} has reported to this collector")
    view = series.parse_view(dict(args), now)
    window = view.window()
    latest = fleet.read_latest(found)
    cpus = latest.metrics.get("cpu.count") if latest else None
    shown = [
        a for a in s.alerts_history(name, limit=ALERTS_ON_CHARTS)
        if a.started < window.end and (a.ended is None or a.ended > window.start)
    ]  # fmt: skip
    marks = chart_marks(config().thresholds, name, cpus, shown, alert_href)
    picks = series.parse_picks(args)
    totals = chart_totals(found, latest)
    drawn = series.host_charts(
        s, name, window, found.interval, js, chart_cache(), fresh, marks, totals, picks
    )
    return {
        "now": now,
        "range": view.range,
        "live": view.live,
        "start": view.start,
        "end": view.end,
        "at": view.at,
        "bucket": window.width,
        "bucket_name": series.describe(window.width),  # '15 s', '3 h'
        # Redrawing more often than a bucket fills would redraw the same picture.
        "refresh": max(config().web_refresh, window.width),
        "charts": {chart_id: chart.svg for chart_id, chart in drawn.items()},
        "points": {chart_id: chart.points for chart_id, chart in drawn.items()},
        # The entity picked on a chart (?device=vda), and those it could pick from.
        "picks": picks,
        "pickers": pickers(found, picks),
    }


def pickers(found: WebHost, picks: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """{chart id: the URL parameter picking one entity of it, the entity picked, and those of the
    host's latest snapshot to pick from} (one gone since can still be named in the URL)."""
    listed = [pick.series for pick in series.PICKS.values()]
    names = wire.entity_names(found.snapshot, listed) if found.snapshot is not None else {}
    return {
        pick.chart: {
            "param": param,
            "picked": picks.get(param),
            "choices": series.natural_order(names.get(pick.series, [])),
        }
        for param, pick in series.PICKS.items()
    }


def chart_totals(found: WebHost, latest: fleet.Latest | None) -> dict[str, float]:
    """The metrics of the latest snapshot that charts draw percentages of (memory total): read from
    its probe results for an agent too old to send them as metrics."""
    wanted = {spec.of for spec in series.CHARTS if spec.of}
    metrics = latest.metrics if latest else {}
    totals = {name: value for name in wanted if (value := metrics.get(name)) is not None}
    if wanted - totals.keys() and (decoded := fleet.decode_latest(found)) is not None:
        for name in wanted - totals.keys():
            source = catalog.BY_NAME[name].source
            read = source(decoded.probes) if source is not None else None
            if isinstance(read, int | float) and not isinstance(read, bool):
                totals[name] = float(read)
    return totals


def alert_events(s: Store, a: Alert) -> list[dict[str, Any]]:
    """When `a` fired, escalated, de-escalated and resolved, with its value then."""
    return [
        {"ts": ts, "kind": kind, "severity": severity, "text": fleet.alert_number(a.rule, value)}
        for ts, kind, severity, value in s.alert_events(a.id)
    ]


def alert_href(a: Alert) -> str:
    """The host page at the moment `a` started."""
    return url_for("pages.host", name=a.host, at=f"{a.started:.0f}")


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
    hosts = s.web_hosts()
    seen = {h.name: h.last_seen for h in hosts}
    return {
        "now": now,
        "refresh": config().web_refresh,
        "active": [fleet.alert_dict(a, now, seen.get(a.host)) for a in s.alerts_active()],
        "history": [
            fleet.alert_dict(a, now, seen.get(a.host)) for a in s.alerts_history(limit=HISTORY_LIMIT)
        ],
        "silences": [fleet.silence_dict(x) for x in s.silences(now)],
        "hosts": [h.name for h in hosts],
    }


def certfr(limit: int = 20) -> dict[str, Any]:
    """The latest CERT-FR alerts, newest first."""
    items = store().certfr_items(limit=limit)
    return {
        "latest": fleet.certfr_dict(items[0]) if items else None,
        "items": [fleet.certfr_dict(i) for i in items],
    }
