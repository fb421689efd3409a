"""Durations as osMonitoring's config files write them, in seconds, for the collector role's timing keys."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# The same grammar as osmon.configfile.parse_duration (the controller need not have osmon installed).
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*$")


def osmon_seconds(value: object) -> float:
    """Seconds from 30, 2.5, '500ms', '10s', '5m' ..."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise AnsibleFilterError(f"expected a duration such as 30, '30s', '5m' or '500ms', got {value!r}")
    return float(match[1]) * _UNITS[match[2] or "s"]


class FilterModule:
    def filters(self) -> dict:
        return {"osmon_seconds": osmon_seconds}
