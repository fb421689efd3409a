"""Numbers as people read them, shared by the dashboard and the command line (no Flask here)."""

from __future__ import annotations

_PREFIXES = ("", "Ki", "Mi", "Gi", "Ti")


def binary(value: float, suffix: str = "") -> str:
    """Bytes (suffix "") or bytes per second (suffix "/s") in binary units: '512 B', '1.5 MiB/s'."""
    for prefix in _PREFIXES:
        if abs(value) < 1024 or prefix == _PREFIXES[-1]:
            return f"{value:.0f} B{suffix}" if not prefix else f"{value:.1f} {prefix}B{suffix}"
        value /= 1024
    raise AssertionError("not reached")
