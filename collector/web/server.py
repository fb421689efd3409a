"""`osmon-collector web`: the dashboard under waitress, a production WSGI server, until SIGTERM."""

from __future__ import annotations

import logging
import signal
from types import FrameType
from urllib.parse import urlsplit

import waitress

from collector.config import CollectorConfig
from collector.gctune import tune_garbage_collector
from collector.web import create_app
from collector.web.secret import SecretKeyError
from osmon.configfile import ConfigError

log = logging.getLogger("osmon.web")

THREADS = 6  # each keeps its own SQLite connection


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # waitress's loop ends on SystemExit and stops its worker threads


def serve(config: CollectorConfig) -> None:
    """Serve the dashboard on web.bind until SIGTERM or SIGINT."""
    try:
        app = create_app(config)
    except SecretKeyError as e:
        raise ConfigError(config.path, "web.secret_key_file", str(e)) from None
    bind = urlsplit(f"//{config.web_bind}")
    try:
        server = waitress.create_server(
            app, host=bind.hostname, port=bind.port, threads=THREADS, ident="osmon"
        )
    except OSError as e:
        raise ConfigError(
            config.path, "web.bind", f"cannot listen on {config.web_bind}: {e.strerror or e}"
        ) from None
    if not config.web_users and not config.web_anonymous_read:
        log.warning(
            "no [web.users] and anonymous_read is off: nobody can use the dashboard (see hash-password)"
        )
    previous = signal.signal(signal.SIGTERM, _stop)
    tune_garbage_collector()  # the app, its tables and the server built: they live as long as the process
    log.info("dashboard on http://%s (database %s)", config.web_bind, config.database_shown)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
    log.info("dashboard stopped")
