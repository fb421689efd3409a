"""Several collectors on one PostgreSQL database: throughput with 1, 2 and 3 collectors, and failover.

Throughput: the ingest benchmark's simulated agents (each a host with a window of unacked
snapshots in flight), split across the collectors; snapshots acked per second and the CPU of
each collector process and of the database server per snapshot (the kernel's accounting).
On a 2-core machine the processes share the cores: the sum is what the machine gives.

Failover: a fleet of simulated hosts (tests/fleet.py: real agent configs, spools, links and
loops) at a 1 s interval on three collectors; the collector home to most of them is SIGKILLed.
Printed: for each of its hosts, the time from the kill to the first snapshot a survivor
stored (the collector's receipt time), median and max; and the time until survivors hold
the leases of all hosts again (detection resumed).

    python benchmarks/cluster.py [--agents 60] [--seconds 8] [--hosts 30]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq
from ingest import SimulatedAgents, collector_cpu, free_port, real_probes, server_cpu  # beside this script

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests/pg.py, tests/fleet.py
from agent.rendezvous import preference
from collector.store import open_store
from tests.pg import PostgresServer

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def start_collectors(
    workdir: Path, url: str, count: int, extra: str = ""
) -> list[tuple[str, int, subprocess.Popen]]:
    started = []
    for k in range(1, count + 1):
        name, port = f"c{k}", free_port()
        config = workdir / f"{name}.toml"
        config.write_text(
            f'name = "{name}"\nlisten = "tcp://127.0.0.1:{port}"\ndatabase = "{url}"\n{extra}\n'
            "[certfr]\nenabled = false\n"
        )
        log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        process = subprocess.Popen(
            [str(BIN / "osmon-collector"), "run", "--config", str(config)], stdout=log, stderr=log
        )
        started.append((name, port, process))
    return started


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(30)


def throughput(server: PostgresServer, count: int, agents: int, seconds: float, probes: dict) -> None:
    url = server.database()
    with tempfile.TemporaryDirectory(prefix="osmon-cluster-") as tmp:
        collectors = start_collectors(Path(tmp), url, count)
        context = zmq.Context()
        try:
            groups = []
            for k, (_, port, _) in enumerate(collectors):
                group = SimulatedAgents(context, port, agents // count, 200, probes, {})
                group.hosts = [f"c{k}-{host}" for host in group.hosts]  # one collector per host
                groups.append(group)
            run_all(groups, 2.0)  # warm-up: schema, first leases
            before = [g.acked for g in groups]
            cpu_before = [collector_cpu(p.pid) for _, _, p in collectors]
            db_before = server_cpu(server.postmaster_pid())
            run_all(groups, seconds)
            acked = sum(g.acked for g in groups) - sum(before)
            cpu = [collector_cpu(p.pid) - c for (_, _, p), c in zip(collectors, cpu_before, strict=True)]
            db = server_cpu(server.postmaster_pid()) - db_before
        finally:
            context.destroy(linger=0)
            stop([p for _, _, p in collectors])
    per = ", ".join(
        f"{name} {c / max(acked, 1) * 1e6:.0f} us" for (name, _, _), c in zip(collectors, cpu, strict=True)
    )
    print(
        f"cluster ingest, {count} collector(s): {acked / seconds:.0f} snapshots/s; "
        f"collector cpu per snapshot (all): {sum(cpu) / max(acked, 1) * 1e6:.1f} us ({per}); "
        f"database server {db / max(acked, 1) * 1e6:.1f} us per snapshot"
    )


def run_all(groups: list[SimulatedAgents], seconds: float) -> None:
    threads = [threading.Thread(target=g.run, args=(seconds,)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def failover(server: PostgresServer, hosts: int) -> None:
    url = server.database()
    with tempfile.TemporaryDirectory(prefix="osmon-failover-") as tmp:
        workdir = Path(tmp)
        timing = (
            'lease_time = "3s"\n[agents]\ninterval = "1s"\nack_timeout = "1s"\n[alerts]\ndown_after = 10\n'
        )
        collectors = start_collectors(workdir, url, 3, timing)
        endpoints = [f"tcp://127.0.0.1:{port}" for _, port, _ in collectors]
        names = [f"fleet-{i:03d}" for i in range(hosts)]
        configs = []
        for host in names:
            path = workdir / f"agent-{host}.toml"
            path.write_text(
                f'host = "{host}"\ncollector = {json.dumps(endpoints)}\ninterval = 1\n'
                f'spool = "{workdir / f"spool-{host}.db"}"\nack_timeout = 1\n'
            )
            configs.append(str(path))
        plan = workdir / "plan.json"
        plan.write_text(json.dumps({"configs": configs, "script": {}, "t0": time.time()}))
        fleet = subprocess.Popen(
            [str(BIN / "python"), "-m", "tests.fleet", str(plan)],
            cwd=ROOT,
            stdout=open(workdir / "fleet.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        try:
            homes = {e: [h for h in names if preference(h, endpoints)[0] == e] for e in endpoints}
            victim_endpoint = max(homes, key=lambda e: len(homes[e]))
            victim = next(p for _, port, p in collectors if victim_endpoint.endswith(f":{port}"))
            store = wait_store(url)
            deadline = time.monotonic() + 60
            while sum(c.hosts for c in store.collectors()) < hosts and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(3)
            moved = homes[victim_endpoint]
            os.kill(victim.pid, signal.SIGKILL)
            killed = time.time()
            flowing: dict[str, float] = {}
            resumed = None
            while time.time() - killed < 60 and (len(flowing) < len(moved) or resumed is None):
                seen = {h.name: h.last_seen for h in store.hosts()}
                for host in moved:
                    if host not in flowing and seen.get(host, 0) > killed:
                        flowing[host] = seen[host] - killed
                live = [c for c in store.collectors() if c.age < 5 and c.pid != victim.pid]
                if resumed is None and sum(c.hosts for c in live) >= hosts:
                    resumed = time.time() - killed
                time.sleep(0.05)
            store.close()
        finally:
            fleet.send_signal(signal.SIGTERM)
            fleet.wait(30)
            stop([p for _, _, p in collectors])
    delays = sorted(flowing.values())
    print(
        f"failover: {len(moved)} of {hosts} hosts on the killed collector; data flowing again after "
        f"median {statistics.median(delays):.2f} s, max {delays[-1]:.2f} s (agents: interval 1 s, ack_timeout 1 s, "
        f"failover after 2 s, replay pause up to 1 s); detection resumed for every host after "
        f"{resumed if resumed is None else round(resumed, 2)} s (lease_time 3 s)"
    )


def wait_store(url: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while True:
        try:
            return open_store(url, readonly=True)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=60, help="simulated agents in the throughput part")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--hosts", type=int, default=30, help="simulated hosts in the failover part")
    args = parser.parse_args()
    probes = real_probes()
    server = PostgresServer()
    try:
        for count in (1, 2, 3):
            throughput(server, count, args.agents, args.seconds, probes)
        failover(server, args.hosts)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
