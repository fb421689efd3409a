"""The snapshot format shared by the agent and the collector.

A snapshot is one msgpack map::

    {"v": 1, "host": "web-01", "seq": 42, "ts": 1764000000.25,
     "interval": 10.0, "agent": "0.1.0",
     "metrics": {"cpu.percent": 12.5, "mem.percent": 37.5, ...},
     "series": {"cpu.core": [10.0, 15.0], "disk.percent": {"/": 41.0},
                "disk.io": {"vda": [read_bps, write_bps]}, "net.io": {"eth0": [rx_bps, tx_bps]}},
     "probes": <bin: msgpack map of every probe's full result>,
     "errors": {"temperatures": "PermissionError: ..."}}

The numbers the collector stores and alerts on travel in `metrics` (flat,
host-wide) and `series` (per core, mount, disk, interface), which it decodes
and validates for every message. The full probe results (processes, users,
filesystems, system facts ...) travel as one embedded msgpack document that
the collector keeps as is and decodes only to show a host's latest snapshot:
decoding every process list of every snapshot would cost more than all the
rest of ingest (see benchmarks/ingest.py).

A ZeroMQ message carries one or more snapshots, one per frame: an agent
catching up after an outage sends its spool in batches, and the collector's
size cap (ZMQ_MAXMSGSIZE) applies to each frame. The collector answers each
batch it has committed with one map per agent::

    {"v": 1, "ack": [40, 41, 42]}

Units are bytes, percent 0-100, seconds, and Unix UTC seconds for instants.
Unknown keys are ignored so that newer agents can talk to older collectors;
a missing or mistyped required key, or a known metric that is not a finite
number, rejects the message.

This module must not import psutil: the collector imports it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import msgpack

from osmon.limits import MAX_CORES, MAX_ENTITIES, MAX_ENTITY_NAME

SCHEMA_VERSION = 1

# Host names become file names (CurveZMQ allow-list), URL segments and HTML:
# keep them to what DNS and /etc/hostname allow.
HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})$")
MAX_SEQ = 2**63 - 1
MAX_INT = 2**53
MAX_INTERVAL = 7 * 86400.0  # an agent reporting less often than weekly is misconfigured
MAX_TS = 7_258_118_400  # 2200-01-01: a later timestamp is a broken clock or garbage

# The range of a plausible value, per unit. A value outside is no measurement (a broken probe or a
# hostile peer), and would overflow the collector's scaled integers and rollup sums: the agent
# leaves it out, the collector refuses a snapshot that carries one.
PERCENT = (0.0, 100.0)
RATE = (0.0, 2.0**40)  # bytes/s: 1 TiB/s, beyond the disks or links of any one host
LOAD = (0.0, 1e6)
COUNT = (0.0, 2.0**32)
INSTANT = (0.0, float(MAX_TS))

# Documentation of what each probe sends; the agent's tests check it holds.
PROBE_SHAPES: dict[str, str] = {
    "cpu": "{percent, user, system, iowait, steal, per_core: [percent], count}",
    "load": "{avg1, avg5, avg15}",
    "memory": "{total, available, used, percent}",
    "swap": "{total, used, percent}",
    "filesystems": "[{mount, device, fstype, total, used, free, percent}]",
    "disk_io": "{read_bytes, write_bytes, read_bps?, write_bps?, devices: {name: {...}}}",
    "net_io": "{rx_bytes, tx_bytes, rx_bps?, tx_bps?, interfaces: {name: {...}}}",
    "processes": "{count, top_cpu: [proc], top_mem: [proc]}; proc = "
    "{pid, name, user, cpu_percent, mem_percent, rss, cmdline}",
    "users": "[{name, terminal, host, since}]",
    "uptime": "{boot_time, seconds}",
    "system": "{os, kernel, arch, hostname}",
    "temperatures": "{sensor: [{label, current, high, critical}]} (only where present)",
    "gpus": "[{index, name, util_percent, mem_used, mem_total, temperature}] (only where present)",
}


class WireError(ValueError):
    """A message that does not follow the wire format."""


class Snapshot(NamedTuple):
    """A validated snapshot; `raw` is the message exactly as received."""

    host: str
    seq: int
    ts: float
    interval: float | None
    metrics: dict[str, float]
    series: dict[str, Any]
    probes_raw: bytes
    raw: bytes
    epoch: int | None = None  # the agent's spool: a new one restarts seq at 1

    def probes(self) -> dict[str, Any]:
        """The full probe results, decoded on demand (WireError if malformed)."""
        return decode_probes(self.probes_raw)


# Host-wide numbers: name -> what it is. The collector stores each in a column.
METRICS: dict[str, str] = {
    "cpu.percent": "CPU busy, all cores, %",
    "cpu.iowait": "CPU waiting for I/O, %",
    "cpu.count": "logical CPUs",
    "mem.percent": "memory used, %",
    "swap.percent": "swap used, %",
    "load.1": "load average, 1 minute",
    "load.5": "load average, 5 minutes",
    "load.15": "load average, 15 minutes",
    "disk.read_bps": "disk reads, bytes/s",
    "disk.write_bps": "disk writes, bytes/s",
    "net.rx_bps": "network received, bytes/s",
    "net.tx_bps": "network sent, bytes/s",
    "processes.count": "processes",
    "users.count": "logged-in sessions",
    # An instant, not a measurement: lets the dashboard show uptime without decoding the probes.
    # Collectors older than this metric ignore it (see _metrics).
    "boot.time": "booted at, Unix UTC seconds",
}
BOUNDS: dict[str, tuple[float, float]] = {
    "cpu.percent": PERCENT,
    "cpu.iowait": PERCENT,
    "cpu.count": COUNT,
    "mem.percent": PERCENT,
    "swap.percent": PERCENT,
    "load.1": LOAD,
    "load.5": LOAD,
    "load.15": LOAD,
    "disk.read_bps": RATE,
    "disk.write_bps": RATE,
    "net.rx_bps": RATE,
    "net.tx_bps": RATE,
    "processes.count": COUNT,
    "users.count": COUNT,
    "boot.time": INSTANT,
    "cpu.core": PERCENT,
    "disk.percent": PERCENT,
    "disk.io": RATE,
    "net.io": RATE,
}


_known_hosts: set[str] = set()  # names already checked: the same few recur in every batch


def valid_host(name: object) -> bool:
    """True if `name` is a host name we accept (no path, markup or spaces)."""
    if not isinstance(name, str):
        return False
    if name in _known_hosts:
        return True
    ok = HOST_NAME.fullmatch(name) is not None and ".." not in name
    if ok and len(_known_hosts) < 100_000:
        _known_hosts.add(name)
    return ok


def encode(message: dict[str, Any]) -> bytes:
    """Serialise a snapshot or an ack."""
    return msgpack.packb(message, use_bin_type=True)


def _finite(value: object) -> bool:
    """A real number that is not NaN or infinite (bool excluded). Runs on every metric: kept cheap."""
    kind = type(value)
    if kind is float:
        return value - value == 0.0  # NaN - NaN and inf - inf are NaN
    # Integers beyond 2**53 are no measurement, and would overflow SQLite's 64-bit integers.
    return kind is int and -MAX_INT <= value <= MAX_INT


def _within(value: object, bounds: tuple[float, float]) -> bool:
    """A finite number inside `bounds`, inclusive."""
    return _finite(value) and bounds[0] <= value <= bounds[1]  # type: ignore[operator]


def _out_of_range(name: str, value: object) -> str:
    low, high = BOUNDS[name]
    return f"{name}: {str(value)[:40]} outside [{low:g}, {high:g}]"


def _get(table: dict, *path: str) -> Any:
    for key in path:
        if not isinstance(table, dict):
            return None
        table = table.get(key)
    return table


def metrics_from_probes(probes: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """The (metrics, series) parts of a snapshot, read from the probe results (agent side)."""
    sources = {
        "cpu.percent": ("cpu", "percent"),
        "cpu.iowait": ("cpu", "iowait"),
        "cpu.count": ("cpu", "count"),
        "mem.percent": ("memory", "percent"),
        "swap.percent": ("swap", "percent"),
        "load.1": ("load", "avg1"),
        "load.5": ("load", "avg5"),
        "load.15": ("load", "avg15"),
        "disk.read_bps": ("disk_io", "read_bps"),
        "disk.write_bps": ("disk_io", "write_bps"),
        "net.rx_bps": ("net_io", "rx_bps"),
        "net.tx_bps": ("net_io", "tx_bps"),
        "processes.count": ("processes", "count"),
        "boot.time": ("uptime", "boot_time"),
    }
    metrics = {
        name: float(v) for name, path in sources.items() if _within(v := _get(probes, *path), BOUNDS[name])
    }
    if isinstance(probes.get("users"), list):
        metrics["users.count"] = float(len(probes["users"]))
    series: dict[str, Any] = {
        "cpu.core": [
            float(c) if _within(c, PERCENT) else None for c in _get(probes, "cpu", "per_core") or []
        ],
        "disk.percent": {
            fs["mount"]: float(fs["percent"])
            for fs in probes.get("filesystems") or []
            if isinstance(fs, dict)
            and isinstance(fs.get("mount"), str)
            and _within(fs.get("percent"), PERCENT)
        },
        "disk.io": _pairs(_get(probes, "disk_io", "devices"), ("read_bps", "write_bps")),
        "net.io": _pairs(_get(probes, "net_io", "interfaces"), ("rx_bps", "tx_bps")),
    }
    return metrics, bounded_series(series)


def bounded_series(series: dict[str, Any]) -> dict[str, Any]:
    """The series within osmon.limits, which the collector enforces: the fullest mounts, the busiest
    disks and interfaces are kept, names too long for any real entity are left out."""
    del series["cpu.core"][MAX_CORES:]
    series["disk.percent"] = _top(series["disk.percent"], lambda v: v)
    for name in ("disk.io", "net.io"):
        series[name] = _top(series[name], lambda pair: sum(v or 0.0 for v in pair))
    return series


def _top(entities: dict[str, Any], weight: Callable[[Any], float]) -> dict[str, Any]:
    named = {k: v for k, v in entities.items() if len(k) <= MAX_ENTITY_NAME}
    if len(named) <= MAX_ENTITIES:
        return named
    return dict(sorted(named.items(), key=lambda item: weight(item[1]), reverse=True)[:MAX_ENTITIES])


def _pairs(entities: object, keys: tuple[str, str]) -> dict[str, list[float | None]]:
    pairs = {}
    for name, counters in (entities or {}).items() if isinstance(entities, dict) else ():
        if not isinstance(counters, dict):
            continue
        pair = [float(v) if _within(v := counters.get(k), RATE) else None for k in keys]
        if pair != [None, None]:
            pairs[name] = pair
    return pairs


def encode_snapshot(
    host: str,
    seq: int,
    ts: float,
    interval: float | None,
    agent: str,
    probes: dict[str, Any],
    errors: dict[str, str] | None = None,
    epoch: int | None = None,
) -> bytes:
    """A snapshot message: header, the numbers, and the full probe results embedded.

    `epoch` identifies the agent's spool (optional on the wire: older agents send none); a new
    spool restarts seq at 1, and the collector stores its snapshots instead of taking them for
    resends of what it already has.
    """
    metrics, series = metrics_from_probes(probes)
    message: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "host": host,
        "seq": seq,
        "ts": ts,
        "interval": interval,
        "agent": agent,
        "metrics": metrics,
        "series": series,
        "probes": encode(probes),
    }
    if errors:
        message["errors"] = errors
    if epoch is not None:
        message["epoch"] = epoch
    return encode(message)


def _unpack(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise WireError(f"{what} is not msgpack: {e}") from None


def decode_snapshot(data: bytes) -> Snapshot:
    """Parse and validate one snapshot message, or raise WireError."""
    message = _unpack(data, "snapshot")
    if not isinstance(message, dict):
        raise WireError("snapshot is not a map")
    version = message.get("v")
    if version != SCHEMA_VERSION:
        raise WireError(f"unsupported schema version {version!r}")
    host = message.get("host")
    if not valid_host(host):
        raise WireError(f"invalid host name {str(host)[:80]!r}")
    seq = message.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise WireError(f"invalid seq {str(seq)[:40]!r}")
    ts = message.get("ts")
    if not _finite(ts) or not 0 < ts < MAX_TS:
        raise WireError(f"invalid ts {str(ts)[:40]!r}")
    interval = message.get("interval")
    if interval is not None and not (_finite(interval) and 0.01 <= interval <= MAX_INTERVAL):
        raise WireError(f"invalid interval {str(interval)[:40]!r}")
    probes = message.get("probes")
    if not isinstance(probes, bytes):
        raise WireError("probes is not an embedded msgpack document")
    epoch = message.get("epoch")
    if epoch is not None and not (type(epoch) is int and 0 < epoch <= MAX_INT):
        raise WireError(f"invalid epoch {str(epoch)[:40]!r}")
    return Snapshot(
        host,
        seq,
        float(ts),
        None if interval is None else float(interval),
        _metrics(message.get("metrics")),
        _series(message.get("series")),
        probes,
        data,
        epoch,
    )


def _metrics(metrics: object) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise WireError("metrics is not a map")
    checked = {}
    for name, value in metrics.items():
        if name not in METRICS:
            continue  # a newer agent's metric: ignored
        if not _finite(value):
            raise WireError(f"metric {name}: not a finite number: {str(value)[:40]!r}")
        if not BOUNDS[name][0] <= value <= BOUNDS[name][1]:
            raise WireError(f"metric {_out_of_range(name, value)}")
        checked[name] = float(value)
    return checked


def _series(series: object) -> dict[str, Any]:
    """Per-entity numbers: each known part must have its documented shape; None marks a gap.

    Validated in place (this runs for every snapshot); unknown parts are dropped.
    """
    if series is None:
        return {}
    if type(series) is not dict:
        raise WireError("series is not a map")
    checked: dict[str, Any] = {}
    cores = series.get("cpu.core")
    if cores is not None:
        if type(cores) is not list or not all(c is None or _finite(c) for c in cores):
            raise WireError("series cpu.core is not a list of finite numbers")
        _check_count("cpu.core", cores, MAX_CORES)
        _check_range("cpu.core", cores)
        checked["cpu.core"] = cores
    usage = series.get("disk.percent")
    if usage is not None:
        if type(usage) is not dict or not all(
            type(k) is str and (v is None or _finite(v)) for k, v in usage.items()
        ):
            raise WireError("series disk.percent is not a map of mount to a finite number")
        _check_count("disk.percent", usage, MAX_ENTITIES)
        _check_range("disk.percent", usage.values())
        checked["disk.percent"] = usage
    for name in ("disk.io", "net.io"):
        pairs = series.get(name)
        if pairs is None:
            continue
        if type(pairs) is not dict or not all(_pair(k, p) for k, p in pairs.items()):
            raise WireError(f"series {name} is not a map of name to [finite number, finite number]")
        _check_count(name, pairs, MAX_ENTITIES)
        _check_range(name, (v for pair in pairs.values() for v in pair))
        checked[name] = pairs
    return checked


def _check_range(name: str, values: Iterable[float | None]) -> None:
    """WireError naming the first value of series `name` outside its unit's range (values are finite)."""
    low, high = BOUNDS[name]
    for value in values:
        if value is not None and not low <= value <= high:
            raise WireError(f"series {_out_of_range(name, value)}")


def _check_count(name: str, entities: list | dict, limit: int) -> None:
    """WireError if series `name` has more entities than `limit`, or a name longer than any real one.

    Each entity costs storage, rollups, an alert and a row on the dashboard: one snapshot with
    20,000 mounts at 99 % once opened 20,000 alerts."""
    if len(entities) > limit:
        raise WireError(f"series {name}: {len(entities)} entries, more than {limit}")
    if type(entities) is dict and any(len(k) > MAX_ENTITY_NAME for k in entities):
        raise WireError(f"series {name}: a name longer than {MAX_ENTITY_NAME} characters")


def _pair(name: object, pair: object) -> bool:
    return (
        type(name) is str
        and type(pair) is list
        and len(pair) == 2
        and (pair[0] is None or _finite(pair[0]))
        and (pair[1] is None or _finite(pair[1]))
    )


def decode_probes(data: bytes) -> dict[str, Any]:
    """The embedded probe results, or WireError."""
    probes = _unpack(data, "probes")
    if not isinstance(probes, dict):
        raise WireError("probes is not a map")
    return probes


def encode_ack(seqs: list[int]) -> bytes:
    """The collector's answer: these sequence numbers are committed."""
    return encode({"v": SCHEMA_VERSION, "ack": seqs})


def decode_ack(data: bytes) -> list[int]:
    """Parse an ack, or raise WireError."""
    message = _unpack(data, "ack")
    if not isinstance(message, dict) or message.get("v") != SCHEMA_VERSION:
        raise WireError("ack is not a version 1 map")
    seqs = message.get("ack")
    if not isinstance(seqs, list) or not all(type(s) is int and 0 <= s <= MAX_SEQ for s in seqs):
        raise WireError("ack list is malformed")
    return seqs
