"""From alert events to mails and webhook deliveries: who gets them, what they say, when a reminder is due.

One mail per host per batch of events (alerts that start together go out
together), and one delivery to each webhook whose `hosts` match; one when an
alert fires, one when it escalates, a reminder every `repeat` while it fires,
one when it resolves — only if the firing one went out. A silenced host's
alerts are recorded but not notified. All go to the persistent outbox, which
retries until the server takes them.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Container
from fnmatch import fnmatchcase
from urllib.parse import quote

from collector import webhook
from collector.alertcontext import evidence, human_duration, latest_probes
from collector.certfr import http_link
from collector.config import CollectorConfig
from collector.detection import DOWN
from collector.mail import Mail, event_message_id, one_line
from collector.store import Alert, AlertEvent, CertfrItem, OutboxMail, Store, StoreError
from collector.timefmt import moment
from collector.webhook import Webhook
from osmon import catalog

log = logging.getLogger("osmon.notify")

MAILED_KINDS = ("fired", "escalated", "resolved", "reminder")
# What an alerted number is called in a mail, and its unit: from the catalog.
LABELS = {
    e.name: (e.title or e.name, f" {e.unit.symbol}" if e.unit.symbol else "")
    for e in catalog.ENTRIES
    if e.levels is not None
}


def recipients(config: CollectorConfig, host: str) -> list[str]:
    """The default list plus every route whose glob matches `host`, without duplicates."""
    found = list(config.alert_recipients)
    for route in config.alert_routes:
        if fnmatchcase(host, route.hosts):
            found += route.recipients
    return list(dict.fromkeys(found))


def rule_label(rule: str) -> tuple[str, str]:
    """('disk /var', ' %') for 'disk.percent:/var'."""
    metric, _, subject = rule.partition(":")
    label, unit = LABELS.get(metric, (metric, ""))
    return (f"{label} {subject}" if subject else label), unit


def describe(e: AlertEvent | Alert, started: float, now: float) -> str:
    """'memory 96.2 % >= 95 % for 5 min', 'memory back to 40.0 % after 6 min', 'back after 4 min down'.

    For a host down, `started` is its last snapshot: the silence is what the reader needs.
    """
    resolved = isinstance(e, AlertEvent) and e.kind == "resolved"
    if e.rule == DOWN:
        if resolved:
            return f"back after {human_duration(now - started)} down"
        return f"host down, no snapshot for {human_duration(now - started)}"
    label, unit = rule_label(e.rule)
    value = "?" if e.value is None else f"{e.value:.1f}{unit}"
    if resolved:
        return f"{label} back to {value} after {human_duration(now - started)}"
    limit = "" if e.threshold is None else f" >= {e.threshold:g}{unit}"
    return f"{label} {value}{limit} for {human_duration(now - started)}"


class Notifier:
    """Turns detection's events into mails for the outbox, queued with the events themselves.

    Each mail carries a key naming the events it reports (host, rule, episode, kind, moment): the
    outbox keeps one mail per key, and its Message-ID derives from it, so an event saved twice,
    or by a collector taking over, is one mail, and a resend is recognisably the same mail.
    """

    def __init__(self, config: CollectorConfig, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.config, self.store, self.clock = config, store, clock

    def silenced(self, host: str) -> bool:
        return any(s.host == host for s in self.store.silences(self.clock()))

    def mails_for(self, events: list[AlertEvent]) -> list[OutboxMail]:
        """The messages `events` deserve: per host, one mail and one delivery per matching webhook."""
        by_host: dict[str, list[AlertEvent]] = {}
        for e in events:
            if e.kind in MAILED_KINDS:
                by_host.setdefault(e.host, []).append(e)
        return [m for host, host_events in by_host.items() for m in self._for_host(host, host_events)]

    def _for_host(self, host: str, events: list[AlertEvent]) -> list[OutboxMail]:
        to = recipients(self.config, host)
        hooks = [hook for hook in self.config.webhooks if fnmatchcase(host, hook.hosts)]
        if not to and not hooks:
            return []
        if self.silenced(host):
            log.info("%s is silenced: %d alert change(s) recorded, not notified", host, len(events))
            return []
        # A resolution is news only to those who heard of the alert.
        events = [e for e in events if e.kind != "resolved" or self.store.alert_was_notified(host, e.rule)]
        if not events:
            return []
        now = self.clock()
        key = event_key(host, events)
        notified = tuple(e.rule for e in events if e.kind != "resolved")
        found = []
        if to:
            mail = self.compose(host, events, to, now)
            found.append(
                OutboxMail(host, key, mail, event_message_id(self.config.smtp_from, key), notified, now)
            )
        for hook in hooks:
            found.append(self._delivery(hook, host, events, key, notified, now))
        return found

    def _delivery(
        self,
        hook: Webhook,
        host: str,
        events: list[AlertEvent],
        key: str,
        notified: tuple[str, ...],
        now: float,
    ) -> OutboxMail:
        """The webhook delivery of `events`: its own key in the outbox, so it goes once, beside the mail."""
        summary = self._summary(host, events, now)
        docs = [
            {
                "kind": e.kind,
                "rule": e.rule,
                "severity": e.severity,
                "value": e.value,
                "threshold": e.threshold,
                "started": self._started(e, now),
                "ts": e.ts,
                "summary": self._what(e, now),
            }
            for e in events
        ]
        lines = [self._line(e, now) for e in events]
        payload = webhook.body(hook.format, host, summary, docs, self._link(host), lines)
        hook_key = f"{hook.channel} {key}"
        return OutboxMail(
            host,
            hook_key,
            Mail([], summary, "", ""),
            event_message_id(self.config.smtp_from, hook_key),
            notified,
            now,
            hook.channel,
            payload,
        )

    def reminders(self, hosts: Container[str] | None = None) -> list[OutboxMail]:
        """Reminders for alerts (of `hosts`, default all) still firing `repeat` after their last mail."""
        now = self.clock()
        due: dict[str, list[AlertEvent]] = {}
        for a in self.store.alerts_due_reminder(now, self.config.alert_repeat):
            if hosts is None or a.host in hosts:
                # The moment is the reminder's period, so two collectors composing it agree on its key.
                slot = float(int(now // self.config.alert_repeat) * self.config.alert_repeat)
                due.setdefault(a.host, []).append(
                    AlertEvent(
                        "reminder", a.host, a.rule, a.severity, slot, a.value, a.threshold, started=a.started
                    )
                )
        return [m for host, events in due.items() for m in self._for_host(host, events)]

    def compose(self, host: str, events: list[AlertEvent], to: list[str], now: float) -> Mail:
        """Subject like `[osMonitoring] CRITICAL web-01: memory 96.2 % >= 95 % for 5 min`, text and HTML bodies."""
        subject = f"[osMonitoring] {self._summary(host, events, now)}"
        probes = latest_probes(self.store, host)
        blocks = [[self._line(e, now), *self._context(e, now, probes)] for e in events]
        link = self._link(host)
        changes = f"{len(events)} alert change{'s' if len(events) != 1 else ''}"
        text_blocks = "\n\n".join("\n    ".join(block) for block in blocks)
        text = "\n".join([f"{host}: {changes}", "", text_blocks, "", link or ""]).rstrip() + "\n"
        items = "".join(f"<li>{html.escape(first)}{_html_context(rest)}</li>" for first, *rest in blocks)
        link_html = f'<p><a href="{html.escape(link)}">{html.escape(link)}</a></p>' if link else ""
        body = f"<html><body><p><b>{html.escape(host)}</b></p><ul>{items}</ul>{link_html}</body></html>"
        return Mail(to, subject, text, body)

    def _summary(self, host: str, events: list[AlertEvent], now: float) -> str:
        """`CRITICAL web-01: memory 96.2 % >= 95 % for 5 min (+1 more)`: the worst change first."""
        worst = max(events, key=lambda e: (e.kind != "resolved", e.severity == "critical"))
        state = "RESOLVED" if worst.kind == "resolved" else worst.severity.upper()
        more = f" (+{len(events) - 1} more)" if len(events) > 1 else ""
        return f"{state} {host}: {self._what(worst, now)}{more}"

    def alert_summary(self, a: Alert, now: float) -> str:
        """An alert in a few words, as Alertmanager shows it: `memory 96.2 % >= 95 % for 5 min`."""
        if a.ended is None:
            return f"{a.severity.upper()} {a.host}: {describe(a, a.started, now)}"
        end = AlertEvent("resolved", a.host, a.rule, a.severity, a.ended, a.value, a.threshold, a.started)
        return f"RESOLVED {a.host}: {describe(end, a.started, a.ended)}"

    def _started(self, e: AlertEvent, now: float) -> float:
        """When what the mail reports began: a host down dates from its last snapshot."""
        if e.rule == DOWN and e.kind != "resolved":
            last = self._last_snapshot(e.host)
            if last is not None:
                return last
            if e.kind == "fired" and e.value is not None:
                return now - e.value  # detection's own count of the silence
        return e.started or e.ts

    def _last_snapshot(self, host: str) -> float | None:
        try:
            return next((h.last_seen for h in self.store.hosts() if h.name == host), None)
        except StoreError:
            return None

    def _what(self, e: AlertEvent, now: float) -> str:
        end = e.ts if e.kind == "resolved" else now
        return describe(e, self._started(e, now), end)

    def _line(self, e: AlertEvent, now: float) -> str:
        started = self._started(e, now)
        what = self._what(e, now)
        if e.kind == "resolved":
            return f"RESOLVED {e.rule}: {what} ({e.severity} from {moment(started)} to {moment(e.ts)})"
        return f"{e.kind.upper()} {e.severity.upper()} {e.rule}: {what} (since {moment(started)})"

    def _context(self, e: AlertEvent, now: float, probes: dict) -> list[str]:
        """Evidence for an alert that fires; a resolution needs none."""
        if e.kind == "resolved" or e.rule == DOWN:
            return []
        return [one_line(line) for line in evidence(self.store, e.host, e.rule, now, probes)]

    def _link(self, host: str) -> str | None:
        if not self.config.public_url:
            return None
        return f"{self.config.public_url.rstrip('/')}/host/{quote(host, safe='')}"


def event_key(host: str, events: list[AlertEvent]) -> str:
    """What a mail reports, as its key in the outbox: host, then each (rule, episode, kind, moment)."""
    parts = sorted(f"{e.rule}@{e.started or e.ts!r}:{e.kind}@{e.ts!r}" for e in events)
    return f"{host} " + " ".join(parts)


def _html_context(lines: list[str]) -> str:
    if not lines:
        return ""
    return "<br><small>" + "<br>".join(html.escape(line) for line in lines) + "</small>"


def _certfr_title(item: CertfrItem) -> str:
    """The item's title, as a link only if its URL is http(s): a feed's javascript: link was kept as an href."""
    title, link = html.escape(item.title), http_link(item.link)
    return f'<a href="{html.escape(link)}">{title}</a>' if link else title


def certfr_mail(items: list[CertfrItem], to: list[str]) -> Mail:
    """One mail for the new CERT-FR alerts of one poll."""
    first = items[0]
    more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
    subject = f"[osMonitoring] CERT-FR: {first.title}{more}"
    blocks = [
        f"{item.title}\n{moment(item.published) if item.published else ''}\n{item.link}\n\n{item.description}"
        for item in items
    ]
    text = "\n\n----\n\n".join(blocks) + "\n"
    body = "".join(f"<h3>{_certfr_title(item)}</h3><p>{html.escape(item.description)}</p>" for item in items)
    return Mail(to, subject, text, f"<html><body>{body}</body></html>")
