"""The one place a SQLite error becomes a StoreError, with what was being done and to which file."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from collector.store.records import StoreError

T = TypeVar("T", bound=type)

# Public methods that write; every other one reads. By their subject, for the message.
WRITES = frozenset(
    {
        "ingest", "prune", "prune_rollups", "add_counters",
        "alerts_apply", "alert_notified", "silence", "unsilence", "web_silence", "web_unsilence",
        "outbox_add", "outbox_sent", "outbox_failed", "outbox_prune",
        "certfr_add", "certfr_mark_mailed", "backup_to", "token_add", "token_revoke",
    }
)  # fmt: skip
SUBJECTS = {"outbox_": "the outbox in", "certfr_": "CERT-FR items in", "token": "scraper tokens in"}


@contextmanager
def translated(path: str | Path, action: str) -> Iterator[None]:
    """sqlite3 errors (disk full, I/O error, locked too long, damaged file) as StoreError."""
    try:
        yield
    except sqlite3.Error as e:
        raise StoreError(f"cannot {action} {path}: {e}") from None


def action(method: str) -> str:
    """What a failing method was doing: 'write the outbox in', 'read', 'open database' ..."""
    if method == "__init__":
        return "open database"
    verb = "write" if method in WRITES else "read"
    subject = next((s for prefix, s in SUBJECTS.items() if method.startswith(prefix)), "")
    return f"{verb} {subject}".rstrip()


def translate_errors(cls: T) -> T:
    """Every public method (and the constructor) raises StoreError, never sqlite3.Error."""

    def wrap(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        doing = action(name)

        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            with translated(getattr(self, "path", "database"), doing):
                return method(self, *args, **kwargs)

        return call

    for name in dir(cls):
        attr = getattr(cls, name)
        if (name == "__init__" or not name.startswith("_")) and callable(attr) and not isinstance(attr, type):
            setattr(cls, name, wrap(name, attr))
    return cls
