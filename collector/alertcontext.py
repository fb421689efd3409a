"""What an alert mail says beyond the alert: the evidence an on-call engineer acts on.

CPU and memory alerts list the top processes, disk alerts the space left and
when the filesystem will be full at its recent fill rate, load alerts the load
and the core count. All of it comes from the host's latest stored snapshot and
its recent samples; the snapshot comes from the host itself, so every field is
checked for its type before use.
"""

from __future__ import annotations

import json
from typing import Any

from collector.store import Store, StoreError
from collector.timefmt import moment
from collector.units import binary
from osmon import wire
from osmon.numbers import finite_or_none

TOP = 5  # processes listed
FILL_WINDOW = 6 * 3600.0  # the fill rate is measured over this much recent history
# Which ranking of processes explains which alert.
PROCESS_RANKING = {
    "cpu.percent": ("top_cpu", "by CPU"),
    "load.1": ("top_cpu", "by CPU"),
    "mem.percent": ("top_mem", "by memory"),
    "swap.percent": ("top_mem", "by memory"),
    "oom.kills": ("top_mem", "by memory"),
    "pressure.memory": ("top_mem", "by memory"),
}


def human_duration(seconds: float) -> str:
    """'45 s', '4 min', '2 h 10 min', '3 d 2 h': precise enough to act on, short enough to read."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def latest_probes(store: Store, host: str) -> dict[str, Any]:
    """The probe results of `host`'s latest snapshot; empty when there is none or it no longer decodes."""
    try:
        raw = store.latest(host)
        return wire.decode_snapshot(raw).probes() if raw is not None else {}
    except (wire.WireError, StoreError):
        return {}


def processes_at(raw: bytes) -> str | None:
    """The top processes (by CPU, by memory) of a snapshot as received, as JSON with its time: what an
    alert keeps of the moment it fired, for the host page opened at that moment. None without them."""
    try:
        snapshot = wire.decode_snapshot(raw)
        table = snapshot.probes().get("processes")
    except wire.WireError:
        return None
    if not isinstance(table, dict):
        return None
    tops = {key: table.get(key) for key in ("top_cpu", "top_mem") if isinstance(table.get(key), list)}
    return json.dumps({"ts": snapshot.ts, **tops}) if tops else None


def _process(p: dict[str, Any]) -> str:
    """'postgres (pid 812, postgres): CPU 97.0 %, memory 12.5 %, 1.0 GiB'."""
    name = p["name"] if isinstance(p.get("name"), str) else "?"
    user = p["user"] if isinstance(p.get("user"), str) else "?"
    pid, cpu, mem, rss = (finite_or_none(p.get(k)) for k in ("pid", "cpu_percent", "mem_percent", "rss"))
    figures = []
    if cpu is not None:
        figures.append(f"CPU {cpu:.1f} %")
    if mem is not None:
        figures.append(f"memory {mem:.1f} %")
    if rss is not None:
        figures.append(binary(rss))
    who = f"pid {pid:.0f}, {user[:32]}" if pid is not None else user[:32]
    return f"{name[:60]} ({who}): {', '.join(figures)}"


def top_processes(probes: dict[str, Any], rule: str) -> list[str]:
    """'Top processes by CPU:' and one line per process, for the alerts processes explain."""
    if rule not in PROCESS_RANKING:
        return []
    key, by = PROCESS_RANKING[rule]
    rows = _table(probes.get("processes")).get(key)
    rows = [r for r in rows[:TOP] if isinstance(r, dict)] if isinstance(rows, list) else []
    if not rows:
        return []
    lines = [f"Top processes {by}:"]
    for p in rows:
        lines.append(f"- {_process(p)}")
    return lines


def load_line(probes: dict[str, Any]) -> list[str]:
    """'Load 7.92 / 5.10 / 3.01 (1, 5, 15 min) on 4 cores.'"""
    load, cores = _table(probes.get("load")), finite_or_none(_table(probes.get("cpu")).get("count"))
    averages = [finite_or_none(load.get(k)) for k in ("avg1", "avg5", "avg15")]
    if averages[0] is None:
        return []
    shown = " / ".join("?" if a is None else f"{a:.2f}" for a in averages)
    on = f" on {cores:.0f} core{'s' if cores != 1 else ''}" if cores else ""
    return [f"Load {shown} (1, 5, 15 min){on}."]


def _filesystem(probes: dict[str, Any], mount: str) -> dict[str, Any] | None:
    rows = probes.get("filesystems")
    for fs in rows if isinstance(rows, list) else []:
        if isinstance(fs, dict) and fs.get("mount") == mount:
            return fs
    return None


def fill_rate(store: Store, host: str, mount: str, capacity: float, now: float) -> float | None:
    """Bytes per second `mount` filled over the recent window (negative when it empties); None if unknown."""
    points = []
    for s in store.samples(host, now - FILL_WINDOW, now + 1):
        percent = finite_or_none((s.detail.get("disk.percent") or {}).get(mount))
        if percent is not None:
            points.append((s.ts, percent))
    if len(points) < 2 or points[-1][0] - points[0][0] < 60:
        return None  # too little history to tell a trend from noise
    (t0, p0), (t1, p1) = points[0], points[-1]
    return (p1 - p0) / 100 * capacity / (t1 - t0)


def disk_lines(store: Store, host: str, mount: str, probes: dict[str, Any], now: float) -> list[str]:
    """Space left on `mount` and when it will be full at the recent fill rate."""
    fs = _filesystem(probes, mount)
    if fs is None:
        return []
    free, used = finite_or_none(fs.get("free")), finite_or_none(fs.get("used"))
    if free is None or used is None:
        return []
    # percent is used / (used + free): the blocks reserved for root are not space a service can use.
    capacity = used + free
    lines = [f"{mount}: {binary(free)} left of {binary(capacity)}."]
    try:
        rate = fill_rate(store, host, mount, capacity, now)
    except StoreError:
        rate = None
    window = human_duration(FILL_WINDOW)
    if rate is None:
        lines.append("Not enough recent history to estimate when it will be full.")
    elif rate <= 0:
        lines.append(f"Not filling up over the last {window}.")
    else:
        lines.append(
            f"Filling at {binary(rate * 3600, '/h')} over the last {window}: "
            f"full in about {human_duration(free / rate)} at this rate."
        )
    return lines


def unit_lines(probes: dict[str, Any], unit: str, now: float) -> list[str]:
    """'nginx.service: failed (exit-code) since 2026-01-01 10:00 UTC, 12 min ago.'"""
    rows = _table(probes.get("units")).get("failed")
    for u in rows if isinstance(rows, list) else []:
        if isinstance(u, dict) and u.get("unit") == unit:
            state = "/".join(str(u.get(k)) for k in ("active", "sub") if isinstance(u.get(k), str))
            result = f" ({u['result'][:40]})" if isinstance(u.get("result"), str) else ""
            since = finite_or_none(u.get("since"))
            when = f" since {moment(since)}, {human_duration(now - since)} ago" if since is not None else ""
            return [f"{unit[:120]}: {state or 'failed'}{result}{when}.", f"See: journalctl -u {unit[:120]}"]
    return []


def oom_lines(probes: dict[str, Any]) -> list[str]:
    """The processes the kernel killed, when its log was readable."""
    victims = _table(probes.get("activity")).get("oom_victims")
    names = [v[:80] for v in victims if isinstance(v, str)] if isinstance(victims, list) else []
    return [f"Killed by the OOM killer: {', '.join(names)}."] if names else []


def inode_lines(probes: dict[str, Any], mount: str) -> list[str]:
    fs = _filesystem(probes, mount)
    inodes = finite_or_none(fs.get("inodes_percent")) if fs else None
    return [f"{mount}: {inodes:.1f} % of its inodes used (many small files); df -i {mount}"] if inodes else []


def evidence(
    store: Store, host: str, rule: str, now: float, probes: dict[str, Any] | None = None
) -> list[str]:
    """The context lines of one alert (empty when the snapshot has nothing that explains it)."""
    probes = latest_probes(store, host) if probes is None else probes
    metric, _, subject = rule.partition(":")
    if metric == "disk.percent":
        return disk_lines(store, host, subject, probes, now)
    if metric == "unit.failed":
        return unit_lines(probes, subject, now)
    if metric == "disk.inodes":
        return inode_lines(probes, subject) + disk_lines(store, host, subject, probes, now)[:1]
    if metric == "disk.readonly":
        return [f"{subject} is mounted read-only: writes fail. Check dmesg for I/O or filesystem errors."]
    if metric == "oom.kills":
        return oom_lines(probes) + top_processes(probes, metric)
    lines = load_line(probes) if metric == "load.1" else []
    return lines + top_processes(probes, metric)
