"""Alert mails: composition, routing, silences, reminders; end to end with real agents, collector and SMTP."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector import config as collector_config
from collector.mail import Mail
from collector.notify import Notifier, recipients
from collector.samples import extract
from collector.store import AlertEvent, Received, StoreError, open_store
from osmon import wire
from tests.conftest import BIN, Cluster, free_port, wait_for
from tests.test_mail import Inbox, Servers

T0 = 1_764_000_000.0


def load_config(tmp_path: Path, text: str) -> collector_config.CollectorConfig:
    path = tmp_path / "collector.toml"
    path.write_text(f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{tmp_path / "osmon.db"}"\n{text}')
    return collector_config.load(path)


CONFIG = """
[web]
public_url = "https://osmon.example.org/"
[alerts]
recipients = ["ops@example.org"]
repeat = "1h"
[[alerts.route]]
hosts = "db-*"
recipients = ["dba@example.org", "ops@example.org"]
"""


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.config = load_config(tmp_path, CONFIG)
        self.store = open_store(self.config.database)
        self.now = T0
        self.notifier = Notifier(self.config, self.store, clock=lambda: self.now)

    @property
    def mails(self) -> list[Mail]:
        """What the outbox holds, oldest first: what would be sent."""
        return [
            Mail(m.recipients, m.subject, m.text, m.html) for m in reversed(self.store.outbox_recent(1000))
        ]

    def events(self, *events: AlertEvent) -> None:
        """Events stored with their mails, as detection does."""
        self.store.alerts_apply(list(events), [], mails=self.notifier.mails_for(list(events)))

    def remind(self) -> None:
        self.store.alerts_apply([], [], mails=self.notifier.reminders())


def fired(
    host: str,
    rule: str = "mem.percent",
    severity: str = "critical",
    value: float = 96.2,
    threshold: float = 95.0,
    started: float = T0 - 300,
) -> AlertEvent:
    return AlertEvent("fired", host, rule, severity, T0, value, threshold, started=started)


def resolved(host: str, rule: str = "mem.percent", value: float = 40.0) -> AlertEvent:
    return AlertEvent("resolved", host, rule, "critical", T0 + 60, value, None, started=T0 - 300)


def test_routes_add_recipients_to_the_default_list(tmp_path: Path) -> None:
    config = load_config(tmp_path, CONFIG)
    assert recipients(config, "web-01") == ["ops@example.org"]
    assert recipients(config, "db-01") == ["ops@example.org", "dba@example.org"]


def test_one_mail_per_host_with_the_promised_subject_and_a_link(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.events(fired("web-01"), fired("web-01", "disk.percent:/var", "warning", 88.0, 85.0), fired("db-01"))
    assert len(h.mails) == 2
    web = next(m for m in h.mails if "web-01" in m.subject)
    assert web.subject == "[osMonitoring] CRITICAL web-01: memory 96.2 % >= 95 % for 5 min (+1 more)"
    assert "disk /var 88.0 % >= 85 %" in web.text and "https://osmon.example.org/host/web-01" in web.text
    assert '<a href="https://osmon.example.org/host/web-01">' in web.html
    assert web.recipients == ["ops@example.org"]


def test_a_resolution_is_mailed_only_if_the_alert_was(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.events(fired("web-01"))
    h.events(resolved("web-01"))
    assert [m.subject for m in h.mails] == [
        "[osMonitoring] CRITICAL web-01: memory 96.2 % >= 95 % for 5 min",
        "[osMonitoring] RESOLVED web-01: memory back to 40.0 % after 6 min",
    ]
    h.store.silence("web-02", T0 + 3600, "maintenance", T0)
    h.events(fired("web-02"))
    h.store.unsilence("web-02")
    h.events(resolved("web-02"))
    assert len(h.mails) == 2  # silenced when it fired: no news of it ending either
    assert [a.rule for a in h.store.alerts_history("web-02")] == ["mem.percent"]  # still recorded


def test_host_names_are_escaped_in_html(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    mail = h.notifier.compose("web-01", [fired("web-01", "disk.percent:/<b>x</b>")], ["a@b"], T0)
    assert "<b>x</b>" not in mail.html and "&lt;b&gt;x&lt;/b&gt;" in mail.html


def test_reminders_come_every_repeat_while_an_alert_fires(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.events(fired("web-01"))
    h.now = T0 + 3000
    h.remind()
    assert len(h.mails) == 1
    h.now = T0 + 3601
    h.remind()
    assert len(h.mails) == 2 and "for 1 h 5 min" in h.mails[1].subject
    h.remind()
    assert len(h.mails) == 2  # the reminder reset the clock


GiB = 1024**3


def probes(disk_used: float = 90 * GiB) -> dict:
    """A snapshot's probe results: a 4-core host, a busy postgres, a 100 GiB / filling up."""
    proc = {"pid": 812, "name": "postgres", "user": "postgres", "cpu_percent": 97.0, "mem_percent": 61.5}
    return {
        "cpu": {"percent": 99.0, "count": 4, "per_core": [99.0] * 4},
        "load": {"avg1": 7.92, "avg5": 5.1, "avg15": 3.01},
        "memory": {"total": 8 * GiB, "available": GiB, "used": 7 * GiB, "percent": 96.2},
        "filesystems": [
            {
                "mount": "/",
                "device": "/dev/sda1",
                "fstype": "ext4",
                "total": 100 * GiB,
                "used": disk_used,
                "free": 100 * GiB - disk_used,
                "percent": disk_used / GiB,
            }
        ],
        "processes": {"count": 120, "top_cpu": [{**proc, "rss": GiB}], "top_mem": [{**proc, "rss": GiB}]},
    }


def store_snapshot(h: Harness, seq: int, ts: float, **kw: float) -> None:
    raw = wire.encode_snapshot("web-01", seq, ts, 10.0, "test", probes(**kw))
    h.store.ingest([Received(extract(wire.decode_snapshot(raw)), raw, 10.0, ts)])


def test_cpu_and_memory_mails_list_the_top_processes_and_load_mails_the_cores(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    store_snapshot(h, 1, T0)
    h.events(fired("web-01"), fired("web-01", "load.1", "warning", 1.98, 1.5))
    text = h.mails[0].text
    assert "Top processes by memory:" in text
    assert "postgres (pid 812, postgres): CPU 97.0 %, memory 61.5 %, 1.0 GiB" in text
    assert "Load 7.92 / 5.10 / 3.01 (1, 5, 15 min) on 4 cores." in text
    assert "Top processes by CPU:" in text
    assert "postgres" in h.mails[0].html


def test_a_disk_mail_says_the_space_left_and_when_it_will_be_full(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    # 1 GiB more every hour for the last three hours: 10 GiB left is 10 h.
    for i, used in enumerate((87, 88, 89, 90)):
        store_snapshot(h, i + 1, T0 - (3 - i) * 3600, disk_used=used * GiB)
    h.events(fired("web-01", "disk.percent:/", "critical", 90.0, 90.0))
    text = h.mails[0].text
    assert "/: 10.0 GiB left of 100.0 GiB." in text
    assert "Filling at 1.0 GiB/h over the last 6 h: full in about 10 h at this rate." in text


def test_a_disk_without_history_says_so(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    store_snapshot(h, 1, T0)
    h.events(fired("web-01", "disk.percent:/", "critical", 90.0, 90.0))
    assert "Not enough recent history to estimate when it will be full." in h.mails[0].text


def test_host_down_counts_from_the_last_snapshot_and_its_end_says_how_long(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    store_snapshot(h, 1, T0 - 45)
    # Detection fires 45 s after the last snapshot; the alert itself is 0 s old.
    h.events(AlertEvent("fired", "web-01", "host.down", "critical", T0, 45.0, 30.0))
    assert h.mails[-1].subject == "[osMonitoring] CRITICAL web-01: host down, no snapshot for 45 s"
    h.events(AlertEvent("resolved", "web-01", "host.down", "critical", T0 + 195, None, None, started=T0 - 45))
    assert h.mails[-1].subject == "[osMonitoring] RESOLVED web-01: back after 4 min down"
    assert "(critical from 2025-11-24 15:59:15 UTC to 2025-11-24 16:03:15 UTC)" in h.mails[-1].text


def test_every_time_in_a_mail_has_one_format(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.events(fired("web-01"))
    assert "(since 2025-11-24 15:55:00 UTC)" in h.mails[0].text
    assert "T15:" not in h.mails[0].text and "Z)" not in h.mails[0].text


@pytest.fixture
def smtp() -> Iterator[tuple[Servers, Inbox, int]]:
    servers, inbox, port = Servers(), Inbox(), free_port()
    servers.start(inbox, port=port)
    try:
        yield servers, inbox, port
    finally:
        servers.stop_all()


def read(cluster: Cluster, method: str, default: object) -> object:
    """A store read that tolerates a database not created, or not fully migrated, yet."""
    try:
        return getattr(open_store(cluster.dir / "osmon.db", readonly=True), method)()
    except StoreError:
        return default


def subjects(inbox: Inbox) -> list[str]:
    return [str(m["Subject"]) for m in inbox.messages]


def e2e_config(cluster: Cluster, port: int) -> None:
    cluster.write_collector_config(
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nfrom = "osmon@test"\n'
        '[alerts]\nrecipients = ["ops@test"]\n'
        '[thresholds."mem.percent"]\nwarning = 0.01\ncritical = 100\nfor = 0\n'
    )


def test_end_to_end_breach_down_and_back_are_mailed_once_each(cluster: Cluster, smtp) -> None:
    _, inbox, port = smtp
    e2e_config(cluster, port)
    collector = cluster.collector()
    agent = cluster.agent("web-01", interval=0.2)
    wait_for(lambda: any("WARNING web-01: memory" in s for s in subjects(inbox)), what="the breach mail")
    agent.terminate()
    wait_for(lambda: any("host down" in s for s in subjects(inbox)), what="the host-down mail")
    agent = cluster.agent("web-01", interval=0.2)
    wait_for(
        lambda: any(s.startswith("[osMonitoring] RESOLVED web-01") for s in subjects(inbox)),
        what="the resolved mail",
    )
    agent.terminate()
    collector.terminate()
    assert sum("memory" in s for s in subjects(inbox)) == 1  # held while down, not re-fired on return
    assert [m["To"] for m in inbox.messages] == ["ops@test"] * len(inbox.messages)


def test_end_to_end_an_smtp_outage_delays_the_mail_and_loses_nothing(cluster: Cluster, smtp) -> None:
    servers, inbox, port = smtp
    servers.stop_all()  # SMTP is down when the alert fires
    e2e_config(cluster, port)
    collector = cluster.collector()
    agent = cluster.agent("web-01", interval=0.2)
    wait_for(lambda: read(cluster, "outbox_size", 0) >= 1, what="the mail to wait in the outbox")
    servers.start(inbox, port=port)
    # The sender retries with backoff (first retry after at most 30 s).
    wait_for(lambda: subjects(inbox), timeout=75, what="the delayed mail")
    agent.terminate()
    collector.terminate()
    assert len(subjects(inbox)) == 1 and "WARNING web-01: memory" in subjects(inbox)[0]


def test_end_to_end_a_silenced_host_is_recorded_not_mailed(cluster: Cluster, smtp) -> None:
    _, inbox, port = smtp
    e2e_config(cluster, port)
    collector = cluster.collector()
    wait_for(lambda: (cluster.dir / "osmon.db").exists(), what="the database")
    out = subprocess.run(
        [
            str(BIN / "osmon-collector"),
            "silence",
            "web-01",
            "--for",
            "1h",
            "--reason",
            "kernel upgrade",
            "--config",
            str(cluster.collector_config),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "silenced until" in out.stdout
    agent = cluster.agent("web-01", interval=0.2)
    wait_for(lambda: read(cluster, "alerts_active", []), what="the alert")
    agent.terminate()
    collector.terminate()
    assert inbox.messages == []


def test_silence_rejects_a_bad_duration_or_host(cluster: Cluster) -> None:
    cluster.collector()
    wait_for(lambda: (cluster.dir / "osmon.db").exists(), what="the database")
    for args in (["web-01", "--for", "soon"], ["../x", "--for", "1h"]):
        out = subprocess.run(
            [
                str(BIN / "osmon-collector"),
                "silence",
                *args,
                "--reason",
                "x",
                "--config",
                str(cluster.collector_config),
            ],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1
