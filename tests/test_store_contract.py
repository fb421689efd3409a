"""The storage contract, checked through `collector.store.Store` alone: every backend runs this suite unchanged.

`backend` makes a fresh, empty store of each kind; a backend is added by adding
a factory to BACKENDS. Nothing here names a table or runs SQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector import snapshots
from collector.mail import Mail
from collector.store import (
    AlertEvent,
    FeedItem,
    Fence,
    OutboxMail,
    Pending,
    Received,
    Store,
    StoreError,
    open_store,
)
from osmon import wire

T0 = 1_764_000_000.0  # a whole hour: minute and hour tiers start on it

Factory = Callable[[], Store]


def sqlite_factory(tmp_path: Path) -> Iterator[Factory]:
    yield lambda: open_store(tmp_path / "osmon.db")


def postgresql_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Factory]:
    # A real server (tests/pg.py), started once per session; a new database per test.
    url = request.getfixturevalue("pg_url")
    yield lambda: open_store(url)


BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], Iterator[Factory]]] = {
    "sqlite": lambda tmp_path, request: sqlite_factory(tmp_path),
    "postgresql": postgresql_factory,
}


@pytest.fixture(params=sorted(BACKENDS))
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Opens the test's store (again: a writer restart sees only what was committed)."""
    yield from BACKENDS[request.param](tmp_path, request)


@pytest.fixture
def store(reopen: Factory) -> Iterator[Store]:
    s = reopen()
    yield s
    s.close()


def received(
    host: str,
    seq: int,
    ts: float | None = None,
    cpu: float = 10.0,
    mounts: dict | None = None,
    boot: float | None = None,
) -> Received:
    probes = {
        "cpu": {"percent": cpu, "iowait": 1.25, "per_core": [cpu, cpu / 2]},
        "memory": {"percent": 50.0},
        "load": {"avg1": 0.5, "avg5": 0.25, "avg15": 0.13},
        "filesystems": [{"mount": m, "percent": p} for m, p in (mounts or {"/": 70.0}).items()],
        "disk_io": {
            "read_bps": 100.0,
            "write_bps": 200.0,
            "devices": {"vda": {"read_bps": 100.0, "write_bps": 200.0}},
        },
        "net_io": {"rx_bps": 5.0, "tx_bps": 6.0, "interfaces": {"eth0": {"rx_bps": 5.0, "tx_bps": 6.0}}},
        "processes": {"count": 100, "running": 2},
        **({"uptime": {"boot_time": boot}} if boot is not None else {}),
    }
    ts = T0 + seq * 10.0 if ts is None else ts
    raw = wire.encode_snapshot(host, seq, ts, 10.0, "test", probes)
    return snapshots.decode_received(raw, ts + 0.5)  # as ingest makes it


# -- ingest and deduplication ----------------------------------------------------------------


def test_each_host_and_seq_is_stored_once_across_batches_and_restarts(reopen: Factory) -> None:
    store = reopen()
    first = store.ingest([received("a", 1), received("a", 2), received("b", 1), received("a", 2)])
    assert [(r.sample.host, r.sample.seq) for r in first.fresh] == [("a", 1), ("a", 2), ("b", 1)]
    assert first.duplicates == 1
    store.close()
    store = reopen()  # a new writer knows what is stored without having seen it
    again = store.ingest([received("a", 2), received("a", 5), received("b", 1)])
    assert [r.sample.seq for r in again.fresh] == [5] and again.duplicates == 2
    assert store.seqs("a") == [1, 2, 5] and store.seqs("b") == [1]
    hosts = {h.name: h for h in store.hosts()}
    a = hosts["a"]
    assert (a.snapshots, a.first_seq, a.last_seq, a.missing, a.interval) == (3, 1, 5, [(3, 4)], 10.0)
    assert a.last_seen == T0 + 50.5
    assert store.counters() == {}
    store.close()


def test_the_latest_snapshot_is_the_newest_whatever_the_arrival_order(store: Store) -> None:
    newest = received("a", 10, cpu=99.0)
    store.ingest([newest])
    store.ingest([received("a", 3, cpu=1.0)])  # a late resend
    assert store.latest("a") == newest.raw
    host = store.web_host("a")
    assert host is not None and host.snapshot == newest.raw and host.latest_ts == T0 + 100.0
    assert store.latest("nobody") is None and store.web_host("nobody") is None


def test_samples_come_back_with_every_catalog_number(store: Store) -> None:
    store.ingest([received("a", s, cpu=12.346) for s in (1, 2, 3)])
    [sample] = store.samples("a", T0 + 20.0, T0 + 30.0)
    assert sample.seq == 2 and sample.ts == T0 + 20.0
    assert sample.value("cpu.percent") == 12.35  # kept to 0.01 %
    assert sample.value("cpu.iowait") == 1.25 and sample.value("mem.percent") == 50.0
    assert (sample.value("load.1"), sample.value("load.15")) == (0.5, 0.13)
    assert sample.value("disk.max") == 70.0 and sample.value("processes.running") == 2.0
    assert (sample.value("disk.read_bps"), sample.value("net.tx_bps")) == (100.0, 6.0)
    assert sample.detail["disk.percent"] == {"/": 70.0}
    # Per-core numbers live in the tiers only (issue 14): each core's maximum of the minute.
    assert "cpu.core" not in sample.detail
    [minute] = store.web_series_detail("a", "cpu.core", T0, T0 + 60.0, 60)
    assert minute.detail["cpu.core"] == [12.0, 6.0]  # a core to the whole percent


def test_counters_add_up(store: Store) -> None:
    store.add_counters({"received": 3, "rejected": 1})
    store.add_counters({"received": 2, "stored": 0})
    assert store.counters() == {"received": 5, "rejected": 1}


# -- series and rollups ---------------------------------------------------------------------------


def test_series_buckets_give_min_avg_max_and_tiers_equal_the_raw_rows(store: Store) -> None:
    # Two hours of one snapshot every 10 s, CPU stepping 0, 1, ... 99, 0 ...
    store.ingest([received("a", s, cpu=float(s % 100)) for s in range(720)])
    raw = store.web_series("a", ["cpu"], T0, T0 + 600, 300)  # under a minute's tier: raw rows
    assert [(b.t, b.stats[0]) for b in raw] == [(T0, (0.0, 14.5, 29.0)), (T0 + 300, (30.0, 44.5, 59.0))]
    samples = store.samples("a", T0, T0 + 7200)
    for width in (60, 3600):  # the minute and the hour tier
        buckets = store.web_series("a", ["cpu", "mem"], T0, T0 + 7200, width)
        assert len(buckets) == 7200 // width
        for b in buckets:
            cpu = [s.value("cpu.percent") for s in samples if b.t <= s.ts < b.t + width]
            assert b.stats[0] == (min(cpu), pytest.approx(sum(cpu) / len(cpu)), max(cpu))
            assert b.stats[1] == (50.0, 50.0, 50.0)


def test_a_number_a_host_never_sent_reads_as_no_value_from_every_tier(store: Store) -> None:
    store.ingest([received("a", s) for s in range(400)])  # no conntrack table on this host
    for width in (30, 60, 3600):
        for b in store.web_series("a", ["conntrack", "cpu"], T0, T0 + 4000, width):
            assert b.stats[0] == (None, None, None) and b.stats[1] == (10.0, 10.0, 10.0)


def test_per_entity_series_hold_each_entitys_maximum(store: Store) -> None:
    store.ingest([received("a", s, mounts={"/": 60.0 + s % 7, "/var": 10.0}) for s in range(1, 400)])
    for width in (30, 60, 3600):
        details = store.web_series_details("a", ["disk.percent", "cpu.core", "net.io"], T0, T0 + 4000, width)
        assert set(details) == {"disk.percent", "cpu.core", "net.io"}
        assert max(b.detail["disk.percent"]["/"] for b in details["disk.percent"]) == 66.0
        assert {b.detail["disk.percent"]["/var"] for b in details["disk.percent"]} == {10.0}
    [only] = store.web_series_detail("a", "net.io", T0, T0 + 3600, 3600)
    assert only.detail == {"net.io": {"eth0": [5.0, 6.0]}}


def test_retention_removes_exactly_what_is_older_in_each_tier(store: Store) -> None:
    store.ingest([received("a", s) for s in range(1, 721)])  # two hours
    assert store.prune(T0 + 3600, limit=10_000) == 359  # seq 1..359 are before the first hour ends
    assert store.seqs("a")[0] == 360
    [host] = store.hosts()
    assert (host.first_seq, host.snapshots) == (360, 361)
    assert store.prune_rollups("minute", T0 + 3600, limit=10_000) == 60
    assert store.prune_rollups("hour", T0 + 3600, limit=10_000) == 1
    assert [b.t for b in store.web_series("a", ["cpu"], T0, T0 + 7200, 3600)] == [T0 + 3600]


# -- closed days, packed (PostgreSQL; nothing to do on SQLite) -------------------------------------


def pack_all(store: Store) -> None:
    """What the upkeep does, a pass after another, once the days of T0 are over."""
    while store.pack(time.time(), 100):
        pass


def everything_read(store: Store, host: str = "a") -> dict:
    """Whatever a reader can see of `host`, from every tier."""
    end = T0 + 86400
    return {
        "samples": store.samples(host, T0 - 3600, end),
        "seqs": store.seqs(host),
        "hosts": store.hosts(),
        "series": {
            # "mem" twice, as a page charting memory twice asks for it.
            w: store.web_series(host, ["cpu", "mem", "conntrack", "mem"], T0, end, w)
            for w in (10, 300, 60, 3600)
        },
        "trends": {w: store.web_trends([host, "b"], ["cpu"], T0, end, w) for w in (30, 120, 3600)},
        "details": {
            w: store.web_series_details(host, ["disk.percent", "cpu.core", "net.io"], T0, end, w)
            for w in (30, 60, 3600)
        },
    }


def test_packed_days_read_back_exactly_as_they_were_stored(store: Store) -> None:
    # Across a day's end (T0 is 16:00 UTC): two closed days, and a gap in the numbers.
    seqs = [s for s in range(1, 3600) if s != 100]
    store.ingest(
        [received("a", s, cpu=float(s % 97), mounts={"/": 60.0 + s % 7, "/var": 10.0}) for s in seqs]
    )
    store.ingest([received("b", s) for s in range(1, 50)])
    before = everything_read(store)
    assert all(b.stats[1] == b.stats[3] for series in before["series"].values() for b in series)
    pack_all(store)
    assert everything_read(store) == before
    assert store.pack(time.time(), 100) == 0  # nothing left


def test_a_resend_of_a_packed_period_is_stored_once_and_counted_once(store: Store) -> None:
    batch = [received("a", s, cpu=float(s % 97)) for s in range(1, 721) if s != 100]
    store.ingest(batch)
    pack_all(store)
    packed = everything_read(store)
    again = store.ingest(batch)  # the agent's spool, resent whole
    assert again.fresh == [] and again.duplicates == len(batch)
    assert everything_read(store) == packed
    late = store.ingest([received("a", 100, cpu=50.0)])  # the one missing, at last
    assert [r.sample.seq for r in late.fresh] == [100]
    for settled in (False, True):  # beside the packed rows, then packed with them
        if settled:
            pack_all(store)
        assert store.seqs("a") == list(range(1, 721))
        [hour] = store.web_series("a", ["cpu"], T0, T0 + 3600, 3600)
        cpu = [float(s % 97) for s in range(360) if s not in (0, 100)] + [50.0]
        assert hour.stats[0] == (min(cpu), pytest.approx(sum(cpu) / len(cpu)), max(cpu))
        [minute] = store.web_series("a", ["cpu"], T0 + 960, T0 + 1020, 60)
        minute_cpu = [96.0, 0.0, 1.0, 2.0, 50.0, 4.0]  # seq 96 to 101, the late one among them
        assert minute.stats[0] == (0.0, pytest.approx(sum(minute_cpu) / 6), 96.0)
        assert store.ingest([received("a", 100)]).duplicates == 1


def pack_until(store: Store, now: float) -> None:
    """What the upkeep does at `now` (packing is on the upkeep's clock, not the samples')."""
    while store.pack(now, 100):
        pass


def test_the_hours_of_the_current_day_read_back_the_same_as_each_is_packed_once_closed(store: Store) -> None:
    # T0 is 16:00 UTC: three hours of a day that goes on, a gap in the second one.
    batch = [
        received("a", s, cpu=float(s % 97), mounts={"/": 60.0 + s % 7}) for s in range(1, 1080) if s != 500
    ]
    store.ingest(batch)
    store.ingest([received("b", s) for s in range(1, 50)])
    before = everything_read(store)
    for now in (T0 + 3600, T0 + 3600 + 1800, T0 + 7200 + 1800):  # 17:00, then each hour closed
        pack_until(store, now)
        assert everything_read(store) == before
    again = store.ingest(batch[:400])  # a resend of packed hours
    assert again.fresh == [] and again.duplicates == 400
    late = store.ingest([received("a", 500, cpu=50.0)])  # missing from the second hour, packed
    assert [r.sample.seq for r in late.fresh] == [500]
    for settled in (False, True):  # beside the packed rows, then packed with them at the next pass
        if settled:
            pack_until(store, T0 + 7200 + 1800)
        assert store.seqs("a") == list(range(1, 1080))
        assert [s.seq for s in store.samples("a", T0 + 4990, T0 + 5020)] == [499, 500, 501]
        [minute] = store.web_series("a", ["cpu"], T0 + 4980, T0 + 5040, 60)
        minute_cpu = [float(s % 97) for s in range(498, 504) if s != 500] + [50.0]
        assert minute.stats[0] == (min(minute_cpu), pytest.approx(sum(minute_cpu) / 6), max(minute_cpu))
        assert store.ingest([received("a", 500)]).duplicates == 1


def test_retention_forgets_packed_days_as_it_forgets_live_ones(store: Store) -> None:
    store.ingest([received("a", s) for s in range(1, 721)])  # two hours
    pack_all(store)
    assert store.prune(T0 + 3600, limit=10_000) == 359  # the first hour, whole
    assert store.seqs("a")[0] == 360
    assert store.prune_rollups("minute", T0 + 3600, limit=10_000) == 60
    assert store.web_series("a", ["cpu"], T0, T0 + 7200, 60)[0].t == T0 + 3600
    day_end = (T0 // 86400 + 1) * 86400
    assert store.prune(day_end, limit=10_000) == 361
    assert store.prune_rollups("minute", day_end, limit=10_000) == 61  # seq 720 begins a third hour
    [host] = store.hosts()
    assert (host.snapshots, host.first_seq, store.seqs("a")) == (0, None, [])
    assert store.web_series("a", ["cpu"], T0, T0 + 7200, 60) == []


# -- alerts and silences --------------------------------------------------------------------------


def test_an_alert_fires_is_updated_escalates_and_resolves_with_its_history(store: Store) -> None:
    fired = AlertEvent("fired", "a", "cpu.percent", "warning", T0 + 60, 85.0, 80.0, started=T0)
    store.alerts_apply([fired], [])
    [alert] = store.alerts_active()
    assert (alert.host, alert.rule, alert.severity, alert.started, alert.value) == (
        "a",
        "cpu.percent",
        "warning",
        T0,
        85.0,
    )
    store.alerts_apply([], [("a", "cpu.percent", 88.0, 90.0, T0 + 70)])
    assert (store.alerts_active()[0].value, store.alerts_active()[0].peak) == (88.0, 90.0)
    store.alerts_apply(
        [AlertEvent("escalated", "a", "cpu.percent", "critical", T0 + 80, 96.0, 95.0, started=T0)], []
    )
    assert store.alerts_active()[0].severity == "critical"
    assert not store.alert_was_notified("a", "cpu.percent")
    store.alert_notified("a", "cpu.percent", T0 + 81)
    assert store.alert_was_notified("a", "cpu.percent")
    assert [a.rule for a in store.alerts_due_reminder(T0 + 81 + 3600, 3600)] == ["cpu.percent"]
    assert store.alerts_due_reminder(T0 + 100, 3600) == []
    store.alerts_apply(
        [AlertEvent("resolved", "a", "cpu.percent", "critical", T0 + 90, 10.0, None, started=T0)], []
    )
    assert store.alerts_active() == []
    [past] = store.alerts_history("a")
    assert (past.ended, past.severity) == (T0 + 90, "critical")
    assert [kind for _, kind, _, _ in store.alert_events(past.id)] == ["fired", "escalated", "resolved"]
    assert store.alerts_history("b") == []


def test_an_alert_keeps_the_processes_of_its_moment(store: Store) -> None:
    kept = '{"ts": 1, "top_cpu": [{"name": "backup"}]}'
    store.alerts_apply(
        [AlertEvent("fired", "a", "cpu.percent", "warning", T0, 97.0, 80.0, processes=kept)], []
    )
    store.alerts_apply([AlertEvent("resolved", "a", "cpu.percent", "warning", T0 + 60, 10.0, None)], [])
    store.alerts_apply(
        [AlertEvent("fired", "a", "mem.percent", "warning", T0 + 30, 90.0, 80.0)], []
    )  # none kept
    assert store.alert_processes("a", T0 + 30) == ("cpu.percent", T0, kept)
    assert store.alert_processes("a", T0 + 61) is None and store.alert_processes("b", T0 + 30) is None


def test_silences_are_kept_until_they_end_or_are_lifted(store: Store) -> None:
    store.silence("a", T0 + 3600, "kernel upgrade", T0)
    store.web_silence("b", T0 + 60, "reboot", T0)
    assert {(s.host, s.reason) for s in store.silences(T0 + 30)} == {("a", "kernel upgrade"), ("b", "reboot")}
    assert [s.host for s in store.silences(T0 + 120)] == ["a"]
    assert store.unsilence("a") and not store.unsilence("a")
    assert not store.web_unsilence("nobody")
    assert store.silences(T0 + 30) == [s for s in store.silences(T0 + 30) if s.host == "b"]


# -- the outbox ------------------------------------------------------------------------------------


def test_the_outbox_keeps_mail_until_sent_and_retries_what_failed(store: Store) -> None:
    first = store.outbox_add(Mail(["ops@example.org"], "one", "text", "<p>html</p>"), "<1@x>", T0)
    second = store.outbox_add(Mail(["dba@example.org"], "two", "text", ""), "<2@x>", T0 + 1)
    assert [m.id for m in store.outbox_due(T0 + 1)] == [first, second]
    assert store.outbox_size() == 2
    store.outbox_failed(first, "connection refused", T0 + 60)
    assert [m.id for m in store.outbox_due(T0 + 2)] == [second]
    store.outbox_sent(second, T0 + 2)
    failed = store.outbox_get(first)
    assert failed is not None and (failed.attempts, failed.last_error, failed.sent) == (
        1,
        "connection refused",
        None,
    )
    assert failed.recipients == ["ops@example.org"] and failed.html == "<p>html</p>"
    store.outbox_failed(first, "550 no such user", None)  # given up
    gave_up = store.outbox_get(first)
    assert gave_up is not None and gave_up.gave_up and store.outbox_due(T0 + 10**6) == []
    assert store.outbox_size() == 0
    assert [m.id for m in store.outbox_recent(10)] == [second, first]
    assert store.outbox_prune(T0 + 10) == 2 and store.outbox_get(second) is None


def test_messages_no_sender_took_are_given_up_but_not_one_being_sent(store: Store) -> None:
    sending = store.outbox_add(Mail(["ops@example.org"], "sending", "text", ""), "<2@x>", T0)
    old = store.outbox_add(Mail(["ops@example.org"], "old", "text", ""), "<1@x>", T0 + 1)
    failing = store.outbox_add(Mail(["ops@example.org"], "failing", "text", ""), "<3@x>", T0 + 2)
    recent = store.outbox_add(Mail(["ops@example.org"], "recent", "text", ""), "<4@x>", T0 + 86400)
    store.outbox_failed(failing, "connection refused", T0 + 60)
    assert [m.id for m in store.outbox_claim("c1", T0 + 2, hold=60, limit=1)] == [sending]
    assert store.outbox_waiting() == {"mail": 4}
    assert store.outbox_expire(T0 + 3600, "no sender") == {
        "mail": 2
    }  # not the claimed one, not the recent one
    gone = {m.id: m for m in store.outbox_recent(10)}
    assert gone[old].gave_up and gone[old].last_error == "no sender"
    assert gone[failing].gave_up and gone[failing].last_error == "connection refused"  # the real error stays
    assert not gone[sending].gave_up and not gone[recent].gave_up
    assert store.outbox_waiting() == {"mail": 2} and store.outbox_size() == 2
    assert store.outbox_expire(T0 + 3600, "no sender") == {}


# -- CERT-FR -----------------------------------------------------------------------------------------


def test_certfr_items_are_stored_once_and_mailed_once(store: Store) -> None:
    items = [FeedItem(f"g{i}", f"alert {i}", f"https://example.org/{i}", T0 + i, "text") for i in range(3)]
    first = store.certfr_add(items, mail=True, now=T0)
    assert [i.guid for i in first.new] == ["g0", "g1", "g2"] and {i.mail_state for i in first.new} == {
        "backlog"
    }
    assert store.certfr_pending_mail() == []  # the first poll's alerts are old news
    newer = FeedItem("g3", "alert 3", "https://example.org/3", T0 + 3, "text")
    changed = items[0]._replace(title="alert 0 [MàJ]")
    added = store.certfr_add([newer, changed], mail=True, now=T0 + 10)
    assert [i.guid for i in added.new] == ["g3"] and [i.title for i in added.updated] == ["alert 0 [MàJ]"]
    assert [i.guid for i in store.certfr_pending_mail()] == ["g3"]
    store.certfr_mark_mailed(["g3"])
    assert store.certfr_pending_mail() == []
    latest = store.certfr_latest()
    assert latest is not None and latest.guid == "g3"
    assert [i.guid for i in store.certfr_items(2)] == ["g3", "g2"]


# -- the dashboard's reads -----------------------------------------------------------------------------


def test_web_reads_list_hosts_and_refuse_writes_outside_silences(store: Store) -> None:
    assert store.web_check() == 0
    store.ingest([received("b", 1), received("a", 1), received("a", 2)])
    store.web_read_only()
    assert store.web_check() == 2
    assert [h.name for h in store.web_hosts()] == ["a", "b"]
    store.web_silence("a", T0 + 60, "maintenance", T0)  # the one write the dashboard makes
    assert [s.host for s in store.silences(T0)] == ["a"]
    with pytest.raises(StoreError):  # any other write from a dashboard connection is refused
        store.silence("b", T0 + 60, "not from a view", T0)


def test_the_overview_ranks_hosts_on_the_summary_of_their_latest_snapshot(store: Store) -> None:
    store.ingest(
        [received("a", 10, cpu=99.0, boot=T0 - 3600), received("b", 1, mounts={"/": 20.0, "/var": 91.5})]
    )
    store.ingest([received("a", 3, cpu=1.0)])  # a late resend summarises nothing
    store.web_read_only()
    a, b = store.web_summaries()
    assert (a.name, a.latest_ts, a.ts, a.cpu, a.mem, a.disk, a.load1, a.boot) == (
        "a", T0 + 100.0, T0 + 100.0, 99.0, 50.0, 70.0, 0.5, T0 - 3600
    )  # fmt: skip
    assert (b.name, b.disk, b.boot, b.last_seen, b.interval) == ("b", 91.5, None, T0 + 10.5, 10.0)
    named = store.web_hosts_named(["b", "nobody", "a"])
    assert [(h.name, h.snapshot) for h in named] == [("a", store.latest("a")), ("b", store.latest("b"))]
    assert store.web_hosts_named([]) == []


def test_trends_of_a_page_of_hosts_come_from_the_tiers_in_one_read(store: Store) -> None:
    # Two hours of a and b; c sends nothing in the period asked for.
    store.ingest([received("a", s, cpu=float(s % 100)) for s in range(720)])
    store.ingest([received("b", s, cpu=5.0, mounts={"/": 30.0, "/var": 80.0}) for s in range(360)])
    store.ingest([received("c", 1, ts=T0 - 86400)])
    trends = store.web_trends(["c", "b", "a", "nobody"], ["cpu", "disk_max"], T0, T0 + 7200, 900)
    assert sorted(trends) == ["a", "b"]
    assert trends["a"] == store.web_series("a", ["cpu", "disk_max"], T0, T0 + 7200, 900)
    assert len(trends["a"]) == 8 and len(trends["b"]) == 4 and trends["b"][0].stats[1][2] == 80.0
    assert store.web_trends([], ["cpu"], T0, T0 + 60, 60) == {}
    with pytest.raises(ValueError):
        store.web_trends(["a"], ["cpu; DROP TABLE hosts"], T0, T0 + 60, 60)


def test_alert_changes_list_each_severity_of_the_alerts_of_a_period(store: Store) -> None:
    def event(kind: str, host: str, severity: str, ts: float, started: float) -> AlertEvent:
        return AlertEvent(kind, host, "cpu.percent", severity, ts, 90.0, 80.0, started=started)

    store.alerts_apply([event("fired", "old", "warning", T0 - 7200, T0 - 7200)], [])
    store.alerts_apply([event("resolved", "old", "warning", T0 - 3600, T0 - 7200)], [])
    store.alerts_apply([event("fired", "a", "warning", T0 + 10, T0 + 10)], [])
    store.alerts_apply([event("escalated", "a", "critical", T0 + 20, T0 + 10)], [])
    store.alerts_apply([event("deescalated", "a", "warning", T0 + 30, T0 + 10)], [])
    store.alerts_apply([event("resolved", "a", "warning", T0 + 40, T0 + 10)], [])
    store.alerts_apply([event("fired", "b", "critical", T0 + 50, T0 + 50)], [])
    changes = store.web_alert_changes(T0, T0 + 3600)
    assert [(c.host, c.ts, c.kind, c.severity, c.started, c.ended) for c in changes] == [
        ("a", T0 + 10, "fired", "warning", T0 + 10, T0 + 40),
        ("a", T0 + 20, "escalated", "critical", T0 + 10, T0 + 40),
        ("a", T0 + 30, "deescalated", "warning", T0 + 10, T0 + 40),
        ("b", T0 + 50, "fired", "critical", T0 + 50, None),
    ]
    assert [c.host for c in store.web_alert_changes(T0 - 7200, T0)] == ["old"]


# -- what came with hostile input and integrations: epochs, logouts, tokens, sizes -----------------------


def test_a_new_agent_spool_restarts_the_hosts_numbering_and_nothing_is_dropped(reopen: Factory) -> None:
    store = reopen()
    store.ingest([received("a", s)._replace(epoch=7) for s in (1, 2, 3)])
    store.close()
    store = reopen()  # the epoch in force is read back by a new writer
    reset = [received("a", s, ts=T0 + 1000 + s)._replace(epoch=8) for s in (1, 2)]
    result = store.ingest(reset)
    assert [r.sample.seq for r in result.fresh] == [1, 2] and result.duplicates == 0
    assert store.latest("a") == reset[-1].raw  # the newest by time, whatever its seq
    [host] = store.hosts()
    assert (host.first_seq, host.last_seq) == (1, 2)
    assert len(store.samples("a", 0, T0 + 10_000)) == 5  # the old spool's snapshots are kept
    again = store.ingest([received("a", 2, ts=T0 + 1002)._replace(epoch=8)])
    assert again.fresh == [] and again.duplicates == 1
    store.close()


def test_a_logout_revokes_the_sessions_issued_before_it(store: Store) -> None:
    assert store.web_logged_out("alice") is None
    store.web_logout("alice", T0)
    store.web_logout("alice", T0 - 10)  # an older logout never moves it back
    assert store.web_logged_out("alice") == T0 and store.web_logged_out("bob") is None


def test_scraper_tokens_are_kept_by_digest_and_revoked(store: Store) -> None:
    store.token_add("prometheus", "d" * 64, T0)
    with pytest.raises(StoreError, match="exists already"):
        store.token_add("prometheus", "e" * 64, T0)
    assert store.token_name("d" * 64) == "prometheus" and store.token_name("f" * 64) is None
    assert [(t.name, t.created) for t in store.tokens()] == [("prometheus", T0)]
    assert store.token_revoke("prometheus") and not store.token_revoke("prometheus")
    assert store.tokens() == []


def test_outbox_states_and_database_size_are_reported(store: Store) -> None:
    assert store.outbox_states() == {"queued": 0, "sent": 0, "gave_up": 0}
    first = store.outbox_add(Mail(["a@example.org"], "one", "t", ""), "<1@x>", T0)
    second = store.outbox_add(Mail(["a@example.org"], "two", "t", ""), "<2@x>", T0)
    store.outbox_add(Mail(["a@example.org"], "three", "t", ""), "<3@x>", T0)
    store.outbox_sent(first, T0 + 1)
    store.outbox_failed(second, "550", None)
    assert store.outbox_states() == {"queued": 1, "sent": 1, "gave_up": 1}
    assert store.database_size() > 0


# -- several collectors on one database: leases, fenced writes, one mail per event ------------------


def test_a_lease_is_renewed_by_its_owner_and_taken_over_only_once_expired(reopen: Factory) -> None:
    one, two = reopen(), reopen()
    assert one.lease_take("c1", ["host:a", "host:b"], 3).held == {"host:a": 1, "host:b": 1}
    assert one.lease_take("c1", ["host:a"], 3).held == {"host:a": 1}  # renewed, same epoch
    refused = two.lease_take("c2", ["host:a", "host:c"], 0.5)
    assert refused.held == {"host:c": 1} and 0 < refused.others["host:a"] <= 3
    wait_until(lambda: two.lease_take("c2", ["host:a"], 5).held == {"host:a": 2})  # new owner, new epoch
    assert one.lease_take("c1", ["host:a"], 5).held == {}
    assert [(c.name, c.hosts) for c in one.collectors()] == []  # no heartbeat yet: not listed
    assert two.lease_release("c2") == 1  # host:a; its lease of host:c has expired
    assert one.lease_take("c1", ["host:a"], 5).held == {"host:a": 3}  # released: taken at once
    one.close(), two.close()


def test_a_writer_whose_lease_was_taken_over_writes_nothing(reopen: Factory) -> None:
    old, new = reopen(), reopen()
    epoch = old.lease_take("c1", ["host:a"], 0.3).held["host:a"]
    fired = AlertEvent("fired", "a", "cpu.percent", "critical", T0, 99.0, 95.0, started=T0 - 60)
    wait_until(lambda: bool(new.lease_take("c2", ["host:a"], 30).held))
    mail = OutboxMail(
        "a", "a cpu.percent@fired", Mail(["ops@example.org"], "s", "t", ""), "<1@x>", ("cpu.percent",), T0
    )
    fence = Fence("c1", {"a": epoch})
    pending = [Pending("a", "mem.percent", T0, "warning")]
    assert old.alerts_apply([fired], [], pending, [mail], fence) == {"a"}  # frozen past its lease: fenced
    assert old.alerts_active() == [] and old.outbox_recent() == [] and old.detection_state(["a"]) == ([], [])
    epoch = new.lease_take("c2", ["host:a"], 30).held["host:a"]
    assert new.alerts_apply([fired], [], pending, [mail], Fence("c2", {"a": epoch})) == set()
    alerts, timers = new.detection_state(["a", "b"])
    assert [(a.host, a.rule) for a in alerts] == [("a", "cpu.percent")] and timers == pending
    assert new.alert_was_notified("a", "cpu.percent")
    old.close(), new.close()


def test_a_mail_is_queued_once_per_event_key_and_claimed_by_one_sender(reopen: Factory) -> None:
    one, two = reopen(), reopen()
    mail = OutboxMail(None, "certfr X-1", Mail(["ops@example.org"], "s", "t", ""), "<k@x>", (), T0)
    one.alerts_apply([], [], mails=[mail])
    two.alerts_apply([], [], mails=[mail._replace(message_id="<other@x>")])  # the same event again
    assert [m.message_id for m in one.outbox_recent()] == ["<k@x>"]
    assert one.outbox_add(mail.mail, "<again@x>", T0, key="certfr X-1") == one.outbox_recent()[0].id
    claimed = one.outbox_claim("c1", T0, hold=2)
    assert [m.message_id for m in claimed] == ["<k@x>"] and two.outbox_claim("c2", T0, hold=2) == []
    wait_until(lambda: bool(two.outbox_claim("c2", T0, hold=30)))  # c1 died holding it: c2 may send it
    two.outbox_sent(claimed[0].id, T0 + 1)
    assert one.outbox_claim("c1", T0 + 10**6, hold=30) == []
    one.close(), two.close()


def test_outbox_channels_keep_their_payload_and_a_sender_claims_only_its_channels(store: Store) -> None:
    mail = OutboxMail("a", "a k", Mail(["ops@example.org"], "s", "t", ""), "<m@x>", ("cpu.percent",), T0)
    hook = OutboxMail(
        "a", "webhook:chat a k", Mail([], "s", "", ""), "<w@x>", (), T0, "webhook:chat", '{"x": 1}'
    )
    store.alerts_apply([], [], mails=[mail, hook])
    assert [(m.channel, m.payload, m.recipients) for m in reversed(store.outbox_recent())] == [
        ("mail", None, ["ops@example.org"]),
        ("webhook:chat", '{"x": 1}', []),
    ]
    assert store.outbox_claim("c1", T0, 30, channels=[]) == []
    assert [m.channel for m in store.outbox_claim("c1", T0, 30, channels=["webhook:other", "mail"])] == [
        "mail"
    ]
    [claimed] = store.outbox_claim("c1", T0, 30, channels=["webhook:chat"])
    assert (claimed.channel, claimed.payload, claimed.message_id) == ("webhook:chat", '{"x": 1}', "<w@x>")
    stored = store.outbox_get(claimed.id)
    assert stored is not None and stored.payload == '{"x": 1}'
    assert store.outbox_add(Mail(["a@example.org"], "plain", "t", ""), "<p@x>", T0) > 0
    assert [m.channel for m in store.outbox_claim("c2", T0, 30)] == ["mail"]  # outbox_add queues mail


def test_alerts_since_lists_the_active_and_the_lately_resolved(store: Store) -> None:
    def event(kind: str, host: str, ts: float) -> AlertEvent:
        return AlertEvent(kind, host, "cpu.percent", "critical", ts, 99.0, 95.0, started=T0)

    store.alerts_apply(
        [event("fired", "old", T0), event("fired", "recent", T0), event("fired", "on", T0)], []
    )
    store.alerts_apply([event("resolved", "old", T0 + 10), event("resolved", "recent", T0 + 100)], [])
    found = store.alerts_since(T0 + 50)
    assert [(a.host, a.ended) for a in found] == [("on", None), ("recent", T0 + 100)]


def test_collectors_are_listed_with_their_heartbeat_and_hosts(store: Store) -> None:
    store.heartbeat("mon-01:5555", "tcp://0.0.0.0:5555", 42, "1.0", T0, 1000, 12.5)
    store.heartbeat("mon-02:5555", "tcp://0.0.0.0:5555", 43, "1.0", T0, 0, 0.0, stopped=True)
    store.lease_take("mon-01:5555", ["host:a", "host:b", "duty:certfr"], 30)
    rows = {c.name: c for c in store.collectors()}
    assert (rows["mon-01:5555"].hosts, rows["mon-01:5555"].received, rows["mon-01:5555"].stopped) == (
        2,
        1000,
        False,
    )
    assert rows["mon-02:5555"].stopped and rows["mon-02:5555"].hosts == 0
    assert 0 <= rows["mon-01:5555"].age < 5


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
