"""Who is using a PostgreSQL database: session advisory locks, the counterpart of collector.lock's lock files.

`run` holds RUN_LOCK exclusively and `web` holds WEB_LOCK shared, each on a
connection of its own kept for the process's life (application_name says who
it is); `restore` takes both exclusively without waiting. A lock held by a
process that died goes with its connection, so none is ever stale.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from collector.store.pg_errors import translated
from collector.store.postgres import CONNECT_TIMEOUT, read_password


class AdvisoryLock:
    """One advisory lock on its own connection; `held` says whether it was granted."""

    def __init__(
        self, url: str, password_file: str | Path | None, key: int, shared: bool, command: str
    ) -> None:
        self.url, self.key = url, key
        args: dict = {"connect_timeout": CONNECT_TIMEOUT, "application_name": command, "autocommit": True}
        if (password := read_password(password_file)) is not None:
            args["password"] = password
        with translated(url, "connect to database"):
            self.conn: psycopg.Connection | None = psycopg.connect(url, **args)
            function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
            row = self.conn.execute(f"SELECT {function}(%s)", (key,)).fetchone()
            self.held = bool(row and row[0])
            self.holder = "" if self.held else self._holder()
        if not self.held:
            self.release()

    def _holder(self) -> str:
        """The application name of a session holding the lock (e.g. "osmon-collector run")."""
        assert self.conn is not None
        row = self.conn.execute(
            "SELECT a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s LIMIT 1",
            ((self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF),
        ).fetchone()
        if row is None:
            return ""
        name, address = row
        return f"{name or 'a session'} (from {address or 'a local socket'})"

    def release(self) -> None:
        if self.conn is not None:
            self.conn.close()  # the lock goes with the session
            self.conn = None
