"""How fast an agent leaves a collector that stopped answering: one rule, for the agent and for the
collector's check of its own settings against it (collector.timing)."""

from __future__ import annotations


def failover_after(ack_timeout: float) -> float:
    """Seconds without an ack (snapshots waiting) before an agent tries its next collector."""
    return 2 * ack_timeout


def replay_jitter(ack_timeout: float) -> float:
    """The longest random wait of an agent before replaying its spool to a new collector."""
    return ack_timeout
