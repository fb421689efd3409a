"""The collectors sharing a database, as `osmon-collector cluster`, the dashboard and /metrics show them.

Each `run` beats every housekeeping pass (5 s); one silent for GONE_AFTER is
gone (killed, frozen, cut off): its hosts go to the others once their leases
expire. One that stopped cleanly said so and handed its leases over at once.
"""

from __future__ import annotations

from collector.status import columns
from collector.store import CollectorInfo
from collector.timefmt import iso
from osmon.printable import printable

GONE_AFTER = 15.0  # seconds without a heartbeat: three missed


def state(c: CollectorInfo) -> str:
    if c.stopped:
        return "stopped"
    return "gone" if c.age > GONE_AFTER else "up"


def rows(collectors: list[CollectorInfo]) -> list[dict]:
    """One dict per collector: what `cluster --json` prints and the dashboard lists."""
    return [
        {
            "name": c.name,
            "state": state(c),
            "address": c.address,
            "pid": c.pid,
            "version": c.version,
            "started": iso(c.started),
            "last_heartbeat": iso(c.heartbeat),
            "heartbeat_age": round(c.age, 1),
            "hosts": c.hosts if state(c) == "up" else 0,
            "received": c.received,
            "rate": c.rate,
        }
        for c in collectors
    ]


HEADER = ["NAME", "STATE", "ADDRESS", "LAST HEARTBEAT", "HOSTS", "SNAPSHOTS/S"]


def table(found: list[dict]) -> str:
    if not found:
        return "no collector has run on this database yet"
    lines = [
        [
            printable(r["name"]),
            r["state"].upper() if r["state"] != "up" else "up",
            printable(r["address"]),
            f"{r['last_heartbeat']} ({r['heartbeat_age']:.0f} s ago)",
            str(r["hosts"]),
            f"{r['rate']:g}",
        ]
        for r in found
    ]
    return columns(HEADER, lines)
