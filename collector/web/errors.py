"""HTTP errors as exceptions carrying their status; one handler renders any of them as HTML or JSON."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from collector.store import StoreError

log = logging.getLogger("osmon.web")


class WebError(Exception):
    """An error a client sees: `status` and a message safe to show."""

    status = 500
    title = "Internal error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.title)
        self.message = message or self.title


class BadRequest(WebError):
    status, title = 400, "Bad request"


class LoginRequired(WebError):
    """No valid session (and anonymous read is off, or the request writes)."""

    status, title = 401, "Login required"


class Forbidden(WebError):
    status, title = 403, "Forbidden"


class NotFound(WebError):
    status, title = 404, "Not found"


class TooManyAttempts(WebError):
    status, title = 429, "Too many attempts"


class Unavailable(WebError):
    """The database cannot be read (not created yet, damaged, locked too long)."""

    status, title = 503, "Database unavailable"


def wants_json() -> bool:
    """True for the API and the machine endpoints, and for clients that ask for JSON."""
    if request.path.startswith(("/api/", "/metrics", "/healthz")):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def render(error: WebError) -> BaseResponse | tuple:
    if isinstance(error, LoginRequired) and not wants_json() and request.method == "GET":
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if wants_json():
        return jsonify(error=error.message, status=error.status), error.status
    return render_template("error.html", error=error), error.status


def register(app: Flask) -> None:
    """Route every error through `render`: ours, werkzeug's (404 of unknown URLs, 405 ...) and the store's."""
    app.register_error_handler(WebError, render)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> BaseResponse | tuple:
        error = WebError(e.description if e.code != 404 else "Not found")
        error.status, error.title = e.code or 500, e.name
        return render(error)

    @app.errorhandler(StoreError)
    def store_error(e: StoreError) -> BaseResponse | tuple:
        log.warning("database: %s", e)
        return render(Unavailable(str(e)))

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> BaseResponse | tuple:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return render(WebError())
