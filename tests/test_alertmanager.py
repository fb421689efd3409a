"""Alertmanager: the distribution's `prometheus-alertmanager`, started on loopback for the session and
routing every alert (one group each) to a webhook sink: one notification per alert, resolution delivered."""

from __future__ import annotations

import json
import logging
import shutil
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector import config as collector_config
from collector.alertmanager import Alertmanager, AlertPusher
from collector.notify import Notifier
from collector.store import AlertEvent, Store, open_store
from tests.conftest import Cluster, Process, free_port, wait_for
from tests.webhook_sink import Sink

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="prometheus-alertmanager not installed (Debian package prometheus-alertmanager)",
)


class AlertmanagerServer:
    """A real Alertmanager on a loopback port, notifying `sink_url` of every alert, one group per alert."""

    def __init__(self, directory: Path, sink_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "route": {
                "receiver": "sink",
                "group_by": ["..."],  # every alert a group of its own
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "4h",
            },
            "receivers": [{"name": "sink", "webhook_configs": [{"url": sink_url, "send_resolved": True}]}],
        }
        (directory / "alertmanager.yml").write_text(json.dumps(config))  # JSON is YAML
        assert ALERTMANAGER is not None
        self.process = Process(
            [
                ALERTMANAGER,
                f"--config.file={directory / 'alertmanager.yml'}",
                f"--storage.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip with peers: one server, loopback only
            ],
            directory / "alertmanager.log",
        )
        wait_for(self.ready, what="alertmanager to start")

    def ready(self) -> bool:
        if not self.process.alive():
            raise AssertionError(f"alertmanager exited:\n{self.process.output()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def alerts(self, host: str) -> list[dict[str, Any]]:
        """What Alertmanager holds of `host` (active ones)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?filter=host%3D%22{host}%22", timeout=5) as r:
            return json.load(r)


@pytest.fixture(scope="session")
def am_sink(webhook_sink: Sink) -> str:
    return webhook_sink.endpoint(200)


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory, am_sink: str) -> Iterator[AlertmanagerServer]:
    server = AlertmanagerServer(tmp_path_factory.mktemp("alertmanager"), am_sink)
    try:
        yield server
    finally:
        server.process.terminate()


def notifications(sink: Sink, url: str, host: str) -> list[tuple[str, dict[str, Any]]]:
    """(status, alert) of every alert of `host` in the notifications Alertmanager sent, in order."""
    found = []
    for request in sink.delivered(url):
        for alert in request.json()["alerts"]:
            if alert["labels"].get("host") == host:
                found.append((alert["status"], alert))
    return found


def unique_host() -> str:
    return f"am-{uuid.uuid4().hex[:8]}"


def load(tmp_path: Path, text: str = "") -> collector_config.CollectorConfig:
    path = tmp_path / "collector.toml"
    path.write_text(
        f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{tmp_path / "osmon.db"}"\n'
        f'[web]\npublic_url = "https://osmon.example.org"\n{text}'
    )
    return collector_config.load(path)


def pusher(tmp_path: Path, store: Store, url: str, hosts: set[str]) -> AlertPusher:
    config = load(tmp_path)
    return AlertPusher(
        store, [Alertmanager(url)], lambda: hosts, Notifier(config, store).alert_summary, config.public_url
    )


def test_one_notification_per_alert_however_often_pushed_and_the_resolution(
    tmp_path: Path, alertmanager: AlertmanagerServer, webhook_sink: Sink, am_sink: str
) -> None:
    host, other = unique_host(), unique_host()
    store = open_store(tmp_path / "osmon.db")
    now = time.time()
    mem = AlertEvent("fired", host, "mem.percent", "critical", now - 10, 96.2, 95.0, started=now - 70)
    disk = AlertEvent("fired", host, "disk.percent:/var", "warning", now - 10, 88.0, 85.0, started=now - 10)
    elsewhere = AlertEvent("fired", other, "cpu.percent", "critical", now, 99.0, 95.0, started=now - 120)
    store.alerts_apply([mem, disk, elsewhere], [])
    push = pusher(tmp_path, store, alertmanager.url, {host})  # `other` is another collector's
    assert push.push() == 1
    wait_for(lambda: len(notifications(webhook_sink, am_sink, host)) == 2, what="a notification per alert")
    for _ in range(3):  # re-sent while active, as Alertmanager needs
        assert push.push() == 1
    time.sleep(3)  # three group intervals: a duplicate would have been sent by now
    sent = notifications(webhook_sink, am_sink, host)
    assert [status for status, _ in sent] == ["firing", "firing"]
    by_rule = {a["labels"]["rule"]: a for _, a in sent}
    assert by_rule["mem.percent"]["labels"] == {
        "alertname": "osmon_mem_percent",
        "host": host,
        "rule": "mem.percent",
        "severity": "critical",
    }
    assert by_rule["disk.percent"]["labels"]["mount"] == "/var"
    assert by_rule["disk.percent"]["labels"]["severity"] == "warning"
    annotations = by_rule["mem.percent"]["annotations"]
    assert annotations["summary"].startswith(f"CRITICAL {host}: memory 96.2 % >= 95 %")
    assert annotations["dashboard"] == f"https://osmon.example.org/host/{host}"
    assert by_rule["mem.percent"]["generatorURL"] == annotations["dashboard"]
    assert notifications(webhook_sink, am_sink, other) == [] and alertmanager.alerts(other) == []

    store.alerts_apply(
        [AlertEvent("resolved", host, "mem.percent", "critical", now, 40.0, None, started=now - 70)], []
    )
    assert push.push() == 1
    wait_for(
        lambda: (
            ("resolved", "mem.percent")
            in [(s, a["labels"]["rule"]) for s, a in notifications(webhook_sink, am_sink, host)]
        ),
        what="the resolution",
    )
    time.sleep(2)
    sent = [(s, a["labels"]["rule"]) for s, a in notifications(webhook_sink, am_sink, host)]
    assert sent == [
        ("firing", "mem.percent"),
        ("firing", "disk.percent"),
        ("resolved", "mem.percent"),
    ] or sent == [
        ("firing", "disk.percent"),
        ("firing", "mem.percent"),
        ("resolved", "mem.percent"),
    ]
    assert [a["labels"]["rule"] for a in alertmanager.alerts(host)] == ["disk.percent"]
    store.close()


def test_an_escalation_ends_the_alert_of_the_lower_severity(
    tmp_path: Path, alertmanager: AlertmanagerServer, webhook_sink: Sink, am_sink: str
) -> None:
    host = unique_host()
    store = open_store(tmp_path / "osmon.db")
    now = time.time()
    store.alerts_apply(
        [AlertEvent("fired", host, "cpu.percent", "warning", now, 85.0, 80.0, started=now - 60)], []
    )
    push = pusher(tmp_path, store, alertmanager.url, {host})
    push.push()
    wait_for(lambda: notifications(webhook_sink, am_sink, host), what="the warning")
    store.alerts_apply(
        [AlertEvent("escalated", host, "cpu.percent", "critical", now + 1, 97.0, 95.0, started=now - 60)], []
    )
    push.push()

    def seen() -> list[tuple[str, str]]:
        return [(s, a["labels"]["severity"]) for s, a in notifications(webhook_sink, am_sink, host)]

    wait_for(lambda: len(seen()) == 3, what="the critical alert and the warning's end")
    assert sorted(seen()) == [("firing", "critical"), ("firing", "warning"), ("resolved", "warning")]
    store.close()


def test_an_alertmanager_that_is_down_is_said_once_and_pushed_to_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = unique_host()
    store = open_store(tmp_path / "osmon.db")
    now = time.time()
    store.alerts_apply(
        [AlertEvent("fired", host, "mem.percent", "critical", now, 96.0, 95.0, started=now)], []
    )
    push = pusher(tmp_path, store, f"http://127.0.0.1:{free_port()}", {host})
    caplog.set_level(logging.INFO, "osmon.alertmanager")
    assert push.push() == 0 and push.push() == 0
    assert caplog.text.count("cannot push 1 alert(s) to Alertmanager http://127.0.0.1:") == 1
    store.close()


def test_end_to_end_the_collector_pushes_a_breach_and_a_host_down_and_its_end(
    cluster: Cluster, alertmanager: AlertmanagerServer, webhook_sink: Sink, am_sink: str
) -> None:
    host = unique_host()
    cluster.write_collector_config(
        f'[[notify.alertmanager]]\nurl = "{alertmanager.url}"\n'
        '[thresholds."mem.percent"]\nwarning = 0.01\ncritical = 100\nfor = 0\n'
    )
    collector = cluster.collector()
    agent = cluster.agent(host, interval=0.2)

    def seen() -> list[tuple[str, str]]:
        return [(s, a["labels"]["alertname"]) for s, a in notifications(webhook_sink, am_sink, host)]

    wait_for(lambda: ("firing", "osmon_mem_percent") in seen(), what="the breach in Alertmanager")
    agent.terminate()
    wait_for(lambda: ("firing", "osmon_host_down") in seen(), what="the host down")
    agent = cluster.agent(host, interval=0.2)
    wait_for(lambda: ("resolved", "osmon_host_down") in seen(), what="its end")
    agent.terminate()
    assert collector.terminate() == 0
    assert sorted(seen()) == sorted(set(seen())), "one notification per alert and state"
