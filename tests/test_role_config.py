"""The collector role run by the real `ansible-playbook` on this machine (no hosts needed): its collector.toml
template with webhooks and Alertmanager, read back by `check-config` and the config loader; its scraper
token tasks against a real config and SQLite store, read back by the dashboard."""

from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from collector import config as collector_config
from collector.store import open_store
from collector.web import create_app
from tests.conftest import BIN, ROOT
from tests.test_web import received

PLAYBOOK = shutil.which("ansible-playbook", path=str(BIN)) or shutil.which("ansible-playbook")


@pytest.mark.skipif(PLAYBOOK is None, reason="ansible-playbook not installed (the dev extra)")
def test_webhooks_and_alertmanager_variables_render_a_valid_config(tmp_path: Path) -> None:
    role = ROOT / "roles" / "osmon_collector"
    variables = {
        "osmon_collector_config_dir": str(tmp_path),
        "osmon_collector_data_dir": str(tmp_path),
        "osmon_webhooks": [
            {
                "name": "chat",
                "url": "https://chat.example.org/hooks/XXXX",
                "format": "slack",
                "hosts": "web-*",
            },
            {"name": "siem", "url": "https://siem.example.org/in", "secret": "s3cret", "timeout": "5s"},
        ],
        "osmon_alertmanager_urls": ["http://am-01:9093", "http://am-02:9093"],
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    play = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "vars_files": [str(role / "defaults" / "main.yml")],
            "tasks": [
                {
                    "ansible.builtin.template": {
                        "src": str(role / "templates" / "collector.toml.j2"),
                        "dest": str(tmp_path / "collector.toml"),
                        "mode": "0640",
                    }
                }
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(json.dumps(play))  # JSON is YAML
    env = {
        **os.environ,
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_FILTER_PLUGINS": str(role / "filter_plugins"),  # the role's own, as a role play has them
    }
    assert PLAYBOOK is not None
    run = subprocess.run(
        [PLAYBOOK, "-i", "localhost,", "-e", f"@{tmp_path / 'vars.json'}", str(tmp_path / "play.yml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # What the role's other tasks provide: the keys, and the webhook's secret file (0400).
    (tmp_path / "keys" / "agents").mkdir(parents=True)
    (tmp_path / "keys" / "collector.key_secret").write_text("x")
    secret = tmp_path / "webhook-siem-secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o400)
    toml = tmp_path / "collector.toml"
    checked = subprocess.run(
        [str(BIN / "osmon-collector"), "check-config", "--config", str(toml)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = collector_config.load(toml)
    assert [(h.name, h.format, h.hosts, h.secret_file, h.timeout) for h in config.webhooks] == [
        ("chat", "slack", "web-*", None, 10.0),
        ("siem", "json", "*", str(secret), 5.0),
    ]
    assert [a.url for a in config.alertmanagers] == ["http://am-01:9093", "http://am-02:9093"]
    assert "s3cret" not in toml.read_text()


def run_play(tmp_path: Path, tasks: list[dict[str, Any]], variables: dict[str, Any]) -> str:
    """Run `tasks` on this machine with the collector role's defaults and `variables`; the output."""
    role = ROOT / "roles" / "osmon_collector"
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    play = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            # The role runs its commands as the service user; here that is whoever runs the test.
            "vars": {"ansible_python_interpreter": sys.executable, "ansible_become": False},
            "vars_files": [str(role / "defaults" / "main.yml")],
            "tasks": tasks,
        }
    ]
    (tmp_path / "play.yml").write_text(json.dumps(play))  # JSON is YAML
    env = {
        **os.environ,
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_FILTER_PLUGINS": str(role / "filter_plugins"),
    }
    assert PLAYBOOK is not None
    run = subprocess.run(
        [PLAYBOOK, "-i", "localhost,", "-e", f"@{tmp_path / 'vars.json'}", str(tmp_path / "play.yml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def changed(output: str) -> int:
    found = re.search(r"localhost\s+:.*\bchanged=(\d+)", output)
    assert found, output
    return int(found.group(1))


@pytest.mark.skipif(PLAYBOOK is None, reason="ansible-playbook not installed (the dev extra)")
def test_the_role_sets_scraper_tokens_from_the_vault_once_and_prometheus_reads_with_them(
    tmp_path: Path,
) -> None:
    database = tmp_path / "osmon.db"
    open_store(database).ingest([received("web-01", 1, time.time())])  # the collector made the database
    (tmp_path / "collector.toml").write_text(
        f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{database}"\n[web]\nanonymous_read = false\n'
    )
    tasks = [
        {"ansible.builtin.include_tasks": str(ROOT / "roles" / "osmon_collector" / "tasks" / "tokens.yml")}
    ]
    vaulted = "vaulted-" + secrets.token_urlsafe(32)
    variables = {
        "osmon_common_venv": str(BIN.parent),
        "osmon_collector_config_dir": str(tmp_path),
        "osmon_collector_system_user": getpass.getuser(),  # the tasks run the command through runuser
        "osmon_scraper_tokens": [{"name": "prometheus", "token": vaulted}],
    }
    first = run_play(tmp_path, tasks, variables)
    assert changed(first) == 1 and vaulted not in first  # no_log
    assert changed(run_play(tmp_path, tasks, variables)) == 0  # idempotent
    # Read before this process opens the database: closing any descriptor of the file would drop
    # SQLite's POSIX locks, and another process would take its connection for gone.
    assert vaulted not in database.read_bytes().decode(errors="replace")  # only its digest
    client = create_app(collector_config.load(tmp_path / "collector.toml"), secret_key="k").test_client()

    def scrape(token: str) -> int:
        return client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code

    assert scrape(vaulted) == 200 and client.get("/metrics").status_code == 401

    # A new value in the vault replaces the token; state absent revokes one.
    rotated = "rotated-" + secrets.token_urlsafe(32)
    variables["osmon_scraper_tokens"] = [{"name": "prometheus", "token": rotated}]
    assert changed(run_play(tmp_path, tasks, variables)) == 1
    assert (scrape(rotated), scrape(vaulted)) == (200, 401)
    variables["osmon_scraper_tokens"] = [
        {"name": "prometheus", "state": "absent"},
        {"name": "gone", "state": "absent"},
    ]
    assert changed(run_play(tmp_path, tasks, variables)) == 1
    assert scrape(rotated) == 401
    assert changed(run_play(tmp_path, tasks, variables)) == 0


def test_token_set_refuses_a_weak_token_and_one_given_to_another_name(tmp_path: Path) -> None:
    database = tmp_path / "osmon.db"
    open_store(database)
    config = tmp_path / "collector.toml"
    config.write_text(f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{database}"\n')

    def token_set(name: str, token: str) -> subprocess.CompletedProcess[str]:
        command = [
            str(BIN / "osmon-collector"),
            "token",
            "set",
            name,
            "--from-file",
            "-",
            "--config",
            str(config),
        ]
        return subprocess.run(command, input=token + "\n", capture_output=True, text=True, timeout=60)

    weak = token_set("prometheus", "hunter2")
    assert weak.returncode == 2 and "32 to 256 printable" in weak.stderr and "hunter2" not in weak.stderr
    strong = secrets.token_urlsafe(32)
    assert token_set("prometheus", strong).stdout == "token prometheus stored\n"
    shared = token_set("grafana", strong)
    assert shared.returncode == 2 and "'prometheus' already" in shared.stderr
    assert token_set("prometheus", strong).stdout == "token prometheus unchanged\n"
