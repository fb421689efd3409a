"""Shared fixtures: free ports, config files, and the real CLIs as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.spool import Spool
from tests import pg
from tests.webhook_sink import Sink

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Process:
    """A CLI started by a test; stopped by PID at teardown whatever happened."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.log_path = args, log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.log.close()
        return code

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class Cluster:
    """Configs and processes of one test: a collector and any number of agents."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.port = free_port()
        self.processes: list[Process] = []
        self.agent_extra: dict[str, str] = {}
        self.database = str(tmp_path / "osmon.db")  # or a postgresql:// URL (tests/pg.py)
        self.collector_config = tmp_path / "collector.toml"
        self.write_collector_config()

    def write_collector_config(self, extra: str = "") -> Path:
        # Tests never reach outside hosts: the CERT-FR feed is off unless a test points it at its own server.
        certfr = "" if "[certfr]" in extra else "[certfr]\nenabled = false\n"
        self.collector_config.write_text(
            f'listen = "tcp://127.0.0.1:{self.port}"\ndatabase = "{self.database}"\n{extra}\n{certfr}'
        )
        return self.collector_config

    def agent_config(self, host: str, interval: float = 0.2, extra: str = "") -> Path:
        path = self.dir / f"agent-{host}.toml"
        path.write_text(
            f'host = "{host}"\n'
            f'collector = "tcp://127.0.0.1:{self.port}"\n'
            f"interval = {interval}\n"
            f'spool = "{self.dir / f"spool-{host}.db"}"\n'
            f"ack_timeout = 1\n"
            f"{extra}\n"
        )
        return path

    def start(self, args: list[str], name: str) -> Process:
        process = Process(args, self.dir / f"{name}.log")
        self.processes.append(process)
        return process

    def collector(self) -> Process:
        return self.start(
            [str(BIN / "osmon-collector"), "run", "--config", str(self.collector_config)], "collector"
        )

    def agent(self, host: str, interval: float = 0.2, extra: str | None = None) -> Process:
        """Start an agent; `extra` config lines are remembered for the host's later restarts."""
        if extra is None:
            extra = self.agent_extra.get(host, "")
        self.agent_extra[host] = extra
        config = self.agent_config(host, interval, extra)
        return self.start([str(BIN / "osmon-agent"), "run", "--config", str(config)], f"agent-{host}")

    def web(self, settings: str = "anonymous_read = true", extra: str = "") -> tuple[Process, str]:
        """Start `osmon-collector web` on a free loopback port; returns it and its base URL.

        Rewrites the collector config with a [web] section (bind, then `settings`, which may end with a
        [web.users] table) and `extra` tables such as [alerts]: start the collector after this, as both
        processes read that file. Returns once the dashboard answers HTTP (/healthz says 503 until the
        collector has created the database).
        """
        port = free_port()
        self.write_collector_config(f'[web]\nbind = "127.0.0.1:{port}"\n{settings}\n{extra}')
        process = self.start(
            [str(BIN / "osmon-collector"), "web", "--config", str(self.collector_config)], "web"
        )
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            if not process.alive():
                raise AssertionError(f"osmon-collector web exited:\n{process.output()}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=5):
                    return True
            except urllib.error.HTTPError:
                return True  # 503 before the database exists: the server itself is up
            except OSError:
                return False

        wait_for(answers, what=f"the dashboard to answer on {url}")
        return process, url

    def status(self) -> list[dict]:
        out = subprocess.run(
            [str(BIN / "osmon-collector"), "status", "--config", str(self.collector_config), "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    def produced(self, host: str) -> tuple[int, int]:
        """(last sequence number handed out, snapshots still unacked) from an agent's spool."""
        spool = Spool(self.dir / f"spool-{host}.db", 1 << 30)
        try:
            return spool.last_seq, spool.pending_count()
        finally:
            spool.close()

    def drain(self, host: str) -> None:
        """After an agent stopped: if acks were still missing, run it again until its spool is empty."""
        while self.produced(host)[1]:
            agent = self.agent(host, interval=3600)
            wait_for(lambda: self.produced(host)[1] == 0, what=f"{host} spool to drain")
            assert agent.terminate() == 0

    def stop_all(self) -> None:
        for process in self.processes:
            if process.alive():
                process.kill()
            if not process.log.closed:
                process.log.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PostgresServer]:
    """A real PostgreSQL server for the whole session, in a temporary directory; stopped at the end."""
    if not pg.available():
        pytest.skip(pg.SKIP_REASON)
    server = pg.PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: pg.PostgresServer) -> str:
    """The URL of a new, empty PostgreSQL database of the test's own."""
    return pg_server.database()


@pytest.fixture(scope="session")
def webhook_sink() -> Iterator[Sink]:
    """A real HTTP server on loopback for the session; each test takes endpoints of its own."""
    sink = Sink()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """With OSMON_NO_SKIP=1 (set by .ci/run) a skipped test fails: CI must run everything it can."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("OSMON_NO_SKIP") == "1" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped, but OSMON_NO_SKIP=1 requires every test to run: {reason}"
