"""The records the store takes and returns, and its one error: the vocabulary of the storage contract.

Plain NamedTuples, the same whatever the backend; collector.store declares the
methods that take and return them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collector.samples import Sample

# next_attempt of a mail given up on: never due again, kept until pruned so the reason stays visible.
GAVE_UP = float("inf")


# An active alert's detection state to keep up to date: (host, rule, value, peak, ts).
AlertUpdate = tuple[str, str, float, "float | None", float]


class StoreError(Exception):
    """The database cannot be used (missing, unreadable, newer schema, disk full ...)."""


class StoreUnreachable(StoreError):
    """The database server cannot be reached (down, refused, network): worth trying again later."""


class Received(NamedTuple):
    """A validated snapshot as it reaches storage."""

    sample: Sample
    raw: bytes  # the message as received: the latest one per host is kept whole
    interval: float | None
    received: float  # collector clock
    epoch: int | None = None  # the agent's spool id (wire "epoch"); a new one restarts seq at 1
    boot: float | None = None  # its boot.time, for the host's summary (None: read from `raw` there)


class IngestResult(NamedTuple):
    fresh: list[Received]  # stored by this batch, in arrival order
    duplicates: int  # already stored before: acked again, not stored twice
    # Hosts another writer of the database is storing right now (PostgreSQL, several collectors):
    # their snapshots were left out of this batch, and must not be acked (their agents resend them).
    deferred: frozenset[str] = frozenset()


class HostInfo(NamedTuple):
    name: str
    first_seen: float
    last_seen: float
    interval: float | None
    latest_ts: float | None
    snapshots: int
    first_seq: int | None
    last_seq: int | None
    missing: list[tuple[int, int]]  # inclusive ranges


class Alert(NamedTuple):
    """One alert: active while `ended` is None."""

    id: int
    host: str
    rule: str
    severity: str
    started: float
    ended: float | None
    value: float | None
    peak: float | None
    threshold: float | None
    updated: float


class AlertEvent(NamedTuple):
    """A change of an alert: fired, escalated, deescalated, resolved (or a reminder)."""

    kind: str
    host: str
    rule: str
    severity: str
    ts: float
    value: float | None
    threshold: float | None
    started: float | None = None  # fired: when the breach began (`for` earlier than ts)
    processes: str | None = None  # fired: the snapshot's top processes, JSON {"ts", "top_cpu", "top_mem"}


class Silence(NamedTuple):
    host: str
    until: float
    reason: str
    created: float


class OutboxMessage(NamedTuple):
    """One message of the outbox, a mail or a webhook delivery; `sent` is None until a server accepted it."""

    id: int
    created: float
    message_id: str
    recipients: list[str]
    subject: str
    text: str
    html: str
    attempts: int
    next_attempt: float  # GAVE_UP once given up
    last_error: str | None
    sent: float | None
    channel: str = "mail"  # or "webhook:NAME" (collector.webhook)
    payload: str | None = None  # a webhook's body, as it is posted

    @property
    def gave_up(self) -> bool:
        return self.sent is None and self.next_attempt == GAVE_UP


class FeedItem(NamedTuple):
    """One item as the feed gives it (text already cleaned)."""

    guid: str
    title: str
    link: str
    published: float | None  # pubDate, Unix seconds; an update keeps the original date
    description: str


class CertfrItem(NamedTuple):
    """One stored CERT-FR alert."""

    guid: str
    title: str
    link: str
    published: float | None
    description: str
    first_seen: float
    mail_state: str  # none | pending | sent | backlog


class CertfrAdded(NamedTuple):
    new: list[CertfrItem]  # guids never seen before, in feed order (oldest first)
    updated: list[CertfrItem]  # known guids whose title, link or description changed ("[MàJ]")


class WebHost(NamedTuple):
    """A host as the dashboard shows it: bookkeeping and its latest snapshot (msgpack as received)."""

    name: str
    first_seen: float
    last_seen: float  # collector clock
    interval: float | None
    latest_ts: float | None  # agent clock of `snapshot`
    snapshot: bytes | None


class HostSummary(NamedTuple):
    """A host as the overview ranks it: bookkeeping and the few numbers of its latest snapshot
    (collector.store.summaries); `ts` is None when no summary matches that snapshot yet."""

    name: str
    first_seen: float
    last_seen: float  # collector clock
    interval: float | None
    latest_ts: float | None  # agent clock of the latest snapshot
    ts: float | None  # agent clock of the snapshot summarised
    cpu: float | None
    mem: float | None
    disk: float | None  # the fullest filesystem
    load1: float | None
    boot: float | None  # boot.time


class AlertChange(NamedTuple):
    """A change of severity of an alert (fired, escalated, deescalated; `kind` None for an alert
    without recorded events), with its alert's host, rule and span: what the fleet strip reads."""

    alert_id: int
    host: str
    rule: str
    started: float
    ended: float | None
    ts: float
    kind: str | None
    severity: str


class Bucket(NamedTuple):
    """One time bucket of a series: its start, and (min, avg, max) per requested column."""

    t: float
    stats: tuple[tuple[float | None, float | None, float | None], ...]


class DetailBucket(NamedTuple):
    """One time bucket of per-entity numbers: each entity's maximum in the bucket."""

    t: float
    detail: dict[str, Any]  # {"cpu.core": [...]} or {"disk.percent": {mount: %}}


class CopyInfo(NamedTuple):
    schema: int  # PRAGMA user_version
    problems: list[str]  # what PRAGMA integrity_check found; empty when the copy is sound


class OutboxMail(NamedTuple):
    """A mail (or a webhook delivery) to queue with the alert changes it reports, in their transaction.

    `key` names the event(s) it reports: the outbox holds one mail per key, so
    a change saved twice (a retry, a collector taking over) is mailed once.
    """

    host: str | None  # whose alerts it reports (fenced with that host's lease); None: not a host's
    key: str
    mail: Any  # collector.mail.Mail
    message_id: str
    notified: tuple[str, ...] = ()  # rules whose active alert this mail tells about (reminders count from it)
    at: float = 0.0
    channel: str = "mail"  # or "webhook:NAME": then `mail` holds only a subject, and `payload` the body
    payload: str | None = None


class Pending(NamedTuple):
    """A breach waiting for its rule's `for`: since when, at which level. `since` None: no longer pending."""

    host: str
    rule: str
    since: float | None
    level: str | None


class Fence(NamedTuple):
    """The leases a write relies on: its owner, and the epoch of each host's lease it holds."""

    owner: str
    epochs: dict[str, int]


class Leases(NamedTuple):
    """The outcome of taking leases: those held now (subject -> epoch), and when the others end."""

    held: dict[str, int]
    others: dict[str, float]  # subject -> seconds until the other owner's lease ends


class CollectorInfo(NamedTuple):
    """One collector of the cluster, as its heartbeats left it."""

    name: str
    address: str
    pid: int
    version: str
    started: float
    heartbeat: float
    age: float  # seconds since its last heartbeat, by the database's clock
    stopped: bool  # it said goodbye (a clean stop)
    hosts: int  # host leases it holds now
    received: int  # snapshots it stored since it started
    rate: float  # snapshots per second lately


class Token(NamedTuple):
    """A scraper token, as listed (the token itself is never stored)."""

    name: str
    created: float
