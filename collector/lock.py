"""Who is using a database: `run` and `web` hold advisory locks beside it for their whole life.

`run` holds `<db>-run.lock` exclusively, so a second `run` on the same SQLite file is
refused (on PostgreSQL, collectors of different names share the database: ServerLock); `web` holds `<db>-web.lock` shared, so dashboards coexist with each other
and with `run`. `restore` takes both exclusively, without waiting: if either is
held, something is using the database and the restore refuses. flock(2) locks
vanish with the process, so a crashed collector never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LockError(Exception):
    """The database is in use by another process."""


RUN, WEB = "run", "web"


def lock_path(database: str | Path, role: str) -> Path:
    return Path(f"{database}-{role}.lock")


class DatabaseLock:
    """One flock on one lock file; released by `release()` or when the process ends."""

    def __init__(self, database: str | Path, role: str, command: str, shared: bool = False) -> None:
        self.path = lock_path(database, role)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self.fd, role, shared)
            os.close(self.fd)
            raise LockError(f"{holder} is using {database}: stop it first") from None
        if role == RUN:
            # Who holds it, for the messages of the others: the lock, not this text, is what counts.
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{command} (pid {os.getpid()})\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = -1

    def __enter__(self) -> DatabaseLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int, role: str, shared: bool) -> str:
    """Who holds the lock we could not take."""
    if role == WEB:
        # Dashboards share this lock and write nothing in it; only restore takes it exclusively.
        return "osmon-collector restore" if shared else "osmon-collector web"
    return os.pread(fd, 200, 0).decode(errors="replace").strip() or "osmon-collector run"


def ensure_free(database: str | Path) -> None:
    """Raise LockError if `run` or `web` uses `database`; creates no file (an early check for restore)."""
    for role in (RUN, WEB):
        try:
            fd = os.open(lock_path(database, role), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # never locked: no run or web has had this database open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockError(f"{_holder(fd, role, shared=False)} is using {database}: stop it first") from None
        finally:
            os.close(fd)


class ServerLock:
    """The same roles on a PostgreSQL database: advisory locks (collector.store.pg_locks), no files.

    Several collectors may share one PostgreSQL database (collector.leases), so `run` holds its
    role's lock shared there, as `web` does, and a lock of its own name exclusively: two
    collectors of the same name would each take the other's leases for their own.
    """

    def __init__(
        self,
        url: str,
        password_file: str | None,
        role: str,
        command: str,
        shared: bool = False,
        name: str | None = None,
    ) -> None:
        from collector.store import pg_locks, pg_schema, pg_url

        key = pg_schema.RUN_LOCK if role == RUN else pg_schema.WEB_LOCK
        self.lock = pg_locks.AdvisoryLock(url, password_file, key, shared, command)
        if not self.lock.held:
            holder = self.lock.holder or ("osmon-collector restore" if shared else f"osmon-collector {role}")
            raise LockError(f"{holder} is using {pg_url.mask(url)}: stop it first")
        self.name_lock = None
        if name is not None:
            self.name_lock = pg_locks.AdvisoryLock(
                url, password_file, pg_schema.name_lock(name), False, f"{command} {name}"
            )
            if not self.name_lock.held:
                self.lock.release()
                holder = self.name_lock.holder or "another collector"
                raise LockError(
                    f"a collector named {name!r} already runs on {pg_url.mask(url)}: {holder}; "
                    "give each collector its own `name`"
                )

    def release(self) -> None:
        self.lock.release()
        if self.name_lock is not None:
            self.name_lock.release()

    def __enter__(self) -> ServerLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _is_server(database: str | Path) -> bool:
    from collector.store.pg_url import is_postgresql

    return is_postgresql(str(database))


def hold_run(
    database: str | Path, password_file: str | None = None, name: str | None = None
) -> DatabaseLock | ServerLock:
    """For `run`: the only writer of a SQLite file; on PostgreSQL, the only collector named `name`."""
    if _is_server(database):
        return ServerLock(str(database), password_file, RUN, "osmon-collector run", shared=True, name=name)
    return DatabaseLock(database, RUN, "osmon-collector run")


def hold_web(database: str | Path, password_file: str | None = None) -> DatabaseLock | ServerLock:
    """For `web`: a reader that may share the database with `run` and other dashboards."""
    if _is_server(database):
        return ServerLock(str(database), password_file, WEB, "osmon-collector web", shared=True)
    return DatabaseLock(database, WEB, "osmon-collector web", shared=True)


class Exclusive:
    """For `restore`: nobody else may have the database open; refuses at once if someone does."""

    def __init__(self, database: str | Path, password_file: str | None = None) -> None:
        self.database, self.password_file = database, password_file
        self.locks: list[DatabaseLock | ServerLock] = []

    def __enter__(self) -> Exclusive:
        try:
            for role in (RUN, WEB):
                if _is_server(self.database):
                    lock: DatabaseLock | ServerLock = ServerLock(
                        str(self.database), self.password_file, role, "osmon-collector restore"
                    )
                else:
                    lock = DatabaseLock(self.database, role, "osmon-collector restore")
                self.locks.append(lock)
        except LockError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for lock in self.locks:
            lock.release()
        self.locks.clear()
