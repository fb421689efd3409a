"""The sampler over a fake host: rates, resets, per-process CPU, failing probes; then on this machine."""

from __future__ import annotations

import logging
import math
import os
import pwd
import re
import shutil
import socket
import time
from collections import namedtuple

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

import osmon
from agent import probes, systemd
from agent.sampler import MAX_RATE, SENSOR_RECHECK, CounterRates, Sampler, clean
from osmon import wire

CpuT = namedtuple("CpuT", "user nice system idle iowait irq softirq steal guest guest_nice")
Mem = namedtuple("Mem", "total available percent used free")
Swap = namedtuple("Swap", "total used free percent sin sout")
Part = namedtuple("Part", "device mountpoint fstype opts")
Usage = namedtuple("Usage", "total used free percent")
DiskIO = namedtuple("DiskIO", "read_bytes write_bytes")
NetIO = namedtuple("NetIO", "bytes_sent bytes_recv")
Temp = namedtuple("Temp", "label current high critical")


def cpu(user, idle):
    return CpuT(user, 0.0, 0.0, idle, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class FakeHost:
    """The parts of psutil the sampler uses, with values a test sets; /proc and /sys live in tmp_path."""

    def __init__(self, tmp_path):
        self.PROCFS_PATH = str(tmp_path / "proc")
        os.makedirs(self.PROCFS_PATH)
        with open(f"{self.PROCFS_PATH}/uptime", "w") as f:
            f.write("1000.00 1900.00\n")
        self.sys_path = str(tmp_path / "sys")
        for name in ("sda", "sdb"):
            os.makedirs(f"{self.sys_path}/block/{name}")
        os.makedirs(f"{self.sys_path}/devices/virtual/net/lo")
        self.cores = [cpu(10.0, 90.0), cpu(10.0, 90.0)]
        self.disks = {"sda": DiskIO(1_000_000, 0), "sdb": DiskIO(0, 0)}
        self.nics = {"lo": NetIO(5, 5), "eth0": NetIO(bytes_sent=0, bytes_recv=0)}
        self.mem = Mem(4_096_000, 2_457_600, 40.0, 1_638_400, 409_600)

    def cpu_times(self, percpu=False):
        return list(self.cores) if percpu else CpuT(*map(sum, zip(*self.cores, strict=True)))

    def getloadavg(self):
        return (0.5, 0.25, 0.125)

    def virtual_memory(self):
        return self.mem

    def swap_memory(self):
        return Swap(0, 0, 0, 0.0, 0, 0)

    def disk_partitions(self, all=False):
        return [Part("/dev/sda1", "/", "ext4", "rw")]

    def disk_usage(self, path):
        return Usage(100, 30, 70, 30.0)

    def disk_io_counters(self, perdisk=False, nowrap=True):
        return dict(self.disks)

    def net_io_counters(self, pernic=False, nowrap=True):
        return dict(self.nics)

    def users(self):
        return []

    def add_process(self, pid, name, cpu_seconds, start=100, rss_pages=1):
        ticks = round(cpu_seconds * os.sysconf("SC_CLK_TCK"))
        fields = ["S", "1"] + ["0"] * 9 + [str(ticks), "0"] + ["0"] * 6 + [str(start), "0", str(rss_pages)]
        os.makedirs(f"{self.PROCFS_PATH}/{pid}", exist_ok=True)
        with open(f"{self.PROCFS_PATH}/{pid}/stat", "w") as f:
            f.write(f"{pid} ({name}) {' '.join(fields)} 0 0 0\n")

    def remove_process(self, pid):
        shutil.rmtree(f"{self.PROCFS_PATH}/{pid}")


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def host(tmp_path):
    return FakeHost(tmp_path)


@pytest.fixture
def clock():
    return Clock()


def make_sampler(host, clock, **kwargs):
    return Sampler(host, top_n=3, clock=clock, nvml_library=None, sys_path=host.sys_path, **kwargs)


# --- rates -------------------------------------------------------------------------------------


def test_first_sample_has_no_rates_the_second_has_exact_ones(host, clock):
    sampler = make_sampler(host, clock)
    first, errors = sampler.sample()
    assert errors == {}
    assert "read_bps" not in first["disk_io"] and "read_bps" not in first["disk_io"]["devices"]["sda"]
    assert "rx_bps" not in first["net_io"]
    clock.now += 10
    host.disks["sda"] = DiskIO(3_000_000, 500_000)
    host.nics["eth0"] = NetIO(bytes_sent=1_000, bytes_recv=125_000)
    second, _ = sampler.sample()
    assert second["disk_io"]["devices"]["sda"] == {
        "read_bytes": 3_000_000,
        "write_bytes": 500_000,
        "read_bps": 200_000.0,
        "write_bps": 50_000.0,
    }
    assert (second["disk_io"]["read_bps"], second["disk_io"]["write_bps"]) == (200_000.0, 50_000.0)
    assert (second["net_io"]["rx_bps"], second["net_io"]["tx_bps"]) == (12_500.0, 100.0)
    assert "lo" not in second["net_io"]["interfaces"]


def test_a_counter_reset_gives_no_rate_never_a_negative_one(host, clock):
    sampler = make_sampler(host, clock)
    host.disks["sdb"] = DiskIO(5_000, 5_000)
    sampler.sample()
    clock.now += 10
    host.disks["sda"] = DiskIO(500, 0)  # went down: the device was reset or replaced
    host.disks["sdb"] = DiskIO(6_000, 5_000)
    after_reset, _ = sampler.sample()
    disk = after_reset["disk_io"]
    assert "read_bps" not in disk["devices"]["sda"] and "write_bps" not in disk["devices"]["sda"]
    assert disk["devices"]["sdb"]["read_bps"] == 100.0
    assert "read_bps" not in disk  # the total went down too: no total rate
    clock.now += 10
    host.disks["sda"] = DiskIO(1_500, 0)
    next_sample, _ = sampler.sample()
    assert next_sample["disk_io"]["devices"]["sda"]["read_bps"] == 100.0  # counted from the new start
    assert next_sample["disk_io"]["read_bps"] == 100.0


def test_an_impossible_jump_gives_no_rate(host, clock):
    sampler = make_sampler(host, clock)
    sampler.sample()
    clock.now += 1
    host.nics["eth0"] = NetIO(bytes_sent=0, bytes_recv=2**64 - 1)  # a misread wrap
    result, _ = sampler.sample()
    assert "rx_bps" not in result["net_io"]["interfaces"]["eth0"]
    assert "rx_bps" not in result["net_io"]


def test_a_new_device_has_no_rate_yet_and_no_total_rate(host, clock):
    sampler = make_sampler(host, clock)
    sampler.sample()
    clock.now += 10
    os.makedirs(f"{host.sys_path}/block/sdc")
    host.disks["sdc"] = DiskIO(10**9, 0)  # hot-plugged with a history of its own
    result, _ = sampler.sample()
    assert "read_bps" not in result["disk_io"]["devices"]["sdc"]
    assert result["disk_io"]["devices"]["sda"]["read_bps"] == 0.0
    assert "read_bps" not in result["disk_io"]


def test_a_removed_device_gives_no_total_rate(host, clock):
    host.disks["sdb"] = DiskIO(50_000, 0)
    sampler = make_sampler(host, clock)
    sampler.sample()
    clock.now += 10
    del host.disks["sdb"]  # unplugged: its 50 kB leave the total while sda reads 100 kB
    host.disks["sda"] = DiskIO(1_100_000, 0)
    result, _ = sampler.sample()
    assert result["disk_io"]["devices"]["sda"]["read_bps"] == 10_000.0
    assert "read_bps" not in result["disk_io"]  # not the 5 kB/s the totals' difference suggests


@given(
    st.lists(
        st.tuples(st.floats(0.001, 3600), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
        min_size=1,
        max_size=20,
    )
)
def test_rates_are_never_negative_nor_absurd_whatever_the_counters_do(steps):
    rates = CounterRates("interfaces", ("rx_bytes", "tx_bytes"), ("rx_bps", "tx_bps"))
    now, previous = 0.0, None
    for elapsed, rx, tx in steps:
        now += elapsed
        result = {"rx_bytes": rx, "tx_bytes": tx, "interfaces": {"eth0": {"rx_bytes": rx, "tx_bytes": tx}}}
        rates.add(result, now)
        went_down = previous is not None and (rx < previous[0] or tx < previous[1])
        if previous is None or went_down:
            assert "rx_bps" not in result and "tx_bps" not in result["interfaces"]["eth0"]
        for value in (result.get("rx_bps"), result.get("tx_bps")):
            assert value is None or 0 <= value <= MAX_RATE
        previous = (rx, tx)


# --- CPU ---------------------------------------------------------------------------------------


def test_first_sample_cpu_is_measured_from_construction(host, clock):
    sampler = make_sampler(host, clock)
    # Between construction and the first sample core 0 is busy 1 s out of 2, core 1 is idle.
    host.cores = [cpu(11.0, 91.0), cpu(10.0, 92.0)]
    result, _ = sampler.sample()
    assert result["cpu"]["percent"] == 25.0
    assert result["cpu"]["user"] == 25.0
    assert result["cpu"]["per_core"] == [50.0, 0.0]
    assert result["cpu"]["count"] == 2
    host.cores = [cpu(11.0, 93.0), cpu(12.0, 92.0)]
    assert sampler.sample()[0]["cpu"]["per_core"] == [0.0, 100.0]


def test_process_cpu_between_samples_and_dead_pids_forgotten(host, clock):
    host.add_process(1, "init", 1.0, start=1)
    host.add_process(300, "build", 10.0, start=5000)
    sampler = make_sampler(host, clock)
    clock.now += 10
    host.add_process(300, "build", 15.0, start=5000)  # 5 s of CPU in 10 s
    first, _ = sampler.sample()
    assert [(p["pid"], p["cpu_percent"]) for p in first["processes"]["top_cpu"]] == [(300, 50.0), (1, 0.0)]
    fds = len(os.listdir("/proc/self/fd"))
    host.remove_process(300)
    clock.now += 10
    second, _ = sampler.sample()
    assert second["processes"]["count"] == 1
    assert len(os.listdir("/proc/self/fd")) == fds - 1  # its stat file was closed
    # A new process gets pid 300 again: its CPU is its own, not a difference with the dead one's.
    host.add_process(300, "compile", 2.0, start=9000)
    clock.now += 10
    third, _ = sampler.sample()
    assert third["processes"]["top_cpu"][0] == {
        "pid": 300,
        "name": "compile",
        "user": None,
        "cmdline": "",
        "cpu_percent": 20.0,
        "mem_percent": round(100 * os.sysconf("SC_PAGE_SIZE") / 4_096_000, 2),
        "rss": os.sysconf("SC_PAGE_SIZE"),
    }
    sampler.close()


# --- failures ----------------------------------------------------------------------------------


def test_a_failing_probe_is_reported_and_the_others_still_run(host, clock):
    def swap_memory():
        raise PermissionError(13, "Permission denied", "/proc/vmstat")

    host.swap_memory = swap_memory
    results, errors = make_sampler(host, clock).sample()
    assert errors == {"swap": "PermissionError: [Errno 13] Permission denied: '/proc/vmstat'"}
    assert "swap" not in results
    assert {"cpu", "memory", "filesystems", "disk_io", "net_io", "processes", "uptime"} <= results.keys()


def test_a_psutil_error_is_reported_with_its_type(host, clock):
    def users():
        raise psutil.AccessDenied(pid=1, name="utmp")

    host.users = users
    _, errors = make_sampler(host, clock).sample()
    assert errors["users"].startswith("AccessDenied: ")


def test_a_bug_in_a_probe_is_reported_and_logged_once_with_traceback(host, clock, caplog):
    host.users = lambda: [object()]  # no .name: an AttributeError in the probe
    sampler = make_sampler(host, clock)
    with caplog.at_level(logging.ERROR, logger="agent.sampler"):
        for _ in range(3):
            results, errors = sampler.sample()
    assert errors["users"].startswith("AttributeError: ")
    assert "memory" in results
    logged = [r for r in caplog.records if "users" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


def test_long_error_messages_are_cut(host, clock):
    def swap_memory():
        raise OSError("x" * 1000)

    host.swap_memory = swap_memory
    _, errors = make_sampler(host, clock).sample()
    assert len(errors["swap"]) == 200


def test_clean_replaces_every_non_finite_float_however_deep():
    dirty = {"a": [math.nan, 1.5, {"b": math.inf, "c": (-math.inf, 2)}], "d": "nan", "e": True, "f": None}
    assert clean(dirty) == {"a": [None, 1.5, {"b": None, "c": [None, 2]}], "d": "nan", "e": True, "f": None}


def test_absent_temperatures_and_gpus_are_omitted_without_error(host, clock):
    sampler = Sampler(
        host, clock=clock, nvml_library="/nonexistent/libnvidia-ml.so.1", sys_path=host.sys_path
    )
    results, errors = sampler.sample()
    assert "temperatures" not in results and "gpus" not in results
    assert errors == {}
    host.sensors_temperatures = dict  # psutil has the function, the host has no sensor
    results, errors = sampler.sample()
    assert "temperatures" not in results and errors == {}


def test_sensors_appearing_later_are_reported_within_a_few_samples(host, clock):
    sampler = make_sampler(host, clock)
    assert "temperatures" not in sampler.sample()[0]
    host.sensors_temperatures = lambda: {"coretemp": [Temp("Core 0", 51.0, 80.0, 100.0)]}  # module loaded
    seen = [("temperatures" in sampler.sample()[0]) for _ in range(SENSOR_RECHECK)]
    assert seen[-1] and seen.index(True) == SENSOR_RECHECK - 1
    assert all("temperatures" in sampler.sample()[0] for _ in range(3))  # then every sample


def test_non_finite_numbers_never_reach_the_snapshot(host, clock):
    host.mem = host.mem._replace(percent=math.nan)
    host.sensors_temperatures = lambda: {"acpitz": [Temp("", math.inf, None, -math.inf)]}
    sampler = make_sampler(host, clock)
    host.cores = [cpu(math.inf, 100.0), cpu(11.0, 99.0)]  # a broken counter: its percentages are NaN
    results, errors = sampler.sample()
    assert results["cpu"]["percent"] is None and results["cpu"]["per_core"] == [None, 10.0]
    assert results["memory"]["percent"] is None
    assert results["temperatures"] == {
        "acpitz": [{"label": None, "current": None, "high": None, "critical": None}]
    }
    message = wire.encode_snapshot("web-01", 1, time.time(), 10.0, osmon.__version__, results, errors)
    snapshot = wire.decode_snapshot(message)  # the collector accepts it
    assert snapshot.probes() == results
    assert "mem.percent" not in snapshot.metrics


# --- on this machine ---------------------------------------------------------------------------


def shape_keys(shape):
    """The required keys of the first {...} in a PROBE_SHAPES entry (optional ones end with ?)."""
    inner = re.search(r"\{([^{}]*)", shape).group(1)
    return {k.strip() for k in inner.split(",") if not k.strip().endswith("?") and ":" not in k}


def test_real_snapshots_follow_probe_shapes_and_the_collector_accepts_them():
    sampler = Sampler()
    time.sleep(0.2)
    sampler.sample()
    time.sleep(0.2)
    results, errors = sampler.sample()
    sampler.close()
    assert errors == {}
    for name in ("cpu", "load", "memory", "swap", "disk_io", "net_io", "uptime", "system"):
        assert shape_keys(wire.PROBE_SHAPES[name]) <= results[name].keys(), name
    for fs in results["filesystems"]:
        assert shape_keys(wire.PROBE_SHAPES["filesystems"]) <= fs.keys()
    processes = results["processes"]
    assert {"count", "top_cpu", "top_mem"} <= processes.keys()
    proc_keys = {"pid", "name", "user", "cpu_percent", "mem_percent", "rss", "cmdline"}
    assert all(proc_keys <= p.keys() for p in processes["top_cpu"] + processes["top_mem"])
    assert {"read_bps", "write_bps"} <= results["disk_io"].keys()  # second sample: rates
    assert results["cpu"]["count"] == os.cpu_count()
    assert 0 <= results["cpu"]["percent"] <= 100
    message = wire.encode_snapshot(
        socket.gethostname(), 2, time.time(), 10.0, osmon.__version__, results, errors
    )
    snapshot = wire.decode_snapshot(message)
    assert snapshot.probes() == results
    # The numbers the collector stores and alerts on are all there (failed units need systemd as PID 1).
    expected = set(wire.METRICS) - (set() if systemd.booted() else {"units.failed"})
    assert expected <= snapshot.metrics.keys()
    assert snapshot.series["cpu.core"] == results["cpu"]["per_core"]
    assert snapshot.series["disk.percent"] == {fs["mount"]: fs["percent"] for fs in results["filesystems"]}


def test_first_real_sample_already_has_cpu_figures():
    sampler = Sampler()
    time.sleep(0.2)  # what osmon-agent once does
    results, _ = sampler.sample()
    sampler.close()
    assert results["cpu"]["percent"] is not None
    assert all(p is not None for p in results["cpu"]["per_core"])
    assert results["processes"]["top_cpu"], "no process ranked by CPU on the first sample"
    for listed in results["processes"]["top_mem"]:
        try:
            process = psutil.Process(listed["pid"])
            uid, rss = process.uids().effective, process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:  # a uid with no name here, e.g. a container's service user: shown as ps does
            name = str(uid)
        assert listed["user"] == name
        assert abs(listed["rss"] - rss) < 4 * 1024 * 1024


def test_real_network_figures_are_psutils_from_proc_net_dev_and_sysfs():
    # The real host reads /proc/net/dev once and sysfs, not psutil's sockets: the same figures.
    sampler = Sampler(nvml_library=None)
    before = probes.net_io()
    found = sampler.sample()[0]["net_io"]
    after = probes.net_io()
    sampler.close()
    assert found["interfaces"].keys() == after["interfaces"].keys()
    for name, entry in found["interfaces"].items():
        assert {k: entry.get(k) for k in ("up", "speed")} == {
            k: after["interfaces"][name].get(k) for k in ("up", "speed")
        }
        for counter in ("rx_bytes", "tx_bytes", "errors", "drops"):
            assert before["interfaces"][name][counter] <= entry[counter] <= after["interfaces"][name][counter]
