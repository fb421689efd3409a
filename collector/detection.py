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
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from collector.alertcontext import processes_at
from collector.leases import HostLeases
from collector.liveness import DEFAULT_INTERVAL, down_window, is_down
from collector.rules import Rules, Threshold
from collector.samples import POSITION, Sample
from collector.store import AlertEvent, OutboxMail, Pending, Received, Store, StoreError
from osmon import catalog

log = logging.getLogger("osmon.detection")

DOWN = "host.down"
LEASE_TIME = 10.0  # seconds (the `lease_time` setting's default)
REFRESH = 5.0  # seconds between two reads of when the other collectors last heard from each host


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
# Every metric a reading may name, whose levels detection looks up per host once.
_ALERTED_METRICS = tuple(
    dict.fromkeys([*(m for m, _, _ in _ALERTED), *_ALERTED_SERIES, *(n for _, n, _ in _ABSENT)])
)


def _candidates(sample: Sample, levels: HostLevels, rules: set[str]) -> list[tuple[str, str, float]]:
    """The readings of `sample` at or above their rule's lowest level, or of a rule in `rules`: of
    a host with an alert, those that may change something, without a tuple for every other one."""
    found = []
    values = sample.values
    for (metric, position, per_core), floor in zip(_ALERTED, levels.metric_floors, strict=True):
        value = values[position]
        if value is not None and per_core:
            value = _per_core(sample, value)
        if value is not None and (value >= floor or metric in rules):
            found.append((metric, metric, value))
    detail = sample.detail
    for metric, prefix, floor in zip(_ALERTED_SERIES, _PREFIXES, levels.series_floors, strict=True):
        noted = prefix in rules  # any rule of this series' entities
        for entity, value in (detail.get(metric) or {}).items():
            if value is not None and (value >= floor or (noted and _entity_rule(metric, entity) in rules)):
                found.append((_entity_rule(metric, entity), metric, value))
    return found


_PREFIXES = tuple(f"{metric}:" for metric in _ALERTED_SERIES)


def _note(rules: set[str], rule: str) -> None:
    """Add `rule` to a host's `rules`, with the prefix of its series if it is an entity's."""
    rules.add(rule)
    metric, colon, _ = rule.partition(":")
    if colon:
        rules.add(metric + colon)  # a marker: at worst an entity's rule, read then for nothing


def _per_core(sample: Sample, value: float) -> float | None:
    cores = len(sample.detail.get("cpu.core") or ())
    return value / cores if cores else None


@functools.lru_cache(maxsize=4096)
def _entity_rule(metric: str, entity: str) -> str:
    return f"{metric}:{entity}"


class HostLevels(NamedTuple):
    """A host's levels: (threshold, floor) per metric, and the floors of its quick all-quiet test."""

    by_metric: dict[str, tuple[Threshold, float]]
    metric_floors: tuple[float, ...]  # in the order of _ALERTED
    series_floors: tuple[float, ...]  # in the order of _ALERTED_SERIES


class Timers:
    """Pending breaches: (host, rule) -> (since, level), noting each change for the database.

    A new owner of the host resumes these timers from there instead of starting them again.
    """

    def __init__(self) -> None:
        self.timers: dict[tuple[str, str], tuple[float, str]] = {}  # read freely; change through the methods
        self.changed: set[tuple[str, str]] = set()

    def __contains__(self, key: object) -> bool:
        return key in self.timers

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.timers)

    def setdefault(self, key: tuple[str, str], default: tuple[float, str]) -> tuple[float, str]:
        if key not in self.timers:
            self.timers[key] = default
            self.changed.add(key)
        return self.timers[key]

    def pop(self, key: tuple[str, str]) -> None:
        """End the timer of `key`, if any."""
        if self.timers.pop(key, None) is not None:
            self.changed.add(key)

    def load(self, rows: Iterable[Pending]) -> None:
        """Timers as the database holds them (a host just taken over): not changes."""
        for p in rows:
            if p.since is not None and p.level is not None:
                self.timers[(p.host, p.rule)] = (p.since, p.level)

    def forget(self, hosts: set[str]) -> None:
        """Drop the timers of `hosts` from memory only (another collector has them)."""
        for key in [k for k in self.timers if k[0] in hosts]:
            del self.timers[key]
            self.changed.discard(key)

    def drain(self) -> list[Pending]:
        """The changes since the last drain, as rows to write (since None: no longer pending)."""
        rows = []
        for key in self.changed:
            since, level = self.timers.get(key, (None, None))
            rows.append(Pending(key[0], key[1], since, level))
        self.changed = set()
        return rows


class Detector:
    """Turns samples and silence into alert events, stored with the mails telling of them.

    It evaluates only the hosts whose lease it holds (collector.leases); the state of a host
    (active alerts, pending breaches) is read from the database when it gains the lease, so a
    collector taking over resumes where the previous owner stopped.
    """

    def __init__(
        self,
        store: Store,
        rules: Rules,
        down_after: int,
        notify: Callable[[list[AlertEvent]], None] | None = None,
        clock: Callable[[], float] = time.time,
        mailer: Callable[[list[AlertEvent]], list[OutboxMail]] | None = None,
        owner: str = "local",
        lease_time: float = LEASE_TIME,
    ) -> None:
        self.store, self.rules, self.down_after = store, rules, down_after
        self.notify, self.clock, self.mailer = notify, clock, mailer
        self.leases = HostLeases(store, owner, lease_time)
        self.active: dict[tuple[str, str], Active] = {}
        self.pending = Timers()  # breach (or escalation) since, level
        self.unsaved: list[AlertEvent] = []  # events the store refused (disk full): saved with the next ones
        self.unsaved_mails: list[OutboxMail] = []
        # A collector that was itself stopped must not call every host down at start:
        # each host gets a full down_after window from now.
        now = clock()
        self.last_seen: dict[str, tuple[float, float]] = {
            h.name: (max(h.last_seen, now), h.interval or DEFAULT_INTERVAL) for h in store.hosts()
        }
        self._next_refresh = time.monotonic() + REFRESH
        self._last_refresh = float("-inf")
        self._levels: dict[str, HostLevels] = {}  # each host's levels, looked up once

    def _own(self, hosts: set[str]) -> set[str]:
        """Of `hosts`, those this collector evaluates now: leases taken or renewed, state loaded."""
        gained, lost = self.leases.claim(hosts)
        self._forget(lost | gained)
        if gained:
            alerts, pending = self.store.detection_state(sorted(gained))
            for a in alerts:
                self.active[(a.host, a.rule)] = Active(a.severity, a.started, a.peak)
            self.pending.load(pending)
        return {h for h in hosts if h in self.leases.held}

    def _forget(self, hosts: set[str]) -> None:
        """Drop what memory holds of hosts another collector evaluates (or may have changed)."""
        if not hosts:
            return
        for key in [k for k in self.active if k[0] in hosts]:
            del self.active[key]
        self.pending.forget(hosts)

    def process(self, fresh: list[Received]) -> list[AlertEvent]:
        """Evaluate a committed batch; returns (and stores, and notifies) the events it caused."""
        events: list[AlertEvent] = []
        touched: dict[tuple[str, str], tuple[float, float]] = {}
        for r in fresh:  # arrival order: received times only grow
            self.last_seen[r.sample.host] = (r.received, r.interval or DEFAULT_INTERVAL)
        owned = self._own({r.sample.host for r in fresh})
        for host in owned:
            if (host, DOWN) in self.active:
                events.append(self._end(host, DOWN, self.clock(), None))
        active, pending = self.active, self.pending.timers  # the dict itself: `in` on the hot path
        # Per host with alerts firing or pending, their rules, and those evaluated since (a superset
        # of what fires or is pending now): the hosts that skip no snapshot, and their rules to read
        # even below every level.
        busy: dict[str, set[str]] = {}
        for host, rule in (*active, *pending):
            _note(busy.setdefault(host, set()), rule)
        watched = self._watched()
        # Arrival order is each agent's spool order: per host, oldest first.
        for r in fresh:
            host, ts = r.sample.host, r.sample.ts
            if host not in owned or (host not in busy and self._quiet(r.sample)):
                continue  # another collector's, or the common case: every value below its levels
            rules = busy.setdefault(host, set())
            host_levels = self._levels.get(host) or self._host_levels(host)
            levels = host_levels.by_metric
            for rule, metric, value in _candidates(r.sample, host_levels, rules) + self._absences(
                r.sample, watched
            ):
                key = (host, rule)
                threshold, floor = levels[metric]
                # The common case, kept cheap: nothing firing, nothing pending, value below every level.
                if value < floor and key not in active and key not in pending:
                    continue
                _note(rules, rule)
                timer = pending.get(key)
                if (
                    timer is not None
                    and ts - timer[0] < threshold.for_
                    and key not in active
                    and threshold.level(value) is not None
                ):
                    continue  # a breach still within its `for`: nothing changes (_maybe_fire)
                event = self._evaluate(host, rule, threshold, value, ts)
                if event is not None:
                    if event.kind == "fired":  # what ran at that moment, for the host page
                        event = event._replace(processes=processes_at(r.raw))
                    events.append(event)
                if key in active:
                    touched[key] = (value, ts)
        self._save(events, touched)
        return events

    def _watched(self) -> dict[str, list[str]]:
        """Per host, its firing or pending rules on entities that are listed only while wrong.

        Built once per batch: scanning every alert of the fleet for each snapshot cost 27-62 µs
        a snapshot at 200 hosts with one pending alert each, 219 µs at 2,000.
        """
        watched: dict[str, list[str]] = {}
        prefixes = tuple(prefix for prefix, _, _ in _ABSENT)
        for host, rule in {*self.active, *self.pending}:
            if rule.startswith(prefixes):
                watched.setdefault(host, []).append(rule)
        return watched

    def _absences(self, s: Sample, watched: dict[str, list[str]]) -> list[tuple[str, str, float]]:
        """(rule, metric, absent value) of each watched entity of `s.host` that `s` no longer lists.

        Only when the sample carries the series at all: a probe that failed says nothing.
        """
        rules = watched.get(s.host)
        if not rules:
            return []
        found = []
        for prefix, metric, value in _ABSENT:
            listed = s.detail.get(metric)
            if listed is None:
                continue
            for rule in rules:
                if rule.startswith(prefix) and rule[len(prefix) :] not in listed:
                    found.append((rule, metric, value))
        return found

    def _quiet(self, s: Sample) -> bool:
        """Every reading of `s` below the lowest level of its rule (a series' highest entity stands for all)."""
        levels = self._levels.get(s.host) or self._host_levels(s.host)
        values = s.values
        for (_, position, per_core), floor in zip(_ALERTED, levels.metric_floors, strict=True):
            value = values[position]
            if value is not None and per_core:
                value = _per_core(s, value)
            if value is not None and value >= floor:
                return False
        detail = s.detail
        for metric, floor in zip(_ALERTED_SERIES, levels.series_floors, strict=True):
            entities = detail.get(metric)
            if entities and any(v is not None and v >= floor for v in entities.values()):
                return False
        return True

    def _host_levels(self, host: str) -> HostLevels:
        """(threshold, floor) of every alerted metric and series for `host`, looked up once, and the
        floors in the order `_quiet` reads them."""
        if len(self._levels) > 100_000:
            self._levels.clear()
        by_metric = {m: self.rules.lookup(host, m) for m in _ALERTED_METRICS}
        found = self._levels[host] = HostLevels(
            by_metric,
            tuple(by_metric[metric][1] for metric, _, _ in _ALERTED),
            tuple(by_metric[metric][1] for metric in _ALERTED_SERIES),
        )
        return found

    def _evaluate(self, host: str, rule: str, t: Threshold, value: float, ts: float) -> AlertEvent | None:
        key = (host, rule)
        level = t.level(value)
        active = self.active.get(key)
        if active is None:
            return self._maybe_fire(key, t, level, value, ts)
        self.active[key] = active._replace(peak=max(active.peak or value, value))
        floor = t.warning if t.warning is not None else t.critical
        if floor is None or value < floor - t.hysteresis:
            self.pending.pop(key)
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
            self.pending.pop(key)
        return None

    def _maybe_fire(
        self, key: tuple[str, str], t: Threshold, level: str | None, value: float, ts: float
    ) -> AlertEvent | None:
        if level is None:
            self.pending.pop(key)
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
        """Fire `host.down` for every host silent for down_after of its intervals.

        Silent by what any collector heard (the database, read every REFRESH seconds): a host
        whose agent moved to another collector is not down. Of the collectors that find a host
        silent, the one that gets its lease fires, once.
        """
        now = self.clock()
        if time.monotonic() >= self._next_refresh:
            self._refresh()
        silent = self._silent(now)
        if silent and time.monotonic() >= self._last_refresh + 1.0:
            # Before calling a host down, what every collector heard of it, fresh from the database.
            self._refresh()
            silent = self._silent(now)
        if not silent:
            self._save([], {})  # what the store refused before (disk full) is tried again
            return []
        owned = self._own(set(silent))
        events = []
        for host in silent:
            last, interval = self.last_seen[host]
            if host in owned and (host, DOWN) not in self.active:
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

    def _refresh(self) -> None:
        """When any collector last heard from each host (another one may receive it now)."""
        self._next_refresh = time.monotonic() + REFRESH
        self._last_refresh = time.monotonic()
        for h in self.store.hosts():
            last, interval = self.last_seen.get(h.name, (h.last_seen, DEFAULT_INTERVAL))
            self.last_seen[h.name] = (max(last, h.last_seen), h.interval or interval)

    def _silent(self, now: float) -> list[str]:
        """Hosts silent past their window that this collector may have to call down: not those it
        holds already down, nor those another collector holds (asked again once that lease ends)."""
        held, leases = self.leases.held, self.leases
        return [
            host
            for host, (last, interval) in self.last_seen.items()
            if is_down(last, interval, self.down_after, now)
            and not ((host, DOWN) in self.active and host in held)
            and leases.may_claim(host)
        ]

    def save_mails(self, mails: list[OutboxMail]) -> None:
        """Queue mails of hosts this collector evaluates (reminders), fenced like alert changes."""
        # Leases renewed first: a host down for hours sends no data that would renew it.
        owned = self._own({m.host for m in mails if m.host is not None})
        self._save([], {}, [m for m in mails if m.host is None or m.host in owned])

    def _save(
        self,
        events: list[AlertEvent],
        touched: dict[tuple[str, str], tuple[float, float]],
        extra_mails: list[OutboxMail] | None = None,
    ) -> None:
        updates = [
            (host, rule, value, self.active[(host, rule)].peak, ts)
            for (host, rule), (value, ts) in touched.items()
            if (host, rule) in self.active
        ]
        # The in-memory state already holds these events: if the store fails, they are kept and
        # stored with the next save, or a host-down raised while the disk was full was never stored.
        events = self.unsaved + events
        pending = self.pending.drain()
        if not events and not updates and not pending and not extra_mails and not self.unsaved_mails:
            return
        mails = (
            self.unsaved_mails + (self.mailer(events) if self.mailer and events else []) + (extra_mails or [])
        )
        try:
            fenced = self.store.alerts_apply(events, updates, pending, mails, self.leases.fence())
        except StoreError:
            self.unsaved, self.unsaved_mails = events, mails
            self.pending.changed.update((p.host, p.rule) for p in pending)
            raise
        self.unsaved, self.unsaved_mails = [], []
        if fenced:
            # Frozen or cut off past its leases: another collector evaluates these hosts now.
            log.warning(
                "lost %d host lease(s) to another collector (e.g. %s): their alerts are its to write",
                len(fenced),
                min(fenced),
            )
            self.leases.drop(fenced)
            self._forget(fenced)
            events = [e for e in events if e.host not in fenced]
        for e in events:
            log.info("%s %s %s %s (value %s)", e.host, e.kind, e.severity, e.rule, e.value)
        if events and self.notify is not None:
            self.notify(events)
