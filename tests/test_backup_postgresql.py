"""backup and restore on PostgreSQL: pg_dump and pg_restore of the distribution, a real server, real archives.

Each test has databases of its own on the session's server (tests/pg.py); the
collector, the dashboard and the CLIs are the real ones.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from collector import config as collector_config
from collector.mail import Mail
from collector.store import AlertEvent, FeedItem, open_store, pg_dump
from collector.web import api, create_app
from tests import pg
from tests.conftest import BIN, Cluster, wait_for
from tests.test_backup import members, write_config
from tests.test_store_contract import T0, received

NOW = T0 + 3000.0  # the dashboard's clock: just after the last stored snapshot


def osmon(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "osmon-collector"), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def pg_config(directory: Path, url: str, extra: str = "") -> Path:
    """A collector config for `url` in `directory`, with an anonymous dashboard."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "collector.toml"
    path.write_text(
        f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{url}"\n{extra}\n'
        f'[web]\nanonymous_read = true\nsecret_key_file = "{directory / "web-secret"}"\n'
        "[certfr]\nenabled = false\n"
    )
    return path


def populate(url: str) -> None:
    """Two hosts' history (with a missing snapshot), an alert, a mail, a CERT-FR item, a silence, a token."""
    store = open_store(url)
    store.ingest([received(h, s) for h in ("web-01", "db-01") for s in range(1, 300) if s != 17])
    store.alerts_apply(
        [AlertEvent("fired", "web-01", "cpu.percent", "warning", T0 + 60, 85.0, 80.0, started=T0)], []
    )
    store.outbox_add(Mail(["ops@example.org"], "web-01: cpu.percent warning", "text", ""), "<1@x>", T0 + 61)
    store.certfr_add([FeedItem("g1", "alert 1", "https://example.org/1", T0, "text")], mail=False, now=T0)
    store.silence("db-01", T0 + 7200, "upgrade", T0)
    store.add_counters({"received": 598})
    store.token_add("scraper", "ab" * 32, T0)
    store.close()


def dashboard(config: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """What an operator sees of a database: the dashboard's JSON at NOW, the mail outbox, silences, tokens."""
    monkeypatch.setattr(api, "time", SimpleNamespace(time=lambda: NOW))
    loaded = collector_config.load(config)
    store = open_store(loaded.database, readonly=True)
    try:
        client = create_app(loaded, store=store, secret_key="test").test_client()
        paths = [
            "/api/hosts",
            "/api/hosts/web-01",
            "/api/hosts/db-01",
            "/api/hosts/web-01/series?metric=cpu.percent&range=1h",
            "/api/alerts",
            "/api/certfr",
        ]
        seen: dict = {path: client.get(path).get_json() for path in paths}
        seen["outbox"] = store.outbox_recent()
        seen["silences"] = store.silences(NOW)
        seen["tokens"] = store.tokens()
        seen["counters"] = store.counters()
        seen["history"] = store.alerts_history()
        seen["seqs"] = {h: store.seqs(h) for h in ("web-01", "db-01")}
    finally:
        store.close()
    return seen


def backup(config: Path, output: Path) -> subprocess.CompletedProcess:
    return osmon("backup", "--config", config, "--output", output)


def restore(config: Path, archive: Path) -> subprocess.CompletedProcess:
    return osmon("restore", "--config", config, "--input", archive)


def tables(url: str) -> list[str]:
    """The tables of a database: [] when it is empty."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return sorted(name for (name,) in rows)


def one_line(done: subprocess.CompletedProcess) -> str:
    """The single line a refused command printed (exit status 2, no traceback)."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("osmon-collector: "), line
    return line


@pytest.fixture
def source(tmp_path: Path, pg_url: str) -> Path:
    """The config of a populated PostgreSQL database."""
    populate(pg_url)
    return pg_config(tmp_path / "source", pg_url)


@pytest.fixture
def archive(tmp_path: Path, source: Path) -> Path:
    out = tmp_path / "pg.tar.gz"
    done = backup(source, out)
    assert done.returncode == 0, done.stderr
    return out


# -- the round trip --------------------------------------------------------------------------------


def test_a_restored_database_shows_the_same_dashboard(
    tmp_path: Path, pg_server: pg.PostgresServer, source: Path, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = members(archive)
    manifest = json.loads(content["manifest.json"][1])
    assert manifest["backend"] == "postgresql" and manifest["database"].startswith("postgresql://")
    assert manifest["contents"]["hosts"] == {"db-01": [298, 1, 299], "web-01": [298, 1, 299]}
    assert content["osmon.pgdump"][1].startswith(b"PGDMP") and content["osmon.pgdump"][0].mode == 0o600

    target = pg_config(tmp_path / "target", pg_server.database())
    done = restore(target, archive)
    assert done.returncode == 0, done.stderr
    assert "restored postgresql://" in done.stdout

    before, after = dashboard(source, monkeypatch), dashboard(target, monkeypatch)
    assert sorted(h["name"] for h in after["/api/hosts"]["hosts"]) == ["db-01", "web-01"]
    assert after["/api/alerts"]["active"] and after["outbox"] and after["silences"]
    assert after == before
    # The restored database goes on: a missing snapshot is stored once, a resend is known.
    store = open_store(collector_config.load(target).database)
    assert store.ingest([received("web-01", 17)]).fresh and not store.ingest([received("web-01", 16)]).fresh
    store.close()


def test_a_history_of_packed_days_is_backed_up_and_restored_whole(
    tmp_path: Path, pg_server: pg.PostgresServer, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(pg_url)
    store = open_store(pg_url)
    while store.pack(time.time(), 100):  # T0's day is over: the upkeep packs it
        pass
    store.close()
    source = pg_config(tmp_path / "source", pg_url)
    archive = tmp_path / "pg.tar.gz"
    done = backup(source, archive)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(members(archive)["manifest.json"][1])
    assert manifest["contents"]["hosts"] == {"db-01": [298, 1, 299], "web-01": [298, 1, 299]}
    target = pg_config(tmp_path / "target", pg_server.database())
    done = restore(target, archive)
    assert done.returncode == 0, done.stderr
    assert dashboard(target, monkeypatch) == dashboard(source, monkeypatch)


def test_a_backup_taken_during_ingest_restores_one_consistent_snapshot(
    cluster: Cluster, pg_url: str, pg_server: pg.PostgresServer, tmp_path: Path
) -> None:
    populate(pg_url)
    cluster.database = pg_url
    cluster.write_collector_config()
    collector = cluster.collector()
    agent = cluster.agent("alpha", interval=0.05)
    store = open_store(pg_url, readonly=True)
    wait_for(lambda: len(store.seqs("alpha")) >= 20, what="first snapshots")
    before = set(store.seqs("alpha"))
    out = tmp_path / "during.tar.gz"
    done = backup(cluster.collector_config, out)
    assert done.returncode == 0, done.stderr
    assert f"{out}:" in done.stdout and "schema" in done.stdout
    wait_for(lambda: len(store.seqs("alpha")) > len(before) + 20, what="ingest to go on")
    store.close()
    assert agent.terminate() == 0 and collector.terminate() == 0, collector.output()

    target = pg_config(tmp_path / "target", pg_server.database())
    done = restore(target, out)  # verifies every table's rows and each host's samples against the manifest
    assert done.returncode == 0, done.stderr
    restored = open_store(collector_config.load(target).database, readonly=True)
    seqs = restored.seqs("alpha")
    assert seqs == list(range(1, seqs[-1] + 1)) and before <= set(seqs)  # nothing torn, nothing acked lost
    assert len(restored.seqs("web-01")) == 298
    restored.close()


# -- refusals ------------------------------------------------------------------------------------


def test_restore_refuses_a_database_that_is_not_empty(source: Path, archive: Path) -> None:
    line = one_line(restore(source, archive))
    assert "is not empty" in line and "createdb" in line


def test_restore_refuses_while_run_or_web_use_the_database(
    tmp_path: Path, archive: Path, pg_server: pg.PostgresServer
) -> None:
    (tmp_path / "c").mkdir()
    cluster = Cluster(tmp_path / "c")
    try:
        cluster.database = pg_server.database()
        web, _ = cluster.web()
        line = one_line(restore(cluster.collector_config, archive))
        assert "osmon-collector web" in line and "stop it first" in line
        assert web.terminate() == 0
        collector = cluster.collector()
        wait_for(lambda: "osmon_schema" in tables(cluster.database), what="`run` to create its schema")
        line = one_line(restore(cluster.collector_config, archive))
        assert "osmon-collector run" in line and "stop it first" in line
        assert collector.terminate() == 0
    finally:
        cluster.stop_all()
    empty = pg_config(tmp_path / "empty", pg_server.database())
    assert restore(empty, archive).returncode == 0


def test_an_archive_of_the_other_backend_is_refused(
    tmp_path: Path, archive: Path, pg_server: pg.PostgresServer
) -> None:
    (tmp_path / "sqlite").mkdir()
    sqlite_config = write_config(tmp_path / "sqlite")
    store = open_store(collector_config.load(sqlite_config).database)
    store.ingest([received("lite", 1)])
    store.close()
    sqlite_archive = tmp_path / "sqlite.tar.gz"
    assert backup(sqlite_config, sqlite_archive).returncode == 0

    empty = pg_server.database()
    line = one_line(restore(pg_config(tmp_path / "pg", empty), sqlite_archive))
    assert "holds a SQLite database" in line and "migrate-store" in line
    assert tables(empty) == []
    database = Path(collector_config.load(sqlite_config).database)
    kept = database.read_bytes()
    line = one_line(restore(sqlite_config, archive))
    assert "holds a PostgreSQL dump" in line and "is a SQLite file" in line
    assert database.read_bytes() == kept and not list(database.parent.glob("*.before-restore-*"))


def test_a_tampered_dump_is_refused_and_the_database_stays_empty(
    tmp_path: Path, archive: Path, pg_server: pg.PostgresServer
) -> None:
    empty = pg_server.database()
    content = members(archive)
    bad = tmp_path / "tampered.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for name, (info, data) in content.items():
            if name == "osmon.pgdump":
                data = data[:-100] + bytes(b ^ 0xFF for b in data[-100:])
            tar.addfile(info, io.BytesIO(data))
    line = one_line(restore(pg_config(tmp_path / "t", empty), bad))
    assert "osmon.pgdump: checksum mismatch" in line
    assert tables(empty) == []


# -- pg_dump and pg_restore failing --------------------------------------------------------------


def test_pg_dump_and_pg_restore_errors_are_one_line(
    tmp_path: Path, source: Path, archive: Path, pg_server: pg.PostgresServer
) -> None:
    pg_server.sql("DO $$ BEGIN CREATE ROLE nobody LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    url = collector_config.load(source).database
    as_nobody = url.replace(f"//{pg_server.user}@", "//nobody@")
    # pg_dump cannot read the tables: its error, in one line, naming the server.
    line = one_line(backup(pg_config(tmp_path / "weak", as_nobody), tmp_path / "no.tar.gz"))
    assert f"pg_dump failed on 127.0.0.1:{pg_server.port}: " in line and "permission denied" in line
    assert not (tmp_path / "no.tar.gz").exists()
    # pg_restore may not create tables (PostgreSQL 15: only the owner may in schema public).
    target = pg_server.database()
    line = one_line(
        restore(pg_config(tmp_path / "weak2", target.replace(f"//{pg_server.user}@", "//nobody@")), archive)
    )
    assert "pg_restore failed on" in line and "permission denied for schema public" in line
    assert tables(target) == []  # one transaction: nothing half restored


def test_the_password_reaches_pg_dump_by_its_environment_only(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    bare, env = pg_dump.child("postgresql://osmon@db-01:5432/osmon?sslmode=require", str(secret), "backup")
    assert bare == "postgresql://osmon@db-01:5432/osmon?sslmode=require" and env["PGPASSWORD"] == "s3cret"
    bare, env = pg_dump.child("postgresql://osmon:in%40url@db-01/osmon", None, "restore")
    assert bare == "postgresql://osmon@db-01/osmon" and env["PGPASSWORD"] == "in@url"
    assert env["PGAPPNAME"] == "osmon-collector restore"


def test_backup_of_an_empty_postgresql_database_is_a_clear_error(tmp_path: Path, pg_url: str) -> None:
    line = one_line(backup(pg_config(tmp_path, pg_url), tmp_path / "x.tar.gz"))
    assert "holds no osMonitoring data" in line
