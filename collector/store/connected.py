"""What every part of the SQLite backend relies on: the database file and this thread's connection."""

from __future__ import annotations

import sqlite3


class Connected:
    """Base of SQLiteStore's parts (alerts, outbox, CERT-FR, web reads, backup); SQLiteStore opens `db`."""

    path: str

    @property
    def db(self) -> sqlite3.Connection:
        raise NotImplementedError
