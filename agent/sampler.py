"""Runs the probes once per snapshot and keeps what percentages and rates need between snapshots."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import psutil

from agent import kernel, mounts, netdev, nvml, probes, procfiles, systemd
from osmon.numbers import is_finite

log = logging.getLogger(__name__)

# What a probe may raise when the host, not our code, is at fault.
PROBE_ERRORS = (psutil.Error, OSError, ValueError, nvml.NvmlError)
ERROR_CHARS = 200
# No disk or network interface moves a terabyte per second: a faster "rate" is a reset we missed.
MAX_RATE = 1e12
# Samples between two looks for temperature sensors on a host that had none (most VMs).
SENSOR_RECHECK = 30


def describe(error: BaseException) -> str:
    """A short "ExceptionType: message" for the snapshot's errors map."""
    return f"{type(error).__name__}: {error}"[:ERROR_CHARS]


# Values clean() returns as they are, without a call: most of a snapshot's few hundred values.
_KEPT = frozenset({int, str, bool, type(None)})


def clean(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None: the collector rejects them."""
    kind = type(value)  # exact types: this runs on every value of every snapshot
    if kind is float:
        return value if is_finite(value) else None
    # A finite float and the kept types are copied without a call (v - v is NaN for NaN and inf).
    if kind is dict:
        return {
            k: v if type(v) in _KEPT or (type(v) is float and v - v == 0.0) else clean(v)
            for k, v in value.items()
        }
    if kind is list or kind is tuple:
        return [v if type(v) in _KEPT or (type(v) is float and v - v == 0.0) else clean(v) for v in value]
    return value


def rates(now: tuple[int, ...], before: tuple[int, ...] | None, elapsed: float) -> list[float] | None:
    """Per-second rates of counters, or None after a reset (a counter went down) or an absurd jump."""
    if before is None or elapsed <= 0:
        return None
    result = []
    for n, b in zip(now, before, strict=True):
        rate = (n - b) / elapsed
        if not 0 <= rate <= MAX_RATE:
            return None
        result.append(round(rate, 1))
    return result


class CounterRates:
    """Adds bytes-per-second rates to a disk_io or net_io result, from the previous one."""

    def __init__(self, group: str, counters: tuple[str, ...], rate_names: tuple[str, ...]) -> None:
        self._group, self._counters, self._rate_names = group, counters, rate_names
        self._before: tuple[float, tuple[int, ...], dict[str, tuple[int, ...]]] | None = None

    def add(self, result: dict[str, Any], now: float) -> None:
        """Add rates to `result` and each of its devices; none on the first call or after a reset."""
        group = result[self._group]
        devices = {name: tuple(d[c] for c in self._counters) for name, d in group.items()}
        total = tuple(result[c] for c in self._counters)
        before, self._before = self._before, (now, total, devices)
        if before is None:
            return
        then, total_before, devices_before = before
        complete = devices.keys() == devices_before.keys()
        for name, counters in devices.items():
            values = rates(counters, devices_before.get(name), now - then)
            if values is None:
                complete = False
            else:
                group[name].update(zip(self._rate_names, values, strict=True))
        # A total only compares with the previous one over the same devices, none of them reset.
        values = rates(total, total_before, now - then) if complete else None
        if values is not None:
            result.update(zip(self._rate_names, values, strict=True))


class Sampler:
    """Collects one snapshot's probe results per call to `sample()`."""

    def __init__(
        self,
        ps: Any = psutil,
        top_n: int = 5,
        clock: Callable[[], float] = time.monotonic,
        *,
        wall_clock: Callable[[], float] = time.time,
        nvml_library: str | None = "libnvidia-ml.so.1",
        os_release: str = "/etc/os-release",
        sys_path: str = "/sys",
        exclude: mounts.Exclude = mounts.DEFAULT_EXCLUDE,
        mount_timeout: float = mounts.MOUNT_TIMEOUT,
        fstab: str = "/etc/fstab",
        ignore_units: tuple[str, ...] = (),
        systemctl: systemd.Run | None = None,
        kernel_log: str = "/dev/kmsg",
    ) -> None:
        self._ps, self._top_n, self._clock, self._sys = ps, top_n, clock, sys_path
        self._proc = getattr(ps, "PROCFS_PATH", "/proc")
        self._exclude, self._mount_wait = exclude, mounts.BoundedWait(mount_timeout)
        self._read_write = mounts.fstab_read_write(fstab)  # grows with every mount seen read-write
        self._mount_table = mounts.MountTable(self._proc)
        # None: no systemd here (a container, a SysV host), and no unit probe.
        if systemctl is None and systemd.booted():
            systemctl = systemd.systemctl
        self._systemctl, self._ignore_units = systemctl, ignore_units
        self._kernel_log = kernel.KernelLog(kernel_log)
        # The real host's /proc files several probes read, once per snapshot; a fake host's
        # readings come from its own methods.
        self._files = procfiles.SnapshotFiles(self._proc) if ps is psutil else None
        # The real host's links from sysfs, its counters from the snapshot's /proc/net/dev.
        self._links = netdev.LinkFiles(sys_path) if ps is psutil else None
        self._net_wraps = netdev.NoWrap()
        self._counters_before = self._baseline(lambda _ps: (clock(), kernel.counters(self._proc)), ps)
        self._disk_before: tuple[float, dict[str, Any]] | None = None
        self._net_before: tuple[float, int, int] | None = None
        self._links_up: set[str] = set()
        self._nvml, self._nvml_error = None, ""
        try:
            self._nvml = nvml.Nvml.load(nvml_library) if nvml_library else None
        except nvml.NvmlError as e:  # GPUs are there but out of reach: say so in every snapshot
            self._nvml_error = str(e)
        self._disk = CounterRates("devices", ("read_bytes", "write_bytes"), ("read_bps", "write_bps"))
        self._net = CounterRates("interfaces", ("rx_bytes", "tx_bytes"), ("rx_bps", "tx_bps"))
        self._logged_bugs: set[str] = set()
        self._sensorless_samples = 0
        # Baselines, so that even the first sample (osmon-agent once) has CPU percentages.
        self._cpu_before = self._baseline(probes.cpu_times, ps)
        memory = self._baseline(probes.memory, ps)
        self._mem_total = memory["total"] if memory else None
        self._stat_files = probes.StatFiles()
        table = self._baseline(functools.partial(probes.process_table, files=self._stat_files), ps)
        self._procs_before = None if table is None else (table, clock())
        self._probes: dict[str, Callable[[], Any]] = {
            "cpu": self._cpu,
            "load": functools.partial(probes.load, ps),
            "memory": self._memory,
            "swap": self._swap,
            "filesystems": self._filesystems,
            "disk_io": self._disk_io,
            "net_io": self._net_io,
            "processes": self._processes,
            "users": functools.partial(probes.users, ps),
            "uptime": functools.partial(probes.uptime, ps, wall_clock),
            "system": functools.partial(probes.system, os_release),
            "temperatures": self._temperatures,
            "gpus": self._gpus,
            "units": self._units,
            "pressure": functools.partial(kernel.pressure, self._proc),
            "activity": self._activity,
            "limits": functools.partial(kernel.limits, self._proc),
            "clock": lambda: kernel.clock(kernel.adjtimex()),
        }

    @staticmethod
    def _baseline(read: Callable[[Any], Any], ps: Any) -> Any:
        try:
            return read(ps)
        except PROBE_ERRORS as e:  # the probe will report it at sample time
            log.debug("no baseline for a probe: %s", describe(e))
            return None

    def close(self) -> None:
        """Close the files kept open between samples and release NVML."""
        self._stat_files.close()
        self._kernel_log.close()
        if self._links is not None:
            self._links.close()
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None

    def sample(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Run every probe: (results by probe name, "Type: message" by name of each probe that failed)."""
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        if self._files is not None:
            self._files.clear()
        for name, probe in self._probes.items():
            try:
                result = probe()
            except PROBE_ERRORS as e:
                errors[name] = describe(e)
                continue
            except Exception as e:  # a bug of ours: keep the other probes, show the traceback once
                if name not in self._logged_bugs:
                    self._logged_bugs.add(name)
                    log.exception("probe %s failed", name)
                errors[name] = describe(e)
                continue
            if result is not None:
                results[name] = clean(result)
        return results, errors

    def _cpu(self) -> dict[str, Any]:
        if self._files is not None:
            after = procfiles.cpu_times(self._files.text("stat"))
        else:
            after = probes.cpu_times(self._ps)
        before, self._cpu_before = self._cpu_before, after
        return probes.cpu(before, after)

    def _memory(self) -> dict[str, Any]:
        result = procfiles.memory(self._files.meminfo()) if self._files is not None else None
        if result is None:
            result = probes.memory(self._ps)
        self._mem_total = result["total"]  # processes' memory percentages reuse it
        return result

    def _swap(self) -> dict[str, Any]:
        result = procfiles.swap(self._files.meminfo()) if self._files is not None else None
        return result if result is not None else probes.swap(self._ps)

    def _temperatures(self) -> dict[str, Any] | None:
        # Looking for sensors costs as much as three other probes; a host without any rarely grows one.
        if self._sensorless_samples % SENSOR_RECHECK:
            self._sensorless_samples += 1
            return None
        result = probes.temperatures(self._ps)
        self._sensorless_samples = 0 if result else 1
        return result

    def _gpus(self) -> list[dict[str, Any]] | None:
        if self._nvml_error:
            raise nvml.NvmlError(self._nvml_error)
        return probes.gpus(self._nvml)

    def _disk_io(self) -> dict[str, Any]:
        result = probes.disk_io(self._ps, self._sys)
        now = self._clock()
        self._disk.add(result, now)
        before, self._disk_before = self._disk_before, (now, result)
        if before is not None:
            result.update(probes.disk_ops(result, before[1], now - before[0]))
        return result

    def _net_io(self) -> dict[str, Any]:
        if self._files is not None and self._links is not None:
            counters = self._net_wraps.run(netdev.counters(self._files.text("net/dev")))
            result = probes.net_io_of(counters, self._links.stats, self._sys)
        else:
            result = probes.net_io(self._ps, self._sys)
        now = self._clock()
        self._net.add(result, now)
        probes.link_changes(result, self._links_up)
        before, self._net_before = self._net_before, (now, result["errors"], result["drops"])
        if before is not None and now > before[0]:
            for key, then in (("errors", before[1]), ("drops", before[2])):
                if result[key] >= then:
                    result[f"{key}_ps"] = round((result[key] - then) / (now - before[0]), 2)
        return result

    def _filesystems(self) -> list[dict[str, Any]]:
        result = probes.filesystems(
            self._ps,
            exclude=self._exclude,
            wait=self._mount_wait,
            read_write=self._read_write,
            table=self._mount_table,
        )
        self._read_write |= mounts.seen_read_write(result)
        return result

    def _units(self) -> dict[str, Any] | None:
        if self._systemctl is None:
            return None
        return systemd.failed_units(self._systemctl, self._ignore_units)

    def _activity(self) -> dict[str, Any]:
        read = self._files.optional if self._files is not None else None
        now, counters = self._clock(), kernel.counters(self._proc, read)
        before, self._counters_before = self._counters_before, (now, counters)
        victims = kernel.oom_victims(self._kernel_log.read())
        if before is None:
            return {}
        return kernel.activity(before[1], counters, now - before[0], victims)

    def _processes(self) -> dict[str, Any]:
        table = probes.process_table(self._ps, self._stat_files)
        now = self._clock()
        before, self._procs_before = self._procs_before, (table, now)  # dead pids go with the old table
        if before is None:
            return probes.processes(table, None, 0.0, self._mem_total, self._ps, self._top_n)
        # before is the previous scan's table: only the processes whose stat line changed are compared.
        changed = self._stat_files.changed
        return probes.processes(
            table, before[0], now - before[1], self._mem_total, self._ps, self._top_n, changed=changed
        )
