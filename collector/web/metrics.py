"""/metrics in the Prometheus text format, and /healthz for load balancers and systemd checks."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify

from collector import histogram, peers
from collector.liveness import is_down
from collector.store import Alert, CollectorInfo, StoreError, WebHost
from collector.web import fleet
from collector.web.context import config, context, store
from collector.web.errors import WebError
from collector.web.exposition import Family, HostState, LineStarts, family, header, hosts_text, line

bp = Blueprint("ops", __name__)

# Collector counters (store.counters() names) exposed as named counters; others go to a generic family.
SNAPSHOT_COUNTERS = {
    "received": "snapshots received from agents",
    "stored": "snapshots stored (duplicates excluded)",
    "duplicates": "snapshots received again and acked without storing",
}
# Counters of refused snapshots, by the reason label they are exported with.
REJECTED = {"rejected": "malformed", "unauthorized": "unauthorized"}
BATCH = Family(
    "osmon_ingest_batch_seconds",
    "histogram",
    "Time to commit one batch of snapshots to the store.",
    "seconds",
)


def collector_text(
    statuses: dict[str, int],
    newest: float | None,
    counters: dict[str, int],
    outbox: dict[str, int],
    size: int,
    now: float,
) -> list[str]:
    """The collector's self-metrics: hosts by status, snapshots, batch latency, outbox, database."""
    lines = family(
        Family("osmon_hosts", "gauge", "Hosts per dashboard status.", ""),
        (({"status": s}, float(n)) for s, n in statuses.items()),
    )
    for key, what in SNAPSHOT_COUNTERS.items():
        lines += family(
            Family(f"osmon_snapshots_{key}_total", "counter", f"Total {what}.", ""),
            [({}, float(counters.get(key, 0)))],
        )
    rejected = {reason: counters.get(key, 0) for key, reason in REJECTED.items()}
    for key, value in counters.items():  # finer reasons, as `rejected.<reason>`
        if key.startswith("rejected."):
            rejected[key.removeprefix("rejected.")] = value
    lines += family(
        Family("osmon_snapshots_rejected_total", "counter", "Total snapshots refused, by reason.", ""),
        (({"reason": r}, float(n)) for r, n in sorted(rejected.items())),
    )
    cumulative, count, total = histogram.buckets(counters, "batch_seconds")
    lines += [
        *header(BATCH),
        *(line(f"{BATCH.name}_bucket", {"le": le}, float(n)) for le, n in cumulative),
        line(f"{BATCH.name}_sum", {}, total),
        line(f"{BATCH.name}_count", {}, float(count)),
    ]
    known = {*SNAPSHOT_COUNTERS, *REJECTED}
    others = sorted(
        k for k in counters if k not in known and not k.startswith("rejected.") and not histogram.is_part(k)
    )
    lines += family(
        Family(
            "osmon_collector_events_total",
            "counter",
            "Other collector events (acks dropped, store errors ...).",
            "",
        ),
        (({"event": k}, float(counters[k])) for k in others),
    )
    if newest is not None:
        lines += family(
            Family(
                "osmon_ingest_lag_seconds",
                "gauge",
                "Seconds since the newest snapshot arrived from any host.",
                "seconds",
            ),
            [({}, max(0.0, now - newest))],
        )
    lines += family(
        Family(
            "osmon_outbox_messages", "gauge", "Messages in the outbox, by state (queued, sent, gave_up).", ""
        ),
        (({"state": k}, float(v)) for k, v in outbox.items()),
    )
    lines += family(
        Family("osmon_database_size_bytes", "gauge", "Size of the database file.", "bytes"),
        [({}, float(size))],
    )
    return lines


def cluster_text(collectors: list[CollectorInfo]) -> list[str]:
    """Each collector sharing the database: up or not, heartbeat age, hosts it evaluates, its rate."""
    if not collectors:
        return []
    label = [({"collector": c.name}, c) for c in collectors]
    return [
        *family(
            Family("osmon_collector_up", "gauge", "1 if the collector beat lately and did not stop.", ""),
            ((k, 1.0 if peers.state(c) == "up" else 0.0) for k, c in label),
        ),
        *family(
            Family(
                "osmon_collector_heartbeat_age_seconds",
                "gauge",
                "Seconds since the collector's last heartbeat (the database's clock).",
                "seconds",
            ),
            ((k, round(c.age, 3)) for k, c in label),
        ),
        *family(
            Family("osmon_collector_hosts", "gauge", "Hosts whose detection the collector holds.", ""),
            ((k, float(c.hosts if peers.state(c) == "up" else 0)) for k, c in label),
        ),
        *family(
            Family(
                "osmon_collector_snapshots_per_second",
                "gauge",
                "Snapshots the collector stored per second lately.",
                "",
            ),
            ((k, float(c.rate)) for k, c in label),
        ),
    ]


def exposition(
    hosts: list[WebHost],
    active: list[Alert],
    down_after: int,
    counters: dict[str, int],
    outbox: dict[str, int],
    size: int,
    now: float,
    collectors: list[CollectorInfo] | None = None,
    starts: LineStarts | None = None,
) -> str:
    """The whole /metrics text: every host's numbers, then the collector's own."""
    by_host: dict[str, list[Alert]] = {}
    for a in active:
        by_host.setdefault(a.host, []).append(a)
    counts = dict.fromkeys(fleet.STATUSES, 0)
    states = []
    for h in hosts:
        down = is_down(h.last_seen, h.interval, down_after, now)
        counts[fleet.status(down, by_host.get(h.name, []))] += 1  # a silence is a mark, not a status
        states.append(HostState(h.name, not down, h.last_seen, h.snapshot))
    newest = max((h.last_seen for h in hosts), default=None)
    lines = hosts_text(states, starts) + collector_text(counts, newest, counters, outbox, size, now)
    lines += cluster_text(collectors or [])
    return "\n".join(lines) + "\n"


@bp.route("/metrics")
def metrics() -> Response:
    s = store()
    now = time.time()
    text = exposition(
        s.web_hosts(),
        s.alerts_active(),
        config().down_after,
        s.counters(),
        s.outbox_states(),
        s.database_size(),
        now,
        s.collectors(),
        context().line_starts,
    )
    return Response(text, content_type="text/plain; version=0.0.4; charset=utf-8")


@bp.route("/healthz")
def healthz() -> tuple[Response, int]:
    """200 if the database can be read, else 503; the body says why."""
    try:
        hosts = context().storage.get().web_check()
    except (WebError, StoreError) as e:
        return jsonify(status="unavailable", error=str(e)), 503
    return jsonify(status="ok", hosts=hosts), 200
