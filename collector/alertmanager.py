"""Alertmanager: the alerts of the hosts this collector evaluates, pushed to its API v2.

Alertmanager keeps an alert while it is told of it: each push gives active alerts an
`endsAt` VALIDITY ahead, and they are pushed again every RESEND seconds (and at once
when an alert changes), as Prometheus does. A resolved alert is pushed with its real end
for RESOLVED_FOR afterwards, so an Alertmanager that was down at the time still hears
of it. Only the collector holding a host's lease pushes its alerts, and what it pushes
is read from the database, so a collector taking over pushes the same. Nothing needs
an outbox: a push lost while Alertmanager is down is made again a minute later, and an
alert nobody pushes any more ends by itself after VALIDITY.

Labels: alertname (`osmon_` and the rule's metric, e.g. osmon_mem_percent), host, rule,
severity, and mount, unit or interface for a rule on one entity; annotations: summary,
and dashboard (the host's page, also the alert's generatorURL) with `web.public_url`.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import quote

from collector import httppost
from collector.delivery import DeliveryError
from collector.store import Alert, Store, StoreError
from collector.worker import Worker

log = logging.getLogger("osmon.alertmanager")

RESEND = 60.0  # seconds between two pushes of the same alerts
VALIDITY = 4 * RESEND  # an active alert's endsAt ahead of its push: it ends unless pushed again
RESOLVED_FOR = 15 * 60.0  # seconds a resolved alert is pushed again
API = "/api/v2/alerts"
# The label naming the entity of a per-entity rule ("disk.percent:/var" -> mount="/var").
ENTITY_LABELS = {
    "disk.percent": "mount",
    "disk.inodes": "mount",
    "disk.readonly": "mount",
    "unit.failed": "unit",
    "net.down": "interface",
}


class Alertmanager(NamedTuple):
    """One [[notify.alertmanager]]: its base URL (http://am:9093), and a CA file for TLS."""

    url: str
    ca_file: str | None = None

    def __str__(self) -> str:
        return f"Alertmanager {httppost.shown(self.url)}"


def labels(alert: Alert, severity: str | None = None) -> dict[str, str]:
    metric, _, entity = alert.rule.partition(":")
    found = {
        "alertname": "osmon_" + metric.replace(".", "_"),
        "host": alert.host,
        "rule": metric,
        "severity": severity or alert.severity,
    }
    if entity:
        found[ENTITY_LABELS.get(metric, "entity")] = entity
    return found


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def host_link(public_url: str | None, host: str) -> str | None:
    return f"{public_url.rstrip('/')}/host/{quote(host, safe='')}" if public_url else None


def document(
    alert: Alert,
    now: float,
    summary: str,
    link: str | None,
    severity: str | None = None,
    ended: float | None = None,
) -> dict[str, Any]:
    """One alert as API v2 takes it (`ended`: a severity it no longer has, ended then)."""
    end = ended if ended is not None else alert.ended if alert.ended is not None else now + VALIDITY
    doc: dict[str, Any] = {
        "labels": labels(alert, severity),
        "annotations": {"summary": summary, **({"dashboard": link} if link else {})},
        "startsAt": iso(alert.started),
        "endsAt": iso(end),
    }
    if link:
        doc["generatorURL"] = link
    return doc


class AlertPusher(Worker):
    """The thread pushing alerts to every configured Alertmanager: woken by `notify()` when alerts
    change, else every RESEND seconds.

    `hosts` says which hosts' alerts are this collector's to push (those whose lease it holds);
    `summary` words an alert (collector.notify.describe).
    """

    name = "alertmanager"

    def __init__(
        self,
        store: Store,
        managers: list[Alertmanager],
        hosts: Callable[[], Collection[str]],
        summary: Callable[[Alert, float], str],
        public_url: str | None = None,
        resend: float = RESEND,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(store, resend)
        self.store, self.managers, self.hosts, self.summary = store, managers, hosts, summary
        self.public_url, self.resend, self.clock = public_url, resend, clock
        self._contexts: dict[str, ssl.SSLContext | None] = {}
        self._pushed: dict[
            tuple[str, str], tuple[Alert, str]
        ] = {}  # what was last pushed active, with its severity
        self._errors: dict[str, str] = {}  # per Alertmanager, the error being reported (logged once)

    def round(self) -> None:
        """One push; a store that fails is logged, and the next round tries again."""
        try:
            self.push()
        except StoreError as e:
            log.error("alertmanager: %s", e)

    def alerts(self) -> list[dict[str, Any]]:
        """What to push now: the active and lately resolved alerts of this collector's hosts."""
        now = self.clock()
        held = set(self.hosts())
        silenced = {s.host for s in self.store.silences(now)}
        docs = []
        current: dict[tuple[str, str], tuple[Alert, str]] = {}
        for a in self.store.alerts_since(now - RESOLVED_FOR):
            if a.host not in held or a.host in silenced:
                continue
            link = host_link(self.public_url, a.host)
            docs.append(document(a, now, self.summary(a, now), link))
            key = (a.host, a.rule)
            before = self._pushed.get(key)
            if a.ended is None:
                current[key] = (a, a.severity)
            if before is not None and before[1] != a.severity and before[0].started == a.started:
                # Escalated or back to warning: the alert of the other severity ends now.
                docs.append(document(a, now, self.summary(a, now), link, severity=before[1], ended=now))
        self._pushed = current
        return docs

    def push(self) -> int:
        """Push to every Alertmanager; returns how many took it."""
        if not self.managers:
            return 0
        docs = self.alerts()
        if not docs:
            return 0
        body = json.dumps(docs).encode()
        took = 0
        for manager in self.managers:
            try:
                httppost.post(manager.url + API, body, context=self._context(manager))
            except DeliveryError as e:
                if self._errors.get(manager.url) != e.reason:
                    log.warning(
                        "cannot push %d alert(s) to %s, trying again in %g s: %s",
                        len(docs),
                        manager,
                        self.resend,
                        e,
                    )
                self._errors[manager.url] = e.reason
                continue
            if self._errors.pop(manager.url, None) is not None:
                log.info("%s takes alerts again", manager)
            took += 1
        return took

    def _context(self, manager: Alertmanager) -> ssl.SSLContext | None:
        if not manager.url.startswith("https:"):
            return None
        if manager.url not in self._contexts:
            try:
                self._contexts[manager.url] = httppost.tls_context(manager.ca_file)
            except (OSError, ssl.SSLError) as e:
                raise DeliveryError(f"{manager}: cannot load ca_file: {e}") from None
        return self._contexts[manager.url]
