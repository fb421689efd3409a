"""Config files: defaults, units, and one-line errors naming the file, the key and the reason."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent import config as agent_config
from collector import config as collector_config
from osmon.configfile import ConfigError, parse_duration, parse_size
from tests.conftest import BIN, ROOT


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (2.5, 2.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("4h", 14400.0),
        ("7d", 604800.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("45", 45.0),
        ("2y", 730 * 86400.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "-5s", "5 years", "", True, None, [5], float("nan")])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_sizes() -> None:
    assert parse_size("64MiB") == 64 * 1024**2
    assert parse_size("512k") == 512 * 1024
    assert parse_size(4096) == 4096
    with pytest.raises(ValueError):
        parse_size("12 parsecs")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_agent_defaults(tmp_path: Path) -> None:
    config = agent_config.load(write(tmp_path, "a.toml", 'collector = "tcp://127.0.0.1:5555"\n'))
    assert config.interval == 10.0
    assert config.spool == "/var/lib/osmonitoring/agent-spool.db"
    assert config.host  # this machine's name
    assert config.curve_secret_key is None


def test_collector_defaults(tmp_path: Path) -> None:
    config = collector_config.load(write(tmp_path, "c.toml", 'listen = "tcp://127.0.0.1:5555"\n'))
    assert config.database == "/var/lib/osmonitoring/osmon.db"
    assert config.max_message_size == 1024 * 1024
    assert config.down_after == 3
    assert config.retention_raw == 7 * 86400


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('collector = "tcp://127.0.0.1:5555"\ninterval = "often"\n', "interval", "expected a duration"),
        ('collector = "tcp://127.0.0.1:5555"\nintervall = 5\n', "intervall", "did you mean 'interval'"),
        ('collector = "http://x"\n', "collector", "expected an endpoint"),
        ("interval = 5\n", "collector", "is required"),
        ('collector = "tcp://127.0.0.1:5555"\nhost = "../etc"\n', "host", "not a valid host name"),
        ('collector = "tcp://127.0.0.1:5555"\ninterval = 0\n', "interval", "at least"),
        (
            'collector = "tcp://127.0.0.1:5555"\n[curve]\nsecret_key = "/nonexistent"\n',
            "curve.server_key",
            "all keys or none",
        ),
        (
            'collector = "tcp://127.0.0.1:5555"\ntop_processes = "five"\n',
            "top_processes",
            "expected an integer",
        ),
    ],
)
def test_agent_config_errors_name_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = write(tmp_path, "agent.toml", text)
    with pytest.raises(ConfigError) as error:
        agent_config.load(path)
    assert error.value.key == key
    assert str(path) in str(error.value) and f"'{key}'" in str(error.value) and reason in str(error.value)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('listen = "tcp://0.0.0.0:5555"\n', "listen", "allow_insecure"),
        (
            'listen = "tcp://127.0.0.1:5555"\nmax_message_size = "huge"\n',
            "max_message_size",
            "expected a size",
        ),
        ('listen = "tcp://127.0.0.1:5555"\n[alerts]\ndown_after = 0\n', "alerts.down_after", "at least 1"),
        ('listen = "tcp://127.0.0.1:5555"\n[retention]\nraw = "forever"\n', "retention.raw", "duration"),
        ('listen = "tcp://127.0.0.1:5555"\n[web]\nbind = "nowhere"\n', "web.bind", "host:port"),
        (
            'listen = "tcp://127.0.0.1:5555"\n[curve]\nagents = "/tmp"\n',
            "curve.secret_key",
            "all keys or none",
        ),
    ],
)
def test_collector_config_errors(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = write(tmp_path, "collector.toml", text)
    with pytest.raises(ConfigError) as error:
        collector_config.load(path)
    assert error.value.key == key and reason in str(error.value)


def test_insecure_listen_is_allowed_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path, "c.toml", 'listen = "tcp://0.0.0.0:5555"\nallow_insecure = true\n')
    assert collector_config.load(path).allow_insecure


@pytest.mark.parametrize("command", ["osmon-agent", "osmon-collector"])
def test_check_config_cli_prints_one_line_and_exits_nonzero(tmp_path: Path, command: str) -> None:
    broken = write(tmp_path, "broken.toml", "listen = [\n")
    result = subprocess.run(
        [str(BIN / command), "check-config", "--config", str(broken)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert str(broken) in result.stderr and "invalid TOML" in result.stderr

    missing = tmp_path / "nope.toml"
    result = subprocess.run(
        [str(BIN / command), "check-config", "--config", str(missing)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "file not found" in result.stderr


def test_check_config_cli_accepts_a_good_file(tmp_path: Path) -> None:
    good = write(tmp_path, "c.toml", f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{tmp_path}/osmon.db"\n')
    result = subprocess.run(
        [str(BIN / "osmon-collector"), "check-config", "--config", str(good)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_annotated_examples_are_valid(tmp_path: Path) -> None:
    """The examples in the repo pass check-config once their key files exist."""
    keys = tmp_path / "keys"
    for command, name in (("osmon-collector", "collector"), ("osmon-agent", "agent")):
        subprocess.run(
            [str(BIN / command), "keygen", str(keys), "--name", name], check=True, capture_output=True
        )
    (keys / "agents").mkdir()
    for name in ("agent", "collector"):
        text = (ROOT / "examples" / f"{name}.toml").read_text().replace("/etc/osmonitoring/keys", str(keys))
        text = text.replace("/var/lib/osmonitoring", str(tmp_path))
        path = write(tmp_path, f"{name}.toml", text)
        command = "osmon-agent" if name == "agent" else "osmon-collector"
        result = subprocess.run(
            [str(BIN / command), "check-config", "--config", str(path)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr


def test_check_config_reports_every_problem_of_a_file_at_once(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "c.toml",
        f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{tmp_path}/no/such/dir/osmon.db"\n'
        'sendmail = "/nonexistent/msmtp -t"\n'
        '[smtp]\nhost = "mail.example.org"\nport = 99999\n'
        '[alerts]\nrecipients = ["not an address"]\n',
    )
    result = subprocess.run(
        [str(BIN / "osmon-collector"), "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    for key, reason in [
        ("smtp.port", "1-65535"),
        ("alerts.recipients", "'not an address'"),
        ("sendmail", "not found"),
        ("sendmail", "not both"),
    ]:
        assert any(f"key '{key}'" in line and reason in line for line in lines), (key, result.stderr)
    assert len(lines) == 4  # the database directory is checked once the file itself is valid
    config.write_text(f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{tmp_path}/no/such/dir/osmon.db"\n')
    result = subprocess.run(
        [str(BIN / "osmon-collector"), "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "key 'database': directory" in result.stderr


def test_check_config_warns_of_a_sender_no_relay_accepts(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "c.toml",
        f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{tmp_path}/osmon.db"\n'
        '[smtp]\nhost = "127.0.0.1"\nfrom = "osmon@localhost"\n[alerts]\nrecipients = ["ops@example.org"]\n',
    )
    result = subprocess.run(
        [str(BIN / "osmon-collector"), "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert (
        result.returncode == 0
        and "key 'smtp.from': 'osmon@localhost' is not a routable address" in result.stderr
    )


def test_the_sender_defaults_to_this_machines_fqdn(tmp_path: Path) -> None:
    import socket

    path = write(tmp_path, "c.toml", 'listen = "tcp://127.0.0.1:5555"\n')
    assert collector_config.load(path).smtp_from == f"osmon@{socket.getfqdn()}"


def test_an_agent_refuses_plain_tcp_to_another_machine(tmp_path: Path) -> None:
    path = write(tmp_path, "a.toml", 'collector = "tcp://198.51.100.5:5555"\ntop_processes = 0\n')
    with pytest.raises(ConfigError) as error:
        agent_config.load(path)
    text = str(error.value)
    assert "key 'collector'" in text and "allow_insecure" in text and "key 'top_processes'" in text
    path.write_text('collector = "tcp://198.51.100.5:5555"\nallow_insecure = true\n')
    assert agent_config.load(path).allow_insecure
