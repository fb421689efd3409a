"""Three collectors on one PostgreSQL database under faults: nothing lost, one mail per alert event,
exactly one host-down, alerting that resumes.

A simulated fleet (tests/fleet.py: real agent configs, spools, links and loops, a scripted CPU)
sends to three `osmon-collector run` processes; an SMTP server takes the mail. Then: a collector
is SIGKILLed, another SIGSTOPped past its lease and woken, a third loses its database
connections, PostgreSQL restarts with `-m immediate`, and one host's agent is SIGKILLed.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agent.spool import Spool
from collector.store import Store, StoreError, open_store
from tests import pg
from tests.conftest import BIN, Process, free_port, wait_for
from tests.test_mail import Inbox, Servers

HOSTS = [f"sim-{i:02d}" for i in range(10)]
VICTIM = "victim"
INTERVAL, ACK_TIMEOUT, LEASE = 0.5, 0.5, 2.0
EPISODES = [[6.0, 12.0, 99.0], [44.0, 50.0, 99.0]]  # seconds after the fleet starts: CPU at 99 %


@pytest.fixture
def server() -> Iterator[pg.PostgresServer]:
    """A server of this test's own: it is restarted mid-test."""
    if not pg.available():
        pytest.skip(pg.SKIP_REASON)
    s = pg.PostgresServer()
    try:
        yield s
    finally:
        s.stop()


class Fleet:
    """Three collectors, the simulated hosts, the mail sink: started and stopped by PID."""

    def __init__(self, tmp_path: Path, url: str, smtp_port: int) -> None:
        self.dir, self.url = tmp_path, url
        self.ports = [free_port() for _ in range(3)]
        self.names = ["c1", "c2", "c3"]
        self.collectors: dict[str, Process] = {}
        self.processes: list[Process] = []
        for name, port in zip(self.names, self.ports, strict=True):
            (tmp_path / f"{name}.toml").write_text(
                f'name = "{name}"\nlisten = "tcp://127.0.0.1:{port}"\ndatabase = "{url}"\n'
                f'lease_time = "{LEASE}s"\n'
                f'[agents]\ninterval = "{INTERVAL}s"\nack_timeout = "{ACK_TIMEOUT}s"\n'
                '[alerts]\ndown_after = 16\nrecipients = ["ops@example.org"]\n'
                f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\nfrom = "osmon@example.org"\n'
                'timeout = "5s"\n'
                '[thresholds."cpu.percent"]\nwarning = 80\ncritical = 95\nfor = "1s"\n'
                "[certfr]\nenabled = false\n"
            )
        endpoints = ", ".join(f'"tcp://127.0.0.1:{p}"' for p in self.ports)
        for host in [*HOSTS, VICTIM]:
            (tmp_path / f"agent-{host}.toml").write_text(
                f'host = "{host}"\ncollector = [{endpoints}]\ninterval = {INTERVAL}\n'
                f'spool = "{tmp_path / f"spool-{host}.db"}"\nack_timeout = {ACK_TIMEOUT}\n'
            )

    def start_collector(self, name: str) -> Process:
        process = Process(
            [str(BIN / "osmon-collector"), "run", "--config", str(self.dir / f"{name}.toml")],
            self.dir / f"{name}.log",
        )
        self.collectors[name] = process
        self.processes.append(process)
        return process

    def start_fleet(self, hosts: list[str], label: str, t0: float) -> Process:
        plan = self.dir / f"plan-{label}.json"
        configs = [str(self.dir / f"agent-{h}.toml") for h in hosts]
        plan.write_text(json.dumps({"configs": configs, "script": dict.fromkeys(HOSTS, EPISODES), "t0": t0}))
        process = Process(
            [str(BIN / "python"), "-m", "tests.fleet", str(plan)], self.dir / f"fleet-{label}.log"
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.alive():
                os.kill(process.pid, signal.SIGCONT)  # a stopped one cannot die of SIGKILL until resumed
                process.kill()


def spool_state(directory: Path, host: str) -> tuple[int, int]:
    spool = Spool(directory / f"spool-{host}.db", 1 << 30)
    try:
        return spool.last_seq, spool.pending_count()
    finally:
        spool.close()


def readable(url: str) -> Store | None:
    try:
        return open_store(url, readonly=True)
    except StoreError:
        return None


def query(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


@pytest.fixture
def fleet(tmp_path: Path, server: pg.PostgresServer) -> Iterator[tuple[Fleet, Inbox]]:
    servers, inbox = Servers(), Inbox()
    smtp_port = servers.start(inbox)
    f = Fleet(tmp_path, server.database(), smtp_port)
    try:
        yield f, inbox
    finally:
        f.stop_all()
        servers.stop_all()


def test_three_collectors_under_faults_lose_nothing_and_mail_each_event_once(
    fleet: tuple[Fleet, Inbox], server: pg.PostgresServer
) -> None:
    f, inbox = fleet
    for name in f.names:
        f.start_collector(name)
    t0 = time.time()
    sims = f.start_fleet(HOSTS, "sims", t0)
    victim = f.start_fleet([VICTIM], "victim", t0)
    store: Store = wait_for(lambda: readable(f.url), what="a collector to create the schema")  # type: ignore[assignment]

    def at(offset: float) -> None:
        time.sleep(max(0.0, t0 + offset - time.time()))

    at(3)
    wait_for(lambda: {h.name for h in store.hosts()} >= {*HOSTS, VICTIM}, what="every host stored")
    at(8)
    f.collectors["c1"].kill()  # mid-batch: snapshots arrive every few milliseconds
    at(14)
    f.start_collector("c1")
    at(16)
    os.kill(f.collectors["c2"].pid, signal.SIGSTOP)  # frozen past its lease (2 s) and its agents' failover
    at(24)
    os.kill(f.collectors["c2"].pid, signal.SIGCONT)
    at(27)
    query(
        server.url(),
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'osmon-collector run c3'",
    )
    at(31)
    server.pause()  # PostgreSQL crashes and comes back
    server.resume()
    store.close()  # the test's own connections went with it
    store = wait_for(lambda: readable(f.url), what="PostgreSQL back")  # type: ignore[assignment]
    at(36)
    victim.kill()  # the victim host's agent dies: its host is down, once
    at(56)
    assert sims.terminate() == 0
    # The fleet again, the victim back with it (its host-down resolves); then everything stops
    # cleanly, before silence could call anyone down: agents wait for their last acks.
    final = f.start_fleet([*HOSTS, VICTIM], "final", t0)
    wait_for(lambda: not [a for a in store.alerts_active() if a.rule == "host.down"], what="the victim back")
    # A mail claimed by a collector that died lapses after its claim (smtp.timeout + 30 s).
    wait_for(lambda: store.outbox_states()["queued"] == 0, timeout=90, what="the outbox to empty")
    assert final.terminate() == 0
    for name in f.names:
        assert f.collectors[name].terminate() == 0
    down = [a for a in store.alerts_history(limit=10_000) if a.rule == "host.down"]
    assert [a.host for a in down] == [VICTIM]

    # Every (host, seq) the agents produced is stored, once; the tiers equal the raw rows.
    for host in [*HOSTS, VICTIM]:
        last_seq, pending = spool_state(f.dir, host)
        assert pending == 0
        assert store.seqs(host) == list(range(1, last_seq + 1)), host
    raw = query(f.url, "SELECT host_id, count(*), sum(cpu) FROM samples GROUP BY host_id ORDER BY host_id")
    for tier in ("rollup_minute", "rollup_hour"):
        assert (
            query(
                f.url, f"SELECT host_id, sum(n), sum(cpu_sum) FROM {tier} GROUP BY host_id ORDER BY host_id"
            )
            == raw
        ), tier

    # Exactly one mail per alert event: the events the database recorded against the mails delivered.
    recorded = Counter(
        (host, rule, kind)
        for host, rule, kind in query(
            f.url,
            "SELECT a.host, a.rule, e.kind FROM alert_events e JOIN alerts a ON a.id = e.alert_id "
            "WHERE e.kind IN ('fired', 'escalated', 'resolved')",
        )
    )
    delivered = {m["Message-ID"]: m for m in inbox.messages}  # a resend after a crash is the same mail
    mailed: Counter[tuple[str, str, str]] = Counter()
    for message in delivered.values():
        host = message["Subject"].split()[2].rstrip(":")
        for line in message.get_body(("plain",)).get_content().splitlines():
            kind, _, rest = line.partition(" ")
            if kind in ("FIRED", "ESCALATED", "RESOLVED"):
                rule = rest.split()[1 if kind != "RESOLVED" else 0].rstrip(":")
                mailed[(host, rule, kind.lower())] += 1
    assert mailed == recorded
    # Alerting resumed after every fault: each host's second episode fired and resolved too.
    for host in HOSTS:
        assert recorded[(host, "cpu.percent", "fired")] == len(EPISODES), host
        assert recorded[(host, "cpu.percent", "resolved")] == len(EPISODES), host

    print(
        f"\nmails delivered: {len(inbox.messages)}, distinct: {len(delivered)}, alert events mailed: {sum(mailed.values())}"
    )
    store.close()
