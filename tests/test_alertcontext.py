"""What issue 14's alert mails say: the failed unit and its last state change, OOM victims, inodes."""

from __future__ import annotations

from pathlib import Path

from collector.alertcontext import evidence
from collector.store import open_store

NOW = 1_764_000_720.0
PROBES = {
    "units": {
        "failed": [
            {
                "unit": "nginx.service",
                "active": "failed",
                "sub": "failed",
                "result": "exit-code",
                "since": 1_764_000_000.0,
            }
        ]
    },
    "activity": {"oom_kills": 1, "oom_victims": ["java (pid 4242)"]},
    "processes": {
        "top_mem": [{"pid": 9, "name": "postgres", "user": "postgres", "mem_percent": 40.0, "rss": 1024}]
    },
    "filesystems": [{"mount": "/var", "used": 50 * 2**30, "free": 50 * 2**30, "inodes_percent": 96.5}],
}


def test_a_failed_unit_mail_names_the_unit_its_result_and_when_it_failed(tmp_path: Path) -> None:
    store = open_store(tmp_path / "osmon.db")
    assert evidence(store, "web-01", "unit.failed:nginx.service", NOW, PROBES) == [
        "nginx.service: failed/failed (exit-code) since 2025-11-24 16:00:00 UTC, 12 min ago.",
        "See: journalctl -u nginx.service",
    ]


def test_an_oom_mail_names_the_victim_and_the_top_processes_by_memory(tmp_path: Path) -> None:
    store = open_store(tmp_path / "osmon.db")
    lines = evidence(store, "web-01", "oom.kills", NOW, PROBES)
    assert lines[0] == "Killed by the OOM killer: java (pid 4242)."
    assert lines[1] == "Top processes by memory:"
    assert lines[2].startswith("- postgres (pid 9, postgres): memory 40.0 %")


def test_an_inode_mail_says_how_full_the_inode_table_and_the_space_are(tmp_path: Path) -> None:
    store = open_store(tmp_path / "osmon.db")
    assert evidence(store, "web-01", "disk.inodes:/var", NOW, PROBES) == [
        "/var: 96.5 % of its inodes used (many small files); df -i /var",
        "/var: 50.0 GiB left of 100.0 GiB.",
    ]
