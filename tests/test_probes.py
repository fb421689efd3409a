"""Probes fed a known data source give exact figures; on this machine they agree with the kernel."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import time
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from agent import nvml as nvml_lib
from agent import probes
from agent.probes import ProcStat
from agent.sampler import Sampler
from osmon import wire

Part = namedtuple("Part", "device mountpoint fstype opts")
StatVfs = namedtuple("StatVfs", "f_files f_ffree")
Usage = namedtuple("Usage", "total used free percent")
DiskIO = namedtuple("DiskIO", "read_bytes write_bytes")
DiskOps = namedtuple(
    "DiskOps", "read_bytes write_bytes read_count write_count read_time write_time busy_time"
)
NetErr = namedtuple("NetErr", "bytes_sent bytes_recv errin errout dropin dropout")
IfStats = namedtuple("IfStats", "isup speed")
NetIO = namedtuple("NetIO", "bytes_sent bytes_recv")
User = namedtuple("User", "name terminal host started pid")
Temp = namedtuple("Temp", "label current high critical")
Uname = namedtuple("Uname", "sysname nodename release version machine")

MEMINFO = """\
MemTotal:        8000000 kB
MemFree:         1000000 kB
MemAvailable:    5000000 kB
Buffers:          200000 kB
Cached:          3000000 kB
SwapCached:            0 kB
Active:          2000000 kB
Inactive:        2500000 kB
Shmem:             10000 kB
Slab:             300000 kB
SReclaimable:     200000 kB
SwapTotal:       2000000 kB
SwapFree:        1500000 kB
"""


@pytest.fixture
def fake_proc(tmp_path, monkeypatch):
    """A /proc tree under tmp_path that the real psutil reads (PROCFS_PATH is restored afterwards)."""
    proc = tmp_path / "proc"
    proc.mkdir()
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(proc))
    return proc


def stat_line(pid, name, utime=0, stime=0, start=100, rss_pages=0, state="S"):
    """A /proc/<pid>/stat line with the fields the probes read set, the others zero."""
    fields = (
        [state, "1"] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 6 + [str(start), "0", str(rss_pages)]
    )
    return f"{pid} ({name}) {' '.join(fields)} " + " ".join(["0"] * 28) + "\n"


def add_process(proc, pid, name, cmdline=b"", uid=0, **stat):
    """Write /proc/<pid>/{stat,cmdline,status} for one fake process."""
    d = proc / str(pid)
    d.mkdir(exist_ok=True)
    (d / "stat").write_text(stat_line(pid, name, **stat))
    (d / "cmdline").write_bytes(cmdline)
    (d / "status").write_text(
        f"Name:\t{name[:15]}\nUmask:\t0022\nState:\tS\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
    )


# --- memory, swap, load ------------------------------------------------------------------------


def test_memory_from_meminfo_is_exactly_37_5_percent(fake_proc):
    (fake_proc / "meminfo").write_text(MEMINFO)
    assert probes.memory() == {
        "total": 8_192_000_000,
        "available": 5_120_000_000,
        "used": 3_072_000_000,
        "percent": 37.5,
        "cached": 3_276_800_000,  # Cached + SReclaimable, as psutil counts it
        "buffers": 204_800_000,
    }
    assert probes.memory()["cached"] == psutil.virtual_memory().cached


def test_memory_cached_travels_as_a_share_of_total_and_older_agents_are_accepted(fake_proc):
    (fake_proc / "meminfo").write_text(MEMINFO)
    metrics, _ = wire.metrics_from_probes({"memory": probes.memory()})
    assert metrics["mem.cached_percent"] == 40.0  # 3,276,800,000 of 8,192,000,000
    assert metrics["mem.total"] == 8_192_000_000.0
    # An agent without cached (older, or a system psutil has no cached for) sends neither number.
    older = wire.encode_snapshot("h", 1, 1e9, 10.0, "0.1", {"memory": {"total": 100, "percent": 5.0}})
    assert "mem.cached_percent" not in wire.decode_snapshot(older).metrics
    no_cached = SimpleNamespace(
        virtual_memory=lambda: SimpleNamespace(total=100, available=60, used=40, percent=40.0)
    )
    assert probes.memory(no_cached)["cached"] is None


def test_swap_from_meminfo_is_25_percent_used(fake_proc):
    (fake_proc / "meminfo").write_text(MEMINFO)
    (fake_proc / "vmstat").write_text("pswpin 10\npswpout 20\n")
    assert probes.swap() == {
        "total": 2_048_000_000,
        "used": 512_000_000,
        "free": 1_536_000_000,
        "percent": 25.0,
    }


def test_memory_total_is_this_machines_memtotal():
    with open("/proc/meminfo") as f:
        mem_total_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    assert probes.memory()["total"] == mem_total_kb * 1024


def test_load_average_replaces_nan_and_infinity_by_none():
    ps = SimpleNamespace(getloadavg=lambda: (1.5, math.nan, math.inf))
    assert probes.load(ps) == {"avg1": 1.5, "avg5": None, "avg15": None}


# --- CPU ---------------------------------------------------------------------------------------


def proc_stat(*cores):
    """A /proc/stat whose per-core lines hold these (user, nice, system, idle, iowait) ticks."""
    lines = [f"cpu{i} {u} {n} {s} {idle} {io} 0 0 0 0 0" for i, (u, n, s, idle, io) in enumerate(cores)]
    total = [sum(c[i] for c in cores) for i in range(5)]
    return f"cpu {' '.join(map(str, total))} 0 0 0 0 0\n" + "\n".join(lines) + "\nbtime 1700000000\n"


def test_cpu_percentages_from_two_readings_of_proc_stat(fake_proc):
    (fake_proc / "stat").write_text(proc_stat((100, 0, 100, 800, 0), (500, 0, 0, 500, 0)))
    before = probes.cpu_times()
    # Core 0: 30 user + 10 system + 50 idle + 10 iowait ticks; core 1: 100 idle, 0 busy.
    # Waiting for I/O is idle time, reported apart: busy is user + system only.
    (fake_proc / "stat").write_text(proc_stat((130, 0, 110, 850, 10), (500, 0, 0, 600, 0)))
    result = probes.cpu(before, probes.cpu_times())
    assert result == {
        "percent": 20.0,
        "user": 15.0,
        "nice": 0.0,
        "system": 5.0,
        "iowait": 5.0,
        "steal": 0.0,
        "per_core": [40.0, 0.0],
        "count": 2,
    }


def test_iowait_going_backwards_does_not_make_cpu_negative(fake_proc):
    (fake_proc / "stat").write_text(proc_stat((100, 0, 0, 100, 50)))
    before = probes.cpu_times()
    (fake_proc / "stat").write_text(proc_stat((150, 0, 0, 150, 40)))  # Linux may do this to iowait
    result = probes.cpu(before, probes.cpu_times())
    assert (result["percent"], result["iowait"], result["per_core"]) == (50.0, 0.0, [50.0])


def test_cpu_without_a_baseline_or_without_elapsed_time_has_no_percentages(fake_proc):
    (fake_proc / "stat").write_text(proc_stat((100, 0, 0, 100, 0), (5, 0, 0, 5, 0)))
    reading = probes.cpu_times()
    assert probes.cpu(None, reading)["per_core"] == [None, None]
    assert probes.cpu(None, reading)["percent"] is None
    assert probes.cpu(reading, reading)["percent"] is None  # no tick passed: unknown, not 0 %


def test_cpu_count_is_this_machines():
    reading = probes.cpu_times()
    assert probes.cpu(reading, reading)["count"] == os.cpu_count()


# --- filesystems -------------------------------------------------------------------------------


def test_filesystems_keep_one_entry_per_real_device():
    partitions = [
        Part("/dev/sda1", "/", "ext4", "rw"),
        Part("/dev/sda1", "/srv/www", "ext4", "rw,bind"),  # bind mount of the root device
        Part("/dev/loop3", "/snap/core/123", "squashfs", "ro"),
        Part("/dev/sr0", "/media/cdrom", "iso9660", "ro"),
        Part("/dev/sdd1", "/var/lib/docker/btrfs", "btrfs", "rw"),
        Part("/dev/sdb1", "/data", "xfs", "rw"),
        Part("/dev/sde1", "/data", "xfs", "rw"),  # mounted over /data: hides sdb1
        Part("/dev/sdc1", "/mnt/locked", "ext4", "rw"),
    ]
    usage = {"/": Usage(1000, 400, 600, 40.0), "/data": Usage(4000, 1000, 3000, 25.0)}

    def disk_usage(path):
        if path == "/mnt/locked":
            raise PermissionError(13, "Permission denied", path)
        return usage[path]

    inodes = {"/": StatVfs(f_files=1000, f_ffree=150), "/data": StatVfs(f_files=0, f_ffree=0)}
    ps = SimpleNamespace(disk_partitions=lambda all: partitions, disk_usage=disk_usage)
    assert probes.filesystems(ps, statvfs=inodes.__getitem__) == [
        {
            "mount": "/",
            "device": "/dev/sda1",
            "fstype": "ext4",
            "total": 1000,
            "used": 400,
            "free": 600,
            "percent": 40.0,
            "inodes_percent": 85.0,
            "readonly": False,
        },
        {  # xfs counts inodes; a filesystem reporting none (btrfs, vfat) has no inode figure
            "mount": "/data",
            "device": "/dev/sde1",
            "fstype": "xfs",
            "total": 4000,
            "used": 1000,
            "free": 3000,
            "percent": 25.0,
            "readonly": False,
        },
    ]


def test_filesystems_match_this_machines_mount_table():
    with open("/proc/self/mounts") as f:
        mounts = {(m.split()[0], m.split()[1], m.split()[2]) for m in f}
    with open("/proc/filesystems") as f:
        block_fstypes = {line.split()[0] for line in f if not line.startswith("nodev")}
    found = probes.filesystems()
    for fs in found:
        assert (fs["device"], fs["mount"], fs["fstype"]) in mounts
        st = os.statvfs(fs["mount"])
        assert fs["total"] == st.f_blocks * st.f_frsize
    root = next(m for m in mounts if m[1] == "/")
    if root[2] in block_fstypes and root[2] not in probes.IMAGE_FSTYPES:
        assert "/" in {fs["mount"] for fs in found}


# --- disk and network I/O ----------------------------------------------------------------------


@pytest.fixture
def fake_sys(tmp_path):
    """A /sys with whole disks sda, nvme0n1, dm-0 and loop0; eth0 is a NIC, docker0 a bridge."""
    sys_path = tmp_path / "sys"
    for name in ("sda", "nvme0n1", "dm-0", "loop0"):
        (sys_path / "block" / name).mkdir(parents=True)
    for name in ("dm-0", "loop0"):
        (sys_path / "devices" / "virtual" / "block" / name).mkdir(parents=True)
    for name in ("lo", "docker0", "veth1a2b"):
        (sys_path / "devices" / "virtual" / "net" / name).mkdir(parents=True)
    return str(sys_path)


def test_disk_io_lists_whole_disks_and_totals_physical_ones(fake_sys):
    counters = {
        "sda": DiskOps(1000, 2000, 30, 70, 400, 600, 900),
        "sda1": DiskOps(900, 1900, 30, 70, 400, 600, 900),  # a partition: already inside sda
        "nvme0n1": DiskOps(10, 20, 5, 5, 1, 2, 3),
        "dm-0": DiskOps(500, 600, 9, 9, 9, 9, 9),  # LVM on top of sda: already inside sda
        "loop0": DiskOps(7, 0, 1, 0, 1, 0, 1),
    }
    ps = SimpleNamespace(disk_io_counters=lambda perdisk, nowrap: counters)
    assert probes.disk_io(ps, fake_sys) == {
        "read_bytes": 1010,
        "write_bytes": 2020,
        "ops": 110,
        "io_ms": 1003,
        "busy_ms": {"sda": 900, "nvme0n1": 3},
        "devices": {
            "sda": {"read_bytes": 1000, "write_bytes": 2000},
            "nvme0n1": {"read_bytes": 10, "write_bytes": 20},
            "dm-0": {"read_bytes": 500, "write_bytes": 600},
        },
    }


def test_disk_io_from_diskstats_counts_512_byte_sectors(fake_proc, fake_sys):
    (fake_proc / "diskstats").write_text(
        "   8       0 sda 100 0 2048 10 50 0 4096 20 0 30 30 0 0 0 0\n"
        "   8       1 sda1 90 0 2000 10 40 0 4000 20 0 30 30 0 0 0 0\n"
    )
    psutil.disk_io_counters.cache_clear()  # psutil remembers counters to undo wraps
    try:
        result = probes.disk_io(sys_path=fake_sys)
    finally:
        psutil.disk_io_counters.cache_clear()
    assert result["devices"] == {"sda": {"read_bytes": 1_048_576, "write_bytes": 2_097_152}}


def test_disk_io_agrees_with_this_machines_diskstats():
    def sectors_read():
        with open("/proc/diskstats") as f:
            return {line.split()[2]: int(line.split()[5]) * 512 for line in f}

    before = sectors_read()
    devices = probes.disk_io()["devices"]
    after = sectors_read()
    assert devices, "no disk found on this machine"
    for name, counters in devices.items():
        assert before[name] <= counters["read_bytes"] <= after[name]


def test_net_io_skips_loopback_and_totals_what_crossed_a_nic(fake_sys):
    counters = {
        "lo": NetErr(5000, 5000, 0, 0, 0, 0),
        "eth0": NetErr(bytes_sent=300, bytes_recv=1000, errin=3, errout=1, dropin=7, dropout=0),
        "docker0": NetErr(40, 60, 5, 0, 5, 0),  # container traffic, also on eth0
        "veth1a2b": NetErr(60, 40, 0, 0, 0, 0),
    }
    stats = {"eth0": IfStats(True, 1000), "docker0": IfStats(False, 0)}
    ps = SimpleNamespace(net_io_counters=lambda pernic, nowrap: counters, net_if_stats=lambda: stats)
    assert probes.net_io(ps, fake_sys) == {
        "rx_bytes": 1000,
        "tx_bytes": 300,
        "errors": 4,
        "drops": 7,
        "interfaces": {
            "eth0": {"rx_bytes": 1000, "tx_bytes": 300, "errors": 4, "drops": 7, "up": True, "speed": 1000},
            "docker0": {"rx_bytes": 60, "tx_bytes": 40, "errors": 5, "drops": 5, "up": False, "speed": None},
        },
    }


def test_net_io_with_only_virtual_interfaces_totals_them_all(fake_sys):
    # In a container, eth0 is itself a virtual device: it is still the host's traffic.
    counters = {"lo": NetIO(1, 1), "docker0": NetIO(bytes_sent=7, bytes_recv=9)}
    ps = SimpleNamespace(net_io_counters=lambda pernic, nowrap: counters)
    assert probes.net_io(ps, fake_sys)["rx_bytes"] == 9


def test_net_io_reads_proc_net_dev(fake_proc, fake_sys):
    (fake_proc / "net").mkdir()
    (fake_proc / "net" / "dev").write_text(
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop "
        "fifo colls carrier compressed\n"
        "    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0 "
        "   0     0       0          0\n"
        "  eth0: 55313910    1779    2    5    0     0          0         0   135867    1332    1    0 "
        "   0     0       0          0\n"
    )
    psutil.net_io_counters.cache_clear()
    try:
        # Link state comes from the interface itself (an ioctl), not /proc: left to the fake above.
        result = probes.net_io(SimpleNamespace(net_io_counters=psutil.net_io_counters), sys_path=fake_sys)
    finally:
        psutil.net_io_counters.cache_clear()
    assert result == {
        "rx_bytes": 55313910,
        "tx_bytes": 135867,
        "errors": 3,
        "drops": 5,
        "interfaces": {"eth0": {"rx_bytes": 55313910, "tx_bytes": 135867, "errors": 3, "drops": 5}},
    }


# --- processes ---------------------------------------------------------------------------------


def test_process_table_reads_name_cpu_start_and_rss(fake_proc):
    ticks = probes.CLOCK_TICKS
    add_process(fake_proc, 42, "my (odd) name", utime=3 * ticks, stime=ticks // 2, start=777, rss_pages=10)
    add_process(fake_proc, 7, "init", utime=ticks, start=1, rss_pages=1, state="R")
    (fake_proc / "self").mkdir()  # not a process directory
    (fake_proc / "99").mkdir()  # exited between listing and reading: no stat
    table = probes.process_table()
    assert table == {
        42: ProcStat(42, "my (odd) name", 777, 3.5, 10 * probes.PAGE_SIZE, running=False),
        7: ProcStat(7, "init", 1, 1.0, probes.PAGE_SIZE, running=True),
    }
    result = probes.processes(table, None, 0.0, None, top_n=1)
    assert (result["count"], result["running"]) == (2, 1)


def test_malformed_stat_is_an_error(fake_proc):
    (fake_proc / "5").mkdir()
    (fake_proc / "5" / "stat").write_text("5 (x) S 1 2\n")
    with pytest.raises(ValueError, match="malformed /proc/5/stat"):
        probes.process_table()


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_kept_stat_files_show_new_values_and_close_for_dead_processes(fake_proc):
    files = probes.StatFiles(limit=10)
    fds = open_fds()
    for pid in (1, 2, 3):
        add_process(fake_proc, pid, "sleep", utime=0)
    probes.process_table(files=files)
    add_process(fake_proc, 1, "sleep", utime=probes.CLOCK_TICKS * 2)
    shutil.rmtree(fake_proc / "2")
    shutil.rmtree(fake_proc / "3")
    table = probes.process_table(files=files)
    assert sorted(table) == [1]
    assert table[1].cpu == 2.0
    assert open_fds() == fds + 1  # only pid 1's file is still open
    files.close()
    assert open_fds() == fds


def test_kept_stat_files_stay_under_their_limit(fake_proc):
    files = probes.StatFiles(limit=2)
    fds = open_fds()
    for pid in range(1, 6):
        add_process(fake_proc, pid, "sleep")
    assert len(probes.process_table(files=files)) == 5
    assert open_fds() == fds + 2
    files.close()


def test_a_scan_names_the_processes_whose_stat_changed_and_only_those_are_rated(fake_proc):
    ticks = probes.CLOCK_TICKS
    files = probes.StatFiles(limit=2)  # pid 3 is read through a file opened again at each scan
    for pid in (1, 2, 3):
        add_process(fake_proc, pid, "sleep", utime=ticks)
    before = probes.process_table(files=files)
    assert files.changed is None  # no previous scan to compare with
    add_process(fake_proc, 1, "busy", utime=3 * ticks)  # used 2 s
    add_process(fake_proc, 4, "new", utime=ticks // 2)  # started since: all its 0.5 s count
    table = probes.process_table(files=files)
    assert sorted(files.changed) == [1, 4]  # 2 and 3 (one kept open, one reopened) did not change
    everything = probes.processes(table, before, 10.0, 1000, top_n=4)
    only_changed = probes.processes(table, before, 10.0, 1000, top_n=4, changed=files.changed)
    assert only_changed == everything
    assert [(p["pid"], p["cpu_percent"]) for p in everything["top_cpu"][:2]] == [(1, 20.0), (4, 5.0)]
    files.close()


def test_after_a_failed_scan_every_process_is_compared_again(fake_proc):
    files = probes.StatFiles(limit=10)
    add_process(fake_proc, 1, "sleep")
    probes.process_table(files=files)
    probes.process_table(files=files)
    assert files.changed == []
    (fake_proc / "5").mkdir()
    (fake_proc / "5" / "stat").write_text("5 (x) S 1 2\n")
    with pytest.raises(ValueError):
        probes.process_table(files=files)
    shutil.rmtree(fake_proc / "5")
    probes.process_table(files=files)
    assert files.changed is None  # the failed scan may have replaced entries it did not report
    probes.process_table(files=files)
    assert files.changed == []
    files.close()


def test_process_table_of_this_machine_sees_our_process_and_its_cpu_time():
    files = probes.StatFiles()
    before = probes.process_table(files=files)[os.getpid()]
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # burn CPU
        pass
    table = probes.process_table(files=files)
    files.close()
    me = table[os.getpid()]
    assert me.cpu - before.cpu >= 0.2  # a kept-open file is re-read, not a stale copy
    assert abs(me.rss - psutil.Process().memory_info().rss) < 4 * 1024 * 1024
    # Every process, give or take those started or ended between the two scans (a busy machine).
    assert abs(len(table) - len(psutil.pids())) <= max(3, len(table) // 50)


def tables(entries):
    return {p.pid: p for p in entries}


def test_top_processes_by_cpu_and_memory(fake_proc):
    before = tables(
        [
            ProcStat(10, "worker", 5, 1.0, 0),
            ProcStat(11, "idle", 5, 2.0, 0),
            ProcStat(12, "old", 5, 50.0, 0),  # exits; its pid is reused below
        ]
    )
    now = tables(
        [
            ProcStat(10, "worker", 5, 3.0, 400_000),  # 2 s of CPU in 10 s
            ProcStat(11, "idle", 5, 2.0, 100_000),
            ProcStat(12, "new", 900, 0.5, 200_000),  # all of its 0.5 s is recent
            ProcStat(13, "short", 950, 0.25, 300_000),  # started since the last sample
        ]
    )
    add_process(fake_proc, 10, "worker", b"/usr/bin/worker\0--fast\0", uid=0)
    add_process(fake_proc, 12, "new", b"new\0", uid=1000)
    add_process(fake_proc, 13, "short", b"short\0", uid=4242)
    names = {0: "root", 1000: "alice"}.get
    result = probes.processes(now, before, 10.0, 1_000_000, top_n=3, names=lambda uid: names(uid, str(uid)))
    assert result["count"] == 4
    assert [(p["pid"], p["cpu_percent"]) for p in result["top_cpu"]] == [(10, 20.0), (12, 5.0), (13, 2.5)]
    assert [(p["pid"], p["mem_percent"], p["rss"]) for p in result["top_mem"]] == [
        (10, 40.0, 400_000),
        (13, 30.0, 300_000),
        (12, 20.0, 200_000),
    ]
    assert result["top_cpu"][0] == {
        "pid": 10,
        "name": "worker",
        "user": "root",
        "cmdline": "/usr/bin/worker --fast",
        "cpu_percent": 20.0,
        "mem_percent": 40.0,
        "rss": 400_000,
    }
    assert [p["user"] for p in result["top_cpu"]] == ["root", "alice", "4242"]


def test_process_details_long_names_cut_cmdlines_and_vanished_processes(fake_proc):
    table = tables([ProcStat(20, "systemd-journal", 1, 0.0, 30), ProcStat(21, "gone", 1, 0.0, 20)])
    long_cmdline = b"/lib/systemd/systemd-journald\0" + b"x" * 500 + b"\0"
    add_process(fake_proc, 20, "systemd-journal", long_cmdline)
    result = probes.processes(table, None, 0.0, 100, top_n=5)
    journald, gone = result["top_mem"]
    assert journald["name"] == "systemd-journald"  # the kernel cuts names at 15 characters
    assert len(journald["cmdline"]) == probes.CMDLINE_CHARS
    assert journald["cmdline"].startswith("/lib/systemd/systemd-journald xxx")
    assert (gone["name"], gone["user"], gone["cmdline"]) == ("gone", None, "")
    # Without an earlier table there is no CPU figure to rank by.
    assert result["top_cpu"] == []
    assert journald["cpu_percent"] is None


def test_user_names_come_from_the_password_database():
    assert probes.user_name(0) == "root"
    assert probes.user_name(2**31 - 7) == str(2**31 - 7)


# --- users, uptime, system ---------------------------------------------------------------------


def test_users_as_who_lists_them(fake_proc):
    for pid in (1234, 99, 77):
        (fake_proc / str(pid)).mkdir()
    sessions = [
        User("alice", "pts/0", "198.51.100.7", 1_700_000_000.0, 1234),
        User("root", "tty1", "", 1.7e9, 99),
        User("bob", "pts/1", "198.51.100.8", 1.6e9, 4321),  # stale: its process is gone
        User("carol", ":0", "localhost", 1.7e9, 77),  # psutil's name for a local X session
    ]
    ps = SimpleNamespace(users=lambda: sessions, PROCFS_PATH=str(fake_proc))
    assert probes.users(ps) == [
        {"name": "alice", "terminal": "pts/0", "host": "198.51.100.7", "since": 1_700_000_000.0},
        {"name": "root", "terminal": "tty1", "host": None, "since": 1.7e9},
        {"name": "carol", "terminal": ":0", "host": None, "since": 1.7e9},
    ]


@pytest.mark.skipif(shutil.which("who") is None, reason="no who command")
def test_users_count_matches_who():
    who = subprocess.run(["who"], capture_output=True, text=True, check=True).stdout
    assert len(probes.users()) == len(who.splitlines())


def test_uptime_from_proc_uptime(fake_proc):
    (fake_proc / "uptime").write_text("12345.67 24000.10\n")
    assert probes.uptime(now=lambda: 1_700_000_000.0) == {"boot_time": 1_699_987_654.3, "seconds": 12345.67}


def test_uptime_of_this_machine_agrees_with_its_boot_time():
    result = probes.uptime()
    assert abs(result["boot_time"] - psutil.boot_time()) < 2


def test_system_from_os_release_and_uname(tmp_path):
    os_release = tmp_path / "os-release"
    os_release.write_text(
        'NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
    )
    uname = Uname("Linux", "web-01", "6.1.0-18-amd64", "#1 SMP", "x86_64")
    assert probes.system(str(os_release), lambda: uname) == {
        "os": "Debian GNU/Linux 12 (bookworm)",
        "kernel": "6.1.0-18-amd64",
        "arch": "x86_64",
        "hostname": socket.gethostname(),
    }


def test_system_of_this_machine():
    result = probes.system()
    assert (result["kernel"], result["arch"]) == (os.uname().release, os.uname().machine)
    if Path("/etc/os-release").exists():
        assert f'PRETTY_NAME="{result["os"]}"' in Path("/etc/os-release").read_text()


# --- temperatures and GPUs ---------------------------------------------------------------------


def test_temperatures_absent_without_sensors():
    assert probes.temperatures(SimpleNamespace()) is None  # psutil without sensors_temperatures
    assert probes.temperatures(SimpleNamespace(sensors_temperatures=dict)) is None


def test_temperatures_per_sensor_with_non_finite_values_dropped():
    sensors = {
        "coretemp": [Temp("Package id 0", 45.0, 80.0, math.nan)],
        "nvme": [Temp("", 38.9, math.inf, 84.8)],
    }
    ps = SimpleNamespace(sensors_temperatures=lambda: sensors)
    assert probes.temperatures(ps) == {
        "coretemp": [{"label": "Package id 0", "current": 45.0, "high": 80.0, "critical": None}],
        "nvme": [{"label": None, "current": 38.9, "high": None, "critical": 84.8}],
    }


class FakeGpus:
    """Two GPUs as NVML reports them; the second supports neither utilisation nor temperature."""

    def count(self):
        return 2

    def name(self, index):
        return ["NVIDIA A100-SXM4-40GB", "Tesla T4"][index]

    def utilization(self, index):
        return [87, None][index]

    def memory(self, index):
        return [(10 * 2**30, 40 * 2**30), (0, 16 * 2**30)][index]

    def temperature(self, index):
        return [64, None][index]


def test_gpus_absent_without_nvml():
    assert probes.gpus(None) is None
    assert nvml_lib.Nvml.load("/nonexistent/libnvidia-ml.so.1") is None


def test_gpus_as_nvml_reports_them():
    assert probes.gpus(FakeGpus()) == [
        {
            "index": 0,
            "name": "NVIDIA A100-SXM4-40GB",
            "util_percent": 87,
            "mem_used": 10 * 2**30,
            "mem_total": 40 * 2**30,
            "temperature": 64,
        },
        {
            "index": 1,
            "name": "Tesla T4",
            "util_percent": None,
            "mem_used": 0,
            "mem_total": 16 * 2**30,
            "temperature": None,
        },
    ]


# A stand-in for libnvidia-ml.so.1 with NVML's C signatures, to check the ctypes declarations.
FAKE_NVML = r"""
#include <string.h>
typedef struct { unsigned int gpu, memory; } util_t;
typedef struct { unsigned long long total, free, used; } mem_t;
#define FIRST ((void *)0x7f0000001000ULL)  /* a 64-bit handle: truncation to int would show */
int nvmlInit_v2(void) { return INIT_RESULT; }
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int code) {
    return code == 999 ? "Unknown Error" : code == 4 ? "Insufficient Permissions" : "Driver Not Loaded";
}
int nvmlDeviceGetCount_v2(unsigned int *n) { *n = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h) {
    if (i > 1) return 2;
    *h = (char *)FIRST + i;
    return 0;
}
int nvmlDeviceGetName(void *h, char *name, unsigned int len) {
    strncpy(name, h == FIRST ? "NVIDIA A100-SXM4-40GB" : "Tesla T4", len);
    return 0;
}
int nvmlDeviceGetUtilizationRates(void *h, util_t *u) {
    u->gpu = h == FIRST ? 87 : 3; u->memory = 40;
    return 0;
}
int nvmlDeviceGetMemoryInfo(void *h, mem_t *m) {
    m->total = 42949672960ULL; m->used = h == FIRST ? 10737418240ULL : 0; m->free = m->total - m->used;
    return MEMORY_RESULT;
}
int nvmlDeviceGetTemperature(void *h, int sensor, unsigned int *t) {
    if (h != FIRST || sensor != 0) return 3;  /* NVML_ERROR_NOT_SUPPORTED */
    *t = 64;
    return 0;
}
"""


def build_fake_nvml(tmp_path, init_result=0, memory_result=0):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build a stand-in NVML library")
    source = tmp_path / "nvml.c"
    source.write_text(FAKE_NVML)
    library = tmp_path / f"libnvidia-ml-{init_result}-{memory_result}.so"
    defines = [f"-DINIT_RESULT={init_result}", f"-DMEMORY_RESULT={memory_result}"]
    subprocess.run([compiler, "-shared", "-fPIC", *defines, "-o", str(library), str(source)], check=True)
    return str(library)


def test_gpus_through_a_library_with_nvmls_c_interface(tmp_path):
    nvml = nvml_lib.Nvml.load(build_fake_nvml(tmp_path))
    assert nvml is not None
    try:
        assert probes.gpus(nvml) == [
            {
                "index": 0,
                "name": "NVIDIA A100-SXM4-40GB",
                "util_percent": 87,
                "mem_used": 10 * 2**30,
                "mem_total": 40 * 2**30,
                "temperature": 64,
            },
            {
                "index": 1,
                "name": "Tesla T4",
                "util_percent": 3,
                "mem_used": 0,
                "mem_total": 40 * 2**30,
                "temperature": None,
            },
        ]
    finally:
        nvml.close()


def test_nvml_without_a_driver_is_absent_and_failures_are_errors(tmp_path):
    assert (
        nvml_lib.Nvml.load(build_fake_nvml(tmp_path, init_result=9)) is None
    )  # NVML_ERROR_DRIVER_NOT_LOADED
    assert nvml_lib.Nvml.load("libc.so.6") is None  # a library without NVML's functions
    nvml = nvml_lib.Nvml.load(build_fake_nvml(tmp_path, memory_result=999))
    with pytest.raises(nvml_lib.NvmlError, match="NVML error 999: Unknown Error"):
        probes.gpus(nvml)


def test_gpus_out_of_reach_are_reported_by_the_sampler_in_every_snapshot(tmp_path):
    library = build_fake_nvml(tmp_path, init_result=4)  # NVML_ERROR_NO_PERMISSION: /dev/nvidia* denied
    sampler = Sampler(nvml_library=library)
    for _ in range(2):
        results, errors = sampler.sample()
        assert "gpus" not in results
        assert errors["gpus"] == "NvmlError: NVML error 4: Insufficient Permissions"
    sampler.close()
