"""Response times of the dashboard: the overview of a large fleet, and a host page over 30 days.

Builds a database under a temporary directory through the real store
(`open_store(path).ingest(...)`, bodies from `osmon.wire.encode_snapshot`):
1,000 hosts with a few minutes of history each, one of which (big-01) has 30
days of samples every 10 s (259,200 per series), plus a few active alerts and
silences. Then starts the real `osmon-collector web` (waitress) on loopback
with anonymous reading, and times requests over one keep-alive HTTP connection
(accepting gzip, as a browser does), after a warm-up. Prints one line per
figure, with the CPU time the dashboard process spent per request (what a
request costs, even when other work slows the machine down); targets (issues): overview and /api/hosts p95 <= 100 ms with 1,000
hosts, <= 150 ms with 10,000; host page over 30 days p95 <= 200 ms.

A chart is drawn once per set of numbers (collector/web/chartcache.py), so the
host page is timed twice: "cold", every request sending `Cache-Control:
no-cache` (a hard reload) so that every chart is read and drawn afresh, as
for the first person to open that page after its numbers changed; and
"warm", the numbers read again but their charts drawn before, as for a
reload, a second person or a live refresh while no bucket got a new peak.
Then "live", what operators see: the host's agent sends a snapshot every 10 s
(through the real store, into the same database) while the page is opened
every 2 s; only the charts a new peak changed are drawn again.

    python benchmarks/dashboard.py [--hosts 1000] [--days 30] [--requests 50] [--budget 30] [--live 60]
                                   [--keep] [--database DIR/osmon.db | postgresql://... | postgresql]
"""

from __future__ import annotations

import argparse
import gzip
import html
import http.client
import json
import math
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from collector.samples import extract
from collector.store import AlertEvent, Received, open_store
from collector.web import series
from osmon import wire

BIN = Path(sys.executable).parent
INTERVAL = 10.0
BATCH = 20_000  # snapshots per ingest transaction
# PostgreSQL ends a transaction idle for long (collector.store.postgres.IDLE_IN_TRANSACTION): the
# Python work between statements of a 20,000-snapshot batch can outlast it on a loaded machine.
PG_BATCH = 2_000
BIG = "big-01"
FLEET_HISTORY = 30  # samples of every other host (5 minutes)
CORES = 8
MOUNTS = ("/", "/var", "/home", "/srv")
CHARTS = len(series.CHARTS)  # every chart of a host page, each with data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the database ---------------------------------------------------------------------------------


def probes(rng: random.Random, t: float, base: float) -> dict[str, Any]:
    """What an agent sends (the shape of agent.sampler's probes), with numbers that move over time."""
    day = math.sin(2 * math.pi * (t % 86400) / 86400)  # a daily cycle, plus noise
    cpu = max(0.0, min(100.0, base + 20 * day + rng.gauss(0, 8)))
    cores = [max(0.0, min(100.0, cpu + rng.gauss(0, 10))) for _ in range(CORES)]
    mem = max(0.0, min(100.0, 40 + base / 3 + 5 * day + rng.gauss(0, 1)))
    read, write = abs(rng.gauss(2e6, 1e6)), abs(rng.gauss(5e6, 2e6))
    rx, tx = abs(rng.gauss(1e7, 3e6)), abs(rng.gauss(4e6, 1e6))
    load = cpu / 100 * CORES
    disk = {"read_bytes": int(t * 1e4), "write_bytes": int(t * 3e4), "read_bps": read, "write_bps": write}
    net = {"rx_bytes": int(t * 1e5), "tx_bytes": int(t * 4e4), "rx_bps": rx, "tx_bps": tx}
    ops = {
        "iops": read / 8192 + write / 16384,
        "await": abs(rng.gauss(0.002, 0.001)),
        "busy_percent": cpu / 3,
    }
    errors = {"errors_ps": abs(rng.gauss(0, 0.05)), "drops_ps": abs(rng.gauss(0, 0.2))}
    return {
        "cpu": {
            "percent": cpu,
            "user": cpu * 0.7,
            "nice": 0.0,
            "system": cpu * 0.25,
            "iowait": abs(rng.gauss(1, 1)),
            "steal": 0.0,
            "per_core": cores,
            "count": CORES,
        },
        "load": {"avg1": load, "avg5": load * 0.9, "avg15": load * 0.8},
        "memory": {
            "total": 32 * 1024**3,
            "available": int((100 - mem) / 100 * 32 * 1024**3),
            "percent": mem,
            # The page cache fills what processes leave, and moves as they do (a moving number: the
            # storage benchmark counts its worst case).
            "cached": int((100 - mem) * 0.6 / 100 * 32 * 1024**3),
            "buffers": 256 * 1024**2,
        },
        "swap": {"total": 4 * 1024**3, "used": 0, "free": 4 * 1024**3, "percent": 0.5},
        "filesystems": [
            {
                "mount": m,
                "device": f"/dev/vda{i + 1}",
                "fstype": "ext4",
                "total": 10**11,
                "used": (30 + 12 * i) * 10**9,
                "free": (70 - 12 * i) * 10**9,
                "percent": 30.0 + 12 * i + 2 * day,
            }
            for i, m in enumerate(MOUNTS)
        ],
        "disk_io": {**disk, **ops, "devices": {"vda": dict(disk)}},
        "net_io": {**net, **errors, "interfaces": {"eth0": dict(net)}},
        "pressure": {
            "cpu": {"some60": cpu / 10},
            "memory": {"some60": abs(rng.gauss(0.5, 0.5))},
            "io": {"some60": abs(rng.gauss(2, 1))},
        },
        "activity": {
            "swap_in_bps": abs(rng.gauss(0, 1e3)),
            "swap_out_bps": abs(rng.gauss(0, 2e3)),
            "oom_kills": 0,
            "context_switches_ps": 5000 + 100 * cpu,
            "interrupts_ps": 3000 + 50 * cpu,
            "forks_ps": abs(rng.gauss(20, 5)),
        },
        "limits": {
            "fds_percent": 2 + cpu / 50,
            "pids_percent": 1.5,
            "conntrack_percent": abs(rng.gauss(5, 1)),
            "threads": 900,
        },
        "clock": {"unsynchronised": 0, "offset": abs(rng.gauss(0, 0.001))},
        "units": {"failed": []},
        "processes": {
            "count": 240,
            "top_cpu": [
                {
                    "pid": 1000 + i,
                    "name": name,
                    "user": "www-data" if name == "nginx" else "postgres",
                    "cmdline": f"/usr/sbin/{name} --config /etc/{name}/{name}.conf",
                    "cpu_percent": cpu / (i + 2),
                    "mem_percent": 2.5,
                    "rss": 200 * 1024**2,
                }
                for i, name in enumerate(("postgres", "nginx", "python3", "java", "node"))
            ],
            "top_mem": [
                {
                    "pid": 2000 + i,
                    "name": name,
                    "user": "app",
                    "cmdline": f"/opt/{name}/bin/{name} -Xmx4g",
                    "cpu_percent": 1.0,
                    "mem_percent": 10.0 - i,
                    "rss": (5 - i) * 1024**3,
                }
                for i, name in enumerate(("java", "postgres", "redis-server", "node", "python3"))
            ],
        },
        "users": [{"name": "ops", "terminal": "pts/0", "host": "192.0.2.7", "since": t - 3600}],
        "uptime": {"boot_time": t - 40 * 86400, "seconds": 40 * 86400.0},
        "system": {
            "os": "Debian GNU/Linux 12",
            "kernel": "6.1.0-28-amd64",
            "arch": "x86_64",
            "hostname": "h",
        },
    }


def snapshots(host: str, first_ts: float, count: int, rng: random.Random, base: float) -> Iterator[Received]:
    """`count` snapshots of `host`, every INTERVAL seconds from `first_ts`, as ingest hands them over."""
    for i in range(count):
        ts = first_ts + i * INTERVAL
        raw = wire.encode_snapshot(host, i + 1, ts, INTERVAL, "bench", probes(rng, ts, base))
        yield Received(extract(wire.decode_snapshot(raw)), raw, INTERVAL, ts + 0.2)


def ingest_all(store: Any, received: Iterator[Received]) -> int:
    """Ingest in big batches (one transaction each); returns how many were stored."""
    batch: list[Received] = []
    stored = 0
    size = PG_BATCH if type(store).__name__ == "PostgresStore" else BATCH
    for r in received:
        batch.append(r)
        if len(batch) >= size:
            stored += len(store.ingest(batch).fresh)
            batch = []
    if batch:
        stored += len(store.ingest(batch).fresh)
    return stored


def fleet(hosts: int, now: float, rng: random.Random) -> Iterator[Received]:
    for h in range(hosts - 1):
        start = now - (FLEET_HISTORY - 1) * INTERVAL - rng.uniform(0, INTERVAL)
        yield from snapshots(f"node-{h:04d}", start, FLEET_HISTORY, rng, rng.uniform(5, 60))


def build(database: str | Path, hosts: int, days: float) -> tuple[int, int]:
    """The database: (samples of BIG, samples in all)."""
    rng = random.Random(7)
    now = time.time()
    store = open_store(database)
    big = int(days * 86400 / INTERVAL)
    stored_big = ingest_all(store, snapshots(BIG, now - (big - 1) * INTERVAL, big, rng, 35.0))
    stored = stored_big + ingest_all(store, fleet(hosts, now, rng))
    # A few things going on: alerts firing and hosts in maintenance.
    events = [
        AlertEvent("fired", f"node-{h:04d}", "cpu.percent", "warning", now - 600, 91.0, 90.0, now - 900)
        for h in range(0, min(hosts - 1, 200), 10)
    ]
    events.append(AlertEvent("fired", BIG, "disk.percent", "critical", now - 3600, 96.0, 95.0, now - 3600))
    store.alerts_apply(events, [])
    for h in range(5, min(hosts - 1, 50), 10):
        store.silence(f"node-{h:04d}", now + 86400, "maintenance", now)
    store.close()
    return stored_big, stored


def has_hosts(database: str | Path) -> bool:
    store = open_store(database)
    try:
        return bool(store.hosts())
    finally:
        store.close()


class Agent(threading.Thread):
    """BIG's agent, live: a snapshot every INTERVAL seconds through the real store, as ingest stores them."""

    def __init__(self, database: str | Path) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.stopping = threading.Event()
        self.sent = 0
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.send()
        except Exception as e:  # reported by main: a live figure without new data would mislead
            self.error = e

    def send(self) -> None:
        store = open_store(self.database)
        try:
            seq = next(h.last_seq for h in store.hosts() if h.name == BIG) or 0
            rng = random.Random(11)
            while not self.stopping.wait(INTERVAL):
                now = time.time()
                seq += 1
                raw = wire.encode_snapshot(BIG, seq, now, INTERVAL, "bench", probes(rng, now, 35.0))
                store.ingest([Received(extract(wire.decode_snapshot(raw)), raw, INTERVAL, now)])
                self.sent += 1
        finally:
            store.close()


# -- the server and the timings -----------------------------------------------------------------


def start_web(workdir: Path, database: str | Path, port: int) -> subprocess.Popen:
    config = workdir / "collector.toml"
    config.write_text(
        f'listen = "tcp://127.0.0.1:{free_port()}"\ndatabase = "{database}"\n'
        f'[web]\nbind = "127.0.0.1:{port}"\nanonymous_read = true\n'
        # The fleet's last snapshots age while this runs: keep the hosts "up", as live agents would.
        "[alerts]\ndown_after = 1000\n"
        "[certfr]\nenabled = false\n"
    )
    log = open(workdir / "web.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [str(BIN / "osmon-collector"), "web", "--config", str(config)], stdout=log, stderr=log
    )


def stop(process: subprocess.Popen) -> None:
    """SIGTERM by PID, then SIGKILL if it does not stop."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class Client:
    """One keep-alive connection, as a browser tab keeps."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str, cold: bool = False) -> tuple[int, bytes, int, float]:
        """(status, body decoded, bytes on the wire, seconds from sending to the last byte);
        `cold` asks for a fresh copy, as a browser's hard reload does."""
        headers = {"Accept-Encoding": "gzip", "Accept": "*/*"}
        if cold:
            headers["Cache-Control"] = "no-cache"
        start = time.perf_counter()
        self.conn.request("GET", path, headers=headers)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - start
        size = len(body)
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return response.status, body, size, elapsed

    def close(self) -> None:
        self.conn.close()


def wait_up(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"osmon-collector web exited with {process.returncode}")
        client = Client(port)
        try:
            if client.get("/healthz")[0] == 200:
                return
        except OSError:
            pass
        finally:
            client.close()
        time.sleep(0.1)
    raise SystemExit("the dashboard did not answer /healthz")


def check(client: Client, path: str, hosts: int, big: int) -> str:
    """Fetch once and check the answer is the real page, not a fast error; returns what it holds."""
    status, body, size, _ = client.get(path)
    if status != 200:
        raise SystemExit(f"{path}: HTTP {status}: {body[:300]!r}")
    kib = f"{size // 1024} KiB gzip"
    if path == "/":
        # The page carries its table's data (static/live.js draws the rows from it): one page of it.
        data = re.search(rb"<tbody data-initial='([^']*)'>", body)
        assert data
        view = json.loads(html.unescape(data.group(1).decode()))
        assert view["total"] == hosts and len(view["hosts"]) == min(hosts, view["query"]["per"])
        return f"{hosts} hosts, {len(view['hosts'])} rows a page, {kib}"
    if path == "/api/hosts":
        view = json.loads(body)
        assert view["total"] == hosts and len(view["hosts"]) == min(hosts, view["query"]["per"])
        return f"{hosts} hosts, {len(view['hosts'])} rows a page, {kib}"
    if path == f"/api/hosts/{BIG}":
        assert json.loads(body)["host"]["name"] == BIG
        return f"one host's latest numbers, {kib}"
    if path.startswith(f"/host/{BIG}"):
        assert body.count(b'class="pygal-chart chart"') == CHARTS and b"No data" not in body, path
        samples = big if "range=" in path else int(6 * 3600 / INTERVAL)
        return f"{samples} samples per series, {CHARTS} charts, {kib}"
    if "/charts" in path:
        charts = json.loads(body)["charts"]
        assert len(charts) == CHARTS and not any("No data" in svg for svg in charts.values())
        return f"{big} samples per series, {CHARTS} charts, {kib}"
    data = json.loads(body)
    points = sum(len(s["data"]) for s in data["series"])
    assert points > 0
    return f"{big} samples -> {len(data['series'])} series, {points} points, {kib}"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def measure(
    client: Client,
    path: str,
    warmup: int,
    requests: int,
    budget: float,
    cold: bool,
    server: psutil.Process,
    pause: float = 0.0,
) -> tuple[list[float], float]:
    """Timings of `requests` requests after `warmup` (stops early, after at least 10, past `budget` s),
    and the dashboard's CPU seconds per request: the cost itself, whatever else loads the machine."""
    deadline = time.monotonic() + budget / 5
    for i in range(warmup):
        if i and time.monotonic() > deadline:
            break
        client.get(path, cold)
    deadline = time.monotonic() + budget
    times: list[float] = []
    before = server.cpu_times()
    while len(times) < requests and (len(times) < 10 or time.monotonic() < deadline):
        status, _, _, elapsed = client.get(path, cold)
        assert status == 200, (path, status)
        times.append(elapsed)
        time.sleep(pause)
    after = server.cpu_times()
    return times, (after.user + after.system - before.user - before.system) / len(times)


LIVE_PAUSE = 2  # seconds between two openings of the host page in the live figure


def report(path: str, times: list[float], cpu: float, what: str, target: int | None) -> None:
    """One summary line: p50, p95, the server's CPU per request, what was timed, and the verdict."""
    p50 = statistics.median(times) * 1000
    p95 = percentile(times, 95) * 1000
    if target is None:
        verdict = "no target"
    else:
        verdict = f"{'meets' if p95 <= target else 'MISSES'} target p95 <= {target} ms"
    print(
        f"dashboard: {path} p50 {p50:.0f} ms, p95 {p95:.0f} ms, server CPU {cpu * 1000:.0f} ms/request "
        f"({what}; {verdict}; n={len(times)})",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--requests", type=int, default=50, help="timed requests per URL (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--budget", type=float, default=30, help="seconds of timed requests per URL (at least 10 requests)"
    )
    parser.add_argument(
        "--live",
        type=int,
        default=60,
        help="seconds of the live figure (the host page while its agent sends)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--database",
        help="a database a --keep run built (same --hosts, --days): a SQLite file, or a postgresql:// URL "
        "(built there if it holds no host yet); 'postgresql': a throw-away local PostgreSQL server "
        "(the tests' tests/pg.py), built afresh",
    )
    args = parser.parse_args()
    range_name = {1: "24h", 7: "7d"}.get(int(args.days), "30d")

    workdir = Path(tempfile.mkdtemp(prefix="osmon-bench-dashboard-"))
    pg_server = None
    if args.database == "postgresql":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests/pg.py
        from tests.pg import PostgresServer

        pg_server = PostgresServer()
        args.database = pg_server.database()
    database: str | Path = args.database or workdir / "osmon.db"
    process = None
    try:
        if args.database and (not str(database).startswith("postgresql") or has_hosts(database)):
            big = int(args.days * 86400 / INTERVAL)
            print(f"dashboard: reusing {database}", flush=True)
        else:
            started = time.monotonic()
            big, total = build(database, args.hosts, args.days)
            store = open_store(database)
            size = store.database_size() / 1024**2
            store.close()
            backend = "PostgreSQL" if str(database).startswith("postgresql") else "SQLite"
            print(
                f"dashboard: database built in {time.monotonic() - started:.0f} s "
                f"({args.hosts} hosts, {total} samples, {size:.0f} MiB, {backend})",
                flush=True,
            )
        port = free_port()
        process = start_web(workdir, database, port)
        wait_up(port, process)
        client = Client(port)
        server = psutil.Process(process.pid)
        page, charts = f"/host/{BIG}?range={range_name}", f"/api/hosts/{BIG}/charts?range={range_name}"
        # (path, cold: charts drawn afresh, target p95 in ms from the issue or None: for comparison)
        overview_target = 100 if args.hosts <= 1000 else 150  # issue 16: <= 150 ms at 10,000 hosts
        targets: list[tuple[str, bool, int | None]] = [
            ("/", False, overview_target),
            ("/api/hosts", False, overview_target),
            (page, True, 200),
            (page, False, 200),
            (charts, True, 200),
            (charts, False, 200),
            (f"/api/hosts/{BIG}/series?metric=cpu.percent&range={range_name}", False, 200),
            (f"/api/hosts/{BIG}/series?metric=cpu.core&range={range_name}", False, 200),
            (f"/api/hosts/{BIG}", False, None),  # what an open host page polls every [web] refresh
            (f"/host/{BIG}", True, None),  # the default range (6h): the same charts over 2,160 samples
            (f"/host/{BIG}", False, None),
        ]
        for path, cold, target in targets:
            what = check(client, path, args.hosts, big)
            if "/charts" in path or path.startswith("/host/"):
                what += ", cold: every chart read and drawn" if cold else ", warm: read, drawn before"
            times, cpu = measure(client, path, args.warmup, args.requests, args.budget, cold, server)
            report(path, times, cpu, what, target)
        # Live: BIG's agent sends every 10 s, as in production, and the page is opened every
        # LIVE_PAUSE s: whatever charts a new peak changed are drawn again, the others reused.
        agent = Agent(database)
        agent.start()
        try:
            count = max(10, args.live // LIVE_PAUSE)
            times, cpu = measure(client, page, 0, count, args.live * 2, False, server, LIVE_PAUSE)
        finally:
            agent.stopping.set()
            agent.join()
        if agent.error is not None or agent.sent == 0:
            raise SystemExit(f"the live agent sent nothing: {agent.error!r}")
        what = f"live: {agent.sent} new snapshots of {BIG} meanwhile, opened every {LIVE_PAUSE} s"
        report(page, times, cpu, what, 200)
        client.close()
    finally:
        if process is not None:
            stop(process)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)  # never a --database given: it is not in workdir
        if pg_server is not None:
            pg_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
