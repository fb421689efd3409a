"""The JSON API: what the pages show, for the pages' own refresh and for scripts."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from collector.web import series, views
from collector.web.errors import BadRequest
from collector.web.pages import chart_scripts, hard_reload

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.after_request
def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"  # live data, and not for shared caches
    return response


@bp.route("/hosts")
def hosts() -> Response:
    return jsonify(views.overview(time.time(), request.args))


@bp.route("/hosts/<name>")
def host(name: str) -> Response:
    return jsonify(views.host(name, time.time()))


@bp.route("/hosts/<name>/series")
def host_series(name: str) -> Response:
    metric = request.args.get("metric")
    if not metric:
        raise BadRequest("?metric= is required, e.g. cpu.percent")
    try:
        points = int(request.args.get("points", series.POINTS))
    except ValueError:
        raise BadRequest("?points= must be an integer") from None
    if not 3 <= points <= series.MAX_POINTS:
        raise BadRequest(f"?points= must be between 3 and {series.MAX_POINTS}")
    return jsonify(views.metric_series(name, metric, request.args.get("range"), points, time.time()))


@bp.route("/hosts/<name>/charts")
def host_charts(name: str) -> Response:
    return jsonify(views.charts(name, request.args, time.time(), chart_scripts(), hard_reload()))


@bp.route("/alerts")
def alerts() -> Response:
    return jsonify(views.alerts(time.time()))


@bp.route("/certfr")
def certfr() -> Response:
    return jsonify(views.certfr())
