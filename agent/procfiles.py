"""/proc/stat, /proc/meminfo and /proc/vmstat read once per snapshot, and psutil's CPU, memory
and swap readings worked out from them exactly as psutil does.

Through psutil, a snapshot read /proc/meminfo twice (memory, swap), /proc/vmstat twice (swap's
page-in counters, which nothing here uses, and the activity probe) and /proc/stat twice (CPU
times, activity counters). The sampler clears these files at each snapshot; a probe that reads
one of them reads the kernel's text once for all.
"""

from __future__ import annotations

import os
from typing import Any

from agent.probes import CPU_FIELDS, CpuTimes, finite


class SnapshotFiles:
    """Texts of /proc files, each read at its first use after clear()."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._texts: dict[str, str] = {}
        self._meminfo: dict[str, int] | None = None

    def clear(self) -> None:
        """Forget every text: the next snapshot reads the kernel's anew."""
        self._texts.clear()
        self._meminfo = None

    def optional(self, name: str) -> str | None:
        """text(name), or None when the kernel lacks the file or hides it (as kernel.py reads)."""
        try:
            return self.text(name)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return None

    def meminfo(self) -> dict[str, int]:
        """/proc/meminfo's lines as psutil reads them: bytes by name (with its colon)."""
        if self._meminfo is None:
            self._meminfo = _meminfo(self.text("meminfo"))
        return self._meminfo

    def text(self, name: str) -> str:
        """The text of <proc>/<name> (OSError when it cannot be read)."""
        text = self._texts.get(name)
        if text is None:
            text = self._texts[name] = _read(f"{self.proc}/{name}").decode("ascii", "replace")
        return text


def _read(path: str) -> bytes:
    # os calls, not open(): a Python file object costs fstat, isatty (ioctl) and lseek on top.
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(text: str) -> CpuTimes:
    """CpuTimes from /proc/stat's cpuN lines, in seconds as psutil.cpu_times(percpu=True) has them."""
    per_core = []
    for line in text.splitlines()[1:]:  # the first line sums the cores
        if not line.startswith("cpu"):
            break  # the cores' lines come first; the interrupt line after them is long
        values = line.split()[1 : len(CPU_FIELDS) + 1]
        # An old kernel without steal time: psutil's tuple lacks the field, the probe counts 0.
        per_core.append(tuple(float(v) / TICKS for v in values) + (0.0,) * (len(CPU_FIELDS) - len(values)))
    if not per_core:
        raise ValueError("no cpu lines in /proc/stat")
    return CpuTimes(tuple(map(sum, zip(*per_core, strict=True))), per_core)


def _meminfo(text: str) -> dict[str, int]:
    found = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            found[fields[0]] = int(fields[1]) * 1024  # kB, as psutil counts every line
    return found


def _percent(used: int, total: int) -> float:
    return round(float(used) / total * 100, 1) if total else 0.0  # psutil's usage_percent


def memory(mems: dict[str, int]) -> dict[str, Any] | None:
    """probes.memory() from /proc/meminfo; None when psutil would estimate it (kernel < 3.14)."""
    total, free, available = mems["MemTotal:"], mems["MemFree:"], mems.get("MemAvailable:", 0)
    if available == 0:  # missing, or a kernel bug: psutil works it out from /proc/zoneinfo
        return None
    if available > total:
        available = free
    return {
        "total": total,
        "available": available,
        "used": total - available,
        "percent": finite(_percent(total - available, total)),
        # As psutil counts them on Linux: the page cache with the reclaimable slab, and buffers.
        "cached": mems.get("Cached:", 0) + mems.get("SReclaimable:", 0),
        "buffers": mems.get("Buffers:", 0),
    }


def swap(mems: dict[str, int]) -> dict[str, Any] | None:
    """probes.swap() from /proc/meminfo; None when it lacks swap lines (psutil asks sysinfo)."""
    if "SwapTotal:" not in mems or "SwapFree:" not in mems:
        return None
    total, free = mems["SwapTotal:"], mems["SwapFree:"]
    return {
        "total": total,
        "used": total - free,
        "free": free,
        "percent": finite(_percent(total - free, total)),
    }
