"""`osmon-collector web` and `hash-password` as real processes; the [web] config keys."""

from __future__ import annotations

import http.cookiejar
import json
import re
import socket
import stat
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from werkzeug.security import check_password_hash

from collector import config as collector_config
from collector.web import series
from osmon.configfile import ConfigError
from tests.conftest import BIN, Cluster, free_port, wait_for
from tests.test_web import PASSWORD, password_hash


class Browser:
    """urllib with cookies, not following redirects: enough to log in and read pages over real HTTP."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def get(self, path: str, data: dict | None = None) -> tuple[int, str, dict]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(self.base + path, data=body, timeout=10) as response:
                return response.status, response.read().decode(), dict(response.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def up(self) -> bool:
        try:
            return self.get("/healthz")[0] == 200
        except OSError:
            return False


def web_config(cluster: Cluster, port: int, web: str = "") -> Path:
    return cluster.write_collector_config(
        f'[web]\nbind = "127.0.0.1:{port}"\nrefresh = "2s"\n{web}\n[web.users]\nalice = "{password_hash()}"\n'
    )


def test_the_dashboard_serves_what_the_collector_stores_and_stops_on_sigterm(cluster: Cluster) -> None:
    port = free_port()
    web_config(cluster, port)
    cluster.collector()
    cluster.agent("web-01", interval=0.5)
    web = cluster.start(
        [str(BIN / "osmon-collector"), "web", "--config", str(cluster.collector_config)], "web"
    )
    browser = Browser(f"http://127.0.0.1:{port}")
    wait_for(browser.up, what="the dashboard to answer /healthz")

    status, _, headers = browser.get("/")
    assert status == 302 and headers["Location"].startswith("/login")
    assert "waitress" in headers.get("Server", "").lower() or "osmon" in headers.get("Server", "").lower()
    _, page, _ = browser.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    status, _, headers = browser.get("/login", {"user": "alice", "password": PASSWORD, "csrf_token": token})
    assert status == 302 and "HttpOnly" in headers["Set-Cookie"]

    def host_listed() -> dict | None:
        hosts = json.loads(browser.get("/api/hosts")[1])["hosts"]
        return hosts[0] if hosts and hosts[0]["cpu"] is not None else None

    host = wait_for(host_listed, what="the agent's host on /api/hosts")
    assert host["name"] == "web-01" and host["status"] == "ok"
    status, page, _ = browser.get("/host/web-01?range=1h")
    assert status == 200 and page.count('class="pygal-chart chart"') == len(series.CHARTS)
    assert 'data-refresh="2.0"' in page

    secret = cluster.dir / "web-secret"  # beside the database
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_text().strip()) >= 32
    assert web.terminate() == 0
    assert "dashboard stopped" in web.output()


def test_a_busy_port_is_a_clear_error(cluster: Cluster) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        web_config(cluster, taken.getsockname()[1])
        out = subprocess.run(
            [BIN / "osmon-collector", "web", "--config", cluster.collector_config],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert out.returncode == 2
    assert "key 'web.bind': cannot listen on 127.0.0.1:" in out.stderr and "Traceback" not in out.stderr


def test_hash_password_reads_standard_input(tmp_path: Path) -> None:
    out = subprocess.run(
        [BIN / "osmon-collector", "hash-password"],
        input="s3cret pass\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    hashed = out.stdout.strip()
    assert hashed.startswith("scrypt:") and check_password_hash(hashed, "s3cret pass")
    config = tmp_path / "c.toml"
    config.write_text(f'listen = "tcp://127.0.0.1:5555"\n[web.users]\nops = "{hashed}"\n')
    assert collector_config.load(config).web_users == {"ops": hashed}
    empty = subprocess.run(
        [BIN / "osmon-collector", "hash-password"], input="\n", capture_output=True, text=True
    )
    assert empty.returncode == 2 and "empty password" in empty.stderr


def test_web_config_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{tmp_path}/data/osmon.db"\n')
    config = collector_config.load(path)
    assert config.web_refresh == 10.0
    assert config.web_users == {}
    assert config.web_secret_key_file == str(tmp_path / "data" / "web-secret")
    path.write_text(
        'listen = "tcp://127.0.0.1:5555"\n[web]\nrefresh = "1m"\nsecret_key_file = "/etc/osmonitoring/web-secret"\n'
    )
    config = collector_config.load(path)
    assert (config.web_refresh, config.web_secret_key_file) == (60.0, "/etc/osmonitoring/web-secret")


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[web.users]\nalice = "hunter2"\n', "web.users.alice", "hash-password"),
        ("[web.users]\nalice = 5\n", "web.users.alice", "hash-password"),
        ('[web]\nusers = "alice"\n', "web.users", "table"),
        ('[web]\nrefresh = "soon"\n', "web.refresh", "duration"),
        ("[web]\nrefresh = 0\n", "web.refresh", "at least 1"),
        ("[web]\nsecret_key_file = 3\n", "web.secret_key_file", "string"),
    ],
)
def test_bad_web_keys_are_named(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        collector_config.load(path)
    assert error.value.key == key and reason in error.value.reason
