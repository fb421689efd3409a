"""Dashboard login under attack (issue 19, item 9): throttling that cannot lock out the real user,
is bounded, slows guessing of many names, never shows a traceback; logout that revokes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from collector.web.auth import Throttle
from osmon.limits import ADDRESS_FAILURES, LOGIN_FAILURES, LOGIN_TABLE
from tests.test_web import Dashboard, login


@pytest.fixture
def dash(tmp_path: Path) -> Dashboard:
    return Dashboard(tmp_path)


def test_a_lockout_cannot_lock_the_real_user_out(dash: Dashboard) -> None:
    """Once: guesses for alice from behind the same reverse proxy (one address) locked alice out too."""
    app = dash.app(web="anonymous_read = false\n")  # one dashboard, two browsers
    alice, attacker = app.test_client(), app.test_client()
    assert login(alice).status_code == 302  # her browser has logged in before
    alice.post("/logout", data={"csrf_token": csrf(alice)})
    for _ in range(LOGIN_FAILURES):
        assert login(attacker, password="guess").status_code == 401
    assert login(attacker).status_code == 429  # the attacker is held, even with the right password
    assert login(alice).status_code == 302  # alice, same address, is not


def test_guessing_many_names_from_one_address_is_throttled(dash: Dashboard) -> None:
    """Once: different user names were never throttled, and every guess cost a scrypt hash."""
    client = dash.client(web="anonymous_read = false\n")
    for i in range(ADDRESS_FAILURES):
        assert login(client, user=f"user{i}", password="guess").status_code == 401
    refused = login(client, user="someone-else", password="guess")
    assert refused.status_code == 429 and "from this address" in refused.get_data(as_text=True)


def test_a_flood_of_failures_never_lifts_a_lockout_and_the_table_stays_bounded() -> None:
    """Once: 10,000 failures under other names cleared the whole table, lifting the lockout."""
    throttle = Throttle(clock=lambda: 1000.0)
    for _ in range(LOGIN_FAILURES):
        throttle.failed("10.0.0.1", "alice")
    for i in range(LOGIN_TABLE + 5000):
        throttle.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", None)
    assert throttle.refusal("192.0.2.7", "alice") is not None  # alice's name stays locked
    assert len(throttle._addresses) == LOGIN_TABLE and len(throttle._users) == 1


def test_throttled_basic_credentials_on_a_page_are_a_429_not_a_traceback(dash: Dashboard) -> None:
    """Once: throttled Basic credentials on an HTML page gave a 500 with a traceback."""
    client = dash.client(web="anonymous_read = false\n")
    for _ in range(LOGIN_FAILURES):
        assert client.get("/", auth=("alice", "guess")).status_code in (302, 401)
    for path in ("/", "/alerts", "/api/hosts"):
        answer = client.get(path, auth=("alice", "guess"))
        assert answer.status_code == 429, path
        assert "Traceback" not in answer.get_data(as_text=True)


def test_logout_revokes_the_session_on_the_server(dash: Dashboard) -> None:
    """Once: logout only dropped the browser's cookie; a copy of it stayed valid for a week."""
    client = dash.client(web="anonymous_read = false\n")
    assert login(client).status_code == 302
    stolen = client.get_cookie("osmon_session").value
    assert client.get("/alerts").status_code == 200
    client.post("/logout", data={"csrf_token": csrf(client)})
    thief = dash.client(web="anonymous_read = false\n")
    thief.set_cookie("osmon_session", stolen)
    assert thief.get("/alerts").status_code == 302  # to the login page
    assert login(client).status_code == 302 and client.get("/alerts").status_code == 200  # a new login works


def csrf(client) -> str:
    page = client.get("/alerts").get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)
