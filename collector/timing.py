"""The rule relating the collectors' and the agents' timings, so a collector's death is never a host down.

A host is down after `down_after` of its intervals without a snapshot (the window).
When its collector dies, the agent moves to the next one within `failover_after`
of its `ack_timeout`, waits up to its replay jitter, and sends what it spooled:
the host's silence lasts at most that plus one interval, which must stay inside
the window. A collector that takes a host over waits for the dead one's lease
to expire: `lease_time` plus one interval must stay inside the window too, so
detection resumes before anything could be down.
"""

from __future__ import annotations

from osmon.timing import failover_after, replay_jitter


def silence_on_failover(agent_interval: float, agent_ack_timeout: float) -> float:
    """The longest a host goes unheard when its collector dies."""
    return failover_after(agent_ack_timeout) + replay_jitter(agent_ack_timeout) + agent_interval


def problems(
    down_after: int, agent_interval: float, agent_ack_timeout: float, lease_time: float
) -> list[tuple[str, str]]:
    """(setting, why) for each part of the rule the settings break; empty when they hold."""
    window = down_after * agent_interval
    found = []
    silence = silence_on_failover(agent_interval, agent_ack_timeout)
    if silence >= window:
        found.append(
            (
                "agents.ack_timeout",
                f"an agent whose collector dies is unheard for up to {silence:g} s (failover after "
                f"{failover_after(agent_ack_timeout):g} s, replay jitter up to {replay_jitter(agent_ack_timeout):g} s, "
                f"one interval of {agent_interval:g} s), not less than the host-down window "
                f"(alerts.down_after {down_after} x agents.interval {agent_interval:g} s = {window:g} s): "
                "it would be called down; lower the agents' ack_timeout or raise alerts.down_after",
            )
        )
    if lease_time + agent_interval >= window:
        found.append(
            (
                "lease_time",
                f"{lease_time:g} s plus one interval ({agent_interval:g} s) is not less than the host-down "
                f"window ({window:g} s): a dead collector's hosts would be taken over too late; lower it",
            )
        )
    return found
