"""What the real agent daemon costs, beside Prometheus node_exporter in the same run.

Starts `osmon-collector run` (temporary SQLite file, loopback) and `osmon-agent run`
as separate processes, and node_exporter on a free loopback port when it is installed.
CPU comes from the kernel's accounting of each process (/proc/PID/stat, all threads;
the agent's reaped children are added), RSS from /proc/PID/status.

Figures, one `agent: ...` line each:
- daemon CPU per snapshot and RSS at start and after N snapshots at ~100 processes,
  node_exporter's CPU per scrape (scraped once per agent snapshot) and the ratio;
- a breakdown measured in this process at the daemon's cadence: sampler (and each probe),
  encoding, spool, sending, and the rest (the daemon's loop and idle) as the difference;
- the same at ~1,000 processes (sleeping children started for it, stopped by PID);
- idle CPU over a minute at the default 10 s interval, collector up and collector down.

    .venv/bin/python benchmarks/agent_daemon.py [--snapshots 10000] [--interval 0.05]
        [--large-snapshots 2000] [--idle-seconds 60] [--skip-idle] [--skip-large]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
import zmq

from agent.config import load as load_agent_config
from agent.link import Link
from agent.sampler import Sampler
from agent.spool import Spool
from osmon import __version__, wire

BIN = Path(sys.executable).parent
TICKS = os.sysconf("SC_CLK_TCK")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int, children: bool = False) -> float:
    """user + system CPU of process `pid` (all its threads), plus its reaped children's if asked."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used / TICKS


def rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM by PID, SIGKILL if it does not go within 10 s, and reap."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Sleepers:
    """Sleeping children that make the host's process table bigger; stopped and reaped by PID."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []

    def top_up(self, total: int) -> None:
        for _ in range(max(0, total - len(psutil.pids()))):
            self.children.append(subprocess.Popen(["sleep", "3600"]))

    def stop(self) -> None:
        for child in self.children:
            child.terminate()
        for child in self.children:
            child.wait(timeout=10)
        self.children.clear()


class Stack:
    """The processes of one run: a collector, node_exporter, agents. All stopped by PID at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def collector(self, port: int) -> subprocess.Popen:
        config = self.workdir / "collector.toml"
        config.write_text(
            f'listen = "tcp://127.0.0.1:{port}"\ndatabase = "{self.workdir / "osmon.db"}"\n'
            "certfr.enabled = false\n"
        )
        return self.start("collector", [str(BIN / "osmon-collector"), "run", "--config", str(config)])

    def agent_config(self, name: str, port: int, interval: float) -> Path:
        config = self.workdir / f"{name}.toml"
        config.write_text(
            f'host = "{name}"\ncollector = "tcp://127.0.0.1:{port}"\ninterval = {interval}\n'
            f'spool = "{self.workdir / name}.db"\n'
        )
        return config

    def agent(self, name: str, port: int, interval: float) -> subprocess.Popen:
        config = self.agent_config(name, port, interval)
        return self.start(name, [str(BIN / "osmon-agent"), "run", "--config", str(config)])

    def node_exporter(self, port: int) -> subprocess.Popen | None:
        if NODE_EXPORTER is None:
            return None
        proc = self.start("node_exporter", [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"])
        url = f"http://127.0.0.1:{port}/metrics"
        for _ in range(100):
            try:
                scrape(url)
                return proc
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("node_exporter did not answer")

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)


def scrape(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


def spooled(spool: Path) -> tuple[int, int]:
    """(last sequence number handed out, snapshots still unacked) in an agent's spool, read-only."""
    try:
        db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return 0, 0
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        pending = db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
        return (row[0] if row else 0), pending
    except sqlite3.Error:  # not created yet
        return 0, 0
    finally:
        db.close()


def wait_for_seq(spool: Path, seq: int, agent: subprocess.Popen, tick: float, on_tick=None) -> int:
    """Wait until the agent has spooled `seq`; `on_tick()` once per `tick` meanwhile."""
    next_tick = time.monotonic()
    while True:
        last, _ = spooled(spool)
        if last >= seq:
            return last
        if agent.poll() is not None:
            raise RuntimeError(f"the agent exited with status {agent.returncode}")
        if on_tick is not None:
            on_tick()
        next_tick = max(next_tick + tick, time.monotonic())
        time.sleep(max(0.0, next_tick - time.monotonic()))


def daemon_run(
    stack: Stack,
    label: str,
    collector_port: int,
    exporter_url: str | None,
    exporter: subprocess.Popen | None,
    snapshots: int,
    interval: float,
) -> dict:
    """One agent daemon for `snapshots` snapshots; node_exporter scraped once per interval meanwhile."""
    name = f"agent-{label}"
    agent = stack.agent(name, collector_port, interval)
    spool = stack.workdir / f"{name}.db"
    warm = 20  # imports, first connection, allocator arenas
    wait_for_seq(spool, warm, agent, interval)
    first, _ = spooled(spool)
    cpu0, rss0 = cpu_seconds(agent.pid, children=True), rss_mb(agent.pid)
    exp0 = cpu_seconds(exporter.pid) if exporter else 0.0
    scrapes = 0

    def scrape_once() -> None:
        nonlocal scrapes
        if exporter_url:
            scrape(exporter_url)
            scrapes += 1

    last = wait_for_seq(spool, first + snapshots, agent, interval, scrape_once)
    cpu1, rss1, hwm = cpu_seconds(agent.pid, children=True), rss_mb(agent.pid), rss_mb(agent.pid, "VmHWM")
    exp1 = cpu_seconds(exporter.pid) if exporter else 0.0
    exp_rss = rss_mb(exporter.pid) if exporter else 0.0
    nthreads = threads(agent.pid)
    time.sleep(1.0)  # the last acks
    stop(agent)
    _, pending = spooled(spool)
    return {
        "processes": len(psutil.pids()),
        "snapshots": last - first,
        "cpu_ms": (cpu1 - cpu0) / (last - first) * 1000,
        "rss_start": rss0,
        "rss_end": rss1,
        "hwm": hwm,
        "threads": nthreads,
        "pending": pending,
        "exporter_ms": (exp1 - exp0) / scrapes * 1000 if scrapes else None,
        "exporter_rss": exp_rss,
        "scrapes": scrapes,
    }


def print_run(label: str, r: dict) -> None:
    print(
        f"agent: daemon {r['cpu_ms']:.2f} ms CPU per snapshot at {r['processes']} processes "
        f"({r['snapshots']} snapshots, all threads and children, {r['threads']} threads, "
        f"{r['pending']} unacked at the end)"
    )
    if label == "100":
        print(
            f"agent: daemon RSS {r['rss_start']:.1f} MB at start, {r['rss_end']:.1f} MB after "
            f"{r['snapshots']} snapshots (peak {r['hwm']:.1f} MB)"
        )
    if r["exporter_ms"] is not None:
        print(
            f"agent: node_exporter {r['exporter_ms']:.2f} ms CPU per scrape at {r['processes']} processes "
            f"({r['scrapes']} scrapes, RSS {r['exporter_rss']:.1f} MB); "
            f"ratio {r['cpu_ms'] / r['exporter_ms']:.2f} (target <= {0.5 if label == '100' else 1})"
        )


def timed_probes(sampler: Sampler) -> dict[str, float]:
    """Wrap each of the sampler's probes so that its CPU time adds up in the returned dict."""
    spent: dict[str, float] = {}
    for name, probe in list(sampler._probes.items()):

        def run(probe=probe, name=name):
            start = time.process_time()
            try:
                return probe()
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - start

        sampler._probes[name] = run
        spent[name] = 0.0
    return spent


def breakdown(collector_port: int, workdir: Path, cycles: int, interval: float) -> tuple[dict, dict]:
    """CPU ms per snapshot of each stage, and of each probe, measured in this process with the
    agent's own classes at the daemon's cadence: a loop without the pause between snapshots runs
    with warm caches and costs about half as much, which is not what the daemon pays."""
    config_file = Stack(workdir).agent_config("breakdown", collector_port, 10.0)
    config = load_agent_config(str(config_file))
    sampler = Sampler(top_n=config.top_processes)
    probes = timed_probes(sampler)
    spool = Spool(workdir / "breakdown-spool.db", config.spool_max)
    context = zmq.Context()
    link = Link(context, config)
    time.sleep(0.2)
    totals = dict.fromkeys(("sampler", "encoding", "spool", "sending"), 0.0)
    try:
        deadline = time.monotonic() + 5
        while not link.connected and time.monotonic() < deadline:
            link.socket.poll(100)
            link.connection_events()
        sampler.sample()
        probes.update(dict.fromkeys(probes, 0.0))
        for _ in range(cycles):
            time.sleep(interval)
            t0 = time.process_time()
            results, errors = sampler.sample()
            t1 = time.process_time()
            body = wire.encode_snapshot("breakdown", 1, time.time(), 10.0, __version__, results, errors)
            t2 = time.process_time()
            seq = spool.append(lambda seq, body=body: body)
            t3 = time.process_time()
            link.send([spool.after(seq - 1, 1)[0][1]])
            acked: list[int] = []
            while not acked:
                link.socket.poll(1000)
                acked = link.acks()
            t4 = time.process_time()
            spool.ack(acked)
            t5 = time.process_time()
            totals["sampler"] += t1 - t0
            totals["encoding"] += t2 - t1
            totals["spool"] += t3 - t2 + t5 - t4
            totals["sending"] += t4 - t3
    finally:
        link.close()
        context.destroy(linger=0)
        spool.close()
        sampler.close()
    per_stage = {k: v / cycles * 1000 for k, v in totals.items()}
    per_probe = {k: v / cycles * 1000 for k, v in sorted(probes.items(), key=lambda kv: -kv[1])}
    return per_stage, per_probe


def idle(stack: Stack, collector_port: int, seconds: float) -> tuple[float, float]:
    """CPU % of one core over `seconds` at the default 10 s interval: collector up, collector down."""
    up = stack.agent("agent-idle-up", collector_port, 10.0)
    down = stack.agent("agent-idle-down", free_port(), 10.0)  # nothing listens there
    time.sleep(3)  # started and past the first snapshot
    up0, down0 = cpu_seconds(up.pid, True), cpu_seconds(down.pid, True)
    time.sleep(seconds)
    up1, down1 = cpu_seconds(up.pid, True), cpu_seconds(down.pid, True)
    stop(up)
    stop(down)
    return (up1 - up0) / seconds * 100, (down1 - down0) / seconds * 100


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--snapshots", type=int, default=10_000, help="measured snapshots at ~100 processes")
    parser.add_argument("--large-snapshots", type=int, default=2_000, help="measured snapshots at ~1,000")
    parser.add_argument("--interval", type=float, default=0.05, help="agent interval (its minimum: 0.05)")
    parser.add_argument("--breakdown-cycles", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()

    sleepers = Sleepers()
    with tempfile.TemporaryDirectory(prefix="osmon-agent-bench-") as tmp:
        stack = Stack(Path(tmp))
        try:
            collector_port, exporter_port = free_port(), free_port()
            stack.collector(collector_port)
            exporter = stack.node_exporter(exporter_port)
            url = f"http://127.0.0.1:{exporter_port}/metrics" if exporter else None
            if exporter is None:
                print("agent: node_exporter not installed: no comparison")
            sleepers.top_up(100)
            time.sleep(0.5)
            small = daemon_run(stack, "100", collector_port, url, exporter, args.snapshots, args.interval)
            print_run("100", small)
            parts, per_probe = breakdown(collector_port, Path(tmp), args.breakdown_cycles, args.interval)
            rest = small["cpu_ms"] - sum(parts.values())
            print(
                "agent: breakdown per snapshot "
                + ", ".join(f"{k} {v:.2f} ms" for k, v in parts.items())
                + f", loop and idle {rest:.2f} ms (the daemon's figure minus the others)"
            )
            print(
                "agent: sampler per probe "
                + ", ".join(f"{k} {v:.3f}" for k, v in per_probe.items() if v >= 0.0005)
                + " ms"
            )
            if not args.skip_large:
                sleepers.top_up(1000)
                time.sleep(0.5)
                large = daemon_run(
                    stack, "1000", collector_port, url, exporter, args.large_snapshots, args.interval
                )
                print_run("1000", large)
                extra = large["processes"] - small["processes"]
                per = (large["cpu_ms"] - small["cpu_ms"]) / extra * 1000 if extra > 0 else float("nan")
                print(f"agent: {per:.2f} us CPU per additional process (target <= 3)")
                sleepers.stop()
            if not args.skip_idle:
                up, down = idle(stack, collector_port, args.idle_seconds)
                print(
                    f"agent: idle at a 10 s interval over {args.idle_seconds:.0f} s: {up:.3f} % of a core "
                    f"with the collector up, {down:.3f} % with it down"
                )
        finally:
            sleepers.stop()
            stack.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
