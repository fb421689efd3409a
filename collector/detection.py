"""Crisis detection per host: thresholds with a duration and hysteresis, and hosts gone silent.

Runs in the collector on every committed batch, samples in time order per host.
A breach must last the rule's `for` before the alert fires (and before it
escalates); it clears only once the value falls `hysteresis` below the level,
so a value wobbling around a threshold does not flap. A host that sends
nothing for `down_after` of its own intervals gets a `host.down` alert; its
metric alerts are held meanwhile (no data resolves nothing) and its return
resolves the down alert.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from collector.liveness import DEFAULT_INTERVAL, down_window, is_down
from collector.rules import Rules, Threshold
from collector.samples import POSITION, Sample
from collector.store import AlertEvent, Received, Store, StoreError
from osmon import catalog

log = logging.getLogger("osmon.detection")

DOWN = "host.down"


class Active(NamedTuple):
    """What detection keeps in memory of an alert that fires."""

    severity: str
    started: float
    peak: float | None


# What detection reads of a sample, from the catalog: metrics with default levels (position in
# Sample.values, alerted per core or not), then per-entity series with levels (one rule per entity).
_ALERTED = tuple((m.name, POSITION[m.name], m.per_core) for m in catalog.STORED if m.levels is not None)
_ALERTED_SERIES = tuple(s.name for s in catalog.SERIES if s.levels is not None)
# Series whose entities are listed only while something is wrong (a failed unit): an entity with an
# alert or a pending breach that a sample no longer lists reads as this value, which resolves it.
_ABSENT = tuple((f"{s.name}:", s.name, s.absent) for s in catalog.SERIES if s.absent is not None)


def readings(sample: Sample) -> list[tuple[str, str, float]]:
    """(rule, metric, value) of a sample; a rule is a metric, or `metric:entity` for a series (disks)."""
    found = []
    for metric, position, per_core in _ALERTED:
        value = sample.values[position]
        if value is not None and (not per_core or (value := _per_core(sample, value)) is not None):
            found.append((metric, metric, value))
    for metric in _ALERTED_SERIES:
        for entity, value in (sample.detail.get(metric) or {}).items():
            if value is not None:
                found.append((_entity_rule(metric, entity), metric, value))
    return found


def _per_core(sample: Sample, value: float) -> float | None:
    cores = len(sample.detail.get("cpu.core") or ())
    return value / cores if cores else None


@functools.lru_cache(maxsize=4096)
def _entity_rule(metric: str, entity: str) -> str:
    return f"{metric}:{entity}"


class Detector:
    """Turns samples and silence into alert events, stored, then handed to `notify`."""

    def __init__(
        self,
        store: Store,
        rules: Rules,
        down_after: int,
        notify: Callable[[list[AlertEvent]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.rules, self.down_after = store, rules, down_after
        self.notify, self.clock = notify, clock
        self.active: dict[tuple[str, str], Active] = {
            (a.host, a.rule): Active(a.severity, a.started, a.peak) for a in store.alerts_active()
        }
        self.pending: dict[tuple[str, str], tuple[float, str]] = {}  # breach (or escalation) since, level
        self.unsaved: list[AlertEvent] = []  # events the store refused (disk full): saved with the next ones
        # A collector that was itself stopped must not call every host down at start:
        # each host gets a full down_after window from now.
        now = clock()
        self.last_seen: dict[str, tuple[float, float]] = {
            h.name: (max(h.last_seen, now), h.interval or DEFAULT_INTERVAL) for h in store.hosts()
        }

    def process(self, fresh: list[Received]) -> list[AlertEvent]:
        """Evaluate a committed batch; returns (and stores, and notifies) the events it caused."""
        events: list[AlertEvent] = []
        touched: dict[tuple[str, str], tuple[float, float]] = {}
        for r in fresh:  # arrival order: received times only grow
            self.last_seen[r.sample.host] = (r.received, r.interval or DEFAULT_INTERVAL)
        for host in {r.sample.host for r in fresh}:
            if (host, DOWN) in self.active:
                events.append(self._end(host, DOWN, self.clock(), None))
        active, pending, lookup = self.active, self.pending, self.rules.lookup
        busy = {host for host, _ in active} | {host for host, _ in pending}
        # Arrival order is each agent's spool order: per host, oldest first.
        for r in fresh:
            host, ts = r.sample.host, r.sample.ts
            if host not in busy and self._quiet(r.sample):
                continue  # the common case: nothing pending or firing, every value below its levels
            busy.add(host)
            for rule, metric, value in readings(r.sample) + self._absences(r.sample):
                key = (host, rule)
                threshold, floor = lookup(host, metric)
                # The common case, kept cheap: nothing firing, nothing pending, value below every level.
                if value < floor and key not in active and key not in pending:
                    continue
                event = self._evaluate(host, rule, threshold, value, ts)
                if event is not None:
                    events.append(event)
                if key in active:
                    touched[key] = (value, ts)
        self._save(events, touched)
        return events

    def _absences(self, s: Sample) -> list[tuple[str, str, float]]:
        """(rule, metric, absent value) of each watched entity of `s.host` that `s` no longer lists.

        Only when the sample carries the series at all: a probe that failed says nothing.
        """
        found = []
        for prefix, metric, value in _ABSENT:
            listed = s.detail.get(metric)
            if listed is None:
                continue
            for host, rule in {*self.active, *self.pending}:
                if host == s.host and rule.startswith(prefix) and rule[len(prefix) :] not in listed:
                    found.append((rule, metric, value))
        return found

    def _quiet(self, s: Sample) -> bool:
        """Every reading of `s` below the lowest level of its rule (a series' highest entity stands for all)."""
        lookup, host = self.rules.lookup, s.host
        for metric, position, per_core in _ALERTED:
            value = s.values[position]
            if value is not None and per_core:
                value = _per_core(s, value)
            if value is not None and value >= lookup(host, metric)[1]:
                return False
        for metric in _ALERTED_SERIES:
            values = [v for v in (s.detail.get(metric) or {}).values() if v is not None]
            if values and max(values) >= lookup(host, metric)[1]:
                return False
        return True

    def _evaluate(self, host: str, rule: str, t: Threshold, value: float, ts: float) -> AlertEvent | None:
        key = (host, rule)
        level = t.level(value)
        active = self.active.get(key)
        if active is None:
            return self._maybe_fire(key, t, level, value, ts)
        self.active[key] = active._replace(peak=max(active.peak or value, value))
        floor = t.warning if t.warning is not None else t.critical
        if floor is None or value < floor - t.hysteresis:
            self.pending.pop(key, None)
            return self._end(host, rule, ts, value)
        if active.severity == "critical" and t.critical is not None and value < t.critical - t.hysteresis:
            self.active[key] = self.active[key]._replace(severity="warning")
            return AlertEvent(
                "deescalated", host, rule, "warning", ts, value, t.warning, started=active.started
            )
        if active.severity == "warning" and level == "critical":
            since, _ = self.pending.setdefault(key, (ts, "critical"))
            if ts - since >= t.for_:
                self.pending.pop(key)
                self.active[key] = self.active[key]._replace(severity="critical")
                return AlertEvent(
                    "escalated", host, rule, "critical", ts, value, t.critical, started=active.started
                )
        else:
            self.pending.pop(key, None)
        return None

    def _maybe_fire(
        self, key: tuple[str, str], t: Threshold, level: str | None, value: float, ts: float
    ) -> AlertEvent | None:
        if level is None:
            self.pending.pop(key, None)
            return None
        since, _ = self.pending.setdefault(key, (ts, level))
        if ts - since < t.for_:
            return None
        self.pending.pop(key)
        self.active[key] = Active(level, since, value)
        return AlertEvent("fired", key[0], key[1], level, ts, value, t.limit(level), started=since)

    def _end(self, host: str, rule: str, ts: float, value: float | None) -> AlertEvent:
        active = self.active.pop((host, rule))
        return AlertEvent("resolved", host, rule, active.severity, ts, value, None, started=active.started)

    def check_down(self) -> list[AlertEvent]:
        """Fire `host.down` for every host silent for down_after of its intervals."""
        now = self.clock()
        events = []
        for host, (last, interval) in self.last_seen.items():
            if (host, DOWN) not in self.active and is_down(last, interval, self.down_after, now):
                self.active[(host, DOWN)] = Active("critical", last, None)
                events.append(
                    AlertEvent(
                        "fired",
                        host,
                        DOWN,
                        "critical",
                        now,
                        round(now - last, 1),
                        down_window(interval, self.down_after),
                    )
                )
        self._save(events, {})
        return events

    def _save(self, events: list[AlertEvent], touched: dict[tuple[str, str], tuple[float, float]]) -> None:
        updates = [
            (host, rule, value, self.active[(host, rule)].peak, ts)
            for (host, rule), (value, ts) in touched.items()
            if (host, rule) in self.active
        ]
        # The in-memory state already holds these events: if the store fails, they are kept and
        # stored with the next save, or a host-down raised while the disk was full was never stored.
        events = self.unsaved + events
        if not events and not updates:
            return
        try:
            self.store.alerts_apply(events, updates)
        except StoreError:
            self.unsaved = events
            raise
        self.unsaved = []
        for e in events:
            log.info("%s %s %s %s (value %s)", e.host, e.kind, e.severity, e.rule, e.value)
        if events and self.notify is not None:
            self.notify(events)
