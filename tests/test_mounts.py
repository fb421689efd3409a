"""Which mounts are reported, their inodes, read-only remounts, and a hung NFS server that stalls nothing."""

from __future__ import annotations

import threading
import time
from collections import namedtuple
from fnmatch import fnmatchcase
from pathlib import Path
from types import SimpleNamespace

from agent import mounts

Part = namedtuple("Part", "device mountpoint fstype opts")
Usage = namedtuple("Usage", "total used free percent")
StatVfs = namedtuple("StatVfs", "f_files f_ffree")

PARTITIONS = [
    Part("/dev/sda1", "/", "ext4", "rw,relatime"),
    Part("proc", "/proc", "proc", "rw"),
    Part("sysfs", "/sys", "sysfs", "rw"),
    Part("cgroup2", "/sys/fs/cgroup", "cgroup2", "rw"),
    Part("overlay", "/var/lib/docker/overlay2/abc/merged", "overlay", "rw"),
    Part("overlay", "/merged", "overlay", "rw"),  # a container layer outside docker's tree
    Part("/dev/loop0", "/snap/core/1", "squashfs", "ro"),
    Part("devtmpfs", "/dev", "devtmpfs", "rw"),
    Part("tmpfs", "/tmp", "tmpfs", "rw,nosuid"),  # Debian 13's /tmp: full is a crisis
    Part("tmpfs", "/run", "tmpfs", "rw"),
    Part("tmpfs", "/run/user/1000", "tmpfs", "rw"),  # excluded by default
    Part("filer:/export", "/mnt/nfs", "nfs4", "rw"),
    Part("//nas/share", "/mnt/cifs", "cifs", "rw"),
    Part("sshfs#me@h:", "/mnt/fuse", "fuse.sshfs", "rw"),
    Part("/dev/sda1", "/srv/bind", "ext4", "rw"),  # bind mount of /
    Part("/dev/sdb1", "/data", "xfs", "ro,relatime"),  # errors=remount-ro struck
]


def usage(path: str) -> Usage:
    return Usage(1000, 940, 60, 94.0)


def fake_ps(parts: list = PARTITIONS) -> SimpleNamespace:
    return SimpleNamespace(disk_partitions=lambda all: parts if all else [], disk_usage=usage)


def test_tmpfs_and_network_filesystems_come_in_pseudo_ones_stay_out() -> None:
    got = [p.mountpoint for p in mounts.real_partitions(fake_ps())]
    assert got == ["/", "/data", "/mnt/cifs", "/mnt/fuse", "/mnt/nfs", "/run", "/tmp"]


def test_mount_points_and_types_excluded_by_glob() -> None:
    # The key replaces the default list: keep /run/user/* when setting it.
    exclude = mounts.Exclude(mounts=("/run", "/run/user/*", "/mnt/*"), fstypes=("fuse.*",))
    got = [p.mountpoint for p in mounts.real_partitions(fake_ps(), exclude)]
    assert got == ["/", "/data", "/tmp"]


def test_inodes_and_a_read_only_remount_are_reported() -> None:
    parts = [PARTITIONS[0], PARTITIONS[8], PARTITIONS[-1]]
    found = mounts.filesystems(fake_ps(parts), statvfs=lambda p: StatVfs(200, 10), read_write={"/", "/data"})
    assert found[0] == {
        "mount": "/",
        "device": "/dev/sda1",
        "fstype": "ext4",
        "total": 1000,
        "used": 940,
        "free": 60,
        "percent": 94.0,
        "inodes_percent": 95.0,
        "readonly": False,
    }
    assert [(f["mount"], f["readonly"], f.get("remounted_ro")) for f in found] == [
        ("/", False, None),
        ("/data", True, True),
        ("/tmp", False, None),
    ]
    # Read-only by design (not in fstab as rw, never seen rw): no alarm.
    assert "remounted_ro" not in mounts.filesystems(fake_ps(parts), statvfs=lambda p: StatVfs(1, 0))[1]


def test_fstab_tells_which_mounts_are_meant_read_write(tmp_path: Path) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# comment\nUUID=1 / ext4 errors=remount-ro 0 1\nUUID=2 /srv/my\\040data xfs defaults 0 2\n"
        "/dev/sr0 /media/cdrom iso9660 ro,user,noauto 0 0\n"
    )
    assert mounts.fstab_read_write(str(fstab)) == {"/", "/srv/my data"}
    assert mounts.fstab_read_write(str(tmp_path / "none")) == set()


def test_a_hung_nfs_server_makes_its_mount_unavailable_and_the_rest_on_time() -> None:
    release = threading.Event()

    def statvfs(path: str) -> StatVfs:
        if path == "/mnt/nfs":
            release.wait(30)  # a hard-mounted NFS export whose server is gone
        return StatVfs(100, 50)

    parts = [PARTITIONS[0], PARTITIONS[11], PARTITIONS[12]]
    wait = mounts.BoundedWait(timeout=0.3)
    try:
        start = time.monotonic()
        found = mounts.filesystems(fake_ps(parts), statvfs=statvfs, wait=wait)
        assert time.monotonic() - start < 2
        assert [(f["mount"], "percent" in f, f.get("unavailable")) for f in found] == [
            ("/", True, None),
            ("/mnt/cifs", True, None),
            ("/mnt/nfs", False, True),
        ]
        # Still stuck: not asked again (no second thread), and the snapshot does not wait at all.
        start = time.monotonic()
        again = mounts.filesystems(fake_ps(parts), statvfs=statvfs, wait=wait)
        assert time.monotonic() - start < 0.2
        assert again[2] == {
            "mount": "/mnt/nfs",
            "device": "filer:/export",
            "fstype": "nfs4",
            "unavailable": True,
        }
    finally:
        release.set()
    time.sleep(0.1)
    # The server is back: measured again.
    assert "percent" in mounts.filesystems(fake_ps(parts), statvfs=statvfs, wait=wait)[2]


def test_this_machines_tmpfs_mounts_are_reported_as_df_shows_them() -> None:
    with open("/proc/self/mounts") as f:
        tmpfs = [line.split()[1] for line in f if line.split()[2] == "tmpfs"]
    reported = {fs["mount"] for fs in mounts.filesystems(__import__("psutil"))}
    wanted = [
        m
        for m in tmpfs
        if not m.startswith(("/sys/", "/proc/")) and not any(fnmatchcase(m, g) for g in mounts.EXCLUDE_MOUNTS)
    ]
    for mount in wanted:
        # One entry per tmpfs: several tmpfs share the device name "tmpfs" and must not merge.
        assert mount in reported or mount.replace("\\040", " ") in reported, mount


def test_the_mount_table_is_parsed_again_when_it_changes_and_a_remount_shows_at_once(
    tmp_path: Path, monkeypatch
) -> None:
    import psutil

    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    table = proc / "self" / "mounts"
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(proc))  # psutil reads this table too
    mount_table = mounts.MountTable(str(proc))

    def reported() -> list[tuple[str, bool]]:
        found = mounts.filesystems(
            SimpleNamespace(disk_partitions=psutil.disk_partitions, disk_usage=usage),
            statvfs=lambda p: StatVfs(200, 10),
            read_write={"/data"},
            table=mount_table,
        )
        return [(f["mount"], f["readonly"], f.get("remounted_ro", False)) for f in found]

    table.write_text("/dev/sda1 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n")
    assert reported() == [("/", False, False)]
    assert reported() == [("/", False, False)]  # the same table: the same answer
    table.write_text("/dev/sda1 / ext4 rw,relatime 0 0\n/dev/sdb1 /data xfs rw 0 0\n")
    assert reported() == [("/", False, False), ("/data", False, False)]  # mounted since
    table.write_text("/dev/sda1 / ext4 rw,relatime 0 0\n/dev/sdb1 /data xfs ro 0 0\n")
    assert reported() == [("/", False, False), ("/data", True, True)]  # errors=remount-ro struck


def test_without_a_readable_mount_table_the_partitions_are_listed_each_time(tmp_path: Path) -> None:
    parts = [PARTITIONS[0]]
    mount_table = mounts.MountTable(str(tmp_path))  # no self/mounts there
    first = mounts.filesystems(fake_ps(parts), statvfs=lambda p: StatVfs(1, 0), table=mount_table)
    parts.append(PARTITIONS[-1])
    again = mounts.filesystems(fake_ps(parts), statvfs=lambda p: StatVfs(1, 0), table=mount_table)
    assert [f["mount"] for f in first] == ["/"]
    assert [f["mount"] for f in again] == ["/", "/data"]
