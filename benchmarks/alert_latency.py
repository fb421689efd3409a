"""How fast alerts reach the SMTP server, and what detection adds to ingest.

1. Threshold crossing to mail accepted: a simulated agent sends a normal snapshot, then
   one with memory at 99 % (`for = 0`); the figure is the time from that send until a
   real SMTP server (aiosmtpd, in this process) has accepted the mail. A real agent adds
   at most one interval before the crossing is sent.
2. Host down to mail accepted: the agent stops after a snapshot; the figure is the time
   from that last snapshot until the host-down mail is accepted (expected: down_after x
   interval, plus detection's 1 s tick at most).
3. Detection's share of ingest: decode + extract + store.ingest of realistic batches,
   with and without Detector.process on them.

    python benchmarks/alert_latency.py [--runs 5] [--interval 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq
from aiosmtpd.controller import Controller

from collector import rules
from collector.detection import Detector
from collector.samples import extract
from collector.store import Received, open_store
from osmon import wire

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """Records when each mail was accepted."""

    def __init__(self) -> None:
        self.accepted: list[tuple[float, str]] = []
        self.event = threading.Event()

    async def handle_DATA(self, server, session, envelope) -> str:
        subject = next(
            (
                line
                for line in envelope.content.decode(errors="replace").splitlines()
                if line.startswith("Subject:")
            ),
            "",
        )
        self.accepted.append((time.monotonic(), subject))
        self.event.set()
        return "250 accepted"

    def wait_for(self, word: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, subject in self.accepted:
                if word in subject:
                    return when
            self.event.wait(0.01)
            self.event.clear()
        raise TimeoutError(f"no mail with {word!r} within {timeout}s")


def snapshot(host: str, seq: int, mem: float, interval: float) -> bytes:
    probes = {"memory": {"percent": mem}, "cpu": {"percent": 1.0, "per_core": [1.0]}}
    return wire.encode_snapshot(host, seq, time.time(), interval, "bench", probes)


def latencies(runs: int, interval: float) -> tuple[list[float], list[float]]:
    inbox, smtp_port, port = Inbox(), free_port(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    crossing, down = [], []
    with tempfile.TemporaryDirectory(prefix="osmon-bench-") as tmp:
        config = Path(tmp) / "collector.toml"
        config.write_text(
            f'listen = "tcp://127.0.0.1:{port}"\ndatabase = "{Path(tmp) / "osmon.db"}"\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
            '[certfr]\nenabled = false\n[alerts]\nrecipients = ["ops@bench"]\ndown_after = 3\n'
            '[thresholds."mem.percent"]\nwarning = 90\nfor = 0\nhysteresis = 5\n'
        )
        log = open(Path(tmp) / "collector.log", "wb")  # noqa: SIM115 - closed below
        collector = subprocess.Popen(
            [BIN / "osmon-collector", "run", "--config", config], stdout=log, stderr=log
        )
        context = zmq.Context()
        try:
            for run in range(runs):
                host = f"bench-{run}"
                dealer = context.socket(zmq.DEALER)
                dealer.connect(f"tcp://127.0.0.1:{port}")
                dealer.send(snapshot(host, 1, 10.0, interval))
                dealer.recv()  # acked: the host is known and fine
                sent = time.monotonic()
                dealer.send(snapshot(host, 2, 99.0, interval))
                crossing.append(inbox.wait_for(f"{host}: memory") - sent)
                dealer.recv()
                last = time.monotonic()
                dealer.send(snapshot(host, 3, 99.0, interval))
                dealer.recv()
                down.append(inbox.wait_for(f"{host}: host down", timeout=30 + 5 * interval) - last)
                dealer.close(linger=0)
        finally:
            context.destroy(linger=0)
            os.kill(collector.pid, signal.SIGTERM)
            collector.wait(30)
            log.close()
            controller.stop()
    return crossing, down


def detection_share(hosts: int = 200, batches: int = 20, batch: int = 1000) -> tuple[float, float]:
    """(µs per snapshot for decode + store, µs added by detection)."""
    with tempfile.TemporaryDirectory(prefix="osmon-bench-") as tmp:
        store = open_store(Path(tmp) / "osmon.db")
        detector = Detector(store, rules.parse({}, "bench"), down_after=3)
        probes = {
            "cpu": {"percent": 50.0, "per_core": [50.0] * 4},
            "memory": {"percent": 60.0},
            "swap": {"percent": 1.0},
            "load": {"avg1": 1.0},
            "filesystems": [{"mount": m, "percent": 50.0} for m in ("/", "/var", "/home")],
        }
        seq = [0] * hosts
        raws = []
        for _ in range(batches):
            rows = []
            for i in range(batch):
                h = i % hosts
                seq[h] += 1
                rows.append(wire.encode_snapshot(f"h{h:04d}", seq[h], 1.7e9 + seq[h] * 10, 10.0, "b", probes))
            raws.append(rows)
        base = detect = 0.0
        for rows in raws:
            start = time.perf_counter()
            received = [Received(extract(wire.decode_snapshot(r)), r, 10.0, time.time()) for r in rows]
            result = store.ingest(received)
            middle = time.perf_counter()
            detector.process(result.fresh)
            base += middle - start
            detect += time.perf_counter() - middle
        n = batches * batch
        return base / n * 1e6, detect / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0, help="the simulated agent's interval, seconds")
    args = parser.parse_args()
    crossing, down = latencies(args.runs, args.interval)
    budget = 3 * args.interval
    print(
        f"alert latency: crossing -> mail accepted {statistics.median(crossing) * 1000:.0f} ms median, "
        f"{max(crossing) * 1000:.0f} ms max over {args.runs} runs (for = 0; an agent adds up to one interval)"
    )
    print(
        f"down latency: last snapshot -> host-down mail accepted {statistics.median(down):.2f} s median, "
        f"{max(down):.2f} s max (down_after x interval = {budget:g} s)"
    )
    base, detect = detection_share()
    print(
        f"detection cost: {detect:.1f} us per snapshot on top of {base:.1f} us for decode + store "
        f"({detect / base * 100:.1f} % of that; the full ingest path costs more, see benchmarks/ingest.py)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
