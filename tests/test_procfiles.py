"""CPU, memory and swap from one read of /proc/stat and /proc/meminfo: psutil's figures exactly."""

from __future__ import annotations

import psutil
import pytest

from agent import probes, procfiles
from agent.sampler import Sampler

TICKS = procfiles.TICKS
STAT = (
    f"cpu  {30 * TICKS} 0 {10 * TICKS} {160 * TICKS} 0 0 0 0 0 0\n"
    f"cpu0 {10 * TICKS} 0 {5 * TICKS} {85 * TICKS} {TICKS} 0 0 0 0 0\n"
    f"cpu1 {20 * TICKS} {TICKS} {5 * TICKS} {75 * TICKS} 0 {2 * TICKS} {TICKS // 2} {3 * TICKS} 0 0\n"
    "intr 12345 1 2 3\nctxt 999\nbtime 1700000000\nprocesses 4242\nprocs_running 2\n"
)
MEMINFO = """MemTotal:        8000000 kB
MemFree:         1000000 kB
MemAvailable:    5000000 kB
Buffers:          200000 kB
Cached:          3000000 kB
Active:          2000000 kB
Inactive:        2500000 kB
Shmem:             10000 kB
Slab:             300000 kB
SReclaimable:     200000 kB
SwapTotal:       2000000 kB
SwapFree:        1500000 kB
HugePages_Total:       0
"""


@pytest.fixture
def fake_proc(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    proc.mkdir()
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(proc))
    (proc / "stat").write_text(STAT)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "vmstat").write_text("pswpin 10\npswpout 20\noom_kill 0\n")
    return proc


def test_cpu_times_are_psutils_per_core_seconds(fake_proc):
    found = procfiles.cpu_times(procfiles.SnapshotFiles(str(fake_proc)).text("stat"))
    assert found == probes.cpu_times(psutil)
    assert found.per_core[1] == (20.0, 1.0, 5.0, 75.0, 0.0, 2.0, 0.5, 3.0)
    assert found.total == (30.0, 1.0, 10.0, 160.0, 1.0, 2.0, 0.5, 3.0)


def test_a_kernel_without_steal_time_counts_none():
    found = procfiles.cpu_times(f"cpu  1 2 3 4 5 6 7\ncpu0 {TICKS} 0 0 {TICKS} 0 0 0\n")
    assert found.per_core == [(1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0)]


def test_memory_and_swap_are_psutils_from_one_read(fake_proc):
    files = procfiles.SnapshotFiles(str(fake_proc))
    assert procfiles.memory(files.meminfo()) == probes.memory(psutil)
    assert procfiles.memory(files.meminfo()) == {
        "total": 8_192_000_000,
        "available": 5_120_000_000,
        "used": 3_072_000_000,
        "percent": 37.5,
        "cached": 3_276_800_000,  # Cached + SReclaimable
        "buffers": 204_800_000,
    }
    assert procfiles.swap(files.meminfo()) == probes.swap(psutil)
    assert procfiles.swap(files.meminfo())["percent"] == 25.0


def test_no_swap_is_zero_percent_and_no_memavailable_is_left_to_psutil(fake_proc):
    text = MEMINFO.replace("MemAvailable:    5000000 kB\n", "").replace(
        "SwapTotal:       2000000", "SwapTotal: 0"
    )
    (fake_proc / "meminfo").write_text(text.replace("SwapFree:        1500000", "SwapFree: 0"))
    files = procfiles.SnapshotFiles(str(fake_proc))
    assert procfiles.memory(files.meminfo()) is None  # psutil estimates it from /proc/zoneinfo
    assert procfiles.swap(files.meminfo()) == {"total": 0, "used": 0, "free": 0, "percent": 0.0}
    assert procfiles.swap(files.meminfo()) == probes.swap(psutil)


def test_each_snapshot_reads_the_files_anew(fake_proc):
    files = procfiles.SnapshotFiles(str(fake_proc))
    assert procfiles.swap(files.meminfo())["free"] == 1_536_000_000
    (fake_proc / "meminfo").write_text(
        MEMINFO.replace("SwapFree:        1500000", "SwapFree:        1000000")
    )
    assert procfiles.swap(files.meminfo())["free"] == 1_536_000_000  # the same snapshot
    files.clear()
    assert procfiles.swap(files.meminfo())["free"] == 1_024_000_000
    assert files.optional("pressure/cpu") is None  # a kernel without PSI


def test_a_sample_of_the_fake_host_has_psutils_figures(fake_proc):
    (fake_proc / "uptime").write_text("100.0 50.0\n")
    sampler = Sampler(nvml_library=None, kernel_log="/nonexistent")
    try:
        results, _ = sampler.sample()
    finally:
        sampler.close()
    assert results["memory"]["percent"] == 37.5 and results["swap"]["percent"] == 25.0
    assert results["cpu"]["count"] == 2


def test_this_machines_memory_swap_and_cores_are_psutils():
    files = procfiles.SnapshotFiles()
    assert procfiles.memory(files.meminfo())["total"] == psutil.virtual_memory().total
    assert procfiles.swap(files.meminfo())["total"] == psutil.swap_memory().total
    ours, theirs = procfiles.cpu_times(files.text("stat")), probes.cpu_times(psutil)
    assert len(ours.per_core) == len(theirs.per_core)
    # Read a moment apart: the counters only grow, and by little.
    assert all(0 <= t - o < 5 for o, t in zip(ours.total, theirs.total, strict=True))
