"""How the collector writes an instant: ISO 8601 for machines and terminals, one readable form for mail."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float) -> str:
    """ISO 8601 UTC, e.g. 2026-11-24T18:44:27Z."""
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return str(ts)


def moment(ts: float) -> str:
    """The one time format of every mail: '2026-11-24 18:44:27 UTC'."""
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return str(ts)
