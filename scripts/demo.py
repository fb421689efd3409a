"""`make demo`: a collector, its dashboard and an agent for this machine, on SQLite under ./demo-data.

Ctrl-C (or SIGTERM) stops everything this script started, by PID, and waits for it.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "demo-data"
BIN = Path(sys.executable).parent
WEB = os.environ.get("OSMON_DEMO_WEB") or "127.0.0.1:5000"
PORT = int(os.environ.get("OSMON_DEMO_PORT") or 5555)
MAIL = DATA / "mail"
DEMO_RECIPIENT = "oncall@demo.example"
DEMO_USER, DEMO_PASSWORD = "demo", "demo"  # loopback only: lets the demo show silencing


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_configs(port: int) -> tuple[Path, Path]:
    from werkzeug.security import generate_password_hash

    DATA.mkdir(exist_ok=True)
    collector = DATA / "collector.toml"
    collector.write_text(
        "# Written by `make demo`: plain TCP on loopback, which is why [curve] can be left out.\n"
        f'listen = "tcp://127.0.0.1:{port}"\n'
        f'database = "{DATA / "osmon.db"}"\n'
        "# Mail goes through the real outbox and sendmail path into files under demo-data/mail.\n"
        f"sendmail = {_toml(shlex.join([sys.executable, str(ROOT / 'scripts' / 'mailsink.py'), str(MAIL)]))}\n"
        "[web]\n"
        f'bind = "{WEB}"\n'
        "anonymous_read = true\n"
        'refresh = "5s"\n'
        "[web.users]\n"
        f'{DEMO_USER} = "{generate_password_hash(DEMO_PASSWORD)}"\n'
        "[alerts]\n"
        f'recipients = ["{DEMO_RECIPIENT}"]\n'
        "[smtp]\n"
        'from = "osmon@demo.example"\n'
        "# Low enough to fire at once on any machine, so that the demo shows an alert and its mail.\n"
        '[thresholds."mem.percent"]\n'
        "warning = 1\n"
        "critical = 100\n"
        'for = "10s"\n'
    )
    agent = DATA / "agent.toml"
    agent.write_text(
        f'host = "{socket.gethostname().split(".")[0]}"\n'
        f'collector = "tcp://127.0.0.1:{port}"\n'
        'interval = "5s"\n'
        f'spool = "{DATA / "agent-spool.db"}"\n'
    )
    return collector, agent


def main() -> int:
    collector_config, agent_config = write_configs(port=PORT)
    for command, config in (("osmon-collector", collector_config), ("osmon-agent", agent_config)):
        check = subprocess.run([BIN / command, "check-config", "--config", config])
        if check.returncode:
            return check.returncode
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    children = [
        subprocess.Popen([BIN / "osmon-collector", "run", "--config", collector_config]),
        subprocess.Popen([BIN / "osmon-collector", "web", "--config", collector_config]),
        subprocess.Popen([BIN / "osmon-agent", "run", "--config", agent_config]),
    ]
    print(f"\nosMonitoring demo running; data in {DATA}")
    print(f"  dashboard: http://{WEB}/  (log in as {DEMO_USER} / {DEMO_PASSWORD} to silence a host)")
    print(f"  status: {BIN / 'osmon-collector'} status --config {collector_config}")
    print(f"  mail to {DEMO_RECIPIENT}: files in {MAIL} (also listed on the alerts page once logged in)")
    print("  Ctrl-C stops it all.\n", flush=True)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    codes = [child.wait(timeout=15) for child in children]
    print("demo stopped", flush=True)
    return max(codes) if not stopping else 0


if __name__ == "__main__":
    sys.exit(main())
