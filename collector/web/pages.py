"""The HTML pages people read: the fleet overview and one page per host."""

from __future__ import annotations

import time

from flask import Blueprint, render_template, request, url_for

from collector.web import fleet, series, views

bp = Blueprint("pages", __name__)


def chart_scripts() -> list[str]:
    """The tooltip script, served by this app (pygal would link it from a CDN)."""
    return [url_for("static", filename="pygal-tooltips.js")]


def hard_reload() -> bool:
    """The browser asked for a fresh copy (a hard reload sends `Cache-Control: no-cache`)."""
    return "no-cache" in request.headers.get("Cache-Control", "")


@bp.route("/")
def overview() -> str:
    return render_template(
        "overview.html", view=views.overview(time.time(), request.args), statuses=fleet.STATUSES
    )


@bp.route("/host/<name>")
def host(name: str) -> str:
    now = time.time()
    charts = views.charts(name, request.args, now, chart_scripts(), hard_reload())
    view = views.host(name, now, at=charts["at"])
    shown = series.View(charts["range"], charts["start"], charts["end"], charts["live"], charts["at"])
    picks = charts["picks"]  # a disk or interface picked stays picked across ranges and zooms
    zoom = {
        label: url_for("pages.host", name=name, **{"from": f"{start:.0f}", "to": f"{end:.0f}", **picks})
        for label, (start, end) in (
            ("in", series.zoomed(shown, 0.5, now)),
            ("out", series.zoomed(shown, 2.0, now)),
            # Earlier and later by half the span, for a look around a moment.
            (
                "earlier",
                (shown.start - (shown.end - shown.start) / 2, shown.end - (shown.end - shown.start) / 2),
            ),
        )
    }
    return render_template(
        "host.html", view=view, charts=charts, specs=series.CHARTS, ranges=list(series.RANGES), zoom=zoom
    )
