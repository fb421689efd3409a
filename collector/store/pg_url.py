"""PostgreSQL database URLs: recognising one, checking it, and printing it without its password."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")


class DatabaseUrlError(ValueError):
    """A `database` value that looks like a URL but is not a usable PostgreSQL one."""


def is_url(database: str) -> bool:
    """Whether `database` is written as a URL (scheme://...) rather than a file path."""
    scheme, sep, _ = str(database).partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()


def is_postgresql(database: str) -> bool:
    return is_url(database) and str(database).partition("://")[0].lower() in SCHEMES


def check(url: str) -> str:
    """`url` if it is a usable postgresql:// URL, else DatabaseUrlError saying what is wrong."""
    scheme = url.partition("://")[0].lower()
    if scheme not in SCHEMES:
        raise DatabaseUrlError(
            f"unsupported scheme {scheme!r}: expected a SQLite file path or postgresql://USER@HOST:PORT/DATABASE"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise DatabaseUrlError(f"malformed URL {mask(url)}: {e}") from None
    if not parts.hostname:
        raise DatabaseUrlError(f"no host in {mask(url)}: expected postgresql://USER@HOST:PORT/DATABASE")
    if not parts.path.strip("/"):
        raise DatabaseUrlError(
            f"no database name in {mask(url)}: expected postgresql://USER@HOST:PORT/DATABASE"
        )
    if port == 0:
        raise DatabaseUrlError(f"port 0 in {mask(url)}")
    return url


def mask(url: str) -> str:
    """The URL with its password, if any, replaced by ***: what logs and errors show."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<malformed URL>"
    if parts.password is None:
        return str(url)
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(
        SplitResult(parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment)
    )


def host(url: str) -> str:
    """host:port of a URL, for one-line errors."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port or 5432}"
    except ValueError:
        return "<malformed URL>"
