"""A real PostgreSQL server for the tests: the distribution's binaries, a temporary cluster, a loopback port.

`PostgresServer` runs initdb into a new temporary directory (as the `postgres`
user when the tests run as root: initdb refuses root), starts it with pg_ctl
on a free 127.0.0.1 port with fsync off, and stops it and removes the
directory at the end. `database()` creates a new, empty database and returns
its postgresql:// URL. tests/conftest.py offers a session-wide server and a
per-test database as fixtures (`pg_server`, `pg_url`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_BIN = Path(os.environ.get("OSMON_PG_BIN", "/usr/lib/postgresql/15/bin"))
SKIP_REASON = f"PostgreSQL server binaries not found in {PG_BIN} (Debian package `postgresql`)"


def available() -> bool:
    return (PG_BIN / "initdb").is_file() and (PG_BIN / "pg_ctl").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    """Run as the `postgres` user when we are root (initdb and postgres refuse to run as root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PostgresServer:
    """One throw-away PostgreSQL cluster; `stop()` shuts it down and removes its directory."""

    def __init__(self, settings: str = "", standby_of: PostgresServer | None = None, name: str = "") -> None:
        """A new cluster; `settings` are extra `-c name=value` server options. With `standby_of`, a
        streaming replica of that server instead (pg_basebackup -R), known to it as `name`."""
        self.settings = settings
        self.dir = Path(tempfile.mkdtemp(prefix="osmon-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        self._names = itertools.count(1)
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        try:
            if standby_of is None:
                self._run(
                    [
                        str(PG_BIN / "initdb"),
                        "-D",
                        str(self.data),
                        "-A",
                        "trust",
                        "-U",
                        self.user,
                        "-E",
                        "UTF8",
                    ]
                )
            else:
                self._clone(standby_of, name)
            self.resume()
        except BaseException:
            self.stop()
            raise

    def _clone(self, primary: PostgresServer, name: str) -> None:
        """This cluster as a streaming replica of `primary`, named `name` (synchronous_standby_names)."""
        self._run(
            [str(PG_BIN / "pg_basebackup"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(primary.port),
             "-U", primary.user, "-R", "-X", "stream"]
        )  # fmt: skip
        conninfo = f"host=127.0.0.1 port={primary.port} user={primary.user} application_name={name}"
        with open(self.data / "postgresql.auto.conf", "a") as conf:
            conf.write(f"primary_conninfo = '{conninfo}'\n")

    def promote(self) -> None:
        """Make this standby the primary (what Patroni or an operator does after losing the primary)."""
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "promote"])

    def resume(self) -> None:
        """Start the server (again), on the same port."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off -c full_page_writes=off "
            f"{self.settings}"
        )
        log = str(self.dir / "server.log")
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", "-o", options, "start"])

    def pause(self) -> None:
        """Stop the server, its data kept: a database that went away."""
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(_as_postgres(args), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        """Run one statement as the superuser (autocommit)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"osmon_test_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
            )
        shutil.rmtree(self.dir, ignore_errors=True)
