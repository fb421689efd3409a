"""CPU cost of one Prometheus scrape of /metrics, authenticated with a scraper token.

Builds a database of `--hosts` hosts (one snapshot each from benchmarks/dashboard.py's
realistic probes: 8 cores, mounts, disks, interfaces, processes) through the real
store, creates a token with `osmon-collector token new`, starts the real
`osmon-collector web` (waitress) with anonymous reading off, and sends
`--scrapes` requests with `Authorization: Bearer` over one keep-alive connection,
as Prometheus does. Prints the dashboard process's CPU time per scrape (target, issue 18:
<= 5 ms at 100 hosts; the kernel's scheduler accounting of its threads, in nanoseconds), then the same with `Accept-Encoding: gzip`, which
Prometheus sends by default (the dashboard gzips at level 1), and for comparison one
scrape with HTTP Basic credentials (a deliberately slow password hash).

Two cases, each with and without gzip. "new snapshots": before each scrape every host
gets a new snapshot (stored by this process, whose CPU is not counted), as when
Prometheus scrapes no faster than the agents send (scrape interval >= agent interval):
100 % of the hosts changed since the previous scrape. "same snapshots": nothing changed
since the previous scrape (0 % of the hosts), as for the second scraper of an HA pair of
Prometheus servers, or a scrape interval shorter than the agents'.

The numbers are rounded as the agents round them (agent.probes, agent.sampler: percentages
and loads to 2 decimals, byte rates to 1, await to 5, clock offsets to 6): unrounded
random floats print 17 digits where the agents' print 4, a body a fifth larger and slower
to format and to compress. `--full-precision` keeps them unrounded (what this benchmark
measured up to issue 18's second pass).

    python benchmarks/scrape.py [--hosts 100] [--scrapes 200] [--full-precision]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from dashboard import BIN, INTERVAL, free_port, probes, stop

from collector.samples import extract
from collector.store import Received, open_store
from collector.web.auth import hash_password
from osmon import wire

# Decimals the agents keep, by probe field (agent.probes, agent.sampler); 2 for other floats.
DECIMALS = {"await": 5, "offset": 6, "max_error": 6, "iops": 1, "busy_percent": 1}


def as_agents_send(value: Any, key: str = "") -> Any:
    """`value` (probe results) with each float rounded as the agents round it."""
    if isinstance(value, dict):
        return {k: as_agents_send(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [as_agents_send(v, key) for v in value]
    if isinstance(value, float):
        return round(value, 1 if key.endswith("_bps") else DECIMALS.get(key, 2))
    return value


def host_snapshots(host: str, rng: random.Random, rounded: bool) -> Iterator[Received]:
    """A host's snapshots, one an interval from a day ago on, as ingest hands them over."""
    base, first = rng.uniform(10, 60), time.time() - 86400
    for seq in itertools.count(1):
        ts = first + seq * INTERVAL
        found = probes(rng, ts, base)
        raw = wire.encode_snapshot(
            host, seq, ts, INTERVAL, "bench", as_agents_send(found) if rounded else found
        )
        yield Received(extract(wire.decode_snapshot(raw)), raw, INTERVAL, ts + 0.2)


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of every thread of `process`, from the kernel's scheduler accounting (nanoseconds).

    psutil's cpu_times() counts in clock ticks (10 ms): a 5 ms scrape reads as 0 or 10 ms, and
    only the average of hundreds is meaningful. /proc/<pid>/task/*/schedstat counts the time each
    thread ran, in nanoseconds (waitress answers in worker threads, so every thread is summed).
    """
    total = 0
    for task in Path(f"/proc/{process.pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return total / 1e9


def scrape_cpu(
    port: int, process: psutil.Process, headers: dict[str, str], count: int, between: Callable[[], None]
) -> tuple[float, int]:
    """(CPU seconds of the dashboard per scrape, bytes of the last answer); `between` runs before each."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    size = 0
    for _ in range(5):  # warm-up
        between()
        conn.request("GET", "/metrics", headers=headers)
        conn.getresponse().read()
    cpu = 0.0
    for _ in range(count):
        between()  # outside the dashboard's CPU: only its process is counted
        before = cpu_seconds(process)
        conn.request("GET", "/metrics", headers=headers)
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise SystemExit(f"/metrics answered {answer.status}: {body[:200]!r}")
        cpu += cpu_seconds(process) - before
        size = len(body)
    conn.close()
    return cpu / count, size


def nothing() -> None:
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--full-precision", action="store_true", help="numbers as unrounded random floats")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="osmon-scrape-"))
    try:
        database = workdir / "osmon.db"
        store = open_store(database)
        rng = random.Random(18)
        fleet = [host_snapshots(f"host-{i:03d}", rng, not args.full_precision) for i in range(args.hosts)]

        def new_snapshots() -> None:
            store.ingest([next(h) for h in fleet])

        new_snapshots()
        port = free_port()
        config = workdir / "collector.toml"
        config.write_text(
            f'listen = "tcp://127.0.0.1:{free_port()}"\ndatabase = "{database}"\n'
            f'[web]\nbind = "127.0.0.1:{port}"\nanonymous_read = false\n'
            f'[web.users]\nbench = "{hash_password("bench-password")}"\n'
            "[alerts]\ndown_after = 100000\n[certfr]\nenabled = false\n"
        )
        made = subprocess.run(
            [str(BIN / "osmon-collector"), "token", "new", "bench", "--config", str(config)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        token = made.stdout.strip()
        log = open(workdir / "web.log", "wb")  # noqa: SIM115 - lives as long as the process
        web = subprocess.Popen(
            [str(BIN / "osmon-collector"), "web", "--config", str(config)], stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/healthz")
                    break
                except OSError:
                    if time.monotonic() > deadline or web.poll() is not None:
                        raise SystemExit("osmon-collector web did not start") from None
                    time.sleep(0.1)
            process = psutil.Process(web.pid)
            numbers = "unrounded numbers" if args.full_precision else "numbers rounded as the agents do"
            print(f"scrape: {args.hosts} hosts, {args.scrapes} scrapes a figure, waitress, {numbers}")
            plain = {"Authorization": f"Bearer {token}"}
            gzipped = {**plain, "Accept-Encoding": "gzip"}
            for case, between in (("new snapshots (100 % of hosts changed)", new_snapshots),
                                  ("same snapshots (0 % of hosts changed)", nothing)):  # fmt: skip
                cpu, size = scrape_cpu(port, process, plain, args.scrapes, between)
                print(f"scrape: {cpu * 1000:.2f} ms CPU per scrape with a bearer token, {case}, {size} bytes")
                cpu, size = scrape_cpu(port, process, gzipped, args.scrapes, between)
                print(
                    f"scrape: {cpu * 1000:.2f} ms CPU per scrape with a bearer token, {case}, gzip as "
                    f"Prometheus asks ({size} bytes sent)"
                )
            basic = base64.b64encode(b"bench:bench-password").decode()
            cpu, _ = scrape_cpu(port, process, {"Authorization": f"Basic {basic}"}, 10, nothing)
            print(
                f"scrape: {cpu * 1000:.2f} ms CPU per /metrics scrape with HTTP Basic (scrypt), for comparison"
            )
        finally:
            stop(web)
            log.close()
            store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
