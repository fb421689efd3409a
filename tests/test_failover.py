"""An agent with several collectors: its home by rendezvous hashing, failover, the way back home.

Real `osmon-collector run` processes, each on its own SQLite file (the agent's side of an
active-active fleet: in production they share one PostgreSQL database), and the real
`osmon-agent run`. Every process is stopped by its PID when the test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import config as agent_config
from agent.pace import UNBOUNDED, Pace
from agent.rendezvous import preference
from agent.spool import Spool
from collector.store import StoreError, open_store
from osmon.configfile import ConfigError
from osmon.timing import failover_after
from tests.conftest import BIN, Process, free_port, wait_for

HOST = "web-01"
INTERVAL = 0.2
ACK_TIMEOUT = 1.0
# Polling deadlines: the failover delay and an interval, and a wide margin for a loaded 2-core machine.
MOVED = failover_after(ACK_TIMEOUT) + INTERVAL + 30


def keygen(directory: Path, name: str) -> tuple[Path, Path]:
    subprocess.run(
        [str(BIN / "osmon-agent"), "keygen", str(directory), "--name", name], check=True, capture_output=True
    )
    return directory / f"{name}.key", directory / f"{name}.key_secret"


def listening(endpoint: str) -> bool:
    port = int(endpoint.rpartition(":")[2])
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Fleet:
    """Collectors on their own loopback ports and SQLite files, and agents that list them all."""

    def __init__(self, tmp_path: Path, count: int = 2, curve: bool = False) -> None:
        self.dir = tmp_path
        self.endpoints = [f"tcp://127.0.0.1:{free_port()}" for _ in range(count)]
        self.processes: list[Process] = []
        self.collectors: dict[str, Process] = {}
        self.curve_agent = ""
        curve_collector = ""
        if curve:  # one key pair for every collector, one allow-list: one curve.server_key for the agent
            keys = tmp_path / "keys"
            (keys / "agents").mkdir(parents=True)
            public, secret = keygen(keys, "collector")
            agent_public, agent_secret = keygen(keys / "own", HOST)
            (keys / "agents" / f"{HOST}.key").write_bytes(agent_public.read_bytes())
            curve_collector = f'[curve]\nsecret_key = "{secret}"\nagents = "{keys / "agents"}"\n'
            self.curve_agent = f'[curve]\nsecret_key = "{agent_secret}"\nserver_key = "{public}"\n'
        for n, endpoint in enumerate(self.endpoints):
            (tmp_path / f"collector-{n}.toml").write_text(
                f'listen = "{endpoint}"\ndatabase = "{self.database(endpoint)}"\n'
                f"{curve_collector}\n[certfr]\nenabled = false\n"
            )

    def name(self, endpoint: str) -> str:
        return f"collector-{self.endpoints.index(endpoint)}"

    def database(self, endpoint: str) -> Path:
        return self.dir / f"{self.name(endpoint)}.db"

    def start(self, args: list[str], name: str) -> Process:
        process = Process(args, self.dir / f"{name}.log")
        self.processes.append(process)
        return process

    def collector(self, endpoint: str) -> Process:
        config = self.dir / f"{self.name(endpoint)}.toml"
        process = self.start(
            [str(BIN / "osmon-collector"), "run", "--config", str(config)], self.name(endpoint)
        )
        self.collectors[endpoint] = process
        return process

    def agent_config(self, interval: float = INTERVAL) -> Path:
        path = self.dir / "agent.toml"
        listed = ", ".join(f'"{e}"' for e in self.endpoints)
        path.write_text(
            f'host = "{HOST}"\ncollector = [{listed}]\ninterval = {interval}\n'
            f'spool = "{self.dir / "spool.db"}"\nack_timeout = {ACK_TIMEOUT}\n{self.curve_agent}'
        )
        return path

    def agent(
        self, interval: float = INTERVAL, home_check: float | None = None, debug: bool = False
    ) -> Process:
        """The real `osmon-agent run`; `home_check` shortens the probe period of the home collector
        (agent.failover.HOME_CHECK, 30 s) so that a test need not wait half a minute for it."""
        args = [str(BIN / "osmon-agent")]
        if home_check is not None:
            args = [
                sys.executable,
                "-c",
                f"import agent.failover, agent.cli; agent.failover.HOME_CHECK = {home_check}; "
                "raise SystemExit(agent.cli.main())",
            ]
        args += ["run", "--config", str(self.agent_config(interval))]
        return self.start([*args, "--log-level", "DEBUG"] if debug else args, "agent")

    def stored(self, endpoint: str) -> list[int]:
        """The host's sequence numbers in one collector's database, as stored (duplicates would show)."""
        try:
            store = open_store(self.database(endpoint), readonly=True)
        except StoreError:  # not created yet
            return []
        try:
            return store.seqs(HOST)
        finally:
            store.close()

    def produced(self) -> tuple[int, int]:
        """(last sequence number handed out, snapshots still unacked) from the agent's spool."""
        spool = Spool(self.dir / "spool.db", 1 << 30)
        try:
            return spool.last_seq, spool.pending_count()
        finally:
            spool.close()

    def drain(self) -> int:
        """After the agent stopped: run it again until its spool is empty; returns the last seq."""
        while self.produced()[1]:
            agent = self.agent(interval=3600)
            wait_for(lambda: self.produced()[1] == 0, timeout=120, what="the spool to drain")
            assert agent.terminate() == 0
        return self.produced()[0]

    def stop_all(self) -> None:
        for process in self.processes:
            if process.alive():
                os.kill(process.pid, signal.SIGCONT)  # a SIGSTOPped one, so that it can die
                process.kill()
            if not process.log.closed:
                process.log.close()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    try:
        yield f
    finally:
        f.stop_all()


@pytest.fixture
def curve_fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path, curve=True)
    try:
        yield f
    finally:
        f.stop_all()


def nothing_lost_or_doubled(fleet: Fleet, last: int) -> None:
    """Each database holds each seq at most once, and together they hold 1..last."""
    stored = {endpoint: fleet.stored(endpoint) for endpoint in fleet.endpoints}
    for endpoint, seqs in stored.items():
        twice = [seq for seq, count in Counter(seqs).items() if count > 1]
        assert not twice, f"{fleet.name(endpoint)} stored {twice} more than once"
    union = set().union(*stored.values())
    assert union == set(range(1, last + 1)), f"missing: {sorted(set(range(1, last + 1)) - union)[:20]}"


def lines(process: Process, text: str) -> list[str]:
    return [line for line in process.output().splitlines() if text in line]


def test_a_killed_home_collector_hands_its_agent_to_the_next_and_nothing_is_lost(fleet: Fleet) -> None:
    home, following = preference(HOST, fleet.endpoints)
    fleet.collector(home)
    fleet.collector(following)
    agent = fleet.agent()
    wait_for(lambda: len(fleet.stored(home)) >= 5, timeout=60, what="snapshots stored by the home collector")
    assert fleet.stored(following) == []  # one connection, to home only: nothing dealt round-robin
    fleet.collectors[home].kill()
    last_home = max(fleet.stored(home))
    wait_for(
        lambda: any(seq > last_home for seq in fleet.stored(following)),
        timeout=MOVED,
        what="the next collector to store the agent's new snapshots",
    )
    [warning] = lines(agent, "failing over to")
    assert "WARNING" in warning and f"collector {home}:" in warning and following in warning
    wait_for(lambda: len(fleet.stored(following)) >= 10, timeout=60, what="more snapshots after the move")
    assert agent.terminate() == 0
    nothing_lost_or_doubled(fleet, fleet.drain())


def test_a_sigstopped_collector_is_left_for_the_next(fleet: Fleet) -> None:
    """A stopped collector keeps its TCP connections open and answers nothing: no ack, no heartbeat."""
    home, following = preference(HOST, fleet.endpoints)
    stopped = fleet.collector(home)
    fleet.collector(following)
    agent = fleet.agent()
    wait_for(lambda: len(fleet.stored(home)) >= 5, timeout=60, what="snapshots stored by the home collector")
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        last_home = max(fleet.stored(home))  # WAL: a reader is never blocked by the stopped writer
        wait_for(
            lambda: any(seq > last_home for seq in fleet.stored(following)),
            timeout=MOVED,
            what="the next collector to store the agent's new snapshots",
        )
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    [warning] = lines(agent, "failing over to")
    assert f"collector {home}: no ack for" in warning and "wait; failing over to " + following in warning
    assert agent.terminate() == 0
    assert stopped.terminate() == 0
    nothing_lost_or_doubled(fleet, fleet.drain())


def test_a_collector_that_accepts_tcp_but_never_shakes_hands_is_left(fleet: Fleet) -> None:
    """Stopped before the agent starts: the kernel accepts the connection, ZMTP never completes."""
    home, following = preference(HOST, fleet.endpoints)
    stopped = fleet.collector(home)
    wait_for(lambda: listening(home), timeout=60, what="the home collector to listen")
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        fleet.collector(following)
        agent = fleet.agent()
        wait_for(lambda: fleet.stored(following), timeout=MOVED, what="the next collector to store snapshots")
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    [warning] = lines(agent, "failing over to")
    assert f"collector {home}: no handshake within" in warning
    assert agent.terminate() == 0


def test_the_agent_goes_back_home_when_home_answers_again_with_curve(curve_fleet: Fleet) -> None:
    """The probe of the home collector shakes hands with CurveZMQ, as the agent's own connection does."""
    fleet = curve_fleet
    home, following = preference(HOST, fleet.endpoints)
    fleet.collector(home)
    fleet.collector(following)
    agent = fleet.agent(home_check=1.0)
    wait_for(lambda: len(fleet.stored(home)) >= 5, timeout=60, what="snapshots stored by the home collector")
    fleet.collectors[home].kill()
    last_home = max(fleet.stored(home))
    wait_for(
        lambda: any(seq > last_home for seq in fleet.stored(following)),
        timeout=MOVED,
        what="the next collector to store the agent's snapshots",
    )
    last_away = max(fleet.stored(following))
    fleet.collector(home)  # the same port and database, as after a restart
    wait_for(
        lambda: any(seq > last_away for seq in fleet.stored(home)),
        timeout=90,
        what="the agent to send to its home collector again",
    )
    [back] = lines(agent, "answers again")
    assert "INFO" in back and f"home collector {home} answers again: moving back from {following}" in back
    away = len(fleet.stored(following))
    at_home = len(fleet.stored(home))
    wait_for(lambda: len(fleet.stored(home)) >= at_home + 10, timeout=60, what="more snapshots at home")
    assert len(fleet.stored(following)) == away  # back home means: nothing goes elsewhere any more
    assert agent.terminate() == 0
    nothing_lost_or_doubled(fleet, fleet.drain())


def test_when_no_collector_answers_the_agent_says_so_once_and_when_one_does(fleet: Fleet) -> None:
    home, following = preference(HOST, fleet.endpoints)
    agent = fleet.agent(debug=True)
    wait_for(
        lambda: len(lines(agent, "; trying ")) >= 2, timeout=MOVED * 2, what="rounds over the collectors"
    )
    [warning] = lines(agent, "no collector acknowledges")
    assert (
        "WARNING" in warning
        and f"{home}, {following}" in warning
        and "snapshots stay in the spool" in warning
    )
    assert len(lines(agent, "failing over to")) == 1  # home to the next; then the one line above
    assert not lines(agent, "has acknowledged nothing")  # said once, by the line above
    fleet.collector(following)
    wait_for(lambda: lines(agent, "acknowledges, after"), timeout=MOVED * 2, what="the line when one answers")
    assert (
        lines(agent, "acknowledges, after")[0]
        .split(" INFO ")[1]
        .startswith(f"osmon.agent: collector {following}")
    )
    assert agent.terminate() == 0
    nothing_lost_or_doubled(fleet, fleet.drain())


def test_rendezvous_hashing_spreads_hosts_and_moves_only_the_removed_collectors_hosts() -> None:
    endpoints = ["tcp://c1.example.org:5555", "tcp://c2.example.org:5555", "tcp://c3.example.org:5555"]
    hosts = [f"host-{n:04d}" for n in range(1000)]
    order = {host: preference(host, endpoints) for host in hosts}
    homes = Counter(o[0] for o in order.values())
    assert set(homes) == set(endpoints)
    for endpoint, count in homes.items():
        assert 250 <= count <= 420, f"{endpoint} is home to {count} of 1000 hosts"
    assert preference(HOST, list(reversed(endpoints))) == preference(
        HOST, endpoints
    )  # the list's order does not matter
    for removed in endpoints:
        left = [e for e in endpoints if e != removed]
        for host in hosts:
            after = preference(host, left)
            assert after == tuple(e for e in order[host] if e != removed)  # the rest of the order is kept
            if order[host][0] != removed:
                assert after[0] == order[host][0]  # only the removed collector's hosts move


def test_check_config_shows_the_hosts_order_home_first(tmp_path: Path) -> None:
    endpoints = [f"tcp://127.0.0.1:{port}" for port in (5551, 5552, 5553)]
    listed = ", ".join(f'"{e}"' for e in endpoints)
    path = tmp_path / "agent.toml"
    path.write_text(f'host = "{HOST}"\ncollector = [{listed}]\n')
    config = agent_config.load(path)
    assert config.collectors == preference(HOST, endpoints) and config.collector == config.collectors[0]
    out = subprocess.run(
        [str(BIN / "osmon-agent"), "check-config", "--config", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    shown = [line.split(". ", 1)[1] for line in out.stdout.splitlines() if line.startswith("  ")]
    assert shown == list(config.collectors)
    assert "home first" in out.stdout
    path.write_text(f'host = "{HOST}"\ncollector = "{endpoints[0]}"\n')  # one endpoint, as before
    config = agent_config.load(path)
    assert config.collectors == (endpoints[0],) and config.collector == endpoints[0]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("[]", "the list is empty"),
        ('["tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556", "tcp://127.0.0.1:5555"]', "listed more than once"),
        ('["tcp://127.0.0.1:5555", "http://x"]', "expected an endpoint"),
        ('["tcp://127.0.0.1:5555", 5556]', "a list of endpoint strings"),
        (
            '["tcp://127.0.0.1:5555", "tcp://198.51.100.5:5555"]',
            "tcp://198.51.100.5:5555 is not on this machine and [curve] is not configured",
        ),
    ],
)
def test_a_bad_list_of_collectors_is_one_clear_error(tmp_path: Path, value: str, reason: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(f"collector = {value}\n")
    with pytest.raises(ConfigError) as error:
        agent_config.load(path)
    assert f"{path}: key 'collector': " in str(error.value) and reason in str(error.value)
    out = subprocess.run(
        [str(BIN / "osmon-agent"), "check-config", "--config", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 2 and reason in out.stderr and "Traceback" not in out.stderr


def test_a_remote_list_is_accepted_with_allow_insecure(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        'collector = ["tcp://198.51.100.5:5555", "tcp://198.51.100.6:5555"]\nallow_insecure = true\n'
    )
    assert len(agent_config.load(path).collectors) == 2


def test_the_replay_after_a_move_waits_then_keeps_to_its_rate() -> None:
    pace = Pace(rate=4.0)
    assert pace.budget(0.0, backlog=True) == UNBOUNDED  # no move yet: as ever, everything at once
    pace.restart(100.0, pause=0.5)
    assert pace.budget(100.25, backlog=True) == 0  # the random pause after arriving
    assert pace.next_send(100.25) == 100.75  # the first snapshot a quarter of a second after it
    assert pace.budget(101.0, backlog=True) == 2  # then 4 a second
    pace.spend(2)
    assert pace.budget(101.25, backlog=True) == 1
    pace.spend(1)
    assert pace.budget(200.0, backlog=True) == 4  # a second's worth at most, however long it waited
    assert pace.budget(200.25, backlog=False) == UNBOUNDED  # spool empty: steady state, at once again
    assert pace.budget(200.5, backlog=True) == UNBOUNDED
