"""One host's page beyond its charts: facts, filesystems, top processes, logged-in users, failed units.

All of it comes from the host's latest snapshot, i.e. from the host itself:
every field is checked for its type and cut to a sane length here, and
escaped where it is shown (Jinja autoescape, textContent in JS, pygal's XML).
"""

from __future__ import annotations

from typing import Any

from collector.web.fleet import Latest, number

TEXT_LIMIT = 200  # characters of a name or a fact
CMDLINE_LIMIT = 400
ROWS_LIMIT = 50  # processes, users, filesystems


def text(value: object, limit: int = TEXT_LIMIT) -> str | None:
    """A string from hostile data, cut to `limit`; None for anything else."""
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _rows(value: object) -> list[dict[str, Any]]:
    return [r for r in value[:ROWS_LIMIT] if isinstance(r, dict)] if isinstance(value, list) else []


def facts(latest: Latest) -> dict[str, Any]:
    """OS, kernel, hardware and boot facts."""
    p = latest.probes
    system, memory, swap = _table(p.get("system")), _table(p.get("memory")), _table(p.get("swap"))
    return {
        "os": text(system.get("os")),
        "kernel": text(system.get("kernel")),
        "arch": text(system.get("arch")),
        "hostname": text(system.get("hostname")),
        "cpus": number(_table(p.get("cpu")).get("count")),
        "memory_total": number(memory.get("total")),
        "swap_total": number(swap.get("total")),
        "boot_time": number(_table(p.get("uptime")).get("boot_time")),
        "snapshot_ts": latest.ts,
    }


def filesystems(latest: Latest) -> list[dict[str, Any]]:
    """Mounted filesystems, fullest first."""
    rows = [
        {
            "mount": text(fs.get("mount")),
            "device": text(fs.get("device")),
            "fstype": text(fs.get("fstype")),
            "total": number(fs.get("total")),
            "used": number(fs.get("used")),
            "percent": number(fs.get("percent")),
        }
        for fs in _rows(latest.probes.get("filesystems"))
    ]
    return sorted(rows, key=lambda r: -(r["percent"] or 0.0))


def _process(proc: dict[str, Any]) -> dict[str, Any]:
    return {
        "pid": number(proc.get("pid")),
        "name": text(proc.get("name")),
        "user": text(proc.get("user")),
        "cpu": number(proc.get("cpu_percent")),
        "mem": number(proc.get("mem_percent")),
        "rss": number(proc.get("rss")),
        "cmdline": text(proc.get("cmdline"), CMDLINE_LIMIT),
    }


def processes(latest: Latest) -> dict[str, list[dict[str, Any]]]:
    """Top processes by CPU and by memory, as the agent ranked them."""
    return top_lists(latest.probes.get("processes"))


def top_lists(value: object) -> dict[str, list[dict[str, Any]]]:
    """The top_cpu and top_mem lists of a processes probe (or of what an alert kept of one)."""
    table = _table(value)
    return {
        "top_cpu": [_process(p) for p in _rows(table.get("top_cpu"))],
        "top_mem": [_process(p) for p in _rows(table.get("top_mem"))],
    }


def users(latest: Latest) -> list[dict[str, Any]]:
    """Logged-in sessions (as `who` shows them)."""
    return [
        {
            "name": text(u.get("name")),
            "terminal": text(u.get("terminal")),
            "from": text(u.get("host")),
            "since": number(u.get("since")),
        }
        for u in _rows(latest.probes.get("users"))
    ]


def failed_units(latest: Latest) -> list[dict[str, Any]]:
    """The systemd units that failed, as the agent's unit probe listed them (what to restart or read)."""
    return [
        {
            "unit": text(u.get("unit")),
            "result": text(u.get("result")),
            "since": number(u.get("since")),
            "description": text(u.get("description")),
        }
        for u in _rows(_table(latest.probes.get("units")).get("failed"))
    ]


def detail(latest: Latest | None) -> dict[str, Any]:
    """Facts, filesystems, processes, users and failed units; empty parts when there is no snapshot."""
    if latest is None:
        return {
            "facts": {},
            "filesystems": [],
            "processes": {"top_cpu": [], "top_mem": []},
            "users": [],
            "failed_units": [],
        }
    return {
        "facts": facts(latest),
        "filesystems": filesystems(latest),
        "processes": processes(latest),
        "users": users(latest),
        "failed_units": failed_units(latest),
    }
