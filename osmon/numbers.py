"""The one test of "is this a number we can use": finite, real, and small enough to store exactly."""

from __future__ import annotations

from typing import TypeGuard

MAX_INT = 2**53  # beyond, an integer is no measurement, and would overflow SQLite's 64-bit integers


def is_finite(value: object) -> TypeGuard[int | float]:
    """A real number that is not NaN or infinite (bool excluded). Runs on every metric: kept cheap."""
    kind = type(value)
    if kind is float:
        return value - value == 0.0  # type: ignore[operator]  # NaN - NaN and inf - inf are NaN
    return kind is int and -MAX_INT <= value <= MAX_INT  # type: ignore[operator]


def finite_or_none(value: object) -> float | None:
    """`value` as a float if it is a usable number (from a probe, a config, a peer), else None."""
    return float(value) if is_finite(value) else None
