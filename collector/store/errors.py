"""What both backends' error translation shares: what a failing method was doing, and wrapping every one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T", bound=type)

# Public methods that write; every other one reads. By their subject, for the message.
WRITES = frozenset(
    {
        "ingest", "prune", "prune_rollups", "add_counters",
        "alerts_apply", "alert_notified", "silence", "unsilence", "web_silence", "web_unsilence",
        "outbox_add", "outbox_sent", "outbox_failed", "outbox_prune", "outbox_expire",
        "certfr_add", "certfr_mark_mailed", "backup_to", "token_add", "token_revoke",
    }
)  # fmt: skip
SUBJECTS = {"outbox_": "the outbox in", "certfr_": "CERT-FR items in", "token": "scraper tokens in"}


def action(method: str) -> str:
    """What a failing method was doing: 'write the outbox in', 'read', 'open database' ..."""
    if method == "__init__":
        return "open database"
    verb = "write" if method in WRITES else "read"
    subject = next((s for prefix, s in SUBJECTS.items() if method.startswith(prefix)), "")
    return f"{verb} {subject}".rstrip()


def wrap_public(cls: T, wrap: Callable[[str, Callable[..., Any]], Callable[..., Any]]) -> T:
    """Replace every public method of `cls`, and its constructor, by `wrap(name, method)`."""
    for name in dir(cls):
        attr = getattr(cls, name)
        if (name == "__init__" or not name.startswith("_")) and callable(attr) and not isinstance(attr, type):
            setattr(cls, name, wrap(name, attr))
    return cls
