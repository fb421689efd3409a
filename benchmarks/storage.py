"""Storage figures: bytes per host-day, and how the collector fares while `osmon-collector backup` runs.

Host-day (target, issue 7: <= 2 MB per host-day at a 10 s interval, all tiers
included): a day of snapshots of --hostday-hosts hosts, interleaved in batches as
the collector commits them, through the real store into a fresh database; the
bytes each table holds (SQLite's dbstat), divided by the hosts. On PostgreSQL
(--postgresql) the day is a whole UTC day two days back, with the packer's
passes (collector.store.pg_packed: `pack` run until done) about once a
simulated minute on the simulated clock, as the collector's upkeep runs them
while the day is current: each hour packed PACK_AFTER past its end. Measured
twice: at its fullest while it is the current day (the largest of the sizes
taken as each hour comes due, before its pass, and at 23:59:50; the tables as
they stand, dead rows included), then as a deployment holds it from the next
day on, every hour packed and the day's partition dropped, after a plain VACUUM
as autovacuum runs. Every table is counted with its TOAST data and indexes. Two shapes: a
server of 8 cores, 4 filesystems, 1 disk, 1 interface (30 numbers per snapshot),
and one of 16 cores, 6 filesystems, 2 disks, 2 interfaces (44 numbers).

Backup:

Builds a database of --size bytes through the real store (`open_store(path).ingest`
in big batches; snapshots of an 8-core server with 4 filesystems, from 1,000 hosts),
or reuses --database if it is already that big. Then starts the real
`osmon-collector run` on it, feeds it --rate snapshots/s from simulated agents (paced
senders, each keeping a window of unacked snapshots, as the real agent does), and
counts acks (committed snapshots) per interval: for --baseline seconds, then while
the real `osmon-collector backup` runs as its own process, then a few seconds more.
Target (issue 7): with a 1 GB database at 5,000 snapshots/s, ingest keeps >= 90 % of
its rate during the backup.

    python benchmarks/storage.py [--part all|hostday|backup] [--hostday-hosts 10]
                                 [--size 1GiB] [--rate 5000] [--baseline 15] [--database PATH]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import zmq
from dashboard import probes as server_probes  # beside this script: what an 8-core server sends
from ingest import SimulatedAgents, collector_cpu, free_port

from agent.daemon import SEND_BATCH
from collector.samples import extract
from collector.store import Received, open_store
from collector.store.pg_packed import PACK_AFTER
from osmon import wire
from osmon.configfile import parse_size

BIN = Path(sys.executable).parent
BUILD_HOSTS = 1000
BUILD_BATCH = 20_000
AGENTS = 100
INTERVAL = 10.0


# -- the database ---------------------------------------------------------------------------------


def build(database: Path, size: int) -> int:
    """Grow `database` to at least `size` bytes with realistic snapshots; returns how many were added."""
    rng = random.Random(7)
    store = open_store(database)
    now = time.time()
    per_host = 0
    added = 0
    # Snapshots of a few distinct shapes, re-stamped: the generator must not be the slow part.
    shapes = []
    for _ in range(16):
        raw = wire.encode_snapshot(
            "x", 1, now, INTERVAL, "bench", server_probes(rng, now, rng.uniform(5, 60))
        )
        shapes.append((extract(wire.decode_snapshot(raw)), raw))
    start_seq = 1 + max((h.last_seq or 0 for h in store.hosts() if h.name.startswith("fill-")), default=0)
    while database.stat().st_size < size:
        batch = []
        for _ in range(BUILD_BATCH // BUILD_HOSTS):
            seq = start_seq + per_host
            ts = now - 6 * 86400 + seq * INTERVAL  # all inside the raw retention window
            for h in range(BUILD_HOSTS):
                sample, raw = shapes[(h + seq) % len(shapes)]
                batch.append(
                    Received(sample._replace(host=f"fill-{h:04d}", seq=seq, ts=ts), raw, INTERVAL, ts)
                )
            per_host += 1
        added += len(store.ingest(batch).fresh)
        print(f"\rbuilding: {database.stat().st_size / 2**20:.0f} MiB", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    store.close()
    return added


# -- bytes per host-day --------------------------------------------------------------------------

SHAPES = {  # name: (cores, filesystems, disks, interfaces)
    "30 numbers": (8, 4, 1, 1),
    "44 numbers": (16, 6, 2, 2),
}
MOUNTS = ("/", "/var", "/home", "/srv", "/boot", "/var/lib/postgresql", "/tmp", "/opt")


def shaped_probes(rng: random.Random, t: float, base: float, shape: tuple[int, int, int, int]) -> dict:
    """An 8-core server's probes (benchmarks/dashboard.py), resized to `shape`."""
    cores, mounts, disks, nics = shape
    p = server_probes(rng, t, base)
    cpu = p["cpu"]["percent"]
    p["cpu"]["per_core"] = [max(0.0, min(100.0, cpu + rng.gauss(0, 10))) for _ in range(cores)]
    p["cpu"]["count"] = cores
    day = (t % 86400) / 86400
    p["filesystems"] = [
        dict(p["filesystems"][0], mount=MOUNTS[i], percent=20.0 + 9 * i + 3 * day + rng.gauss(0, 0.05))
        for i in range(mounts)
    ]
    disk, net = p["disk_io"]["devices"]["vda"], p["net_io"]["interfaces"]["eth0"]
    p["disk_io"]["devices"] = {
        f"vd{chr(97 + i)}": dict(disk, read_bps=abs(rng.gauss(2e6, 1e6)), write_bps=abs(rng.gauss(5e6, 2e6)))
        for i in range(disks)
    }
    p["net_io"]["interfaces"] = {
        f"eth{i}": dict(net, rx_bps=abs(rng.gauss(1e7, 3e6)), tx_bps=abs(rng.gauss(4e6, 1e6)))
        for i in range(nics)
    }
    # Issue 14's numbers, as a busy but healthy server sends them.
    for fs in p["filesystems"]:
        fs.update(inodes_percent=round(10 + 5 * day, 2), readonly=False)
    p["disk_io"].update(iops=abs(rng.gauss(300, 100)), busy_percent=abs(rng.gauss(20, 8)), await_=0)
    p["disk_io"]["await"] = abs(rng.gauss(0.002, 0.001))
    p["net_io"].update(errors_ps=0.0, drops_ps=abs(rng.gauss(0, 0.1)))
    p["pressure"] = {
        r: {"some10": v, "some60": v, "some300": v, "full60": 0.0}
        for r, v in (("cpu", abs(rng.gauss(3, 2))), ("memory", 0.0), ("io", abs(rng.gauss(1, 1))))
    }
    p["activity"] = {
        "swap_in_bps": 0.0,
        "swap_out_bps": 0.0,
        "context_switches_ps": abs(rng.gauss(8000, 2000)),
        "interrupts_ps": abs(rng.gauss(4000, 1000)),
        "forks_ps": abs(rng.gauss(5, 3)),
        "oom_kills": 0,
    }
    p["limits"] = {"fds_percent": 1.2, "pids_percent": round(2 + day, 2), "conntrack_percent": abs(rng.gauss(5, 1)),
                   "threads": 800 + int(50 * day)}  # fmt: skip
    p["clock"] = {"unsynchronised": 0.0, "offset": abs(rng.gauss(0, 0.0005)), "max_error": 0.05}
    p["units"] = {"failed": []}
    return p


class HostDay(NamedTuple):
    tables: dict[str, float]  # bytes per host by table, the day closed (on PostgreSQL: packed)
    current: dict[str, float]  # PostgreSQL: bytes per host by table at the fullest while the day is current
    fullest: str  # PostgreSQL: when that was, "HH:MM" UTC


def host_day(workdir: Path, hosts: int, shape: tuple[int, int, int, int], server=None) -> HostDay:
    """Bytes per host-day by table, after a day of `hosts` hosts every INTERVAL seconds."""
    database = server.database() if server is not None else workdir / f"hostday-{shape}.db"
    store = open_store(database)
    per_host = int(86400 / INTERVAL)
    # PostgreSQL: a whole closed UTC day, which the upkeep packs once it is over (see the docstring).
    start = time.time() - 86400 if server is None else (time.time() // 86400 - 2) * 86400 - INTERVAL
    rngs = [random.Random(h) for h in range(hosts)]
    bases = [rng.uniform(5, 60) for rng in rngs]
    per_batch = 5  # snapshots of each host per commit: the collector commits every ~0.5 s at 1,000 hosts
    fullest: tuple[float, dict[str, float]] = (0.0, {})  # (time, bytes by table) at the current day's peak
    packed_to = 0  # the hour the upkeep's passes have packed up to, on the simulated clock
    for first in range(0, per_host, per_batch):
        batch = []
        for h, rng in enumerate(rngs):
            for seq in range(first + 1, min(first + per_batch, per_host) + 1):
                ts = start + seq * INTERVAL + h * INTERVAL / hosts
                raw = wire.encode_snapshot(
                    f"host-{h:03d}", seq, ts, INTERVAL, "bench", shaped_probes(rng, ts, bases[h], shape)
                )
                batch.append(Received(extract(wire.decode_snapshot(raw)), raw, INTERVAL, ts))
        store.ingest(batch)
        if server is None:
            continue
        if first % AUTOVACUUM_EVERY == 0:
            vacuum(str(database), "latest", "hosts", "gaps")
        # The packer's pass, about once a simulated minute (its period), on the simulated clock.
        now = start + (first + per_batch) * INTERVAL
        if (closing := int((now - PACK_AFTER) // 3600 * 3600)) > packed_to:
            # An hour is due: the day holds most rows now, the closed hour's still raw.
            fullest = max(fullest, (now, pg_sizes(str(database), hosts, vacuum=False)), key=peak)
            packed_to = closing
        while store.pack(now, 1000):
            pass
    if server is not None:
        fullest = max(fullest, (now, pg_sizes(str(database), hosts, vacuum=False)), key=peak)  # 23:59:50
        while store.pack(time.time(), 1000):
            pass
        store.close()
        packed = pg_sizes(str(database), hosts)
        return HostDay(packed, fullest[1], time.strftime("%H:%M", time.gmtime(fullest[0])))
    store.close()
    db = sqlite3.connect(database)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    tables = {
        name: size / hosts for name, size in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
    }
    db.close()
    return HostDay(tables, {}, "")


# Snapshots of each host between two vacuums of the tables rewritten at every batch (a simulated
# hour): autovacuum visits a table that changes this much every minute or so, so in a real day
# their dead row versions are reused, not piled up as in a day compressed into minutes.
AUTOVACUUM_EVERY = 360


def vacuum(url: str, *tables: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"VACUUM {', '.join(tables)}")


PG_TABLES = {  # label -> the tables it counts (with their partitions, TOAST data)
    "samples": ("samples", "samples_packed"),
    "rollup_minute": ("rollup_minute", "rollup_minute_packed"),
    "rollup_hour": ("rollup_hour",),
}


def peak(point: tuple[float, dict[str, float]]) -> float:
    return sum(point[1].values())


def pg_sizes(url: str, hosts: int, vacuum: bool = True) -> dict[str, float]:
    """Bytes per host of each table on PostgreSQL (partitions and TOAST data summed, raw samples' indexes
    apart), after a plain VACUUM as autovacuum runs (else as they stand: during the simulated day)."""
    import psycopg

    parts = "SELECT inhrelid FROM pg_inherits WHERE inhparent = ANY(%s::regclass[]) UNION SELECT unnest(%s::regclass[])"
    with psycopg.connect(url, autocommit=True) as conn:
        if vacuum:
            conn.execute("VACUUM ANALYZE")
        sizes: dict[str, float] = {}
        for label, tables in PG_TABLES.items():
            size = "pg_table_size" if label == "samples" else "pg_total_relation_size"
            row = conn.execute(
                f"SELECT sum({size}(r)) FROM ({parts}) AS t(r)", (list(tables), list(tables))
            ).fetchone()
            sizes[label] = float(row[0] or 0) / hosts
            if label == "samples":
                row = conn.execute(
                    f"SELECT sum(pg_indexes_size(r)) FROM ({parts}) AS t(r)", (list(tables), list(tables))
                ).fetchone()
                sizes["samples_host_ts"] = float(row[0] or 0) / hosts
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(oid)) FROM pg_class "
            "WHERE relname IN ('hosts', 'latest', 'gaps', 'names') AND relkind = 'r'"
        ).fetchone()
        sizes["other"] = float(row[0] or 0) / hosts
    return sizes


def report_host_day(workdir: Path, hosts: int, server=None) -> None:
    for name, shape in SHAPES.items():
        measured = host_day(workdir, hosts, shape, server)
        if server is not None:
            print(
                f"storage: {_parts(measured.current)} MB at the fullest while the day is current "
                f"({measured.fullest} UTC: the hours closed {PACK_AFTER // 60} min before packed, the rest "
                f"raw; {name} per snapshot, {hosts} hosts, PostgreSQL)"
            )
        total = sum(measured.tables.values())
        verdict = "meets" if total <= 2e6 else "MISSES"
        held = ", packed once closed" if server is not None else ""
        print(
            f"storage: {_parts(measured.tables)} MB per host-day at a {INTERVAL:.0f} s interval, all tiers "
            f"({name} per snapshot, {hosts} hosts, {'PostgreSQL' if server else 'SQLite'}{held}; "
            f"{verdict} target <= 2 MB)"
        )


def _parts(tables: dict[str, float]) -> str:
    """ "4.88 (raw 2.11, index 0.56, minute 1.86, hour 0.07)": the total and its main parts, in MB."""
    parts = ", ".join(
        f"{label} {tables.get(table, 0) / 1e6:.2f}"
        for label, table in (
            ("raw", "samples"),
            ("index", "samples_host_ts"),
            ("minute", "rollup_minute"),
            ("hour", "rollup_hour"),
        )
    )
    return f"{sum(tables.values()) / 1e6:.2f} ({parts})"


# -- the load -------------------------------------------------------------------------------------


class PacedAgents(SimulatedAgents):
    """Simulated agents sending `rate` snapshots/s in all, recording acks over time."""

    def __init__(self, context: zmq.Context, port: int, count: int, rate: float, probes: dict) -> None:
        super().__init__(context, port, count, window=200, probes=probes, client_keys={})
        self.rate = rate
        self.sent = 0
        self.started = time.monotonic()
        self.timeline: list[tuple[float, int]] = []  # (monotonic time, acks so far)

    def fill(self, i: int) -> None:
        due = int(self.rate * (time.monotonic() - self.started)) - self.sent
        room = min(self.window - self.unacked[i], due, SEND_BATCH)
        if room > 0:
            self.sockets[i].send_multipart([self.body(i) for _ in range(room)], zmq.NOBLOCK)
            self.unacked[i] += room
            self.sent += room

    def run_while(self, busy) -> None:
        """Send and count acks until `busy()` is false."""
        poller = zmq.Poller()
        index = {s: i for i, s in enumerate(self.sockets)}
        for s in self.sockets:
            poller.register(s, zmq.POLLIN)
        turn = 0
        while busy():
            for s, _ in poller.poll(5):
                while True:
                    try:
                        seqs = wire.decode_ack(s.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    self.unacked[index[s]] -= len(seqs)
                    self.acked += len(seqs)
            for _ in range(len(self.sockets)):  # round robin: every agent gets its share
                self.fill(turn)
                turn = (turn + 1) % len(self.sockets)
            self.timeline.append((time.monotonic(), self.acked))

    def rate_between(self, start: float, end: float) -> float:
        inside = [(t, n) for t, n in self.timeline if start <= t <= end]
        (t0, n0), (t1, n1) = inside[0], inside[-1]
        return (n1 - n0) / (t1 - t0)


def for_seconds(seconds: float):
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() < deadline


# -- the measure ------------------------------------------------------------------------------------


def measure(workdir: Path, database: Path, rate: float, baseline: float) -> dict:
    port = free_port()
    config = workdir / "collector.toml"
    config.write_text(
        f'listen = "tcp://127.0.0.1:{port}"\ndatabase = "{database}"\n[certfr]\nenabled = false\n'
    )
    log = open(workdir / "collector.log", "wb")  # noqa: SIM115 - lives as long as the process
    collector = subprocess.Popen(
        [str(BIN / "osmon-collector"), "run", "--config", str(config)], stdout=log, stderr=log
    )
    context = zmq.Context()
    archive = workdir / "backup.tar.gz"
    try:
        rng = random.Random(3)
        agents = PacedAgents(context, port, AGENTS, rate, server_probes(rng, time.time(), 30.0))
        agents.run_while(for_seconds(3.0))  # warm-up: connections, caches
        before_start = time.monotonic()
        agents.run_while(for_seconds(baseline))
        cpu_before = collector_cpu(collector.pid)
        backup_start = time.monotonic()
        backup = subprocess.Popen(
            [str(BIN / "osmon-collector"), "backup", "--config", str(config), "--output", str(archive)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wal, wal_max = Path(f"{database}-wal"), 0

        def backing_up() -> bool:
            nonlocal wal_max
            wal_max = max(wal_max, wal.stat().st_size if wal.exists() else 0)
            return backup.poll() is None

        agents.run_while(backing_up)
        backup_end = time.monotonic()
        cpu_during = collector_cpu(collector.pid) - cpu_before
        out, err = backup.communicate()
        if backup.returncode != 0:
            raise SystemExit(f"backup failed: {err.strip()}")
        agents.run_while(for_seconds(3.0))
        return {
            "before": agents.rate_between(before_start, backup_start),
            "during": agents.rate_between(backup_start, backup_end),
            "seconds": backup_end - backup_start,
            "archive": archive.stat().st_size,
            "collector_cpu": cpu_during / (backup_end - backup_start),
            "output": out.strip(),
            "wal_max": wal_max,
        }
    finally:
        context.destroy(linger=0)
        os.kill(collector.pid, signal.SIGTERM)
        collector.wait(60)
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["all", "hostday", "backup"], default="all", help="which figures")
    parser.add_argument(
        "--hostday-hosts", type=int, default=10, help="hosts simulated for the host-day figure"
    )
    parser.add_argument("--size", default="1GiB", help="database size to back up (default 1GiB)")
    parser.add_argument("--rate", type=float, default=5000.0, help="snapshots/s fed to the collector")
    parser.add_argument("--baseline", type=float, default=15.0, help="seconds measured before the backup")
    parser.add_argument(
        "--database", type=Path, help="build here (or reuse if big enough); default: a temp dir"
    )
    parser.add_argument(
        "--postgresql",
        action="store_true",
        help="host-day figure on a throw-away local PostgreSQL server (the tests' tests/pg.py)",
    )
    args = parser.parse_args()
    size = parse_size(args.size)

    if args.postgresql:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests/pg.py
        from tests.pg import PostgresServer

        server = PostgresServer()
        try:
            report_host_day(Path(tempfile.gettempdir()), args.hostday_hosts, server)
        finally:
            server.stop()
        return 0

    with tempfile.TemporaryDirectory(prefix="osmon-bench-storage-") as tmp:
        workdir = Path(tmp)
        if args.part in ("all", "hostday"):
            report_host_day(workdir, args.hostday_hosts)
        if args.part == "hostday":
            return 0
        database = args.database or workdir / "osmon.db"
        started = time.monotonic()
        if not database.exists() or database.stat().st_size < size:
            added = build(database, size)
            print(
                f"built {database.stat().st_size / 2**30:.2f} GiB ({added} snapshots) in "
                f"{time.monotonic() - started:.0f} s",
                file=sys.stderr,
            )
        db_size = database.stat().st_size
        r = measure(workdir, database, args.rate, args.baseline)
    kept = r["during"] / r["before"] * 100
    print(
        f"backup: ingest kept {kept:.0f} % of its rate during the backup ({r['during']:.0f} vs "
        f"{r['before']:.0f} snapshots/s acked, {args.rate:.0f}/s offered; {db_size / 2**30:.2f} GiB database, SQLite)"
    )
    print(
        f"backup: {db_size / 2**30:.2f} GiB database copied, checked and archived in {r['seconds']:.0f} s "
        f"({db_size / 2**20 / r['seconds']:.0f} MiB/s) while ingesting; archive {r['archive'] / 2**20:.0f} MiB; "
        f"collector at {r['collector_cpu'] * 100:.0f} % of one core meanwhile"
    )
    print(
        f"backup: the WAL grew to {r['wal_max'] / 2**20:.0f} MiB while the copy held its snapshot "
        "(checkpoints cannot pass a reader)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
