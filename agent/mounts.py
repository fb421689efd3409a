"""Mounted filesystems: which to report, their space and inode usage, and read-only remounts.

Every mount is considered (`disk_partitions(all=True)`): tmpfs (a full /tmp), NFS, CIFS
and FUSE shares count as much as disks. Pseudo filesystems, container layers and
read-only images stay out, and so do the mount points and types excluded by
configuration. Network and FUSE filesystems are measured in a worker thread with a
bounded wait: a hung server makes its mount "unavailable" in this snapshot, never
late; while that call stays stuck, the mount is not asked again.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any, NamedTuple

from osmon.numbers import finite_or_none

# Kernel interfaces, not storage.
PSEUDO_FSTYPES = frozenset(
    {
        "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "pstore", "bpf",
        "debugfs", "tracefs", "configfs", "fusectl", "mqueue", "hugetlbfs", "autofs", "binfmt_misc",
        "rpc_pipefs", "nsfs", "efivarfs", "selinuxfs", "ramfs", "nfsd", "overlay", "aufs",
        "fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal", "sunrpc",
    }
)  # fmt: skip
# Read-only images (snaps, ISO files) are 100 % full by design: reporting them only makes noise.
IMAGE_FSTYPES = frozenset({"squashfs", "iso9660", "udf", "erofs", "cramfs"})
NETWORK_FSTYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "afs", "davfs", "lustre", "fuse"}
)
# Container runtimes and snapd mount their own internals here; the host's disks are mounted elsewhere.
PRIVATE_MOUNTS = (
    "/snap/",
    "/var/snap/",
    "/run/snapd/",
    "/var/lib/docker/",
    "/run/docker/",
    "/var/lib/containers/",
    "/run/containerd/",
    "/var/lib/kubelet/",
    "/proc/",
    "/sys/",
)
# Default `exclude_mounts`: per-login tmpfs, and what systemd mounts inside a hardened unit's own
# namespace (the agent's: ProtectHome's /run/user, credentials, the propagation directory) — none of
# them is the host's storage, and the unconfined `osmon-agent once` does not see them.
EXCLUDE_MOUNTS = (
    "/run/user",
    "/run/user/*",
    "/run/credentials",
    "/run/credentials/*",
    "/run/systemd/incoming",
)
MOUNT_TIMEOUT = 2.0


def is_network(fstype: str) -> bool:
    """A filesystem whose statvfs waits on another machine (or a FUSE daemon)."""
    return fstype in NETWORK_FSTYPES or fstype.startswith("fuse.")


class Exclude(NamedTuple):
    """Globs of mount points and filesystem types not to report (agent.toml)."""

    mounts: tuple[str, ...] = EXCLUDE_MOUNTS
    fstypes: tuple[str, ...] = ()

    def __contains__(self, part: object) -> bool:
        mount, fstype = getattr(part, "mountpoint", ""), getattr(part, "fstype", "")
        return any(fnmatchcase(mount, g) for g in self.mounts) or any(
            fnmatchcase(fstype, g) for g in self.fstypes
        )


DEFAULT_EXCLUDE = Exclude()


def _identity(part: Any) -> str:
    # Bind mounts repeat a block device or a network share; every tmpfs is called "tmpfs", so
    # those are told apart by mount point.
    device = part.device
    return device if device.startswith("/") or is_network(part.fstype) else f"{device}@{part.mountpoint}"


def real_partitions(ps: Any, exclude: Exclude = DEFAULT_EXCLUDE) -> list[Any]:
    """The mounts worth reporting, one per device, sorted by mount point."""
    by_mount = {}
    for part in ps.disk_partitions(all=True):
        if (
            part.fstype in PSEUDO_FSTYPES
            or part.fstype in IMAGE_FSTYPES
            or (part.mountpoint + "/").startswith(PRIVATE_MOUNTS)
            or part in exclude
        ):
            continue
        by_mount[part.mountpoint] = part  # a later mount on the same point hides the earlier one
    by_device: dict[str, Any] = {}
    for part in by_mount.values():
        kept = by_device.get(_identity(part))
        # Bind mounts repeat a device; its shortest mount point is the real one (/ rather than /srv/x).
        if kept is None or len(part.mountpoint) < len(kept.mountpoint):
            by_device[_identity(part)] = part
    return sorted(by_device.values(), key=lambda p: p.mountpoint)


class MountTable:
    """real_partitions(), worked out again only when the kernel's mount table reads differently.

    The table rarely changes, and parsing it (psutil, then the filters) costs more than reading
    it. Its text is the key, read-only flags included: a remount is seen at the next snapshot.
    """

    def __init__(self, proc: str = "/proc") -> None:
        # The file psutil.disk_partitions reads.
        mtab = proc == "/proc" and os.path.isfile("/etc/mtab")
        self.path = "/etc/mtab" if mtab else f"{proc}/self/mounts"
        self._text: bytes | None = None
        self._parts: list[Any] = []

    def partitions(self, ps: Any, exclude: Exclude = DEFAULT_EXCLUDE) -> list[Any]:
        """real_partitions(ps, exclude), from the previous call while the table reads the same."""
        try:
            with open(self.path, "rb") as f:
                text = f.read()
        except OSError:  # no such file (a fake host): no key, work it out each time
            return real_partitions(ps, exclude)
        if text != self._text:
            # psutil reads the table after us: a change in between is at worst seen again next time.
            self._parts, self._text = real_partitions(ps, exclude), text
        return self._parts


class Measured(NamedTuple):
    usage: Any  # psutil's sdiskusage: total, used, free, percent
    inodes_percent: float | None


def measure(ps: Any, statvfs: Callable[[str], Any], mount: str) -> Measured:
    """Space (as psutil and df count it) and inode usage of one mount (OSError if unreadable)."""
    usage = ps.disk_usage(mount)
    st = statvfs(mount)
    # As df -i: used inodes of all inodes; btrfs, vfat and others report no inode count.
    inodes = round(100.0 * (st.f_files - st.f_ffree) / st.f_files, 2) if st.f_files > 0 else None
    return Measured(usage, inodes)


class BoundedWait:
    """Runs measurements of slow mounts in daemon threads and waits for them up to a deadline.

    A call still stuck from an earlier snapshot is not started again: its mount is reported
    unavailable until the call returns, so a hung server costs one thread, not one per snapshot.
    """

    def __init__(self, timeout: float = MOUNT_TIMEOUT, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout, self._clock = timeout, clock
        self._stuck: dict[str, threading.Thread] = {}

    def run(self, calls: dict[str, Callable[[], Measured]]) -> dict[str, Measured | OSError | None]:
        """{mount: result, its OSError, or None when it did not answer in time}."""
        results: dict[str, Measured | OSError | None] = dict.fromkeys(calls)
        threads = {}
        for mount, call in calls.items():
            if mount in self._stuck and self._stuck[mount].is_alive():
                continue
            self._stuck.pop(mount, None)
            thread = threading.Thread(target=self._into, args=(results, mount, call), daemon=True)
            thread.start()
            threads[mount] = thread
        deadline = self._clock() + self.timeout
        for mount, thread in threads.items():
            thread.join(max(0.0, deadline - self._clock()))
            if thread.is_alive():
                self._stuck[mount] = thread
        return {m: results[m] if m not in self._stuck else None for m in calls}

    @staticmethod
    def _into(
        results: dict[str, Measured | OSError | None], mount: str, call: Callable[[], Measured]
    ) -> None:
        try:
            results[mount] = call()
        except OSError as e:
            results[mount] = e


def _read_only(opts: str) -> bool:
    return "ro" in opts.split(",")


def fstab_read_write(path: str = "/etc/fstab") -> set[str]:
    """Mount points /etc/fstab mounts read-write (no `ro` option): read-only there is a remount."""
    found = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 4 and not fields[0].startswith("#") and not _read_only(fields[3]):
                    found.add(fields[1].replace("\\040", " "))
    except OSError:
        pass  # no fstab (containers): only mounts seen read-write by this agent count
    return found


def filesystems(
    ps: Any,
    statvfs: Callable[[str], Any] = os.statvfs,
    exclude: Exclude = DEFAULT_EXCLUDE,
    wait: BoundedWait | None = None,
    read_write: Iterable[str] = (),
    table: MountTable | None = None,
) -> list[dict[str, Any]]:
    """Usage of every mounted filesystem worth reporting, one entry per device.

    `read_write` names mounts known to be meant read-write (fstab, or seen so): one found
    read-only is flagged `remounted_ro` (ext4's errors=remount-ro, a failing disk).
    """
    parts = table.partitions(ps, exclude) if table is not None else real_partitions(ps, exclude)
    wait = wait if wait is not None else BoundedWait()
    slow = {p.mountpoint: _call(ps, statvfs, p.mountpoint) for p in parts if is_network(p.fstype)}
    measured = wait.run(slow) if slow else {}
    meant_rw = set(read_write)
    result = []
    for part in parts:
        entry: dict[str, Any] = {"mount": part.mountpoint, "device": part.device, "fstype": part.fstype}
        try:
            got = (
                measured[part.mountpoint]
                if part.mountpoint in slow
                else measure(ps, statvfs, part.mountpoint)
            )
        except OSError:  # unmounted meanwhile, or not ours to read: the others still count
            continue
        if isinstance(got, OSError):
            continue
        if got is None:
            result.append({**entry, "unavailable": True})
            continue
        if got.usage.total == 0:
            continue
        entry.update(
            total=got.usage.total,
            used=got.usage.used,
            free=got.usage.free,
            percent=finite_or_none(got.usage.percent),
        )
        if got.inodes_percent is not None:
            entry["inodes_percent"] = got.inodes_percent
        read_only = _read_only(getattr(part, "opts", ""))
        entry["readonly"] = read_only
        if read_only and part.mountpoint in meant_rw:
            entry["remounted_ro"] = True
        result.append(entry)
    return result


def _call(ps: Any, statvfs: Callable[[str], Any], mount: str) -> Callable[[], Measured]:
    return lambda: measure(ps, statvfs, mount)


def seen_read_write(found: Sequence[dict[str, Any]]) -> set[str]:
    """Mount points a filesystems() result shows read-write."""
    return {fs["mount"] for fs in found if fs.get("readonly") is False}
