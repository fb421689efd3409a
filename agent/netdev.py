"""Network counters from /proc/net/dev and link state from /sys/class/net: psutil's values, cheaper.

psutil.net_if_stats() opens three sockets per interface for three ioctls (MTU, flags, ethtool
speed) and re-reads /proc/net/dev for the names; net_io_counters() reads it once more. Here the
snapshot's /proc/net/dev text (agent.procfiles.SnapshotFiles) gives the counters, and two sysfs
files per interface, kept open and re-read, give what the agent sends of the link: whether it
runs and its speed. The ethtool ioctl is left for the case sysfs cannot answer (a down link).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import operator
import os
import socket
import struct
from collections.abc import Callable
from typing import NamedTuple


class NetIO(NamedTuple):
    """The fields of psutil's snetio that net_io reads."""

    bytes_sent: int
    bytes_recv: int
    errin: int
    errout: int
    dropin: int
    dropout: int


class IfStats(NamedTuple):
    """The fields of psutil's snicstats that net_io reads."""

    isup: bool
    speed: int  # Mbit/s, 0 when unknown


def counters(text: str) -> dict[str, tuple[int, ...]]:
    """/proc/net/dev's counters by interface, in NetIO's order (as psutil's _pslinux parses them)."""
    found: dict[str, tuple[int, ...]] = {}
    for line in text.splitlines()[2:]:  # two header lines
        colon = line.rfind(":")
        if colon <= 0:
            continue
        fields = line[colon + 1 :].split()
        # received: bytes packets errs drop ...; sent, from the 9th: bytes packets errs drop ...
        found[line[:colon].strip()] = (
            int(fields[8]),
            int(fields[0]),
            int(fields[2]),
            int(fields[10]),
            int(fields[3]),
            int(fields[11]),
        )
    return found


class NoWrap:
    """Counters that never go down, as psutil's nowrap=True makes them.

    A counter below its previous reading (a 32-bit counter wrapped, or the interface was made
    anew under the same name) is added to from then on; an interface gone forgets its additions.
    """

    def __init__(self) -> None:
        self._before: dict[str, tuple[int, ...]] | None = None
        self._added: dict[str, list[int]] = {}

    def run(self, now: dict[str, tuple[int, ...]]) -> dict[str, NetIO]:
        """`now` with psutil's additions, as NetIO tuples."""
        before, self._before = self._before, now
        if before is None:
            return {name: NetIO(*values) for name, values in now.items()}
        for gone in self._added.keys() - now.keys():
            del self._added[gone]
        result = {}
        for name, values in now.items():
            then = before.get(name)
            # Most snapshots: every counter went up or stayed, nothing added; one C-level pass.
            if then is not None and (name in self._added or any(map(operator.lt, values, then))):
                added = self._added.get(name)
                for i, (n, b) in enumerate(zip(values, then, strict=True)):
                    if n < b:
                        added = self._added.setdefault(name, [0] * len(values))
                        added[i] += b
                if added is not None:
                    values = tuple(v + a for v, a in zip(values, added, strict=True))
            result[name] = NetIO(*values)
        return result


# <linux/sockios.h>, <linux/ethtool.h>
SIOCETHTOOL = 0x8946
ETHTOOL_GSET = 1
_ETHTOOL_CMD = struct.Struct("=IIIHBBBBBBIIHBBI2I")  # struct ethtool_cmd, 44 bytes
_IFREQ = struct.Struct("16sP")  # ifr_name, then ifr_data; struct ifreq is 40 bytes
_IFREQ_SIZE = 40
_NO_SPEED = (errno.EOPNOTSUPP, errno.EINVAL)  # psutil counts 0 for these


def ethtool_speed(name: str, sock: socket.socket | None = None) -> int:
    """The speed psutil reads for `name` (ioctl SIOCETHTOOL, ETHTOOL_GSET), 0 when unknown.

    `sock`: any AF_INET socket, kept by the caller (psutil opens one per call).
    OSError ENODEV when the interface is gone: psutil then leaves it out.
    """
    if sock is None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as own:
            return ethtool_speed(name, own)
    cmd = ctypes.create_string_buffer(_ETHTOOL_CMD.size)
    struct.pack_into("=I", cmd, 0, ETHTOOL_GSET)
    request = _IFREQ.pack(name.encode()[:15], ctypes.addressof(cmd)).ljust(_IFREQ_SIZE, b"\0")
    try:
        fcntl.ioctl(sock, SIOCETHTOOL, request)
    except OSError as e:
        if e.errno in _NO_SPEED:
            return 0
        raise
    fields = _ETHTOOL_CMD.unpack(cmd.raw)
    speed = fields[3] | fields[12] << 16  # speed, speed_hi
    return 0 if speed > 0x7FFFFFFF else speed  # SPEED_UNKNOWN is 0xffffffff


# operstate as the kernel shows it (down whenever the interface is not up): IFF_RUNNING, which
# psutil's isup is, is set for exactly these (netif_running and netif_oper_up). sysfs `flags`
# never shows IFF_RUNNING: the kernel works it out for SIOCGIFFLAGS only.
_RUNNING = (b"up\n", b"unknown\n")
_GONE = (errno.ENODEV, errno.ENOENT)  # psutil leaves out an interface gone since /proc/net/dev


class LinkFiles:
    """/sys/class/net/<name>/operstate and speed, kept open between snapshots and re-read."""

    def __init__(self, sys_path: str = "/sys", speed: Callable[[str], int] | None = None) -> None:
        """`speed`: the speed of a link sysfs does not tell (by default the ethtool ioctl's)."""
        self._net = f"{sys_path}/class/net"
        self._ethtool = speed if speed is not None else self._ioctl_speed
        self._files: dict[str, tuple[int, int]] = {}
        self._socket: socket.socket | None = None  # opened for the first down link, then kept

    def _ioctl_speed(self, name: str) -> int:
        if self._socket is None:
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return ethtool_speed(name, self._socket)

    def stats(self, names: list[str]) -> dict[str, IfStats]:
        """Link state of each of `names` still there; the files of the others are closed."""
        for gone in self._files.keys() - set(names):
            self._close(gone)
        found = {}
        for name in names:
            try:
                found[name] = self._read(name)
            except OSError as e:
                if e.errno not in _GONE:
                    raise
        return found

    def _read(self, name: str) -> IfStats:
        files = self._files.get(name)
        if files is not None:
            try:
                return self._stats(name, *files)
            except OSError as e:
                self._close(name)
                if e.errno not in _GONE:
                    raise
                # The files of an interface gone, maybe made anew under the same name: open its own.
        files = self._files[name] = self._open(name)
        try:
            return self._stats(name, *files)
        except OSError:
            self._close(name)
            raise

    def _stats(self, name: str, state: int, speed: int) -> IfStats:
        isup = os.pread(state, 64, 0) in _RUNNING
        try:
            mbits = max(0, int(os.pread(speed, 64, 0)))  # -1: the driver does not know
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            # sysfs answers only for a running interface with link settings; the ioctl may say more.
            mbits = self._ethtool(name)
        return IfStats(isup, mbits)

    def _open(self, name: str) -> tuple[int, int]:
        state = os.open(f"{self._net}/{name}/operstate", os.O_RDONLY)
        try:
            return state, os.open(f"{self._net}/{name}/speed", os.O_RDONLY)
        except OSError:
            os.close(state)
            raise

    def _close(self, name: str) -> None:
        for fd in self._files.pop(name, ()):
            os.close(fd)

    def close(self) -> None:
        """Close every file."""
        for name in list(self._files):
            self._close(name)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
