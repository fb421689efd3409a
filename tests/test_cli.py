"""Both CLIs, every subcommand, bad arguments and bad files: one line on stderr, exit 2, never a traceback."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, Cluster, wait_for

BAD_FILES = {
    "missing": "{tmp}/nope.toml",
    "directory": "{tmp}",
    "proc": "/proc/self/mem",
    "not toml": "/etc/hostname",
}
AGENT_CONFIG_COMMANDS = [["run"], ["check-config"]]
COLLECTOR_CONFIG_COMMANDS = [
    ["run"],
    ["status"],
    ["status", "--json"],
    ["check-config"],
    ["alerts"],
    ["silence", "web-01", "--for", "1h", "--reason", "x"],
    ["unsilence", "web-01"],
    ["web"],
    ["backup", "--output", "{tmp}/b.tar.gz"],
    ["restore", "--input", "{tmp}/b.tar.gz"],
    ["test-mail", "--to", "ops@example.org"],
]


def run(command: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / command), *args], capture_output=True, text=True, input=stdin, timeout=60
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr


@pytest.mark.parametrize("bad", sorted(BAD_FILES))
@pytest.mark.parametrize(
    ("command", "args"),
    [("osmon-agent", a) for a in AGENT_CONFIG_COMMANDS]
    + [("osmon-collector", a) for a in COLLECTOR_CONFIG_COMMANDS],
)
def test_every_command_names_a_bad_config_file(
    tmp_path: Path, command: str, args: list[str], bad: str
) -> None:
    config = BAD_FILES[bad].format(tmp=tmp_path)
    result = run(command, *[a.format(tmp=tmp_path) for a in args], "--config", config)
    assert_one_line_error(result, config)


@pytest.mark.parametrize("command", ["osmon-agent", "osmon-collector"])
@pytest.mark.parametrize(
    "args",
    [[], ["nope"], ["run", "--bogus"], ["keygen"], ["keygen", "/tmp"], ["check-config", "--config"]],
)
def test_usage_errors_are_one_line(command: str, args: list[str]) -> None:
    assert_one_line_error(run(command, *args), "--help")


@pytest.mark.parametrize("command", ["osmon-agent", "osmon-collector"])
def test_version_and_help(command: str) -> None:
    version = run(command, "--version")
    assert version.returncode == 0 and version.stdout.startswith(f"{command} ")
    help_text = run(command, "--help").stdout
    assert "osMonitoring" in help_text and "error" not in help_text.lower()  # not the module's docstring


@pytest.mark.parametrize("command", ["osmon-agent", "osmon-collector"])
@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("/proc", "cannot write keys in /proc"),
        ("/sys/kernel", "cannot write keys"),
        ("file", "not a directory"),
    ],
)
def test_keygen_into_a_place_that_cannot_hold_keys(
    tmp_path: Path, command: str, where: str, said: str
) -> None:
    if where == "file":
        where = str(tmp_path / "a-file")
        Path(where).write_text("x")
    assert_one_line_error(run(command, "keygen", where, "--name", "agent"), said)
    assert_one_line_error(run(command, "keygen", str(tmp_path), "--name", "../x"), "invalid key name")


@pytest.mark.parametrize("top", ["-1", "0", "many"])
def test_once_refuses_a_bad_top(top: str) -> None:
    assert_one_line_error(run("osmon-agent", "once", "--top", top), "--top")


def test_a_closed_stdout_ends_quietly() -> None:
    """`osmon-agent once | head -c1`: the reader leaves early; no BrokenPipeError."""
    shell = f"{BIN / 'osmon-agent'} once | head -c1 >/dev/null; echo ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
    assert result.stderr == "" and result.stdout.strip() == "0"


def good_collector_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(f'listen = "tcp://127.0.0.1:1"\ndatabase = "{tmp_path / "osmon.db"}"\n{extra}')
    return path


def test_backup_output_must_be_new_in_an_existing_directory(cluster: Cluster) -> None:
    cluster.collector()
    wait_for(lambda: (cluster.dir / "osmon.db").exists(), what="the database")
    config = str(cluster.collector_config)
    missing = cluster.dir / "no" / "such" / "b.tar.gz"
    assert_one_line_error(
        run("osmon-collector", "backup", "--config", config, "--output", str(missing)), "does not exist"
    )
    assert not (cluster.dir / "no").exists()
    existing = cluster.dir / "old.tar.gz"
    existing.write_bytes(b"an earlier backup")
    assert_one_line_error(
        run("osmon-collector", "backup", "--config", config, "--output", str(existing)), "already exists"
    )
    assert existing.read_bytes() == b"an earlier backup"
    assert_one_line_error(run("osmon-collector", "backup", "--config", config, "--output", "/proc/x.tar.gz"))


def test_restore_names_the_file_that_is_no_backup(tmp_path: Path) -> None:
    config = str(good_collector_config(tmp_path))
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    assert_one_line_error(
        run("osmon-collector", "restore", "--config", config, "--input", str(junk)), str(junk)
    )
    assert_one_line_error(
        run("osmon-collector", "restore", "--config", config, "--input", str(tmp_path)), str(tmp_path)
    )


def test_hash_password_refuses_an_empty_one() -> None:
    assert_one_line_error(run("osmon-collector", "hash-password", stdin="\n"), "empty password")


def test_a_port_clash_names_the_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "collector.toml"
        config.write_text(f'listen = "tcp://127.0.0.1:{port}"\ndatabase = "{tmp_path / "osmon.db"}"\n')
        result = run("osmon-collector", "run", "--config", str(config))
    # The daemon may log before it binds; the error is the last line.
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"osmon-collector: {config}: key 'listen': cannot listen on tcp://127.0.0.1:{port}: Address already in use"
    )


def test_alerts_has_a_header_and_status_shows_silences(cluster: Cluster) -> None:
    cluster.collector()
    agent = cluster.agent("web-01")
    config = str(cluster.collector_config)
    # The collector may be creating its schema: status fails until then.
    wait_for(lambda: "web-01" in run("osmon-collector", "status", "--config", config).stdout, what="web-01")
    silenced = run(
        "osmon-collector",
        "silence",
        "web-01",
        "--for",
        "2h",
        "--reason",
        "kernel upgrade",
        "--config",
        config,
    )
    assert silenced.returncode == 0 and silenced.stderr == ""
    typo = run("osmon-collector", "silence", "web-10", "--for", "2h", "--reason", "x", "--config", config)
    assert typo.returncode == 0 and "warning: no host 'web-10' has reported yet" in typo.stderr
    status = run("osmon-collector", "status", "--config", config).stdout
    assert "SILENCED UNTIL" in status.splitlines()[0] and "(kernel upgrade)" in status
    as_json = run("osmon-collector", "status", "--json", "--config", config)
    assert json.loads(as_json.stdout)[0]["silence_reason"] == "kernel upgrade", as_json.stderr
    agent.terminate()


def test_alerts_table_header(tmp_path: Path) -> None:
    from collector.cli import ALERT_COLUMNS
    from collector.status import columns

    text = columns(
        ALERT_COLUMNS, [["CRITICAL", "web-01", "mem.percent", "2026-01-01T00:00:00Z", "96.2", "97", "95"]]
    )
    assert text.splitlines()[0].split() == list(ALERT_COLUMNS)
