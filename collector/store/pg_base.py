"""What the PostgreSQL mixins share: the connection of the current call."""

from __future__ import annotations

import threading
from typing import Any

import psycopg


class PgBase:
    """The connection `PostgresStore._call` set for this thread's current call."""

    _local: threading.local

    @property
    def db(self) -> psycopg.Connection[Any]:
        return self._local.conn


def one(row: tuple[Any, ...] | None) -> Any:
    """The single value of a one-row, one-column result."""
    if row is None:
        raise psycopg.DataError("expected one row, got none")
    return row[0]
