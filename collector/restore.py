"""`osmon-collector restore`: put a backup archive's database in place, after checking all of it.

SQLite:
Everything is verified in a temporary directory beside the database before
anything is touched: the manifest, every member's name, type, size and sha256,
the schema version and the copy's integrity. Only then is the database swapped:
the current one (with its -wal and -shm) is renamed aside, never deleted, and the
verified copy, migrated to this version's schema if older, is renamed into place.

PostgreSQL: the archive holds a pg_dump. Restore takes the advisory locks of `run`
and `web` (refusing while either holds them, and keeping them free of a start
meanwhile), refuses a database that is not empty, checks the whole archive, runs
pg_restore in one transaction, then compares the rows of every table and each
host's samples and sequence range with the manifest's. An archive of one backend
is refused on the other.

The archive's config and keys are not installed over the operator's files; they
are written to a directory of the operator's choice (`--files-to`) for review.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import IO, NamedTuple

from collector import lock
from collector.backup import (
    CHUNK,
    DATABASE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PG_DUMP,
    POSTGRESQL,
    SQLITE,
    BackupError,
    fsync_dir,
    now_stamp,
    unused_path,
)
from collector.config import CollectorConfig
from collector.store import open_store, pg_schema
from collector.store.backup import inspect_copy
from collector.store.pg_url import mask
from collector.store.schema import MIGRATIONS

KINDS = {"database", "config", "key", "secret"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")  # no "..", no "/x"
MAX_MANIFEST = 1 << 20
SQLITE_HEADER = b"SQLite format 3\x00"
# Per backend: the database member, the first bytes it must start with, and this version's schema.
BACKENDS = {
    SQLITE: (DATABASE, SQLITE_HEADER, len(MIGRATIONS)),
    POSTGRESQL: (PG_DUMP, b"PGDMP", len(pg_schema.MIGRATIONS)),
}


class Entry(NamedTuple):
    name: str
    kind: str
    size: int
    sha256: str
    mode: int


class Manifest(NamedTuple):
    schema: int
    created: str
    host: str
    version: str
    entries: dict[str, Entry]
    backend: str = SQLITE
    contents: dict | None = None  # PostgreSQL: what the dump holds (collector.store.pg_dump.contents)


class Restored(NamedTuple):
    database: Path | str  # a SQLite file, or a PostgreSQL URL (its password masked)
    aside: Path | None  # where the replaced database went
    manifest: Manifest
    migrated_to: int | None  # the schema it was migrated to, if older
    files: list[str]  # archive members other than the database
    files_to: Path | None


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest of an archive made by `osmon-collector backup`, or BackupError."""
    try:
        doc = json.loads(raw)
        if doc.get("format") != FORMAT:
            raise BackupError("not an osMonitoring backup (unknown manifest format)")
        if doc.get("format_version") != FORMAT_VERSION:
            raise BackupError(
                f"backup format {doc.get('format_version')!r} is not {FORMAT_VERSION}: "
                "made by another version of osMonitoring"
            )
        entries = {}
        for e in doc["members"]:
            entry = Entry(e["name"], e["kind"], e["size"], e["sha256"], e["mode"])
            if not (isinstance(entry.name, str) and SAFE_NAME.match(entry.name) and entry.kind in KINDS):
                raise BackupError(f"manifest lists an unsafe or unknown member {str(entry.name)[:80]!r}")
            if problem := _entry_problem(entry):
                raise BackupError(f"not an osMonitoring backup (bad manifest: {entry.name}: {problem})")
            if entry.name in entries or entry.name == MANIFEST:
                raise BackupError(f"manifest lists {entry.name!r} twice")
            entries[entry.name] = entry
        backend = doc.get("backend", SQLITE)
        if backend not in BACKENDS:
            raise BackupError(f"not an osMonitoring backup (unknown backend {str(backend)[:40]!r})")
        manifest = Manifest(
            int(doc["schema"]),
            str(doc["created"]),
            str(doc["host"]),
            str(doc["osmonitoring"]),
            entries,
            backend,
            _contents(doc) if backend == POSTGRESQL else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BackupError(f"not an osMonitoring backup (bad manifest: {e})") from None
    except RecursionError:  # a manifest of a few thousand nested brackets
        raise BackupError("not an osMonitoring backup (bad manifest: nested too deeply)") from None
    name, _, current = BACKENDS[manifest.backend]
    if entries.get(name, Entry("", "", 0, "", 0)).kind != "database":
        raise BackupError(f"the manifest lists no {name}")
    if manifest.schema > current:
        raise BackupError(
            f"the backup has schema {manifest.schema}, newer than this version's {current}: "
            "restore it with the osMonitoring version that made it"
        )
    return manifest


def _contents(doc: dict) -> dict:
    """A PostgreSQL manifest's record of what the dump holds: row counts per table, [samples, first, last] per host."""
    contents = doc["contents"]
    tables, hosts = contents["tables"], contents["hosts"]
    if not all(isinstance(k, str) and type(v) is int for k, v in tables.items()):
        raise TypeError("contents.tables is not a row count per table")
    if not all(isinstance(k, str) and isinstance(v, list) and len(v) == 3 for k, v in hosts.items()):
        raise TypeError("contents.hosts is not [samples, first seq, last seq] per host")
    return {"tables": tables, "hosts": hosts}


def _entry_problem(entry: Entry) -> str | None:
    """What is wrong with the types of a manifest entry (a string mode once ended in a TypeError)."""
    if type(entry.size) is not int or entry.size < 0:
        return f"size {str(entry.size)[:40]!r} is not a byte count"
    if not (isinstance(entry.sha256, str) and re.fullmatch(r"[0-9a-f]{64}", entry.sha256)):
        return "sha256 is not 64 hexadecimal digits"
    if type(entry.mode) is not int or not 0 <= entry.mode <= 0o7777:
        return f"mode {str(entry.mode)[:40]!r} is not a file mode"
    return None


def extract(archive: Path, into: Path) -> Manifest:
    """Check the whole archive, then write its members under `into`; raise BackupError at the first flaw.

    Two passes: the first reads every member (names, sizes, checksums, the database's header) and
    writes nothing, so a gzip bomb, 200 MiB from 202 KiB, is refused before a byte lands on disk.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            try:
                manifest = _manifest(tar)
            except BackupError as e:
                raise BackupError(f"{archive}: {e}") from None
            _check_room(manifest, into)
            seen: set[str] = set()
            while (info := tar.next()) is not None:
                entry = _expected(info, manifest, seen)
                _check_member(_member(tar, info), entry)
                seen.add(entry.name)
        if missing := sorted(set(manifest.entries) - seen):
            raise BackupError(f"{archive}: truncated: {', '.join(missing[:3])} missing")
        with tarfile.open(archive, "r:gz") as tar:
            _manifest(tar)
            while (info := tar.next()) is not None:
                _write_checked(_member(tar, info), into / info.name, _expected(info, manifest, set()))
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise BackupError(f"{archive}: truncated or not a tar.gz archive ({e})") from None
    except OSError as e:  # gzip.BadGzipFile included
        raise BackupError(f"{archive}: cannot read: {e.strerror or e}") from None
    return manifest


def _manifest(tar: tarfile.TarFile) -> Manifest:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isreg() or first.size > MAX_MANIFEST:
        raise BackupError("not an osMonitoring backup (manifest.json is not its first member)")
    return parse_manifest(_member(tar, first).read())


def _check_room(manifest: Manifest, into: Path) -> None:
    """BackupError if the members would not fit on the database's file system, with room to spare."""
    needed = sum(e.size for e in manifest.entries.values())
    free = shutil.disk_usage(into).free
    if needed + needed // 10 > free:
        raise BackupError(f"the archive holds {needed} bytes, {into} has {free} free: not enough to check it")


def _member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    """The contents of a regular member (the manifest checked that it is one)."""
    source = tar.extractfile(info)
    if source is None:
        raise BackupError(f"{info.name} is not a regular file")
    return source


def _check_member(source: IO[bytes], entry: Entry) -> None:
    """Read a member through, writing nothing: its checksum, and the database's header."""
    h = hashlib.sha256()
    head = source.read(len(SQLITE_HEADER))
    if entry.kind == "database" and entry.name == DATABASE and head != SQLITE_HEADER:
        raise BackupError(f"{entry.name} is not a SQLite database")
    if entry.kind == "database" and entry.name == PG_DUMP and not head.startswith(BACKENDS[POSTGRESQL][1]):
        raise BackupError(f"{entry.name} is not a pg_dump archive (custom format)")
    h.update(head)
    while chunk := source.read(CHUNK):
        h.update(chunk)
    if h.hexdigest() != entry.sha256:
        raise BackupError(f"{entry.name}: checksum mismatch, the archive is corrupted")


def _expected(info: tarfile.TarInfo, manifest: Manifest, seen: set[str]) -> Entry:
    entry = manifest.entries.get(info.name)
    if entry is None:
        raise BackupError(f"unexpected member {info.name!r} (not in the manifest)")
    if not info.isreg():
        raise BackupError(f"member {info.name!r} is not a regular file")
    if info.name in seen:
        raise BackupError(f"member {info.name!r} appears twice")
    if info.size != entry.size:
        raise BackupError(f"{info.name}: {info.size} bytes, the manifest says {entry.size}")
    return entry


def _write_checked(source: IO[bytes], target: Path, entry: Entry) -> None:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    h = hashlib.sha256()
    with open(target, "xb") as out:
        os.fchmod(out.fileno(), 0o600)
        while chunk := source.read(CHUNK):
            h.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if h.hexdigest() != entry.sha256:
        raise BackupError(f"{entry.name}: checksum mismatch, the archive is corrupted")


def check_copy(copy: Path, manifest: Manifest) -> int | None:
    """Check the extracted database; migrate it if older. Returns the schema migrated to, if any."""
    info = inspect_copy(copy)
    if info.schema != manifest.schema:
        raise BackupError(f"{DATABASE} has schema {info.schema}, the manifest says {manifest.schema}")
    if info.problems:
        raise BackupError(f"{DATABASE} is damaged: {'; '.join(info.problems[:3])}")
    if info.schema == len(MIGRATIONS):
        return None
    open_store(copy).close()  # opening for writing applies the missing migrations
    return len(MIGRATIONS)


def keep_aside(database: Path) -> Path | None:
    """Rename the database and its -wal/-shm to <db>.before-restore-<time>; None if there was none."""
    if not database.exists():
        return None
    stamp = now_stamp()
    aside = unused_path(lambda n: Path(f"{database}.before-restore-{stamp}{n}"))
    os.rename(database, aside)
    # The -wal may hold committed transactions: it must stay paired with its database.
    for suffix in ("-wal", "-shm"):
        if Path(f"{database}{suffix}").exists():
            os.rename(f"{database}{suffix}", f"{aside}{suffix}")
    return aside


def read_manifest(archive: Path) -> Manifest:
    """The archive's manifest alone, checked: what to refuse before reading the rest."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            return _manifest(tar)
    except BackupError as e:
        raise BackupError(f"{archive}: {e}") from None
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise BackupError(f"{archive}: truncated or not a tar.gz archive ({e})") from None
    except OSError as e:
        raise BackupError(f"{archive}: cannot read: {e.strerror or e}") from None


def ensure_same_backend(config: CollectorConfig, archive: Path, manifest: Manifest) -> None:
    """BackupError when the archive was made on the other backend: a restore never converts."""
    if manifest.backend == SQLITE and config.postgresql:
        raise BackupError(
            f"{archive} holds a SQLite database and {config.database_shown} is PostgreSQL: restore it onto a "
            "SQLite file (a config whose `database` is a path), then move it with "
            "`osmon-collector migrate-store --from FILE --to URL`"
        )
    if manifest.backend == POSTGRESQL and not config.postgresql:
        raise BackupError(
            f"{archive} holds a PostgreSQL dump and {config.database} is a SQLite file: restore it with a config "
            "whose `database` is an empty PostgreSQL database (postgresql://...)"
        )


def restore(config: CollectorConfig, archive: Path, files_to: Path | None = None) -> Restored:
    """Replace `config`'s database with the one in `archive`, keeping the current one aside."""
    if files_to is not None and files_to.exists() and any(files_to.iterdir()):
        raise BackupError(f"--files-to {files_to}: directory is not empty")
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    ensure_same_backend(config, archive, read_manifest(archive))
    if config.postgresql:
        return _restore_postgresql(config, archive, files_to)
    database = Path(config.database)
    lock.ensure_free(database)  # before minutes of checking a large archive
    database.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".osmon-restore-", dir=database.parent) as tmp:
        manifest = extract(archive, Path(tmp))
        copy = Path(tmp) / DATABASE
        migrated_to = check_copy(copy, manifest)
        with open(copy, "rb+") as f:
            os.fsync(f.fileno())
        files = sorted(name for name in manifest.entries if name != DATABASE)
        # Held from here on: no `run` or `web` may start while the files change under it.
        with lock.Exclusive(database):
            if files_to is not None:
                _install_files(Path(tmp), [manifest.entries[name] for name in files], files_to)
            aside = keep_aside(database)
            os.rename(copy, database)
            fsync_dir(database.parent)
    return Restored(database, aside, manifest, migrated_to, files, files_to)


def _install_files(extracted: Path, entries: list[Entry], files_to: Path) -> None:
    """Copy the archive's config and keys under `files_to`, with the archive's layout and modes."""
    files_to.mkdir(parents=True, exist_ok=True, mode=0o700)
    for entry in entries:
        target = files_to / entry.name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(extracted / entry.name, target)
        os.chmod(target, entry.mode & 0o644)  # never executable, never group- or world-writable


def _restore_postgresql(config: CollectorConfig, archive: Path, files_to: Path | None) -> Restored:
    """pg_restore into an empty database that no `run` or `web` uses, then compare it with the manifest."""
    from collector.store import pg_dump

    url, password_file = config.database, config.database_password_file
    # Held throughout: no `run` or `web` may start on the database while it is filled.
    with lock.Exclusive(url, password_file):
        pg_dump.ensure_empty(url, password_file)
        scratch = archive.resolve().parent
        with tempfile.TemporaryDirectory(prefix=".osmon-restore-", dir=scratch) as tmp:
            manifest = extract(archive, Path(tmp))
            dump = Path(tmp) / PG_DUMP
            pg_dump.check_dump(dump)
            files = sorted(name for name in manifest.entries if name != PG_DUMP)
            pg_dump.restore(url, password_file, dump)
            schema, contents = pg_dump.restored(url, password_file)
            if schema != manifest.schema:
                raise BackupError(
                    f"the restored database has schema {schema}, the manifest says {manifest.schema}"
                )
            if problems := _differences(manifest.contents or {}, contents):
                raise BackupError(
                    f"the restored database {mask(url)} does not match the archive: {'; '.join(problems[:3])}"
                )
            migrated_to = None
            if schema < len(pg_schema.MIGRATIONS):
                open_store(
                    url, password_file=password_file, application_name="osmon-collector restore"
                ).close()
                migrated_to = len(pg_schema.MIGRATIONS)
            if files_to is not None:
                _install_files(Path(tmp), [manifest.entries[name] for name in files], files_to)
    return Restored(mask(url), None, manifest, migrated_to, files, files_to)


def _differences(expected: dict, found: dict) -> list[str]:
    """What differs between the manifest's record of a dump and the restored database."""
    problems = []
    tables, rows = expected.get("tables", {}), found.get("tables", {})
    for table in sorted(set(tables) | set(rows)):
        if tables.get(table) != rows.get(table):
            problems.append(
                f"table {table}: {tables.get(table)} rows in the archive, {rows.get(table)} restored"
            )
    hosts, restored = expected.get("hosts", {}), found.get("hosts", {})
    for name in sorted(set(hosts) | set(restored)):
        if hosts.get(name) != restored.get(name):
            problems.append(
                f"host {name!r}: [samples, first seq, last seq] {hosts.get(name)} in the archive, "
                f"{restored.get(name)} restored"
            )
    return problems
