"""Scraper tokens: long random read-only bearer tokens for Prometheus and scripts.

A token is 256 random bits; the store keeps only its SHA-256. A slow password
hash protects guessable secrets, and costs ~100 ms a check: for a token
nobody can guess it buys nothing, and every scrape would pay it.
"""

from __future__ import annotations

import hashlib
import re
import secrets

PREFIX = "osmon_"  # recognisable in a config file or a secret scanner
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def new() -> str:
    """A fresh token, to show once."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """What the store keeps of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


# A token given to `token set` (from a vault): as hard to guess as one `new` makes, and fit for a header.
STRONG = "a token is 32 to 256 printable ASCII characters without spaces (`token new` makes one: 49)"
_STRONG = re.compile(r"[!-~]{32,256}")


def strong(token: str) -> bool:
    return _STRONG.fullmatch(token) is not None


def valid_name(name: str) -> bool:
    return NAME.fullmatch(name) is not None
