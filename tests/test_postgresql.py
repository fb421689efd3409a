"""The collector on a real PostgreSQL server: config, check-config --connect, run + web + agent, a lost server.

The server is the distribution's (tests/pg.py), started by the tests in a temporary
directory on a loopback port; each test has a database of its own.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from collector import config as collector_config
from collector.store import open_store
from osmon.configfile import ConfigError
from tests import pg
from tests.conftest import BIN, Cluster, wait_for


def check_config(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "osmon-collector"), "check-config", "--config", str(path), *extra],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("mysql://osmon@db-01/osmon", "unsupported scheme 'mysql'"),
        ("postgresql://osmon@db-01:99999/osmon", "malformed URL"),
        ("postgresql:///osmon", "no host"),
        ("postgresql://osmon@db-01:5432/", "no database name"),
    ],
)
def test_a_database_url_that_cannot_work_is_refused(tmp_path: Path, value: str, reason: str) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{value}"\n')
    with pytest.raises(ConfigError) as caught:
        collector_config.load(path)
    assert caught.value.key == "database" and reason in str(caught.value)


def test_a_password_in_the_url_is_masked_in_what_is_printed(tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(
        'listen = "tcp://127.0.0.1:5555"\ndatabase = "postgresql://osmon:s3cret@db-01:5432/osmon"\n'
    )
    config = collector_config.load(path)
    assert config.postgresql and config.database_shown == "postgresql://osmon:***@db-01:5432/osmon"
    assert config.web_secret_key_file == collector_config.PG_SECRET_KEY_FILE
    done = check_config(path)
    assert done.returncode == 0 and "s3cret" not in done.stdout + done.stderr
    assert "holds a password" in done.stderr


def test_check_config_connect_names_the_host_never_the_password(tmp_path: Path, pg_url: str) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("s3cret\n")
    secret.chmod(0o400)
    path = tmp_path / "collector.toml"
    path.write_text(
        f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{pg_url}"\ndatabase_password_file = "{secret}"\n'
    )
    done = check_config(path, "--connect")
    assert done.returncode == 0, done.stderr
    assert "PostgreSQL 15" in done.stdout and "answers" in done.stdout
    # Nobody listens on port 9 (discard) of 127.0.0.1 here: refused at once.
    path.write_text(
        'listen = "tcp://127.0.0.1:5555"\ndatabase = "postgresql://osmon:s3cret@127.0.0.1:9/osmon"\n'
    )
    done = check_config(path, "--connect")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()[-1:]
    assert "127.0.0.1:9" in line and "s3cret" not in done.stderr + done.stdout


def stored(cluster: Cluster) -> int:
    """Snapshots stored of the first host, 0 while `run` has not created the schema yet."""
    try:
        rows = cluster.status()
    except subprocess.CalledProcessError:
        return 0
    return rows[0]["snapshots"] if rows else 0


def api_hosts(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/hosts", timeout=10) as response:
        return json.loads(response.read())["hosts"]


def test_run_web_and_an_agent_on_postgresql(cluster: Cluster, pg_url: str, tmp_path: Path) -> None:
    cluster.database = pg_url
    web, url = cluster.web(f'anonymous_read = true\nsecret_key_file = "{tmp_path / "web-secret"}"')
    collector = cluster.collector()
    agent = cluster.agent("pg-01")
    wait_for(lambda: stored(cluster) >= 5, what="5 snapshots stored")
    wait_for(lambda: [h["name"] for h in api_hosts(url)] == ["pg-01"], what="the dashboard to list the host")
    with urllib.request.urlopen(f"{url}/host/pg-01?range=1h", timeout=10) as response:
        assert response.status == 200 and "<svg" in response.read().decode()
    assert agent.terminate() == 0
    cluster.drain("pg-01")
    last_seq, pending = cluster.produced("pg-01")
    [row] = cluster.status()
    assert (
        pending == 0 and row["last_seq"] == last_seq and row["snapshots"] == last_seq and not row["missing"]
    )
    # `restore` relies on it: a second `run` on the same database is refused, naming the holder.
    second = cluster.start(
        [str(BIN / "osmon-collector"), "run", "--config", str(cluster.collector_config)], "collector-2"
    )
    assert second.proc.wait(20) == 2 and "osmon-collector run" in second.output()
    assert collector.terminate() == 0 and web.terminate() == 0


def test_a_lost_database_loses_nothing_and_is_used_again_when_back(cluster: Cluster, tmp_path: Path) -> None:
    if not pg.available():
        pytest.skip(pg.SKIP_REASON)
    server = pg.PostgresServer()  # its own server: this test stops and starts it
    try:
        cluster.database = server.database()
        cluster.write_collector_config()
        collector = cluster.collector()
        cluster.agent("lost-01")
        wait_for(lambda: stored(cluster) >= 3, what="snapshots stored")
        server.pause()
        wait_for(
            lambda: "trying again" in collector.output() or "not stored" in collector.output(),
            what="a log line",
        )
        wait_for(
            lambda: cluster.produced("lost-01")[1] >= 5, what="the agent to spool while the database is away"
        )
        assert collector.alive()
        server.resume()
        wait_for(lambda: cluster.produced("lost-01")[1] == 0, timeout=60, what="the spool to drain")
        cluster.processes[-1].terminate()
        cluster.drain("lost-01")
        last_seq, _ = cluster.produced("lost-01")
        [row] = cluster.status()
        assert row["snapshots"] == last_seq and not row["missing"]
        assert collector.output().count("not stored") == 1  # logged once, not once per batch
        assert collector.terminate() == 0
    finally:
        cluster.stop_all()
        server.stop()


def test_the_dashboard_reader_refuses_writes_and_sees_the_writer(pg_url: str) -> None:
    from tests.test_store_contract import received

    writer = open_store(pg_url)
    reader = open_store(pg_url, readonly=True)
    try:
        writer.ingest([received("a", 1), received("a", 2)])
        reader.web_read_only()
        assert [h.name for h in reader.web_hosts()] == ["a"]
        assert reader.web_check() == 1
    finally:
        reader.close()
        writer.close()


def migrate(source: Path, url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "osmon-collector"), "migrate-store", "--from", str(source), "--to", url],
        capture_output=True,
        text=True,
    )


def test_migrate_store_moves_a_sqlite_history_and_verifies_it(
    tmp_path: Path, pg_server: pg.PostgresServer
) -> None:
    from collector.mail import Mail
    from collector.store import AlertEvent, FeedItem, Pending
    from tests.test_store_contract import T0, received

    source = tmp_path / "osmon.db"
    old = open_store(source)
    old.ingest([received(h, s) for h in ("a", "b") for s in range(1, 400) if s != 17])
    old.alerts_apply(
        [AlertEvent("fired", "a", "cpu.percent", "warning", T0 + 60, 85.0, 80.0, started=T0)], []
    )
    old.outbox_add(Mail(["ops@example.org"], "one", "text", ""), "<1@x>", T0)
    old.certfr_add([FeedItem("g1", "alert 1", "https://example.org/1", T0, "text")], mail=False, now=T0)
    old.silence("b", T0 + 3600, "upgrade", T0)
    old.add_counters({"received": 798})
    old.token_add("prometheus", "ab" * 32, T0)
    old.web_logout("alice", T0)
    old.alerts_apply([], [], pending=[Pending("b", "mem.percent", T0, "warning")])
    before = (old.hosts(), old.samples("a", T0, T0 + 4000), old.alerts_active(), old.counters())
    old.close()

    url = pg_server.database()
    done = migrate(source, url)
    assert done.returncode == 0, done.stderr
    assert "samples: host 2/2 b: 398 rows" in done.stdout and "copied and verified" in done.stdout
    new = open_store(url)
    assert (new.hosts(), new.samples("a", T0, T0 + 4000), new.alerts_active(), new.counters()) == before
    assert [s.host for s in new.silences(T0)] == ["b"] and new.outbox_size() == 1
    assert new.token_name("ab" * 32) == "prometheus" and new.web_logged_out("alice") == T0
    assert new.detection_state(["b"])[1] == [Pending("b", "mem.percent", T0, "warning")]
    while new.pack(time.time(), 100):  # the history's days are over: the upkeep packs them
        pass
    assert (new.hosts(), new.samples("a", T0, T0 + 4000)) == before[:2]
    again = migrate(source, url)  # verifies the copy again: packed samples counted one by one
    assert again.returncode == 0 and "already holds a completed copy" in again.stdout
    assert "verified" in again.stdout
    # The moved history goes on: a gap is filled once, a resend is known.
    assert new.ingest([received("a", 17)]).fresh and not new.ingest([received("a", 16)]).fresh
    new.close()

    other = pg_server.database()
    busy = open_store(other)
    busy.ingest([received("z", 1)])
    busy.close()
    refused = migrate(source, other)
    assert refused.returncode == 2 and "already holds data" in refused.stderr
