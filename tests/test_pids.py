"""Which processes a scan finds: /proc listed in full now and then, in between the pids handed out since."""

from __future__ import annotations

import os
import subprocess

import pytest

from agent import pids, probes


def write_stat(proc, pid, name="sleep", utime=0):
    d = proc / str(pid)
    d.mkdir(exist_ok=True)
    fields = ["S", "1"] + ["0"] * 9 + [str(utime), "0"] + ["0"] * 6 + ["100", "0", "0"]
    (d / "stat").write_text(f"{pid} ({name}) {' '.join(fields)}\n")


@pytest.fixture
def fake_proc(tmp_path):
    """A /proc tree of our pid namespace (self is us) whose pid cursor the test sets."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "self").symlink_to(str(os.getpid()))
    return proc


def set_last_pid(proc, pid):
    (proc / "loadavg").write_text(f"0.00 0.01 0.05 1/100 {pid}\n")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def scan(files, proc):
    fd = os.open(proc, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return files.scan(fd)
    finally:
        os.close(fd)


def test_pids_that_wrapped_around_are_found_by_a_full_listing(fake_proc):
    lister = pids.PidLister(clock=Clock())
    files = probes.StatFiles(limit=10, pids=lister)
    write_stat(fake_proc, 30000)
    set_last_pid(fake_proc, 30000)
    assert sorted(scan(files, fake_proc)) == [30000]
    write_stat(fake_proc, 30000, utime=5)
    assert scan(files, fake_proc)[30000].cpu == 5 / probes.CLOCK_TICKS  # known: re-read, not listed
    assert lister.full_listings == 1
    write_stat(fake_proc, 301)  # past pid_max the kernel starts again from the bottom
    set_last_pid(fake_proc, 301)
    assert sorted(scan(files, fake_proc)) == [301, 30000]
    assert lister.full_listings == 2
    files.close()


def test_a_pid_handed_out_off_the_cursor_is_listed_within_a_minute(fake_proc):
    clock = Clock()
    lister = pids.PidLister(clock=clock)
    files = probes.StatFiles(limit=10, pids=lister)
    write_stat(fake_proc, 500)
    set_last_pid(fake_proc, 500)
    scan(files, fake_proc)
    write_stat(fake_proc, 42)  # clone3 with set_tid (a restored checkpoint): the cursor stays
    clock.now += pids.FULL_LISTING - 1
    assert sorted(scan(files, fake_proc)) == [500]
    clock.now += 1
    assert sorted(scan(files, fake_proc)) == [42, 500]
    files.close()


def test_a_proc_of_another_pid_namespace_is_always_listed_in_full(fake_proc):
    (fake_proc / "self").unlink()
    (fake_proc / "self").symlink_to("1")  # a container's /proc seen from the host, or the reverse
    lister = pids.PidLister(clock=Clock())
    files = probes.StatFiles(limit=10, pids=lister)
    set_last_pid(fake_proc, 500)
    write_stat(fake_proc, 500)
    scan(files, fake_proc)
    write_stat(fake_proc, 7)  # its cursor says nothing of this one
    assert sorted(scan(files, fake_proc)) == [7, 500]
    assert lister.full_listings == 2
    files.close()


def test_this_machines_new_and_exited_processes_between_two_full_listings():
    lister = pids.PidLister()
    files = probes.StatFiles(pids=lister)
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        first = files.scan(proc)
        started = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]
        try:
            table = files.scan(proc)
            assert all(child.pid in table for child in started)
            assert table[started[0].pid].name == "sleep"
            started[0].kill()
            started[0].wait()
            assert started[0].pid not in files.scan(proc)
            assert all(child.pid in files.scan(proc) for child in started[1:])
        finally:
            for child in started:
                child.kill()
                child.wait()
        assert lister.full_listings == 1  # found from the pid cursor, not by listing /proc again
        listed = {int(name) for name in os.listdir(proc) if name.isdigit()}
        again = files.scan(proc)
        # The same processes as a listing, give or take those started or ended meanwhile.
        assert len(listed ^ again.keys()) <= max(3, len(listed) // 50)
        assert os.getpid() in first and os.getpid() in again
    finally:
        os.close(proc)
        files.close()


def test_listed_after_gives_the_pids_above_a_number_up_to_a_limit():
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        listed = sorted(int(name) for name in os.listdir(proc) if name.isdigit())
        low, high = listed[len(listed) // 3], listed[2 * len(listed) // 3]
        found = [int(name) for name in pids.listed_after(proc, low, high)]
        expected = [pid for pid in listed if low < pid <= high]
        # Processes may start or end between the two listings of a busy machine.
        assert len(set(found) ^ set(expected)) <= max(3, len(expected) // 20)
        assert found == sorted(found)
    finally:
        os.close(proc)


def test_between_full_listings_files_not_kept_open_are_opened_again_and_exited_ones_leave(fake_proc):
    lister = pids.PidLister(clock=Clock())
    # None kept open (a host past the limit): a deleted fake file stays readable through an open
    # descriptor, where a real one fails once its process is gone (the test of this machine's).
    files = probes.StatFiles(limit=0, pids=lister)
    fds = len(os.listdir("/proc/self/fd"))
    set_last_pid(fake_proc, 502)
    for pid in (500, 501, 502):
        write_stat(fake_proc, pid)
    scan(files, fake_proc)
    write_stat(fake_proc, 501, utime=7)
    for pid in (500, 502):
        for name in os.listdir(fake_proc / str(pid)):
            os.unlink(fake_proc / str(pid) / name)
        os.rmdir(fake_proc / str(pid))
    table = scan(files, fake_proc)
    assert sorted(table) == [501]
    assert table[501].cpu == 7 / probes.CLOCK_TICKS
    assert files.changed == [501]
    assert lister.full_listings == 1
    files.close()
    assert len(os.listdir("/proc/self/fd")) == fds
