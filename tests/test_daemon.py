"""The agent daemon as an operator sees it: what it says when the collector goes away, one agent per spool."""

from __future__ import annotations

from tests.conftest import Cluster, wait_for


def test_the_agent_warns_once_when_acks_stop_and_says_when_they_resume(cluster: Cluster) -> None:
    agent = cluster.agent("web-01", interval=0.2)  # ack_timeout 1 s: warned after 3 s without an ack
    wait_for(lambda: "has acknowledged nothing for" in agent.output(), what="the warning")
    warning = next(line for line in agent.output().splitlines() if "acknowledged nothing" in line)
    assert "WARNING" in warning and "wait in the spool" in warning
    collector = cluster.collector()
    wait_for(lambda: "acknowledges again after" in agent.output(), what="the line when it is back")
    assert agent.output().count("acknowledged nothing") == 1  # once, not every round
    assert agent.terminate() == 0
    collector.terminate()


def test_a_second_agent_on_the_same_spool_is_refused(cluster: Cluster) -> None:
    first = cluster.agent("web-01", interval=0.2)
    wait_for(lambda: (cluster.dir / "spool-web-01.db").exists(), what="the spool")
    second = cluster.agent("web-01", interval=0.2)
    assert second.proc.wait(20) == 2
    last = second.output().splitlines()[-1]
    assert "is in use by osmon-agent (pid" in last and "one agent per spool" in last
    assert "Traceback" not in second.output()
    assert first.alive()
    assert first.terminate() == 0
