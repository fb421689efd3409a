"""Probes of the kernel's own counters and tables: /proc/vmstat, /proc/stat, /proc/pressure,
/proc/sys, the kernel log (OOM victims) and the clock discipline (adjtimex).

Each reads a path given as an argument (a fake tree in tests). A file the kernel does not
have (PSI off, conntrack not loaded) leaves its numbers out: absent is not an error.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
from collections.abc import Callable
from typing import Any, NamedTuple

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None


def _percent(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole > 0 else None


# --- counters: swap, OOM kills, context switches, interrupts, forks ----------------------------


class Counters(NamedTuple):
    """Monotonic kernel counters read at one instant; None where the kernel lacks one."""

    swap_in: int | None  # pages
    swap_out: int | None
    oom_kills: int | None
    context_switches: int | None
    interrupts: int | None
    forks: int | None


def _int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value.split()[0])
    except ValueError:
        return None


def _line_value(text: str, name: str) -> int | None:
    """The first number of the line `name ...` of `text` (which starts with a newline)."""
    start = text.find(f"\n{name} ")
    if start < 0:
        return None
    start += len(name) + 2
    end = text.find("\n", start)
    return _int(text[start : end if end >= 0 else len(text)])


def counters(proc: str = "/proc", read: Callable[[str], str | None] | None = None) -> Counters:
    """Read /proc/vmstat (pswpin, pswpout, oom_kill) and /proc/stat (ctxt, intr, processes).

    `read`: the text of a file of `proc` by name, or None (the snapshot's, read once for all).
    """
    read = read if read is not None else lambda name: _text(f"{proc}/{name}")
    # Three lines of each are wanted: /proc/vmstat has 180, /proc/stat an interrupt line of
    # thousands of numbers on a big machine. A search each, not a dictionary of every line.
    vm, stat = "\n" + (read("vmstat") or ""), "\n" + (read("stat") or "")
    return Counters(
        _line_value(vm, "pswpin"),
        _line_value(vm, "pswpout"),
        _line_value(vm, "oom_kill"),  # Linux >= 4.13
        _line_value(stat, "ctxt"),
        _line_value(stat, "intr"),  # its total comes before the per-IRQ counts
        _line_value(stat, "processes"),
    )


def _delta(now: int | None, before: int | None) -> int | None:
    if now is None or before is None or now < before:  # missing, or reset (never on Linux, but cheap)
        return None
    return now - before


def activity(
    before: Counters | None, now: Counters, elapsed: float, victims: list[str] | None = None
) -> dict[str, Any]:
    """Rates between two readings (swap in bytes/s) and the OOM kills since the first."""
    if before is None or elapsed <= 0:
        return {}
    result: dict[str, Any] = {}

    def rate(name: str, a: int | None, b: int | None, factor: int = 1) -> None:
        d = _delta(a, b)
        if d is not None:
            result[name] = round(d * factor / elapsed, 1)

    rate("swap_in_bps", now.swap_in, before.swap_in, PAGE_SIZE)
    rate("swap_out_bps", now.swap_out, before.swap_out, PAGE_SIZE)
    rate("context_switches_ps", now.context_switches, before.context_switches)
    rate("interrupts_ps", now.interrupts, before.interrupts)
    rate("forks_ps", now.forks, before.forks)
    kills = _delta(now.oom_kills, before.oom_kills)
    if kills is not None:
        result["oom_kills"] = kills
        if kills and victims:
            result["oom_victims"] = victims[-10:]
    return result


# --- OOM victims from the kernel log -----------------------------------------------------------

# "Out of memory: Killed process 4242 (stress) total-vm:..." (and "Memory cgroup out of memory: ...").
# A command name may hold parentheses itself: it ends before " total-vm" (or the record's end).
KILLED = re.compile(r"Killed process (\d+) \((.*?)\)(?= total-vm|,|$)")


def oom_victims(records: list[str]) -> list[str]:
    """'stress (pid 4242)' for each OOM kill in kernel log records."""
    found = []
    for record in records:
        match = KILLED.search(record)
        if match:
            found.append(f"{match.group(2)} (pid {match.group(1)})")
    return found


class KernelLog:
    """New records of /dev/kmsg since the previous read; nothing when it is not readable.

    /dev/kmsg is root's unless kernel.dmesg_restrict is 0: an agent without it reports
    OOM kills as a count only.
    """

    def __init__(self, path: str = "/dev/kmsg") -> None:
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            self._fd = None
            return
        os.lseek(self._fd, 0, os.SEEK_END)  # only what happens from now on

    def read(self) -> list[str]:
        """Records written since the previous call (each read of /dev/kmsg returns one)."""
        records: list[str] = []
        while self._fd is not None and len(records) < 10_000:
            try:
                data = os.read(self._fd, 8192)
            except BlockingIOError:
                break  # nothing more for now
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten before we read it: carry on after it
                    continue
                break
            if not data:
                break
            records.extend(data.decode("utf-8", "replace").splitlines())
        return records

    def close(self) -> None:
        """Close the log."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# --- pressure stall information ----------------------------------------------------------------


def pressure(proc: str = "/proc") -> dict[str, dict[str, float]] | None:
    """PSI of cpu, memory and io: share of time some (or all: full) tasks stalled, averaged over
    10 s, 60 s and 300 s; None on a kernel without PSI."""
    result = {}
    for resource in ("cpu", "memory", "io"):
        text = _text(f"{proc}/pressure/{resource}")
        if text is None:
            continue
        values = {}
        for line in text.splitlines():
            kind, *pairs = line.split()
            for pair in pairs:
                key, _, value = pair.partition("=")
                if key in ("avg10", "avg60", "avg300"):
                    values[f"{kind}{key[3:]}"] = float(value)
        result[resource] = values
    return result or None


# --- kernel tables: file descriptors, PIDs, conntrack ------------------------------------------


def limits(proc: str = "/proc") -> dict[str, Any]:
    """Use of the kernel's fixed-size tables: file handles, PIDs (threads count), conntrack."""
    result: dict[str, Any] = {}
    file_nr = (_text(f"{proc}/sys/fs/file-nr") or "").split()
    if len(file_nr) == 3:
        # allocated, free (always 0 since 2.6), maximum
        used, maximum = int(file_nr[0]) - int(file_nr[1]), int(file_nr[2])
        result.update(fds=used, fds_max=maximum, fds_percent=_percent(used, maximum))
    loadavg = (_text(f"{proc}/loadavg") or "").split()
    pid_max = _int(_text(f"{proc}/sys/kernel/pid_max"))
    if len(loadavg) >= 4 and "/" in loadavg[3]:
        threads = int(loadavg[3].partition("/")[2])  # every task (thread) holds a PID
        result["threads"] = threads
        if pid_max:
            result.update(pid_max=pid_max, pids_percent=_percent(threads, pid_max))
    count = _int(_text(f"{proc}/sys/net/netfilter/nf_conntrack_count"))
    conntrack_max = _int(_text(f"{proc}/sys/net/netfilter/nf_conntrack_max"))
    if count is not None and conntrack_max:
        result.update(
            conntrack=count, conntrack_max=conntrack_max, conntrack_percent=_percent(count, conntrack_max)
        )
    return result


# --- clock synchronisation ---------------------------------------------------------------------


class Timex(ctypes.Structure):
    """struct timex of <sys/timex.h> (x86-64 and other LP64 Linux)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


STA_UNSYNC = 0x0040
STA_NANO = 0x2000
TIME_ERROR = 5
# The kernel's own test (ntp_synced(), what timedatectl's "System clock synchronized" shows).
MAX_ERROR_US = 16_000_000


class ClockState(NamedTuple):
    """What adjtimex(2) reports, as read-only query (modes 0)."""

    state: int  # the return value: TIME_OK ... TIME_ERROR
    status: int
    offset: int  # microseconds, or nanoseconds with STA_NANO
    maxerror: int  # microseconds


@functools.lru_cache(maxsize=1)
def libc() -> Any:
    # The running program's symbols include libc's; ctypes.util.find_library would run ldconfig.
    return ctypes.CDLL(None, use_errno=True)


def trim_heap() -> None:
    """Give the free pages inside the C heap back to the system (glibc's malloc_trim).

    Start-up leaves holes in the heap that glibc keeps (every module's bytecode is read, then
    freed): half a megabyte of a fresh agent's resident memory. The daemon calls this once, after
    its first snapshot; on a C library without malloc_trim (musl) it does nothing.
    """
    trim = getattr(libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def adjtimex() -> ClockState | None:
    """The kernel clock's discipline state, queried without changing it; None without adjtimex."""
    try:
        call = libc().adjtimex
    except AttributeError:  # not glibc or musl
        return None
    tx = Timex()
    state = call(ctypes.byref(tx))
    if state < 0:
        return None
    return ClockState(state, tx.status, tx.offset, tx.maxerror)


def clock(state: ClockState | None) -> dict[str, Any] | None:
    """Whether NTP keeps the clock synchronised (1: not), and the offset it is correcting, seconds."""
    if state is None:
        return None
    unsynced = state.state == TIME_ERROR or bool(state.status & STA_UNSYNC) or state.maxerror >= MAX_ERROR_US
    offset = state.offset / (1e9 if state.status & STA_NANO else 1e6)
    return {
        "unsynchronised": 1.0 if unsynced else 0.0,
        "offset": round(abs(offset), 6),
        "max_error": round(state.maxerror / 1e6, 6),
    }
