"""Counts as people write them, for messages of both the agent and the collector."""

from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """'1 snapshot', '31 snapshots', '0 snapshots'; `nouns` for an irregular plural."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"
