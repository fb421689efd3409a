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
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response as BaseResponse

from collector import tokens
from collector.web.context import config, store
from collector.web.errors import BadRequest, LoginRequired, TooManyAttempts
from osmon.limits import ADDRESS_FAILURES, LOGIN_FAILURES, LOGIN_LOCKOUT, LOGIN_TABLE

log = logging.getLogger("osmon.web")

bp = Blueprint("auth", __name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_ENDPOINTS = frozenset({"auth.login", "ops.healthz", "static"})  # reachable without any login
DEVICE_COOKIE = "osmon_device"  # this browser logged in as this user before: not held by lockouts
DEVICE_AGE = 365 * 86400
_HASHING = threading.BoundedSemaphore(2)  # password hashes at once, in the whole process


@cache
def _dummy_hash() -> str:
    """Checked when the user name is unknown, so a wrong name costs as long as a wrong password."""
    return generate_password_hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    """A password hash for [web.users] (werkzeug's scrypt)."""
    return generate_password_hash(password)


class Throttle:
    """Failed logins per user name and per client address; either one locked after too many.

    Per user name: its own guesses (LOGIN_FAILURES), from anywhere. Per address: guesses under any
    name (ADDRESS_FAILURES, more: everyone behind a reverse proxy shares one address), so trying
    many names is slowed too. A browser that logged in as the user before carries a signed device
    cookie and is held by neither (see check_user): an attacker cannot lock the real user out.
    The tables are bounded and never cleared: names only of configured users, addresses least
    recently failed first out.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._users: dict[str, list[float]] = {}
        self._addresses: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def refusal(self, address: str, user: str) -> TooManyAttempts | None:
        """Why a login for `user` from `address` is refused without checking its password, or None."""
        now = self.clock()
        with self._lock:
            if _recent(self._users.get(user), now) >= LOGIN_FAILURES:
                return TooManyAttempts(
                    f"too many failed logins for this user: wait {LOGIN_LOCKOUT / 60:.0f} minutes"
                )
            if _recent(self._addresses.get(address), now) >= ADDRESS_FAILURES:
                return TooManyAttempts(
                    f"too many failed logins from this address: wait {LOGIN_LOCKOUT / 60:.0f} minutes"
                )
        return None

    def failed(self, address: str, user: str | None) -> None:
        """Count a failed login; `user` only if it names a configured user."""
        now = self.clock()
        with self._lock:
            if user is not None:
                _append(self._users.setdefault(user, []), now, LOGIN_FAILURES)
            times = self._addresses.pop(address, [])
            _append(times, now, ADDRESS_FAILURES)
            self._addresses[address] = times  # last in the order: the most recent failure
            while len(self._addresses) > LOGIN_TABLE:
                self._addresses.popitem(last=False)


def _recent(times: list[float] | None, now: float) -> int:
    return sum(1 for t in times or () if t > now - LOGIN_LOCKOUT)


def _append(times: list[float], now: float, keep: int) -> None:
    times.append(now)
    del times[:-keep]  # only the last `keep` failures can lock


def _trusted_device(name: str) -> bool:
    """True if this browser logged in as `name` before (the device cookie, signed with the app's key)."""
    cookie = request.cookies.get(DEVICE_COOKIE)
    if not cookie:
        return False
    try:
        return _device_signer().loads(cookie, max_age=DEVICE_AGE) == name
    except BadSignature:
        return False


def _device_signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="osmon-device")


def check_user(name: str, password: str) -> bool:
    """True if `name` is a configured user and `password` is theirs.

    Throttled per user name and per client address, before the slow hash (scrypt, ~50 ms of CPU):
    a throttled attempt costs nothing, and at most two hashes run at once, so guessing cannot
    stall the dashboard's other requests (/healthz took 1.8 s under 12 guessing clients).
    """
    throttle: Throttle = current_app.extensions["osmon.throttle"]
    address, users = request.remote_addr or "", config().web_users
    if not _trusted_device(name) and (refusal := throttle.refusal(address, name[:64])):
        raise refusal
    if not _HASHING.acquire(timeout=1.0):
        raise TooManyAttempts("too many logins at once: try again in a moment")
    try:
        hashed = users.get(name)
        ok = check_password_hash(hashed or _dummy_hash(), password) and hashed is not None
    finally:
        _HASHING.release()
    if not ok:
        throttle.failed(address, name if name in users else None)
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
    fingerprint_ok = hashed is not None and hmac.compare_digest(session.get("key", ""), _fingerprint(hashed))
    if fingerprint_ok and isinstance(name, str) and not _revoked(name):
        return name
    basic = request.authorization
    if basic is None or basic.type != "basic" or request.method not in SAFE_METHODS:
        return None
    try:
        return basic.username if check_user(basic.username or "", basic.password or "") else None
    except TooManyAttempts as e:
        # Raised by guard, not here: this runs while pages render too, where an exception was a 500.
        g.auth_refusal = e
        return None


def _revoked(name: str) -> bool:
    """True if this session was issued before the user's last logout (a copied cookie stays refused)."""
    since = session.get("since")
    logged_out = store().web_logged_out(name)
    return logged_out is not None and (not isinstance(since, int | float) or since <= logged_out)


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
    # A token that is not one is refused even where anonymous reads are open: the scraper is
    # misconfigured, and its `up == 0` says so at once rather than after the site closes reads.
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return token_reader() is not None
    return config().web_anonymous_read or current_user() is not None


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
        raise g.pop("auth_refusal", None) or LoginRequired()


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
def login() -> BaseResponse | str | tuple:
    next_page = local_path(request.values.get("next"), url_for("pages.overview"))
    if request.method == "GET":
        return render_template("login.html", next_page=next_page, no_users=not config().web_users)
    name = request.form.get("user", "")
    if not check_user(name, request.form.get("password", "")):  # TooManyAttempts: a 429 page
        log.warning("failed login for %r from %s", name[:64], request.remote_addr)
        flash("Wrong user name or password.", "error")
        return render_template("login.html", next_page=next_page, no_users=not config().web_users), 401
    session.clear()  # a new session on login: a cookie planted before cannot be ridden after
    session.permanent = True
    session["user"] = name
    session["key"] = _fingerprint(config().web_users[name])
    session["since"] = time.time()
    g.user = name
    log.info("%s logged in from %s", name, request.remote_addr)
    response = redirect(next_page)
    response.set_cookie(
        DEVICE_COOKIE,
        _device_signer().dumps(name),
        max_age=DEVICE_AGE,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    return response


@bp.route("/logout", methods=["POST"])
def logout() -> BaseResponse:
    """End this user's sessions on the server too: a copy of the cookie is refused from now on."""
    user = current_user()
    if user is not None and session.get("user") == user:
        store().web_logout(user, time.time())
        log.info("%s logged out", user)
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
