"""The dashboard's routes through Flask's test client, over a real SQLite store filled by `ingest`."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import time
from functools import cache
from html import unescape
from pathlib import Path
from typing import Any

import msgpack
import pytest
from flask import Flask
from flask.testing import FlaskClient

from collector import config as collector_config
from collector.samples import extract
from collector.store import AlertEvent, FeedItem, Received, open_store
from collector.store.web import ROLLUP_ONLY
from collector.web import create_app, series
from collector.web.auth import hash_password
from osmon import wire

SECRET = "k" * 64
PASSWORD = "correct horse battery staple"
HOSTILE = "<script>alert(1)</script>"


@cache
def password_hash() -> str:
    return hash_password(PASSWORD)  # scrypt: slow on purpose, so once per run


def probes(
    cpu: float = 10.0,
    mem: float = 40.0,
    mounts: dict[str, float] | None = None,
    cores: int = 2,
    process: str = "nginx",
    cmdline: str = "nginx: worker process",
    user: str = "alice",
    failed: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    mounts = {"/": 50.0, "/var": 70.0} if mounts is None else mounts
    return {
        "cpu": {"percent": cpu, "iowait": 1.0, "per_core": [cpu] * cores, "count": cores},
        "memory": {"percent": mem, "total": 8 * 1024**3, "cached": 2 * 1024**3, "buffers": 1024**2},
        "swap": {"percent": 5.0, "total": 1024**3},
        "load": {"avg1": 0.5, "avg5": 0.4, "avg15": 0.3},
        "filesystems": [
            {"mount": m, "device": "/dev/vda1", "fstype": "ext4", "total": 10**11, "percent": p}
            for m, p in mounts.items()
        ],
        "disk_io": {
            "read_bps": 1000.0,
            "write_bps": 2000.0,
            "iops": 50.0,
            "await": 0.002,
            "busy_percent": 7.0,
            "devices": {
                "vda": {"read_bps": 600.0, "write_bps": 1500.0},
                "vdb": {"read_bps": 400.0, "write_bps": 500.0},
            },
        },
        "net_io": {
            "rx_bps": 3000.0,
            "tx_bps": 4000.0,
            "errors_ps": 0.1,
            "drops_ps": 0.2,
            "interfaces": {
                "eth0": {"rx_bps": 2500.0, "tx_bps": 3500.0},
                "eth1": {"rx_bps": 500.0, "tx_bps": 500.0},
            },
        },
        "processes": {
            "count": 120,
            "running": 3,
            "top_cpu": [
                {
                    "pid": 42,
                    "name": process,
                    "user": user,
                    "cpu_percent": 12.5,
                    "mem_percent": 1.5,
                    "rss": 10**7,
                    "cmdline": cmdline,
                }
            ],
            "top_mem": [],
        },
        "users": [{"name": user, "terminal": "pts/0", "host": "192.0.2.7", "since": 1_700_000_000.0}],
        "uptime": {"seconds": 3 * 86400.0, "boot_time": 1_700_000_000.0},
        "system": {"os": "Debian GNU/Linux 12", "kernel": "6.1.0", "arch": "x86_64", "hostname": "web-01"},
        # Issue 14's charts: pressure, swap activity, disk operations and latency, network errors, tables.
        "pressure": {r: {"some60": 1.5} for r in ("cpu", "memory", "io")},
        "activity": {"swap_in_bps": 4096.0, "swap_out_bps": 0.0, "oom_kills": 0},
        "limits": {"fds_percent": 1.0, "pids_percent": 2.0, "conntrack_percent": 3.0},
        "units": {"failed": failed or []},
        "clock": {"unsynchronised": 0.0, "offset": 0.001},
    }


def received(
    host: str, seq: int, ts: float, interval: float = 10.0, arrived: float | None = None, **values: Any
) -> Received:
    """A snapshot as ingest hands it to the store, encoded and decoded by the real wire format."""
    found = probes(**values)
    found["uptime"] = {"seconds": 3 * 86400.0, "boot_time": ts - 3 * 86400.0}  # booted 3 days before
    raw = wire.encode_snapshot(host, seq, ts, interval, "test", found)
    return Received(extract(wire.decode_snapshot(raw)), raw, interval, ts if arrived is None else arrived)


def hostile_host(seq: int, ts: float) -> Received:
    """A host name the wire format would refuse, stored anyway (defence in depth: the store does not check)."""
    r = received("web-99", seq, ts)
    raw = wire.encode_snapshot(HOSTILE, seq, ts, 10.0, "test", probes())
    return Received(r.sample._replace(host=HOSTILE), raw, 10.0, ts)


class Dashboard:
    """A config file, the writer's store, and apps built from them."""

    def __init__(self, tmp_path: Path, database: str = "osmon.db", create: bool = True) -> None:
        self.dir = tmp_path
        self.database = tmp_path / database
        self.now = time.time()
        self._store = open_store(self.database) if create else None

    @property
    def store(self) -> Any:
        """The collector's side of the database: opening it creates and migrates it."""
        if self._store is None:
            self._store = open_store(self.database)
        return self._store

    def config(
        self, web: str = "anonymous_read = true\n", extra: str = ""
    ) -> collector_config.CollectorConfig:
        path = self.dir / "collector.toml"
        path.write_text(
            f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{self.database}"\n{extra}\n'
            f'[web]\n{web}\n[web.users]\nalice = "{password_hash()}"\n'
        )
        return collector_config.load(path)

    def app(self, web: str = "anonymous_read = true\n", extra: str = "") -> Flask:
        app = create_app(self.config(web, extra), secret_key=SECRET)
        app.testing = True
        return app

    def client(self, web: str = "anonymous_read = true\n", extra: str = "") -> FlaskClient:
        return self.app(web, extra).test_client()

    def feed(self, host: str, count: int = 30, interval: float = 10.0, **values: Any) -> None:
        """`count` snapshots of `host`, the last one just now."""
        self.store.ingest(
            [
                received(host, i + 1, self.now - (count - 1 - i) * interval, interval, **values)
                for i in range(count)
            ]
        )

    def fire(self, host: str, rule: str, severity: str, value: float = 90.0) -> None:
        self.store.alerts_apply([AlertEvent("fired", host, rule, severity, self.now - 60, value, 80.0)], [])


@pytest.fixture
def dash(tmp_path: Path) -> Dashboard:
    return Dashboard(tmp_path)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: FlaskClient, user: str = "alice", password: str = PASSWORD) -> Any:
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"user": user, "password": password, "csrf_token": token, "next": "/"})


def overview_data(html: str) -> dict[str, Any]:
    """What the overview page hands its script to draw the host table (static/live.js draws the rows)."""
    match = re.search(r"<tbody data-initial='([^']*)'>", html)
    assert match, "no host data in the overview"
    return json.loads(unescape(match.group(1)))


def rows(html: str) -> dict[str, str]:
    """{host: status} of the overview's host table, in the order it is drawn."""
    return {row["name"]: row["status"] for row in overview_data(html)["hosts"]}


# -- overview ---------------------------------------------------------------------------


def test_overview_lists_every_host_with_its_status_and_counts(dash: Dashboard) -> None:
    for host in ("ok-1", "warn-1", "crit-1", "quiet-1"):
        dash.feed(host)
    dash.store.ingest([received("gone-1", 1, dash.now - 3600)])  # 1 h silent at a 10 s interval: down
    dash.fire("warn-1", "mem.percent", "warning")
    dash.fire("crit-1", "disk.percent:/var", "critical")
    dash.fire("quiet-1", "cpu.percent", "critical")
    dash.store.silence("quiet-1", dash.now + 3600, "maintenance", dash.now)

    page = dash.client().get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert rows(html) == {
        "ok-1": "ok",
        "warn-1": "warning",
        "crit-1": "critical",
        "gone-1": "down",
        "quiet-1": "critical",  # silenced: an overlay on its real status, which it keeps
    }
    # Worst first.
    assert list(rows(html)) == ["gone-1", "crit-1", "quiet-1", "warn-1", "ok-1"]
    for status, n in (("ok", 1), ("warning", 1), ("critical", 2), ("down", 1), ("silenced", 1)):
        assert re.search(rf'data-count="{status}">{n}<', html), status
    [quiet] = [r for r in overview_data(html)["hosts"] if r["name"] == "quiet-1"]
    assert quiet["silenced"] and quiet["silenced_until"] == dash.now + 3600
    # Active alerts, in words and units, each linking to its host's page at its start.
    listed = html[html.index('id="active-alerts"') : html.index('id="certfr"')]
    assert 'data-count="alerts">3<' in listed and "disk.percent:/var" not in listed
    assert f'<a class="alert-moment" href="/host/crit-1?at={dash.now - 60:.0f}"' in listed
    assert ">Disk /var</a>" in listed and "90.0 % ≥ 80 %" in listed


def test_the_overview_filters_sorts_and_pages_on_the_server(dash: Dashboard) -> None:
    for i in range(25):
        dash.store.ingest([received(f"web-{i:02}", 1, dash.now, cpu=float(i), mem=5.0, mounts={"/": 1.0})])
    dash.store.ingest([received("db-01", 1, dash.now, cpu=50.0, mem=5.0, mounts={"/": 1.0})])
    dash.fire("web-03", "mem.percent", "warning")
    dash.store.silence("web-07", dash.now + 600, "upgrade", dash.now)
    client = dash.client()

    def names(query: str) -> tuple[list[str], int, int]:
        data = client.get(f"/api/hosts?{query}").get_json()
        return [r["name"] for r in data["hosts"]], data["matching"], data["total"]

    # Worst first by default: the warning, then by the highest of CPU, memory and disk.
    shown, matching, total = names("per=3")
    assert shown == ["web-03", "db-01", "web-24"] and (matching, total) == (26, 26)
    assert names("per=3&page=2")[0] == ["web-23", "web-22", "web-21"]
    assert names("q=WEB-1&sort=name&desc=1")[0] == [f"web-{i}" for i in range(19, 9, -1)]
    assert names("sort=cpu&per=2")[0] == ["web-00", "web-01"]
    assert names("status=warning")[0] == ["web-03"]
    assert names("status=silenced")[0] == ["web-07"]
    assert names("q=nothing")[1:] == (0, 26)
    # Counts are the whole fleet's, whatever the page shows; nonsense falls back to the defaults.
    data = client.get("/api/hosts?per=2&sort=evil&page=x&status=<b>").get_json()
    assert data["counts"] == {"down": 0, "critical": 0, "warning": 1, "ok": 25} and data["silenced"] == 1
    assert data["query"] == {"q": "", "status": "", "sort": "status", "desc": False, "page": 1, "per": 2}
    # The page itself carries the first page only.
    html = client.get("/").get_data(as_text=True)
    assert len(overview_data(html)["hosts"]) == 26 and 'id="pager"' in html


def test_overview_row_shows_the_latest_numbers(dash: Dashboard) -> None:
    dash.feed("web-01", cpu=37.5, mem=61.0, mounts={"/": 12.0, "/srv": 88.5})
    html = dash.client().get("/").get_data(as_text=True)
    [row] = overview_data(html)["hosts"]
    assert (row["cpu"], row["mem"], row["load1"]) == (37.5, 61.0, 0.5)
    assert (row["disk"], row["disk_mount"]) == (88.5, "/srv")  # the fullest disk, with its mount
    assert 3 * 86400 <= row["uptime"] < 3 * 86400 + 60
    # The same data as the script's refreshes read from /api/hosts, drawn by the same code.
    assert set(row) == set(dash.client().get("/api/hosts").get_json()["hosts"][0])


def test_uptime_of_an_agent_older_than_the_boot_time_metric_comes_from_its_probes(dash: Dashboard) -> None:
    snapshot = msgpack.unpackb(received("old-01", 1, dash.now).raw)
    del snapshot["metrics"]["boot.time"]  # what an agent of before that metric sends
    raw = wire.encode(snapshot)
    dash.store.ingest([Received(extract(wire.decode_snapshot(raw)), raw, 10.0, dash.now)])
    [row] = dash.client().get("/api/hosts").get_json()["hosts"]
    assert 3 * 86400 <= row["uptime"] < 3 * 86400 + 60 and row["cpu"] == 10.0


def test_hosts_stored_before_summaries_existed_are_ranked_from_their_snapshots(dash: Dashboard) -> None:
    for i, cpu in enumerate((20.0, 70.0, 40.0)):
        dash.store.ingest([received(f"web-{i}", 1, dash.now, cpu=cpu, mem=5.0, mounts={"/": 1.0})])
    before = dash.client().get("/api/hosts?sort=uptime").get_json()
    with sqlite3.connect(dash.database) as db:  # what a database upgraded to schema 10 holds
        db.execute("DELETE FROM host_summary WHERE host_id <> (SELECT id FROM hosts WHERE name = 'web-0')")
    after = dash.client().get("/api/hosts?sort=uptime").get_json()
    assert [r["name"] for r in after["hosts"]] == ["web-0", "web-1", "web-2"]  # uptimes equal: by name
    for a, b in zip(before["hosts"], after["hosts"], strict=True):
        assert {**a, "last_seen_ago": 0, "uptime": 0} == {**b, "last_seen_ago": 0, "uptime": 0}
    assert [r["name"] for r in dash.client().get("/api/hosts").get_json()["hosts"]] == [
        "web-1",
        "web-2",
        "web-0",
    ]


def test_overview_shows_the_latest_certfr_alert_and_never_a_javascript_link(dash: Dashboard) -> None:
    dash.store.certfr_add(
        [
            FeedItem(
                "g1", "Vulnérabilité dans OpenSSH", "https://www.cert.ssi.gouv.fr/alerte/X/", dash.now, ""
            )
        ],
        mail=False,
    )
    html = dash.client().get("/").get_data(as_text=True)
    assert '<a href="https://www.cert.ssi.gouv.fr/alerte/X/" rel="noopener noreferrer"' in html
    assert "Vulnérabilité dans OpenSSH" in html
    dash.store.certfr_add([FeedItem("g2", "Piège", "javascript:alert(1)", dash.now + 1, "")], mail=False)
    client = dash.client()
    html = client.get("/").get_data(as_text=True)
    assert "Piège" in html and "javascript:" not in html
    assert client.get("/api/certfr").get_json()["latest"] == {
        "guid": "g2",
        "title": "Piège",
        "link": None,
        "published": dash.now + 1,
        "first_seen": pytest.approx(time.time(), abs=60),
    }


def test_an_empty_fleet_says_so(dash: Dashboard) -> None:
    html = dash.client().get("/").get_data(as_text=True)
    assert "No host has reported" in html and rows(html) == {}


def test_a_host_that_stops_sending_turns_down_by_itself(dash: Dashboard) -> None:
    """No new data and no collector action: the next refresh of the API says down."""
    dash.store.ingest([received("web-01", 1, time.time(), interval=0.2)])  # down after 3 x 0.2 s
    client = dash.client()
    assert client.get("/api/hosts").get_json()["hosts"][0]["status"] == "ok"
    time.sleep(0.8)
    [host] = client.get("/api/hosts").get_json()["hosts"]
    assert (host["status"], host["down"]) == ("down", True)


# -- host page -------------------------------------------------------------------------------


def svgs(html: str) -> list[str]:
    return re.findall(r'<svg [^>]*class="pygal-chart chart".*?</svg>', html, re.S)


def chart_points(html: str) -> dict[str, dict[str, Any]]:
    """{chart id: the numbers its tooltip shows}, read back from each figure's data-points attribute."""
    found = re.findall(r"<figure [^>]*data-chart=\"([^\"]+)\" data-points='([^']*)'>", html)
    return {chart: json.loads(unescape(points)) for chart, points in found}


def test_host_page_has_every_chart_with_data(dash: Dashboard) -> None:
    dash.feed("web-01", count=120)
    page = dash.client().get("/host/web-01?range=1h")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    charts = svgs(html)
    numbers = chart_points(html)
    assert len(charts) == len(series.CHARTS) == len(numbers)
    for spec, svg in zip(series.CHARTS, charts, strict=True):
        assert f'id="chart-{spec.id}"' in html
        assert "No data" not in svg, spec.id
        assert re.search(r'<path d="M[\d.]+ [\d.]+ L', svg), spec.id  # a drawn line
        # ... and its numbers beside it for the tooltip: 120 samples 10 s apart fill 80 buckets of 15 s
        # (per-core lines come from the minute tier: 20 minutes, one value each).
        lines = numbers[spec.id]["series"]
        least = 20 if spec.detail in ROLLUP_ONLY else 79
        assert lines and all(sum(v is not None for v in line["values"]) >= least for line in lines), spec.id
        assert numbers[spec.id]["width"] == 15.0 and numbers[spec.id]["unit"] == spec.unit
    assert [line["label"] for line in numbers["cpu"]["series"]] == ["total", "iowait"]
    assert numbers["cpu"]["series"][0]["values"][-1] == 10.0
    # Per-core and per-mount lines come out of the detail blobs.
    drawn = {spec.id: svg for spec, svg in zip(series.CHARTS, charts, strict=True)}
    cores, disks = drawn["cores"], drawn["disk"]
    assert ">cpu0<" in cores and ">cpu1<" in cores
    assert ">/var<" in disks and ">/<" in disks
    # Memory in bytes: 40 % and 25 % (cached) of 8 GiB, and what is left of it available.
    memory = {line["label"]: line["values"][-1] for line in numbers["memory_bytes"]["series"]}
    gib = 1024**3
    assert memory == pytest.approx(
        {"used": 0.4 * 8 * gib, "cached": 0.25 * 8 * gib, "available": 0.6 * 8 * gib}, abs=1
    )
    assert ">4 GiB<" in drawn["memory_bytes"]  # an axis in binary units


def test_a_disk_or_an_interface_picked_is_drawn_instead_of_the_totals_and_kept_in_every_link(
    dash: Dashboard,
) -> None:
    dash.feed("web-01", count=120)
    client = dash.client()
    totals = client.get("/host/web-01?range=1h").get_data(as_text=True)
    assert '<option value="vda">vda</option>' in totals and '<option value="eth1">eth1</option>' in totals
    html = client.get("/host/web-01?range=1h&device=vdb").get_data(as_text=True)
    numbers = chart_points(html)
    # vdb's own rates, a value a minute (per-device rates are kept by the tiers only) ...
    vdb = {
        line["label"]: [v for v in line["values"] if v is not None] for line in numbers["diskio"]["series"]
    }
    assert set(vdb) == {"read", "write"} and len(vdb["read"]) >= 19
    assert set(vdb["read"]) == {400.0} and set(vdb["write"]) == {500.0}
    drawn = dict(zip([spec.id for spec in series.CHARTS], svgs(html), strict=True))
    assert ">Disk I/O: vdb<" in drawn["diskio"]
    # ... while the network chart still draws the host's totals.
    assert [line["label"] for line in numbers["network"]["series"]] == ["received", "sent"]
    assert numbers["network"]["series"][0]["values"][-1] == 3000.0
    assert '<option value="vdb" selected>vdb</option>' in html
    # The pick stays in the range links, the zoom buttons, back to live and the live refresh.
    assert 'href="/host/web-01?range=24h&amp;device=vdb"' in html
    zoom_in = re.search(r'id="zoom-in" href="([^"]+)"', html)
    assert zoom_in and zoom_in.group(1).endswith("&amp;device=vdb")
    assert 'data-charts-api="/api/hosts/web-01/charts?range=1h&amp;device=vdb"' in html
    # The API draws the same, and says what was picked and what could be.
    api = client.get("/api/hosts/web-01/charts?range=1h&interface=eth1").get_json()
    assert api["picks"] == {"interface": "eth1"}
    assert api["pickers"]["network"] == {"param": "interface", "picked": "eth1", "choices": ["eth0", "eth1"]}
    assert api["pickers"]["diskio"]["choices"] == ["vda", "vdb"]
    eth1 = {line["label"]: line["values"][-1] for line in api["points"]["network"]["series"]}
    assert eth1 == {"received": 500.0, "sent": 500.0}


def test_a_device_the_host_never_had_draws_no_data_and_a_name_too_long_is_refused(dash: Dashboard) -> None:
    dash.feed("web-01", count=30)
    client = dash.client()
    html = client.get("/host/web-01?range=1h&device=sdz").get_data(as_text=True)
    drawn = dict(zip([spec.id for spec in series.CHARTS], svgs(html), strict=True))
    assert "No data" in drawn["diskio"] and "No data" not in drawn["network"]
    assert '<option value="sdz" selected>sdz</option>' in html  # named in the URL: still shown picked
    assert client.get("/host/web-01?range=1h&device=" + "x" * 2000).status_code == 400


def test_the_series_api_has_each_device_and_interface_and_memory_cached(dash: Dashboard) -> None:
    dash.feed("web-01", count=30)
    client = dash.client()
    disks = client.get("/api/hosts/web-01/series?metric=disk.io&range=1h").get_json()["series"]
    assert [s["name"] for s in disks] == [
        "disk.io:vda read",
        "disk.io:vda write",
        "disk.io:vdb read",
        "disk.io:vdb write",
    ]
    assert {v for s in disks if s["name"] == "disk.io:vdb write" for _, v in s["data"]} == {500.0}
    nics = client.get("/api/hosts/web-01/series?metric=net.io&range=1h").get_json()["series"]
    assert {s["name"] for s in nics} == {
        "net.io:eth0 received",
        "net.io:eth0 sent",
        "net.io:eth1 received",
        "net.io:eth1 sent",
    }
    [cached] = client.get("/api/hosts/web-01/series?metric=mem.cached_percent&range=1h").get_json()["series"]
    assert cached["data"][-1][1:] == [25.0, 25.0, 25.0]  # min, avg, max: 2 GiB of 8


def test_memory_in_bytes_of_an_agent_older_than_the_total_metric_comes_from_its_probes(
    dash: Dashboard,
) -> None:
    for seq in range(1, 13):
        snapshot = msgpack.unpackb(received("old-01", seq, dash.now - 120 + seq * 10).raw)
        del snapshot["metrics"]["mem.total"], snapshot["metrics"]["mem.cached_percent"]  # an older agent
        raw = wire.encode(snapshot)
        dash.store.ingest([Received(extract(wire.decode_snapshot(raw)), raw, 10.0, dash.now)])
    points = dash.client().get("/api/hosts/old-01/charts?range=1h").get_json()["points"]["memory_bytes"]
    last = {line["label"]: line["values"][-1] if line["values"] else None for line in points["series"]}
    assert last == {"used": round(0.4 * 8 * 1024**3), "cached": None, "available": round(0.6 * 8 * 1024**3)}


@pytest.mark.parametrize(
    ("interval", "shown"), [(0.2, "200 ms"), (2.5, "2.5 s"), (10.0, "10 s"), (300.0, "5 min")]
)
def test_host_page_says_how_often_the_agent_reports(dash: Dashboard, interval: float, shown: str) -> None:
    dash.feed("web-01", count=3, interval=interval)
    html = dash.client().get("/host/web-01").get_data(as_text=True)
    assert f"· every {shown}" in html


def test_host_page_shows_facts_processes_users_and_alert_history(dash: Dashboard) -> None:
    dash.feed("web-01", process="postgres", cmdline="postgres: checkpointer", user="bob")
    dash.fire("web-01", "mem.percent", "warning")
    html = dash.client().get("/host/web-01").get_data(as_text=True)
    assert "Debian GNU/Linux 12" in html and "6.1.0" in html and "8.0 GiB" in html
    assert '<td class="proc-name" title="postgres: checkpointer">postgres</td>' in html
    assert "<td>bob</td>" in html and "192.0.2.7" in html
    alerts = html[html.index('id="host-alerts"') :]
    assert ">Memory</a>" in alerts and "(active)" in alerts and "mem.percent" not in alerts
    # Each change of severity, with its time.
    assert re.search(
        r'<li class="event-fired"><time>[\d-]+ [\d:]+</time> fired <span[^>]*>warning</span> 90.0 %', alerts
    )


def test_host_page_lists_the_failed_units_with_what_to_act_on(dash: Dashboard) -> None:
    failed = [
        {
            "unit": "nginx.service",
            "result": "exit-code",
            "since": 1_764_000_000.0,
            "description": "web server",
        },
        {"unit": "<b>x</b>.service", "result": "signal", "since": None, "description": None},
    ]
    dash.feed("web-01", failed=failed)
    dash.feed("web-02")
    html = dash.client().get("/host/web-01").get_data(as_text=True)
    units = html[html.index('id="failed-units"') : html.index('id="users"')]
    assert "<td>nginx.service</td><td>exit-code</td>" in units and "web server" in units
    assert "&lt;b&gt;x&lt;/b&gt;.service" in units and "<b>x</b>" not in units  # from the host: escaped
    assert 'class="empty" hidden' in units
    # The overview counts them per host, before anyone opens the host.
    rows = {r["name"]: r for r in dash.client().get("/api/hosts").get_json()["hosts"]}
    assert (rows["web-01"]["failed_units"], rows["web-02"]["failed_units"]) == (2, 0)
    assert [u["unit"] for u in dash.client().get("/api/hosts/web-01").get_json()["failed_units"]] == [
        "nginx.service",
        "<b>x</b>.service",
    ]
    quiet = dash.client().get("/host/web-02").get_data(as_text=True)
    assert "No failed systemd unit" in quiet[quiet.index('id="failed-units"') :]


@pytest.mark.parametrize("range_name", list(series.RANGES))
def test_host_page_for_every_range(dash: Dashboard, range_name: str) -> None:
    dash.feed("web-01")
    page = dash.client().get(f"/host/web-01?range={range_name}")
    assert page.status_code == 200
    assert f'data-range="{range_name}" aria-current="true"' in page.get_data(as_text=True)


def test_unknown_host_and_range(dash: Dashboard) -> None:
    dash.feed("web-01")
    client = dash.client()
    page = client.get("/host/nope")
    assert page.status_code == 404 and "no host named" in page.get_data(as_text=True)
    assert client.get("/api/hosts/nope").get_json() == {
        "error": "no host named 'nope' has reported to this collector",
        "status": 404,
    }
    bad = client.get("/host/web-01?range=2y")
    assert bad.status_code == 400 and "unknown range" in bad.get_data(as_text=True)


# -- JSON API -------------------------------------------------------------------------------------


def test_api_shapes(dash: Dashboard) -> None:
    dash.feed("web-01")
    dash.fire("web-01", "mem.percent", "warning")
    client = dash.client()

    hosts = client.get("/api/hosts")
    assert hosts.headers["Content-Type"] == "application/json"
    assert hosts.headers["Cache-Control"] == "no-store"
    data = hosts.get_json()
    assert set(data) == {
        "now", "refresh", "counts", "silenced", "total", "matching", "query", "hosts", "alerts", "alerts_total", "certfr",
        "strip",
    }  # fmt: skip
    assert data["refresh"] == 10.0
    [row] = data["hosts"]
    assert row["name"] == "web-01" and row["status"] == "warning" and row["alerts"] == 1
    assert {
        "cpu",
        "mem",
        "swap",
        "disk",
        "disk_mount",
        "load1",
        "uptime",
        "last_seen",
        "last_seen_ago",
    } <= set(row)
    assert data["alerts"][0]["rule"] == "mem.percent" and data["alerts"][0]["active"] is True
    assert (data["alerts"][0]["title"], data["alerts"][0]["text"]) == ("Memory", "90.0 % ≥ 80 %")

    host = client.get("/api/hosts/web-01").get_json()
    assert set(host) == {
        "failed_units",
        "now",
        "refresh",
        "host",
        "facts",
        "filesystems",
        "processes",
        "processes_at",  # with ?at=: the top processes kept by the alert going on then
        "users",
        "silence",
        "alerts",
    }
    assert host["facts"]["os"] == "Debian GNU/Linux 12"
    assert [fs["mount"] for fs in host["filesystems"]] == ["/var", "/"]  # fullest first
    assert host["processes"]["top_cpu"][0]["name"] == "nginx"
    assert host["users"][0]["name"] == "alice"

    cpu = client.get("/api/hosts/web-01/series?metric=cpu.percent&range=1h").get_json()
    assert (cpu["metric"], cpu["range"], cpu["bucket"]) == ("cpu.percent", "1h", 15.0)
    [line] = cpu["series"]
    assert line["columns"] == ["t", "min", "avg", "max"]
    assert len(line["data"]) in (20, 21)  # 30 samples 10 s apart fill 300 s of 15 s buckets
    assert line["data"][-1][1:] == [10.0, 10.0, 10.0]

    cores = client.get("/api/hosts/web-01/series?metric=cpu.core&range=1h").get_json()
    assert [s["name"] for s in cores["series"]] == ["cpu.core:cpu0", "cpu.core:cpu1"]

    alerts = client.get("/api/alerts").get_json()
    assert set(alerts) == {"now", "refresh", "active", "history", "silences", "hosts"}
    assert alerts["hosts"] == ["web-01"]
    assert client.get("/api/certfr").get_json() == {"latest": None, "items": []}

    charts = client.get("/api/hosts/web-01/charts?range=6h").get_json()
    assert set(charts["charts"]) == set(charts["points"]) == {spec.id for spec in series.CHARTS}
    assert charts["points"]["memory"]["series"][0]["label"] == "memory"
    assert charts["refresh"] == 120.0  # redrawn once per 2-minute bucket, not every 10 s


def test_charts_are_drawn_again_only_when_their_numbers_change(dash: Dashboard) -> None:
    dash.feed("web-01", cpu=10.0)
    client = dash.client()
    url = "/api/hosts/web-01/charts?range=30d"

    def chart_ids(headers: dict[str, str] | None = None) -> dict[str, str]:
        charts = client.get(url, headers=headers or {}).get_json()["charts"]
        return {chart: re.search(r'id="(chart-[^"]+)"', svg).group(1) for chart, svg in charts.items()}

    first = chart_ids()
    assert chart_ids() == first  # the same numbers: the same drawings
    page = client.get("/host/web-01?range=30d").get_data(as_text=True)
    assert all(chart_id in page for chart_id in first.values())  # the page and its refresh share them
    redrawn = chart_ids({"Cache-Control": "no-cache"})  # what a browser's hard reload sends
    assert not set(redrawn.values()) & set(first.values())

    # A new CPU peak in the last 3-hour bucket: the CPU chart is drawn again, with it; memory is not.
    dash.store.ingest([received("web-01", 100, time.time(), cpu=95.0)])
    after = chart_ids()
    assert after["cpu"] != redrawn["cpu"] and after["memory"] == redrawn["memory"]
    cpu = client.get(url).get_json()["points"]["cpu"]["series"][0]["values"]
    assert cpu[-1] == 95.0


def test_per_device_rates_are_one_line_per_device_and_direction(dash: Dashboard) -> None:
    def snapshot(seq: int, ts: float) -> Received:
        found = probes()
        found["disk_io"] = {"devices": {"vda": {"read_bps": 100.0 + seq, "write_bps": 200.0}}}
        found["net_io"] = {"interfaces": {"eth0": {"rx_bps": 5.0, "tx_bps": 6.0}}}
        raw = wire.encode_snapshot("web-01", seq, ts, 10.0, "test", found)
        return Received(extract(wire.decode_snapshot(raw)), raw, 10.0, ts)

    dash.store.ingest([snapshot(i + 1, dash.now - (119 - i) * 10) for i in range(120)])
    client = dash.client()
    disk = client.get("/api/hosts/web-01/series?metric=disk.io&range=1h").get_json()
    assert [s["name"] for s in disk["series"]] == ["disk.io:vda read", "disk.io:vda write"]
    assert max(v for _, v in disk["series"][0]["data"]) == 220.0  # the peak of the last minute
    net = client.get("/api/hosts/web-01/series?metric=net.io&range=1h").get_json()
    assert [s["name"] for s in net["series"]] == ["net.io:eth0 received", "net.io:eth0 sent"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("range=1h", "?metric= is required"),
        ("metric=nope&range=1h", "unknown metric"),
        ("metric=cpu.percent&range=5y", "unknown range"),
        ("metric=cpu.percent&points=x", "must be an integer"),
        ("metric=cpu.percent&points=100000", "between 3 and"),
    ],
)
def test_api_refuses_bad_series_requests(dash: Dashboard, query: str, message: str) -> None:
    dash.feed("web-01")
    answer = dash.client().get(f"/api/hosts/web-01/series?{query}")
    assert answer.status_code == 400 and message in answer.get_json()["error"]


def test_series_are_downsampled_in_sql_and_keep_a_spike(dash: Dashboard) -> None:
    """A day of one-minute samples, one 99 % spike: 50 points at most, and the spike is still there."""
    spike_at = 777
    dash.store.ingest(
        [
            received("web-01", i + 1, dash.now - (1439 - i) * 60, 60.0, cpu=99.0 if i == spike_at else 10.0)
            for i in range(1440)
        ]
    )
    answer = dash.client().get("/api/hosts/web-01/series?metric=cpu.percent&range=24h&points=50").get_json()
    data = answer["series"][0]["data"]
    assert len(data) <= 50
    assert answer["bucket"] == 1800.0  # 24 h / 49 rounded up to a round width
    peaks = [row for row in data if row[3] == 99.0]
    assert len(peaks) == 1
    t, low, avg, high = peaks[0]
    assert (low, high) == (10.0, 99.0) and 10.0 < avg < 99.0
    assert t <= dash.now - (1439 - spike_at) * 60 < t + answer["bucket"]
    # Per-core values come from the sample where the whole CPU peaked.
    cores = dash.client().get("/api/hosts/web-01/series?metric=cpu.core&range=24h&points=50").get_json()
    assert max(v for s in cores["series"] for _, v in s["data"]) == 99.0


# -- login, CSRF, anonymous read --------------------------------------------------------------------


def test_without_anonymous_read_everything_but_login_and_healthz_needs_a_login(dash: Dashboard) -> None:
    dash.feed("web-01")
    client = dash.client(web="anonymous_read = false\n")
    page = client.get("/host/web-01?range=1h")
    assert page.status_code == 302 and page.headers["Location"] == "/login?next=/host/web-01?range%3D1h"
    for url in ("/api/hosts", "/api/alerts", "/metrics"):
        answer = client.get(url)
        assert answer.status_code == 401 and answer.get_json()["error"] == "Login required", url
    assert client.get("/healthz").status_code == 200
    assert client.get("/static/style.css").status_code == 200

    wrong = login(client, password="guess")
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.get_data(as_text=True)
    assert login(client, user="mallory").status_code == 401
    ok = login(client)
    assert ok.status_code == 302 and ok.headers["Location"] == "/"
    assert client.get("/api/hosts").status_code == 200
    page = client.get("/").get_data(as_text=True)
    assert rows(page) == {"web-01": "ok"} and '<span class="user">alice</span>' in page

    client.post("/logout", data={"csrf_token": csrf_of(page)})
    assert client.get("/api/hosts").status_code == 401


def test_session_cookie_flags(dash: Dashboard) -> None:
    client = dash.client(web="anonymous_read = false\n")
    cookie = login(client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = dash.client(web='anonymous_read = false\npublic_url = "https://osmon.example.org"\n')
    assert "Secure" in login(secure).headers["Set-Cookie"]


def test_changing_a_password_in_the_config_ends_its_sessions(dash: Dashboard) -> None:
    app = dash.app(web="anonymous_read = false\n")
    client = app.test_client()
    login(client)
    assert client.get("/api/hosts").status_code == 200
    app.extensions["osmon"].config.web_users["alice"] = hash_password("a new one")
    assert client.get("/api/hosts").status_code == 401


def test_login_only_redirects_within_the_site(dash: Dashboard) -> None:
    client = dash.client(web="anonymous_read = false\n")
    token = csrf_of(client.get("/login").get_data(as_text=True))
    for target in (
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "/x\\y",
    ):
        answer = client.post(
            "/login", data={"user": "alice", "password": PASSWORD, "csrf_token": token, "next": target}
        )
        assert answer.headers["Location"] == "/", target
        token = csrf_of(client.get("/login").get_data(as_text=True))


def test_repeated_failed_logins_are_throttled(dash: Dashboard) -> None:
    client = dash.client(web="anonymous_read = false\n")
    for _ in range(10):
        assert login(client, password="guess").status_code == 401
    assert login(client, password="guess").status_code == 429
    assert login(client).status_code == 429  # even the right password, for a while
    assert login(client, user="bob", password="guess").status_code == 401  # other names are not locked


def test_basic_auth_reads_but_never_writes(dash: Dashboard) -> None:
    dash.feed("web-01")
    client = dash.client(web="anonymous_read = false\n")
    assert client.get("/metrics", auth=("alice", PASSWORD)).status_code == 200
    assert client.get("/metrics", auth=("alice", "nope")).status_code == 401
    answer = client.post("/alerts/silence", auth=("alice", PASSWORD), data={"host": "web-01"})
    assert answer.status_code == 400  # no CSRF token: refused before anything else
    assert dash.store.silences(time.time()) == []


def test_anonymous_read_opens_reads_but_not_writes(dash: Dashboard) -> None:
    dash.feed("web-01")
    client = dash.client(web="anonymous_read = true\n")
    assert client.get("/").status_code == 200 and client.get("/api/hosts").status_code == 200
    alerts = client.get("/alerts").get_data(as_text=True)
    assert "Log in</a> to silence a host" in alerts and 'id="silence-form"' not in alerts
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', alerts).group(1)
    answer = client.post(
        "/alerts/silence",
        data={"host": "web-01", "duration": "1h", "reason": "x", "csrf_token": token},
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 401 and answer.get_json()["error"] == "log in to change anything"
    assert dash.store.silences(time.time()) == []


def test_posts_without_the_session_csrf_token_are_refused(dash: Dashboard) -> None:
    dash.feed("web-01")
    client = dash.client()
    login(client)
    form = {"host": "web-01", "duration": "1h", "reason": "reboot"}
    assert client.post("/alerts/silence", data=form).status_code == 400
    refused = client.post("/alerts/silence", data={**form, "csrf_token": "forged"})
    assert refused.status_code == 400 and "CSRF" in refused.get_data(as_text=True)
    assert dash.store.silences(time.time()) == []
    # A token from another session is no better.
    other = dash.client()
    login(other)
    foreign = csrf_of(other.get("/alerts").get_data(as_text=True))
    assert client.post("/alerts/silence", data={**form, "csrf_token": foreign}).status_code == 400
    # The login form is protected too (login CSRF).
    fresh = dash.client()
    assert fresh.post("/login", data={"user": "alice", "password": PASSWORD}).status_code == 400


def test_silence_and_unsilence_from_the_dashboard(dash: Dashboard) -> None:
    dash.feed("web-01")
    dash.fire("web-01", "mem.percent", "critical")
    client = dash.client()
    login(client)
    token = csrf_of(client.get("/alerts").get_data(as_text=True))
    done = client.post(
        "/alerts/silence",
        data={
            "host": "web-01",
            "duration": "2h",
            "reason": "kernel upgrade",
            "csrf_token": token,
            "next": "/alerts",
        },
    )
    assert done.status_code == 302 and done.headers["Location"] == "/alerts"
    [silence] = dash.store.silences(time.time())
    assert silence.host == "web-01" and silence.reason == "kernel upgrade (by alice)"
    assert silence.until == pytest.approx(time.time() + 7200, abs=60)
    page = client.get("/alerts").get_data(as_text=True)
    assert "web-01 silenced." in page and "kernel upgrade (by alice)" in page
    assert rows(client.get("/").get_data(as_text=True)) == {"web-01": "critical"}
    assert client.get("/api/hosts").get_json()["hosts"][0]["silenced"] is True

    client.post("/alerts/unsilence", data={"host": "web-01", "csrf_token": token})
    assert dash.store.silences(time.time()) == []
    assert rows(client.get("/").get_data(as_text=True)) == {"web-01": "critical"}

    # A name no host has reported under is silenced all the same (it may come), with a warning.
    client.post(
        "/alerts/silence", data={"host": "web-10", "duration": "1h", "reason": "new box", "csrf_token": token}
    )
    page = client.get("/alerts").get_data(as_text=True)
    assert "no host of that name has reported yet" in page and "banner-warning" in page
    assert [s.host for s in dash.store.silences(time.time())] == ["web-10"]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"host": "../etc", "duration": "1h", "reason": "x"}, "not a valid host name"),
        ({"host": "web-01", "duration": "soon", "reason": "x"}, "duration"),
        ({"host": "web-01", "duration": "0", "reason": "x"}, "between"),
        ({"host": "web-01", "duration": "400d", "reason": "x"}, "between"),
        ({"host": "web-01", "duration": "1h", "reason": "   "}, "reason"),
    ],
)
def test_bad_silence_forms_are_refused_clearly(dash: Dashboard, form: dict, message: str) -> None:
    client = dash.client()
    login(client)
    token = csrf_of(client.get("/alerts").get_data(as_text=True))
    answer = client.post("/alerts/silence", data={**form, "csrf_token": token})
    assert answer.status_code == 400 and message in answer.get_data(as_text=True)
    assert dash.store.silences(time.time()) == []


# -- hostile data ----------------------------------------------------------------------------------------


def test_hostile_names_are_escaped_everywhere(dash: Dashboard) -> None:
    """Host, mount, process, command line and user names come from the hosts: never markup."""
    dash.store.ingest([hostile_host(1, dash.now)])
    dash.feed(
        "web-01",
        mounts={"/": 10.0, f"/mnt/{HOSTILE}": 99.0},
        process=HOSTILE,
        cmdline=f'"><img src=x onerror=alert(1)>{HOSTILE}',
        user=f"<b>{HOSTILE}",
    )
    dash.fire("web-01", f"disk.percent:/mnt/{HOSTILE}", "critical")
    dash.fire(HOSTILE, "mem.percent", "warning")
    dash.store.silence(HOSTILE, dash.now + 60, f"because {HOSTILE}", dash.now)
    client = dash.client()
    login(client)

    pages = {url: client.get(url) for url in ("/", "/host/web-01?range=1h", "/alerts")}
    for url, page in pages.items():
        html = page.get_data(as_text=True)
        assert page.status_code == 200, url
        assert "<script>alert" not in html and "<img src=x" not in html and "<b><script>" not in html, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, url
    host_page = pages["/host/web-01?range=1h"].get_data(as_text=True)
    # Inside attributes too, and in the SVG legend of the per-mount chart.
    assert 'title="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;' in host_page
    disks = svgs(host_page)[[spec.id for spec in series.CHARTS].index("disk")]
    assert "/mnt/&lt;script&gt;alert(1)&lt;/script&gt;" in disks and "<script>" not in disks
    # The tooltip's JSON in its single-quoted attribute: nothing ends the attribute or opens a tag,
    # and the label reads back exactly.
    figure = re.search(r"<figure [^>]*id=\"chart-disk\"[^>]*>", host_page)
    assert figure and "<script" not in figure.group(0) and "<img" not in figure.group(0)
    labels = [line["label"] for line in chart_points(host_page)["disk"]["series"]]
    assert f"/mnt/{HOSTILE}" in labels
    # The hostile host links to a URL-quoted page, which answers without running anything.
    overview = pages["/"].get_data(as_text=True)
    assert 'href="/host/%3Cscript%3Ealert(1)%3C/script%3E"' in overview
    assert HOSTILE in rows(overview)  # in the table's data: escaped in its attribute, read back exactly
    # JSON keeps the names as data; it is served as JSON, never sniffed as HTML.
    api = client.get("/api/hosts")
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    assert HOSTILE in [h["name"] for h in api.get_json()["hosts"]]


def test_pages_load_nothing_from_another_host_and_forbid_inline_scripts(dash: Dashboard) -> None:
    dash.feed("web-01")
    client = dash.client()
    for url in ("/", "/host/web-01", "/alerts", "/login"):
        page = client.get(url)
        html = page.get_data(as_text=True)
        assert not re.search(r'(src|href)="(https?:)?//', html), url
        assert "kozea" not in html, url
        assert not re.search(r"<script(?![^>]*\b(src|xlink:href)=)[^>]*>", html), f"inline script in {url}"
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'self'" in csp
    for asset in ("pygal-tooltips.js", "live.js", "style.css", "favicon.svg"):
        served = client.get(f"/static/{asset}")
        assert served.status_code == 200, asset
        assert not re.search(rb"https?://(?!www\.w3\.org/)", served.data), asset


# -- /metrics and /healthz -------------------------------------------------------------------------------


METRIC_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]\w*="([^"\\]|\\.)*",?)*\})? \S+$')


def test_metrics_in_prometheus_text_format(dash: Dashboard) -> None:
    dash.feed("web-01", cpu=42.0)
    dash.store.ingest([received("gone-1", 1, dash.now - 3600)])
    dash.store.add_counters({"received": 31, "stored": 31, "rejected": 2, "hook_errors": 1})
    answer = dash.client().get("/metrics")
    text = answer.get_data(as_text=True)
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for line in text.splitlines():
        assert line.startswith(("# HELP ", "# TYPE ", "# UNIT ")) or METRIC_LINE.match(line), line
    assert 'osmon_host_up{host="web-01"} 1.0' in text and 'osmon_host_up{host="gone-1"} 0.0' in text
    assert 'osmon_host_cpu_busy_ratio{host="web-01"} 0.42' in text
    assert 'osmon_host_filesystem_used_ratio{host="web-01",mount="/var"} 0.7' in text
    assert "osmon_snapshots_received_total 31.0" in text
    assert 'osmon_snapshots_rejected_total{reason="malformed"} 2.0' in text
    assert 'osmon_collector_events_total{event="hook_errors"} 1.0' in text
    assert 'osmon_outbox_messages{state="queued"} 0.0' in text
    # A host gone silent: up 0 and when it was last seen, none of its stale numbers.
    assert re.search(r'^osmon_host_last_seen_timestamp_seconds\{host="gone-1"\} \S+$', text, re.M)
    assert not [
        line
        for line in text.splitlines()
        if 'host="gone-1"' in line and "_up" not in line and "last_seen" not in line
    ]
    lag = float(re.search(r"^osmon_ingest_lag_seconds (\S+)$", text, re.M).group(1))
    assert 0 <= lag < 60
    assert 'osmon_hosts{status="down"} 1.0' in text


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)"
)
def test_metrics_pass_promtool(dash: Dashboard) -> None:
    dash.feed("web-01")
    dash.store.ingest([hostile_host(1, dash.now)])  # label values with quotes and angle brackets
    dash.store.add_counters({"received": 3, "acks_dropped": 1})
    dash.store.heartbeat("mon-01:5555", "tcp://0.0.0.0:5555", 1, "1.0", dash.now, 3, 0.5)
    text = dash.client().get("/metrics").get_data()
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=30)
    # Not only valid: no lint remark either (units, _total, _ratio ...).
    assert (check.returncode, check.stdout + check.stderr) == (0, b"")


def test_a_host_page_opened_at_an_alert_shows_the_processes_of_that_moment(dash: Dashboard) -> None:
    dash.feed("web-01")
    kept = json.dumps(
        {"ts": dash.now - 60, "top_cpu": [{"name": "<b>backup</b>", "pid": 4242, "cpu_percent": 97.0}]}
    )
    dash.store.alerts_apply(
        [AlertEvent("fired", "web-01", "cpu.percent", "warning", dash.now - 60, 97.0, 80.0, processes=kept)],
        [],
    )
    client = dash.client()
    page = client.get(f"/host/web-01?at={dash.now - 30:.0f}").get_data(as_text=True)
    assert 'id="processes-at"' in page and "when CPU fired" in page
    assert "&lt;b&gt;backup&lt;/b&gt;" in page and "<b>backup</b>" not in page  # escaped, as all from a host
    assert 'id="processes-at"' not in client.get("/host/web-01").get_data(
        as_text=True
    )  # live: the latest only


def test_the_collectors_sharing_the_database_are_listed_and_exported(dash: Dashboard) -> None:
    dash.feed("web-01")
    dash.store.heartbeat("mon-01:5555", "tcp://0.0.0.0:5555", 101, "1.0", dash.now, 500, 12.5)
    dash.store.heartbeat("mon-02:5555", "tcp://0.0.0.0:5555", 102, "1.0", dash.now, 0, 0.0, stopped=True)
    dash.store.lease_take("mon-01:5555", ["host:web-01"], 30)
    client = dash.client()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'osmon_collector_up{collector="mon-01:5555"} 1.0' in text
    assert 'osmon_collector_up{collector="mon-02:5555"} 0.0' in text
    assert 'osmon_collector_hosts{collector="mon-01:5555"} 1.0' in text
    assert 'osmon_collector_snapshots_per_second{collector="mon-01:5555"} 12.5' in text
    assert "mon-01:5555" not in client.get("/alerts").get_data(as_text=True)  # operators only, as the outbox
    login(client)
    page = client.get("/alerts").get_data(as_text=True)
    assert 'id="collectors"' in page and "mon-01:5555" in page and "stopped" in page


def test_healthz_reports_whether_the_database_can_be_read(dash: Dashboard, tmp_path: Path) -> None:
    dash.feed("web-01")
    answer = dash.client().get("/healthz")
    assert answer.status_code == 200 and answer.get_json() == {"status": "ok", "hosts": 1}

    # A dashboard started before the collector: 503 until the database exists, then 200.
    later = Dashboard(tmp_path, database="later/osmon.db", create=False)
    client = later.client()
    missing = client.get("/healthz")
    assert missing.status_code == 503 and "does not exist" in missing.get_json()["error"]
    page = client.get("/")
    assert page.status_code == 503 and "Database unavailable" in page.get_data(as_text=True)
    assert "reloads by itself" in page.get_data(as_text=True)  # static/live.js retries /healthz
    later.store.ingest([received("web-01", 1, time.time())])
    assert client.get("/healthz").status_code == 200
    assert rows(client.get("/").get_data(as_text=True)) == {"web-01": "ok"}


def test_errors_are_json_for_the_api_and_html_for_people(dash: Dashboard) -> None:
    client = dash.client()
    assert client.get("/api/nope").get_json() == {"error": "Not found", "status": 404}
    assert client.post("/api/hosts", headers={"X-CSRF-Token": "x"}).status_code in (400, 405)
    page = client.get("/nope")
    assert page.status_code == 404 and 'id="error" data-status="404"' in page.get_data(as_text=True)


def test_the_dashboard_never_writes_except_silences(dash: Dashboard) -> None:
    dash.feed("web-01")
    reader = open_store(dash.database, readonly=True)
    reader.web_read_only()
    with pytest.raises(Exception, match=r"readonly|read-only|query_only"):
        reader.add_counters({"received": 1})
    reader.web_silence("web-01", time.time() + 60, "test", time.time())
    assert [s.host for s in reader.silences(time.time())] == ["web-01"]
    with pytest.raises(Exception, match=r"readonly|read-only|query_only"):
        reader.add_counters({"received": 1})  # still read-only after the write


def test_the_alerts_page_shows_the_outbox_to_logged_in_users(dash: Dashboard) -> None:
    from collector.mail import Mail

    mail = Mail(["ops@example.org"], "[osMonitoring] CRITICAL web-01: host down", "t", "<p>h</p>")
    queued = dash.store.outbox_add(mail, "<1@x>", dash.now - 30)
    sent = dash.store.outbox_add(
        mail._replace(subject="[osMonitoring] RESOLVED web-01"), "<2@x>", dash.now - 20
    )
    dash.store.outbox_sent(sent, dash.now - 19)
    failed = dash.store.outbox_add(mail._replace(recipients=["nobody@example.org"]), "<3@x>", dash.now - 10)
    dash.store.outbox_failed(failed, "550 5.1.1 no such user", None)
    dash.store.outbox_failed(queued, "cannot connect to SMTP", dash.now + 60)
    client = dash.client()
    assert 'id="outbox"' not in client.get("/alerts").get_data(as_text=True)  # anonymous: no addresses
    login(client)
    page = client.get("/alerts").get_data(as_text=True)
    outbox = page[page.index('id="outbox"') :]
    assert (
        outbox.index("mail-failed") < outbox.index("mail-sent") < outbox.index("mail-queued")
    )  # newest first
    assert "550 5.1.1 no such user" in outbox and "nobody@example.org" in outbox
    assert "[osMonitoring] RESOLVED web-01" in outbox and "cannot connect to SMTP" in outbox
    assert outbox.count('<td class="channel">mail</td>') == 3


def test_the_outbox_shows_the_channel_of_a_webhook_delivery(dash: Dashboard) -> None:
    from collector.mail import Mail
    from collector.store import OutboxMail

    delivery = OutboxMail(
        "web-01",
        "webhook:chat k",
        Mail([], "CRITICAL web-01: host down", "", ""),
        "<w@x>",
        (),
        dash.now,
        "webhook:chat",
        "{}",
    )
    dash.store.alerts_apply([], [], mails=[delivery])
    client = dash.client()
    login(client)
    page = client.get("/alerts").get_data(as_text=True)
    outbox = page[page.index('id="outbox"') :]
    assert '<td class="channel">webhook:chat</td>' in outbox and "CRITICAL web-01: host down" in outbox
