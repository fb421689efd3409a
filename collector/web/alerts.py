"""The alerts page, and silencing a host from the dashboard (the only writes it makes)."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from collector import peers
from collector.store import OutboxMessage
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


OUTBOX_LIMIT = 50


@bp.route("/alerts")
def page() -> str:
    # Recipients and subjects are for operators: the outbox shows only to logged-in users.
    # So do the collectors (names, addresses) that detect and mail.
    user = current_user()
    outbox = [mail_dict(m) for m in store().outbox_recent(OUTBOX_LIMIT)] if user else None
    collectors = peers.rows(store().collectors()) if user else None
    return render_template(
        "alerts.html", view=views.alerts(time.time()), outbox=outbox, collectors=collectors
    )


def mail_dict(m: OutboxMessage) -> dict[str, Any]:
    """One outbox row (a mail or a webhook delivery) as the page shows it: queued, sent or failed (given up)."""
    state = "sent" if m.sent is not None else "failed" if m.gave_up else "queued"
    return {
        "channel": m.channel,  # mail, or webhook:NAME
        "created": m.created,
        "recipients": ", ".join(m.recipients),
        "subject": m.subject,
        "state": state,
        "attempts": m.attempts,
        "error": m.last_error,
        "sent": m.sent,
    }


def _host_field() -> str:
    host = request.form.get("host", "").strip()
    if not wire.valid_host(host):
        raise BadRequest("not a valid host name")
    return host


def _back() -> BaseResponse:
    """Back to the page the form was on (a path of this site), else to the alerts page."""
    return redirect(local_path(request.form.get("next"), url_for("alerts.page")))


@bp.route("/alerts/silence", methods=["POST"])
def silence() -> BaseResponse:
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
    if store().web_host(host) is None:  # kept all the same: a host may be silenced before it first reports
        flash(f"{host} silenced, but no host of that name has reported yet: check the spelling.", "warning")
    else:
        flash(f"{host} silenced.", "ok")
    return _back()


@bp.route("/alerts/unsilence", methods=["POST"])
def unsilence() -> BaseResponse:
    host = _host_field()
    lifted = store().web_unsilence(host)
    log.info("%s lifted the silence of %s", current_user(), host)
    flash(f"{host}: silence lifted." if lifted else f"{host} was not silenced.", "ok")
    return _back()
