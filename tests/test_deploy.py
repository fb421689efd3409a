"""The Ansible deployment: lint, and an end-to-end run against real systemd hosts.

The end-to-end test boots three hosts (two Debian 12, one Debian 13) with systemd-nspawn on a bridge in 198.18.0.0/24
(tests/deploy_hosts.py), deploys them with playbooks/site.yml from this repository (one host is the
collector and also an agent), and checks what an operator would: every unit active, the dashboard
listing every host with fresh data, an alert mailed to an SMTP server this test runs on the bridge,
backups and restore on SQLite; then a move of the collector's storage to PostgreSQL on a database
host (db-01, installed from its local package mirror: the hosts reach no Debian mirror) in the same
run that makes web-01 a second collector on it; on that fleet, a second run, a --limit run and a
--check run changing nothing, the crash of the first collector (data, dashboard and mail go on,
nobody is called down), an upgrade to a new build that restarts the services on it and keeps the
data, and a host shut down mailed as down, once.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests import deploy_hosts
from tests.conftest import wait_for
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def tool_env() -> dict[str, str]:
    """Environment for ansible-* commands: this venv first on PATH, settings from the repo's ansible.cfg."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
    }


def test_ansible_lint_production_profile() -> None:
    result = subprocess.run(
        [
            str(BIN / "ansible-lint"),
            "--profile",
            "production",
            "--nocolor",
            "playbooks",
            "roles",
            "inventory",
        ],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_playbooks_pass_syntax_check() -> None:
    for playbook in ("site.yml", "database.yml", "collector.yml", "agents.yml", "restore.yml"):
        result = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "--syntax-check",
                "-i",
                "inventory/hosts.yml",
                f"playbooks/{playbook}",
            ],
            cwd=ROOT,
            env=tool_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{playbook}:\n{result.stdout}{result.stderr}"


def test_several_collectors_without_postgresql_are_refused(tmp_path: Path) -> None:
    """Two hosts in the collector group and no osmon_database_url: the play stops before touching either."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {
        "all": {
            "hosts": {"mon-01": local, "mon-02": local},
            "children": {"collector": {"hosts": {"mon-01": None, "mon-02": None}}},
        }
    }
    (tmp_path / "hosts.yml").write_text(json.dumps(inventory))
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "--check", "-i", str(tmp_path / "hosts.yml"), "playbooks/collector.yml"],
        cwd=ROOT, env={**tool_env(), "ANSIBLE_HOME": str(tmp_path / "ansible-home")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert (
        "holds 2 collectors (mon-01, mon-02); several collectors share one PostgreSQL database" in output
    ), output
    assert "TASK [osmon_collector : Install" not in output


def test_the_duration_filter_reads_the_config_files_units() -> None:
    """The collector role's osmon_seconds filter, which tells each collector its agents' timing."""
    import importlib.util

    from ansible.errors import AnsibleFilterError

    spec = importlib.util.spec_from_file_location(
        "durations", ROOT / "roles/osmon_collector/filter_plugins/durations.py"
    )
    assert spec is not None and spec.loader is not None
    durations = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(durations)
    seconds = durations.FilterModule().filters()["osmon_seconds"]
    assert [seconds(v) for v in (2, 2.5, "2s", "500ms", "1m", " 1.5h ", "1d")] == [
        2,
        2.5,
        2,
        0.5,
        60,
        5400,
        86400,
    ]
    for bad in ("", "2 minutes", "-1s", True, None):
        with pytest.raises(AnsibleFilterError, match="expected a duration"):
            seconds(bad)


# --- end to end, against real hosts ---------------------------------------------------------------

COLLECTOR = "mon-01"
HOSTS = [COLLECTOR, "web-01", "db-01"]  # the collector is monitored too
# On PostgreSQL, web-01 becomes a second collector (with its dashboard) beside mon-01.
SECOND = "web-01"
# Targets are Debian 12 and today's stable, 13: db-01 boots trixie (its own Python, glibc, systemd),
# so one deployment covers both, the wheelhouse built for each.
SUITES = {"db-01": "trixie"}
SMTP_PORT = 2525
SMTP_USER = "osmon"
SMTP_PASSWORD = f"vaulted-{secrets.token_hex(8)}"
# db-01 is also the `database` group's host: PostgreSQL from its package sources (a local mirror).
DATABASE = "db-01"
MIRRORS = {DATABASE: ("postgresql", "python3-apt")}  # python3-apt: Ansible's apt module
DATABASE_PASSWORD = f"vaulted-db-{secrets.token_hex(8)}"
SCRAPER_TOKEN = f"vaulted-scraper-{secrets.token_urlsafe(32)}"  # Prometheus's, set by the role
COLLECTOR_UNITS = ["osmon-agent", "osmon-collector", "osmon-web", "osmon-backup"]
# Timing: snapshots every 2 s, a host down after 6 of them (a 12 s window). The collectors' timing
# rule then needs the agents' failover (2 x ack_timeout + jitter up to ack_timeout + one interval:
# 8 s) and the lease (5 s + one interval: 7 s) inside that window; check-config refuses otherwise.
AGENT_INTERVAL, ACK_TIMEOUT, DOWN_AFTER, LEASE_TIME = 2, 2, 6, 5
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


class Inbox:
    """aiosmtpd handler on the bridge address: keeps what it accepts and who logged in."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 2.0.0 accepted"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == (
            SMTP_USER,
            SMTP_PASSWORD,
        )
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)

    def find(self, *words: str) -> tuple[list[str], EmailMessage] | None:
        """The first message whose subject holds every word (case-insensitive)."""
        found = self.all(*words)
        return found[0] if found else None

    def all(self, *words: str, since: int = 0) -> list[tuple[list[str], EmailMessage]]:
        """Every message from the `since`-th on whose subject holds every word (case-insensitive)."""
        return [
            (rcpt, message)
            for rcpt, message in self.messages[since:]
            if all(w.lower() in str(message["Subject"]).lower() for w in words)
        ]


class Deployment:
    """The fleet, its inventory, the SMTP server, and ansible-playbook runs against them."""

    def __init__(self, workdir: Path, fleet: deploy_hosts.Fleet, inbox: Inbox) -> None:
        self.dir, self.fleet, self.inbox = workdir, fleet, inbox
        self.inventory = workdir / "inventory"
        self.figures: dict[str, str] = {}
        self.runs = 0
        wheelhouse = str(deploy_hosts.CACHE / "wheelhouse")
        self.extra = {"osmon_agent_wheelhouse_dir": wheelhouse, "osmon_collector_wheelhouse_dir": wheelhouse}
        self.web = self.web_of(COLLECTOR)
        self.collectors = [COLLECTOR]

    def web_of(self, host: str) -> str:
        return f"http://{self.fleet.hosts[host].address}:5000"

    def units(self) -> dict[str, list[str]]:
        """The units each host runs: every collector its four, every other host its agent."""
        return {h: COLLECTOR_UNITS if h in self.collectors else ["osmon-agent"] for h in HOSTS}

    def write_hosts(self) -> None:
        """hosts.yml: the collector group (inventory order) as self.collectors says, every host an agent."""
        (self.inventory / "hosts.yml").write_text(
            json.dumps(self.fleet.inventory(self.collectors, HOSTS, DATABASE))
        )

    def write_inventory(self) -> None:
        group_vars = self.inventory / "group_vars"
        group_vars.mkdir(parents=True)
        self.write_hosts()
        settings = {
            "osmon_web_bind": "0.0.0.0:5000",
            "osmon_web_anonymous_read": True,
            "osmon_collector_web_public_url": self.web,
            "osmon_smtp_host": deploy_hosts.BRIDGE_ADDRESS,
            "osmon_smtp_port": SMTP_PORT,
            "osmon_smtp_security": "none",
            "osmon_smtp_from": "osmon@mon-01.test",
            "osmon_smtp_username": SMTP_USER,
            "osmon_alert_recipients": ["ops@example.org"],
            "osmon_alert_routes": [{"hosts": "web-*", "recipients": ["web@example.org"]}],
            "osmon_collector_down_after": DOWN_AFTER,
            "osmon_collector_lease_time": f"{LEASE_TIME}s",
            # One host alerts at once: its memory is always above these levels.
            "osmon_collector_threshold_overrides": [
                {"hosts": "web-01", "metric": "mem.percent", "warning": 0.1, "critical": 0.2, "for": 0,
                 "hysteresis": 0}
            ],
            "osmon_collector_certfr_enabled": False,  # the hosts reach nothing outside the bridge
            "osmon_collector_backup_keep": 2,
            "osmon_scraper_tokens": [{"name": "prometheus", "token": "{{ osmon_scraper_token }}"}],
        }  # fmt: skip
        self.vault_password = self.dir / "vault-password"
        self.vault_password.write_text(secrets.token_hex(16))
        vaulted = subprocess.run(
            [str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(self.vault_password),
             "--name", "osmon_smtp_password", "--stdin-name", "osmon_smtp_password"],
            input=SMTP_PASSWORD, capture_output=True, text=True, env=tool_env(), check=True,
        ).stdout  # fmt: skip
        token = subprocess.run(
            [str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(self.vault_password),
             "--name", "osmon_scraper_token", "--stdin-name", "osmon_scraper_token"],
            input=SCRAPER_TOKEN, capture_output=True, text=True, env=tool_env(), check=True,
        ).stdout  # fmt: skip
        (group_vars / "collector.yml").write_text(
            "".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()) + vaulted + token
        )
        # Shared by the database role (the role's password) and the collector (its password file).
        vaulted = subprocess.run(
            [str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(self.vault_password),
             "--name", "osmon_database_password", "--stdin-name", "osmon_database_password"],
            input=DATABASE_PASSWORD, capture_output=True, text=True, env=tool_env(), check=True,
        ).stdout  # fmt: skip
        (group_vars / "all.yml").write_text(
            f"osmon_agent_interval: {AGENT_INTERVAL}s\nosmon_agent_ack_timeout: {ACK_TIMEOUT}s\n" + vaulted
        )

    def playbook(self, playbook: str = "site.yml", *args: str, **extra: Any) -> tuple[str, float]:
        """Run a playbook of the repo against the fleet; returns its output and wall time."""
        self.runs += 1
        extra_vars = self.dir / f"extra-{self.runs}.json"
        extra_vars.write_text(json.dumps({**self.extra, **extra}))
        started = time.monotonic()
        result = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(self.inventory / "hosts.yml"),
             "--vault-password-file", str(self.vault_password), "-e", f"@{extra_vars}",
             f"playbooks/{playbook}", *args],
            cwd=ROOT, env={**tool_env(), "ANSIBLE_HOME": str(self.dir / "ansible-home")},
            capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        seconds = time.monotonic() - started
        output = result.stdout + result.stderr
        (self.dir / f"ansible-{self.runs}.log").write_text(output)
        assert result.returncode == 0, (
            f"ansible-playbook {playbook} {' '.join(args)} failed:\n{output[-6000:]}"
        )
        assert SMTP_PASSWORD not in output, "the SMTP password appeared in Ansible's output"
        assert DATABASE_PASSWORD not in output, "the database password appeared in Ansible's output"
        assert SCRAPER_TOKEN not in output, "the scraper token appeared in Ansible's output"
        return output, seconds

    def api(self, path: str, host: str = COLLECTOR) -> Any:
        with urllib.request.urlopen(f"{self.web_of(host)}{path}", timeout=10) as response:
            return json.loads(response.read())

    def page(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.web}{path}", timeout=10) as response:
            return response.read().decode()

    def as_collector(self, command: str, host: str = COLLECTOR) -> str:
        """An osmon-collector command on a collector, as the service user (as the units run it)."""
        venv = self.unit_venv(host, "osmon-collector")
        config = "/etc/osmonitoring/collector.toml"
        return self.fleet.ssh(
            host, f"runuser -u osmon -- {venv}/bin/osmon-collector {command} --config {config}"
        ).stdout

    def status(self, host: str = COLLECTOR) -> dict[str, dict]:
        """`status --json` on a collector, by host name."""
        return {h["host"]: h for h in json.loads(self.as_collector("status --json", host))}

    def cluster(self, host: str) -> dict[str, dict]:
        """`cluster --json` on a collector, by collector name."""
        return {c["name"]: c for c in json.loads(self.as_collector("cluster --json", host))}

    def unit_venv(self, host: str, unit: str) -> str:
        exec_start = self.fleet.ssh(host, f"systemctl show -P ExecStart {unit}").stdout
        match = re.search(r"path=(\S+)/bin/osmon-", exec_start)
        assert match, exec_start
        return match.group(1)

    def main_pid(self, host: str, unit: str) -> int:
        return int(self.fleet.ssh(host, f"systemctl show -P MainPID {unit}").stdout.strip())


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP per host: ok, changed, unreachable, failed."""
    found = {
        host: {"ok": int(ok), "changed": int(changed), "unreachable": int(unreachable), "failed": int(failed)}
        for host, ok, changed, unreachable, failed in RECAP.findall(output)
    }
    assert found, f"no PLAY RECAP in:\n{output[-3000:]}"
    return found


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Three booted hosts deployed by playbooks/site.yml; everything removed at the end."""
    why = deploy_hosts.missing_tools()
    if why:
        pytest.skip(f"deployment test: {why}")
    workdir = tmp_path_factory.mktemp("deploy")
    fleet = deploy_hosts.Fleet(workdir, HOSTS, SUITES, MIRRORS)
    inbox = Inbox()
    smtp = None
    try:
        fleet.start()
        smtp = Controller(
            inbox,
            hostname=deploy_hosts.BRIDGE_ADDRESS,
            port=SMTP_PORT,
            authenticator=inbox.authenticate,
            auth_require_tls=False,
        )
        smtp.start()
        deployment = Deployment(workdir, fleet, inbox)
        deployment.write_inventory()
        output, seconds = deployment.playbook("site.yml", "--diff")
        deployment.figures["fresh deploy of 3 hosts"] = f"{seconds:.1f} s"
        deployment.fresh_output = output
        yield deployment
    finally:
        if smtp is not None:
            smtp.stop()
        fleet.close()


def test_fresh_deploy_brings_every_unit_up(deployment: Deployment) -> None:
    assert all(r["failed"] == 0 and r["changed"] > 0 for r in recap(deployment.fresh_output).values())
    for host, units in deployment.units().items():
        for unit in units:
            name = f"{unit}.timer" if unit == "osmon-backup" else f"{unit}.service"
            state = deployment.fleet.ssh(host, f"systemctl is-active {name}", check=False).stdout.strip()
            assert state == "active", f"{host}: {name} is {state}"
        assert deployment.fleet.ssh(host, "systemctl is-enabled osmon-agent").stdout.strip() == "enabled"


def test_secrets_are_locked_to_their_service_user(deployment: Deployment) -> None:
    def stat(host: str, path: str) -> str:
        return deployment.fleet.ssh(host, f"stat -c '%U %a' {path}").stdout.strip()

    for host in HOSTS:
        assert stat(host, "/etc/osmonitoring/keys/agent.key_secret") == "osmon-agent 400"
        assert stat(host, "/etc/osmonitoring/agent.toml") == "root 640"
    assert stat(COLLECTOR, "/etc/osmonitoring/keys/collector.key_secret") == "osmon 400"
    assert stat(COLLECTOR, "/etc/osmonitoring/smtp-password") == "osmon 400"
    allowed = deployment.fleet.ssh(COLLECTOR, "ls /etc/osmonitoring/keys/agents").stdout.split()
    assert sorted(allowed) == sorted(f"{h}.key" for h in HOSTS)
    # The public keys are kept on the controller, beside the inventory.
    kept = deployment.inventory / "osmon-keys"
    assert sorted(p.name for p in (kept / "agents").iterdir()) == sorted(f"{h}.key" for h in HOSTS)
    assert (kept / "collector.key").is_file()


def fresh_hosts(deployment: Deployment, host: str = COLLECTOR) -> list[dict] | None:
    """The host rows of `host`'s dashboard when every host is listed, up, with fresh data; else None."""
    try:
        rows = deployment.api("/api/hosts", host)["hosts"]
    except OSError:
        return None
    ok = {r["name"] for r in rows if not r["down"] and r["last_seen_ago"] < 15 and r["cpu"] is not None}
    return rows if ok == set(HOSTS) else None


def test_dashboard_lists_every_host_with_fresh_data(deployment: Deployment) -> None:
    rows = wait_for(lambda: fresh_hosts(deployment), timeout=90, what="every host fresh on the dashboard")
    assert sorted(r["name"] for r in rows) == sorted(HOSTS)
    # The page, as a person sees it: Chromium fills the table from the API.
    if not CHROMIUM.is_file():
        pytest.skip(f"the dashboard page needs Chromium at {CHROMIUM} (Debian package `chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{deployment.web}/")
            for host in HOSTS:
                page.wait_for_selector(f'#hosts tbody tr[data-host="{host}"]', timeout=30_000)
        finally:
            browser.close()


def test_prometheus_scrapes_with_the_token_from_the_vault(deployment: Deployment) -> None:
    assert deployment.as_collector("token list").split()[0] == "prometheus"
    request = urllib.request.Request(
        f"{deployment.web}/metrics", headers={"Authorization": f"Bearer {SCRAPER_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    for host in HOSTS:
        assert re.search(rf'^osmon_host_up{{host="{host}"}} 1(\.0)?$', text, re.MULTILINE), host
    wrong = urllib.request.Request(f"{deployment.web}/metrics", headers={"Authorization": "Bearer nope"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong, timeout=10)
    assert refused.value.code == 401, "a token that is not one is refused, even with anonymous reads"


def test_hardened_agent_sees_every_mount_process_and_user(deployment: Deployment) -> None:
    host = "web-01"
    # A login session (with a terminal, so it is in utmp) on the host while the agent samples.
    session = subprocess.Popen(
        [*deployment.fleet.ssh_args(host)[:1], "-tt", *deployment.fleet.ssh_args(host)[1:], "sleep 120"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def logged_in() -> dict | None:
            detail = deployment.api(f"/api/hosts/{host}")
            return detail if any(u.get("name") == "root" for u in detail.get("users") or []) else None

        detail = wait_for(logged_in, timeout=60, what="the root session in web-01's snapshot")
    finally:
        session.kill()
        session.wait(10)
    # What root sees outside the sandbox, with the same code.
    venv = deployment.unit_venv(host, "osmon-agent")
    unconfined = json.loads(deployment.fleet.ssh(host, f"{venv}/bin/osmon-agent once").stdout)
    mounts = sorted(f["mount"] for f in unconfined["probes"]["filesystems"])
    assert sorted(f["mount"] for f in detail["filesystems"]) == mounts
    owners = {p.get("user") for p in detail["processes"]["top_mem"]} | {
        p.get("user") for p in detail["processes"]["top_cpu"]
    }
    assert "root" in owners, f"the agent should see root's processes: {detail.get('processes')}"


def test_alert_is_mailed_through_smtp_auth(deployment: Deployment) -> None:
    found = wait_for(
        lambda: deployment.inbox.find("web-01", "memory"), timeout=90, what="web-01's memory alert mail"
    )
    rcpt, message = found
    assert sorted(rcpt) == ["ops@example.org", "web@example.org"]
    assert message["From"] == "osmon@mon-01.test"
    assert deployment.inbox.logins, "the collector did not log in with the vaulted password"


def test_a_failed_unit_is_mailed_shown_and_cleared(deployment: Deployment) -> None:
    """A unit that fails on a real systemd host: a critical alert naming it, the count on the dashboard,
    and a resolution once it has been started again and succeeded."""
    host, unit = "web-01", "osmon-e2e-broken.service"
    path = f"/etc/systemd/system/{unit}"
    deployment.fleet.ssh(
        host,
        f"printf '[Service]\\nType=oneshot\\nExecStart=/bin/false\\n' > {path} && systemctl daemon-reload"
        f" && (systemctl start {unit} || true)",
    )

    def failed_units() -> float | None:
        return next(
            (h.get("failed_units") for h in deployment.api("/api/hosts")["hosts"] if h["name"] == host), None
        )

    wait_for(lambda: failed_units() == 1, timeout=90, what=f"{unit} counted as failed on the dashboard")
    _, message = wait_for(
        lambda: deployment.inbox.find(host, unit), timeout=90, what=f"the mail naming {unit}"
    )
    assert "exit-code" in message.get_body(("plain",)).get_content()  # the unit's result, to act on
    deployment.fleet.ssh(
        host, f"sed -i 's|/bin/false|/bin/true|' {path} && systemctl daemon-reload && systemctl start {unit}"
    )
    wait_for(lambda: failed_units() == 0, timeout=90, what=f"{unit} no longer counted as failed")
    wait_for(
        lambda: deployment.inbox.find(host, unit, "resolved"), timeout=90, what=f"{unit}'s resolution mail"
    )
    deployment.fleet.ssh(host, f"rm {path} && systemctl daemon-reload")


def test_backup_timer_and_restore_playbook(deployment: Deployment) -> None:
    venv = deployment.unit_venv(COLLECTOR, "osmon-collector")
    has_backup = deployment.fleet.ssh(COLLECTOR, f"{venv}/bin/osmon-collector backup --help", check=False)
    if has_backup.returncode != 0:
        pytest.skip("this build of osmon-collector has no backup command yet")
    deployment.fleet.ssh(COLLECTOR, "systemctl start osmon-backup.service", timeout=300)
    listing = deployment.fleet.ssh(
        COLLECTOR, "stat -c '%U %a %n' /var/backups/osmonitoring/osmon-backup-*.tar.gz"
    )
    owner, mode, archive = listing.stdout.split("\n")[0].split()
    assert (owner, mode) == ("osmon", "600")
    before = {h["host"]: h for h in json.loads(deployment.as_collector("status --json"))}
    # The archive goes through the controller, as an operator restoring from off-site storage would.
    local = deployment.dir / Path(archive).name
    subprocess.run(
        ["scp", *deployment.fleet.ssh_args(COLLECTOR)[1:-1], f"{deployment.fleet.ssh_args(COLLECTOR)[-1]}:{archive}",
         str(local)], check=True, capture_output=True,
    )  # fmt: skip
    deployment.playbook("restore.yml", osmon_restore_archive=str(local))
    for unit in ("osmon-collector.service", "osmon-web.service", "osmon-backup.timer"):
        assert deployment.fleet.ssh(COLLECTOR, f"systemctl is-active {unit}").stdout.strip() == "active"
    after = {h["host"]: h for h in json.loads(deployment.as_collector("status --json"))}
    assert set(after) == set(before)
    kept = deployment.fleet.ssh(COLLECTOR, "ls /var/lib/osmonitoring/collector").stdout
    assert "before-restore" in kept


def pg_answer(deployment: Deployment, host: str) -> str:
    """What the PostgreSQL server on the database host answers `host`'s startup message as the collector's role:
    "R..." (asks for a password) or "E..." (refused, with the server's reason)."""
    address = deployment.fleet.hosts[DATABASE].address
    script = (
        "import socket, struct\n"
        f"s = socket.create_connection(('{address}', 5432), 5)\n"
        "body = struct.pack('!i', 196608) + b'user\\0osmon\\0database\\0osmon\\0\\0'\n"
        "s.sendall(struct.pack('!i', len(body) + 4) + body)\n"
        "print(s.recv(4096).decode(errors='replace').replace('\\0', ' '))\n"
    )
    return deployment.fleet.ssh(host, f"python3 -c {shlex.quote(script)}").stdout.strip()


def test_the_fleet_moves_to_postgresql_with_a_second_collector(deployment: Deployment) -> None:
    """The inventory gets osmon_database_url, and web-01 joins the collector group (mon-01, web-01): both
    collectors and their dashboards store in and read from PostgreSQL on db-01, which the fresh deploy
    installed and now lets both in; web-01 gets the collectors' key pair and allow-list, its own name;
    every agent gets both endpoints; each collector lists both as up."""
    address = deployment.fleet.hosts[DATABASE].address
    deployment.extra["osmon_database_url"] = f"postgresql://osmon@{address}:5432/osmon"
    deployment.collectors = [COLLECTOR, SECOND]
    deployment.write_hosts()
    output, seconds = deployment.playbook("site.yml")
    deployment.figures["move to PostgreSQL on db-01, web-01 a second collector"] = f"{seconds:.1f} s"
    assert all(recap(output)[h]["changed"] > 0 for h in deployment.collectors)
    for host, units in deployment.units().items():
        for unit in units:
            name = f"{unit}.timer" if unit == "osmon-backup" else f"{unit}.service"
            state = deployment.fleet.ssh(host, f"systemctl is-active {name}", check=False).stdout.strip()
            assert state == "active", f"{host}: {name} is {state}"
    keys = "/etc/osmonitoring/keys"
    for host in deployment.collectors:
        config = deployment.fleet.ssh(host, "cat /etc/osmonitoring/collector.toml").stdout
        assert f'database = "postgresql://osmon@{address}:5432/osmon"' in config
        assert f'name = "{host}"' in config
        # The collectors' timing check sees the agents' real settings.
        assert f"[agents]\ninterval = {AGENT_INTERVAL:.1f}\nack_timeout = {ACK_TIMEOUT:.1f}\n" in config
        for secret in ("database-password", "keys/collector.key_secret"):
            mode = deployment.fleet.ssh(host, f"stat -c '%U %a' /etc/osmonitoring/{secret}").stdout.strip()
            assert mode == "osmon 400", f"{host}: {secret} {mode}"
        allowed = deployment.fleet.ssh(host, f"ls {keys}/agents").stdout.split()
        assert sorted(allowed) == sorted(f"{h}.key" for h in HOSTS)
    # One key pair on every collector: each agent's one curve.server_key serves for both.
    pairs = {
        h: deployment.fleet.ssh(
            h, f"sha256sum {keys}/collector.key {keys}/collector.key_secret | cut -d' ' -f1"
        ).stdout
        for h in deployment.collectors
    }
    assert pairs[COLLECTOR] == pairs[SECOND] and len(pairs[SECOND].split()) == 2
    endpoints = [f"tcp://{deployment.fleet.hosts[h].address}:5555" for h in deployment.collectors]
    for host in HOSTS:
        agent = deployment.fleet.ssh(host, "cat /etc/osmonitoring/agent.toml").stdout
        assert f"collector = {json.dumps(endpoints)}\n" in agent, agent

    for host in deployment.collectors:
        wait_for(
            lambda host=host: fresh_hosts(deployment, host),
            timeout=90,
            what=f"every host fresh on {host}'s dashboard, read from PostgreSQL",
        )
    status = deployment.status()
    assert set(status) == set(HOSTS) and all(status[h]["snapshots"] > 0 for h in HOSTS)
    # The data is on db-01, written by the collectors' role.
    stored = deployment.fleet.ssh(
        DATABASE, "runuser -u postgres -- psql -X -d osmon -tAc 'SELECT name FROM hosts ORDER BY name'"
    ).stdout.split()
    assert stored == sorted(HOSTS)
    # pg_hba lets in the collector hosts (it asks for the password), and refuses any other.
    for host in deployment.collectors:
        assert pg_answer(deployment, host).startswith("R")
    refused = pg_answer(deployment, DATABASE)
    assert refused.startswith("E") and "no pg_hba.conf entry" in refused, refused

    def both_up(host: str) -> dict | None:
        time.sleep(1)
        found = deployment.cluster(host)
        states = {n: c["state"] for n, c in found.items()}
        return found if states == dict.fromkeys(deployment.collectors, "up") else None

    for host in deployment.collectors:
        wait_for(
            lambda host=host: both_up(host),
            timeout=60,
            what=f"cluster --json on {host} listing both collectors up",
        )


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    output, seconds = deployment.playbook("site.yml")
    deployment.figures["re-run (no change; PostgreSQL, 2 collectors)"] = f"{seconds:.1f} s"
    for host, counts in recap(output).items():
        assert counts["changed"] == 0 and counts["failed"] == 0, f"{host}: {counts}\n{changed_tasks(output)}"


def test_limit_to_the_collector_keeps_every_agent_allowed(deployment: Deployment) -> None:
    # The allow-list comes from the public keys kept on the controller, not from the hosts in the play.
    output, _ = deployment.playbook("collector.yml", "--limit", COLLECTOR)
    assert recap(output) == {COLLECTOR: {**recap(output)[COLLECTOR], "changed": 0, "failed": 0}}
    allowed = deployment.fleet.ssh(COLLECTOR, "ls /etc/osmonitoring/keys/agents").stdout.split()
    assert sorted(allowed) == sorted(f"{h}.key" for h in HOSTS)


def test_check_mode_on_the_deployed_fleet_changes_nothing(deployment: Deployment) -> None:
    output, _ = deployment.playbook("site.yml", "--check", "--diff")
    for host, counts in recap(output).items():
        assert counts["changed"] == 0 and counts["failed"] == 0, f"{host}: {counts}\n{changed_tasks(output)}"


def test_units_are_hardened(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    for host, units in deployment.units().items():
        for unit in units:
            out = deployment.fleet.ssh(host, f"systemd-analyze security {unit}.service", check=False).stdout
            match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\S+)", out)
            assert match, out
            deployment.figures[f"exposure {unit} ({host})"] = f"{match.group(1)} {match.group(2)}"
            assert float(match.group(1)) <= 3.0, out
    show = deployment.fleet.ssh(
        "web-01", "systemctl show -p User,ProtectSystem,NoNewPrivileges,CapabilityBoundingSet osmon-agent"
    ).stdout
    properties = dict(line.split("=", 1) for line in show.splitlines())
    assert properties == {
        "User": "osmon-agent",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
    }


def test_a_crashed_collector_leaves_the_fleet_watched(deployment: Deployment) -> None:
    """mon-01's collector is killed and stays down: what an operator sees on web-01 is the whole fleet, fresh;
    the dead collector's hosts are taken over, an alert of one of them is mailed once, no host is called down
    and no alert already mailed is mailed again."""
    survivor, seen = SECOND, len(deployment.inbox.messages)
    memory_mails = len(deployment.inbox.all("web-01", "memory"))
    before = deployment.status(survivor)
    # A crash (no lease handed over), then `stop` within RestartSec so that systemd does not start it again.
    pid = deployment.main_pid(COLLECTOR, "osmon-collector")
    deployment.fleet.ssh(COLLECTOR, f"kill -KILL {pid} && systemctl stop osmon-collector.service")
    crashed = time.monotonic()

    def flowing() -> dict | None:
        time.sleep(0.5)
        now = deployment.status(survivor)
        ok = all(
            now[h]["last_seq"] > before[h]["last_seq"] + 1 and now[h]["last_seen_ago"] < 5 for h in HOSTS
        )
        return now if ok else None

    after = wait_for(
        flowing, timeout=60, what="every host's data arriving at web-01 after mon-01's collector died"
    )
    deployment.figures["data of every host flowing again after a collector's crash"] = (
        f"{time.monotonic() - crashed:.1f} s"
    )
    assert all(after[h]["status"] == "up" for h in HOSTS), after
    # An alert of a host whose collector died (its agent moved): a unit fails on mon-01.
    unit, path = "osmon-e2e-crash.service", "/etc/systemd/system/osmon-e2e-crash.service"
    deployment.fleet.ssh(
        COLLECTOR,
        f"printf '[Service]\\nType=oneshot\\nExecStart=/bin/false\\n' > {path} && systemctl daemon-reload"
        f" && (systemctl start {unit} || true)",
    )
    # The dashboard on the surviving collector lists every host, fresh.
    rows = wait_for(
        lambda: fresh_hosts(deployment, survivor), timeout=30, what="every host fresh on web-01's dashboard"
    )
    assert sorted(r["name"] for r in rows) == sorted(HOSTS)

    def taken_over() -> dict | None:
        time.sleep(1)
        found = deployment.cluster(survivor)
        ok = found[COLLECTOR]["state"] == "gone" and found[survivor]["hosts"] == len(HOSTS)
        return found if ok else None

    wait_for(taken_over, timeout=60, what="mon-01 gone and web-01 holding every host in cluster --json")
    deployment.figures["crashed collector shown gone, its hosts taken over"] = (
        f"{time.monotonic() - crashed:.1f} s"
    )
    wait_for(
        lambda: deployment.inbox.all(COLLECTOR, unit, since=seen), timeout=90, what=f"the mail naming {unit}"
    )
    deployment.figures["alert of a moved host mailed after the crash"] = f"{time.monotonic() - crashed:.1f} s"
    time.sleep(10)  # long enough for a second sender, or a second owner, to mail it again
    subjects = [str(m["Subject"]) for _, m in deployment.inbox.messages[seen:]]
    assert len(deployment.inbox.all(COLLECTOR, unit, since=seen)) == 1, subjects
    assert not deployment.inbox.all("down", since=seen), f"a host was called down: {subjects}"
    assert len(deployment.inbox.all("web-01", "memory")) == memory_mails, (
        f"an alert was mailed again: {subjects}"
    )
    # mon-01's collector comes back and rejoins.
    deployment.fleet.ssh(
        COLLECTOR,
        f"rm {path} && systemctl daemon-reload && systemctl reset-failed && systemctl start osmon-collector",
    )
    wait_for(
        lambda: time.sleep(1) or all(c["state"] == "up" for c in deployment.cluster(survivor).values()),
        timeout=60,
        what="mon-01's collector up again",
    )


def test_upgrade_restarts_on_the_new_build_and_keeps_the_data(deployment: Deployment) -> None:
    old_venv = deployment.unit_venv(COLLECTOR, "osmon-collector")
    pids = {
        (h, u): deployment.main_pid(h, u)
        for h, units in deployment.units().items()
        for u in units
        if u != "osmon-backup"
    }
    before = {h["host"]: h for h in json.loads(deployment.as_collector("status --json"))}
    source = new_build(deployment.dir / "source-next", "0.1.0+e2e.2")
    output, _ = deployment.playbook(
        "site.yml", osmon_agent_source_dir=str(source), osmon_collector_source_dir=str(source)
    )
    assert all(c["changed"] > 0 for c in recap(output).values())
    for (host, unit), pid in pids.items():
        venv = deployment.unit_venv(host, unit)
        assert venv.endswith("/venv-0.1.0+e2e.2"), f"{host} {unit}: {venv}"
        new_pid = deployment.main_pid(host, unit)
        assert new_pid not in (0, pid), f"{host} {unit} was not restarted"
        cmdline = deployment.fleet.ssh(host, f"tr '\\0' ' ' < /proc/{new_pid}/cmdline").stdout
        assert venv in cmdline
    # The previous version stays beside the new one (osmon_*_venvs_keep: 2), for a quick rollback.
    assert deployment.fleet.ssh(COLLECTOR, f"test -d {old_venv}", check=False).returncode == 0

    def grown() -> dict | None:
        after = {h["host"]: h for h in json.loads(deployment.as_collector("status --json"))}
        return after if all(after[h]["snapshots"] > before[h]["snapshots"] for h in HOSTS) else None

    after = wait_for(grown, timeout=60, what="every host sending to the upgraded collector")
    for host in HOSTS:
        assert after[host]["first_seq"] == before[host]["first_seq"], "data was lost in the upgrade"


def test_a_host_shut_down_is_mailed_as_down_once(deployment: Deployment) -> None:
    """web-01, an agent and the second collector, goes away: mon-01 mails it down, once."""
    seen = len(deployment.inbox.messages)
    deployment.fleet.power_off("web-01")  # not db-01: it holds the collectors' database now
    rcpt, _ = wait_for(
        lambda: deployment.inbox.find("web-01", "down"), timeout=120, what="web-01's down mail"
    )
    assert sorted(rcpt) == ["ops@example.org", "web@example.org"]
    time.sleep(5)
    subjects = [str(m["Subject"]) for _, m in deployment.inbox.messages[seen:]]
    assert len(deployment.inbox.all("web-01", "down", since=seen)) == 1, subjects
    assert not [s for s in subjects if "down" in s.lower() and "web-01" not in s], subjects


def test_report_figures(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n-- deployment figures (playbooks/site.yml, 3 systemd-nspawn hosts, 2 cores) --")
        for name, value in deployment.figures.items():
            print(f"deploy: {name}: {value}")


def changed_tasks(output: str) -> str:
    """The tasks that reported a change, for a failure message."""
    blocks = output.split("\nTASK ")
    return "\n".join(
        "TASK " + b.strip()[:400] for b in blocks if "\nchanged:" in b or b.startswith("changed:")
    )


def new_build(tree: Path, version: str) -> Path:
    """A copy of this source tree whose package carries another version: the next release."""
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache"),
    )
    init = tree / "osmon" / "__init__.py"
    init.write_text(re.sub(r'(?m)^__version__ = ".*"$', f'__version__ = "{version}"', init.read_text()))
    return tree
