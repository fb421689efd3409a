"""Prometheus, scraper tokens: the real `prometheus` server scraping the real `osmon-collector web`.

One Prometheus per test session (tests share it, each adding its own dashboard
as a target through file service discovery); every test has its own directory,
database and dashboard.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector import tokens
from collector.store import open_store
from osmon import catalog
from tests.conftest import BIN, ROOT, Cluster, Process, free_port, wait_for
from tests.test_web import received

PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (Debian package prometheus)"
)


class Prometheus:
    """A running Prometheus scraping every target a test adds: job `osmon` with the session's bearer
    token, job `anonymous` without any credentials."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.token = tokens.new()
        (directory / "token").write_text(self.token)
        os.chmod(directory / "token", 0o600)
        (directory / "targets").mkdir()
        sd = {"files": [str(directory / "targets" / "*.json")], "refresh_interval": "1s"}
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "osmon",
                    "authorization": {"type": "Bearer", "credentials_file": str(directory / "token")},
                    "file_sd_configs": [sd],
                },
                {"job_name": "anonymous", "file_sd_configs": [sd]},
            ],
        }
        (directory / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process = Process(
            [
                str(PROMETHEUS),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
                "--log.level=warn",
            ],
            directory / "prometheus.log",
        )
        wait_for(self.ready, what="prometheus to start")

    def ready(self) -> bool:
        if not self.process.alive():
            raise AssertionError(f"prometheus exited:\n{self.process.output()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def scrape(self, name: str, url: str) -> str:
        """Scrape `url` (a dashboard) from now on; returns its instance label."""
        instance = urllib.parse.urlsplit(url).netloc
        (self.dir / "targets" / f"{name}.json").write_text(json.dumps([{"targets": [instance]}]))
        return instance

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector `promql` evaluates to now."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(address, timeout=10) as answer:
            result = json.load(answer)
        assert result["status"] == "success", result
        return result["data"]["result"]

    def values(self, promql: str) -> dict[str, float]:
        """{host label: value} of `promql`."""
        return {r["metric"].get("host", ""): float(r["value"][1]) for r in self.query(promql)}


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    if PROMETHEUS is None:
        pytest.skip("prometheus not installed (Debian package prometheus)")
    server = Prometheus(tmp_path_factory.mktemp("prometheus"))
    try:
        yield server
    finally:
        server.process.terminate()


def osmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "osmon-collector"), *args], capture_output=True, text=True, timeout=60)


def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# -- scraper tokens -------------------------------------------------------------------------------


def test_a_wrong_token_is_refused_even_where_anonymous_reads_are_open(cluster: Cluster) -> None:
    """A scraper sending a token that is not one is misconfigured: `up == 0` says so at once."""
    _process, url = cluster.web("anonymous_read = true")
    open_store(cluster.dir / "osmon.db").ingest([received("web-01", 1, time.time())])
    assert get(f"{url}/metrics")[0] == 200
    status, text = get(f"{url}/metrics", "osmon_revoked-or-mistyped")
    assert status == 401 and "osmon_host_up" not in text


def test_a_token_reads_metrics_until_revoked_and_never_writes(cluster: Cluster) -> None:
    process, url = cluster.web("anonymous_read = false")
    open_store(cluster.dir / "osmon.db").ingest([received("web-01", 1, time.time())])
    config = str(cluster.collector_config)

    created = osmon("token", "new", "prometheus", "--config", config)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("osmon_") and len(token) > 40 and "shown only this once" in created.stderr
    assert token not in (cluster.dir / "osmon.db").read_bytes().decode(errors="replace")  # only its hash

    assert get(f"{url}/metrics")[0] == 401  # anonymous: refused
    assert get(f"{url}/metrics", "osmon_not-a-token")[0] == 401
    status, text = get(f"{url}/metrics", token)
    assert status == 200 and 'osmon_host_up{host="web-01"} 1.0' in text
    assert get(f"{url}/api/hosts", token)[0] == 200  # any read

    # A token never changes anything, even with a CSRF header.
    silence = urllib.request.Request(
        f"{url}/alerts/silence",
        data=b"host=web-01&duration=1h&reason=x",
        headers={"Authorization": f"Bearer {token}", "X-CSRF-Token": "x"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(silence, timeout=10)
    assert refused.value.code in (400, 401)
    assert open_store(cluster.dir / "osmon.db").silences(time.time()) == []

    again = osmon("token", "new", "prometheus", "--config", config)
    assert again.returncode == 2 and "exists already" in again.stderr
    listed = osmon("token", "list", "--config", config)
    assert listed.returncode == 0 and listed.stdout.startswith("prometheus\tcreated ")
    assert token not in listed.stdout

    revoked = osmon("token", "revoke", "prometheus", "--config", config)
    assert revoked.returncode == 0, revoked.stderr
    assert get(f"{url}/metrics", token)[0] == 401  # at once, no restart
    assert osmon("token", "revoke", "prometheus", "--config", config).returncode == 2
    bad = osmon("token", "new", "../x", "--config", config)
    assert bad.returncode == 2 and "not a token name" in bad.stderr
    assert token not in process.output()  # never logged


def test_metrics_are_open_to_anonymous_scrapes_only_with_anonymous_read(cluster: Cluster) -> None:
    _, url = cluster.web("anonymous_read = true")
    open_store(cluster.dir / "osmon.db")
    assert get(f"{url}/metrics")[0] == 200


# -- a real Prometheus -----------------------------------------------------------------------------


@needs_prometheus
def test_prometheus_scrapes_each_host_and_forgets_a_host_that_went_down(
    cluster: Cluster, prometheus: Prometheus
) -> None:
    _, url = cluster.web("anonymous_read = false")
    store = open_store(cluster.dir / "osmon.db")
    store.token_add("prometheus", tokens.digest(prometheus.token), time.time())
    now = time.time()
    store.ingest([received("web-01", 1, now, interval=3600.0, cpu=42.0, mem=60.0, cores=4)])
    store.ingest([received("db-01", 1, now, interval=3600.0, cpu=7.0, mem=20.0, cores=2)])
    store.ingest([received("gone-1", 1, now - 7200, interval=10.0, arrived=now - 7200, cpu=93.0)])
    # Up for a few seconds: then its agent is silent for 3 of its intervals.
    store.ingest([received("vm-peer", 1, now, interval=4.0, cpu=93.7)])
    instance = prometheus.scrape("hosts", url)
    at = f'instance="{instance}"'

    cpu = f'osmon_host_cpu_busy_ratio{{job="osmon",{at}}}'
    wait_for(lambda: "vm-peer" in prometheus.values(cpu), timeout=30, what="the first scrapes")
    assert prometheus.query(f'up{{job="osmon",{at}}} == 1'), "the token must let Prometheus in"
    refused = f'up{{job="anonymous",{at}}} == 0'
    wait_for(lambda: prometheus.query(refused), timeout=30, what="the anonymous scrape to be refused")
    assert {h: v for h, v in prometheus.values(cpu).items() if h != "vm-peer"} == {
        "web-01": 0.42,
        "db-01": 0.07,
    }
    assert prometheus.values(f'osmon_host_memory_used_ratio{{job="osmon",{at}}}') == {
        "web-01": 0.6,
        "db-01": 0.2,
        "vm-peer": 0.4,
    }
    # Load per core, as detection alerts on it (probes report load1 0.5): rebuilt from two series.
    per_core = prometheus.values(
        f'osmon_host_load1{{job="osmon",{at}}} / on(host) osmon_host_cpus{{job="osmon",{at}}}'
    )
    assert per_core == {"web-01": 0.125, "db-01": 0.25, "vm-peer": 0.25}
    mounts = prometheus.query(f'osmon_host_filesystem_used_ratio{{job="osmon",{at},host="web-01"}}')
    assert {r["metric"]["mount"]: float(r["value"][1]) for r in mounts} == {"/": 0.5, "/var": 0.7}

    # A host gone long ago: up 0 and its last-seen time, none of its stale numbers.
    assert prometheus.values(f'osmon_host_up{{job="osmon",{at}}}')["gone-1"] == 0.0
    assert "gone-1" in prometheus.values(f'osmon_host_last_seen_timestamp_seconds{{job="osmon",{at}}}')
    assert "gone-1" not in prometheus.values(cpu)

    # A host that goes down while scraped: its series end, so a rule `> 0.9` stops firing.
    wait_for(lambda: "vm-peer" not in prometheus.values(cpu), timeout=40, what="vm-peer's CPU to vanish")
    assert prometheus.values(f'osmon_host_up{{job="osmon",{at}}}')["vm-peer"] == 0.0
    assert not prometheus.query(f'osmon_host_cpu_busy_ratio{{job="osmon",{at}}} > 0.9')


# -- the example rules file ---------------------------------------------------------------------------

RULES = ROOT / "examples" / "prometheus-rules.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus)"
)


@needs_promtool
def test_the_example_rules_pass_promtool_check_and_its_unit_tests() -> None:
    check = subprocess.run([str(PROMTOOL), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
    test = ROOT / "tests" / "fixtures" / "prometheus-rules.test.yml"
    run = subprocess.run([str(PROMTOOL), "test", "rules", str(test)], capture_output=True, text=True)
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr


def test_the_example_rules_mirror_the_default_thresholds() -> None:
    """Each alerted catalog number has a warning and a critical rule at its default level and duration."""
    rules = {r["alert"]: r for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}
    expected = [
        (m.export, m.levels, m.unit.to_base)
        for m in (*catalog.METRICS, *catalog.SERIES)
        if m.levels is not None and m.export is not None
    ]
    # cpu, memory, swap, load per core, filesystems, memory pressure, clock offset
    assert len(expected) == 7
    for export, levels, to_base in expected:
        for severity, level in (("warning", levels.warning), ("critical", levels.critical)):
            found = [r for r in rules.values() if export in r["expr"] and r["labels"]["severity"] == severity]
            assert len(found) == 1, (export, severity)
            threshold = float(found[0]["expr"].rsplit(">", 1)[1])
            assert threshold == pytest.approx(level * to_base), (export, severity)
            duration = found[0].get("for", "0m")
            assert float(duration[:-1]) * {"m": 60, "s": 1}[duration[-1]] == levels.for_, (export, severity)
    assert rules["OsmonHostDown"]["expr"] == "osmon_host_up == 0"
