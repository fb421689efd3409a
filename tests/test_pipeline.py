"""End to end: real agents and a real collector as subprocesses, crashed and restarted."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from collector.store import open_store
from tests.conftest import Cluster, wait_for

HOSTS = ("alpha", "beta", "gamma")


def stored_counts(cluster: Cluster) -> dict[str, int]:
    try:
        return {row["host"]: row["snapshots"] for row in cluster.status()}
    except Exception:
        return {}


def test_crashes_and_outage_lose_nothing_and_double_nothing(cluster: Cluster) -> None:
    collector = cluster.collector()
    agents = {host: cluster.agent(host, interval=0.1) for host in HOSTS}
    wait_for(lambda: len(c := stored_counts(cluster)) == 3 and min(c.values()) >= 5, what="first snapshots")

    collector.kill()  # crash while agents send
    time.sleep(1.5)  # outage: agents keep collecting into their spools
    agents["beta"].kill()  # an agent crashes during the outage, with unacked snapshots
    time.sleep(0.3)
    agents["beta"] = cluster.agent("beta", interval=0.1)
    time.sleep(1.0)
    collector = cluster.collector()
    wait_for(lambda: cluster.produced("alpha")[1] <= 2, what="spools to catch up")

    for host, agent in agents.items():
        assert agent.terminate() == 0, agent.output()
        cluster.drain(host)
    assert collector.terminate() == 0, collector.output()

    store = open_store(cluster.dir / "osmon.db", readonly=True)
    for host in HOSTS:
        last_seq, pending = cluster.produced(host)
        assert pending == 0
        assert last_seq > 20
        assert store.seqs(host) == list(range(1, last_seq + 1)), f"{host}: stored sequence differs"
    rows = {row["host"]: row for row in cluster.status()}
    assert set(rows) == set(HOSTS)
    for host in HOSTS:
        assert rows[host]["missing"] == []
        assert rows[host]["first_seq"] == 1
        assert rows[host]["last_seq"] == rows[host]["snapshots"] == cluster.produced(host)[0]


def test_sigterm_stops_both_cleanly_and_restart_resumes_the_sequence(cluster: Cluster) -> None:
    collector = cluster.collector()
    agent = cluster.agent("delta", interval=0.1)
    wait_for(lambda: stored_counts(cluster).get("delta", 0) >= 3, what="snapshots stored")
    assert agent.terminate() == 0
    assert "stopped on SIGTERM" in agent.output()
    first_run, _ = cluster.produced("delta")

    agent = cluster.agent("delta", interval=0.1)
    wait_for(lambda: stored_counts(cluster).get("delta", 0) >= first_run + 3, what="more snapshots")
    assert agent.terminate() == 0
    cluster.drain("delta")
    assert collector.terminate() == 0
    assert "stopped on SIGTERM" in collector.output()

    store = open_store(cluster.dir / "osmon.db", readonly=True)
    assert store.seqs("delta") == list(range(1, cluster.produced("delta")[0] + 1))


def test_status_turns_a_silent_host_down(cluster: Cluster) -> None:
    collector = cluster.collector()
    agent = cluster.agent("epsilon", interval=0.2)
    wait_for(lambda: stored_counts(cluster).get("epsilon", 0) >= 2, what="snapshots stored")
    [row] = cluster.status()
    assert row["status"] == "up"
    assert set(row) >= {"host", "status", "last_seen", "snapshots", "first_seq", "last_seq", "missing"}
    assert row["last_seen"].endswith("Z")
    agent.terminate()
    # down_after (3) intervals of 0.2 s without a snapshot: the host is down.
    wait_for(lambda: cluster.status()[0]["status"] == "down", what="host to turn down")
    collector.terminate()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_agent_waits_quietly_through_an_outage(cluster: Cluster) -> None:
    """With snapshots in flight and no collector, the agent must not spin on resends."""
    collector = cluster.collector()
    agent = cluster.agent("zeta", interval=0.05)
    wait_for(lambda: stored_counts(cluster).get("zeta", 0) >= 10, what="snapshots stored")
    os.kill(collector.pid, signal.SIGSTOP)  # acks stop: snapshots pile up in flight
    time.sleep(1.0)
    collector.kill()  # then the connection drops with them unacked
    time.sleep(1.0)
    before = cpu_seconds(agent.pid)
    time.sleep(3.0)
    used = cpu_seconds(agent.pid) - before
    assert used < 1.0, f"the agent used {used:.2f} s of CPU in 3 s of outage"
    assert cluster.produced("zeta")[1] > 20  # still collecting into the spool
    collector = cluster.collector()
    wait_for(lambda: cluster.produced("zeta")[1] <= 5, what="the spool to drain after the outage")
    agent.terminate()
    collector.terminate()
