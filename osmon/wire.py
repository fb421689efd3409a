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
from typing import Any, NamedTuple, TypeGuard

import msgpack

from osmon import catalog, numbers
from osmon.catalog import MAX_TS
from osmon.limits import MAX_CORES, MAX_ENTITIES, MAX_ENTITY_NAME
from osmon.numbers import finite_or_none, is_finite

SCHEMA_VERSION = 1

# Host names become file names (CurveZMQ allow-list), URL segments and HTML:
# keep them to what DNS and /etc/hostname allow.
HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})$")
MAX_SEQ = 2**63 - 1
MAX_INTERVAL = 7 * 86400.0  # an agent reporting less often than weekly is misconfigured
# Documentation of what each probe sends; the agent's tests check it holds.
PROBE_SHAPES: dict[str, str] = {
    "cpu": "{percent, user, system, iowait, steal, per_core: [percent], count}",
    "load": "{avg1, avg5, avg15}",
    "memory": "{total, available, used, percent, cached?, buffers?} (cached and buffers: Linux and BSD)",
    "swap": "{total, used, percent}",
    "filesystems": "[{mount, device, fstype, total, used, free, percent, inodes_percent?, readonly, "
    "remounted_ro?} | {mount, device, fstype, unavailable}]",
    "disk_io": "{read_bytes, write_bytes, ops, io_ms, busy_ms: {name: ms}, read_bps?, write_bps?, iops?, "
    "await?, busy_percent?, devices: {name: {...}}}",
    "net_io": "{rx_bytes, tx_bytes, errors, drops, rx_bps?, tx_bps?, errors_ps?, drops_ps?, "
    "interfaces: {name: {rx_bytes, tx_bytes, errors, drops, up?, speed?, went_down?, ...}}}",
    "processes": "{count, running, top_cpu: [proc], top_mem: [proc]}; proc = "
    "{pid, name, user, cpu_percent, mem_percent, rss, cmdline}",
    "users": "[{name, terminal, host, since}]",
    "uptime": "{boot_time, seconds}",
    "system": "{os, kernel, arch, hostname}",
    "temperatures": "{sensor: [{label, current, high, critical}]} (only where present)",
    "gpus": "[{index, name, util_percent, mem_used, mem_total, temperature}] (only where present)",
    "units": "{failed: [{unit, active, sub, result, since, description}]} (systemd hosts)",
    "pressure": "{cpu|memory|io: {some10, some60, some300, full10, full60, full300}} (PSI kernels)",
    "activity": "{swap_in_bps, swap_out_bps, context_switches_ps, interrupts_ps, forks_ps, oom_kills, "
    "oom_victims?}",
    "limits": "{fds, fds_max, fds_percent, threads, pid_max, pids_percent, conntrack?, conntrack_max?, "
    "conntrack_percent?}",
    "clock": "{unsynchronised (0/1), offset, max_error}",
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


# Host-wide numbers: name -> what it is (the catalog's, for agents and collectors alike).
METRICS: dict[str, str] = {m.name: m.help for m in catalog.WIRE_METRICS}
# The plausible range of each number, by its unit: a value outside is no measurement (a broken
# probe or a hostile peer), and would overflow the collector's scaled integers and rollup sums.
# The agent leaves it out; the collector refuses a snapshot that carries one.
BOUNDS: dict[str, tuple[float, float]] = {
    m.name: (m.unit.low, m.unit.high)
    for m in catalog.ENTRIES
    if not isinstance(m, catalog.Metric) or m.source
}


_known_hosts: set[str] = set()  # names already checked: the same few recur in every batch


def valid_host(name: object) -> TypeGuard[str]:
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


def _within(value: object, bounds: tuple[float, float]) -> TypeGuard[int | float]:
    """A finite number inside `bounds`, inclusive."""
    return is_finite(value) and bounds[0] <= value <= bounds[1]


def _out_of_range(name: str, value: object) -> str:
    low, high = BOUNDS[name]
    return f"{name}: {str(value)[:40]} outside [{low:g}, {high:g}]"


def metrics_from_probes(probes: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """The (metrics, series) parts of a snapshot, read from the probe results (agent side)."""
    metrics = {}
    for metric in catalog.WIRE_METRICS:
        if metric.source is not None and _within(value := metric.source(probes), BOUNDS[metric.name]):
            metrics[metric.name] = float(value)
    cpu = probes.get("cpu")
    cores = cpu.get("per_core") if isinstance(cpu, dict) else None
    disk_io, net_io = probes.get("disk_io"), probes.get("net_io")
    series: dict[str, Any] = {
        "cpu.core": [float(c) if _within(c, BOUNDS["cpu.core"]) else None for c in cores or []],
        "disk.percent": {
            fs["mount"]: float(fs["percent"])
            for fs in probes.get("filesystems") or []
            if isinstance(fs, dict)
            and isinstance(fs.get("mount"), str)
            and _within(fs.get("percent"), BOUNDS["disk.percent"])
        },
        "disk.io": _pairs(
            disk_io.get("devices") if isinstance(disk_io, dict) else None,
            ("read_bps", "write_bps"),
            BOUNDS["disk.io"],
        ),
        "net.io": _pairs(
            net_io.get("interfaces") if isinstance(net_io, dict) else None,
            ("rx_bps", "tx_bps"),
            BOUNDS["net.io"],
        ),
    }
    series.update(_sourced_series(probes))
    return metrics, bounded_series(series)


def bounded_series(series: dict[str, Any]) -> dict[str, Any]:
    """The series within osmon.limits, which the collector enforces: the fullest mounts, the busiest
    disks and interfaces are kept, names too long for any real entity are left out."""
    for name, entities in series.items():
        if isinstance(entities, list):
            del entities[MAX_CORES:]
        elif isinstance(entities, dict):
            series[name] = _top(entities, _weight)
    return series


def _weight(value: Any) -> float:
    """How much an entity counts when only the first MAX_ENTITIES are kept: its number, or a pair's sum."""
    if isinstance(value, list):
        return sum(v for v in value if is_finite(v))
    return value if is_finite(value) else 0.0


def _top(entities: dict[str, Any], weight: Callable[[Any], float]) -> dict[str, Any]:
    named = {k: v for k, v in entities.items() if len(k) <= MAX_ENTITY_NAME}
    if len(named) <= MAX_ENTITIES:
        return named
    return dict(sorted(named.items(), key=lambda item: weight(item[1]), reverse=True)[:MAX_ENTITIES])


def _sourced_series(probes: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The map-shaped series the catalog says where to find; a probe that did not report leaves its out."""
    found = {}
    for declared in catalog.SERIES:
        if declared.source is None:
            continue
        values = declared.source(probes)
        if isinstance(values, dict):
            bounds = BOUNDS[declared.name]
            found[declared.name] = {k: float(v) for k, v in values.items() if _within(v, bounds)}
    return found


def _pairs(
    entities: object, keys: tuple[str, str], bounds: tuple[float, float]
) -> dict[str, list[float | None]]:
    pairs = {}
    for name, counters in (entities or {}).items() if isinstance(entities, dict) else ():
        if not isinstance(counters, dict):
            continue
        pair = [float(v) if is_finite(v := counters.get(k)) and _within(v, bounds) else None for k in keys]
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
    if not is_finite(ts) or not 0 < ts < MAX_TS:
        raise WireError(f"invalid ts {str(ts)[:40]!r}")
    interval = message.get("interval")
    if interval is not None and not (is_finite(interval) and 0.01 <= interval <= MAX_INTERVAL):
        raise WireError(f"invalid interval {str(interval)[:40]!r}")
    probes = message.get("probes")
    if not isinstance(probes, bytes):
        raise WireError("probes is not an embedded msgpack document")
    epoch = message.get("epoch")
    if epoch is not None and not (type(epoch) is int and 0 < epoch <= numbers.MAX_INT):
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
        if not is_finite(value):
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
    for declared in catalog.SERIES:
        value = series.get(declared.name)
        if value is not None:
            checked[declared.name] = _SHAPES[declared.shape](declared.name, value)
    return checked


def _list(name: str, values: object) -> list[float | None]:
    if type(values) is not list or not all(c is None or is_finite(c) for c in values):
        raise WireError(f"series {name} is not a list of finite numbers")
    _check_count(name, values, MAX_CORES)
    _check_range(name, values)
    return values


def _map(name: str, values: object) -> dict[str, float | None]:
    if type(values) is not dict or not all(
        type(k) is str and (v is None or is_finite(v)) for k, v in values.items()
    ):
        raise WireError(f"series {name} is not a map of name to a finite number")
    _check_count(name, values, MAX_ENTITIES)
    _check_range(name, values.values())
    return values


def _pairs_of(name: str, pairs: object) -> dict[str, list[float | None]]:
    if type(pairs) is not dict or not all(_pair(k, p) for k, p in pairs.items()):
        raise WireError(f"series {name} is not a map of name to [finite number, finite number]")
    _check_count(name, pairs, MAX_ENTITIES)
    _check_range(name, (v for pair in pairs.values() for v in pair))
    return pairs


_SHAPES: dict[str, Callable[[str, object], Any]] = {"list": _list, "map": _map, "pairs": _pairs_of}


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
        and (pair[0] is None or is_finite(pair[0]))
        and (pair[1] is None or is_finite(pair[1]))
    )


class Peek(NamedTuple):
    """A few numbers of a snapshot, read back without validating the whole of it again."""

    ts: float
    metrics: dict[str, float]
    entities: dict[str, float]  # one map-shaped series: {mount: %}
    probes_raw: bytes | None


def peek(data: bytes, metrics: Iterable[str], series: str) -> Peek | None:
    """`metrics` and the map-shaped `series` of a snapshot the collector validated and stored; None if damaged.

    The overview reads this for every host of the fleet at every refresh: validating
    whole snapshots and decoding their probe results was most of its time. Each value
    read is checked again all the same (a usable number, text keys), as anything from
    a host must be.
    """
    try:
        message = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError):  # msgpack's errors are ValueErrors (ExtraData, FormatError ...)
        return None
    if not isinstance(message, dict) or (ts := finite_or_none(message.get("ts"))) is None:
        return None
    given = _table(message.get("metrics"))
    found = {name: value for name in metrics if (value := finite_or_none(given.get(name))) is not None}
    usage = _table(_table(message.get("series")).get(series))
    entities = {k: p for k, v in usage.items() if isinstance(k, str) and (p := finite_or_none(v)) is not None}
    probes = message.get("probes")
    return Peek(ts, found, entities, probes if isinstance(probes, bytes) else None)


def entity_names(data: bytes, series: Iterable[str]) -> dict[str, list[str]]:
    """The entities each map-shaped `series` of a stored snapshot lists (its disks, its interfaces),
    unchecked but for being text; {} for a damaged snapshot. What a host page offers to pick from."""
    try:
        message = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError):
        return {}
    given = _table(_table(message).get("series"))
    return {name: [k for k in _table(given.get(name)) if isinstance(k, str)] for name in series}


def _table(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


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
