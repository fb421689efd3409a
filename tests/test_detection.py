"""Crisis detection: durations, hysteresis, escalation, overrides, host down; stored in real SQLite."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from collector import rules
from collector.detection import Detector
from collector.samples import extract
from collector.store import Received, open_store
from osmon import wire
from osmon.configfile import ConfigError
from tests.conftest import BIN, Cluster, wait_for

T0 = 1_764_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(
    host: str,
    seq: int,
    ts: float,
    mem: float = 10.0,
    cpu: float = 5.0,
    disks: dict | None = None,
    load1: float = 0.1,
    cores: int = 2,
    extra: dict | None = None,
) -> Received:
    probes = {
        "cpu": {"percent": cpu, "per_core": [cpu] * cores},
        "memory": {"percent": mem},
        "load": {"avg1": load1},
        "filesystems": [{"mount": m, "percent": p} for m, p in (disks or {"/": 40.0}).items()],
        **(extra or {}),
    }
    raw = wire.encode_snapshot(host, seq, ts, 10.0, "test", probes)
    return Received(extract(wire.decode_snapshot(raw)), raw, 10.0, ts)


class Harness:
    """A store, a detector and a feed of samples for one host at a 10 s interval."""

    def __init__(self, tmp_path: Path, config: str = "") -> None:
        self.store = open_store(tmp_path / "osmon.db")
        self.clock = Clock()
        self.rules = rules.parse(_thresholds(config), "test.toml")
        self.notified: list = []
        self.detector = self.new_detector()
        self.seq = 0

    def new_detector(self) -> Detector:
        return Detector(self.store, self.rules, down_after=3, notify=self.notified.extend, clock=self.clock)

    def feed(self, host: str = "web-01", **values: object) -> list:
        self.seq += 1
        self.clock.now += 10
        r = sample(host, self.seq, self.clock.now, **values)
        self.store.ingest([r])
        return [(e.kind, e.rule, e.severity) for e in self.detector.process([r])]


def _thresholds(text: str) -> dict:
    import tomllib

    return tomllib.loads(text).get("thresholds", {})


def test_memory_fires_only_after_the_breach_lasts_for(tmp_path: Path) -> None:
    h = Harness(tmp_path, '[thresholds."mem.percent"]\nwarning = 80\ncritical = 95\nfor = "30s"\n')
    assert h.feed(mem=85) == []  # breach starts
    assert h.feed(mem=86) == []  # 10 s
    assert h.feed(mem=87) == []  # 20 s
    assert h.feed(mem=88) == [("fired", "mem.percent", "warning")]  # 30 s
    [alert] = h.store.alerts_active()
    assert (alert.host, alert.rule, alert.severity, alert.threshold, alert.started) == (
        "web-01",
        "mem.percent",
        "warning",
        80.0,
        T0 + 10,
    )


def test_a_short_spike_fires_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path, '[thresholds."cpu.percent"]\nwarning = 80\nfor = "1m"\n')
    assert h.feed(cpu=99) == [] and h.feed(cpu=99) == []
    assert h.feed(cpu=10) == []  # the breach ended before its minute
    assert h.feed(cpu=99) == [] and h.feed(cpu=99) == []
    assert h.store.alerts_active() == []


def test_hysteresis_stops_flapping(tmp_path: Path) -> None:
    h = Harness(tmp_path, '[thresholds."mem.percent"]\nwarning = 80\nfor = 0\nhysteresis = 5\n')
    assert h.feed(mem=81) == [("fired", "mem.percent", "warning")]
    for value in (79, 81, 78, 80.5, 76):  # wobbling around 80: still one alert
        assert h.feed(mem=value) == []
    assert h.feed(mem=74.9) == [("resolved", "mem.percent", "warning")]
    [alert] = h.store.alerts_history()
    assert alert.ended == h.clock.now and alert.peak == 81.0
    kinds = [kind for _, kind, _, _ in h.store.alert_events(alert.id)]
    assert kinds == ["fired", "resolved"]


def test_escalation_needs_the_duration_too_and_deescalation_is_recorded(tmp_path: Path) -> None:
    h = Harness(
        tmp_path, '[thresholds."mem.percent"]\nwarning = 80\ncritical = 95\nfor = "10s"\nhysteresis = 2\n'
    )
    h.feed(mem=85)
    assert h.feed(mem=85) == [("fired", "mem.percent", "warning")]
    assert h.feed(mem=96) == []
    assert h.feed(mem=97) == [("escalated", "mem.percent", "critical")]
    assert h.feed(mem=94) == []  # within hysteresis of 95
    assert h.feed(mem=92) == [("deescalated", "mem.percent", "warning")]
    [alert] = h.store.alerts_active()
    assert alert.severity == "warning" and alert.peak == 97.0
    assert [k for _, k, _, _ in h.store.alert_events(alert.id)] == ["fired", "escalated", "deescalated"]


def test_disk_alerts_are_per_mount_and_load_per_core(tmp_path: Path) -> None:
    h = Harness(tmp_path, '[thresholds."load.1"]\nwarning = 2\nfor = 0\n')
    events = h.feed(disks={"/": 40.0, "/var": 96.0}, load1=5.0, cores=2)  # 2.5 per core
    assert sorted(events) == [("fired", "disk.percent:/var", "critical"), ("fired", "load.1", "warning")]
    assert h.feed(disks={"/": 40.0, "/var": 96.0}, load1=5.0, cores=4) == [("resolved", "load.1", "warning")]


def test_overrides_apply_by_host_glob(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        '[thresholds."cpu.percent"]\nfor = 0\n'
        '[[thresholds.override]]\nhosts = "build-*"\nmetric = "cpu.percent"\nwarning = 95\n',
    )
    assert h.feed("build-7", cpu=90) == []
    assert h.feed("web-01", cpu=90) == [("fired", "cpu.percent", "warning")]


def test_a_silent_host_goes_down_holds_its_alerts_and_its_return_resolves_down(tmp_path: Path) -> None:
    h = Harness(tmp_path, '[thresholds."mem.percent"]\nfor = 0\n')
    assert h.feed(mem=90) == [("fired", "mem.percent", "warning")]
    h.clock.now += 29  # three 10 s intervals not yet over
    assert h.detector.check_down() == []
    h.clock.now += 2
    [down] = h.detector.check_down()
    assert (down.kind, down.rule, down.severity) == ("fired", "host.down", "critical")
    assert h.detector.check_down() == []  # once
    h.clock.now += 600
    assert {a.rule for a in h.store.alerts_active()} == {"host.down", "mem.percent"}  # held, not resolved
    assert h.feed(mem=90) == [("resolved", "host.down", "critical")]
    assert [a.rule for a in h.store.alerts_active()] == ["mem.percent"]
    assert [e.kind for e in h.notified] == ["fired", "fired", "resolved"]


def test_a_restarted_collector_neither_refires_nor_calls_everyone_down(tmp_path: Path) -> None:
    h = Harness(tmp_path, '[thresholds."mem.percent"]\nfor = 0\n')
    h.feed(mem=90)
    h.clock.now += 3600  # the collector was down for an hour
    h.detector = h.new_detector()
    assert h.detector.check_down() == []  # every host gets a fresh window
    assert h.feed(mem=91) == []  # still the same alert, not a new one
    assert len(h.store.alerts_history()) == 1


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[thresholds."mem.percent"]\nwarning = 90\ncritical = 80\n', "thresholds.mem.percent"),
        ('[thresholds."mem.percent"]\nwarnings = 90\n', "thresholds.mem.percent.warnings"),
        ('[thresholds."mem.percent"]\nfor = "soon"\n', "thresholds.mem.percent.for"),
        ('[thresholds."gpu.percent"]\nwarning = 90\n', "thresholds.gpu.percent"),
        ('[[thresholds.override]]\nhosts = "x"\nmetric = "nope"\n', "thresholds.override[1].metric"),
        ('[[thresholds.override]]\nmetric = "cpu.percent"\n', "thresholds.override[1]"),
    ],
)
def test_bad_thresholds_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        rules.parse(_thresholds(text), "collector.toml")
    assert error.value.key == key


def test_end_to_end_a_breach_and_a_stopped_agent_show_in_the_alerts_command(cluster: Cluster) -> None:
    cluster.write_collector_config('[thresholds."mem.percent"]\nwarning = 0.01\nfor = 0\n')
    collector = cluster.collector()
    agent = cluster.agent("web-01", interval=0.2)

    def alerts() -> list[dict]:
        out = subprocess.run(
            [str(BIN / "osmon-collector"), "alerts", "--config", str(cluster.collector_config), "--json"],
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout) if out.returncode == 0 else []

    wait_for(lambda: any(a["rule"] == "mem.percent" for a in alerts()), what="the memory alert")
    agent.terminate()
    wait_for(lambda: any(a["rule"] == "host.down" for a in alerts()), what="the host-down alert")
    rules_active = {a["rule"]: a for a in alerts()}
    assert rules_active["host.down"]["severity"] == "critical"
    assert "mem.percent" in rules_active  # held while the host is down
    collector.terminate()


# --- issue 14: failed units, inodes, read-only remounts, OOM kills ------------------------------


def failed(*units: str) -> dict:
    return {"units": {"failed": [{"unit": u, "active": "failed", "sub": "failed"} for u in units]}}


def test_a_failed_unit_is_critical_at_once_and_resolves_when_no_longer_failed(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.feed(extra=failed()) == []
    assert h.feed(extra=failed("nginx.service", "backup.timer")) == [
        ("fired", "unit.failed:nginx.service", "critical"),
        ("fired", "unit.failed:backup.timer", "critical"),
    ]
    # A snapshot without the units probe (systemctl timed out) says nothing about them.
    assert h.feed() == []
    assert h.feed(extra=failed("backup.timer")) == [("resolved", "unit.failed:nginx.service", "critical")]
    assert h.feed(extra=failed()) == [("resolved", "unit.failed:backup.timer", "critical")]
    assert h.store.alerts_active() == []


def test_inode_usage_per_mount_warns_at_85_and_is_critical_at_95(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    fs = [{"mount": "/", "percent": 40.0, "inodes_percent": 86.0}, {"mount": "/srv", "percent": 1.0}]
    assert h.feed(extra={"filesystems": fs}) == [("fired", "disk.inodes:/", "warning")]
    fs[0]["inodes_percent"] = 95.5
    assert h.feed(extra={"filesystems": fs}) == [("escalated", "disk.inodes:/", "critical")]


def test_a_filesystem_remounted_read_only_is_critical_until_read_write_again(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    ro = [{"mount": "/", "percent": 40.0, "readonly": True, "remounted_ro": True}]
    assert h.feed(extra={"filesystems": ro}) == [("fired", "disk.readonly:/", "critical")]
    rw = [{"mount": "/", "percent": 40.0, "readonly": False}]
    assert h.feed(extra={"filesystems": rw}) == [("resolved", "disk.readonly:/", "critical")]


def test_an_oom_kill_warns_once_per_snapshot_that_saw_one(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.feed(extra={"activity": {"oom_kills": 0}}) == []
    assert h.feed(extra={"activity": {"oom_kills": 2, "oom_victims": ["java (pid 7)"]}}) == [
        ("fired", "oom.kills", "warning")
    ]
    assert h.feed(extra={"activity": {"oom_kills": 0}}) == [("resolved", "oom.kills", "warning")]


def test_an_alert_keeps_the_top_processes_of_the_snapshot_that_fired_it(tmp_path: Path) -> None:
    """The host page opened at an alert shows what ran then, not what runs now."""
    h = Harness(tmp_path, '[thresholds."cpu.percent"]\nwarning = 80\nfor = 0\n')
    busy = {"name": "backup", "pid": 4242, "user": "root", "cpu_percent": 97.0, "mem_percent": 3.0}
    idle = {"name": "sshd", "pid": 1, "user": "root", "cpu_percent": 0.1, "mem_percent": 0.2}
    assert h.feed(cpu=10, extra={"processes": {"top_cpu": [idle], "top_mem": [idle]}}) == []
    fired_at = h.clock.now + 10
    assert h.feed(cpu=99, extra={"processes": {"top_cpu": [busy, idle], "top_mem": [idle]}}) == [
        ("fired", "cpu.percent", "critical")
    ]
    h.feed(cpu=99, extra={"processes": {"top_cpu": [idle], "top_mem": [idle]}})  # backup gone
    rule, started, kept = h.store.alert_processes("web-01", fired_at + 5)
    assert (rule, started) == ("cpu.percent", fired_at)
    assert json.loads(kept)["top_cpu"][0]["name"] == "backup" and json.loads(kept)["ts"] == fired_at
    assert h.store.alert_processes("web-01", fired_at - 5) is None  # before it started: none


def test_a_batch_raises_the_alerts_its_snapshots_raise_one_by_one(tmp_path: Path) -> None:
    """Within a batch, a host with an alert firing has its other rules start, stop and fire as
    when each snapshot comes alone: a breach that ends mid-batch restarts its timer."""
    config = (
        '[thresholds."mem.percent"]\nwarning = 80\nfor = "30s"\n'
        '[thresholds."disk.percent"]\nwarning = 85\ncritical = 95\nfor = "20s"\nhysteresis = 2\n'
    )
    mems = [85, 86, 70, 85, 86, 87, 88, 89, 60, 50, 81, 82]
    vars_ = [90, 90, 50, 90, 90, 90, 90, 84, 86, 96, 96, 96]
    batch = [
        sample("web-01", i + 1, T0 + 10 * i, mem=mem, disks={"/": 99.0, "/var": var})
        for i, (mem, var) in enumerate(zip(mems, vars_, strict=True))
    ]
    alone, together = Harness(tmp_path / "alone", config), Harness(tmp_path / "together", config)
    events = []
    for r in batch:
        alone.store.ingest([r])
        events += alone.detector.process([r])
    together.store.ingest(batch)
    assert together.detector.process(batch) == events
    assert {(e.kind, e.rule) for e in events} >= {("fired", "mem.percent"), ("fired", "disk.percent:/var")}
    assert together.store.alerts_active() == alone.store.alerts_active()
