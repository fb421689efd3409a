"""One function per probe: each reads its data source and returns plain, msgpack-able values.

The data source is an argument (the psutil module by default, a fake in tests), so a
test can say "with this /proc/meminfo, memory is 37.5 %". The shapes follow
`osmon.wire.PROBE_SHAPES`. Units: bytes, percent 0-100, seconds, Unix UTC seconds.

Probes that need two readings (CPU percentages, process CPU, I/O rates) are split in
a reading and a pure function of two readings; `agent.sampler.Sampler` keeps the
previous reading between samples.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import operator
import os
import pwd
import resource
import socket
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import psutil

from agent import mounts
from agent.pids import PidLister, full_listing
from osmon.numbers import finite_or_none

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CMDLINE_CHARS = 200
IMAGE_FSTYPES = mounts.IMAGE_FSTYPES
PRIVATE_MOUNTS = mounts.PRIVATE_MOUNTS

# Loop devices back snaps and image files, ram/zram are memory: none of it is disk traffic.
NOT_DISKS = ("loop", "ram", "zram")
# One end of every container's network pair; its traffic is already counted on the bridge.
NOT_INTERFACES = ("veth",)


def finite(value: Any) -> float | None:
    """`value` as a float, or None when it is missing, NaN or infinite."""
    return finite_or_none(value)


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _percent(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole > 0 else None


# --- CPU ---------------------------------------------------------------------------------------


class CpuTimes(NamedTuple):
    """One reading of the CPU time counters (seconds, in `CPU_FIELDS` order): machine and each core."""

    total: tuple[float, ...]
    per_core: list[tuple[float, ...]]


# guest and guest_nice are already counted inside user and nice.
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_IDLE, _IOWAIT = CPU_FIELDS.index("idle"), CPU_FIELDS.index("iowait")


def cpu_times(ps: Any = psutil) -> CpuTimes:
    """Read the CPU time counters."""
    # The machine's total is the sum of its cores: one read of /proc/stat instead of two.
    per_core = [tuple(getattr(t, f, 0.0) for f in CPU_FIELDS) for t in ps.cpu_times(percpu=True)]
    return CpuTimes(tuple(map(sum, zip(*per_core, strict=True))), per_core)


def _cpu_deltas(before: tuple[float, ...], after: tuple[float, ...]) -> list[float]:
    # Linux's iowait counter may go backwards: clamp every delta at zero, as psutil does.
    return [max(0.0, a - b) for a, b in zip(after, before, strict=True)]


def _busy(deltas: list[float]) -> float | None:
    total = sum(deltas)
    return _percent(total - deltas[_IDLE] - deltas[_IOWAIT], total)


def cpu(before: CpuTimes | None, after: CpuTimes) -> dict[str, Any]:
    """CPU use between two readings, in percent of the time that passed (None if none did)."""
    count = len(after.per_core)
    if before is None:
        empty = dict.fromkeys(("percent", "user", "nice", "system", "iowait", "steal"))
        return {**empty, "per_core": [None] * count, "count": count}
    deltas = _cpu_deltas(before.total, after.total)
    result: dict[str, Any] = {"percent": _busy(deltas)}
    for field in ("user", "nice", "system", "iowait", "steal"):
        result[field] = _percent(deltas[CPU_FIELDS.index(field)], sum(deltas))
    if len(before.per_core) == count:
        pairs = zip(before.per_core, after.per_core, strict=True)
        result["per_core"] = [_busy(_cpu_deltas(b, a)) for b, a in pairs]
    else:  # a core went on- or offline: indexes no longer match
        result["per_core"] = [None] * count
    result["count"] = count
    return result


# --- load, memory, swap ------------------------------------------------------------------------


def load(ps: Any = psutil) -> dict[str, float | None]:
    """Load average over 1, 5 and 15 minutes."""
    avg1, avg5, avg15 = (finite(v) for v in ps.getloadavg())
    # The kernel's fixed-point averages print as 1.43701171875: two decimals are all they mean.
    return {"avg1": _round(avg1), "avg5": _round(avg5), "avg15": _round(avg15)}


def memory(ps: Any = psutil) -> dict[str, Any]:
    """Physical memory; used and percent count all but the available memory (free + reclaimable).

    Cached (page cache and reclaimable slab, as psutil counts it on Linux) and buffers are part of
    the available memory; psutil has them on Linux and the BSDs only: None elsewhere.
    """
    mem = ps.virtual_memory()
    return {
        "total": mem.total,
        "available": mem.available,
        "used": mem.used,
        "percent": finite(mem.percent),
        "cached": getattr(mem, "cached", None),
        "buffers": getattr(mem, "buffers", None),
    }


def swap(ps: Any = psutil) -> dict[str, Any]:
    """Swap space."""
    sw = ps.swap_memory()
    return {"total": sw.total, "used": sw.used, "free": sw.free, "percent": finite(sw.percent)}


# --- filesystems -------------------------------------------------------------------------------


def filesystems(ps: Any = psutil, **options: Any) -> list[dict[str, Any]]:
    """Usage of every mounted filesystem worth reporting: see agent.mounts.filesystems."""
    return mounts.filesystems(ps, **options)


# --- disk and network I/O ----------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)  # a device name does not turn from physical to virtual
def _virtual(sys_path: str, kind: str, name: str) -> bool:
    return os.path.exists(f"{sys_path}/devices/virtual/{kind}/{name}")


def disk_io(ps: Any = psutil, sys_path: str = "/sys") -> dict[str, Any]:
    """Bytes read and written per block device since boot; the totals count physical disks only."""
    whole_disks = set(os.listdir(f"{sys_path}/block"))  # partitions are not listed there
    counters = ps.disk_io_counters(perdisk=True, nowrap=True) or {}
    devices, read, written = {}, 0, 0
    ops, io_ms, busy_ms = 0, 0, {}
    for name, c in counters.items():
        if name not in whole_disks or name.startswith(NOT_DISKS):
            continue
        devices[name] = {"read_bytes": c.read_bytes, "write_bytes": c.write_bytes}
        # LVM and md devices are virtual and stacked on physical disks: count their bytes once.
        if not _virtual(sys_path, "block", name):
            read += c.read_bytes
            written += c.write_bytes
            # Completed I/Os, the milliseconds they took, and the time each disk was busy
            # (iostat's r/s + w/s, await and %util come from these).
            ops += getattr(c, "read_count", 0) + getattr(c, "write_count", 0)
            io_ms += getattr(c, "read_time", 0) + getattr(c, "write_time", 0)
            busy_ms[name] = getattr(c, "busy_time", 0)
    return {
        "read_bytes": read,
        "write_bytes": written,
        "ops": ops,
        "io_ms": io_ms,
        "busy_ms": busy_ms,
        "devices": devices,
    }


def disk_ops(result: dict[str, Any], before: dict[str, Any] | None, elapsed: float) -> dict[str, Any]:
    """IOPS, average I/O time (seconds) and the busiest disk's busy time (%) between two disk_io results."""
    if before is None or elapsed <= 0:
        return {}
    ops, io_ms = result["ops"] - before["ops"], result["io_ms"] - before["io_ms"]
    if ops < 0 or io_ms < 0:  # a disk went away, or a counter was reset: no figure this time
        return {}
    busy = [
        (ms - before["busy_ms"][name]) / elapsed / 10  # ms per second -> percent
        for name, ms in result["busy_ms"].items()
        if name in before["busy_ms"] and ms >= before["busy_ms"][name]
    ]
    found: dict[str, Any] = {
        "iops": round(ops / elapsed, 1),
        "await": round(io_ms / ops / 1000, 5) if ops else 0.0,
    }
    if busy:
        found["busy_percent"] = round(min(100.0, max(busy)), 1)
    return found


def net_io(ps: Any = psutil, sys_path: str = "/sys") -> dict[str, Any]:
    """Bytes received and sent per interface since boot (no loopback); totals are what crossed a NIC."""
    counters = ps.net_io_counters(pernic=True, nowrap=True) or {}
    read_stats = getattr(ps, "net_if_stats", None)
    return net_io_of(counters, lambda _names: read_stats() if read_stats is not None else {}, sys_path)


def net_io_of(
    counters: dict[str, Any], link_stats: Callable[[list[str]], dict[str, Any]], sys_path: str = "/sys"
) -> dict[str, Any]:
    """net_io from psutil-shaped counters (snetio) and link stats (snicstats) of the names asked for."""
    interfaces = {
        name: {"rx_bytes": c.bytes_recv, "tx_bytes": c.bytes_sent}
        for name, c in counters.items()
        if name != "lo" and not name.startswith(NOT_INTERFACES)
    }
    # Bridges, bonds, VLANs and tunnels carry traffic that also crosses a physical interface.
    physical = [n for n in interfaces if not _virtual(sys_path, "net", n)] or list(interfaces)
    stats = link_stats(list(interfaces))
    for name, entry in interfaces.items():
        c = counters[name]
        entry["errors"] = getattr(c, "errin", 0) + getattr(c, "errout", 0)
        entry["drops"] = getattr(c, "dropin", 0) + getattr(c, "dropout", 0)
        if name in stats:
            entry["up"] = bool(stats[name].isup)
            entry["speed"] = stats[name].speed or None  # Mbit/s; 0: the driver does not say
    return {
        "rx_bytes": sum(interfaces[n]["rx_bytes"] for n in physical),
        "tx_bytes": sum(interfaces[n]["tx_bytes"] for n in physical),
        "errors": sum(interfaces[n]["errors"] for n in physical),
        "drops": sum(interfaces[n]["drops"] for n in physical),
        "interfaces": interfaces,
    }


def link_changes(result: dict[str, Any], seen_up: set[str]) -> None:
    """Mark `went_down` the interfaces down now that were up before (`seen_up`, updated)."""
    for name, entry in result["interfaces"].items():
        if entry.get("up"):
            seen_up.add(name)
        elif entry.get("up") is False and name in seen_up:
            entry["went_down"] = True


# --- processes ---------------------------------------------------------------------------------


class ProcStat(NamedTuple):
    """What one read of /proc/<pid>/stat tells about a process."""

    pid: int
    name: str
    start: int  # clock ticks after boot: tells a reused pid from the process that had it before
    cpu: float  # user + system seconds
    rss: int  # bytes
    running: bool = False  # state R: running or runnable


def _read(path: str, limit: int = 4096) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # the process exited, or /proc hides it from us
        return None
    try:
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


STAT_BYTES = 1024  # enough for the 24 first fields of /proc/<pid>/stat
# Stat files kept open at most: a busy host's 1,000s of processes are re-read, not reopened
# (reopening costs about 1.7 us more per process); osmon-agent raises its descriptor limit.
STAT_FILES = 4096


class StatFiles:
    """/proc/<pid>/stat files kept open between scans: re-reading one costs a third of reopening it."""

    def __init__(self, limit: int | None = None, pids: PidLister | None = None) -> None:
        self._pids = pids if pids is not None else PidLister()
        if limit is None:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            soft = 4096 if soft == resource.RLIM_INFINITY else soft
            # Leave most descriptors to the rest of the agent; the kernel keeps a page per open file.
            limit = min(STAT_FILES, soft // 4)
        self.limit = limit
        self._open = 0  # files kept open
        # Per pid as /proc lists it: its kept file (or None), the last bytes read and what they
        # said. Most processes sleep, and their stat line does not change between scans: a bytes
        # comparison, not a parse, and the same ProcStat object (which process_cpu counts as idle).
        self._known: dict[str, tuple[int | None, bytes, ProcStat]] = {}
        # Pids whose ProcStat is not the previous scan's object (new, or a changed stat line):
        # the only ones that can have used CPU since. None when the previous scan did not finish
        # (it may have replaced objects without reporting them): then every pid must be compared.
        self.changed: list[int] | None = None
        self._finished = False

    def scan(self, proc: int) -> dict[int, ProcStat]:
        """Every process of the open /proc directory `proc`, from one read of its stat each.

        One loop, no call per process. The floor is the kernel's: formatting a stat file costs it
        about 4 us when its caches are cold, as they are once per interval; the loop adds under 1.
        /proc is listed in full only now and then (agent.pids): in between, the known processes
        are re-read, in the order they were found, and those started since are added after them.
        """
        changed: list[int] = []
        after_finished, self._finished, self.changed = self._finished, False, None
        new = self._pids.new_pids(proc, self._known, after_finished)
        table = self._list_all(proc, changed) if new is None else self._reread(proc, new, changed)
        self._finished = True
        self.changed = changed if after_finished else None
        return table

    def _list_all(self, proc: int, changed: list[int]) -> dict[int, ProcStat]:
        """Every process /proc lists, the known ones re-read."""
        known, pread = self._known, os.pread
        seen: dict[str, tuple[int | None, bytes, ProcStat]] = {}
        table: dict[int, ProcStat] = {}
        try:
            for pid in full_listing(proc):  # in pid order: ties rank stably
                entry = known.pop(pid, None)
                if entry is not None and entry[0] is not None:
                    try:
                        data = pread(entry[0], STAT_BYTES, 0)
                    except OSError:  # that process exited: the pid may already belong to a new one
                        self._close(entry[0])
                        entry = None
                    else:
                        seen[pid] = entry
                        if data != entry[1]:
                            entry = seen[pid] = (entry[0], data, _parse_stat(int(pid), data))
                            changed.append(entry[2].pid)
                        table[entry[2].pid] = entry[2]
                        continue
                elif entry is None and not pid.isdigit():
                    continue
                # Not seen before, not kept open, or its file went with its process: open it.
                before, entry = entry, self._first(proc, pid, entry)
                if entry is not None:
                    seen[pid] = entry
                    table[entry[2].pid] = entry[2]
                    if before is None or before[2] is not entry[2]:
                        changed.append(entry[2].pid)
        except BaseException:
            known.update(seen)  # every open file stays known, for the next scan or close()
            raise
        for fd, _, _ in known.values():  # processes gone since the previous scan
            if fd is not None:
                self._close(fd)
        self._known = seen
        return table

    def _reread(self, proc: int, new: list[str], changed: list[int]) -> dict[int, ProcStat]:
        """The known processes re-read in place, in their order, then the `new` pids opened.

        No listing and no new dictionary of them: only a changed stat line is stored.
        """
        known, pread = self._known, os.pread
        table: dict[int, ProcStat] = {}
        again: list[tuple[str, tuple[int | None, bytes, ProcStat] | None]] = []
        for pid, entry in known.items():
            fd = entry[0]
            if fd is None:  # not kept open: opened again below
                again.append((pid, entry))
                continue
            try:
                data = pread(fd, STAT_BYTES, 0)
            except OSError:  # that process exited: the pid may already belong to a new one
                again.append((pid, None))
                continue
            if data != entry[1]:  # a value replaced, not a key added: the loop goes on
                entry = known[pid] = (fd, data, _parse_stat(int(pid), data))
                changed.append(entry[2].pid)
            table[entry[2].pid] = entry[2]
        for pid, before in again:
            gone = known.pop(pid)
            if before is None and gone[0] is not None:
                self._close(gone[0])
            self._add(proc, pid, before, table, changed)
        for pid in new:
            self._add(proc, pid, None, table, changed)
        return table

    def _add(
        self,
        proc: int,
        pid: str,
        before: tuple[int | None, bytes, ProcStat] | None,
        table: dict[int, ProcStat],
        changed: list[int],
    ) -> None:
        entry = self._first(proc, pid, before)
        if entry is not None:
            self._known[pid] = entry
            table[entry[2].pid] = entry[2]
            if before is None or before[2] is not entry[2]:
                changed.append(entry[2].pid)

    def _first(
        self, proc: int, pid: str, before: tuple[int | None, bytes, ProcStat] | None
    ) -> tuple[int | None, bytes, ProcStat] | None:
        """Open and read <pid>/stat; keep the file open while under the limit."""
        try:
            fd = os.open(f"{pid}/stat", os.O_RDONLY, dir_fd=proc)
        except OSError:  # exited meanwhile, or /proc hides it from us
            return None
        try:
            data = os.pread(fd, STAT_BYTES, 0)
        except OSError:
            data = b""
        keep = bool(data) and self._open < self.limit
        if keep:
            self._open += 1
        else:
            os.close(fd)
        if not data:
            return None
        try:
            stat = before[2] if before is not None and before[1] == data else _parse_stat(int(pid), data)
        except ValueError:
            if keep:
                self._close(fd)
            raise
        return (fd if keep else None, data, stat)

    def _close(self, fd: int) -> None:
        os.close(fd)
        self._open -= 1

    def close(self) -> None:
        """Close every file."""
        for fd, _, _ in self._known.values():
            if fd is not None:
                self._close(fd)
        self._known = {}


def _parse_stat(pid: int, data: bytes) -> ProcStat:
    close = data.rfind(b")")  # the name may itself contain spaces and parentheses
    fields = data[close + 2 :].split(None, 22)
    if close < 0 or len(fields) < 22:
        raise ValueError(f"malformed /proc/{pid}/stat")
    name = data[data.find(b"(") + 1 : close].decode("utf-8", "replace")
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return ProcStat(pid, name, int(fields[19]), cpu, int(fields[21]) * PAGE_SIZE, fields[0] == b"R")


def process_table(ps: Any = psutil, files: StatFiles | None = None) -> dict[int, ProcStat]:
    """Every process, from one read of /proc/<pid>/stat each (psutil.process_iter costs 5-8x more)."""
    files = files if files is not None else StatFiles(limit=0)
    # Paths relative to an open /proc save the kernel a lookup per process.
    proc = os.open(ps.PROCFS_PATH, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return files.scan(proc)
    finally:
        os.close(proc)


def process_cpu(
    table: dict[int, ProcStat], before: dict[int, ProcStat], changed: list[int] | None = None
) -> dict[int, float]:
    """CPU seconds used between two tables, by each process that used any (most used none).

    `changed`: the pids of `table` whose entry is not `before`'s object (StatFiles.changed, when
    `before` is the previous scan's table); the others used nothing, and are not looked at.
    """
    result = {}
    get = before.get
    for pid in table if changed is None else changed:
        now, then = table[pid], get(pid)
        if then is now:  # the same stat line as last time (StatFiles): nothing used
            continue
        # A process absent before (or a new one reusing the pid) used all its CPU time since then.
        used = now.cpu - then.cpu if then is not None and then.start == now.start else now.cpu
        if used > 0:
            result[pid] = used
    return result


@functools.lru_cache(maxsize=512)
def user_name(uid: int) -> str:
    """The login name of `uid`, or the number when it has none (as ps shows it)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _effective_uid(status: bytes | None) -> int | None:
    text = b"\n" + (status or b"")  # a name in status has its newlines escaped: a line starts here
    start = text.find(b"\nUid:")
    if start < 0:
        return None
    end = text.find(b"\n", start + 1)
    # real, effective, saved, fs: top and ps show the effective one
    return int(text[start + 5 : end if end > 0 else len(text)].split()[1])


def _details(proc: str, p: ProcStat, names: Callable[[int], str]) -> dict[str, Any]:
    argv = (_read(f"{proc}/{p.pid}/cmdline") or b"").rstrip(b"\0").split(b"\0")
    cmdline = b" ".join(argv).decode("utf-8", "replace")
    name = p.name
    # The kernel cuts names at 15 characters; the program path usually holds the whole name.
    program = os.path.basename(argv[0].decode("utf-8", "replace"))
    if len(name) >= 15 and program.startswith(name):
        name = program
    uid = _effective_uid(_read(f"{proc}/{p.pid}/status"))
    return {"name": name, "user": None if uid is None else names(uid), "cmdline": cmdline[:CMDLINE_CHARS]}


def _top_cpu(table: dict[int, ProcStat], busy: dict[int, float], top_n: int) -> list[ProcStat]:
    """heapq.nlargest(top_n, table.values(), key=CPU used) without a key call for each idle process.

    nlargest is stable (ties keep table order) and no figure is negative, so the busy processes
    ranked, then idle ones in table order, are the same list.
    """
    ranked = heapq.nlargest(top_n, (table[pid] for pid in busy), key=lambda p: busy[p.pid])
    if len(ranked) < top_n:
        ranked += itertools.islice((p for p in table.values() if p.pid not in busy), top_n - len(ranked))
    return ranked


_RSS, _RUNNING = operator.attrgetter("rss"), operator.attrgetter("running")


def processes(
    table: dict[int, ProcStat],
    before: dict[int, ProcStat] | None,
    elapsed: float,
    mem_total: int | None,
    ps: Any = psutil,
    top_n: int = 5,
    names: Callable[[int], str] = user_name,
    changed: list[int] | None = None,
) -> dict[str, Any]:
    """Process count, how many run, and the top N by CPU (100 % = one core, as in top) and by memory.

    `changed`: see process_cpu.
    """
    rated = before is not None and elapsed > 0
    busy = process_cpu(table, before, changed) if before is not None and rated else {}
    details: dict[int, dict[str, Any]] = {}

    def describe(p: ProcStat) -> dict[str, Any]:
        if p.pid not in details:  # user and command line are read for the winners only
            details[p.pid] = _details(ps.PROCFS_PATH, p, names)
        return {
            "pid": p.pid,
            **details[p.pid],
            "cpu_percent": round(100.0 * busy.get(p.pid, 0.0) / elapsed, 2) if rated else None,
            "mem_percent": _percent(p.rss, mem_total or 0),
            "rss": p.rss,
        }

    by_cpu = _top_cpu(table, busy, top_n) if rated else []
    by_mem = heapq.nlargest(top_n, table.values(), key=_RSS)
    return {
        "count": len(table),
        "running": sum(map(_RUNNING, table.values())),
        "top_cpu": [describe(p) for p in by_cpu],
        "top_mem": [describe(p) for p in by_mem],
    }


# --- users, uptime, system ---------------------------------------------------------------------


# What psutil puts in `host` for a session without a remote end (a console login).
NO_REMOTE_HOST = ("", "localhost", ":0", ":0.0")


def _alive(pid: int | None, proc: str) -> bool:
    # utmp keeps the record of a session whose process died without logging out (a crash, a
    # killed sshd child); `who` checks the pid too. No pid recorded: trust the record.
    return not pid or os.path.exists(f"{proc}/{pid}")


def users(ps: Any = psutil) -> list[dict[str, Any]]:
    """Logged-in sessions, as `who` lists them: live ones only, console logins with no remote host."""
    proc = getattr(ps, "PROCFS_PATH", "/proc")
    return [
        {
            "name": u.name,
            "terminal": u.terminal,
            "host": None if u.host in NO_REMOTE_HOST else u.host,
            "since": finite(u.started),
        }
        for u in ps.users()
        if _alive(getattr(u, "pid", None), proc)
    ]


def uptime(ps: Any = psutil, now: Callable[[], float] = time.time) -> dict[str, float | None]:
    """Seconds since boot, and the boot instant."""
    # /proc/uptime is 20 bytes; psutil.boot_time() reads all of /proc/stat for one line.
    with open(f"{ps.PROCFS_PATH}/uptime", "rb") as f:
        seconds = float(f.read().split()[0])
    return {"boot_time": finite(round(now() - seconds, 1)), "seconds": finite(seconds)}


def _os_name(os_release: str) -> str | None:
    fields = {}
    try:
        with open(os_release, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep:
                    fields[key] = value.strip("\"'")
    except OSError:
        return None
    return fields.get("PRETTY_NAME") or fields.get("NAME")


def system(os_release: str = "/etc/os-release", uname: Callable[[], Any] = os.uname) -> dict[str, Any]:
    """Distribution, kernel release, machine architecture and host name."""
    u = uname()
    name = _os_name(os_release) or _os_name("/usr/lib/os-release")
    return {"os": name or u.sysname, "kernel": u.release, "arch": u.machine, "hostname": socket.gethostname()}


# --- temperatures and GPUs (only where the host has them) --------------------------------------


def temperatures(ps: Any = psutil) -> dict[str, list[dict[str, Any]]] | None:
    """Temperature sensors in degrees Celsius, or None when the host exposes none."""
    read = getattr(ps, "sensors_temperatures", None)
    sensors = read() if read is not None else None
    if not sensors:
        return None
    return {
        sensor: [
            {
                "label": t.label or None,
                "current": finite(t.current),
                "high": finite(t.high),
                "critical": finite(t.critical),
            }
            for t in entries
        ]
        for sensor, entries in sensors.items()
    }


def gpus(nvml: Any) -> list[dict[str, Any]] | None:
    """Load, memory and temperature of each NVIDIA GPU, or None without NVML."""
    if nvml is None:
        return None
    result = []
    for index in range(nvml.count()):
        used, total = nvml.memory(index)
        result.append(
            {
                "index": index,
                "name": nvml.name(index),
                "util_percent": nvml.utilization(index),
                "mem_used": used,
                "mem_total": total,
                "temperature": nvml.temperature(index),
            }
        )
    return result or None
