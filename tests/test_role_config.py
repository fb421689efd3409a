"""The collector role's collector.toml template, rendered by the real `ansible-playbook` on this machine
(no hosts needed) with webhooks and Alertmanager, then read back by `check-config` and the config loader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collector import config as collector_config
from tests.conftest import BIN, ROOT

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
