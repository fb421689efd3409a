"""The SQL of backup and restore: an online copy of a live database, and checks of a copy."""

from __future__ import annotations

import sqlite3


class BackupQueries:
    """Mixin of SQLiteStore: consistent online copies and their verification."""

    db: sqlite3.Connection
    path: str
