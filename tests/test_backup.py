"""backup and restore: real collectors and agents, real SQLite files, real tar.gz archives."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from collector import backup as backups
from collector import config as collector_config
from collector.samples import extract
from collector.store import Received, open_store
from collector.store.schema import MIGRATIONS
from osmon import wire
from tests.conftest import BIN, Cluster, wait_for

T0 = 1_764_000_000.0


def osmon(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "osmon-collector"), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def received(host: str, seq: int) -> Received:
    probes = {"cpu": {"percent": 12.5, "per_core": [10.0, 15.0]}, "memory": {"percent": 40.0}}
    raw = wire.encode_snapshot(host, seq, T0 + seq * 10, 10.0, "test", probes)
    return Received(extract(wire.decode_snapshot(raw)), raw, 10.0, T0 + seq * 10 + 0.5)


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` with its bytes: what "nothing changed" compares."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "collector.toml"
    config.write_text(
        f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{tmp_path / "data" / "osmon.db"}"\n'
        f"[certfr]\nenabled = false\n{extra}"
    )
    return config


def filled_database(config: Path, hosts: dict[str, int]) -> Path:
    """The config's database with `hosts` {name: snapshots} stored through the real store."""
    database = Path(collector_config.load(config).database)
    store = open_store(database)
    for host, count in hosts.items():
        for first in range(1, count + 1, 5000):
            store.ingest([received(host, s) for s in range(first, min(first + 5000, count + 1))])
    store.close()
    return database


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A good backup of a small database (config in tmp_path/collector.toml, database under data/)."""
    config = write_config(tmp_path)
    filled_database(config, {"web-01": 50, "db-01": 20})
    out = tmp_path / "good.tar.gz"
    result = osmon("backup", "--config", config, "--output", out)
    assert result.returncode == 0, result.stderr
    return out


def members(archive: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: (m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar.getmembers()}


def rewrite(
    archive: Path, out: Path, edit: Callable[[dict, list[tuple[tarfile.TarInfo, bytes]]], None]
) -> Path:
    """A copy of `archive` after `edit(manifest, members)` changed the manifest or the member list."""
    content = members(archive)
    manifest = json.loads(content.pop("manifest.json")[1])
    rest = list(content.values())
    edit(manifest, rest)
    with tarfile.open(out, "w:gz") as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for info, data in rest:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out


# -- the round trip under ingest -------------------------------------------------------------------


def test_a_backup_taken_during_ingest_restores_complete_sequences(cluster: Cluster) -> None:
    # A few MiB of history first, so that the copy takes many steps while agents keep sending.
    filled_database(cluster.collector_config, {"history": 30_000})
    collector = cluster.collector()
    agents = {host: cluster.agent(host, interval=0.05) for host in ("alpha", "beta")}
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    wait_for(lambda: all(len(store.seqs(h)) >= 10 for h in agents), what="first snapshots")
    before = {h: set(store.seqs(h)) for h in agents}

    archive = cluster.dir / "during.tar.gz"
    result = osmon("backup", "--config", cluster.collector_config, "--output", archive)
    assert result.returncode == 0, result.stderr
    assert f"{archive}:" in result.stdout and "schema" in result.stdout
    after = {h: set(store.seqs(h)) for h in agents}
    assert all(after[h] > before[h] for h in agents), "ingest went on while the backup ran"

    for host, agent in agents.items():
        assert agent.terminate() == 0
        cluster.drain(host)
    assert collector.terminate() == 0, collector.output()
    store.close()
    live = tree(cluster.dir)["osmon.db"]

    result = osmon("restore", "--config", cluster.collector_config, "--input", archive)
    assert result.returncode == 0, result.stderr
    restored = open_store(cluster.dir / "osmon.db", readonly=True)
    infos = {h.name: h for h in restored.hosts()}
    for host in agents:
        seqs = restored.seqs(host)
        # A consistent snapshot: every number up to the last one recorded, nothing torn.
        assert seqs == list(range(1, infos[host].last_seq + 1)), host
        assert infos[host].snapshots == len(seqs) and infos[host].missing == []
        assert before[host] <= set(seqs), f"{host}: snapshots acked before the backup are missing"
    assert restored.seqs("history") == list(range(1, 30_001))
    # The database it replaced is kept aside, byte for byte.
    [aside] = cluster.dir.glob("osmon.db.before-restore-*")
    assert aside.read_bytes() == live
    assert f"kept as {aside}" in result.stdout


# -- damaged archives ----------------------------------------------------------------------------


def truncated(archive: Path, out: Path) -> Path:
    out.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    return out


def flipped_db_byte(archive: Path, out: Path) -> Path:
    def flip(manifest: dict, rest: list) -> None:
        for i, (info, data) in enumerate(rest):
            if info.name == "osmon.db":
                middle = len(data) // 2
                rest[i] = (info, data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :])

    return rewrite(archive, out, flip)


def foreign(archive: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        data = b"just some data\n"
        info = tarfile.TarInfo("data/notes.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out


def foreign_manifest(archive: Path, out: Path) -> Path:
    return rewrite(archive, out, lambda manifest, rest: manifest.update(format="someone-elses-backup"))


def newer_schema(archive: Path, out: Path) -> Path:
    return rewrite(archive, out, lambda manifest, rest: manifest.update(schema=len(MIGRATIONS) + 1))


def traversal(archive: Path, out: Path) -> Path:
    def add(manifest: dict, rest: list) -> None:
        info = tarfile.TarInfo("../evil.sh")
        info.size = 3
        rest.append((info, b"hi\n"))

    return rewrite(archive, out, add)


def listed_traversal(archive: Path, out: Path) -> Path:
    """The manifest itself names a member outside the target."""

    def add(manifest: dict, rest: list) -> None:
        data = b"hi\n"
        manifest["members"].append(
            {
                "name": "../evil.sh",
                "kind": "key",
                "size": 3,
                "sha256": "0" * 64,
                "mode": 0o644,
                "source": "/x",
            }
        )
        info = tarfile.TarInfo("../evil.sh")
        info.size = len(data)
        rest.append((info, data))

    return rewrite(archive, out, add)


def absolute(archive: Path, out: Path) -> Path:
    def add(manifest: dict, rest: list) -> None:
        info = tarfile.TarInfo(str(out.parent / "absolute-evil"))
        info.size = 3
        rest.append((info, b"hi\n"))

    return rewrite(archive, out, add)


def symlink(archive: Path, out: Path) -> Path:
    """The config member replaced by a link to a file of the restoring machine."""

    def swap(manifest: dict, rest: list) -> None:
        for i, (info, _) in enumerate(rest):
            if info.name == "config/collector.toml":
                link = tarfile.TarInfo(info.name)
                link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
                rest[i] = (link, b"")

    return rewrite(archive, out, swap)


def not_gzip(archive: Path, out: Path) -> Path:
    out.write_bytes(os.urandom(4096))
    return out


DAMAGES = {
    "truncated": (truncated, "truncated"),
    "flipped byte in the database": (flipped_db_byte, "osmon.db: checksum mismatch"),
    "foreign tarball": (foreign, "not an osMonitoring backup"),
    "foreign manifest": (foreign_manifest, "not an osMonitoring backup"),
    "newer schema": (newer_schema, f"schema {len(MIGRATIONS) + 1}, newer than"),
    "path traversal": (traversal, "unexpected member '../evil.sh'"),
    "path traversal in the manifest": (listed_traversal, "unsafe or unknown member '../evil.sh'"),
    "absolute path": (absolute, "unexpected member"),
    "symlink member": (symlink, "is not a regular file"),
    "not gzip": (not_gzip, "not a tar.gz archive"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_archive_is_refused_and_nothing_changes(tmp_path: Path, archive: Path, damage: str) -> None:
    make, message = DAMAGES[damage]
    bad = make(archive, tmp_path / "bad.tar.gz")
    state = tree(tmp_path)
    result = osmon("restore", "--config", tmp_path / "collector.toml", "--input", bad)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("osmon-collector: ") and message in line, line
    assert tree(tmp_path) == state  # database bytes identical, no file added or removed
    assert not (tmp_path.parent / "evil.sh").exists()


def test_the_good_archive_itself_restores(tmp_path: Path, archive: Path) -> None:
    """The damaged ones above are refused for their damage, not for something all archives have."""
    result = osmon("restore", "--config", tmp_path / "collector.toml", "--input", archive)
    assert result.returncode == 0, result.stderr
    assert open_store(tmp_path / "data" / "osmon.db", readonly=True).seqs("web-01") == list(range(1, 51))


# -- running processes ---------------------------------------------------------------------------


def test_restore_refuses_while_run_or_web_use_the_database(cluster: Cluster) -> None:
    web, _ = cluster.web()
    collector = cluster.collector()
    wait_for(lambda: (cluster.dir / "osmon.db").exists(), what="the database")
    archive = cluster.dir / "live.tar.gz"
    assert osmon("backup", "--config", cluster.collector_config, "--output", archive).returncode == 0

    result = osmon("restore", "--config", cluster.collector_config, "--input", archive)
    assert result.returncode == 2
    assert f"osmon-collector run (pid {collector.pid}) is using" in result.stderr
    second = osmon("run", "--config", cluster.collector_config)
    assert (
        second.returncode == 2 and "osmon-collector run" in second.stderr and "stop it first" in second.stderr
    )

    assert collector.terminate() == 0
    result = osmon("restore", "--config", cluster.collector_config, "--input", archive)
    assert result.returncode == 2 and "osmon-collector web" in result.stderr
    assert web.terminate() == 0
    assert not list(cluster.dir.glob("osmon.db.before-restore-*"))  # nothing was touched

    result = osmon("restore", "--config", cluster.collector_config, "--input", archive)
    assert result.returncode == 0, result.stderr
    assert len(list(cluster.dir.glob("osmon.db.before-restore-*"))) == 1


def test_a_collector_starts_on_the_restored_database(tmp_path: Path, archive: Path) -> None:
    # What the restore playbook does next: start the collector again on the restored data.
    (tmp_path / "c").mkdir()
    cluster = Cluster(tmp_path / "c")
    try:
        database = cluster.dir / "osmon.db"
        assert osmon("restore", "--config", cluster.collector_config, "--input", archive).returncode == 0
        cluster.collector()
        agent = cluster.agent("web-01", interval=0.05)
        wait_for(lambda: len(open_store(database, readonly=True).seqs("web-01")) >= 55, what="new snapshots")
        assert agent.terminate() == 0
    finally:
        cluster.stop_all()


# -- older schemas -------------------------------------------------------------------------------


def schema_4_database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:4], start=1):
        conn.executescript(f"BEGIN; {script} PRAGMA user_version = {number}; COMMIT;")
    conn.execute(
        "INSERT INTO hosts (name, first_seen, last_seen, first_seq, last_seq, stored) VALUES ('old', 1, 2, 1, 3, 3)"
    )
    for seq in (1, 2, 3):
        conn.execute(
            "INSERT INTO samples (host_id, seq, ts, cpu) VALUES (1, ?, ?, 20.0)", (seq, T0 + seq * 10)
        )
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()


def test_an_older_schema_archive_is_migrated_on_restore(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    old = tmp_path / "old" / "osmon.db"
    schema_4_database(old)
    # What `backup` of an older version wrote: the same format, schema 4.
    database = backups.Member(backups.DATABASE, "database", str(old), 0o600, None, old)
    files = backups.gather_files(collector_config.load(config), include_secrets=False)
    archive = tmp_path / "old.tar.gz"
    backups.write_archive(archive, backups.manifest([database, *files], 4, str(old)), [database, *files])

    result = osmon("restore", "--config", config, "--input", archive)
    assert result.returncode == 0, result.stderr
    assert f"migrated from schema 4 to {len(MIGRATIONS)}" in result.stdout
    store = open_store(tmp_path / "data" / "osmon.db", readonly=True)  # refuses any other schema
    assert store.seqs("old") == [1, 2, 3]
    assert "was kept" not in result.stdout and not list((tmp_path / "data").glob("*.before-restore-*"))


# -- rotation, secrets, modes -------------------------------------------------------------------


def test_keep_rotates_only_backups_of_the_naming_pattern(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    filled_database(config, {"a": 5})
    out = tmp_path / "backups"
    out.mkdir()
    others = ["notes.txt", "osmon-backup-manual.tar.gz", "osmon-backup-20200101T000000Z.tar.gz.partial"]
    for name in others:
        (out / name).write_text("keep me")
    (out / "osmon-backup-20200101T000000Z.tar.gz").write_text("an old backup")
    made = []
    for _ in range(3):
        result = osmon("backup", "--config", config, "--output-dir", out, "--keep", "2")
        assert result.returncode == 0, result.stderr
        made.append(Path(result.stdout.split(":")[0]))
    assert len(set(made)) == 3
    backups_left = sorted(p.name for p in out.iterdir() if backups.NAME_PATTERN.match(p.name))
    assert backups_left == sorted(p.name for p in made[1:])
    assert all((out / name).read_text() == "keep me" for name in others)
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temporary file left behind

    assert (
        osmon("backup", "--config", config, "--output", tmp_path / "x.tar.gz", "--keep", "2").returncode == 2
    )


def curve_config(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    for name in ("collector", "web-01", "db-01"):
        assert osmon("keygen", keys, "--name", name).returncode == 0
    (keys / "agents").mkdir()
    for host in ("web-01", "db-01"):
        (keys / "agents" / f"{host}.key").write_bytes((keys / f"{host}.key").read_bytes())
    (tmp_path / "smtp-password").write_text("hunter2\n")
    (tmp_path / "web-secret").write_text("session key\n")
    return write_config(
        tmp_path,
        f'[curve]\nsecret_key = "{keys / "collector.key_secret"}"\nagents = "{keys / "agents"}"\n'
        f'[web]\nsecret_key_file = "{tmp_path / "web-secret"}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nusername = "osmon"\npassword_file = "{tmp_path / "smtp-password"}"\n',
    )


def test_secrets_only_with_include_secrets_and_safe_modes(tmp_path: Path) -> None:
    config = curve_config(tmp_path)
    filled_database(config, {"web-01": 5})
    public = {"manifest.json", "osmon.db", "config/collector.toml", "keys/collector.key"}
    public |= {"keys/agents/web-01.key", "keys/agents/db-01.key"}
    secrets = {"secrets/collector.key_secret", "secrets/web-secret", "secrets/smtp-password"}

    plain, full = tmp_path / "plain.tar.gz", tmp_path / "full.tar.gz"
    assert osmon("backup", "--config", config, "--output", plain).returncode == 0
    result = osmon("backup", "--config", config, "--output", full, "--include-secrets")
    assert result.returncode == 0 and "secrets included" in result.stdout
    assert set(members(plain)) == public
    assert set(members(full)) == public | secrets
    assert members(full)["secrets/smtp-password"][1] == b"hunter2\n"

    for archive in (plain, full):
        assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # the config holds password hashes
        for name, (info, _) in members(archive).items():
            assert info.isreg() and (info.uid, info.gid) == (0, 0), name
            expected = 0o644 if name.startswith("keys/") or name == "manifest.json" else 0o600
            assert info.mode == expected, f"{name}: {oct(info.mode)}"

    # Restoring writes the archive's files only where asked, never over the ones in use.
    before = tree(tmp_path / "keys"), (tmp_path / "collector.toml").read_bytes()
    result = osmon("restore", "--config", config, "--input", full, "--files-to", tmp_path / "review")
    assert result.returncode == 0, result.stderr
    assert (tree(tmp_path / "keys"), (tmp_path / "collector.toml").read_bytes()) == before
    review = tmp_path / "review"
    assert (review / "secrets" / "smtp-password").read_bytes() == b"hunter2\n"
    assert stat.S_IMODE((review / "secrets" / "collector.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((review / "keys" / "agents" / "web-01.key").stat().st_mode) == 0o644


def test_manifest_describes_the_archive(tmp_path: Path, archive: Path) -> None:
    content = members(archive)
    assert next(iter(content)) == "manifest.json"  # first, so a foreign archive is refused at once
    manifest = json.loads(content["manifest.json"][1])
    assert manifest["format"] == "osmonitoring-backup" and manifest["format_version"] == 1
    assert manifest["schema"] == len(MIGRATIONS) and manifest["osmonitoring"]
    assert manifest["created"].endswith("Z") and manifest["host"]
    listed = {m["name"]: m for m in manifest["members"]}
    assert set(listed) == set(content) - {"manifest.json"}
    for name, (info, data) in content.items():
        if name != "manifest.json":
            assert listed[name]["size"] == len(data) == info.size
    db = tmp_path / "copy.db"
    db.write_bytes(content["osmon.db"][1])
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert not Path(f"{db}-wal").exists()  # one self-contained file, in rollback-journal mode


def test_backup_of_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = osmon("backup", "--config", config, "--output", tmp_path / "x.tar.gz")
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "x.tar.gz").exists()


def test_the_copy_is_one_snapshot_while_the_writer_commits_between_its_steps(tmp_path: Path) -> None:
    """The backup API restarts a paged copy when another connection writes; the held read must prevent it."""
    path = tmp_path / "osmon.db"
    writer = open_store(path)
    writer.ingest([received("a", s) for s in range(1, 3001)])
    reader = open_store(path, readonly=True)
    progress: list[tuple[int, int]] = []
    next_seq = iter(range(3001, 10**6))

    def commit_more(done: int, total: int) -> None:
        progress.append((done, total))
        writer.ingest([received("a", next(next_seq)) for _ in range(20)])  # would block if the copy locked it

    reader.backup_to(tmp_path / "copy.db", 4, commit_more)
    assert len(progress) > 10, "the copy took many steps"
    assert [done for done, _ in progress] == sorted(done for done, _ in progress), "the copy restarted"
    copy = open_store(tmp_path / "copy.db", readonly=True)
    assert copy.seqs("a") == list(range(1, 3001))  # as of the start, none of the commits made meanwhile
    assert len(writer.seqs("a")) == 3000 + 20 * len(progress)
