"""CPU cost of one Prometheus scrape of /metrics, authenticated with a scraper token.

Builds a database of `--hosts` hosts (one snapshot each from benchmarks/dashboard.py's
realistic probes: 8 cores, mounts, disks, interfaces, processes) through the real
store, creates a token with `osmon-collector token new`, starts the real
`osmon-collector web` (waitress) with anonymous reading off, and sends
`--scrapes` requests with `Authorization: Bearer` over one keep-alive connection,
as Prometheus does. Prints the dashboard process's CPU time per scrape (target,
issue 18: <= 5 ms at 100 hosts), then the same with `Accept-Encoding: gzip`, which
Prometheus sends by default (the dashboard gzips at level 1), and for comparison one
scrape with HTTP Basic credentials (a deliberately slow password hash).

The snapshots do not change between scrapes here, where a real fleet sends new ones
between two: nothing /metrics keeps depends on the numbers (only the labels of each
host's lines are kept), so every scrape decodes and formats every number, as then.

    python benchmarks/scrape.py [--hosts 100] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
from dashboard import BIN, INTERVAL, free_port, snapshots, stop

from collector.store import open_store
from collector.web.auth import hash_password


def scrape_cpu(port: int, process: psutil.Process, headers: dict[str, str], count: int) -> tuple[float, int]:
    """(CPU seconds of the dashboard per scrape, bytes of the last answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    size = 0
    for _ in range(5):  # warm-up
        conn.request("GET", "/metrics", headers=headers)
        conn.getresponse().read()
    before = sum(process.cpu_times()[:2])
    for _ in range(count):
        conn.request("GET", "/metrics", headers=headers)
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise SystemExit(f"/metrics answered {answer.status}: {body[:200]!r}")
        size = len(body)
    conn.close()
    return (sum(process.cpu_times()[:2]) - before) / count, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="osmon-scrape-"))
    try:
        database = workdir / "osmon.db"
        store = open_store(database)
        rng, now = random.Random(18), time.time()
        for i in range(args.hosts):
            store.ingest(list(snapshots(f"host-{i:03d}", now - INTERVAL, 1, rng, rng.uniform(10, 60))))
        store.close()
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
            cpu, size = scrape_cpu(port, process, {"Authorization": f"Bearer {token}"}, args.scrapes)
            print(
                f"scrape: {cpu * 1000:.2f} ms CPU per /metrics scrape with a bearer token "
                f"({args.hosts} hosts, {size} bytes, {args.scrapes} scrapes, waitress)"
            )
            bearer = {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"}
            cpu, size = scrape_cpu(port, process, bearer, args.scrapes)
            print(
                f"scrape: {cpu * 1000:.2f} ms CPU per /metrics scrape with a bearer token, gzip as Prometheus "
                f"asks ({size} bytes sent)"
            )
            basic = base64.b64encode(b"bench:bench-password").decode()
            cpu, _ = scrape_cpu(port, process, {"Authorization": f"Basic {basic}"}, 10)
            print(
                f"scrape: {cpu * 1000:.2f} ms CPU per /metrics scrape with HTTP Basic (scrypt), for comparison"
            )
        finally:
            stop(web)
            log.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
