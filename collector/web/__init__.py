"""The dashboard: a Flask app factory, one blueprint per area, served by waitress (`osmon-collector web`).

It runs in its own process and reads the collector's SQLite database through
the store (WAL: readers never block the writer); its only writes are silences.
"""

from __future__ import annotations

import gzip
from datetime import timedelta

from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider

from collector.config import CollectorConfig
from collector.store import Store
from collector.web import alerts, api, auth, errors, filters, metrics, pages, pygal_lookup, secret
from collector.web.chartcache import ChartCache
from collector.web.context import Context
from collector.web.exposition import LineStarts
from collector.web.storage import Storage

# Inline <style> is pygal's (every chart carries its own); no inline script anywhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def create_app(config: CollectorConfig, store: Store | None = None, secret_key: str | None = None) -> Flask:
    """The dashboard for `config`; `store` and `secret_key` default to the ones the config names."""
    # Half of a cold host page's time was pygal's attribute lookup: a faster one, for the checked releases.
    pygal_lookup.install()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key or secret.load_or_create(config.web_secret_key_file),
        SESSION_COOKIE_NAME="osmon_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(config.public_url and config.public_url.startswith("https://")),
        PERMANENT_SESSION_LIFETIME=timedelta(days=7),  # renewed by every request: an open dashboard stays in
        MAX_CONTENT_LENGTH=64 * 1024,  # the only bodies are small forms
    )
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False  # keys in the order the views build them (name first): and cheaper
    app.extensions["osmon"] = Context(
        config, Storage(config.database, store, config.database_password_file), ChartCache(), LineStarts()
    )
    errors.register(app)
    filters.register(app)
    auth.init_app(app)
    for blueprint in (pages.bp, alerts.bp, api.bp, metrics.bp):
        app.register_blueprint(blueprint)
    app.after_request(_security_headers)
    app.after_request(_compress)
    return app


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


COMPRESS_MIN = 2048  # bytes: below this, gzip saves less than it costs


def _compress(response: Response) -> Response:
    """gzip large pages and JSON: a host page carries several hundred kilobytes of chart SVG."""
    if (
        response.direct_passthrough  # static files, streamed as they are
        or response.status_code != 200
        or "Content-Encoding" in response.headers
        or "gzip" not in request.headers.get("Accept-Encoding", "")
        or response.content_length is None
        or response.content_length < COMPRESS_MIN
    ):
        return response
    # Level 1: a quarter of level 5's time for ~15 % more bytes (the 1,000-host overview: 3 ms
    # instead of 10 for 91 KiB instead of 80); the dashboard is mostly read over a LAN.
    response.set_data(gzip.compress(response.get_data(), compresslevel=1))
    response.headers["Content-Encoding"] = "gzip"
    response.vary.add("Accept-Encoding")
    return response
