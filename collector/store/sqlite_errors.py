"""The one place a SQLite error becomes a StoreError, with what was being done and to which file."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from collector.store.errors import action, wrap_public
from collector.store.records import StoreError

T = TypeVar("T", bound=type)


@contextmanager
def translated(path: str | Path, action: str) -> Iterator[None]:
    """sqlite3 errors (disk full, I/O error, locked too long, damaged file) as StoreError."""
    try:
        yield
    except sqlite3.Error as e:
        raise StoreError(f"cannot {action} {path}: {e}") from None


def translate_errors(cls: T) -> T:
    """Every public method (and the constructor) raises StoreError, never sqlite3.Error."""

    def wrap(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        doing = action(name)

        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            with translated(getattr(self, "path", "database"), doing):
                return method(self, *args, **kwargs)

        return call

    return wrap_public(cls, wrap)
