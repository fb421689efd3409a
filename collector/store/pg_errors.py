"""The one place a psycopg error becomes a StoreError: what was being done, on which server, never a password."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg

from collector.store.errors import action, wrap_public
from collector.store.pg_url import host
from collector.store.records import StoreError, StoreUnreachable

T = TypeVar("T", bound=type)


def message(url: str, doing: str, error: BaseException) -> str:
    """One line: "cannot read database osmon on db-01:5432: <first line of the server's message>"."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    name = url.rpartition("/")[2].partition("?")[0]
    return f"cannot {doing} {name} on {host(url)}: {detail}"


@contextmanager
def translated(url: str, doing: str) -> Iterator[None]:
    """psycopg errors (server gone, refused, permission, read-only transaction ...) as StoreError."""
    try:
        yield
    except (psycopg.OperationalError, OSError) as e:
        raise StoreUnreachable(message(url, doing, e)) from None
    except psycopg.Error as e:
        raise error(url, doing, e) from None


def error(url: str, doing: str, e: psycopg.Error) -> StoreError:
    """The StoreError for a psycopg error: StoreUnreachable when the server is gone or refuses us."""
    kind = StoreUnreachable if isinstance(e, psycopg.OperationalError) else StoreError
    return kind(message(url, doing, e))


def translate_errors(cls: T) -> T:
    """Every public method runs in one transaction on a connection of the store, and raises StoreError only.

    The class provides `_call(name, method, args, kwargs)`, which holds the connection
    and the transaction; this wraps each public method (and the constructor) in it.
    """

    def wrap(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        doing = {"__init__": "open database", "close": "close database"}.get(name) or action(name)
        if doing == "read":
            doing = "read database"

        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            if name in ("__init__", "close"):  # no transaction of their own
                with translated(getattr(self, "url", args[0] if args else "?"), doing):
                    return method(self, *args, **kwargs)
            return self._call(doing, method, args, kwargs)

        return call

    return wrap_public(cls, wrap)
