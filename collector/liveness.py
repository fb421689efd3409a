"""When a host counts as down: one rule for `status`, the dashboard, /metrics and detection."""

from __future__ import annotations

DEFAULT_INTERVAL = 10.0  # seconds, assumed for a host that never announced its interval


def down_window(interval: float | None, down_after: int) -> float:
    """Seconds without a snapshot after which a host is down: `down_after` of its own intervals."""
    return down_after * (interval or DEFAULT_INTERVAL)


def is_down(last_seen: float, interval: float | None, down_after: int, now: float) -> bool:
    """Nothing arrived from the host for `down_after` of its intervals (`last_seen`: collector clock)."""
    return now - last_seen > down_window(interval, down_after)
