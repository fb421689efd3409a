"""What one snapshot costs the agent: CPU time per sample + encoding, and RSS over many cycles.

Starts idle child processes until the host has about 100 (stopped by PID at the end),
then runs Sampler.sample() and osmon.wire.encode_snapshot() of a full snapshot N times.

    .venv/bin/python benchmarks/agent_cost.py [--cycles 10000] [--processes 100]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
import zmq  # noqa: F401  (the agent process loads it too: count it in the RSS)

import osmon
from agent.sampler import Sampler
from osmon import wire


def rss_mb() -> float:
    """This process's resident memory, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def start_idle(count: int) -> list[subprocess.Popen]:
    """`count` sleeping children, so the process scan has a realistic size."""
    return [subprocess.Popen(["sleep", "3600"]) for _ in range(count)]


def stop(children: list[subprocess.Popen]) -> None:
    """Stop our children by PID and reap them."""
    for child in children:
        child.terminate()
    for child in children:
        child.wait(timeout=10)


def snapshot(sampler: Sampler, seq: int) -> tuple[bytes, float]:
    """One encoded snapshot, as the agent sends it, and the CPU seconds spent encoding it."""
    results, errors = sampler.sample()
    started = time.process_time()
    message = wire.encode_snapshot(
        socket.gethostname(), seq, time.time(), 10.0, osmon.__version__, results, errors
    )
    return message, time.process_time() - started


def main() -> None:
    """Run the cycles and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=100, help="top the host up to this many")
    args = parser.parse_args()

    children = start_idle(max(0, args.processes - len(psutil.pids())))
    try:
        sampler = Sampler()
        time.sleep(0.2)
        size = len(snapshot(sampler, 0)[0])  # warm up: imports and caches are part of the start figure
        processes = len(psutil.pids())
        rss_start = rss_mb()
        started = batch_started = time.process_time()
        encoding, batches, rss_warm = 0.0, [], None
        for seq in range(1, args.cycles + 1):
            encoding += snapshot(sampler, seq)[1]
            if seq % 1000 == 0:
                batches.append(time.process_time() - batch_started)
                rss_warm = rss_warm or rss_mb()  # allocator arenas and caches settle in the first cycles
                batch_started = time.process_time()
        cpu = time.process_time() - started
        rss_end = rss_mb()
        errors = sampler.sample()[1]
        sampler.close()
    finally:
        stop(children)

    ms = 1000 / args.cycles
    print(f"agent cpu: {cpu * ms:.2f} ms per snapshot ({processes} processes, {args.cycles} cycles)")
    print(f"agent cpu split: {(cpu - encoding) * ms:.2f} ms sampling, {encoding * ms:.2f} ms encoding")
    if batches:  # a batch of 1000 cycles taking s seconds costs s ms per snapshot
        print(
            f"agent cpu spread: {min(batches):.2f} to {max(batches):.2f} ms per snapshot over 1000-cycle batches"
        )
    warm = f", {rss_warm:.1f} MB after 1000" if rss_warm else ""
    print(f"agent rss: {rss_start:.1f} MB at start{warm}, {rss_end:.1f} MB after {args.cycles} cycles")
    print(f"snapshot size: {size} bytes encoded")
    if errors:
        print(f"probe errors: {errors}")


if __name__ == "__main__":
    main()
