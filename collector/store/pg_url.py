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
    """`url` if it is a usable postgresql:// URL, else DatabaseUrlError saying what is wrong.

    Several hosts (`HOST1:PORT1,HOST2:PORT2`, libpq's syntax) are accepted: with
    `target_session_attrs=read-write`, libpq connects to whichever is the primary now.
    """
    scheme = url.partition("://")[0].lower()
    if scheme not in SCHEMES:
        raise DatabaseUrlError(
            f"unsupported scheme {scheme!r}: expected a SQLite file path or postgresql://USER@HOST:PORT/DATABASE"
        )
    try:
        parts = urlsplit(url)
        servers = _servers(parts.netloc.rpartition("@")[2])
    except ValueError as e:
        raise DatabaseUrlError(f"malformed URL {mask(url)}: {e}") from None
    if not servers or not all(name for name, _ in servers):
        raise DatabaseUrlError(f"no host in {mask(url)}: expected postgresql://USER@HOST:PORT/DATABASE")
    if not parts.path.strip("/"):
        raise DatabaseUrlError(
            f"no database name in {mask(url)}: expected postgresql://USER@HOST:PORT/DATABASE"
        )
    if any(port == 0 for _, port in servers):
        raise DatabaseUrlError(f"port 0 in {mask(url)}")
    return url


def _servers(hosts: str) -> list[tuple[str, int | None]]:
    """(host, port) of each server of a URL's host list: `db-01:5432,db-02`, `[::1]:5433`."""
    found = []
    for item in hosts.split(","):
        if item.startswith("["):
            name, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            name, _, port_text = item.partition(":")
        if port_text and not (port_text.isdigit() and int(port_text) <= 65535):
            raise ValueError(f"port {port_text!r} of {name or 'a host'} is not a port number")
        found.append((name, int(port_text) if port_text else None))
    return found


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
    """host:port of a URL (each of them, for several), for one-line errors."""
    try:
        servers = _servers(urlsplit(url).netloc.rpartition("@")[2])
    except ValueError:
        return "<malformed URL>"
    return ",".join(f"{name}:{port or 5432}" for name, port in servers)
