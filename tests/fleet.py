"""Many simulated hosts in one process, each a real agent (its config file, spool, link and loop)
whose sampler plays a script: the cluster tests' fleet.

    python -m tests.fleet PLAN.json

PLAN: {"configs": [agent.toml paths], "script": {host: [[start, end, cpu], ...]}, "t0": unix time}.
A host's cpu.percent is the `cpu` of the script window holding now - t0, else 10. Each agent
runs in a thread of its own until SIGTERM, then stops as `osmon-agent run` does.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from agent import config as agent_config
from agent.daemon import Agent
from agent.link import Link
from agent.spool import Spool

QUIET_CPU = 10.0


class ScriptedSampler:
    """Probe results of a steady 2-core host whose CPU follows the script."""

    def __init__(self, windows: list[list[float]], t0: float) -> None:
        self.windows, self.t0 = windows, t0

    def cpu(self, now: float) -> float:
        offset = now - self.t0
        return next((cpu for start, end, cpu in self.windows if start <= offset < end), QUIET_CPU)

    def sample(self) -> tuple[dict[str, Any], dict[str, str]]:
        cpu = self.cpu(time.time())
        return {
            "cpu": {"percent": cpu, "count": 2, "per_core": [cpu, cpu]},
            "memory": {"percent": 40.0},
            "load": {"avg1": 0.5, "avg5": 0.4, "avg15": 0.3},
            "filesystems": [{"mount": "/", "percent": 50.0}],
        }, {}


class ThreadStop:
    """What Agent.run needs of osmon.shutdown.Shutdown, for a thread: a flag and a readable socket."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = "SIGTERM"
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)

    @property
    def fd(self) -> int:
        return self._reader.fileno()

    def set(self) -> None:
        self.requested = True
        self._writer.send(b"x")

    def drain(self) -> None:
        try:
            while self._reader.recv(512):
                pass
        except BlockingIOError:
            pass


def run_host(context: zmq.Context, path: str, sampler: ScriptedSampler, stop: ThreadStop) -> None:
    config = agent_config.load(path)
    spool = Spool(config.spool, config.spool_max)
    link = Link(context, config)
    try:
        Agent(config, sampler, spool, link).run(stop)  # type: ignore[arg-type]
    finally:
        link.close()
        spool.close()


def main(plan_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    context = zmq.Context()
    stops = []
    threads = []
    for path in plan["configs"]:
        host = agent_config.load(path).host
        stop = ThreadStop()
        sampler = ScriptedSampler(plan["script"].get(host, []), plan["t0"])
        thread = threading.Thread(target=run_host, args=(context, path, sampler, stop), name=host)
        thread.start()
        stops.append(stop)
        threads.append(thread)

    def terminate(signum: int, frame: object) -> None:
        for stop in stops:
            stop.set()

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    while any(t.is_alive() for t in threads):
        time.sleep(0.1)
    context.destroy(linger=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
