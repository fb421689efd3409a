"""Kernel counters, PSI, tables, OOM victims and the clock, from a fake /proc with exact values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import kernel
from agent.kernel import ClockState, Counters


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_counters_and_rates_from_vmstat_and_stat(tmp_path: Path) -> None:
    write(tmp_path, "vmstat", "nr_free_pages 1\npswpin 100\npswpout 40\noom_kill 3\n")
    write(tmp_path, "stat", "cpu  1 2 3\nintr 5000 1 2 3\nctxt 90000\nprocesses 700\n")
    before = kernel.counters(str(tmp_path))
    assert before == Counters(100, 40, 3, 90000, 5000, 700)
    write(tmp_path, "vmstat", "pswpin 150\npswpout 40\noom_kill 5\n")
    write(tmp_path, "stat", "intr 7000 1 2 3\nctxt 100000\nprocesses 720\n")
    now = kernel.counters(str(tmp_path))
    assert kernel.activity(before, now, 10.0, ["java (pid 7)", "java (pid 9)"]) == {
        "swap_in_bps": 50 * kernel.PAGE_SIZE / 10,
        "swap_out_bps": 0.0,
        "context_switches_ps": 1000.0,
        "interrupts_ps": 200.0,
        "forks_ps": 2.0,
        "oom_kills": 2,
        "oom_victims": ["java (pid 7)", "java (pid 9)"],
    }
    assert kernel.activity(None, now, 10.0) == {}


def test_a_kernel_without_oom_kill_counter_reports_no_kills(tmp_path: Path) -> None:
    write(tmp_path, "vmstat", "pswpin 1\npswpout 1\n")  # Linux < 4.13
    c = kernel.counters(str(tmp_path))
    assert "oom_kills" not in kernel.activity(c, c, 10.0)


def test_pressure_from_proc_pressure_and_absent_without_psi(tmp_path: Path) -> None:
    assert kernel.pressure(str(tmp_path)) is None
    write(
        tmp_path,
        "pressure/memory",
        "some avg10=1.50 avg60=12.25 avg300=3.00 total=1234\nfull avg10=0.00 avg60=4.10 avg300=1.00 total=99\n",
    )
    assert kernel.pressure(str(tmp_path)) == {
        "memory": {
            "some10": 1.5,
            "some60": 12.25,
            "some300": 3.0,
            "full10": 0.0,
            "full60": 4.1,
            "full300": 1.0,
        }
    }


def test_limits_from_file_nr_loadavg_pid_max_and_conntrack(tmp_path: Path) -> None:
    write(tmp_path, "sys/fs/file-nr", "8000\t0\t10000\n")
    write(tmp_path, "loadavg", "0.50 0.40 0.30 3/1638 4242\n")
    write(tmp_path, "sys/kernel/pid_max", "32768\n")
    assert kernel.limits(str(tmp_path)) == {
        "fds": 8000,
        "fds_max": 10000,
        "fds_percent": 80.0,
        "threads": 1638,
        "pid_max": 32768,
        "pids_percent": 5.0,
    }
    write(tmp_path, "sys/net/netfilter/nf_conntrack_count", "950\n")
    write(tmp_path, "sys/net/netfilter/nf_conntrack_max", "1000\n")
    assert kernel.limits(str(tmp_path))["conntrack_percent"] == 95.0


def test_limits_of_this_machine_agree_with_proc() -> None:
    with open("/proc/sys/fs/file-nr") as f:
        maximum = int(f.read().split()[2])
    found = kernel.limits()
    assert found["fds_max"] == maximum
    assert found["threads"] >= 1 and 0 < found["pids_percent"] < 100


def test_oom_victims_from_kernel_log_records_appended_after_opening(tmp_path: Path) -> None:
    log = tmp_path / "kmsg"
    log.write_text("6,1,1,-;Out of memory: Killed process 1 (old) total-vm:1kB\n")
    reader = kernel.KernelLog(str(log))
    with log.open("a") as f:
        f.write("4,2,2,-;oom-kill:constraint=CONSTRAINT_NONE,task=stress,pid=4242\n")
        f.write("3,3,3,-;Out of memory: Killed process 4242 (stress (ng)) total-vm:20kB, anon-rss:10kB\n")
        f.write("3,4,4,-;Memory cgroup out of memory: Killed process 77 (java) total-vm:9kB\n")
    assert kernel.oom_victims(reader.read()) == ["stress (ng) (pid 4242)", "java (pid 77)"]
    assert reader.read() == []
    reader.close()
    assert kernel.KernelLog(str(tmp_path / "absent")).read() == []


@pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="/dev/kmsg is not readable by this user")
def test_the_real_kernel_log_opens_at_its_end() -> None:
    reader = kernel.KernelLog()
    assert len(reader.read()) < 50  # only what was logged since it was opened
    reader.close()


def test_clock_state_from_adjtimex_values() -> None:
    synced = ClockState(0, 0x2001, 2_500_000, 50_000)  # STA_PLL | STA_NANO: offset in ns
    assert kernel.clock(synced) == {"unsynchronised": 0.0, "offset": 0.0025, "max_error": 0.05}
    unsynced = ClockState(5, kernel.STA_UNSYNC, -300_000, 16_000_000)
    assert kernel.clock(unsynced) == {"unsynchronised": 1.0, "offset": 0.3, "max_error": 16.0}
    assert kernel.clock(None) is None


def test_clock_of_this_machine_matches_adjtimex_status() -> None:
    state = kernel.adjtimex()
    assert state is not None
    result = kernel.clock(state)
    assert result is not None
    assert result["unsynchronised"] == (
        1.0 if state.state == kernel.TIME_ERROR or state.status & 0x40 else 0.0
    )
