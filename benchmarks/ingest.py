"""Sustained ingest rate of one collector process: receive, validate, store, ack.

Starts the real `osmon-collector run` on loopback with a fresh SQLite file and
simulates N agents from this process, each keeping a window of unacked
snapshots in flight (as the real agent does). Counts acked snapshots only, so
the figure is for data committed to disk.

    python benchmarks/ingest.py [--agents 200] [--seconds 10] [--curve]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import stages  # beside this script
import zmq
from curve_keys import make_keys

from agent.daemon import SEND_BATCH
from agent.sampler import Sampler
from osmon import wire

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def real_probes() -> dict:
    sampler = Sampler(top_n=5)
    time.sleep(0.2)
    probes, _ = sampler.sample()
    return probes


def start_collector(
    workdir: Path, port: int, curve: bool, agents: int, database: str | None = None
) -> tuple[subprocess.Popen, dict]:
    config = workdir / "collector.toml"
    database = database or str(workdir / "osmon.db")
    text = f'listen = "tcp://127.0.0.1:{port}"\ndatabase = "{database}"\ncertfr.enabled = false\n'
    client_keys: dict = {}
    if curve:
        text, client_keys = make_keys(workdir, text, agents)
    config.write_text(text)
    log = open(workdir / "collector.log", "wb")  # noqa: SIM115 - lives as long as the process
    cmd = [
        *os.environ.get("OSMON_BENCH_WRAP", "").split(),
        str(BIN / "osmon-collector"),
        "run",
        "--config",
        str(config),
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    return proc, client_keys


class SimulatedAgents:
    """N DEALER sockets, each sending snapshots of its own host with a window in flight."""

    def __init__(
        self, context: zmq.Context, port: int, count: int, window: int, probes: dict, client_keys: dict
    ) -> None:
        self.window = window
        # What the real agent sends, prepared once: the generator must outrun the collector.
        self.metrics, self.series = wire.metrics_from_probes(probes)
        self.probes = wire.encode(probes)
        self.sockets: list[zmq.Socket] = []
        for i in range(count):
            s = context.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, window * 4)
            if client_keys:
                public, secret, server = client_keys[f"bench-{i:04d}"]
                s.curve_publickey, s.curve_secretkey, s.curve_serverkey = public, secret, server
            s.connect(f"tcp://127.0.0.1:{port}")
            self.sockets.append(s)
        self.hosts = [f"bench-{i:04d}" for i in range(count)]
        self.next_seq = [1] * count
        self.unacked = [0] * count
        self.acked = 0
        self.sent = 0
        self.sending = True

    def fill(self, i: int) -> None:
        """Top the window up, in messages of up to SEND_BATCH snapshots, as a catching-up agent does."""
        while self.sending and (room := self.window - self.unacked[i]) > 0:
            bodies = [self.body(i) for _ in range(min(room, SEND_BATCH))]
            self.sockets[i].send_multipart(bodies, zmq.NOBLOCK)
            self.unacked[i] += len(bodies)
            self.sent += len(bodies)

    def body(self, i: int) -> bytes:
        seq = self.next_seq[i]
        self.next_seq[i] += 1
        return wire.encode(
            {
                "v": 1,
                "host": self.hosts[i],
                "seq": seq,
                "ts": time.time(),
                "interval": 10.0,
                "agent": "bench",
                "metrics": self.metrics,
                "series": self.series,
                "probes": self.probes,
            }
        )

    def run(self, seconds: float) -> int:
        poller = zmq.Poller()
        index = {}
        for i, s in enumerate(self.sockets):
            poller.register(s, zmq.POLLIN)
            index[s] = i
            self.fill(i)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and (self.sending or self.acked < self.sent):
            for s, _ in poller.poll(100):
                i = index[s]
                while True:
                    try:
                        seqs = wire.decode_ack(s.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    self.unacked[i] -= len(seqs)
                    self.acked += len(seqs)
                self.fill(i)
        return self.acked

    def drain(self, timeout: float) -> int:
        """Stop sending and wait for the acks of everything in flight; the snapshots never acked."""
        self.sending = False
        self.run(timeout)
        return self.sent - self.acked


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument(
        "--window", type=int, default=200, help="snapshots in flight per agent (agent default)"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--curve", action="store_true", help="CurveZMQ encryption and authentication")
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage profile in this process")
    parser.add_argument(
        "--stage-hosts",
        type=int,
        help="hosts in the per-stage profile (default: --agents); at 2000, each batch of 2000 holds one "
        "snapshot per host, so every snapshot starts its own rollup rows, as in a large fleet",
    )
    parser.add_argument(
        "--database",
        help="postgresql://... (an empty database), or 'postgresql' for a throw-away local server "
        "(the tests' tests/pg.py); default: SQLite in a temporary directory",
    )
    args = parser.parse_args()
    server = None
    if args.database == "postgresql":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests/pg.py
        from tests.pg import PostgresServer

        server = PostgresServer()
        args.database = server.database()
    try:
        return bench(args, server.postmaster_pid() if server else None)
    finally:
        if server is not None:
            server.stop()


def bench(args: argparse.Namespace, postmaster: int | None) -> int:

    probes = real_probes()
    size = len(wire.encode_snapshot("bench-0000", 1, time.time(), 10.0, "bench", probes))
    processes = (probes.get("processes") or {}).get("count")
    with tempfile.TemporaryDirectory(prefix="osmon-bench-") as tmp:
        workdir, port = Path(tmp), free_port()
        collector, client_keys = start_collector(workdir, port, args.curve, args.agents, args.database)
        if args.database and postmaster is None:
            postmaster = find_postmaster(args.database)
        context = zmq.Context()
        try:
            agents = SimulatedAgents(context, port, args.agents, args.window, probes, client_keys)
            agents.run(args.warmup)
            before, cpu_before = agents.acked, collector_cpu(collector.pid)
            server_before = server_cpu(postmaster)
            agents.run(args.seconds)
            acked, cpu = agents.acked - before, collector_cpu(collector.pid) - cpu_before
            server = server_cpu(postmaster) - server_before
            lost = agents.drain(30.0)
        finally:
            context.destroy(linger=0)
            os.kill(collector.pid, signal.SIGTERM)
            collector.wait(30)
        db_size = sum(p.stat().st_size for p in workdir.glob("osmon.db*"))
        profile = (
            None
            if args.no_stages
            else stages.profile(workdir, probes, args.database, hosts=args.stage_hosts or args.agents)
        )
    mode = "CurveZMQ" if args.curve else "plain TCP"
    rate = acked / args.seconds
    engine = "PostgreSQL" if args.database else "SQLite"
    print(
        f"ingest: {rate:.0f} snapshots/s ({args.agents} agents, {mode}, {engine}, "
        f"{size} B snapshots of a host with {processes} processes, acked after commit)"
    )
    print(
        f"ingest collector cpu: {cpu / args.seconds * 100:.0f} % of one core, "
        f"{cpu / max(acked, 1) * 1e6:.1f} us per snapshot"
    )
    if args.database:
        if postmaster is None:
            print("ingest database server cpu: unknown (the server's processes are not on this machine)")
        else:
            print(
                f"ingest database server cpu: {server / args.seconds * 100:.0f} % of one core, "
                f"{server / max(acked, 1) * 1e6:.1f} us per snapshot"
            )
    else:
        print(f"ingest database: {db_size / max(agents.acked, 1):.0f} bytes per snapshot stored")
    if profile is not None:
        stages.report(profile, cpu / max(acked, 1))
    if lost:
        print(f"ingest FAILED: {lost} of {agents.sent} snapshots sent were never acked", file=sys.stderr)
        return 1
    return 0


def collector_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(postmaster: int | None) -> float:
    """CPU seconds of a PostgreSQL server: the postmaster, its live children, and its children that ended."""
    if postmaster is None:
        return 0.0
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == postmaster:  # with the children it has reaped (backends that ended)
            total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        elif ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def find_postmaster(url: str) -> int | None:
    """The postmaster of a local server listening on the URL's port, if this machine runs it."""
    from urllib.parse import urlsplit

    port = str(urlsplit(url).port or 5432)
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"postgres") and port.encode() in b" ".join(args):
            return int(cmdline.parent.name)
    return None


if __name__ == "__main__":
    sys.exit(main())
