"""The fleet as the overview shows it: one row per host with its status, and counts per status.

Pure functions of what the store returns and the current time, so that the
pages, the JSON API and /metrics agree, and tests can give exact inputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from collector.detection import DOWN
from collector.liveness import down_window, is_down
from collector.notify import rule_label
from collector.store import Alert, CertfrItem, HostSummary, Silence, WebHost
from collector.web.filters import duration
from osmon import catalog, wire
from osmon.numbers import finite_or_none

# Display and sort order of the overview: what needs attention first. A silence is no status but
# a mark over one (a silenced host still shows, and counts, as what it is).
STATUSES = ("down", "critical", "warning", "ok")
URGENCY = {status: rank for rank, status in enumerate(STATUSES)}


class Latest(NamedTuple):
    """A host's latest snapshot, decoded: host-wide numbers, per-entity numbers, full probe results."""

    ts: float
    metrics: dict[str, float]
    series: dict[str, Any]
    probes: dict[str, Any]


def decode_latest(host: WebHost) -> Latest | None:
    """The latest snapshot of `host`, or None if there is none or it no longer decodes."""
    if host.snapshot is None:
        return None
    try:
        snapshot = wire.decode_snapshot(host.snapshot)
        return Latest(snapshot.ts, snapshot.metrics, snapshot.series, snapshot.probes())
    except wire.WireError:
        return None


# What an overview row shows of the latest snapshot's host-wide numbers (boot.time: its uptime).
# (overview row key, metric name) of what a row shows from the catalog.
_ROW: tuple[tuple[str, str], ...] = tuple(
    (row, m.name) for m in catalog.WIRE_METRICS if (row := m.row) is not None
)
ROW_METRICS = (*(name for _, name in _ROW), "boot.time")


def read_latest(host: WebHost) -> Latest | None:
    """The few numbers an overview row shows of `host`'s latest snapshot, read cheaply (wire.peek).

    The probe results are decoded only for an agent too old to send `boot.time`, for its uptime.
    """
    if host.snapshot is None or (peeked := wire.peek(host.snapshot, ROW_METRICS, "disk.percent")) is None:
        return None
    probes: dict[str, Any] = {}
    if "boot.time" not in peeked.metrics and peeked.probes_raw is not None:
        with contextlib.suppress(wire.WireError):  # damaged: no uptime, the rest of the row stays
            probes = {"uptime": _table(wire.decode_probes(peeked.probes_raw).get("uptime"))}
    return Latest(peeked.ts, peeked.metrics, {"disk.percent": peeked.entities}, probes)


def _table(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def status(down: bool, alerts: Iterable[Alert]) -> str:
    """One of STATUSES. A down host's numbers are stale, so its alerts on them say little."""
    if down:
        return "down"
    severities = {a.severity for a in alerts}
    return "critical" if "critical" in severities else "warning" if "warning" in severities else "ok"


def host_row(
    host: WebHost,
    latest: Latest | None,
    alerts: list[Alert],
    silence: Silence | None,
    down_after: int,
    now: float,
) -> dict[str, Any]:
    """Everything the overview shows about one host."""
    down = is_down(host.last_seen, host.interval, down_after, now)
    metrics = latest.metrics if latest else {}
    mount, fullest = fullest_disk(latest.series if latest else {})
    return {
        "name": host.name,
        "status": status(down, alerts),
        "down": down,
        "silenced": silence is not None,
        "silenced_until": silence.until if silence else None,
        "alerts": len(alerts),
        # Listed by the agent only while failed: a count worth seeing before opening the host.
        "failed_units": len((latest.series.get("unit.failed") or {}) if latest else {}),
        **{row: metrics.get(name) for row, name in _ROW},
        "disk": fullest,
        "disk_mount": mount,
        "worst": max(
            (v for v in (metrics.get("cpu.percent"), metrics.get("mem.percent"), fullest) if v is not None),
            default=-1.0,
        ),
        "uptime": uptime(latest, host.last_seen, down, now),
        "last_seen": host.last_seen,
        "last_seen_ago": max(0.0, now - host.last_seen),
        "interval": host.interval,
    }


def fullest_disk(series: dict[str, Any]) -> tuple[str | None, float | None]:
    """(mount, percent) of the fullest filesystem."""
    usage = series.get("disk.percent") or {}
    known = [(p, m) for m, p in usage.items() if p is not None]
    if not known:
        return None, None
    percent, mount = max(known)
    return mount, percent


def uptime(latest: Latest | None, last_seen: float, down: bool, now: float) -> float | None:
    """Seconds since boot: as of the latest snapshot, plus the time since while the host is up.

    From the `boot.time` metric (both instants on the host's clock), or from
    the uptime probe for agents older than that metric.
    """
    if latest is None:
        return None
    boot = latest.metrics.get("boot.time")
    if boot is not None:
        seconds: float | None = latest.ts - boot if latest.ts >= boot else None
    else:
        seconds = number(_table(latest.probes.get("uptime")).get("seconds"))
    if seconds is None:
        return None
    return seconds if down else seconds + max(0.0, now - last_seen)


def overview(
    hosts: list[WebHost],
    active: list[Alert],
    silences: list[Silence],
    down_after: int,
    now: float,
) -> list[dict[str, Any]]:
    """The rows of every host, worst first (worst_first)."""
    by_host: dict[str, list[Alert]] = {}
    for a in active:
        by_host.setdefault(a.host, []).append(a)
    silenced = {s.host: s for s in silences}
    rows = [
        host_row(h, read_latest(h), by_host.get(h.name, []), silenced.get(h.name), down_after, now)
        for h in hosts
    ]
    return sorted(rows, key=worst_first)


def summarised(host: WebHost) -> HostSummary:
    """The summary of a host the store has none for yet (data stored before summaries were), from its
    snapshot: the same numbers, the boot time from the uptime probe for an agent too old to send it."""
    latest = read_latest(host)
    metrics = latest.metrics if latest else {}
    seconds = uptime(latest, host.last_seen, True, host.last_seen)
    return HostSummary(
        host.name, host.first_seen, host.last_seen, host.interval, host.latest_ts,
        latest.ts if latest else None, metrics.get("cpu.percent"), metrics.get("mem.percent"),
        fullest_disk(latest.series)[1] if latest else None, metrics.get("load.1"),
        None if latest is None or seconds is None else latest.ts - seconds,
    )  # fmt: skip


def ranked(
    hosts: list[HostSummary],
    active: list[Alert],
    silences: list[Silence],
    down_after: int,
    now: float,
) -> list[dict[str, Any]]:
    """What the overview filters, counts and sorts every host of the fleet on, worst first: the keys of
    host_row that Query and counts read, from each host's summary (no snapshot decoded)."""
    worst: dict[str, str] = {}
    for a in active:
        if worst.get(a.host) != "critical" and a.severity in ("critical", "warning"):
            worst[a.host] = a.severity
    silenced = {s.host for s in silences}
    rows = []
    for h in hosts:  # the hot loop of a 10,000-host overview: kept plain
        down = now - h.last_seen > down_window(h.interval, down_after)  # liveness.is_down
        cpu, mem, disk = h.cpu, h.mem, h.disk
        highest = max(
            -1.0 if cpu is None else cpu, -1.0 if mem is None else mem, -1.0 if disk is None else disk
        )
        ago = max(0.0, now - h.last_seen)
        seconds = h.ts - h.boot if h.ts is not None and h.boot is not None and h.ts >= h.boot else None
        rows.append(
            {
                "name": h.name,
                "status": "down" if down else worst.get(h.name, "ok"),
                "silenced": h.name in silenced,
                "cpu": cpu,
                "mem": mem,
                "disk": disk,
                "load1": h.load1,
                "worst": highest,
                "uptime": seconds if seconds is None or down else seconds + ago,
                "last_seen": h.last_seen,
                "last_seen_ago": ago,
            }
        )
    rows.sort(key=worst_first)
    return rows


def worst_first(row: dict[str, Any]) -> tuple[int, float, str]:
    """Sort key of the overview: status, then the highest of CPU, memory and fullest disk."""
    return (URGENCY[row["status"]], -row["worst"], row["name"])


SORTS = ("status", "name", "cpu", "mem", "disk", "load1", "uptime", "last_seen_ago")
PAGE = 100  # rows per page of the overview
MAX_PAGE = 1000
ALERTS_SHOWN = 100  # the overview's most urgent active alerts


class Query(NamedTuple):
    """Which rows of the overview a page shows: filtered by name and status, sorted, one page of them."""

    q: str = ""  # part of the host name
    status: str = ""  # statuses, comma-separated; "silenced" for silenced hosts
    sort: str = "status"  # a key of SORTS; "status" is worst first
    desc: bool = False
    page: int = 1
    per: int = PAGE

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> Query:
        """From ?q=&status=&sort=&desc=&page=&per=; anything unknown falls back to the default."""
        sort = args.get("sort", "status")

        def whole(name: str, default: int, top: int) -> int:
            try:
                return max(1, min(top, int(args.get(name, default))))
            except ValueError:
                return default

        return cls(
            q=str(args.get("q", ""))[:100].strip().lower(),
            status=",".join(
                s for s in str(args.get("status", "")).split(",") if s in (*STATUSES, "silenced")
            ),
            sort=sort if sort in SORTS else "status",
            desc=args.get("desc") in ("1", "true"),
            page=whole("page", 1, 1_000_000),
            per=whole("per", PAGE, MAX_PAGE),
        )

    def apply(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """(the rows of this page, how many rows match in all); `rows` come worst first."""
        wanted = set(self.status.split(",")) if self.status else set()
        picked = [
            r for r in rows
            if (not self.q or self.q in r["name"].lower())
            and (not wanted or r["status"] in wanted or ("silenced" in wanted and r["silenced"]))
        ]  # fmt: skip
        if self.sort != "status" or self.desc:
            known = [r for r in picked if r[self.sort] is not None]
            known.sort(key=lambda r: (r[self.sort], r["name"]) if self.sort != "status" else worst_first(r),
                       reverse=self.desc)  # fmt: skip
            picked = known + [r for r in picked if r[self.sort] is None]  # missing values last
        first = (self.page - 1) * self.per
        return picked[first : first + self.per], len(picked)


def most_urgent(alerts: list[Alert], limit: int = ALERTS_SHOWN) -> list[Alert]:
    """Critical first, then the newest."""
    return sorted(alerts, key=lambda a: (a.severity != "critical", -a.started))[:limit]


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Hosts per status, every status present (zeros included): they add up to the fleet."""
    result = dict.fromkeys(STATUSES, 0)
    for r in rows:
        result[r["status"]] += 1
    return result


def silenced_count(rows: list[dict[str, Any]]) -> int:
    """Hosts under a silence, whatever their status."""
    return sum(1 for r in rows if r["silenced"])


def alert_dict(a: Alert, now: float, last_seen: float | None = None) -> dict[str, Any]:
    """One alert as the pages show it: its words ('Disk /'), and its numbers with their unit.

    An active host.down alert's value is the time since the host's last snapshot (`last_seen`),
    not the one the detector stored when it fired.
    """
    value = a.value
    if a.rule == DOWN and a.ended is None and last_seen is not None:
        value = max(0.0, now - last_seen)
    return {
        "id": a.id,
        "host": a.host,
        "rule": a.rule,
        "title": rule_title(a.rule),
        "text": alert_text(a.rule, value, a.threshold),
        "severity": a.severity,
        "active": a.ended is None,
        "started": a.started,
        "ended": a.ended,
        "duration": (a.ended if a.ended is not None else now) - a.started,
        "value": value,
        "peak": a.peak,
        "peak_text": None if a.rule == DOWN else alert_number(a.rule, a.peak),
        "threshold": a.threshold,
    }


def rule_title(rule: str) -> str:
    """'Disk /var' for 'disk.percent:/var', 'Memory', 'Host down'."""
    if rule == DOWN:
        return "Host down"
    label, _ = rule_label(rule)
    return label[:1].upper() + label[1:]


def alert_number(rule: str, value: float | None) -> str:
    """'96.2 %', '3.10' (a load per core): the value of an alert with its unit."""
    if value is None:
        return "\N{EN DASH}"
    if rule == DOWN:
        return f"silent {duration(value)}"
    return f"{value:.1f}{rule_label(rule)[1]}" if rule_label(rule)[1] else f"{value:.2f}"


def alert_text(rule: str, value: float | None, threshold: float | None) -> str:
    """'96.2 % ≥ 95 %', 'silent 45 s ≥ 30 s'."""
    if rule == DOWN:
        shown = f"silent {duration(value)}"
        return shown if threshold is None else f"{shown} ≥ {duration(threshold)}"
    shown = alert_number(rule, value)
    return shown if threshold is None else f"{shown} ≥ {threshold:g}{rule_label(rule)[1]}"


def silence_dict(s: Silence) -> dict[str, Any]:
    return {"host": s.host, "until": s.until, "reason": s.reason, "created": s.created}


def certfr_dict(item: CertfrItem | None) -> dict[str, Any] | None:
    if item is None:
        return None
    return {
        "guid": item.guid,
        "title": item.title,
        "link": safe_link(item.link),
        "published": item.published,
        "first_seen": item.first_seen,
    }


def safe_link(url: str) -> str | None:
    """`url` if it is http(s): a feed could carry a javascript: link, which must never become an href."""
    try:
        return url if urlsplit(url).scheme in ("http", "https") else None
    except ValueError:
        return None


number = finite_or_none  # hostile data from the store: the same test as the wire's
