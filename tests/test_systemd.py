"""Failed systemd units from what systemctl prints; one list call, one show call for all of them."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from agent import systemd

LISTED = [
    {"unit": "nginx.service", "load": "loaded", "active": "failed", "sub": "failed", "description": "nginx"},
    {"unit": "user@1000.service", "load": "loaded", "active": "failed", "sub": "failed", "description": "u"},
]
SHOWN = (
    "Id=nginx.service\nActiveState=failed\nSubState=failed\nResult=exit-code\n"
    "StateChangeTimestampMonotonic=40000000\n\n"
    "Id=user@1000.service\nActiveState=failed\nSubState=failed\nResult=timeout\n"
    "StateChangeTimestampMonotonic=0\n"
)


class Systemctl:
    """A systemctl that answers from fixtures and records its calls."""

    def __init__(self, listed: list, shown: str = SHOWN) -> None:
        self.listed, self.shown, self.calls = listed, shown, []

    def __call__(self, args: Sequence[str]) -> str:
        self.calls.append(list(args))
        return json.dumps(self.listed) if args[0] == "list-units" else self.shown


def test_failed_units_with_their_state_change_and_result() -> None:
    run = Systemctl(LISTED)
    # 100 s after boot (monotonic), at wall-clock 1_700_000_100: nginx failed at 40 s.
    result = systemd.failed_units(run, now=lambda: 1_700_000_100.0, monotonic=lambda: 100.0)
    assert result == {
        "failed": [
            {
                "unit": "nginx.service",
                "active": "failed",
                "sub": "failed",
                "result": "exit-code",
                "since": 1_700_000_040.0,
                "description": "nginx",
            },
            {
                "unit": "user@1000.service",
                "active": "failed",
                "sub": "failed",
                "result": "timeout",
                "since": None,
                "description": "u",
            },
        ]
    }
    assert [c[0] for c in run.calls] == ["list-units", "show"]  # never one process per unit


def test_ignored_units_by_glob_and_no_show_call_when_nothing_failed() -> None:
    run = Systemctl(LISTED)
    result = systemd.failed_units(run, ignore=["user@*.service"])
    assert [u["unit"] for u in result["failed"]] == ["nginx.service"]
    quiet = Systemctl([])
    assert systemd.failed_units(quiet) == {"failed": []}
    assert [c[0] for c in quiet.calls] == ["list-units"]


def test_garbage_from_systemctl_is_an_error_not_a_crash() -> None:
    with pytest.raises(systemd.SystemctlError):
        systemd.failed_units(lambda args: "Failed to connect to bus")


def test_a_host_without_systemd_as_pid_1_has_no_unit_probe(tmp_path) -> None:
    assert systemd.booted(str(tmp_path / "absent")) is False
