"""Who may do what: login with the [web.users] of the config, sessions, CSRF tokens.

- Browsers log in through the form and get a signed session cookie.
- Scripts and Prometheus may send HTTP Basic credentials, for reading only:
  a browser replays Basic credentials on its own, so they must never allow a write.
- Prometheus and scripts may send a scraper token (`osmon-collector token new`) as
  `Authorization: Bearer`: read only, checked with one SHA-256 and one indexed read.
- `web.anonymous_read = true` opens every read to everyone; writes always need a login.
- Every POST carries the session's CSRF token (the login form too, against login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from functools import cache
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.security import check_password_hash, generate_password_hash

from collector import tokens
from collector.web.context import config, store
from collector.web.errors import BadRequest, LoginRequired, TooManyAttempts

log = logging.getLogger("osmon.web")

bp = Blueprint("auth", __name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_ENDPOINTS = frozenset({"auth.login", "ops.healthz", "static"})  # reachable without any login


@cache
def _dummy_hash() -> str:
    """Checked when the user name is unknown, so a wrong name costs as long as a wrong password."""
    return generate_password_hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    """A password hash for [web.users] (werkzeug's scrypt)."""
    return generate_password_hash(password)


class Throttle:
    """Refuses a (client address, user name) after too many recent failed logins: guessing stays slow."""

    def __init__(self, limit: int = 10, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: tuple[str, str], now: float) -> None:
        with self._lock:
            recent = self._failures.get(key)
            while recent and recent[0] < now - self.window:
                recent.popleft()
            if recent is not None and len(recent) >= self.limit:
                raise TooManyAttempts(f"too many failed logins: wait {self.window / 60:.0f} minutes")

    def failed(self, key: tuple[str, str], now: float) -> None:
        with self._lock:
            if len(self._failures) > 10_000:  # a flood of names: forget old ones rather than grow
                self._failures.clear()
            self._failures.setdefault(key, deque()).append(now)


def check_user(name: str, password: str) -> bool:
    """True if `name` is a configured user and `password` is theirs (throttled per client and name)."""
    throttle: Throttle = current_app.extensions["osmon.throttle"]
    key, now = (request.remote_addr or "", name[:64]), time.monotonic()
    throttle.check(key, now)
    hashed = config().web_users.get(name)
    ok = check_password_hash(hashed or _dummy_hash(), password) and hashed is not None
    if not ok:
        throttle.failed(key, now)
    return ok


def _fingerprint(hashed: str) -> str:
    """Ties a session to the user's current password hash: changing it in the config logs them out."""
    return hmac.new(str(current_app.secret_key).encode(), hashed.encode(), hashlib.sha256).hexdigest()[:16]


def current_user() -> str | None:
    """The logged-in user of this request, if any (session, or Basic credentials on a read)."""
    if "user" not in g:
        g.user = _authenticate()
    return g.user


def _authenticate() -> str | None:
    name = session.get("user")
    hashed = config().web_users.get(name) if isinstance(name, str) else None
    if hashed is not None and hmac.compare_digest(session.get("key", ""), _fingerprint(hashed)):
        return name
    basic = request.authorization
    if (
        basic is not None
        and basic.type == "basic"
        and request.method in SAFE_METHODS
        and check_user(basic.username or "", basic.password or "")
    ):
        return basic.username
    return None


def token_reader() -> str | None:
    """The name of the valid scraper token this request carries, if any (never a user: reads only)."""
    if "reader" not in g:
        g.reader = None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            g.reader = store().token_name(tokens.digest(token.strip()))
            if g.reader is None:
                log.warning("unknown or revoked bearer token from %s", request.remote_addr)
    return g.reader


def csrf_token() -> str:
    """This session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def can_read() -> bool:
    # A token first: Prometheus sends one on every scrape, and a user check could cost a password hash.
    return config().web_anonymous_read or token_reader() is not None or current_user() is not None


def _check_csrf() -> None:
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise BadRequest(
            "the form expired or did not come from this dashboard (CSRF token mismatch): reload the page"
        )


def guard() -> None:
    """before_request: refuse what this client may not do."""
    if request.endpoint is None:
        return  # an unknown URL: its 404 says nothing about the data
    if request.method not in SAFE_METHODS:
        _check_csrf()
        if request.endpoint != "auth.login" and current_user() is None:
            raise LoginRequired("log in to change anything")
    elif request.endpoint not in PUBLIC_ENDPOINTS and not can_read():
        raise LoginRequired()


def local_path(target: str | None, default: str) -> str:
    """`target` if it is a path on this site, else `default`: no redirect to another host, including
    the tricks browsers forgive (//host, /\\host, control characters inside)."""
    if (
        target
        and target.startswith("/")
        and "\\" not in target
        and all(ord(c) > 0x20 for c in target)
        and not urlsplit(target).netloc
        and not target.startswith("//")
    ):
        return target
    return default


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple:
    next_page = local_path(request.values.get("next"), url_for("pages.overview"))
    if request.method == "GET":
        return render_template("login.html", next_page=next_page, no_users=not config().web_users)
    name = request.form.get("user", "")
    if not check_user(name, request.form.get("password", "")):
        log.warning("failed login for %r from %s", name[:64], request.remote_addr)
        flash("Wrong user name or password.", "error")
        return render_template("login.html", next_page=next_page, no_users=not config().web_users), 401
    session.clear()  # a new session on login: a cookie planted before cannot be ridden after
    session.permanent = True
    session["user"] = name
    session["key"] = _fingerprint(config().web_users[name])
    g.user = name
    log.info("%s logged in from %s", name, request.remote_addr)
    return redirect(next_page)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    session.clear()
    g.user = None
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    app.extensions["osmon.throttle"] = Throttle()
    app.register_blueprint(bp)
    app.before_request(guard)

    @app.context_processor
    def identity() -> dict:
        return {"current_user": current_user(), "csrf_token": csrf_token}
