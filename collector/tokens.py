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


def valid_name(name: str) -> bool:
    return NAME.fullmatch(name) is not None
