"""Which processes /proc has: a full listing now and then, and in between only the pids the
kernel handed out since the previous scan.

Listing /proc costs the kernel 0.7 to 1 us per process (a dentry looked up for each), a
quarter of the whole scan's cost per process (its stat file read cold is most of the rest).
Between two scans of a host with 1,000 processes a handful are new. The kernel hands pids out in increasing order, from a cursor
(the last field of /proc/loadavg) up to pid_max, then again from the bottom; /proc lists pid N
at directory position TGID_OFFSET + N, threads never. So the processes started since the
previous scan are listed from the previous cursor on, and the others are known already: each
known one is re-read, and one that exited is gone with its stat file (its pid is opened again
by number, in case a new process took it).

A full listing is made at the first scan, after a scan that did not finish, when the cursor
went back (the pids wrapped around), when /proc is not our pid namespace's, and every
FULL_LISTING seconds: a pid can also be handed out off the cursor (clone3's set_tid, which
checkpoint/restore tools use), and such a process waits at most that long to be listed.
"""

from __future__ import annotations

import ctypes
import os
import struct
import time
from collections.abc import Callable, Collection
from typing import Any

from agent import kernel

# fs/proc/base.c: the positions below are /proc's own entries, then "self" and "thread-self".
TGID_OFFSET = 258
FULL_LISTING = 60.0  # seconds between two full listings
DIRENT_BUFFER = 2048  # bytes: about 60 pids a read, so a listing stops soon after the cursor
_DIRENT = struct.Struct("=QqHB")  # linux_dirent64: inode, next offset, record length, type


def last_pid(proc: int) -> int | None:
    """The last pid the kernel handed out in our namespace (the last field of /proc/loadavg)."""
    try:
        fd = os.open("loadavg", os.O_RDONLY, dir_fd=proc)
    except OSError:
        return None
    try:
        fields = os.read(fd, 128).split()
    finally:
        os.close(fd)
    return int(fields[4]) if len(fields) == 5 and fields[4].isdigit() else None


def _getdents() -> Callable[..., int] | None:
    # glibc >= 2.30; without it (musl), PidLister lists all of /proc at every scan.
    return getattr(kernel.libc(), "getdents64", None)


def listed_after(proc: int, after: int, until: int) -> list[str]:
    """The pids /proc lists above `after` and up to `until`, in increasing order.

    Read in small pieces, so that the kernel stops soon after `until`: after a wrap-around, the
    processes older than it have higher pids.
    """
    getdents = _getdents()
    if getdents is None:
        os.lseek(proc, 0, os.SEEK_SET)
        return [name for name in os.listdir(proc) if name.isdigit() and after < int(name) <= until]
    buffer = ctypes.create_string_buffer(DIRENT_BUFFER)
    os.lseek(proc, TGID_OFFSET + after, os.SEEK_SET)  # one before: Linux < 3.17 had one entry less
    try:
        return _read_after(getdents, proc, buffer, after, until)
    finally:
        os.lseek(proc, 0, os.SEEK_SET)  # a listing of the same descriptor starts from the top


def _read_after(getdents: Callable[..., int], proc: int, buffer: Any, after: int, until: int) -> list[str]:
    found: list[str] = []
    while True:
        size = getdents(proc, buffer, DIRENT_BUFFER)
        if size < 0:
            raise OSError(ctypes.get_errno(), "getdents64 of /proc failed")
        if size == 0:
            return found
        data, at = buffer.raw[:size], 0
        while at < size:
            _, _, length, _ = _DIRENT.unpack_from(data, at)
            name = data[at + _DIRENT.size : at + length].split(b"\0", 1)[0].decode()
            at += length
            if not name.isdigit():
                continue
            pid = int(name)
            if pid > until:
                return found
            if pid > after:
                found.append(name)


class PidLister:
    """The pid names a scan of /proc looks at: all listed, or the known ones and the new ones."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, every: float = FULL_LISTING) -> None:
        self._clock, self._every = clock, every
        self._cursor: int | None = None
        self._next_full = 0.0
        self._usable = _getdents() is not None
        self.full_listings = 0  # how many scans listed all of /proc

    def new_pids(self, proc: int, known: Collection[str], complete: bool) -> list[str] | None:
        """The pids (names) started since the previous call and not in `known`; None when /proc
        is to be listed in full (full_listing()).

        `complete`: `known` holds every process of the previous call's answer (its scan finished).
        """
        cursor = last_pid(proc) if self._usable else None
        before, self._cursor = self._cursor, cursor
        now = self._clock()
        if cursor is None or before is None or cursor < before or not complete or now >= self._next_full:
            self._next_full = now + self._every
            self.full_listings += 1
            if cursor is not None and not _our_namespace(proc):
                self._usable, self._cursor = False, None
            return None
        if cursor == before:
            return []
        return [name for name in listed_after(proc, before, cursor) if name not in known]


def full_listing(proc: int) -> list[str]:
    """Every name /proc lists, pids in increasing order after its own entries."""
    os.lseek(proc, 0, os.SEEK_SET)  # os.listdir of a descriptor reads on from where it is
    return os.listdir(proc)


def _our_namespace(proc: int) -> bool:
    # /proc/loadavg's cursor is our pid namespace's: it only tells about a /proc of that namespace.
    try:
        return os.readlink("self", dir_fd=proc) == str(os.getpid())
    except OSError:
        return False
