"""/metrics in the Prometheus text format, and /healthz for load balancers and systemd checks."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Response, jsonify

from collector.store import StoreError
from collector.web import fleet
from collector.web.context import config, context, store
from collector.web.errors import WebError
from osmon import catalog

bp = Blueprint("ops", __name__)

# Per-host gauges: (name, help, key of the overview row), the catalog's exported metrics first.
HOST_GAUGES = (
    *(
        (
            m.export,
            f"{m.help[0].upper()}{m.help[1:]}{f', {m.unit.name}' if m.unit.symbol else ''}, latest snapshot.",
            m.row,
        )
        for m in catalog.METRICS
        if m.export is not None and m.row is not None
    ),
    ("osmon_host_last_seen_seconds", "When the collector last received a snapshot, Unix time.", "last_seen"),
)
# Collector counters (store.counters() names) exposed as named counters; others go to a generic family.
SNAPSHOT_COUNTERS = {
    "received": "snapshots received from agents",
    "stored": "snapshots stored (duplicates excluded)",
    "rejected": "snapshots rejected as malformed",
    "duplicates": "snapshots received again and acked without storing",
    "unauthorized": "snapshots refused: host name not bound to the sender's key",
}


def escape(value: str) -> str:
    """A label value: backslash, double quote and newline escaped, as the format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def sample(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
) -> list[str]:
    """The lines of one metric family: HELP, TYPE, then one line per (labels, value)."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {sample(value)}" if text else f"{name} {sample(value)}")
    return lines


def exposition(rows: list[dict[str, Any]], counters: dict[str, int], outbox: int, now: float) -> str:
    """The whole /metrics text from the overview rows and the collector's self-metrics."""
    lines = family(
        "osmon_host_up",
        "gauge",
        "1 if the host sent a snapshot within alerts.down_after of its intervals, else 0.",
        (({"host": r["name"]}, 0.0 if r["down"] else 1.0) for r in rows),
    )
    for name, help_text, key in HOST_GAUGES:
        lines += family(
            name, "gauge", help_text, (({"host": r["name"]}, r[key]) for r in rows if r.get(key) is not None)
        )
    lines += family(
        "osmon_hosts",
        "gauge",
        "Hosts per dashboard status.",
        (({"status": s}, float(n)) for s, n in fleet.counts(rows).items()),
    )
    for key, what in SNAPSHOT_COUNTERS.items():
        lines += family(
            f"osmon_snapshots_{key}_total", "counter", f"Total {what}.", [({}, float(counters.get(key, 0)))]
        )
    others = sorted(set(counters) - set(SNAPSHOT_COUNTERS))
    lines += family(
        "osmon_collector_events_total",
        "counter",
        "Other collector events (acks dropped, store errors, hook errors ...).",
        (({"event": k}, float(counters[k])) for k in others),
    )
    newest = max((r["last_seen"] for r in rows), default=None)
    if newest is not None:
        lines += family(
            "osmon_ingest_lag_seconds",
            "gauge",
            "Seconds since the newest snapshot arrived from any host.",
            [({}, max(0.0, now - newest))],
        )
    lines += family(
        "osmon_outbox_size", "gauge", "Mails waiting in the outbox to be sent.", [({}, float(outbox))]
    )
    return "\n".join(lines) + "\n"


@bp.route("/metrics")
def metrics() -> Response:
    s = store()
    now = time.time()
    rows = fleet.overview(s.web_hosts(), s.alerts_active(), s.silences(now), config().down_after, now)
    text = exposition(rows, s.counters(), s.outbox_size(), now)
    return Response(text, content_type="text/plain; version=0.0.4; charset=utf-8")


@bp.route("/healthz")
def healthz() -> tuple[Response, int]:
    """200 if the database can be read, else 503; the body says why."""
    try:
        hosts = context().storage.get().web_check()
    except (WebError, StoreError) as e:
        return jsonify(status="unavailable", error=str(e)), 503
    return jsonify(status="ok", hosts=hosts), 200
