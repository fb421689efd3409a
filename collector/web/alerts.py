"""The alerts page, and silencing a host from the dashboard (the only writes it makes)."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from collector.web import views
from collector.web.auth import current_user, local_path
from collector.web.context import store
from collector.web.errors import BadRequest
from osmon import wire
from osmon.configfile import parse_duration

log = logging.getLogger("osmon.web")

bp = Blueprint("alerts", __name__)

MAX_SILENCE = 365 * 86400.0
REASON_LIMIT = 500


@bp.route("/alerts")
def page() -> str:
    return render_template("alerts.html", view=views.alerts(time.time()))


def _host_field() -> str:
    host = request.form.get("host", "").strip()
    if not wire.valid_host(host):
        raise BadRequest("not a valid host name")
    return host


def _back() -> Response:
    """Back to the page the form was on (a path of this site), else to the alerts page."""
    return redirect(local_path(request.form.get("next"), url_for("alerts.page")))


@bp.route("/alerts/silence", methods=["POST"])
def silence() -> Response:
    host = _host_field()
    try:
        duration = parse_duration(request.form.get("duration", "").strip())
    except ValueError:
        raise BadRequest("duration: expected e.g. 30m, 2h or 1d") from None
    if not 0 < duration <= MAX_SILENCE:
        raise BadRequest("duration: between 1 second and 365 days")
    reason = " ".join(request.form.get("reason", "").split())[:REASON_LIMIT]
    if not reason:
        raise BadRequest("reason: say why (it shows in the alerts page and the logs)")
    user = current_user()
    now = time.time()
    store().web_silence(host, now + duration, f"{reason} (by {user})", now)
    log.info("%s silenced %s for %ss: %s", user, host, duration, reason)
    flash(f"{host} silenced.", "ok")
    return _back()


@bp.route("/alerts/unsilence", methods=["POST"])
def unsilence() -> Response:
    host = _host_field()
    lifted = store().web_unsilence(host)
    log.info("%s lifted the silence of %s", current_user(), host)
    flash(f"{host}: silence lifted." if lifted else f"{host} was not silenced.", "ok")
    return _back()
