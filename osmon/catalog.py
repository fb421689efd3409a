"""The metric catalog: the one place a number the agent sends is declared.

Each entry says what the number is (unit, help), where the agent's probes
find it, how the collector stores it (column and scale), how the dashboard
charts it and the overview shows it, how /metrics exports it, and its default
alert levels. The wire format's list of metrics and their bounds, the stored
columns, the series API, the charts, the overview row, /metrics, the
threshold defaults and detection's readings are all derived from here.

Adding a host-wide number takes a probe that reports it and one `Metric`
here: the collector adds its column to the raw samples and both rollup tiers
by itself at start (see collector.store.schema.catalog_columns).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Unit(NamedTuple):
    """A unit, with the range of a plausible value: outside it, a value is no measurement."""

    name: str
    symbol: str  # as charts and mails print it
    low: float
    high: float
    # Prometheus base unit (the UNIT line, and the end of a family's name) and the factor to it.
    base: str = ""
    to_base: float = 1.0


MAX_TS = 7_258_118_400  # 2200-01-01: a later instant is a broken clock or garbage

PERCENT = Unit("percent", "%", 0.0, 100.0, "ratio", 0.01)  # exported as a 0-1 ratio
RATE = Unit("bytes per second", "B/s", 0.0, 2.0**40)  # 1 TiB/s, beyond the disks or links of any one host
LOAD = Unit("load", "", 0.0, 1e6)
COUNT = Unit("count", "", 0.0, 2.0**32)
INSTANT = Unit("Unix UTC seconds", "", 0.0, float(MAX_TS), "seconds")  # exported as *_timestamp_seconds
BYTES = Unit("bytes", "B", 0.0, 2.0**60, "bytes")
PER_SECOND = Unit("per second", "/s", 0.0, 2.0**40)
SECONDS = Unit("seconds", "s", 0.0, 1e9, "seconds")
# A state: 1 when true (a unit failed, a filesystem read-only, a link down, a clock unsynchronised).
FLAG = Unit("flag", "", 0.0, 1.0)


class Levels(NamedTuple):
    """Default alert levels of a metric: `for` seconds before firing, `hysteresis` below to clear."""

    warning: float | None
    critical: float | None
    for_: float
    hysteresis: float


Probes = dict[str, Any]


def path(*keys: str) -> Callable[[Probes], object]:
    """A value at `keys` in the probe results, or None."""

    def read(probes: Probes) -> object:
        value: object = probes
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return read


def length(*keys: str) -> Callable[[Probes], object]:
    """The number of items a probe listed (sessions of `users`, failed units), or None."""
    at = path(*keys)

    def read(probes: Probes) -> object:
        items = at(probes)
        return len(items) if isinstance(items, list) else None

    return read


def listed(key: str, name: str, value: str) -> Callable[[Probes], object]:
    """{item[name]: item[value]} of the items a probe listed (each mount's inode usage)."""

    def read(probes: Probes) -> object:
        items = probes.get(key)
        if not isinstance(items, list):
            return None
        return {
            item[name]: item.get(value)
            for item in items
            if isinstance(item, dict) and isinstance(item.get(name), str) and value in item
        }

    return read


def share(part: tuple[str, ...], whole: tuple[str, ...]) -> Callable[[Probes], object]:
    """`part` as a percentage of `whole` (cached of total memory), or None if either is missing."""
    at_part, at_whole = path(*part), path(*whole)

    def read(probes: Probes) -> object:
        a, b = at_part(probes), at_whole(probes)
        numbers = (int, float)
        if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and b > 0:
            return 100.0 * a / b
        return None

    return read


def flagged(at: tuple[str, ...], name: str, flag: str | None = None) -> Callable[[Probes], object]:
    """{item[name]: 1.0} of the items listed at `at` whose `flag` is true (all with None).

    For failed units, read-only mounts, links down: only the flagged ones travel, so an empty map
    costs nothing to store, and the series' `absent` value (0) stands for every other entity.
    A map of items ({interface: {...}}) is read as a list with the key under `name`.
    """
    where = path(*at)

    def read(probes: Probes) -> object:
        items = where(probes)
        if isinstance(items, dict):
            items = [{**v, name: k} for k, v in items.items() if isinstance(v, dict)]
        if not isinstance(items, list):
            return None
        return {
            item[name]: 1.0
            for item in items
            if isinstance(item, dict) and isinstance(item.get(name), str) and (flag is None or item.get(flag))
        }

    return read


class Metric(NamedTuple):
    """A host-wide number: one per snapshot."""

    name: str  # on the wire, in the series API and in threshold settings
    unit: Unit
    help: str
    source: Callable[[Probes], object] | None  # where the agent reads it; None: derived by the collector
    column: str | None = None  # stored column (raw samples and rollup tiers); None: latest snapshot only
    scale: int = 1  # stored as round(value * scale): the finest step kept is 1 / scale
    chart: str | None = None  # the id of the host page chart it is drawn in (CHARTS)
    label: str = ""  # its line's name in that chart
    row: str | None = None  # its key in an overview row (the dashboard, /api/hosts, /metrics)
    export: str | None = None  # its /metrics gauge (base units: see Unit.base), labelled by host
    levels: Levels | None = None  # default thresholds; None: not alerted on
    per_core: bool = False  # alerted on divided by the number of cores (a load)
    title: str = ""  # what people call it in alert mails and tables ("memory", "load per core")


class Series(NamedTuple):
    """Per-entity numbers: one per core, mount, disk or interface of a snapshot."""

    name: str
    unit: Unit
    help: str
    shape: str  # "list" (by index), "map" (name -> number) or "pairs" (name -> [a, b])
    key: str  # short key in stored detail blobs
    scale: int = 1
    raw: bool = True  # kept in raw samples; False: in the rollup tiers only (each entity's max)
    pair: tuple[str, str] = ("", "")  # the two numbers of a pair, as charts name them
    chart: str | None = None
    levels: Levels | None = None  # per entity: one alert per mount, named `<name>:<entity>`
    title: str = ""
    export: str | None = None  # its /metrics gauge, labelled by host and `entity`
    entity: str = ""  # the label naming an entity in /metrics: cpu, mount, device, interface
    # Where the agent reads a map-shaped series ({entity: number}); None: osmon.wire builds it.
    source: Callable[[Probes], object] | None = None
    # The value of an entity the snapshot does not list, when its absence means something: a unit
    # no longer listed as failed is not failed (0), which resolves its alert. None: absence says nothing.
    absent: float | None = None
    stored: bool = True  # False: only on the wire, for detection and the latest snapshot


class Chart(NamedTuple):
    """A chart of the host page: the metrics that name it in `chart`, or its per-entity series."""

    id: str
    title: str
    unit: Unit
    # Its metrics are percentages of this metric of the latest snapshot, drawn in its unit (bytes).
    of: str = ""
    # Metrics drawn here before those naming the chart, (name, label): memory used in bytes.
    also: tuple[tuple[str, str], ...] = ()
    # The label of one more line: `of` minus the first line (memory available: total minus used).
    rest: str = ""
    # A per-entity series of pairs whose entities the operator may pick (?<its entity>=vda): the
    # chart then draws that entity's pair instead of the host-wide totals.
    entities: str = ""


CHARTS: tuple[Chart, ...] = (
    Chart("cpu", "CPU", PERCENT),
    Chart("cores", "CPU per core", PERCENT),
    Chart("memory", "Memory and swap", PERCENT),
    Chart(
        "memory_bytes",
        "Memory in bytes",
        BYTES,
        of="mem.total",
        also=(("mem.percent", "used"),),
        rest="available",
    ),
    Chart("disk", "Disk usage per mount", PERCENT),
    Chart("diskio", "Disk I/O", RATE, entities="disk.io"),
    Chart("network", "Network", RATE, entities="net.io"),
    Chart("load", "Load average", LOAD),
    Chart("processes", "Processes", COUNT),
    Chart("pressure", "Pressure (PSI) and disk busy time", PERCENT),
    Chart("swapio", "Swap activity", RATE),
    Chart("diskops", "Disk operations", PER_SECOND),
    Chart("disklatency", "Disk latency", SECONDS),
    Chart("neterrors", "Network errors and drops", PER_SECOND),
    Chart("limits", "Kernel tables in use", PERCENT),
)

# Storage order: a metric's column is appended to the tables when it first appears here, so
# new entries go at the end of those with a column.
METRICS: tuple[Metric, ...] = (
    Metric(
        "cpu.percent", PERCENT, "CPU busy, all cores", path("cpu", "percent"), "cpu", 100,
        chart="cpu", label="total", row="cpu", export="osmon_host_cpu_busy_ratio",
        # The seed compared CPU and memory to 80 % every minute: these keep 80 % and add a
        # critical level and a duration (a CPU spike is not a crisis).
        levels=Levels(80.0, 95.0, 120.0, 5.0), title="CPU",
    ),
    Metric("cpu.iowait", PERCENT, "CPU waiting for I/O", path("cpu", "iowait"), "cpu_iowait", 100,
           chart="cpu", label="iowait", export="osmon_host_cpu_iowait_ratio"),
    Metric(
        "mem.percent", PERCENT, "memory used", path("memory", "percent"), "mem", 100,
        chart="memory", label="memory", row="mem", export="osmon_host_memory_used_ratio",
        levels=Levels(80.0, 95.0, 60.0, 5.0), title="memory",
    ),
    Metric(
        "swap.percent", PERCENT, "swap used", path("swap", "percent"), "swap", 100,
        chart="memory", label="swap", row="swap", export="osmon_host_swap_used_ratio",
        levels=Levels(50.0, 80.0, 300.0, 5.0), title="swap",
    ),
    Metric(
        "load.1", LOAD, "load average, 1 minute", path("load", "avg1"), "load1", 100,
        chart="load", label="1 min", row="load1", export="osmon_host_load1",
        levels=Levels(2.0, 4.0, 300.0, 0.25), per_core=True, title="load per core",
    ),
    Metric("load.5", LOAD, "load average, 5 minutes", path("load", "avg5"), "load5", 100,
           chart="load", label="5 min", row="load5", export="osmon_host_load5"),
    Metric("load.15", LOAD, "load average, 15 minutes", path("load", "avg15"), "load15", 100,
           chart="load", label="15 min", row="load15", export="osmon_host_load15"),
    # The fullest filesystem: derived by the collector from the per-mount series.
    Metric("disk.max", PERCENT, "usage of the fullest filesystem", None, "disk_max", 100,
           row="disk"),  # not exported: osmon_host_filesystem_used_ratio has every mount, labelled
    Metric("disk.read_bps", RATE, "disk reads", path("disk_io", "read_bps"), "read_bps",
           chart="diskio", label="read"),
    Metric("disk.write_bps", RATE, "disk writes", path("disk_io", "write_bps"), "write_bps",
           chart="diskio", label="write"),
    Metric("net.rx_bps", RATE, "network received", path("net_io", "rx_bps"), "rx_bps",
           chart="network", label="received"),
    Metric("net.tx_bps", RATE, "network sent", path("net_io", "tx_bps"), "tx_bps",
           chart="network", label="sent"),
    Metric("processes.count", COUNT, "processes", path("processes", "count"), "procs",
           chart="processes", label="all", export="osmon_host_processes"),
    Metric("users.count", COUNT, "logged-in sessions", length("users"), "users", export="osmon_host_sessions"),
    # Not stored per sample: the overview shows them from the latest snapshot.
    Metric("cpu.count", COUNT, "logical CPUs", path("cpu", "count"), row="cpus", export="osmon_host_cpus"),
    # An instant, not a measurement: the dashboard shows uptime without decoding the probes.
    Metric("boot.time", INSTANT, "booted at", path("uptime", "boot_time"),
           export="osmon_host_boot_timestamp_seconds"),
    Metric("processes.running", COUNT, "processes running or runnable", path("processes", "running"),
           "procs_running", chart="processes", label="running", export="osmon_host_processes_running"),
    # Issue 14: what wakes people up. Each mostly-zero number costs ~15 kB per host-day, a moving
    # one ~40 kB: the scales keep what charts and thresholds need, no finer.
    Metric("units.failed", COUNT, "failed systemd units", length("units", "failed"),
           row="failed_units", export="osmon_host_failed_units"),
    Metric("pressure.cpu", PERCENT, "CPU pressure, some tasks stalled (PSI avg60)",
           path("pressure", "cpu", "some60"), "psi_cpu", 10, chart="pressure", label="CPU"),
    Metric("pressure.memory", PERCENT, "memory pressure, some tasks stalled (PSI avg60)",
           path("pressure", "memory", "some60"), "psi_mem", 10, chart="pressure", label="memory",
           export="osmon_host_memory_pressure_ratio", row="psi_mem",
           # 10 % of a minute stalled on memory is reclaim hurting latency; 30 % is thrashing.
           levels=Levels(10.0, 30.0, 120.0, 2.0)),
    Metric("pressure.io", PERCENT, "I/O pressure, some tasks stalled (PSI avg60)",
           path("pressure", "io", "some60"), "psi_io", 10, chart="pressure", label="I/O"),
    Metric("disk.busy", PERCENT, "busy time of the busiest disk", path("disk_io", "busy_percent"),
           "disk_busy", 10, chart="pressure", label="busiest disk"),
    Metric("swap.in_bps", RATE, "swapped in", path("activity", "swap_in_bps"), "swap_in",
           chart="swapio", label="in"),
    Metric("swap.out_bps", RATE, "swapped out", path("activity", "swap_out_bps"), "swap_out",
           chart="swapio", label="out"),
    # One alert per snapshot with kills: fires at 1, resolves at the next snapshot without any.
    Metric("oom.kills", COUNT, "processes killed by the OOM killer since the previous snapshot",
           path("activity", "oom_kills"), "oom_kills", levels=Levels(1.0, None, 0.0, 0.0)),
    Metric("disk.iops", PER_SECOND, "disk reads and writes per second", path("disk_io", "iops"),
           "disk_iops", chart="diskops", label="reads + writes"),
    Metric("disk.await", SECONDS, "average time a disk read or write took", path("disk_io", "await"),
           "disk_await", 10_000, chart="disklatency", label="average"),
    Metric("net.errors_ps", PER_SECOND, "network receive and send errors", path("net_io", "errors_ps"),
           "net_errors", 10, chart="neterrors", label="errors"),
    Metric("net.drops_ps", PER_SECOND, "network packets dropped", path("net_io", "drops_ps"),
           "net_drops", 10, chart="neterrors", label="drops"),
    Metric("fds.percent", PERCENT, "file descriptors in use, of the system's maximum",
           path("limits", "fds_percent"), "fds", 10, chart="limits", label="file descriptors",
           levels=Levels(80.0, 95.0, 60.0, 2.0)),
    Metric("pids.percent", PERCENT, "process and thread ids in use, of pid_max",
           path("limits", "pids_percent"), "pids", 10, chart="limits", label="PIDs",
           levels=Levels(80.0, 95.0, 60.0, 2.0)),
    Metric("conntrack.percent", PERCENT, "connection tracking table in use",
           path("limits", "conntrack_percent"), "conntrack", 10, chart="limits", label="conntrack",
           levels=Levels(80.0, 95.0, 60.0, 2.0)),
    # Latest snapshot only: four more moving columns would take the host-day past 2 MB.
    Metric("processes.threads", COUNT, "threads", path("limits", "threads")),
    Metric("cpu.context_switches_ps", PER_SECOND, "context switches", path("activity", "context_switches_ps")),
    Metric("cpu.interrupts_ps", PER_SECOND, "interrupts", path("activity", "interrupts_ps")),
    Metric("processes.forks_ps", PER_SECOND, "processes and threads created", path("activity", "forks_ps")),
    # NTP's own notion: the kernel clock's STA_UNSYNC, as timedatectl's "synchronized" reads it.
    Metric("clock.unsynchronised", FLAG, "system clock not synchronised (1)", path("clock", "unsynchronised"),
           "clock_unsync", levels=Levels(1.0, None, 600.0, 0.0)),
    Metric("clock.offset", SECONDS, "system clock offset being corrected, absolute", path("clock", "offset"),
           "clock_offset", 1000, export="osmon_host_clock_offset_seconds", row="clock_offset",
           levels=Levels(0.1, 1.0, 300.0, 0.02)),
    # Issue 16: memory in bytes. Stored as a share of total memory, to 0.1 % (two bytes a sample, where
    # bytes would take six): the chart multiplies by the host's total, as it does memory used.
    Metric("mem.cached_percent", PERCENT, "page cache and reclaimable kernel memory, of total memory",
           share(("memory", "cached"), ("memory", "total")), "mem_cached", 10,
           chart="memory_bytes", label="cached"),
    # Latest snapshot only: what the memory chart's percentages are of (osmon_host_memory_total_bytes
    # exports it from the probe results).
    Metric("mem.total", BYTES, "physical memory", path("memory", "total"), row="mem_total"),
)  # fmt: skip

SERIES: tuple[Series, ...] = (
    # Each core's maximum per minute, in the tiers only: at 16 cores, per-core numbers were an eighth
    # of a raw row, and the host-day's storage went past 2 MB (issue 14). Detection and /metrics read
    # them from the snapshot, never from storage.
    Series("cpu.core", PERCENT, "CPU busy per core", "list", "c", raw=False, chart="cores",
           export="osmon_host_cpu_core_busy_ratio", entity="cpu"),
    # A mount to 0.1 %: its trend tells when it fills.
    Series(
        "disk.percent", PERCENT, "filesystem usage per mount", "map", "d", scale=10, chart="disk",
        levels=Levels(85.0, 95.0, 0.0, 2.0), export="osmon_host_filesystem_used_ratio", entity="mount", title="disk",
    ),
    # Per-device rates would be a third of a raw row; their totals are metrics already.
    Series("disk.io", RATE, "disk reads and writes per device", "pairs", "io", raw=False, pair=("read", "write"),
           entity="device"),
    Series("net.io", RATE, "network traffic per interface", "pairs", "net", raw=False,
           pair=("received", "sent"), entity="interface"),
    # Only the failed units travel; one that is no longer listed is not failed (absent = 0).
    Series("unit.failed", FLAG, "systemd unit failed", "map", "uf", raw=False,
           levels=Levels(None, 1.0, 0.0, 0.0), source=flagged(("units", "failed"), "unit"), absent=0.0,
           title="unit"),
    # Alerts only: a mount's inode trend is rarely worth 70 kB a day.
    Series("disk.inodes", PERCENT, "inode usage per mount", "map", "in", stored=False,
           levels=Levels(85.0, 95.0, 0.0, 2.0), source=listed("filesystems", "mount", "inodes_percent")),
    Series("disk.readonly", FLAG, "filesystem remounted read-only", "map", "ro", raw=False,
           levels=Levels(None, 1.0, 0.0, 0.0), source=flagged(("filesystems",), "mount", "remounted_ro"),
           absent=0.0),
    # Down, but seen up by this agent: an interface that was never up is no news.
    Series("net.down", FLAG, "network interface down that was up", "map", "nd", raw=False,
           levels=Levels(None, 1.0, 0.0, 0.0), source=flagged(("net_io", "interfaces"), "name", "went_down"), absent=0.0),
)  # fmt: skip

ENTRIES: tuple[Metric | Series, ...] = (*METRICS, *SERIES)
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
SERIES_BY_NAME: dict[str, Series] = {s.name: s for s in SERIES}
# What agents send as host-wide numbers (everything with a probe source).
WIRE_METRICS: tuple[Metric, ...] = tuple(m for m in METRICS if m.source is not None)
# What the collector stores per sample, in column order.
STORED: tuple[Metric, ...] = tuple(m for m in METRICS if m.column is not None)
COLUMNS: tuple[str, ...] = tuple(m.column for m in STORED if m.column is not None)


# -- numbers /metrics reads from the probe results: sizes in bytes and the agent's own counters ----

# (entity, value) pairs, values unchecked; the entity is "" for a host-wide number.
Samples = list[tuple[str, object]]
Section = Any  # one probe's results, unchecked: a map or a list from the host


class Probed(NamedTuple):
    """A number of the latest snapshot's probe results that /metrics exports but nothing stores."""

    export: str  # family name; a counter's ends in _total
    unit: Unit
    help: str
    kind: str  # "gauge" or "counter" (only ever growing, reset at boot)
    probe: str  # the probe whose results it reads (the others are never decoded for /metrics)
    read: Reader
    entity: str = ""  # the label naming an entity in /metrics (mount, device, interface); "": host-wide


# The readers are records as well as functions: /metrics reads the fields of one probe in one pass.


class One(NamedTuple):
    """A single host-wide number of the probe's map."""

    field: str

    def __call__(self, section: Section) -> Samples:
        return [("", section.get(self.field))] if isinstance(section, dict) else []


class Rows(NamedTuple):
    """`field` of each item of the probe's list, named by the item's `name` key."""

    field: str
    name: str

    def __call__(self, section: Section) -> Samples:
        return [
            (item[self.name], item.get(self.field))
            for item in (section if isinstance(section, list) else ())
            if isinstance(item, dict) and isinstance(item.get(self.name), str)
        ]


class Each(NamedTuple):
    """`field` of each entity of the probe's map `table` (devices, interfaces)."""

    table: str
    field: str

    def __call__(self, section: Section) -> Samples:
        entities = section.get(self.table) if isinstance(section, dict) else None
        return [
            (entity, values.get(self.field))
            for entity, values in (entities.items() if isinstance(entities, dict) else ())
            if isinstance(entity, str) and isinstance(values, dict)
        ]


Reader = One | Rows | Each
one, rows, each = One, Rows, Each


PROBED: tuple[Probed, ...] = (
    Probed("osmon_host_memory_total_bytes", BYTES, "physical memory", "gauge", "memory", one("total")),
    Probed("osmon_host_memory_available_bytes", BYTES, "memory available without swapping", "gauge",
           "memory", one("available")),
    Probed("osmon_host_memory_cached_bytes", BYTES, "page cache and reclaimable kernel memory", "gauge",
           "memory", one("cached")),
    Probed("osmon_host_memory_buffers_bytes", BYTES, "kernel buffers", "gauge", "memory", one("buffers")),
    Probed("osmon_host_swap_total_bytes", BYTES, "swap space", "gauge", "swap", one("total")),
    Probed("osmon_host_swap_used_bytes", BYTES, "swap used", "gauge", "swap", one("used")),
    Probed("osmon_host_filesystem_size_bytes", BYTES, "filesystem size per mount", "gauge",
           "filesystems", rows("total", "mount"), "mount"),
    Probed("osmon_host_filesystem_free_bytes", BYTES, "filesystem space free for users per mount", "gauge",
           "filesystems", rows("free", "mount"), "mount"),
    Probed("osmon_host_disk_read_bytes_total", BYTES, "bytes read per disk device", "counter",
           "disk_io", each("devices", "read_bytes"), "device"),
    Probed("osmon_host_disk_written_bytes_total", BYTES, "bytes written per disk device", "counter",
           "disk_io", each("devices", "write_bytes"), "device"),
    Probed("osmon_host_network_receive_bytes_total", BYTES, "bytes received per network interface", "counter",
           "net_io", each("interfaces", "rx_bytes"), "interface"),
    Probed("osmon_host_network_transmit_bytes_total", BYTES, "bytes sent per network interface", "counter",
           "net_io", each("interfaces", "tx_bytes"), "interface"),
)  # fmt: skip
