"""The numeric series the collector keeps from each snapshot.

One `Sample` per snapshot: host-wide numbers in fixed fields (the hot path of
storage, charts and detection) and per-entity numbers (cores, mounts, disks,
network interfaces) in `detail`. `osmon.wire` has already checked that every
one of them is a finite number.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from osmon.wire import Snapshot

# Storage column -> wire metric name, in storage order.
COLUMNS: dict[str, str] = {
    "cpu": "cpu.percent",
    "cpu_iowait": "cpu.iowait",
    "mem": "mem.percent",
    "swap": "swap.percent",
    "load1": "load.1",
    "load5": "load.5",
    "load15": "load.15",
    "disk_max": "disk.percent",  # the fullest mounted filesystem
    "read_bps": "disk.read_bps",
    "write_bps": "disk.write_bps",
    "rx_bps": "net.rx_bps",
    "tx_bps": "net.tx_bps",
    "procs": "processes.count",
    "users": "users.count",
}


class Sample(NamedTuple):
    """The numbers of one snapshot, ready for storage."""

    host: str
    seq: int
    ts: float
    cpu: float | None
    cpu_iowait: float | None
    mem: float | None
    swap: float | None
    load1: float | None
    load5: float | None
    load15: float | None
    disk_max: float | None
    read_bps: float | None
    write_bps: float | None
    rx_bps: float | None
    tx_bps: float | None
    procs: float | None
    users: float | None
    detail: dict[str, Any]  # {"cpu.core": [...], "disk.percent": {mount: %}, "disk.io": ..., "net.io": ...}


def extract(snapshot: Snapshot) -> Sample:
    """The numbers of a validated snapshot."""
    m = snapshot.metrics
    usage = [v for v in snapshot.series.get("disk.percent", {}).values() if v is not None]
    return Sample(
        snapshot.host,
        snapshot.seq,
        snapshot.ts,
        m.get("cpu.percent"),
        m.get("cpu.iowait"),
        m.get("mem.percent"),
        m.get("swap.percent"),
        m.get("load.1"),
        m.get("load.5"),
        m.get("load.15"),
        max(usage) if usage else None,
        m.get("disk.read_bps"),
        m.get("disk.write_bps"),
        m.get("net.rx_bps"),
        m.get("net.tx_bps"),
        m.get("processes.count"),
        m.get("users.count"),
        snapshot.series,
    )
