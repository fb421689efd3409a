"""`osmon-collector backup`: a consistent online copy of the database, with config and keys, in a tar.gz.

An archive holds `manifest.json` first (format marker, versions, the backend, and the
sha256 and size of every other member), then the database: `osmon.db` (a SQLite copy)
or `osmon.pgdump` (pg_dump's custom format, with the manifest recording the rows of
every table and each host's samples and sequence range, to verify a restore by),
then `config/collector.toml`, public keys under `keys/`, and secret files under
`secrets/` only when asked for. Members are
owned by root:root in the archive, 0600 except public keys (0644); the archive file
itself is 0600, since the config holds password hashes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import NamedTuple, TextIO

from collector.config import CollectorConfig
from collector.store import open_store
from collector.store.backup import inspect_copy

FORMAT, FORMAT_VERSION = "osmonitoring-backup", 1
MANIFEST, DATABASE, PG_DUMP = "manifest.json", "osmon.db", "osmon.pgdump"
SQLITE, POSTGRESQL = "sqlite", "postgresql"  # the manifest's `backend`; archives without one are SQLite's
NAME_PATTERN = re.compile(r"^osmon-backup-(\d{8}T\d{6}Z)(?:-(\d+))?\.tar\.gz$")
STEP_PAGES = 256  # pages copied per step of the online copy (1 MiB with 4 KiB pages)
# After each step, pause this many times as long as the step took: the copy then uses at most
# half of the disk's time, and the collector's commits (one fsync each) find it free.
PAUSE_RATIO = 1.0
CHUNK = 1 << 20


class BackupError(Exception):
    """An archive cannot be written, or one to restore is refused."""


class Member(NamedTuple):
    name: str  # inside the archive
    kind: str  # database | config | key | secret
    source: str  # where it came from on the machine that made the backup
    mode: int
    data: bytes | None  # small files are read once, so what is hashed is what is archived
    path: Path | None  # the database copy, streamed


class Made(NamedTuple):
    path: Path
    size: int
    database_size: int
    schema: int
    members: list[Member]


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# -- what goes in ----------------------------------------------------------------------------------


def gather_files(config: CollectorConfig, include_secrets: bool) -> list[Member]:
    """The config file and keys to archive beside the database."""
    members = [_small("config/collector.toml", "config", Path(config.path), 0o600)]
    if config.curve_agents:
        for key in sorted(Path(config.curve_agents).glob("*.key")):
            if key.is_file():  # agent *secret* keys never belong here, even if someone copied one in
                members.append(_small(f"keys/agents/{key.name}", "key", key, 0o644))
    if config.curve_secret_key:
        secret = Path(config.curve_secret_key)
        public = secret.with_name(secret.name.removesuffix("_secret"))
        if public != secret and public.is_file():
            members.append(_small(f"keys/{public.name}", "key", public, 0o644))
        if include_secrets:
            members.append(_small(f"secrets/{secret.name}", "secret", secret, 0o600))
    if include_secrets:
        for name, path in (
            ("web-secret", config.web_secret_key_file),
            ("smtp-password", config.smtp_password_file),
        ):
            if path and Path(path).is_file():
                members.append(_small(f"secrets/{name}", "secret", Path(path), 0o600))
    return members


def _small(name: str, kind: str, path: Path, mode: int) -> Member:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BackupError(f"cannot read {path}: {e.strerror or e}") from None
    return Member(name, kind, str(path.resolve()), mode, data, None)


def _digest(member: Member) -> tuple[int, str]:
    if member.data is not None:
        return len(member.data), hashlib.sha256(member.data).hexdigest()
    h, size = hashlib.sha256(), 0
    assert member.path is not None, "a member is either data or a file"
    with open(member.path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def manifest(
    members: list[Member], schema: int, database: str, backend: str = SQLITE, contents: dict | None = None
) -> dict:
    entries = []
    for m in members:
        size, sha256 = _digest(m)
        entries.append(
            {
                "name": m.name,
                "kind": m.kind,
                "size": size,
                "sha256": sha256,
                "mode": m.mode,
                "source": m.source,
            }
        )
    try:
        version = metadata.version("osmonitoring")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "osmonitoring": version,
        "schema": schema,
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "host": socket.gethostname(),
        "database": database,
        "backend": backend,
        **({"contents": contents} if contents is not None else {}),
        "members": entries,
    }


# -- the copy --------------------------------------------------------------------------------------


class Pacer:
    """Progress callback of the copy: shows progress on a terminal and paces the steps."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = out
        self.step_started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if self.out is not None:
            self.out.write(f"\rbackup: copying the database {done * 100 // max(total, 1):3d} %")
            self.out.flush()
        if done < total:
            time.sleep((time.monotonic() - self.step_started) * PAUSE_RATIO)
        self.step_started = time.monotonic()

    def say(self, text: str) -> None:
        if self.out is not None:
            self.out.write(f"\rbackup: {text:<40}")
            self.out.flush()

    def done(self) -> None:
        if self.out is not None:
            self.out.write("\r" + " " * 50 + "\r")
            self.out.flush()


def create(config: CollectorConfig, output: Path, include_secrets: bool = False) -> Made:
    """Write a backup archive of `config`'s database, config and keys to `output`."""
    files = gather_files(config, include_secrets)
    pacer = Pacer(sys.stderr if sys.stderr.isatty() else None)
    output.parent.mkdir(parents=True, exist_ok=True)
    if config.postgresql:
        return _create_postgresql(config, output, files, pacer)
    with tempfile.TemporaryDirectory(prefix=".osmon-backup-", dir=output.parent) as tmp:
        copy = Path(tmp) / DATABASE
        store = open_store(config.database, readonly=True)
        try:
            store.backup_to(copy, STEP_PAGES, pacer)
        finally:
            store.close()
        pacer.say("checking the copy")
        info = inspect_copy(copy)
        if info.problems:
            raise BackupError(f"the copy of {config.database} is damaged: {'; '.join(info.problems[:3])}")
        database = Member(DATABASE, "database", str(Path(config.database).resolve()), 0o600, None, copy)
        members = [database, *files]
        pacer.say("writing the archive")
        size = write_archive(output, manifest(members, info.schema, database.source), members)
        pacer.done()
        return Made(output, size, copy.stat().st_size, info.schema, members)


def _create_postgresql(config: CollectorConfig, output: Path, files: list[Member], pacer: Pacer) -> Made:
    """pg_dump (custom format) of one snapshot, with what it holds in the manifest."""
    from collector.store import pg_dump

    with tempfile.TemporaryDirectory(prefix=".osmon-backup-", dir=output.parent) as tmp:
        dump = Path(tmp) / PG_DUMP
        pacer.say("dumping the database (pg_dump)")
        schema, contents = pg_dump.dump(config.database, config.database_password_file, dump)
        database = Member(PG_DUMP, "database", config.database_shown, 0o600, None, dump)
        members = [database, *files]
        pacer.say("writing the archive")
        doc = manifest(members, schema, database.source, POSTGRESQL, contents)
        size = write_archive(output, doc, members)
        pacer.done()
        return Made(output, size, dump.stat().st_size, schema, members)


def write_archive(output: Path, manifest_doc: dict, members: list[Member]) -> int:
    """Write the tar.gz beside `output`, fsync it, rename it into place; returns its size."""
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            with tarfile.open(fileobj=f, mode="w:gz", compresslevel=6) as tar:
                mtime = time.time()
                _add(tar, MANIFEST, 0o644, mtime, json.dumps(manifest_doc, indent=2).encode())
                for m in members:
                    _add(tar, m.name, m.mode, mtime, m.data, m.path)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(output.parent)
    return output.stat().st_size


def _add(
    tar: tarfile.TarFile, name: str, mode: int, mtime: float, data: bytes | None, path: Path | None = None
) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = mode, mtime, 0, 0, "root", "root"
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        assert path is not None, "a member is either data or a file"
        info.size = path.stat().st_size
        with open(path, "rb") as f:
            tar.addfile(info, f)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- --output-dir and --keep -----------------------------------------------------------------------


def unused_path(named: Callable[[str], Path]) -> Path:
    """The first of named(""), named("-2"), named("-3") ... that does not exist yet."""
    path, n = named(""), 1
    while path.exists():
        n += 1
        path = named(f"-{n}")
    return path


def new_path(directory: Path) -> Path:
    """DIR/osmon-backup-<UTC time>.tar.gz, with -2, -3 ... when one was made in the same second."""
    stamp = now_stamp()
    return unused_path(lambda n: directory / f"osmon-backup-{stamp}{n}.tar.gz")


def _backups(directory: Path) -> Iterator[tuple[tuple[str, int], Path]]:
    for path in directory.iterdir():
        match = NAME_PATTERN.match(path.name)
        if match and path.is_file() and not path.is_symlink():
            yield (match[1], int(match[2] or 1)), path


def rotate(directory: Path, keep: int) -> list[Path]:
    """Delete the oldest backups named osmon-backup-<time>.tar.gz beyond `keep`; never another file."""
    ordered = [path for _, path in sorted(_backups(directory))]
    doomed = ordered[: max(0, len(ordered) - keep)]
    for path in doomed:
        path.unlink()
    return doomed
