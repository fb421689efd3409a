"""Database failover: the collector's URL lists a primary and its synchronous standby; the primary dies,
the standby is promoted, and ingest resumes by itself with nothing acked lost."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from collector.store import open_store
from tests import pg
from tests.conftest import Cluster, wait_for


@pytest.fixture
def replicated() -> Iterator[tuple[pg.PostgresServer, pg.PostgresServer]]:
    """A primary that waits for its standby's flush at every commit, and that standby."""
    if not pg.available():
        pytest.skip(pg.SKIP_REASON)
    primary = pg.PostgresServer("-c synchronous_standby_names=standby1 -c synchronous_commit=on")
    standby = None
    try:
        standby = pg.PostgresServer(standby_of=primary, name="standby1")
        yield primary, standby
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()


def stored(cluster: Cluster) -> int:
    """Snapshots of web-01 as `status` reads them; 0 while the database cannot say (not created, failing over)."""
    try:
        rows = [r for r in cluster.status() if r["host"] == "web-01"]
    except subprocess.CalledProcessError:
        return 0
    return rows[0]["snapshots"] if rows else 0


def test_a_promoted_synchronous_standby_takes_over_and_nothing_acked_is_lost(
    cluster: Cluster, replicated: tuple[pg.PostgresServer, pg.PostgresServer]
) -> None:
    primary, standby = replicated
    name = primary.database().rpartition("/")[2]
    # libpq's own failover: the first of the hosts that accepts writes.
    cluster.database = (
        f"postgresql://{primary.user}@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/{name}"
        "?target_session_attrs=read-write&connect_timeout=2"
    )
    cluster.write_collector_config()
    collector = cluster.collector()
    agent = cluster.agent("web-01", interval=0.1)
    wait_for(lambda: stored(cluster) >= 30, what="snapshots stored through the primary")

    primary.pause()  # the primary's machine is lost (immediate stop: no shutdown checkpoint)
    standby.promote()
    wait_for(lambda: stored(cluster) >= 60, timeout=60, what="ingest to resume on the promoted standby")
    assert agent.terminate() == 0
    cluster.drain("web-01")
    assert collector.terminate() == 0
    last_seq, pending = cluster.produced("web-01")
    assert pending == 0
    store = open_store(cluster.database, readonly=True)
    try:
        # Every snapshot the agent produced is on the new primary: those acked before the
        # primary died (the agent deleted them from its spool) included.
        assert store.seqs("web-01") == list(range(1, last_seq + 1))
    finally:
        store.close()
