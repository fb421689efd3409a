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
    return render_template("overview.html", view=views.overview(time.time()), statuses=fleet.STATUSES)


@bp.route("/host/<name>")
def host(name: str) -> str:
    now = time.time()
    view = views.host(name, now)
    charts = views.charts(name, request.args.get("range"), now, chart_scripts(), hard_reload())
    return render_template(
        "host.html", view=view, charts=charts, specs=series.CHARTS, ranges=list(series.RANGES)
    )
