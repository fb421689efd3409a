"""How long the agent gives its collector before moving to another one.

One rule, in one place, because both sides depend on it: the agent fails over
after `failover_after(ack_timeout)` without progress, and the collector side
(leases on per-host detection, the host-down window) must be longer than that
plus one interval, or a host whose collector died would be reported down, or
its detection dropped, while its agent is merely on its way to a survivor.
"""

from __future__ import annotations

# Missed acks before the agent gives up on a collector. One ack_timeout is the resend
# rule: a snapshot not acked after it is sent again. A second one spares a collector
# that is merely slow (a long commit, a burst of catching-up agents) a needless move.
FAILOVER_ACKS = 2


def failover_after(ack_timeout: float) -> float:
    """Seconds without progress after which an agent leaves its collector for the next one.

    "Without progress": snapshots wait and no ack came, or no ZMTP handshake succeeded
    (a dead, refusing or SIGSTOPped collector), for this long. An agent therefore moves
    within failover_after(ack_timeout) of a collector's crash (the kernel closes TCP at
    once), and within one interval more of a hang (nothing is noticed until the next
    snapshot goes unacked).
    """
    return FAILOVER_ACKS * ack_timeout


def replay_jitter(ack_timeout: float) -> float:
    """The longest random pause of an agent before replaying its spool to a new collector
    (agent.pace): so a dead collector's hosts do not all reach the survivors at once."""
    return ack_timeout
